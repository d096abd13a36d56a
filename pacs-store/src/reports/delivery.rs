//! Delivery of signed reports to the clinic that sent the study: the durable outbox
//! (`report_deliveries`) and the documents it carries.
//!
//! Signing a report (and signing each addendum) writes, in the same transaction, a
//! delivery row for that version of the report with the UIDs of its two documents (Basic
//! Text SR and Encapsulated PDF, [`super::documents`]) in state `pending`. A worker (the
//! delivery keeper of `pacs serve`, on any node):
//!
//! 1. leases due rows ([`Index::claim_due_deliveries`]: one node at a time per row);
//! 2. makes the documents and stores them in the archive, in the report's study
//!    ([`prepare_documents`]; `archive_authored`, so the study is not reopened and no
//!    addendum review follows), once ([`Index::mark_documents_stored`]);
//! 3. sends both by C-STORE to the clinic's AE title that `receives_reports`, and records
//!    the outcome: [`Index::delivery_succeeded`] (`delivery_completed` event) or
//!    [`Index::delivery_failed`] (`delivery_failed` event; retried with exponential
//!    backoff until [`DeliveryPolicy::max_attempts`], then `failed` until an
//!    administrator retries it). A clinic with no such AE gets `no_destination`.
//!
//! Nothing is delivered twice: a row is marked delivered in the transaction that records
//! the clinic's success response, and a lease keeps other nodes off a row being sent. If
//! the process dies between the clinic's response and that write, the next attempt sends
//! the same SOP Instance UIDs with the same bytes, which a receiving archive treats as
//! the same instances.

use std::time::Duration;

use dicom_encoding::TransferSyntaxIndex as _;

use sqlx::Row as _;

use super::documents::{self, DocumentInput, DocumentUids, StudyIdentity};
use super::pdf::{PdfAddendum, PdfReport, ReportFonts};
use super::{Report, event};
use crate::archive::{Archive, IngestOutcome, Source};
use crate::index::{Index, split_values};
use crate::{Result, StoreError};

/// Retries and leases of delivery.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// Wait after the first failed attempt; doubled after each further one.
    pub retry_first: Duration,
    /// The longest wait between attempts.
    pub retry_max: Duration,
    /// Attempts before a delivery is `failed` (an administrator can retry it).
    pub max_attempts: i64,
    /// How long a node may take to send one delivery before another may try.
    pub lease: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            retry_first: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            max_attempts: 200,
            lease: Duration::from_secs(300),
        }
    }
}

impl DeliveryPolicy {
    /// The wait after `attempts` failed attempts.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let shift = attempts.clamp(1, 30) - 1;
        self.retry_first
            .saturating_mul(1u32 << shift)
            .min(self.retry_max)
    }
}

/// One version of a report on its way to the clinic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub id: i64,
    pub report_id: i64,
    /// 0: the report as signed; n: with its first n addenda.
    pub version: i64,
    pub sr_series_uid: String,
    pub sr_instance_uid: String,
    pub pdf_series_uid: String,
    pub pdf_instance_uid: String,
    /// The SR and PDF are in the archive (since then, Unix µs).
    pub documents_stored_at: Option<i64>,
    /// pending, delivered, failed or no_destination.
    pub state: String,
    /// The AE title it was (last) sent to.
    pub destination_ae: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub created_at: i64,
    pub clinic_id: Option<i64>,
}

const DELIVERY_COLUMNS: &str = "d.id, d.report_id, d.version, d.sr_series_uid, d.sr_instance_uid, \
     d.pdf_series_uid, d.pdf_instance_uid, d.documents_stored_at, d.state, d.destination_ae, \
     d.attempts, d.next_attempt_at, d.last_error, d.delivered_at, d.created_at, s.clinic_id";

/// `FROM` clause that [`DELIVERY_COLUMNS`] reads.
const DELIVERY_FROM: &str = "FROM report_deliveries d JOIN reports r ON r.id = d.report_id \
     JOIN studies s ON s.id = r.study_ref";

fn delivery_from(r: &sqlx::any::AnyRow) -> Result<Delivery> {
    Ok(Delivery {
        id: r.try_get(0)?,
        report_id: r.try_get(1)?,
        version: r.try_get(2)?,
        sr_series_uid: r.try_get(3)?,
        sr_instance_uid: r.try_get(4)?,
        pdf_series_uid: r.try_get(5)?,
        pdf_instance_uid: r.try_get(6)?,
        documents_stored_at: r.try_get(7)?,
        state: r.try_get(8)?,
        destination_ae: r.try_get(9)?,
        attempts: r.try_get(10)?,
        next_attempt_at: r.try_get(11)?,
        last_error: r.try_get(12)?,
        delivered_at: r.try_get(13)?,
        created_at: r.try_get(14)?,
        clinic_id: r.try_get(15)?,
    })
}

impl Delivery {
    pub fn uids(&self) -> DocumentUids {
        DocumentUids {
            sr_series: self.sr_series_uid.clone(),
            sr_instance: self.sr_instance_uid.clone(),
            pdf_series: self.pdf_series_uid.clone(),
            pdf_instance: self.pdf_instance_uid.clone(),
        }
    }
}

/// A new UID under 2.25 (PS3.5 B.2: a UUID as a decimal integer).
fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// Queues `version` of `report_id` for delivery, within the signing transaction.
pub(crate) async fn enqueue(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    report_id: i64,
    version: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO report_deliveries (report_id, version, sr_series_uid, sr_instance_uid, \
           pdf_series_uid, pdf_instance_uid, state, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7, $7)",
    )
    .bind(report_id)
    .bind(version)
    .bind(new_uid())
    .bind(new_uid())
    .bind(new_uid())
    .bind(new_uid())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Index {
    /// Leases up to `limit` deliveries due at `now` (pending, next attempt passed, no
    /// other node's lease running) for `policy.lease`.
    pub async fn claim_due_deliveries(
        &self,
        now: i64,
        policy: &DeliveryPolicy,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let lease_until = now + policy.lease.as_micros() as i64;
        let mut tx = self.begin_write().await?;
        let ids: Vec<i64> = sqlx::query(
            "SELECT id FROM report_deliveries WHERE state = 'pending' AND next_attempt_at <= $1 \
               AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            // Conditional: on PostgreSQL another node may have leased it meanwhile.
            let n = sqlx::query(
                "UPDATE report_deliveries SET lease_until = $1 WHERE id = $2 AND state = 'pending' \
                   AND (lease_until IS NULL OR lease_until <= $3)",
            )
            .bind(lease_until)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                out.push(id);
            }
        }
        tx.commit().await?;
        let mut deliveries = Vec::with_capacity(out.len());
        for id in out {
            if let Some(d) = self.delivery(id).await? {
                deliveries.push(d);
            }
        }
        Ok(deliveries)
    }

    /// One delivery.
    pub async fn delivery(&self, id: i64) -> Result<Option<Delivery>> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} {DELIVERY_FROM} WHERE d.id = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(delivery_from)
            .transpose()
    }

    /// The deliveries of a report, oldest version first.
    pub async fn report_deliveries(&self, report_id: i64) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} {DELIVERY_FROM} WHERE d.report_id = $1 ORDER BY d.version"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(report_id)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(delivery_from)
            .collect()
    }

    /// Deliveries in `state` (all when `None`), newest first, for administrators.
    pub async fn deliveries(&self, state: Option<&str>, limit: i64) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} {DELIVERY_FROM} WHERE ($1 IS NULL OR d.state = $1) \
             ORDER BY d.id DESC LIMIT $2"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state)
            .bind(limit.clamp(1, 1000))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(delivery_from)
            .collect()
    }

    /// The report and study a delivery's documents describe.
    pub async fn delivery_subject(&self, d: &Delivery) -> Result<(Report, StudyIdentity)> {
        let report = self
            .report(d.report_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("report {}", d.report_id)))?;
        let r = sqlx::query(
            "SELECT s.study_instance_uid, s.study_date, s.study_time, s.study_id, \
               s.accession_number, s.referring_physician_name, s.study_description, \
               s.modalities_in_study, p.patient_name, p.patient_id, p.issuer_of_patient_id, \
               p.birth_date, p.sex, c.name \
             FROM reports r JOIN studies s ON s.id = r.study_ref \
             JOIN patients p ON p.id = s.patient_ref LEFT JOIN clinics c ON c.id = s.clinic_id \
             WHERE r.id = $1",
        )
        .bind(d.report_id)
        .fetch_one(self.pool())
        .await?;
        let modalities: Option<String> = r.try_get(7)?;
        let study = StudyIdentity {
            study_instance_uid: r.try_get(0)?,
            study_date: r.try_get(1)?,
            study_time: r.try_get(2)?,
            study_id: r.try_get(3)?,
            accession_number: r.try_get(4)?,
            referring_physician_name: r.try_get(5)?,
            study_description: r.try_get(6)?,
            modalities: split_values(modalities.as_deref()),
            patient_name: r.try_get(8)?,
            patient_id: r.try_get(9)?,
            issuer_of_patient_id: r.try_get(10)?,
            birth_date: r.try_get(11)?,
            sex: r.try_get(12)?,
            clinic: r.try_get(13)?,
        };
        Ok((report, study))
    }

    /// Records that a delivery's documents are in the archive.
    pub async fn mark_documents_stored(&self, id: i64, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE report_deliveries SET documents_stored_at = $1, updated_at = $1 \
             WHERE id = $2 AND documents_stored_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The clinic confirmed both documents: delivered, once.
    pub async fn delivery_succeeded(
        &self,
        d: &Delivery,
        destination: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE report_deliveries SET state = 'delivered', destination_ae = $1, \
               attempts = attempts + 1, delivered_at = $2, lease_until = NULL, \
               last_error = NULL, updated_at = $2 WHERE id = $3 AND state = 'pending'",
        )
        .bind(destination)
        .bind(now)
        .bind(d.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            let payload = serde_json::json!({
                "delivery_id": d.id, "report_id": d.report_id, "version": d.version,
                "clinic_id": d.clinic_id, "destination_ae": destination,
                "attempts": d.attempts + 1,
            });
            delivery_event(&mut tx, d, "delivery_completed", payload, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// An attempt failed with `error`: retried after the policy's backoff, or `failed`
    /// after its last attempt. Returns whether it will be retried.
    pub async fn delivery_failed(
        &self,
        d: &Delivery,
        destination: Option<&str>,
        error: &str,
        policy: &DeliveryPolicy,
        now: i64,
    ) -> Result<bool> {
        let attempts = d.attempts + 1;
        let retry = attempts < policy.max_attempts;
        let next = now + policy.backoff(attempts).as_micros() as i64;
        let error: String = error.chars().take(1000).collect();
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE report_deliveries SET state = $1, destination_ae = $2, attempts = $3, \
               next_attempt_at = $4, lease_until = NULL, last_error = $5, updated_at = $6 \
             WHERE id = $7 AND state = 'pending'",
        )
        .bind(if retry { "pending" } else { "failed" })
        .bind(destination)
        .bind(attempts)
        .bind(next)
        .bind(&error)
        .bind(now)
        .bind(d.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            let payload = serde_json::json!({
                "delivery_id": d.id, "report_id": d.report_id, "version": d.version,
                "clinic_id": d.clinic_id, "destination_ae": destination,
                "attempts": attempts, "error": error,
                "next_attempt_at": retry.then_some(next),
            });
            delivery_event(&mut tx, d, "delivery_failed", payload, now).await?;
        }
        tx.commit().await?;
        Ok(retry)
    }

    /// The clinic has no AE title that receives reports: nothing to send to (an
    /// administrator can register one and retry).
    pub async fn delivery_without_destination(&self, d: &Delivery, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE report_deliveries SET state = 'no_destination', lease_until = NULL, \
               last_error = $1, updated_at = $2 WHERE id = $3 AND state = 'pending'",
        )
        .bind(NO_DESTINATION)
        .bind(now)
        .bind(d.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            let payload = serde_json::json!({
                "delivery_id": d.id, "report_id": d.report_id, "version": d.version,
                "clinic_id": d.clinic_id, "error": NO_DESTINATION, "next_attempt_at": null,
            });
            delivery_event(&mut tx, d, "delivery_failed", payload, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sends a `failed` or `no_destination` delivery again at once (administrators).
    pub async fn retry_delivery(&self, id: i64, now: i64) -> Result<Delivery> {
        let n = sqlx::query(
            "UPDATE report_deliveries SET state = 'pending', next_attempt_at = $1, attempts = 0, \
               lease_until = NULL, updated_at = $1 \
             WHERE id = $2 AND state IN ('failed', 'no_destination')",
        )
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected();
        let d = self
            .delivery(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("delivery {id}")))?;
        if n == 0 {
            return Err(StoreError::Invalid(format!(
                "delivery {id} is {}: only failed deliveries and those without a destination \
                 are retried by hand",
                d.state
            )));
        }
        Ok(d)
    }

    /// The SOP Instance UID of the newest stored PDF of a report, if any.
    pub async fn report_pdf_instance(&self, report_id: i64) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT pdf_instance_uid FROM report_deliveries \
             WHERE report_id = $1 AND documents_stored_at IS NOT NULL \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(report_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }
}

/// Records a delivery's event (about the report's study).
async fn delivery_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    d: &Delivery,
    kind: &str,
    payload: serde_json::Value,
    now: i64,
) -> Result<()> {
    let study_ref: i64 = sqlx::query("SELECT study_ref FROM reports WHERE id = $1")
        .bind(d.report_id)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    event(tx, kind, study_ref, payload, now).await
}

const NO_DESTINATION: &str = "the clinic has no AE title that receives reports (register one \
     with a host and port and receives_reports, then retry the delivery)";

/// Renders frame `frame` (1-based) of a stored Part 10 object as a baseline JPEG:
/// `(bytes, width, height)`. Supplied by the composition root (the renderer lives with the
/// HTTP adapter), so that key images appear in the report's PDF.
pub type KeyImageRenderer = std::sync::Arc<
    dyn Fn(&[u8], u32) -> std::result::Result<(Vec<u8>, u32, u32), String> + Send + Sync,
>;

/// The report's key images for its PDF, rendered; one that cannot be read or rendered is
/// left out with a warning (the report itself must still go out).
async fn render_key_images(
    archive: &Archive,
    report: &Report,
    renderer: Option<&KeyImageRenderer>,
) -> Vec<super::pdf::KeyImage> {
    let Some(renderer) = renderer else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (n, k) in report.content.key_images.iter().enumerate() {
        let found = archive
            .index()
            .retrievable(
                crate::access::Scope::All,
                &report.study_instance_uid,
                Some(&k.series_instance_uid),
                Some(&k.sop_instance_uid),
            )
            .await;
        let Some(item) = found.ok().and_then(|v| v.into_iter().next()) else {
            tracing::warn!(report = report.id, sop = %k.sop_instance_uid, "key image not found");
            continue;
        };
        let object = match crate::objects::ObjectKey::parse(&item.object_key) {
            Ok(key) => archive.objects().get(&key).await,
            Err(e) => Err(e),
        };
        let object = match object {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(report = report.id, error = %e, "key image cannot be read");
                continue;
            }
        };
        let (renderer, frame) = (renderer.clone(), k.frame);
        let rendered = tokio::task::spawn_blocking(move || renderer(&object, frame)).await;
        match rendered {
            Ok(Ok((jpeg, width, height))) => out.push(super::pdf::KeyImage {
                jpeg,
                width,
                height,
                caption: if k.caption.is_empty() {
                    format!("Key image {}", n + 1)
                } else {
                    format!("Key image {}: {}", n + 1, k.caption)
                },
            }),
            Ok(Err(why)) => {
                tracing::warn!(report = report.id, sop = %k.sop_instance_uid, reason = %why,
                    "key image cannot be rendered; the PDF goes without it");
            }
            Err(e) => tracing::warn!(report = report.id, error = %e, "key image task failed"),
        }
    }
    out
}

/// Makes the SR and PDF of delivery `d` and stores them in the archive (in the report's
/// study, from its clinic, `archive_authored`), unless done already. `institution` names
/// the reading centre in the documents.
pub async fn prepare_documents(
    archive: &Archive,
    fonts: &std::sync::Arc<ReportFonts>,
    d: &Delivery,
    institution: &str,
    renderer: Option<&KeyImageRenderer>,
    now: i64,
) -> Result<()> {
    if d.documents_stored_at.is_some() {
        return Ok(());
    }
    let index = archive.index();
    let (report, study) = index.delivery_subject(d).await?;
    let uids = d.uids();
    let input = DocumentInput {
        report: &report,
        version: usize::try_from(d.version).unwrap_or_default(),
        study: &study,
        uids: &uids,
        institution,
    };
    let sr = documents::basic_text_sr(&input)?;
    let mut pdf_report = pdf_report(&input);
    pdf_report.key_images = render_key_images(archive, &report, renderer).await;
    if !fonts.covers(&pdf_text(&pdf_report)) {
        tracing::warn!(
            report = report.id,
            "report PDF: some characters have no glyph in the configured fonts (see report_fonts)"
        );
    }
    let fonts = fonts.clone();
    let pdf = tokio::task::spawn_blocking(move || super::pdf::render_pdf(&pdf_report, &fonts))
        .await
        .map_err(|e| StoreError::Invalid(format!("the PDF task failed: {e}")))??;
    let pdf = documents::encapsulated_pdf(&input, &pdf)?;
    let source = Source {
        clinic_id: report.clinic_id,
        clinic_name: study.clinic.clone(),
        ae_title: None,
        uploader: None,
        archive_authored: true,
    };
    for (what, bytes) in [("SR", sr), ("PDF", pdf)] {
        match archive.import_bytes(bytes, &source).await {
            Ok(IngestOutcome::Stored { .. } | IngestOutcome::Duplicate) => {}
            Ok(IngestOutcome::ConflictKept { object_key }) => {
                // Made again with other bytes (the report cannot change, so only after an
                // upgrade of this code): the first copy stays the instance.
                tracing::warn!(report = report.id, %object_key,
                    "the report {what} was made again with other bytes; the first is kept");
            }
            Err(e) => {
                return Err(StoreError::Invalid(format!(
                    "cannot store the report {what} in the archive: {e}"
                )));
            }
        }
    }
    index.mark_documents_stored(d.id, now).await
}

/// The newest PDF of report `report_id` as stored in the archive (what the clinic
/// received), or `None` while it is being made. No access check: the caller checks and
/// audits the report read.
pub async fn report_pdf(archive: &Archive, report_id: i64) -> Result<Option<Vec<u8>>> {
    let index = archive.index();
    let Some(uid) = index.report_pdf_instance(report_id).await? else {
        return Ok(None);
    };
    let instance = index
        .find_instance(&uid)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("the report PDF {uid} is not indexed")))?;
    let key = crate::objects::ObjectKey::parse(&instance.object_key)?;
    let bytes = archive.objects().get(&key).await?;
    let dataset = bytes.slice((instance.dataset_offset as usize).min(bytes.len())..);
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(&instance.transfer_syntax_uid)
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "the report PDF is stored in an unknown transfer syntax {}",
                instance.transfer_syntax_uid
            ))
        })?;
    let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(&dataset[..], ts)
        .map_err(|e| StoreError::Invalid(format!("the stored report PDF cannot be read: {e}")))?;
    documents::pdf_of(&obj)
        .map(Some)
        .ok_or_else(|| StoreError::Invalid("the stored report PDF has no document".into()))
}

/// The PDF's content for one version of a report.
pub fn pdf_report(input: &DocumentInput) -> PdfReport {
    let r = input.report;
    let s = input.study;
    let c = &r.content;
    let addenda = &r.addenda[..input.version.min(r.addenda.len())];
    let mut sections = Vec::new();
    for (heading, text) in [
        ("Clinical information", &c.clinical_information),
        ("Technique", &c.technique),
        ("Findings", &c.findings),
        ("Impression", &c.impression),
    ] {
        if !text.trim().is_empty() {
            sections.push((heading.to_owned(), text.clone()));
        }
    }
    let agreement = c.agreement.map(|a| {
        let mut line = format!(
            "Agreement with the township preliminary impression: {}",
            a.as_str().replace('_', " ")
        );
        if let Some(comment) = c.agreement_comment.as_deref().filter(|s| !s.is_empty()) {
            line.push_str(" — ");
            line.push_str(comment);
        }
        line
    });
    PdfReport {
        title: "Radiology report".into(),
        institution: input.institution.to_owned(),
        patient_name: super::pdf::format_person_name(s.patient_name.as_deref().unwrap_or("")),
        patient_id: s.patient_id.clone(),
        birth_date: s.birth_date.as_deref().map(display_date),
        sex: s.sex.clone(),
        clinic: s.clinic.clone(),
        study_date: s.study_date.as_deref().map(display_date),
        accession_number: s.accession_number.clone(),
        modality: (!s.modalities.is_empty()).then(|| s.modalities.join(", ")),
        study_description: s.study_description.clone(),
        study_instance_uid: s.study_instance_uid.clone(),
        sections,
        agreement,
        critical: c.critical,
        signer: r.author.clone(),
        signed_at: display_time(r.signed_at.unwrap_or_default()),
        signature_fingerprint: documents::fingerprint(r.signature.as_deref().unwrap_or("")),
        signer_key_id: r.signer_key_id.clone().unwrap_or_default(),
        verify_hint: format!(
            "Verify: GET /api/reports/{}/verify or `pacs report verify {}`",
            r.id, r.id
        ),
        addenda: addenda
            .iter()
            .map(|a| PdfAddendum {
                author: a.author.clone(),
                signed_at: display_time(a.signed_at),
                text: a.text.clone(),
                signature_fingerprint: documents::fingerprint(&a.signature),
            })
            .collect(),
        key_images: Vec::new(),
    }
}

/// All the text of a PDF report, to check the fonts cover it.
fn pdf_text(p: &PdfReport) -> String {
    let mut s = format!("{} {} {}", p.patient_name, p.institution, p.signer);
    for (h, t) in &p.sections {
        s.push_str(h);
        s.push_str(t);
    }
    for a in &p.addenda {
        s.push_str(&a.text);
    }
    s.extend(p.agreement.as_deref());
    s
}

/// `20261123` → `2026-11-23` (anything else as it is).
fn display_date(da: &str) -> String {
    let d = da.trim();
    if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..])
    } else {
        d.to_owned()
    }
}

/// Unix µs → `2026-11-23 08:15 UTC`.
fn display_time(micros: i64) -> String {
    let t = crate::audit::format_micros(micros);
    format!("{} {} UTC", &t[..10], &t[11..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let p = DeliveryPolicy {
            retry_first: Duration::from_secs(30),
            retry_max: Duration::from_secs(600),
            ..DeliveryPolicy::default()
        };
        assert_eq!(p.backoff(1), Duration::from_secs(30));
        assert_eq!(p.backoff(2), Duration::from_secs(60));
        assert_eq!(p.backoff(5), Duration::from_secs(480));
        assert_eq!(p.backoff(6), Duration::from_secs(600));
        assert_eq!(p.backoff(1000), Duration::from_secs(600));
    }

    #[test]
    fn dates_and_times_for_people() {
        assert_eq!(display_date("20261123"), "2026-11-23");
        assert_eq!(display_date("2026"), "2026");
        assert_eq!(display_time(1_795_421_730_000_000), "2026-11-23 08:15 UTC");
    }
}
