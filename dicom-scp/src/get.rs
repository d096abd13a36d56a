//! C-GET SCP (PS3.4 C.4.3): Patient Root and Study Root, levels STUDY, SERIES and IMAGE.
//! The matching instances within the calling AE's clinic go back on the same association
//! as C-STORE sub-operations, each followed by a pending C-GET-RSP with the counts.
//!
//! An instance is sent on a presentation context of its SOP class whose transfer syntax is
//! the one it is stored in (objects are sent as stored, never transcoded here) and for
//! which the peer took the SCP role; without one its sub-operation fails (counted, listed
//! in the final identifier's Failed SOP Instance UID List). A C-CANCEL-RQ stops after the
//! current sub-operation (final status 0xFE00). Final status: success, 0xB000 when some
//! failed, 0xA702 when all did. Unknown or out-of-scope UIDs simply match nothing. Audited
//! as 110104 DICOM Instances Transferred (action R) with the instances, by the AE.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use pacs_store::access::Scope;
use pacs_store::archive::Archive;
use pacs_store::audit::{Action, AuditEvent, EventId, Outcome};
use pacs_store::query::{Retrievable, is_uid};

use crate::association::{Established, Incoming, PduStream, Transport};
use crate::dimse::{self, CommandBuilder, command_field, status};
use crate::transcode;

/// Role of a peer that retrieves (in the audit trail).
pub const RETRIEVING_AE: &str = "retrieving AE";
/// The most instances one C-GET sends.
pub const MAX_INSTANCES: usize = 100_000;

pub fn is_get_sop_class(uid: &str) -> bool {
    uid == uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET
        || uid == uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET
}

pub(crate) struct Counts {
    pub(crate) remaining: u16,
    pub(crate) completed: u16,
    pub(crate) failed: u16,
    pub(crate) warning: u16,
    /// The SOP Instance UIDs of the failed sub-operations.
    pub(crate) failed_uids: Vec<String>,
}

impl Counts {
    /// Before the first of `total` sub-operations.
    pub(crate) fn new(total: usize) -> Counts {
        Counts {
            remaining: total.min(u16::MAX as usize) as u16,
            completed: 0,
            failed: 0,
            warning: 0,
            failed_uids: Vec::new(),
        }
    }

    /// Counts one sub-operation of `service` (C-GET, C-MOVE) for `sop`: the peer's
    /// C-STORE-RSP status, or why it could not be done.
    pub(crate) fn record(&mut self, service: &str, sop: &str, outcome: Result<u16, String>) {
        match outcome {
            Ok(st) if st == status::SUCCESS => self.completed += 1,
            Ok(st) if (0xB000..=0xBFFF).contains(&st) => self.warning += 1,
            Ok(st) => {
                tracing::info!(%sop, status = format!("{st:#06X}"), "{service} sub-operation refused by the peer");
                self.failed += 1;
                self.failed_uids.push(sop.to_owned());
            }
            Err(why) => {
                tracing::info!(%sop, reason = %why, "{service} sub-operation failed");
                self.failed += 1;
                self.failed_uids.push(sop.to_owned());
            }
        }
    }

    /// The final status (PS3.4 C.4.2.1.5, C.4.3.1.4): cancelled, all failed, some failed
    /// or warned, or success.
    pub(crate) fn final_status(&self, cancelled: bool) -> u16 {
        if cancelled {
            status::CANCEL
        } else if self.failed > 0 && self.completed + self.warning == 0 {
            0xA702
        } else if self.failed > 0 || self.warning > 0 {
            status::WARNING_COERCION
        } else {
            status::SUCCESS
        }
    }
}

/// The C-STORE-RQ of a sub-operation; for C-MOVE with the Move Originator (AE title and the
/// C-MOVE-RQ's message ID).
pub(crate) fn store_rq(
    item: &Retrievable,
    message_id: u16,
    originator: Option<(&str, u16)>,
) -> Vec<u8> {
    let mut b = CommandBuilder::new()
        .uid(tags::AFFECTED_SOP_CLASS_UID, &item.sop_class_uid)
        .us(tags::COMMAND_FIELD, command_field::C_STORE_RQ)
        .us(tags::MESSAGE_ID, message_id)
        .us(tags::PRIORITY, 0)
        .us(tags::COMMAND_DATA_SET_TYPE, 0x0000)
        .uid(tags::AFFECTED_SOP_INSTANCE_UID, &item.sop_instance_uid);
    if let Some((ae, id)) = originator {
        b = b
            .lo(tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE, ae)
            .us(tags::MOVE_ORIGINATOR_MESSAGE_ID, id);
    }
    b.build()
}

/// Serves one C-GET-RQ whose identifier is `identifier` (presentation context `pc`).
pub async fn serve<S: Transport>(
    cmd: &dimse::Command,
    pc: u8,
    identifier: &[u8],
    assoc: &Established,
    archive: &Archive,
    link: &mut PduStream<S>,
) -> Result<(), String> {
    let context = &assoc.contexts[&pc];
    let items = match select(archive, assoc, &context.transfer_syntax, identifier).await {
        Ok(items) => items,
        Err((st, why)) => {
            tracing::warn!(ae = %assoc.calling_ae, reason = %why, "C-GET refused");
            archive
                .audit_or_log(
                    event(assoc)
                        .with_outcome(Outcome::MinorFailure, format!("C-GET refused: {why}")),
                )
                .await;
            let rsp = dimse::response(cmd, command_field::C_GET_RSP, st, Some(&why));
            return link.send_command(pc, rsp).await.map_err(|e| e.to_string());
        }
    };
    if let Some(first) = items.first() {
        let e = event(assoc)
            .with_patient(
                Some(first.patient_id.clone()),
                first.issuer_of_patient_id.clone(),
            )
            .with_study(Some(first.study_instance_uid.clone()))
            .with_instances(items.iter().map(|i| i.sop_instance_uid.clone()).collect())
            .with_detail("C-GET");
        if let Err(e) = archive.index().audit_read(e).await {
            tracing::error!(error = %e, "C-GET: cannot write the audit event; refusing");
            let rsp = dimse::response(
                cmd,
                command_field::C_GET_RSP,
                status::PROCESSING_FAILURE,
                Some("the archive could not record the retrieve"),
            );
            return link.send_command(pc, rsp).await.map_err(|e| e.to_string());
        }
    }
    let mut counts = Counts::new(items.len());
    let mut cancelled = false;
    let mut message_id = cmd.message_id.wrapping_add(1);
    for item in &items {
        if cancelled {
            break;
        }
        counts.remaining = counts.remaining.saturating_sub(1);
        // A context of the class with the peer as storage SCP: in the stored syntax, else a
        // native one the instance is converted to.
        let offered = assoc.contexts.iter().filter(|(_, c)| {
            c.abstract_syntax == item.sop_class_uid
                && assoc.peer_scp_classes.contains(&item.sop_class_uid)
        });
        let store_pc = transcode::pick(
            &item.transfer_syntax_uid,
            offered.clone().map(|(_, c)| c.transfer_syntax.as_str()),
        )
        .and_then(|ts| {
            offered
                .clone()
                .find(|(_, c)| c.transfer_syntax == ts)
                .map(|(id, _)| (*id, ts.to_owned()))
        });
        let outcome = match store_pc {
            None => Err(format!(
                "no presentation context for {} in {} or an uncompressed syntax with the SCP role",
                item.sop_class_uid, item.transfer_syntax_uid
            )),
            Some((spc, ts)) => {
                message_id = message_id.wrapping_add(1);
                send_one(
                    item,
                    spc,
                    &ts,
                    message_id,
                    pc,
                    archive,
                    link,
                    &mut cancelled,
                )
                .await?
            }
        };
        counts.record("C-GET", &item.sop_instance_uid, outcome);
        if counts.remaining > 0 && !cancelled {
            let rsp = counts_response(
                cmd,
                command_field::C_GET_RSP,
                status::PENDING,
                &counts,
                false,
            );
            link.send_command(pc, rsp)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let final_status = counts.final_status(cancelled);
    let with_list = !counts.failed_uids.is_empty();
    let rsp = counts_response(
        cmd,
        command_field::C_GET_RSP,
        final_status,
        &counts,
        with_list,
    );
    link.send_command(pc, rsp)
        .await
        .map_err(|e| e.to_string())?;
    if with_list {
        let mut id = InMemDicomObject::new_empty();
        id.put(DataElement::new(
            Tag(0x0008, 0x0058),
            VR::UI,
            PrimitiveValue::Strs(std::mem::take(&mut counts.failed_uids).into()),
        ));
        let ts = TransferSyntaxRegistry
            .get(&context.transfer_syntax)
            .ok_or("unknown transfer syntax")?;
        let mut bytes = Vec::new();
        id.write_dataset_with_ts(&mut bytes, ts)
            .map_err(|e| e.to_string())?;
        link.send_data(pc, bytes).await.map_err(|e| e.to_string())?;
    }
    crate::service::count_request("C-GET", final_status);
    Ok(())
}

pub(crate) fn event(assoc: &Established) -> AuditEvent {
    AuditEvent::new(
        EventId::InstancesTransferred,
        Action::Read,
        assoc.calling_ae.as_str(),
        RETRIEVING_AE,
    )
    .with_ip(Some(assoc.peer))
}

/// The instances the identifier asks for, within the AE's clinic.
pub(crate) async fn select(
    archive: &Archive,
    assoc: &Established,
    transfer_syntax: &str,
    identifier: &[u8],
) -> Result<Vec<Retrievable>, (u16, String)> {
    let ts = TransferSyntaxRegistry.get(transfer_syntax).ok_or((
        status::CANNOT_UNDERSTAND,
        "unknown transfer syntax".to_owned(),
    ))?;
    let id = InMemDicomObject::read_dataset_with_ts(identifier, ts).map_err(|e| {
        (
            status::CANNOT_UNDERSTAND,
            format!("cannot read the identifier: {e}"),
        )
    })?;
    let list = |tag: Tag| -> Result<Vec<String>, (u16, String)> {
        let Ok(el) = id.element(tag) else {
            return Ok(Vec::new());
        };
        let text = el.to_str().map(|v| v.into_owned()).unwrap_or_default();
        let uids: Vec<String> = text
            .split('\\')
            .map(|u| u.trim_end_matches(['\0', ' ']).trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if let Some(bad) = uids.iter().find(|u| !is_uid(u)) {
            return Err((0xA900, format!("{bad:?} is not a UID")));
        }
        Ok(uids)
    };
    let level = id
        .element(tags::QUERY_RETRIEVE_LEVEL)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_ascii_uppercase())
        .unwrap_or_default();
    let studies = list(tags::STUDY_INSTANCE_UID)?;
    let series = list(tags::SERIES_INSTANCE_UID)?;
    let sops = list(tags::SOP_INSTANCE_UID)?;
    let needs = |what: &str, v: &Vec<String>| {
        if v.is_empty() {
            Err((0xA900, format!("{level} level needs {what}")))
        } else {
            Ok(())
        }
    };
    match level.as_str() {
        "STUDY" => needs("StudyInstanceUID", &studies)?,
        "SERIES" => {
            needs("StudyInstanceUID", &studies)?;
            needs("SeriesInstanceUID", &series)?;
        }
        "IMAGE" => {
            needs("StudyInstanceUID", &studies)?;
            needs("SeriesInstanceUID", &series)?;
            needs("SOPInstanceUID", &sops)?;
        }
        other => {
            return Err((
                0xC000,
                format!("QueryRetrieveLevel {other:?}: C-GET serves STUDY, SERIES and IMAGE"),
            ));
        }
    }
    let scope = Scope::of_dicom_peer(assoc.clinic_id);
    let mut out = Vec::new();
    for study in &studies {
        let found = archive
            .index()
            .retrievable(scope, study, None, None)
            .await
            .map_err(|e| (status::PROCESSING_FAILURE, format!("index error: {e}")))?;
        out.extend(found.into_iter().filter(|i| {
            (series.is_empty() || series.contains(&i.series_instance_uid))
                && (sops.is_empty() || sops.contains(&i.sop_instance_uid))
        }));
        if out.len() > MAX_INSTANCES {
            return Err((
                0xA702,
                format!("more than {MAX_INSTANCES} instances: retrieve fewer at a time"),
            ));
        }
    }
    Ok(out)
}

/// One C-STORE sub-operation: `Ok(status)` of the peer's C-STORE-RSP, or `Err(why)` when
/// the object could not be read. A transport error ends the association (`Err` outside).
#[allow(clippy::too_many_arguments)]
async fn send_one<S: Transport>(
    item: &Retrievable,
    pc: u8,
    transfer_syntax: &str,
    message_id: u16,
    get_pc: u8,
    archive: &Archive,
    link: &mut PduStream<S>,
    cancelled: &mut bool,
) -> Result<Result<u16, String>, String> {
    let dataset = match transcode::dataset_in(archive, item, transfer_syntax).await {
        Ok(d) => d,
        Err(why) => return Ok(Err(why)),
    };
    let rq = store_rq(item, message_id, None);
    link.send_command(pc, rq).await.map_err(|e| e.to_string())?;
    link.send_data(pc, dataset.to_vec())
        .await
        .map_err(|e| e.to_string())?;
    // The peer's C-STORE-RSP (a C-CANCEL-RQ for the C-GET may come first).
    let mut buf = Vec::new();
    loop {
        let incoming = link.read_incoming().await.map_err(|e| e.to_string())?;
        let Incoming::PData(pdvs) = incoming else {
            return Err("the peer ended the association during a C-GET".into());
        };
        for pdv in pdvs {
            if !pdv.is_command {
                return Err("a data set arrived where a C-STORE-RSP was expected".into());
            }
            buf.extend_from_slice(&pdv.data);
            if !pdv.is_last {
                continue;
            }
            let rsp = dimse::decode(&buf).map_err(|e| format!("malformed response: {e}"))?;
            buf.clear();
            match rsp.command_field {
                command_field::C_CANCEL_RQ if pdv.presentation_context_id == get_pc => {
                    *cancelled = true;
                }
                command_field::C_STORE_RSP => return Ok(Ok(rsp.status.unwrap_or(0x0110))),
                other => return Err(format!("unexpected command {other:#06X} during a C-GET")),
            }
        }
    }
}

pub(crate) fn counts_response(
    rq: &dimse::Command,
    response_field: u16,
    st: u16,
    c: &Counts,
    with_data: bool,
) -> Vec<u8> {
    let mut b = CommandBuilder::new();
    if let Some(class) = &rq.affected_sop_class_uid {
        b = b.uid(tags::AFFECTED_SOP_CLASS_UID, class);
    }
    b = b
        .us(tags::COMMAND_FIELD, response_field)
        .us(tags::MESSAGE_ID_BEING_RESPONDED_TO, rq.message_id)
        .us(
            tags::COMMAND_DATA_SET_TYPE,
            if with_data {
                0x0000
            } else {
                dimse::NO_DATA_SET
            },
        )
        .us(tags::STATUS, st);
    if st == status::PENDING || st == status::CANCEL {
        b = b.us(tags::NUMBER_OF_REMAINING_SUBOPERATIONS, c.remaining);
    }
    b.us(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS, c.completed)
        .us(tags::NUMBER_OF_FAILED_SUBOPERATIONS, c.failed)
        .us(tags::NUMBER_OF_WARNING_SUBOPERATIONS, c.warning)
        .build()
}
