//! Association acceptance and PDU transport, on dicom-ul's PDU codec.
//!
//! We negotiate here rather than through `dicom_ul::ServerAssociationOptions` because a
//! PACS needs what that API does not offer: the peer's address in the AE check (AE titles
//! bound to hosts), an asynchronous look-up of registered AEs, abstract syntaxes decided
//! by the standard dictionary rather than a fixed list, and strict PDU size limits while
//! streaming (dicom-ul's P-DATA reader parses with `strict = false`, which would let a
//! peer announce a multi-gigabyte PDU and have it buffered).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationAC, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason,
    AssociationRJSource, AssociationRQ, Pdu, PresentationContextResult,
    PresentationContextResultReason, UserVariableItem,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::sop_classes;

const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";

/// Why an association ended or could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("peer idle for more than {0:?}")]
    IdleTimeout(Duration),
    #[error("peer closed the connection")]
    Closed,
    #[error("PDU error: {0}")]
    Pdu(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A byte stream an association runs over: plain TCP or TLS over TCP.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// Called after every read from the peer.
    fn after_read(&self) {}
}

impl Transport for tokio::net::TcpStream {
    /// Re-arms TCP quick ACK, which Linux turns off again after use. Without it a peer that
    /// writes a PDU header in its own small segment and then waits for our ACK (Nagle, as
    /// dcmtk's storescu does) stalls for our 40 ms delayed ACK: measured in bench/ingest.
    fn after_read(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let _ = socket2::SockRef::from(self).set_tcp_quickack(true);
        }
    }
}

/// DICOM TLS: the TLS stream reads from the same socket, so quick ACK is re-armed on it.
impl Transport for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn after_read(&self) {
        self.get_ref().0.after_read();
    }
}

/// PDU reader/writer over any byte stream (plain TCP or TLS), enforcing our maximum
/// PDU length strictly and an idle timeout on every read.
pub struct PduStream<S> {
    stream: S,
    read_buffer: BytesMut,
    /// Largest PDU we accept (what we announced).
    max_pdu: u32,
    /// Largest PDU the peer accepts (what it announced; 0 means unlimited).
    peer_max_pdu: u32,
    idle: Duration,
    write_buffer: Vec<u8>,
}

impl<S: Transport> PduStream<S> {
    pub fn new(stream: S, max_pdu: u32, idle: Duration) -> Self {
        PduStream {
            stream,
            read_buffer: BytesMut::with_capacity(64 * 1024),
            max_pdu,
            peer_max_pdu: dicom_ul::pdu::DEFAULT_MAX_PDU,
            idle,
            write_buffer: Vec::with_capacity(4096),
        }
    }

    pub fn peer_max_pdu(&self) -> u32 {
        self.peer_max_pdu
    }

    /// Reads the next PDU. A PDU longer than our maximum is an error (the caller aborts).
    pub async fn read(&mut self) -> Result<Pdu, LinkError> {
        self.fill_pdu().await?;
        let mut cursor = std::io::Cursor::new(&self.read_buffer[..]);
        match dicom_ul::pdu::read_pdu(&mut cursor, self.max_pdu, true) {
            Ok(Some(pdu)) => {
                let used = cursor.position() as usize;
                let _ = self.read_buffer.split_to(used);
                Ok(pdu)
            }
            Ok(None) => Err(LinkError::Pdu("incomplete PDU".into())),
            Err(e) => Err(LinkError::Pdu(e.to_string())),
        }
    }

    /// Reads the next PDU during an association. P-DATA-TF is parsed here without copying:
    /// each PDV's bytes are a slice of the receive buffer (dicom-ul's reader copies a PDU
    /// twice, which showed in profiles of large images). Other PDUs go through dicom-ul.
    pub async fn read_incoming(&mut self) -> Result<Incoming, LinkError> {
        let total = self.fill_pdu().await?;
        if self.read_buffer[0] != P_DATA_TF {
            return self.read().await.map(Incoming::Other);
        }
        let mut pdu = self.read_buffer.split_to(total).freeze();
        pdu.advance(PDU_HEADER_LEN);
        let mut pdvs = Vec::with_capacity(1);
        while pdu.has_remaining() {
            if pdu.remaining() < 6 {
                return Err(LinkError::Pdu(
                    "truncated presentation data value item".into(),
                ));
            }
            let item_len = pdu.get_u32() as usize;
            if item_len < 2 || item_len > pdu.remaining() {
                return Err(LinkError::Pdu(format!(
                    "presentation data value item length {item_len} does not fit its PDU"
                )));
            }
            let presentation_context_id = pdu.get_u8();
            let header = pdu.get_u8();
            let data = pdu.split_to(item_len - 2);
            pdvs.push(Pdv {
                presentation_context_id,
                is_command: header & 0x01 != 0,
                is_last: header & 0x02 != 0,
                data,
            });
        }
        Ok(Incoming::PData(pdvs))
    }

    /// Reads until one whole PDU is buffered; returns its length with the header. A PDU
    /// announcing more than our maximum is refused before anything more is read.
    async fn fill_pdu(&mut self) -> Result<usize, LinkError> {
        loop {
            if self.read_buffer.len() >= PDU_HEADER_LEN {
                let b = &self.read_buffer;
                let len = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
                if len > self.max_pdu {
                    return Err(LinkError::Pdu(format!(
                        "incoming PDU of {len} bytes is larger than the maximum of {}",
                        self.max_pdu
                    )));
                }
                let total = PDU_HEADER_LEN + len as usize;
                if self.read_buffer.len() >= total {
                    return Ok(total);
                }
                self.read_buffer.reserve(total - self.read_buffer.len());
            } else {
                self.read_buffer.reserve(64 * 1024);
            }
            let n = tokio::time::timeout(self.idle, self.stream.read_buf(&mut self.read_buffer))
                .await
                .map_err(|_| LinkError::IdleTimeout(self.idle))??;
            if n == 0 {
                return Err(LinkError::Closed);
            }
            self.stream.after_read();
        }
    }

    /// Writes one PDU.
    pub async fn write(&mut self, pdu: &Pdu) -> Result<(), LinkError> {
        self.write_buffer.clear();
        dicom_ul::pdu::write_pdu(&mut self.write_buffer, pdu)
            .map_err(|e| LinkError::Pdu(e.to_string()))?;
        tokio::time::timeout(self.idle, self.stream.write_all(&self.write_buffer))
            .await
            .map_err(|_| LinkError::IdleTimeout(self.idle))??;
        Ok(())
    }

    /// Sends a command set as one or more P-DATA-TF PDUs that respect the peer's maximum
    /// PDU length.
    pub async fn send_command(&mut self, pc_id: u8, command: Vec<u8>) -> Result<(), LinkError> {
        self.send_pdvs(pc_id, dicom_ul::pdu::PDataValueType::Command, &command)
            .await
    }

    /// Sends a data set (after its command), split likewise.
    pub async fn send_data(&mut self, pc_id: u8, data: Vec<u8>) -> Result<(), LinkError> {
        self.send_pdvs(pc_id, dicom_ul::pdu::PDataValueType::Data, &data)
            .await
    }

    async fn send_pdvs(
        &mut self,
        pc_id: u8,
        value_type: dicom_ul::pdu::PDataValueType,
        bytes: &[u8],
    ) -> Result<(), LinkError> {
        // 6 bytes of PDV header inside each PDU.
        let max = match self.peer_max_pdu {
            0 => usize::MAX,
            n => (n as usize).saturating_sub(6).max(64),
        };
        let chunks: Vec<&[u8]> = bytes.chunks(max).collect();
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.iter().enumerate() {
            self.write(&Pdu::PData {
                data: vec![dicom_ul::pdu::PDataValue {
                    presentation_context_id: pc_id,
                    value_type: value_type.clone(),
                    is_last: i == last,
                    data: chunk.to_vec(),
                }],
            })
            .await?;
        }
        Ok(())
    }

    /// Sends an A-ABORT (service provider) and closes, ignoring errors: the link is going.
    pub async fn abort(&mut self, reason: AbortRQServiceProviderReason) {
        let _ = self
            .write(&Pdu::AbortRQ {
                source: AbortRQSource::ServiceProvider(reason),
            })
            .await;
        let _ = self.stream.shutdown().await;
    }

    pub async fn close(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

const PDU_HEADER_LEN: usize = 6;
const P_DATA_TF: u8 = 0x04;

/// One presentation data value, its bytes shared with the receive buffer.
#[derive(Debug, Clone)]
pub struct Pdv {
    pub presentation_context_id: u8,
    /// Command (true) or data set (false) fragment.
    pub is_command: bool,
    pub is_last: bool,
    pub data: bytes::Bytes,
}

/// A PDU received during an association.
#[derive(Debug)]
pub enum Incoming {
    PData(Vec<Pdv>),
    Other(Pdu),
}

/// What a caller may do, decided by the registry of AE titles.
#[derive(Debug, Clone)]
pub enum CallerDecision {
    Accept {
        clinic_id: i64,
        clinic_name: String,
    },
    UnknownAe,
    WrongHost,
    /// A TLS-only AE title called on the plain port.
    TlsRequired,
    /// An AE title that needs a verified client certificate, on a TLS connection whose peer
    /// presented none.
    ClientCertRequired,
    /// The registry could not be read (database down): a transient refusal.
    Unavailable,
}

/// An accepted presentation context.
#[derive(Debug, Clone)]
pub struct AcceptedContext {
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

/// An established association.
#[derive(Debug, Clone)]
pub struct Established {
    pub calling_ae: String,
    pub called_ae: String,
    pub peer: IpAddr,
    pub clinic_id: i64,
    pub clinic_name: String,
    pub contexts: HashMap<u8, AcceptedContext>,
    /// SOP classes for which the peer takes the SCP role (SCP/SCU role selection): C-GET
    /// sends it instances of these classes as C-STORE sub-operations.
    pub peer_scp_classes: std::collections::HashSet<String>,
}

/// Why an association was refused, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownCallingAe,
    WrongHost,
    /// A TLS-only AE title on the plain port.
    TlsRequired,
    /// An AE title that needs a client certificate, without one.
    ClientCertRequired,
    CalledAeMismatch,
    Busy,
    ProtocolVersion,
    ApplicationContext,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownCallingAe => "unknown_calling_ae",
            Refusal::WrongHost => "calling_ae_from_wrong_host",
            Refusal::TlsRequired => "tls_required",
            Refusal::ClientCertRequired => "client_certificate_required",
            Refusal::CalledAeMismatch => "called_ae_mismatch",
            Refusal::Busy => "too_many_associations",
            Refusal::ProtocolVersion => "protocol_version",
            Refusal::ApplicationContext => "application_context",
        }
    }

    /// Whether the refusal is the AE registry's (a security alert for the audit trail),
    /// rather than a protocol or capacity matter.
    pub fn is_caller_refusal(self) -> bool {
        matches!(
            self,
            Refusal::UnknownCallingAe
                | Refusal::WrongHost
                | Refusal::TlsRequired
                | Refusal::ClientCertRequired
        )
    }

    /// The A-ASSOCIATE-RJ for this refusal (PS3.8 9.3.4, Table 9-21).
    ///
    /// Every refusal by the AE registry is permanent, source service user, reason 3
    /// "calling-AE-title-not-recognized": PS3.8 has no reason for "wrong transport" or
    /// "missing credentials", and on this connection the calling AE title does indeed not
    /// identify a sender we accept. "no-reason-given" would hide the cause from the
    /// operator reading the modality's log; the archive's log and audit trail say which
    /// rule refused it (the [`Refusal`] and its detail).
    fn rejection(self) -> AssociationRJ {
        use AssociationRJServiceUserReason as U;
        let (result, source) = match self {
            Refusal::UnknownCallingAe
            | Refusal::WrongHost
            | Refusal::TlsRequired
            | Refusal::ClientCertRequired => (
                AssociationRJResult::Permanent,
                AssociationRJSource::ServiceUser(U::CallingAETitleNotRecognized),
            ),
            Refusal::CalledAeMismatch => (
                AssociationRJResult::Permanent,
                AssociationRJSource::ServiceUser(U::CalledAETitleNotRecognized),
            ),
            Refusal::ApplicationContext => (
                AssociationRJResult::Permanent,
                AssociationRJSource::ServiceUser(U::ApplicationContextNameNotSupported),
            ),
            Refusal::ProtocolVersion => (
                AssociationRJResult::Permanent,
                AssociationRJSource::ServiceProviderASCE(
                    dicom_ul::pdu::AssociationRJServiceProviderASCEReason::ProtocolVersionNotSupported,
                ),
            ),
            Refusal::Busy => (
                AssociationRJResult::Transient,
                AssociationRJSource::ServiceProviderPresentation(
                    AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
                ),
            ),
        };
        AssociationRJ { result, source }
    }
}

/// Outcome of reading and answering an A-ASSOCIATE-RQ.
pub enum Negotiated {
    Established(Established),
    Refused(Refusal, String),
}

/// Reads the A-ASSOCIATE-RQ, decides, and answers with A-ASSOCIATE-AC or -RJ.
///
/// `decide` looks the calling AE title up (it is async: the registry lives in the index).
/// `busy` refuses every caller with a transient rejection (too many associations).
pub async fn negotiate<S, F, Fut>(
    link: &mut PduStream<S>,
    our_ae: &str,
    peer: IpAddr,
    busy: bool,
    decide: F,
) -> Result<Negotiated, LinkError>
where
    S: Transport,
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = CallerDecision>,
{
    let rq = match link.read().await? {
        Pdu::AssociationRQ(rq) => rq,
        other => {
            link.abort(AbortRQServiceProviderReason::UnexpectedPdu)
                .await;
            return Err(LinkError::Pdu(format!(
                "expected A-ASSOCIATE-RQ, got {}",
                pdu_name(&other)
            )));
        }
    };
    let AssociationRQ {
        protocol_version,
        calling_ae_title,
        called_ae_title,
        application_context_name,
        presentation_contexts,
        user_variables,
    } = rq;
    let calling = calling_ae_title.trim().to_owned();
    let called = called_ae_title.trim().to_owned();

    let refuse = |r: Refusal, detail: String| (r, detail);
    let refusal = if protocol_version & 1 == 0 {
        Some(refuse(
            Refusal::ProtocolVersion,
            format!("protocol version {protocol_version:#x}"),
        ))
    } else if application_context_name.trim_end_matches('\0') != APPLICATION_CONTEXT {
        Some(refuse(
            Refusal::ApplicationContext,
            application_context_name.clone(),
        ))
    } else if called != our_ae {
        Some(refuse(
            Refusal::CalledAeMismatch,
            format!("called AE {called:?} is not this archive's {our_ae:?}"),
        ))
    } else if busy {
        Some(refuse(Refusal::Busy, "association limit reached".into()))
    } else {
        None
    };
    if let Some((r, detail)) = refusal {
        link.write(&Pdu::AssociationRJ(r.rejection())).await?;
        link.close().await;
        return Ok(Negotiated::Refused(r, detail));
    }

    let decision = match decide(calling.clone()).await {
        CallerDecision::Accept {
            clinic_id,
            clinic_name,
        } => Ok((clinic_id, clinic_name)),
        CallerDecision::UnknownAe => Err((
            Refusal::UnknownCallingAe,
            format!("calling AE {calling:?} is not registered for any clinic"),
        )),
        CallerDecision::Unavailable => {
            Err((Refusal::Busy, "the AE registry is unavailable".to_owned()))
        }
        CallerDecision::WrongHost => Err((
            Refusal::WrongHost,
            format!("calling AE {calling:?} is bound to another host than {peer}"),
        )),
        CallerDecision::TlsRequired => Err((
            Refusal::TlsRequired,
            format!(
                "calling AE {calling:?} is registered as TLS-only and called on the plain \
                 DICOM port; it must use the DICOM TLS port"
            ),
        )),
        CallerDecision::ClientCertRequired => Err((
            Refusal::ClientCertRequired,
            format!(
                "calling AE {calling:?} requires a verified client certificate and the peer \
                 presented none"
            ),
        )),
    };
    let (clinic_id, clinic_name) = match decision {
        Ok(clinic) => clinic,
        Err((refusal, detail)) => {
            link.write(&Pdu::AssociationRJ(refusal.rejection())).await?;
            link.close().await;
            return Ok(Negotiated::Refused(refusal, detail));
        }
    };

    for uv in &user_variables {
        if let UserVariableItem::MaxLength(n) = uv {
            link.peer_max_pdu = *n;
        }
    }

    let mut contexts = HashMap::new();
    let mut results = Vec::with_capacity(presentation_contexts.len());
    for pc in presentation_contexts {
        let abstract_syntax = pc.abstract_syntax.trim_end_matches('\0').trim().to_owned();
        let (reason, ts) = if !sop_classes::is_supported_abstract_syntax(&abstract_syntax) {
            (
                PresentationContextResultReason::AbstractSyntaxNotSupported,
                dicom_dictionary_std::uids::IMPLICIT_VR_LITTLE_ENDIAN.to_owned(),
            )
        } else {
            match choose_transfer_syntax(&pc.transfer_syntaxes) {
                Some(ts) => (PresentationContextResultReason::Acceptance, ts),
                None => (
                    PresentationContextResultReason::TransferSyntaxesNotSupported,
                    dicom_dictionary_std::uids::IMPLICIT_VR_LITTLE_ENDIAN.to_owned(),
                ),
            }
        };
        if reason == PresentationContextResultReason::Acceptance {
            contexts.insert(
                pc.id,
                AcceptedContext {
                    abstract_syntax,
                    transfer_syntax: ts.clone(),
                },
            );
        }
        results.push(PresentationContextResult {
            id: pc.id,
            reason,
            transfer_syntax: ts,
        });
    }

    // SCP/SCU role selection (PS3.7 D.3.3.4): a C-GET peer asks to be the storage SCP for
    // the classes it wants to receive; granted for every storage class it proposed.
    let mut peer_scp_classes = std::collections::HashSet::new();
    let mut role_answers = Vec::new();
    for uv in &user_variables {
        if let UserVariableItem::ScuScpRoleSelectionSubItem(uid, roles) = uv {
            let uid = uid.trim_end_matches('\0').trim().to_owned();
            let proposed = contexts.values().any(|c| c.abstract_syntax == uid);
            if roles.scp && proposed && sop_classes::is_storage_sop_class(&uid) {
                peer_scp_classes.insert(uid.clone());
                role_answers.push(UserVariableItem::ScuScpRoleSelectionSubItem(
                    uid,
                    dicom_ul::pdu::RequestorRoles {
                        scu: roles.scu,
                        scp: true,
                    },
                ));
            }
        }
    }
    let ac = AssociationAC {
        protocol_version: 1,
        calling_ae_title,
        called_ae_title,
        application_context_name,
        presentation_contexts: results,
        user_variables: vec![
            UserVariableItem::MaxLength(link.max_pdu),
            UserVariableItem::ImplementationClassUID(
                pacs_store::archive::IMPLEMENTATION_CLASS_UID.to_owned(),
            ),
            UserVariableItem::ImplementationVersionName(
                pacs_store::archive::IMPLEMENTATION_VERSION_NAME.to_owned(),
            ),
        ]
        .into_iter()
        .chain(role_answers)
        .collect(),
    };
    link.write(&Pdu::AssociationAC(ac)).await?;
    Ok(Negotiated::Established(Established {
        calling_ae: calling,
        called_ae: called,
        peer,
        clinic_id,
        clinic_name,
        contexts,
        peer_scp_classes,
    }))
}

/// The first proposed transfer syntax that the registry knows: the archive stores objects
/// as received, so any syntax whose header it can read is fine, compressed or not.
fn choose_transfer_syntax(proposed: &[String]) -> Option<String> {
    proposed
        .iter()
        .map(|ts| ts.trim_end_matches('\0').trim())
        .find(|ts| TransferSyntaxRegistry.get(ts).is_some())
        .map(str::to_owned)
}

pub fn pdu_name(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::Unknown { .. } => "unknown PDU",
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
    }
}
