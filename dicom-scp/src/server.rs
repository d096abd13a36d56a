//! The accept loops: the plain DICOM port and, when configured, the DICOM TLS port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pacs_store::ae_title::AeTitle;
use pacs_store::archive::Archive;
use pacs_store::audit::{Action, AuditEvent, EventId, EventType, Outcome, roles};
use pacs_store::index::{Admission, LinkSecurity};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::association::{CallerDecision, Negotiated, PduStream, Refusal, Transport, negotiate};
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

/// The DICOM TLS listener (PS3.15 B.1, "The Basic TLS Secure Transport Connection
/// Profile", with BCP 195 cipher rules): its socket and the rustls configuration the
/// composition root built (server certificate, optional client-certificate verifier).
///
/// Contract on `config`: its client-certificate verifier must fail the handshake for a
/// certificate it cannot verify (rustls's `WebPkiClientVerifier` does, with or without
/// `allow_unauthenticated`). A certificate present after the handshake is taken as
/// verified: that is what `require_client_cert` AE titles rely on.
pub struct TlsListener {
    pub listener: TcpListener,
    pub config: Arc<rustls::ServerConfig>,
}

/// Serves DICOM on `listener` until `shutdown` resolves; then stops accepting, lets
/// in-flight requests finish (within the grace period) and aborts idle associations.
pub async fn run(
    listener: TcpListener,
    archive: Archive,
    config: ScpConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    run_with_tls(listener, None, archive, config, shutdown).await
}

/// Which listener a connection came in on.
enum Via {
    Plain,
    Tls(TlsAcceptor),
}

/// [`run`] with a second, TLS listener. Both share the association limit (one semaphore:
/// a TLS handshake in progress holds a slot, bounded by the idle timeout) and shutdown.
pub async fn run_with_tls(
    listener: TcpListener,
    tls: Option<TlsListener>,
    archive: Archive,
    config: ScpConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.max_associations));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tls = tls.map(|t| (t.listener, TlsAcceptor::from(t.config)));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (accepted, via) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => (accepted, Via::Plain),
            (accepted, acceptor) = accept_tls(tls.as_ref()) => (accepted, Via::Tls(acceptor)),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin.
                let tls = matches!(via, Via::Tls(_));
                tracing::warn!(error = %e, tls, "accept failed");
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
            let busy = permit.is_none();
            match via {
                Via::Tls(acceptor) => {
                    let Some(tls) =
                        tls_handshake(&acceptor, stream, peer, &archive, &config, stop.clone())
                            .await
                    else {
                        return;
                    };
                    let security = LinkSecurity {
                        tls: true,
                        // The verifier fails the handshake for a certificate it cannot
                        // verify, so one that is here was verified (see TlsListener).
                        client_certificate_verified: tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .is_some_and(|c| !c.is_empty()),
                    };
                    handle_connection(tls, peer, archive, &config, busy, stop, security).await;
                }
                Via::Plain => {
                    handle_connection(
                        stream,
                        peer,
                        archive,
                        &config,
                        busy,
                        stop,
                        LinkSecurity::PLAIN,
                    )
                    .await
                }
            }
            drop(permit);
        });
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

/// Accepts on the TLS listener when there is one (with its acceptor for the connection);
/// never resolves otherwise.
async fn accept_tls(
    tls: Option<&(TcpListener, TlsAcceptor)>,
) -> (std::io::Result<(TcpStream, SocketAddr)>, TlsAcceptor) {
    match tls {
        Some((listener, acceptor)) => (listener.accept().await, acceptor.clone()),
        None => std::future::pending().await,
    }
}

/// Runs the TLS handshake, bounded by the idle timeout (a peer that connects and stalls
/// holds its slot no longer than an idle association would) and abandoned at shutdown.
///
/// A failure is logged with the peer and rustls's reason. Failures that TLS itself reports
/// (an untrusted or invalid client certificate, a protocol error, an alert from the peer,
/// plain DICOM on the TLS port) and timeouts are audited as security alerts (node
/// authentication, minor failure); a peer that just closes or resets the connection (a
/// port probe, a load balancer's health check) is only logged, or it would flood the trail.
async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    archive: &Archive,
    config: &ScpConfig,
    mut stop: watch::Receiver<bool>,
) -> Option<TlsStream<TcpStream>> {
    let handshake = tokio::time::timeout(config.idle_timeout, acceptor.accept(stream));
    let result = tokio::select! {
        r = handshake => r,
        _ = stop.wait_for(|s| *s) => {
            tracing::debug!(%peer, "TLS handshake abandoned: shutting down");
            return None;
        }
    };
    let reason = match result {
        Ok(Ok(tls)) => {
            let (_, conn) = tls.get_ref();
            tracing::debug!(%peer, version = ?conn.protocol_version(),
                suite = ?conn.negotiated_cipher_suite().map(|s| s.suite()),
                client_certificate = conn.peer_certificates().is_some(), "TLS handshake done");
            return Some(tls);
        }
        Err(_) => format!("no TLS handshake within {:?}", config.idle_timeout),
        Ok(Err(e)) => match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(tls_error) => format!("TLS handshake failed: {tls_error}"),
            None => {
                metrics::counter!("pacs_associations_total", "outcome" => "tls_handshake_failed")
                    .increment(1);
                tracing::info!(%peer, error = %e, "connection closed during the TLS handshake");
                return None;
            }
        },
    };
    metrics::counter!("pacs_associations_total", "outcome" => "tls_handshake_failed").increment(1);
    tracing::warn!(%peer, %reason, "DICOM TLS connection refused");
    let event = AuditEvent::new(
        EventId::SecurityAlert,
        Action::Execute,
        "unknown",
        roles::UNREGISTERED_AE,
    )
    .with_type(EventType::NodeAuthentication)
    .with_ip(Some(peer.ip()))
    .with_outcome(
        Outcome::MinorFailure,
        format!("DICOM TLS connection refused: {reason}"),
    );
    archive.audit_or_log(event).await;
    None
}

async fn handle_connection<S: Transport>(
    stream: S,
    peer: SocketAddr,
    archive: Archive,
    config: &ScpConfig,
    busy: bool,
    stop: watch::Receiver<bool>,
    security: LinkSecurity,
) {
    let mut link = PduStream::new(stream, config.max_pdu, config.idle_timeout);
    let index = archive.index().clone();
    let lookup = |calling: String| async move {
        let Ok(ae) = AeTitle::parse(&calling) else {
            return CallerDecision::UnknownAe;
        };
        match index.find_ae(&ae).await {
            Ok(Some(reg)) => match reg.admit(peer.ip(), security) {
                Admission::Admitted => CallerDecision::Accept {
                    clinic_id: reg.clinic_id,
                    clinic_name: reg.clinic_name,
                },
                Admission::WrongHost => CallerDecision::WrongHost,
                Admission::TlsRequired => CallerDecision::TlsRequired,
                Admission::ClientCertificateRequired => CallerDecision::ClientCertRequired,
            },
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
            tracing::warn!(%peer, tls = security.tls, reason = reason.as_str(), %detail,
                "association refused");
            if reason.is_caller_refusal() {
                audit_refused_caller(&archive, peer, calling_ae.as_deref(), reason, &detail).await;
            }
            return;
        }
        Err(e) => {
            metrics::counter!("pacs_associations_total", "outcome" => "failed").increment(1);
            tracing::info!(%peer, tls = security.tls, error = %e, "association set-up failed");
            return;
        }
    };
    metrics::counter!("pacs_associations_total", "outcome" => "accepted").increment(1);
    tracing::info!(%peer, calling = %established.calling_ae, clinic = %established.clinic_name,
        contexts = established.contexts.len(), tls = security.tls,
        client_certificate = security.client_certificate_verified, "association accepted");
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
/// event type 110126 Node Authentication) — a minor failure for an unknown AE title (a
/// misconfigured modality, most often), a serious one for a registered AE title presented
/// without what its registration demands: from another host than its own, over plain TCP
/// when it is TLS-only, or without the client certificate it requires. Those are what
/// someone borrowing a known AE title looks like.
async fn audit_refused_caller(
    archive: &Archive,
    peer: SocketAddr,
    calling: Option<&str>,
    reason: Refusal,
    detail: &str,
) {
    let outcome = match reason {
        Refusal::WrongHost | Refusal::TlsRequired | Refusal::ClientCertRequired => {
            Outcome::SeriousFailure
        }
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
