//! Forwarding of the audit trail to a real syslog server: rsyslog (Debian's, with its
//! GnuTLS driver) listening for RFC 5425 syslog over TLS with certificates made here by
//! the openssl command line. Every audit entry arrives once, in order, as an RFC 5424
//! message carrying a DICOM Audit Message; an outage of the server loses nothing and a
//! clean restart of `pacs` re-sends nothing; a server whose certificate is not from the
//! configured CA gets nothing, and the archive keeps serving.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const PASSWORD: &str = "syslog-e2e-Pa55word-2718";

// ---------------------------------------------------------------------------------------
// Certificates

fn openssl(args: &[&str], dir: &Path) {
    let mut c = Command::new("openssl");
    c.args(args).current_dir(dir).stdin(Stdio::null());
    let out = run_bounded(c, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `NAME.pem`/`NAME.key` in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
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
    dir.join(format!("{name}.pem"))
}

/// A certificate `NAME.pem`/`NAME.key` for 127.0.0.1 signed by the CA `ca`, usable by a
/// TLS server and client alike. Returns (certificate, key).
fn make_leaf(dir: &Path, ca: &str, name: &str) -> (PathBuf, PathBuf) {
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
        dir,
    );
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

// ---------------------------------------------------------------------------------------
// rsyslog

/// rsyslogd in the foreground with its own configuration: TLS syslog on 127.0.0.1:`port`,
/// every message appended to `received` in RFC 5424 form. Killed on drop.
struct Rsyslog {
    child: Option<Child>,
    conf: PathBuf,
    dir: PathBuf,
    port: u16,
    received: PathBuf,
}

impl Rsyslog {
    /// `auth_mode`: `x509/certvalid` (the client must present a certificate of the CA) or
    /// `anon`.
    fn start(dir: &Path, port: u16, ca: &Path, cert: &Path, key: &Path, auth_mode: &str) -> Self {
        assert!(
            Path::new(RSYSLOGD).is_file(),
            "{RSYSLOGD} is not installed: run scripts/test.sh, which installs rsyslog and \
             rsyslog-gnutls"
        );
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let received = dir.join("received.log");
        let conf = dir.join("rsyslog.conf");
        // No imuxsock or imklog: nothing touches /dev/log or the kernel log. The message
        // size limit is raised from 8 KiB (a message lists up to 100 instance UIDs).
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}" maxMessageSize="64k"
       defaultNetstreamDriver="gtls"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="{auth_mode}")
input(type="imtcp" port="{port}" address="127.0.0.1")
action(type="omfile" file="{received}" template="RSYSLOG_SyslogProtocol23Format")
"#,
                work = work.display(),
                ca = ca.display(),
                cert = cert.display(),
                key = key.display(),
                received = received.display(),
            ),
        )
        .unwrap();
        let mut check = Command::new(RSYSLOGD);
        check.arg("-N1").arg("-f").arg(&conf).stdin(Stdio::null());
        let out = run_bounded(check, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "rsyslogd -N1 refuses the configuration:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut r = Rsyslog {
            child: None,
            conf,
            dir: dir.to_owned(),
            port,
            received,
        };
        r.run();
        r
    }

    fn run(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.out"))
            .unwrap();
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn rsyslogd");
        self.child = Some(child);
        let port = self.port;
        let listening = wait_for(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        assert!(
            listening.is_some(),
            "rsyslogd did not listen on {port}:\n{}",
            self.output()
        );
    }

    /// SIGTERM, then wait (bounded) for it to exit.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("rsyslogd runs");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rsyslogd did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("rsyslogd.out")).unwrap_or_default()
    }

    /// The messages received so far.
    fn messages(&self) -> Vec<Message> {
        std::fs::read_to_string(&self.received)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(Message::parse)
            .collect()
    }

    /// Waits until entry `id` has arrived; returns what arrived.
    fn wait_for_entry(&self, id: i64, server: &Server) -> Vec<Message> {
        wait_for(Duration::from_secs(120), || {
            let m = self.messages();
            m.iter().any(|m| m.entry_id == id).then_some(m)
        })
        .unwrap_or_else(|| {
            panic!(
                "audit entry {id} did not reach rsyslog; received:\n{:#?}\npacs log:\n{}\nrsyslogd:\n{}",
                self.messages().iter().map(|m| m.entry_id).collect::<Vec<_>>(),
                server.log(),
                self.output()
            )
        })
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One received line: `<PRI>VERSION TIMESTAMP HOSTNAME APP PROCID MSGID SD MSG`.
#[derive(Debug, Clone)]
struct Message {
    pri: u16,
    version: String,
    app: String,
    procid: String,
    msgid: String,
    xml: String,
    event_id: i64,
    entry_id: i64,
    hash: String,
}

impl Message {
    fn parse(line: &str) -> Message {
        let fields: Vec<&str> = line.splitn(8, ' ').collect();
        assert_eq!(fields.len(), 8, "not an RFC 5424 line: {line}");
        let (pri, version) = fields[0]
            .strip_prefix('<')
            .and_then(|p| p.split_once('>'))
            .unwrap_or_else(|| panic!("no PRI: {line}"));
        let msg = fields[7];
        let xml = &msg[msg
            .find("<?xml")
            .unwrap_or_else(|| panic!("no XML: {line}"))..];
        assert!(
            msg.starts_with('\u{FEFF}'),
            "MSG does not start with the BOM: {line}"
        );
        let after = |needle: &str| -> &str {
            let i = xml
                .find(needle)
                .unwrap_or_else(|| panic!("no {needle} in {xml}"));
            &xml[i + needle.len()..]
        };
        let event_id = after(r#"<EventID csd-code=""#)
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mut corr = after("[pacs audit entry ")
            .split(']')
            .next()
            .unwrap()
            .split(' ');
        let entry_id = corr.next().unwrap().parse().unwrap();
        assert_eq!(corr.next(), Some("sha256"));
        let hash = corr.next().unwrap().to_owned();
        Message {
            pri: pri.parse().unwrap(),
            version: version.to_owned(),
            app: fields[3].to_owned(),
            procid: fields[4].to_owned(),
            msgid: fields[5].to_owned(),
            xml: xml.trim_end().to_owned(),
            event_id,
            entry_id,
            hash,
        }
    }
}

/// The whole audit trail of `archive`, read directly (an audit search would itself be
/// audited).
fn trail(archive: &TestArchive) -> Vec<pacs_store::audit::AuditRecord> {
    runtime().block_on(async {
        let a = archive.open().await;
        let all = a.index().audit_entries_after(0, 10_000).await.unwrap();
        a.index().close().await;
        all
    })
}

/// Every message is its entry of the trail (PRI by outcome, header fields, event code,
/// hash), and the ids run 1, 2, … without gap or repetition.
fn assert_all_delivered_once(archive: &TestArchive, messages: &[Message]) {
    let trail = trail(archive);
    let ids: Vec<i64> = messages.iter().map(|m| m.entry_id).collect();
    assert_eq!(
        ids,
        (1..=trail.len() as i64).collect::<Vec<_>>(),
        "each audit entry exactly once, in order"
    );
    for (m, r) in messages.iter().zip(&trail) {
        let severity = if r.outcome == 0 { 5 } else { 4 };
        assert_eq!(m.pri, 10 * 8 + severity, "authpriv, by outcome: {m:?}");
        assert_eq!(m.version, "1");
        assert_eq!(m.app, "pacs");
        assert!(m.procid.parse::<u32>().is_ok(), "{m:?}");
        assert_eq!(m.msgid, "IHE+RFC-3881");
        assert_eq!(m.event_id, r.event_id);
        assert_eq!(m.hash, r.hash, "entry {}", r.id);
        assert!(
            m.xml
                .starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><AuditMessage>"#)
        );
        assert!(m.xml.ends_with("</AuditMessage>"), "{}", m.xml);
        assert!(
            m.xml
                .contains(&format!(r#"EventOutcomeIndicator="{}""#, r.outcome)),
            "{}",
            m.xml
        );
        assert!(
            m.xml
                .contains(r#"<AuditSourceIdentification AuditSourceID="REGIONAL_PACS">"#)
        );
    }
}

/// Every message parses as XML (Python's parser, independent of ours).
fn assert_well_formed(received: &Path) {
    let mut c = Command::new("python3");
    c.arg("-c")
        .arg(
            "import sys, xml.dom.minidom\n\
             n = 0\n\
             for line in open(sys.argv[1], encoding='utf-8'):\n\
             \x20   if line.strip():\n\
             \x20       xml.dom.minidom.parseString(line[line.index('<?xml'):].strip().encode('utf-8'))\n\
             \x20       n += 1\n\
             print(n)\n",
        )
        .arg(received)
        .stdin(Stdio::null());
    let out = run_bounded(c, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "a forwarded message is not well-formed XML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    ca: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::Builder::new()
        .prefix("pacs-syslog-")
        .tempdir()
        .unwrap();
    let path = dir.path().to_owned();
    let ca = make_ca(&path, "region-ca");
    Setup {
        _dir: dir,
        dir: path,
        ca,
    }
}

fn forwarding_archive(s: &Setup, port: u16, client: Option<(&Path, &Path)>) -> TestArchive {
    let mut a = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_AUDIT_SYSLOG", &format!("127.0.0.1:{port}"))
        .with_env("PACS_AUDIT_SYSLOG_CA", s.ca.to_str().unwrap());
    if let Some((cert, key)) = client {
        a = a
            .with_env("PACS_AUDIT_SYSLOG_CLIENT_CERT", cert.to_str().unwrap())
            .with_env("PACS_AUDIT_SYSLOG_CLIENT_KEY", key.to_str().unwrap());
    }
    a
}

// ---------------------------------------------------------------------------------------

/// (a) Audited actions of every kind reach rsyslog (which requires this node's client
/// certificate), each entry once and in order; (b) with rsyslog down, the archive goes on
/// and the entries wait; when it is back the backlog arrives; a clean restart of `pacs`
/// sends only what is new.
#[test]
fn the_audit_trail_reaches_rsyslog_in_order_and_survives_an_outage() {
    let s = setup();
    let (server_cert, server_key) = make_leaf(&s.dir, "region-ca", "syslog-server");
    let (client_cert, client_key) = make_leaf(&s.dir, "region-ca", "pacs-node");
    let port = free_port();
    let mut rsyslog = Rsyslog::start(
        &s.dir,
        port,
        &s.ca,
        &server_cert,
        &server_key,
        "x509/certvalid",
    );
    let archive = forwarding_archive(&s, port, Some((&client_cert, &client_key)));
    archive.add_clinic("Syslog Clinic", "SYSLOG_SCU", None);
    let out = archive.pacs_with_stdin(
        &[
            "user",
            "add",
            "--username",
            "auditor",
            "--role",
            "admin",
            "--password-stdin",
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = archive.start();

    // (a) A failed and a successful login, an import (patient and study).
    let failed = crate::http::login(server.http_port, "auditor", "not-the-password");
    assert_eq!(failed.status, 401);
    let ok = crate::http::login(server.http_port, "auditor", PASSWORD);
    assert_eq!(ok.status, 200, "{}", ok.body);
    let sample = &sample_files()[0];
    archive.pacs_ok(&[
        "import",
        "--quiet",
        "--clinic",
        "Syslog Clinic",
        sample.to_str().unwrap(),
    ]);
    let last = trail(&archive).last().unwrap().id;
    let messages = rsyslog.wait_for_entry(last, &server);
    assert_all_delivered_once(&archive, &messages);
    let events: Vec<i64> = messages.iter().map(|m| m.event_id).collect();
    for code in [110113, 110100, 110114, 110107] {
        assert!(events.contains(&code), "no {code} in {events:?}");
    }
    let logins: Vec<&Message> = messages.iter().filter(|m| m.event_id == 110114).collect();
    assert_eq!(
        logins.iter().map(|m| m.pri).collect::<Vec<_>>(),
        [84, 85],
        "a failed login is a warning, a successful one a notice"
    );
    assert!(
        logins[0]
            .xml
            .contains(r#"<EventTypeCode csd-code="110122""#)
    );
    assert!(logins[0].xml.contains(r#"UserID="auditor""#));
    assert!(
        logins[0]
            .xml
            .contains(r#"NetworkAccessPointID="127.0.0.1" NetworkAccessPointTypeCode="2""#)
    );
    let import = messages.iter().find(|m| m.event_id == 110107).unwrap();
    let record = trail(&archive)
        .into_iter()
        .find(|r| r.id == import.entry_id)
        .unwrap();
    assert!(import.xml.contains(&format!(
        r#"ParticipantObjectID="{}^^^{}" ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1""#,
        record.patient_id.as_deref().unwrap(),
        record.patient_issuer.as_deref().unwrap()
    )), "{}", import.xml);
    assert!(import.xml.contains(&format!(
        r#"ParticipantObjectID="{}" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3"><ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" originalText="Study Instance UID"/><SOPClass NumberOfInstances="1"><Instance UID="{}"/>"#,
        record.study_instance_uid.as_deref().unwrap(),
        sop_instance_uid(sample)
    )), "{}", import.xml);
    for m in &messages {
        assert!(!m.xml.contains(PASSWORD));
    }
    // The metrics say so too (read by the administrator; not audited).
    let session = crate::http::session_of(&ok);
    note_secret(&session);
    let cookie = format!("pacs_session={session}");
    let metrics = wait_for(Duration::from_secs(20), || {
        let r = crate::http::get(server.http_port, "/metrics", &[("Cookie", &cookie)]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
            .contains("pacs_audit_forward_backlog 0")
            .then_some(r.body)
    })
    .expect("the backlog gauge falls to 0");
    let forwarded: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pacs_audit_forwarded_total "))
        .expect("pacs_audit_forwarded_total")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(forwarded, last as u64, "{metrics}");

    // (b) rsyslog goes away: the archive keeps working and the entries wait.
    rsyslog.stop();
    let before = rsyslog.messages().len();
    archive.add_clinic("Outage Clinic", "OUTAGE_SCU", None);
    assert_eq!(
        crate::http::login(server.http_port, "auditor", "wrong-again").status,
        401
    );
    archive.add_clinic("Outage Clinic 2", "OUTAGE_SCU2", None);
    let noticed = wait_for(Duration::from_secs(30), || {
        server
            .log()
            .contains("audit trail forwarding interrupted")
            .then_some(())
    });
    assert!(
        noticed.is_some(),
        "no warning about the lost server:\n{}",
        server.log()
    );
    assert_eq!(server.http_get("/healthz").0, 200);
    assert_eq!(rsyslog.messages().len(), before);
    // Back on the same port: the backlog arrives, nothing lost, nothing twice.
    rsyslog.run();
    let last = trail(&archive).last().unwrap().id;
    let messages = rsyslog.wait_for_entry(last, &server);
    assert_all_delivered_once(&archive, &messages);

    // A clean restart: the stop event goes out at shutdown, then only the new start event.
    assert!(server.stop().success());
    let stop_id = trail(&archive).last().unwrap().id;
    let server = archive.start();
    let start_id = stop_id + 1;
    let messages = rsyslog.wait_for_entry(start_id, &server);
    // Whatever else arrives in the next poll or two must be new, too.
    std::thread::sleep(Duration::from_secs(3));
    let messages = if rsyslog.messages().len() > messages.len() {
        rsyslog.messages()
    } else {
        messages
    };
    assert_all_delivered_once(&archive, &messages);
    assert_well_formed(&rsyslog.received);
    assert!(server.stop().success());
    let cursor = runtime().block_on(async {
        let a = archive.open().await;
        let c = a
            .index()
            .forward_cursor(&format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        a.index().close().await;
        c
    });
    assert_eq!(
        cursor,
        trail(&archive).last().unwrap().id,
        "the stop event went out too"
    );
}

/// (c) A syslog server whose certificate comes from another CA gets nothing: `pacs` names
/// the TLS verification failure in a warning, keeps the entries, and keeps serving.
#[test]
fn an_untrusted_syslog_server_gets_nothing() {
    let s = setup();
    make_ca(&s.dir, "rogue-ca");
    let (rogue_cert, rogue_key) = make_leaf(&s.dir, "rogue-ca", "rogue-server");
    let rogue_ca = s.dir.join("rogue-ca.pem");
    let port = free_port();
    let rsyslog = Rsyslog::start(&s.dir, port, &rogue_ca, &rogue_cert, &rogue_key, "anon");
    let archive = forwarding_archive(&s, port, None);
    let server = archive.start();
    let warned = wait_for(Duration::from_secs(30), || {
        let log = server.log();
        (log.contains("WARN") && log.contains("TLS certificate verification failed")).then_some(())
    });
    assert!(warned.is_some(), "no TLS warning:\n{}", server.log());
    let log = server.log();
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    // Still serving and auditing; nothing reaches the untrusted server.
    assert_eq!(server.http_get("/healthz").0, 200);
    archive.add_clinic("Rogue Test Clinic", "ROGUE_SCU", None);
    std::thread::sleep(Duration::from_secs(3));
    assert!(rsyslog.messages().is_empty(), "{:?}", rsyslog.messages());
    assert!(trail(&archive).len() >= 2);
    assert!(server.stop().success());
}

/// A syslog server that requires a client certificate refuses a node without one: nothing
/// is lost in the refusal (TLS 1.3 tells the client after its handshake ended), the warning
/// says what to configure, and with the certificate everything arrives.
#[test]
fn a_client_certificate_is_presented_when_the_server_requires_one() {
    let s = setup();
    let (server_cert, server_key) = make_leaf(&s.dir, "region-ca", "syslog-server");
    let (client_cert, client_key) = make_leaf(&s.dir, "region-ca", "pacs-node");
    let port = free_port();
    let rsyslog = Rsyslog::start(
        &s.dir,
        port,
        &s.ca,
        &server_cert,
        &server_key,
        "x509/certvalid",
    );
    let without = forwarding_archive(&s, port, None);
    let server = without.start();
    let warned = wait_for(Duration::from_secs(30), || {
        server
            .log()
            .contains("set audit_syslog_client_cert and audit_syslog_client_key")
            .then_some(())
    });
    assert!(warned.is_some(), "{}", server.log());
    assert!(server.stop().success());
    assert!(rsyslog.messages().is_empty());
    // The same archive with a certificate: its whole trail, the refused attempts' time
    // included, arrives.
    let with = without
        .with_env(
            "PACS_AUDIT_SYSLOG_CLIENT_CERT",
            client_cert.to_str().unwrap(),
        )
        .with_env("PACS_AUDIT_SYSLOG_CLIENT_KEY", client_key.to_str().unwrap());
    let server = with.start();
    let last = trail(&with).last().unwrap().id;
    let messages = rsyslog.wait_for_entry(last, &server);
    assert_all_delivered_once(&with, &messages);
    assert!(server.stop().success());
}

/// Misconfigurations stop `pacs serve` at once, saying what is wrong and what to do.
#[test]
fn forwarding_settings_are_checked_at_start() {
    let s = setup();
    let serve = |archive: &TestArchive| {
        let out = archive.pacs(&["serve", "--dicom-port", "0", "--http-port", "0"]);
        assert!(!out.status.success(), "pacs serve started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let no_ca =
        TestArchive::new(Backend::SqliteFiles).with_env("PACS_AUDIT_SYSLOG", "127.0.0.1:6514");
    assert!(serve(&no_ca).contains("audit_syslog needs audit_syslog_ca"));
    let stray = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_AUDIT_SYSLOG_CA", s.ca.to_str().unwrap());
    assert!(serve(&stray).contains("audit_syslog_ca is set but audit_syslog is not"));
    let bad = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_AUDIT_SYSLOG", "syslog.example")
        .with_env("PACS_AUDIT_SYSLOG_CA", s.ca.to_str().unwrap());
    assert!(serve(&bad).contains("expected HOST:PORT"));
    let half = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_AUDIT_SYSLOG", "127.0.0.1:6514")
        .with_env("PACS_AUDIT_SYSLOG_CA", s.ca.to_str().unwrap())
        .with_env("PACS_AUDIT_SYSLOG_CLIENT_CERT", s.ca.to_str().unwrap());
    assert!(
        serve(&half).contains("needs both audit_syslog_client_cert and audit_syslog_client_key")
    );
    let missing = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_AUDIT_SYSLOG", "127.0.0.1:6514")
        .with_env("PACS_AUDIT_SYSLOG_CA", "/nonexistent/ca.pem");
    let err = serve(&missing);
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}
