//! The access policy: which studies a principal may see, and what else it may do.
//!
//! This is the one place that decides. Adapters never filter patient data themselves:
//! they turn their caller into a [`Scope`] ([`Scope::of`] for a logged-in user or API token,
//! [`Scope::of_ae`] for a DICOM peer) and read studies only through the `Index` methods
//! below, which put the scope's condition into the SQL. A study outside the scope and a
//! study that does not exist are the same answer (`None`), so that a guessed UID tells
//! nothing. Non-study actions are [`Capability`]s.
//!
//! The rules:
//! - **admin**: every study (each read is audited like anyone's) and every capability;
//! - **radiologist** (central): the studies assigned to them — by the worklist, or by an
//!   administrator until it exists — and every other study of those patients (priors),
//!   from any clinic;
//! - **township doctor, clinician**: the studies their own clinic sent;
//! - **service account**: the studies of its clinic when it has one; none otherwise
//!   (machine accounts of the centre use capabilities such as metrics);
//! - **DICOM peer** (calling AE title): the studies of the AE's clinic.
//!
//! "Priors" are studies of the same patient record (patients are keyed by issuer, or by
//! sending clinic when the modality gives none).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::index::{AeRegistration, Index, now_micros};
use crate::users::{Principal, Role, Username};
use crate::{Result, StoreError};

/// Which studies a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every study (administrators).
    All,
    /// The studies sent by one clinic.
    Clinic(i64),
    /// The studies assigned to this radiologist (user id) and those patients' other studies.
    AssignedTo(i64),
    /// No study at all.
    Nothing,
}

impl Scope {
    /// The scope of a logged-in user or API token.
    pub fn of(principal: &Principal) -> Scope {
        match (principal.role, principal.clinic_id) {
            (Role::Admin, _) => Scope::All,
            (Role::Radiologist, _) => Scope::AssignedTo(principal.user_id),
            (Role::TownshipDoctor | Role::Clinician | Role::Service, Some(clinic)) => {
                Scope::Clinic(clinic)
            }
            (Role::TownshipDoctor | Role::Clinician | Role::Service, None) => Scope::Nothing,
        }
    }

    /// The scope of a DICOM peer: its clinic's studies.
    pub fn of_ae(registration: &AeRegistration) -> Scope {
        Scope::of_dicom_peer(registration.clinic_id)
    }

    /// The scope of an association whose calling AE title belongs to `clinic_id`.
    pub fn of_dicom_peer(clinic_id: i64) -> Scope {
        Scope::Clinic(clinic_id)
    }

    /// The two values bound to the [`in_scope!`] condition: the kind and its subject.
    pub(crate) fn binds(self) -> (&'static str, i64) {
        match self {
            Scope::All => ("all", 0),
            Scope::Clinic(id) => ("clinic", id),
            Scope::AssignedTo(user) => ("assigned", user),
            Scope::Nothing => ("none", 0),
        }
    }
}

/// The scope's rule as an SQL condition on the `studies` row aliased `s`, with the scope's
/// kind and subject ([`Scope::binds`]) bound as parameters `$kind` and `$subject`. Literal
/// SQL: the rule is written once, here, and nothing is ever formatted into it.
macro_rules! in_scope {
    ($kind:literal, $subject:literal) => {
        concat!(
            "(",
            $kind,
            " = 'all' OR (",
            $kind,
            " = 'clinic' AND s.clinic_id = ",
            $subject,
            ") OR (",
            $kind,
            " = 'assigned' AND s.patient_ref IN (SELECT s2.patient_ref \
             FROM study_assignments a JOIN studies s2 ON s2.id = a.study_ref \
             WHERE a.user_id = ",
            $subject,
            " AND a.revoked_at IS NULL)))"
        )
    };
}
pub(crate) use in_scope;

/// The scope's rule for reading tasks, on the `reading_tasks` row aliased `t`, with the
/// same binds as [`in_scope!`]: administrators see every task; a clinic's users their
/// clinic's tasks (the state of their studies); a radiologist the tasks routed to or
/// claimed by them and the tasks of the pool (open, or claimed by a colleague: so that a
/// lost race answers "being read by …"); nobody else any.
macro_rules! task_in_scope {
    ($kind:literal, $subject:literal) => {
        concat!(
            "(",
            $kind,
            " = 'all' OR (",
            $kind,
            " = 'clinic' AND t.clinic_id = ",
            $subject,
            ") OR (",
            $kind,
            " = 'assigned' AND (t.assigned_to = ",
            $subject,
            " OR t.claimed_by = ",
            $subject,
            " OR (t.assigned_to IS NULL AND t.state IN ('open', 'claimed')))))"
        )
    };
}
pub(crate) use task_in_scope;

/// Who may receive a live event of a study (`crate::live_events`): decided here, with
/// the same rules as reading the study and its tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audience {
    /// The clinic that sent the study: its users see its events.
    pub clinic_id: Option<i64>,
    /// Radiologists the study (or another study of the patient) is assigned to, or whose
    /// task of it is routed to or claimed by them.
    pub radiologists: Vec<i64>,
    /// A task of the study is in the pool: every radiologist may see it.
    pub pool: bool,
}

impl Audience {
    /// Whether `principal` may receive the event.
    pub fn admits(&self, principal: &Principal) -> bool {
        match Scope::of(principal) {
            Scope::All => true,
            Scope::Clinic(clinic) => self.clinic_id == Some(clinic),
            Scope::AssignedTo(user) => self.pool || self.radiologists.contains(&user),
            Scope::Nothing => false,
        }
    }
}

/// Things a principal may do besides seeing studies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Manage users, tokens, clinics, AE titles and study assignments.
    Administer,
    /// Search the audit trail.
    ReadAuditTrail,
    /// Read the Prometheus metrics (no patient data).
    ReadMetrics,
    /// Upload objects over HTTP (STOW-RS), for the uploader's clinic.
    Store,
    /// Claim reading tasks and report on them (central radiologists).
    ClaimTasks,
}

impl Capability {
    pub fn describe(self) -> &'static str {
        match self {
            Capability::Administer => "administering users, clinics and AE titles",
            Capability::ReadAuditTrail => "reading the audit trail",
            Capability::ReadMetrics => "reading metrics",
            Capability::Store => "uploading DICOM objects",
            Capability::ClaimTasks => "claiming reading tasks",
        }
    }
}

/// Whether `principal` has `capability`.
pub fn may(principal: &Principal, capability: Capability) -> bool {
    match capability {
        Capability::Administer | Capability::ReadAuditTrail => principal.role == Role::Admin,
        Capability::ReadMetrics => matches!(principal.role, Role::Admin | Role::Service),
        // Township doctors and clinic machines send their clinic's images; administrators
        // may load anything. Clinicians read results; radiologists report.
        Capability::Store => match principal.role {
            Role::Admin | Role::TownshipDoctor => true,
            Role::Service => principal.clinic_id.is_some(),
            Role::Radiologist | Role::Clinician => false,
        },
        Capability::ClaimTasks => principal.role == Role::Radiologist,
    }
}

// ---------------------------------------------------------------------------------------
// What callers read

/// A study as listed: identity, patient and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StudySummary {
    pub study_instance_uid: String,
    pub patient_id: String,
    pub issuer_of_patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_description: Option<String>,
    pub modalities_in_study: Vec<String>,
    pub clinic_name: Option<String>,
    pub number_of_series: i64,
    pub number_of_instances: i64,
    /// `receiving` or `ready`.
    pub state: String,
    /// Unix microseconds.
    pub first_received_at: i64,
}

/// A series of a study.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeriesSummary {
    pub series_instance_uid: String,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub body_part_examined: Option<String>,
    pub number_of_instances: i64,
}

/// A study with its series and the patient's other studies the caller may see.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StudyDetail {
    pub study: StudySummary,
    pub series: Vec<SeriesSummary>,
    /// Other studies of the same patient within the caller's scope, newest first.
    pub priors: Vec<StudySummary>,
}

/// Which studies to list (within the scope); unset fields match everything.
#[derive(Debug, Clone, Default)]
pub struct StudyFilter {
    pub patient_id: Option<String>,
    pub accession_number: Option<String>,
    /// At most this many; default 100, at most 1000.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// A study given to a radiologist to read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assignment {
    pub study_instance_uid: String,
    pub username: Username,
    pub assigned_at: i64,
}

/// `SELECT … FROM …` of a [`StudySummary`] (then `s.id`, `s.patient_ref`).
macro_rules! select_summary {
    () => {
        "SELECT s.study_instance_uid, p.patient_id, p.issuer_of_patient_id, p.patient_name, \
         p.birth_date, p.sex, s.study_date, s.study_time, s.accession_number, \
         s.study_description, s.modalities_in_study, c.name, s.number_of_series, \
         s.number_of_instances, s.state, s.first_received_at, s.id, s.patient_ref \
         FROM studies s JOIN patients p ON p.id = s.patient_ref \
         LEFT JOIN clinics c ON c.id = s.clinic_id"
    };
}

fn summary_from_row(r: &AnyRow) -> Result<StudySummary> {
    let modalities: String = r.try_get(10)?;
    Ok(StudySummary {
        study_instance_uid: r.try_get(0)?,
        patient_id: r.try_get(1)?,
        issuer_of_patient_id: r.try_get(2)?,
        patient_name: r.try_get(3)?,
        patient_birth_date: r.try_get(4)?,
        patient_sex: r.try_get(5)?,
        study_date: r.try_get(6)?,
        study_time: r.try_get(7)?,
        accession_number: r.try_get(8)?,
        study_description: r.try_get(9)?,
        modalities_in_study: crate::index::split_values(Some(&modalities)),
        clinic_name: r.try_get(11)?,
        number_of_series: r.try_get(12)?,
        number_of_instances: r.try_get(13)?,
        state: r.try_get(14)?,
        first_received_at: r.try_get(15)?,
    })
}

impl Index {
    /// One study, if it exists and `scope` may see it (`None` in both other cases).
    pub async fn visible_study(
        &self,
        scope: Scope,
        study_instance_uid: &str,
    ) -> Result<Option<StudySummary>> {
        Ok(self
            .visible_study_row(scope, study_instance_uid)
            .await?
            .map(|(s, _, _)| s))
    }

    /// One study with its series and the patient's other visible studies, if `scope` may
    /// see it.
    pub async fn visible_study_detail(
        &self,
        scope: Scope,
        study_instance_uid: &str,
    ) -> Result<Option<StudyDetail>> {
        let Some((study, study_ref, patient_ref)) =
            self.visible_study_row(scope, study_instance_uid).await?
        else {
            return Ok(None);
        };
        let series = sqlx::query(
            "SELECT series_instance_uid, modality, series_number, series_description, \
             body_part_examined, number_of_instances FROM series WHERE study_ref = $1 \
             ORDER BY series_number, series_instance_uid",
        )
        .bind(study_ref)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(SeriesSummary {
                series_instance_uid: r.try_get(0)?,
                modality: r.try_get(1)?,
                series_number: r.try_get(2)?,
                series_description: r.try_get(3)?,
                body_part_examined: r.try_get(4)?,
                number_of_instances: r.try_get(5)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let (kind, subject) = scope.binds();
        let priors = sqlx::query(concat!(
            select_summary!(),
            " WHERE s.patient_ref = $1 AND s.id <> $2 AND ",
            in_scope!("$3", "$4"),
            " ORDER BY s.study_date DESC, s.study_time DESC, s.id DESC LIMIT 200"
        ))
        .bind(patient_ref)
        .bind(study_ref)
        .bind(kind)
        .bind(subject)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(summary_from_row)
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(StudyDetail {
            study,
            series,
            priors,
        }))
    }

    /// The studies `scope` may see that match `filter`, newest received first.
    pub async fn visible_studies(
        &self,
        scope: Scope,
        filter: &StudyFilter,
    ) -> Result<Vec<StudySummary>> {
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let offset = filter.offset.unwrap_or(0).max(0);
        let (kind, subject) = scope.binds();
        sqlx::query(concat!(
            select_summary!(),
            " WHERE ($1 IS NULL OR p.patient_id = $1) AND ($2 IS NULL OR s.accession_number = $2) \
             AND ",
            in_scope!("$3", "$4"),
            " ORDER BY s.first_received_at DESC, s.id DESC LIMIT $5 OFFSET $6"
        ))
        .bind(&filter.patient_id)
        .bind(&filter.accession_number)
        .bind(kind)
        .bind(subject)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(summary_from_row)
        .collect()
    }

    pub(crate) async fn visible_study_row(
        &self,
        scope: Scope,
        study_instance_uid: &str,
    ) -> Result<Option<(StudySummary, i64, i64)>> {
        let (kind, subject) = scope.binds();
        let row = sqlx::query(concat!(
            select_summary!(),
            " WHERE s.study_instance_uid = $1 AND ",
            in_scope!("$2", "$3")
        ))
        .bind(study_instance_uid)
        .bind(kind)
        .bind(subject)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let study = summary_from_row(&row)?;
        Ok(Some((study, row.try_get(16)?, row.try_get(17)?)))
    }

    /// Gives `study_instance_uid` to the radiologist `username` to read (idempotent).
    /// `by` is the administrator's user id, `None` for the system's routing.
    pub async fn assign_study(
        &self,
        study_instance_uid: &str,
        username: &Username,
        by: Option<i64>,
    ) -> Result<Assignment> {
        let mut tx = self.pool().begin().await?;
        let study_ref: i64 = sqlx::query("SELECT id FROM studies WHERE study_instance_uid = $1")
            .bind(study_instance_uid)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no study {study_instance_uid}")))?
            .try_get(0)?;
        let user = sqlx::query("SELECT id, role, disabled_at FROM users WHERE username = $1")
            .bind(username.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no user {username}")))?;
        let (user_id, role, disabled): (i64, String, Option<i64>) =
            (user.try_get(0)?, user.try_get(1)?, user.try_get(2)?);
        if role != Role::Radiologist.as_str() {
            return Err(StoreError::Invalid(format!(
                "{username} is not a radiologist: studies are assigned to radiologists"
            )));
        }
        if disabled.is_some() {
            return Err(StoreError::Invalid(format!(
                "{username} is disabled: enable the account first"
            )));
        }
        let existing = sqlx::query(
            "SELECT assigned_at FROM study_assignments \
             WHERE study_ref = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(study_ref)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let assigned_at = match existing {
            Some(r) => r.try_get(0)?,
            None => {
                let now = now_micros();
                sqlx::query(
                    "INSERT INTO study_assignments (study_ref, user_id, assigned_at, assigned_by) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(study_ref)
                .bind(user_id)
                .bind(now)
                .bind(by)
                .execute(&mut *tx)
                .await?;
                now
            }
        };
        tx.commit().await?;
        Ok(Assignment {
            study_instance_uid: study_instance_uid.to_owned(),
            username: username.clone(),
            assigned_at,
        })
    }

    /// Takes `study_instance_uid` back from `username` (the radiologist no longer sees it,
    /// nor its patient's priors through it).
    pub async fn revoke_assignment(
        &self,
        study_instance_uid: &str,
        username: &Username,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE study_assignments SET revoked_at = $1 WHERE revoked_at IS NULL \
             AND study_ref = (SELECT id FROM studies WHERE study_instance_uid = $2) \
             AND user_id = (SELECT id FROM users WHERE username = $3)",
        )
        .bind(now_micros())
        .bind(study_instance_uid)
        .bind(username.as_str())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "study {study_instance_uid} is not assigned to {username}"
            )));
        }
        Ok(())
    }
}
