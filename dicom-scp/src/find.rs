//! C-FIND SCP (PS3.4 C.4.1): Patient Root and Study Root query models, levels PATIENT,
//! STUDY, SERIES and IMAGE, with the matching of `pacs_store::query` (the same as QIDO-RS)
//! and scoped to the calling AE's clinic by the access policy.
//!
//! The identifier is decoded in the presentation context's transfer syntax; every key it
//! carries is returned (empty when the archive has no value for it), plus Specific
//! Character Set (ISO_IR 192: answers are UTF-8), Query/Retrieve Level and Retrieve AE
//! Title. Keys the archive cannot match on are returned empty and do not restrict (PS3.4
//! allows an SCP to ignore unsupported matching keys); a malformed value of a supported
//! key is a failure 0xA900 with the reason, a level the model does not have 0xC000-class
//! "unable to process". At most [`MAX_MATCHES`] matches are returned; beyond, the final
//! status is still success but the log says the answer was cut. Patient level lists each
//! patient once (from their studies). Every query is audited (110112 Query) by the AE.

use std::collections::BTreeSet;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::text::SpecificCharacterSet;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use pacs_store::access::Scope;
use pacs_store::archive::Archive;
use pacs_store::audit::{Action, AuditEvent, EventId, Outcome, roles};
use pacs_store::query::{Key, Level, Match, Query, Row};

use crate::association::{AcceptedContext, Established};

/// The most matches one C-FIND answers.
pub const MAX_MATCHES: i64 = 1000;
/// The largest identifier accepted.
pub const MAX_IDENTIFIER: usize = 64 * 1024;

/// Whether `uid` is a query model this SCP answers.
pub fn is_find_sop_class(uid: &str) -> bool {
    uid == uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND
        || uid == uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND
}

/// Why a C-FIND failed: status and comment.
#[derive(Debug)]
pub struct FindFailure {
    pub status: u16,
    pub comment: String,
}

fn failure(status: u16, comment: impl Into<String>) -> FindFailure {
    FindFailure {
        status,
        comment: comment.into(),
    }
}

/// The identifiers to send back as pending responses, encoded in `transfer_syntax`.
pub async fn run(
    archive: &Archive,
    assoc: &Established,
    context: &AcceptedContext,
    identifier: &[u8],
) -> Result<Vec<Vec<u8>>, FindFailure> {
    let (calling_ae, peer, our_ae) = (assoc.calling_ae.as_str(), assoc.peer, &assoc.called_ae);
    let (sop_class, transfer_syntax) = (&context.abstract_syntax, &context.transfer_syntax);
    let ts = TransferSyntaxRegistry
        .get(transfer_syntax)
        .ok_or_else(|| failure(0xC000, "unknown transfer syntax"))?;
    let request = InMemDicomObject::read_dataset_with_ts(identifier, ts)
        .map_err(|e| failure(0xC000, format!("cannot read the identifier: {e}")))?;
    let level_text = text(&request, tags::QUERY_RETRIEVE_LEVEL)
        .ok_or_else(|| failure(0xC000, "QueryRetrieveLevel (0008,0052) is missing"))?;
    let patient_root = sop_class == uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND;
    let (level, patients) = match level_text.to_ascii_uppercase().as_str() {
        "PATIENT" if patient_root => (Level::Study, true),
        "STUDY" => (Level::Study, false),
        "SERIES" => (Level::Series, false),
        "IMAGE" => (Level::Instance, false),
        other => {
            return Err(failure(
                0xC000,
                format!("QueryRetrieveLevel {other:?} is not one of this query model's levels"),
            ));
        }
    };
    // Requested keys (returned), and the matching ones among them.
    let mut requested: Vec<(Tag, VR)> = Vec::new();
    let mut keys = Vec::new();
    for el in request.iter() {
        let tag = el.header().tag;
        if tag == tags::QUERY_RETRIEVE_LEVEL
            || tag == tags::SPECIFIC_CHARACTER_SET
            || tag.0 == 0x0002
        {
            continue;
        }
        requested.push((tag, el.header().vr));
        let Some(key) = Key::from_tag(tag.0, tag.1) else {
            continue;
        };
        let value = el.to_str().map(|v| v.into_owned()).unwrap_or_default();
        let value = value.trim_end_matches(['\0', ' ']).to_owned();
        match Match::parse(key, &value, '\\') {
            Ok(Some(m)) => keys.push((key, m)),
            Ok(None) => {}
            Err(e) => return Err(failure(0xA900, format!("{e}"))),
        }
    }
    let query = Query {
        level,
        keys,
        fuzzy: false,
        limit: MAX_MATCHES + 1,
        offset: 0,
    };
    let scope = Scope::of_dicom_peer(assoc.clinic_id);
    let rows = archive.index().query(scope, &query).await.map_err(|e| {
        tracing::error!(error = %e, "C-FIND: the index could not answer");
        failure(0xC001, "the archive could not run the query")
    })?;
    let mut rows: Vec<Row> = rows;
    if rows.len() as i64 > MAX_MATCHES {
        tracing::warn!(
            ae = calling_ae,
            "C-FIND: more than {MAX_MATCHES} matches; the answer is cut"
        );
        rows.truncate(MAX_MATCHES as usize);
    }
    if patients {
        let mut seen = BTreeSet::new();
        rows.retain(|r| seen.insert((r.patient_id.clone(), r.issuer_of_patient_id.clone())));
    }
    let event = AuditEvent::new(
        EventId::Query,
        Action::Execute,
        calling_ae,
        roles::SENDING_AE,
    )
    .with_ip(Some(peer))
    .with_detail(format!(
        "C-FIND {} level {}: {} match(es)",
        if patient_root {
            "patient root"
        } else {
            "study root"
        },
        level_text,
        rows.len()
    ));
    if let Err(e) = archive.index().audit_read(event).await {
        tracing::error!(error = %e, "C-FIND: cannot write the audit event; refusing");
        return Err(failure(0xC001, "the archive could not record the query"));
    }
    rows.iter()
        .map(|row| encode(row, &requested, &level_text, our_ae, ts))
        .collect()
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// One pending response's identifier.
fn encode(
    row: &Row,
    requested: &[(Tag, VR)],
    level: &str,
    our_ae: &str,
    ts: &dicom_encoding::TransferSyntax,
) -> Result<Vec<u8>, FindFailure> {
    let mut out = InMemDicomObject::new_empty();
    out.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from("ISO_IR 192"),
    ));
    out.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(level.to_ascii_uppercase()),
    ));
    out.put(DataElement::new(
        tags::RETRIEVE_AE_TITLE,
        VR::AE,
        PrimitiveValue::from(our_ae),
    ));
    for (tag, vr) in requested {
        let value = match Key::from_tag(tag.0, tag.1) {
            Some(key) => row.value(key),
            None => computed(row, *tag),
        };
        let element = match value {
            Some(v) => {
                let values: Vec<String> = v.split('\\').map(str::to_owned).collect();
                DataElement::new(*tag, *vr, PrimitiveValue::Strs(values.into()))
            }
            None if *vr == VR::SQ => continue,
            None => DataElement::new(*tag, *vr, PrimitiveValue::Empty),
        };
        out.put(element);
    }
    let mut bytes = Vec::new();
    out.write_dataset_with_ts_cs(&mut bytes, ts, SpecificCharacterSet::ISO_IR_192)
        .map_err(|e| failure(0xC001, format!("cannot encode a response: {e}")))?;
    Ok(bytes)
}

/// Attributes the archive computes (PS3.4 C.3.4).
fn computed(row: &Row, tag: Tag) -> Option<String> {
    match (tag.0, tag.1) {
        (0x0020, 0x1206) => Some(row.number_of_study_related_series.to_string()),
        (0x0020, 0x1208) => Some(row.number_of_study_related_instances.to_string()),
        (0x0020, 0x1209) => row
            .number_of_series_related_instances
            .map(|n| n.to_string()),
        (0x0008, 0x0056) => Some("ONLINE".into()),
        _ => None,
    }
}

/// For the audit trail of a refused query.
pub fn refused_event(calling_ae: &str, peer: std::net::IpAddr, why: &str) -> AuditEvent {
    AuditEvent::new(
        EventId::Query,
        Action::Execute,
        calling_ae,
        roles::SENDING_AE,
    )
    .with_ip(Some(peer))
    .with_outcome(Outcome::MinorFailure, format!("C-FIND refused: {why}"))
}
