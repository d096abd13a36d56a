//! The committed sample set (`sample-dicom/files/`): a handful of synthetic patients
//! and studies covering the SOP classes, transfer syntaxes and Chinese character sets a
//! township-clinic PACS meets. `write_sample_set` regenerates it byte for byte.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use dicom_core::dictionary::UidDictionary;
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{StandardSopClassDictionary, tags, uids};
use dicom_object::InMemDicomObject;
use sha2::{Digest, Sha256};

use crate::codec;
use crate::{
    Charset, Ds, Pixels, Projection, Series, StudySpec, axial_plane, code_item, ct_slice, fmt_ds,
    pdf, phantom, projection_image, text_element,
};

/// Name of the manifest written next to the files.
pub const MANIFEST_NAME: &str = "MANIFEST.tsv";

/// The lossless JPEG 2000 codestream of `dx_j2k.dcm`, made by OpenJPEG's
/// `opj_compress` from `phantom::chest_xray(256, 256, 4095, 4001 + 2)` (see README.md;
/// `sample-dicom j2k-source` writes that input as a PGM). No JPEG 2000 encoder is
/// available in Rust, so the codestream is vendored.
const DX_J2K_CODESTREAM: &[u8] = include_bytes!("assets/dx_j2k.j2k");
/// Seed of the J2K image's pixels.
pub const J2K_SOURCE_SEED: u64 = 4001 + 2;
/// Size of the J2K image.
pub const J2K_SOURCE_SIZE: u16 = 256;

struct Entry {
    file: String,
    sop_class: &'static str,
    ts: &'static str,
    spec: StudySpec,
    frames: u32,
}

fn patient_a() -> StudySpec {
    StudySpec::new(1001)
        .label("ct")
        .patient("TS-0001", Some("CLINIC-A"), "Liu^Yan=刘^䶮=")
        .charset(Charset::Gb18030)
        .birth("19580312", "M")
        .date_time("20240311", "083015")
        .accession("A24031101", "101")
        .description("胸部CT平扫 Chest CT")
        .referring_physician("Sun^Li=孙^丽=")
        .institution("Synthetic Township Clinic A")
}

fn patient_b() -> StudySpec {
    StudySpec::new(2001)
        .label("mr")
        .patient("TS-0002", Some("CLINIC-A"), "Huang^Meiling=黄^美玲=")
        .charset(Charset::Utf8)
        .birth("19790704", "F")
        .date_time("20240312", "101500")
        .accession("A24031201", "102")
        .description("头颅MRI Head MR")
        .referring_physician("Zhou^Jun=周^军=")
        .institution("Synthetic Township Clinic A")
}

fn patient_c() -> StudySpec {
    StudySpec::new(3001)
        .label("cr")
        .patient("TS-0003", Some("CLINIC-B"), "Zhou^Guoqiang=周^国强=")
        .charset(Charset::Iso2022Ir58)
        .birth("19650101", "M")
        .date_time("20240313", "143000")
        .accession("B24031301", "201")
        .description("胸部正位 Chest PA")
        .referring_physician("Ma^Hong=马^红=")
        .institution("Synthetic Township Clinic B")
}

/// Same Patient ID as patient A, other issuer: a different person.
fn patient_d() -> StudySpec {
    StudySpec::new(4001)
        .label("dx")
        .patient("TS-0001", Some("CLINIC-B"), "Li^Jincheng=李^錦誠=")
        .charset(Charset::Gbk)
        .birth("19901120", "M")
        .date_time("20240314", "091000")
        .accession("B24031401", "202")
        .description("胸部DR Chest DX")
        .referring_physician("Ma^Hong=马^红=")
        .institution("Synthetic Township Clinic B")
}

fn patient_e() -> StudySpec {
    StudySpec::new(5001)
        .label("cr-be")
        .patient("TS-0005", Some("CLINIC-C"), "Müller^Jörg")
        .charset(Charset::Latin1)
        .birth("19700215", "M")
        .date_time("20240315", "110000")
        .accession("C24031501", "301")
        .description("Thorax p.a. (Röntgen)")
        .referring_physician("Schäfer^Anna")
        .institution("Synthetic Township Clinic C")
}

fn patient_f() -> StudySpec {
    StudySpec::new(6001)
        .label("sc")
        .patient("TS-0006", None, "Test^<img src=x onerror=alert(1)>")
        .charset(Charset::Ascii)
        .birth("20000101", "O")
        .date_time("20240316", "160000")
        .accession("X24031601", "401")
        .description("../../etc/passwd")
        .referring_physician("")
        .institution("Synthetic Township Clinic C")
}

fn sop_class_name(uid: &str) -> &'static str {
    StandardSopClassDictionary
        .by_uid(uid)
        .map(|e| e.name)
        .unwrap_or("unknown")
}

/// Regenerate the committed sample set into `dir` (created if needed), including
/// `MANIFEST.tsv`. Returns the paths of the DICOM files, in manifest order.
pub fn write_sample_set(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut put = |ds: Ds, file: String, ts: &'static str, spec: &StudySpec, frames: u32| {
        let sop_class = ds.sop_class;
        ds.write(&dir.join(&file), ts)?;
        entries.push(Entry {
            file,
            sop_class,
            ts,
            spec: spec.clone(),
            frames,
        });
        anyhow::Ok(())
    };

    // Patient A (GB18030): CT series, explicit VR LE.
    let a = patient_a();
    let ct = Series::new(&a, 1, "CT", "胸部 5mm Axial", "CHEST");
    for i in 0..10 {
        let ds = ct_slice(&ct, i, 10, 128, 128)?;
        put(
            ds,
            format!("ct_{:02}.dcm", i + 1),
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            &a,
            1,
        )?;
    }

    // Patient A, second study: US multi-frame RGB cine, JPEG baseline (YBR_FULL_422).
    let a_us = patient_a()
        .label("us")
        .date_time("20240318", "093000")
        .accession("A24031801", "103")
        .description("心脏超声 Echo");
    let us = Series::new(&a_us, 1, "US", "Cine 4CH", "HEART");
    let (rows, cols, nframes) = (64u16, 64u16, 10usize);
    let frames: Vec<Vec<u8>> = (0..nframes)
        .map(|f| codec::encode_jpeg_baseline(&us_source(f), rows, cols, 3, 90))
        .collect::<anyhow::Result<_>>()?;
    let mut ds = Ds::new(&us, uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE, 1)?;
    ds.strs(
        tags::IMAGE_TYPE,
        VR::CS,
        &["ORIGINAL", "PRIMARY", "CARDIAC"],
    );
    ds.empty(tags::PATIENT_ORIENTATION, VR::CS);
    lossy_jpeg(
        &mut ds,
        rows as usize * cols as usize * 3 * nframes,
        &frames,
    );
    ds.str(tags::FRAME_TIME, VR::DS, "40");
    ds.str(tags::CINE_RATE, VR::IS, "25");
    ds.str(tags::RECOMMENDED_DISPLAY_FRAME_RATE, VR::IS, "25");
    ds.str(tags::NUMBER_OF_FRAMES, VR::IS, &nframes.to_string());
    ds.obj.put(DataElement::new(
        tags::FRAME_INCREMENT_POINTER,
        VR::AT,
        PrimitiveValue::Tags(vec![tags::FRAME_TIME].into()),
    ));
    ds.image_pixel(
        rows,
        cols,
        3,
        "YBR_FULL_422",
        8,
        8,
        false,
        Pixels::Encapsulated(frames),
    );
    put(
        ds,
        "us_cine_jpeg.dcm".into(),
        uids::JPEG_BASELINE8_BIT,
        &a_us,
        nframes as u32,
    )?;

    // Patient B (UTF-8): MR series, JPEG-LS lossless; PDF; Basic Text SR (deflated).
    let b = patient_b();
    let mr = Series::new(&b, 1, "MR", "T2 TSE 轴位", "HEAD");
    for i in 0..5usize {
        let (rows, cols) = (128u16, 128u16);
        let px = mr_source(i);
        let mut ds = Ds::new(&mr, uids::MR_IMAGE_STORAGE, i as u32 + 1)?;
        mr_attributes(&mut ds, &b, i, rows, cols);
        let frame = codec::encode_jpegls_lossless(&px, rows, cols, 12);
        ds.image_pixel(
            rows,
            cols,
            1,
            "MONOCHROME2",
            16,
            12,
            false,
            Pixels::Encapsulated(vec![frame]),
        );
        put(
            ds,
            format!("mr_jpegls_{:02}.dcm", i + 1),
            uids::JPEGLS_LOSSLESS,
            &b,
            1,
        )?;
    }
    let doc = Series::new(&b, 90, "DOC", "Report (PDF)", "");
    let mut ds = Ds::new(&doc, uids::ENCAPSULATED_PDF_STORAGE, 1)?;
    let pdf_bytes = pdf::tiny_pdf(
        "Synthetic radiology report",
        &[
            "sample-dicom: synthetic test data, no patient information.",
            "Examination: MR head (phantom).",
            "Findings: no abnormality in the synthetic phantom.",
        ],
    );
    ds.str(tags::CONVERSION_TYPE, VR::CS, "WSD");
    ds.str(tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
    ds.text(tags::DOCUMENT_TITLE, VR::ST, "头颅MRI报告 Head MR report")?;
    ds.seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![]);
    ds.str(
        tags::ACQUISITION_DATE_TIME,
        VR::DT,
        &format!("{}{}", b.study_date, b.study_time),
    );
    ds.str(
        tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT,
        VR::LO,
        "application/pdf",
    );
    ds.obj.put(DataElement::new(
        tags::ENCAPSULATED_DOCUMENT_LENGTH,
        VR::UL,
        PrimitiveValue::from(pdf_bytes.len() as u32),
    ));
    ds.obj.put(DataElement::new(
        tags::ENCAPSULATED_DOCUMENT,
        VR::OB,
        PrimitiveValue::U8(pdf_bytes.into()),
    ));
    put(
        ds,
        "doc_pdf.dcm".into(),
        uids::EXPLICIT_VR_LITTLE_ENDIAN,
        &b,
        0,
    )?;

    let sr = Series::new(&b, 91, "SR", "Report (SR)", "");
    let mut ds = Ds::new(&sr, uids::BASIC_TEXT_SR_STORAGE, 1)?;
    ds.str(tags::VALUE_TYPE, VR::CS, "CONTAINER");
    ds.seq(
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![code_item("18748-4", "LN", "Diagnostic Imaging Report")],
    );
    ds.str(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
    ds.str(tags::COMPLETION_FLAG, VR::CS, "COMPLETE");
    ds.str(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED");
    ds.seq(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, vec![]);
    ds.seq(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]);
    let finding = InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::RELATIONSHIP_TYPE,
            VR::CS,
            PrimitiveValue::from("CONTAINS"),
        ),
        DataElement::new(tags::VALUE_TYPE, VR::CS, PrimitiveValue::from("TEXT")),
        DataElement::new(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![code_item("121071", "DCM", "Finding")]),
        ),
        text_element(
            b.charset,
            tags::TEXT_VALUE,
            VR::UT,
            "头颅MRI平扫未见明显异常。Synthetic phantom, no patient data.",
        )?,
    ]);
    ds.seq(tags::CONTENT_SEQUENCE, vec![finding]);
    put(
        ds,
        "sr_text_deflated.dcm".into(),
        uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        &b,
        0,
    )?;

    // Patient B, second study: MG, 12-bit stored, RLE lossless.
    let b_mg = patient_b()
        .label("mg")
        .date_time("20240320", "150500")
        .accession("A24032001", "104")
        .description("乳腺X线摄影 Mammography");
    let mg = Series::new(&b_mg, 1, "MG", "L CC", "BREAST");
    let (rows, cols) = (256u16, 192u16);
    let px = mg_source();
    let le: Vec<u8> = px.iter().flat_map(|v| v.to_le_bytes()).collect();
    let frame = codec::encode_rle_frame(&le, rows, cols, 1, 2);
    let ds = projection_image(
        &mg,
        Projection::Mg,
        1,
        rows,
        cols,
        12,
        Pixels::Encapsulated(vec![frame]),
    )?;
    put(ds, "mg_rle.dcm".into(), uids::RLE_LOSSLESS, &b_mg, 1)?;

    // Patient C (ISO 2022 IR 58): CR 8-bit, JPEG baseline.
    let c = patient_c();
    let cr = Series::new(&c, 1, "CR", "胸部 PA", "CHEST");
    let (rows, cols) = (256u16, 256u16);
    let px = cr8_source();
    let frame = codec::encode_jpeg_baseline(&px, rows, cols, 1, 90)?;
    let frames = vec![frame];
    let mut ds = projection_image(
        &cr,
        Projection::Cr,
        1,
        rows,
        cols,
        8,
        Pixels::Encapsulated(frames.clone()),
    )?;
    lossy_jpeg(&mut ds, rows as usize * cols as usize, &frames);
    put(
        ds,
        "cr_jpeg_baseline.dcm".into(),
        uids::JPEG_BASELINE8_BIT,
        &c,
        1,
    )?;

    // Patient D (GBK, trail bytes 0x5C): DX JPEG lossless SV1, DX JPEG 2000 lossless.
    let d = patient_d();
    let dx = Series::new(&d, 1, "DX", "胸部 PA", "CHEST");
    let (rows, cols) = (256u16, 256u16);
    let px = dx_source();
    let frame = codec::encode_jpeg_lossless_sv1(&px, rows, cols, 12);
    let ds = projection_image(
        &dx,
        Projection::Dx,
        1,
        rows,
        cols,
        12,
        Pixels::Encapsulated(vec![frame]),
    )?;
    put(
        ds,
        "dx_jpeg_lossless.dcm".into(),
        uids::JPEG_LOSSLESS_SV1,
        &d,
        1,
    )?;

    let dx2 = Series::new(&d, 2, "DX", "胸部 PA J2K", "CHEST");
    ensure!(
        j2k_size(DX_J2K_CODESTREAM) == Some((J2K_SOURCE_SIZE as u32, J2K_SOURCE_SIZE as u32, 12)),
        "vendored J2K codestream does not match the expected image"
    );
    let n = J2K_SOURCE_SIZE;
    let ds = projection_image(
        &dx2,
        Projection::Dx,
        1,
        n,
        n,
        12,
        Pixels::Encapsulated(vec![DX_J2K_CODESTREAM.to_vec()]),
    )?;
    put(ds, "dx_j2k.dcm".into(), uids::JPEG2000_LOSSLESS, &d, 1)?;

    // Patient E (ISO_IR 100): CR 16-bit (12 stored), explicit VR big endian.
    let e = patient_e();
    let cr = Series::new(&e, 1, "CR", "Thorax p.a.", "CHEST");
    let (rows, cols) = (128u16, 128u16);
    let px = cr16_source();
    let ds = projection_image(&cr, Projection::Cr, 1, rows, cols, 12, Pixels::U16(px))?;
    // Retired, but still sent by old modalities; a PACS must read it.
    #[allow(deprecated)]
    let big_endian = uids::EXPLICIT_VR_BIG_ENDIAN;
    put(ds, "cr_big_endian.dcm".into(), big_endian, &e, 1)?;

    // Patient F (no issuer, hostile strings): secondary capture RGB, implicit VR LE.
    let f = patient_f();
    let sc = Series::new(&f, 1, "OT", "<script>alert('series')</script>", "");
    let mut ds = Ds::new(&sc, uids::SECONDARY_CAPTURE_IMAGE_STORAGE, 1)?;
    ds.strs(tags::IMAGE_TYPE, VR::CS, &["DERIVED", "SECONDARY"]);
    ds.str(tags::CONVERSION_TYPE, VR::CS, "WSD");
    ds.empty(tags::PATIENT_ORIENTATION, VR::CS);
    let (rows, cols) = (128u16, 128u16);
    let rgb = sc_source();
    ds.image_pixel(rows, cols, 3, "RGB", 8, 8, false, Pixels::U8(rgb));
    put(
        ds,
        "sc_rgb_implicit.dcm".into(),
        uids::IMPLICIT_VR_LITTLE_ENDIAN,
        &f,
        1,
    )?;

    // Manifest.
    let mut tsv = String::from(
        "file\tsop_class\ttransfer_syntax_uid\tpatient_id\tpatient_name\tframes\tsha256\tissuer_of_patient_id\tspecific_character_set\n",
    );
    let mut paths = Vec::with_capacity(entries.len());
    for e in &entries {
        let path = dir.join(&e.file);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        writeln!(
            tsv,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            e.file,
            sop_class_name(e.sop_class),
            e.ts,
            e.spec.patient_id,
            e.spec.patient_name,
            e.frames,
            sha,
            e.spec.issuer_of_patient_id.as_deref().unwrap_or(""),
            e.spec.charset.label(),
        )?;
        paths.push(path);
    }
    std::fs::write(dir.join(MANIFEST_NAME), tsv)?;
    Ok(paths)
}

// Pixel sources of the sample set (shared with the tests that check the codecs).

pub(crate) fn us_source(frame: usize) -> Vec<u8> {
    phantom::us_frame(64, 64, frame, patient_a().seed)
}

pub(crate) fn mr_source(i: usize) -> Vec<u16> {
    phantom::mr_slice(128, 128, i as f64 / 4.0, patient_b().seed + i as u64)
}

pub(crate) fn mg_source() -> Vec<u16> {
    phantom::mammogram(256, 192, patient_b().seed)
}

pub(crate) fn cr8_source() -> Vec<u8> {
    phantom::chest_xray(256, 256, 255, patient_c().seed)
        .into_iter()
        .map(|v| v as u8)
        .collect()
}

pub(crate) fn dx_source() -> Vec<u16> {
    phantom::chest_xray(256, 256, 4095, patient_d().seed + 1)
}

pub(crate) fn cr16_source() -> Vec<u16> {
    phantom::chest_xray(128, 128, 4095, patient_e().seed)
}

pub(crate) fn sc_source() -> Vec<u8> {
    phantom::test_card(128, 128)
}

fn mr_attributes(ds: &mut Ds, spec: &StudySpec, i: usize, rows: u16, cols: u16) {
    let fov = 240.0;
    let spacing = fov / cols.max(rows) as f64;
    let gap = 6.0;
    let z = 40.0 - i as f64 * gap;
    ds.strs(
        tags::IMAGE_TYPE,
        VR::CS,
        &["ORIGINAL", "PRIMARY", "M", "ND"],
    );
    ds.str(tags::SCANNING_SEQUENCE, VR::CS, "SE");
    ds.str(tags::SEQUENCE_VARIANT, VR::CS, "SK");
    ds.str(tags::SCAN_OPTIONS, VR::CS, "");
    ds.str(tags::MR_ACQUISITION_TYPE, VR::CS, "2D");
    ds.str(tags::SLICE_THICKNESS, VR::DS, "5");
    ds.str(tags::REPETITION_TIME, VR::DS, "4000");
    ds.str(tags::ECHO_TIME, VR::DS, "100");
    ds.str(tags::ECHO_TRAIN_LENGTH, VR::IS, "16");
    ds.str(tags::MAGNETIC_FIELD_STRENGTH, VR::DS, "1.5");
    ds.str(tags::IMAGED_NUCLEUS, VR::SH, "1H");
    ds.str(tags::SPACING_BETWEEN_SLICES, VR::DS, &fmt_ds(gap));
    ds.str(tags::PATIENT_POSITION, VR::CS, "HFS");
    ds.str(tags::ACQUISITION_NUMBER, VR::IS, "1");
    axial_plane(ds, spec, 1, rows, cols, spacing, z);
    ds.str(tags::WINDOW_CENTER, VR::DS, "2000");
    ds.str(tags::WINDOW_WIDTH, VR::DS, "4000");
}

/// Lossy Image Compression attributes for baseline JPEG frames.
fn lossy_jpeg(ds: &mut Ds, raw_bytes: usize, frames: &[Vec<u8>]) {
    let compressed: usize = frames.iter().map(Vec::len).sum();
    let ratio = raw_bytes as f64 / compressed.max(1) as f64;
    ds.str(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01");
    ds.str(
        tags::LOSSY_IMAGE_COMPRESSION_RATIO,
        VR::DS,
        &format!("{ratio:.2}"),
    );
    ds.str(tags::LOSSY_IMAGE_COMPRESSION_METHOD, VR::CS, "ISO_10918_1");
}

/// (width, height, precision) from a J2K codestream's SIZ segment (first component).
fn j2k_size(cs: &[u8]) -> Option<(u32, u32, u8)> {
    if cs.get(0..4)? != [0xFF, 0x4F, 0xFF, 0x51] {
        return None;
    }
    let be32 =
        |o: usize| -> Option<u32> { Some(u32::from_be_bytes(cs.get(o..o + 4)?.try_into().ok()?)) };
    // SOC(2) SIZ marker(2) Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4) ...
    let (xsiz, ysiz) = (be32(8)?, be32(12)?);
    let (xo, yo) = (be32(16)?, be32(20)?);
    let ssiz = *cs.get(42)?;
    Some((xsiz - xo, ysiz - yo, (ssiz & 0x7F) + 1))
}

/// The image that the vendored J2K codestream encodes, as a 16-bit binary PGM
/// (maxval 4095), for `opj_compress` (see README.md).
pub fn j2k_source_pgm() -> Vec<u8> {
    let n = J2K_SOURCE_SIZE as usize;
    let px = phantom::chest_xray(n, n, 4095, J2K_SOURCE_SEED);
    let mut out = format!("P5\n{n} {n}\n4095\n").into_bytes();
    for v in px {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
#[path = "sample_set_tests.rs"]
mod tests;
