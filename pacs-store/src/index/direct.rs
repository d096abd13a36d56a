//! SQLite connections for the single statements every request runs (the token lookup, a
//! search, an audit append), run in the calling thread rather than through sqlx.
//!
//! sqlx runs each SQLite connection on a worker thread of its own: every statement is a
//! trip there and back (two thread wake-ups), and its rows are converted twice (SQLite →
//! sqlx-sqlite → Any). For the short statements of an audited read that costs more than
//! the statements themselves (measured: a primary-key lookup joined to its patient, 44–57
//! µs per statement through a detached sqlx connection, 2.1 µs here). These connections
//! are opened with rusqlite on the same database file (the same libsqlite3 that sqlx
//! links) and run a statement in place: in `block_in_place` on tokio's multi-threaded
//! runtime, so that the worker's other tasks move to another thread while SQLite works,
//! and directly on a current-thread runtime (tests).
//!
//! The statements are the same sqlx `Query` values the pool runs (so PostgreSQL, and an
//! in-memory SQLite index, which has no file to open twice, use the pool as before):
//! [`DirectConnections`] takes their SQL and bound values apart and gives back `AnyRow`s,
//! as sqlx's own SQLite-to-Any conversion makes them (integers `BIGINT`, reals `DOUBLE`,
//! text, blobs, NULL), so that one decoder reads the rows of either path. That uses the
//! `#[doc(hidden)]`, semver-exempt fields of sqlx-core's Any types: sqlx-core is pinned
//! (pacs-store/Cargo.toml), and `tests` below check the conversion against the pool's.
//!
//! Only single statements in autocommit run here, never a transaction, so a connection
//! put back holds no state. One whose statement failed is closed instead. A write here
//! (the one-statement audit append) commits with `synchronous=NORMAL`: it is durable only
//! once [`wal_sync`](super::wal_sync) has synced the WAL after it, which the caller waits
//! for (`Index::sync`) or only asks for (`Index::sync_soon`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use sqlx::any::{AnyArguments, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue};
use sqlx::{Any, Execute};
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::ext::ustr::UStr;

use crate::{Result, StoreError, lock};

/// Idle connections kept at most for reads, and for writes; more at once are opened and
/// closed after.
const MAX_IDLE_READERS: usize = 4;
const MAX_IDLE_WRITERS: usize = 1;
/// A statement that takes longer is logged (sqlx's default threshold for the pool's).
const SLOW_STATEMENT: Duration = Duration::from_secs(1);
/// Prepared statements each connection keeps (the searches' SQL varies with their keys).
const STATEMENT_CACHE: usize = 64;

type Statement<'q> = sqlx::query::Query<'q, Any, AnyArguments>;

/// The idle direct connections of one SQLite index file.
#[derive(Debug)]
pub(crate) struct DirectConnections {
    file: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// Writes (one at a time in practice: the audit appends are serialised) keep to one
    /// connection of their own. Every commit makes SQLite drop the page cache of each other
    /// connection of the database at its next statement; the writer's own stays warm
    /// (measured: the one-statement audit append 220–246 → 205–218 µs, three pairs of runs
    /// of exact-name searches).
    idle_writers: Mutex<Vec<rusqlite::Connection>>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Read,
    Write,
}

impl DirectConnections {
    /// For the database at `file`, which the pool has opened (and migrated) already.
    pub(crate) fn new(file: &Path) -> Self {
        DirectConnections {
            file: file.to_owned(),
            idle: Mutex::new(Vec::new()),
            idle_writers: Mutex::new(Vec::new()),
        }
    }

    /// Closes the idle connections.
    pub(crate) fn close(&self) {
        drop(std::mem::take(&mut *lock(&self.idle)));
        drop(std::mem::take(&mut *lock(&self.idle_writers)));
    }

    fn idle(&self, kind: Kind) -> (&Mutex<Vec<rusqlite::Connection>>, usize) {
        match kind {
            Kind::Read => (&self.idle, MAX_IDLE_READERS),
            Kind::Write => (&self.idle_writers, MAX_IDLE_WRITERS),
        }
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        // The file exists (the pool made it); never create one here.
        let conn = rusqlite::Connection::open_with_flags(
            &self.file,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // As the pool's connections (`Index::open`), except that a commit returns before
        // its fsync, which the caller asks of `Index::sync` (see `wal_sync`): the audit
        // entry of a read is committed before the data goes out, and made durable while
        // it does.
        conn.execute_batch(
            "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=30000; PRAGMA synchronous=NORMAL;",
        )?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// Prepares `q` (from the connection's statement cache) on an idle connection, or a
    /// new one, binds its values and runs `f` on it, in place; the connection goes back to
    /// the idle list if that succeeded, and is closed if it failed. A statement slower than
    /// [`SLOW_STATEMENT`] is logged (its SQL, never its values), as sqlx logs the pool's.
    fn run<T>(
        &self,
        kind: Kind,
        q: Statement<'_>,
        f: impl FnOnce(&mut rusqlite::Statement<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let (sql, values) = take_apart(q)?;
        let started = Instant::now();
        let out = in_place(|| {
            let idle = lock(self.idle(kind).0).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => self.open()?,
            };
            let out = {
                let mut st = conn.prepare_cached(sql.as_str())?;
                bind(&mut st, &values)?;
                f(&mut st)?
            };
            let (idle, max) = self.idle(kind);
            let mut idle = lock(idle);
            if idle.len() < max {
                idle.push(conn);
            }
            Ok::<T, rusqlite::Error>(out)
        });
        let elapsed = started.elapsed();
        if elapsed >= SLOW_STATEMENT {
            tracing::warn!(
                statement = summary(sql.as_str()),
                elapsed_ms = elapsed.as_millis() as u64,
                "slow statement on a direct SQLite connection"
            );
        }
        Ok(out?)
    }

    pub(crate) async fn fetch_all(&self, q: Statement<'_>) -> Result<Vec<AnyRow>> {
        self.run(Kind::Read, q, |st| {
            let columns = columns(st);
            let mut rows = st.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(any_row(&columns, row)?);
            }
            Ok(out)
        })
    }

    pub(crate) async fn fetch_optional(&self, q: Statement<'_>) -> Result<Option<AnyRow>> {
        self.run(Kind::Read, q, |st| {
            let columns = columns(st);
            let mut rows = st.raw_query();
            match rows.next()? {
                Some(row) => Ok(Some(any_row(&columns, row)?)),
                None => Ok(None),
            }
        })
    }

    /// A write; rows affected.
    pub(crate) async fn execute(&self, q: Statement<'_>) -> Result<u64> {
        self.run(Kind::Write, q, |st| Ok(st.raw_execute()? as u64))
    }
}

/// The start of a statement's SQL, on one line, for a log line.
fn summary(sql: &str) -> String {
    let line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(120) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// Runs `f`, which blocks on SQLite, in the calling thread: through `block_in_place` on
/// tokio's multi-threaded runtime (the worker's other tasks go on elsewhere), directly on
/// any other.
fn in_place<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The SQL of `q` and its bound values, in sqlx's order (`$1` is the first).
fn take_apart(mut q: Statement<'_>) -> Result<(sqlx::SqlStr, Vec<AnyValueKind>)> {
    let values = match q.take_arguments() {
        Ok(Some(args)) => args.values.0,
        Ok(None) => Vec::new(),
        Err(e) => return Err(StoreError::Database(sqlx::Error::Encode(e))),
    };
    Ok((q.sql(), values))
}

/// Binds `values` to `st` as sqlx-sqlite does: `$N` and `?N` take the Nth value, a bare
/// `?` the next; parameters past the values stay NULL.
fn bind(st: &mut rusqlite::Statement<'_>, values: &[AnyValueKind]) -> rusqlite::Result<()> {
    let mut next = 0usize;
    for i in 1..=st.parameter_count() {
        let n = match st.parameter_name(i) {
            Some(name) => name
                .strip_prefix('$')
                .or_else(|| name.strip_prefix('?'))
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    rusqlite::Error::InvalidParameterName(format!(
                        "{name}: only numbered parameters ($N, ?N) are bound"
                    ))
                })?,
            None => {
                next += 1;
                next
            }
        };
        let Some(value) = n.checked_sub(1).and_then(|k| values.get(k)) else {
            break;
        };
        st.raw_bind_parameter(i, to_sql(value)?)?;
    }
    Ok(())
}

/// One bound value as SQLite stores it (sqlx-sqlite's mapping of Any's kinds).
fn to_sql(v: &AnyValueKind) -> rusqlite::Result<ToSqlOutput<'_>> {
    Ok(match v {
        AnyValueKind::Null(_) => ToSqlOutput::Owned(Value::Null),
        AnyValueKind::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
        AnyValueKind::SmallInt(n) => ToSqlOutput::Owned(Value::Integer(i64::from(*n))),
        AnyValueKind::Integer(n) => ToSqlOutput::Owned(Value::Integer(i64::from(*n))),
        AnyValueKind::BigInt(n) => ToSqlOutput::Owned(Value::Integer(*n)),
        AnyValueKind::Real(x) => ToSqlOutput::Owned(Value::Real(f64::from(*x))),
        AnyValueKind::Double(x) => ToSqlOutput::Owned(Value::Real(*x)),
        AnyValueKind::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        AnyValueKind::TextSlice(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        AnyValueKind::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        other => {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!("cannot bind {other:?} to SQLite").into(),
            ));
        }
    })
}

/// The names of a statement's columns, as an `AnyRow` looks them up.
struct Columns {
    names: Arc<sqlx_core::HashMap<UStr, usize>>,
    list: Vec<UStr>,
}

fn columns(st: &rusqlite::Statement<'_>) -> Columns {
    let list: Vec<UStr> = st.column_names().into_iter().map(UStr::new).collect();
    let names = list
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    Columns {
        names: Arc::new(names),
        list,
    }
}

/// A row as sqlx's SQLite driver gives it to Any: each value typed by what it holds.
fn any_row(columns: &Columns, row: &rusqlite::Row<'_>) -> rusqlite::Result<AnyRow> {
    let mut out = AnyRow {
        column_names: columns.names.clone(),
        columns: Vec::with_capacity(columns.list.len()),
        values: Vec::with_capacity(columns.list.len()),
    };
    for (i, name) in columns.list.iter().enumerate() {
        let kind = match row.get_ref(i)? {
            ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
            ValueRef::Integer(n) => AnyValueKind::BigInt(n),
            ValueRef::Real(x) => AnyValueKind::Double(x),
            ValueRef::Text(t) => AnyValueKind::Text(Arc::new(
                std::str::from_utf8(t)
                    .map_err(|e| rusqlite::Error::Utf8Error(i, e))?
                    .to_owned(),
            )),
            ValueRef::Blob(b) => AnyValueKind::Blob(Arc::new(b.to_vec())),
        };
        let type_info = AnyTypeInfo {
            kind: type_of(&kind),
        };
        out.columns.push(AnyColumn {
            ordinal: i,
            name: name.clone(),
            type_info,
        });
        out.values.push(AnyValue { kind });
    }
    Ok(out)
}

fn type_of(kind: &AnyValueKind) -> AnyTypeInfoKind {
    match kind {
        AnyValueKind::BigInt(_) => AnyTypeInfoKind::BigInt,
        AnyValueKind::Double(_) => AnyTypeInfoKind::Double,
        AnyValueKind::Text(_) => AnyTypeInfoKind::Text,
        AnyValueKind::Blob(_) => AnyTypeInfoKind::Blob,
        _ => AnyTypeInfoKind::Null,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use sqlx::Row;

    use super::*;
    use crate::index::Index;

    /// Idle connections: (for reads, for writes).
    fn idle(index: &Index) -> (usize, usize) {
        let direct = index.direct.as_ref().expect("SQLite on a file");
        (lock(&direct.idle).len(), lock(&direct.idle_writers).len())
    }

    async fn sqlite_index(dir: &tempfile::TempDir) -> Index {
        let url = format!("sqlite:{}", dir.path().join("index.db").display());
        Index::open(&url).await.unwrap()
    }

    /// A connection comes back after its statement, and not after a failed one; writes keep
    /// to a connection of their own; the answers are those of the pool.
    #[tokio::test(flavor = "multi_thread")]
    async fn connections_come_back_only_after_a_whole_statement() {
        let dir = tempfile::tempdir().unwrap();
        let index = sqlite_index(&dir).await;
        assert_eq!(idle(&index), (0, 0));
        for _ in 0..3 {
            let rows = index
                .fetch_all_alone(sqlx::query("SELECT 1 UNION ALL SELECT 2"))
                .await
                .unwrap();
            assert_eq!(rows.len(), 2);
            assert_eq!(idle(&index), (1, 0), "one connection, reused");
        }
        let n = index
            .execute_alone(sqlx::query(
                "INSERT INTO clinics (name, created_at) VALUES ('Direct', 0)",
            ))
            .await
            .unwrap();
        assert_eq!(n, 1);
        // Committed: the pool's connections see it.
        let seen = sqlx::query("SELECT COUNT(*) FROM clinics WHERE name = 'Direct'")
            .fetch_one(index.pool())
            .await
            .unwrap();
        assert_eq!(seen.get::<i64, _>(0), 1);
        let row = index
            .fetch_optional_alone(sqlx::query(
                "SELECT name FROM clinics WHERE name = 'Direct'",
            ))
            .await
            .unwrap();
        assert!(row.is_some());
        assert_eq!(
            idle(&index),
            (1, 1),
            "the write had a connection of its own"
        );
        // A failed write: the writer's connection is closed, and the next write opens one.
        let dup = index
            .execute_alone(sqlx::query(
                "INSERT INTO clinics (name, created_at) VALUES ('Direct', 0)",
            ))
            .await;
        let err = dup.expect_err("clinic names are unique").to_string();
        assert!(err.contains("UNIQUE constraint failed"), "{err}");
        assert_eq!(idle(&index), (1, 0));
        // A failed statement: its connection is closed, not put back; the error says why.
        let Err(err) = index
            .fetch_all_alone(sqlx::query("SELECT * FROM no_such_table"))
            .await
        else {
            panic!("no such table")
        };
        assert!(err.to_string().contains("no such table"), "{err}");
        assert_eq!(idle(&index), (0, 0));
        // And the next statement gets a fresh connection.
        let rows = index
            .fetch_all_alone(sqlx::query("SELECT 1"))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(idle(&index), (1, 0));
        index
            .execute_alone(sqlx::query(
                "INSERT INTO clinics (name, created_at) VALUES ('Direct 2', 0)",
            ))
            .await
            .unwrap();
        assert_eq!(idle(&index), (1, 1));
        index.close().await;
        assert_eq!(idle(&index), (0, 0));
    }

    /// The rows of a statement run here are those of the same statement run by the pool:
    /// the same columns, names and values, decoded the same way; values are bound as sqlx
    /// binds them (`$N` in any order and more than once, every kind of value).
    #[tokio::test(flavor = "multi_thread")]
    async fn rows_and_binds_are_the_pools() {
        let dir = tempfile::tempdir().unwrap();
        let index = sqlite_index(&dir).await;
        let sql = "SELECT $2 AS two, $1 AS one, $2 || '+' AS again, $3 AS small, $4 AS flag, \
                   $5 AS real, $6 AS double, $7 AS missing, $8 AS blob, 12345678901234 AS big, \
                   1.5 AS lit, NULL AS null_lit, x'00ff' AS blob_lit, '王^小明' AS name";
        let statement = || {
            sqlx::query(sql)
                .bind("first")
                .bind("Zhang^Wei 张伟")
                .bind(7_i32)
                .bind(true)
                .bind(0.25_f32)
                .bind(-2.5_f64)
                .bind(None::<i64>)
                .bind(vec![1_u8, 2, 3])
        };
        let pool = statement().fetch_one(index.pool()).await.unwrap();
        let direct = index
            .fetch_optional_alone(statement())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pool.columns().len(), direct.columns().len());
        for (p, d) in pool.columns().iter().zip(direct.columns()) {
            use sqlx::Column;
            assert_eq!((p.ordinal(), p.name()), (d.ordinal(), d.name()));
        }
        for row in [&pool, &direct] {
            assert_eq!(row.get::<String, _>("two"), "Zhang^Wei 张伟");
            assert_eq!(row.get::<String, _>("one"), "first");
            assert_eq!(row.get::<String, _>("again"), "Zhang^Wei 张伟+");
            assert_eq!(row.get::<i64, _>("small"), 7);
            assert_eq!(row.get::<i32, _>("small"), 7);
            assert_eq!(row.get::<i64, _>("flag"), 1);
            assert_eq!(row.get::<f64, _>("real"), 0.25);
            assert_eq!(row.get::<f64, _>("double"), -2.5);
            assert_eq!(row.get::<Option<i64>, _>("missing"), None);
            assert_eq!(row.get::<Option<String>, _>("null_lit"), None);
            assert_eq!(row.get::<Vec<u8>, _>("blob"), vec![1, 2, 3]);
            assert_eq!(row.get::<i64, _>("big"), 12_345_678_901_234);
            assert_eq!(row.get::<f64, _>("lit"), 1.5);
            assert_eq!(row.get::<Vec<u8>, _>("blob_lit"), vec![0, 255]);
            assert_eq!(row.get::<String, _>(13), "王^小明");
        }
        // A wrong type is an error on both paths, not a wrong value.
        assert!(pool.try_get::<String, _>("small").is_err());
        assert!(direct.try_get::<String, _>("small").is_err());
        // Several rows, and none.
        let many = "SELECT value FROM (SELECT 1 AS value UNION ALL SELECT 2 UNION ALL SELECT 3) \
                    WHERE value >= $1 ORDER BY value";
        let rows = index
            .fetch_all_alone(sqlx::query(many).bind(2_i64))
            .await
            .unwrap();
        let values: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(values, vec![2, 3]);
        let none = index
            .fetch_optional_alone(sqlx::query(many).bind(9_i64))
            .await
            .unwrap();
        assert!(none.is_none());
        index.close().await;
    }

    /// A statement runs in place, and the rest of the runtime goes on meanwhile: with one
    /// worker thread, a task spawned before a long statement runs before it ends.
    #[test]
    fn a_long_statement_does_not_hold_up_the_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // On the worker thread (a task), not in `block_on`'s own thread.
        let test = rt.spawn(async {
            let dir = tempfile::tempdir().unwrap();
            let index = sqlite_index(&dir).await;
            let started = Arc::new(AtomicBool::new(false));
            let ran_during = Arc::new(AtomicBool::new(false));
            let statement_over = Arc::new(AtomicBool::new(false));
            let other = tokio::spawn({
                let (started, ran_during, over) =
                    (started.clone(), ran_during.clone(), statement_over.clone());
                async move {
                    while !started.load(Ordering::SeqCst) {
                        tokio::task::yield_now().await;
                    }
                    ran_during.store(!over.load(Ordering::SeqCst), Ordering::SeqCst);
                }
            });
            started.store(true, Ordering::SeqCst);
            let rows = index
                .fetch_all_alone(sqlx::query(
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n \
                     WHERE x < 3000000) SELECT MAX(x) FROM n",
                ))
                .await
                .unwrap();
            statement_over.store(true, Ordering::SeqCst);
            assert_eq!(rows[0].get::<i64, _>(0), 3_000_000);
            other.await.unwrap();
            assert!(
                ran_during.load(Ordering::SeqCst),
                "the other task waited for the statement"
            );
            index.close().await;
        });
        rt.block_on(test).unwrap();
    }
}
