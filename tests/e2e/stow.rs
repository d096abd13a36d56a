//! STOW-RS against the real binary: dicomweb-client uploads; a hand-made multipart body
//! with a good part, a part that is not DICOM and a part of another study gets the
//! per-instance answer PS3.18 defines; truncated and oversized bodies, wrong media types and
//! roles without the right are refused, nothing partial stays; uploads belong to the
//! uploader's clinic and are audited.

use std::process::Command;

use pacs_store::users::Role;
use serde_json::Value;

use crate::http::*;
use crate::per_backend;
use crate::support::*;

const PW: &str = "stow test passphrase 8642";

fn seq_len(body: &Value, tag: &str) -> usize {
    body[tag]["Value"].as_array().map_or(0, Vec::len)
}

fn multipart(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ct, bytes) in parts {
        out.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

fn post(port: u16, path: &str, auth: &str, content_type: &str, body: &[u8]) -> Resp {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: {auth}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    send_raw(port, &req)
}

fn stow(backend: Backend) {
    let archive = TestArchive::new(backend).with_env("PACS_MAX_OBJECT_SIZE", "40000");
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    let tokens: Vec<String> = archive
        .users_with_tokens(
            &[
                ("doc-a", Role::TownshipDoctor, Some("Clinic A"), &[]),
                ("nurse-a", Role::Clinician, Some("Clinic A"), &[]),
                ("nurse-b", Role::Clinician, Some("Clinic B"), &[]),
            ],
            Some(PW),
            "stow",
        )
        .iter()
        .map(|t| format!("Bearer {t}"))
        .collect();
    let server = archive.start();
    let port = server.http_port;
    let (doc, nurse_a, nurse_b) = (&tokens[0], &tokens[1], &tokens[2]);
    let sample = |name: &str| {
        let p = sample_dir().join(name);
        (p.clone(), std::fs::read(&p).unwrap())
    };
    let (mr_path, mr) = sample("mr_jpegls_01.dcm");
    let (_, mr2) = sample("mr_jpegls_02.dcm");
    let (_, cr) = sample("cr_jpeg_baseline.dcm");
    let mr_study = archive_study_of(&mr_path);
    let ct = "multipart/related; type=\"application/dicom\"; boundary=b0undary";

    // One good part, one that is not DICOM, one of another study, posted to the MR study.
    let body = multipart(
        "b0undary",
        &[
            ("application/dicom", &mr),
            ("application/dicom", b"this is not a DICOM file at all"),
            ("application/dicom", &cr),
        ],
    );
    let r = post(
        port,
        &format!("/dicom-web/studies/{mr_study}"),
        doc,
        ct,
        &body,
    );
    r.expect(202, "some stored, some failed");
    assert_eq!(r.headers("content-type"), ["application/dicom+json"]);
    let v = r.json();
    assert_eq!(seq_len(&v, "00081199"), 1, "{v}");
    assert_eq!(seq_len(&v, "00081198"), 2, "{v}");
    let reasons: Vec<u64> = v["00081198"]["Value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["00081197"]["Value"][0].as_u64().unwrap())
        .collect();
    assert_eq!(reasons, [0xC000, 0xA900], "{v}");
    let cr_failure = &v["00081198"]["Value"][1];
    assert!(
        cr_failure["0040A160"]["Value"][0]
            .as_str()
            .unwrap()
            .contains("not to study"),
        "{v}"
    );
    let mr_uid = sop_instance_uid(&mr_path);
    let stored = archive.stored(&mr_uid).expect("the good part is archived");
    assert_eq!(stored.dataset, dataset_bytes(&mr), "stored as sent");
    assert_eq!(archive.instance_count(), 1, "nothing of the failed parts");

    // The same again: already archived, identical → success without a second copy.
    let body = multipart("b0undary", &[("application/dicom", &mr)]);
    post(port, "/dicom-web/studies", doc, ct, &body).expect(200, "identical re-send");
    assert_eq!(archive.instance_count(), 1);

    // Truncated bodies: cut inside the only part, or inside its closing boundary (the part
    // is then not known to be complete): 400, and nothing of it is kept.
    let mut body = multipart("b0undary", &[("application/dicom", &mr2)]);
    body.truncate(body.len() - 10);
    let mut cut = multipart("b0undary", &[("application/dicom", &mr2)]);
    cut.truncate(cut.len() / 2);
    let r = post(port, "/dicom-web/studies", doc, ct, &cut);
    r.expect(400, "a body cut in its only part");
    assert!(r.error().contains("multipart"), "{}", r.error());
    let r = post(port, "/dicom-web/studies", doc, ct, &body);
    r.expect(400, "a body cut in its closing boundary");
    assert_eq!(archive.instance_count(), 1, "nothing of a cut part");
    assert_eq!(archive.staging_files(), 0, "no staging leftovers");

    // Larger than the archive's maximum object size (40 000 bytes here): refused with
    // 0xA700 when the part is read whole; a part far beyond it ends the request with 413.
    // Nothing is kept either way.
    let (_, dx) = sample("dx_jpeg_lossless.dcm");
    assert!(dx.len() > 40_000 && dx.len() < 100_000);
    let r = post(
        port,
        "/dicom-web/studies",
        doc,
        ct,
        &multipart("b0undary", &[("application/dicom", &dx)]),
    );
    r.expect(409, "larger than the maximum object size");
    assert_eq!(
        r.json()["00081198"]["Value"][0]["00081197"]["Value"][0],
        0xA700,
        "{}",
        r.body
    );
    let mut huge = mr.clone();
    huge.extend(std::iter::repeat_n(0u8, 200_000));
    let r = post(
        port,
        "/dicom-web/studies",
        doc,
        ct,
        &multipart("b0undary", &[("application/dicom", &huge)]),
    );
    r.expect(413, "far larger than the maximum object size");
    assert_eq!(archive.staging_files(), 0);
    assert_eq!(archive.instance_count(), 1, "still mr_jpegls_01 only");

    // Media types and roles.
    for (content_type, status) in [
        ("application/dicom", 415),
        (
            "multipart/related; type=\"application/dicom+json\"; boundary=b0undary",
            415,
        ),
        ("multipart/related; type=\"application/dicom\"", 400),
        ("text/plain", 415),
    ] {
        post(port, "/dicom-web/studies", doc, content_type, &mr).expect(status, content_type);
    }
    let r = post(
        port,
        "/dicom-web/studies",
        nurse_a,
        ct,
        &multipart("b0undary", &[("application/dicom", &mr2)]),
    );
    r.expect(403, "a clinician may not upload");
    post(port, "/dicom-web/studies/1.2'3", doc, ct, &body).expect(400, "bad study UID");

    // dicomweb-client uploads into clinic A; clinic A sees it, clinic B does not.
    let (ct_path, _) = sample("ct_02.dcm");
    let mut c = Command::new("python3");
    c.arg(repo_root().join("tests/peers/stow.py"))
        .arg(format!("http://127.0.0.1:{port}/dicom-web"))
        .arg(&ct_path)
        .env("PACS_TOKEN", doc.strip_prefix("Bearer ").unwrap());
    let out = run_bounded(c, std::time::Duration::from_secs(60));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(seq_len(&v, "00081199"), 1, "{v}");
    let ct_study = archive_study_of(&ct_path);
    let seen = |token: &str| -> Vec<String> {
        get(port, "/dicom-web/studies", &[("Authorization", token)])
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["0020000D"]["Value"][0].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        seen(nurse_a).contains(&ct_study),
        "uploads belong to the uploader's clinic"
    );
    assert!(seen(nurse_b).is_empty());

    // Audited by the uploader, with the instance and the outcome.
    let out = archive.pacs_ok(&[
        "audit", "search", "--user", "doc-a", "--event", "110104", "--json",
    ]);
    let events: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(
        events.iter().any(|e| e["outcome"] == 0
            && e["user_role"] == "township-doctor"
            && e["sop_instance_uids"][0] == mr_uid.as_str()
            && e["detail"].as_str().unwrap().starts_with("STOW-RS")),
        "{out}"
    );
    assert!(events.iter().any(|e| e["outcome"] == 8), "{out}");
    drop(server);
}

/// The Study Instance UID of a sample file.
fn archive_study_of(path: &std::path::Path) -> String {
    file_attrs(path).1.study_instance_uid
}

per_backend!(stow);
