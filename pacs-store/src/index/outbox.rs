//! Appending to the event outbox (`events`), the one way every module records an event.
//!
//! Readers follow the outbox by id (`id > cursor`): the worklist router, the live feed and
//! delivery must never skip an event. On SQLite writers are serialised, so events commit in
//! id order. On PostgreSQL the ids come from a sequence when the row is inserted, and two
//! transactions can commit in the other order: a reader could see id 10, move its cursor
//! past it, and never see id 9 committed a moment later. So on PostgreSQL a transaction
//! takes a transaction-scoped advisory lock ([`OUTBOX_LOCK`]) before it appends: appenders
//! queue for it, hold it to their commit, and ids become visible in order.
//!
//! Callers append their events last in their transaction (after their other writes), so
//! that the lock is held for the commit only and never while waiting for a row lock that
//! another appender holds.

use sqlx::{Any, Transaction};

use crate::Result;

/// The advisory lock key that orders PostgreSQL's outbox appends ("PACSOUTB").
const OUTBOX_LOCK: i64 = 0x5041_4353_4f55_5442;

/// Which study an event is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EventStudy<'a> {
    Uid(&'a str),
    /// The `studies.id` of the study.
    Ref(i64),
}

/// An event to append.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewEvent<'a> {
    pub kind: &'a str,
    pub study: EventStudy<'a>,
    pub sop_instance_uid: Option<&'a str>,
    pub payload: &'a serde_json::Value,
    pub created_at: i64,
}

/// Appends `events` to the outbox within `tx` (see the module docs for the ordering).
pub(crate) async fn append(
    tx: &mut Transaction<'static, Any>,
    events: &[NewEvent<'_>],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(OUTBOX_LOCK)
            .execute(&mut **tx)
            .await?;
    }
    for e in events {
        let payload = e.payload.to_string();
        let q = match e.study {
            EventStudy::Uid(uid) => sqlx::query(
                "INSERT INTO events (kind, study_instance_uid, sop_instance_uid, payload, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(e.kind)
            .bind(uid)
            .bind(e.sop_instance_uid)
            .bind(payload)
            .bind(e.created_at),
            EventStudy::Ref(study_ref) => sqlx::query(
                "INSERT INTO events (kind, study_instance_uid, sop_instance_uid, payload, created_at) \
                 SELECT $1, study_instance_uid, $2, $3, $4 FROM studies WHERE id = $5",
            )
            .bind(e.kind)
            .bind(e.sop_instance_uid)
            .bind(payload)
            .bind(e.created_at)
            .bind(study_ref),
        };
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// [`append`] of one event.
pub(crate) async fn append_one(
    tx: &mut Transaction<'static, Any>,
    kind: &str,
    study: EventStudy<'_>,
    payload: &serde_json::Value,
    created_at: i64,
) -> Result<()> {
    append(
        tx,
        &[NewEvent {
            kind,
            study,
            sop_instance_uid: None,
            payload,
            created_at,
        }],
    )
    .await
}
