//! HTTP authentication against the real binary: login and the session cookie, CSRF on
//! logout, bearer tokens of a service account on /metrics, token revocation, HTTP Basic
//! under /dicom-web, throttling, malformed Authorization headers, body limits, the audit
//! trail of logins and logouts — and no password, token, cookie or CSRF token in any log
//! or command output.

use std::process::Command;
use std::time::Duration;

use crate::http::*;
use crate::support::*;

const RAD_PW: &str = "radiologist http passphrase 7001";
const DOC_PW: &str = "township doctor http passphrase 7002";
const GONE_PW: &str = "disabled clinician passphrase 7003";
const WRONG_PW: &str = "not the right passphrase 7004";

#[test]
fn http_authentication() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    archive.add_clinic("Auth Clinic", "AUTH_US", None);
    let mut t = Transcript::default();
    let add =
        |t: &mut Transcript, name: &str, role: &str, clinic: Option<&str>, pw: Option<&str>| {
            let mut args = vec!["user", "add", "--username", name, "--role", role];
            if let Some(c) = clinic {
                args.extend(["--clinic", c]);
            }
            if pw.is_some() {
                args.push("--password-stdin");
            }
            t.run_ok(&archive, &args, pw);
        };
    add(&mut t, "rad", "radiologist", None, Some(RAD_PW));
    add(
        &mut t,
        "doc",
        "township-doctor",
        Some("Auth Clinic"),
        Some(DOC_PW),
    );
    add(
        &mut t,
        "gone",
        "clinician",
        Some("Auth Clinic"),
        Some(GONE_PW),
    );
    add(&mut t, "scraper", "service", None, None);
    t.run_ok(&archive, &["user", "disable", "gone"], None);
    let created = t.run_ok(
        &archive,
        &[
            "user",
            "token",
            "create",
            "scraper",
            "--label",
            "prometheus",
        ],
        None,
    );
    let token = created
        .lines()
        .find(|l| l.starts_with("pacs_"))
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    let token_id = created
        .split_whitespace()
        .skip_while(|w| *w != "token")
        .nth(1)
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {token}");

    let mut server = archive.start();
    let port = server.http_port;

    // Without credentials: only /healthz and the login; everything else 401, whether the
    // route exists or not.
    get(port, "/healthz", &[]).expect(200, "healthz");
    for (method, path) in [
        ("GET", "/api/me"),
        ("GET", "/metrics"),
        ("GET", "/no/such/route"),
        ("GET", "/api/login"),
        ("POST", "/api/logout"),
        ("GET", "/dicom-web/"),
    ] {
        let r = request(port, method, path, &[], None);
        r.expect(401, path);
        assert_eq!(r.error(), "authentication required", "{path}");
        let challenges = r.headers("www-authenticate").join(", ");
        assert!(challenges.contains("Bearer"), "{path}: {}", r.head);
        assert_eq!(
            challenges.contains("Basic"),
            path.starts_with("/dicom-web"),
            "{path}: {}",
            r.head
        );
    }

    // Wrong password and unknown user: the same answer.
    for (user, pw) in [("rad", WRONG_PW), ("nobody", RAD_PW)] {
        let r = login(port, user, pw);
        r.expect(401, user);
        assert_eq!(r.error(), "wrong username or password");
        assert!(r.headers("set-cookie").is_empty());
    }
    // A disabled account, with its right password.
    let r = login(port, "gone", GONE_PW);
    r.expect(403, "disabled");
    assert_eq!(r.error(), "account disabled");

    // Login: the cookie and the CSRF token.
    let r = login(port, "RAD", RAD_PW);
    r.expect(200, "login");
    let v = r.json();
    assert_eq!(v["username"], "rad");
    assert_eq!(v["role"], "radiologist");
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'), "{v}");
    let csrf = v["csrf_token"].as_str().unwrap().to_owned();
    let set_cookie = r.headers("set-cookie")[0].clone();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attr), "{attr} in {set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "Secure over plain HTTP: {set_cookie}"
    );
    let session = session_of(&r);
    let cookie = format!("pacs_session={session}");
    let with_cookie = [("Cookie", cookie.as_str())];

    let r = get(port, "/api/me", &with_cookie);
    r.expect(200, "me");
    let me = r.json();
    assert_eq!(
        (me["username"].as_str(), me["role"].as_str()),
        (Some("rad"), Some("radiologist"))
    );
    assert_eq!(me["authenticated_by"], "session");
    assert_eq!(me["csrf_token"].as_str(), Some(csrf.as_str()));
    get(port, "/no/such/route", &with_cookie).expect(404, "unknown route, logged in");

    // Forged cookies.
    for forged in [
        "pacs_session=0000000000000000000000000000000000000000000000000000000000000000",
        "pacs_session=x",
        "pacs_session=",
        "other=1",
    ] {
        get(port, "/api/me", &[("Cookie", forged)]).expect(401, forged);
    }

    // Logout needs the CSRF token.
    let r = request(port, "POST", "/api/logout", &with_cookie, None);
    r.expect(403, "logout without CSRF");
    assert!(
        r.error().starts_with("CSRF token missing or wrong"),
        "{}",
        r.error()
    );
    let r = request(
        port,
        "POST",
        "/api/logout",
        &[("Cookie", &cookie), ("X-CSRF-Token", &"0".repeat(64))],
        None,
    );
    r.expect(403, "logout with a wrong CSRF token");
    get(port, "/api/me", &with_cookie).expect(200, "still logged in");
    let r = request(
        port,
        "POST",
        "/api/logout",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        None,
    );
    r.expect(200, "logout");
    assert!(
        r.headers("set-cookie")[0].contains("Max-Age=0"),
        "{}",
        r.head
    );
    let r = get(port, "/api/me", &with_cookie);
    r.expect(401, "after logout");
    assert_eq!(r.error(), "invalid credentials");

    // Bearer token of a service account: /metrics, no CSRF needed.
    let with_token = [("Authorization", bearer.as_str())];
    let r = get(port, "/metrics", &with_token);
    r.expect(200, "metrics with a token");
    assert!(
        r.headers("content-type")[0].starts_with("text/plain"),
        "{}",
        r.head
    );
    let r = get(port, "/api/me", &with_token);
    r.expect(200, "me with a token");
    assert_eq!(
        (r.json()["username"].as_str(), r.json()["role"].as_str()),
        (Some("scraper"), Some("service"))
    );
    get(port, "/no/such/route", &with_token).expect(404, "unknown route, token");
    request(port, "POST", "/api/logout", &with_token, None).expect(200, "POST with a token");
    let forged = format!("Bearer pacs_{}", "0".repeat(64));
    get(port, "/metrics", &[("Authorization", &forged)]).expect(401, "forged token");
    get(port, "/metrics", &[("Authorization", "Digest abc")]).expect(401, "other scheme");

    // HTTP Basic: under /dicom-web only.
    let basic = format!("Basic {}", base64(format!("rad:{RAD_PW}").as_bytes()));
    let r = get(port, "/dicom-web/", &[("Authorization", &basic)]);
    r.expect(200, "basic under /dicom-web");
    assert_eq!(r.json()["username"], "rad");
    get(port, "/api/me", &[("Authorization", &basic)]).expect(401, "basic elsewhere");
    let wrong = format!("Basic {}", base64(format!("rad:{WRONG_PW}").as_bytes()));
    let r = get(port, "/dicom-web/", &[("Authorization", &wrong)]);
    r.expect(401, "basic, wrong password");
    assert!(
        r.headers("www-authenticate").join(",").contains("Basic"),
        "{}",
        r.head
    );

    // Malformed Authorization headers: 400 with a reason, and the server stays up.
    let long = format!("Bearer {}", "a".repeat(9000));
    let no_colon = format!("Basic {}", base64(b"rad"));
    let latin1 = format!("Basic {}", base64(b"r\xe9d:x"));
    for (path, value, reason) in [
        ("/api/me", "pacs_abcdef", "scheme"),
        ("/api/me", "Bearer", "scheme"),
        ("/api/me", "Bearer a b", "bearer token"),
        ("/api/me", long.as_str(), "too long"),
        ("/dicom-web/", "Basic !!!not-base64", "base64"),
        ("/dicom-web/", no_colon.as_str(), "':'"),
        ("/dicom-web/", latin1.as_str(), "UTF-8"),
    ] {
        let r = get(port, path, &[("Authorization", value)]);
        r.expect(400, &value[..value.len().min(40)]);
        assert!(r.error().contains(reason), "{reason}: {}", r.body);
    }
    let mut raw = b"GET /api/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer \xff\xfe\r\n\r\n".to_vec();
    let r = send_raw(port, &raw);
    r.expect(400, "non-UTF-8");
    assert!(r.error().contains("UTF-8"), "{}", r.body);
    raw = b"GET /api/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n".to_vec();
    send_raw(port, &raw).expect(400, "two Authorization headers");
    get(port, "/healthz", &[]).expect(200, "healthz after bad input");
    assert!(server.is_running());

    // Login bodies: too large, not JSON, wrong type.
    let huge = format!(
        "{{\"username\":\"rad\",\"password\":\"{}\"}}",
        "p".repeat(20 * 1024)
    );
    let r = request(port, "POST", "/api/login", &[], Some(&huge));
    r.expect(413, "huge login body");
    assert!(r.error().contains("too large"), "{}", r.body);
    request(port, "POST", "/api/login", &[], Some("{\"username\":")).expect(400, "bad JSON");
    request(
        port,
        "POST",
        "/api/login",
        &[("Content-Type", "text/plain")],
        Some("{}"),
    )
    .expect(415, "not JSON");

    // The revoked token is refused.
    t.run_ok(&archive, &["user", "token", "revoke", &token_id], None);
    let r = get(port, "/metrics", &with_token);
    r.expect(401, "revoked token");
    assert_eq!(r.error(), "invalid credentials");

    // Throttling: five wrong passwords, then even the right one waits.
    for i in 0..5 {
        login(port, "doc", WRONG_PW).expect(401, &format!("wrong password {i}"));
    }
    let r = login(port, "doc", DOC_PW);
    r.expect(429, "throttled");
    let retry: u64 = r.headers("retry-after")[0].parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");

    // The audit trail: successes, failures (with the reason kind) and the logout.
    let out = t.run_ok(
        &archive,
        &["audit", "search", "--event", "110114", "--json"],
        None,
    );
    let events: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let has = |user: &str, ty: i64, outcome: i64, why: Option<&str>| {
        events.iter().any(|e| {
            e["user"] == user
                && e["event_type"] == ty
                && e["outcome"] == outcome
                && e["source_ip"] == "127.0.0.1"
                && why.is_none_or(|w| {
                    e["outcome_description"]
                        .as_str()
                        .is_some_and(|d| d.contains(w))
                })
        })
    };
    assert!(has("rad", 110122, 0, None), "login success: {out}");
    assert!(
        has("rad", 110122, 4, Some("wrong username or password")),
        "{out}"
    );
    assert!(
        has("nobody", 110122, 4, Some("wrong username or password")),
        "{out}"
    );
    assert!(has("gone", 110122, 4, Some("account disabled")), "{out}");
    assert!(has("doc", 110122, 4, Some("throttled")), "{out}");
    assert!(has("rad", 110123, 0, None), "logout: {out}");
    // Credentials presented and refused: forged cookies and tokens, a revoked token,
    // malformed headers, Basic outside /dicom-web.
    assert!(
        has("unknown", 110122, 4, Some("401 invalid credentials")),
        "{out}"
    );
    assert!(has("unknown", 110122, 4, Some("400 malformed")), "{out}");
    assert!(
        has(
            "unknown",
            110122,
            4,
            Some("401 unsupported authentication scheme")
        ),
        "{out}"
    );
    assert!(
        has("unknown", 110122, 4, Some("accepted only under /dicom-web")),
        "{out}"
    );
    assert!(
        events.iter().any(|e| e["detail"] == "session cookie"),
        "{out}"
    );
    assert!(events.iter().any(|e| e["detail"] == "API token"), "{out}");

    // No password, token, cookie or CSRF token in the server's log or any command output
    // (the token only where it was created).
    let log_path = server.log_path.clone();
    server.stop();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("INFO"),
        "an empty server log proves nothing:\n{log}"
    );
    let secrets: [&str; 7] = [
        RAD_PW,
        DOC_PW,
        GONE_PW,
        WRONG_PW,
        &token[5..],
        &session,
        &csrf,
    ];
    for s in secrets {
        assert!(
            !log.contains(s),
            "the server log contains a secret ({})",
            &s[..6]
        );
        for (cmd, text) in &t.0 {
            if cmd.starts_with("user token create") && s == &token[5..] {
                continue;
            }
            assert!(
                !text.contains(s),
                "`pacs {cmd}` printed a secret ({})",
                &s[..6]
            );
        }
    }
}

/// Over HTTPS the session cookie is `Secure`, and the audit trail has the client's address
/// (the TLS listener passes it on too).
#[test]
fn https_login_sets_a_secure_cookie() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let mut openssl = Command::new("openssl");
    openssl
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=pacs test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    let out = run_bounded(openssl, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_HTTP_TLS_CERT", cert.to_str().unwrap())
        .with_env("PACS_HTTP_TLS_KEY", key.to_str().unwrap());
    let mut t = Transcript::default();
    t.run_ok(
        &archive,
        &[
            "user",
            "add",
            "--username",
            "rad",
            "--role",
            "radiologist",
            "--password-stdin",
        ],
        Some(RAD_PW),
    );
    let server = archive.start();
    // The password goes to curl in a file, not on its command line.
    let body = certs.path().join("login.json");
    std::fs::write(
        &body,
        serde_json::json!({ "username": "rad", "password": RAD_PW }).to_string(),
    )
    .unwrap();
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-i", "--max-time", "10", "--cacert"])
        .arg(&cert)
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(format!("https://127.0.0.1:{}/api/login", server.http_port));
    let out = run_bounded(curl, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("HTTP/") && text.contains(" 200"), "{text}");
    let set_cookie = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{text}"));
    for attr in [
        "pacs_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Secure",
    ] {
        assert!(set_cookie.contains(attr), "{attr} in {set_cookie}");
    }
    drop(server);
    let out = t.run_ok(
        &archive,
        &["audit", "search", "--event", "110114", "--json"],
        None,
    );
    let events: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["user"] == "rad" && e["outcome"] == 0 && e["source_ip"] == "127.0.0.1"),
        "{out}"
    );
}

/// `pacs serve --demo` (the README's first command) creates the demo users once, keeps their
/// passwords in a file only the owner can read, and they can log in; a second start reuses
/// them.
#[test]
fn demo_users_can_log_in() {
    use std::os::unix::fs::PermissionsExt;
    let archive = TestArchive::new(Backend::SqliteFiles);
    let server = archive.start_with(&["--demo"]);
    let creds_path = archive.data_dir().join("demo-credentials.txt");
    let creds = std::fs::read_to_string(&creds_path).expect("demo credentials written");
    let mode = std::fs::metadata(&creds_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "demo credentials readable by the owner only");
    let users: Vec<(&str, &str)> = creds.lines().filter_map(|l| l.split_once(' ')).collect();
    let names: Vec<&str> = users.iter().map(|(u, _)| *u).collect();
    assert_eq!(names, ["demo-admin", "demo-radiologist", "demo-clinician"]);
    for (user, password) in &users {
        let r = login(server.http_port, user, password);
        assert_eq!(r.status, 200, "{user}: {}", r.body);
    }
    assert_eq!(
        login(server.http_port, "demo-admin", "not-the-password").status,
        401
    );
    drop(server);

    let server = archive.start_with(&["--demo"]);
    assert_eq!(
        std::fs::read_to_string(&creds_path).unwrap(),
        creds,
        "same users, same passwords"
    );
    let (user, password) = users[0];
    assert_eq!(login(server.http_port, user, password).status, 200);
    let list = archive.pacs_ok(&["user", "list"]);
    assert_eq!(list.matches("demo-admin").count(), 1, "{list}");
}

/// Sessions end after `session_idle_seconds` without a request, and after
/// `session_lifetime_seconds` whatever the activity; the cookie's Max-Age says the lifetime.
#[test]
fn sessions_expire_when_idle_and_at_their_lifetime() {
    let archive = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_SESSION_IDLE_SECONDS", "2")
        .with_env("PACS_SESSION_LIFETIME_SECONDS", "5");
    archive.add_clinic("Tamu Clinic", "TAMU_US", None);
    let mut t = Transcript::default();
    t.run_ok(
        &archive,
        &[
            "user",
            "add",
            "--username",
            "rad",
            "--role",
            "radiologist",
            "--password-stdin",
        ],
        Some(RAD_PW),
    );
    let server = archive.start();
    let port = server.http_port;

    // Idle: nothing for 3 s > 2 s.
    let r = login(port, "rad", RAD_PW);
    r.expect(200, "login");
    assert!(
        r.headers("set-cookie")[0].contains("Max-Age=5;"),
        "{}",
        r.head
    );
    let idle = format!("pacs_session={}", session_of(&r));
    get(port, "/api/me", &[("Cookie", &idle)]).expect(200, "fresh session");
    std::thread::sleep(Duration::from_millis(3200));
    let r = get(port, "/api/me", &[("Cookie", &idle)]);
    r.expect(401, "idle session");
    assert_eq!(r.error(), "the credentials have expired; log in again");

    // Lifetime: a request every second keeps it from idling, yet it ends after 5 s.
    let r = login(port, "rad", RAD_PW);
    let busy = format!("pacs_session={}", session_of(&r));
    let started = std::time::Instant::now();
    let mut last_ok = Duration::ZERO;
    loop {
        let r = get(port, "/api/me", &[("Cookie", &busy)]);
        if r.status != 200 {
            r.expect(401, "expired busy session");
            assert_eq!(r.error(), "the credentials have expired; log in again");
            break;
        }
        last_ok = started.elapsed();
        assert!(
            last_ok < Duration::from_secs(8),
            "the session outlived its lifetime"
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    assert!(
        last_ok >= Duration::from_secs(3),
        "ended early: {last_ok:?}"
    );

    drop(server);

    // A lifetime shorter than the idle time is a configuration error, said at start.
    let mut serve = Command::new(pacs_bin());
    serve
        .args(["serve", "--http-port", "0", "--dicom-port", "0"])
        .envs(archive.env())
        .env("PACS_SESSION_IDLE_SECONDS", "600")
        .env("PACS_SESSION_LIFETIME_SECONDS", "60");
    let out = run_bounded(serve, Duration::from_secs(60));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("session_idle_seconds (600) is longer than session_lifetime_seconds (60)"),
        "{err}"
    );
}
