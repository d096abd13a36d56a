//! The live feed: outbox events as the workstation and the clinic portal receive them,
//! each with its audience, so that one reader of the outbox can serve every connected
//! client and each client gets only what it may see ([`crate::access::Audience`]).
//!
//! Only these kinds are sent: the worklist's (`task_*`), the reports' (`report_signed`,
//! `report_amended`, `critical_finding`, `preliminary_saved`), the studies'
//! (`study_ready`, `study_updated`) and delivery's (`delivery_*`). Per-instance events stay
//! in the outbox.

use sqlx::Row as _;

use crate::Result;
use crate::access::Audience;
use crate::index::Index;

/// An event as clients receive it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LiveEvent {
    /// Increasing: a client that reconnects asks for the events after the last it got.
    pub id: i64,
    pub kind: String,
    pub study_instance_uid: String,
    pub payload: serde_json::Value,
    /// Unix microseconds.
    pub created_at: i64,
}

/// The kinds of events sent live (SQL `LIKE` patterns).
const LIVE_KINDS: &str = "(e.kind LIKE 'task\\_%' ESCAPE '\\' OR e.kind LIKE 'delivery\\_%' ESCAPE '\\' \
     OR e.kind IN ('report_signed', 'report_amended', 'critical_finding', 'preliminary_saved', \
     'critical_acknowledged', 'critical_unacknowledged', \
     'study_ready', 'study_updated'))";

impl Index {
    /// Live events after `after`, oldest first, at most `limit`, each with its audience.
    pub async fn live_events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(LiveEvent, Audience)>> {
        let sql = format!(
            "SELECT e.id, e.kind, e.study_instance_uid, e.payload, e.created_at, s.id, s.clinic_id \
             FROM events e LEFT JOIN studies s ON s.study_instance_uid = e.study_instance_uid \
             WHERE e.id > $1 AND {LIVE_KINDS} ORDER BY e.id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(limit.clamp(1, 10_000))
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let payload: String = r.try_get(3)?;
            let study_ref: Option<i64> = r.try_get(5)?;
            let event = LiveEvent {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                study_instance_uid: r.try_get(2)?,
                payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                created_at: r.try_get(4)?,
            };
            let audience = match study_ref {
                Some(study_ref) => self.audience(study_ref, r.try_get(6)?).await?,
                None => Audience::default(),
            };
            out.push((event, audience));
        }
        Ok(out)
    }

    /// The newest event id (where a client that wants only new events starts).
    pub async fn last_event_id(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM events")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Who may see events of study `study_ref` now: its clinic, the radiologists it is
    /// assigned to (and so those of the patient's other studies, who see it as a prior),
    /// those its tasks are routed to or claimed by, and every radiologist while one of its
    /// tasks is in the pool.
    async fn audience(&self, study_ref: i64, clinic_id: Option<i64>) -> Result<Audience> {
        let mut radiologists: Vec<i64> = sqlx::query(
            "SELECT a.user_id FROM study_assignments a JOIN studies s2 ON s2.id = a.study_ref \
             WHERE a.revoked_at IS NULL AND s2.patient_ref = (SELECT patient_ref FROM studies WHERE id = $1) \
             UNION SELECT assigned_to FROM reading_tasks WHERE study_ref = $1 AND assigned_to IS NOT NULL \
             UNION SELECT claimed_by FROM reading_tasks WHERE study_ref = $1 AND claimed_by IS NOT NULL",
        )
        .bind(study_ref)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
        radiologists.sort_unstable();
        radiologists.dedup();
        let pool = sqlx::query(
            "SELECT 1 FROM reading_tasks WHERE study_ref = $1 AND assigned_to IS NULL \
             AND state IN ('open', 'claimed')",
        )
        .bind(study_ref)
        .fetch_optional(self.pool())
        .await?
        .is_some();
        Ok(Audience {
            clinic_id,
            radiologists,
            pool,
        })
    }
}
