//! The accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pacs_store::ae_title::AeTitle;
use pacs_store::archive::Archive;
use pacs_store::audit::{Action, AuditEvent, EventId, EventType, Outcome, roles};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::association::{CallerDecision, Negotiated, PduStream, Refusal, negotiate};
use crate::service::{self, Ending};

/// Settings of the DICOM listener.
#[derive(Debug, Clone)]
pub struct ScpConfig {
    /// The archive's own AE title; associations calling another title are refused.
    pub ae_title: String,
    /// Largest PDU we accept (and announce).
    pub max_pdu: u32,
    /// An association idle longer than this is aborted.
    pub idle_timeout: Duration,
    /// Associations served at once; more are refused with a transient rejection.
    pub max_associations: usize,
    /// How long shutdown waits for associations to finish their current request.
    pub shutdown_grace: Duration,
}

impl Default for ScpConfig {
    fn default() -> Self {
        ScpConfig {
            ae_title: "REGIONAL_PACS".into(),
            max_pdu: 262_138,
            idle_timeout: Duration::from_secs(60),
            max_associations: 64,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves DICOM on `listener` until `shutdown` resolves; then stops accepting, lets
/// in-flight requests finish (within the grace period) and aborts idle associations.
pub async fn run(
    listener: TcpListener,
    archive: Archive,
    config: ScpConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.max_associations));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: wait a little rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let permit = slots.clone().try_acquire_owned().ok();
                let archive = archive.clone();
                let config = config.clone();
                let stop = stop_rx.clone();
                tasks.spawn(async move {
                    handle_connection(stream, peer, archive, &config, permit.is_none(), stop).await;
                    drop(permit);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tracing::info!(active = tasks.len(), "DICOM listener stopping");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "associations still busy after the grace period; aborting them"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    archive: Archive,
    config: &ScpConfig,
    busy: bool,
    stop: watch::Receiver<bool>,
) {
    let mut link = PduStream::new(stream, config.max_pdu, config.idle_timeout);
    let index = archive.index().clone();
    let lookup = |calling: String| async move {
        let Ok(ae) = AeTitle::parse(&calling) else {
            return CallerDecision::UnknownAe;
        };
        match index.find_ae(&ae).await {
            Ok(Some(reg)) if reg.allows_host(peer.ip()) => CallerDecision::Accept {
                clinic_id: reg.clinic_id,
                clinic_name: reg.clinic_name,
            },
            Ok(Some(_)) => CallerDecision::WrongHost,
            Ok(None) => CallerDecision::UnknownAe,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the AE registry");
                CallerDecision::Unavailable
            }
        }
    };
    // Audit trail: the calling AE title, for the security alert of a refused caller.
    let mut calling_ae = None;
    let decide = |calling: String| {
        calling_ae = Some(calling.clone());
        lookup(calling)
    };
    let established = match negotiate(&mut link, &config.ae_title, peer.ip(), busy, decide).await {
        Ok(Negotiated::Established(e)) => e,
        Ok(Negotiated::Refused(reason, detail)) => {
            metrics::counter!("pacs_associations_total", "outcome" => reason.as_str()).increment(1);
            tracing::warn!(%peer, reason = reason.as_str(), %detail, "association refused");
            if matches!(reason, Refusal::UnknownCallingAe | Refusal::WrongHost) {
                audit_refused_caller(&archive, peer, calling_ae.as_deref(), reason, &detail).await;
            }
            return;
        }
        Err(e) => {
            metrics::counter!("pacs_associations_total", "outcome" => "failed").increment(1);
            tracing::info!(%peer, error = %e, "association set-up failed");
            return;
        }
    };
    metrics::counter!("pacs_associations_total", "outcome" => "accepted").increment(1);
    tracing::info!(%peer, calling = %established.calling_ae, clinic = %established.clinic_name,
        contexts = established.contexts.len(), "association accepted");
    let calling = established.calling_ae.clone();
    let ending = service::serve(link, established, archive, stop).await;
    match &ending {
        Ending::Released | Ending::ShutDown | Ending::AbortedByPeer => {
            tracing::info!(%peer, %calling, ?ending, "association ended")
        }
        Ending::AbortedByUs(_) | Ending::LinkLost(_) => {
            tracing::warn!(%peer, %calling, ?ending, "association ended abnormally")
        }
    }
}

/// Audit trail: a caller refused by the AE registry is a security alert (PS3.15 A.5.3.11,
/// event type 110126 Node Authentication) — a minor failure for an unknown AE title, a
/// serious one for a registered AE title calling from another host than its own.
async fn audit_refused_caller(
    archive: &Archive,
    peer: SocketAddr,
    calling: Option<&str>,
    reason: Refusal,
    detail: &str,
) {
    let outcome = match reason {
        Refusal::WrongHost => Outcome::SeriousFailure,
        _ => Outcome::MinorFailure,
    };
    let event = AuditEvent::new(
        EventId::SecurityAlert,
        Action::Execute,
        calling.unwrap_or("unknown"),
        roles::UNREGISTERED_AE,
    )
    .with_type(EventType::NodeAuthentication)
    .with_ip(Some(peer.ip()))
    .with_outcome(outcome, format!("association refused: {detail}"));
    archive.audit_or_log(event).await;
}
