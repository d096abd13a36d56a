//! The reading worklist end to end: a township AE sends a chest CT → after the quiet
//! period a task appears for the chest radiologist the default rules choose → claims and
//! their conflicts, the clinic's view of its study's state, reassignment, routing rules and
//! reading profiles through the admin API, every route's access and audit.

use std::time::{Duration, Instant};

use pacs_store::users::Role;

use crate::http::{Resp, get, request};
use crate::per_backend;
use crate::support::*;

pub(crate) const PASSWORD: &str = "worklist-test-password-1";

/// (username, role, clinic, subspecialties)
const USERS: &[(&str, Role, Option<&str>, &[&str])] = &[
    ("admin", Role::Admin, None, &[]),
    ("rad-chest", Role::Radiologist, None, &["chest"]),
    ("rad-neuro", Role::Radiologist, None, &["neuro"]),
    ("doc-a", Role::TownshipDoctor, Some("Clinic A"), &[]),
    ("doc-b", Role::TownshipDoctor, Some("Clinic B"), &[]),
];

pub(crate) fn create_users(archive: &TestArchive) -> Vec<String> {
    archive
        .users_with_tokens(USERS, Some(PASSWORD), "worklist")
        .iter()
        .map(|t| format!("Bearer {t}"))
        .collect()
}

pub(crate) fn worklist_of(port: u16, token: &str, query: &str) -> Vec<serde_json::Value> {
    let r = get(
        port,
        &format!("/api/worklist{query}"),
        &[("Authorization", token)],
    );
    r.expect(200, "worklist");
    r.json().as_array().unwrap().clone()
}

pub(crate) fn post(port: u16, token: &str, path: &str, body: Option<&str>) -> Resp {
    request(port, "POST", path, &[("Authorization", token)], body)
}

fn worklist(backend: Backend) {
    let archive = TestArchive::new(backend).with_env("PACS_STUDY_QUIET_SECONDS", "1");
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    let tokens = create_users(&archive);
    let [admin, chest, neuro, doc_a, doc_b] = [0, 1, 2, 3, 4].map(|i| tokens[i].as_str());
    let server = archive.start();
    let port = server.http_port;

    // A township CT room sends a chest CT.
    let ct: Vec<_> = ct_sample_files();
    let run = pynetdicom_store(server.dicom_port, "CLINIC_A_AE", &ct, &[]);
    assert!(
        run.results.len() == ct.len() && run.results.iter().all(|r| r.status == Some(0)),
        "{}",
        run.stderr
    );
    let study = file_attrs(&ct[0]).1.study_instance_uid;

    // After the quiet period: a task for the chest radiologist.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mine = loop {
        let mine = worklist_of(port, chest, "?view=mine");
        if !mine.is_empty() || Instant::now() > deadline {
            break mine;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(mine.len(), 1, "no task routed: {}", server.log());
    let task = &mine[0];
    assert_eq!(task["study_instance_uid"], study.as_str());
    assert_eq!(task["rule"], "chest-ct");
    assert_eq!(task["priority"], "routine");
    assert_eq!(task["state"], "open");
    assert_eq!(task["clinic"], "Clinic A");
    assert_eq!(task["assigned_to"], "rad-chest");
    assert!(task["patient_name"].as_str().is_some_and(|n| !n.is_empty()));
    let due = task["due_at"].as_i64().unwrap() - task["ready_at"].as_i64().unwrap();
    assert_eq!(due, 24 * 3600 * 1_000_000);
    let id = task["task_id"].as_i64().unwrap();
    let claim_path = format!("/api/worklist/tasks/{id}/claim");

    // Not the neuroradiologist's and not in the pool: to them it does not exist.
    assert!(worklist_of(port, neuro, "?view=mine").is_empty());
    assert!(worklist_of(port, neuro, "?view=pool").is_empty());
    let r = post(port, neuro, &claim_path, None);
    r.expect(404, "claim of a task routed to another");
    assert_eq!(r.error(), "no such task");
    // The routed radiologist claims it and can open the study; the other cannot.
    let r = post(port, chest, &claim_path, None);
    r.expect(200, "claim");
    assert!(r.json()["lease_expires_at"].as_i64().unwrap() > 0);
    let study_path = format!("/api/studies/{study}");
    get(port, &study_path, &[("Authorization", chest)]).expect(200, "assigned study");
    get(port, &study_path, &[("Authorization", neuro)]).expect(404, "not assigned");

    // The sending clinic sees its study being read; another clinic sees nothing; clinic
    // users cannot claim.
    let seen = worklist_of(port, doc_a, "");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["state"], "claimed");
    assert_eq!(seen[0]["claimed_by"], "rad-chest");
    assert!(worklist_of(port, doc_b, "").is_empty());
    post(port, doc_a, &claim_path, None).expect(403, "clinic user claims");
    // A task of another clinic is "no such task" for a clinic user.
    post(
        port,
        doc_b,
        &format!("/api/worklist/tasks/{id}/release"),
        None,
    )
    .expect(403, "clinic user releases");

    // The administrator moves it to the neuroradiologist, who can then claim it.
    let reassign = format!("/api/admin/worklist/tasks/{id}/reassign");
    post(port, chest, &reassign, Some(r#"{"username":"rad-neuro"}"#)).expect(403, "not admin");
    post(port, admin, &reassign, Some(r#"{"username":"nobody"}"#)).expect(404, "unknown user");
    post(port, admin, &reassign, Some(r#"{"username":"doc-a"}"#)).expect(400, "not a radiologist");
    post(port, admin, &reassign, Some(r#"{"username":"rad-neuro"}"#)).expect(204, "reassign");
    post(
        port,
        chest,
        &format!("/api/worklist/tasks/{id}/release"),
        None,
    )
    .expect(404, "release after reassignment");
    post(port, neuro, &claim_path, None).expect(200, "claim after reassignment");
    post(port, admin, "/api/worklist/tasks/999999/claim", None).expect(403, "admin claims");
    post(port, neuro, "/api/worklist/tasks/999999/claim", None).expect(404, "unknown task");

    // Reporting: the township doctor's impression, the draft, the signature.
    let prelim = format!("/api/studies/{study}/preliminary");
    post(port, neuro, &prelim, Some(r#"{"text":"x"}"#)).expect(403, "radiologist preliminary");
    post(port, doc_b, &prelim, Some(r#"{"text":"x"}"#)).expect(404, "other clinic's study");
    post(
        port,
        doc_a,
        &prelim,
        Some(r#"{"text":"Pneumonia right base?"}"#),
    )
    .expect(200, "preliminary");
    let draft_path = format!("/api/worklist/tasks/{id}/report");
    let draft = r#"{"findings":"Consolidation of the right lower lobe.","impression":"Right lower lobe pneumonia."}"#;
    request(
        port,
        "PUT",
        &draft_path,
        &[("Authorization", chest)],
        Some(draft),
    )
    .expect(404, "draft by the radiologist who lost the task");
    let r = request(
        port,
        "PUT",
        &draft_path,
        &[("Authorization", neuro)],
        Some(draft),
    );
    r.expect(200, "draft");
    assert_eq!(r.json()["template"], "ct-chest");
    let report_id = r.json()["id"].as_i64().unwrap();
    // Clinic users do not see drafts.
    let r = get(
        port,
        &format!("/api/studies/{study}/reports"),
        &[("Authorization", doc_a)],
    );
    r.expect(200, "reports of the study");
    assert!(
        r.json()["reports"].as_array().unwrap().is_empty(),
        "{}",
        r.body
    );
    let sign_path = format!("/api/reports/{report_id}/sign");
    let r = post(port, neuro, &sign_path, None);
    r.expect(400, "sign without the verdict on the preliminary");
    assert!(r.error().contains("agreement"), "{}", r.body);
    let with_verdict = r#"{"findings":"Consolidation of the right lower lobe.","impression":"Right lower lobe pneumonia.","agreement":"agree","critical":true}"#;
    request(
        port,
        "PUT",
        &draft_path,
        &[("Authorization", neuro)],
        Some(with_verdict),
    )
    .expect(200, "draft with verdict");
    post(port, doc_a, &sign_path, None).expect(403, "clinic user signs");
    // A radiologist who once had the study cannot sign a task claimed by someone else.
    let r = post(port, chest, &sign_path, None);
    r.expect(400, "sign a colleague's claimed task");
    assert!(r.error().contains("not claimed by you"), "{}", r.body);
    let r = post(port, neuro, &sign_path, None);
    r.expect(200, "sign");
    assert_eq!(r.json()["state"], "final");
    post(port, neuro, &sign_path, None).expect(400, "sign twice");
    // The critical finding: the clinic portal shows it until a doctor there acknowledges.
    let portal = get(port, "/api/portal/studies", &[("Authorization", doc_a)]);
    portal.expect(200, "portal");
    assert_eq!(portal.json()[0]["state"], "critical", "{}", portal.body);
    assert_eq!(portal.json()[0]["report_id"], report_id);
    let open = get(port, "/api/critical-findings", &[("Authorization", doc_a)]);
    assert_eq!(open.json().as_array().unwrap().len(), 1, "{}", open.body);
    let other = get(port, "/api/critical-findings", &[("Authorization", doc_b)]);
    assert!(other.json().as_array().unwrap().is_empty());
    assert!(
        get(port, "/api/portal/studies", &[("Authorization", doc_b)])
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
    let ack = format!("/api/reports/{report_id}/critical/acknowledge");
    post(port, neuro, &ack, None).expect(400, "radiologist acknowledges");
    post(port, doc_b, &ack, None).expect(404, "other clinic acknowledges");
    let r = post(port, doc_a, &ack, None);
    r.expect(200, "acknowledge");
    assert_eq!(r.json()["acknowledged_by"], "doc-a");
    let portal = get(port, "/api/portal/studies", &[("Authorization", doc_a)]);
    assert_eq!(portal.json()[0]["state"], "reported");
    assert!(
        get(port, "/api/critical-findings", &[("Authorization", doc_a)])
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
    get(
        port,
        "/api/portal/studies?limit=0",
        &[("Authorization", doc_a)],
    )
    .expect(400, "limit");

    // The clinic sees the signed report with the verdict; another clinic does not.
    let r = get(
        port,
        &format!("/api/studies/{study}/reports"),
        &[("Authorization", doc_a)],
    );
    let reports = r.json()["reports"].as_array().unwrap().clone();
    assert_eq!(reports.len(), 1, "{}", r.body);
    assert_eq!(reports[0]["agreement"], "agree");
    assert_eq!(reports[0]["author"], "rad-neuro");
    get(
        port,
        &format!("/api/reports/{report_id}"),
        &[("Authorization", doc_b)],
    )
    .expect(404, "other clinic's report");
    get(port, &format!("/api/reports/{report_id}"), &[]).expect(401, "report without credentials");
    // FHIR R4 and HL7 v2 renderings, for the clinic's own systems.
    let r = get(
        port,
        &format!("/api/reports/{report_id}/fhir"),
        &[("Authorization", doc_a)],
    );
    r.expect(200, "FHIR");
    assert!(r.headers("content-type")[0].starts_with("application/fhir+json"));
    assert_eq!(r.json()["resourceType"], "DiagnosticReport");
    assert_eq!(r.json()["status"], "final");
    assert_eq!(r.json()["conclusion"], "Right lower lobe pneumonia.");
    let r = get(
        port,
        &format!("/api/reports/{report_id}/hl7"),
        &[("Authorization", doc_a)],
    );
    r.expect(200, "HL7");
    assert!(
        r.body
            .starts_with("MSH|^~\\&|REGIONAL_PACS|IMAGING CENTRE|Clinic A|"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("\rOBR|1|") && r.body.contains("|RAD|F|"),
        "{}",
        r.body
    );
    get(
        port,
        &format!("/api/reports/{report_id}/hl7"),
        &[("Authorization", doc_b)],
    )
    .expect(404, "other clinic's HL7");

    // Anyone can check the signature; `pacs report verify` too.
    let verify_path = format!("/api/reports/{report_id}/verify");
    let r = get(port, &verify_path, &[]);
    r.expect(200, "public verification");
    assert_eq!(r.json()["valid"], true, "{}", r.body);
    assert_eq!(r.json()["signer"], "rad-neuro");
    assert!(
        !r.body.contains(&study),
        "verification answers no study data"
    );
    let ok = archive.pacs(&["report", "verify", &report_id.to_string()]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    // One stored byte changed: both say so.
    runtime().block_on(async {
        let a = archive.open().await;
        sqlx::query("UPDATE reports SET impression = 'Normal chest.' WHERE id = $1")
            .bind(report_id)
            .execute(a.index().pool_for_tests())
            .await
            .unwrap();
        a.index().close().await;
    });
    assert_eq!(get(port, &verify_path, &[]).json()["valid"], false);
    let bad = archive.pacs(&["report", "verify", &report_id.to_string()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("NOT VALID"));
    let r = get(
        port,
        "/api/admin/discrepancies",
        &[("Authorization", admin)],
    );
    r.expect(200, "discrepancies");
    assert_eq!(r.json()[0]["clinic"], "Clinic A");
    assert_eq!(r.json()[0]["agree"], 1);
    get(
        port,
        "/api/admin/discrepancies",
        &[("Authorization", doc_a)],
    )
    .expect(403, "rates");

    // Views and filters, and bad parameters.
    // The task is done: off the worklist.
    assert!(worklist_of(port, admin, "?view=all&modality=CT").is_empty());
    assert!(worklist_of(port, admin, "?view=all&modality=MR").is_empty());
    assert!(worklist_of(port, admin, "?view=overdue").is_empty());
    assert!(worklist_of(port, admin, "?clinic=Clinic%20A&sort=due").is_empty());
    for bad in [
        "?view=everything",
        "?priority=soon",
        "?sort=name",
        "?limit=0",
        "?clinic=Nowhere",
        "?view=all'%20OR%201=1--",
        "?unknown=1",
    ] {
        get(
            port,
            &format!("/api/worklist{bad}"),
            &[("Authorization", admin)],
        )
        .expect(400, bad);
    }
    get(port, "/api/worklist", &[]).expect(401, "no credentials");

    // Routing rules and reading profiles (administrators only).
    let r = get(
        port,
        "/api/admin/routing-rules",
        &[("Authorization", admin)],
    );
    r.expect(200, "rules");
    let names: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names.last().map(String::as_str),
        Some("anyone"),
        "{names:?}"
    );
    get(
        port,
        "/api/admin/routing-rules",
        &[("Authorization", chest)],
    )
    .expect(403, "rules");
    let rule = r#"{"position":5,"name":"stat-us","modality":"us","set_priority":"stat"}"#;
    let r = post(port, admin, "/api/admin/routing-rules", Some(rule));
    r.expect(201, "new rule");
    assert_eq!(r.json()["modality"], "US");
    let rule_id = r.json()["id"].as_i64().unwrap();
    post(port, admin, "/api/admin/routing-rules", Some(rule)).expect(409, "same name");
    post(
        port,
        admin,
        "/api/admin/routing-rules",
        Some(r#"{"position":6,"name":"x","set_priority":"soon"}"#),
    )
    .expect(400, "bad priority");
    post(
        port,
        admin,
        "/api/admin/routing-rules",
        Some(r#"{"position":6,"name":"y","clinic":"Nowhere"}"#),
    )
    .expect(400, "unknown clinic");
    let rule_path = format!("/api/admin/routing-rules/{rule_id}");
    request(
        port,
        "PUT",
        &rule_path,
        &[("Authorization", admin)],
        Some(r#"{"position":7,"name":"stat-us","modality":"US","enabled":false}"#),
    )
    .expect(200, "change rule");
    request(
        port,
        "DELETE",
        &rule_path,
        &[("Authorization", admin)],
        None,
    )
    .expect(204, "delete");
    request(
        port,
        "DELETE",
        &rule_path,
        &[("Authorization", admin)],
        None,
    )
    .expect(404, "again");
    let profile = "/api/admin/users/rad-chest/reading-profile";
    request(
        port,
        "PUT",
        profile,
        &[("Authorization", admin)],
        Some(r#"{"credentials":["CT","DX"],"shifts":[{"start_minute":480,"end_minute":1020}]}"#),
    )
    .expect(204, "profile");
    request(
        port,
        "PUT",
        profile,
        &[("Authorization", admin)],
        Some(r#"{"shifts":[{"start_minute":600,"end_minute":600}]}"#),
    )
    .expect(400, "empty shift");
    request(
        port,
        "PUT",
        "/api/admin/users/doc-a/reading-profile",
        &[("Authorization", admin)],
        Some(r#"{"credentials":["CT"]}"#),
    )
    .expect(404, "not a radiologist");

    // Audited: the worklist reads, the claims' assignments, the administration.
    let log = archive.pacs_ok(&["audit", "search", "--event", "110112", "--json"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    assert!(
        events.iter().any(|e| e["user"] == "doc-a"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("worklist"))),
        "{log}"
    );
    let log = archive.pacs_ok(&["audit", "search", "--user", "admin", "--json"]);
    for what in [
        "reassign reading task",
        "add routing rule",
        "remove routing rule",
        "set the reading profile of rad-chest",
    ] {
        assert!(log.contains(what), "{what}: {log}");
    }
    drop(server);
}

per_backend!(worklist);

/// Two `pacs serve` nodes on one index: two radiologists claim the same pool task at the
/// same moment through different nodes, round after round — exactly one wins each time,
/// and both nodes made one task between them.
fn claim_race_two_nodes(backend: Backend) {
    let archive = TestArchive::new(backend).with_env("PACS_STUDY_QUIET_SECONDS", "1");
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    let tokens = create_users(&archive);
    let [admin, chest, neuro] = [0, 1, 2].map(|i| tokens[i].as_str());
    let one = archive.start();
    let two = archive.start();
    let ct: Vec<_> = ct_sample_files();
    let run = pynetdicom_store(one.dicom_port, "CLINIC_A_AE", &ct, &[]);
    assert!(
        run.results.iter().all(|r| r.status == Some(0)),
        "{}",
        run.stderr
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let tasks = loop {
        let all = worklist_of(two.http_port, admin, "?view=all");
        if !all.is_empty() || Instant::now() > deadline {
            break all;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Give both nodes' keepers time to (not) make a second task.
    std::thread::sleep(Duration::from_secs(3));
    let tasks_now = worklist_of(one.http_port, admin, "?view=all");
    assert_eq!(
        (tasks.len(), tasks_now.len()),
        (1, 1),
        "one task from two nodes"
    );
    let id = tasks[0]["task_id"].as_i64().unwrap();
    post(
        one.http_port,
        admin,
        &format!("/api/admin/worklist/tasks/{id}/return-to-pool"),
        None,
    )
    .expect(204, "to the pool");
    let claim = format!("/api/worklist/tasks/{id}/claim");
    let release = format!("/api/worklist/tasks/{id}/release");
    let mut wins = [0, 0];
    for round in 0..8 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let racers: Vec<_> = [(one.http_port, chest), (two.http_port, neuro)]
            .into_iter()
            .enumerate()
            .map(|(i, (port, token))| {
                let (barrier, token, claim) = (barrier.clone(), token.to_owned(), claim.clone());
                // Alternate who goes through which node.
                let port = if round % 2 == 0 {
                    port
                } else if i == 0 {
                    two.http_port
                } else {
                    one.http_port
                };
                std::thread::spawn(move || {
                    barrier.wait();
                    request(port, "POST", &claim, &[("Authorization", &token)], None).status
                })
            })
            .collect();
        let statuses: Vec<u16> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let won: Vec<usize> = (0..2).filter(|&i| statuses[i] == 200).collect();
        assert_eq!(won.len(), 1, "round {round}: {statuses:?}");
        assert_eq!(statuses[1 - won[0]], 409, "round {round}: {statuses:?}");
        wins[won[0]] += 1;
        let winner = [chest, neuro][won[0]];
        post(one.http_port, winner, &release, None).expect(204, "release");
    }
    assert_eq!(wins[0] + wins[1], 8);
    drop(one);
    drop(two);
}

per_backend!(claim_race_two_nodes);
