//! STOW-RS (PS3.18 10.5): `POST /dicom-web/studies` and `POST /dicom-web/studies/{study}`
//! with a `multipart/related; type="application/dicom"` body, one Part 10 object per part.
//!
//! Each part goes through the archive's ingest path exactly as a C-STORE does: streamed into
//! a staging file (never held in memory), checked, made durable, indexed, audited (110104,
//! by the uploading user) — so a part is reported stored only once it is durable, and a
//! bad part leaves nothing behind. The objects belong to the uploader's clinic.
//!
//! Who may upload: administrators, township doctors, and service accounts of a clinic
//! (`Capability::Store`). The answer (PS3.18 10.5.3) is a DICOM JSON data set with the
//! Referenced SOP Sequence (stored, or already archived identically), the Failed SOP
//! Sequence with each failure's reason code (0xA700 out of resources, 0xA900 does not
//! match / wrong study, 0xC000 cannot understand, 0x0110 processing failure, 0xB000 for a
//! conflicting copy kept aside, reported as a warning), and the status: 200 all stored,
//! 202 some failed or warned, 409 none stored. A body that is not multipart/related of
//! application/dicom is 415; a malformed or truncated multipart body ends the request
//! with 400 after the parts before it were handled (they are reported).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures::TryStreamExt;
use pacs_store::access::Capability;
use pacs_store::archive::{Channel, Declared, IngestError, IngestOutcome, Source};
use pacs_store::header as dicom_header;
use pacs_store::query::is_uid;
use serde_json::{Map, Value, json};

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

/// The most parts in one request.
const MAX_PARTS: usize = 10_000;
/// Bytes buffered at the start of a part to read its file meta group.
const MAX_HEAD: usize = 64 * 1024;

pub async fn store(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    stow(state, caller, headers, None, body).await
}

pub async fn store_in_study(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(study): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    if !is_uid(&study) {
        return Err(ApiError::bad_request("the study in the path is not a UID"));
    }
    stow(state, caller, headers, Some(study), body).await
}

/// One part's result.
enum PartResult {
    Stored {
        class: String,
        instance: String,
        study: String,
        warning: Option<u16>,
    },
    Failed {
        class: Option<String>,
        instance: Option<String>,
        reason: u16,
        why: String,
    },
}

async fn stow(
    state: ApiState,
    caller: Caller,
    headers: HeaderMap,
    study: Option<String>,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(&state, Capability::Store).await?;
    super::accepts_json(&headers)?;
    let boundary = boundary_of(&headers)?;
    let limit = state.archive.max_object_size();
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().per_field(limit.saturating_add(MAX_HEAD as u64)));
    let mut multipart = multer::Multipart::with_constraints(
        body.into_data_stream().map_err(std::io::Error::other),
        boundary,
        constraints,
    );
    let p = &caller.principal;
    let source = Source {
        clinic_id: p.clinic_id,
        clinic_name: p.clinic_name.clone(),
        ae_title: None,
        uploader: Some((p.username.to_string(), p.role.as_str().to_owned())),
        archive_authored: false,
    };
    let mut results = Vec::new();
    let mut broken = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                broken = Some(format!(
                    "malformed multipart body: {}",
                    multipart_reason(&e)
                ));
                break;
            }
        };
        if results.len() >= MAX_PARTS {
            broken = Some(format!("more than {MAX_PARTS} parts"));
            break;
        }
        match store_part(&state, &caller, &source, study.as_deref(), field).await {
            Ok(r) => results.push(r),
            Err(PartError::Body(why)) => {
                broken = Some(why);
                break;
            }
            Err(PartError::Refused(r)) => results.push(r),
        }
    }
    if results.is_empty() {
        let why = broken.unwrap_or_else(|| "no parts in the multipart body".into());
        let status = if why.contains("larger than") {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        return Err(ApiError::new(status, why));
    }
    let stored = results
        .iter()
        .filter(|r| matches!(r, PartResult::Stored { .. }))
        .count();
    let warned = results.iter().any(|r| {
        matches!(
            r,
            PartResult::Stored {
                warning: Some(_),
                ..
            }
        )
    });
    let status = if stored == 0 {
        StatusCode::CONFLICT
    } else if stored < results.len() || warned || broken.is_some() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    if let Some(why) = &broken {
        tracing::info!(reason = %why, parts = results.len(), "STOW-RS: the request body ended badly");
    }
    let mut body = response_body(&results, study.as_deref());
    if let Some(why) = broken {
        // Said in words (Identifying Comments, 0008,4000): PS3.18 has no code for it.
        body.insert(
            "00084000".into(),
            json!({"vr": "LT", "Value": [format!("request body: {why}")]}),
        );
    }
    let mut res = super::dicom_json(Value::Object(body));
    *res.status_mut() = status;
    Ok(res)
}

enum PartError {
    /// The multipart body itself is broken: stop reading.
    Body(String),
    /// This part was refused; go on with the next.
    Refused(PartResult),
}

async fn store_part(
    state: &ApiState,
    caller: &Caller,
    source: &Source,
    study: Option<&str>,
    mut field: multer::Field<'_>,
) -> Result<PartResult, PartError> {
    let refused = |reason: u16, why: String| {
        PartError::Refused(PartResult::Failed {
            class: None,
            instance: None,
            reason,
            why,
        })
    };
    // Each part must be application/dicom (when it says what it is).
    if let Some(ct) = field
        .content_type()
        .filter(|ct| ct.essence_str() != "application/dicom")
        .map(|ct| ct.essence_str().chars().take(64).collect::<String>())
    {
        // Drain it: the next part starts after it.
        while let Some(_chunk) = field.chunk().await.map_err(body_error)? {}
        return Err(refused(
            0xC000,
            format!("a part of type {ct} is not application/dicom"),
        ));
    }
    // The file meta group first.
    let mut head = Vec::new();
    let meta = loop {
        let Some(chunk) = field.chunk().await.map_err(body_error)? else {
            return Err(refused(
                0xC000,
                "the part ended before its DICOM file meta group".into(),
            ));
        };
        head.extend_from_slice(&chunk);
        match dicom_header::read_file_meta(&mut std::io::Cursor::new(&head)) {
            Ok(meta) => break meta,
            Err(_) if head.len() < MAX_HEAD => continue,
            Err(e) => {
                while let Some(_chunk) = field.chunk().await.map_err(body_error)? {}
                return Err(refused(0xC000, format!("not a DICOM Part 10 object: {e}")));
            }
        }
    };
    let offset = meta.dataset_offset as usize;
    let mut stored_head = head[..offset].to_vec();
    // The preamble is free-form and has carried executables: stored zeroed, as on import.
    stored_head[..128].fill(0);
    let declared = Declared {
        sop_class_uid: meta.media_storage_sop_class_uid.clone(),
        sop_instance_uid: meta.media_storage_sop_instance_uid.clone(),
        transfer_syntax_uid: meta.transfer_syntax_uid.clone(),
        study_instance_uid: study.map(str::to_owned),
    };
    let failed = |reason: u16, why: String| PartResult::Failed {
        class: Some(meta.media_storage_sop_class_uid.clone()),
        instance: Some(meta.media_storage_sop_instance_uid.clone()),
        reason,
        why,
    };
    if !dicom_header::is_valid_uid(&meta.media_storage_sop_instance_uid)
        || !dicom_header::is_valid_uid(&meta.media_storage_sop_class_uid)
    {
        while let Some(_chunk) = field.chunk().await.map_err(body_error)? {}
        return Ok(failed(
            0xC000,
            "the file meta group has an invalid UID".into(),
        ));
    }
    let archive = &state.archive;
    // Staging writes are blocking file I/O, small and buffered: done in place on this
    // worker (as the DICOM adapter does) rather than shipped to the blocking pool.
    let mut staged =
        match tokio::task::block_in_place(|| archive.stage_with_head(&stored_head, declared)) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "STOW-RS: cannot stage an object");
                while let Some(_chunk) = field.chunk().await.map_err(body_error)? {}
                return Ok(failed(0xA700, "the archive cannot take objects now".into()));
            }
        };
    let mut write = |bytes: &[u8]| tokio::task::block_in_place(|| staged.write_dataset(bytes));
    let mut write_error = write(&head[offset..]).err();
    while let Some(chunk) = field.chunk().await.map_err(body_error)? {
        if write_error.is_none() {
            write_error = write(&chunk).err();
        }
    }
    if let Some(e) = write_error {
        tracing::error!(error = %e, "STOW-RS: cannot write a staging file");
        return Ok(failed(0xA700, "the archive cannot take objects now".into()));
    }
    let outcome = archive
        .ingest_via(staged, source, Channel::Web { peer: caller.ip })
        .await;
    Ok(match outcome {
        Ok(IngestOutcome::Stored { study_instance_uid }) => PartResult::Stored {
            class: meta.media_storage_sop_class_uid.clone(),
            instance: meta.media_storage_sop_instance_uid.clone(),
            study: study_instance_uid,
            warning: None,
        },
        Ok(IngestOutcome::Duplicate) => PartResult::Stored {
            class: meta.media_storage_sop_class_uid.clone(),
            instance: meta.media_storage_sop_instance_uid.clone(),
            study: study.unwrap_or_default().to_owned(),
            warning: None,
        },
        Ok(IngestOutcome::ConflictKept { .. }) => PartResult::Stored {
            class: meta.media_storage_sop_class_uid.clone(),
            instance: meta.media_storage_sop_instance_uid.clone(),
            study: study.unwrap_or_default().to_owned(),
            warning: Some(0xB000),
        },
        Err(e) => {
            let reason = match &e {
                e if e.is_out_of_resources() => 0xA700,
                IngestError::DoesNotMatch(_) => 0xA900,
                IngestError::CannotUnderstand(_) => 0xC000,
                _ => 0x0110,
            };
            failed(reason, e.to_string())
        }
    })
}

fn body_error(e: multer::Error) -> PartError {
    PartError::Body(format!(
        "malformed multipart body: {}",
        multipart_reason(&e)
    ))
}

fn multipart_reason(e: &multer::Error) -> String {
    match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            "a part is larger than the largest object the archive accepts".into()
        }
        multer::Error::IncompleteStream => "the body ended before the closing boundary".into(),
        multer::Error::IncompleteFieldData { .. } => "a part ended before its boundary".into(),
        multer::Error::ReadHeaderFailed(_) | multer::Error::IncompleteHeaders => {
            "unreadable part headers".into()
        }
        multer::Error::StreamReadFailed(_) => "the body could not be read".into(),
        _ => "unreadable".into(),
    }
}

/// The boundary of a `multipart/related; type="application/dicom"` body, or 415.
fn boundary_of(headers: &HeaderMap) -> Result<String, ApiError> {
    let unsupported = |why: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{why}: send multipart/related; type=\"application/dicom\"; boundary=… with one \
                 DICOM Part 10 object per part"
            ),
        )
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unsupported("no Content-Type"))?;
    let mut params = ct.split(';').map(str::trim);
    if !params
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("multipart/related"))
    {
        return Err(unsupported("the body is not multipart/related"));
    }
    let mut boundary = None;
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "type" if !v.eq_ignore_ascii_case("application/dicom") => {
                return Err(unsupported(&format!(
                    "parts of type {} are not accepted (metadata and bulk data uploads are not supported)",
                    &v[..v.len().min(64)]
                )));
            }
            "boundary" => boundary = Some(v.to_owned()),
            _ => {}
        }
    }
    match boundary {
        Some(b) if !b.is_empty() && b.len() <= 70 => Ok(b),
        _ => Err(ApiError::bad_request(
            "the multipart boundary is missing or longer than 70 characters",
        )),
    }
}

fn response_body(results: &[PartResult], study: Option<&str>) -> Map<String, Value> {
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    let mut study_uid = study.map(str::to_owned);
    for r in results {
        match r {
            PartResult::Stored {
                class,
                instance,
                study,
                warning,
            } => {
                if study_uid.is_none() && !study.is_empty() {
                    study_uid = Some(study.clone());
                }
                let mut item = Map::new();
                item.insert("00081150".into(), json!({"vr": "UI", "Value": [class]}));
                item.insert("00081155".into(), json!({"vr": "UI", "Value": [instance]}));
                if !study.is_empty() {
                    item.insert(
                        "00081190".into(),
                        json!({"vr": "UR", "Value": [format!("/dicom-web/studies/{study}")]}),
                    );
                }
                if let Some(w) = warning {
                    item.insert("00081196".into(), json!({"vr": "US", "Value": [w]}));
                }
                referenced.push(Value::Object(item));
            }
            PartResult::Failed {
                class,
                instance,
                reason,
                why,
            } => {
                let mut item = Map::new();
                if let Some(c) = class {
                    item.insert("00081150".into(), json!({"vr": "UI", "Value": [c]}));
                }
                if let Some(i) = instance {
                    item.insert("00081155".into(), json!({"vr": "UI", "Value": [i]}));
                }
                item.insert("00081197".into(), json!({"vr": "US", "Value": [reason]}));
                // The reason in words too, as a Text Value (0040,A160): PS3.18 has only the
                // code, and clients that do not know the element ignore it.
                item.insert("0040A160".into(), json!({"vr": "UT", "Value": [why]}));
                failed.push(Value::Object(item));
            }
        }
    }
    let mut body = Map::new();
    if let Some(s) = study_uid {
        body.insert(
            "00081190".into(),
            json!({"vr": "UR", "Value": [format!("/dicom-web/studies/{s}")]}),
        );
    }
    if !referenced.is_empty() {
        body.insert("00081199".into(), json!({"vr": "SQ", "Value": referenced}));
    }
    if !failed.is_empty() {
        body.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
    }
    body
}
