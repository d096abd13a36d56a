//! Township modalities storing studies: every sample through dcmtk and pynetdicom, many
//! associations at once, and a crash in the middle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::per_backend;
use crate::support::*;

/// The UTF-8 name the manifest promises, as the index writes it (no trailing empty groups).
fn expected_name(row: &ManifestRow) -> String {
    row.patient_name.trim_end_matches('=').to_owned()
}

/// Whether two data sets are the same. Deflated data sets are compared inflated: peers
/// (pynetdicom, dcmtk) inflate a deflated file and deflate it again when sending, so the
/// compressed bytes on the wire are not the file's; what the archive must keep is exactly
/// what arrived, and what arrived is the same data set.
fn same_dataset(stored: &[u8], file: &[u8], ts: &str) -> bool {
    inflated(stored, ts) == inflated(file, ts)
}

/// The data set with deflate undone (explicit VR little endian inside), else as is.
fn inflated(dataset: &[u8], ts: &str) -> Vec<u8> {
    if ts != "1.2.840.10008.1.2.1.99" {
        return dataset.to_vec();
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(dataset), &mut out).unwrap();
    out
}

/// dcmdump of a data set in `ts` (meta group excluded), normalised for what a sender may
/// legitimately re-encode: defined versus undefined lengths, delimitation items, group
/// lengths. Values, VRs and structure must match.
fn normalised_dump(dataset: &[u8], ts: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds.dcm");
    std::fs::write(&path, inflated(dataset, ts)).unwrap();
    let mut c = dcmtk("dcmdump");
    c.args(["-q", "+L", "+U8", "-f"])
        .arg(format!("-t{}", dcmdump_ts_flag(ts)))
        .arg(&path);
    let out = run_bounded(c, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "dcmdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && !l.contains("Delimitation")
                && !l.contains(",0000)")
                && !l.trim().is_empty()
        })
        .map(|l| {
            let l = l
                .replace("with explicit length ", "")
                .replace("with undefined length ", "");
            // Drop the "# length, VM Keyword" trailer: lengths may differ with padding.
            match l.rfind('#') {
                Some(i) => l[..i].trim_end().to_owned(),
                None => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// dcmdump's option letter for reading a bare data set in `ts`.
fn dcmdump_ts_flag(ts: &str) -> &'static str {
    match ts {
        "1.2.840.10008.1.2" => "i",
        "1.2.840.10008.1.2.2" => "b",
        "1.2.840.10008.1.2.1" => "e",
        _ => "e", // encapsulated syntaxes: explicit VR little endian header
    }
}

/// Asserts that every sample is archived with the manifest's patient ID, issuer and UTF-8
/// name, and with the data set that was sent: byte-identical for a peer that sends the
/// file's data set as is (`exact`), else equal as dcmtk reads it (dcmtk re-encodes what it
/// sends: sequence lengths, padding).
fn assert_samples_archived(archive: &TestArchive, peer: &str, exact: bool) {
    let rows = manifest();
    assert_eq!(
        archive.instance_count(),
        rows.len() as i64,
        "{peer}: every sample is one instance"
    );
    for row in &rows {
        let path = sample_dir().join(&row.file);
        let file = std::fs::read(&path).unwrap();
        let uid = sop_instance_uid(&path);
        let stored = archive
            .stored(&uid)
            .unwrap_or_else(|| panic!("{peer}: {} ({uid}) not archived", row.file));
        if exact {
            assert_eq!(
                stored.transfer_syntax_uid, row.transfer_syntax_uid,
                "{peer}: {} stored as received",
                row.file
            );
        }
        let sent = dataset_bytes(&file);
        if exact {
            assert!(
                same_dataset(&stored.dataset, &sent, &row.transfer_syntax_uid),
                "{peer}: {}: stored data set differs from the one sent ({} vs {} bytes)",
                row.file,
                stored.dataset.len(),
                sent.len()
            );
        } else {
            assert_eq!(
                normalised_dump(&stored.dataset, &stored.transfer_syntax_uid),
                normalised_dump(&sent, &row.transfer_syntax_uid),
                "{peer}: {}: stored data set differs from the file",
                row.file
            );
        }
        assert_eq!(
            stored.patient_id, row.patient_id,
            "{peer}: {} patient ID",
            row.file
        );
        assert_eq!(
            stored.patient_name.as_deref().unwrap_or(""),
            expected_name(row),
            "{peer}: {} PatientName decoded to UTF-8",
            row.file
        );
        if !row.issuer.is_empty() {
            assert_eq!(stored.issuer, row.issuer, "{peer}: {} issuer", row.file);
        } else {
            assert!(
                stored.issuer.starts_with("clinic:"),
                "{peer}: no issuer → qualified by clinic"
            );
        }
        // Stored objects are complete Part 10 files with a zeroed preamble.
        assert_eq!(&stored.whole[128..132], b"DICM");
    }
}

/// The storescu option that proposes `ts` first.
fn storescu_flag(ts: &str) -> &'static str {
    match ts {
        "1.2.840.10008.1.2" => "-xi",
        "1.2.840.10008.1.2.2" => "-xb",
        "1.2.840.10008.1.2.1.99" => "-xd",
        "1.2.840.10008.1.2.4.50" => "-xy",
        "1.2.840.10008.1.2.4.70" => "-xs",
        "1.2.840.10008.1.2.4.80" => "-xt",
        "1.2.840.10008.1.2.4.90" => "-xv",
        "1.2.840.10008.1.2.5" => "-xr",
        _ => "-xe",
    }
}

/// Sends the whole sample set with each real peer, each into a fresh archive: all
/// acknowledged, stored byte-identical, names right; a re-send stores nothing new.
fn every_sample_through_every_peer(backend: Backend) {
    let files = sample_files();

    // pynetdicom: proposes exactly each file's own transfer syntax, sends the data set raw.
    let archive = TestArchive::new(backend);
    archive.add_clinic("Clinic A", "PYNETDICOM", None);
    let server = archive.start();
    let run = pynetdicom_store(server.dicom_port, "PYNETDICOM", &files, &[]);
    assert_eq!(
        run.association.as_deref(),
        Some("established"),
        "{}",
        run.stderr
    );
    assert!(run.exit.success(), "pynetdicom sender: {}", run.stderr);
    assert_eq!(run.results.len(), files.len());
    for r in &run.results {
        assert_eq!(
            r.status,
            Some(0),
            "pynetdicom store of {}: {:?}",
            r.file,
            r.comment
        );
    }
    assert_samples_archived(&archive, "pynetdicom", true);
    let again = pynetdicom_store(server.dicom_port, "PYNETDICOM", &files, &[]);
    assert!(
        again.results.iter().all(|r| r.status == Some(0)),
        "identical re-send is a success"
    );
    assert_eq!(
        archive.instance_count(),
        files.len() as i64,
        "no second copy"
    );
    assert_eq!(archive.stats()["conflicts"], 0);
    drop(server);

    // dcmtk storescu and dcmsend.
    for (tool, aet) in [("storescu", "STORESCU"), ("dcmsend", "DCMSEND")] {
        let archive = TestArchive::new(backend);
        archive.add_clinic("Clinic B", aet, Some("127.0.0.1"));
        let server = archive.start();
        let mut echo = dcmtk("echoscu");
        echo.args([
            "-aet",
            aet,
            "-aec",
            "REGIONAL_PACS",
            "127.0.0.1",
            &server.dicom_port.to_string(),
        ]);
        let out = run_bounded(echo, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "echoscu: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        if tool == "storescu" {
            // storescu proposes one transfer syntax family per run (as a modality is
            // configured for one): send each group of files with its own proposal flag.
            let mut groups: std::collections::BTreeMap<&str, Vec<&PathBuf>> = Default::default();
            for row in manifest() {
                let file = files.iter().find(|p| p.ends_with(&row.file)).unwrap();
                groups
                    .entry(storescu_flag(&row.transfer_syntax_uid))
                    .or_default()
                    .push(file);
            }
            for (flag, group) in groups {
                let mut send = dcmtk("storescu");
                send.args([flag, "-aet", aet, "-aec", "REGIONAL_PACS", "127.0.0.1"])
                    .arg(server.dicom_port.to_string())
                    .args(group);
                let out = run_bounded(send, Duration::from_secs(120));
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.status.success() && !stderr.contains("E:"),
                    "storescu {flag} failed: {stderr}\n{}",
                    server.log()
                );
            }
        } else {
            let mut send = dcmtk("dcmsend");
            send.args(["-aet", aet, "-aec", "REGIONAL_PACS", "127.0.0.1"])
                .arg(server.dicom_port.to_string())
                .args(&files);
            let out = run_bounded(send, Duration::from_secs(120));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && !stderr.contains("E:"),
                "dcmsend failed: {stderr}\n{}",
                server.log()
            );
        }
        assert_samples_archived(&archive, tool, false);
        let status = server.stop();
        assert!(status.success(), "graceful stop: {status}");
    }
}
per_backend!(every_sample_through_every_peer);

/// Generates `n` distinct small CT instances per sender, in their own folders.
fn ct_batches(root: &std::path::Path, senders: usize, n: usize) -> Vec<Vec<PathBuf>> {
    (0..senders)
        .map(|i| {
            let dir = root.join(format!("sender-{i}"));
            sample_dicom::write_ct_series(&dir, n, 32, 32, 1000 + i as u64).unwrap()
        })
        .collect()
}

/// 32 township modalities sending at once, each many instances on its own association.
fn thirty_two_parallel_associations(backend: Backend) {
    const SENDERS: usize = 32;
    const PER_SENDER: usize = 15;
    let archive = TestArchive::new(backend);
    archive.add_clinic("Busy Clinic", "PARALLEL", None);
    let data = tempfile::tempdir().unwrap();
    let batches = ct_batches(data.path(), SENDERS, PER_SENDER);
    let server = archive.start();
    let port = server.dicom_port.to_string();
    let children: Vec<_> = batches
        .iter()
        .map(|files| {
            let mut c = dcmtk("storescu");
            c.args([
                "-aet",
                "PARALLEL",
                "-aec",
                "REGIONAL_PACS",
                "127.0.0.1",
                &port,
            ])
            .args(files);
            std::thread::spawn(move || run_bounded(c, Duration::from_secs(300)))
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.join().unwrap();
        assert!(
            out.status.success(),
            "sender {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        archive.instance_count(),
        (SENDERS * PER_SENDER) as i64,
        "{}",
        server.log()
    );
    assert_eq!(archive.stats()["studies"], SENDERS as i64);
    // Spot-check bytes of one instance per sender.
    for files in &batches {
        let f = &files[PER_SENDER / 2];
        let stored = archive.stored(&sop_instance_uid(f)).expect("archived");
        assert!(stored.dataset == dataset_bytes(&std::fs::read(f).unwrap()));
    }
    drop(server);
    let check = archive.pacs(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
per_backend!(thirty_two_parallel_associations);

/// kill -9 while four associations are sending; after a restart `pacs check` is clean and
/// every instance whose C-STORE-RSP said success is there, byte-identical.
fn kill_9_loses_nothing_acknowledged(backend: Backend) {
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 60;
    let archive = TestArchive::new(backend);
    archive.add_clinic("Crashy Clinic", "CRASHER", None);
    let data = tempfile::tempdir().unwrap();
    let batches = ct_batches(data.path(), SENDERS, PER_SENDER);
    let server = archive.start();
    let port = server.dicom_port;
    let senders: Vec<_> = batches
        .iter()
        .map(|files| {
            let c = store_scu_command(port, "CRASHER", files, &["--timeout", "10"]);
            std::thread::spawn(move || run_bounded(c, Duration::from_secs(120)))
        })
        .collect();
    // Let the stores get going, then crash the server in the middle of them.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while archive.instance_count() < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "no progress before the crash: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill9();
    let mut acked: HashMap<String, PathBuf> = HashMap::new();
    for s in senders {
        let out = s.join().unwrap();
        let (_, results) = parse_scu_output(&out.stdout);
        for r in results {
            if r.status == Some(0) {
                acked.insert(r.sop_instance_uid.unwrap(), PathBuf::from(r.file));
            }
        }
    }
    // 20 were indexed before the crash; each sender has at most one store whose commit was
    // done but whose response had not left yet.
    assert!(
        acked.len() >= 20 - SENDERS,
        "the crash came after some acknowledged stores ({} acknowledged)",
        acked.len()
    );
    assert!(
        acked.len() < SENDERS * PER_SENDER,
        "the crash came before the end"
    );

    // Restart: recovery runs at start; then the archive must be clean.
    let server = archive.start();
    drop(server);
    let check = archive.pacs(&["check"]);
    assert!(
        check.status.success(),
        "pacs check after the crash:\n{}",
        String::from_utf8_lossy(&check.stdout)
    );
    for (uid, file) in &acked {
        let stored = archive
            .stored(uid)
            .unwrap_or_else(|| panic!("acknowledged instance {uid} lost in the crash"));
        assert!(
            stored.dataset == dataset_bytes(&std::fs::read(file).unwrap()),
            "{uid} intact"
        );
    }
    assert_eq!(archive.staging_files(), 0, "staging cleaned at start");
}
per_backend!(kill_9_loses_nothing_acknowledged);

/// The same SOP Instance UID again: identical bytes are a success without a second copy;
/// different bytes get a warning, the first copy stays the instance and the new one is
/// kept as a conflict copy — never a silent overwrite.
#[test]
fn resent_instance_is_deduplicated_and_a_different_one_is_kept_aside() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    archive.add_clinic("Clinic A", "RESENDER", None);
    let original = sample_dir().join("ct_01.dcm");
    let uid = sop_instance_uid(&original);
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("ct_01_changed.dcm");
    let mut bytes = std::fs::read(&original).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01; // one pixel bit differs
    std::fs::write(&changed, &bytes).unwrap();

    let server = archive.start();
    let first = pynetdicom_store(
        server.dicom_port,
        "RESENDER",
        &[original.clone(), original.clone()],
        &[],
    );
    assert_eq!(
        first.results.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![Some(0), Some(0)]
    );
    assert_eq!(archive.instance_count(), 1);

    let second = pynetdicom_store(
        server.dicom_port,
        "RESENDER",
        &[changed.clone(), changed.clone()],
        &[],
    );
    assert_eq!(
        second.results[0].status,
        Some(0xB000),
        "{:?}",
        second.results[0].comment
    );
    assert!(
        second.results[0]
            .comment
            .as_deref()
            .unwrap_or("")
            .contains("first copy kept")
    );
    assert_eq!(
        second.results[1].status,
        Some(0),
        "the same conflicting copy again is a duplicate"
    );
    let stats = archive.stats();
    assert_eq!(stats["instances"], 1);
    assert_eq!(stats["conflicts"], 1);
    let stored = archive.stored(&uid).unwrap();
    assert!(
        stored.dataset == dataset_bytes(&std::fs::read(&original).unwrap()),
        "first copy kept"
    );
    drop(server);
    let check = archive.pacs(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
