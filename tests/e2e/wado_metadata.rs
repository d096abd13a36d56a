//! WADO-RS metadata, frames and bulk data against the real binary, on both backends: every
//! sample study's metadata equals what pydicom reads from the stored files (dicomweb-client
//! and plain HTTP), in the right scripts for every character set (ISO 2022 IR 58 included);
//! the metadata cache answers without the objects and picks up a late instance; frames of
//! native (little, big endian, implicit) and compressed (JPEG cine, JPEG lossless, JPEG-LS,
//! JPEG 2000, RLE) instances equal pydicom's frames, in their media types; bad frame lists,
//! 406 for what cannot be sent, decoded frames for clients that take uncompressed data only;
//! bulk data; scope and the audit trail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use pacs_store::objects::ObjectKey;
use pacs_store::users::Role;
use serde_json::Value;

use crate::http::*;
use crate::per_backend;
use crate::support::*;

/// What Cornerstone3D's WADO-RS image loader sends for frames.
const CORNERSTONE: &str = "multipart/related; type=application/octet-stream; transfer-syntax=*";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// (study, series, SOP instance UID) of a sample file.
fn identity(path: &Path) -> (String, String, String) {
    let (_, a) = file_attrs(path);
    (
        a.study_instance_uid,
        a.series_instance_uid,
        a.sop_instance_uid,
    )
}

fn peer(args: &[&str], token: &str) -> Vec<Value> {
    let mut c = Command::new("python3");
    c.arg(repo_root().join("tests/peers/wado_metadata.py"))
        .args(args)
        .env("PACS_TOKEN", token);
    let out = run_bounded(c, std::time::Duration::from_secs(180));
    assert!(
        out.status.success(),
        "wado_metadata.py {:?}: {}",
        &args[..args.len().min(3)],
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// pydicom's frames of a file (native ones in little endian).
fn pydicom_frames(path: &Path) -> Vec<Vec<u8>> {
    peer(&["frames", &path.display().to_string()], "")
        .iter()
        .map(|f| unhex(f["hex"].as_str().unwrap()))
        .collect()
}

/// The Content-Type of a part.
fn part_type(headers: &str) -> String {
    headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or_else(|| panic!("no Content-Type in {headers:?}"))
        .to_owned()
}

/// A copy of `src` as another instance of the same series (dcmodify; file meta updated).
fn late_instance(dir: &Path, src: &Path, sop: &str) -> PathBuf {
    let dst = dir.join("late.dcm");
    std::fs::copy(src, &dst).unwrap();
    let mut c = Command::new("/usr/bin/dcmodify");
    c.args([
        "-nb",
        "-m",
        &format!("(0008,0018)={sop}"),
        "-m",
        "(0020,0013)=99",
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

/// Deletes an instance's object from the object store (files or S3).
fn delete_object(archive: &TestArchive, sop: &str) {
    runtime().block_on(async {
        let a = archive.open().await;
        let rec = a.index().find_instance(sop).await.unwrap().unwrap();
        let key = ObjectKey::parse(&rec.object_key).unwrap();
        a.objects().delete(&key).await.unwrap();
        assert!(!a.objects().exists(&key).await.unwrap());
        a.index().close().await;
    });
}

fn wado_metadata(backend: Backend) {
    // Studies become ready a second after their last instance, and their metadata is then
    // cached before anyone asks.
    let archive = TestArchive::new(backend).with_env("PACS_STUDY_QUIET_SECONDS", "1");
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
        Some("metadata test passphrase 8765"),
        "metadata",
    );
    let server = archive.start();
    let port = server.http_port;
    let bearer = format!("Bearer {}", tokens[0]);
    let base = format!("http://127.0.0.1:{port}/dicom-web");
    let get_as = |path: &str, accept: Option<&str>| {
        let mut h = vec![("Authorization", bearer.as_str())];
        if let Some(a) = accept {
            h.push(("Accept", a));
        }
        get(port, path, &h)
    };

    // Warming: once the studies are ready, their metadata is cached without a request (an
    // object deleted then is not missed).
    let study_count = files
        .iter()
        .map(|f| identity(f).0)
        .collect::<BTreeSet<_>>()
        .len();
    let warmed = wait_for(std::time::Duration::from_secs(60), || {
        (server.log().matches("metadata cached").count() >= study_count).then_some(())
    });
    assert!(warmed.is_some(), "no warming in:\n{}", server.log());
    let mr_gone = identity(&sample_dir().join("mr_jpegls_03.dcm")).2;
    delete_object(&archive, &mr_gone);

    // study → series → instances; instance → file.
    let mut studies: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut by_name: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for f in &files {
        let (study, series, sop) = identity(f);
        studies
            .entry(study.clone())
            .or_default()
            .entry(series.clone())
            .or_default()
            .insert(sop.clone());
        by_name.insert(
            f.file_name().unwrap().to_string_lossy().into_owned(),
            (study, series, sop),
        );
    }
    let manifest = manifest();
    let instance_path = |name: &str| {
        let (st, se, sop) = &by_name[name];
        format!("/dicom-web/studies/{st}/series/{se}/instances/{sop}")
    };

    // Every study's metadata: its instances, person names in their scripts, bulk data as
    // URIs; then dicomweb-client's reading of it equals pydicom's reading of the files.
    let mut objects_by_sop: BTreeMap<String, Value> = BTreeMap::new();
    for (study, series) in &studies {
        let r = get_as(&format!("/dicom-web/studies/{study}/metadata"), None);
        r.expect(200, study);
        assert_eq!(r.headers("content-type"), ["application/dicom+json"]);
        assert_eq!(r.headers("cache-control"), ["no-store"]);
        let got = r.json();
        let got = got.as_array().unwrap();
        let expected: BTreeSet<&String> = series.values().flatten().collect();
        assert_eq!(got.len(), expected.len(), "{study}");
        for obj in got {
            let sop = obj["00080018"]["Value"][0].as_str().unwrap().to_owned();
            assert!(expected.contains(&sop), "{sop} not of {study}");
            objects_by_sop.insert(sop, obj.clone());
        }
        let in_study: Vec<String> = files
            .iter()
            .filter(|f| identity(f).0 == *study)
            .map(|f| f.display().to_string())
            .collect();
        let mut args = vec!["compare", base.as_str(), study.as_str()];
        args.extend(in_study.iter().map(String::as_str));
        let compared = peer(&args, &tokens[0]);
        assert_eq!(compared.len(), expected.len(), "{study}: {compared:?}");
        for c in &compared {
            assert_eq!(c["mismatches"], serde_json::json!([]), "{study}: {c}");
            assert!(c["checked"].as_u64().unwrap() >= 30, "{c}");
        }
    }
    for row in &manifest {
        let (_, _, sop) = &by_name[&row.file];
        let obj = &objects_by_sop[sop];
        let groups: Vec<&str> = row.patient_name.split('=').collect();
        let name = &obj["00100010"]["Value"][0];
        assert_eq!(name["Alphabetic"], groups[0], "{}: {name}", row.file);
        match groups.get(1).filter(|g| !g.is_empty()) {
            Some(ideographic) => assert_eq!(name["Ideographic"], *ideographic, "{}", row.file),
            None => assert!(name.get("Ideographic").is_none(), "{}: {name}", row.file),
        }
        assert_eq!(obj["00100020"]["Value"][0], row.patient_id.as_str());
        let has_pixels = !matches!(row.file.as_str(), "doc_pdf.dcm" | "sr_text_deflated.dcm");
        let px = &obj["7FE00010"];
        if has_pixels {
            assert!(
                px.get("Value").is_none() && px.get("InlineBinary").is_none(),
                "{px}"
            );
            assert_eq!(
                px["BulkDataURI"],
                format!("{}/bulkdata/7FE00010", instance_path(&row.file)),
                "{}",
                row.file
            );
        } else {
            assert!(px.is_null(), "{}", row.file);
        }
    }
    // The ISO 2022 IR 58 file comes out as Chinese, not escapes.
    let cr = &objects_by_sop[&by_name["cr_jpeg_baseline.dcm"].2];
    assert_eq!(
        cr["00100010"]["Value"][0],
        serde_json::json!({"Alphabetic": "Zhou^Guoqiang", "Ideographic": "周^国强"})
    );
    assert_eq!(
        cr["00080005"]["Value"],
        serde_json::json!([null, "ISO 2022 IR 58"])
    );
    // IS and DS are numbers; US too; a sequence with its items.
    let ct = &objects_by_sop[&by_name["ct_01.dcm"].2];
    assert!(ct["00200013"]["Value"][0].is_number(), "{}", ct["00200013"]);
    assert!(ct["00280030"]["Value"][0].is_f64(), "{}", ct["00280030"]);
    assert_eq!(ct["00280010"]["Value"][0], 128);
    let dx = &objects_by_sop[&by_name["dx_j2k.dcm"].2];
    let view = &dx["00540220"];
    assert_eq!(view["vr"], "SQ");
    assert!(
        view["Value"][0]["00080100"]["Value"][0].is_string(),
        "{view}"
    );
    let sr = &objects_by_sop[&by_name["sr_text_deflated.dcm"].2];
    assert!(!sr["0040A730"]["Value"].as_array().unwrap().is_empty());

    // Series and instance level; dicomweb-client's series metadata.
    let (ct_study, ct_series, _) = by_name["ct_01.dcm"].clone();
    let ct_sops = &studies[&ct_study][&ct_series];
    let r = get_as(
        &format!("/dicom-web/studies/{ct_study}/series/{ct_series}/metadata"),
        Some("application/dicom+json"),
    );
    r.expect(200, "series metadata");
    assert_eq!(r.json().as_array().unwrap().len(), ct_sops.len());
    let listed: BTreeSet<String> = peer(&["series", &base, &ct_study, &ct_series], &tokens[0])
        .iter()
        .map(|v| v["sop"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(&listed, ct_sops);
    let r = get_as(
        &format!("{}/metadata", instance_path("us_cine_jpeg.dcm")),
        None,
    );
    r.expect(200, "instance metadata");
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    assert_eq!(r.json()[0]["00280008"]["Value"][0], 10);
    get_as(
        &format!("/dicom-web/studies/{ct_study}/metadata"),
        Some("application/xml"),
    )
    .expect(406, "metadata as XML");

    // Series pixel data: every frame of every instance in one answer, in the series' order,
    // each part what the frame's own request gives, with its location and length.
    let any = "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*";
    let ct_series = &by_name["ct_01.dcm"].1;
    let r = get_as(
        &format!("/dicom-web/studies/{ct_study}/series/{ct_series}/pixeldata"),
        Some(any),
    );
    r.expect(200, "CT series pixel data");
    let parts = multipart_parts(&r);
    assert_eq!(parts.len(), 10, "one part per CT slice");
    for (i, (head, body)) in parts.iter().enumerate() {
        let name = format!("ct_{:02}.dcm", i + 1);
        let own = get_as(&format!("{}/frames/1", instance_path(&name)), Some(any));
        own.expect(200, &name);
        assert!(
            *body == multipart_parts(&own)[0].1,
            "{name}: the frame's own bytes"
        );
        assert!(
            head.contains(&format!(
                "Content-Location: {}/frames/1",
                instance_path(&name)
            )),
            "{name}: {head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{name}: {head}"
        );
        assert_eq!(
            part_type(head),
            "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
            "{name}"
        );
    }
    // The cache: with an object gone from the object store, its metadata is still
    // answered in full (it is not read again); a late instance of the series appears.
    let gone = by_name["ct_05.dcm"].2.clone();
    delete_object(&archive, &gone);
    let r = get_as(&format!("/dicom-web/studies/{ct_study}/metadata"), None);
    r.expect(200, "metadata from the cache");
    let again = r.json();
    let cached = again
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["00080018"]["Value"][0] == gone.as_str())
        .expect("the instance whose object is gone");
    assert_eq!(cached, &objects_by_sop[&gone], "served from the cache");
    let warm = &objects_by_sop[&mr_gone];
    assert_eq!(
        warm["00280010"]["Value"][0], 128,
        "warmed before its object was deleted"
    );
    let late_sop = format!("{}.99", by_name["ct_02.dcm"].2);
    let late = late_instance(
        archive.data_dir(),
        &files
            .iter()
            .find(|f| f.ends_with("ct_02.dcm"))
            .unwrap()
            .clone(),
        &late_sop,
    );
    archive.pacs_ok(&[
        "import",
        "--quiet",
        "--clinic",
        "Clinic A",
        &late.display().to_string(),
    ]);
    let r = get_as(
        &format!("/dicom-web/studies/{ct_study}/series/{ct_series}/metadata"),
        None,
    );
    r.expect(200, "series with a late instance");
    let sops: BTreeSet<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["00080018"]["Value"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sops.len(), ct_sops.len() + 1);
    assert!(sops.contains(&late_sop));

    // Frames: native little endian, big endian and implicit VR: the frame's bytes in
    // little endian, as application/octet-stream.
    for name in ["ct_01.dcm", "cr_big_endian.dcm", "sc_rgb_implicit.dcm"] {
        let want = pydicom_frames(&sample_dir().join(name));
        for accept in [Some(CORNERSTONE), None] {
            let r = get_as(&format!("{}/frames/1", instance_path(name)), accept);
            r.expect(200, name);
            assert!(
                r.headers("content-type")[0]
                    .starts_with("multipart/related; type=\"application/octet-stream\""),
                "{}",
                r.head
            );
            let parts = multipart_parts(&r);
            assert_eq!(parts.len(), 1);
            assert_eq!(
                part_type(&parts[0].0),
                format!("application/octet-stream; transfer-syntax={EXPLICIT_LE}")
            );
            assert!(
                parts[0].1 == want[0],
                "{name}: frame 1 differs from pydicom's"
            );
        }
    }
    // Compressed: the stored bitstream of each frame in its media type.
    for (name, media, ts) in [
        ("us_cine_jpeg.dcm", "image/jpeg", "1.2.840.10008.1.2.4.50"),
        (
            "dx_jpeg_lossless.dcm",
            "image/jpeg",
            "1.2.840.10008.1.2.4.70",
        ),
        ("mr_jpegls_01.dcm", "image/jls", "1.2.840.10008.1.2.4.80"),
        ("dx_j2k.dcm", "image/jp2", "1.2.840.10008.1.2.4.90"),
        ("mg_rle.dcm", "image/dicom-rle", "1.2.840.10008.1.2.5"),
    ] {
        let want = pydicom_frames(&sample_dir().join(name));
        let n = want.len();
        let list = if n > 1 {
            "2".to_owned()
        } else {
            "1".to_owned()
        };
        for accept in [
            CORNERSTONE.to_owned(),
            format!("multipart/related; type=\"{media}\""),
            format!("multipart/related; type=\"{media}\"; transfer-syntax={ts}"),
        ] {
            let r = get_as(
                &format!("{}/frames/{list}", instance_path(name)),
                Some(&accept),
            );
            r.expect(200, &format!("{name} {accept}"));
            assert!(
                r.headers("content-type")[0]
                    .starts_with(&format!("multipart/related; type=\"{media}\"")),
                "{}",
                r.head
            );
            let parts = multipart_parts(&r);
            assert_eq!(
                part_type(&parts[0].0),
                format!("{media}; transfer-syntax={ts}")
            );
            let i: usize = list.parse::<usize>().unwrap() - 1;
            assert!(
                parts[0].1 == want[i],
                "{name}: frame {list} differs from pydicom's"
            );
        }
        // Uncompressed only: the frame decoded (its bytes are checked against dcmtk's
        // decoding in wado.rs).
        for accept in [
            Some("multipart/related; type=\"application/octet-stream\""),
            Some(
                "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.1",
            ),
            None,
        ] {
            let r = get_as(&format!("{}/frames/1", instance_path(name)), accept);
            r.expect(200, name);
            let parts = multipart_parts(&r);
            assert_eq!(
                part_type(&parts[0].0),
                "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
                "{name}"
            );
            assert!(parts[0].1.len() > want[0].len(), "{name}: decoded, larger");
        }
    }
    // Several frames of the cine, in the order asked; a single-part answer for one frame.
    let cine = pydicom_frames(&sample_dir().join("us_cine_jpeg.dcm"));
    assert_eq!(cine.len(), 10);
    let r = get_as(
        &format!("{}/frames/10,1,3", instance_path("us_cine_jpeg.dcm")),
        Some("multipart/related; type=\"image/jpeg\""),
    );
    r.expect(200, "three frames");
    let parts = multipart_parts(&r);
    assert_eq!(parts.len(), 3);
    for (part, n) in parts.iter().zip([10usize, 1, 3]) {
        assert!(part.1 == cine[n - 1], "frame {n}");
        assert!(part.0.contains(&format!("/frames/{n}")), "{}", part.0);
    }
    let r = get_as(
        &format!("{}/frames/4", instance_path("us_cine_jpeg.dcm")),
        Some("image/jpeg"),
    );
    r.expect(200, "single part");
    assert_eq!(
        r.headers("content-type"),
        ["image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"]
    );
    assert!(r.raw == cine[3]);
    // Series pixel data of a multi-frame JPEG: its frames as stored, in order.
    let any = "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*";
    let (us_study, us_series, _) = &by_name["us_cine_jpeg.dcm"];
    let us_pixels = format!("/dicom-web/studies/{us_study}/series/{us_series}/pixeldata");
    let r = get_as(&us_pixels, Some(any));
    r.expect(200, "cine series pixel data");
    let parts = multipart_parts(&r);
    assert_eq!(parts.len(), 10);
    for (n, (head, body)) in parts.iter().enumerate() {
        assert!(*body == cine[n], "cine frame {}", n + 1);
        assert!(head.contains(&format!("/frames/{}", n + 1)), "{head}");
        assert_eq!(
            part_type(head),
            "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"
        );
    }
    // Not offered: a single part, and compressed frames to a client that takes
    // uncompressed ones only (they are decoded frame by frame); each says why.
    for (accept, why) in [
        ("application/octet-stream", "multipart"),
        (
            "multipart/related; type=\"application/octet-stream\"",
            "frame by frame",
        ),
    ] {
        let r = get_as(&us_pixels, Some(accept));
        r.expect(406, accept);
        assert!(r.error().contains(why), "{accept}: {}", r.error());
    }
    get_as(
        &format!("/dicom-web/studies/{us_study}/series/1.2.3.4/pixeldata"),
        Some(any),
    )
    .expect(404, "unknown series");

    // dicomweb-client's frames.
    let (st, se, sop) = &by_name["us_cine_jpeg.dcm"];
    let got = peer(
        &[
            "dwc_frames",
            &base,
            st,
            se,
            sop,
            "2,5",
            "image/jpeg",
            "1.2.840.10008.1.2.4.50",
        ],
        &tokens[0],
    );
    assert_eq!(got.len(), 2);
    assert!(unhex(got[0]["hex"].as_str().unwrap()) == cine[1]);
    assert!(unhex(got[1]["hex"].as_str().unwrap()) == cine[4]);

    // Encodings the sample set lacks: a multi-frame JPEG without a Basic Offset Table (one
    // fragment per frame, and frames split over fragments), a deflated data set.
    let out = archive.data_dir().join("variants");
    std::fs::create_dir_all(&out).unwrap();
    let variants = peer(
        &[
            "variants",
            &sample_dir().display().to_string(),
            &out.display().to_string(),
        ],
        "",
    );
    let paths: Vec<String> = variants
        .iter()
        .map(|v| v["file"].as_str().unwrap().to_owned())
        .collect();
    let mut args = vec!["import", "--quiet", "--clinic", "Clinic A"];
    args.extend(paths.iter().map(String::as_str));
    archive.pacs_ok(&args);
    for v in &variants {
        let file = PathBuf::from(v["file"].as_str().unwrap());
        let inst = format!(
            "/dicom-web/studies/{}/series/{}/instances/{}",
            v["study"].as_str().unwrap(),
            v["series"].as_str().unwrap(),
            v["sop"].as_str().unwrap()
        );
        let want = pydicom_frames(&file);
        let list: Vec<String> = (1..=want.len()).rev().map(|n| n.to_string()).collect();
        let r = get_as(
            &format!("{inst}/frames/{}", list.join(",")),
            Some(CORNERSTONE),
        );
        r.expect(200, &file.display().to_string());
        let parts = multipart_parts(&r);
        assert_eq!(parts.len(), want.len());
        for (part, n) in parts.iter().zip((1..=want.len()).rev()) {
            assert!(part.1 == want[n - 1], "{}: frame {n}", file.display());
        }
        let r = get_as(&format!("{inst}/metadata"), None);
        r.expect(200, "variant metadata");
        let rows = if file.ends_with("ct_deflated.dcm") {
            128
        } else {
            64
        };
        assert_eq!(r.json()[0]["00280010"]["Value"][0], rows);
        if file.ends_with("ct_deflated.dcm") {
            let r = get_as(&format!("{inst}/bulkdata/7FE00010"), None);
            r.expect(200, "deflated pixel data");
            assert!(multipart_parts(&r)[0].1 == want[0]);
        }
    }

    // Bad frame lists and frames that do not exist.
    let us = instance_path("us_cine_jpeg.dcm");
    let many: Vec<String> = (1..=1001).map(|n| n.to_string()).collect();
    for (path, status, why) in [
        (format!("{us}/frames/0"), 400, "start at 1"),
        (format!("{us}/frames/a"), 400, "not a frame number"),
        (format!("{us}/frames/1,,2"), 400, "empty"),
        (format!("{us}/frames/2,2"), 400, "twice"),
        (
            format!("{us}/frames/{}", many.join(",")),
            400,
            "at most 1000",
        ),
        (format!("{us}/frames/11"), 404, "the instance has 10 frames"),
        (
            format!("{}/frames/2", instance_path("ct_01.dcm")),
            404,
            "the instance has 1 frame",
        ),
        (
            format!("{}/frames/1", instance_path("doc_pdf.dcm")),
            404,
            "no pixel data",
        ),
    ] {
        let r = get_as(&path, Some(CORNERSTONE));
        r.expect(status, &path[path.len().saturating_sub(40)..]);
        assert!(r.error().contains(why), "{}: {}", why, r.error());
    }

    // Bulk data: native pixel data whole (little endian); the cine's as its frames; an
    // attribute that is not bulk, a bad tag.
    for name in ["ct_01.dcm", "cr_big_endian.dcm"] {
        let r = get_as(&format!("{}/bulkdata/7FE00010", instance_path(name)), None);
        r.expect(200, name);
        let parts = multipart_parts(&r);
        assert_eq!(parts.len(), 1);
        assert!(
            parts[0].1 == pydicom_frames(&sample_dir().join(name))[0],
            "{name}"
        );
    }
    let r = get_as(&format!("{us}/bulkdata/7fe00010"), Some(CORNERSTONE));
    r.expect(200, "compressed pixel data");
    let parts = multipart_parts(&r);
    assert_eq!(parts.len(), 10);
    assert!(parts.iter().zip(&cine).all(|(p, f)| p.1 == *f));
    get_as(&format!("{us}/bulkdata/00100010"), None).expect(404, "not bulk");
    get_as(&format!("{us}/bulkdata/7FE0001G"), None).expect(400, "bad tag");
    // Asked as uncompressed octet-stream: every frame decoded.
    let r = get_as(&format!("{us}/bulkdata/7FE00010"), None);
    r.expect(200, "compressed, octet-stream");
    let parts = multipart_parts(&r);
    assert_eq!(parts.len(), 10);
    assert!(parts.iter().zip(&cine).all(|(p, f)| p.1.len() > f.len()));

    // Scope: another clinic's service account sees none of it, exactly like unknown UIDs.
    let svc = format!("Bearer {}", tokens[1]);
    let (mr_study, mr_series, mr_sop) = by_name["mr_jpegls_01.dcm"].clone();
    let mr = format!("/dicom-web/studies/{mr_study}/series/{mr_series}/instances/{mr_sop}");
    for (path, missing) in [
        (
            format!("/dicom-web/studies/{mr_study}/metadata"),
            "no such study",
        ),
        (
            format!("/dicom-web/studies/{mr_study}/series/{mr_series}/metadata"),
            "no such series",
        ),
        (format!("{mr}/metadata"), "no such instance"),
        (format!("{mr}/frames/1"), "no such instance"),
        (format!("{mr}/bulkdata/7FE00010"), "no such instance"),
        (
            format!("/dicom-web/studies/{mr_study}/series/{mr_series}/pixeldata"),
            "no such series",
        ),
        (
            "/dicom-web/studies/1.2.3.4.5.6.7/metadata".to_owned(),
            "no such study",
        ),
    ] {
        let r = get(
            port,
            &path,
            &[("Authorization", svc.as_str()), ("Accept", "*/*")],
        );
        r.expect(404, &path);
        assert_eq!(r.error(), missing, "{path}");
    }
    let sc_study = &by_name["sc_rgb_implicit.dcm"].0;
    get(
        port,
        &format!("/dicom-web/studies/{sc_study}/metadata"),
        &[("Authorization", svc.as_str())],
    )
    .expect(200, "own clinic's study");
    for (path, status) in [
        ("/dicom-web/studies/1.2'3/metadata".to_owned(), 400),
        (
            format!("/dicom-web/studies/{mr_study}/series/x/metadata"),
            400,
        ),
        (
            format!("{mr}/frames/1").replace(&mr_sop, "..%2F..%2Fetc"),
            400,
        ),
    ] {
        get_as(&path, None).expect(status, &path);
    }

    // Audit: metadata reads are 110103 (action R), frames and bulk data 110104; refusals
    // are minor failures naming the study.
    let search = |event: &str, user: &str| -> Vec<Value> {
        let out = archive.pacs_ok(&[
            "audit", "search", "--user", user, "--event", event, "--json",
        ]);
        serde_json::from_str(&out).unwrap()
    };
    let reads = search("110103", "svc-b");
    assert_eq!(reads.len(), 5, "{reads:?}");
    assert_eq!(
        reads.iter().filter(|e| e["outcome"] == 4).count(),
        4,
        "{reads:?}"
    );
    let ok = reads.iter().find(|e| e["outcome"] == 0).unwrap();
    assert_eq!(ok["action"], "R");
    assert_eq!(ok["study_instance_uid"], sc_study.as_str());
    // Frames, bulk data and series pixel data refused: one failed transfer each.
    let transfers = search("110104", "svc-b");
    assert_eq!(transfers.len(), 3, "{transfers:?}");
    assert!(
        transfers
            .iter()
            .all(|e| e["outcome"] == 4 && e["study_instance_uid"] == mr_study.as_str())
    );
    let boss_reads = search("110103", "boss");
    assert!(boss_reads.iter().any(|e| e["outcome"] == 0
        && e["study_instance_uid"] == ct_study.as_str()
        && e["instance_count"].as_u64() == Some(ct_sops.len() as u64)));
    let boss_transfers = search("110104", "boss");
    assert!(
        boss_transfers
            .iter()
            .any(|e| e["outcome"] == 0 && e["action"] == "R" && e["instance_count"] == 1)
    );
    drop(server);
}

per_backend!(wado_metadata);

/// Metadata is cached while a study arrives, not only once it is ready: with an hour of
/// quiet period, a CT sent over C-STORE has every instance's metadata cached within
/// seconds, before any request.
fn metadata_cached_at_ingest(backend: Backend) {
    let archive = TestArchive::new(backend).with_env("PACS_STUDY_QUIET_SECONDS", "3600");
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    let server = archive.start();
    let ct = ct_sample_files();
    let run = pynetdicom_store(server.dicom_port, "CLINIC_A_AE", &ct, &[]);
    assert!(
        run.results.iter().all(|r| r.status == Some(0)),
        "{}",
        run.stderr
    );
    let cached = || {
        runtime().block_on(async {
            let a = archive.open().await;
            let n: i64 = sqlx::query("SELECT COUNT(*) FROM instance_metadata")
                .fetch_one(a.index().pool_for_tests())
                .await
                .map(|r| sqlx::Row::get(&r, 0))
                .unwrap();
            a.index().close().await;
            n
        })
    };
    let all = wait_for(std::time::Duration::from_secs(20), || {
        (cached() == ct.len() as i64).then_some(())
    });
    assert!(
        all.is_some(),
        "{} of {} cached: {}",
        cached(),
        ct.len(),
        server.log()
    );
    drop(server);
}

per_backend!(metadata_cached_at_ingest);
