//! The operator's side: `pacs import`, `check [--repair]`, `stats`, `clinic`, study
//! readiness events, the HTTP endpoints, and a graceful stop in the middle of a send.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::per_backend;
use crate::support::*;

const AE: &str = "CLI_TEST_SCU";

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn exit_code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// (StudyInstanceUID, SeriesInstanceUID) of a file, read by dcmtk (not by the archive's code).
fn study_and_series(path: &Path) -> (String, String) {
    let mut c = dcmtk("dcmdump");
    c.args(["+P", "0020,000d", "+P", "0020,000e"]).arg(path);
    let out = run_bounded(c, Duration::from_secs(30));
    assert!(out.status.success(), "dcmdump {}", path.display());
    let s = String::from_utf8_lossy(&out.stdout);
    let value = |tag: &str| -> String {
        let line = s
            .lines()
            .find(|l| l.starts_with(tag))
            .unwrap_or_else(|| panic!("{tag} in {}", path.display()));
        line.split('[')
            .nth(1)
            .and_then(|r| r.split(']').next())
            .unwrap()
            .to_owned()
    };
    (value("(0020,000d)"), value("(0020,000e)"))
}

// ---------------------------------------------------------------------------------
// 1. Import of the sample set, twice; stats; check.

#[test]
fn import_samples_twice_then_stats_and_check() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    let dir = sample_dir();
    let dir = dir.to_str().unwrap();
    let files = sample_files();
    assert_eq!(files.len(), 24);

    let first = archive.pacs(&["import", "--quiet", dir]);
    let (out, err) = text(&first);
    assert!(
        out.contains(
            "imported 24 new instances, 0 already archived, 0 kept as conflicts, 0 refused, 1 skipped"
        ),
        "{out}\n{err}"
    );
    // The folder also holds MANIFEST.tsv, which is not DICOM: skipped by name, not refused.
    assert!(
        out.contains("skipped") && out.contains("MANIFEST.tsv") && out.contains("not a DICOM file"),
        "{out}"
    );
    assert_eq!(exit_code(&first), Some(0), "{out}\n{err}");

    let second = archive.pacs(&["import", "--quiet", dir]);
    let (out, err) = text(&second);
    assert!(
        out.contains(
            "imported 0 new instances, 24 already archived, 0 kept as conflicts, 0 refused, 1 skipped"
        ),
        "{out}\n{err}"
    );
    assert_eq!(exit_code(&second), Some(0));

    // A damaged DICOM file is refused, with the reason, and the exit code says so.
    let broken_dir = tempfile::tempdir().unwrap();
    let broken = broken_dir.path().join("broken.dcm");
    let whole = std::fs::read(&files[0]).unwrap();
    std::fs::write(&broken, &whole[..whole.len() - 100]).unwrap();
    let third = archive.pacs(&["import", "--quiet", broken.to_str().unwrap()]);
    let (out, _) = text(&third);
    assert!(
        out.contains("0 new instances") && out.contains("1 refused") && out.contains("broken.dcm"),
        "{out}"
    );
    assert_eq!(exit_code(&third), Some(2));

    // Expected counts, from the manifest and dcmtk.
    let manifest = manifest();
    let patients: BTreeSet<(String, String)> = manifest
        .iter()
        .map(|r| (r.patient_id.clone(), r.issuer.clone()))
        .collect();
    let mut studies = BTreeSet::new();
    let mut series = BTreeSet::new();
    for f in &files {
        let (st, se) = study_and_series(f);
        studies.insert(st);
        series.insert(se);
    }
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let stats = archive.stats();
    assert_eq!(stats["instances"], 24, "{stats}");
    assert_eq!(
        stats["patients"].as_u64().unwrap() as usize,
        patients.len(),
        "{stats}"
    );
    assert_eq!(patients.len(), 6);
    assert_eq!(
        stats["studies"].as_u64().unwrap() as usize,
        studies.len(),
        "{stats}"
    );
    assert_eq!(
        stats["series"].as_u64().unwrap() as usize,
        series.len(),
        "{stats}"
    );
    assert_eq!(stats["bytes"].as_u64().unwrap(), bytes, "{stats}");
    assert_eq!(stats["conflicts"], 0, "{stats}");

    // TS-0001 at CLINIC-A and TS-0001 at CLINIC-B are two people.
    let a = archive
        .stored(&sop_instance_uid(&sample_dir().join("ct_01.dcm")))
        .unwrap();
    let b = archive
        .stored(&sop_instance_uid(&sample_dir().join("dx_j2k.dcm")))
        .unwrap();
    assert_eq!(
        (a.patient_id.as_str(), a.issuer.as_str()),
        ("TS-0001", "CLINIC-A")
    );
    assert_eq!(
        (b.patient_id.as_str(), b.issuer.as_str()),
        ("TS-0001", "CLINIC-B")
    );
    assert_ne!(a.patient_name, b.patient_name);

    let check = archive.pacs(&["check"]);
    let (out, _) = text(&check);
    assert_eq!(exit_code(&check), Some(0), "{out}");
    assert!(
        out.contains("checked 24 indexed objects against 24 stored objects")
            && out.contains("archive is clean"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------
// 2. Damage: hash mismatch, missing object, orphans; --repair.

#[test]
fn check_finds_and_repairs_damage() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    let files = sample_files();
    let mut args = vec!["import".to_string(), "--quiet".to_string()];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    archive.pacs_ok(&args);
    let uid_a = sop_instance_uid(&sample_dir().join("ct_01.dcm"));
    let uid_b = sop_instance_uid(&sample_dir().join("ct_02.dcm"));
    let key_a = instance_record(&archive, &uid_a).unwrap().object_key;
    let key_b = instance_record(&archive, &uid_b).unwrap().object_key;
    let path_a = archive.data_dir().join(&key_a);
    let path_b = archive.data_dir().join(&key_b);
    let original_a = std::fs::read(&path_a).unwrap();
    let original_b = std::fs::read(&path_b).unwrap();

    // One flipped byte in A, B gone.
    let mut damaged = original_a.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x01;
    std::fs::write(&path_a, &damaged).unwrap();
    std::fs::remove_file(&path_b).unwrap();
    let check = archive.pacs(&["check"]);
    let (out, _) = text(&check);
    assert_eq!(exit_code(&check), Some(1), "{out}");
    assert!(
        out.contains(&format!("HASH MISMATCH {uid_a} {key_a}")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "MISSING object for indexed instance {uid_b} {key_b}"
        )),
        "{out}"
    );
    assert!(out.contains("ARCHIVE IS DAMAGED"), "{out}");

    // --repair drops B's row but cannot repair A: still exit 1.
    let repair = archive.pacs(&["check", "--repair"]);
    let (out, _) = text(&repair);
    assert_eq!(
        exit_code(&repair),
        Some(1),
        "a hash mismatch must stay damage after --repair:\n{out}"
    );
    assert!(
        out.contains(&format!("removed the index row of {uid_b}")),
        "{out}"
    );
    assert!(out.contains(&format!("HASH MISMATCH {uid_a}")), "{out}");
    assert!(instance_record(&archive, &uid_b).is_none());
    assert_eq!(archive.instance_count(), 23);
    let json = archive.pacs(&["check", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(exit_code(&json), Some(1));
    assert_eq!(
        report["missing_objects"].as_array().unwrap().len(),
        0,
        "{report}"
    );
    assert_eq!(
        report["hash_mismatches"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert!(
        report["hash_mismatches"][0]
            .as_str()
            .unwrap()
            .starts_with(&uid_a),
        "{report}"
    );

    // Put A right: clean.
    std::fs::write(&path_a, &original_a).unwrap();
    let check = archive.pacs(&["check"]);
    assert_eq!(exit_code(&check), Some(0), "{}", text(&check).0);

    // Orphans: a second copy of A, and B's object back under a new key (as after a crash
    // between storing and indexing).
    let dup_key = format!(
        "objects/ab/abcd{}.dcm",
        &uuid::Uuid::new_v4().simple().to_string()[4..]
    );
    let b_key = format!(
        "objects/ef/ef01{}.dcm",
        &uuid::Uuid::new_v4().simple().to_string()[4..]
    );
    for (k, bytes) in [(&dup_key, &original_a), (&b_key, &original_b)] {
        let p = archive.data_dir().join(k);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
    let check = archive.pacs(&["check"]);
    let (out, _) = text(&check);
    assert_eq!(exit_code(&check), Some(1), "{out}");
    assert!(out.contains(&format!("ORPHANED object {dup_key}")), "{out}");
    assert!(out.contains(&format!("ORPHANED object {b_key}")), "{out}");

    let repair = archive.pacs(&["check", "--repair"]);
    let (out, _) = text(&repair);
    assert_eq!(exit_code(&repair), Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "removed orphaned object {dup_key}: the same instance is archived"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("re-indexed orphaned object {b_key}")),
        "{out}"
    );
    assert!(
        !archive.data_dir().join(&dup_key).exists(),
        "the duplicate orphan is still there"
    );
    assert_eq!(archive.instance_count(), 24);
    let b = archive.stored(&uid_b).expect("B re-indexed");
    assert_eq!(b.dataset, dataset_bytes(&original_b));
    assert_eq!(archive.stored(&uid_a).unwrap().whole, original_a);
    assert_eq!(
        object_files(&archive).len(),
        24,
        "{:?}",
        object_files(&archive)
    );

    let check = archive.pacs(&["check"]);
    let (out, _) = text(&check);
    assert_eq!(exit_code(&check), Some(0), "{out}");
    assert!(
        out.contains("checked 24 indexed objects against 24 stored objects"),
        "{out}"
    );
    assert_eq!(archive.staging_files(), 0);
}

// ---------------------------------------------------------------------------------
// 3. Clinics and AE titles.

#[test]
fn clinic_registration_and_listing() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    let out = archive.pacs_ok(&["clinic", "add", "--name", "Clinic A", "--ae-title", "CT1"]);
    assert!(
        out.contains("registered AE title CT1 for clinic \"Clinic A\""),
        "{out}"
    );
    let out = archive.pacs_ok(&[
        "clinic",
        "add",
        "--name",
        "Clinic B",
        "--ae-title",
        "CT2",
        "--host",
        "10.0.0.5",
    ]);
    assert!(out.contains("only from 10.0.0.5"), "{out}");

    let refused = |args: &[&str], needle: &str| {
        let o = archive.pacs(args);
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{args:?} succeeded:\n{out}");
        assert!(err.contains(needle), "{args:?}: no {needle:?} in:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    refused(
        &["clinic", "add", "--name", "Clinic C", "--ae-title", "CT1"],
        "AE title CT1 is already registered for clinic \"Clinic A\"",
    );
    // Trailing spaces are not significant: the same AE title.
    refused(
        &["clinic", "add", "--name", "Clinic C", "--ae-title", "CT1 "],
        "AE title CT1 is already registered for clinic \"Clinic A\"",
    );
    refused(
        &[
            "clinic",
            "add",
            "--name",
            "Clinic C",
            "--ae-title",
            "ABCDEFGHIJKLMNOPQ",
        ],
        "longer than 16 characters",
    );
    refused(
        &["clinic", "add", "--name", "Clinic C", "--ae-title", "CT\\3"],
        "only printable ASCII without backslash",
    );
    refused(
        &["clinic", "add", "--name", "Clinic C", "--ae-title", "   "],
        "may not be empty",
    );
    refused(
        &[
            "clinic",
            "add",
            "--name",
            "Clinic C",
            "--ae-title",
            "CT3",
            "--host",
            "not-an-ip",
        ],
        "not-an-ip",
    );

    let list: serde_json::Value =
        serde_json::from_str(&archive.pacs_ok(&["clinic", "list", "--json"])).unwrap();
    let clinics = list.as_array().expect("an array of clinics");
    // The failed registrations created no clinic.
    let names: Vec<&str> = clinics
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Clinic A", "Clinic B"], "{list}");
    for c in clinics {
        assert!(c["id"].is_i64(), "{c}");
        let aes = c["ae_titles"].as_array().unwrap();
        assert_eq!(aes.len(), 1, "{c}");
        assert_eq!(aes[0]["clinic_id"], c["id"]);
        assert_eq!(aes[0]["clinic_name"], c["name"]);
    }
    assert_eq!(clinics[0]["ae_titles"][0]["ae_title"], "CT1");
    assert!(clinics[0]["ae_titles"][0]["host"].is_null());
    assert_eq!(clinics[1]["ae_titles"][0]["ae_title"], "CT2");
    assert_eq!(clinics[1]["ae_titles"][0]["host"], "10.0.0.5");

    let plain = archive.pacs_ok(&["clinic", "list"]);
    assert!(
        plain.contains("Clinic A") && plain.contains("CT1") && plain.contains("from 10.0.0.5"),
        "{plain}"
    );
}

// ---------------------------------------------------------------------------------
// 4. Study readiness events.

fn study_readiness_events(backend: Backend) {
    let archive = TestArchive::new(backend).with_env("PACS_STUDY_QUIET_SECONDS", "1");
    archive.add_clinic("Ready Clinic", AE, None);
    let server = archive.start();
    let work = tempfile::tempdir().unwrap();
    let seed = 9_341;
    let files = sample_dicom::write_ct_series(work.path(), 4, 64, 64, seed).unwrap();
    let study = sample_dicom::StudySpec::new(seed).study_instance_uid();
    let (first, late) = files.split_at(3);

    let run = pynetdicom_store(server.dicom_port, AE, first, &[]);
    assert!(
        run.results.iter().all(|r| r.status == Some(0)) && run.results.len() == 3,
        "{run:?}"
    );
    let sent_at = Instant::now();
    let of_study = |kind: &str| -> Vec<pacs_store::index::EventRecord> {
        events(&archive)
            .into_iter()
            .filter(|e| e.kind == kind && e.study_instance_uid == study)
            .collect()
    };
    let ready = wait_for(Duration::from_secs(15), || {
        Some(of_study("study_ready")).filter(|v| !v.is_empty())
    })
    .unwrap_or_else(|| {
        panic!(
            "no study_ready event within 15 s; events: {:?}\nlog:\n{}",
            events(&archive),
            server.log()
        )
    });
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert!(sent_at.elapsed() < Duration::from_secs(15));
    assert_eq!(ready[0].payload["number_of_instances"], 3, "{:?}", ready[0]);
    let stored = of_study("instance_stored");
    let stored_uids: BTreeSet<String> = stored
        .iter()
        .filter_map(|e| e.sop_instance_uid.clone())
        .collect();
    let sent_uids: BTreeSet<String> = first.iter().map(|p| sop_instance_uid(p)).collect();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert_eq!(stored_uids, sent_uids);
    assert!(
        stored.iter().all(|e| e.id < ready[0].id),
        "study_ready before an instance_stored event"
    );
    let last_received = stored.iter().map(|e| e.created_at).max().unwrap();
    assert!(
        ready[0].created_at - last_received >= 1_000_000,
        "study_ready {} µs after the last instance, quiet period is 1 s",
        ready[0].created_at - last_received
    );
    assert!(of_study("study_updated").is_empty());

    // A late image re-opens the study: study_updated after another quiet period.
    let run = pynetdicom_store(server.dicom_port, AE, late, &[]);
    assert_eq!(
        run.results.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![Some(0)],
        "{run:?}"
    );
    let updated = wait_for(Duration::from_secs(15), || {
        Some(of_study("study_updated")).filter(|v| !v.is_empty())
    })
    .unwrap_or_else(|| {
        panic!(
            "no study_updated event within 15 s; events: {:?}",
            events(&archive)
        )
    });
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert_eq!(
        updated[0].payload["number_of_instances"], 4,
        "{:?}",
        updated[0]
    );
    assert_eq!(of_study("instance_stored").len(), 4);
    assert_eq!(
        of_study("study_ready").len(),
        1,
        "a second study_ready instead of study_updated"
    );
    let last_stored = of_study("instance_stored")
        .iter()
        .map(|e| e.id)
        .max()
        .unwrap();
    assert!(updated[0].id > last_stored);
    assert!(server.log().contains("study ready to read"));
}
per_backend!(study_readiness_events);

// ---------------------------------------------------------------------------------
// 5. HTTP.

fn assert_security_headers(head: &str, what: &str) {
    let h = head.to_ascii_lowercase();
    for needle in [
        "content-security-policy:",
        "x-content-type-options: nosniff",
        "x-frame-options:",
        "referrer-policy:",
    ] {
        assert!(h.contains(needle), "{what}: no {needle:?} in\n{head}");
    }
}

/// GET with `Authorization: Bearer TOKEN`: (status, head, body).
fn http_get_bearer(port: u16, path: &str, token: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

#[test]
fn http_health_metrics_and_unknown_route() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    archive.add_clinic("HTTP Clinic", AE, None);
    // Prometheus scrapes /metrics with the bearer token of a service account.
    archive.pacs_ok(&["user", "add", "--username", "scraper", "--role", "service"]);
    let created = archive.pacs_ok(&["user", "token", "create", "scraper"]);
    let token = created
        .lines()
        .find(|l| l.starts_with("pacs_"))
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    let server = archive.start();

    let (status, head, body) = server.http_get("/healthz");
    assert_eq!(status, 200, "{head}\n{body}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(v, serde_json::json!({ "status": "ok" }));
    assert_security_headers(&head, "/healthz");

    let file = sample_dir().join("ct_01.dcm");
    let run = pynetdicom_store(server.dicom_port, AE, std::slice::from_ref(&file), &[]);
    assert_eq!(
        run.results.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![Some(0)],
        "{run:?}"
    );

    let (status, head, _) = server.http_get("/metrics");
    assert_eq!(status, 401, "/metrics without credentials: {head}");
    let (status, head, body) = http_get_bearer(server.http_port, "/metrics", &token);
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    let stored_total: f64 = body
        .lines()
        .find(|l| l.starts_with("pacs_instances_stored_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no pacs_instances_stored_total sample in\n{body}"));
    assert!(
        stored_total >= 1.0,
        "pacs_instances_stored_total {stored_total}"
    );
    assert!(
        body.lines().any(|l| l.starts_with("pacs_ingest_seconds")),
        "no pacs_ingest_seconds in\n{body}"
    );
    assert_security_headers(&head, "/metrics");

    for path in [
        "/no/such/route",
        "/healthz/../../etc/passwd",
        "/%3Cscript%3E",
    ] {
        // Without credentials the caller does not learn which routes exist.
        assert_eq!(server.http_get(path).0, 401, "{path} without credentials");
        let (status, head, body) = http_get_bearer(server.http_port, path, &token);
        assert_eq!(status, 404, "{path}: {head}\n{body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}"));
        assert!(v["error"].is_string(), "{path}: {body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        assert!(
            !body.contains("passwd") && !body.to_lowercase().contains("script"),
            "the 404 body echoes the path: {body}"
        );
        assert_security_headers(&head, path);
    }
}

// ---------------------------------------------------------------------------------
// 6. SIGTERM while a modality is sending.

fn sigterm_during_a_send_keeps_every_acknowledged_store(backend: Backend) {
    let archive = TestArchive::new(backend);
    archive.add_clinic("Busy Clinic", AE, None);
    let server = archive.start();
    let work = tempfile::tempdir().unwrap();
    let files = sample_dicom::write_ct_series(work.path(), 50, 64, 64, 5150).unwrap();

    // pynetdicom does not notice an A-ABORT that arrives while it waits for a C-STORE
    // response, and waits its DIMSE timeout: keep that short.
    let mut child = store_scu_command(server.dicom_port, AE, &files, &["--timeout", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    // Wait for a few acknowledged stores, then stop the server in the middle of the send.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked = 0;
    while acked < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("fewer than 3 stores in 60 s; log:\n{}", server.log()));
        if line.contains("\"status\": 0") {
            acked += 1;
        }
    }
    let log_path = server.log_path.clone();
    let stopping = Instant::now();
    let status = server.stop();
    let took = stopping.elapsed();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "pacs serve exited with {status} after SIGTERM; log:\n{log}"
    );
    assert!(
        took < Duration::from_secs(30),
        "stopping took {took:?} (grace period 30 s)"
    );

    // The sender ends (the association is gone).
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < end,
            "the sender did not end after the server stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = reader.join().unwrap();
    let (_, results) = parse_scu_output(lines.join("\n").as_bytes());
    let acknowledged: Vec<&StoreResult> = results.iter().filter(|r| r.status == Some(0)).collect();
    println!(
        "{} of {} stores acknowledged before the stop ({took:?})",
        acknowledged.len(),
        files.len()
    );
    assert!(acknowledged.len() >= 3);
    assert!(
        acknowledged.len() < files.len(),
        "all {} stores went through before the stop: the test did not stop the server mid-send",
        files.len()
    );
    // Every acknowledged store is archived byte for byte; nothing else is.
    let by_file: BTreeMap<&str, &PathBuf> =
        files.iter().map(|p| (p.to_str().unwrap(), p)).collect();
    for r in &acknowledged {
        let path = by_file[r.file.as_str()];
        let uid = r.sop_instance_uid.as_deref().unwrap();
        let stored = archive
            .stored(uid)
            .unwrap_or_else(|| panic!("acknowledged {uid} ({}) is not archived", r.file));
        assert_eq!(
            stored.dataset,
            dataset_bytes(&std::fs::read(path).unwrap()),
            "{uid} differs"
        );
    }
    let count = archive.instance_count() as usize;
    assert!(
        count >= acknowledged.len() && count <= acknowledged.len() + 1,
        "{count} instances archived, {} acknowledged",
        acknowledged.len()
    );
    let check = archive.pacs(&["check"]);
    let (out, _) = text(&check);
    assert_eq!(exit_code(&check), Some(0), "{out}");
    assert!(log.contains("shutting down"), "{log}");
}
per_backend!(sigterm_during_a_send_keeps_every_acknowledged_store);
