//! The access matrix: every role × every route (and the DICOM services that exist) × a
//! study of the caller's own clinic, of another clinic, a prior of an assigned patient, and
//! guessed UIDs — against the real binary, on both backends. It grows with every route.
//!
//! The region: North Clinic (AE NORTH_CT) and South Clinic (AE SOUTH_CT). Patient P-100
//! (issuer REGION-MPI, so one patient record across clinics) has a study from North and a
//! prior from South; patient P-200 has a study from South. The radiologist `rad` is
//! assigned the North study, so sees it and the South prior, and nothing else.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use pacs_store::users::Role;

use crate::http::*;
use crate::per_backend;
use crate::support::*;

const NORTH_STUDY: &str = "1.2.826.0.1.3680043.10.1000.1";
const SOUTH_PRIOR: &str = "1.2.826.0.1.3680043.10.1000.2";
const SOUTH_OTHER: &str = "1.2.826.0.1.3680043.10.1000.3";
/// A well-formed UID that no study has.
const GUESSED: &str = "1.2.826.0.1.3680043.10.1000.4";
const PASSWORD: &str = "access matrix passphrase 4242";

/// A copy of a sample CT slice with the given identity (dcmodify, which also updates the
/// file meta's SOP Instance UID).
fn study_file(dir: &Path, name: &str, patient: &str, study: &str, n: u32) -> PathBuf {
    let src = sample_dir().join("ct_01.dcm");
    let dst = dir.join(format!("{name}.dcm"));
    std::fs::copy(&src, &dst).unwrap();
    let mut c = Command::new("/usr/bin/dcmodify");
    c.args([
        "-nb",
        "-m",
        &format!("(0010,0020)={patient}"),
        "-i",
        "(0010,0021)=REGION-MPI",
        "-m",
        "(0010,0010)=Access^Matrix",
        "-m",
        &format!("(0020,000d)={study}"),
        "-m",
        &format!("(0020,000e)={study}.1"),
        "-m",
        &format!("(0008,0018)={study}.1.{n}"),
    ])
    .arg(&dst);
    let out = run_bounded(c, std::time::Duration::from_secs(30));
    assert!(
        out.status.success(),
        "dcmodify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dst
}

struct User {
    name: &'static str,
    role: Role,
    clinic: Option<&'static str>,
    /// Studies `GET /api/studies` must list, and only those.
    sees: &'static [&'static str],
    administers: bool,
    reads_metrics: bool,
}

const USERS: &[User] = &[
    User {
        name: "boss",
        role: Role::Admin,
        clinic: None,
        sees: &[NORTH_STUDY, SOUTH_PRIOR, SOUTH_OTHER],
        administers: true,
        reads_metrics: true,
    },
    User {
        name: "rad",
        role: Role::Radiologist,
        clinic: None,
        sees: &[NORTH_STUDY, SOUTH_PRIOR],
        administers: false,
        reads_metrics: false,
    },
    User {
        name: "rad2",
        role: Role::Radiologist,
        clinic: None,
        sees: &[],
        administers: false,
        reads_metrics: false,
    },
    User {
        name: "ndoc",
        role: Role::TownshipDoctor,
        clinic: Some("North Clinic"),
        sees: &[NORTH_STUDY],
        administers: false,
        reads_metrics: false,
    },
    User {
        name: "nclin",
        role: Role::Clinician,
        clinic: Some("North Clinic"),
        sees: &[NORTH_STUDY],
        administers: false,
        reads_metrics: false,
    },
    User {
        name: "sclin",
        role: Role::Clinician,
        clinic: Some("South Clinic"),
        sees: &[SOUTH_PRIOR, SOUTH_OTHER],
        administers: false,
        reads_metrics: false,
    },
    User {
        name: "nsvc",
        role: Role::Service,
        clinic: Some("North Clinic"),
        sees: &[NORTH_STUDY],
        administers: false,
        reads_metrics: true,
    },
    User {
        name: "svc",
        role: Role::Service,
        clinic: None,
        sees: &[],
        administers: false,
        reads_metrics: true,
    },
];

/// Creates the users and a bearer token for each (in this process, like `pacs user …`).
fn create_users(archive: &TestArchive) -> Vec<String> {
    let users: Vec<NewUser> = USERS
        .iter()
        .map(|u| (u.name, u.role, u.clinic, &[][..]))
        .collect();
    archive
        .users_with_tokens(&users, Some(PASSWORD), "matrix")
        .iter()
        .map(|t| format!("Bearer {t}"))
        .collect()
}

fn listed(r: &Resp) -> BTreeSet<String> {
    r.json()
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", r.body))
        .iter()
        .map(|s| s["study_instance_uid"].as_str().unwrap().to_owned())
        .collect()
}

fn set(uids: &[&str]) -> BTreeSet<String> {
    uids.iter().map(|s| s.to_string()).collect()
}

fn access_matrix(backend: Backend) {
    let archive = TestArchive::new(backend);
    archive.add_clinic("North Clinic", "NORTH_CT", None);
    archive.add_clinic("South Clinic", "SOUTH_CT", None);
    let files = archive.data_dir().join("matrix-files");
    std::fs::create_dir_all(&files).unwrap();
    let north = study_file(&files, "north", "P-100", NORTH_STUDY, 1);
    let prior = study_file(&files, "prior", "P-100", SOUTH_PRIOR, 1);
    let other = study_file(&files, "other", "P-200", SOUTH_OTHER, 1);
    let tokens = create_users(&archive);
    let server = archive.start();
    let port = server.http_port;

    // DICOM: each clinic's modality stores its studies; the archive files them under the
    // calling AE's clinic, which is what the policy scopes on.
    for (aet, file) in [
        ("NORTH_CT", &north),
        ("SOUTH_CT", &prior),
        ("SOUTH_CT", &other),
    ] {
        let run = pynetdicom_store(server.dicom_port, aet, std::slice::from_ref(file), &[]);
        assert_eq!(run.association.as_deref(), Some("established"), "{run:?}");
        assert_eq!(run.results[0].status, Some(0), "{run:?}");
    }
    let store_as_unknown = pynetdicom_store(
        server.dicom_port,
        "INTRUDER",
        std::slice::from_ref(&north),
        &[],
    );
    assert_ne!(
        store_as_unknown.association.as_deref(),
        Some("established"),
        "an unregistered AE must be refused: {store_as_unknown:?}"
    );

    // C-FIND: each modality finds its own clinic's studies only, the prior included.
    for (aet, sees) in [
        ("NORTH_CT", set(&[NORTH_STUDY])),
        ("SOUTH_CT", set(&[SOUTH_PRIOR, SOUTH_OTHER])),
    ] {
        for keys in [
            vec!["QueryRetrieveLevel=STUDY", "StudyInstanceUID"],
            vec![
                "QueryRetrieveLevel=STUDY",
                "PatientID=P-100",
                "StudyInstanceUID",
            ],
        ] {
            let out = crate::find::findscu(server.dicom_port, aet, "-S", &keys);
            let got = crate::find::values(&crate::find::responses(&out), "(0020,000d)");
            let want: BTreeSet<String> = if keys.len() == 3 {
                sees.iter()
                    .filter(|s| s.as_str() != SOUTH_OTHER)
                    .cloned()
                    .collect()
            } else {
                sees.clone()
            };
            assert_eq!(got, want, "{aet} C-FIND {keys:?}");
        }
        let out = crate::find::findscu(
            server.dicom_port,
            aet,
            "-S",
            &[
                "QueryRetrieveLevel=IMAGE",
                &format!("StudyInstanceUID={NORTH_STUDY}"),
                "SOPInstanceUID",
            ],
        );
        let n = crate::find::responses(&out).len();
        assert_eq!(
            n > 0,
            aet == "NORTH_CT",
            "{aet} C-FIND a guessed study's images"
        );
    }

    // C-GET: each modality retrieves its own clinic's studies only.
    for (aet, study, completed) in [
        ("NORTH_CT", NORTH_STUDY, 1),
        ("NORTH_CT", SOUTH_PRIOR, 0),
        ("SOUTH_CT", NORTH_STUDY, 0),
        ("SOUTH_CT", GUESSED, 0),
    ] {
        let out = tempfile::tempdir().unwrap();
        let report = crate::find::getscu(
            server.dicom_port,
            aet,
            out.path(),
            &[
                "QueryRetrieveLevel=STUDY",
                &format!("StudyInstanceUID={study}"),
            ],
        );
        assert_eq!(
            crate::find::suboperations(&report, "Completed"),
            completed,
            "{aet} C-GET {study}: {report}"
        );
    }

    let auth = |i: usize| [("Authorization", tokens[i].as_str())];
    let boss = auth(0);

    // The administrator gives the North study to `rad` through the admin API.
    let body = r#"{"username": "rad"}"#;
    let path = format!("/api/admin/studies/{NORTH_STUDY}/assignments");
    request(port, "POST", &path, &boss, Some(body)).expect(201, "assign");
    let r = request(
        port,
        "POST",
        &format!("/api/admin/studies/{NORTH_STUDY}/assignments"),
        &boss,
        Some(r#"{"username": "nclin"}"#),
    );
    r.expect(400, "assign to a clinician");
    assert!(r.error().contains("not a radiologist"), "{}", r.error());
    request(
        port,
        "POST",
        &format!("/api/admin/studies/{GUESSED}/assignments"),
        &boss,
        Some(body),
    )
    .expect(404, "assign an unknown study");

    let studies = [NORTH_STUDY, SOUTH_PRIOR, SOUTH_OTHER, GUESSED];
    for (i, u) in USERS.iter().enumerate() {
        let h = auth(i);
        let who = format!("{} ({})", u.name, u.role);

        // Studies: exactly the scope, and outside it the same 404 as for a guessed UID.
        let r = get(port, "/api/studies", &h);
        r.expect(200, &who);
        assert_eq!(listed(&r), set(u.sees), "{who}: GET /api/studies");
        assert_eq!(r.headers("cache-control"), ["no-store"], "{who}");
        for uid in studies {
            let r = get(port, &format!("/api/studies/{uid}"), &h);
            if u.sees.contains(&uid) {
                r.expect(200, &format!("{who} GET study {uid}"));
                assert_eq!(r.json()["study"]["study_instance_uid"], uid);
            } else {
                r.expect(404, &format!("{who} GET study {uid}"));
                assert_eq!(r.body, r#"{"error":"no such study"}"#, "{who} {uid}");
            }
        }
        for (q, what) in [("patient_id=P-100", "P-100"), ("patient_id=P-200", "P-200")] {
            let r = get(port, &format!("/api/studies?{q}"), &h);
            r.expect(200, &who);
            let expect: Vec<&str> = u
                .sees
                .iter()
                .copied()
                .filter(|s| (*s == SOUTH_OTHER) == (what == "P-200"))
                .collect();
            assert_eq!(listed(&r), set(&expect), "{who}: {q}");
        }
        // DICOMweb searches: the same scope.
        let r = get(port, "/dicom-web/studies", &h);
        r.expect(200, &format!("{who} QIDO studies"));
        let found: BTreeSet<String> = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|ds| ds["0020000D"]["Value"][0].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(found, set(u.sees), "{who}: QIDO /studies");
        for uid in studies {
            for level in ["series", "instances"] {
                let r = get(port, &format!("/dicom-web/studies/{uid}/{level}"), &h);
                r.expect(200, &who);
                let n = r.json().as_array().unwrap().len();
                assert_eq!(n > 0, u.sees.contains(&uid), "{who}: QIDO {uid}/{level}");
            }
        }
        // Thumbnails (rendering): the same scope.
        for uid in studies {
            let r = get(port, &format!("/dicom-web/studies/{uid}/thumbnail"), &h);
            r.expect(
                if u.sees.contains(&uid) { 200 } else { 404 },
                &format!("{who} thumbnail {uid}"),
            );
        }
        // WADO-RS retrieve: the same scope, and the same 404 for a guessed UID.
        for uid in studies {
            let accept = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
            let r = get(
                port,
                &format!("/dicom-web/studies/{uid}"),
                &[h[0], ("Accept", accept)],
            );
            if u.sees.contains(&uid) {
                r.expect(200, &format!("{who} WADO {uid}"));
                assert_eq!(multipart_parts(&r).len(), 1, "{who} WADO {uid}");
            } else {
                r.expect(404, &format!("{who} WADO {uid}"));
                assert_eq!(r.body, r#"{"error":"no such study"}"#, "{who} {uid}");
            }
        }
        // WADO-RS metadata and frames: the same scope, the same 404s.
        for uid in studies {
            let inst = format!("/dicom-web/studies/{uid}/series/{uid}.1/instances/{uid}.1.1");
            for (path, missing) in [
                (
                    format!("/dicom-web/studies/{uid}/metadata"),
                    "no such study",
                ),
                (format!("{inst}/metadata"), "no such instance"),
                (format!("{inst}/frames/1"), "no such instance"),
                (
                    format!("/dicom-web/studies/{uid}/series/{uid}.1/pixeldata"),
                    "no such series",
                ),
            ] {
                let r = get(port, &path, &h);
                if u.sees.contains(&uid) {
                    r.expect(200, &format!("{who} {path}"));
                } else {
                    r.expect(404, &format!("{who} {path}"));
                    assert_eq!(r.error(), missing, "{who} {path}");
                }
            }
        }
        let r = get(port, "/dicom-web/instances?PatientID=P-100", &h);
        r.expect(200, &who);
        let p100 = u.sees.iter().filter(|s| **s != SOUTH_OTHER).count();
        assert_eq!(
            r.json().as_array().unwrap().len(),
            p100,
            "{who}: QIDO instances"
        );

        // Things that are not UIDs: 404 as well, never an error page or a file.
        for bad in [
            "..%2F..%2Fetc%2Fpasswd",
            "1.2.3'%20OR%20'1'='1",
            "%3Cscript%3E",
        ] {
            get(port, &format!("/api/studies/{bad}"), &h).expect(404, &who);
        }
        // SQL through a query parameter is a value like any other.
        let r = get(port, "/api/studies?patient_id=x'%20OR%20'1'='1", &h);
        r.expect(200, &who);
        assert!(
            listed(&r).is_empty(),
            "{who}: injection listed {:?}",
            r.body
        );

        // STOW-RS: administrators, township doctors and clinic machines may upload (an
        // empty body here: 400 for them, 403 for the others, nothing stored).
        let stow = format!(
            "POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: {}\r\nContent-Type: multipart/related; type=\"application/dicom\"; \
             boundary=b\r\nContent-Length: 6\r\n\r\n--b--\r\n",
            tokens[i]
        );
        let may_store = matches!(u.name, "boss" | "ndoc" | "nsvc");
        send_raw(port, stow.as_bytes())
            .expect(if may_store { 400 } else { 403 }, &format!("{who} STOW"));

        // Routes every authenticated caller may use.
        for path in ["/api/me", "/api/openapi.json", "/dicom-web/"] {
            get(port, path, &h).expect(200, &format!("{who} {path}"));
        }
        let metrics = if u.reads_metrics { 200 } else { 403 };
        get(port, "/metrics", &h).expect(metrics, &format!("{who} /metrics"));

        // Administration: administrators only, whatever the body.
        let admin = if u.administers { 200 } else { 403 };
        for path in [
            "/api/admin/users",
            "/api/admin/users/rad",
            "/api/admin/users/rad/tokens",
            "/api/admin/audit?limit=5",
            "/api/admin/clinics",
        ] {
            get(port, path, &h).expect(admin, &format!("{who} GET {path}"));
        }
        if !u.administers {
            let new_user = format!(
                r#"{{"username": "made-by-{}", "role": "admin", "password": "{PASSWORD}"}}"#,
                u.name
            );
            for (method, path, body) in [
                (
                    "POST",
                    "/api/admin/users".to_owned(),
                    Some(new_user.as_str()),
                ),
                ("POST", "/api/admin/users/rad2/disable".into(), None),
                ("POST", "/api/admin/users/boss/enable".into(), None),
                (
                    "PUT",
                    "/api/admin/users/boss/password".into(),
                    Some(r#"{"password": "taken over by someone"}"#),
                ),
                (
                    "POST",
                    "/api/admin/users/boss/tokens".into(),
                    Some(r#"{"label": "mine now"}"#),
                ),
                ("DELETE", "/api/admin/tokens/1".into(), None),
                (
                    "POST",
                    "/api/admin/clinics".into(),
                    Some(r#"{"name": "Rogue Clinic"}"#),
                ),
                (
                    "POST",
                    "/api/admin/clinics/North%20Clinic/ae-titles".into(),
                    Some(r#"{"ae_title": "ROGUE"}"#),
                ),
                (
                    "PUT",
                    "/api/admin/ae-titles/NORTH_CT".into(),
                    Some(r#"{"host": "10.9.9.9"}"#),
                ),
                ("DELETE", "/api/admin/ae-titles/SOUTH_CT".into(), None),
                ("POST", path.clone(), Some(r#"{"username": "rad2"}"#)),
                (
                    "DELETE",
                    format!("/api/admin/studies/{NORTH_STUDY}/assignments/rad"),
                    None,
                ),
            ] {
                let r = request(port, method, &path, &h, body);
                r.expect(403, &format!("{who} {method} {path}"));
                assert!(r.error().contains("not allowed for"), "{}", r.error());
            }
        }
    }

    // The radiologist's view of the North study shows the South prior; a North clinician's
    // view of the same study does not (the prior belongs to another clinic).
    let rad_view = get(port, &format!("/api/studies/{NORTH_STUDY}"), &auth(1)).json();
    let priors: Vec<&str> = rad_view["priors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["study_instance_uid"].as_str().unwrap())
        .collect();
    assert_eq!(priors, [SOUTH_PRIOR]);
    assert_eq!(rad_view["study"]["clinic_name"], "North Clinic");
    assert_eq!(rad_view["series"].as_array().unwrap().len(), 1);
    let nclin_view = get(port, &format!("/api/studies/{NORTH_STUDY}"), &auth(4)).json();
    assert_eq!(nclin_view["priors"], serde_json::json!([]));

    // Nothing changed by the refused administration: both modalities still send.
    for aet in ["NORTH_CT", "SOUTH_CT"] {
        assert!(
            echoscu(server.dicom_port, aet, "REGIONAL_PACS")
                .status
                .success()
        );
    }
    let users = get(port, "/api/admin/users", &boss).json();
    assert_eq!(users.as_array().unwrap().len(), USERS.len(), "{users}");
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["disabled"] == false)
    );

    // Without credentials: 401 everywhere but the health check.
    for path in [
        "/api/studies",
        "/dicom-web/studies",
        "/dicom-web/series",
        "/dicom-web/instances",
        &format!("/dicom-web/studies/{NORTH_STUDY}/series"),
        &format!("/dicom-web/studies/{NORTH_STUDY}"),
        &format!("/dicom-web/studies/{NORTH_STUDY}/metadata"),
        &format!("/dicom-web/studies/{NORTH_STUDY}/series/{NORTH_STUDY}.1/pixeldata"),
        &format!("/api/studies/{NORTH_STUDY}"),
        &format!("/api/studies/{GUESSED}"),
        "/api/me",
        "/api/openapi.json",
        "/api/admin/users",
        "/api/admin/audit",
        "/metrics",
        "/dicom-web/",
        "/no/such/route",
    ] {
        get(port, path, &[]).expect(401, &format!("anonymous GET {path}"));
    }
    get(port, "/healthz", &[]).expect(200, "health check");
    // Every route of the API document, with every method, wants credentials unless the
    // document says it is public (login, the signature check): a route added later is
    // covered without being listed here.
    let doc = get(port, "/api/openapi.json", &boss);
    doc.expect(200, "OpenAPI document");
    let doc = doc.json();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete: String = path
            .split('/')
            .map(|seg| match seg {
                "{id}" | "{task_id}" => "1",
                s if s.starts_with('{') => "1.2.3",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in ops.as_object().unwrap() {
            let public = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
            });
            let r = request(port, &method.to_uppercase(), &concrete, &[], Some("{}"));
            if public {
                assert_ne!(r.status, 401, "{method} {path} is documented as public");
            } else {
                r.expect(401, &format!("anonymous {method} {path}"));
            }
            checked += 1;
        }
    }
    assert!(checked > 45, "only {checked} operations documented");

    // Taking the study back: `rad` sees neither it nor the prior any more.
    request(
        port,
        "DELETE",
        &format!("/api/admin/studies/{NORTH_STUDY}/assignments/rad"),
        &boss,
        None,
    )
    .expect(204, "revoke the assignment");
    assert!(listed(&get(port, "/api/studies", &auth(1))).is_empty());
    get(port, &format!("/api/studies/{SOUTH_PRIOR}"), &auth(1)).expect(404, "prior after revoke");

    // The audit trail: each study read by `sclin` (4 UIDs + 3 non-UIDs, WADO-RS metadata of
    // 4 studies and 4 instances, 2 thumbnails) is one 110103 event, successes for the two
    // South studies; each refused administration a security alert; the assignment and its
    // revocation are recorded with the study.
    let audit = |q: &str| {
        let r = get(port, &format!("/api/admin/audit?{q}&limit=1000"), &boss);
        r.expect(200, q);
        r.json().as_array().unwrap().clone()
    };
    let reads = audit("user=sclin&event=110103");
    assert_eq!(reads.len(), 17, "{reads:#?}");
    let ok: BTreeSet<&str> = reads
        .iter()
        .filter(|e| e["outcome"] == 0)
        .map(|e| e["study_instance_uid"].as_str().unwrap())
        .collect();
    assert_eq!(ok, [SOUTH_PRIOR, SOUTH_OTHER].into_iter().collect());
    assert!(
        reads
            .iter()
            .filter(|e| e["outcome"] == 0)
            .all(|e| e["patient_id"] == "P-100" || e["patient_id"] == "P-200")
    );
    let alerts = audit("user=sclin&event=110113");
    assert_eq!(
        alerts.len(),
        19,
        "5 admin GETs, /metrics, STOW, 12 changes: {alerts:#?}"
    );
    assert!(alerts.iter().all(|e| e["outcome"] == 4));
    // 4 study lists over the JSON API, 10 QIDO-RS searches (studies, 4 × series and
    // instances, instances by patient).
    let queries = audit("user=nclin&event=110112");
    assert_eq!(queries.len(), 14, "{queries:#?}");
    let changes = audit("user=boss&event=110113");
    let details: Vec<&str> = changes
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d == &format!("HTTP admin API: assign study {NORTH_STUDY} to rad").as_str()),
        "{details:#?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains(&format!("take study {NORTH_STUDY} back from rad"))),
        "{details:#?}"
    );
    let verify = archive.pacs(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
    drop(server);
}

per_backend!(access_matrix);
