//! C-MOVE SCP (PS3.4 C.4.2): Patient Root and Study Root, levels STUDY, SERIES, IMAGE.
//! The matching instances within the calling AE's clinic are sent to the Move Destination
//! over a new association (this archive as storage SCU), with pending C-MOVE-RSPs and the
//! counts on the requesting association.
//!
//! The destination must be an AE title registered for the caller's clinic with a host and
//! a port (`pacs clinic add … --host IP --port N`, or the admin API): a clinic can move its
//! studies to its own workstations only, never to a place of the requester's choosing.
//! Otherwise the answer is 0xA801 (move destination unknown). Instances go as stored when
//! the destination accepts that syntax (one presentation context per SOP class and stored
//! syntax is proposed), else converted to explicit or implicit VR little endian (one more
//! context per SOP class, [`crate::transcode`]). While each sub-operation runs, the requesting
//! association is read for a C-CANCEL-RQ of this move ([`CancelWatch`]): the move stops
//! after the sub-operation in flight and answers 0xFE00 with the counts, the remaining
//! ones included. A requester that goes away stops the move too. Audited (110104, action
//! R, by the requesting AE, the destination in the detail).

use std::collections::BTreeSet;
use std::time::Duration;

use dicom_dictionary_std::uids;
use dicom_ul::ClientAssociationOptions;
use dicom_ul::pdu::PresentationContextResultReason;
use pacs_store::ae_title::AeTitle;
use pacs_store::archive::Archive;
use pacs_store::audit::Outcome;

use crate::association::{Established, Incoming, LinkError, PduStream, Transport, pdu_name};
use crate::dimse::{self, command_field, status};
use crate::get::{Counts, counts_response, event, select};
use crate::{store_scu, transcode};

/// How long connecting to and negotiating with a destination may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

pub fn is_move_sop_class(uid: &str) -> bool {
    uid == uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE
        || uid == uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE
}

/// Serves one C-MOVE-RQ whose identifier is `identifier`.
pub async fn serve<S: Transport>(
    cmd: &dimse::Command,
    pc: u8,
    identifier: &[u8],
    assoc: &Established,
    archive: &Archive,
    link: &mut PduStream<S>,
) -> Result<(), String> {
    let refuse = |st: u16, why: String| async move {
        tracing::warn!(ae = %assoc.calling_ae, reason = %why, "C-MOVE refused");
        archive
            .audit_or_log(
                event(assoc).with_outcome(Outcome::MinorFailure, format!("C-MOVE refused: {why}")),
            )
            .await;
        crate::service::count_request("C-MOVE", st);
        dimse::response(cmd, command_field::C_MOVE_RSP, st, Some(&why))
    };
    // Where to: a registered AE of the caller's clinic that says where it listens.
    let dest = cmd.move_destination.clone().unwrap_or_default();
    let destination = match AeTitle::parse(&dest) {
        Ok(ae) => archive.index().find_ae(&ae).await.ok().flatten(),
        Err(_) => None,
    };
    let Some((host, port)) = destination
        .as_ref()
        .filter(|d| d.clinic_id == assoc.clinic_id)
        .and_then(|d| Some((d.host?, d.port?)))
    else {
        let rsp = refuse(
            0xA801,
            format!(
                "move destination {dest:?} is not an AE title of clinic {:?} with a host and \
                 port (register it with `pacs clinic add --host IP --port N`)",
                assoc.clinic_name
            ),
        )
        .await;
        return link.send_command(pc, rsp).await.map_err(|e| e.to_string());
    };
    let context = &assoc.contexts[&pc];
    let items = match select(archive, assoc, &context.transfer_syntax, identifier).await {
        Ok(items) => items,
        Err((st, why)) => {
            let rsp = refuse(st, why).await;
            return link.send_command(pc, rsp).await.map_err(|e| e.to_string());
        }
    };
    let mut counts = Counts::new(items.len());
    if let Some(first) = items.first() {
        let e = event(assoc)
            .with_patient(
                Some(first.patient_id.clone()),
                first.issuer_of_patient_id.clone(),
            )
            .with_study(Some(first.study_instance_uid.clone()))
            .with_instances(items.iter().map(|i| i.sop_instance_uid.clone()).collect())
            .with_detail(format!("C-MOVE to {dest} at {host}:{port}"));
        if let Err(e) = archive.index().audit_read(e).await {
            tracing::error!(error = %e, "C-MOVE: cannot write the audit event; refusing");
            let rsp = dimse::response(
                cmd,
                command_field::C_MOVE_RSP,
                status::PROCESSING_FAILURE,
                Some("the archive could not record the retrieve"),
            );
            return link.send_command(pc, rsp).await.map_err(|e| e.to_string());
        }
    }
    if items.is_empty() {
        crate::service::count_request("C-MOVE", status::SUCCESS);
        let rsp = counts_response(
            cmd,
            command_field::C_MOVE_RSP,
            status::SUCCESS,
            &counts,
            false,
        );
        return link.send_command(pc, rsp).await.map_err(|e| e.to_string());
    }

    // One association to the destination for the whole move.
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(assoc.called_ae.clone())
        .called_ae_title(dest.clone())
        .max_pdu_length(262_138);
    let pairs: BTreeSet<(String, String)> = items
        .iter()
        .map(|i| (i.sop_class_uid.clone(), i.transfer_syntax_uid.clone()))
        .collect();
    // Each (class, stored syntax) as stored, and each class in the native syntaxes too, so
    // that a destination that takes only uncompressed data still gets everything.
    let mut classes = BTreeSet::new();
    for (class, ts) in &pairs {
        options = options.with_presentation_context(class.clone(), vec![ts.clone()]);
        classes.insert(class.clone());
    }
    for class in classes {
        options = options.with_presentation_context(
            class,
            transcode::NATIVE.iter().map(|t| t.to_string()).collect(),
        );
    }
    let connected =
        tokio::time::timeout(CONNECT_TIMEOUT, options.establish_async((host, port))).await;
    let mut sub = match connected {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            let rsp = refuse(
                0xA801,
                format!("cannot associate with {dest} at {host}:{port}: {e}"),
            )
            .await;
            return link.send_command(pc, rsp).await.map_err(|e| e.to_string());
        }
        Err(_) => {
            let rsp = refuse(
                0xA801,
                format!("{dest} at {host}:{port} did not answer in time"),
            )
            .await;
            return link.send_command(pc, rsp).await.map_err(|e| e.to_string());
        }
    };
    let accepted: Vec<(u8, String, String)> = sub
        .presentation_contexts()
        .iter()
        .filter(|c| c.reason == PresentationContextResultReason::Acceptance)
        .map(|c| (c.id, c.abstract_syntax.clone(), c.transfer_syntax.clone()))
        .collect();
    let max_pdv = (sub.acceptor_max_pdu_length() as usize)
        .saturating_sub(6)
        .clamp(1024, 4 << 20);
    let mut message_id: u16 = 1;
    let mut watch = CancelWatch::default();
    for item in &items {
        if !watch.active() {
            break;
        }
        counts.remaining = counts.remaining.saturating_sub(1);
        let offered = accepted
            .iter()
            .filter(|(_, class, _)| trim(class) == item.sop_class_uid);
        let spc = transcode::pick(
            &item.transfer_syntax_uid,
            offered.clone().map(|(_, _, ts)| trim(ts)),
        )
        .and_then(|ts| {
            offered
                .clone()
                .find(|(_, _, t)| trim(t) == ts)
                .map(|(id, _, _)| (*id, ts.to_owned()))
        });
        let outcome = match spc {
            None => Err(format!(
                "{dest} accepted no context for {} in {}",
                item.sop_class_uid, item.transfer_syntax_uid
            )),
            Some((spc, ts)) => {
                message_id = message_id.wrapping_add(1);
                let store = store_scu::store_one(
                    &mut sub,
                    item,
                    spc,
                    &ts,
                    message_id,
                    max_pdv,
                    archive,
                    Some((&assoc.calling_ae, cmd.message_id)),
                );
                tokio::pin!(store);
                // The sub-operation runs to its end; meanwhile the requester is heard.
                let r = loop {
                    tokio::select! {
                        r = &mut store => break r,
                        () = watch.read(link, pc, cmd.message_id), if watch.active() => {}
                    }
                };
                if let Err(e) = &r
                    && e.starts_with("link:")
                {
                    // The destination is gone: the rest fails too.
                    counts.failed += 1 + counts.remaining;
                    counts.failed_uids.push(item.sop_instance_uid.clone());
                    counts.remaining = 0;
                    tracing::warn!(%dest, error = %e, "C-MOVE: the destination association broke");
                    break;
                }
                r
            }
        };
        counts.record("C-MOVE", &item.sop_instance_uid, outcome);
        if counts.remaining > 0 && watch.active() {
            let rsp = counts_response(
                cmd,
                command_field::C_MOVE_RSP,
                status::PENDING,
                &counts,
                false,
            );
            link.send_command(pc, rsp)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let _ = sub.release().await;
    if let Some(why) = watch.gone {
        tracing::warn!(ae = %assoc.calling_ae, reason = %why, completed = counts.completed,
            remaining = counts.remaining, "C-MOVE: stopped, the requester is gone");
        crate::service::count_request("C-MOVE", status::PROCESSING_FAILURE);
        return Err(why);
    }
    if watch.cancelled {
        tracing::info!(ae = %assoc.calling_ae, completed = counts.completed,
            remaining = counts.remaining, "C-MOVE: cancelled by the requester");
    }
    let final_status = counts.final_status(watch.cancelled);
    crate::service::count_request("C-MOVE", final_status);
    let rsp = counts_response(cmd, command_field::C_MOVE_RSP, final_status, &counts, false);
    link.send_command(pc, rsp).await.map_err(|e| e.to_string())
}

/// Reads the requesting association while a move runs: a C-CANCEL-RQ for the move's
/// Message ID on its presentation context cancels it (PS3.7 9.1.5, 9.3.2.3); the peer
/// closing, aborting, releasing or sending anything else (no asynchronous operations are
/// negotiated) means the requester is gone. A quiet requester is fine.
#[derive(Default)]
struct CancelWatch {
    /// Command fragments received so far.
    buf: Vec<u8>,
    cancelled: bool,
    gone: Option<String>,
}

impl CancelWatch {
    fn active(&self) -> bool {
        !self.cancelled && self.gone.is_none()
    }

    /// Reads one PDU (cancel-safe: a partial PDU stays in the link's buffer).
    async fn read<S: Transport>(&mut self, link: &mut PduStream<S>, pc: u8, message_id: u16) {
        let pdvs = match link.read_incoming().await {
            Ok(Incoming::PData(pdvs)) => pdvs,
            Ok(Incoming::Other(pdu)) => {
                self.gone = Some(format!("{} during a C-MOVE", pdu_name(&pdu)));
                return;
            }
            Err(LinkError::IdleTimeout(_)) => return,
            Err(e) => {
                self.gone = Some(e.to_string());
                return;
            }
        };
        for pdv in pdvs {
            if !pdv.is_command {
                self.gone = Some("a data set arrived during a C-MOVE".into());
                return;
            }
            self.buf.extend_from_slice(&pdv.data);
            if !pdv.is_last {
                continue;
            }
            match dimse::decode(&std::mem::take(&mut self.buf)) {
                Ok(c)
                    if c.command_field == command_field::C_CANCEL_RQ
                        && pdv.presentation_context_id == pc
                        && c.message_id == message_id =>
                {
                    self.cancelled = true;
                }
                Ok(c) if c.command_field == command_field::C_CANCEL_RQ => {
                    tracing::debug!("C-MOVE: a C-CANCEL-RQ for another message; ignored");
                }
                Ok(c) => {
                    self.gone = Some(format!(
                        "command {:#06X} during a C-MOVE (no asynchronous operations were \
                         negotiated)",
                        c.command_field
                    ));
                }
                Err(e) => self.gone = Some(format!("malformed command during a C-MOVE: {e}")),
            }
        }
    }
}

fn trim(s: &str) -> &str {
    s.trim_end_matches('\0').trim()
}
