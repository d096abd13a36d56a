//! SQLite connections for the single statements every request runs (the token lookup, a
//! search, an audit append), kept out of sqlx's pool.
//!
//! sqlx's pool tests each connection as it is given back: a spawned task sends a ping to
//! the connection's worker thread and waits for the answer. With SQLite that is one more
//! trip between threads per statement, as long as the statement itself, on every audited
//! read (measured: 18 → 12–13 context switches per exact-name QIDO-RS search when the
//! three statements of a request skip it). These connections are taken from the pool once
//! (`detach`), handed out one statement at a time and put back without the ping.
//!
//! Only single statements in autocommit run here, never a transaction, so a connection
//! put back holds no state. One whose statement failed, or was cut short because its
//! caller went away, is closed instead. PostgreSQL connections stay in the pool (its ping
//! is how a dropped server connection is found).
//!
//! A write here (the one-statement audit append) commits with `synchronous=NORMAL`: it is
//! durable only once [`wal_sync`](super::wal_sync) has synced the WAL after it, which the
//! caller waits for (`Index::sync`) or only asks for (`Index::sync_soon`).

use std::sync::Mutex;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool};

use crate::{Result, lock};

/// Idle connections kept at most for reads, and for writes; more at once are taken from
/// the pool and closed after.
const MAX_IDLE_READERS: usize = 4;
const MAX_IDLE_WRITERS: usize = 1;

type Statement<'q> = sqlx::query::Query<'q, Any, AnyArguments>;

/// The idle direct connections of one SQLite index.
#[derive(Debug)]
pub(crate) struct DirectConnections {
    pool: AnyPool,
    idle: Mutex<Vec<AnyConnection>>,
    /// Writes (one at a time in practice: the audit appends are serialised) keep to one
    /// connection of their own. Every commit makes SQLite drop the page cache of each other
    /// connection of the database at its next statement; the writer's own stays warm
    /// (measured: the one-statement audit append 220–246 → 205–218 µs, three pairs of runs
    /// of exact-name searches).
    idle_writers: Mutex<Vec<AnyConnection>>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Read,
    Write,
}

impl DirectConnections {
    pub(crate) fn new(pool: AnyPool) -> Self {
        DirectConnections {
            pool,
            idle: Mutex::new(Vec::new()),
            idle_writers: Mutex::new(Vec::new()),
        }
    }

    /// Closes the idle connections (the pool's own are closed by `AnyPool::close`).
    pub(crate) async fn close(&self) {
        let mut idle = std::mem::take(&mut *lock(&self.idle));
        idle.append(&mut lock(&self.idle_writers));
        for conn in idle {
            let _ = sqlx::Connection::close(conn).await;
        }
    }

    fn idle(&self, kind: Kind) -> (&Mutex<Vec<AnyConnection>>, usize) {
        match kind {
            Kind::Read => (&self.idle, MAX_IDLE_READERS),
            Kind::Write => (&self.idle_writers, MAX_IDLE_WRITERS),
        }
    }

    async fn take(&self, kind: Kind) -> Result<AnyConnection> {
        let idle = lock(self.idle(kind).0).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => {
                let mut conn = self.pool.acquire().await?.detach();
                // A commit here returns before its fsync, which the caller asks of
                // `Index::sync` (see `wal_sync`): the audit entry of a read is committed
                // before the data goes out, and made durable while it does.
                sqlx::Executor::execute(&mut conn, "PRAGMA synchronous=NORMAL").await?;
                Ok(conn)
            }
        }
    }

    fn put_back(&self, kind: Kind, conn: AnyConnection) {
        let (idle, max) = self.idle(kind);
        let mut idle = lock(idle);
        if idle.len() < max {
            idle.push(conn);
        }
    }

    pub(crate) async fn fetch_all(&self, q: Statement<'_>) -> Result<Vec<AnyRow>> {
        let mut lease = Lease::new(self, Kind::Read).await?;
        let rows = q.fetch_all(lease.conn()).await?;
        lease.done();
        Ok(rows)
    }

    pub(crate) async fn fetch_optional(&self, q: Statement<'_>) -> Result<Option<AnyRow>> {
        let mut lease = Lease::new(self, Kind::Read).await?;
        let row = q.fetch_optional(lease.conn()).await?;
        lease.done();
        Ok(row)
    }

    /// A write; rows affected.
    pub(crate) async fn execute(&self, q: Statement<'_>) -> Result<u64> {
        let mut lease = Lease::new(self, Kind::Write).await?;
        let done = q.execute(lease.conn()).await?;
        lease.done();
        Ok(done.rows_affected())
    }
}

/// A connection out of the idle list for one statement: put back when dropped after
/// `done`, closed when dropped before (the statement failed, or was cut short).
struct Lease<'a> {
    home: &'a DirectConnections,
    kind: Kind,
    conn: Option<AnyConnection>,
    done: bool,
}

impl<'a> Lease<'a> {
    async fn new(home: &'a DirectConnections, kind: Kind) -> Result<Self> {
        Ok(Lease {
            home,
            kind,
            conn: Some(home.take(kind).await?),
            done: false,
        })
    }

    fn conn(&mut self) -> &mut AnyConnection {
        self.conn
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }

    fn done(&mut self) {
        self.done = true;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // Closing (dropping) a connection lets its worker thread finish what it was
        // doing and exit.
        if let Some(conn) = self.conn.take()
            && self.done
        {
            self.home.put_back(self.kind, conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;

    /// Idle connections: (for reads, for writes).
    fn idle(index: &Index) -> (usize, usize) {
        let direct = index.direct.as_ref().expect("SQLite");
        (lock(&direct.idle).len(), lock(&direct.idle_writers).len())
    }

    /// A connection comes back after its statement, and not after a failed or cut-short
    /// one; writes keep to a connection of their own; the answers are those of the pool.
    #[tokio::test(flavor = "multi_thread")]
    async fn connections_come_back_only_after_a_whole_statement() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("index.db").display());
        let index = Index::open(&url).await.unwrap();
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
        assert!(dup.is_err(), "clinic names are unique");
        assert_eq!(idle(&index), (1, 0));
        // A failed statement: its connection is closed, not put back.
        let err = index
            .fetch_all_alone(sqlx::query("SELECT * FROM no_such_table"))
            .await;
        assert!(err.is_err());
        assert_eq!(idle(&index), (0, 0));
        // A statement whose caller goes away: closed too.
        let slow = index.fetch_all_alone(sqlx::query(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10000000) \
             SELECT MAX(x) FROM n",
        ));
        let cut = tokio::time::timeout(std::time::Duration::from_millis(5), slow).await;
        assert!(cut.is_err(), "the statement takes longer than 5 ms");
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
}
