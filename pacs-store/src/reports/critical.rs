//! Critical findings: a signed report flagged critical is a notice to the originating
//! clinic that one of its users must acknowledge; unacknowledged past the deadline, it is
//! escalated (once). The rows keep the ACR's documentation: who was told (the clinic),
//! when, how, who acknowledged and when (migration 0013).

use sqlx::{Any, Row as _, Transaction};

use crate::access::Scope;
use crate::index::Index;
use crate::index::outbox::{self, EventStudy};
use crate::users::{Principal, Role};
use crate::{Result, StoreError};

/// How the clinic is told today.
pub const CHANNEL: &str = "clinic portal and live feed";

/// A critical-finding notice as the portal and the administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CriticalNotice {
    pub report_id: i64,
    pub study_instance_uid: String,
    pub clinic: Option<String>,
    /// The radiologist who signed the report.
    pub signer: String,
    pub impression: String,
    pub notified_at: i64,
    pub channel: String,
    pub ack_due_at: i64,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<i64>,
    pub escalated_at: Option<i64>,
}

/// Records the notice of report `report_id` (in the signing transaction).
pub(crate) async fn record(
    tx: &mut Transaction<'static, Any>,
    report_id: i64,
    clinic_id: Option<i64>,
    now: i64,
    ack_window: std::time::Duration,
) -> Result<()> {
    let due = now.saturating_add(i64::try_from(ack_window.as_micros()).unwrap_or(i64::MAX));
    sqlx::query(
        "INSERT INTO critical_notifications (report_id, clinic_id, notified_at, channel, ack_due_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(report_id)
    .bind(clinic_id)
    .bind(now)
    .bind(CHANNEL)
    .bind(due)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const NOTICE_SELECT: &str = "SELECT n.report_id, s.study_instance_uid, c.name, u.username, \
       r.impression, n.notified_at, n.channel, n.ack_due_at, ua.username, n.acknowledged_at, \
       n.escalated_at \
     FROM critical_notifications n JOIN reports r ON r.id = n.report_id \
     JOIN studies s ON s.id = r.study_ref JOIN users u ON u.id = r.author_id \
     LEFT JOIN clinics c ON c.id = n.clinic_id LEFT JOIN users ua ON ua.id = n.acknowledged_by";

fn notice_from(r: &sqlx::any::AnyRow) -> Result<CriticalNotice> {
    Ok(CriticalNotice {
        report_id: r.try_get(0)?,
        study_instance_uid: r.try_get(1)?,
        clinic: r.try_get(2)?,
        signer: r.try_get(3)?,
        impression: r.try_get(4)?,
        notified_at: r.try_get(5)?,
        channel: r.try_get(6)?,
        ack_due_at: r.try_get(7)?,
        acknowledged_by: r.try_get(8)?,
        acknowledged_at: r.try_get(9)?,
        escalated_at: r.try_get(10)?,
    })
}

impl Index {
    /// The notices `scope` may see — a clinic its own, a radiologist those of reports they
    /// signed, administrators all — newest first; `open_only`: not yet acknowledged.
    pub async fn critical_notices(
        &self,
        scope: Scope,
        open_only: bool,
    ) -> Result<Vec<CriticalNotice>> {
        let (kind, subject) = scope.binds();
        let sql = format!(
            "{NOTICE_SELECT} WHERE ($1 = 'all' OR ($1 = 'clinic' AND n.clinic_id = $2) \
               OR ($1 = 'assigned' AND r.author_id = $2)) \
               AND ($3 = 0 OR n.acknowledged_at IS NULL) \
             ORDER BY n.notified_at DESC, n.id DESC LIMIT 500"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(kind)
            .bind(subject)
            .bind(i64::from(open_only))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(notice_from).collect()
    }

    /// A user of the originating clinic acknowledges the critical finding of report
    /// `report_id` (again: the first acknowledgement stands).
    pub async fn acknowledge_critical(
        &self,
        who: &Principal,
        report_id: i64,
        now: i64,
    ) -> Result<CriticalNotice> {
        if !matches!(who.role, Role::TownshipDoctor | Role::Clinician) {
            return Err(StoreError::Invalid(
                "critical findings are acknowledged by the originating clinic's doctors".into(),
            ));
        }
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT n.clinic_id, n.acknowledged_at, r.study_ref FROM critical_notifications n \
             JOIN reports r ON r.id = n.report_id WHERE n.report_id = $1",
        )
        .bind(report_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row.filter(|r| {
            r.try_get::<Option<i64>, _>(0).ok().flatten() == who.clinic_id
                && who.clinic_id.is_some()
        }) else {
            return Err(StoreError::NotFound("no such critical finding".into()));
        };
        let acknowledged: Option<i64> = row.try_get(1)?;
        if acknowledged.is_none() {
            sqlx::query(
                "UPDATE critical_notifications SET acknowledged_by = $1, acknowledged_at = $2 \
                 WHERE report_id = $3 AND acknowledged_at IS NULL",
            )
            .bind(who.user_id)
            .bind(now)
            .bind(report_id)
            .execute(&mut *tx)
            .await?;
            super::event(
                &mut tx,
                "critical_acknowledged",
                row.try_get(2)?,
                serde_json::json!({ "report_id": report_id, "clinic_id": who.clinic_id,
                    "acknowledged_by": who.username.as_str() }),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        let sql = format!("{NOTICE_SELECT} WHERE n.report_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(report_id)
            .fetch_one(self.pool())
            .await?;
        notice_from(&row)
    }

    /// Escalates (once) every critical finding unacknowledged past its deadline: a
    /// `critical_unacknowledged` event each. Returns their report ids.
    pub async fn escalate_critical(&self, now: i64) -> Result<Vec<i64>> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "UPDATE critical_notifications SET escalated_at = $1 \
             WHERE acknowledged_at IS NULL AND escalated_at IS NULL AND ack_due_at <= $1 \
             RETURNING report_id, clinic_id, \
               (SELECT study_ref FROM reports WHERE reports.id = critical_notifications.report_id)",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut notices = Vec::with_capacity(rows.len());
        for r in rows {
            let (report_id, clinic_id): (i64, Option<i64>) = (r.try_get(0)?, r.try_get(1)?);
            let study_ref: i64 = r.try_get(2)?;
            ids.push(report_id);
            let payload = serde_json::json!({ "report_id": report_id, "clinic_id": clinic_id });
            notices.push((study_ref, payload));
        }
        let events: Vec<outbox::NewEvent> = notices
            .iter()
            .map(|(study_ref, payload)| outbox::NewEvent {
                kind: "critical_unacknowledged",
                study: EventStudy::Ref(*study_ref),
                sop_instance_uid: None,
                payload,
                created_at: now,
            })
            .collect();
        outbox::append(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(ids)
    }
}

/// A study as the clinic portal lists it: where it stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortalStudy {
    pub study_instance_uid: String,
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub study_date: Option<String>,
    pub study_description: Option<String>,
    pub modalities: Vec<String>,
    pub received_at: i64,
    /// `received` (not yet being read), `in reading`, `reported`, or `critical` (reported
    /// with a critical finding the clinic has not acknowledged yet).
    pub state: String,
    /// The latest signed report, if any.
    pub report_id: Option<i64>,
}

impl Index {
    /// The studies `scope` may see with their reading state, newest received first.
    pub async fn portal_studies(
        &self,
        scope: Scope,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<PortalStudy>> {
        let (kind, subject) = scope.binds();
        let rows = sqlx::query(concat!(
            "SELECT s.study_instance_uid, p.patient_id, p.patient_name, s.study_date, \
               s.study_description, s.modalities_in_study, s.first_received_at, \
               CASE WHEN EXISTS (SELECT 1 FROM critical_notifications n JOIN reports r ON r.id = n.report_id \
                      WHERE r.study_ref = s.id AND n.acknowledged_at IS NULL) THEN 'critical' \
                    WHEN EXISTS (SELECT 1 FROM reports r WHERE r.study_ref = s.id AND r.state <> 'draft') \
                      THEN 'reported' \
                    WHEN EXISTS (SELECT 1 FROM reading_tasks t WHERE t.study_ref = s.id) THEN 'in reading' \
                    ELSE 'received' END, \
               (SELECT MAX(r.id) FROM reports r WHERE r.study_ref = s.id AND r.state <> 'draft') \
             FROM studies s JOIN patients p ON p.id = s.patient_ref WHERE ",
            crate::access::in_scope!("$1", "$2"),
            " ORDER BY s.first_received_at DESC, s.id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(kind)
        .bind(subject)
        .bind(limit.clamp(1, 1000))
        .bind(offset.max(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let modalities: Option<String> = r.try_get(5)?;
                Ok(PortalStudy {
                    study_instance_uid: r.try_get(0)?,
                    patient_id: r.try_get(1)?,
                    patient_name: r.try_get(2)?,
                    study_date: r.try_get(3)?,
                    study_description: r.try_get(4)?,
                    modalities: crate::index::split_values(modalities.as_deref()),
                    received_at: r.try_get(6)?,
                    state: r.try_get(7)?,
                    report_id: r.try_get(8)?,
                })
            })
            .collect()
    }
}
