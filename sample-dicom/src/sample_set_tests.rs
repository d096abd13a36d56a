//! Checks of the sample set: the committed files are what the generator writes, every
//! file reads back, and (where dcmtk / OpenJPEG are installed) the compressed pixel
//! data decodes to the source image.

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_dictionary_std::tags;

use super::*;

fn committed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("files")
}

fn manifest(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join(MANIFEST_NAME))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

/// Is `tool` on PATH? A missing tool fails the test (scripts/test.sh installs dcmtk and
/// libopenjp2-tools); `SAMPLE_DICOM_ALLOW_MISSING_TOOLS=1` turns that into a loud skip for
/// a quick local run. Nothing is skipped silently.
fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found && std::env::var_os("SAMPLE_DICOM_ALLOW_MISSING_TOOLS").is_none() {
        panic!("{tool} is not installed: run scripts/test.sh (installs dcmtk, libopenjp2-tools)");
    }
    found
}

fn le_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn native_pixels(path: &Path) -> Vec<u8> {
    let obj = dicom_object::open_file(path).unwrap();
    obj.element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .into_owned()
}

#[test]
fn committed_files_match_the_generator() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = write_sample_set(tmp.path()).unwrap();
    let committed = committed_dir();
    assert_eq!(
        std::fs::read_to_string(tmp.path().join(MANIFEST_NAME)).unwrap(),
        std::fs::read_to_string(committed.join(MANIFEST_NAME)).unwrap(),
        "MANIFEST.tsv differs: regenerate with `sample-dicom sample-set sample-dicom/files`"
    );
    for p in &paths {
        let name = p.file_name().unwrap();
        assert_eq!(
            std::fs::read(p).unwrap(),
            std::fs::read(committed.join(name)).unwrap(),
            "{name:?} differs from the committed file"
        );
    }
}

#[test]
fn every_file_reads_back_with_dicom_rs() {
    let dir = committed_dir();
    let rows = manifest(&dir);
    assert!(rows.len() >= 20);
    for r in rows {
        let obj = dicom_object::open_file(dir.join(&r[0])).unwrap();
        assert_eq!(obj.meta().transfer_syntax(), r[2], "{}", r[0]);
        let id = obj.element(tags::PATIENT_ID).unwrap().to_str().unwrap();
        assert_eq!(id.trim_end(), r[3], "{}", r[0]);
        let issuer = obj.element_opt(tags::ISSUER_OF_PATIENT_ID).unwrap();
        assert_eq!(
            issuer
                .map(|e| e.to_str().unwrap().trim_end().to_string())
                .unwrap_or_default(),
            r[7]
        );
    }
}

#[test]
fn dcmtk_reads_every_file_and_decodes_names() {
    if !have("dcmdump") {
        eprintln!("dcmdump not installed: skipped");
        return;
    }
    let dir = committed_dir();
    for r in manifest(&dir) {
        let path = dir.join(&r[0]);
        let out = Command::new("dcmdump").arg(&path).output().unwrap();
        assert!(out.status.success(), "{}", r[0]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.trim().is_empty(), "{}: {err}", r[0]);
        let out = Command::new("dcmdump")
            .args(["+U8", "+P", "PatientName"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(&format!("[{}]", r[4])), "{}: {text}", r[0]);
    }
}

/// Run a dcmtk decompressor and return the native pixel data it wrote.
fn dcmtk_decode(tool: &str, file: &str) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.dcm");
    let status = Command::new(tool)
        .arg(committed_dir().join(file))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "{tool} {file}");
    native_pixels(&out)
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn dcmtk_decodes_compressed_pixel_data() {
    if !have("dcmdjpeg") || !have("dcmdjpls") || !have("dcmdrle") {
        eprintln!("dcmtk decompressors not installed: skipped");
        return;
    }
    for i in 0..5 {
        let got = dcmtk_decode("dcmdjpls", &format!("mr_jpegls_{:02}.dcm", i + 1));
        assert!(
            got == le_bytes(&mr_source(i)),
            "JPEG-LS slice {i} is not lossless"
        );
    }
    assert!(dcmtk_decode("dcmdjpeg", "dx_jpeg_lossless.dcm") == le_bytes(&dx_source()));
    assert!(dcmtk_decode("dcmdrle", "mg_rle.dcm") == le_bytes(&mg_source()));
    let cr = dcmtk_decode("dcmdjpeg", "cr_jpeg_baseline.dcm");
    assert!(mean_abs_diff(&cr, &cr8_source()) < 2.0);
    let us = dcmtk_decode("dcmdjpeg", "us_cine_jpeg.dcm");
    let src: Vec<u8> = (0..10).flat_map(us_source).collect();
    assert!(mean_abs_diff(&us, &src) < 8.0);
}

#[test]
fn uncompressed_pixel_data_is_the_source() {
    let dir = committed_dir();
    assert!(native_pixels(&dir.join("cr_big_endian.dcm")) == le_bytes(&cr16_source()));
    assert!(native_pixels(&dir.join("sc_rgb_implicit.dcm")) == sc_source());
}

#[test]
fn openjpeg_decodes_the_j2k_fragment_losslessly() {
    if !have("opj_decompress") {
        eprintln!("opj_decompress not installed: skipped");
        return;
    }
    let obj = dicom_object::open_file(committed_dir().join("dx_j2k.dcm")).unwrap();
    let frags = obj
        .element(tags::PIXEL_DATA)
        .unwrap()
        .fragments()
        .unwrap()
        .to_vec();
    assert_eq!(frags.len(), 1);
    let tmp = tempfile::tempdir().unwrap();
    let (j2k, pgm) = (tmp.path().join("f.j2k"), tmp.path().join("f.pgm"));
    std::fs::write(&j2k, &frags[0]).unwrap();
    let status = Command::new("opj_decompress")
        .arg("-i")
        .arg(&j2k)
        .arg("-o")
        .arg(&pgm)
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    let got = std::fs::read(&pgm).unwrap();
    let want = j2k_source_pgm();
    let n = J2K_SOURCE_SIZE as usize * J2K_SOURCE_SIZE as usize * 2;
    assert!(
        got[got.len() - n..] == want[want.len() - n..],
        "J2K is not lossless"
    );
}

/// Wrap one grayscale frame in a minimal MR object and write it with `ts`.
fn write_gray(path: &Path, rows: u16, cols: u16, bits: u16, frame: Vec<u8>, ts: &str) {
    let spec = StudySpec::new(99);
    let series = Series::new(&spec, 1, "MR", "codec check", "");
    let mut ds = Ds::new(&series, dicom_dictionary_std::uids::MR_IMAGE_STORAGE, 1).unwrap();
    let alloc = if bits <= 8 { 8 } else { 16 };
    ds.image_pixel(
        rows,
        cols,
        1,
        "MONOCHROME2",
        alloc,
        bits,
        false,
        Pixels::Encapsulated(vec![frame]),
    );
    ds.write(path, ts).unwrap();
}

/// Test images that exercise run mode, run interruptions, escapes and edges.
fn codec_cases() -> Vec<(u16, u16, u8, Vec<u16>)> {
    let mut rng = crate::uid::SplitMix64(7);
    let mut cases = Vec::new();
    for &(rows, cols, bits) in &[
        (1u16, 1u16, 8u8),
        (3, 1, 8),
        (1, 40, 12),
        (17, 23, 8),
        (40, 33, 12),
        (20, 64, 16),
    ] {
        let max = ((1u32 << bits) - 1) as u64;
        let n = rows as usize * cols as usize;
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            let x = match (i / 7) % 4 {
                0 => 5,                          // flat runs
                1 => rng.next_u64() % (max + 1), // full-range noise (escape codes)
                2 => (i as u64 * 3) % (max + 1), // ramps
                _ => {
                    if i % 2 == 0 {
                        max
                    } else {
                        0
                    }
                } // extremes
            };
            v.push(x as u16);
        }
        cases.push((rows, cols, bits, v));
    }
    cases
}

#[test]
fn jpegls_and_jpeg_lossless_encoders_agree_with_dcmtk() {
    if !have("dcmdjpls") || !have("dcmdjpeg") {
        eprintln!("dcmtk decompressors not installed: skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (k, (rows, cols, bits, px)) in codec_cases().into_iter().enumerate() {
        let want: Vec<u8> = if bits <= 8 {
            px.iter().map(|&v| v as u8).collect()
        } else {
            le_bytes(&px)
        };
        let cases = [
            (
                "dcmdjpls",
                codec::encode_jpegls_lossless(&px, rows, cols, bits),
                dicom_dictionary_std::uids::JPEGLS_LOSSLESS,
            ),
            (
                "dcmdjpeg",
                codec::encode_jpeg_lossless_sv1(&px, rows, cols, bits),
                dicom_dictionary_std::uids::JPEG_LOSSLESS_SV1,
            ),
        ];
        for (tool, frame, ts) in cases {
            let src = tmp.path().join(format!("{k}-{tool}.dcm"));
            let out = tmp.path().join(format!("{k}-{tool}-out.dcm"));
            write_gray(&src, rows, cols, bits as u16, frame, ts);
            let status = Command::new(tool).arg(&src).arg(&out).status().unwrap();
            assert!(status.success(), "{tool} case {k}");
            let got = native_pixels(&out);
            assert!(
                got[..want.len()] == want[..],
                "{tool} case {k} ({rows}x{cols}, {bits} bits) differs"
            );
        }
    }
}
