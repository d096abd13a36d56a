//! The PDF of a signed report as a person (and poppler) reads it: rendered with the fonts
//! found on the machine, then checked with Debian's poppler-utils — `pdftotext` gives back
//! the exact text (Chinese included, through the ToUnicode maps), `pdfinfo` the page count,
//! `pdffonts` that every font is an embedded subset with a Unicode map.
//!
//! Needs the Debian packages poppler-utils, fonts-dejavu-core and fonts-droid-fallback
//! (scripts/test.sh installs them); a missing one fails the test, never skips it.
//! `REPORT_PDF_KEEP=DIR` keeps the rendered PDFs in DIR for a look.

use std::path::{Path, PathBuf};
use std::process::Command;

use pacs_store::reports::pdf::{
    KeyImage, PdfAddendum, PdfReport, ReportFonts, format_person_name, render_pdf,
};

const FINGERPRINT: &str = "3f9a0c7e5b21d4468e0f7a9c2b5d8e1f6a3c9b0d2e4f6a8c1b3d5e7f9a0b2c4d";
const ADDENDUM_FINGERPRINT: &str =
    "9c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d";

fn sections() -> Vec<(String, String)> {
    [
        (
            "Clinical information",
            "咳嗽两周，发热三天。Cough for two weeks, fever for three days; smoker.",
        ),
        (
            "Technique",
            "CT chest without contrast, 1.25 mm axial reconstructions.",
        ),
        (
            "Findings",
            "双肺纹理清晰，右肺下叶见一实性结节，大小约12mm×10mm，边缘毛糙，可见分叶。\
             纵隔未见肿大淋巴结。\r\nNo pleural effusion.\tHeart size normal.",
        ),
        (
            "Impression",
            "右肺下叶结节，建议进一步检查。Right lower lobe nodule, suspicious for \
             malignancy: further work-up recommended.",
        ),
    ]
    .into_iter()
    .map(|(h, t)| (h.to_owned(), t.to_owned()))
    .collect()
}

/// Synthetic values only.
fn report() -> PdfReport {
    PdfReport {
        title: "Radiology report".into(),
        institution: "Regional Imaging Centre".into(),
        patient_name: format_person_name("Liu^Yan=刘^䶮"),
        patient_id: "TEST-000417".into(),
        birth_date: Some("1961-03-08".into()),
        sex: Some("F".into()),
        clinic: Some("Township Clinic 3 (三号乡镇卫生院)".into()),
        study_date: Some("2026-11-22".into()),
        accession_number: Some("ACC-2026-0099".into()),
        modality: Some("CT".into()),
        study_description: Some("CT chest 胸部平扫".into()),
        study_instance_uid: "1.2.826.0.1.3680043.8.498.12345678901234567890123456789".into(),
        sections: sections(),
        agreement: Some(
            "Agreement with the township preliminary impression: minor discrepancy — \
             nodule size underestimated"
                .into(),
        ),
        critical: true,
        signer: "Dr Zhang Wei (张伟)".into(),
        signed_at: "2026-11-23 08:15 UTC".into(),
        signature_fingerprint: FINGERPRINT.into(),
        signer_key_id: "a1b2c3d4e5f60718".into(),
        verify_hint: "Verify: GET /api/reports/17/verify or `pacs report verify 17`".into(),
        addenda: vec![PdfAddendum {
            author: "Dr Zhang Wei (张伟)".into(),
            signed_at: "2026-11-24 10:02 UTC".into(),
            text: "补充：与2025年旧片对比，结节较前增大。Compared with the 2025 study, the \
                   nodule has grown."
                .into(),
            signature_fingerprint: ADDENDUM_FINGERPRINT.into(),
        }],
        key_images: Vec::new(),
    }
}

/// A synthetic 320 × 240 grey image (a bright disc on a gradient) as baseline JPEG.
fn key_image() -> KeyImage {
    let (w, h) = (320u32, 240u32);
    let pixels = image::GrayImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - 200.0, y as f32 - 110.0);
        let disc = if dx * dx + dy * dy < 900.0 { 120 } else { 0 };
        image::Luma([(40 + (x * 80 / w) + disc).min(255) as u8])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode_image(&pixels)
        .expect("encoding the synthetic key image");
    KeyImage {
        jpeg,
        width: w,
        height: h,
        caption: "Axial CT, lung window: right lower lobe nodule (箭头所示).".into(),
    }
}

fn fonts() -> ReportFonts {
    ReportFonts::discover().unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a poppler tool; a missing one fails with what to install.
fn poppler(tool: &str, args: &[&str], pdf: &Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(pdf)
        .args(if tool == "pdftotext" {
            &["-"][..]
        } else {
            &[][..]
        })
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {tool} ({e}): install the Debian package poppler-utils \
                 (scripts/test.sh does)"
            )
        });
    assert!(
        out.status.success(),
        "{tool} failed on {}: {}",
        pdf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("poppler output is UTF-8")
}

fn pages(pdf: &Path) -> usize {
    let info = poppler("pdfinfo", &[], pdf);
    info.lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no page count in pdfinfo's output:\n{info}"))
}

fn without_whitespace(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Renders, writes and returns the file (in REPORT_PDF_KEEP when set).
fn write(dir: &Path, name: &str, report: &PdfReport, fonts: &ReportFonts) -> (PathBuf, usize) {
    let bytes = render_pdf(report, fonts).unwrap_or_else(|e| panic!("rendering {name}: {e}"));
    let dir = std::env::var_os("REPORT_PDF_KEEP").map_or_else(|| dir.to_owned(), PathBuf::from);
    let path = dir.join(name);
    std::fs::write(&path, &bytes).expect("writing the PDF");
    eprintln!("{name}: {} bytes", bytes.len());
    (path, bytes.len())
}

/// Every font embedded, as a subset, with a ToUnicode map.
fn assert_subset_fonts(pdf: &Path) {
    let fonts = poppler("pdffonts", &[], pdf);
    let rows: Vec<&str> = fonts.lines().skip(2).collect();
    assert!(rows.len() >= 2, "expected a Latin and a CJK font:\n{fonts}");
    for row in rows {
        assert!(row.contains("CID TrueType"), "{row}");
        assert!(row.contains("Identity-H"), "{row}");
        assert!(
            row.contains("yes yes yes"),
            "not an embedded subset with ToUnicode: {row}"
        );
    }
}

#[test]
fn signed_report_with_chinese_text_reads_back() {
    let fonts = fonts();
    let report = report();
    assert!(fonts.covers(&report.patient_name));
    let dir = tempfile::tempdir().expect("temp dir");

    let (pdf, size) = write(dir.path(), "report.pdf", &report, &fonts);
    assert!(size < 300_000, "{size} bytes: fonts not subset?");
    assert_eq!(pages(&pdf), 1);
    assert_subset_fonts(&pdf);

    let layout = poppler("pdftotext", &["-layout", "-enc", "UTF-8"], &pdf);
    let plain = poppler("pdftotext", &["-enc", "UTF-8"], &pdf);
    // Exact text on one line: the name with its Chinese part, signer, fingerprints.
    for exact in [
        "Liu Yan (刘䶮)",
        "TEST-000417",
        "CRITICAL FINDING",
        "Electronically signed by Dr Zhang Wei (张伟)",
        "2026-11-23 08:15 UTC",
        FINGERPRINT,
        ADDENDUM_FINGERPRINT,
        "a1b2c3d4e5f60718",
        "Regional Imaging Centre",
        "Radiology report",
        "CT chest 胸部平扫",
        "page 1 of 1",
    ] {
        assert!(layout.contains(exact), "{exact:?} not in:\n{layout}");
    }
    // Wrapped text: the same characters in order, whitespace aside.
    let flat = without_whitespace(&plain);
    for (heading, text) in sections() {
        assert!(layout.contains(&heading), "{heading:?} not in:\n{layout}");
        let text = without_whitespace(&text);
        assert!(flat.contains(&text), "{text:?} not in:\n{plain}");
    }
    for text in [
        &report.addenda[0].text,
        report.agreement.as_deref().unwrap_or_default(),
        &report.verify_hint,
        &report.study_instance_uid,
    ] {
        let text = without_whitespace(text);
        assert!(flat.contains(&text), "{text:?} not in:\n{plain}");
    }
}

#[test]
fn key_images_and_long_reports_make_more_pages() {
    let fonts = fonts();
    let dir = tempfile::tempdir().expect("temp dir");

    let mut with_image = report();
    with_image.key_images.push(key_image());
    let (pdf, size) = write(dir.path(), "report-key-image.pdf", &with_image, &fonts);
    let text = poppler("pdftotext", &["-layout", "-enc", "UTF-8"], &pdf);
    assert!(text.contains("Key images"), "{text}");
    assert!(
        text.contains("right lower lobe nodule (箭头所示)"),
        "{text}"
    );
    let jpeg = with_image.key_images[0].jpeg.len();
    assert!(size < 300_000 + jpeg, "{size} bytes");
    let images = poppler("pdfimages", &["-list"], &pdf);
    assert!(
        images.contains("jpeg"),
        "the JPEG is not embedded as is:\n{images}"
    );

    // Sections of 20,000 characters each: several pages, numbered.
    let mut long = report();
    for (heading, text) in &mut long.sections {
        let sentence = format!("{heading}: 双肺纹理清晰，未见明确实变影。The lungs are clear. ");
        *text = sentence.repeat(20_000 / sentence.chars().count() + 1);
    }
    let (pdf, size) = write(dir.path(), "report-long.pdf", &long, &fonts);
    let n = pages(&pdf);
    assert!(n > 3, "{n} pages");
    assert!(size < 300_000, "{size} bytes");
    let text = poppler("pdftotext", &["-layout", "-enc", "UTF-8"], &pdf);
    for page in 1..=n {
        let number = format!("page {page} of {n}");
        assert!(text.contains(&number), "{number:?} missing");
    }
    // Continuation pages name the patient.
    assert!(
        text.matches("Liu Yan (刘䶮) · ID TEST-000417 (continued)")
            .count()
            >= n - 1
    );
    // The text runs on across pages, once their headers and footers are set aside.
    let plain = poppler("pdftotext", &["-enc", "UTF-8"], &pdf);
    let body: String = plain
        .lines()
        .map(|l| l.trim_start_matches('\u{c}')) // a form feed starts each page
        .filter(|l| {
            !(l.starts_with("page ")
                || l.ends_with("(continued)")
                || l.contains("· signed by")
                || *l == "Regional Imaging Centre · Radiology report")
        })
        .collect();
    let body = without_whitespace(&body);
    for (_, text) in &long.sections {
        assert!(body.contains(&without_whitespace(text)));
    }
}
