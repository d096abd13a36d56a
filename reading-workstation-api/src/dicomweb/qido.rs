//! QIDO-RS (PS3.18 10.6): search for studies, series and instances.
//!
//! `GET /dicom-web/studies`, `/studies/{study}/series`, `/series`,
//! `/studies/{study}/series/{series}/instances`, `/studies/{study}/instances`,
//! `/instances`. Matching keys by keyword (`PatientName`) or tag (`00100010`), `limit`
//! (1–1000, default 100) and `offset`, `fuzzymatching`, `includefield` (accepted; every
//! attribute the index holds for the level is returned anyway, as PS3.18 allows). The
//! matching is `pacs_store::query`'s, within the caller's scope.
//!
//! Answers are `application/dicom+json`: 200 with a (possibly empty) array; when more
//! results exist than were returned, a `Warning: 299` header says so. An unknown or
//! unsupported key, an invalid value, or a `limit` out of range is 400 with the reason;
//! an `Accept` that excludes JSON is 406. Each search is audited (110112 Query).

use std::collections::HashSet;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pacs_store::audit::{Action, EventId, Outcome};
use pacs_store::query::{Key, Level, Match, Query, Row, is_uid};
use serde_json::{Map, Value, json};

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Rows per answer when the client gives no `limit`, and the most it may ask for.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;
/// Query string bytes looked at.
const MAX_QUERY_BYTES: usize = 16 * 1024;

pub async fn studies(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    search(&state, &caller, &headers, q, Level::Study, None, None).await
}

pub async fn series(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    search(&state, &caller, &headers, q, Level::Series, None, None).await
}

pub async fn study_series(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(study): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    search(
        &state,
        &caller,
        &headers,
        q,
        Level::Series,
        Some(study),
        None,
    )
    .await
}

pub async fn instances(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    search(&state, &caller, &headers, q, Level::Instance, None, None).await
}

pub async fn study_instances(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(study): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    search(
        &state,
        &caller,
        &headers,
        q,
        Level::Instance,
        Some(study),
        None,
    )
    .await
}

pub async fn series_instances(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    search(
        &state,
        &caller,
        &headers,
        q,
        Level::Instance,
        Some(study),
        Some(series),
    )
    .await
}

async fn search(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    raw_query: Option<String>,
    level: Level,
    study: Option<String>,
    series: Option<String>,
) -> Result<Response, ApiError> {
    super::accepts_json(headers)?;
    let raw = raw_query.unwrap_or_default();
    let mut query = parse_query(&raw, level)?;
    for (key, uid) in [
        (Key::StudyInstanceUid, study),
        (Key::SeriesInstanceUid, series),
    ] {
        if let Some(uid) = uid {
            if !is_uid(&uid) {
                return Err(ApiError::bad_request(format!(
                    "{} in the path is not a UID",
                    key.keyword()
                )));
            }
            query.keys.retain(|(k, _)| *k != key);
            query.keys.push((key, Match::Single(uid)));
        }
    }
    // One more than asked, to know whether there are more.
    let asked = query.limit;
    query.limit = asked + 1;
    let patient = query.keys.iter().find_map(|(k, m)| match (k, m) {
        (Key::PatientId, Match::Single(v)) => Some(v.clone()),
        _ => None,
    });
    let event = caller
        .event(EventId::Query, Action::Execute)
        .with_patient(patient, None)
        .with_detail(format!(
            "QIDO-RS {} ?{}",
            level_name(level),
            truncate(&raw, 1024),
        ));
    // The entry is written alongside the query, and the answer waits for both ("no audit,
    // no data"). It records what was asked, not how many studies came back (as IHE's Query
    // event does), so it need not wait for the rows. On PostgreSQL the two overlap; on
    // SQLite each runs in place on this thread (`pacs_store::index::direct`), one after
    // the other, which measured faster than handing either to another thread.
    let index = state.archive.index();
    let (rows, audited) = tokio::join!(
        index.query(caller.scope(), &query),
        caller.audit_read(state, event.clone())
    );
    let mut rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            // The entry above says the search was made; this one that it failed.
            let failed = event.with_outcome(Outcome::SeriousFailure, "the search failed");
            state.archive.audit_or_log(failed).await;
            return Err(e.into());
        }
    };
    audited?;
    let more = rows.len() as i64 > asked;
    rows.truncate(asked as usize);

    let body: Vec<Value> = rows.iter().map(|r| to_json(r, level)).collect();
    let mut res = super::dicom_json(Value::Array(body));
    if more {
        res.headers_mut().insert(
            header::WARNING,
            HeaderValue::from_static(
                "299 pacs \"There are additional results that can be requested\"",
            ),
        );
    }
    Ok(res.into_response())
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Study => "studies",
        Level::Series => "series",
        Level::Instance => "instances",
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The query string into a [`Query`], refusing what cannot be answered.
pub fn parse_query(raw: &str, level: Level) -> Result<Query, ApiError> {
    if raw.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(
            "query string too long (at most 16 KiB)",
        ));
    }
    let mut query = Query {
        level,
        keys: Vec::new(),
        fuzzy: false,
        limit: DEFAULT_LIMIT,
        offset: 0,
    };
    let mut seen = HashSet::new();
    for (name, value) in form_urlencoded(raw)? {
        match name.as_str() {
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}"))
                    })?;
            }
            "offset" => {
                query.offset = value
                    .parse()
                    .ok()
                    .filter(|o: &i64| (0..=10_000_000).contains(o))
                    .ok_or_else(|| {
                        ApiError::bad_request("offset must be a number from 0 to 10000000")
                    })?;
            }
            "fuzzymatching" => {
                query.fuzzy = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::bad_request("fuzzymatching must be true or false")),
                };
            }
            "includefield" => {
                for field in value.split(',').map(str::trim) {
                    if !(field == "all" || is_attribute_id(field)) {
                        return Err(ApiError::bad_request(format!(
                            "includefield {:?}: expected `all`, a keyword or a tag",
                            truncate(field, 64)
                        )));
                    }
                }
            }
            // Accept/charset overrides in the query (PS3.18 8.3.3.1): JSON is all we
            // answer, checked with the header.
            "accept" | "charset" => {}
            other => {
                let key = Key::from_keyword(other).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{:?} is not a matching key this archive supports; keys: {}",
                        truncate(other, 64),
                        supported_keys()
                    ))
                })?;
                if !seen.insert(key) {
                    return Err(ApiError::bad_request(format!("{key} given twice")));
                }
                if let Some(m) = Match::parse(key, &value, ',')? {
                    query.keys.push((key, m));
                }
            }
        }
    }
    Ok(query)
}

fn supported_keys() -> String {
    Key::ALL
        .iter()
        .map(|k| k.keyword())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A DICOM keyword (letters and digits) or tag (8 hex digits).
fn is_attribute_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded; malformed → 400.
pub(crate) fn form_urlencoded(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request("malformed percent-encoding in the query")
                    })?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("the query is not UTF-8"))
}

// ---------------------------------------------------------------------------------------
// DICOM JSON (PS3.18 F.2)

fn put(map: &mut Map<String, Value>, key: Key, vr: &str, value: Option<Value>) {
    let (g, e) = key.tag();
    put_tag(map, g, e, vr, value);
}

fn put_tag(map: &mut Map<String, Value>, g: u16, e: u16, vr: &str, value: Option<Value>) {
    let mut attr = Map::new();
    attr.insert("vr".into(), vr.into());
    if let Some(v) = value {
        attr.insert("Value".into(), Value::Array(vec![v]));
    }
    map.insert(format!("{g:04X}{e:04X}"), Value::Object(attr));
}

fn text(v: &Option<String>) -> Option<Value> {
    v.as_ref()
        .filter(|s| !s.is_empty())
        .map(|s| s.clone().into())
}

/// A PN value as stored (`Alphabetic=Ideographic=Phonetic`) as its JSON object.
pub fn person_name(v: &Option<String>) -> Option<Value> {
    let v = v.as_ref().filter(|s| !s.is_empty())?;
    let mut groups = v.split('=');
    let mut obj = Map::new();
    for name in ["Alphabetic", "Ideographic", "Phonetic"] {
        if let Some(g) = groups.next().filter(|g| !g.is_empty()) {
            obj.insert(name.into(), g.into());
        }
    }
    Some(Value::Object(obj))
}

fn to_json(r: &Row, level: Level) -> Value {
    let mut m = Map::new();
    put_tag(&mut m, 0x0008, 0x0005, "CS", Some("ISO_IR 192".into()));
    put(&mut m, Key::PatientName, "PN", person_name(&r.patient_name));
    put(
        &mut m,
        Key::PatientId,
        "LO",
        Some(r.patient_id.clone().into()),
    );
    put(
        &mut m,
        Key::IssuerOfPatientId,
        "LO",
        text(&r.issuer_of_patient_id),
    );
    put(
        &mut m,
        Key::PatientBirthDate,
        "DA",
        text(&r.patient_birth_date),
    );
    put(&mut m, Key::PatientSex, "CS", text(&r.patient_sex));
    put(
        &mut m,
        Key::StudyInstanceUid,
        "UI",
        Some(r.study_instance_uid.clone().into()),
    );
    put(&mut m, Key::StudyDate, "DA", text(&r.study_date));
    put(&mut m, Key::StudyTime, "TM", text(&r.study_time));
    put(
        &mut m,
        Key::AccessionNumber,
        "SH",
        text(&r.accession_number),
    );
    put(&mut m, Key::StudyId, "SH", text(&r.study_id));
    put(
        &mut m,
        Key::StudyDescription,
        "LO",
        text(&r.study_description),
    );
    put(
        &mut m,
        Key::ReferringPhysicianName,
        "PN",
        person_name(&r.referring_physician_name),
    );
    let mut modalities = Map::new();
    modalities.insert("vr".into(), "CS".into());
    if !r.modalities_in_study.is_empty() {
        modalities.insert("Value".into(), json!(r.modalities_in_study));
    }
    let (g, e) = Key::ModalitiesInStudy.tag();
    m.insert(format!("{g:04X}{e:04X}"), Value::Object(modalities));
    // Computed: NumberOfStudyRelatedSeries / Instances (IS: JSON numbers).
    put_tag(
        &mut m,
        0x0020,
        0x1206,
        "IS",
        Some(r.number_of_study_related_series.into()),
    );
    put_tag(
        &mut m,
        0x0020,
        0x1208,
        "IS",
        Some(r.number_of_study_related_instances.into()),
    );
    put_tag(&mut m, 0x0008, 0x0056, "CS", Some("ONLINE".into()));
    if level != Level::Study {
        put(
            &mut m,
            Key::SeriesInstanceUid,
            "UI",
            text(&r.series_instance_uid),
        );
        put(&mut m, Key::Modality, "CS", text(&r.modality));
        put(
            &mut m,
            Key::SeriesNumber,
            "IS",
            r.series_number.map(Value::from),
        );
        put(
            &mut m,
            Key::SeriesDescription,
            "LO",
            text(&r.series_description),
        );
        put(
            &mut m,
            Key::BodyPartExamined,
            "CS",
            text(&r.body_part_examined),
        );
        put_tag(
            &mut m,
            0x0020,
            0x1209,
            "IS",
            r.number_of_series_related_instances.map(Value::from),
        );
    }
    if level == Level::Instance {
        put(&mut m, Key::SopInstanceUid, "UI", text(&r.sop_instance_uid));
        put(&mut m, Key::SopClassUid, "UI", text(&r.sop_class_uid));
        put(
            &mut m,
            Key::InstanceNumber,
            "IS",
            r.instance_number.map(Value::from),
        );
        put_tag(&mut m, 0x0028, 0x0010, "US", r.rows.map(Value::from));
        put_tag(&mut m, 0x0028, 0x0011, "US", r.columns.map(Value::from));
        put_tag(
            &mut m,
            0x0028,
            0x0008,
            "IS",
            r.number_of_frames.map(Value::from),
        );
        put_tag(&mut m, 0x0008, 0x3002, "UI", text(&r.transfer_syntax_uid));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings() {
        let q = parse_query(
            "PatientName=Wang%5E*&StudyDate=20240101-&limit=5&offset=10&fuzzymatching=true&includefield=all,00081030",
            Level::Study,
        )
        .unwrap();
        assert_eq!(q.limit, 5);
        assert_eq!(q.offset, 10);
        assert!(q.fuzzy);
        assert_eq!(q.keys.len(), 2);
        assert_eq!(
            q.keys[0],
            (Key::PatientName, Match::Wildcard("Wang^*".into()))
        );
        for (bad, why) in [
            ("limit=0", "limit"),
            ("limit=100000", "limit"),
            ("offset=-1", "offset"),
            ("PatientWeight=70", "not a matching key"),
            ("PatientID=1&PatientID=2", "twice"),
            ("StudyDate=2024", "not a valid date"),
            ("PatientName=%ZZ", "percent"),
            ("PatientName=%FF", "UTF-8"),
            ("includefield=%3Cscript%3E", "includefield"),
            ("fuzzymatching=yes", "fuzzymatching"),
        ] {
            let e = parse_query(bad, Level::Study).unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{bad}");
            assert!(e.reason().contains(why), "{bad}: {}", e.reason());
        }
    }

    #[test]
    fn person_names_as_json() {
        assert_eq!(
            person_name(&Some("Wang^XiaoDong=王^小东".into())),
            Some(json!({"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小东"}))
        );
        assert_eq!(
            person_name(&Some("=王^小东".into())),
            Some(json!({"Ideographic": "王^小东"}))
        );
        assert_eq!(person_name(&None), None);
    }
}
