//! Report delivery as a storage SCU: the signed report's Basic Text SR and Encapsulated
//! PDF pushed by C-STORE to the clinic's AE title that receives reports. The outbox, its
//! leases and retries are pacs-store's ([`pacs_store::reports::delivery`]); this module
//! does one round: lease what is due, make and store the documents, send them, record the
//! outcome. `pacs serve` runs a round every second on every node.
//!
//! Both documents go over one association, proposed in the transfer syntax they are
//! stored in (explicit VR little endian). A success or warning status for both is a delivery; anything else
//! (no association, a refused context, a failure status, a broken link) is a failed
//! attempt, retried later. Each successful delivery is audited (110104 DICOM Instances
//! Transferred, by this archive, the destination in the detail).

use std::sync::Arc;
use std::time::Duration;

use dicom_ul::ClientAssociationOptions;
use dicom_ul::pdu::PresentationContextResultReason;
use pacs_store::access::Scope;
use pacs_store::archive::Archive;
use pacs_store::audit::{Action, AuditEvent, EventId};
use pacs_store::index::AeRegistration;
use pacs_store::index::now_micros;
use pacs_store::query::Retrievable;
use pacs_store::reports::delivery::{
    Delivery, DeliveryPolicy, KeyImageRenderer, prepare_documents,
};
use pacs_store::reports::pdf::ReportFonts;

use crate::store_scu::store_one;

/// How long connecting to and negotiating with the clinic may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Deliveries leased per round.
pub const BATCH: i64 = 16;

/// What a delivery round needs besides the archive.
#[derive(Clone)]
pub struct DeliveryConfig {
    pub policy: DeliveryPolicy,
    /// This archive's AE title (the calling AE of the push).
    pub calling_ae: String,
    /// The reading centre, named in the documents.
    pub institution: String,
    /// Font files for the PDF; empty: the usual Debian locations.
    pub font_paths: Vec<std::path::PathBuf>,
    /// Renders key images into the PDF (none without one).
    pub key_images: Option<KeyImageRenderer>,
}

/// The fonts of report PDFs, loaded on first use (and again after a failure, so that
/// installing a font helps without a restart).
#[derive(Default)]
pub struct FontCache(Option<Arc<ReportFonts>>);

impl FontCache {
    fn get(&mut self, paths: &[std::path::PathBuf]) -> Result<Arc<ReportFonts>, String> {
        if let Some(f) = &self.0 {
            return Ok(f.clone());
        }
        let loaded = if paths.is_empty() {
            ReportFonts::discover()
        } else {
            ReportFonts::load(paths)
        }
        .map_err(|e| format!("no font for the report PDF: {e}"))?;
        let loaded = Arc::new(loaded);
        self.0 = Some(loaded.clone());
        Ok(loaded)
    }
}

/// One round: every due delivery (up to a batch) is attempted. Returns how many were
/// attempted.
pub async fn run_round(archive: &Archive, config: &DeliveryConfig, fonts: &mut FontCache) -> usize {
    let index = archive.index();
    let due = match index
        .claim_due_deliveries(now_micros(), &config.policy, BATCH)
        .await
    {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "report delivery: cannot read the outbox");
            return 0;
        }
    };
    let n = due.len();
    for d in due {
        attempt(archive, config, fonts, &d).await;
    }
    n
}

async fn attempt(archive: &Archive, config: &DeliveryConfig, fonts: &mut FontCache, d: &Delivery) {
    let index = archive.index();
    let failed = |dest: Option<String>, why: String| async move {
        tracing::warn!(delivery = d.id, report = d.report_id, error = %why, "report delivery failed");
        match index
            .delivery_failed(d, dest.as_deref(), &why, &config.policy, now_micros())
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::error!(
                delivery = d.id,
                report = d.report_id,
                "report delivery: giving up after the last attempt; an administrator can retry it"
            ),
            Err(e) => {
                tracing::error!(delivery = d.id, error = %e, "report delivery: cannot record the failure")
            }
        }
    };
    let fonts = match fonts.get(&config.font_paths) {
        Ok(f) => f,
        Err(why) => return failed(None, why).await,
    };
    let prepared = prepare_documents(
        archive,
        &fonts,
        d,
        &config.institution,
        config.key_images.as_ref(),
        now_micros(),
    )
    .await;
    if let Err(e) = prepared {
        return failed(None, format!("cannot make the report documents: {e}")).await;
    }
    let destination = match d.clinic_id {
        Some(clinic) => index.report_destination(clinic).await,
        None => Ok(None),
    };
    let destination = match destination {
        Ok(dest) => dest,
        Err(e) => return failed(None, format!("cannot look up the destination: {e}")).await,
    };
    let Some(dest) = destination else {
        if let Err(e) = index.delivery_without_destination(d, now_micros()).await {
            tracing::error!(delivery = d.id, error = %e, "report delivery: cannot record the state");
        }
        return;
    };
    let items = match documents_of(archive, d).await {
        Ok(items) => items,
        Err(why) => return failed(Some(dest.ae_title.to_string()), why).await,
    };
    match push(&config.calling_ae, &dest, &items, archive).await {
        Ok(()) => {
            let ae = dest.ae_title.to_string();
            let audit = AuditEvent::new(
                EventId::InstancesTransferred,
                Action::Read,
                config.calling_ae.as_str(),
                "report delivery",
            )
            .with_patient(
                items.first().map(|i| i.patient_id.clone()),
                items.first().and_then(|i| i.issuer_of_patient_id.clone()),
            )
            .with_study(items.first().map(|i| i.study_instance_uid.clone()))
            .with_instances(items.iter().map(|i| i.sop_instance_uid.clone()).collect())
            .with_detail(format!(
                "report {} (version {}) delivered to {ae}",
                d.report_id, d.version
            ));
            archive.audit_or_log(audit).await;
            if let Err(e) = index.delivery_succeeded(d, &ae, now_micros()).await {
                tracing::error!(delivery = d.id, error = %e,
                    "report delivery: delivered but cannot record it; it will be sent again");
            } else {
                tracing::info!(delivery = d.id, report = d.report_id, destination = %ae,
                    "report delivered");
            }
        }
        Err(why) => failed(Some(dest.ae_title.to_string()), why).await,
    }
}

/// The stored SR and PDF of a delivery.
async fn documents_of(archive: &Archive, d: &Delivery) -> Result<Vec<Retrievable>, String> {
    let study = archive
        .index()
        .report(d.report_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("report {} is gone", d.report_id))?
        .study_instance_uid;
    let mut items = Vec::with_capacity(2);
    for (series, instance) in [
        (&d.sr_series_uid, &d.sr_instance_uid),
        (&d.pdf_series_uid, &d.pdf_instance_uid),
    ] {
        let found = archive
            .index()
            .retrievable(Scope::All, &study, Some(series), Some(instance))
            .await
            .map_err(|e| e.to_string())?;
        items.push(
            found
                .into_iter()
                .next()
                .ok_or_else(|| format!("the report document {instance} is not in the archive"))?,
        );
    }
    Ok(items)
}

/// Sends `items` to `dest` over one association.
async fn push(
    calling_ae: &str,
    dest: &AeRegistration,
    items: &[Retrievable],
    archive: &Archive,
) -> Result<(), String> {
    let (Some(host), Some(port)) = (dest.host, dest.port) else {
        return Err(format!("{} has no host and port", dest.ae_title));
    };
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae.to_owned())
        .called_ae_title(dest.ae_title.to_string())
        .max_pdu_length(262_138);
    for item in items {
        options = options.with_presentation_context(
            item.sop_class_uid.clone(),
            vec![item.transfer_syntax_uid.clone()],
        );
    }
    let mut sub =
        match tokio::time::timeout(CONNECT_TIMEOUT, options.establish_async((host, port))).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                return Err(format!(
                    "cannot associate with {} at {host}:{port}: {e}",
                    dest.ae_title
                ));
            }
            Err(_) => {
                return Err(format!(
                    "{} at {host}:{port} did not answer in time",
                    dest.ae_title
                ));
            }
        };
    let max_pdv = (sub.acceptor_max_pdu_length() as usize)
        .saturating_sub(6)
        .clamp(1024, 4 << 20);
    let mut outcome = Ok(());
    for (i, item) in items.iter().enumerate() {
        let accepted = sub.presentation_contexts().iter().find(|c| {
            c.reason == PresentationContextResultReason::Acceptance
                && trim(&c.abstract_syntax) == item.sop_class_uid
        });
        let Some(pc) = accepted.map(|c| (c.id, trim(&c.transfer_syntax).to_owned())) else {
            outcome = Err(format!(
                "{} accepted no presentation context for {}",
                dest.ae_title, item.sop_class_uid
            ));
            break;
        };
        if pc.1 != item.transfer_syntax_uid {
            outcome = Err(format!(
                "{} accepts {} only in {}, and the archive sends it as stored ({})",
                dest.ae_title, item.sop_class_uid, pc.1, item.transfer_syntax_uid
            ));
            break;
        }
        let message_id = u16::try_from(i + 1).unwrap_or(u16::MAX);
        let stored = store_one(
            &mut sub, item, pc.0, &pc.1, message_id, max_pdv, archive, None,
        );
        match stored.await {
            Ok(st) if st == 0 || (0xB000..=0xBFFF).contains(&st) || st == 0x0107 => {}
            Ok(st) => {
                outcome = Err(format!(
                    "{} answered C-STORE of {} with status {st:#06X}",
                    dest.ae_title, item.sop_instance_uid
                ));
                break;
            }
            Err(e) => {
                outcome = Err(format!(
                    "C-STORE of {} to {}: {}",
                    item.sop_instance_uid,
                    dest.ae_title,
                    e.trim_start_matches("link: ")
                ));
                break;
            }
        }
    }
    let _ = sub.release().await;
    outcome
}

fn trim(s: &str) -> &str {
    s.trim_end_matches('\0').trim()
}
