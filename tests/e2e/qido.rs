//! QIDO-RS against the real binary with a real client (dicomweb-client, PyPI) and plain
//! HTTP: the sample studies imported for two clinics, searched by Chinese and Latin names,
//! wildcards, fuzzy matching, IDs with issuers, modalities, dates, UIDs and paging — the
//! results equal what the files hold — and the access scope, bad requests and the audit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use pacs_store::users::Role;
use serde_json::{Value, json};

use crate::http::*;
use crate::per_backend;
use crate::support::*;

const MR_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.4";

/// What the sample files say about each study.
#[derive(Debug, Default, Clone)]
struct Expected {
    patient_id: String,
    issuer: String,
    name: String,
    date: String,
    modalities: BTreeSet<String>,
    series: BTreeMap<String, BTreeSet<String>>,
}

fn expected(files: &[PathBuf]) -> BTreeMap<String, Expected> {
    let mut out: BTreeMap<String, Expected> = BTreeMap::new();
    for f in files {
        let (_, a) = file_attrs(f);
        let e = out.entry(a.study_instance_uid.clone()).or_default();
        e.patient_id = a.patient_id.clone().unwrap_or_default();
        e.issuer = a.issuer_of_patient_id.clone().unwrap_or_default();
        e.name = a
            .patient_name
            .as_ref()
            .map(|n| n.to_dicom_string())
            .unwrap_or_default();
        e.date = a.study_date.clone().unwrap_or_default();
        if let Some(m) = &a.modality {
            e.modalities.insert(m.clone());
        }
        e.series
            .entry(a.series_instance_uid.clone())
            .or_default()
            .insert(a.sop_instance_uid.clone());
    }
    out
}

/// Runs tests/peers/qido.py with `searches`; one result per search.
fn dicomweb_client(port: u16, token: &str, searches: &Value) -> Vec<Value> {
    let mut c = Command::new("python3");
    c.arg(repo_root().join("tests/peers/qido.py"))
        .arg(format!("http://127.0.0.1:{port}/dicom-web"))
        .env("PACS_TOKEN", token)
        .stdin(Stdio::piped());
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(searches.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "qido.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn value(ds: &Value, tag: &str) -> Option<Value> {
    ds.get(tag)?.get("Value")?.get(0).cloned()
}

fn uids(results: &Value, tag: &str) -> BTreeSet<String> {
    results["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {results}"))
        .iter()
        .map(|ds| value(ds, tag).unwrap().as_str().unwrap().to_owned())
        .collect()
}

fn studies_where(
    all: &BTreeMap<String, Expected>,
    f: impl Fn(&Expected) -> bool,
) -> BTreeSet<String> {
    all.iter()
        .filter(|(_, e)| f(e))
        .map(|(uid, _)| uid.clone())
        .collect()
}

fn qido(backend: Backend) {
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
    let all = expected(&files);
    let in_b = expected(&b_files);

    let tokens = archive.users_with_tokens(
        &[
            ("boss", Role::Admin, None, &[]),
            ("nurse-b", Role::Clinician, Some("Clinic B"), &[]),
        ],
        Some("qido test passphrase 1234"),
        "qido",
    );
    let (admin, nurse_b) = (tokens[0].clone(), tokens[1].clone());
    let server = archive.start();
    let port = server.http_port;

    let liu = studies_where(&all, |e| e.name.starts_with("Liu^"));
    let huang = studies_where(&all, |e| e.name.starts_with("Huang^"));
    let li_b = studies_where(&all, |e| {
        e.patient_id == "TS-0001" && e.issuer == "CLINIC-B"
    });
    let ts0001 = studies_where(&all, |e| e.patient_id == "TS-0001");
    let with_mr = studies_where(&all, |e| e.modalities.contains("MR"));
    let first_date = all.values().map(|e| e.date.clone()).min().unwrap();
    let on_first_date = studies_where(&all, |e| e.date == first_date);
    assert!(!liu.is_empty() && !huang.is_empty() && !li_b.is_empty() && !with_mr.is_empty());
    assert!(
        ts0001.len() > li_b.len(),
        "TS-0001 is two patients (two issuers)"
    );
    let (some_study, some) = all
        .iter()
        .find(|(_, e)| e.series.values().any(|s| s.len() > 1))
        .unwrap();
    let (some_series, some_instances) = some.series.iter().find(|(_, s)| s.len() > 1).unwrap();

    let searches = json!([
        {"level": "studies"},
        {"level": "studies", "filters": {"PatientName": "Liu*"}},
        {"level": "studies", "filters": {"PatientName": "刘*"}},
        {"level": "studies", "filters": {"PatientName": "*MEILING*"}},
        {"level": "studies", "filters": {"PatientName": "meiling"}, "fuzzy": true},
        {"level": "studies", "filters": {"PatientName": "meiling"}},
        {"level": "studies", "filters": {"PatientName": "Huang^Meiling=黄^美玲"}},
        {"level": "studies", "filters": {"PatientName": "=黄^美?"}},
        {"level": "studies", "filters": {"PatientID": "TS-0001"}},
        {"level": "studies", "filters": {"PatientID": "TS-0001", "IssuerOfPatientID": "CLINIC-B"}},
        {"level": "studies", "filters": {"ModalitiesInStudy": "MR"}},
        {"level": "studies", "filters": {"StudyDate": format!("{first_date}-{first_date}")}},
        {"level": "series", "study": some_study},
        {"level": "instances", "study": some_study, "series": some_series},
        {"level": "studies", "limit": 2, "offset": 0},
        {"level": "studies", "limit": 2, "offset": 2},
        {"level": "studies", "filters": {"PatientID": "x' OR '1'='1"}},
        {"level": "studies", "filters": {"Modality": "MR"}},
        {"level": "series", "filters": {"SOPClassUID": MR_IMAGE}},
    ]);
    let r = dicomweb_client(port, &admin, &searches);
    let all_uids: BTreeSet<String> = all.keys().cloned().collect();
    assert_eq!(uids(&r[0], "0020000D"), all_uids, "every study");
    assert_eq!(uids(&r[1], "0020000D"), liu, "Liu*");
    assert_eq!(uids(&r[2], "0020000D"), liu, "刘*");
    assert_eq!(
        uids(&r[3], "0020000D"),
        huang,
        "*MEILING* (case-insensitive)"
    );
    assert_eq!(uids(&r[4], "0020000D"), huang, "fuzzy meiling");
    assert!(
        uids(&r[5], "0020000D").is_empty(),
        "exact meiling matches no whole name"
    );
    assert_eq!(uids(&r[6], "0020000D"), huang, "all groups");
    assert_eq!(uids(&r[7], "0020000D"), huang, "ideographic group with ?");
    assert_eq!(uids(&r[8], "0020000D"), ts0001, "PatientID");
    assert_eq!(uids(&r[9], "0020000D"), li_b, "PatientID + issuer");
    assert_eq!(uids(&r[10], "0020000D"), with_mr, "ModalitiesInStudy");
    assert_eq!(uids(&r[11], "0020000D"), on_first_date, "StudyDate range");
    assert_eq!(
        uids(&r[12], "0020000E"),
        some.series.keys().cloned().collect::<BTreeSet<_>>(),
        "series of a study"
    );
    assert_eq!(
        &uids(&r[13], "00080018"),
        some_instances,
        "instances of a series"
    );
    let mut paged = uids(&r[14], "0020000D");
    paged.extend(uids(&r[15], "0020000D"));
    assert_eq!(
        paged.len(),
        4.min(all.len()),
        "two pages of two, no overlap"
    );
    assert!(
        uids(&r[16], "0020000D").is_empty(),
        "a quote is a value like any other"
    );

    // What each study says equals the files.
    for ds in r[0]["results"].as_array().unwrap() {
        let uid = value(ds, "0020000D").unwrap();
        let e = &all[uid.as_str().unwrap()];
        assert_eq!(value(ds, "00100020").unwrap(), e.patient_id.as_str());
        let name = value(ds, "00100010").unwrap();
        let mut groups = e.name.split('=');
        assert_eq!(name["Alphabetic"], groups.next().unwrap());
        if let Some(ideo) = groups.next().filter(|g| !g.is_empty()) {
            assert_eq!(name["Ideographic"], ideo, "{ds}");
        }
        let count: usize = e.series.values().map(BTreeSet::len).sum();
        assert_eq!(value(ds, "00201208").unwrap(), json!(count), "{ds}");
        assert_eq!(
            value(ds, "00201206").unwrap(),
            json!(e.series.len()),
            "{ds}"
        );
        let modalities: BTreeSet<String> = ds["00080061"]["Value"]
            .as_array()
            .map(|v| v.iter().map(|m| m.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        assert_eq!(modalities, e.modalities, "{ds}");
    }

    // A clinician of clinic B finds clinic B's studies only, whatever they ask.
    let r = dicomweb_client(
        port,
        &nurse_b,
        &json!([
            {"level": "studies"},
            {"level": "studies", "filters": {"PatientName": "Liu*"}},
            {"level": "series", "study": liu.iter().next().unwrap()},
            {"level": "instances"},
        ]),
    );
    let b_uids: BTreeSet<String> = in_b.keys().cloned().collect();
    assert_eq!(uids(&r[0], "0020000D"), b_uids);
    assert!(uids(&r[1], "0020000D").is_empty());
    assert!(uids(&r[2], "0020000E").is_empty());
    let b_instances: BTreeSet<String> = in_b
        .values()
        .flat_map(|e| e.series.values().flatten().cloned())
        .collect();
    assert_eq!(uids(&r[3], "00080018"), b_instances);

    // Plain HTTP: headers, paging warning, bad requests with reasons.
    let bearer = format!("Bearer {admin}");
    let h = [("Authorization", bearer.as_str())];
    let r = get(port, "/dicom-web/studies?limit=1", &h);
    r.expect(200, "limit 1");
    assert_eq!(r.headers("content-type"), ["application/dicom+json"]);
    assert!(r.headers("warning")[0].starts_with("299"), "{}", r.head);
    let r = get(port, "/dicom-web/studies", &h);
    assert!(r.headers("warning").is_empty(), "{}", r.head);
    for (path, status, why) in [
        ("/dicom-web/studies?StudyDate=2024-13-01", 400, "StudyDate"),
        (
            "/dicom-web/studies?StudyDate=20241301",
            400,
            "not a valid date",
        ),
        ("/dicom-web/studies?limit=100000", 400, "limit"),
        ("/dicom-web/studies?limit=-1", 400, "limit"),
        (
            "/dicom-web/studies?PatientWeight=70",
            400,
            "not a matching key",
        ),
        (
            "/dicom-web/studies?StudyInstanceUID=1.2'%20OR%201=1",
            400,
            "not a UID",
        ),
        (
            "/dicom-web/studies?SeriesNumber=1;DROP%20TABLE%20studies",
            400,
            "integer",
        ),
        ("/dicom-web/studies?PatientName=%E0%80", 400, "UTF-8"),
        ("/dicom-web/studies/not-a-uid/series", 400, "not a UID"),
    ] {
        let r = get(port, path, &h);
        r.expect(status, path);
        assert!(r.error().contains(why), "{path}: {}", r.error());
    }
    let r = get(port, "/dicom-web/studies", &[h[0], ("Accept", "image/png")]);
    r.expect(406, "Accept image/png");
    let r = get(port, "/dicom-web/studies/1.2.3.4.5.6/series", &h);
    r.expect(200, "unknown study");
    assert_eq!(r.body, "[]");
    // HTTP Basic, as many DICOMweb clients send it.
    let basic = format!("Basic {}", base64(b"nurse-b:qido test passphrase 1234"));
    let r = get(port, "/dicom-web/studies", &[("Authorization", &basic)]);
    r.expect(200, "basic");
    assert_eq!(r.json().as_array().unwrap().len(), b_uids.len());
    // The schema stays: studies and the patients table are intact after the "injections".
    assert_eq!(
        get(port, "/dicom-web/studies", &h)
            .json()
            .as_array()
            .unwrap()
            .len(),
        all.len()
    );

    // Each search is one 110112 Query event naming the search.
    let events = archive.pacs_ok(&[
        "audit", "search", "--user", "nurse-b", "--event", "110112", "--json",
    ]);
    let events: Vec<Value> = serde_json::from_str(&events).unwrap();
    assert_eq!(events.len(), 5, "4 via dicomweb-client, 1 with Basic");
    assert!(
        events
            .iter()
            .all(|e| e["detail"].as_str().unwrap().starts_with("QIDO-RS "))
    );
    assert!(
        events
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("PatientName=Liu"))
    );
    drop(server);
}

per_backend!(qido);
