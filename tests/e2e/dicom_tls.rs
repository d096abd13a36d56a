//! DICOM TLS on the second port, with dcmtk's echoscu and storescu (`+tls`, BCP 195
//! non-downgrading profile, their default) as the township modalities, and certificates made
//! here with the openssl CLI as an operator would: a test CA, the archive's certificate
//! (SAN 127.0.0.1 and localhost), a modality certificate from that CA and one from a CA the
//! archive does not trust.
//!
//! Each case checks what the modality sees (dcmtk's exit status and message) and what the
//! archive did (stored or not, the audit event written).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::*;

const CLINIC: &str = "TLS Township Clinic";

/// Certificates and keys (PEM files) in a temporary directory.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// Signed by another CA than `ca`.
    rogue_cert: PathBuf,
    rogue_key: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let mut c = Command::new("openssl");
    c.args(args).current_dir(dir);
    let out = run_bounded(c, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA certificate `name.pem` with its key `name.key`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=PACS test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
        dir,
    );
}

/// An end-entity certificate `name.pem` (key `name.key`) signed by the CA `ca`.
fn make_leaf(dir: &Path, name: &str, ca: &str, san: &str, usage: &str) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=PACS test {name}"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "-addext",
            &format!("subjectAltName={san}"),
            "-addext",
            &format!("extendedKeyUsage={usage}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
        dir,
    );
}

fn pki() -> Pki {
    let dir = tempfile::Builder::new()
        .prefix("pacs-e2e-pki-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "rogue-ca");
    make_leaf(
        d,
        "server",
        "ca",
        "IP:127.0.0.1,DNS:localhost",
        "serverAuth",
    );
    make_leaf(d, "modality", "ca", "DNS:modality.test", "clientAuth");
    make_leaf(d, "rogue", "rogue-ca", "DNS:modality.test", "clientAuth");
    Pki {
        ca: d.join("ca.pem"),
        server_cert: d.join("server.pem"),
        server_key: d.join("server.key"),
        client_cert: d.join("modality.pem"),
        client_key: d.join("modality.key"),
        rogue_cert: d.join("rogue.pem"),
        rogue_key: d.join("rogue.key"),
        _dir: dir,
    }
}

/// An archive with the DICOM TLS listener on an ephemeral port, trusting `pki.ca` for
/// client certificates.
fn tls_archive(pki: &Pki) -> TestArchive {
    let s = |p: &Path| p.display().to_string();
    TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_DICOM_TLS_PORT", "0")
        .with_env("PACS_DICOM_TLS_CERT", &s(&pki.server_cert))
        .with_env("PACS_DICOM_TLS_KEY", &s(&pki.server_key))
        .with_env("PACS_DICOM_TLS_CLIENT_CA", &s(&pki.ca))
}

fn tls_port(server: &Server) -> u16 {
    server
        .ready_port("dicom_tls_port")
        .expect("PACS_READY announces dicom_tls_port")
}

/// How the dcmtk client connects.
#[derive(Clone, Copy)]
enum Client<'a> {
    /// Plain TCP.
    Plain,
    /// TLS without a client certificate (`+tla`).
    Anonymous,
    /// TLS with this key and certificate (`+tls KEY CERT`).
    Certificate { key: &'a Path, cert: &'a Path },
}

/// The dcmtk options for `client`; the archive's certificate is verified against the test
/// CA (`+cf`; dcmtk requires a verified server certificate by default, `-rc`).
fn tls_args(c: &mut Command, client: Client, pki: &Pki) {
    match client {
        Client::Plain => {}
        Client::Anonymous => {
            c.arg("+tla").arg("+cf").arg(&pki.ca);
        }
        Client::Certificate { key, cert } => {
            c.arg("+tls").arg(key).arg(cert).arg("+cf").arg(&pki.ca);
        }
    }
}

fn echo(port: u16, calling: &str, client: Client, pki: &Pki) -> Output {
    let mut c = dcmtk("echoscu");
    c.args(["-aet", calling, "-aec", "REGIONAL_PACS"]);
    c.args(["-to", "10", "-ta", "10", "-td", "10"]);
    tls_args(&mut c, client, pki);
    c.args(["127.0.0.1", &port.to_string()]);
    run_bounded(c, Duration::from_secs(30))
}

fn store(port: u16, calling: &str, client: Client, pki: &Pki, file: &Path) -> Output {
    let mut c = dcmtk("storescu");
    c.args(["-aet", calling, "-aec", "REGIONAL_PACS"]);
    c.args(["-to", "10", "-ta", "10", "-td", "10"]);
    tls_args(&mut c, client, pki);
    c.args(["127.0.0.1", &port.to_string()]).arg(file);
    run_bounded(c, Duration::from_secs(60))
}

/// The log without ANSI colour sequences (tracing colours `key=value` pairs).
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_accepted(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: refused:\n{}", stderr(out));
}

/// dcmtk got an A-ASSOCIATE-RJ, permanent, "calling AE title not recognized".
#[track_caller]
fn assert_rejected(out: &Output, what: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{what}: accepted");
    assert!(err.contains("Association Rejected"), "{what}:\n{err}");
    assert!(err.contains("Rejected Permanent"), "{what}:\n{err}");
    assert!(
        err.contains("Calling AE Title Not Recognized"),
        "{what}:\n{err}"
    );
}

/// Every 110113 Security Alert entry (refused callers, failed handshakes, clinic
/// changes), oldest first.
fn security_alerts(archive: &TestArchive) -> Vec<serde_json::Value> {
    let out = archive.pacs_ok(&[
        "audit", "search", "--json", "--limit", "10000", "--event", "110113",
    ]);
    serde_json::from_str(&out).expect("audit search --json")
}

/// The 110113 Security Alert entries whose user is `user`.
fn alerts(archive: &TestArchive, user: &str) -> Vec<serde_json::Value> {
    security_alerts(archive)
        .into_iter()
        .filter(|a| a["user"] == user)
        .collect()
}

/// The one node-authentication alert of `user`, with its outcome and description.
#[track_caller]
fn only_node_alert(archive: &TestArchive, user: &str) -> (i64, String) {
    let found: Vec<_> = alerts(archive, user)
        .into_iter()
        .filter(|a| a["event_type"] == 110126)
        .collect();
    assert_eq!(found.len(), 1, "{user}: {found:#?}");
    (
        found[0]["outcome"].as_i64().unwrap(),
        found[0]["outcome_description"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

/// A registered modality with a certificate from the trusted CA: C-ECHO and C-STORE over
/// TLS work, and the stored data set is byte for byte the one sent.
#[test]
fn trusted_modality_echoes_and_stores_over_tls() {
    let pki = pki();
    let archive = tls_archive(&pki);
    archive.pacs_ok(&[
        "clinic",
        "add",
        "--name",
        CLINIC,
        "--ae-title",
        "CT_TLS",
        "--require-client-cert",
    ]);
    let server = archive.start();
    let port = tls_port(&server);
    let trusted = Client::Certificate {
        key: &pki.client_key,
        cert: &pki.client_cert,
    };

    assert_accepted(&echo(port, "CT_TLS", trusted, &pki), "echoscu +tls");

    let file = sample_dir().join("ct_01.dcm");
    let out = store(port, "CT_TLS", trusted, &pki, &file);
    assert_accepted(&out, "storescu +tls");
    let uid = sop_instance_uid(&file);
    let stored = archive
        .stored(&uid)
        .expect("the instance sent over TLS is archived");
    assert_eq!(
        stored.dataset,
        dataset_bytes(&std::fs::read(&file).unwrap()),
        "stored data set differs from the file's"
    );
    assert_eq!(archive.instance_count(), 1);
    let log = without_colours(&server.log());
    assert!(
        log.contains("association accepted")
            && log.contains("tls=true")
            && log.contains("client_certificate=true"),
        "{log}"
    );
    assert!(!log.contains("PRIVATE KEY"), "a key in the log:\n{log}");
}

/// An AE title that requires a client certificate: refused without one (anonymous TLS:
/// A-ASSOCIATE-RJ after the handshake) and with one from an untrusted CA (the handshake
/// fails); both audited; nothing stored.
#[test]
fn client_certificate_required_per_ae() {
    let pki = pki();
    let archive = tls_archive(&pki);
    archive.pacs_ok(&[
        "clinic",
        "add",
        "--name",
        CLINIC,
        "--ae-title",
        "DX_CERT",
        "--require-client-cert",
    ]);
    let server = archive.start();
    let port = tls_port(&server);
    let file = sample_dir().join("ct_02.dcm");

    // No client certificate: the handshake succeeds, the AE title is refused.
    assert_rejected(
        &echo(port, "DX_CERT", Client::Anonymous, &pki),
        "anonymous TLS",
    );
    let (outcome, why) = only_node_alert(&archive, "DX_CERT");
    assert_eq!(outcome, 8, "serious failure: {why}");
    assert!(why.contains("client certificate"), "{why}");
    assert_rejected(
        &store(port, "DX_CERT", Client::Anonymous, &pki, &file),
        "anonymous TLS store",
    );
    assert_eq!(
        alerts(&archive, "DX_CERT").len(),
        2,
        "one alert per refusal"
    );

    // A certificate from a CA the archive does not trust: the TLS handshake fails (the
    // archive sends an alert; dcmtk reports the association as never established).
    let rogue = Client::Certificate {
        key: &pki.rogue_key,
        cert: &pki.rogue_cert,
    };
    let out = store(port, "DX_CERT", rogue, &pki, &file);
    assert!(!out.status.success(), "untrusted certificate accepted");
    assert!(
        !stderr(&out).contains("Association Accepted"),
        "{}",
        stderr(&out)
    );
    let refused = wait_for(Duration::from_secs(10), || {
        let a: Vec<_> = alerts(&archive, "unknown")
            .into_iter()
            .filter(|a| {
                a["outcome_description"]
                    .as_str()
                    .is_some_and(|d| d.contains("TLS handshake failed"))
            })
            .collect();
        (!a.is_empty()).then_some(a)
    })
    .expect("the failed handshake is audited");
    assert_eq!(refused[0]["event_type"], 110126);
    assert_eq!(refused[0]["outcome"], 4);
    assert_eq!(refused[0]["source_ip"], "127.0.0.1");
    assert!(
        refused[0]["outcome_description"]
            .as_str()
            .unwrap()
            .contains("UnknownIssuer"),
        "{refused:#?}"
    );
    assert!(
        server.log().contains("UnknownIssuer"),
        "the log says why: {}",
        server.log()
    );
    assert_eq!(archive.instance_count(), 0, "nothing stored");

    // The trusted certificate is accepted: the refusals were about the certificate.
    assert_accepted(
        &echo(
            port,
            "DX_CERT",
            Client::Certificate {
                key: &pki.client_key,
                cert: &pki.client_cert,
            },
            &pki,
        ),
        "trusted certificate",
    );
}

/// A TLS-only AE title is refused on the plain port (and its store not archived), audited
/// as a serious failure; the same AE title over TLS is accepted, with or without a client
/// certificate. An AE title without the flag may use either port.
#[test]
fn tls_only_ae_refused_on_the_plain_port() {
    let pki = pki();
    let archive = tls_archive(&pki);
    let out = archive.pacs_ok(&[
        "clinic",
        "add",
        "--name",
        CLINIC,
        "--ae-title",
        "US_TLS",
        "--tls-only",
    ]);
    assert!(out.contains("TLS only"), "{out}");
    archive.add_clinic(CLINIC, "US_ANY", None);
    let list = archive.pacs_ok(&["clinic", "list"]);
    assert!(
        list.contains("US_TLS") && list.contains("TLS only"),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&archive.pacs_ok(&["clinic", "list", "--json"])).unwrap();
    let aes = json[0]["ae_titles"].as_array().unwrap();
    let us_tls = aes.iter().find(|a| a["ae_title"] == "US_TLS").unwrap();
    assert_eq!(us_tls["tls_only"], true);
    assert_eq!(us_tls["require_client_cert"], false);
    let config = security_alerts(&archive);
    assert!(
        config.iter().any(|c| c["event_type"] == 110129
            && c["detail"]
                .as_str()
                .unwrap()
                .contains("US_TLS for clinic \"TLS Township Clinic\", from any host, TLS only")),
        "{config:#?}"
    );

    let server = archive.start();
    let file = sample_dir().join("ct_03.dcm");
    assert_rejected(
        &echo(server.dicom_port, "US_TLS", Client::Plain, &pki),
        "TLS-only AE on the plain port",
    );
    assert_rejected(
        &store(server.dicom_port, "US_TLS", Client::Plain, &pki, &file),
        "TLS-only AE storing on the plain port",
    );
    assert_eq!(archive.instance_count(), 0, "nothing stored");
    let refusals: Vec<_> = alerts(&archive, "US_TLS");
    assert_eq!(refusals.len(), 2, "{refusals:#?}");
    for r in &refusals {
        assert_eq!(r["event_type"], 110126);
        assert_eq!(r["outcome"], 8);
        let why = r["outcome_description"].as_str().unwrap();
        assert!(why.contains("TLS-only") && why.contains("plain"), "{why}");
    }

    let port = tls_port(&server);
    assert_accepted(
        &echo(port, "US_TLS", Client::Anonymous, &pki),
        "TLS-only AE over TLS",
    );
    let out = store(port, "US_TLS", Client::Anonymous, &pki, &file);
    assert_accepted(&out, "TLS-only AE storing over TLS");
    assert!(archive.stored(&sop_instance_uid(&file)).is_some());
    assert_accepted(
        &echo(
            port,
            "US_TLS",
            Client::Certificate {
                key: &pki.client_key,
                cert: &pki.client_cert,
            },
            &pki,
        ),
        "TLS-only AE with a certificate",
    );
    assert_accepted(
        &echo(server.dicom_port, "US_ANY", Client::Plain, &pki),
        "plain AE, plain port",
    );
    assert_accepted(
        &echo(port, "US_ANY", Client::Anonymous, &pki),
        "plain AE, TLS port",
    );
    assert_eq!(alerts(&archive, "US_TLS").len(), 2, "no new refusal");
}

/// The registry's other rules hold on the TLS port too: an unknown AE title and an AE
/// title bound to another host are refused even with a trusted certificate.
#[test]
fn unknown_and_wrong_host_refused_over_tls() {
    let pki = pki();
    let archive = tls_archive(&pki);
    archive.add_clinic(CLINIC, "FAR_TLS", Some("10.9.9.9"));
    let server = archive.start();
    let port = tls_port(&server);
    let trusted = Client::Certificate {
        key: &pki.client_key,
        cert: &pki.client_cert,
    };
    assert_rejected(&echo(port, "NOBODY", trusted, &pki), "unknown AE over TLS");
    assert_rejected(
        &echo(port, "FAR_TLS", trusted, &pki),
        "AE from the wrong host over TLS",
    );
    let (outcome, why) = only_node_alert(&archive, "NOBODY");
    assert_eq!(outcome, 4, "{why}");
    assert!(why.contains("not registered"), "{why}");
    let (outcome, why) = only_node_alert(&archive, "FAR_TLS");
    assert_eq!(outcome, 8, "{why}");
    assert!(why.contains("another host"), "{why}");
    // Plain DICOM on the TLS port gets no association either.
    let out = echo(port, "FAR_TLS", Client::Plain, &pki);
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("Association Accepted"));
}

/// A client that connects to the TLS port and never sends a ClientHello holds neither the
/// listener nor other clients; the archive drops it after the idle timeout and audits it.
#[test]
fn stalled_handshake_does_not_block_others() {
    let pki = pki();
    let archive = tls_archive(&pki).with_env("PACS_IDLE_TIMEOUT_SECONDS", "3");
    archive.add_clinic(CLINIC, "CR_TLS", None);
    let server = archive.start();
    let port = tls_port(&server);

    let stalled: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let started = Instant::now();
    assert_accepted(
        &echo(port, "CR_TLS", Client::Anonymous, &pki),
        "echo next to stalled handshakes",
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the echo waited for the stalled clients ({:?})",
        started.elapsed()
    );

    // The stalled connections are closed by the archive after the idle timeout.
    let timed_out = wait_for(Duration::from_secs(20), || {
        let n = alerts(&archive, "unknown")
            .iter()
            .filter(|a| {
                a["outcome_description"]
                    .as_str()
                    .is_some_and(|d| d.contains("no TLS handshake within 3s"))
            })
            .count();
        (n == stalled.len()).then_some(n)
    });
    assert_eq!(timed_out, Some(3), "{}", server.log());
    for mut s in stalled {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        // EOF (0) or a reset: either way the archive let go.
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    }
    assert_accepted(
        &echo(port, "CR_TLS", Client::Anonymous, &pki),
        "echo after the timeouts",
    );
}

/// A partial or wrong DICOM TLS configuration stops `pacs serve` with a message that says
/// what is wrong and what to do.
#[test]
fn tls_configuration_errors_are_explained() {
    let pki = pki();
    let s = |p: &Path| p.display().to_string();
    let fails = |archive: TestArchive, needles: &[&str]| {
        let out = archive.pacs(&[
            "serve",
            "--dicom-port",
            "0",
            "--http-port",
            "0",
            "--dicom-bind",
            "127.0.0.1",
        ]);
        let err = stderr(&out);
        assert!(!out.status.success(), "started: {err}");
        for n in needles {
            assert!(err.contains(n), "no {n:?} in:\n{err}");
        }
        assert!(!err.contains("PRIVATE KEY"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    fails(
        TestArchive::new(Backend::SqliteFiles).with_env("PACS_DICOM_TLS_PORT", "0"),
        &["dicom_tls_cert", "dicom_tls_key", "unset dicom_tls_port"],
    );
    fails(
        TestArchive::new(Backend::SqliteFiles)
            .with_env("PACS_DICOM_TLS_CERT", &s(&pki.server_cert))
            .with_env("PACS_DICOM_TLS_KEY", &s(&pki.server_key)),
        &["dicom_tls_port is not", "set dicom_tls_port"],
    );
    fails(
        tls_archive(&pki).with_env("PACS_DICOM_TLS_KEY", &s(&pki.client_key)),
        &["do not go together"],
    );
    fails(
        tls_archive(&pki).with_env("PACS_DICOM_TLS_CLIENT_CA", &s(&pki.server_key)),
        &["holds no certificate"],
    );
    fails(
        tls_archive(&pki).with_env("PACS_DICOM_TLS_CERT", "/nonexistent/cert.pem"),
        &["/nonexistent/cert.pem"],
    );
}
