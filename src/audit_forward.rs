//! Forwarding of the audit trail to an IHE ATNA audit record repository: each entry as a
//! DICOM Audit Message (`pacs_store::audit_message`) in an RFC 5424 syslog message, framed
//! by octet counting and sent over TLS (RFC 5425, RFC 6587).
//!
//! Delivery is at least once and in order. The forwarder reads the entries after its
//! cursor (`pacs_store::audit_forwarding`, one per destination, in the database), writes
//! a batch of at most [`BATCH`], flushes it, and only then moves the cursor; a connection or
//! TLS error drops the connection and it reconnects (1 s, doubling to 60 s) and resends
//! from the cursor. So an entry is sent again only when the process stops between writing
//! it and moving the cursor (a crash). Syslog over TLS has no acknowledgement: bytes
//! written into a connection that the server drops without reading them are lost to it.
//! The forwarder narrows that to the moment of a write: it writes only on a connection
//! that has stood for [`SETTLE`] (in TLS 1.3 a refused client certificate is announced
//! after the client's handshake has ended), checks right before each batch that the
//! server has not closed the connection, and notices a close while idle at once.
//!
//! Syslog header: `<PRI>1 TIMESTAMP HOSTNAME pacs PROCID IHE+RFC-3881 - BOM XML`, facility
//! authpriv (10), severity notice (5) for a success and warning (4) for any failure;
//! TIMESTAMP is the entry's time (so a resent entry is byte-identical), HOSTNAME this
//! machine's host name.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pacs_store::audit::{AuditRecord, format_micros};
use pacs_store::index::Index;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Entries written per batch (then flushed and the cursor moved).
pub const BATCH: i64 = 500;
/// How often the trail is checked for new entries.
const POLL: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new connection must stand before the first write.
const SETTLE: Duration = Duration::from_millis(500);
/// At shutdown, how long the last entries (the stop event) may take to go out.
const DRAIN_AT_STOP: Duration = Duration::from_secs(5);

/// syslog facility authpriv (RFC 5424 6.2.1): security and authorisation messages.
const FACILITY_AUTHPRIV: u8 = 10;
const SEVERITY_WARNING: u8 = 4;
const SEVERITY_NOTICE: u8 = 5;
const APP_NAME: &str = "pacs";
/// The MSGID IHE ATNA prescribes for DICOM/RFC 3881 audit messages.
const MSG_ID: &str = "IHE+RFC-3881";

/// Where and how to forward (from the `audit_syslog*` settings).
#[derive(Clone)]
pub struct Forwarding {
    /// The cursor's key: `audit_syslog` as configured.
    pub destination: String,
    pub host: String,
    pub port: u16,
    /// The name the server's certificate must carry.
    pub server_name: ServerName<'static>,
    pub tls: Arc<rustls::ClientConfig>,
    /// AuditSourceID of the messages: the archive's AE title.
    pub audit_source_id: String,
}

/// `HOST:PORT` or `[IPV6]:PORT` into host (without brackets) and port.
pub fn split_address(address: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing ']'")?;
        let port = after.strip_prefix(':').ok_or("no port after the address")?;
        (host, port)
    } else {
        let (host, port) = address.rsplit_once(':').ok_or("no port")?;
        if host.contains(':') {
            return Err("write an IPv6 address in brackets, [ADDRESS]:PORT".into());
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{port:?} is not a port number (1-65535)"))?;
    Ok((host.to_owned(), port))
}

/// One entry as a framed syslog message: `LEN SP <PRI>1 … BOM XML`.
pub fn frame(record: &AuditRecord, hostname: &str, procid: &str, audit_source_id: &str) -> Vec<u8> {
    let severity = if record.outcome == 0 {
        SEVERITY_NOTICE
    } else {
        SEVERITY_WARNING
    };
    let pri = u16::from(FACILITY_AUTHPRIV) * 8 + u16::from(severity);
    let message = format!(
        "<{pri}>1 {} {hostname} {APP_NAME} {procid} {MSG_ID} - \u{FEFF}{}",
        format_micros(record.occurred_at),
        pacs_store::audit_message::render(record, audit_source_id)
    );
    format!("{} {message}", message.len()).into_bytes()
}

/// This machine's host name as a syslog HOSTNAME (printable US-ASCII, at most 255), or
/// the NILVALUE `-`.
fn local_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    syslog_hostname(&name)
}

fn syslog_hostname(name: &str) -> String {
    let name = name.trim();
    if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| (33..=126).contains(&b)) {
        "-".to_owned()
    } else {
        name.to_owned()
    }
}

/// Forwards until `finish` turns true: then sends what the trail still holds (the stop
/// event) if connected, for at most [`DRAIN_AT_STOP`], closes the connection and returns.
pub async fn run(index: Index, fwd: Forwarding, mut finish: watch::Receiver<bool>) {
    let hostname = local_hostname();
    let procid = std::process::id().to_string();
    let mut backoff = BACKOFF_MIN;
    loop {
        if *finish.borrow() {
            return;
        }
        let connected = tokio::select! {
            c = connect(&fwd) => c,
            _ = finish.wait_for(|f| *f) => return,
        };
        let failure = match connected {
            Ok(mut stream) => {
                let session = Session {
                    index: &index,
                    fwd: &fwd,
                    hostname: &hostname,
                    procid: &procid,
                };
                match session.run(&mut stream, &mut finish, &mut backoff).await {
                    Ok(()) => {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
                        return;
                    }
                    Err(why) => why,
                }
            }
            Err(why) => why,
        };
        tracing::warn!(
            destination = %fwd.destination,
            error = %failure,
            retry_in_seconds = backoff.as_secs(),
            "audit trail forwarding interrupted; the entries not yet sent stay queued in the database"
        );
        // The backlog grows while disconnected: keep its gauge current.
        let _ = backlog(&index, &fwd.destination).await;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = finish.wait_for(|f| *f) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn connect(fwd: &Forwarding) -> Result<TlsStream<TcpStream>, String> {
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((fwd.host.as_str(), fwd.port)),
    )
    .await
    .map_err(|_| format!("no TCP connection within {CONNECT_TIMEOUT:?}"))?
    .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let connector = TlsConnector::from(fwd.tls.clone());
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        connector.connect(fwd.server_name.clone(), tcp),
    )
    .await
    .map_err(|_| format!("no TLS handshake within {CONNECT_TIMEOUT:?}"))?
    .map_err(|e| describe(&e))
}

/// What a connection or TLS failure means, and what to check.
fn describe(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(why)) => format!(
            "TLS certificate verification failed: the syslog server's certificate was refused \
             ({why}); check that audit_syslog_ca holds the CA that signed it and that it names \
             the server (audit_syslog_server_name)"
        ),
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "the syslog server refused the TLS connection ({alert:?}); if it requires a client \
             certificate, set audit_syslog_client_cert and audit_syslog_client_key to one it \
             trusts"
        ),
        Some(other) => format!("TLS failed: {other}"),
        // rustls's "peer closed connection without sending TLS close_notify"
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("{CLOSED} (without TLS close_notify)")
        }
        None => format!("connection failed: {e}"),
    }
}

struct Session<'a> {
    index: &'a Index,
    fwd: &'a Forwarding,
    hostname: &'a str,
    procid: &'a str,
}

impl Session<'_> {
    /// Sends until finished (`Ok`) or the connection fails (`Err`, why).
    async fn run(
        &self,
        stream: &mut TlsStream<TcpStream>,
        finish: &mut watch::Receiver<bool>,
        backoff: &mut Duration,
    ) -> Result<(), String> {
        let dest = self.fwd.destination.as_str();
        let mut drain_until: Option<Instant> = None;
        let mut scratch = [0u8; 1024];
        // In TLS 1.3 the client's handshake ends before the server has checked the client's
        // certificate: a refusal arrives as an alert just after. Nothing is written before
        // the connection has stood for a moment, so that a refusal cannot swallow a batch.
        let refused = |why: String| {
            format!(
                "{why}, right after the TLS handshake: if the server requires a client \
                 certificate, set audit_syslog_client_cert and audit_syslog_client_key to one \
                 from a CA it trusts"
            )
        };
        match tokio::time::timeout(SETTLE, stream.read(&mut scratch)).await {
            Err(_) | Ok(Ok(1..)) => {}
            Ok(Ok(0)) => return Err(refused(CLOSED.into())),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(refused(CLOSED.into()));
            }
            Ok(Err(e)) => return Err(describe(&e)),
        }
        tracing::info!(destination = %dest, "audit trail forwarding: connected");
        loop {
            if drain_until.is_some_and(|t| Instant::now() > t) {
                tracing::warn!(destination = %dest, "stopping with audit entries not yet forwarded; they go out at the next start");
                return Ok(());
            }
            let entries = match self.next_batch().await {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the audit trail to forward it");
                    if drain_until.is_some() {
                        return Ok(());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = finish.wait_for(|f| *f) => drain_until = Some(Instant::now() + DRAIN_AT_STOP),
                    }
                    continue;
                }
            };
            if entries.is_empty() {
                if drain_until.is_some() {
                    return Ok(());
                }
                // Idle: wait for new entries, the stop, or the server closing the connection.
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = finish.wait_for(|f| *f) => drain_until = Some(Instant::now() + DRAIN_AT_STOP),
                    r = stream.read(&mut scratch) => match r {
                        Ok(0) => return Err(CLOSED.into()),
                        Ok(_) => {} // a syslog receiver sends nothing; ignore it
                        Err(e) => return Err(describe(&e)),
                    },
                }
                continue;
            }
            if let Some(why) = closed_by_peer(stream, &mut scratch).await {
                return Err(why);
            }
            let mut bytes = Vec::with_capacity(entries.len() * 1024);
            for r in &entries {
                bytes.extend(frame(
                    r,
                    self.hostname,
                    self.procid,
                    &self.fwd.audit_source_id,
                ));
            }
            // Never cancelled half-way: a stop is only looked at between batches.
            tokio::time::timeout(WRITE_TIMEOUT, async {
                stream.write_all(&bytes).await?;
                stream.flush().await
            })
            .await
            .map_err(|_| {
                format!("the syslog server took more than {WRITE_TIMEOUT:?} to accept a batch")
            })?
            .map_err(|e| format!("cannot send: {e}"))?;
            let last = entries.last().map_or(0, |r| r.id);
            if let Err(e) = self.index.set_forward_cursor(dest, last).await {
                // They were sent; they will be sent again (at least once).
                tracing::error!(error = %e, "cannot record how far the audit trail was forwarded");
            }
            metrics::counter!("pacs_audit_forwarded_total").increment(entries.len() as u64);
            tracing::debug!(destination = %dest, entries = entries.len(), last, "audit entries forwarded");
            *backoff = BACKOFF_MIN;
        }
    }

    async fn next_batch(&self) -> pacs_store::Result<Vec<AuditRecord>> {
        let (cursor, waiting) = backlog(self.index, &self.fwd.destination).await?;
        if waiting == 0 {
            return Ok(Vec::new());
        }
        self.index.audit_entries_after(cursor, BATCH).await
    }
}

/// The cursor of `destination` and how many entries are after it (also as the gauge
/// `pacs_audit_forward_backlog`).
async fn backlog(index: &Index, destination: &str) -> pacs_store::Result<(i64, i64)> {
    let cursor = index.forward_cursor(destination).await?;
    let waiting = (index.last_audit_id().await? - cursor).max(0);
    metrics::gauge!("pacs_audit_forward_backlog").set(waiting as f64);
    Ok((cursor, waiting))
}

/// Whether the server has closed the connection (it never sends anything else): a read
/// that does not wait.
async fn closed_by_peer(stream: &mut TlsStream<TcpStream>, scratch: &mut [u8]) -> Option<String> {
    match tokio::time::timeout(Duration::ZERO, stream.read(scratch)).await {
        Err(_) | Ok(Ok(1..)) => None,
        Ok(Ok(0)) => Some(CLOSED.into()),
        Ok(Err(e)) => Some(describe(&e)),
    }
}

const CLOSED: &str = "the syslog server closed the connection";

#[cfg(test)]
mod tests {
    use super::*;
    use pacs_store::audit::{Action, AuditEvent, EventId, GENESIS_HASH, Outcome, roles};

    #[test]
    fn addresses() {
        assert_eq!(
            split_address("arr.example:6514"),
            Ok(("arr.example".into(), 6514))
        );
        assert_eq!(split_address("127.0.0.1:1"), Ok(("127.0.0.1".into(), 1)));
        assert_eq!(split_address("[::1]:6514"), Ok(("::1".into(), 6514)));
        for bad in [
            "arr.example",
            "arr.example:",
            ":6514",
            "arr.example:0",
            "arr.example:65536",
            "arr.example:syslog",
            "::1:6514",
            "[::1]6514",
            "[::1:6514",
        ] {
            assert!(split_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn frames_are_rfc5424_with_octet_counting() {
        let mut e = AuditEvent::new(
            EventId::UserAuthentication,
            Action::Execute,
            "王医生",
            roles::OPERATOR,
        );
        e.occurred_at = 1_709_209_800_123_456;
        let ok = AuditRecord::chained(7, GENESIS_HASH, &e);
        let bytes = frame(&ok, "pacs-node-1", "4242", "REGIONAL_PACS");
        let text = String::from_utf8(bytes).unwrap();
        let (len, message) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), message.len());
        assert!(
            message.starts_with(
                "<85>1 2024-02-29T12:30:00.123456Z pacs-node-1 pacs 4242 IHE+RFC-3881 - \u{FEFF}<?xml"
            ),
            "{message}"
        );
        assert!(message.ends_with("</AuditMessage>"));
        assert!(message.contains(r#"UserID="王医生""#));
        let failed = AuditRecord::chained(
            8,
            &ok.hash,
            &e.with_outcome(Outcome::MinorFailure, "refused"),
        );
        let text = String::from_utf8(frame(&failed, "-", "1", "A")).unwrap();
        assert!(text.contains(" <84>1 2024-02-29T12:30:00.123456Z - pacs 1 IHE+RFC-3881 - "));
    }

    #[test]
    fn hostnames() {
        assert_eq!(syslog_hostname("node-1.region\n"), "node-1.region");
        assert_eq!(syslog_hostname(""), "-");
        assert_eq!(syslog_hostname("two words"), "-");
        assert_eq!(syslog_hostname("节点"), "-");
        assert_eq!(syslog_hostname(&"a".repeat(256)), "-");
    }
}
