//! C-FIND against the real binary with dcmtk's findscu: study root (STUDY, SERIES, IMAGE)
//! and patient root (PATIENT) levels, Chinese names with wildcards, scoped to the calling
//! AE's clinic, bad values refused with a status, every query audited.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::per_backend;
use crate::support::*;

/// Each pending response of findscu's output: tag "(gggg,eeee)" → value.
pub fn responses(out: &std::process::Output) -> Vec<BTreeMap<String, String>> {
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let mut all = Vec::new();
    let mut current: Option<BTreeMap<String, String>> = None;
    for line in text.lines() {
        let line = line.trim_start_matches("I: ");
        if line.starts_with("Find Response:") {
            if let Some(c) = current.take() {
                all.push(c);
            }
            current = Some(BTreeMap::new());
        } else if line.starts_with("Received Final Find Response") {
            if let Some(c) = current.take() {
                all.push(c);
            }
        } else if let (Some(c), Some(rest)) = (current.as_mut(), line.strip_prefix('(')) {
            let tag = format!("({}", &rest[..10.min(rest.len())]);
            let value = line
                .split_once('[')
                .and_then(|(_, v)| v.split_once(']'))
                .map(|(v, _)| v.trim_end_matches(['\0', ' ']).to_owned())
                .unwrap_or_default();
            c.insert(tag.to_ascii_lowercase(), value);
        }
    }
    if let Some(c) = current {
        all.push(c);
    }
    all
}

pub fn findscu(port: u16, aet: &str, model: &str, keys: &[&str]) -> std::process::Output {
    let mut c = dcmtk("findscu");
    c.args([
        "-v",
        model,
        "-aet",
        aet,
        "-aec",
        "REGIONAL_PACS",
        "-to",
        "20",
    ]);
    for k in keys {
        c.args(["-k", k]);
    }
    c.args(["127.0.0.1", &port.to_string()]);
    run_bounded(c, std::time::Duration::from_secs(60))
}

pub fn values(rs: &[BTreeMap<String, String>], tag: &str) -> BTreeSet<String> {
    rs.iter().filter_map(|r| r.get(tag).cloned()).collect()
}

/// (study, series, instance, patient id, name) of a sample file.
fn identity(path: &Path) -> (String, String, String, String, String) {
    let (_, a) = file_attrs(path);
    (
        a.study_instance_uid,
        a.series_instance_uid,
        a.sop_instance_uid,
        a.patient_id.unwrap_or_default(),
        a.patient_name
            .map(|n| n.to_dicom_string())
            .unwrap_or_default(),
    )
}

fn c_find(backend: Backend) {
    let archive = TestArchive::new(backend);
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    let files = sample_files();
    let (b_files, a_files): (Vec<PathBuf>, Vec<PathBuf>) = files.iter().cloned().partition(|f| {
        let n = f.file_name().unwrap().to_string_lossy();
        n.starts_with("cr_") || n.starts_with("dx_")
    });
    for (clinic, list) in [("Clinic A", &a_files), ("Clinic B", &b_files)] {
        let mut args = vec!["import", "--quiet", "--clinic", clinic];
        let paths: Vec<String> = list.iter().map(|p| p.display().to_string()).collect();
        args.extend(paths.iter().map(String::as_str));
        archive.pacs_ok(&args);
    }
    let a: Vec<_> = a_files.iter().map(|p| identity(p)).collect();
    let b: Vec<_> = b_files.iter().map(|p| identity(p)).collect();
    let server = archive.start();
    let port = server.dicom_port;

    // Study level, Chinese-name patient by a Latin wildcard: that patient's studies, with
    // the name in both scripts, UTF-8.
    let out = findscu(
        port,
        "CLINIC_A_AE",
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            "PatientName=liu*",
            "StudyInstanceUID",
            "PatientID",
            "NumberOfStudyRelatedInstances",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let rs = responses(&out);
    let liu: BTreeSet<String> = a
        .iter()
        .filter(|i| i.4.starts_with("Liu^"))
        .map(|i| i.0.clone())
        .collect();
    assert_eq!(values(&rs, "(0020,000d)"), liu);
    assert!(
        rs.iter().all(|r| r["(0010,0010)"] == "Liu^Yan=刘^䶮"),
        "{rs:?}"
    );
    assert!(rs.iter().all(|r| r["(0008,0005)"] == "ISO_IR 192"));
    let instances: usize = rs
        .iter()
        .map(|r| r["(0020,1208)"].parse::<usize>().unwrap())
        .sum();
    assert_eq!(
        instances,
        a.iter().filter(|i| i.4.starts_with("Liu^")).count()
    );

    // Patient root, patient level: each of clinic A's patients once.
    let out = findscu(
        port,
        "CLINIC_A_AE",
        "-P",
        &["QueryRetrieveLevel=PATIENT", "PatientName", "PatientID"],
    );
    let rs = responses(&out);
    let patients: BTreeSet<String> = a.iter().map(|i| i.4.clone()).collect();
    assert_eq!(values(&rs, "(0010,0010)"), patients, "{rs:?}");
    assert_eq!(rs.len(), patients.len(), "once per patient");

    // Series and image level within a study.
    let (study, ..) = a
        .iter()
        .find(|i| i.4.starts_with("Huang^"))
        .unwrap()
        .clone();
    let out = findscu(
        port,
        "CLINIC_A_AE",
        "-S",
        &[
            "QueryRetrieveLevel=SERIES",
            &format!("StudyInstanceUID={study}"),
            "SeriesInstanceUID",
            "Modality",
        ],
    );
    let series: BTreeSet<String> = a
        .iter()
        .filter(|i| i.0 == study)
        .map(|i| i.1.clone())
        .collect();
    assert_eq!(values(&responses(&out), "(0020,000e)"), series);
    let out = findscu(
        port,
        "CLINIC_A_AE",
        "-S",
        &[
            "QueryRetrieveLevel=IMAGE",
            &format!("StudyInstanceUID={study}"),
            "SOPInstanceUID",
        ],
    );
    let sops: BTreeSet<String> = a
        .iter()
        .filter(|i| i.0 == study)
        .map(|i| i.2.clone())
        .collect();
    assert_eq!(values(&responses(&out), "(0008,0018)"), sops);

    // Clinic B's modality finds clinic B's studies only, whatever it asks.
    for keys in [
        vec!["QueryRetrieveLevel=STUDY", "StudyInstanceUID"],
        vec![
            "QueryRetrieveLevel=STUDY",
            "PatientName=Liu*",
            "StudyInstanceUID",
        ],
    ] {
        let out = findscu(port, "CLINIC_B_AE", "-S", &keys);
        let got = values(&responses(&out), "(0020,000d)");
        let mine: BTreeSet<String> = b.iter().map(|i| i.0.clone()).collect();
        assert!(got.is_subset(&mine), "{got:?}");
        if keys.len() == 2 {
            assert_eq!(got, mine);
        }
    }

    // A bad value: refused with 0xA900, no matches; the server goes on.
    let out = findscu(
        port,
        "CLINIC_A_AE",
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            "StudyDate=2024-13",
            "StudyInstanceUID",
        ],
    );
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("DataSetDoesNotMatchSOPClass"), "{text}");
    assert!(responses(&out).is_empty());
    let out = findscu(
        port,
        "CLINIC_A_AE",
        "-S",
        &["QueryRetrieveLevel=PATIENT", "PatientID"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Final Find Response (Failed: UnableToProcess)"),
        "PATIENT level is not in the study root model"
    );
    assert!(
        echoscu(port, "CLINIC_A_AE", "REGIONAL_PACS")
            .status
            .success()
    );

    // Audited: one 110112 Query per C-FIND, by the AE.
    let out = archive.pacs_ok(&[
        "audit",
        "search",
        "--user",
        "CLINIC_A_AE",
        "--event",
        "110112",
        "--json",
    ]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(events.len(), 6, "{out}");
    assert_eq!(
        events.iter().filter(|e| e["outcome"] == 4).count(),
        2,
        "{out}"
    );
    drop(server);
}

per_backend!(c_find);

pub fn getscu(port: u16, aet: &str, out_dir: &std::path::Path, keys: &[&str]) -> String {
    let mut c = dcmtk("getscu");
    c.args([
        "-v",
        "-S",
        "-aet",
        aet,
        "-aec",
        "REGIONAL_PACS",
        "-to",
        "20",
        "-od",
    ])
    .arg(out_dir);
    for k in keys {
        c.args(["-k", k]);
    }
    c.args(["127.0.0.1", &port.to_string()]);
    let out = run_bounded(c, std::time::Duration::from_secs(120));
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// "Number of Completed Suboperations : N" and the like from getscu's final report.
pub fn suboperations(report: &str, what: &str) -> u32 {
    report
        .lines()
        .rev()
        .find(|l| l.contains(&format!("Number of {what} Suboperations")))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {what} count in {report}"))
}

/// C-GET with dcmtk's getscu: a study comes back on the same association, each data set
/// byte-identical to the stored one; another clinic's modality gets nothing; an object
/// stored compressed fails its sub-operation when the peer offered no context for it.
fn c_get(backend: Backend) {
    let archive = TestArchive::new(backend);
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    let dir = sample_dir();
    archive.pacs_ok(&[
        "import",
        "--quiet",
        "--clinic",
        "Clinic A",
        &dir.display().to_string(),
    ]);
    let ct: Vec<PathBuf> = ct_sample_files();
    let study = identity(&ct[0]).0;
    let server = archive.start();
    let port = server.dicom_port;

    let out = tempfile::tempdir().unwrap();
    let report = getscu(
        port,
        "CLINIC_A_AE",
        out.path(),
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyInstanceUID={study}"),
        ],
    );
    assert_eq!(
        suboperations(&report, "Completed"),
        ct.len() as u32,
        "{report}"
    );
    assert_eq!(suboperations(&report, "Failed"), 0, "{report}");
    let received = files_under(out.path());
    assert_eq!(received.len(), ct.len());
    for f in &received {
        let bytes = std::fs::read(f).unwrap();
        let sop = sop_instance_uid(f);
        let stored = archive.stored(&sop).expect("a stored instance came back");
        assert!(dataset_bytes(&bytes) == stored.dataset, "{sop} differs");
    }

    // Clinic B's modality: nothing of clinic A's study.
    let out_b = tempfile::tempdir().unwrap();
    let report = getscu(
        port,
        "CLINIC_B_AE",
        out_b.path(),
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyInstanceUID={study}"),
        ],
    );
    assert_eq!(suboperations(&report, "Completed"), 0, "{report}");
    assert!(files_under(out_b.path()).is_empty());

    // The US cine is stored as JPEG baseline; getscu proposes uncompressed syntaxes only:
    // it comes decoded, in explicit VR little endian.
    let us = sample_dir().join("us_cine_jpeg.dcm");
    let (us_study, us_series, us_sop, ..) = identity(&us);
    let out_us = tempfile::tempdir().unwrap();
    let report = getscu(
        port,
        "CLINIC_A_AE",
        out_us.path(),
        &[
            "QueryRetrieveLevel=IMAGE",
            &format!("StudyInstanceUID={us_study}"),
            &format!("SeriesInstanceUID={us_series}"),
            &format!("SOPInstanceUID={us_sop}"),
        ],
    );
    assert_eq!(suboperations(&report, "Failed"), 0, "{report}");
    assert_eq!(suboperations(&report, "Completed"), 1, "{report}");
    let got = files_under(out_us.path());
    assert_eq!(got.len(), 1);
    let meta = file_attrs(&got[0]).0;
    assert_eq!(meta.transfer_syntax_uid, "1.2.840.10008.1.2.1");

    // Audited: the retrieve by CLINIC_A_AE, with its instances.
    let log = archive.pacs_ok(&[
        "audit",
        "search",
        "--user",
        "CLINIC_A_AE",
        "--event",
        "110104",
        "--json",
    ]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    assert!(
        events.iter().any(|e| e["action"] == "R"
            && e["study_instance_uid"] == study.as_str()
            && e["instance_count"] == ct.len()),
        "{log}"
    );
    drop(server);
}

per_backend!(c_get);

fn movescu(port: u16, aet: &str, dest: &str, keys: &[&str]) -> String {
    let mut c = dcmtk("movescu");
    c.args([
        "-v",
        "-S",
        "-aet",
        aet,
        "-aec",
        "REGIONAL_PACS",
        "-aem",
        dest,
        "-to",
        "20",
    ]);
    for k in keys {
        c.args(["-k", k]);
    }
    c.args(["127.0.0.1", &port.to_string()]);
    let out = run_bounded(c, std::time::Duration::from_secs(120));
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// C-MOVE with dcmtk's movescu to a clinic workstation (dcmtk's storescp): the study
/// arrives byte-identical; a destination of another clinic or an unknown one is refused;
/// another clinic's modality moves nothing of this clinic's.
fn c_move(backend: Backend) {
    let archive = TestArchive::new(backend);
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    let ws_a = Workstation::start("CLINIC_A_WS");
    let ws_b = Workstation::start("CLINIC_B_WS");
    for (clinic, ae, ws) in [
        ("Clinic A", "CLINIC_A_WS", &ws_a),
        ("Clinic B", "CLINIC_B_WS", &ws_b),
    ] {
        archive.add_destination(clinic, ae, ws.port);
    }
    let dir = sample_dir();
    archive.pacs_ok(&[
        "import",
        "--quiet",
        "--clinic",
        "Clinic A",
        &dir.display().to_string(),
    ]);
    let ct: Vec<PathBuf> = ct_sample_files();
    let study = identity(&ct[0]).0;
    let server = archive.start();
    let port = server.dicom_port;
    let keys = [
        "QueryRetrieveLevel=STUDY".to_owned(),
        format!("StudyInstanceUID={study}"),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();

    let report = movescu(port, "CLINIC_A_AE", "CLINIC_A_WS", &keys);
    assert!(report.contains("Final Move Response (Success)"), "{report}");
    let received = files_under(ws_a.dir.path());
    assert_eq!(received.len(), ct.len(), "{report}");
    for f in &received {
        let sop = sop_instance_uid(f);
        let stored = archive.stored(&sop).expect("a stored instance arrived");
        assert!(
            dataset_bytes(&std::fs::read(f).unwrap()) == stored.dataset,
            "{sop}"
        );
    }

    for dest in ["CLINIC_B_WS", "NOWHERE"] {
        let report = movescu(port, "CLINIC_A_AE", dest, &keys);
        assert!(
            report.contains("MoveDestinationUnknown"),
            "{dest}: {report}"
        );
    }
    assert!(files_under(ws_b.dir.path()).is_empty());
    let report = movescu(port, "CLINIC_B_AE", "CLINIC_B_WS", &keys);
    assert!(report.contains("Final Move Response (Success)"), "{report}");
    assert!(
        files_under(ws_b.dir.path()).is_empty(),
        "clinic B moved clinic A's study"
    );

    let log = archive.pacs_ok(&[
        "audit",
        "search",
        "--user",
        "CLINIC_A_AE",
        "--event",
        "110104",
        "--json",
    ]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    assert!(
        events.iter().any(|e| e["action"] == "R"
            && e["instance_count"] == ct.len()
            && e["detail"]
                .as_str()
                .unwrap()
                .starts_with("C-MOVE to CLINIC_A_WS")),
        "{log}"
    );
    assert_eq!(
        events.iter().filter(|e| e["outcome"] == 4).count(),
        2,
        "{log}"
    );
    drop(server);
}

per_backend!(c_move);

/// C-MOVE to a workstation that takes only implicit VR little endian (storescp +xi): the
/// JPEG-LS MR series arrives decoded and re-encoded in that syntax,
/// with all their pixels; a C-GET whose peer takes uncompressed syntaxes only gets the
/// series converted too.
fn retrieve_converts_for_uncompressed_only_peers(backend: Backend) {
    let archive = TestArchive::new(backend);
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    let port = free_port();
    archive.add_destination("Clinic A", "OLD_WS", port);
    let dir = sample_dir();
    archive.pacs_ok(&[
        "import",
        "--quiet",
        "--clinic",
        "Clinic A",
        &dir.display().to_string(),
    ]);
    let ws = Workstation::start_with("OLD_WS", port, &["+xi"]);
    let server = archive.start();
    let mr: Vec<PathBuf> = sample_files()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("mr_jpegls")
        })
        .collect();
    assert_eq!(mr.len(), 5);
    let study = identity(&mr[0]).0;
    let keys = [
        "QueryRetrieveLevel=STUDY".to_owned(),
        format!("StudyInstanceUID={study}"),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let report = movescu(server.dicom_port, "CLINIC_A_AE", "OLD_WS", &keys);
    assert!(report.contains("Final Move Response (Success)"), "{report}");
    let received = files_under(ws.dir.path());
    let mr_received: Vec<&PathBuf> = received
        .iter()
        .filter(|f| mr.iter().any(|m| identity(m).2 == sop_instance_uid(f)))
        .collect();
    assert_eq!(mr_received.len(), 5, "{report}");
    for f in mr_received {
        let dump = std::process::Command::new("/usr/bin/dcmdump")
            .args([
                "-q",
                "-Un",
                "+P",
                "0002,0010",
                "+P",
                "0028,0010",
                "+P",
                "0028,0011",
            ])
            .args(["+P", "7fe0,0010"])
            .arg(f)
            .output()
            .unwrap();
        let dump = String::from_utf8_lossy(&dump.stdout);
        assert!(
            dump.contains("[1.2.840.10008.1.2]"),
            "not implicit VR LE: {dump}"
        );
        // Native pixel data: rows × columns × 2 bytes, not an encapsulated stream.
        let num = |tag: &str| -> u64 {
            let line = dump.lines().find(|l| l.starts_with(tag)).unwrap();
            line.split_whitespace()
                .nth(2)
                .unwrap()
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .unwrap_or(0)
        };
        let (rows, cols) = (num("(0028,0010)"), num("(0028,0011)"));
        let pixels = dump.lines().find(|l| l.starts_with("(7fe0,0010)")).unwrap();
        assert!(
            pixels.contains(&format!("# {},", rows * cols * 2)),
            "{rows}×{cols}: {pixels}"
        );
    }

    // C-GET by a getscu that proposes uncompressed syntaxes only (its default): the JPEG-LS
    // series and the deflated SR come converted, every sub-operation completes.
    let out = tempfile::tempdir().unwrap();
    let report = getscu(server.dicom_port, "CLINIC_A_AE", out.path(), &keys);
    // The study: the MR series, a deflated SR and a PDF (those two converted as well).
    let in_study = sample_files()
        .iter()
        .filter(|f| identity(f).0 == study)
        .count() as u32;
    assert!(in_study > 5);
    assert_eq!(suboperations(&report, "Completed"), in_study, "{report}");
    assert_eq!(suboperations(&report, "Failed"), 0, "{report}");
    for f in files_under(out.path()) {
        let dump = std::process::Command::new("/usr/bin/dcmdump")
            .args(["-q", "-Un", "+P", "0002,0010"])
            .arg(&f)
            .output()
            .unwrap();
        let dump = String::from_utf8_lossy(&dump.stdout);
        assert!(dump.contains("[1.2.840.10008.1.2.1]"), "{dump}");
    }
    drop(server);
}

per_backend!(retrieve_converts_for_uncompressed_only_peers);

/// Runs tests/peers/retrieve_cancel.py (pynetdicom): a C-MOVE or C-GET of `study`
/// cancelled after its first pending response; its JSON report.
fn retrieve_cancel(
    mode: &str,
    port: u16,
    study: &str,
    dest: Option<(&str, u16)>,
) -> serde_json::Value {
    let mut c = std::process::Command::new("python3");
    c.arg(repo_root().join("tests/peers/retrieve_cancel.py"))
        .args([mode, "--port", &port.to_string(), "--aet", "CLINIC_A_AE"])
        .args(["--aec", "REGIONAL_PACS", "--study", study]);
    if let Some((aet, dest_port)) = dest {
        c.args(["--dest-aet", aet, "--dest-port", &dest_port.to_string()]);
    }
    let out = run_bounded(c, std::time::Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "retrieve_cancel.py {mode}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A C-MOVE and a C-GET cancelled half-way (PS3.4 C.4.2.3.2, C.4.3.3.2): the archive
/// stops after the sub-operation in flight and answers Cancel (0xFE00) with counts that
/// add up — completed as many as the destination received, the rest remaining — and the
/// association goes on serving.
fn c_move_and_c_get_cancel(backend: Backend) {
    let archive = TestArchive::new(backend);
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    let dest_port = free_port();
    archive.add_destination("Clinic A", "SLOW_WS", dest_port);
    let dir = sample_dir();
    archive.pacs_ok(&[
        "import",
        "--quiet",
        "--clinic",
        "Clinic A",
        &dir.display().to_string(),
    ]);
    let ct: Vec<PathBuf> = ct_sample_files();
    assert!(ct.len() >= 3, "the CT sample study has {} slices", ct.len());
    let study = identity(&ct[0]).0;
    let server = archive.start();

    for (mode, dest) in [("move", Some(("SLOW_WS", dest_port))), ("get", None)] {
        let r = retrieve_cancel(mode, server.dicom_port, &study, dest);
        let statuses: Vec<u64> = r["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap())
            .collect();
        assert_eq!(statuses.last(), Some(&0xFE00), "{mode}: {r}");
        assert!(
            statuses[..statuses.len() - 1].iter().all(|s| *s == 0xFF00),
            "{mode}: {r}"
        );
        let f = &r["final"];
        let completed = f["completed"].as_u64().unwrap();
        let remaining = f["remaining"].as_u64().unwrap();
        assert!(completed >= 1, "{mode}: {r}");
        assert!(remaining >= 1, "{mode}: nothing was left to cancel: {r}");
        assert_eq!(
            completed + remaining + f["failed"].as_u64().unwrap() + f["warning"].as_u64().unwrap(),
            ct.len() as u64,
            "{mode}: {r}"
        );
        assert_eq!(r["stored"].as_u64().unwrap(), completed, "{mode}: {r}");
        assert_eq!(
            r["echo_after"], 0,
            "{mode}: the association stopped serving: {r}"
        );
    }
    drop(server);
}

per_backend!(c_move_and_c_get_cancel);
