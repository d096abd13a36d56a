//! The reading workflow in the browser (viewer-web's worklist, reading view and clinic
//! portal), end to end: `pacs serve` serves the built viewer, the archive's routing makes
//! the reading tasks from imported studies, and Debian's Chromium (headless, driven by
//! playwright-core through `viewer-web/tests/reading-flow.mjs`) plays the radiologist and
//! the township doctors of two clinics:
//!
//! - the radiologist lands on the worklist and finds the CT's task (priority colours, the
//!   deadline counting down); the township doctor of the sending clinic writes an urgent
//!   preliminary impression in the portal and uploads another study (STOW-RS), whose task
//!   appears in the radiologist's open worklist over the websocket; the radiologist claims
//!   a STAT task, overdue in red, from the pool;
//! - the radiologist opens the CT from the keyboard (arrows, Enter), scrolls, drags the
//!   window, uses presets, invert and reset (the canvas pixels change each time), gives the
//!   verdict on the preliminary impression, writes and saves the report (Ctrl+S), signs it
//!   after the confirmation (Ctrl+Enter), signs an addendum, and signs the uploaded study
//!   with a critical finding;
//! - the township doctor sees the report arrive ("reported", the impression, the addendum,
//!   the PDF link)
//!   and acknowledges the critical finding; the other clinic's doctor sees neither study.
//!
//! No console error, no CSP violation, no dialog; names with markup stay text. Screenshots
//! at 1280×800 (worklist, reading view, portal) land in the run directory
//! (`target/e2e-run/screenshots/`); docs/screenshots/ keeps copies that were looked at.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::get;
use crate::support::*;
use crate::viewer::{
    assert_changed, assert_page_clean, assert_picture, browser_report, browser_script, dist_dir,
    require_browser_setup, uids,
};

const PASSWORD: &str = "reading flow test passphrase 0815";
const PRELIMINARY: &str = "Pneumonia right base? 右下肺炎?";
const IMPRESSION: &str = "Right lower lobe pneumonia.";
const ADDENDUM: &str = "Addendum: small right pleural effusion on review of the lower slices.";
/// The overdue countdown's colour (`--critical` in style.css).
const RED: &str = "rgb(255, 77, 94)";

fn add_user(archive: &TestArchive, args: &[&str]) {
    let mut all = vec!["user", "add"];
    all.extend_from_slice(args);
    all.push("--password-stdin");
    let out = archive.pacs_with_stdin(&all, format!("{PASSWORD}\n").as_bytes());
    assert!(
        out.status.success(),
        "user add {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Clinics A and B; the CT of clinic A and a CR of clinic B imported; a chest radiologist
/// and a township doctor of each clinic; `pacs serve` with a 1 s quiet period, and the two
/// reading tasks its routing made.
fn archive_with_tasks() -> (TestArchive, Server) {
    let archive = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_VIEWER_DIR", &dist_dir().display().to_string())
        .with_env("PACS_STUDY_QUIET_SECONDS", "1");
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    let ct: Vec<String> = ct_sample_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["import", "--quiet", "--clinic", "Clinic A"];
    args.extend(ct.iter().map(String::as_str));
    archive.pacs_ok(&args);
    let cr = sample_dir().join("cr_jpeg_baseline.dcm");
    archive.pacs_ok(&[
        "import",
        "--quiet",
        "--clinic",
        "Clinic B",
        &cr.display().to_string(),
    ]);
    add_user(
        &archive,
        &[
            "--username",
            "rad-chest",
            "--role",
            "radiologist",
            "--subspecialty",
            "chest",
        ],
    );
    for (user, clinic) in [("doc-a", "Clinic A"), ("doc-b", "Clinic B")] {
        add_user(
            &archive,
            &[
                "--username",
                user,
                "--role",
                "township-doctor",
                "--clinic",
                clinic,
            ],
        );
    }
    let server = archive.start();
    (archive, server)
}

/// Waits for the routing's two tasks, then makes the CR's task a STAT one in the pool that
/// is five minutes overdue (what a STAT routing rule without an available radiologist and
/// a late reading would make, without waiting for a deadline: the turnaround is at least a
/// minute).
fn make_cr_stat_and_overdue(archive: &TestArchive, server: &Server, cr_study: &str) {
    runtime().block_on(async {
        let a = archive.open().await;
        let pool = a.index().pool_for_tests();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM reading_tasks")
                .fetch_one(pool)
                .await
                .unwrap();
            if n >= 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no reading tasks were made: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let due = pacs_store::index::now_micros() - 5 * 60 * 1_000_000;
        let n = sqlx::query(
            "UPDATE reading_tasks SET priority = 'stat', assigned_to = NULL, due_at = $1 \
             WHERE study_ref = (SELECT id FROM studies WHERE study_instance_uid = $2)",
        )
        .bind(due)
        .bind(cr_study)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected();
        assert_eq!(n, 1, "the CR's task");
        a.index().close().await;
    });
}

fn steps<'a>(r: &'a Value, step: &str) -> (&'a Value, &'a Value) {
    let s = &r["steps"][step];
    assert!(
        s["stats"].is_object(),
        "no canvas statistics for {step}: {s}"
    );
    (&s["state"], &s["stats"])
}

fn row<'a>(rows: &'a Value, study: &str) -> Option<&'a Value> {
    rows.as_array()?.iter().find(|r| r["study"] == study)
}

#[test]
fn viewer_reading_flow_worklist_report_portal_in_chromium() {
    require_browser_setup();
    let (archive, server) = archive_with_tasks();
    let (ct_study, _) = uids("ct_01.dcm");
    let (cr_study, _) = uids("cr_jpeg_baseline.dcm");
    let (sc_study, _) = uids("sc_rgb_implicit.dcm");
    make_cr_stat_and_overdue(&archive, &server, &cr_study);

    let shots = run_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    note_secret(PASSWORD);
    let mut c = browser_script("tests/reading-flow.mjs", &server);
    c.args(["rad-chest", "doc-a", "doc-b", PASSWORD, &ct_study])
        .arg(sample_dir().join("sc_rgb_implicit.dcm"))
        .arg(&shots);
    let r = browser_report(c, "reading-flow.mjs", &server, Duration::from_secs(300));

    // Clean: no uncaught error, CSP violation, dialog, console error or failed request but
    // the 401s of `/api/me` before each login and after each logout.
    assert_page_clean(&r, "reading-flow.mjs");
    let me_401 = |url: &str, text: &str| url.ends_with("/api/me") && text.contains("401");
    let bad: Vec<&Value> = r["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "error" || m["type"] == "warning")
        .filter(|m| !me_401(m["url"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert!(bad.is_empty(), "console errors/warnings: {bad:#?}");
    let failed: Vec<&Value> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| {
            let status = q["status"].as_u64().unwrap();
            (status == 0 || status >= 400)
                && !(status == 401 && q["url"].as_str().unwrap().ends_with("/api/me"))
        })
        .collect();
    assert!(failed.is_empty(), "failed requests: {failed:#?}");

    // 1. The radiologist lands on the worklist: the CT's task; the STAT CR in the pool.
    assert_eq!(r["radiologistLanding"], "#/", "logged in at /");
    assert_eq!(r["worklistTabs"][0]["view"], "mine");
    assert_eq!(r["worklistTabs"][0]["selected"], "true");
    assert_eq!(r["worklistTabs"][0]["text"], "Mine (1)");
    assert_eq!(r["worklistTabs"][1]["text"], "Pool (1)");
    assert_eq!(r["worklistTabs"][2]["text"], "Overdue (1)");
    assert_eq!(r["liveStatus"], "live", "the websocket is open");
    let before = &r["worklistBefore"];
    let ct = row(before, &ct_study).unwrap_or_else(|| panic!("no CT task: {before:#}"));
    assert_eq!(ct["name"], "Liu Yan (刘䶮)");
    assert_eq!(ct["priority"], "routine");
    let cells: Vec<&str> = ct["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cells[0], "routine");
    assert!(
        cells[1].contains('h') && !cells[1].starts_with("overdue"),
        "{cells:?}"
    );
    assert_eq!(&cells[2..4], ["Clinic A", "CT"]);
    assert!(cells[5].contains("Chest CT"), "{cells:?}");
    assert_eq!(cells[6], "2024-03-11");
    assert_eq!(cells[7], "to read");
    assert_ne!(ct["countdownColor"], RED);
    assert!(
        row(before, &cr_study).is_none(),
        "the pool's task is not mine"
    );
    // The pool: the CR, STAT and overdue in red, claimed from there into "Mine".
    let cr = row(&r["pool"], &cr_study).unwrap_or_else(|| panic!("pool: {:#}", r["pool"]));
    assert_eq!(cr["cells"][0], "STAT");
    assert!(
        cr["cells"][1].as_str().unwrap().starts_with("overdue "),
        "{cr}"
    );
    assert_eq!(cr["cells"][7], "in the pool");
    assert_eq!(cr["cells"][8], "Claim");
    assert_eq!(cr["countdownColor"], RED, "an overdue deadline is red");
    assert_ne!(cr["priorityColor"], ct["priorityColor"], "priority colours");
    assert!(row(&r["poolAfterClaim"], &cr_study).is_none(), "claimed");
    let mine = &r["mineAfterClaim"];
    assert_eq!(mine[0]["study"], cr_study.as_str(), "STAT first: {mine:#}");
    assert_eq!(mine[0]["cells"][7], "claimed by you");
    assert_eq!(
        row(mine, &ct_study).unwrap()["priority"],
        "urgent",
        "the urgent preliminary impression raised the task"
    );

    // 2. The clinic's doctor: the portal, a preliminary impression; the upload's task
    //    reaches the open worklist over the live feed.
    assert_eq!(r["doctorLanding"], "#/");
    assert!(row(&r["portalBefore"], &ct_study).is_some());
    assert!(
        r["preliminaryShown"]
            .as_str()
            .unwrap()
            .contains(PRELIMINARY)
    );
    assert_eq!(r["stowStatus"], 200, "STOW-RS upload");
    assert!(
        r["liveArrivalMs"].is_u64(),
        "the uploaded study's task did not appear: {:#}",
        r["worklist"]
    );
    let frames = r["liveFrames"].as_array().unwrap();
    assert!(
        frames.iter().any(|f| f["who"] == "radiologist"
            && f["kind"] == "task_created"
            && f["study"] == sc_study.as_str()),
        "the task came over the websocket: {frames:#?}"
    );
    let sc = row(&r["worklist"], &sc_study).expect("the uploaded study's task");
    assert!(
        sc["name"].as_str().unwrap().starts_with("Test <img src"),
        "{sc}"
    );
    assert_eq!(r["uploadedStudy"], sc_study.as_str());
    assert_eq!(
        r["imagesInWorklist"], 0,
        "markup in a name became an element"
    );

    // 3. Opened with Enter; the banner; the images.
    assert_eq!(r["selectedBeforeEnter"], ct_study.as_str());
    let route = r["readingRoute"].as_str().unwrap();
    assert!(
        route.starts_with("#/read/") && route.ends_with(&ct_study),
        "{route}"
    );
    assert_eq!(r["banner"]["name"], "Liu Yan (刘䶮)");
    let facts = r["banner"]["facts"].as_str().unwrap();
    for want in [
        "male",
        "born 1958-03-12",
        "TS-0001",
        "Clinic A",
        "2024-03-11",
    ] {
        assert!(facts.contains(want), "{want}: {facts}");
    }
    assert!(r["banner"]["task"].as_str().unwrap().starts_with("urgent"));
    let (s0, p0) = steps(&r, "initial");
    assert_eq!(
        (s0["index"].as_u64(), s0["count"].as_u64()),
        (Some(0), Some(10))
    );
    assert_picture(p0, "CT slice 1");
    let (s1, p1) = steps(&r, "afterWheel");
    assert_eq!(s1["index"], 1, "wheel");
    assert_changed(p0, p1, "wheel to slice 2");
    let (s2, p2) = steps(&r, "afterArrowKey");
    assert_eq!(s2["index"], 2, "arrow key");
    assert_changed(p1, p2, "arrow key to slice 3");
    let (s3, p3) = steps(&r, "afterWindowDrag");
    assert_ne!(s3["voi"], s2["voi"], "window drag");
    assert_changed(p2, p3, "window drag");
    let (s4, p4) = steps(&r, "afterPresetLung");
    assert_eq!(s4["voi"], "1500/-600", "preset 2");
    assert_eq!(s4["window"], "W 1500 L -600");
    assert_picture(p4, "lung window");
    assert_changed(p3, p4, "lung preset");
    let (s5, p5) = steps(&r, "afterInvert");
    assert_eq!(s5["invert"], "true");
    assert_changed(p4, p5, "invert");
    let (s6, p6) = steps(&r, "afterPresetBrain");
    assert_eq!(s6["voi"], "80/40", "preset 1");
    assert_changed(p4, p6, "brain preset");
    let (s7, _) = steps(&r, "afterReset");
    assert_eq!(s7["voi"], s0["voi"], "reset");
    assert_eq!(s7["index"], 2, "reset keeps the slice");

    // The report: template, preliminary impression, draft, confirmation, signature.
    assert_eq!(r["preliminaryInPanel"], PRELIMINARY);
    assert!(
        r["templateShown"]
            .as_str()
            .unwrap()
            .contains("template ct-chest")
    );
    assert_eq!(
        r["placeholders"]["findings"],
        "Lungs, airways, pleura, mediastinum, heart, bones, upper abdomen."
    );
    assert_eq!(r["afterSave"]["state"], "draft");
    assert!(
        r["afterSave"]["status"]
            .as_str()
            .unwrap()
            .starts_with("Draft saved at")
    );
    assert!(
        r["confirmText"]
            .as_str()
            .unwrap()
            .starts_with("Sign this report?")
    );
    assert_eq!(r["afterCancel"], "draft", "Cancel does not sign");
    assert_eq!(r["signed"]["state"], "final");
    assert_eq!(r["signed"]["impression"], IMPRESSION);
    assert_eq!(r["signed"]["verdict"], "Verdict: Agree");
    assert!(
        r["signed"]["signedBy"]
            .as_str()
            .unwrap()
            .starts_with("Signed by rad-chest")
    );
    assert_eq!(r["signed"]["addendumForm"], 1);
    assert!(
        r["addendumConfirmText"]
            .as_str()
            .unwrap()
            .starts_with("Sign this addendum?")
    );
    let addenda = r["addenda"].as_array().unwrap();
    assert_eq!(addenda.len(), 1, "{addenda:?}");
    assert!(
        addenda[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{ADDENDUM}rad-chest, "))
    );
    let help: Vec<&str> = r["help"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for want in [
        "Ctrl + SSave the draft",
        "Ctrl + EnterSign",
        "2Window preset Lung",
    ] {
        assert!(help.iter().any(|h| h.starts_with(want)), "{want}: {help:?}");
    }
    assert!(
        row(&r["worklistAfter"], &ct_study).is_none(),
        "signed: off the worklist"
    );
    let report_id: i64 = r["signed"]["reportId"].as_str().unwrap().parse().unwrap();
    let verified = get(
        server.http_port,
        &format!("/api/reports/{report_id}/verify"),
        &[],
    );
    verified.expect(200, "verify");
    assert_eq!(verified.json()["valid"], true, "{}", verified.body);
    assert_eq!(verified.json()["signer"], "rad-chest");
    assert_eq!(
        verified.json()["addenda"][0][1],
        true,
        "the addendum's signature"
    );
    assert!(
        r["criticalConfirmText"]
            .as_str()
            .unwrap()
            .contains("CRITICAL finding")
    );
    let critical_id = r["criticalSigned"]["reportId"].as_str().unwrap();

    // 4. The sending clinic: the report arrived by itself; the critical finding acknowledged.
    assert_eq!(
        row(&r["portalAfter"], &ct_study).unwrap()["state"],
        "reported"
    );
    assert_eq!(r["portalReport"]["impression"], IMPRESSION);
    assert_eq!(
        r["portalReport"]["pdfHref"],
        format!("/api/reports/{report_id}/pdf")
    );
    assert_eq!(r["portalPdf"]["status"], 200, "{}", r["portalPdf"]);
    assert_eq!(r["portalPdf"]["type"], "application/pdf");
    assert_eq!(r["portalPdf"]["magic"], "%PDF-");
    assert_eq!(
        r["portalReport"]["verdict"],
        "The radiologist agrees with the preliminary impression."
    );
    let text = r["portalReport"]["text"].as_str().unwrap();
    assert!(
        text.contains("(amended)") && text.contains(ADDENDUM),
        "{text}"
    );
    let notes: Vec<&str> = r["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes.contains(&"A report was signed (Liu Yan (刘䶮))."),
        "live notification: {notes:?}"
    );
    assert_eq!(r["imagesInPortal"], 0);
    assert!(
        r["criticalCard"]
            .as_str()
            .unwrap()
            .contains("Pneumoperitoneum"),
        "{}",
        r["criticalCard"]
    );
    assert_eq!(
        row(&r["portalCritical"], &sc_study).unwrap()["state"],
        "critical"
    );
    assert_eq!(
        row(&r["portalAcknowledged"], &sc_study).unwrap()["state"],
        "reported",
        "acknowledged"
    );
    let log = archive.pacs_ok(&["audit", "search", "--user", "doc-a", "--json"]);
    assert!(log.contains("critical finding acknowledged"), "{log}");
    assert!(!critical_id.is_empty());

    // Another clinic's doctor sees neither study nor the report.
    let other = &r["otherClinicPortal"];
    assert!(row(other, &ct_study).is_none(), "{other:#}");
    assert!(row(other, &sc_study).is_none(), "{other:#}");
    assert!(
        row(other, &cr_study).is_some(),
        "their own study: {other:#}"
    );
    assert_eq!(r["otherClinicReport"], 404);
    assert_eq!(r["radiologistLoggedOut"], true);
    assert_eq!(r["doctorLoggedOut"], true);

    // The screenshots, small enough to keep.
    for name in ["worklist.png", "reading.png", "portal.png"] {
        let size = std::fs::metadata(shots.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .len();
        assert!(size < 400 * 1024, "{name}: {size} bytes");
    }
}

/// A radiologist with a thousand open tasks (index rows written by the benchmark's fill
/// scripts, as bench/viewer does: the routing would take minutes to make them): every task
/// is a row of the page, the rows on screen are drawn, End brings the last task on screen
/// with the selection and the focus, Home the first, and Enter opens the selected one.
/// The worklist lays out only the rows on screen (`content-visibility: auto`), so this is
/// what keeps the rows off screen reachable and whole.
#[test]
fn viewer_long_worklist_every_task_reachable_by_keyboard_in_chromium() {
    require_browser_setup();
    const TASKS: usize = 1000;
    let archive = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_VIEWER_DIR", &dist_dir().display().to_string());
    // The fill scripts give the studies to the clinic with id 1.
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    add_user(
        &archive,
        &["--username", "rad-long", "--role", "radiologist"],
    );
    let db = archive.data_dir().join("index.db");
    for (script, args) in [
        ("bench/qido/fill_index.py", vec![TASKS.to_string()]),
        (
            "bench/viewer.d/fill_tasks.py",
            vec!["rad-long".to_owned(), TASKS.to_string()],
        ),
    ] {
        let out = std::process::Command::new("/usr/bin/python3")
            .arg(repo_root().join(script))
            .arg(&db)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let server = archive.start();
    note_secret(PASSWORD);
    let mut c = browser_script("tests/long-worklist.mjs", &server);
    c.args(["rad-long", PASSWORD]);
    let r = browser_report(c, "long-worklist.mjs", &server, Duration::from_secs(300));
    assert_page_clean(&r, "long-worklist.mjs");

    let api: Vec<u64> = r["api"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(api.len(), TASKS);
    assert_eq!(r["count"], TASKS.to_string());
    assert_eq!(r["rowsInPage"], TASKS);
    // The first screenful is drawn: rows of a line or two of text, none collapsed.
    for h in r["firstHeights"].as_array().unwrap() {
        let h = h.as_f64().unwrap();
        assert!((20.0..120.0).contains(&h), "row height {h}: {r:#}");
    }
    let check = |step: &str, index: usize| {
        let s = &r["steps"][step];
        assert_eq!(s["index"], index, "{step}: {s:#}");
        assert_eq!(s["task"], api[index], "{step}: {s:#}");
        assert_eq!(s["selectedRows"], 1, "{step}: {s:#}");
        assert_eq!(s["focused"], true, "{step}: {s:#}");
        assert_eq!(s["onScreen"], true, "{step}: {s:#}");
        assert_eq!(s["patientCellDrawn"], true, "{step}: {s:#}");
        let cells: Vec<&str> = s["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        // Priority, deadline, clinic, modality, patient (name and ID), study, date, state.
        assert_eq!(cells.len(), 8, "{step}: {cells:?}");
        assert!(
            ["STAT", "urgent", "routine"].contains(&cells[0]),
            "{step}: {cells:?}"
        );
        assert_eq!(cells[2], "Clinic A", "{step}: {cells:?}");
        assert!(cells[4].contains("P0"), "{step}: patient ID in {cells:?}");
        assert_eq!(cells[7], "to read", "{step}: {cells:?}");
    };
    check("loaded", 0);
    check("end", TASKS - 1);
    check("home", 0);
    let last = api[TASKS - 1];
    assert!(
        r["opened"]
            .as_str()
            .unwrap()
            .starts_with(&format!("#/read/{last}/")),
        "{r:#}"
    );
    drop(server);
}
