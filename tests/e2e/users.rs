//! `pacs user …` against the real binary: every role, validation errors, disable/enable,
//! password reset, API tokens; passwords only through standard input and never printed,
//! a token's secret printed once. The credentials made by the command line are then
//! checked in-process through pacs-store (login, token, session), on both backends.

use std::net::IpAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use pacs_store::users::{AuthFailure, Role, SessionTtl};

use crate::per_backend;
use crate::support::*;

const ADMIN_PW: &str = "admin passphrase 0001";
const RAD_PW: &str = "radiologist passphrase 0002";
const DOC_PW: &str = "township doctor passphrase 0003";
const NURSE_PW: &str = "clinician passphrase 0004";
const NEW_DOC_PW: &str = "a brand new doctor passphrase 0005";
const PASSWORDS: [&str; 5] = [ADMIN_PW, RAD_PW, DOC_PW, NURSE_PW, NEW_DOC_PW];

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `pacs ARGS` (with `stdin`), records it, and asserts success.
fn ok(archive: &TestArchive, t: &mut Transcript, args: &[&str], stdin: Option<&str>) -> String {
    t.run_ok(archive, args, stdin)
}

/// Runs `pacs ARGS` (with `stdin`), records it, and asserts failure; returns stderr.
fn fails(archive: &TestArchive, t: &mut Transcript, args: &[&str], stdin: Option<&str>) -> String {
    let out = t.run(archive, args, stdin);
    assert!(
        !out.status.success(),
        "pacs {args:?} should have failed:\n{}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("pacs: error:"),
        "no error message for {args:?}:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn users_json(archive: &TestArchive, t: &mut Transcript) -> Vec<serde_json::Value> {
    let out = ok(archive, t, &["user", "list", "--json"], None);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn find<'a>(users: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    users
        .iter()
        .find(|u| u["username"] == name)
        .unwrap_or_else(|| panic!("{name} in {users:?}"))
}

/// The secret line of `pacs user token create` output.
fn secret_of(create_output: &str) -> String {
    let secrets: Vec<&str> = create_output
        .lines()
        .filter(|l| l.starts_with("pacs_"))
        .collect();
    assert_eq!(secrets.len(), 1, "{create_output}");
    assert!(
        create_output.contains("will not be shown again"),
        "{create_output}"
    );
    secrets[0].to_owned()
}

/// The id in "created token N for …".
fn token_id_of(create_output: &str) -> String {
    create_output
        .split_whitespace()
        .skip_while(|w| *w != "token")
        .nth(1)
        .unwrap_or_else(|| panic!("{create_output}"))
        .to_owned()
}

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

#[test]
fn user_commands_for_every_role() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    let mut t = Transcript::default();
    archive.add_clinic("Tamu Clinic", "TAMU_US", None);
    archive.add_clinic("Kalay Clinic", "KALAY_CR", None);

    // Every role, with a clinic where the role has one.
    let out = ok(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "Root",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(ADMIN_PW),
    );
    assert!(out.contains("created user root"), "{out}");
    ok(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "rad",
            "--role",
            "radiologist",
            "--subspecialty",
            "neuro",
            "--subspecialty",
            "Chest",
            "--password-stdin",
        ],
        Some(RAD_PW),
    );
    ok(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "doc",
            "--role",
            "township-doctor",
            "--clinic",
            "Tamu Clinic",
            "--password-stdin",
        ],
        Some(DOC_PW),
    );
    ok(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "nurse",
            "--role",
            "clinician",
            "--clinic",
            "Kalay Clinic",
            "--password-stdin",
        ],
        Some(NURSE_PW),
    );
    // A service account without a password: API tokens only.
    let out = ok(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "bridge",
            "--role",
            "service",
            "--clinic",
            "Tamu Clinic",
        ],
        None,
    );
    assert!(out.contains("API tokens only"), "{out}");

    // Listing: every user, role and clinic, no hash.
    let list = ok(&archive, &mut t, &["user", "list"], None);
    for expected in [
        "root",
        "rad",
        "doc",
        "nurse",
        "bridge",
        "township-doctor",
        "clinician",
        "radiologist",
        "service",
        "admin",
        "Tamu Clinic",
        "Kalay Clinic",
        "chest,neuro",
        "enabled",
    ] {
        assert!(list.contains(expected), "{expected} in\n{list}");
    }
    let users = users_json(&archive, &mut t);
    assert_eq!(users.len(), 5);
    assert_eq!(find(&users, "doc")["role"], "township-doctor");
    assert_eq!(find(&users, "doc")["clinic_name"], "Tamu Clinic");
    assert_eq!(find(&users, "nurse")["clinic_name"], "Kalay Clinic");
    assert_eq!(find(&users, "rad")["clinic_name"], serde_json::Value::Null);
    assert_eq!(
        find(&users, "rad")["subspecialties"],
        serde_json::json!(["chest", "neuro"])
    );
    assert_eq!(find(&users, "bridge")["has_password"], false);
    assert_eq!(find(&users, "root")["disabled"], false);
    for u in &users {
        for key in u.as_object().unwrap().keys() {
            assert!(
                !key.contains("hash") && !key.contains("password_h"),
                "{key}"
            );
        }
    }
    for (_, output) in &t.0 {
        assert!(!output.contains("argon2"), "{output}");
    }

    // Role, clinic, username and password validation.
    let e = fails(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "x1",
            "--role",
            "township-doctor",
            "--password-stdin",
        ],
        Some(DOC_PW),
    );
    assert!(e.contains("exactly one clinic"), "{e}");
    let e = fails(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "x2",
            "--role",
            "admin",
            "--clinic",
            "Tamu Clinic",
            "--password-stdin",
        ],
        Some(ADMIN_PW),
    );
    assert!(e.contains("has no clinic"), "{e}");
    let e = fails(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "x3",
            "--role",
            "clinician",
            "--clinic",
            "Nowhere Clinic",
            "--password-stdin",
        ],
        Some(NURSE_PW),
    );
    assert!(
        e.contains("Nowhere Clinic") && e.contains("pacs clinic list"),
        "{e}"
    );
    let e = fails(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "x4",
            "--role",
            "clinician",
            "--clinic",
            "Tamu Clinic",
            "--subspecialty",
            "neuro",
            "--password-stdin",
        ],
        Some(NURSE_PW),
    );
    assert!(e.contains("subspecialties are for radiologists"), "{e}");
    let e = fails(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "x5",
            "--role",
            "boss",
            "--password-stdin",
        ],
        Some(ADMIN_PW),
    );
    assert!(
        e.contains("unknown role") && e.contains("township-doctor"),
        "{e}"
    );
    for bad in ["a b", ".hidden", "dr/who", &"u".repeat(65)] {
        let e = fails(
            &archive,
            &mut t,
            &[
                "user",
                "add",
                "--username",
                bad,
                "--role",
                "admin",
                "--password-stdin",
            ],
            Some(ADMIN_PW),
        );
        assert!(e.contains("username"), "{e}");
    }
    let e = fails(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "DOC",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(ADMIN_PW),
    );
    assert!(e.contains("already exists"), "{e}");
    let e = fails(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "x6",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("too short"),
    );
    assert!(e.contains("too short"), "{e}");
    let e = fails(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "x7",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("              "),
    );
    assert!(e.contains("whitespace"), "{e}");
    let e = fails(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "x8",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(""),
    );
    assert!(e.contains("no password"), "{e}");
    let e = fails(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "x9",
            "--role",
            "clinician",
            "--clinic",
            "Tamu Clinic",
        ],
        None,
    );
    assert!(e.contains("--password-stdin"), "{e}");
    assert_eq!(users_json(&archive, &mut t).len(), 5, "nothing was added");

    // Disable and enable.
    let out = ok(&archive, &mut t, &["user", "disable", "doc"], None);
    assert!(out.contains("disabled"), "{out}");
    assert_eq!(find(&users_json(&archive, &mut t), "doc")["disabled"], true);
    assert!(ok(&archive, &mut t, &["user", "list"], None).contains("disabled"));
    ok(&archive, &mut t, &["user", "enable", "doc"], None);
    assert_eq!(
        find(&users_json(&archive, &mut t), "doc")["disabled"],
        false
    );
    let e = fails(&archive, &mut t, &["user", "disable", "ghost"], None);
    assert!(
        e.contains("no user ghost") && e.contains("pacs user list"),
        "{e}"
    );

    // Password reset: the new password logs in, the old one no longer does.
    ok(
        &archive,
        &mut t,
        &["user", "reset-password", "doc", "--password-stdin"],
        Some(NEW_DOC_PW),
    );
    let e = fails(
        &archive,
        &mut t,
        &["user", "reset-password", "ghost", "--password-stdin"],
        Some(NEW_DOC_PW),
    );
    assert!(e.contains("no user ghost"), "{e}");
    let e = fails(
        &archive,
        &mut t,
        &["user", "reset-password", "doc", "--password-stdin"],
        Some("short"),
    );
    assert!(e.contains("too short"), "{e}");

    // Tokens: created (secret shown once), listed without it, revoked.
    let created = ok(
        &archive,
        &mut t,
        &[
            "user",
            "token",
            "create",
            "bridge",
            "--label",
            "CT bridge",
            "--ttl-days",
            "30",
        ],
        None,
    );
    let secret = secret_of(&created);
    let id = token_id_of(&created);
    assert!(created.contains("expires"), "{created}");
    let forever = ok(&archive, &mut t, &["user", "token", "create", "rad"], None);
    let rad_secret = secret_of(&forever);
    assert!(forever.contains("valid until revoked"), "{forever}");
    let listed = ok(&archive, &mut t, &["user", "token", "list", "bridge"], None);
    assert!(
        listed.contains("CT bridge") && listed.contains("active") && listed.contains(&id),
        "{listed}"
    );
    let listed = ok(
        &archive,
        &mut t,
        &["user", "token", "list", "bridge", "--json"],
        None,
    );
    let tokens: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(tokens[0]["label"], "CT bridge");
    assert!(tokens[0]["expires_at"].is_i64());

    runtime().block_on(async {
        let a = archive.open().await;
        let index = a.index();
        let p = index.verify_token(&secret).await.unwrap();
        assert_eq!((p.username.as_str(), p.role), ("bridge", Role::Service));
        assert_eq!(p.clinic_name.as_deref(), Some("Tamu Clinic"));
        assert_eq!(
            index.verify_token(&rad_secret).await.unwrap().role,
            Role::Radiologist
        );
        let p = index
            .authenticate("doc", NEW_DOC_PW, localhost())
            .await
            .unwrap();
        assert_eq!(p.role, Role::TownshipDoctor);
        assert!(matches!(
            index.authenticate("doc", DOC_PW, localhost()).await,
            Err(AuthFailure::BadCredentials)
        ));
        assert!(
            index
                .authenticate("nurse", NURSE_PW, localhost())
                .await
                .is_ok()
        );
        index.close().await;
    });

    let out = ok(&archive, &mut t, &["user", "token", "revoke", &id], None);
    assert!(out.contains("revoked"), "{out}");
    let listed = ok(&archive, &mut t, &["user", "token", "list", "bridge"], None);
    assert!(listed.contains("revoked"), "{listed}");
    let e = fails(&archive, &mut t, &["user", "token", "revoke", "9999"], None);
    assert!(e.contains("no token 9999"), "{e}");
    fails(&archive, &mut t, &["user", "token", "revoke", "abc"], None);
    let e = fails(&archive, &mut t, &["user", "token", "list", "ghost"], None);
    assert!(e.contains("no user ghost"), "{e}");
    let e = fails(
        &archive,
        &mut t,
        &["user", "token", "create", "ghost"],
        None,
    );
    assert!(e.contains("no user ghost"), "{e}");
    runtime().block_on(async {
        let a = archive.open().await;
        assert!(matches!(
            a.index().verify_token(&secret).await,
            Err(AuthFailure::BadCredentials)
        ));
        a.index().close().await;
    });

    // Nothing printed a password; each secret only where it was created.
    for pw in PASSWORDS {
        assert_eq!(t.commands_printing(pw), Vec::<&str>::new(), "{pw}");
    }
    assert_eq!(
        t.commands_printing(&secret[5..]),
        ["user token create bridge --label CT bridge --ttl-days 30"]
    );
    assert_eq!(
        t.commands_printing(&rad_secret[5..]),
        ["user token create rad"]
    );
}

#[test]
fn huge_password_on_stdin_is_refused_fast() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    let huge = "Aa1!".repeat(512 * 1024); // 2 MiB, no line end
    for args in [
        &[
            "user",
            "add",
            "--username",
            "big",
            "--role",
            "admin",
            "--password-stdin",
        ][..],
        &["user", "reset-password", "big", "--password-stdin"][..],
    ] {
        let started = Instant::now();
        let out = archive.pacs_with_stdin(args, huge.as_bytes());
        let took = started.elapsed();
        let all = text(&out);
        assert!(!out.status.success(), "{args:?} accepted a 2 MiB password");
        assert!(took < Duration::from_secs(2), "{args:?} took {took:?}");
        assert!(
            all.contains("too long") && all.contains("1024 bytes"),
            "{all}"
        );
        assert!(!all.contains(&huge[..64]), "the password was printed");
        assert!(!all.contains("panicked"), "{all}");
    }
    let list = archive.pacs_ok(&["user", "list", "--json"]);
    assert_eq!(list.trim(), "[]");
}

/// The command line's users and tokens work on both backends, and so do logins (with
/// throttling) and sessions, whose SQL differs per database.
fn users_and_tokens(backend: Backend) {
    let archive = TestArchive::new(backend);
    let mut t = Transcript::default();
    archive.add_clinic("Tamu Clinic", "TAMU_US", None);
    ok(
        &archive,
        &mut t,
        &[
            "user",
            "add",
            "--username",
            "doc",
            "--role",
            "township-doctor",
            "--clinic",
            "Tamu Clinic",
            "--password-stdin",
        ],
        Some(DOC_PW),
    );
    ok(
        &archive,
        &mut t,
        &["user", "add", "--username", "bridge", "--role", "service"],
        None,
    );
    let created = ok(
        &archive,
        &mut t,
        &["user", "token", "create", "bridge", "--label", "router"],
        None,
    );
    let secret = secret_of(&created);
    let users = users_json(&archive, &mut t);
    assert_eq!(users.len(), 2);
    assert_eq!(find(&users, "doc")["clinic_name"], "Tamu Clinic");
    let listed = ok(&archive, &mut t, &["user", "token", "list", "bridge"], None);
    assert!(
        listed.contains("router") && listed.contains("active"),
        "{listed}"
    );

    runtime().block_on(async {
        let a = archive.open().await;
        let index = a.index();
        assert_eq!(
            index.verify_token(&secret).await.unwrap().username.as_str(),
            "bridge"
        );
        let doc = index
            .authenticate("doc", DOC_PW, localhost())
            .await
            .unwrap();
        assert_eq!(doc.clinic_name.as_deref(), Some("Tamu Clinic"));

        let session = index
            .create_session(doc.user_id, SessionTtl::default())
            .await
            .unwrap();
        let (p, csrf) = index.session_principal(&session.secret).await.unwrap();
        assert_eq!((p.user_id, csrf), (doc.user_id, session.csrf_token.clone()));
        index.revoke_session(&session.secret).await.unwrap();
        assert!(matches!(
            index.session_principal(&session.secret).await,
            Err(AuthFailure::BadCredentials)
        ));

        // Five failures lock the username, even for the right password.
        let from: IpAddr = "192.0.2.10".parse().unwrap();
        for _ in 0..5 {
            assert!(matches!(
                index.authenticate("doc", "not the password", from).await,
                Err(AuthFailure::BadCredentials)
            ));
        }
        match index.authenticate("doc", DOC_PW, from).await {
            Err(AuthFailure::Throttled { retry_after_secs }) => {
                assert!((1..=30).contains(&retry_after_secs), "{retry_after_secs}")
            }
            other => panic!("expected throttling, got {other:?}"),
        }
        index.close().await;
    });

    ok(&archive, &mut t, &["user", "disable", "bridge"], None);
    runtime().block_on(async {
        let a = archive.open().await;
        assert!(matches!(
            a.index().verify_token(&secret).await,
            Err(AuthFailure::Disabled)
        ));
        a.index().close().await;
    });
    assert_eq!(t.commands_printing(DOC_PW), Vec::<&str>::new());
    assert_eq!(t.commands_printing(&secret[5..]).len(), 1);
}

per_backend!(users_and_tokens);
