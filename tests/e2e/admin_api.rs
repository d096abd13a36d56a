//! The admin API as the web admin pages will use it: users, passwords and tokens created,
//! used, disabled and revoked over HTTP, bad bodies refused with reasons, every change in the
//! audit trail — and the OpenAPI document that describes it all.

use crate::http::*;
use crate::support::*;

const ADMIN_PW: &str = "administrator passphrase 5150";
const NEW_PW: &str = "a fresh clinician passphrase 5151";
const RESET_PW: &str = "the reset clinician passphrase 5152";

#[test]
fn admin_api_manages_users_and_tokens() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    archive.add_clinic("Lake Clinic", "LAKE_US", None);
    let mut t = Transcript::default();
    t.run_ok(
        &archive,
        &[
            "user",
            "add",
            "--username",
            "chief",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(ADMIN_PW),
    );
    let server = archive.start();
    let port = server.http_port;

    // The administrator works from a browser session: state changes need the CSRF token.
    let login_body = serde_json::json!({ "username": "chief", "password": ADMIN_PW }).to_string();
    let r = request(port, "POST", "/api/login", &[], Some(&login_body));
    r.expect(200, "admin login");
    let cookie = r.headers("set-cookie")[0]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
    let h = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let no_csrf = [("Cookie", cookie.as_str())];

    let new_user = serde_json::json!({
        "username": "Lake.Nurse",
        "role": "clinician",
        "clinic": "Lake Clinic",
        "password": NEW_PW,
    })
    .to_string();
    let r = request(port, "POST", "/api/admin/users", &no_csrf, Some(&new_user));
    r.expect(403, "create without the CSRF token");
    let r = request(port, "POST", "/api/admin/users", &h, Some(&new_user));
    r.expect(201, "create a clinician");
    assert_eq!(r.json()["username"], "lake.nurse");
    assert_eq!(r.json()["clinic_name"], "Lake Clinic");
    assert!(r.json().get("password_hash").is_none(), "{}", r.body);
    request(port, "POST", "/api/admin/users", &h, Some(&new_user)).expect(409, "create twice");

    // Refusals say why, and nothing is created.
    for (body, status, reason) in [
        (
            r#"{"username": "x", "role": "overlord", "password": "long enough passphrase"}"#,
            422,
            "",
        ),
        (
            r#"{"username": "nurse2", "role": "clinician", "password": "long enough passphrase"}"#,
            400,
            "belongs to exactly one clinic",
        ),
        (
            r#"{"username": "nurse3", "role": "clinician", "clinic": "Lake Clinic", "password": "short"}"#,
            400,
            "at least",
        ),
        (
            r#"{"username": "nurse4", "role": "clinician", "clinic": "Nowhere", "password": "long enough passphrase"}"#,
            404,
            "",
        ),
        (
            r#"{"username": "-rf", "role": "admin", "password": "long enough passphrase"}"#,
            400,
            "must not start with",
        ),
        (
            r#"{"username": "nurse5", "role": "admin", "password": "long enough passphrase", "is_root": true}"#,
            422,
            "",
        ),
        (r#"{"username": "#, 400, "malformed JSON"),
    ] {
        let r = request(port, "POST", "/api/admin/users", &h, Some(body));
        r.expect(status, body);
        assert!(r.error().contains(reason), "{body}: {}", r.error());
    }
    let long = format!(
        r#"{{"username": "{}", "role": "admin", "password": "long enough passphrase"}}"#,
        "a".repeat(5000)
    );
    let r = request(port, "POST", "/api/admin/users", &h, Some(&long));
    r.expect(400, "over-long username");
    assert!(r.error().contains("1–64"), "{}", r.error());
    let users = get(port, "/api/admin/users", &h).json();
    assert_eq!(users.as_array().unwrap().len(), 2, "{users}");

    // The new clinician logs in; the administrator disables them (sessions end), enables
    // them, and resets their password (the old one stops working).
    let nurse_login =
        serde_json::json!({ "username": "lake.nurse", "password": NEW_PW }).to_string();
    let r = request(port, "POST", "/api/login", &[], Some(&nurse_login));
    r.expect(200, "nurse login");
    let nurse_cookie = r.headers("set-cookie")[0]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let nurse = [("Cookie", nurse_cookie.as_str())];
    get(port, "/api/me", &nurse).expect(200, "nurse session");
    let r = request(
        port,
        "POST",
        "/api/admin/users/lake.nurse/disable",
        &h,
        None,
    );
    r.expect(200, "disable");
    assert_eq!(r.json()["disabled"], true);
    get(port, "/api/me", &nurse).expect(401, "session ended by disabling");
    request(port, "POST", "/api/login", &[], Some(&nurse_login)).expect(403, "disabled login");
    request(port, "POST", "/api/admin/users/chief/disable", &h, None)
        .expect(400, "disable oneself");
    request(port, "POST", "/api/admin/users/lake.nurse/enable", &h, None).expect(200, "enable");
    let reset = serde_json::json!({ "password": RESET_PW }).to_string();
    request(
        port,
        "PUT",
        "/api/admin/users/lake.nurse/password",
        &h,
        Some(&reset),
    )
    .expect(204, "reset password");
    request(port, "POST", "/api/login", &[], Some(&nurse_login)).expect(401, "old password");
    let new_login =
        serde_json::json!({ "username": "lake.nurse", "password": RESET_PW }).to_string();
    request(port, "POST", "/api/login", &[], Some(&new_login)).expect(200, "new password");
    request(
        port,
        "PUT",
        "/api/admin/users/nobody/password",
        &h,
        Some(&reset),
    )
    .expect(404, "reset an unknown user");

    // Tokens: the secret is in the creation answer only, works at once, and stops working
    // when revoked.
    let service = r#"{"username": "lake-gateway", "role": "service", "clinic": "Lake Clinic"}"#;
    request(port, "POST", "/api/admin/users", &h, Some(service)).expect(201, "service account");
    let r = request(
        port,
        "POST",
        "/api/admin/users/lake-gateway/tokens",
        &h,
        Some(r#"{"label": "report push", "expires_in_days": 30}"#),
    );
    r.expect(201, "create a token");
    assert_eq!(r.headers("cache-control"), ["no-store"]);
    let secret = r.json()["token"].as_str().unwrap().to_owned();
    let id = r.json()["id"].as_i64().unwrap();
    assert!(
        secret.starts_with("pacs_") && secret.len() == 69,
        "{secret}"
    );
    let bearer = format!("Bearer {secret}");
    let gw = [("Authorization", bearer.as_str())];
    let me = get(port, "/api/me", &gw);
    me.expect(200, "token works");
    assert_eq!(me.json()["username"], "lake-gateway");
    let listed = get(port, "/api/admin/users/lake-gateway/tokens", &h);
    listed.expect(200, "list tokens");
    assert!(
        !listed.body.contains(&secret[5..]),
        "a listing shows a secret"
    );
    assert_eq!(listed.json()[0]["label"], "report push");
    request(
        port,
        "POST",
        "/api/admin/users/lake-gateway/tokens",
        &h,
        Some(r#"{"label": "forever", "expires_in_days": 0}"#),
    )
    .expect(400, "zero-day token");
    request(port, "DELETE", &format!("/api/admin/tokens/{id}"), &h, None).expect(204, "revoke");
    get(port, "/api/me", &gw).expect(401, "revoked token");
    request(port, "DELETE", "/api/admin/tokens/999999", &h, None).expect(404, "unknown token");
    request(port, "DELETE", "/api/admin/tokens/abc", &h, None).expect(400, "bad token id");

    // Clinics and AE titles: what the admin API registers is what the DICOM port admits.
    let r = request(
        port,
        "POST",
        "/api/admin/clinics",
        &h,
        Some(r#"{"name": "Hill Clinic"}"#),
    );
    r.expect(201, "create a clinic");
    assert_eq!(r.json()["name"], "Hill Clinic");
    request(
        port,
        "POST",
        "/api/admin/clinics",
        &h,
        Some(r#"{"name": "Hill Clinic"}"#),
    )
    .expect(409, "the same clinic twice");
    request(
        port,
        "POST",
        "/api/admin/clinics",
        &h,
        Some(r#"{"name": ""}"#),
    )
    .expect(400, "an empty clinic name");
    let dicom = server.dicom_port;
    assert!(!echoscu(dicom, "HILL_CR", "REGIONAL_PACS").status.success());
    let r = request(
        port,
        "POST",
        "/api/admin/clinics/Hill%20Clinic/ae-titles",
        &h,
        Some(r#"{"ae_title": "HILL_CR", "host": "127.0.0.1"}"#),
    );
    r.expect(201, "register an AE title");
    assert_eq!(
        (r.json()["clinic_name"].as_str(), r.json()["host"].as_str()),
        (Some("Hill Clinic"), Some("127.0.0.1"))
    );
    assert!(
        echoscu(dicom, "HILL_CR", "REGIONAL_PACS").status.success(),
        "registered over the API, admitted over DICOM"
    );
    for (path, body, status) in [
        (
            "/api/admin/clinics/Hill%20Clinic/ae-titles",
            r#"{"ae_title": "HILL_CR"}"#,
            409,
        ),
        (
            "/api/admin/clinics/No%20Such%20Clinic/ae-titles",
            r#"{"ae_title": "NEW_AE"}"#,
            404,
        ),
        (
            "/api/admin/clinics/Hill%20Clinic/ae-titles",
            r#"{"ae_title": "BACK\\SLASH"}"#,
            400,
        ),
        (
            "/api/admin/clinics/Hill%20Clinic/ae-titles",
            r#"{"ae_title": "WAY_TOO_LONG_AE_TITLE"}"#,
            400,
        ),
        (
            "/api/admin/clinics/Hill%20Clinic/ae-titles",
            r#"{"ae_title": "HOSTLESS", "host": "not an address"}"#,
            422,
        ),
    ] {
        request(port, "POST", path, &h, Some(body)).expect(status, body);
    }
    // TLS only: the plain port refuses it from now on.
    let r = request(
        port,
        "PUT",
        "/api/admin/ae-titles/HILL_CR",
        &h,
        Some(r#"{"host": "127.0.0.1", "tls_only": true}"#),
    );
    r.expect(200, "update an AE title");
    assert_eq!(r.json()["tls_only"], true);
    assert!(!echoscu(dicom, "HILL_CR", "REGIONAL_PACS").status.success());
    let clinics = get(port, "/api/admin/clinics", &h).json();
    let hill = clinics
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Hill Clinic")
        .unwrap();
    assert_eq!(hill["ae_titles"][0]["tls_only"], true, "{clinics}");
    request(port, "DELETE", "/api/admin/ae-titles/HILL_CR", &h, None).expect(204, "remove");
    request(port, "DELETE", "/api/admin/ae-titles/HILL_CR", &h, None).expect(404, "twice");
    request(
        port,
        "PUT",
        "/api/admin/ae-titles/NOBODY",
        &h,
        Some(r#"{"tls_only": true}"#),
    )
    .expect(404, "update an unknown AE title");

    // Every change is in the audit trail, by the administrator from their address, without
    // any secret; the trail still verifies.
    let trail = get(
        port,
        "/api/admin/audit?user=chief&event=110113&limit=1000",
        &h,
    );
    trail.expect(200, "audit search");
    let details: Vec<String> = trail
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["source_ip"], "127.0.0.1", "{e}");
            format!("{} {}", e["outcome"], e["detail"].as_str().unwrap_or(""))
        })
        .collect();
    for expected in [
        "0 HTTP admin API: create user lake.nurse as clinician of clinic \"Lake Clinic\", password set",
        "4 HTTP admin API: create user lake.nurse as clinician",
        "0 HTTP admin API: disable user lake.nurse",
        "0 HTTP admin API: enable user lake.nurse",
        "0 HTTP admin API: reset the password of lake.nurse",
        "4 HTTP admin API: reset the password of nobody",
        "0 HTTP admin API: create API token",
        "0 HTTP admin API: revoke API token",
        "4 HTTP admin API: revoke API token 999999",
        "0 HTTP admin API: create clinic \"Hill Clinic\"",
        "4 HTTP admin API: create clinic \"Hill Clinic\"",
        "0 HTTP admin API: register AE title HILL_CR for clinic \"Hill Clinic\"",
        "4 HTTP admin API: register AE title HILL_CR",
        "0 HTTP admin API: change AE title HILL_CR",
        "0 HTTP admin API: remove AE title HILL_CR",
        "4 HTTP admin API: remove AE title HILL_CR",
    ] {
        assert!(
            details.iter().any(|d| d.starts_with(expected)),
            "no {expected:?} in {details:#?}"
        );
    }
    for secret_text in [NEW_PW, RESET_PW, &secret[5..]] {
        assert!(
            !trail.body.contains(secret_text),
            "a secret in the audit trail"
        );
    }
    // Searching the trail is itself recorded.
    let used = get(port, "/api/admin/audit?event=110101", &h).json();
    assert!(!used.as_array().unwrap().is_empty(), "{used}");
    let r = get(port, "/api/admin/audit?event=42", &h);
    r.expect(400, "unknown event id");
    assert!(r.error().contains("110100"), "{}", r.error());
    get(port, "/api/admin/audit?since=yesterday", &h).expect(400, "bad time");
    get(port, "/api/admin/audit?colour=red", &h).expect(400, "unknown parameter");
    let verify = archive.pacs(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");

    // The OpenAPI document describes these routes.
    let doc = get(port, "/api/openapi.json", &h);
    doc.expect(200, "openapi");
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for path in [
        "/api/login",
        "/api/studies",
        "/api/studies/{study_instance_uid}",
        "/api/admin/users",
        "/api/admin/users/{username}/tokens",
        "/api/admin/tokens/{id}",
        "/api/admin/studies/{study_instance_uid}/assignments",
        "/api/admin/audit",
        "/api/admin/clinics",
        "/api/admin/clinics/{name}/ae-titles",
        "/api/admin/ae-titles/{ae_title}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} not documented");
    }
    assert!(doc["components"]["schemas"].get("User").is_some());
    assert!(doc["components"]["securitySchemes"].get("bearer").is_some());

    // No secret in the server's log or in what the commands printed.
    let log = server.log();
    for secret_text in [ADMIN_PW, NEW_PW, RESET_PW, &secret[5..], &csrf] {
        assert!(!log.contains(secret_text), "a secret in the server log");
        assert!(t.commands_printing(secret_text).is_empty());
    }
}

/// The dashboard is for administrators: 401 without credentials, 403 for anyone else
/// (audited as a refusal), 400 with a reason for bad parameters; its numbers come from the
/// archive (here: the studies imported today). The audit search pages and filters by study.
#[test]
fn dashboard_is_for_administrators_only() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    archive.add_clinic("Lake Clinic", "LAKE_US", None);
    for (user, role) in [("chief", "admin"), ("reader", "radiologist")] {
        let out = archive.pacs_with_stdin(
            &[
                "user",
                "add",
                "--username",
                user,
                "--role",
                role,
                "--password-stdin",
            ],
            format!("{ADMIN_PW}\n").as_bytes(),
        );
        assert!(out.status.success(), "{out:?}");
    }
    let ct = sample_dir().join("ct_01.dcm");
    archive.pacs_ok(&[
        "import",
        "--quiet",
        "--clinic",
        "Lake Clinic",
        &ct.display().to_string(),
    ]);
    let server = archive.start();
    let port = server.http_port;

    let r = get(port, "/api/admin/dashboard", &[]);
    r.expect(401, "no credentials");
    let cookie = |user: &str| format!("pacs_session={}", session_of(&login(port, user, ADMIN_PW)));
    let reader = cookie("reader");
    let r = get(port, "/api/admin/dashboard", &[("Cookie", reader.as_str())]);
    r.expect(403, "a radiologist");
    let chief = cookie("chief");
    let h = [("Cookie", chief.as_str())];
    for bad in ["0", "367", "-1", "week", "1.5", ""] {
        let r = get(port, &format!("/api/admin/dashboard?days={bad}"), &h);
        r.expect(400, bad);
        assert!(r.error().contains("days must be"), "{bad}: {}", r.error());
    }
    get(port, "/api/admin/dashboard?weeks=2", &h).expect(400, "unknown parameter");

    let r = get(port, "/api/admin/dashboard?days=7", &h);
    r.expect(200, "dashboard");
    assert_eq!(r.headers("cache-control"), ["no-store"]);
    let d = r.json();
    assert_eq!(d["days"], 7);
    assert_eq!(d["day_labels"].as_array().unwrap().len(), 7);
    let lake = d["studies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clinic"] == "Lake Clinic")
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(lake["counts"][6], 1, "imported today: {d}");
    assert_eq!(lake["total"], 1);
    let priorities: Vec<&str> = d["backlog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["priority"].as_str().unwrap())
        .collect();
    assert_eq!(priorities, ["stat", "urgent", "routine"]);
    assert_eq!(d["turnaround"].as_array().unwrap().len(), 3);
    assert!(
        d["overdue"].is_i64() && d["discrepancies"].is_array(),
        "{d}"
    );

    // The radiologist's refusal is in the audit trail.
    let refused = get(port, "/api/admin/audit?user=reader&event=110113", &h).json();
    assert!(
        refused
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == 4),
        "{refused}"
    );

    // Audit search by study, and paging with `before`.
    let (study, _) = crate::viewer::uids("ct_01.dcm");
    let all = get(port, &format!("/api/admin/audit?study={study}"), &h).json();
    let all = all.as_array().unwrap();
    assert!(!all.is_empty());
    assert!(
        all.iter()
            .all(|e| e["study_instance_uid"] == study.as_str())
    );
    let page1 = get(port, "/api/admin/audit?limit=2", &h).json();
    let first = page1[0]["id"].as_i64().unwrap();
    let page2 = get(
        port,
        &format!("/api/admin/audit?limit=2&before={first}"),
        &h,
    )
    .json();
    let page2 = page2.as_array().unwrap();
    assert_eq!(page2.len(), 2);
    assert!(page2.iter().all(|e| e["id"].as_i64().unwrap() < first));
    get(port, "/api/admin/audit?study=not-a-uid", &h).expect(400, "bad study");
    get(port, "/api/admin/audit?before=0", &h).expect(400, "bad before");

    let doc = get(port, "/api/openapi.json", &h).json();
    assert!(doc["paths"].get("/api/admin/dashboard").is_some());
    assert!(doc["components"]["schemas"].get("Dashboard").is_some());
}
