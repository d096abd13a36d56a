//! The audit trail against the real binary, on both backends: each audited action produces
//! exactly its event (clinic add, import, C-STORE stored and already archived, refused
//! callers, server start and stop, audit search and verify); `pacs audit verify` passes,
//! then fails naming the entry after the table is altered directly in the database (a row
//! edited, a middle row deleted); the search filters select what they say.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sqlx::Executor;

use crate::per_backend;
use crate::support::*;

const CLINIC: &str = "Audit Township Clinic";
const AE: &str = "AUDIT_SCU";

/// `pacs audit search --json …`.
fn search(archive: &TestArchive, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["audit", "search", "--json"];
    if !args.contains(&"--limit") {
        all.extend(["--limit", "10000"]);
    }
    all.extend_from_slice(args);
    serde_json::from_str(&archive.pacs_ok(&all)).expect("search output is JSON")
}

fn ids(records: &[serde_json::Value]) -> Vec<i64> {
    records.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

/// Runs SQL on the index directly, as someone with access to the database would.
fn sql(archive: &TestArchive, statement: &str) -> Result<(), String> {
    let url = archive
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", archive.data_dir().join("index.db").display()));
    runtime().block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let r = pool
            .execute(sqlx::AssertSqlSafe(statement.to_owned()))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        pool.close().await;
        r
    })
}

/// `pacs audit verify`: (exit code, stdout).
fn verify(archive: &TestArchive, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let out = archive.pacs(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Patient ID, issuer (as the index keys it) and study of a sample file.
fn identity(path: &Path) -> (String, String, String) {
    let (_, attrs) = file_attrs(path);
    let issuer = attrs
        .issuer_of_patient_id
        .filter(|i| !i.trim().is_empty())
        .map(|i| i.trim().to_owned())
        .unwrap_or_else(|| format!("clinic:{CLINIC}"));
    (
        attrs.patient_id.unwrap_or_default().trim().to_owned(),
        issuer,
        attrs.study_instance_uid,
    )
}

fn audit_trail(backend: Backend) {
    let archive = TestArchive::new(backend);
    let files = sample_files();
    let imported: Vec<PathBuf> = files[..3].to_vec();

    // Clinic add: one security-configuration alert, successful; a refused one, failed.
    archive.add_clinic(CLINIC, AE, None);
    assert!(
        !archive
            .pacs(&["clinic", "add", "--name", CLINIC, "--ae-title", AE])
            .status
            .success()
    );
    archive.add_clinic("Far Clinic", "FARAWAY", Some("10.9.9.9"));
    let config = search(&archive, &["--event", "110113"]);
    assert_eq!(config.len(), 3, "{config:#?}");
    for c in &config {
        assert_eq!(c["event_type"], 110129);
        assert_eq!(c["action"], "C");
        assert_eq!(c["user_role"], "operator");
        assert!(
            c["detail"]
                .as_str()
                .unwrap()
                .starts_with("pacs clinic add: ")
        );
    }
    assert_eq!(
        config
            .iter()
            .map(|c| c["outcome"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 4, 0]
    );
    assert!(
        config[1]["outcome_description"]
            .as_str()
            .unwrap()
            .contains("already registered")
    );

    // Import: one 110107 Import per file, by the local operator, with patient and study.
    let import_dir = tempfile::tempdir().unwrap();
    for f in &imported {
        std::fs::copy(f, import_dir.path().join(f.file_name().unwrap())).unwrap();
    }
    archive.pacs_ok(&[
        "import",
        "--quiet",
        "--clinic",
        CLINIC,
        import_dir.path().to_str().unwrap(),
    ]);
    let imports = search(&archive, &["--event", "110107"]);
    assert_eq!(imports.len(), imported.len(), "{imports:#?}");
    for (rec, f) in imports.iter().zip(&imported) {
        let (patient, issuer, study) = identity(f);
        assert_eq!(rec["action"], "C");
        assert_eq!(rec["outcome"], 0);
        assert_eq!(rec["user_role"], "operator");
        assert_eq!(rec["patient_id"], patient.as_str());
        assert_eq!(rec["patient_issuer"], issuer.as_str());
        assert_eq!(rec["study_instance_uid"], study.as_str());
        assert_eq!(rec["sop_instance_uids"][0], sop_instance_uid(f).as_str());
    }

    // The server: start, every sample over C-STORE (the first three already archived),
    // while other processes append (clinic add) at the same time; refused callers.
    let server = archive.start();
    let port = server.dicom_port;
    let admins: Vec<_> = (0..4)
        .map(|i| {
            let mut c = std::process::Command::new(pacs_bin());
            for (k, _) in std::env::vars() {
                if k.starts_with("PACS_") {
                    c.env_remove(k);
                }
            }
            c.envs(archive.env()).args([
                "clinic",
                "add",
                "--name",
                "Busy Clinic",
                "--ae-title",
                &format!("BUSY_{i}"),
            ]);
            std::thread::spawn(move || run_bounded(c, std::time::Duration::from_secs(120)))
        })
        .collect();
    let run = pynetdicom_store(port, AE, &files, &[]);
    assert_eq!(
        run.association.as_deref(),
        Some("established"),
        "{}",
        run.stderr
    );
    assert!(
        run.results.iter().all(|r| r.status == Some(0)),
        "{:?}",
        run.results
    );
    for a in admins {
        let out = a.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let unknown = pynetdicom_store(port, "NOBODY", &files[..1], &[]);
    assert_eq!(
        unknown.association.as_deref(),
        Some("rejected"),
        "{}",
        unknown.stderr
    );
    let far = pynetdicom_store(port, "FARAWAY", &files[..1], &[]);
    assert_eq!(
        far.association.as_deref(),
        Some("rejected"),
        "{}",
        far.stderr
    );
    let status = server.stop();
    assert!(status.success());

    // Exactly one 110104 per instance sent, with the indexed patient and study.
    let transfers = search(&archive, &["--event", "110104"]);
    assert_eq!(transfers.len(), files.len(), "{transfers:#?}");
    let by_uid: HashMap<String, &serde_json::Value> = transfers
        .iter()
        .map(|t| (t["sop_instance_uids"][0].as_str().unwrap().to_owned(), t))
        .collect();
    assert_eq!(by_uid.len(), files.len(), "one event per instance");
    for f in &files {
        let t = by_uid[&sop_instance_uid(f)];
        let (patient, issuer, study) = identity(f);
        let already = imported.contains(f);
        assert_eq!(
            t["action"],
            if already { "R" } else { "C" },
            "{}",
            f.display()
        );
        assert_eq!(t["outcome"], 0);
        assert_eq!(t["user"], AE);
        assert_eq!(t["user_role"], "sending AE");
        assert_eq!(t["source_ip"], "127.0.0.1");
        assert_eq!(t["patient_id"], patient.as_str(), "{}", f.display());
        assert_eq!(t["patient_issuer"], issuer.as_str());
        assert_eq!(t["study_instance_uid"], study.as_str());
        assert_eq!(t["instance_count"], 1);
    }

    // Refused callers: security alerts (node authentication), minor for unknown, serious
    // for a registered AE title from another host.
    let nobody = search(&archive, &["--user", "NOBODY"]);
    assert_eq!(nobody.len(), 1, "{nobody:#?}");
    assert_eq!(nobody[0]["event_id"], 110113);
    assert_eq!(nobody[0]["event_type"], 110126);
    assert_eq!(nobody[0]["outcome"], 4);
    assert_eq!(nobody[0]["source_ip"], "127.0.0.1");
    let far = search(&archive, &["--user", "FARAWAY"]);
    assert_eq!(far.len(), 1);
    assert_eq!(far[0]["outcome"], 8);
    assert!(
        far[0]["outcome_description"]
            .as_str()
            .unwrap()
            .contains("another host")
    );

    // Start and stop.
    let app = search(&archive, &["--event", "110100"]);
    assert_eq!(
        app.iter()
            .map(|a| a["event_type"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![110120, 110121]
    );
    assert_eq!(app[0]["user"], "REGIONAL_PACS");

    // Filters.
    let manifest = manifest();
    let ts1 = manifest
        .iter()
        .filter(|m| m.patient_id == "TS-0001")
        .count();
    assert!(ts1 > 0);
    let p = search(&archive, &["--patient", "TS-0001", "--event", "110104"]);
    assert_eq!(p.len(), ts1);
    assert!(p.iter().all(|r| r["patient_id"] == "TS-0001"));
    let p_limited = search(
        &archive,
        &["--patient", "TS-0001", "--event", "110104", "--limit", "2"],
    );
    assert_eq!(
        ids(&p_limited),
        ids(&p)[p.len() - 2..].to_vec(),
        "the most recent"
    );
    let by_ae_since = search(&archive, &["--user", AE, "--since", "2000-01-01"]);
    assert_eq!(by_ae_since.len(), files.len());
    assert!(search(&archive, &["--until", "2000-01-01"]).is_empty());
    assert!(search(&archive, &["--since", "2999-01-01T00:00:00+08:00"]).is_empty());
    let first_time = transfers[0]["time"].as_str().unwrap().to_owned();
    let last_time = transfers.last().unwrap()["time"]
        .as_str()
        .unwrap()
        .to_owned();
    let window = search(
        &archive,
        &[
            "--event",
            "110104",
            "--since",
            &first_time,
            "--until",
            &last_time,
        ],
    );
    assert_eq!(window.len(), files.len());
    assert!(
        !archive
            .pacs(&["audit", "search", "--event", "110199"])
            .status
            .success()
    );
    assert!(
        !archive
            .pacs(&["audit", "search", "--since", "last week"])
            .status
            .success()
    );
    // The searches themselves are audited (110101), under the patient searched for.
    let used = search(&archive, &["--event", "110101", "--patient", "TS-0001"]);
    assert_eq!(used.len(), 2, "{used:#?}");
    assert!(
        used[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("pacs audit search: patient")
    );
    let text = archive.pacs_ok(&["audit", "search", "--user", "NOBODY"]);
    assert!(text.contains("110113 Security Alert"), "{text}");

    // Verify: intact, then altered directly in the database.
    let (code, out) = verify(&archive, &[]);
    assert_eq!(code, 0, "{out}");
    let all = search(&archive, &[]);
    // A search's own event comes after its results: the last entry is the verify's.
    assert_eq!(all.last().unwrap()["event_id"], 110101);
    let last_before_verify = all[all.len() - 2]["id"].as_i64().unwrap();
    assert!(
        out.starts_with(&format!(
            "audit trail intact: {last_before_verify} events, last id {last_before_verify} hash "
        )),
        "{out}"
    );
    let anchor_id = all.last().unwrap()["id"].as_i64().unwrap();
    let anchor = format!(
        "{anchor_id}:{}",
        all.last().unwrap()["hash"].as_str().unwrap()
    );
    assert_eq!(verify(&archive, &["--anchor", &anchor]).0, 0);

    let (update, delete) = match backend {
        Backend::SqliteFiles => (
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
        ),
        Backend::PostgresS3 => ("DROP TRIGGER audit_log_no_change ON audit_log", ""),
    };
    assert!(
        sql(&archive, "UPDATE audit_log SET detail = 'x' WHERE id = 1")
            .unwrap_err()
            .contains("append-only"),
        "the table refuses changes while its triggers are there"
    );
    sql(&archive, update).unwrap();
    if !delete.is_empty() {
        sql(&archive, delete).unwrap();
    }
    let middle = transfers[transfers.len() / 2]["id"].as_i64().unwrap();
    sql(
        &archive,
        &format!("DELETE FROM audit_log WHERE id = {middle}"),
    )
    .unwrap();
    let (code, out) = verify(&archive, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("entry {middle} is missing (deleted)")),
        "{out}"
    );
    let edited = transfers[2]["id"].as_i64().unwrap();
    assert!(edited < middle);
    sql(
        &archive,
        &format!("UPDATE audit_log SET detail = 'nothing happened' WHERE id = {edited}"),
    )
    .unwrap();
    let (code, out) = verify(&archive, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("entry {edited} was altered")),
        "{out}"
    );
}
per_backend!(audit_trail);

/// The last entries deleted: the chain alone still verifies (the documented limitation);
/// `--anchor` with the id and hash printed earlier finds it.
#[test]
fn deleted_tail_needs_the_anchor() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    archive.add_clinic("Tail Clinic", "TAIL_A", None);
    archive.add_clinic("Tail Clinic", "TAIL_B", None);
    let (code, out) = verify(&archive, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("audit trail intact: 2 events, last id 2 hash "),
        "{out}"
    );
    let hash = out.trim().rsplit(' ').next().unwrap().to_owned();
    sql(&archive, "DROP TRIGGER audit_log_no_delete").unwrap();
    // Entry 3 is the verify itself; delete it and entry 2.
    sql(&archive, "DELETE FROM audit_log WHERE id >= 2").unwrap();
    let (code, out) = verify(&archive, &["--anchor", &format!("2:{hash}")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("anchor entry 2 is missing"), "{out}");
    let (code, out) = verify(&archive, &[]);
    assert_eq!(code, 0, "the chain alone cannot see a deleted tail: {out}");
    assert!(
        out.starts_with("audit trail intact: 2 events, last id 2 hash "),
        "{out}"
    );
    // Entry 2 is now the failed verify's event: another entry under the anchored id.
    let (code, out) = verify(&archive, &["--anchor", &format!("2:{hash}")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("anchor entry 2 has hash"), "{out}");
}

/// The entry of an audited read is committed before the answer leaves (its fsync follows
/// in the background, see `pacs-store/src/index/wal_sync.rs`): pacs killed with SIGKILL
/// right after its last QIDO-RS answer still has an entry for every search it answered,
/// and the chain verifies.
#[test]
fn every_answered_read_is_in_the_trail_after_kill_9() {
    use pacs_store::users::Role;

    let archive = TestArchive::new(Backend::SqliteFiles);
    let token = archive
        .users_with_tokens(
            &[("crash-auditor", Role::Admin, None, &[])],
            Some("crash auditor passphrase 1234"),
            "crash",
        )
        .remove(0);
    let server = archive.start();
    let bearer = format!("Bearer {token}");
    const SEARCHES: usize = 50;
    for i in 0..SEARCHES {
        crate::http::get(
            server.http_port,
            &format!("/dicom-web/studies?PatientID=CRASH-{i}"),
            &[("Authorization", bearer.as_str())],
        )
        .expect(200, "search");
    }
    server.kill9();

    let queries: Vec<String> = search(&archive, &["--event", "110112"])
        .iter()
        .map(|r| r["detail"].as_str().unwrap_or_default().to_owned())
        .collect();
    for i in 0..SEARCHES {
        let asked = format!("QIDO-RS studies ?PatientID=CRASH-{i}");
        assert!(
            queries.contains(&asked),
            "search {i} was answered but its audit entry is gone after the crash: {queries:?}"
        );
    }
    let (code, out) = verify(&archive, &[]);
    assert_eq!(code, 0, "the chain verifies after the crash: {out}");
}
