//! The index: patients, studies, series, instances, clinics and the event outbox, in SQL.
//!
//! One code path for both databases through sqlx's Any driver; the dialect differences are
//! kept to the migration folders (`migrations/sqlite`, `migrations/postgres`) and to
//! [`Backend`]-specific connection set-up. Every user value is bound, never formatted into
//! SQL. Parameters are numbered `$1, $2, …` in order of first appearance, which both SQLite
//! and PostgreSQL read the same way.
//!
//! Writes of received instances go through [`writer`], one task that groups concurrent
//! inserts into a single transaction (group commit): with SQLite that is the only way to
//! have many associations storing at once without "database is locked", and with either
//! database it turns N fsyncs into one.

mod clinics;
pub(crate) mod direct;
mod instances;
pub mod name_keys;
pub(crate) mod outbox;
mod studies;
pub(crate) mod wal_sync;
pub mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::{Result, StoreError};

pub use clinics::{Admission, AeOptions, AeRegistration, ClinicSummary, LinkSecurity};
pub use instances::{
    InstanceLocation, InstanceRecord, NewConflict, NewInstance, patient_namespace,
};
pub use studies::{EventRecord, IndexStats, ReadyStudy};

/// Which SQL database holds the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The archive index. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Index {
    pool: AnyPool,
    backend: Backend,
    /// SQLite on a file: connections for the single statements of every request ([`direct`]).
    direct: Option<Arc<direct::DirectConnections>>,
    /// SQLite on a file: the WAL's fsync after the direct connections' commits ([`wal_sync`]).
    pub(crate) wal: Option<Arc<wal_sync::WalSync>>,
    writer: writer::WriterHandle,
    /// Bumped by [`Index::notify_events`]: outbox events were committed by this process.
    events: Arc<tokio::sync::watch::Sender<u64>>,
    /// Concurrent [`Index::audit`] calls, written together (one transaction, one fsync).
    pub(crate) audit: crate::audit::AuditBatcher,
    /// How many patients there are, as the name search's plan last read it.
    pub(crate) patients_hint: Arc<crate::query::PatientsHint>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Index {
    /// Opens (creating if needed) the index at `url` (`sqlite:PATH` or `postgres://…`) and
    /// applies pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "database URL must start with sqlite: or postgres:, got {:?}",
                redact_url(url)
            )));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let opts = AnyConnectOptions::from_str(&url).map_err(|e| {
            StoreError::Config(format!("invalid database URL {:?}: {e}", redact_url(&url)))
        })?;
        let pool_opts = match backend {
            // WAL lets readers go on while the one writer commits; synchronous=FULL makes a
            // commit durable on return (an acknowledged image is never lost to a power cut).
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    // No ping before each query: with SQLite it is one more trip to the
                    // connection's worker thread, as long as the query itself, and a file
                    // opened in this process does not go stale as a server connection can.
                    .test_before_acquire(false)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                             PRAGMA foreign_keys=ON; PRAGMA busy_timeout=30000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
            }
            Backend::Postgres => AnyPoolOptions::new().max_connections(16),
        }
        .acquire_timeout(Duration::from_secs(30));
        let pool = pool_opts.connect_with(opts).await.map_err(|e| {
            StoreError::Config(format!(
                "cannot open the index database {:?}: {e}",
                redact_url(&url)
            ))
        })?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let backfilled = name_keys::backfill(&pool).await?;
        if backfilled > 0 {
            tracing::info!(patients = backfilled, "made the patient-name search keys");
            // Statistics for the planner about the rows just made (same SQL on both).
            sqlx::query("ANALYZE patient_name_keys")
                .execute(&pool)
                .await?;
        }
        let writer = writer::spawn(pool.clone());
        let file = match backend {
            Backend::Sqlite => sqlite_file(&pool).await?,
            Backend::Postgres => None,
        };
        let direct = file
            .as_deref()
            .map(|db| Arc::new(direct::DirectConnections::new(db)));
        let wal = match backend {
            Backend::Sqlite => file
                .map(|db| {
                    wal_sync::WalSync::start(db).map_err(|e| {
                        StoreError::Config(format!("cannot start the WAL sync thread: {e}"))
                    })
                })
                .transpose()?
                .map(Arc::new),
            Backend::Postgres => None,
        };
        Ok(Index {
            pool,
            backend,
            direct,
            wal,
            writer,
            events: Arc::new(tokio::sync::watch::channel(0).0),
            audit: crate::audit::AuditBatcher::default(),
            patients_hint: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// All rows of one statement run alone (no transaction): in place on a [`direct`]
    /// connection with SQLite on a file, from the pool otherwise (PostgreSQL).
    pub(crate) async fn fetch_all_alone(
        &self,
        q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<Vec<sqlx::any::AnyRow>> {
        match &self.direct {
            Some(direct) => direct.fetch_all(q).await,
            None => Ok(q.fetch_all(&self.pool).await?),
        }
    }

    /// The row, if any, of one statement run alone (see [`Index::fetch_all_alone`]).
    pub(crate) async fn fetch_optional_alone(
        &self,
        q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<Option<sqlx::any::AnyRow>> {
        match &self.direct {
            Some(direct) => direct.fetch_optional(q).await,
            None => Ok(q.fetch_optional(&self.pool).await?),
        }
    }

    /// The one row of a statement run alone that always returns one (see
    /// [`Index::fetch_all_alone`]): a count, a maximum.
    pub(crate) async fn fetch_one_alone(
        &self,
        q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<sqlx::any::AnyRow> {
        self.fetch_optional_alone(q)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// One statement run alone (see [`Index::fetch_all_alone`]); the rows it affected. On
    /// SQLite a write made here is committed but not yet durable (`synchronous=NORMAL`, see
    /// [`wal_sync`]): follow it with [`Index::sync`] or [`Index::sync_soon`].
    pub(crate) async fn execute_alone(
        &self,
        q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<u64> {
        match &self.direct {
            Some(direct) => direct.execute(q).await,
            None => Ok(q.execute(&self.pool).await?.rows_affected()),
        }
    }

    /// Asks for the fsync of what [`Index::execute_alone`] committed, without waiting for it
    /// (SQLite; nothing to do on PostgreSQL, whose commits are durable on return). Fails
    /// once an fsync has failed: what was committed will not become durable.
    pub(crate) fn sync_soon(&self) -> Result<()> {
        match &self.wal {
            Some(wal) => wal.request().map(|_| ()),
            None => Ok(()),
        }
    }

    /// Returns once what [`Index::execute_alone`] committed before the call is durable.
    pub(crate) async fn sync(&self) -> Result<()> {
        match &self.wal {
            Some(wal) => wal.sync().await,
            None => Ok(()),
        }
    }

    /// A transaction that will write: on SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so that a transaction that reads before it writes waits for another
    /// writer (busy_timeout) instead of failing with "database is locked" when it upgrades.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Says that outbox events were just committed through this index (call it after the
    /// commit), so that the live feed reads them now rather than at its next poll. Cheap
    /// (no I/O) and harmless when nothing listens or nothing new was written; events
    /// committed by other processes or nodes are still found by polling.
    pub fn notify_events(&self) {
        self.events.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes after every [`Index::notify_events`] of this index or its clones. A watch
    /// rather than a `Notify`: every receiver sees the change, and one made while its
    /// receiver was busy is seen at its next `changed()` (none is lost); several made
    /// meanwhile count as one.
    pub fn event_notifications(&self) -> tokio::sync::watch::Receiver<u64> {
        self.events.subscribe()
    }

    /// The connection pool, for tests that set up or inspect rows directly. Production
    /// code outside this crate never uses it: only pacs-store writes SQL.
    #[doc(hidden)]
    pub fn pool_for_tests(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool after the writer has drained and the WAL is synced.
    pub async fn close(&self) {
        self.writer.shutdown().await;
        if let Err(e) = self.sync().await {
            tracing::error!(error = %e, "closing the index");
        }
        if let Some(direct) = &self.direct {
            direct.close();
        }
        self.pool.close().await;
    }
}

/// The file of an SQLite database (`None` in memory), as SQLite itself resolved it.
async fn sqlite_file(pool: &AnyPool) -> Result<Option<std::path::PathBuf>> {
    let rows = sqlx::query("PRAGMA database_list").fetch_all(pool).await?;
    for row in rows {
        use sqlx::Row;
        let name: String = row.try_get(1)?;
        let file: Option<String> = row.try_get(2)?;
        if name == "main" {
            return Ok(file.filter(|f| !f.is_empty()).map(Into::into));
        }
    }
    Ok(None)
}

/// The values of a multi-valued column the index keeps joined by `\` (modalities in
/// study, body parts), without empty ones.
pub(crate) fn split_values(joined: Option<&str>) -> Vec<String> {
    joined
        .unwrap_or_default()
        .split('\\')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `e` is a unique-constraint violation (SQLite's Any driver does not always say
/// so through `is_unique_violation`: its message does).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation() || d.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Now, as Unix microseconds.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Index {
    /// A trivial query, for health checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(self.pool()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact_url("postgres://pacs:secret@127.0.0.1:5432/pacs"),
            "postgres://pacs:***@127.0.0.1:5432/pacs"
        );
        assert_eq!(redact_url("sqlite:./x.db"), "sqlite:./x.db");
    }
}
