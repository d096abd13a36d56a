//! WADO-RS retrieve against the real binary: every sample study back as stored and
//! byte-identical (plain HTTP, multipart parsed here) and through dicomweb-client; the
//! default transfer syntax (Explicit VR Little Endian) with uncompressed objects transcoded
//! and compressed ones refused with 406; scope, bad requests and the audit trail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use pacs_store::users::Role;
use serde_json::Value;

use crate::http::*;
use crate::per_backend;
use crate::support::*;

const ALL_AS_STORED: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";

/// (study, series, SOP instance UID, transfer syntax) of a sample file.
fn identity(path: &Path) -> (String, String, String, String) {
    let (meta, a) = file_attrs(path);
    (
        a.study_instance_uid,
        a.series_instance_uid,
        a.sop_instance_uid,
        meta.transfer_syntax_uid,
    )
}

/// The SOP Instance UID and transfer syntax a part's own file meta declares.
fn part_identity(body: &[u8]) -> (String, String) {
    let meta = pacs_store::header::read_file_meta(&mut std::io::Cursor::new(body))
        .expect("a Part 10 object in each part");
    (
        meta.media_storage_sop_instance_uid,
        meta.transfer_syntax_uid,
    )
}

fn peer(args: &[&str], token: &str) -> Vec<Value> {
    let mut c = Command::new("python3");
    c.arg(repo_root().join("tests/peers/wado.py"))
        .args(args)
        .env("PACS_TOKEN", token);
    let out = run_bounded(c, std::time::Duration::from_secs(120));
    assert!(
        out.status.success(),
        "wado.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wado(backend: Backend) {
    let archive = TestArchive::new(backend);
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    let files = sample_files();
    let (b_files, a_files): (Vec<PathBuf>, Vec<PathBuf>) = files
        .iter()
        .cloned()
        .partition(|f| f.file_name().unwrap().to_string_lossy().starts_with("sc_"));
    for (clinic, list) in [("Clinic A", &a_files), ("Clinic B", &b_files)] {
        let mut args = vec!["import", "--quiet", "--clinic", clinic];
        let paths: Vec<String> = list.iter().map(|p| p.display().to_string()).collect();
        args.extend(paths.iter().map(String::as_str));
        archive.pacs_ok(&args);
    }
    let tokens = archive.users_with_tokens(
        &[
            ("boss", Role::Admin, None, &[]),
            ("svc-b", Role::Service, Some("Clinic B"), &[]),
        ],
        Some("wado test passphrase 4321"),
        "wado",
    );
    let server = archive.start();
    let port = server.http_port;
    let bearer = format!("Bearer {}", tokens[0]);
    let h = |accept: &'static str| [("Authorization", bearer.clone()), ("Accept", accept.into())];

    // study → (series → instances), instance → (file, transfer syntax).
    let mut studies: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut by_sop: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
    for f in &files {
        let (study, series, sop, ts) = identity(f);
        studies
            .entry(study)
            .or_default()
            .entry(series)
            .or_default()
            .insert(sop.clone());
        by_sop.insert(sop, (f.clone(), ts));
    }

    // Every study, as stored: each part byte-identical to the stored object.
    for (study, series) in &studies {
        let hh = h(ALL_AS_STORED);
        let hr: Vec<(&str, &str)> = hh.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = get(port, &format!("/dicom-web/studies/{study}"), &hr);
        r.expect(200, study);
        assert!(
            r.headers("content-type")[0]
                .starts_with("multipart/related; type=\"application/dicom\"")
        );
        let parts = multipart_parts(&r);
        let expected: BTreeSet<&String> = series.values().flatten().collect();
        assert_eq!(parts.len(), expected.len(), "{study}");
        for (headers, body) in &parts {
            let (sop, ts) = part_identity(body);
            assert!(expected.contains(&sop), "{sop} not of {study}");
            assert!(
                headers.contains(&format!("transfer-syntax={ts}")),
                "{headers}"
            );
            let stored = archive.stored(&sop).expect("stored");
            assert!(
                stored.whole == *body,
                "{sop}: retrieved bytes differ from stored"
            );
            assert_eq!(ts, by_sop[&sop].1, "as stored");
        }
    }

    // Series and instance level.
    let (study, series) = studies
        .iter()
        .find(|(_, s)| s.values().any(|i| i.len() > 1))
        .unwrap();
    let (series_uid, instances) = series.iter().find(|(_, i)| i.len() > 1).unwrap();
    let hh = h(ALL_AS_STORED);
    let hr: Vec<(&str, &str)> = hh.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = get(
        port,
        &format!("/dicom-web/studies/{study}/series/{series_uid}"),
        &hr,
    );
    r.expect(200, "series");
    let got: BTreeSet<String> = multipart_parts(&r)
        .iter()
        .map(|(_, b)| part_identity(b).0)
        .collect();
    assert_eq!(&got, instances);
    let one = instances.iter().next().unwrap();
    let r = get(
        port,
        &format!("/dicom-web/studies/{study}/series/{series_uid}/instances/{one}"),
        &hr,
    );
    r.expect(200, "instance");
    assert_eq!(multipart_parts(&r).len(), 1);

    // The default syntax: Explicit VR Little Endian. Stored so: as stored; big endian and
    // implicit VR: re-encoded; JPEG, JPEG-LS, JPEG 2000, RLE: decoded. Another syntax than
    // the stored one or Explicit VR Little Endian: 406 with what to ask for.
    for (name, outcome) in [
        ("ct_01.dcm", "as stored"),
        ("cr_big_endian.dcm", "transcoded"),
        ("sc_rgb_implicit.dcm", "transcoded"),
        ("cr_jpeg_baseline.dcm", "decoded"),
        ("mr_jpegls_01.dcm", "decoded"),
        ("dx_j2k.dcm", "decoded"),
        ("mg_rle.dcm", "decoded"),
    ] {
        let f = files.iter().find(|f| f.ends_with(name)).unwrap();
        let (study, series, sop, _) = identity(f);
        let path = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}");
        for accept in [
            "multipart/related; type=\"application/dicom\"",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1",
        ] {
            let r = get(
                port,
                &path,
                &[("Authorization", bearer.as_str()), ("Accept", accept)],
            );
            r.expect(200, name);
            let parts = multipart_parts(&r);
            let (got_sop, ts) = part_identity(&parts[0].1);
            assert_eq!(
                (got_sop.as_str(), ts.as_str()),
                (sop.as_str(), "1.2.840.10008.1.2.1")
            );
            let stored = archive.stored(&sop).unwrap();
            assert_eq!(
                stored.whole == parts[0].1,
                outcome == "as stored",
                "{name}: {outcome}"
            );
            if outcome == "decoded" {
                // Native pixel data now: Rows × Columns × samples × bytes.
                let whole = &parts[0].1;
                let tmp = archive.data_dir().join(format!("decoded-{name}"));
                std::fs::write(&tmp, whole).unwrap();
                let (_, a) = file_attrs(&tmp);
                assert_eq!(a.sop_instance_uid, sop);
                let (rows, cols) = (a.rows.unwrap() as usize, a.columns.unwrap() as usize);
                assert!(
                    whole.len() > rows * cols,
                    "{name}: {} bytes for {rows}×{cols} pixels",
                    whole.len()
                );
            }
            if outcome == "transcoded" {
                // Same data set, other encoding: the scanner reads the same identity.
                let tmp = archive.data_dir().join(format!("transcoded-{name}"));
                std::fs::write(&tmp, &parts[0].1).unwrap();
                let (s2, se2, sop2, ts2) = identity(&tmp);
                assert_eq!(
                    (s2, se2, sop2, ts2.as_str()),
                    (
                        study.clone(),
                        series.clone(),
                        sop.clone(),
                        "1.2.840.10008.1.2.1"
                    )
                );
            }
        }
    }

    let f = files
        .iter()
        .find(|f| f.ends_with("cr_jpeg_baseline.dcm"))
        .unwrap();
    let (st, se, sop, _) = identity(f);
    let r = get(
        port,
        &format!("/dicom-web/studies/{st}/series/{se}/instances/{sop}"),
        &[
            ("Authorization", bearer.as_str()),
            (
                "Accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.70",
            ),
        ],
    );
    r.expect(406, "JPEG baseline as JPEG lossless");
    assert!(r.error().contains("transfer-syntax=*"), "{}", r.error());

    // dicomweb-client retrieves a study with a JPEG-LS series as stored: same instances,
    // same pixel data as the files.
    let f = files
        .iter()
        .find(|f| f.ends_with("mr_jpegls_01.dcm"))
        .unwrap();
    let (mr_study, ..) = identity(f);
    let base = format!("http://127.0.0.1:{port}/dicom-web");
    let mut got: Vec<Value> = peer(&["retrieve", &base, &mr_study], &tokens[0]);
    let in_study: Vec<String> = studies[&mr_study]
        .values()
        .flatten()
        .map(|sop| by_sop[sop].0.display().to_string())
        .collect();
    let mut args = vec!["local"];
    args.extend(in_study.iter().map(String::as_str));
    let mut want = peer(&args, &tokens[0]);
    let key = |v: &Value| v["sop"].as_str().unwrap().to_owned();
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want);

    // Scope and bad requests.
    let svc = format!("Bearer {}", tokens[1]);
    let r = get(
        port,
        &format!("/dicom-web/studies/{mr_study}"),
        &[("Authorization", svc.as_str()), ("Accept", ALL_AS_STORED)],
    );
    r.expect(404, "another clinic's study");
    assert_eq!(r.error(), "no such study");
    let sc = files
        .iter()
        .find(|f| f.ends_with("sc_rgb_implicit.dcm"))
        .unwrap();
    let (sc_study, ..) = identity(sc);
    get(
        port,
        &format!("/dicom-web/studies/{sc_study}"),
        &[("Authorization", svc.as_str()), ("Accept", ALL_AS_STORED)],
    )
    .expect(200, "own clinic's study");
    for (path, accept, status) in [
        ("/dicom-web/studies/1.2.3.4.5.6.7", ALL_AS_STORED, 404),
        ("/dicom-web/studies/..%2F..%2Fetc", ALL_AS_STORED, 400),
        ("/dicom-web/studies/1.2'3", ALL_AS_STORED, 400),
        (
            &format!("/dicom-web/studies/{mr_study}"),
            "application/json",
            406,
        ),
        (
            &format!("/dicom-web/studies/{mr_study}"),
            "multipart/related; type=\"image/jpeg\"",
            406,
        ),
        (
            &format!("/dicom-web/studies/{mr_study}"),
            "multipart/related; type=\"application/dicom\"; transfer-syntax=x'",
            400,
        ),
    ] {
        let r = get(
            port,
            path,
            &[("Authorization", bearer.as_str()), ("Accept", accept)],
        );
        r.expect(status, &format!("{path} {accept}"));
    }

    // WADO-URI: one object per request, as stored.
    let f = files
        .iter()
        .find(|f| f.ends_with("cr_big_endian.dcm"))
        .unwrap();
    let (st, se, sop, _) = identity(f);
    let uri =
        format!("/dicom-web/wado?requestType=WADO&studyUID={st}&seriesUID={se}&objectUID={sop}");
    let r = get(port, &uri, &[("Authorization", bearer.as_str())]);
    r.expect(200, "WADO-URI");
    assert_eq!(r.headers("content-type"), ["application/dicom"]);
    assert!(
        archive.stored(&sop).unwrap().whole == r.raw,
        "WADO-URI as stored"
    );
    let r = get(
        port,
        &format!("{uri}&contentType=application/dicom&transferSyntax=1.2.840.10008.1.2.1"),
        &[("Authorization", bearer.as_str())],
    );
    r.expect(200, "WADO-URI transcoded");
    assert_eq!(
        part_identity(&r.raw),
        (sop.clone(), "1.2.840.10008.1.2.1".to_owned())
    );
    for (query, status) in [
        (format!("{uri}&contentType=image/gif"), 406),
        (uri.replace("requestType=WADO", "requestType=XYZ"), 400),
        (uri.replace(&format!("&objectUID={sop}"), ""), 400),
        (uri.replace(&sop, "1.2.3.4.5"), 404),
        (uri.replace(&sop, "1.2.3.4.5'--"), 400),
    ] {
        get(port, &query, &[("Authorization", bearer.as_str())]).expect(status, &query);
    }
    get(port, &uri, &[("Authorization", svc.as_str())]).expect(404, "WADO-URI, other clinic");

    // Audit: each retrieve is one 110104 event (action R) with its instances.
    let out = archive.pacs_ok(&[
        "audit", "search", "--user", "svc-b", "--event", "110104", "--json",
    ]);
    let events: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(events.len(), 3, "{out}");
    let ok = events.iter().find(|e| e["outcome"] == 0).unwrap();
    assert_eq!(ok["action"], "R");
    assert_eq!(ok["study_instance_uid"], sc_study.as_str());
    assert_eq!(ok["instance_count"], 1);
    let refused = events.iter().find(|e| e["outcome"] == 4).unwrap();
    assert_eq!(refused["study_instance_uid"], mr_study.as_str());
    drop(server);
}

per_backend!(wado);

/// Rendered frames and thumbnails: JPEG by default, PNG on request, the window changes the
/// picture, a frame beyond the end is 404, a PDF has no picture (406), and nothing outside
/// the caller's scope is rendered.
#[test]
fn rendered_frames_and_thumbnails() {
    let archive = TestArchive::new(Backend::SqliteFiles);
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
    let tokens: Vec<String> = archive
        .users_with_tokens(
            &[
                ("svc-a", Role::Service, Some("Clinic A"), &[]),
                ("svc-b", Role::Service, Some("Clinic B"), &[]),
            ],
            None,
            "render",
        )
        .iter()
        .map(|t| format!("Bearer {t}"))
        .collect();
    let server = archive.start();
    let port = server.http_port;
    let a = [("Authorization", tokens[0].as_str())];
    let b = [("Authorization", tokens[1].as_str())];
    let path_of = |name: &str| {
        let (st, se, sop, _) = identity(&dir.join(name));
        (
            format!("/dicom-web/studies/{st}/series/{se}/instances/{sop}"),
            st,
            se,
        )
    };
    let (ct, ct_study, ct_series) = path_of("ct_01.dcm");
    let r = get(port, &format!("{ct}/rendered"), &a);
    r.expect(200, "rendered CT");
    assert_eq!(r.headers("content-type"), ["image/jpeg"]);
    assert!(r.raw.starts_with(&[0xFF, 0xD8]), "a JPEG");
    let narrow = get(
        port,
        &format!("{ct}/rendered?window=40,80&accept=image/png"),
        &a,
    );
    narrow.expect(200, "PNG, narrow window");
    assert_eq!(narrow.headers("content-type"), ["image/png"]);
    let wide = get(
        port,
        &format!("{ct}/rendered?window=40,4000&accept=image/png"),
        &a,
    );
    assert!(
        narrow.raw.starts_with(b"\x89PNG") && narrow.raw != wide.raw,
        "the window shows"
    );
    let (us, ..) = path_of("us_cine_jpeg.dcm");
    let f2 = get(port, &format!("{us}/frames/2/rendered"), &a);
    f2.expect(200, "frame 2 of the cine");
    let f1 = get(port, &format!("{us}/frames/1/rendered"), &a);
    assert_ne!(f1.raw, f2.raw, "frames differ");
    get(port, &format!("{us}/frames/11/rendered"), &a).expect(404, "frame 11 of 10");
    get(port, &format!("{us}/frames/0/rendered"), &a).expect(400, "frame 0");
    get(port, &format!("{ct}/rendered?window=abc"), &a).expect(400, "bad window");
    get(
        port,
        &format!("{ct}/rendered"),
        &[a[0], ("Accept", "image/gif")],
    )
    .expect(406, "gif");
    let (pdf, ..) = path_of("doc_pdf.dcm");
    get(port, &format!("{pdf}/rendered"), &a).expect(406, "a PDF has no picture");
    for path in [
        format!("/dicom-web/studies/{ct_study}/thumbnail"),
        format!("/dicom-web/studies/{ct_study}/series/{ct_series}/thumbnail?viewport=64,64"),
        format!("{ct}/thumbnail"),
    ] {
        let r = get(port, &path, &a);
        r.expect(200, &path);
        assert_eq!(r.headers("content-type"), ["image/jpeg"], "{path}");
    }
    get(port, &format!("/dicom-web/studies/{ct_study}/rendered"), &a).expect(406, "study rendered");
    // WADO-URI's image content types render too.
    let (st, se, sop, _) = identity(&dir.join("ct_01.dcm"));
    let uri =
        format!("/dicom-web/wado?requestType=WADO&studyUID={st}&seriesUID={se}&objectUID={sop}");
    let r = get(
        port,
        &format!("{uri}&contentType=image/jpeg&windowCenter=40&windowWidth=400&rows=64"),
        &a,
    );
    r.expect(200, "WADO-URI image/jpeg");
    assert!(r.raw.starts_with(&[0xFF, 0xD8]));
    get(
        port,
        &format!("{uri}&contentType=image/png&windowCenter=40"),
        &a,
    )
    .expect(400, "half a window");
    // Another clinic: nothing rendered, same 404 as an unknown instance.
    get(port, &format!("{ct}/rendered"), &b).expect(404, "other clinic");
    get(
        port,
        &format!("/dicom-web/studies/{ct_study}/thumbnail"),
        &b,
    )
    .expect(404, "other clinic");
    assert!(server.log().lines().all(|l| !l.contains("panicked")));
}

/// Frames of losslessly compressed instances asked as uncompressed octet-stream (what a
/// client that cannot decode asks for) are decoded, and equal dcmtk's own decoding
/// (dcmdjpls, dcmdjpeg) of the same files.
#[test]
fn compressed_frames_decoded_on_request() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    let dir = sample_dir();
    archive.pacs_ok(&[
        "import",
        "--quiet",
        "--clinic",
        "Clinic A",
        &dir.display().to_string(),
    ]);
    let token = format!(
        "Bearer {}",
        archive.users_with_tokens(
            &[("svc-a", Role::Service, Some("Clinic A"), &[])],
            None,
            "frames"
        )[0]
    );
    let server = archive.start();
    let work = tempfile::tempdir().unwrap();
    for (name, tool) in [
        ("mr_jpegls_01.dcm", "dcmdjpls"),
        ("dx_jpeg_lossless.dcm", "dcmdjpeg"),
    ] {
        let src = dir.join(name);
        let out = work.path().join(name);
        let mut c = dcmtk(tool);
        c.arg(&src).arg(&out);
        let done = run_bounded(c, std::time::Duration::from_secs(60));
        assert!(done.status.success(), "{tool}: {done:?}");
        let reference = std::fs::read(&out).unwrap();
        let (st, se, sop, _) = identity(&src);
        let r = get(
            server.http_port,
            &format!("/dicom-web/studies/{st}/series/{se}/instances/{sop}/frames/1"),
            &[
                ("Authorization", token.as_str()),
                (
                    "Accept",
                    "multipart/related; type=\"application/octet-stream\"",
                ),
            ],
        );
        r.expect(200, name);
        let parts = multipart_parts(&r);
        assert_eq!(parts.len(), 1);
        assert!(
            parts[0]
                .0
                .contains("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"),
            "{}",
            parts[0].0
        );
        let frame = &parts[0].1;
        // A whole frame: Rows × Columns 16-bit samples.
        let (_, attrs) = file_attrs(&src);
        let pixels = (attrs.rows.unwrap() * attrs.columns.unwrap()) as usize;
        assert_eq!(frame.len(), pixels * 2, "{name}");
        // dcmtk's output ends with the Pixel Data value (even length).
        assert!(
            reference.ends_with(frame),
            "{name}: {} decoded bytes differ from {tool}'s",
            frame.len()
        );
    }
}
