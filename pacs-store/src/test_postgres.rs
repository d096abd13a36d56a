//! For unit tests that run against PostgreSQL: a fresh database on the server of
//! `PACS_TEST_POSTGRES_URL` (scripts/test.sh starts one), dropped afterwards. Required:
//! without the variable a test fails, unless `PACS_TEST_ALLOW_NO_POSTGRES=1` says to skip.

use sqlx::Executor as _;

/// The URL of a new, empty database for `what` (named in the skip and failure messages),
/// or `None` when PostgreSQL tests are skipped on purpose.
pub(crate) async fn fresh_database(what: &str) -> Option<String> {
    let Ok(admin) = std::env::var("PACS_TEST_POSTGRES_URL") else {
        if std::env::var("PACS_TEST_ALLOW_NO_POSTGRES").as_deref() == Ok("1") {
            eprintln!("SKIPPED: PostgreSQL {what} test (PACS_TEST_ALLOW_NO_POSTGRES=1)");
            return None;
        }
        panic!(
            "PACS_TEST_POSTGRES_URL is not set: the {what} test needs a real PostgreSQL \
             (scripts/test.sh starts one), or set PACS_TEST_ALLOW_NO_POSTGRES=1 to skip it"
        );
    };
    sqlx::any::install_default_drivers();
    let name = format!("pacs_unit_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::AnyPool::connect(&admin).await.unwrap();
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    pool.close().await;
    Some(format!("{}/{name}", admin.rsplit_once('/').unwrap().0))
}

/// Drops the database of `url` (made by [`fresh_database`]).
pub(crate) async fn drop_database(url: &str) {
    let admin = std::env::var("PACS_TEST_POSTGRES_URL").unwrap();
    let name = url.rsplit('/').next().unwrap();
    let pool = sqlx::AnyPool::connect(&admin).await.unwrap();
    let _ = pool
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await;
    pool.close().await;
}
