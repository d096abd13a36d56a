//! The live feed (`GET /api/events`, websocket) with a real websocket client: each user
//! gets the events of what they may see — the sending clinic its study's, the radiologist
//! their task's, another clinic nothing — in order; a client that reconnects with the last
//! id it got receives what it missed, once; cross-site and unauthenticated upgrades are
//! refused. An open connection is closed (code 4401, with the reason) when its session is
//! logged out, its user disabled or its token revoked — and only that connection's.

use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::http::{login, request, session_of};
use crate::per_backend;
use crate::support::*;
use crate::worklist::{PASSWORD, create_users, post, worklist_of};

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(
    port: u16,
    token: Option<&str>,
    after: Option<i64>,
    origin: Option<&str>,
) -> Result<Ws, WsError> {
    connect_with(port, token.map(|t| ("Authorization", t)), after, origin).await
}

/// Connects with one credential header (`Authorization` or `Cookie`).
async fn connect_with(
    port: u16,
    credential: Option<(&'static str, &str)>,
    after: Option<i64>,
    origin: Option<&str>,
) -> Result<Ws, WsError> {
    let url = match after {
        Some(a) => format!("ws://127.0.0.1:{port}/api/events?after={a}"),
        None => format!("ws://127.0.0.1:{port}/api/events"),
    };
    let mut req = url.into_client_request().unwrap();
    if let Some((name, value)) = credential {
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The next event within `wait`, if any.
pub(crate) async fn next_event(ws: &mut Ws, wait: Duration) -> Option<serde_json::Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Events until one of `kind` arrives (inclusive), or panics after `wait`.
pub(crate) async fn until(ws: &mut Ws, kind: &str, wait: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(e) = next_event(ws, left).await else {
            break;
        };
        let done = e["kind"] == kind;
        seen.push(e);
        if done {
            return seen;
        }
    }
    panic!("no {kind} event within {wait:?}; got {seen:?}");
}

/// The close frame the server sends within `wait` (events before it are skipped): its code
/// and reason. Panics if the connection is still open after `wait`, or ends without one.
async fn closed(ws: &mut Ws, wait: Duration) -> (u16, String) {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => return (f.code.into(), f.reason.to_string()),
            Ok(Some(Ok(Message::Close(None)))) => panic!("closed without a code"),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => panic!("connection failed instead of closing: {e}"),
            Ok(None) => panic!("connection ended without a close frame"),
            Err(_) => panic!("still open after {wait:?}"),
        }
    }
}

/// Whether the connection is still open: a ping is answered (events before the pong are
/// skipped).
async fn still_open(ws: &mut Ws) -> bool {
    if ws
        .send(Message::Ping(b"open?".to_vec().into()))
        .await
        .is_err()
    {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) if p.as_ref() == b"open?" => return true,
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => {
                return false;
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn http_status(e: WsError) -> u16 {
    match e {
        WsError::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

fn live_events(backend: Backend) {
    let archive = TestArchive::new(backend).with_env("PACS_STUDY_QUIET_SECONDS", "1");
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    let tokens = create_users(&archive);
    let [admin, chest, neuro, doc_a, doc_b] = [0, 1, 2, 3, 4].map(|i| tokens[i].clone());
    let server = archive.start();
    let (port, dicom_port) = (server.http_port, server.dicom_port);
    let ct: Vec<_> = ct_sample_files();
    let study = file_attrs(&ct[0]).1.study_instance_uid;

    runtime().block_on(async move {
        // Refused upgrades: no credentials, a cross-site page.
        let e = connect(port, None, None, None).await.unwrap_err();
        assert_eq!(http_status(e), 401);
        let e = connect(port, Some(&chest), None, Some("http://evil.example"))
            .await
            .unwrap_err();
        assert_eq!(http_status(e), 403);
        let same = format!("http://127.0.0.1:{port}");
        let mut ws_chest = connect(port, Some(&chest), None, Some(&same))
            .await
            .unwrap();
        let mut ws_neuro = connect(port, Some(&neuro), None, None).await.unwrap();
        let mut ws_doc_a = connect(port, Some(&doc_a), None, None).await.unwrap();
        let mut ws_doc_b = connect(port, Some(&doc_b), None, None).await.unwrap();

        // A township CT room sends a chest CT: ready, then a task for the chest radiologist.
        let files = ct.clone();
        let run = tokio::task::spawn_blocking(move || {
            pynetdicom_store(dicom_port, "CLINIC_A_AE", &files, &[])
        })
        .await
        .unwrap();
        assert!(
            run.results.iter().all(|r| r.status == Some(0)),
            "{}",
            run.stderr
        );
        let a = until(&mut ws_doc_a, "task_created", Duration::from_secs(30)).await;
        let kinds: Vec<&str> = a.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["study_ready", "task_created"], "{a:?}");
        assert!(a.iter().all(|e| e["study_instance_uid"] == study.as_str()));
        assert!(a[0]["id"].as_i64() < a[1]["id"].as_i64());
        let c = until(&mut ws_chest, "task_created", Duration::from_secs(10)).await;
        let created = c.last().unwrap().clone();
        let task_id = created["payload"]["task_id"].as_i64().unwrap();
        let last_seen = created["id"].as_i64().unwrap();
        // Not the neuroradiologist's task, not the other clinic's study.
        assert_eq!(
            next_event(&mut ws_neuro, Duration::from_millis(800)).await,
            None
        );
        assert_eq!(
            next_event(&mut ws_doc_b, Duration::from_millis(100)).await,
            None
        );

        // The radiologist's connection drops; meanwhile they claim and release the task.
        ws_chest.close(None).await.unwrap();
        drop(ws_chest);
        let (chest2, claim) = (
            chest.clone(),
            format!("/api/worklist/tasks/{task_id}/claim"),
        );
        let release = format!("/api/worklist/tasks/{task_id}/release");
        tokio::task::spawn_blocking(move || {
            post(port, &chest2, &claim, None).expect(200, "claim");
            post(port, &chest2, &release, None).expect(204, "release");
        })
        .await
        .unwrap();
        // Reconnecting with the last id: what was missed, in order, once.
        let mut again = connect(port, Some(&chest), Some(last_seen), None)
            .await
            .unwrap();
        let missed = until(&mut again, "task_released", Duration::from_secs(10)).await;
        let kinds: Vec<&str> = missed.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["task_claimed", "task_released"], "{missed:?}");
        assert!(missed.iter().all(|e| e["id"].as_i64().unwrap() > last_seen));
        assert!(missed[0]["id"].as_i64() < missed[1]["id"].as_i64());
        assert_eq!(
            next_event(&mut again, Duration::from_millis(500)).await,
            None,
            "sent twice"
        );
        // The clinic saw them live too; the other clinic still nothing.
        let a = until(&mut ws_doc_a, "task_released", Duration::from_secs(10)).await;
        assert!(a.iter().any(|e| e["kind"] == "task_claimed"));
        assert_eq!(
            next_event(&mut ws_doc_b, Duration::from_millis(100)).await,
            None
        );
        // Administrators see everything from the start.
        let mut ws_admin = connect(port, Some(&admin), Some(0), None).await.unwrap();
        let all = until(&mut ws_admin, "task_released", Duration::from_secs(10)).await;
        assert!(all.iter().any(|e| e["kind"] == "study_ready"));
        // Bad parameters.
        for bad in ["?after=-1", "?after=x", "?other=1"] {
            let url = format!("ws://127.0.0.1:{port}/api/events{bad}");
            let mut req = url.into_client_request().unwrap();
            req.headers_mut()
                .insert("Authorization", admin.parse().unwrap());
            let e = tokio_tungstenite::connect_async(req).await.unwrap_err();
            assert_eq!(http_status(e), 400, "{bad}");
        }
        ws_doc_a.send(Message::Close(None)).await.ok();
    });
    // The worklist still answers (the feed is not in the way).
    assert!(worklist_of(port, &tokens[0], "?view=all").len() == 1);
    drop(server);
}

per_backend!(live_events);

/// Connections end with their credentials: a logout closes that session's websocket (not
/// another session's of the same user), disabling a user closes all of theirs, revoking a
/// token closes the connections opened with it. Bounded by a generous timeout only: the
/// server re-checks every few seconds, and at once for changes made through it.
fn feed_ends_with_credentials(backend: Backend) {
    let archive = TestArchive::new(backend);
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    let tokens = create_users(&archive);
    let (admin, chest_token, neuro_token) =
        (tokens[0].clone(), tokens[1].clone(), tokens[2].clone());
    let server = archive.start();
    let port = server.http_port;
    let wait = Duration::from_secs(30);
    // Two browser sessions of the chest radiologist.
    let sessions: Vec<(String, String)> = (0..2)
        .map(|_| {
            let r = login(port, "rad-chest", PASSWORD);
            r.expect(200, "login");
            let cookie = session_of(&r);
            note_secret(&cookie);
            (
                format!("pacs_session={cookie}"),
                r.json()["csrf_token"].as_str().unwrap().to_owned(),
            )
        })
        .collect();

    let archive = &archive;
    runtime().block_on(async move {
        let mut ws_s1 = connect_with(port, Some(("Cookie", &sessions[0].0)), None, None)
            .await
            .unwrap();
        let mut ws_s2 = connect_with(port, Some(("Cookie", &sessions[1].0)), None, None)
            .await
            .unwrap();
        let mut ws_chest_token = connect(port, Some(&chest_token), None, None).await.unwrap();
        let mut ws_neuro = connect(port, Some(&neuro_token), None, None).await.unwrap();
        assert!(still_open(&mut ws_s1).await && still_open(&mut ws_s2).await);

        // Logging out the first session closes its connection only.
        let (cookie, csrf) = sessions[0].clone();
        tokio::task::spawn_blocking(move || {
            request(
                port,
                "POST",
                "/api/logout",
                &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
                None,
            )
            .expect(200, "logout");
        })
        .await
        .unwrap();
        assert_eq!(
            closed(&mut ws_s1, wait).await,
            (4401, "session ended".to_owned())
        );
        assert!(
            still_open(&mut ws_s2).await,
            "the other session's connection closed too"
        );
        assert!(still_open(&mut ws_chest_token).await);

        // Disabling the user closes every connection of theirs: their sessions end with it,
        // their tokens are refused while they are disabled.
        let admin2 = admin.clone();
        tokio::task::spawn_blocking(move || {
            post(port, &admin2, "/api/admin/users/rad-chest/disable", None).expect(200, "disable");
        })
        .await
        .unwrap();
        assert_eq!(
            closed(&mut ws_s2, wait).await,
            (4401, "session ended".to_owned())
        );
        assert_eq!(
            closed(&mut ws_chest_token, wait).await,
            (4401, "account disabled".to_owned())
        );
        // And they cannot come back.
        let e = connect(port, Some(&chest_token), None, None)
            .await
            .unwrap_err();
        assert_eq!(http_status(e), 403);

        // A revoked token: its connection closes; the same user's other token stays.
        let admin2 = admin.clone();
        let made = tokio::task::spawn_blocking(move || {
            let r = post(
                port,
                &admin2,
                "/api/admin/users/rad-neuro/tokens",
                Some(r#"{"label":"second"}"#),
            );
            r.expect(201, "create a token");
            r.json()
        })
        .await
        .unwrap();
        let secret = made["token"].as_str().unwrap().to_owned();
        note_secret(&secret);
        let mut ws_second = connect(port, Some(&format!("Bearer {secret}")), None, None)
            .await
            .unwrap();
        let revoke = format!("/api/admin/tokens/{}", made["id"]);
        let admin2 = admin.clone();
        tokio::task::spawn_blocking(move || {
            request(port, "DELETE", &revoke, &[("Authorization", &admin2)], None)
                .expect(204, "revoke the token");
        })
        .await
        .unwrap();
        assert_eq!(
            closed(&mut ws_second, wait).await,
            (4401, "token revoked".to_owned())
        );
        assert!(
            still_open(&mut ws_neuro).await,
            "another token's connection closed"
        );

        // A change this server did not make (the CLI, another node) is found by the
        // periodic re-check.
        tokio::task::block_in_place(|| archive.pacs_ok(&["user", "disable", "rad-neuro"]));
        assert_eq!(
            closed(&mut ws_neuro, wait).await,
            (4401, "account disabled".to_owned())
        );
    });
    drop(server);
}

per_backend!(feed_ends_with_credentials);
