//! Helpers shared by the pacs-store integration tests: synthetic instances, users made
//! directly in the index, and a fresh PostgreSQL database per test.
#![allow(dead_code)]

use std::time::Duration;

use pacs_store::charset::PersonName;
use pacs_store::header::IndexedAttributes;
use pacs_store::index::{Index, NewInstance, now_micros};
use pacs_store::objects::ObjectKey;
use sqlx::Row as _;

pub const MIN: i64 = 60_000_000;

pub struct StudySpec {
    pub n: u32,
    pub modality: &'static str,
    pub body_part: &'static str,
    pub priority: Option<&'static str>,
}

pub fn instance(
    study: u32,
    instance: u32,
    modality: &str,
    body_part: &str,
    priority: Option<&str>,
) -> NewInstance {
    NewInstance {
        attrs: IndexedAttributes {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: format!("1.2.826.0.1.3680043.10.543.9.{study}.{instance}"),
            study_instance_uid: format!("1.2.826.0.1.3680043.10.543.7.{study}"),
            series_instance_uid: format!("1.2.826.0.1.3680043.10.543.8.{study}"),
            patient_id: Some(format!("WL{study}")),
            patient_name: Some(PersonName {
                alphabetic: format!("Test^Worklist{study}"),
                ..Default::default()
            }),
            modality: Some(modality.into()),
            body_part_examined: Some(body_part.into()),
            requested_procedure_priority: priority.map(str::to_owned),
            ..Default::default()
        },
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        object_key: ObjectKey::generate(),
        size_bytes: 100,
        dataset_offset: 0,
        content_hash: format!("{study:032x}{instance:032x}"),
        clinic_id: Some(1),
        clinic_name: Some("Township A".into()),
        source_ae: Some("TOWNSHIP_A".into()),
        received_at: now_micros(),
        archive_authored: false,
    }
}

pub async fn radiologist(index: &Index, name: &str, subspecialties: &[&str]) -> i64 {
    let now = now_micros();
    let id: i64 = sqlx::query(
        "INSERT INTO users (username, role, created_at, updated_at) VALUES ($1, 'radiologist', $2, $2) RETURNING id",
    )
    .bind(name)
    .bind(now)
    .fetch_one(index_pool(index))
    .await
    .unwrap()
    .try_get(0)
    .unwrap();
    for s in subspecialties {
        sqlx::query("INSERT INTO user_subspecialties (user_id, subspecialty) VALUES ($1, $2)")
            .bind(id)
            .bind(*s)
            .execute(index_pool(index))
            .await
            .unwrap();
    }
    id
}

pub fn index_pool(index: &Index) -> &sqlx::AnyPool {
    index.pool_for_tests()
}

pub async fn store(index: &Index, specs: &[StudySpec]) {
    for s in specs {
        index
            .insert_instance(instance(s.n, 1, s.modality, s.body_part, s.priority))
            .await
            .unwrap();
    }
    index.mark_ready_studies(Duration::ZERO).await.unwrap();
}

pub fn uid(n: u32) -> String {
    format!("1.2.826.0.1.3680043.10.543.7.{n}")
}

pub async fn task_of(index: &Index, study: u32) -> pacs_store::worklist::Task {
    let id: i64 = sqlx::query(
        "SELECT t.id FROM reading_tasks t JOIN studies s ON s.id = t.study_ref \
         WHERE s.study_instance_uid = $1 ORDER BY t.id DESC",
    )
    .bind(uid(study))
    .fetch_one(index_pool(index))
    .await
    .unwrap()
    .try_get(0)
    .unwrap();
    index.task(id).await.unwrap().unwrap()
}

pub async fn count(index: &Index, sql: &'static str) -> i64 {
    sqlx::query(sql)
        .fetch_one(index_pool(index))
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// Runs `body` on a fresh PostgreSQL database of the server in PACS_TEST_POSTGRES_URL
/// (scripts/test.sh starts one), with two handles on it (two nodes); required unless
/// PACS_TEST_ALLOW_NO_POSTGRES=1.
pub async fn on_postgres<F, Fut>(what: &str, body: F)
where
    F: FnOnce(Index, Index) -> Fut,
    Fut: std::future::Future<Output = (Index, Index)>,
{
    use sqlx::Executor;
    let Ok(admin) = std::env::var("PACS_TEST_POSTGRES_URL") else {
        if std::env::var("PACS_TEST_ALLOW_NO_POSTGRES").as_deref() == Ok("1") {
            eprintln!("SKIPPED: PostgreSQL {what} test (PACS_TEST_ALLOW_NO_POSTGRES=1)");
            return;
        }
        panic!(
            "PACS_TEST_POSTGRES_URL is not set: this test needs a real PostgreSQL \
             (scripts/test.sh starts one), or set PACS_TEST_ALLOW_NO_POSTGRES=1 to skip it"
        );
    };
    sqlx::any::install_default_drivers();
    let name = format!("pacs_it_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::AnyPool::connect(&admin).await.unwrap();
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let index = Index::open(&url).await.unwrap();
    let second = Index::open(&url).await.unwrap();
    let (index, second) = body(index, second).await;
    second.close().await;
    index.close().await;
    let _ = pool
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await;
    pool.close().await;
}

/// Runs `body` on a fresh SQLite index, with two handles on it.
pub async fn on_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Index, Index) -> Fut,
    Fut: std::future::Future<Output = (Index, Index)>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("index.db").display());
    let index = Index::open(&url).await.unwrap();
    let second = Index::open(&url).await.unwrap();
    let (index, second) = body(index, second).await;
    second.close().await;
    index.close().await;
}
