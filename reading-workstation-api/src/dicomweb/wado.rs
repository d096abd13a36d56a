//! WADO-RS retrieve (PS3.18 10.4): `GET /dicom-web/studies/{study}`,
//! `/studies/{study}/series/{series}`, `/studies/{study}/series/{series}/instances/{instance}`
//! as `multipart/related; type="application/dicom"`, streamed object by object (a 500-slice
//! series is never held in memory).
//!
//! Transfer syntax, from the `Accept` header's `transfer-syntax` parameter:
//! - `*`: each instance exactly as stored — the bytes the modality sent;
//! - absent: Explicit VR Little Endian, PS3.18's default; a UID: that syntax. An instance
//!   stored in it is sent as stored; for Explicit VR Little Endian, one stored in another
//!   uncompressed syntax (implicit VR, big endian, deflate) is re-encoded and a compressed
//!   one is decoded (`render::decompress_to_explicit_le`, with the rendering's checks). Any
//!   other syntax is 406 naming the stored one and what to ask for. A part that cannot be
//!   decoded ends the stream (logged): it was already promised in the answer's head.
//!
//! Objects of up to [`READ_WHOLE_MAX`] are read whole, each in one blocking read, and up to
//! [`READ_AHEAD`] parts are prepared ahead of the one being sent, so that reading the next
//! object overlaps sending this one; larger objects are streamed in chunks when their turn
//! comes (never held whole, never ahead).
//!
//! Nothing outside the caller's scope is sent, and an empty result is 404 "no such study"
//! whether it does not exist or is not the caller's. Each retrieve is audited before the
//! first byte leaves (110104 DICOM Instances Transferred, action R, with the instances).

use std::io::Cursor;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use pacs_store::audit::{Action, EventId, Outcome};
use pacs_store::objects::{ObjectKey, ObjectStore};
use pacs_store::query::{Retrievable, is_uid};

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
/// The largest object transcoded in memory.
const MAX_TRANSCODE_BYTES: i64 = 512 * 1024 * 1024;
/// Objects up to this size are read whole, in one blocking read (a chunked read costs a
/// trip to the blocking pool per chunk, which dominated a 500-slice retrieve), and may be
/// read ahead.
pub const READ_WHOLE_MAX: i64 = 8 * 1024 * 1024;
/// Parts prepared ahead of the one being sent: at most this many small objects in memory
/// per retrieve (4 × 8 MiB at worst).
pub const READ_AHEAD: usize = 4;

/// Which transfer syntax the client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    AsStored,
    Syntax(String),
}

pub async fn study(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(study): Path<String>,
) -> Result<Response, ApiError> {
    retrieve(&state, &caller, &headers, &study, None, None).await
}

pub async fn series(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    retrieve(&state, &caller, &headers, &study, Some(&series), None).await
}

pub async fn instance(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series, instance)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    retrieve(
        &state,
        &caller,
        &headers,
        &study,
        Some(&series),
        Some(&instance),
    )
    .await
}

async fn retrieve(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    study: &str,
    series: Option<&str>,
    instance: Option<&str>,
) -> Result<Response, ApiError> {
    for uid in std::iter::once(study).chain(series).chain(instance) {
        if !is_uid(uid) {
            return Err(ApiError::bad_request(format!(
                "{:?} is not a UID",
                short(uid)
            )));
        }
    }
    let wanted = negotiate(headers)?;
    let items = state
        .archive
        .index()
        .retrievable(caller.scope(), study, series, instance)
        .await?;
    let what = match (series, instance) {
        (_, Some(_)) => "instance",
        (Some(_), None) => "series",
        _ => "study",
    };
    if items.is_empty() {
        let event = caller
            .event(EventId::InstancesTransferred, Action::Read)
            .with_study(Some(study.to_owned()))
            .with_outcome(
                Outcome::MinorFailure,
                format!("WADO-RS: no such {what}, or not permitted"),
            );
        caller.audit_read(state, event).await?;
        return Err(ApiError::not_found(format!("no such {what}")));
    }
    // Decide every part's syntax before anything is sent.
    let mut plan = Vec::with_capacity(items.len());
    for item in items {
        let send_as = match &wanted {
            Wanted::AsStored => Send::AsStored,
            Wanted::Syntax(ts) if *ts == item.transfer_syntax_uid => Send::AsStored,
            Wanted::Syntax(ts)
                if ts == EXPLICIT_VR_LE
                    && is_native(&item.transfer_syntax_uid)
                    && item.size_bytes <= MAX_TRANSCODE_BYTES =>
            {
                Send::ExplicitLittleEndian
            }
            Wanted::Syntax(ts)
                if ts == EXPLICIT_VR_LE && item.size_bytes <= MAX_TRANSCODE_BYTES =>
            {
                // Compressed: decoded (render::decompress_to_explicit_le).
                Send::Decompressed
            }
            Wanted::Syntax(ts) => {
                return Err(ApiError::new(
                    StatusCode::NOT_ACCEPTABLE,
                    format!(
                        "instance {} is stored as {} and cannot be sent as {ts}: ask for \
                         transfer-syntax=* (as stored), transfer-syntax={} or {EXPLICIT_VR_LE}",
                        item.sop_instance_uid, item.transfer_syntax_uid, item.transfer_syntax_uid
                    ),
                ));
            }
        };
        plan.push((item, send_as));
    }
    let first = &plan[0].0;
    let event = caller
        .event(EventId::InstancesTransferred, Action::Read)
        .with_patient(
            Some(first.patient_id.clone()),
            first.issuer_of_patient_id.clone(),
        )
        .with_study(Some(study.to_owned()))
        .with_instances(
            plan.iter()
                .map(|(i, _)| i.sop_instance_uid.clone())
                .collect(),
        )
        .with_detail(format!(
            "WADO-RS retrieve {what}, {}",
            match &wanted {
                Wanted::AsStored => "as stored".to_owned(),
                Wanted::Syntax(ts) => format!("transfer syntax {ts}"),
            }
        ));
    caller.audit_read(state, event).await?;

    let boundary = format!("pacs-{}", uuid::Uuid::new_v4().simple());
    let content_type =
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}");
    let objects = state.archive.objects().clone();
    let closing = Bytes::from(format!("--{boundary}--\r\n"));
    let parts = stream::iter(plan)
        .map(move |(item, send_as)| {
            let objects = objects.clone();
            let boundary = boundary.clone();
            async move {
                if item.size_bytes <= READ_WHOLE_MAX {
                    // Prepared now, possibly ahead of its turn.
                    part(objects, boundary, item, send_as).await
                } else {
                    // Prepared when its turn comes: a large object is never read ahead.
                    let lazy = stream::once(part(objects, boundary, item, send_as)).try_flatten();
                    Ok(lazy.boxed())
                }
            }
        })
        .buffered(READ_AHEAD);
    let body = parts
        .try_flatten()
        .chain(stream::once(async move { Ok(closing) }))
        .inspect_err(|e| tracing::error!(error = %e, "WADO-RS: a retrieve stopped halfway"));
    let mut res = Response::new(Body::from_stream(body));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .map_err(|e| ApiError::internal("WADO-RS content type", &e))?,
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res.into_response())
}

type PartStream = stream::BoxStream<'static, std::io::Result<Bytes>>;

/// One part of the multipart answer: its head, the object (as stored, re-encoded or
/// decoded), and the line break before the next delimiter.
async fn part(
    objects: Arc<dyn ObjectStore>,
    boundary: String,
    item: Retrievable,
    send_as: Send,
) -> std::io::Result<PartStream> {
    let ts = match send_as {
        Send::AsStored => item.transfer_syntax_uid.clone(),
        Send::ExplicitLittleEndian | Send::Decompressed => EXPLICIT_VR_LE.to_owned(),
    };
    let head = Bytes::from(format!(
        "--{boundary}\r\nContent-Type: application/dicom; transfer-syntax={ts}\r\n\
         Content-Location: /dicom-web/studies/{}/series/{}/instances/{}\r\n\r\n",
        item.study_instance_uid, item.series_instance_uid, item.sop_instance_uid
    ));
    let key = ObjectKey::parse(&item.object_key).map_err(io_error)?;
    let body: PartStream = match send_as {
        Send::AsStored if item.size_bytes <= READ_WHOLE_MAX => {
            let whole = objects.get(&key).await.map_err(io_error)?;
            stream::once(async move { Ok(whole) }).boxed()
        }
        Send::AsStored => objects
            .get_stream(&key)
            .await
            .map_err(io_error)?
            .map_err(io_error)
            .boxed(),
        Send::ExplicitLittleEndian => {
            let whole = objects.get(&key).await.map_err(io_error)?;
            let out = tokio::task::spawn_blocking(move || to_explicit_le(&whole))
                .await
                .map_err(io_error)??;
            stream::once(async move { Ok(Bytes::from(out)) }).boxed()
        }
        Send::Decompressed => {
            let whole = objects.get(&key).await.map_err(io_error)?;
            let sop = item.sop_instance_uid.clone();
            let out = tokio::task::spawn_blocking(move || {
                crate::render::decompress_to_explicit_le(&whole)
            })
            .await
            .map_err(io_error)?
            .map_err(|e| {
                tracing::warn!(%sop, error = %e, "WADO-RS: cannot decompress an instance");
                io_error(e)
            })?;
            stream::once(async move { Ok(Bytes::from(out)) }).boxed()
        }
    };
    let tail = stream::once(async { Ok(Bytes::from_static(b"\r\n")) });
    Ok(stream::once(async move { Ok(head) })
        .chain(body)
        .chain(tail)
        .boxed())
}

#[derive(Debug, Clone, Copy)]
enum Send {
    AsStored,
    /// Uncompressed in another syntax: re-encoded.
    ExplicitLittleEndian,
    /// Compressed: pixel data decoded, then re-encoded.
    Decompressed,
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn short(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// An uncompressed syntax whose data set can be re-encoded without touching pixel data.
pub fn is_native(ts: &str) -> bool {
    matches!(
        ts,
        IMPLICIT_VR_LE | EXPLICIT_VR_LE | EXPLICIT_VR_BE | DEFLATED_EXPLICIT_VR_LE
    )
}

/// The Part 10 object re-encoded in Explicit VR Little Endian.
pub(crate) fn to_explicit_le(part10: &[u8]) -> std::io::Result<Vec<u8>> {
    use dicom_object::OpenFileOptions;
    use dicom_object::file::ReadPreamble;
    let body = part10
        .get(128..)
        .filter(|b| b.starts_with(b"DICM"))
        .unwrap_or(part10);
    let mut obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(Cursor::new(body))
        .map_err(io_error)?;
    obj.update_meta(|m| {
        m.set_transfer_syntax(
            &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
    });
    let mut out = Vec::with_capacity(part10.len() + 256);
    obj.write_all(&mut out).map_err(io_error)?;
    Ok(out)
}

/// The transfer syntax asked for in `Accept`, or 406.
pub fn negotiate(headers: &HeaderMap) -> Result<Wanted, ApiError> {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return Ok(Wanted::Syntax(EXPLICIT_VR_LE.into()));
    }
    for range in values.iter().flat_map(|v| v.split(',')) {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut ty = None;
        let mut ts = None;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "type" => ty = Some(v.to_ascii_lowercase()),
                    "transfer-syntax" => ts = Some(v.to_owned()),
                    _ => {}
                }
            }
        }
        let ok = match media.as_str() {
            "multipart/related" => ty.as_deref().is_none_or(|t| t == "application/dicom"),
            "*/*" | "multipart/*" => true,
            _ => false,
        };
        if !ok {
            continue;
        }
        return match ts.as_deref() {
            None => Ok(Wanted::Syntax(EXPLICIT_VR_LE.into())),
            Some("*") => Ok(Wanted::AsStored),
            Some(uid) if is_uid(uid) => Ok(Wanted::Syntax(uid.to_owned())),
            Some(_) => Err(ApiError::bad_request(
                "transfer-syntax must be * or a transfer syntax UID",
            )),
        };
    }
    Err(ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "instances are sent as multipart/related; type=\"application/dicom\" \
         (add transfer-syntax=* to get them as stored)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Result<Wanted, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        negotiate(&h)
    }

    #[test]
    fn accept_headers() {
        assert_eq!(
            negotiate(&HeaderMap::new()).unwrap(),
            Wanted::Syntax(EXPLICIT_VR_LE.into())
        );
        assert_eq!(
            accept("multipart/related; type=\"application/dicom\"; transfer-syntax=*").unwrap(),
            Wanted::AsStored
        );
        assert_eq!(
            accept(
                "multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50"
            )
            .unwrap(),
            Wanted::Syntax("1.2.840.10008.1.2.4.50".into())
        );
        assert_eq!(
            accept("*/*").unwrap(),
            Wanted::Syntax(EXPLICIT_VR_LE.into())
        );
        assert_eq!(
            accept(
                "application/json, multipart/related; type=\"application/dicom\"; transfer-syntax=*"
            )
            .unwrap(),
            Wanted::AsStored
        );
        for bad in [
            "application/json",
            "image/png",
            "multipart/related; type=\"image/jpeg\"",
        ] {
            assert_eq!(
                accept(bad).unwrap_err().status(),
                StatusCode::NOT_ACCEPTABLE,
                "{bad}"
            );
        }
        assert_eq!(
            accept("multipart/related; type=\"application/dicom\"; transfer-syntax=abc")
                .unwrap_err()
                .status(),
            StatusCode::BAD_REQUEST
        );
    }
}
