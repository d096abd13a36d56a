//! The admin pages in the browser (viewer-web's `#/admin/…`), end to end: `pacs serve`
//! serves the built viewer; studies of three clinics are imported (one clinic named with
//! markup), some of them moved to earlier days and their reading tasks finished, overdue
//! or judged in the database as days of work would leave them; Debian's Chromium
//! (headless, driven by playwright-core through `viewer-web/tests/admin-flow.mjs`) plays
//! the administrator and a radiologist:
//!
//! - the administrator lands on the dashboard, whose bars (studies per clinic per UTC
//!   day), turnaround percentiles, backlog, overdue count and discrepancy rates must show
//!   exactly what was stored;
//! - creates a clinic and a report receiver AE title (a receiver without a port, and the
//!   same clinic twice, are refused in words), edits it; creates a user and disables them;
//!   edits a routing rule and disables another; finds the clinic's creation in the audit
//!   trail and pages through it;
//! - the radiologist has no Admin link, and the admin address typed by hand says in words
//!   that it is for administrators.
//!
//! No console error (but the refusals the test provokes), no CSP violation, no dialog;
//! names with markup stay text. Screenshots at 1280×800 (admin-dashboard.png,
//! admin-clinics.png) land in the run directory (`target/e2e-run/screenshots/`);
//! docs/screenshots/ keeps copies that were looked at.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Row as _;

use crate::support::*;
use crate::viewer::{
    assert_page_clean, browser_report, browser_script, dist_dir, require_browser_setup, uids,
};

const PASSWORD: &str = "admin flow test passphrase 4711";
const MARKUP_CLINIC: &str = "<img src=x onerror=alert(1)>";
const NEW_CLINIC: &str = "Hill Clinic 山区";
const DAY: i64 = 86_400_000_000;
const MIN: i64 = 60_000_000;

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

/// What is stored: (files, clinic, received this many days ago).
fn plan() -> Vec<(Vec<String>, &'static str, i64)> {
    let named = |prefix: &str| -> Vec<String> {
        sample_files()
            .iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .map(|p| p.display().to_string())
            .collect()
    };
    vec![
        (named("ct_"), "Clinic A", 0),
        (named("mr_jpegls_"), "Clinic A", 2),
        (named("mg_rle"), "Clinic A", 0),
        (named("cr_jpeg_baseline"), "Clinic B", 0),
        (named("dx_j2k"), "Clinic B", 5),
        (named("cr_big_endian"), MARKUP_CLINIC, 1),
    ]
}

fn study_of(file: &str) -> String {
    let name = std::path::Path::new(file).file_name().unwrap();
    uids(&name.to_string_lossy()).0
}

/// The UTC day `days_ago` days before `now`, as the dashboard labels it.
fn day_label(now: i64, days_ago: i64) -> String {
    pacs_store::audit::format_micros(now - days_ago * DAY)[..10].to_owned()
}

#[test]
fn viewer_admin_pages_and_dashboard_in_chromium() {
    require_browser_setup();
    let archive = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_VIEWER_DIR", &dist_dir().display().to_string())
        .with_env("PACS_STUDY_QUIET_SECONDS", "1");
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    archive.add_clinic(MARKUP_CLINIC, "MARKUP_AE", None);
    let plan = plan();
    let mut studies = Vec::new();
    for (files, clinic, days_ago) in &plan {
        assert!(!files.is_empty(), "no sample files for {clinic}");
        let mut args = vec!["import", "--quiet", "--clinic", clinic];
        args.extend(files.iter().map(String::as_str));
        archive.pacs_ok(&args);
        studies.push((study_of(&files[0]), *clinic, *days_ago));
    }
    let distinct: BTreeSet<&str> = studies.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        distinct.len(),
        studies.len(),
        "one study per group: {studies:?}"
    );
    add_user(&archive, &["--username", "chief", "--role", "admin"]);
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
    let server = archive.start();

    // Days of work, as the database would hold them: studies received on earlier days;
    // the CT read in 45 minutes (routine) and the CR in 20 (STAT), both judged; the MR
    // urgent and overdue; the rest routine and waiting.
    let now = pacs_store::index::now_micros();
    runtime().block_on(async {
        let a = archive.open().await;
        let pool = a.index().pool_for_tests();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM reading_tasks")
                .fetch_one(pool)
                .await
                .unwrap();
            if n >= studies.len() as i64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the reading tasks were not made: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let rad: i64 = sqlx::query("SELECT id FROM users WHERE username = 'rad-chest'")
            .fetch_one(pool)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        for (i, (study, _, days_ago)) in studies.iter().enumerate() {
            let study_ref: i64 = sqlx::query("SELECT id FROM studies WHERE study_instance_uid = $1")
                .bind(study)
                .fetch_one(pool)
                .await
                .unwrap()
                .try_get(0)
                .unwrap();
            sqlx::query("UPDATE studies SET first_received_at = $1 WHERE id = $2")
                .bind(now - days_ago * DAY)
                .bind(study_ref)
                .execute(pool)
                .await
                .unwrap();
            // (priority, state, ready minutes ago, took minutes, due in minutes, verdict)
            let (priority, state, ready, took, due, verdict) = match i {
                0 => ("routine", "done", 180, Some(45), 1260, Some("agree")),
                3 => ("stat", "done", 120, Some(20), -90, Some("major")),
                1 => ("urgent", "open", 300, None, -60, None),
                _ => ("routine", "open", 60, None, 1380, None),
            };
            let done_at = took.map(|t| now - ready * MIN + t * MIN);
            let task: i64 = sqlx::query(
                "UPDATE reading_tasks SET priority = $1, state = $2, ready_at = $3, due_at = $4, \
                 done_at = $5, claimed_by = NULL WHERE study_ref = $6 RETURNING id",
            )
            .bind(priority)
            .bind(state)
            .bind(now - ready * MIN)
            .bind(now + due * MIN)
            .bind(done_at)
            .bind(study_ref)
            .fetch_one(pool)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
            if let Some(verdict) = verdict {
                sqlx::query(
                    "INSERT INTO reports (task_id, study_ref, author_id, template, state, agreement, \
                       created_at, updated_at) VALUES ($1, $2, $3, 'default', 'final', $4, $5, $5)",
                )
                .bind(task)
                .bind(study_ref)
                .bind(rad)
                .bind(verdict)
                .bind(now)
                .execute(pool)
                .await
                .unwrap();
            }
        }
        a.index().close().await;
    });

    let shots = run_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    note_secret(PASSWORD);
    let mut c = browser_script("tests/admin-flow.mjs", &server);
    c.args(["chief", "rad-chest", PASSWORD, NEW_CLINIC])
        .arg(&shots);
    let r = browser_report(c, "admin-flow.mjs", &server, Duration::from_secs(240));

    // Clean: no uncaught error, CSP violation or dialog; the only failed requests and
    // console errors are the 401s of `/api/me` before each login and the refusal the test
    // provoked (the same clinic twice: 409).
    assert_page_clean(&r, "admin-flow.mjs");
    let expected = |url: &str, status: u64| {
        (status == 401 && url.ends_with("/api/me"))
            || (status == 409 && url.ends_with("/api/admin/clinics"))
    };
    let failed: Vec<&Value> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| {
            let status = q["status"].as_u64().unwrap();
            (status == 0 || status >= 400) && !expected(q["url"].as_str().unwrap(), status)
        })
        .collect();
    assert!(failed.is_empty(), "failed requests: {failed:#?}");
    let bad: Vec<&Value> = r["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "error" || m["type"] == "warning")
        .filter(|m| {
            let (url, text) = (m["url"].as_str().unwrap(), m["text"].as_str().unwrap());
            !((url.ends_with("/api/me") && text.contains("401"))
                || (url.ends_with("/api/admin/clinics") && text.contains("409")))
        })
        .collect();
    assert!(bad.is_empty(), "console errors/warnings: {bad:#?}");

    // 1. The dashboard: the administrator's landing page, with what was stored.
    assert_eq!(r["adminLanding"]["section"], "dashboard");
    let nav: Vec<&str> = r["adminNav"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(nav.contains(&"Admin"), "{nav:?}");
    let d = &r["dashboard"];
    assert_eq!(d["days"], "14");
    let columns = d["columns"].as_array().unwrap();
    assert_eq!(columns.len(), 14);
    assert_eq!(columns[13]["label"], day_label(now, 0));
    assert_eq!(columns[0]["label"], day_label(now, 13));
    // Every bar, by clinic and day, is what was stored; nothing else has a bar.
    let mut want: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (_, clinic, days_ago) in &studies {
        *want
            .entry((clinic.to_string(), day_label(now, *days_ago)))
            .or_default() += 1;
    }
    let got: BTreeMap<(String, String), u64> = d["studyBars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert!(b["height"].as_f64().unwrap() > 1.0, "a visible bar: {b}");
            (
                (
                    b["series"].as_str().unwrap().to_owned(),
                    b["label"].as_str().unwrap().to_owned(),
                ),
                b["value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want, "studies per clinic per day");
    let today = columns.last().unwrap();
    assert_eq!(today["total"], 3, "CT, MG of A and CR of B today");
    // Bars of two studies are twice as tall as bars of one (same scale).
    let heights: BTreeMap<u64, f64> = d["studyBars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["value"].as_u64().unwrap(), b["height"].as_f64().unwrap()))
        .collect();
    assert!((heights[&2] - 2.0 * heights[&1]).abs() < 0.5, "{heights:?}");
    let clinic_a_bar = d["studyBars"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["series"] == "Clinic A" && b["label"] == day_label(now, 0))
        .unwrap();
    assert_eq!(
        clinic_a_bar["title"],
        format!("Clinic A, {}: 2 studies", day_label(now, 0))
    );
    assert_ne!(clinic_a_bar["fill"], "rgb(0, 0, 0)", "coloured by class");
    let legend: Vec<&str> = d["legend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(legend, [MARKUP_CLINIC, "Clinic A", "Clinic B"]);
    let table: Vec<(String, String)> = d["studiesTable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let cells = row.as_array().unwrap();
            (
                cells[0].as_str().unwrap().to_owned(),
                cells.last().unwrap().as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        table,
        [
            (MARKUP_CLINIC.to_owned(), "1".to_owned()),
            ("Clinic A".to_owned(), "3".to_owned()),
            ("Clinic B".to_owned(), "2".to_owned()),
        ]
    );
    assert_eq!(
        d["images"], 0,
        "markup in a clinic's name became an element"
    );
    assert_eq!(
        d["kpis"],
        serde_json::json!({ "received": 6, "done": 2, "backlog": 4, "overdue": 1 })
    );
    // Turnaround: STAT 20 min, routine 45 min; one task each.
    let turnaround: Vec<Vec<&str>> = d["turnaroundTable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        turnaround,
        [
            vec!["STAT", "1", "20m", "20m", "20m", "20m"],
            vec!["urgent", "0", "—", "—", "—", "—"],
            vec!["routine", "1", "45m", "45m", "45m", "45m"],
        ]
    );
    let bars: BTreeMap<(String, String), u64> = d["turnaroundBars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                (
                    b["label"].as_str().unwrap().to_owned(),
                    b["series"].as_str().unwrap().to_owned(),
                ),
                b["value"].as_f64().unwrap() as u64,
            )
        })
        .collect();
    assert_eq!(bars.len(), 6, "{bars:?}");
    assert_eq!(bars[&("STAT".to_owned(), "p95".to_owned())], 1200);
    assert_eq!(bars[&("routine".to_owned(), "p50".to_owned())], 2700);
    // Backlog: urgent MR open and overdue; CR's clinic's DX, MG, the markup clinic's CR.
    let backlog: Vec<Vec<&str>> = d["backlogTable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        backlog,
        [
            vec!["STAT", "0", "0", "0"],
            vec!["urgent", "1", "0", "1"],
            vec!["routine", "3", "0", "0"],
        ]
    );
    assert!(d["backlogBars"].as_array().unwrap().len() == 2);
    // Discrepancies: Clinic A agreed once, Clinic B one major discrepancy.
    let disc: Vec<(String, String, u64)> = d["discrepancyBars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["label"].as_str().unwrap().to_owned(),
                b["series"].as_str().unwrap().to_owned(),
                b["value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        disc,
        [
            ("Clinic A".to_owned(), "agree".to_owned(), 1),
            ("Clinic B".to_owned(), "major".to_owned(), 1),
        ]
    );
    assert_eq!(r["dashboard7Columns"], 7);

    // 2. Clinics and AE titles.
    let names: Vec<&str> = r["clinicNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&MARKUP_CLINIC) && names.contains(&NEW_CLINIC),
        "{names:?}"
    );
    assert_eq!(r["clinicImages"], 0);
    let dup = r["duplicateClinicError"][0].as_str().unwrap_or("");
    assert!(
        dup.starts_with("Creating the clinic “Hill Clinic 山区” failed"),
        "{dup}"
    );
    let no_port = r["receiverWithoutPortError"][0].as_str().unwrap_or("");
    assert_eq!(
        no_port,
        "An AE title that receives reports needs a host and a port to send them to."
    );
    let row: Vec<&str> = r["aeRow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(&row[..6], ["HILL_RIS", "127.0.0.1", "11113", "—", "—", "✓"]);
    assert_eq!(r["aeRowAfterEdit"][3], "✓", "TLS only after the edit");
    assert!(
        r["clinicHead"]
            .as_str()
            .unwrap()
            .contains("Reports go to HILL_RIS (127.0.0.1:11113)")
    );
    let clinics = archive.pacs_ok(&["clinic", "list", "--json"]);
    let clinics: Value = serde_json::from_str(&clinics).unwrap();
    let hill = clinics
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == NEW_CLINIC)
        .unwrap_or_else(|| panic!("{clinics:#}"));
    let ae = &hill["ae_titles"][0];
    assert_eq!(
        (
            &ae["ae_title"],
            &ae["port"],
            &ae["receives_reports"],
            &ae["tls_only"]
        ),
        (
            &Value::from("HILL_RIS"),
            &Value::from(11113),
            &Value::from(true),
            &Value::from(true)
        ),
        "{hill:#}"
    );

    // 3. Users.
    assert_eq!(r["userCreated"][1], "clinician");
    assert_eq!(r["userCreated"][2], NEW_CLINIC);
    assert_eq!(r["userCreated"][4], "enabled");
    assert_eq!(r["userDisabled"][4], "disabled");
    assert_eq!(
        r["shortPasswordError"][0],
        "The password must have at least 12 characters."
    );
    let login = crate::http::login(server.http_port, "hill.nurse", "hill nurse passphrase 2468");
    login.expect(403, "a disabled user cannot log in");

    // 4. Routing rules.
    let rule: Vec<&str> = r["ruleAfterEdit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(rule[1], "chest-cr");
    assert!(rule[2].contains("description has “thorax”"), "{rule:?}");
    assert_eq!(rule[4], "urgent");
    assert_eq!(r["kneeRule"][5], "disabled");
    runtime().block_on(async {
        let a = archive.open().await;
        let row = sqlx::query(
            "SELECT set_priority, description_contains, \
               (SELECT CASE WHEN enabled THEN 1 ELSE 0 END FROM routing_rules WHERE name = 'msk-mr-knee') \
             FROM routing_rules WHERE name = 'chest-cr'",
        )
        .fetch_one(a.index().pool_for_tests())
        .await
        .unwrap();
        let (set, words, knee): (String, String, i64) =
            (row.get(0), row.get(1), row.get(2));
        assert_eq!((set.as_str(), words.as_str(), knee), ("urgent", "thorax", 0));
        a.index().close().await;
    });

    // 5. Audit: the clinic's creation by the administrator, found by the search.
    let audit = r["audit"].as_array().unwrap();
    assert!(!audit.is_empty(), "{}", r["auditStatus"]);
    assert!(audit.iter().all(|e| e["event"] == "110113"), "{audit:#?}");
    let created = format!("HTTP admin API: create clinic \"{NEW_CLINIC}\"");
    assert!(
        audit.iter().any(|e| {
            let cells = e["cells"].as_array().unwrap();
            cells[4] == "success"
                && cells[5].as_str().unwrap().starts_with("chief")
                && cells[9].as_str().unwrap().starts_with(&created)
        }),
        "no {created:?} in {audit:#?}"
    );
    // Newest first; the page after holds older entries; back again.
    let paging = &r["auditPaging"];
    let first: Vec<i64> = serde_json::from_value(paging["firstPage"].clone()).unwrap();
    assert_eq!(first.len(), 25, "{paging}");
    assert!(first.windows(2).all(|w| w[0] > w[1]), "newest first");
    let second: Vec<i64> = serde_json::from_value(paging["secondPage"].clone()).unwrap();
    assert!(
        !second.is_empty() && second[0] < *first.last().unwrap(),
        "{paging}"
    );
    // Back to the newest page (searching is itself audited: newer entries may have come).
    let back: Vec<i64> = serde_json::from_value(paging["backTo"].clone()).unwrap();
    assert!(back.len() == 25 && back[0] >= first[0], "{paging}");
    assert!(back.iter().all(|id| id > &second[0]), "{paging}");
    assert_eq!(r["auditPageLabel"], "page 2");
    assert_eq!(r["auditImages"], 0);

    // 6. Not an administrator.
    let other_nav: Vec<&str> = r["nonAdminNav"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(!other_nav.contains(&"Admin"), "{other_nav:?}");
    assert!(
        r["nonAdminError"]
            .as_str()
            .unwrap()
            .starts_with("The admin pages are for administrators only."),
        "{}",
        r["nonAdminError"]
    );
    assert_eq!(r["nonAdminApi"], 403);

    // The screenshots, small enough to keep.
    for name in ["admin-dashboard.png", "admin-clinics.png"] {
        let size = std::fs::metadata(shots.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .len();
        assert!(size < 400 * 1024, "{name}: {size} bytes");
    }
}
