//! Delivery of a signed report to the clinic, end to end: a township AE sends a CT → the
//! routed radiologist claims, writes (in Chinese and English) and signs → while the
//! clinic's report receiver (dcmtk's storescp) is down, delivery fails and is retried, the
//! PDF is already readable in the portal → once it is up, the Basic Text SR and the
//! Encapsulated PDF arrive there, once → dcmtk reads them (dsrdump: COMPLETE, VERIFIED, the
//! impression; dcm2pdf + pdftotext: the impression in Chinese) → the study is not
//! reopened by the archive's own documents (no addendum review) → the clinic's websocket
//! got every event live, in order, another clinic's nothing.

use std::process::Command;
use std::time::Duration;

use crate::http::get;
use crate::live_events;
use crate::per_backend;
use crate::support::*;
use crate::worklist::{create_users, post, worklist_of};

const IMPRESSION: &str = "右下肺炎。Right lower lobe pneumonia.";

fn report_delivery(backend: Backend) {
    let archive = TestArchive::new(backend)
        .with_env("PACS_STUDY_QUIET_SECONDS", "1")
        .with_env("PACS_DELIVERY_RETRY_SECONDS", "1")
        .with_env("PACS_DELIVERY_RETRY_MAX_SECONDS", "1");
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    // Clinic A's report receiver: registered now, listening later.
    let ris_port = free_port();
    let out = archive.pacs_ok(&[
        "clinic",
        "add",
        "--name",
        "Clinic A",
        "--ae-title",
        "CLINIC_A_RIS",
        "--host",
        "127.0.0.1",
        "--port",
        &ris_port.to_string(),
        "--receives-reports",
    ]);
    assert!(out.contains("receives the clinic's reports"), "{out}");
    let tokens = create_users(&archive);
    let [admin, chest, _neuro, doc_a, doc_b] = [0, 1, 2, 3, 4].map(|i| tokens[i].as_str());
    let server = archive.start();
    let port = server.http_port;

    let ct = ct_sample_files();
    let run = pynetdicom_store(server.dicom_port, "CLINIC_A_AE", &ct, &[]);
    assert!(
        run.results.iter().all(|r| r.status == Some(0)),
        "{}",
        run.stderr
    );
    let study = file_attrs(&ct[0]).1.study_instance_uid;
    let task = wait_for(Duration::from_secs(30), || {
        worklist_of(port, chest, "?view=mine").into_iter().next()
    })
    .unwrap_or_else(|| panic!("no task routed: {}", server.log()));
    let task_id = task["task_id"].as_i64().unwrap();
    post(
        port,
        chest,
        &format!("/api/worklist/tasks/{task_id}/claim"),
        None,
    )
    .expect(200, "claim");
    // A key image: slice 4 of the CT, shown in the PDF.
    let key = file_attrs(&ct[3]).1;
    let draft = serde_json::json!({
        "clinical_information": "Cough and fever for 5 days.",
        "findings": "Consolidation of the right lower lobe with air bronchograms.",
        "impression": IMPRESSION,
        "key_images": [{
            "series_instance_uid": key.series_instance_uid,
            "sop_instance_uid": key.sop_instance_uid,
            "caption": "右下叶实变 consolidation",
        }],
    })
    .to_string();
    // An image of another study cannot be a key image of this one.
    let foreign = serde_json::json!({
        "findings": "x", "impression": "y",
        "key_images": [{"series_instance_uid": "1.2.3", "sop_instance_uid": "1.2.3.4"}],
    })
    .to_string();
    let r = crate::http::request(
        port,
        "PUT",
        &format!("/api/worklist/tasks/{task_id}/report"),
        &[("Authorization", chest)],
        Some(&foreign),
    );
    r.expect(400, "foreign key image");
    assert!(
        r.error().contains("not an image of this study"),
        "{}",
        r.body
    );
    let r = crate::http::request(
        port,
        "PUT",
        &format!("/api/worklist/tasks/{task_id}/report"),
        &[("Authorization", chest)],
        Some(&draft),
    );
    r.expect(200, "draft");
    let report_id = r.json()["id"].as_i64().unwrap();
    // Not signed: no PDF yet.
    get(
        port,
        &format!("/api/reports/{report_id}/pdf"),
        &[("Authorization", chest)],
    )
    .expect(409, "PDF of a draft");
    // The clinic's users follow the live feed from now on; another clinic's too.
    // One runtime for the feeds: their sockets live in its I/O driver.
    let rt = runtime();
    let (mut feed_a, mut feed_b) = rt.block_on(async {
        let a = live_events::connect(port, Some(doc_a), None, None)
            .await
            .unwrap();
        let b = live_events::connect(port, Some(doc_b), None, None)
            .await
            .unwrap();
        (a, b)
    });
    post(port, chest, &format!("/api/reports/{report_id}/sign"), None).expect(200, "sign");

    // The receiver is down: attempts fail and are retried; the reason is visible.
    let deliveries = format!("/api/reports/{report_id}/deliveries");
    let failing = wait_for(Duration::from_secs(30), || {
        let r = get(port, &deliveries, &[("Authorization", doc_a)]);
        r.expect(200, "deliveries");
        let d = r.json()[0].clone();
        (d["attempts"].as_i64().unwrap_or(0) >= 2).then_some(d)
    })
    .unwrap_or_else(|| panic!("no failed attempts recorded: {}", server.log()));
    assert_eq!(failing["state"], "pending", "{failing}");
    assert_eq!(failing["destination_ae"], "CLINIC_A_RIS");
    assert!(
        failing["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot associate with CLINIC_A_RIS")),
        "{failing}"
    );
    assert!(failing["documents_stored_at"].as_i64().is_some());
    get(port, &deliveries, &[("Authorization", doc_b)]).expect(404, "other clinic's deliveries");

    // The PDF is in the portal meanwhile: the clinic reads it, another clinic cannot.
    let pdf_path = format!("/api/reports/{report_id}/pdf");
    let r = get(port, &pdf_path, &[("Authorization", doc_a)]);
    r.expect(200, "PDF");
    assert_eq!(r.headers("content-type")[0], "application/pdf");
    assert!(r.headers("content-disposition")[0].contains("report-"));
    let pdf_text = pdftotext(&r.raw);
    assert!(pdf_text.contains("右下肺炎"), "{pdf_text}");
    assert!(
        pdf_text.contains("Key image 1: 右下叶实变 consolidation"),
        "{pdf_text}"
    );
    assert_eq!(pdf_images(&r.raw), 1, "the key image is in the PDF");
    assert!(pdf_text.contains("rad-chest"), "{pdf_text}");
    get(port, &pdf_path, &[("Authorization", doc_b)]).expect(404, "other clinic's PDF");
    get(port, &pdf_path, &[]).expect(401, "PDF without credentials");

    // The clinic's system comes back: both documents arrive, once.
    let ris = Workstation::start_on("CLINIC_A_RIS", ris_port);
    let delivered = wait_for(Duration::from_secs(30), || {
        let d = get(port, &deliveries, &[("Authorization", doc_a)]).json()[0].clone();
        (d["state"] == "delivered").then_some(d)
    })
    .unwrap_or_else(|| panic!("not delivered: {}", server.log()));
    assert!(delivered["delivered_at"].as_i64().is_some());
    std::thread::sleep(Duration::from_secs(3));
    let files = ris.files();
    assert_eq!(files.len(), 2, "delivered once: {files:?}");
    let (mut sr, mut pdf) = (None, None);
    for f in &files {
        match sop_class(f).as_str() {
            "1.2.840.10008.5.1.4.1.1.88.11" => sr = Some(f.clone()),
            "1.2.840.10008.5.1.4.1.1.104.1" => pdf = Some(f.clone()),
            other => panic!("unexpected SOP class {other} in {f:?}"),
        }
    }
    let (sr, pdf) = (
        sr.expect("a Basic Text SR"),
        pdf.expect("an Encapsulated PDF"),
    );
    let out = dcmtk("dsrdump")
        .args(["+U8", "+Pl"])
        .arg(&sr)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dsrdump: {dump}");
    for expected in [
        "Basic Text SR",
        "COMPLETE",
        "VERIFIED",
        "Diagnostic Imaging Report",
        "Impressions",
        IMPRESSION,
        "Cough and fever",
        "rad-chest",
    ] {
        assert!(dump.contains(expected), "{expected} not in:\n{dump}");
    }
    let extracted = tempfile::tempdir().unwrap();
    let out_pdf = extracted.path().join("report.pdf");
    let ok = dcmtk("dcm2pdf").arg(&pdf).arg(&out_pdf).status().unwrap();
    assert!(ok.success(), "dcm2pdf");
    let text = pdftotext(&std::fs::read(&out_pdf).unwrap());
    assert!(text.contains("右下肺炎"), "{text}");
    // The delivered documents are the study's (same patient, same study) and archived.
    let dump = Command::new("/usr/bin/dcmdump")
        .args(["-q", "+P", "0020,000d", "+P", "0010,0020"])
        .arg(&sr)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains(&study), "{dump}");
    let series = get(
        port,
        &format!("/dicom-web/studies/{study}/series"),
        &[("Authorization", doc_a)],
    );
    series.expect(200, "series");
    let modalities: Vec<String> = series
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["00080060"]["Value"][0].as_str().map(str::to_owned))
        .collect();
    assert!(
        modalities.contains(&"SR".to_owned()) && modalities.contains(&"DOC".to_owned()),
        "{modalities:?}"
    );

    // The archive's own documents did not reopen the study: no addendum review, ever.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        worklist_of(port, admin, "?view=all").is_empty(),
        "a task appeared after delivery: {}",
        server.log()
    );
    let portal = get(port, "/api/portal/studies", &[("Authorization", doc_a)]);
    assert_eq!(portal.json()[0]["state"], "reported", "{}", portal.body);

    // The clinic's feed got every step, in order, live; the other clinic's nothing of it.
    let seen = rt.block_on(live_events::until(
        &mut feed_a,
        "delivery_completed",
        Duration::from_secs(30),
    ));
    let steps: Vec<&str> = seen
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .filter(|k| *k == "report_signed" || k.starts_with("delivery_"))
        .collect();
    assert_eq!(steps.first(), Some(&"report_signed"), "{steps:?}");
    assert_eq!(steps.last(), Some(&"delivery_completed"));
    assert!(steps.len() >= 4, "{steps:?}");
    assert!(
        steps[1..steps.len() - 1]
            .iter()
            .all(|k| *k == "delivery_failed")
    );
    let ids: Vec<i64> = seen.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {ids:?}"
    );
    let failed = seen
        .iter()
        .find(|e| e["kind"] == "delivery_failed")
        .unwrap();
    assert!(
        failed["payload"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("CLINIC_A_RIS")),
        "{failed}"
    );
    let other = rt.block_on(live_events::next_event(&mut feed_b, Duration::from_secs(1)));
    assert!(other.is_none(), "another clinic was told: {other:?}");

    // What happened, in order, in the outbox the live feed reads.
    let kinds: Vec<String> = runtime().block_on(async {
        let a = archive.open().await;
        let rows = sqlx::query(
            "SELECT kind FROM events WHERE kind LIKE 'delivery%' OR kind = 'report_signed' \
             ORDER BY id",
        )
        .fetch_all(a.index().pool_for_tests())
        .await
        .unwrap();
        a.index().close().await;
        use sqlx::Row as _;
        rows.iter().map(|r| r.get::<String, _>(0)).collect()
    });
    assert_eq!(kinds.first().map(String::as_str), Some("report_signed"));
    assert_eq!(kinds.last().map(String::as_str), Some("delivery_completed"));
    assert!(
        kinds[1..kinds.len() - 1]
            .iter()
            .all(|k| k == "delivery_failed")
    );
    assert!(kinds.len() >= 4, "{kinds:?}");

    // Administrators see deliveries; others do not; a delivered one is not sent again.
    let r = get(
        port,
        "/api/admin/deliveries?state=delivered",
        &[("Authorization", admin)],
    );
    r.expect(200, "admin deliveries");
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    get(port, "/api/admin/deliveries", &[("Authorization", doc_a)]).expect(403, "not admin");
    get(
        port,
        "/api/admin/deliveries?state=lost",
        &[("Authorization", admin)],
    )
    .expect(400, "bad state");
    let id = delivered["id"].as_i64().unwrap();
    let r = post(
        port,
        admin,
        &format!("/api/admin/deliveries/{id}/retry"),
        None,
    );
    r.expect(400, "retry a delivered one");

    // The key images are signed with the report: removing them breaks the signature.
    let verify = format!("/api/reports/{report_id}/verify");
    assert_eq!(get(port, &verify, &[]).json()["valid"], true);
    runtime().block_on(async {
        let a = archive.open().await;
        sqlx::query("UPDATE reports SET key_images = '[]' WHERE id = $1")
            .bind(report_id)
            .execute(a.index().pool_for_tests())
            .await
            .unwrap();
        a.index().close().await;
    });
    assert_eq!(get(port, &verify, &[]).json()["valid"], false);
    drop(server);
}

per_backend!(report_delivery);

fn sop_class(path: &std::path::Path) -> String {
    let out = Command::new("/usr/bin/dcmdump")
        .args(["-q", "-Un", "+P", "0008,0016"])
        .arg(path)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    s.split('[')
        .nth(1)
        .and_then(|r| r.split(']').next())
        .unwrap_or_default()
        .trim_end_matches('\0')
        .to_owned()
}

/// How many images a PDF holds, by poppler's pdfimages.
fn pdf_images(pdf: &[u8]) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new("pdfimages")
        .arg("-list")
        .arg(&path)
        .output()
        .expect("pdfimages (install poppler-utils)");
    assert!(out.status.success(), "pdfimages failed");
    // Two header lines, then one line per image.
    String::from_utf8_lossy(&out.stdout).lines().skip(2).count()
}

/// The text of a PDF, by poppler's pdftotext (Debian poppler-utils; scripts/test.sh
/// installs it).
fn pdftotext(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new("pdftotext")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (install poppler-utils)");
    assert!(out.status.success(), "pdftotext failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
