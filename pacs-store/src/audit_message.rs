//! One audit entry as a DICOM Audit Message (PS3.15 A.5.1): the XML an IHE ATNA Audit
//! Record Repository receives over syslog (the forwarder of the `pacs` binary frames and
//! sends it).
//!
//! ## What goes where
//! - `EventIdentification`: `EventActionCode` (C R U D E), `EventDateTime` (the entry's
//!   time, RFC 3339 UTC with µs), `EventOutcomeIndicator` (0 4 8 12), `EventID` (110100 …
//!   110114, DCM), `EventTypeCode` when the entry has one, and `EventOutcomeDescription`:
//!   the outcome description and the detail, then the correlation suffix
//!   `[pacs audit entry ID sha256 HASH]` — the entry's id and chain hash, so that a
//!   receiver can match a message with `pacs audit search`/`verify` (and keep the last one
//!   as an anchor for `pacs audit verify --anchor ID:HASH`).
//! - One `ActiveParticipant`: `UserID` (user name or AE title), `UserIsRequestor="true"`,
//!   `NetworkAccessPointID` + `NetworkAccessPointTypeCode="2"` when the address is known,
//!   and a `RoleIDCode` when the role has a DCM code (the archive itself: 110150
//!   Application; a sending AE: 110153 Source Role ID). Other roles (admin, radiologist…)
//!   have no standard code: they are named in the description instead.
//! - `AuditSourceIdentification`: `AuditSourceID` as configured (the archive's AE title),
//!   `AuditSourceTypeCode` 4 (application server process).
//! - `ParticipantObjectIdentification` for the patient (type 1 person, role 1 patient,
//!   ID type 2 "Patient Number" of RFC-3881, `ParticipantObjectID` = `ID^^^Issuer` when the
//!   issuer is known) and for the study (type 2 system object, role 3 report, ID type
//!   110180 "Study Instance UID", with a `SOPClass` element giving the number of instances
//!   and up to [`MAX_INSTANCES`] of their UIDs; the full list stays in the local trail).
//!
//! Every value is XML-escaped; characters XML 1.0 cannot carry (control characters other
//! than tab, newline and carriage return) become U+FFFD, and whitespace in attributes is
//! written as character references so that a parser's normalisation keeps it.

use std::fmt::Write as _;

use crate::audit::{AuditRecord, EventId, EventType, Outcome, format_micros, roles};

/// SOP Instance UIDs listed in one message (the count stays exact): keeps a message well
/// under the 64 KiB a receiver is asked to accept.
pub const MAX_INSTANCES: usize = 100;

/// Renders `record` as a DICOM Audit Message, `audit_source_id` naming this archive.
pub fn render(record: &AuditRecord, audit_source_id: &str) -> String {
    let mut x = String::with_capacity(1024);
    x.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    x.push_str("<AuditMessage>");

    // Event
    let _ = write!(
        x,
        r#"<EventIdentification EventActionCode="{}" EventDateTime="{}" EventOutcomeIndicator="{}">"#,
        attr(&record.action),
        format_micros(record.occurred_at),
        record.outcome
    );
    let event_meaning = EventId::from_code(record.event_id)
        .map(EventId::meaning)
        .unwrap_or("Unknown Event");
    coded(
        &mut x,
        "EventID",
        &record.event_id.to_string(),
        "DCM",
        event_meaning,
    );
    if let Some(t) = record.event_type {
        let meaning = EventType::from_code(t)
            .map(EventType::meaning)
            .unwrap_or("Unknown Event Type");
        coded(&mut x, "EventTypeCode", &t.to_string(), "DCM", meaning);
    }
    let role_code = role_code(&record.user_role);
    let _ = write!(
        x,
        "<EventOutcomeDescription>{}</EventOutcomeDescription>",
        text(&description(record, role_code.is_none()))
    );
    x.push_str("</EventIdentification>");

    // Who
    let _ = write!(
        x,
        r#"<ActiveParticipant UserID="{}" UserIsRequestor="true""#,
        attr(&record.user)
    );
    if let Some(ip) = &record.source_ip {
        let _ = write!(
            x,
            r#" NetworkAccessPointID="{}" NetworkAccessPointTypeCode="2""#,
            attr(ip)
        );
    }
    match role_code {
        Some((code, meaning)) => {
            x.push('>');
            coded(&mut x, "RoleIDCode", code, "DCM", meaning);
            x.push_str("</ActiveParticipant>");
        }
        None => x.push_str("/>"),
    }

    // Where it was recorded
    let _ = write!(
        x,
        r#"<AuditSourceIdentification AuditSourceID="{}">"#,
        attr(audit_source_id)
    );
    coded(
        &mut x,
        "AuditSourceTypeCode",
        "4",
        "DCM",
        "Application Server Process or Thread",
    );
    x.push_str("</AuditSourceIdentification>");

    // Whose data
    if let Some(patient) = &record.patient_id {
        let id = match &record.patient_issuer {
            Some(issuer) => format!("{patient}^^^{issuer}"),
            None => patient.clone(),
        };
        let _ = write!(
            x,
            r#"<ParticipantObjectIdentification ParticipantObjectID="{}" ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">"#,
            attr(&id)
        );
        coded(
            &mut x,
            "ParticipantObjectIDTypeCode",
            "2",
            "RFC-3881",
            "Patient Number",
        );
        x.push_str("</ParticipantObjectIdentification>");
    }
    if let Some(study) = &record.study_instance_uid {
        let _ = write!(
            x,
            r#"<ParticipantObjectIdentification ParticipantObjectID="{}" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3">"#,
            attr(study)
        );
        coded(
            &mut x,
            "ParticipantObjectIDTypeCode",
            "110180",
            "DCM",
            "Study Instance UID",
        );
        if record.instance_count > 0 {
            let _ = write!(
                x,
                r#"<SOPClass NumberOfInstances="{}">"#,
                record.instance_count
            );
            for uid in record.instance_uids().into_iter().take(MAX_INSTANCES) {
                let _ = write!(x, r#"<Instance UID="{}"/>"#, attr(uid));
            }
            x.push_str("</SOPClass>");
        }
        x.push_str("</ParticipantObjectIdentification>");
    }
    x.push_str("</AuditMessage>");
    x
}

/// The DCM code of an active participant's role, where PS3.16 has one.
fn role_code(role: &str) -> Option<(&'static str, &'static str)> {
    match role {
        roles::APPLICATION => Some(("110150", "Application")),
        roles::SENDING_AE => Some(("110153", "Source Role ID")),
        _ => None,
    }
}

/// The outcome description and detail, then the correlation suffix.
fn description(record: &AuditRecord, name_role: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    match &record.outcome_description {
        Some(d) => parts.push(d.clone()),
        None if record.outcome != 0 => parts.push(Outcome::meaning(record.outcome).to_owned()),
        None => {}
    }
    if let Some(d) = &record.detail {
        parts.push(d.clone());
    }
    if name_role {
        parts.push(format!("role {}", record.user_role));
    }
    parts.push(correlation(record));
    parts.join("; ")
}

/// `[pacs audit entry ID sha256 HASH]`: how a message names its entry of the local trail.
pub fn correlation(record: &AuditRecord) -> String {
    format!("[pacs audit entry {} sha256 {}]", record.id, record.hash)
}

/// `<NAME csd-code=… codeSystemName=… originalText=…/>`.
fn coded(x: &mut String, name: &str, code: &str, system: &str, meaning: &str) {
    let _ = write!(
        x,
        r#"<{name} csd-code="{}" codeSystemName="{}" originalText="{}"/>"#,
        attr(code),
        attr(system),
        attr(meaning)
    );
}

/// Characters XML 1.0 allows (the rest, i.e. C0 controls but tab, LF, CR, become U+FFFD;
/// Rust strings hold no surrogates, and U+FFFE/U+FFFF are not characters either).
fn xml_char(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' => c,
        c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
        c => c,
    }
}

/// Escaped for element content.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().map(xml_char) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// Escaped for a double-quoted attribute value (whitespace as references, which attribute
/// value normalisation would otherwise turn into spaces).
fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().map(xml_char) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, AuditEvent, GENESIS_HASH};

    fn record(event: AuditEvent) -> AuditRecord {
        AuditRecord::chained(42, GENESIS_HASH, &event)
    }

    fn login_failure() -> AuditRecord {
        let mut e = AuditEvent::new(
            EventId::UserAuthentication,
            Action::Execute,
            "someone",
            "unknown",
        )
        .with_type(EventType::Login)
        .with_ip(Some("10.1.2.3".parse().unwrap()))
        .with_outcome(Outcome::MinorFailure, "wrong password or unknown user");
        e.occurred_at = 1_709_209_800_123_456;
        record(e)
    }

    #[test]
    fn a_login_failure() {
        let r = login_failure();
        let xml = render(&r, "REGIONAL_PACS");
        let expected = concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><AuditMessage>"#,
            r#"<EventIdentification EventActionCode="E" EventDateTime="2024-02-29T12:30:00.123456Z" EventOutcomeIndicator="4">"#,
            r#"<EventID csd-code="110114" codeSystemName="DCM" originalText="User Authentication"/>"#,
            r#"<EventTypeCode csd-code="110122" codeSystemName="DCM" originalText="Login"/>"#,
            r#"<EventOutcomeDescription>wrong password or unknown user; role unknown; [pacs audit entry 42 sha256 "#,
        );
        assert!(xml.starts_with(expected), "{xml}");
        assert!(xml.contains(&format!("sha256 {}]</EventOutcomeDescription>", r.hash)));
        assert!(xml.contains(
            r#"<ActiveParticipant UserID="someone" UserIsRequestor="true" NetworkAccessPointID="10.1.2.3" NetworkAccessPointTypeCode="2"/>"#
        ), "{xml}");
        assert!(xml.contains(concat!(
            r#"<AuditSourceIdentification AuditSourceID="REGIONAL_PACS">"#,
            r#"<AuditSourceTypeCode csd-code="4" codeSystemName="DCM" originalText="Application Server Process or Thread"/>"#,
            r#"</AuditSourceIdentification></AuditMessage>"#
        )), "{xml}");
        assert!(!xml.contains("ParticipantObjectIdentification"));
    }

    #[test]
    fn a_store_names_patient_study_and_instances() {
        let uids: Vec<String> = (0..150).map(|i| format!("1.2.3.{i}")).collect();
        let e = AuditEvent::new(
            EventId::InstancesTransferred,
            Action::Create,
            "CT_TOWNSHIP_A",
            roles::SENDING_AE,
        )
        .with_ip(Some("::ffff:10.9.8.7".parse().unwrap()))
        .with_patient(Some("P-1".into()), Some("CLINIC-A".into()))
        .with_study(Some("1.2.826.0.1.3680043.2.1125.1".into()))
        .with_instances(uids)
        .with_detail("clinic Township A");
        let r = record(e);
        let xml = render(&r, "REGIONAL_PACS");
        assert!(xml.contains(r#"EventActionCode="C""#));
        assert!(xml.contains(r#"EventOutcomeIndicator="0""#));
        assert!(
            xml.contains(
                "<EventOutcomeDescription>clinic Township A; [pacs audit entry 42 sha256 "
            ),
            "{xml}"
        );
        assert!(xml.contains(concat!(
            r#"<ActiveParticipant UserID="CT_TOWNSHIP_A" UserIsRequestor="true" NetworkAccessPointID="10.9.8.7" NetworkAccessPointTypeCode="2">"#,
            r#"<RoleIDCode csd-code="110153" codeSystemName="DCM" originalText="Source Role ID"/></ActiveParticipant>"#
        )), "{xml}");
        assert!(xml.contains(concat!(
            r#"<ParticipantObjectIdentification ParticipantObjectID="P-1^^^CLINIC-A" ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">"#,
            r#"<ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881" originalText="Patient Number"/>"#,
            r#"</ParticipantObjectIdentification>"#,
            r#"<ParticipantObjectIdentification ParticipantObjectID="1.2.826.0.1.3680043.2.1125.1" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3">"#,
            r#"<ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" originalText="Study Instance UID"/>"#,
            r#"<SOPClass NumberOfInstances="150"><Instance UID="1.2.3.0"/>"#,
        )), "{xml}");
        assert_eq!(xml.matches("<Instance ").count(), MAX_INSTANCES);
        assert!(xml.contains(r#"<Instance UID="1.2.3.99"/></SOPClass></ParticipantObjectIdentification></AuditMessage>"#));
        // Without an issuer, the bare ID; the archive's own events name its role.
        let mut e = AuditEvent::new(
            EventId::ApplicationActivity,
            Action::Execute,
            "REGIONAL_PACS",
            roles::APPLICATION,
        )
        .with_type(EventType::ApplicationStart)
        .with_patient(Some("P-2".into()), None);
        e.occurred_at = 0;
        let xml = render(&record(e), "REGIONAL_PACS");
        assert!(xml.contains(r#"ParticipantObjectID="P-2" "#), "{xml}");
        assert!(xml.contains(
            r#"<RoleIDCode csd-code="110150" codeSystemName="DCM" originalText="Application"/>"#
        ));
        assert!(xml.contains(r#"EventDateTime="1970-01-01T00:00:00.000000Z""#));
    }

    #[test]
    fn every_value_is_escaped() {
        let hostile = "<b>&\"'\u{1}\u{1b}[31m x\ty 王小明 </AuditMessage>";
        let mut e = AuditEvent::new(EventId::SecurityAlert, Action::Execute, hostile, hostile)
            .with_outcome(Outcome::SeriousFailure, hostile)
            .with_patient(Some(hostile.into()), Some("醫院&\"".into()))
            .with_study(Some(hostile.into()))
            .with_instances(vec!["1.2\"/><x a=\"".into()])
            .with_detail(hostile);
        e.occurred_at = 0;
        let r = record(e);
        let xml = render(&r, "AE\"<&>");
        // One root, nothing injected: every < is ours.
        assert_eq!(xml.matches("<AuditMessage>").count(), 1);
        assert_eq!(xml.matches("</AuditMessage>").count(), 1);
        assert!(!xml.contains("<b>"));
        assert!(!xml.contains("<x "));
        assert!(
            xml.contains(r#"AuditSourceID="AE&quot;&lt;&amp;&gt;""#),
            "{xml}"
        );
        // Attributes: quotes and whitespace as references; control characters replaced
        // (the stored record already cleaned them; the renderer does not rely on that).
        assert!(xml.contains(
            "UserID=\"&lt;b&gt;&amp;&quot;&apos;\u{FFFD}\u{FFFD}[31m x&#9;y 王小明 &lt;/AuditMessage&gt;\""
        ), "{xml}");
        assert!(xml.contains("ParticipantObjectID=\"&lt;b&gt;"), "{xml}");
        assert!(xml.contains("^^^醫院&amp;&quot;\""), "{xml}");
        assert!(
            xml.contains(r#"<Instance UID="1.2&quot;/&gt;&lt;x a=&quot;"/>"#),
            "{xml}"
        );
        // Text: < & > escaped, quotes and tab as they are, Chinese as UTF-8.
        assert!(xml.contains(
            "<EventOutcomeDescription>&lt;b&gt;&amp;\"'\u{FFFD}\u{FFFD}[31m x\ty 王小明 &lt;/AuditMessage&gt;; "
        ), "{xml}");
        // A raw control character cannot reach the output even if a record holds one.
        let mut raw = r.clone();
        raw.user = "a\u{0}b\u{7f}".into();
        raw.detail = Some("line\u{8}\r\n".into());
        let xml = render(&raw, "A");
        assert!(
            !xml.chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\u{7f}'))
        );
        assert!(xml.contains(r#"UserID="a�b"#), "{xml}");
        assert!(xml.contains("line\u{FFFD}&#13;\n"), "{xml}");
    }

    #[test]
    fn correlation_names_the_entry() {
        let r = login_failure();
        assert_eq!(
            correlation(&r),
            format!("[pacs audit entry 42 sha256 {}]", r.hash)
        );
        assert_eq!(r.hash.len(), 64);
    }
}
