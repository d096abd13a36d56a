//! A final report in the forms other systems read: FHIR R4 `DiagnosticReport` (JSON) and
//! an HL7 v2.5.1 `ORU^R01` message. Both are renderings of the signed report — the
//! signature stays with the archive's copy (`GET /api/reports/{id}/verify`).

use crate::reports::Report;

/// LOINC 18748-4 "Diagnostic imaging study".
const LOINC_IMAGING: (&str, &str) = ("18748-4", "Diagnostic imaging study");
/// LOINC 18782-3 "Radiology Study observation (narrative)".
const LOINC_FINDINGS: (&str, &str) = ("18782-3", "Radiology Study observation (narrative)");
/// LOINC 19005-8 "Radiology Imaging study [Impression] (narrative)".
const LOINC_IMPRESSION: (&str, &str) = (
    "19005-8",
    "Radiology Imaging study [Impression] (narrative)",
);
/// LOINC 55752-0 "Clinical information".
const LOINC_CLINICAL: (&str, &str) = ("55752-0", "Clinical information");
/// LOINC 55111-9 "Current imaging procedure descriptions".
const LOINC_TECHNIQUE: (&str, &str) = ("55111-9", "Current imaging procedure descriptions");

/// Unix microseconds as an RFC 3339 UTC time (FHIR `instant`).
fn instant(us: i64) -> String {
    crate::audit::format_micros(us)
}

/// Unix microseconds as an HL7 DTM in UTC (YYYYMMDDHHMMSS+0000).
fn hl7_time(us: i64) -> String {
    let iso = crate::audit::format_micros(us); // 2026-11-23T05:24:00.123456Z
    let digits: String = iso.chars().take(19).filter(char::is_ascii_digit).collect();
    format!("{digits}+0000")
}

/// The report as one plain text: sections, then addenda.
pub fn plain_text(r: &Report) -> String {
    let c = &r.content;
    let mut out = String::new();
    for (title, text) in [
        ("Clinical information", &c.clinical_information),
        ("Technique", &c.technique),
        ("Findings", &c.findings),
        ("Impression", &c.impression),
    ] {
        if !text.trim().is_empty() {
            out.push_str(&format!("{title}:\n{}\n\n", text.trim()));
        }
    }
    if c.critical {
        out.push_str("CRITICAL FINDING.\n\n");
    }
    for a in &r.addenda {
        out.push_str(&format!(
            "Addendum ({}, {}):\n{}\n\n",
            a.author,
            instant(a.signed_at),
            a.text.trim()
        ));
    }
    out.trim_end().to_owned()
}

/// FHIR R4 `DiagnosticReport` of a signed report (`None` for a draft).
pub fn fhir_diagnostic_report(r: &Report) -> Option<serde_json::Value> {
    let signed_at = r.signed_at?;
    use base64::Engine as _;
    let text = plain_text(r);
    let mut subject = serde_json::json!({
        "identifier": { "value": r.patient_id },
    });
    if let Some(issuer) = &r.issuer_of_patient_id {
        subject["identifier"]["assigner"] = serde_json::json!({ "display": issuer });
    }
    if let Some(name) = &r.patient_name {
        subject["display"] = name.replace('^', " ").into();
    }
    let mut report = serde_json::json!({
        "resourceType": "DiagnosticReport",
        "id": r.id.to_string(),
        "identifier": [{ "system": "urn:pacs:report", "value": r.id.to_string() }],
        "status": if r.addenda.is_empty() { "final" } else { "amended" },
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
            "code": "RAD", "display": "Radiology" }] }],
        "code": {
            "coding": [{ "system": "http://loinc.org", "code": LOINC_IMAGING.0, "display": LOINC_IMAGING.1 }],
            "text": r.template,
        },
        "subject": subject,
        "issued": instant(signed_at),
        "resultsInterpreter": [{ "display": r.author }],
        "conclusion": r.content.impression,
        "presentedForm": [{
            "contentType": "text/plain; charset=utf-8",
            "language": "en",
            "title": "Radiology report",
            "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
        }],
        "extension": [{
            "url": "urn:pacs:report-signature",
            "valueString": format!("ed25519 key {} signature {}",
                r.signer_key_id.as_deref().unwrap_or(""), r.signature.as_deref().unwrap_or("")),
        }],
    });
    // The study, by its DICOM Study Instance UID.
    report["imagingStudy"] = serde_json::json!([{
        "identifier": { "system": "urn:dicom:uid", "value": format!("urn:oid:{}", r.study_instance_uid) },
        "display": "Imaging study",
    }]);
    if let Some(acc) = &r.accession_number {
        report["identifier"]
            .as_array_mut()
            .expect("an array")
            .push(serde_json::json!({
                "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN" }] },
                "value": acc,
            }));
    }
    Some(report)
}

/// HL7 v2 escaping of a field's text (the default delimiters `|^~\&`), line breaks as
/// `\.br\`.
pub fn hl7_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\E\\"),
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\r' => {}
            '\n' => out.push_str("\\.br\\"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// An HL7 v2.5.1 `ORU^R01` of a signed report (`None` for a draft): segments separated
/// by carriage returns, text UTF-8 (MSH-18 `UNICODE UTF-8`).
pub fn hl7_oru(
    r: &Report,
    sending_facility: &str,
    receiving_facility: &str,
    now: i64,
) -> Option<String> {
    let signed_at = r.signed_at?;
    let status = if r.addenda.is_empty() { "F" } else { "C" };
    let e = hl7_escape;
    let name = r
        .patient_name
        .as_deref()
        .map(|n| {
            n.split('=')
                .next()
                .unwrap_or("")
                .split('^')
                .map(e)
                .collect::<Vec<_>>()
                .join("^")
        })
        .unwrap_or_default();
    let mut segments = vec![
        format!(
            "MSH|^~\\&|REGIONAL_PACS|{}|{}|{}|{}||ORU^R01^ORU_R01|RPT{}-{}|P|2.5.1|||||UNICODE UTF-8",
            e(sending_facility),
            e(receiving_facility),
            e(receiving_facility),
            hl7_time(now),
            r.id,
            r.addenda.len()
        ),
        format!(
            "PID|1||{}^^^{}||{}",
            e(&r.patient_id),
            e(r.issuer_of_patient_id.as_deref().unwrap_or("")),
            name
        ),
        format!(
            "OBR|1||{}|{}^{}^LN|||||||||||||||{}|||{}||RAD|{}|||||||{}",
            e(r.accession_number.as_deref().unwrap_or("")),
            LOINC_IMAGING.0,
            LOINC_IMAGING.1,
            e(&r.study_instance_uid),
            hl7_time(signed_at),
            status,
            e(&r.author)
        ),
    ];
    let c = &r.content;
    let mut n = 0;
    for ((code, display), text) in [
        (LOINC_CLINICAL, &c.clinical_information),
        (LOINC_TECHNIQUE, &c.technique),
        (LOINC_FINDINGS, &c.findings),
        (LOINC_IMPRESSION, &c.impression),
    ] {
        if text.trim().is_empty() {
            continue;
        }
        n += 1;
        segments.push(format!(
            "OBX|{n}|TX|{code}^{display}^LN||{}||||||F",
            e(text.trim())
        ));
    }
    for a in &r.addenda {
        n += 1;
        segments.push(format!(
            "OBX|{n}|TX|{}^{}^LN|addendum|{}||||||C|||{}",
            LOINC_FINDINGS.0,
            LOINC_FINDINGS.1,
            e(&format!("Addendum by {}: {}", a.author, a.text.trim())),
            hl7_time(a.signed_at)
        ));
    }
    if c.critical {
        segments.push(format!("NTE|1||{}", e("CRITICAL FINDING")));
    }
    Some(segments.join("\r") + "\r")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::{Addendum, ReportContent};

    fn report() -> Report {
        Report {
            id: 7,
            task_id: 1,
            study_instance_uid: "1.2.3.4".into(),
            patient_id: "TS-0001".into(),
            accession_number: Some("A1".into()),
            clinic_id: Some(1),
            template: "ct-chest".into(),
            author: "rad-chest".into(),
            state: "final".into(),
            content: ReportContent {
                findings: "Line one|pipe\nline two ^ & ~ \\".into(),
                impression: "Pneumonia.".into(),
                critical: true,
                ..Default::default()
            },
            signed_at: Some(1_700_000_000_000_000),
            signer_key_id: Some("abcd".into()),
            signature: Some("00".into()),
            patient_name: Some("Liu^Yan=刘^䶮".into()),
            issuer_of_patient_id: None,
            addenda: Vec::new(),
        }
    }

    #[test]
    fn hl7_escapes_delimiters_and_breaks() {
        assert_eq!(
            hl7_escape("a|b^c&d~e\\f\ng\r"),
            "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g"
        );
        let msg = hl7_oru(
            &report(),
            "IMAGING CENTRE",
            "Clinic A",
            1_700_000_000_000_000,
        )
        .unwrap();
        let segments: Vec<&str> = msg.trim_end_matches('\r').split('\r').collect();
        assert!(segments[0].starts_with("MSH|^~\\&|REGIONAL_PACS|IMAGING CENTRE|Clinic A|"));
        assert!(segments[0].contains("|ORU^R01^ORU_R01|RPT7-0|P|2.5.1|"));
        assert_eq!(segments[1], "PID|1||TS-0001^^^||Liu^Yan");
        let obr: Vec<&str> = segments[2].split('|').collect();
        // OBR-3 filler order (accession), OBR-22 result time, OBR-24 section, OBR-25
        // status, OBR-32 principal result interpreter.
        assert_eq!(
            (obr[3], obr[22], obr[24], obr[25]),
            ("A1", "20231114221320+0000", "RAD", "F")
        );
        assert_eq!(obr[32], "rad-chest");
        // Every segment has the field count its type expects: no delimiter leaked.
        let findings = segments.iter().find(|s| s.contains("18782-3")).unwrap();
        assert_eq!(findings.split('|').count(), 12, "{findings}");
        assert!(findings.contains("Line one\\F\\pipe\\.br\\line two \\S\\ \\T\\ \\R\\ \\E\\"));
        assert!(
            segments
                .last()
                .unwrap()
                .starts_with("NTE|1||CRITICAL FINDING")
        );
        let mut draft = report();
        draft.signed_at = None;
        assert!(hl7_oru(&draft, "a", "b", 0).is_none());
    }

    #[test]
    fn fhir_diagnostic_report() {
        use base64::Engine as _;
        let mut r = report();
        let f = super::fhir_diagnostic_report(&r).unwrap();
        assert_eq!(f["resourceType"], "DiagnosticReport");
        assert_eq!(f["status"], "final");
        assert_eq!(f["code"]["coding"][0]["code"], "18748-4");
        assert_eq!(f["conclusion"], "Pneumonia.");
        assert_eq!(
            f["imagingStudy"][0]["identifier"]["value"],
            "urn:oid:1.2.3.4"
        );
        assert_eq!(f["identifier"][1]["value"], "A1");
        let text = base64::engine::general_purpose::STANDARD
            .decode(f["presentedForm"][0]["data"].as_str().unwrap())
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("Impression:\nPneumonia.") && text.contains("CRITICAL FINDING"));
        r.addenda.push(Addendum {
            id: 1,
            author: "rad-chest".into(),
            text: "Also an effusion.".into(),
            signed_at: 1_700_000_100_000_000,
            signer_key_id: "abcd".into(),
            signature: "00".into(),
        });
        assert_eq!(
            super::fhir_diagnostic_report(&r).unwrap()["status"],
            "amended"
        );
    }
}
