//! The reading worklist: a task per study ready to read, routed to a radiologist, claimed
//! with an expiring lease (migration 0011).
//!
//! - **Exactly once.** [`Index::route_ready_studies`] consumes the event outbox after the
//!   cursor of consumer [`CONSUMER`]: a `study_ready` event creates a `read` task; a
//!   `study_updated` event (late images) creates an `addendum-review` task when the study's
//!   reading is already done. The task carries its event's id (unique) and the cursor moves
//!   in the same transaction, so a restart, or a second node, never makes a second task.
//! - **Routing.** Rules are ordered; the first enabled rule whose conditions all hold
//!   (modality among the study's, body part among the study's, words of the description,
//!   clinic, priority; empty = any) names the eligible radiologists: enabled, with the
//!   rule's subspecialty if it has one, credentialed for one of the study's modalities
//!   (or for all, when they have no credentials), on shift now (or always, without
//!   shifts). Among them the one with the fewest open tasks gets it (ties: the lowest id).
//!   A matching rule without an eligible radiologist gives way to the next matching rule;
//!   when none is left the task waits in the pool. Routing writes the study assignment
//!   that lets the radiologist open the study and its priors (`crate::access`).
//! - **Priority and deadlines.** From the study's Requested Procedure Priority (STAT →
//!   stat, HIGH → urgent, anything else → routine), unless the rule sets one; due at ready
//!   time + the priority's turnaround ([`WorklistPolicy`]). [`Index::escalate_tasks`]
//!   raises `task_due_soon` once when a deadline is near and `task_overdue` once when it
//!   has passed.
//! - **Claims.** [`Index::claim_task`] is one conditional UPDATE: it succeeds only if the
//!   task is open or its lease has run out (or the claimer already holds it, which renews
//!   the lease). Of two radiologists claiming at once — on one node or two — exactly one
//!   wins. [`Index::release_task`], [`Index::reassign_task`], [`Index::return_task_to_pool`]
//!   and [`Index::expire_leases`] complete the life cycle.
//!
//! Every change writes an event to the outbox (`task_created`, `task_claimed`,
//! `task_released`, `task_reassigned`, `task_due_soon`, `task_overdue`) in its own
//! transaction, for the live feed. Times are passed in (Unix microseconds) so that tests
//! control the clock.

mod rules;

use std::time::Duration;

use sqlx::{Any, Row as _, Transaction};

use crate::index::outbox::{self, EventStudy};
use crate::index::{Index, split_values};
use crate::{Result, StoreError};

pub use rules::{ReadingProfile, RoutingRule, Shift};

/// The outbox consumer name of the worklist.
pub const CONSUMER: &str = "worklist";

/// How urgent a reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Stat,
    Urgent,
    Routine,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Stat => "stat",
            Priority::Urgent => "urgent",
            Priority::Routine => "routine",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stat" => Some(Priority::Stat),
            "urgent" => Some(Priority::Urgent),
            "routine" => Some(Priority::Routine),
            _ => None,
        }
    }

    /// From (0040,1003) Requested Procedure Priority: STAT, HIGH, ROUTINE, MEDIUM, LOW.
    pub fn from_requested(value: Option<&str>) -> Priority {
        match value.map(|v| v.trim().to_ascii_uppercase()).as_deref() {
            Some("STAT") => Priority::Stat,
            Some("HIGH") => Priority::Urgent,
            _ => Priority::Routine,
        }
    }
}

/// Turnaround deadlines, the share of a deadline left when "due soon" is raised, and the
/// claim lease.
#[derive(Debug, Clone)]
pub struct WorklistPolicy {
    pub stat: Duration,
    pub urgent: Duration,
    pub routine: Duration,
    /// "Due soon" when less than this fraction of the turnaround is left.
    pub due_soon_fraction: f64,
    pub lease: Duration,
    /// How long the originating clinic has to acknowledge a critical finding before it is
    /// escalated.
    pub critical_ack: Duration,
}

impl Default for WorklistPolicy {
    fn default() -> Self {
        WorklistPolicy {
            stat: Duration::from_secs(30 * 60),
            urgent: Duration::from_secs(4 * 3600),
            routine: Duration::from_secs(24 * 3600),
            due_soon_fraction: 0.25,
            lease: Duration::from_secs(10 * 60),
            critical_ack: Duration::from_secs(60 * 60),
        }
    }
}

impl WorklistPolicy {
    pub fn turnaround(&self, p: Priority) -> Duration {
        match p {
            Priority::Stat => self.stat,
            Priority::Urgent => self.urgent,
            Priority::Routine => self.routine,
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A task as the worklist shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Task {
    pub id: i64,
    pub study_instance_uid: String,
    pub clinic_id: Option<i64>,
    /// `read` or `addendum-review`.
    pub kind: String,
    pub priority: Priority,
    /// `open`, `claimed`, `done` or `cancelled`.
    pub state: String,
    pub rule: Option<String>,
    pub assigned_to: Option<i64>,
    pub claimed_by: Option<i64>,
    pub lease_expires_at: Option<i64>,
    pub ready_at: i64,
    pub due_at: i64,
}

/// What [`Index::route_ready_studies`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The tasks created.
    pub created: Vec<i64>,
    /// `study_ready` / `study_updated` events read (fewer than the batch: none are left).
    pub read: usize,
}

/// What a claim did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the task until `lease_expires_at`.
    Held { lease_expires_at: i64 },
    /// Someone else holds it.
    HeldByOther { user_id: i64, lease_expires_at: i64 },
    /// The task is routed to another radiologist (an administrator can reassign it).
    RoutedToOther { user_id: i64 },
    /// The task is done or cancelled.
    Closed,
}

/// A study as routing sees it.
#[derive(Debug, Clone)]
struct StudyFacts {
    id: i64,
    clinic_id: Option<i64>,
    modalities: Vec<String>,
    body_parts: Vec<String>,
    description: String,
    priority: Priority,
}

#[derive(Debug, Clone)]
struct Rule {
    id: i64,
    modality: Option<String>,
    body_part: Option<String>,
    description_contains: Option<String>,
    clinic_id: Option<i64>,
    priority: Option<String>,
    subspecialty: Option<String>,
    set_priority: Option<String>,
}

impl Rule {
    fn matches(&self, s: &StudyFacts) -> bool {
        let eq = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
        self.modality
            .as_deref()
            .is_none_or(|m| s.modalities.iter().any(|x| eq(x, m)))
            && self
                .body_part
                .as_deref()
                .is_none_or(|b| s.body_parts.iter().any(|x| eq(x, b)))
            && self.description_contains.as_deref().is_none_or(|d| {
                s.description
                    .to_lowercase()
                    .contains(&d.trim().to_lowercase())
            })
            && self.clinic_id.is_none_or(|c| s.clinic_id == Some(c))
            && self
                .priority
                .as_deref()
                .is_none_or(|p| Priority::parse(p) == Some(s.priority))
    }
}

#[derive(Debug, Clone)]
struct Radiologist {
    id: i64,
    subspecialties: Vec<String>,
    credentials: Vec<String>,
    /// (start, end) minutes of the week, UTC.
    shifts: Vec<(i64, i64)>,
    open_tasks: i64,
}

impl Radiologist {
    fn eligible(&self, rule: &Rule, study: &StudyFacts, minute_of_week: i64) -> bool {
        let sub_ok = rule.subspecialty.as_deref().is_none_or(|want| {
            self.subspecialties
                .iter()
                .any(|s| s.eq_ignore_ascii_case(want))
        });
        let cred_ok = self.credentials.is_empty()
            || self
                .credentials
                .iter()
                .any(|c| study.modalities.iter().any(|m| m.eq_ignore_ascii_case(c)));
        let shift_ok = self.shifts.is_empty()
            || self.shifts.iter().any(|&(start, end)| {
                if start <= end {
                    (start..end).contains(&minute_of_week)
                } else {
                    // Across the end of the week (Sunday night into Monday).
                    minute_of_week >= start || minute_of_week < end
                }
            });
        sub_ok && cred_ok && shift_ok
    }
}

/// The UTC minute of the week (0 = Monday 00:00) of `micros` since the Unix epoch (a
/// Thursday).
pub fn minute_of_week(micros: i64) -> i64 {
    let minutes = micros.div_euclid(60_000_000);
    // 1970-01-01 was a Thursday: 3 days after a Monday.
    (minutes + 3 * 24 * 60).rem_euclid(7 * 24 * 60)
}

const TASK_COLUMNS: &str = "t.id, s.study_instance_uid, t.clinic_id, t.kind, t.priority, t.state, \
     r.name, t.assigned_to, t.claimed_by, t.lease_expires_at, t.ready_at, t.due_at";

fn task_from(r: &sqlx::any::AnyRow) -> Result<Task> {
    let priority: String = r.try_get(4)?;
    Ok(Task {
        id: r.try_get(0)?,
        study_instance_uid: r.try_get(1)?,
        clinic_id: r.try_get(2)?,
        kind: r.try_get(3)?,
        priority: Priority::parse(&priority).unwrap_or(Priority::Routine),
        state: r.try_get(5)?,
        rule: r.try_get(6)?,
        assigned_to: r.try_get(7)?,
        claimed_by: r.try_get(8)?,
        lease_expires_at: r.try_get(9)?,
        ready_at: r.try_get(10)?,
        due_at: r.try_get(11)?,
    })
}

async fn task_event(
    tx: &mut Transaction<'static, Any>,
    kind: &str,
    task_id: i64,
    now: i64,
    detail: serde_json::Value,
) -> Result<()> {
    let row = sqlx::query(
        "SELECT s.study_instance_uid, t.clinic_id, t.priority, t.assigned_to, t.claimed_by, t.due_at \
         FROM reading_tasks t JOIN studies s ON s.id = t.study_ref WHERE t.id = $1",
    )
    .bind(task_id)
    .fetch_one(&mut **tx)
    .await?;
    let mut payload = serde_json::json!({
        "task_id": task_id,
        "clinic_id": row.try_get::<Option<i64>, _>(1)?,
        "priority": row.try_get::<String, _>(2)?,
        "assigned_to": row.try_get::<Option<i64>, _>(3)?,
        "claimed_by": row.try_get::<Option<i64>, _>(4)?,
        "due_at": row.try_get::<i64, _>(5)?,
    });
    if let (Some(p), serde_json::Value::Object(extra)) = (payload.as_object_mut(), detail) {
        p.extend(extra);
    }
    let study: String = row.try_get(0)?;
    outbox::append_one(tx, kind, EventStudy::Uid(&study), &payload, now).await
}

/// Gives `user` the study (so the access policy lets them open it and its priors), unless
/// they already have it.
async fn assign_study(
    tx: &mut Transaction<'static, Any>,
    study_ref: i64,
    user: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO study_assignments (study_ref, user_id, assigned_at) \
         SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM study_assignments \
           WHERE study_ref = $1 AND user_id = $2 AND revoked_at IS NULL)",
    )
    .bind(study_ref)
    .bind(user)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Index {
    /// Creates the tasks of the outbox's `study_ready` / `study_updated` events after the
    /// worklist's cursor, reading at most `batch` of those events (other kinds are skipped
    /// in SQL); returns the ids of the tasks created and how many such events were read
    /// (fewer than `batch`: none are left).
    pub async fn route_ready_studies(
        &self,
        policy: &WorklistPolicy,
        now: i64,
        batch: i64,
    ) -> Result<Routed> {
        // One transaction for the batch: the rules and the radiologists' loads are read once
        // and kept current in memory as tasks are given out; the outbox is read only for the
        // kinds that make tasks, up to the newest event committed (ids commit in order, see
        // `index::outbox`), so the `instance_stored` events in between cost nothing.
        let mut tx = self.begin_write().await?;
        let cursor: i64 =
            sqlx::query("SELECT last_event_id FROM outbox_cursors WHERE consumer = $1")
                .bind(CONSUMER)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?
                .unwrap_or(0);
        let newest: Option<i64> = sqlx::query("SELECT MAX(id) FROM events")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let Some(newest) = newest.filter(|&n| n > cursor) else {
            tx.rollback().await?;
            return Ok(Routed {
                created: Vec::new(),
                read: 0,
            });
        };
        let rows = sqlx::query(
            "SELECT id, kind, study_instance_uid, created_at FROM events \
             WHERE id > $1 AND id <= $2 AND kind IN ('study_ready', 'study_updated') \
             ORDER BY id LIMIT $3",
        )
        .bind(cursor)
        .bind(newest)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let read = rows.len();
        // A full batch may have more after it; otherwise everything up to `newest` is done.
        let last = if (read as i64) < batch {
            newest
        } else {
            rows.last()
                .map(|r| r.try_get(0))
                .transpose()?
                .unwrap_or(newest)
        };
        let mut routing = None;
        let mut created = Vec::new();
        let mut events = Vec::new();
        for r in &rows {
            let (id, kind, uid, ready_at): (i64, String, String, i64) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            let task_kind = match kind.as_str() {
                "study_ready" => "read",
                // Images after a signed report: the radiologist reviews them for an addendum.
                _ if study_reported(&mut tx, &uid).await? => "addendum-review",
                _ => continue,
            };
            let routing = match &mut routing {
                Some(r) => r,
                None => routing.insert(Routing::load(&mut tx).await?),
            };
            let Some(task) =
                create_task(&mut tx, policy, routing, id, &uid, task_kind, ready_at, now).await?
            else {
                continue;
            };
            created.push(task.id);
            events.push((uid, task.payload));
        }
        // The tasks' events last, as `index::outbox` asks.
        let new_events: Vec<outbox::NewEvent<'_>> = events
            .iter()
            .map(|(uid, payload)| outbox::NewEvent {
                kind: "task_created",
                study: EventStudy::Uid(uid),
                sop_instance_uid: None,
                payload,
                created_at: now,
            })
            .collect();
        outbox::append(&mut tx, &new_events).await?;
        sqlx::query(
            "INSERT INTO outbox_cursors (consumer, last_event_id) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET last_event_id = CASE \
               WHEN excluded.last_event_id > outbox_cursors.last_event_id \
               THEN excluded.last_event_id ELSE outbox_cursors.last_event_id END",
        )
        .bind(CONSUMER)
        .bind(last)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Routed { created, read })
    }

    /// One task.
    pub async fn task(&self, task_id: i64) -> Result<Option<Task>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM reading_tasks t JOIN studies s ON s.id = t.study_ref \
             LEFT JOIN routing_rules r ON r.id = t.rule_id WHERE t.id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(task_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(task_from).transpose()
    }

    /// Whether `scope` may see task `task_id` (the worklist's rule of `crate::access`).
    pub async fn task_visible(&self, scope: crate::access::Scope, task_id: i64) -> Result<bool> {
        use crate::query::{Bind, Sql};
        let mut sql = Sql::new(scope);
        sql.push("SELECT 1 FROM reading_tasks t WHERE ");
        sql.push(crate::access::task_in_scope!("$1", "$2"));
        sql.push(" AND t.id = ");
        sql.bind(Bind::Int(task_id));
        Ok(sql.build().fetch_optional(self.pool()).await?.is_some())
    }

    /// Open and claimed tasks routed to `user` or claimed by them, most urgent first.
    pub async fn tasks_of(&self, user: i64) -> Result<Vec<Task>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM reading_tasks t JOIN studies s ON s.id = t.study_ref \
             LEFT JOIN routing_rules r ON r.id = t.rule_id \
             WHERE t.state IN ('open', 'claimed') AND (t.assigned_to = $1 OR t.claimed_by = $1) \
             ORDER BY CASE t.priority WHEN 'stat' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END, t.due_at, t.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(task_from).collect()
    }

    /// Claims `task_id` for `user` (or renews their lease): see [`Claim`].
    pub async fn claim_task(
        &self,
        policy: &WorklistPolicy,
        task_id: i64,
        user: i64,
        now: i64,
    ) -> Result<Claim> {
        let until = now.saturating_add(micros(policy.lease));
        let mut tx = self.begin_write().await?;
        let won = sqlx::query(
            "UPDATE reading_tasks SET state = 'claimed', claimed_by = $1, lease_expires_at = $2, \
               updated_at = $3 \
             WHERE id = $4 AND (assigned_to IS NULL OR assigned_to = $1 OR claimed_by = $1) \
               AND (state = 'open' OR (state = 'claimed' AND \
               (claimed_by = $1 OR lease_expires_at <= $3))) \
             RETURNING study_ref",
        )
        .bind(user)
        .bind(until)
        .bind(now)
        .bind(task_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = won else {
            tx.rollback().await?;
            let current = sqlx::query(
                "SELECT state, claimed_by, lease_expires_at, assigned_to FROM reading_tasks WHERE id = $1",
            )
            .bind(task_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("reading task {task_id}")))?;
            let state: String = current.try_get(0)?;
            let assigned_to: Option<i64> = current.try_get(3)?;
            let claimed_by: Option<i64> = current.try_get(1)?;
            let lease: Option<i64> = current.try_get(2)?;
            return Ok(match (state.as_str(), claimed_by, lease) {
                ("done" | "cancelled", _, _) => Claim::Closed,
                ("claimed", Some(user_id), Some(lease_expires_at)) if user_id != user => {
                    Claim::HeldByOther {
                        user_id,
                        lease_expires_at,
                    }
                }
                _ => match assigned_to {
                    Some(other) if other != user => Claim::RoutedToOther { user_id: other },
                    _ => Claim::Closed,
                },
            });
        };
        assign_study(&mut tx, row.try_get(0)?, user, now).await?;
        task_event(&mut tx, "task_claimed", task_id, now, serde_json::json!({})).await?;
        tx.commit().await?;
        Ok(Claim::Held {
            lease_expires_at: until,
        })
    }

    /// Gives back a task `user` holds: open again, still routed to whom it was.
    pub async fn release_task(&self, task_id: i64, user: i64, now: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE reading_tasks SET state = 'open', claimed_by = NULL, lease_expires_at = NULL, \
               updated_at = $1 WHERE id = $2 AND state = 'claimed' AND claimed_by = $3",
        )
        .bind(now)
        .bind(task_id)
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            task_event(
                &mut tx,
                "task_released",
                task_id,
                now,
                serde_json::json!({ "reason": "released" }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Releases every claim whose lease ran out; returns the tasks released.
    pub async fn expire_leases(&self, now: i64) -> Result<Vec<i64>> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "UPDATE reading_tasks SET state = 'open', claimed_by = NULL, lease_expires_at = NULL, \
               updated_at = $1 WHERE state = 'claimed' AND lease_expires_at <= $1 RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get(0)?;
            task_event(
                &mut tx,
                "task_released",
                id,
                now,
                serde_json::json!({ "reason": "lease expired" }),
            )
            .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Routes an open or claimed task to `to` (a radiologist), ending any claim; the new
    /// radiologist gets the study.
    pub async fn reassign_task(&self, task_id: i64, to: i64, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let is_radiologist = sqlx::query(
            "SELECT 1 FROM users WHERE id = $1 AND role = 'radiologist' AND disabled_at IS NULL",
        )
        .bind(to)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if !is_radiologist {
            return Err(StoreError::Invalid(
                "tasks go to enabled radiologists only".into(),
            ));
        }
        let row = sqlx::query(
            "UPDATE reading_tasks SET state = 'open', assigned_to = $1, claimed_by = NULL, \
               lease_expires_at = NULL, updated_at = $2 \
             WHERE id = $3 AND state IN ('open', 'claimed') RETURNING study_ref",
        )
        .bind(to)
        .bind(now)
        .bind(task_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("open reading task {task_id}")))?;
        assign_study(&mut tx, row.try_get(0)?, to, now).await?;
        task_event(
            &mut tx,
            "task_reassigned",
            task_id,
            now,
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Puts an open or claimed task back in the pool: routed to nobody, claimed by nobody.
    pub async fn return_task_to_pool(&self, task_id: i64, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE reading_tasks SET state = 'open', assigned_to = NULL, claimed_by = NULL, \
               lease_expires_at = NULL, updated_at = $1 WHERE id = $2 AND state IN ('open', 'claimed')",
        )
        .bind(now)
        .bind(task_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("open reading task {task_id}")));
        }
        task_event(
            &mut tx,
            "task_released",
            task_id,
            now,
            serde_json::json!({ "reason": "returned to the pool" }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Raises `task_due_soon` (once) for open and claimed tasks whose deadline is near and
    /// `task_overdue` (once) for those past it; returns (due soon, overdue) task ids.
    pub async fn escalate_tasks(
        &self,
        policy: &WorklistPolicy,
        now: i64,
    ) -> Result<(Vec<i64>, Vec<i64>)> {
        let mut tx = self.begin_write().await?;
        let overdue_rows = sqlx::query(
            "UPDATE reading_tasks SET overdue_escalated_at = $1 \
             WHERE state IN ('open', 'claimed') AND overdue_escalated_at IS NULL AND due_at <= $1 \
             RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut overdue = Vec::new();
        for r in overdue_rows {
            let id: i64 = r.try_get(0)?;
            task_event(&mut tx, "task_overdue", id, now, serde_json::json!({})).await?;
            overdue.push(id);
        }
        // "Due soon": less than the fraction of its own turnaround left, decided in SQL
        // (in per mille) so that thousands of open tasks are not read every second.
        let per_mille = (policy.due_soon_fraction.clamp(0.0, 1.0) * 1000.0).round() as i64;
        let soon_rows = sqlx::query(
            "UPDATE reading_tasks SET near_escalated_at = $1 \
             WHERE state IN ('open', 'claimed') AND near_escalated_at IS NULL \
               AND overdue_escalated_at IS NULL AND due_at > $1 \
               AND (due_at - $1) * 1000 <= (due_at - ready_at) * $2 \
             RETURNING id",
        )
        .bind(now)
        .bind(per_mille)
        .fetch_all(&mut *tx)
        .await?;
        let mut soon = Vec::new();
        for r in soon_rows {
            let id: i64 = r.try_get(0)?;
            task_event(&mut tx, "task_due_soon", id, now, serde_json::json!({})).await?;
            soon.push(id);
        }
        tx.commit().await?;
        Ok((soon, overdue))
    }
}

/// Which tasks a worklist query shows (always within the caller's scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// Open and claimed tasks routed to or claimed by the caller.
    Mine,
    /// Open tasks routed to nobody.
    Pool,
    /// Open and claimed tasks past their deadline.
    Overdue,
    /// Every open and claimed task (the caller's scope decides which).
    All,
}

/// How a worklist is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Most urgent first, then the nearest deadline (the default).
    #[default]
    Priority,
    /// Nearest deadline first.
    Due,
    /// Oldest ready first.
    Ready,
}

/// A worklist query.
#[derive(Debug, Clone)]
pub struct WorklistQuery {
    pub view: View,
    /// Only tasks of studies with this modality.
    pub modality: Option<String>,
    pub priority: Option<Priority>,
    pub clinic_id: Option<i64>,
    pub sort: Sort,
    pub limit: i64,
    pub offset: i64,
}

/// A row of the worklist: the task and what a reader needs to pick it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorklistItem {
    pub task_id: i64,
    pub kind: String,
    pub priority: String,
    pub state: String,
    pub rule: Option<String>,
    pub study_instance_uid: String,
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub study_date: Option<String>,
    pub study_description: Option<String>,
    pub modalities: Vec<String>,
    pub clinic: Option<String>,
    pub assigned_to: Option<String>,
    pub claimed_by: Option<String>,
    /// Unix microseconds.
    pub lease_expires_at: Option<i64>,
    pub ready_at: i64,
    pub due_at: i64,
    pub overdue: bool,
}

impl Index {
    /// The worklist `scope` may see (`crate::access`): `user` is the caller (for
    /// [`View::Mine`]), `now` decides what is overdue.
    pub async fn worklist(
        &self,
        scope: crate::access::Scope,
        user: i64,
        q: &WorklistQuery,
        now: i64,
    ) -> Result<Vec<WorklistItem>> {
        use crate::query::{Bind, Sql};
        let mut sql = Sql::new(scope);
        sql.push(
            "SELECT t.id, t.kind, t.priority, t.state, r.name, s.study_instance_uid, p.patient_id, \
               p.patient_name, s.study_date, s.study_description, s.modalities_in_study, c.name, \
               ua.username, uc.username, t.lease_expires_at, t.ready_at, t.due_at \
             FROM reading_tasks t JOIN studies s ON s.id = t.study_ref \
             JOIN patients p ON p.id = s.patient_ref \
             LEFT JOIN routing_rules r ON r.id = t.rule_id \
             LEFT JOIN clinics c ON c.id = t.clinic_id \
             LEFT JOIN users ua ON ua.id = t.assigned_to \
             LEFT JOIN users uc ON uc.id = t.claimed_by WHERE ",
        );
        sql.push(crate::access::task_in_scope!("$1", "$2"));
        sql.push(" AND t.state IN ('open', 'claimed')");
        match q.view {
            View::Mine => {
                sql.push(" AND (t.assigned_to = ");
                sql.bind(Bind::Int(user));
                sql.push(" OR t.claimed_by = ");
                sql.bind(Bind::Int(user));
                sql.push(")");
            }
            View::Pool => sql.push(" AND t.assigned_to IS NULL AND t.state = 'open'"),
            View::Overdue => {
                sql.push(" AND t.due_at <= ");
                sql.bind(Bind::Int(now));
            }
            View::All => {}
        }
        if let Some(m) = &q.modality {
            sql.push(
                " AND EXISTS (SELECT 1 FROM series ms WHERE ms.study_ref = s.id AND ms.modality = ",
            );
            sql.text(m.trim().to_ascii_uppercase());
            sql.push(crate::query::END_EXISTS);
        }
        if let Some(p) = q.priority {
            sql.push(" AND t.priority = ");
            sql.text(p.as_str());
        }
        if let Some(c) = q.clinic_id {
            sql.push(" AND t.clinic_id = ");
            sql.bind(Bind::Int(c));
        }
        sql.push(match q.sort {
            Sort::Priority => {
                " ORDER BY CASE t.priority WHEN 'stat' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END, \
                 t.due_at, t.id"
            }
            Sort::Due => " ORDER BY t.due_at, t.id",
            Sort::Ready => " ORDER BY t.ready_at, t.id",
        });
        sql.push_page(q.limit.clamp(1, 1000), q.offset.max(0));
        let rows = sql.build().fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                let modalities: Option<String> = r.try_get(10)?;
                let due_at: i64 = r.try_get(16)?;
                Ok(WorklistItem {
                    task_id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    priority: r.try_get(2)?,
                    state: r.try_get(3)?,
                    rule: r.try_get(4)?,
                    study_instance_uid: r.try_get(5)?,
                    patient_id: r.try_get(6)?,
                    patient_name: r.try_get(7)?,
                    study_date: r.try_get(8)?,
                    study_description: r.try_get(9)?,
                    modalities: split_values(modalities.as_deref()),
                    clinic: r.try_get(11)?,
                    assigned_to: r.try_get(12)?,
                    claimed_by: r.try_get(13)?,
                    lease_expires_at: r.try_get(14)?,
                    ready_at: r.try_get(15)?,
                    due_at,
                    overdue: due_at <= now,
                })
            })
            .collect()
    }
}

/// Creates the task of event `event_id` for study `uid`, routed; `None` when the event
/// already made one (another node, or before a restart) or the study is unknown.
/// The routing rules and the radiologists, read once per routing batch; each radiologist's
/// open-task count grows as the batch gives them tasks.
struct Routing {
    rules: Vec<Rule>,
    radiologists: Vec<Radiologist>,
}

impl Routing {
    async fn load(tx: &mut Transaction<'static, Any>) -> Result<Routing> {
        Ok(Routing {
            rules: routing_rules(tx).await?,
            radiologists: radiologists(tx).await?,
        })
    }
}

/// A task just created, with the payload of its `task_created` event.
struct NewTask {
    id: i64,
    payload: serde_json::Value,
}

/// Whether study `uid` has a signed report (a done reading task).
async fn study_reported(tx: &mut Transaction<'static, Any>, uid: &str) -> Result<bool> {
    Ok(sqlx::query(
        "SELECT 1 FROM reading_tasks t JOIN studies s ON s.id = t.study_ref \
         WHERE s.study_instance_uid = $1 AND t.state = 'done'",
    )
    .bind(uid)
    .fetch_optional(&mut **tx)
    .await?
    .is_some())
}

#[allow(clippy::too_many_arguments)]
async fn create_task(
    tx: &mut Transaction<'static, Any>,
    policy: &WorklistPolicy,
    routing: &mut Routing,
    event_id: i64,
    uid: &str,
    kind: &str,
    ready_at: i64,
    now: i64,
) -> Result<Option<NewTask>> {
    let Some(study) = study_facts(tx, uid).await? else {
        tracing::warn!(study = %uid, "worklist: a ready study is not in the index");
        return Ok(None);
    };
    let minute = minute_of_week(now);
    let mut priority = study.priority;
    let mut chosen: Option<(i64, Option<usize>)> = None; // (rule, radiologist's place)
    for rule in routing.rules.iter().filter(|r| r.matches(&study)) {
        if chosen.is_none() {
            // The first matching rule sets the priority, whoever reads it.
            if let Some(p) = rule.set_priority.as_deref().and_then(Priority::parse) {
                priority = p;
            }
        }
        let best = routing
            .radiologists
            .iter()
            .enumerate()
            .filter(|(_, r)| r.eligible(rule, &study, minute))
            .min_by_key(|(_, r)| (r.open_tasks, r.id));
        match best {
            Some((place, _)) => {
                chosen = Some((rule.id, Some(place)));
                break;
            }
            None if chosen.is_none() => chosen = Some((rule.id, None)),
            None => {}
        }
    }
    let (rule_id, place) = match chosen {
        Some((rule, who)) => (Some(rule), who),
        None => (None, None),
    };
    let assignee = place.map(|p| routing.radiologists[p].id);
    let due_at = ready_at.saturating_add(micros(policy.turnaround(priority)));
    let row = sqlx::query(
        "INSERT INTO reading_tasks (source_event_id, study_ref, clinic_id, kind, priority, state, \
           rule_id, assigned_to, ready_at, due_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9, $10, $10) \
         ON CONFLICT (source_event_id) DO NOTHING RETURNING id",
    )
    .bind(event_id)
    .bind(study.id)
    .bind(study.clinic_id)
    .bind(kind)
    .bind(priority.as_str())
    .bind(rule_id)
    .bind(assignee)
    .bind(ready_at)
    .bind(due_at)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let task_id: i64 = row.try_get(0)?;
    if let Some(p) = place {
        routing.radiologists[p].open_tasks += 1;
        assign_study(tx, study.id, routing.radiologists[p].id, now).await?;
    }
    // What `task_event` would read back from the row just written.
    let payload = serde_json::json!({
        "task_id": task_id,
        "clinic_id": study.clinic_id,
        "priority": priority.as_str(),
        "assigned_to": assignee,
        "claimed_by": null,
        "due_at": due_at,
        "kind": kind,
    });
    Ok(Some(NewTask {
        id: task_id,
        payload,
    }))
}

async fn study_facts(tx: &mut Transaction<'static, Any>, uid: &str) -> Result<Option<StudyFacts>> {
    let row = sqlx::query(
        "SELECT id, clinic_id, modalities_in_study, body_parts, study_description, \
           requested_priority FROM studies WHERE study_instance_uid = $1",
    )
    .bind(uid)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let list = |s: Option<String>| split_values(s.as_deref());
    let requested: Option<String> = r.try_get(5)?;
    Ok(Some(StudyFacts {
        id: r.try_get(0)?,
        clinic_id: r.try_get(1)?,
        modalities: list(r.try_get(2)?),
        body_parts: list(r.try_get(3)?),
        description: r.try_get::<Option<String>, _>(4)?.unwrap_or_default(),
        priority: Priority::from_requested(requested.as_deref()),
    }))
}

async fn routing_rules(tx: &mut Transaction<'static, Any>) -> Result<Vec<Rule>> {
    let rows = sqlx::query(
        "SELECT id, modality, body_part, description_contains, clinic_id, priority, subspecialty, \
           set_priority FROM routing_rules WHERE enabled = 1 ORDER BY position, id",
    )
    .fetch_all(&mut **tx)
    .await?;
    let blank = |v: Option<String>| rules::blank_to_none(&v);
    rows.iter()
        .map(|r| {
            Ok(Rule {
                id: r.try_get(0)?,
                modality: blank(r.try_get(1)?),
                body_part: blank(r.try_get(2)?),
                description_contains: blank(r.try_get(3)?),
                clinic_id: r.try_get(4)?,
                priority: blank(r.try_get(5)?),
                subspecialty: blank(r.try_get(6)?),
                set_priority: blank(r.try_get(7)?),
            })
        })
        .collect()
}

async fn radiologists(tx: &mut Transaction<'static, Any>) -> Result<Vec<Radiologist>> {
    let rows = sqlx::query(
        "SELECT u.id, \
           (SELECT COUNT(*) FROM reading_tasks t WHERE t.assigned_to = u.id \
              AND t.state IN ('open', 'claimed')) \
         FROM users u WHERE u.role = 'radiologist' AND u.disabled_at IS NULL ORDER BY u.id",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut out: Vec<Radiologist> = rows
        .iter()
        .map(|r| {
            Ok(Radiologist {
                id: r.try_get(0)?,
                open_tasks: r.try_get(1)?,
                subspecialties: Vec::new(),
                credentials: Vec::new(),
                shifts: Vec::new(),
            })
        })
        .collect::<Result<_>>()?;
    let find = |out: &mut Vec<Radiologist>, id: i64| out.iter_mut().position(|r| r.id == id);
    for r in sqlx::query("SELECT user_id, subspecialty FROM user_subspecialties")
        .fetch_all(&mut **tx)
        .await?
    {
        if let Some(i) = find(&mut out, r.try_get(0)?) {
            out[i].subspecialties.push(r.try_get(1)?);
        }
    }
    for r in sqlx::query("SELECT user_id, modality FROM radiologist_credentials")
        .fetch_all(&mut **tx)
        .await?
    {
        if let Some(i) = find(&mut out, r.try_get(0)?) {
            out[i].credentials.push(r.try_get(1)?);
        }
    }
    for r in sqlx::query("SELECT user_id, start_minute, end_minute FROM radiologist_shifts")
        .fetch_all(&mut **tx)
        .await?
    {
        if let Some(i) = find(&mut out, r.try_get(0)?) {
            out[i].shifts.push((r.try_get(1)?, r.try_get(2)?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_from_the_modality() {
        assert_eq!(Priority::from_requested(Some("STAT")), Priority::Stat);
        assert_eq!(Priority::from_requested(Some("HIGH ")), Priority::Urgent);
        assert_eq!(Priority::from_requested(Some("LOW")), Priority::Routine);
        assert_eq!(Priority::from_requested(None), Priority::Routine);
        assert!(Priority::Stat < Priority::Urgent && Priority::Urgent < Priority::Routine);
    }

    #[test]
    fn minutes_of_the_week() {
        // 1970-01-05 00:00 UTC was a Monday.
        assert_eq!(minute_of_week(4 * 86_400 * 1_000_000), 0);
        // 1970-01-01 00:00 was a Thursday.
        assert_eq!(minute_of_week(0), 3 * 24 * 60);
        assert_eq!(
            minute_of_week(4 * 86_400 * 1_000_000 - 60_000_000),
            7 * 24 * 60 - 1
        );
    }
}
