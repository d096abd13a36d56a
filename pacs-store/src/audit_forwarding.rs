//! Where forwarding of the audit trail stands, per destination: the cursor of an
//! at-least-once, in-order copy of `audit_log` to somewhere else (the syslog forwarder of
//! the `pacs` binary, IHE ATNA).
//!
//! The forwarder reads [`Index::audit_entries_after`] its cursor, sends them, and only then
//! moves the cursor ([`Index::set_forward_cursor`]); after a crash or a lost connection it
//! starts again from the cursor, so an entry may be sent twice but is never skipped. The
//! ids of the chain are contiguous and assigned in commit order under the append lock
//! (see [`crate::audit`]), so "after id N" never misses an entry committed later with a
//! smaller id.

use sqlx::Row;

use crate::Result;
use crate::audit::{AuditRecord, audit_columns, record_from_row};
use crate::index::{Index, now_micros};

/// Entries read at most per call.
pub const MAX_ENTRIES_PER_READ: i64 = 10_000;

impl Index {
    /// The audit entries with an id above `after`, oldest first, at most `limit` (1 …
    /// [`MAX_ENTRIES_PER_READ`]).
    pub async fn audit_entries_after(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(limit.clamp(1, MAX_ENTRIES_PER_READ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// The id of the last audit entry (0 when the trail is empty).
    pub async fn last_audit_id(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM audit_log")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The id of the last entry handed to `destination` (0 for a new destination: it gets
    /// the whole trail).
    pub async fn forward_cursor(&self, destination: &str) -> Result<i64> {
        let row = sqlx::query("SELECT last_id FROM audit_forwarding WHERE destination = $1")
            .bind(destination)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => r.try_get(0)?,
            None => 0,
        })
    }

    /// Records that the entries up to `last_id` were handed to `destination`.
    pub async fn set_forward_cursor(&self, destination: &str, last_id: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_forwarding (destination, last_id, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (destination) DO UPDATE SET last_id = excluded.last_id, \
             updated_at = excluded.updated_at",
        )
        .bind(destination)
        .bind(last_id)
        .bind(now_micros())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, AuditEvent, EventId, roles};

    async fn exercise(index: &Index) {
        assert_eq!(index.last_audit_id().await.unwrap(), 0);
        assert!(index.audit_entries_after(0, 10).await.unwrap().is_empty());
        for i in 0..7 {
            let e = AuditEvent::new(
                EventId::UserAuthentication,
                Action::Execute,
                format!("user-{i}"),
                roles::OPERATOR,
            );
            index.audit(e).await.unwrap();
        }
        assert_eq!(index.last_audit_id().await.unwrap(), 7);
        let first = index.audit_entries_after(0, 3).await.unwrap();
        assert_eq!(first.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(first[1].user, "user-1");
        assert_eq!(first[1].compute_hash(), first[1].hash);
        let rest = index.audit_entries_after(3, 500).await.unwrap();
        assert_eq!(rest.iter().map(|r| r.id).collect::<Vec<_>>(), [4, 5, 6, 7]);
        assert_eq!(rest[0].prev_hash, first[2].hash);
        assert!(index.audit_entries_after(7, 500).await.unwrap().is_empty());

        // Cursors: 0 when new, per destination, moved and kept.
        assert_eq!(
            index.forward_cursor("syslog.example:6514").await.unwrap(),
            0
        );
        index
            .set_forward_cursor("syslog.example:6514", 3)
            .await
            .unwrap();
        index.set_forward_cursor("other:6514", 7).await.unwrap();
        index
            .set_forward_cursor("syslog.example:6514", 5)
            .await
            .unwrap();
        assert_eq!(
            index.forward_cursor("syslog.example:6514").await.unwrap(),
            5
        );
        assert_eq!(index.forward_cursor("other:6514").await.unwrap(), 7);
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM audit_forwarding")
            .fetch_one(index.pool())
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        assert_eq!(n, 2);
    }

    #[tokio::test]
    async fn entries_and_cursors_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("index.db").display());
        let index = Index::open(&url).await.unwrap();
        exercise(&index).await;
        index.close().await;
        // The cursor survives a reopen.
        let index = Index::open(&url).await.unwrap();
        assert_eq!(index.forward_cursor("other:6514").await.unwrap(), 7);
        index.close().await;
    }

    /// The PostgreSQL migration applies and behaves the same (a fresh database on the
    /// suite's server).
    #[tokio::test]
    async fn entries_and_cursors_postgres() {
        let Some(url) = crate::test_postgres::fresh_database("audit forwarding").await else {
            return;
        };
        let index = Index::open(&url).await.unwrap();
        exercise(&index).await;
        index.close().await;
        crate::test_postgres::drop_database(&url).await;
    }
}
