//! Study readiness, the event outbox and counts.

use std::time::Duration;

use sqlx::Row;

use super::outbox::{self, EventStudy};
use super::{Index, now_micros};
use crate::Result;

/// A study that became ready to read (or ready again after late images).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReadyStudy {
    pub study_instance_uid: String,
    /// False the first time a study becomes ready; true when late images re-opened it.
    pub updated: bool,
    pub number_of_instances: i64,
}

/// One outbox event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub kind: String,
    pub study_instance_uid: String,
    pub sop_instance_uid: Option<String>,
    pub payload: serde_json::Value,
    pub created_at: i64,
}

/// What the archive holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexStats {
    pub patients: i64,
    pub studies: i64,
    pub series: i64,
    pub instances: i64,
    pub bytes: i64,
    pub conflicts: i64,
}

impl Index {
    /// Marks ready every study that has received nothing for `quiet`, and records a
    /// `study_ready` (first time) or `study_updated` (late images) event for each, in the
    /// same transaction. Safe to run on several nodes at once: the conditional UPDATE lets
    /// only one of them flip a given study.
    pub async fn mark_ready_studies(&self, quiet: Duration) -> Result<Vec<ReadyStudy>> {
        let now = now_micros();
        let cutoff = now - quiet.as_micros() as i64;
        let mut tx = self.pool().begin().await?;
        let rows = sqlx::query(
            "UPDATE studies SET state = 'ready', ready_at = $1, ready_count = ready_count + 1 \
             WHERE state = 'receiving' AND last_received_at <= $2 \
             RETURNING study_instance_uid, ready_count, number_of_instances",
        )
        .bind(now)
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let uid: String = r.try_get(0)?;
            let count: i64 = r.try_get(1)?;
            let n: i64 = r.try_get(2)?;
            let updated = count > 1;
            out.push(ReadyStudy {
                study_instance_uid: uid,
                updated,
                number_of_instances: n,
            });
        }
        let payloads: Vec<serde_json::Value> = out
            .iter()
            .map(|r| serde_json::json!({ "number_of_instances": r.number_of_instances }))
            .collect();
        let events: Vec<outbox::NewEvent> = out
            .iter()
            .zip(&payloads)
            .map(|(r, payload)| outbox::NewEvent {
                kind: if r.updated {
                    "study_updated"
                } else {
                    "study_ready"
                },
                study: EventStudy::Uid(&r.study_instance_uid),
                sop_instance_uid: None,
                payload,
                created_at: now,
            })
            .collect();
        outbox::append(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Events with an id greater than `after`, oldest first.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT id, kind, study_instance_uid, sop_instance_uid, payload, created_at FROM events \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let payload: String = r.try_get(4)?;
                Ok(EventRecord {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    study_instance_uid: r.try_get(2)?,
                    sop_instance_uid: r.try_get(3)?,
                    payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                    created_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Counts of what the archive holds.
    pub async fn stats(&self) -> Result<IndexStats> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM patients), (SELECT COUNT(*) FROM studies), \
                    (SELECT COUNT(*) FROM series), (SELECT COUNT(*) FROM instances), \
                    (SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM instances), \
                    (SELECT COUNT(*) FROM instance_conflicts)",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(IndexStats {
            patients: r.try_get(0)?,
            studies: r.try_get(1)?,
            series: r.try_get(2)?,
            instances: r.try_get(3)?,
            bytes: r.try_get(4)?,
            conflicts: r.try_get(5)?,
        })
    }

    /// The state of one study (`receiving` or `ready`), if known.
    pub async fn study_state(&self, study_instance_uid: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT state FROM studies WHERE study_instance_uid = $1")
            .bind(study_instance_uid)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }
}
