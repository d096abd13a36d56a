//! Reports: the township doctor's preliminary impression, the central radiologist's draft,
//! its signature, and signed addenda (migration 0012).
//!
//! - **Preliminary impression** (optional): by a township doctor of the clinic that sent
//!   the study, while it is not yet reported.
//! - **Draft**: by the radiologist who holds the claim on the study's reading task (an
//!   expired lease is no claim). Sections follow a template chosen by modality and body
//!   part ([`template_for`]); the agreement with the preliminary impression (agree / minor /
//!   major discrepancy, with a comment) is required when there is one.
//! - **Signing** turns the draft final, once: the signature ([`signing`]) covers the
//!   canonical serialisation of the report, the study's identity, the signer and the time;
//!   the task is done; outbox events `report_signed` (and `critical_finding` when flagged).
//!   A signed report is never changed: corrections are addenda, each signed, and the report
//!   is then `amended`.
//! - [`Index::verify_report`] rebuilds what was signed from the database and checks every
//!   signature against the signer's public key: a changed byte fails.

pub mod critical;
pub mod delivery;
pub mod documents;
pub mod interop;
pub mod pdf;
pub mod signing;

use sqlx::{Any, Row as _, Transaction};

use crate::access::Scope;
use crate::index::Index;
use crate::index::outbox::{self, EventStudy};
use crate::users::{Principal, Role};
use crate::{Result, StoreError};
use signing::{ReportKey, SignedAddendum, SignedReport};

/// The radiologist's verdict on the township doctor's preliminary impression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Agreement {
    Agree,
    Minor,
    Major,
}

impl Agreement {
    pub fn as_str(self) -> &'static str {
        match self {
            Agreement::Agree => "agree",
            Agreement::Minor => "minor",
            Agreement::Major => "major",
        }
    }

    fn parse(s: &str) -> Option<Agreement> {
        match s {
            "agree" => Some(Agreement::Agree),
            "minor" => Some(Agreement::Minor),
            "major" => Some(Agreement::Major),
            _ => None,
        }
    }
}

/// A report template: which sections, with a prompt for each.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Template {
    pub name: &'static str,
    pub modality: Option<&'static str>,
    pub body_part: Option<&'static str>,
    /// (section, prompt) for clinical information, technique, findings, impression.
    pub prompts: [(&'static str, &'static str); 4],
}

const fn template(
    name: &'static str,
    modality: Option<&'static str>,
    body_part: Option<&'static str>,
    technique: &'static str,
    findings: &'static str,
) -> Template {
    Template {
        name,
        modality,
        body_part,
        prompts: [
            ("clinical_information", "Indication and relevant history."),
            ("technique", technique),
            ("findings", findings),
            (
                "impression",
                "Conclusion, most important first; recommendations.",
            ),
        ],
    }
}

/// The templates, most specific first; the last one fits any study.
pub const TEMPLATES: &[Template] = &[
    template(
        "ct-head",
        Some("CT"),
        Some("HEAD"),
        "Non-contrast axial CT of the head.",
        "Brain parenchyma, ventricles, extra-axial spaces, bones, sinuses.",
    ),
    template(
        "ct-chest",
        Some("CT"),
        Some("CHEST"),
        "Axial CT of the chest; contrast if given.",
        "Lungs, airways, pleura, mediastinum, heart, bones, upper abdomen.",
    ),
    template(
        "mr-head",
        Some("MR"),
        Some("HEAD"),
        "Sequences and planes; contrast if given.",
        "Brain parenchyma, diffusion, ventricles, vessels, extra-axial spaces.",
    ),
    template(
        "chest-radiograph",
        None,
        Some("CHEST"),
        "Projections (PA, AP, lateral).",
        "Lungs, pleura, heart size, mediastinum, bones, lines and tubes.",
    ),
    template(
        "mammography",
        Some("MG"),
        None,
        "Views (CC, MLO); breast density.",
        "Masses, calcifications, asymmetries, architectural distortion; BI-RADS category.",
    ),
    template(
        "ultrasound",
        Some("US"),
        None,
        "Probe and region examined.",
        "Organs examined, measurements, Doppler if used.",
    ),
    template(
        "general",
        None,
        None,
        "Modality and technique.",
        "Findings by region.",
    ),
];

/// The template for a study with these modalities and body parts.
pub fn template_for(modalities: &[String], body_parts: &[String]) -> &'static Template {
    let has = |list: &[String], want: Option<&str>| {
        want.is_none_or(|w| list.iter().any(|v| v.eq_ignore_ascii_case(w)))
    };
    TEMPLATES
        .iter()
        .find(|t| has(modalities, t.modality) && has(body_parts, t.body_part))
        .unwrap_or(&TEMPLATES[TEMPLATES.len() - 1])
}

/// The sections and verdicts a radiologist writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportContent {
    #[serde(default)]
    pub clinical_information: String,
    #[serde(default)]
    pub technique: String,
    #[serde(default)]
    pub findings: String,
    #[serde(default)]
    pub impression: String,
    #[serde(default)]
    pub agreement: Option<Agreement>,
    #[serde(default)]
    pub agreement_comment: Option<String>,
    /// A critical finding: signing notifies the sending clinic, who must acknowledge.
    #[serde(default)]
    pub critical: bool,
    /// Images of the study the radiologist marked as key images (at most
    /// [`MAX_KEY_IMAGES`]); shown in the report's PDF.
    #[serde(default)]
    pub key_images: Vec<KeyImage>,
}

/// An image of the report's study marked as a key image.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyImage {
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    /// 1-based frame number (1 for single-frame images).
    #[serde(default = "first_frame")]
    pub frame: u32,
    /// A short caption shown under the image.
    #[serde(default)]
    pub caption: String,
}

fn first_frame() -> u32 {
    1
}

/// The most key images a report carries.
pub const MAX_KEY_IMAGES: usize = 8;

/// The longest section, in characters.
pub const MAX_SECTION_CHARS: usize = 20_000;

impl ReportContent {
    fn check(&self) -> Result<()> {
        for (name, v) in [
            ("clinical_information", &self.clinical_information),
            ("technique", &self.technique),
            ("findings", &self.findings),
            ("impression", &self.impression),
        ] {
            if v.chars().count() > MAX_SECTION_CHARS {
                return Err(StoreError::Invalid(format!(
                    "{name} is longer than {MAX_SECTION_CHARS} characters"
                )));
            }
            if v.chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            {
                return Err(StoreError::Invalid(format!(
                    "{name} contains control characters"
                )));
            }
        }
        if self.key_images.len() > MAX_KEY_IMAGES {
            return Err(StoreError::Invalid(format!(
                "at most {MAX_KEY_IMAGES} key images per report"
            )));
        }
        for k in &self.key_images {
            if !crate::query::is_uid(&k.series_instance_uid)
                || !crate::query::is_uid(&k.sop_instance_uid)
            {
                return Err(StoreError::Invalid(
                    "a key image needs a valid series_instance_uid and sop_instance_uid".into(),
                ));
            }
            if k.frame == 0 {
                return Err(StoreError::Invalid("key image frames start at 1".into()));
            }
            if k.caption.chars().count() > 200 || k.caption.chars().any(char::is_control) {
                return Err(StoreError::Invalid(
                    "a key image caption has at most 200 printable characters".into(),
                ));
            }
        }
        if self
            .agreement_comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > 2000)
        {
            return Err(StoreError::Invalid(
                "agreement_comment is longer than 2000 characters".into(),
            ));
        }
        Ok(())
    }
}

/// A report as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    pub id: i64,
    pub task_id: i64,
    pub study_instance_uid: String,
    pub patient_id: String,
    pub accession_number: Option<String>,
    pub clinic_id: Option<i64>,
    pub template: String,
    pub author: String,
    /// draft, final or amended.
    pub state: String,
    #[serde(flatten)]
    pub content: ReportContent,
    pub signed_at: Option<i64>,
    pub signer_key_id: Option<String>,
    pub signature: Option<String>,
    /// As stored (groups joined by `=`); not part of what is signed.
    pub patient_name: Option<String>,
    pub issuer_of_patient_id: Option<String>,
    pub addenda: Vec<Addendum>,
}

/// A signed addendum.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Addendum {
    pub id: i64,
    pub author: String,
    pub text: String,
    pub signed_at: i64,
    pub signer_key_id: String,
    pub signature: String,
}

/// The township doctor's first impression of a study.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Preliminary {
    pub author: String,
    pub text: String,
    pub urgent: bool,
    pub updated_at: i64,
}

/// What [`Index::verify_report`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verification {
    pub report_id: i64,
    /// Every signature (report and addenda) checks out against what is stored now.
    pub valid: bool,
    pub signer: Option<String>,
    pub signer_key_id: Option<String>,
    pub signer_public_key: Option<String>,
    pub signed_at: Option<i64>,
    /// Per addendum: (id, valid).
    pub addenda: Vec<(i64, bool)>,
    /// Why not, when not valid.
    pub problem: Option<String>,
}

/// Discrepancy counts of one clinic's preliminary impressions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClinicDiscrepancies {
    pub clinic: String,
    pub reviewed: i64,
    pub agree: i64,
    pub minor: i64,
    pub major: i64,
}

const REPORT_COLUMNS: &str = "r.id, r.task_id, s.study_instance_uid, p.patient_id, \
     s.accession_number, s.clinic_id, r.template, u.username, r.state, r.clinical_information, \
     r.technique, r.findings, r.impression, r.agreement, r.agreement_comment, r.critical, \
     r.signed_at, r.signer_key_id, r.signature, p.patient_name, p.issuer_of_patient_id, \
     r.key_images";

fn report_from(r: &sqlx::any::AnyRow) -> Result<Report> {
    let agreement: Option<String> = r.try_get(13)?;
    Ok(Report {
        id: r.try_get(0)?,
        task_id: r.try_get(1)?,
        study_instance_uid: r.try_get(2)?,
        patient_id: r.try_get(3)?,
        accession_number: r.try_get(4)?,
        clinic_id: r.try_get(5)?,
        template: r.try_get(6)?,
        author: r.try_get(7)?,
        state: r.try_get(8)?,
        content: ReportContent {
            clinical_information: r.try_get(9)?,
            technique: r.try_get(10)?,
            findings: r.try_get(11)?,
            impression: r.try_get(12)?,
            agreement: agreement.as_deref().and_then(Agreement::parse),
            agreement_comment: r.try_get(14)?,
            critical: r.try_get::<i64, _>(15)? != 0,
            key_images: {
                let json: String = r.try_get(21)?;
                serde_json::from_str(&json).map_err(|e| {
                    StoreError::Invalid(format!("stored key images cannot be read: {e}"))
                })?
            },
        },
        signed_at: r.try_get(16)?,
        signer_key_id: r.try_get(17)?,
        signature: r.try_get(18)?,
        patient_name: r.try_get(19)?,
        issuer_of_patient_id: r.try_get(20)?,
        addenda: Vec::new(),
    })
}

/// What the signature of `report` by `signer` with key `key_id` at `signed_at` covers:
/// the one place that says so, for signing and for verifying.
fn signed_report_bytes(report: &Report, signer: &str, key_id: &str, signed_at: i64) -> Vec<u8> {
    let c = &report.content;
    signing::canonical(&SignedReport {
        format: signing::REPORT_FORMAT,
        report_id: report.id,
        study_instance_uid: &report.study_instance_uid,
        patient_id: &report.patient_id,
        accession_number: report.accession_number.as_deref(),
        template: &report.template,
        clinical_information: &c.clinical_information,
        technique: &c.technique,
        findings: &c.findings,
        impression: &c.impression,
        agreement: c.agreement.map(Agreement::as_str),
        agreement_comment: c.agreement_comment.as_deref(),
        critical: c.critical,
        signer,
        signer_key_id: key_id,
        signed_at,
        key_images: &c.key_images,
    })
}

/// The task `task_id` if `user` holds its claim at `now`: (study_ref, state).
async fn held_task(
    tx: &mut Transaction<'static, Any>,
    task_id: i64,
    user: i64,
    now: i64,
) -> Result<i64> {
    let row = sqlx::query(
        "SELECT study_ref, state, claimed_by, lease_expires_at FROM reading_tasks WHERE id = $1",
    )
    .bind(task_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("reading task {task_id}")))?;
    let state: String = row.try_get(1)?;
    let claimed_by: Option<i64> = row.try_get(2)?;
    let lease: Option<i64> = row.try_get(3)?;
    if state != "claimed" || claimed_by != Some(user) || lease.is_none_or(|l| l <= now) {
        return Err(StoreError::Invalid(format!(
            "task {task_id} is not claimed by you: claim it (again) before writing or signing"
        )));
    }
    Ok(row.try_get(0)?)
}

async fn event(
    tx: &mut Transaction<'static, Any>,
    kind: &str,
    study_ref: i64,
    payload: serde_json::Value,
    now: i64,
) -> Result<()> {
    outbox::append_one(tx, kind, EventStudy::Ref(study_ref), &payload, now).await
}

impl Index {
    /// Records the township doctor's preliminary impression of a study of their clinic
    /// (replacing their earlier one) while the study is not yet reported.
    pub async fn save_preliminary(
        &self,
        author: &Principal,
        study_instance_uid: &str,
        text: &str,
        urgent: bool,
        now: i64,
    ) -> Result<Preliminary> {
        if author.role != Role::TownshipDoctor {
            return Err(StoreError::Invalid(
                "preliminary impressions are written by township doctors".into(),
            ));
        }
        let text = text.trim();
        if text.is_empty() || text.chars().count() > MAX_SECTION_CHARS {
            return Err(StoreError::Invalid(format!(
                "a preliminary impression has 1–{MAX_SECTION_CHARS} characters"
            )));
        }
        let Some((_, study_ref, _)) = self
            .visible_study_row(Scope::of(author), study_instance_uid)
            .await?
        else {
            return Err(StoreError::NotFound("no such study".into()));
        };
        let mut tx = self.begin_write().await?;
        let reported =
            sqlx::query("SELECT 1 FROM reports WHERE study_ref = $1 AND state <> 'draft'")
                .bind(study_ref)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        if reported {
            return Err(StoreError::Invalid(
                "the study is already reported; the preliminary impression is closed".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO preliminary_impressions (study_ref, author_id, text, urgent, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (study_ref, author_id) DO UPDATE SET \
               text = excluded.text, urgent = excluded.urgent, updated_at = excluded.updated_at",
        )
        .bind(study_ref)
        .bind(author.user_id)
        .bind(text)
        .bind(i64::from(urgent))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if urgent {
            // The township doctor's flag makes an open reading task urgent (never less).
            sqlx::query(
                "UPDATE reading_tasks SET priority = 'urgent' WHERE study_ref = $1 \
                 AND state IN ('open', 'claimed') AND priority = 'routine'",
            )
            .bind(study_ref)
            .execute(&mut *tx)
            .await?;
        }
        event(
            &mut tx,
            "preliminary_saved",
            study_ref,
            serde_json::json!({ "urgent": urgent }),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Preliminary {
            author: author.username.to_string(),
            text: text.to_owned(),
            urgent,
            updated_at: now,
        })
    }

    /// The preliminary impressions of a study.
    pub async fn preliminaries(&self, study_instance_uid: &str) -> Result<Vec<Preliminary>> {
        let rows = sqlx::query(
            "SELECT u.username, pi.text, pi.urgent, pi.updated_at FROM preliminary_impressions pi \
             JOIN users u ON u.id = pi.author_id JOIN studies s ON s.id = pi.study_ref \
             WHERE s.study_instance_uid = $1 ORDER BY pi.updated_at",
        )
        .bind(study_instance_uid)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Preliminary {
                    author: r.try_get(0)?,
                    text: r.try_get(1)?,
                    urgent: r.try_get::<i64, _>(2)? != 0,
                    updated_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Writes the draft of the task `task_id` that `user` holds (creating it the first
    /// time, with the template of the study).
    pub async fn save_draft(
        &self,
        task_id: i64,
        user: i64,
        content: &ReportContent,
        now: i64,
    ) -> Result<Report> {
        content.check()?;
        let mut tx = self.begin_write().await?;
        let study_ref = held_task(&mut tx, task_id, user, now).await?;
        let facts =
            sqlx::query("SELECT modalities_in_study, body_parts FROM studies WHERE id = $1")
                .bind(study_ref)
                .fetch_one(&mut *tx)
                .await?;
        let list = |s: Option<String>| crate::index::split_values(s.as_deref());
        let template = template_for(&list(facts.try_get(0)?), &list(facts.try_get(1)?)).name;
        let existing = sqlx::query("SELECT id, state FROM reports WHERE task_id = $1")
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?;
        for k in &content.key_images {
            let found = sqlx::query(
                "SELECT 1 FROM instances i JOIN series se ON se.id = i.series_ref \
                 WHERE se.study_ref = $1 AND se.series_instance_uid = $2 \
                   AND i.sop_instance_uid = $3",
            )
            .bind(study_ref)
            .bind(&k.series_instance_uid)
            .bind(&k.sop_instance_uid)
            .fetch_optional(&mut *tx)
            .await?;
            if found.is_none() {
                return Err(StoreError::Invalid(format!(
                    "key image {} is not an image of this study",
                    k.sop_instance_uid
                )));
            }
        }
        let key_images = serde_json::to_string(&content.key_images)
            .map_err(|e| StoreError::Invalid(format!("key images: {e}")))?;
        let agreement = content.agreement.map(Agreement::as_str);
        let report_id: i64 = match existing {
            Some(r) => {
                let state: String = r.try_get(1)?;
                if state != "draft" {
                    return Err(StoreError::Invalid(
                        "the report is signed; write an addendum instead".into(),
                    ));
                }
                let id: i64 = r.try_get(0)?;
                sqlx::query(
                    "UPDATE reports SET clinical_information = $1, technique = $2, findings = $3, \
                       impression = $4, agreement = $5, agreement_comment = $6, critical = $7, \
                       author_id = $8, updated_at = $9, key_images = $10 \
                     WHERE id = $11 AND state = 'draft'",
                )
                .bind(&content.clinical_information)
                .bind(&content.technique)
                .bind(&content.findings)
                .bind(&content.impression)
                .bind(agreement)
                .bind(&content.agreement_comment)
                .bind(i64::from(content.critical))
                .bind(user)
                .bind(now)
                .bind(&key_images)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                id
            }
            None => sqlx::query(
                "INSERT INTO reports (task_id, study_ref, author_id, template, clinical_information, \
                   technique, findings, impression, agreement, agreement_comment, critical, state, \
                   created_at, updated_at, key_images) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'draft', $12, $12, $13) \
                 RETURNING id",
            )
            .bind(task_id)
            .bind(study_ref)
            .bind(user)
            .bind(template)
            .bind(&content.clinical_information)
            .bind(&content.technique)
            .bind(&content.findings)
            .bind(&content.impression)
            .bind(agreement)
            .bind(&content.agreement_comment)
            .bind(i64::from(content.critical))
            .bind(now)
            .bind(&key_images)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?,
        };
        tx.commit().await?;
        self.report(report_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("report {report_id}")))
    }

    /// Signs the draft `report_id` as `user`, who must hold its task's claim: the report
    /// becomes final and can never change; its task is done.
    pub async fn sign_report(
        &self,
        key: &ReportKey,
        policy: &crate::worklist::WorklistPolicy,
        report_id: i64,
        user: i64,
        now: i64,
    ) -> Result<Report> {
        let report = self
            .report(report_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("report {report_id}")))?;
        if report.state != "draft" {
            return Err(StoreError::Invalid(format!(
                "report {report_id} is already signed"
            )));
        }
        if report.content.impression.trim().is_empty() || report.content.findings.trim().is_empty()
        {
            return Err(StoreError::Invalid(
                "a report needs findings and an impression before it is signed".into(),
            ));
        }
        let has_preliminary = !self
            .preliminaries(&report.study_instance_uid)
            .await?
            .is_empty();
        if has_preliminary && report.content.agreement.is_none() {
            return Err(StoreError::Invalid(
                "record agreement with the township doctor's preliminary impression (agree, \
                 minor or major) before signing"
                    .into(),
            ));
        }
        let (key_id, sealed) = self.signing_key(key, user, now).await?;
        let signer = self
            .username_of(user)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {user}")))?;
        let mut tx = self.begin_write().await?;
        let study_ref = held_task(&mut tx, report.task_id, user, now).await?;
        let c = &report.content;
        let message = signed_report_bytes(&report, &signer, &key_id, now);
        let signature = signing::sign(key, user, &sealed, &message)?;
        let n = sqlx::query(
            "UPDATE reports SET state = 'final', author_id = $1, signed_at = $2, signer_key_id = $3, \
               signature = $4, updated_at = $2 WHERE id = $5 AND state = 'draft'",
        )
        .bind(user)
        .bind(now)
        .bind(&key_id)
        .bind(&signature)
        .bind(report_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::Invalid(format!(
                "report {report_id} is already signed"
            )));
        }
        sqlx::query(
            "UPDATE reading_tasks SET state = 'done', done_at = $1, lease_expires_at = NULL, \
               updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(report.task_id)
        .execute(&mut *tx)
        .await?;
        let payload = serde_json::json!({
            "report_id": report_id,
            "task_id": report.task_id,
            "clinic_id": report.clinic_id,
            "critical": c.critical,
            "signer": signer,
        });
        delivery::enqueue(&mut tx, report_id, 0, now).await?;
        event(&mut tx, "report_signed", study_ref, payload.clone(), now).await?;
        if c.critical {
            critical::record(
                &mut tx,
                report_id,
                report.clinic_id,
                now,
                policy.critical_ack,
            )
            .await?;
            event(&mut tx, "critical_finding", study_ref, payload, now).await?;
        }
        tx.commit().await?;
        self.report(report_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("report {report_id}")))
    }

    /// Adds a signed addendum to a signed report, by a radiologist: the report's signer, or
    /// one holding a claimed task of the study (an addendum review).
    pub async fn add_addendum(
        &self,
        key: &ReportKey,
        report_id: i64,
        user: i64,
        text: &str,
        now: i64,
    ) -> Result<Addendum> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > MAX_SECTION_CHARS {
            return Err(StoreError::Invalid(format!(
                "an addendum has 1–{MAX_SECTION_CHARS} characters"
            )));
        }
        let report = self
            .report(report_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("report {report_id}")))?;
        let Some(report_signature) = report.signature.clone() else {
            return Err(StoreError::Invalid(
                "the report is a draft: change the draft instead".into(),
            ));
        };
        let signer = self
            .username_of(user)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {user}")))?;
        let mut tx = self.begin_write().await?;
        let may = signer == report.author
            || sqlx::query(
                "SELECT 1 FROM reading_tasks t JOIN studies s ON s.id = t.study_ref \
                 WHERE s.study_instance_uid = $1 AND t.state = 'claimed' AND t.claimed_by = $2 \
                   AND t.lease_expires_at > $3",
            )
            .bind(&report.study_instance_uid)
            .bind(user)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !may {
            return Err(StoreError::Invalid(
                "addenda are written by the report's signer or by the radiologist holding the \
                 study's review task"
                    .into(),
            ));
        }
        tx.rollback().await?;
        let (key_id, sealed) = self.signing_key(key, user, now).await?;
        let mut tx = self.begin_write().await?;
        let addendum_id: i64 = sqlx::query(
            "INSERT INTO report_addenda (report_id, author_id, text, signed_at, signer_key_id, signature) \
             VALUES ($1, $2, $3, $4, $5, '') RETURNING id",
        )
        .bind(report_id)
        .bind(user)
        .bind(text)
        .bind(now)
        .bind(&key_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let message = signing::canonical(&SignedAddendum {
            format: signing::ADDENDUM_FORMAT,
            report_id,
            addendum_id,
            report_signature: &report_signature,
            text,
            signer: &signer,
            signer_key_id: &key_id,
            signed_at: now,
        });
        let signature = signing::sign(key, user, &sealed, &message)?;
        sqlx::query("UPDATE report_addenda SET signature = $1 WHERE id = $2")
            .bind(&signature)
            .bind(addendum_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE reports SET state = 'amended', updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(report_id)
            .execute(&mut *tx)
            .await?;
        // A claimed addendum-review task of the study is done with it.
        sqlx::query(
            "UPDATE reading_tasks SET state = 'done', done_at = $1, updated_at = $1 \
             WHERE study_ref = (SELECT study_ref FROM reports WHERE id = $2) \
               AND kind = 'addendum-review' AND state = 'claimed' AND claimed_by = $3",
        )
        .bind(now)
        .bind(report_id)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        let study_ref: i64 = sqlx::query("SELECT study_ref FROM reports WHERE id = $1")
            .bind(report_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let version: i64 = sqlx::query("SELECT COUNT(*) FROM report_addenda WHERE report_id = $1")
            .bind(report_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        delivery::enqueue(&mut tx, report_id, version, now).await?;
        event(
            &mut tx,
            "report_amended",
            study_ref,
            serde_json::json!({ "report_id": report_id, "addendum_id": addendum_id, "clinic_id": report.clinic_id }),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Addendum {
            id: addendum_id,
            author: signer.clone(),
            text: text.to_owned(),
            signed_at: now,
            signer_key_id: key_id,
            signature,
        })
    }

    /// The signing key of `user`, made (and sealed) the first time.
    async fn signing_key(&self, key: &ReportKey, user: i64, now: i64) -> Result<(String, String)> {
        if let Some(r) =
            sqlx::query("SELECT key_id, sealed_private_key FROM signing_keys WHERE user_id = $1")
                .bind(user)
                .fetch_optional(self.pool())
                .await?
        {
            return Ok((r.try_get(0)?, r.try_get(1)?));
        }
        let (key_id, public, sealed) = signing::new_key_pair(key, user)?;
        // Two first signatures at once: the first key stored wins, both use it.
        sqlx::query(
            "INSERT INTO signing_keys (user_id, key_id, public_key, sealed_private_key, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user)
        .bind(&key_id)
        .bind(&public)
        .bind(&sealed)
        .bind(now)
        .execute(self.pool())
        .await?;
        let r =
            sqlx::query("SELECT key_id, sealed_private_key FROM signing_keys WHERE user_id = $1")
                .bind(user)
                .fetch_one(self.pool())
                .await?;
        Ok((r.try_get(0)?, r.try_get(1)?))
    }

    /// Report `id` with its addenda (no access check: see [`Index::visible_report`]).
    pub async fn report(&self, id: i64) -> Result<Option<Report>> {
        let sql = format!(
            "SELECT {REPORT_COLUMNS} FROM reports r JOIN studies s ON s.id = r.study_ref \
             JOIN patients p ON p.id = s.patient_ref JOIN users u ON u.id = r.author_id WHERE r.id = $1"
        );
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let mut report = report_from(&row)?;
        let rows = sqlx::query(
            "SELECT a.id, u.username, a.text, a.signed_at, a.signer_key_id, a.signature \
             FROM report_addenda a JOIN users u ON u.id = a.author_id WHERE a.report_id = $1 ORDER BY a.id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        for r in rows {
            report.addenda.push(Addendum {
                id: r.try_get(0)?,
                author: r.try_get(1)?,
                text: r.try_get(2)?,
                signed_at: r.try_get(3)?,
                signer_key_id: r.try_get(4)?,
                signature: r.try_get(5)?,
            });
        }
        Ok(Some(report))
    }

    /// Report `id` if `scope` may see its study. Drafts are shown to radiologists and
    /// administrators only: a clinic sees signed reports.
    pub async fn visible_report(&self, scope: Scope, id: i64) -> Result<Option<Report>> {
        let Some(report) = self.report(id).await? else {
            return Ok(None);
        };
        if self
            .visible_study_row(scope, &report.study_instance_uid)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        if report.state == "draft" && matches!(scope, Scope::Clinic(_) | Scope::Nothing) {
            return Ok(None);
        }
        Ok(Some(report))
    }

    /// The reports of a study, oldest first.
    pub async fn study_report_ids(&self, study_instance_uid: &str) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT r.id FROM reports r JOIN studies s ON s.id = r.study_ref \
             WHERE s.study_instance_uid = $1 ORDER BY r.id",
        )
        .bind(study_instance_uid)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Rebuilds what report `id` and its addenda signed from the stored values and checks
    /// each signature against its signer's public key. Needs no secret.
    pub async fn verify_report(&self, id: i64) -> Result<Option<Verification>> {
        let Some(report) = self.report(id).await? else {
            return Ok(None);
        };
        let mut v = Verification {
            report_id: id,
            valid: false,
            signer: None,
            signer_key_id: report.signer_key_id.clone(),
            signer_public_key: None,
            signed_at: report.signed_at,
            addenda: Vec::new(),
            problem: None,
        };
        let (Some(key_id), Some(signature), Some(signed_at)) =
            (&report.signer_key_id, &report.signature, report.signed_at)
        else {
            v.problem = Some("the report is not signed".into());
            return Ok(Some(v));
        };
        let Some((signer, public)) = self.public_key(key_id).await? else {
            v.problem = Some(format!("no public key {key_id}"));
            return Ok(Some(v));
        };
        v.signer = Some(signer.clone());
        v.signer_public_key = Some(public.clone());
        let message = signed_report_bytes(&report, &report.author, key_id, signed_at);
        let mut valid = signer == report.author && signing::verify(&public, &message, signature);
        if !valid {
            v.problem = Some("the report's signature does not match what is stored".into());
        }
        for a in &report.addenda {
            let ok = match self.public_key(&a.signer_key_id).await? {
                Some((a_signer, a_public)) => {
                    let message = signing::canonical(&SignedAddendum {
                        format: signing::ADDENDUM_FORMAT,
                        report_id: id,
                        addendum_id: a.id,
                        report_signature: signature,
                        text: &a.text,
                        signer: &a.author,
                        signer_key_id: &a.signer_key_id,
                        signed_at: a.signed_at,
                    });
                    a_signer == a.author && signing::verify(&a_public, &message, &a.signature)
                }
                None => false,
            };
            if !ok && v.problem.is_none() {
                v.problem = Some(format!("addendum {}'s signature does not match", a.id));
            }
            valid &= ok;
            v.addenda.push((a.id, ok));
        }
        v.valid = valid;
        Ok(Some(v))
    }

    async fn public_key(&self, key_id: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT u.username, k.public_key FROM signing_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Per clinic: how the central radiologists judged its preliminary impressions.
    pub async fn discrepancy_rates(&self) -> Result<Vec<ClinicDiscrepancies>> {
        let rows = sqlx::query(
            "SELECT c.name, \
               SUM(CASE WHEN r.agreement = 'agree' THEN 1 ELSE 0 END), \
               SUM(CASE WHEN r.agreement = 'minor' THEN 1 ELSE 0 END), \
               SUM(CASE WHEN r.agreement = 'major' THEN 1 ELSE 0 END) \
             FROM reports r JOIN studies s ON s.id = r.study_ref JOIN clinics c ON c.id = s.clinic_id \
             WHERE r.state <> 'draft' AND r.agreement IS NOT NULL GROUP BY c.name ORDER BY c.name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let (agree, minor, major): (i64, i64, i64) =
                    (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
                Ok(ClinicDiscrepancies {
                    clinic: r.try_get(0)?,
                    reviewed: agree + minor + major,
                    agree,
                    minor,
                    major,
                })
            })
            .collect()
    }
}
