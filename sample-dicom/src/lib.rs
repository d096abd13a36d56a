//! Generator of synthetic, PHI-free DICOM studies for the test suite, the demo and the
//! benchmarks.
//!
//! * [`write_ct_series`], [`write_dx_image`]: parametrised images for tests and
//!   benchmarks (explicit VR little endian).
//! * [`write_sample_set`]: the committed sample set of `sample-dicom/files/`
//!   (many SOP classes, transfer syntaxes and character sets), with its `MANIFEST.tsv`.
//! * [`StudySpec`]: who the synthetic patient is and what the study looks like, for the
//!   `*_with` variants.
//!
//! Output is deterministic: the same arguments give byte-identical files. UIDs are
//! `2.25.` UUID-derived UIDs computed from the seed (see [`uid::derived_uid`]).

use std::path::{Path, PathBuf};

use anyhow::Context;
use dicom_core::value::{DataSetSequence, PixelFragmentSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::mem::InMemElement;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

pub mod charset;
pub mod codec;
pub mod pdf;
pub mod phantom;
mod sample_set;
pub mod uid;

pub use charset::Charset;
pub use sample_set::{MANIFEST_NAME, j2k_source_pgm, write_sample_set};
pub use uid::derived_uid;

/// Implementation Version Name written in every file meta group.
pub const IMPLEMENTATION_VERSION_NAME: &str = "SAMPLE_DICOM_1";

/// A synthetic patient and study. Start from [`StudySpec::new`] (everything derived
/// from the seed) and override what matters with the builder methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StudySpec {
    /// Seed of every UID and of the phantom noise.
    pub seed: u64,
    /// Distinguishes several studies made from one seed (part of the UID labels).
    pub label: String,
    pub patient_id: String,
    pub issuer_of_patient_id: Option<String>,
    /// Patient's Name as UTF-8, component groups joined by '='.
    pub patient_name: String,
    /// Character set of all text attributes of the study's objects.
    pub charset: Charset,
    /// DA, YYYYMMDD.
    pub birth_date: String,
    /// M, F or O.
    pub sex: String,
    /// DA, YYYYMMDD.
    pub study_date: String,
    /// TM, HHMMSS.
    pub study_time: String,
    pub accession_number: String,
    pub study_id: String,
    pub study_description: String,
    pub referring_physician: String,
    pub institution: String,
}

const SURNAMES: [&str; 8] = [
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang",
];
const GIVEN: [&str; 8] = ["Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Tao", "Hui"];

impl StudySpec {
    /// An ASCII-only synthetic patient and study derived from `seed`.
    pub fn new(seed: u64) -> Self {
        let s = seed as usize;
        StudySpec {
            seed,
            label: "study".into(),
            patient_id: format!("TS-B{seed:06}"),
            issuer_of_patient_id: Some("CLINIC-BENCH".into()),
            patient_name: format!("{}^{}", SURNAMES[s % 8], GIVEN[(s / 8) % 8]),
            charset: Charset::Ascii,
            birth_date: format!(
                "{}{:02}{:02}",
                1940 + seed % 60,
                1 + seed % 12,
                1 + seed % 28
            ),
            sex: if seed % 2 == 0 { "F" } else { "M" }.into(),
            study_date: format!("202403{:02}", 1 + seed % 28),
            study_time: format!("{:02}{:02}00", 8 + seed % 10, seed % 60),
            accession_number: format!("ACC{seed:08}"),
            study_id: format!("{}", 1000 + seed % 9000),
            study_description: "Synthetic study".into(),
            referring_physician: "Synthetic^Referrer".into(),
            institution: "Synthetic Township Clinic Bench".into(),
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Patient ID, Issuer of Patient ID (None: attribute absent) and UTF-8 name.
    pub fn patient(
        mut self,
        id: impl Into<String>,
        issuer: Option<&str>,
        name: impl Into<String>,
    ) -> Self {
        self.patient_id = id.into();
        self.issuer_of_patient_id = issuer.map(Into::into);
        self.patient_name = name.into();
        self
    }

    pub fn charset(mut self, charset: Charset) -> Self {
        self.charset = charset;
        self
    }

    pub fn birth(mut self, date: impl Into<String>, sex: impl Into<String>) -> Self {
        self.birth_date = date.into();
        self.sex = sex.into();
        self
    }

    pub fn date_time(mut self, date: impl Into<String>, time: impl Into<String>) -> Self {
        self.study_date = date.into();
        self.study_time = time.into();
        self
    }

    pub fn accession(mut self, accession: impl Into<String>, study_id: impl Into<String>) -> Self {
        self.accession_number = accession.into();
        self.study_id = study_id.into();
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.study_description = description.into();
        self
    }

    pub fn referring_physician(mut self, name: impl Into<String>) -> Self {
        self.referring_physician = name.into();
        self
    }

    pub fn institution(mut self, name: impl Into<String>) -> Self {
        self.institution = name.into();
        self
    }

    pub fn study_instance_uid(&self) -> String {
        derived_uid(self.seed, &format!("study/{}", self.label))
    }

    pub fn series_instance_uid(&self, series_number: u32) -> String {
        derived_uid(self.seed, &format!("series/{}/{series_number}", self.label))
    }

    pub fn sop_instance_uid(&self, series_number: u32, instance_number: u32) -> String {
        derived_uid(
            self.seed,
            &format!("sop/{}/{series_number}/{instance_number}", self.label),
        )
    }

    pub fn frame_of_reference_uid(&self, series_number: u32) -> String {
        derived_uid(self.seed, &format!("for/{}/{series_number}", self.label))
    }
}

/// Writes a CT series of `n` axial slices (`rows`×`cols`, 16-bit signed, an HU phantom
/// that changes along the series) in explicit VR little endian to `dir`, as
/// `ct-<seed>-<nnnn>.dcm`. Patient and study are [`StudySpec::new`]`(seed)`.
pub fn write_ct_series(
    dir: &Path,
    n: usize,
    rows: u16,
    cols: u16,
    seed: u64,
) -> anyhow::Result<Vec<PathBuf>> {
    write_ct_series_with(&StudySpec::new(seed), dir, n, rows, cols)
}

/// [`write_ct_series`] for a given patient and study (series number 1).
pub fn write_ct_series_with(
    spec: &StudySpec,
    dir: &Path,
    n: usize,
    rows: u16,
    cols: u16,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let series = Series::new(spec, 1, "CT", "Synthetic axial CT", "CHEST");
    (0..n)
        .map(|i| {
            let path = dir.join(format!("ct-{}-{:04}.dcm", spec.seed, i + 1));
            let ds = ct_slice(&series, i, n, rows, cols)?;
            ds.write(&path, uids::EXPLICIT_VR_LITTLE_ENDIAN)?;
            Ok(path)
        })
        .collect()
}

/// One DX image (16-bit allocated, 12 stored, square) of roughly `target_bytes` of
/// pixel data (e.g. 10 MB gives 2236×2236), explicit VR little endian, written to
/// `dir` as `dx-<seed>.dcm`. Patient and study are [`StudySpec::new`]`(seed)`.
pub fn write_dx_image(dir: &Path, target_bytes: usize, seed: u64) -> anyhow::Result<PathBuf> {
    write_dx_image_with(&StudySpec::new(seed), dir, target_bytes)
}

/// [`write_dx_image`] for a given patient and study.
pub fn write_dx_image_with(
    spec: &StudySpec,
    dir: &Path,
    target_bytes: usize,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let side = ((target_bytes / 2) as f64).sqrt().floor() as usize;
    let side = side.clamp(16, u16::MAX as usize) as u16;
    let series = Series::new(spec, 1, "DX", "Synthetic chest PA", "CHEST");
    let path = dir.join(format!("dx-{}.dcm", spec.seed));
    let px = phantom::chest_xray(side as usize, side as usize, 4095, spec.seed);
    let ds = projection_image(&series, Projection::Dx, 1, side, side, 12, Pixels::U16(px))?;
    ds.write(&path, uids::EXPLICIT_VR_LITTLE_ENDIAN)?;
    Ok(path)
}

// ---------------------------------------------------------------------------------
// Data set building blocks (used by the sample set too).

/// A series of a study.
pub(crate) struct Series<'a> {
    pub spec: &'a StudySpec,
    pub number: u32,
    pub modality: &'static str,
    pub description: String,
    pub body_part: &'static str,
}

impl<'a> Series<'a> {
    pub fn new(
        spec: &'a StudySpec,
        number: u32,
        modality: &'static str,
        description: impl Into<String>,
        body_part: &'static str,
    ) -> Self {
        Series {
            spec,
            number,
            modality,
            description: description.into(),
            body_part,
        }
    }
}

/// Pixel data before it goes into the data set.
pub(crate) enum Pixels {
    /// Native 16-bit words (signed data as two's complement bit patterns).
    U16(Vec<u16>),
    /// Native bytes (8-bit grey, or interleaved RGB).
    U8(Vec<u8>),
    /// Compressed frames, one fragment each; a Basic Offset Table is written.
    Encapsulated(Vec<Vec<u8>>),
}

/// A data set being built, with the character set its text is encoded in.
pub(crate) struct Ds {
    pub obj: InMemDicomObject,
    pub charset: Charset,
    sop_class: &'static str,
    sop_instance: String,
}

impl Ds {
    /// Patient, General Study, General Series, General Equipment and SOP Common
    /// attributes for one instance.
    pub fn new(
        series: &Series<'_>,
        sop_class: &'static str,
        instance_number: u32,
    ) -> anyhow::Result<Ds> {
        let spec = series.spec;
        let sop_instance = spec.sop_instance_uid(series.number, instance_number);
        let mut ds = Ds {
            obj: InMemDicomObject::new_empty(),
            charset: spec.charset,
            sop_class,
            sop_instance: sop_instance.clone(),
        };
        if let Some(values) = spec.charset.specific_character_set() {
            ds.strs(tags::SPECIFIC_CHARACTER_SET, VR::CS, values);
        }
        ds.str(tags::INSTANCE_CREATION_DATE, VR::DA, &spec.study_date);
        ds.str(tags::INSTANCE_CREATION_TIME, VR::TM, &spec.study_time);
        ds.str(tags::SOP_CLASS_UID, VR::UI, sop_class);
        ds.str(tags::SOP_INSTANCE_UID, VR::UI, &sop_instance);
        ds.str(tags::STUDY_DATE, VR::DA, &spec.study_date);
        ds.str(tags::SERIES_DATE, VR::DA, &spec.study_date);
        ds.str(tags::CONTENT_DATE, VR::DA, &spec.study_date);
        ds.str(tags::STUDY_TIME, VR::TM, &spec.study_time);
        ds.str(tags::SERIES_TIME, VR::TM, &spec.study_time);
        ds.str(tags::CONTENT_TIME, VR::TM, &spec.study_time);
        ds.str(tags::ACCESSION_NUMBER, VR::SH, &spec.accession_number);
        ds.str(tags::MODALITY, VR::CS, series.modality);
        ds.str(tags::MANUFACTURER, VR::LO, "sample-dicom");
        ds.text(tags::INSTITUTION_NAME, VR::LO, &spec.institution)?;
        ds.text(
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            &spec.referring_physician,
        )?;
        ds.text(tags::STUDY_DESCRIPTION, VR::LO, &spec.study_description)?;
        ds.text(tags::SERIES_DESCRIPTION, VR::LO, &series.description)?;
        ds.str(tags::MANUFACTURER_MODEL_NAME, VR::LO, "Synthetic Phantom");
        ds.text(tags::PATIENT_NAME, VR::PN, &spec.patient_name)?;
        ds.text(tags::PATIENT_ID, VR::LO, &spec.patient_id)?;
        if let Some(issuer) = &spec.issuer_of_patient_id {
            ds.text(tags::ISSUER_OF_PATIENT_ID, VR::LO, issuer)?;
        }
        ds.str(tags::PATIENT_BIRTH_DATE, VR::DA, &spec.birth_date);
        ds.str(tags::PATIENT_SEX, VR::CS, &spec.sex);
        if !series.body_part.is_empty() {
            ds.str(tags::BODY_PART_EXAMINED, VR::CS, series.body_part);
        }
        ds.str(tags::DEVICE_SERIAL_NUMBER, VR::LO, "SYNTH-0001");
        ds.str(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION"));
        ds.str(tags::STUDY_INSTANCE_UID, VR::UI, &spec.study_instance_uid());
        ds.str(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &spec.series_instance_uid(series.number),
        );
        ds.str(tags::STUDY_ID, VR::SH, &spec.study_id);
        ds.str(tags::SERIES_NUMBER, VR::IS, &series.number.to_string());
        ds.str(tags::INSTANCE_NUMBER, VR::IS, &instance_number.to_string());
        Ok(ds)
    }

    pub fn str(&mut self, tag: Tag, vr: VR, value: &str) {
        self.obj
            .put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }

    pub fn strs(&mut self, tag: Tag, vr: VR, values: &[&str]) {
        let v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        self.obj
            .put(DataElement::new(tag, vr, PrimitiveValue::Strs(v.into())));
    }

    pub fn us(&mut self, tag: Tag, value: u16) {
        self.obj
            .put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
    }

    pub fn empty(&mut self, tag: Tag, vr: VR) {
        self.obj
            .put(DataElement::new(tag, vr, PrimitiveValue::Empty));
    }

    pub fn seq(&mut self, tag: Tag, items: Vec<InMemDicomObject>) {
        self.obj
            .put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
    }

    /// A text value in the data set's character set. Non-ASCII text is written as the
    /// exact encoded bytes (space padded), which is how ISO 2022 escapes get in.
    pub fn text(&mut self, tag: Tag, vr: VR, value: &str) -> anyhow::Result<()> {
        self.obj.put(text_element(self.charset, tag, vr, value)?);
        Ok(())
    }

    /// Image Pixel module attributes and Pixel Data.
    #[allow(clippy::too_many_arguments)]
    pub fn image_pixel(
        &mut self,
        rows: u16,
        cols: u16,
        samples_per_pixel: u16,
        photometric: &str,
        bits_allocated: u16,
        bits_stored: u16,
        signed: bool,
        pixels: Pixels,
    ) {
        self.us(tags::SAMPLES_PER_PIXEL, samples_per_pixel);
        self.str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric);
        if samples_per_pixel > 1 {
            self.us(tags::PLANAR_CONFIGURATION, 0);
        }
        self.us(tags::ROWS, rows);
        self.us(tags::COLUMNS, cols);
        self.us(tags::BITS_ALLOCATED, bits_allocated);
        self.us(tags::BITS_STORED, bits_stored);
        self.us(tags::HIGH_BIT, bits_stored - 1);
        self.us(tags::PIXEL_REPRESENTATION, u16::from(signed));
        let elem = match pixels {
            Pixels::U16(v) => {
                DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(v.into()))
            }
            Pixels::U8(v) => {
                DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(v.into()))
            }
            Pixels::Encapsulated(frames) => {
                let frames: Vec<Vec<u8>> = frames.into_iter().map(codec::pad_even).collect();
                let mut offsets = Vec::with_capacity(frames.len());
                let mut pos = 0u32;
                for f in &frames {
                    offsets.push(pos);
                    pos += 8 + f.len() as u32;
                }
                DataElement::new(
                    tags::PIXEL_DATA,
                    VR::OB,
                    Value::PixelSequence(PixelFragmentSequence::new(offsets, frames)),
                )
            }
        };
        self.obj.put(elem);
    }

    /// Write as a DICOM file (preamble, file meta group, data set) with `ts`.
    pub fn write(self, path: &Path, ts: &str) -> anyhow::Result<()> {
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(ts)
            .media_storage_sop_class_uid(self.sop_class)
            .media_storage_sop_instance_uid(self.sop_instance.as_str())
            .implementation_class_uid(uid::implementation_class_uid())
            .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
        let file = self
            .obj
            .with_meta(meta)
            .context("building file meta group")?;
        file.write_to_file(path)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// A text element in `charset`. Non-ASCII text is stored as the exact encoded bytes
/// (space padded to even length), which is how ISO 2022 escapes get into the file.
pub(crate) fn text_element(
    charset: Charset,
    tag: Tag,
    vr: VR,
    value: &str,
) -> anyhow::Result<InMemElement> {
    if value.is_ascii() {
        return Ok(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }
    let mut bytes = charset
        .encode(value, vr == VR::PN)
        .with_context(|| format!("encoding {tag} in {charset:?}"))?;
    if bytes.len() % 2 == 1 {
        bytes.push(b' ');
    }
    Ok(DataElement::new(tag, vr, PrimitiveValue::U8(bytes.into())))
}

/// A code sequence item (Code Value, Coding Scheme Designator, Code Meaning).
pub(crate) fn code_item(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(value)),
        DataElement::new(
            tags::CODING_SCHEME_DESIGNATOR,
            VR::SH,
            PrimitiveValue::from(scheme),
        ),
        DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(meaning)),
    ])
}

/// Decimal String formatting: at most 6 decimals, no trailing zeros.
/// Image Plane module of an axial slice centred on the isocentre, plus the frame of
/// reference (shared by the CT and MR generators).
pub(crate) fn axial_plane(
    ds: &mut Ds,
    spec: &StudySpec,
    series_number: u32,
    rows: u16,
    cols: u16,
    spacing: f64,
    z: f64,
) {
    let x0 = fmt_ds(-(spacing * cols as f64) / 2.0 + spacing / 2.0);
    let y0 = fmt_ds(-(spacing * rows as f64) / 2.0 + spacing / 2.0);
    let zs = fmt_ds(z);
    ds.strs(tags::IMAGE_POSITION_PATIENT, VR::DS, &[&x0, &y0, &zs]);
    ds.strs(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        &["1", "0", "0", "0", "1", "0"],
    );
    ds.str(
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        &spec.frame_of_reference_uid(series_number),
    );
    ds.empty(tags::POSITION_REFERENCE_INDICATOR, VR::LO);
    ds.str(tags::SLICE_LOCATION, VR::DS, &zs);
    let sp = fmt_ds(spacing);
    ds.strs(tags::PIXEL_SPACING, VR::DS, &[&sp, &sp]);
}

pub(crate) fn fmt_ds(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// One axial CT slice (instance `index + 1` of `n`), pixel data native.
pub(crate) fn ct_slice(
    series: &Series<'_>,
    index: usize,
    n: usize,
    rows: u16,
    cols: u16,
) -> anyhow::Result<Ds> {
    let spec = series.spec;
    let mut ds = Ds::new(series, uids::CT_IMAGE_STORAGE, index as u32 + 1)?;
    let z = if n > 1 {
        index as f64 / (n - 1) as f64
    } else {
        0.5
    };
    let hu = phantom::ct_slice_hu(
        rows as usize,
        cols as usize,
        z,
        spec.seed.wrapping_add(index as u64),
    );
    // stored = HU + 1024 (RescaleIntercept -1024), signed: -3024 HU is stored as -2000
    let stored: Vec<u16> = hu
        .iter()
        .map(|&h| (h as i32 + 1024) as i16 as u16)
        .collect();
    let fov = 350.0;
    let spacing = fov / cols.max(rows) as f64;
    let thickness = 5.0;
    let zpos = -(index as f64) * thickness;
    ds.strs(tags::IMAGE_TYPE, VR::CS, &["ORIGINAL", "PRIMARY", "AXIAL"]);
    ds.str(tags::ACQUISITION_NUMBER, VR::IS, "1");
    ds.str(tags::SCAN_OPTIONS, VR::CS, "HELICAL MODE");
    ds.str(tags::SLICE_THICKNESS, VR::DS, &fmt_ds(thickness));
    ds.str(tags::KVP, VR::DS, "120");
    ds.str(tags::DATA_COLLECTION_DIAMETER, VR::DS, "500");
    ds.str(tags::RECONSTRUCTION_DIAMETER, VR::DS, &fmt_ds(fov));
    ds.str(tags::GANTRY_DETECTOR_TILT, VR::DS, "0");
    ds.str(tags::TABLE_HEIGHT, VR::DS, "150");
    ds.str(tags::ROTATION_DIRECTION, VR::CS, "CW");
    ds.str(tags::EXPOSURE_TIME, VR::IS, "500");
    ds.str(tags::X_RAY_TUBE_CURRENT, VR::IS, "200");
    ds.str(tags::CONVOLUTION_KERNEL, VR::SH, "STANDARD");
    ds.str(tags::PATIENT_POSITION, VR::CS, "HFS");
    axial_plane(&mut ds, spec, series.number, rows, cols, spacing, zpos);
    ds.strs(tags::WINDOW_CENTER, VR::DS, &["40", "-600"]);
    ds.strs(tags::WINDOW_WIDTH, VR::DS, &["400", "1500"]);
    ds.strs(
        tags::WINDOW_CENTER_WIDTH_EXPLANATION,
        VR::LO,
        &["SOFT TISSUE", "LUNG"],
    );
    ds.str(tags::RESCALE_INTERCEPT, VR::DS, "-1024");
    ds.str(tags::RESCALE_SLOPE, VR::DS, "1");
    ds.str(tags::RESCALE_TYPE, VR::LO, "HU");
    ds.image_pixel(
        rows,
        cols,
        1,
        "MONOCHROME2",
        16,
        16,
        true,
        Pixels::U16(stored),
    );
    Ok(ds)
}

/// Projection radiography flavours.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Projection {
    Cr,
    Dx,
    Mg,
}

/// A CR, DX (for presentation) or MG (for presentation) image; `bits_stored` of 8 gives
/// 8-bit allocated, otherwise 16.
pub(crate) fn projection_image(
    series: &Series<'_>,
    kind: Projection,
    instance: u32,
    rows: u16,
    cols: u16,
    bits_stored: u16,
    pixels: Pixels,
) -> anyhow::Result<Ds> {
    let sop_class = match kind {
        Projection::Cr => uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
        Projection::Dx => uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
        Projection::Mg => uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    };
    let mut ds = Ds::new(series, sop_class, instance)?;
    let max = (1u32 << bits_stored) - 1;
    let spacing = match kind {
        Projection::Mg => "0.1",
        _ => "0.143",
    };
    match kind {
        Projection::Cr => {
            ds.strs(tags::IMAGE_TYPE, VR::CS, &["ORIGINAL", "PRIMARY"]);
            ds.str(tags::VIEW_POSITION, VR::CS, "PA");
            ds.strs(tags::PATIENT_ORIENTATION, VR::CS, &["R", "F"]);
        }
        Projection::Dx => {
            ds.strs(tags::IMAGE_TYPE, VR::CS, &["ORIGINAL", "PRIMARY"]);
            ds.str(tags::PRESENTATION_INTENT_TYPE, VR::CS, "FOR PRESENTATION");
            ds.str(tags::VIEW_POSITION, VR::CS, "PA");
            ds.seq(
                tags::VIEW_CODE_SEQUENCE,
                vec![code_item("399348003", "SCT", "postero-anterior")],
            );
            ds.str(tags::IMAGE_LATERALITY, VR::CS, "U");
            ds.strs(tags::PATIENT_ORIENTATION, VR::CS, &["R", "F"]);
            ds.str(tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
            ds.str(tags::DETECTOR_TYPE, VR::CS, "SCINTILLATOR");
            ds.empty(tags::POSITIONER_TYPE, VR::CS);
            ds.seq(
                tags::ANATOMIC_REGION_SEQUENCE,
                vec![code_item("51185008", "SCT", "Chest")],
            );
        }
        Projection::Mg => {
            ds.strs(tags::IMAGE_TYPE, VR::CS, &["ORIGINAL", "PRIMARY", ""]);
            ds.str(tags::PRESENTATION_INTENT_TYPE, VR::CS, "FOR PRESENTATION");
            let mut view = code_item("399162004", "SCT", "cranio-caudal");
            view.put(DataElement::new(
                tags::VIEW_MODIFIER_CODE_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(Vec::<InMemDicomObject>::new()),
            ));
            ds.seq(tags::VIEW_CODE_SEQUENCE, vec![view]);
            ds.str(tags::IMAGE_LATERALITY, VR::CS, "L");
            ds.strs(tags::PATIENT_ORIENTATION, VR::CS, &["A", "R"]);
            ds.str(tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
            ds.str(tags::DETECTOR_TYPE, VR::CS, "DIRECT");
            ds.str(tags::BREAST_IMPLANT_PRESENT, VR::CS, "NO");
            ds.str(tags::POSITIONER_TYPE, VR::CS, "MAMMOGRAPHIC");
            ds.str(tags::ORGAN_EXPOSED, VR::CS, "BREAST");
            ds.seq(
                tags::ANATOMIC_REGION_SEQUENCE,
                vec![code_item("76752008", "SCT", "Breast")],
            );
        }
    }
    if kind != Projection::Cr {
        ds.seq(tags::ACQUISITION_CONTEXT_SEQUENCE, vec![]);
        ds.str(tags::PRESENTATION_LUT_SHAPE, VR::CS, "IDENTITY");
        // lossy files overwrite this with "01"
        ds.str(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
    }
    ds.str(
        tags::KVP,
        VR::DS,
        if kind == Projection::Mg { "28" } else { "110" },
    );
    ds.strs(tags::IMAGER_PIXEL_SPACING, VR::DS, &[spacing, spacing]);
    if kind != Projection::Cr {
        ds.str(tags::PIXEL_INTENSITY_RELATIONSHIP, VR::CS, "LOG");
        ds.obj.put(DataElement::new(
            tags::PIXEL_INTENSITY_RELATIONSHIP_SIGN,
            VR::SS,
            PrimitiveValue::from(1i16),
        ));
        ds.str(tags::RESCALE_INTERCEPT, VR::DS, "0");
        ds.str(tags::RESCALE_SLOPE, VR::DS, "1");
        ds.str(tags::RESCALE_TYPE, VR::LO, "US");
    }
    ds.str(tags::WINDOW_CENTER, VR::DS, &fmt_ds((max / 2 + 1) as f64));
    ds.str(tags::WINDOW_WIDTH, VR::DS, &fmt_ds((max + 1) as f64));
    let alloc = if bits_stored <= 8 { 8 } else { 16 };
    ds.image_pixel(
        rows,
        cols,
        1,
        "MONOCHROME2",
        alloc,
        bits_stored,
        false,
        pixels,
    );
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_formatting() {
        assert_eq!(fmt_ds(2.734375), "2.734375");
        assert_eq!(fmt_ds(-5.0), "-5");
        assert_eq!(fmt_ds(0.0), "0");
        assert_eq!(fmt_ds(-0.0000001), "0");
        assert_eq!(fmt_ds(1.5), "1.5");
    }

    #[test]
    fn ct_series_and_dx_are_readable() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_ct_series(dir.path(), 3, 32, 48, 42).unwrap();
        assert_eq!(paths.len(), 3);
        let obj = dicom_object::open_file(&paths[1]).unwrap();
        assert_eq!(
            obj.element(tags::ROWS).unwrap().to_int::<u16>().unwrap(),
            32
        );
        assert_eq!(
            obj.element(tags::COLUMNS).unwrap().to_int::<u16>().unwrap(),
            48
        );
        assert_eq!(
            obj.meta().transfer_syntax(),
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        );
        let px = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
        assert_eq!(px.len(), 32 * 48 * 2);
        let a = std::fs::read(&paths[0]).unwrap();
        let again = write_ct_series(&dir.path().join("again"), 3, 32, 48, 42).unwrap();
        assert_eq!(a, std::fs::read(&again[0]).unwrap(), "deterministic");
        assert_ne!(a, std::fs::read(&paths[1]).unwrap());

        let dx = write_dx_image(dir.path(), 100_000, 5).unwrap();
        let obj = dicom_object::open_file(&dx).unwrap();
        let rows = obj.element(tags::ROWS).unwrap().to_int::<u16>().unwrap();
        assert_eq!(rows, 223);
    }
}
