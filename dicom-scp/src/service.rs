//! One established association: the DIMSE message loop (C-ECHO, C-STORE).

use dicom_ul::pdu::{AbortRQServiceProviderReason, Pdu};
use pacs_store::archive::{
    Archive, Channel, Declared, IngestError, IngestOutcome, Source, StagedObject,
};
use tokio::sync::watch;

use crate::association::{Established, Incoming, LinkError, PduStream, Pdv, Transport, pdu_name};
use crate::dimse::{self, Command, command_field, status};
use crate::uid::is_valid_uid;

/// Where the data set of the current request goes.
enum Sink {
    /// Streamed into the archive's staging area.
    Store(Box<StagedObject>),
    /// Read and dropped; the request is answered with this failure once it is complete.
    Drain { status: u16, comment: String },
    /// A C-FIND or C-GET identifier, collected whole (it is small).
    Identifier(Vec<u8>),
}

enum State {
    Idle,
    /// Command fragments of presentation context `pc`.
    Command {
        pc: u8,
        buf: Vec<u8>,
    },
    /// Data set fragments of presentation context `pc` for `cmd`.
    Data {
        pc: u8,
        cmd: Command,
        sink: Sink,
    },
}

/// How the association ended, for logs.
#[derive(Debug)]
pub enum Ending {
    Released,
    AbortedByPeer,
    AbortedByUs(String),
    ShutDown,
    LinkLost(LinkError),
}

pub(crate) async fn serve<S>(
    mut link: PduStream<S>,
    assoc: Established,
    archive: Archive,
    mut shutdown: watch::Receiver<bool>,
) -> Ending
where
    S: Transport,
{
    let source = Source {
        clinic_id: Some(assoc.clinic_id),
        clinic_name: Some(assoc.clinic_name.clone()),
        ae_title: Some(assoc.calling_ae.clone()),
        uploader: None,
        archive_authored: false,
    };
    let mut state = State::Idle;
    loop {
        let pdu = if matches!(state, State::Idle) {
            if *shutdown.borrow() {
                link.abort(AbortRQServiceProviderReason::ReasonNotSpecified)
                    .await;
                return Ending::ShutDown;
            }
            tokio::select! {
                r = link.read_incoming() => r,
                _ = shutdown.changed() => {
                    link.abort(AbortRQServiceProviderReason::ReasonNotSpecified).await;
                    return Ending::ShutDown;
                }
            }
        } else {
            // Mid-request: finish it (bounded by the idle timeout) before honouring shutdown.
            link.read_incoming().await
        };
        let pdu = match pdu {
            Ok(p) => p,
            Err(e) => {
                if matches!(e, LinkError::IdleTimeout(_) | LinkError::Pdu(_)) {
                    link.abort(AbortRQServiceProviderReason::ReasonNotSpecified)
                        .await;
                }
                return Ending::LinkLost(e);
            }
        };
        match pdu {
            Incoming::PData(pdvs) => {
                for pdv in pdvs {
                    if !assoc.contexts.contains_key(&pdv.presentation_context_id) {
                        let why = format!(
                            "P-DATA on presentation context {} that was not accepted",
                            pdv.presentation_context_id
                        );
                        link.abort(AbortRQServiceProviderReason::InvalidPduParameter)
                            .await;
                        return Ending::AbortedByUs(why);
                    }
                    state = match step(state, pdv, &assoc, &archive, &source, &mut link).await {
                        Ok(s) => s,
                        Err(why) => {
                            link.abort(AbortRQServiceProviderReason::UnexpectedPduParameter)
                                .await;
                            return Ending::AbortedByUs(why);
                        }
                    };
                }
            }
            Incoming::Other(Pdu::ReleaseRQ) => {
                let _ = link.write(&Pdu::ReleaseRP).await;
                link.close().await;
                return Ending::Released;
            }
            Incoming::Other(Pdu::AbortRQ { .. }) => return Ending::AbortedByPeer,
            Incoming::Other(other) => {
                let why = format!("unexpected {} during the association", pdu_name(&other));
                link.abort(AbortRQServiceProviderReason::UnexpectedPdu)
                    .await;
                return Ending::AbortedByUs(why);
            }
        }
    }
}

/// Feeds one PDV into the state machine. `Err` means a protocol violation: abort.
async fn step<S>(
    state: State,
    pdv: Pdv,
    assoc: &Established,
    archive: &Archive,
    source: &Source,
    link: &mut PduStream<S>,
) -> Result<State, String>
where
    S: Transport,
{
    let pc = pdv.presentation_context_id;
    match (state, pdv.is_command) {
        (State::Idle, true) => command_fragment(pc, Vec::new(), pdv, assoc, archive, link).await,
        (State::Command { pc: cpc, buf }, true) if cpc == pc => {
            command_fragment(pc, buf, pdv, assoc, archive, link).await
        }
        (
            State::Data {
                pc: dpc,
                cmd,
                mut sink,
            },
            false,
        ) if dpc == pc => {
            if let Sink::Identifier(buf) = &mut sink {
                if buf.len() + pdv.data.len() > crate::find::MAX_IDENTIFIER {
                    sink = Sink::Drain {
                        status: status::CANNOT_UNDERSTAND,
                        comment: "the identifier is too large".into(),
                    };
                } else {
                    buf.extend_from_slice(&pdv.data);
                }
            }
            if let Sink::Store(staged) = &mut sink {
                let written = tokio::task::block_in_place(|| staged.write_dataset(&pdv.data));
                if let Err(e) = written {
                    let status = if e.is_out_of_resources() {
                        status::OUT_OF_RESOURCES
                    } else {
                        status::PROCESSING_FAILURE
                    };
                    tracing::error!(error = %e, "cannot write a received object to the staging area");
                    sink = Sink::Drain {
                        status,
                        comment: "archive cannot write the object".into(),
                    };
                }
            }
            if !pdv.is_last {
                return Ok(State::Data { pc, cmd, sink });
            }
            if cmd.command_field == command_field::C_FIND_RQ {
                let identifier = match sink {
                    Sink::Identifier(buf) => Ok(buf),
                    Sink::Drain { status, comment } => Err((status, comment)),
                    Sink::Store(_) => Err((status::PROCESSING_FAILURE, "internal".into())),
                };
                answer_find(&cmd, pc, identifier, assoc, archive, link).await?;
                return Ok(State::Idle);
            }
            if cmd.command_field == command_field::C_GET_RQ
                || cmd.command_field == command_field::C_MOVE_RQ
            {
                let is_get = cmd.command_field == command_field::C_GET_RQ;
                match sink {
                    Sink::Identifier(buf) if is_get => {
                        crate::get::serve(&cmd, pc, &buf, assoc, archive, link).await?
                    }
                    Sink::Identifier(buf) => {
                        crate::moves::serve(&cmd, pc, &buf, assoc, archive, link).await?
                    }
                    Sink::Drain { status, comment } => {
                        count_request("C-GET", status);
                        let rsp =
                            dimse::response(&cmd, command_field::C_GET_RSP, status, Some(&comment));
                        link.send_command(pc, rsp)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Sink::Store(_) => return Err("internal: C-GET with a store sink".into()),
                }
                return Ok(State::Idle);
            }
            // Audit trail: every C-STORE gets one event, from the ingest path (stored or
            // refused there) or here for what this adapter refused before it.
            let channel = Channel::Network {
                peer: Some(assoc.peer),
            };
            let (st, comment) = match sink {
                Sink::Drain { status, comment } => {
                    tracing::warn!(
                        ae = %assoc.calling_ae,
                        sop_instance_uid = ?cmd.affected_sop_instance_uid,
                        status = format!("{status:#06X}"),
                        reason = %comment,
                        "C-STORE refused"
                    );
                    if cmd.command_field == command_field::C_STORE_RQ {
                        let reason = format!("{comment} (status {status:#06X})");
                        let uid = cmd.affected_sop_instance_uid.as_deref();
                        archive
                            .audit_store_refused(source, channel, uid, &reason)
                            .await;
                    }
                    (status, Some(comment))
                }
                Sink::Store(staged) => finish_store(*staged, archive, source, channel).await,
                Sink::Identifier(_) => (status::PROCESSING_FAILURE, None),
            };
            count_request("C-STORE", st);
            let rsp = dimse::response(&cmd, command_field::C_STORE_RSP, st, comment.as_deref());
            link.send_command(pc, rsp)
                .await
                .map_err(|e| e.to_string())?;
            Ok(State::Idle)
        }
        (State::Idle, false) => Err("a data set fragment arrived without a command".into()),
        (State::Command { .. }, _) => {
            Err("command fragments interleaved with other fragments".into())
        }
        (State::Data { .. }, _) => {
            Err("data set fragments interleaved with other fragments".into())
        }
    }
}

async fn command_fragment<S>(
    pc: u8,
    mut buf: Vec<u8>,
    pdv: Pdv,
    assoc: &Established,
    archive: &Archive,
    link: &mut PduStream<S>,
) -> Result<State, String>
where
    S: Transport,
{
    if buf.len() + pdv.data.len() > dimse::MAX_COMMAND_LEN {
        return Err("command set too large".into());
    }
    buf.extend_from_slice(&pdv.data);
    if !pdv.is_last {
        return Ok(State::Command { pc, buf });
    }
    let cmd = dimse::decode(&buf).map_err(|e| format!("malformed command set: {e}"))?;
    let context = &assoc.contexts[&pc];
    match cmd.command_field {
        command_field::C_ECHO_RQ if !cmd.has_data_set() => {
            count_request("C-ECHO", status::SUCCESS);
            let rsp = dimse::response(&cmd, command_field::C_ECHO_RSP, status::SUCCESS, None);
            link.send_command(pc, rsp)
                .await
                .map_err(|e| e.to_string())?;
            Ok(State::Idle)
        }
        command_field::C_STORE_RQ if cmd.has_data_set() => {
            let sink = open_store_sink(&cmd, context, assoc, archive);
            Ok(State::Data { pc, cmd, sink })
        }
        command_field::C_FIND_RQ if cmd.has_data_set() => {
            let sink = if crate::find::is_find_sop_class(&context.abstract_syntax)
                && cmd.affected_sop_class_uid.as_deref() == Some(context.abstract_syntax.as_str())
            {
                Sink::Identifier(Vec::new())
            } else {
                Sink::Drain {
                    status: status::SOP_CLASS_NOT_SUPPORTED,
                    comment: "C-FIND needs a Patient Root or Study Root FIND presentation context"
                        .into(),
                }
            };
            Ok(State::Data { pc, cmd, sink })
        }
        command_field::C_GET_RQ if cmd.has_data_set() => {
            let sink = if crate::get::is_get_sop_class(&context.abstract_syntax)
                && cmd.affected_sop_class_uid.as_deref() == Some(context.abstract_syntax.as_str())
            {
                Sink::Identifier(Vec::new())
            } else {
                Sink::Drain {
                    status: status::SOP_CLASS_NOT_SUPPORTED,
                    comment: "C-GET needs a Patient Root or Study Root GET presentation context"
                        .into(),
                }
            };
            Ok(State::Data { pc, cmd, sink })
        }
        command_field::C_MOVE_RQ if cmd.has_data_set() => {
            let sink = if crate::moves::is_move_sop_class(&context.abstract_syntax)
                && cmd.affected_sop_class_uid.as_deref() == Some(context.abstract_syntax.as_str())
            {
                Sink::Identifier(Vec::new())
            } else {
                Sink::Drain {
                    status: status::SOP_CLASS_NOT_SUPPORTED,
                    comment: "C-MOVE needs a Patient Root or Study Root MOVE presentation context"
                        .into(),
                }
            };
            Ok(State::Data { pc, cmd, sink })
        }
        // A cancel after the answer was sent (C-FIND answers are sent at once).
        command_field::C_CANCEL_RQ => Ok(State::Idle),
        other => {
            // Not a service of this archive (yet): answer "unrecognized operation".
            count_request("other", status::UNRECOGNIZED_OPERATION);
            let rsp_field = other | 0x8000;
            let comment = "operation not supported by this archive";
            if cmd.has_data_set() {
                Ok(State::Data {
                    pc,
                    cmd,
                    sink: Sink::Drain {
                        status: status::UNRECOGNIZED_OPERATION,
                        comment: comment.into(),
                    },
                })
            } else {
                let rsp = dimse::response(
                    &cmd,
                    rsp_field,
                    status::UNRECOGNIZED_OPERATION,
                    Some(comment),
                );
                link.send_command(pc, rsp)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(State::Idle)
            }
        }
    }
}

/// Answers a C-FIND-RQ: pending responses with the matches, then the final status.
async fn answer_find<S>(
    cmd: &Command,
    pc: u8,
    identifier: Result<Vec<u8>, (u16, String)>,
    assoc: &Established,
    archive: &Archive,
    link: &mut PduStream<S>,
) -> Result<(), String>
where
    S: Transport,
{
    let context = &assoc.contexts[&pc];
    let result = match identifier {
        Ok(bytes) => crate::find::run(archive, assoc, context, &bytes).await,
        Err((status, comment)) => Err(crate::find::FindFailure { status, comment }),
    };
    match result {
        Ok(identifiers) => {
            for id in identifiers {
                let rsp =
                    dimse::response_with_data(cmd, command_field::C_FIND_RSP, status::PENDING);
                link.send_command(pc, rsp)
                    .await
                    .map_err(|e| e.to_string())?;
                link.send_data(pc, id).await.map_err(|e| e.to_string())?;
            }
            count_request("C-FIND", status::SUCCESS);
            let rsp = dimse::response(cmd, command_field::C_FIND_RSP, status::SUCCESS, None);
            link.send_command(pc, rsp).await.map_err(|e| e.to_string())
        }
        Err(f) => {
            tracing::warn!(ae = %assoc.calling_ae, status = format!("{:#06X}", f.status), reason = %f.comment, "C-FIND refused");
            archive
                .audit_or_log(crate::find::refused_event(
                    &assoc.calling_ae,
                    assoc.peer,
                    &f.comment,
                ))
                .await;
            count_request("C-FIND", f.status);
            let rsp = dimse::response(cmd, command_field::C_FIND_RSP, f.status, Some(&f.comment));
            link.send_command(pc, rsp).await.map_err(|e| e.to_string())
        }
    }
}

/// Checks the C-STORE-RQ against its presentation context and opens the staging file.
fn open_store_sink(
    cmd: &Command,
    context: &crate::association::AcceptedContext,
    assoc: &Established,
    archive: &Archive,
) -> Sink {
    let class = cmd.affected_sop_class_uid.clone().unwrap_or_default();
    let instance = cmd.affected_sop_instance_uid.clone().unwrap_or_default();
    if class != context.abstract_syntax {
        return Sink::Drain {
            status: status::SOP_CLASS_NOT_SUPPORTED,
            comment: "Affected SOP Class differs from the presentation context".into(),
        };
    }
    if !crate::sop_classes::is_storage_sop_class(&class) {
        return Sink::Drain {
            status: status::SOP_CLASS_NOT_SUPPORTED,
            comment: "not a storage SOP class".into(),
        };
    }
    if !is_valid_uid(&instance) {
        return Sink::Drain {
            status: status::CANNOT_UNDERSTAND,
            comment: "Affected SOP Instance UID is not a valid UID".into(),
        };
    }
    let declared = Declared {
        sop_class_uid: class,
        sop_instance_uid: instance,
        transfer_syntax_uid: context.transfer_syntax.clone(),
        study_instance_uid: None,
    };
    match tokio::task::block_in_place(|| archive.stage_network(&declared, Some(&assoc.calling_ae)))
    {
        Ok(staged) => Sink::Store(Box::new(staged)),
        Err(e) => {
            tracing::error!(error = %e, "cannot open a staging file");
            let status = if e.is_out_of_resources() {
                status::OUT_OF_RESOURCES
            } else {
                status::PROCESSING_FAILURE
            };
            Sink::Drain {
                status,
                comment: "archive cannot stage the object".into(),
            }
        }
    }
}

/// Archives a completely received object and picks the C-STORE-RSP status.
async fn finish_store(
    staged: StagedObject,
    archive: &Archive,
    source: &Source,
    channel: Channel,
) -> (u16, Option<String>) {
    if staged.exceeded() {
        let limit = archive.max_object_size();
        tracing::warn!(ae = ?source.ae_title, limit, received = staged.dataset_len(), "object refused: larger than the maximum object size");
        let comment = format!("object larger than the {limit}-byte limit");
        let uid = staged.declared_sop_instance_uid().to_owned();
        archive
            .audit_store_refused(source, channel, Some(&uid), &comment)
            .await;
        return (status::OUT_OF_RESOURCES, Some(comment));
    }
    match archive.ingest_via(staged, source, channel).await {
        Ok(IngestOutcome::Stored { .. }) | Ok(IngestOutcome::Duplicate) => (status::SUCCESS, None),
        Ok(IngestOutcome::ConflictKept { .. }) => (
            status::WARNING_COERCION,
            Some("SOP Instance UID known with other content: first copy kept".into()),
        ),
        Err(e) => {
            let st = match &e {
                _ if e.is_out_of_resources() => status::OUT_OF_RESOURCES,
                IngestError::DoesNotMatch(_) => status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                IngestError::CannotUnderstand(_) => status::CANNOT_UNDERSTAND,
                _ => status::PROCESSING_FAILURE,
            };
            if st == status::PROCESSING_FAILURE {
                tracing::error!(ae = ?source.ae_title, error = %e, "C-STORE failed in the archive");
            } else {
                tracing::warn!(ae = ?source.ae_title, error = %e, status = format!("{st:#06X}"), "C-STORE refused");
            }
            (st, Some(e.to_string()))
        }
    }
}

pub(crate) fn count_request(command: &'static str, st: u16) {
    let class = match st {
        0x0000 => "success",
        0xB000..=0xBFFF | 0x0001 | 0x0107 | 0x0116 => "warning",
        _ => "failure",
    };
    metrics::counter!("pacs_dimse_requests_total", "command" => command, "status" => class)
        .increment(1);
}
