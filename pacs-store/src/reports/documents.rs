//! The DICOM documents of a signed report, as the clinic's systems receive them:
//!
//! - a **Basic Text SR** (PS3.3 A.35.1) following TID 2000 "Basic Diagnostic Imaging
//!   Report": a CONTAINER titled (18748-4, LN, "Diagnostic Imaging Report") with the
//!   observer, one CONTAINER per section (clinical information, current procedure,
//!   findings, impressions, addenda; the CID 7001 headings) holding TEXT items, Completion
//!   Flag COMPLETE, Verification Flag VERIFIED and the Verifying Observer (the signer, the
//!   time of signing);
//! - an **Encapsulated PDF** (PS3.3 A.45.1) of the same report ([`super::pdf`]).
//!
//! Both join the report's study (same patient and study attributes as the index holds
//! them), each in a series of its own (a series has one modality: SR, DOC). Text is
//! written in UTF-8 (Specific Character Set ISO_IR 192) whatever the study's images used,
//! so Chinese names and text survive. The bytes depend only on their inputs (no clock):
//! making a document again gives the same bytes, which the archive sees as a duplicate.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;

use super::Report;
use crate::{Result, StoreError};

/// The study a report belongs to, as the index holds it.
#[derive(Debug, Clone, Default)]
pub struct StudyIdentity {
    pub study_instance_uid: String,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub study_id: Option<String>,
    pub accession_number: Option<String>,
    pub referring_physician_name: Option<String>,
    pub study_description: Option<String>,
    pub modalities: Vec<String>,
    /// As stored: groups joined by `=` (alphabetic=ideographic=phonetic).
    pub patient_name: Option<String>,
    pub patient_id: String,
    pub issuer_of_patient_id: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub clinic: Option<String>,
}

/// The UIDs of one version of a report's documents (fixed when the report was signed).
#[derive(Debug, Clone)]
pub struct DocumentUids {
    pub sr_series: String,
    pub sr_instance: String,
    pub pdf_series: String,
    pub pdf_instance: String,
}

/// What both documents need.
#[derive(Debug, Clone)]
pub struct DocumentInput<'a> {
    pub report: &'a Report,
    /// How many of the report's addenda this version carries (0: as first signed).
    pub version: usize,
    pub study: &'a StudyIdentity,
    pub uids: &'a DocumentUids,
    /// The reading centre, named as the verifying organisation and manufacturer.
    pub institution: &'a str,
}

impl DocumentInput<'_> {
    fn addenda(&self) -> &[super::Addendum] {
        &self.report.addenda[..self.version.min(self.report.addenda.len())]
    }

    /// Who signed this version and when: the report's signer, or the last addendum's.
    fn verifier(&self) -> (&str, i64) {
        match self.addenda().last() {
            Some(a) => (&a.author, a.signed_at),
            None => (
                &self.report.author,
                self.report.signed_at.unwrap_or_default(),
            ),
        }
    }
}

/// SR series and instance numbers: out of the way of a modality's own numbering.
const SERIES_NUMBER_SR: i32 = 9901;
const SERIES_NUMBER_PDF: i32 = 9902;

/// The Basic Text SR of `input`, as a DICOM Part 10 file (explicit VR little endian).
pub fn basic_text_sr(input: &DocumentInput) -> Result<Vec<u8>> {
    let report = input.report;
    let (verifier, verified_at) = input.verifier();
    let (date, time, datetime) = dicom_times(verified_at);
    let mut obj = common(
        input,
        uids::BASIC_TEXT_SR_STORAGE,
        &input.uids.sr_series,
        &input.uids.sr_instance,
        "SR",
        SERIES_NUMBER_SR,
        &date,
        &time,
    );
    obj.put(str_el(tags::SERIES_DESCRIPTION, VR::LO, "Radiology report"));
    obj.put(seq(
        tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
        vec![],
    ));
    obj.put(seq(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]));
    obj.put(str_el(tags::VALUE_TYPE, VR::CS, "CONTAINER"));
    obj.put(code_seq(
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        ("18748-4", "LN", "Diagnostic Imaging Report"),
    ));
    obj.put(str_el(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
    obj.put(str_el(tags::COMPLETION_FLAG, VR::CS, "COMPLETE"));
    obj.put(str_el(tags::VERIFICATION_FLAG, VR::CS, "VERIFIED"));
    obj.put(seq(
        tags::VERIFYING_OBSERVER_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            str_el(tags::VERIFYING_ORGANIZATION, VR::LO, input.institution),
            str_el(tags::VERIFICATION_DATE_TIME, VR::DT, &datetime),
            str_el(
                tags::VERIFYING_OBSERVER_NAME,
                VR::PN,
                &person_name(verifier),
            ),
            seq(
                tags::VERIFYING_OBSERVER_IDENTIFICATION_CODE_SEQUENCE,
                vec![],
            ),
        ])],
    ));
    obj.put(seq(
        tags::CONTENT_TEMPLATE_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            str_el(tags::MAPPING_RESOURCE, VR::CS, "DCMR"),
            str_el(tags::TEMPLATE_IDENTIFIER, VR::CS, "2000"),
        ])],
    ));

    let c = &report.content;
    let mut items = vec![content_item(
        "HAS OBS CONTEXT",
        "PNAME",
        ("121008", "DCM", "Person Observer Name"),
        str_el(tags::PERSON_NAME, VR::PN, &person_name(&report.author)),
    )];
    let sections = [
        (
            ("55752-0", "LN", "Clinical Information"),
            ("121060", "DCM", "History"),
            &c.clinical_information,
        ),
        (
            ("55111-9", "LN", "Current Procedure Descriptions"),
            ("121065", "DCM", "Procedure Description"),
            &c.technique,
        ),
        (
            ("59776-5", "LN", "Procedure Findings"),
            ("121071", "DCM", "Finding"),
            &c.findings,
        ),
        (
            ("19005-8", "LN", "Impressions"),
            ("121073", "DCM", "Impression"),
            &c.impression,
        ),
    ];
    for (heading, concept, text) in sections {
        if text.trim().is_empty() {
            continue;
        }
        items.push(container(heading, vec![text_item(concept, text)]));
    }
    let mut remarks = Vec::new();
    if let Some(a) = c.agreement {
        let mut line = format!(
            "Agreement with the township preliminary impression: {}",
            a.as_str().replace('_', " ")
        );
        if let Some(comment) = c.agreement_comment.as_deref().filter(|s| !s.is_empty()) {
            line.push_str(" — ");
            line.push_str(comment);
        }
        remarks.push(line);
    }
    if c.critical {
        remarks.push(
            "CRITICAL FINDING: the referring clinic was notified when the report was signed."
                .to_owned(),
        );
    }
    for line in remarks {
        items.push(text_item(("121106", "DCM", "Comment"), &line));
    }
    for a in input.addenda() {
        let text = format!(
            "Addendum by {}, signed {}:\n{}",
            a.author,
            crate::audit::format_micros(a.signed_at),
            a.text
        );
        items.push(container(
            ("55107-7", "LN", "Addendum"),
            vec![text_item(("55107-7", "LN", "Addendum"), &text)],
        ));
    }
    items.push(text_item(
        ("121106", "DCM", "Comment"),
        &signature_line(report, input.addenda().last()),
    ));
    obj.put(seq(tags::CONTENT_SEQUENCE, items));
    part10(obj, uids::BASIC_TEXT_SR_STORAGE, &input.uids.sr_instance)
}

/// The Encapsulated PDF of `input` carrying `pdf`, as a DICOM Part 10 file.
pub fn encapsulated_pdf(input: &DocumentInput, pdf: &[u8]) -> Result<Vec<u8>> {
    let (verified_at_date, verified_at_time, datetime) = dicom_times(input.verifier().1);
    let mut obj = common(
        input,
        uids::ENCAPSULATED_PDF_STORAGE,
        &input.uids.pdf_series,
        &input.uids.pdf_instance,
        "DOC",
        SERIES_NUMBER_PDF,
        &verified_at_date,
        &verified_at_time,
    );
    obj.put(str_el(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        "Radiology report (PDF)",
    ));
    obj.put(str_el(tags::CONVERSION_TYPE, VR::CS, "WSD"));
    obj.put(str_el(tags::ACQUISITION_DATE_TIME, VR::DT, &datetime));
    obj.put(str_el(tags::BURNED_IN_ANNOTATION, VR::CS, "YES"));
    obj.put(str_el(tags::DOCUMENT_TITLE, VR::ST, "Radiology report"));
    obj.put(code_seq(
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        ("18748-4", "LN", "Diagnostic Imaging Report"),
    ));
    obj.put(str_el(
        tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT,
        VR::LO,
        "application/pdf",
    ));
    let len = u32::try_from(pdf.len())
        .map_err(|_| StoreError::Invalid("the report PDF is larger than 4 GiB".into()))?;
    // OB values have even length: a PDF of odd length gets one NUL (PS3.3 C.24.2.1).
    let mut bytes = pdf.to_vec();
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    obj.put(DataElement::new(
        tags::ENCAPSULATED_DOCUMENT_LENGTH,
        VR::UL,
        PrimitiveValue::from(len),
    ));
    obj.put(DataElement::new(
        tags::ENCAPSULATED_DOCUMENT,
        VR::OB,
        PrimitiveValue::from(bytes),
    ));
    part10(
        obj,
        uids::ENCAPSULATED_PDF_STORAGE,
        &input.uids.pdf_instance,
    )
}

/// The PDF inside an Encapsulated PDF data set (as stored), without its padding.
pub fn pdf_of(obj: &InMemDicomObject) -> Option<Vec<u8>> {
    let doc = obj.element(tags::ENCAPSULATED_DOCUMENT).ok()?;
    let mut bytes = doc.value().to_bytes().ok()?.into_owned();
    let declared = obj
        .element(tags::ENCAPSULATED_DOCUMENT_LENGTH)
        .ok()
        .and_then(|e| e.to_int::<u32>().ok());
    match declared {
        Some(n) if (n as usize) <= bytes.len() => bytes.truncate(n as usize),
        _ => {
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
        }
    }
    Some(bytes)
}

/// "Signed by …" line with the signature fingerprint, for the SR (and the PDF's footer).
pub fn signature_line(report: &Report, addendum: Option<&super::Addendum>) -> String {
    let (who, when, key, signature) = match addendum {
        Some(a) => (
            a.author.as_str(),
            a.signed_at,
            a.signer_key_id.as_str(),
            a.signature.as_str(),
        ),
        None => (
            report.author.as_str(),
            report.signed_at.unwrap_or_default(),
            report.signer_key_id.as_deref().unwrap_or_default(),
            report.signature.as_deref().unwrap_or_default(),
        ),
    };
    format!(
        "Electronically signed by {who} at {} (Ed25519, key {key}, signature fingerprint {}). \
         Verify with GET /api/reports/{}/verify or `pacs report verify {}`.",
        crate::audit::format_micros(when),
        fingerprint(signature),
        report.id,
        report.id
    )
}

/// A short, comparable form of a signature: the first 16 bytes of its SHA-256, in hex.
pub fn fingerprint(signature: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(signature.as_bytes());
    hex::encode(&digest[..16])
}

/// The modules both documents share: SOP Common, Patient, General Study, the series,
/// General Equipment.
#[allow(clippy::too_many_arguments)]
fn common(
    input: &DocumentInput,
    sop_class: &str,
    series_uid: &str,
    instance_uid: &str,
    modality: &str,
    series_number: i32,
    content_date: &str,
    content_time: &str,
) -> InMemDicomObject {
    let s = input.study;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut obj = InMemDicomObject::from_element_iter([
        str_el(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        str_el(tags::SOP_CLASS_UID, VR::UI, sop_class),
        str_el(tags::SOP_INSTANCE_UID, VR::UI, instance_uid),
        str_el(tags::STUDY_DATE, VR::DA, &opt(&s.study_date)),
        str_el(tags::CONTENT_DATE, VR::DA, content_date),
        str_el(tags::STUDY_TIME, VR::TM, &opt(&s.study_time)),
        str_el(tags::CONTENT_TIME, VR::TM, content_time),
        str_el(tags::ACCESSION_NUMBER, VR::SH, &opt(&s.accession_number)),
        str_el(tags::MODALITY, VR::CS, modality),
        str_el(tags::MANUFACTURER, VR::LO, input.institution),
        str_el(
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            &opt(&s.referring_physician_name),
        ),
        str_el(tags::PATIENT_NAME, VR::PN, &opt(&s.patient_name)),
        str_el(tags::PATIENT_ID, VR::LO, &s.patient_id),
        str_el(tags::PATIENT_BIRTH_DATE, VR::DA, &opt(&s.birth_date)),
        str_el(tags::PATIENT_SEX, VR::CS, &opt(&s.sex)),
        str_el(tags::STUDY_INSTANCE_UID, VR::UI, &s.study_instance_uid),
        str_el(tags::SERIES_INSTANCE_UID, VR::UI, series_uid),
        str_el(tags::STUDY_ID, VR::SH, &opt(&s.study_id)),
        DataElement::new(
            tags::SERIES_NUMBER,
            VR::IS,
            PrimitiveValue::from(series_number.to_string()),
        ),
        DataElement::new(
            tags::INSTANCE_NUMBER,
            VR::IS,
            PrimitiveValue::from((input.version + 1).to_string()),
        ),
    ]);
    if let Some(issuer) = s.issuer_of_patient_id.as_deref().filter(|i| !i.is_empty()) {
        obj.put(str_el(tags::ISSUER_OF_PATIENT_ID, VR::LO, issuer));
    }
    if let Some(desc) = s.study_description.as_deref().filter(|d| !d.is_empty()) {
        obj.put(str_el(tags::STUDY_DESCRIPTION, VR::LO, desc));
    }
    obj
}

fn part10(obj: InMemDicomObject, sop_class: &str, instance_uid: &str) -> Result<Vec<u8>> {
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(sop_class)
                .media_storage_sop_instance_uid(instance_uid)
                .implementation_class_uid(crate::archive::IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(crate::archive::IMPLEMENTATION_VERSION_NAME),
        )
        .map_err(|e| StoreError::Invalid(format!("cannot make the report document: {e}")))?;
    let mut out = Vec::new();
    file.write_all(&mut out)
        .map_err(|e| StoreError::Invalid(format!("cannot write the report document: {e}")))?;
    Ok(out)
}

fn str_el(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    if value.is_empty() {
        DataElement::empty(tag, vr)
    } else {
        DataElement::new(tag, vr, PrimitiveValue::from(value))
    }
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn code(c: (&str, &str, &str)) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        str_el(tags::CODE_VALUE, VR::SH, c.0),
        str_el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, c.1),
        str_el(tags::CODE_MEANING, VR::LO, c.2),
    ])
}

fn code_seq(tag: Tag, c: (&str, &str, &str)) -> DataElement<InMemDicomObject> {
    seq(tag, vec![code(c)])
}

fn content_item(
    relationship: &str,
    value_type: &str,
    concept: (&str, &str, &str),
    value: DataElement<InMemDicomObject>,
) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        str_el(tags::RELATIONSHIP_TYPE, VR::CS, relationship),
        str_el(tags::VALUE_TYPE, VR::CS, value_type),
        code_seq(tags::CONCEPT_NAME_CODE_SEQUENCE, concept),
        value,
    ])
}

fn text_item(concept: (&str, &str, &str), text: &str) -> InMemDicomObject {
    content_item(
        "CONTAINS",
        "TEXT",
        concept,
        str_el(tags::TEXT_VALUE, VR::UT, text),
    )
}

fn container(heading: (&str, &str, &str), children: Vec<InMemDicomObject>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        str_el(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS"),
        str_el(tags::VALUE_TYPE, VR::CS, "CONTAINER"),
        code_seq(tags::CONCEPT_NAME_CODE_SEQUENCE, heading),
        str_el(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"),
        seq(tags::CONTENT_SEQUENCE, children),
    ])
}

/// A user name as a PN value: the login name as the family name component (PN has no
/// room for `^` or `=` inside a component).
fn person_name(username: &str) -> String {
    username.replace(['^', '=', '\\'], " ")
}

/// Unix µs → (DA, TM, DT) in UTC.
pub(crate) fn dicom_times(micros: i64) -> (String, String, String) {
    // "2026-11-23T08:15:00.000000Z"
    let t = crate::audit::format_micros(micros);
    let date: String = t[..10].chars().filter(char::is_ascii_digit).collect();
    let time: String = t[11..19].chars().filter(char::is_ascii_digit).collect();
    let datetime = format!("{date}{time}+0000");
    (date, time, datetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_times_are_utc() {
        // 2026-11-23T08:15:30Z
        let us = 1_795_421_730_000_000;
        let (d, t, dt) = dicom_times(us);
        assert_eq!(
            crate::audit::format_micros(us),
            "2026-11-23T08:15:30.000000Z"
        );
        assert_eq!((d.as_str(), t.as_str()), ("20261123", "081530"));
        assert_eq!(dt, "20261123081530+0000");
    }

    #[test]
    fn fingerprints_are_short_and_stable() {
        assert_eq!(fingerprint("abc").len(), 32);
        assert_eq!(fingerprint("abc"), fingerprint("abc"));
        assert_ne!(fingerprint("abc"), fingerprint("abd"));
    }
}
