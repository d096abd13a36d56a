//! HTTPS with a certificate the test makes, checked by a real client (curl).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// A self-signed certificate for 127.0.0.1 (openssl, as an operator would make one).
fn self_signed(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = run_bounded(
        {
            let mut c = Command::new("openssl");
            c.args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args([
                "-days",
                "2",
                "-subj",
                "/CN=pacs test",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert);
            c
        },
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

fn curl(args: &[&str]) -> std::process::Output {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "10"]).args(args);
    run_bounded(c, Duration::from_secs(20))
}

#[test]
fn https_serves_with_the_configured_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let archive = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_HTTP_TLS_CERT", &cert)
        .with_env("PACS_HTTP_TLS_KEY", &key);
    let server = archive.start();
    let url = format!("https://127.0.0.1:{}/healthz", server.http_port);

    // A client that stalls mid-handshake must not block anyone else.
    let _stalled = std::net::TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();

    // The certificate verifies against itself as the trust anchor, for 127.0.0.1.
    let out = curl(&["-i", "--cacert", &cert, &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("HTTP/"), "{text}");
    assert!(text.contains(" 200"), "{text}");
    assert!(text.contains("\"status\":\"ok\""), "{text}");
    let lower = text.to_ascii_lowercase();
    for h in [
        "content-security-policy:",
        "x-content-type-options: nosniff",
        "x-frame-options:",
        "referrer-policy:",
    ] {
        assert!(lower.contains(h), "missing {h}: {text}");
    }
    // Without the trust anchor the client refuses it (it is self-signed), and plain HTTP to
    // the TLS port gets no HTTP answer.
    assert!(!curl(&[&url]).status.success());
    let plain = curl(&[
        "-i",
        &format!("http://127.0.0.1:{}/healthz", server.http_port),
    ]);
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("200"),
        "plain HTTP answered on the TLS port"
    );
    drop(server);

    // A key that does not belong to the certificate: the server refuses to start, saying why.
    let other = tempfile::tempdir().unwrap();
    let (_, other_key) = self_signed(other.path());
    let bad = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_HTTP_TLS_CERT", &cert)
        .with_env("PACS_HTTP_TLS_KEY", &other_key);
    let out = bad.pacs(&["serve", "--dicom-port", "0", "--http-port", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("do not go together"), "{err}");
}
