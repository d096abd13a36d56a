//! WADO-RS frames, series pixel data and bulk data (PS3.18 10.4.1.1.3–10.4.1.1.5):
//! `GET /dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{list}` and
//! `…/instances/{instance}/bulkdata/{tag}`.
//!
//! **Frames** (`1,2,3`: 1-based, comma-separated, no duplicates, at most
//! [`MAX_FRAMES_PER_REQUEST`]; a malformed list is 400, a frame the instance does not have
//! 404), one part each, in the order asked:
//! - uncompressed pixel data: the frame's bytes, `application/octet-stream;
//!   transfer-syntax=1.2.840.10008.1.2.1` (little endian: big endian data is swapped);
//! - compressed pixel data: the frame's bitstream as stored, in its media type with its
//!   transfer syntax — `image/jpeg` (JPEG baseline, extended, lossless), `image/jls`,
//!   `image/jp2` (JPEG 2000), `image/jpx` (JPEG 2000 Part 2), `image/jphc` (HTJ2K),
//!   `image/jxl`, `image/dicom-rle` (RLE Lossless), per PS3.18 8.7.3.5 and Table 8.7.3-5 —
//!   when the `Accept` allows it: `transfer-syntax=*` (what Cornerstone's WADO-RS loader
//!   sends: `multipart/related; type=application/octet-stream; transfer-syntax=*`), that
//!   media type (with or without the syntax), or `image/*`. Asking only for uncompressed
//!   frames of a compressed instance (`application/octet-stream` with no syntax or Explicit
//!   VR Little Endian, or no `Accept`) gets them decoded by `crate::render::
//!   decode_frame_native` (the rendering's checks first; RLE with YBR colour: 501). Video
//!   syntaxes (MPEG-2/4, HEVC) have no separate frames: 406.
//!
//! Every part carries `Content-Type: <type>; transfer-syntax=<uid>` (a client needs the
//! syntax: `image/jpeg` alone would say baseline for a lossless frame) and a
//! `Content-Location`. With a single-part `Accept` (`application/octet-stream`, `image/jls`…)
//! one frame is answered as a single-part body.
//!
//! **Series pixel data** (`…/series/{series}/pixeldata`, [`series_pixeldata`]): every
//! frame of every instance of the series in one multipart answer, parts as above.
//!
//! **Bulk data** of a top-level attribute whose metadata has a `BulkDataURI`: one part,
//! `application/octet-stream`, the value in little endian, streamed. Pixel Data: the whole
//! native pixel data likewise; compressed Pixel Data is all its frames, as for
//! `/frames/1,…,n`. Attributes inside sequences have no bulk data route (their values are in
//! the metadata, up to 64 KiB).
//!
//! A `Range` header is ignored: the whole resource is answered (200), which RFC 9110 allows.
//! Nothing outside the caller's scope ("no such instance", 404, either way); each request is
//! audited before the first byte (110104 DICOM Instances Transferred, action R).

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{StreamExt, TryFutureExt, TryStreamExt, stream};
use pacs_store::StoreError;
use pacs_store::archive::Archive;
use pacs_store::audit::{Action, EventId, Outcome};
use pacs_store::metadata::InstanceMetadata;
use pacs_store::metadata::frames::{FramePlan, PIXEL_DATA};
use pacs_store::query::is_uid;

use super::wado::EXPLICIT_VR_LE;
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Most frames one request may list.
pub const MAX_FRAMES_PER_REQUEST: usize = 1000;
const OCTET_STREAM: &str = "application/octet-stream";
const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const ENCAPSULATED_UNCOMPRESSED: &str = "1.2.840.10008.1.2.1.98";

/// 400 unless every path UID is a UID.
pub fn check_uids(
    study: &str,
    series: Option<&str>,
    instance: Option<&str>,
) -> Result<(), ApiError> {
    for uid in std::iter::once(study).chain(series).chain(instance) {
        if !is_uid(uid) {
            return Err(ApiError::bad_request(format!(
                "{:?} is not a UID",
                short(uid)
            )));
        }
    }
    Ok(())
}

fn short(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The media type of frames in a compressed transfer syntax (PS3.18 Table 8.7.3-5).
pub fn media_type_of(ts: &str) -> &'static str {
    let Some(rest) = ts.strip_prefix("1.2.840.10008.1.2.") else {
        return OCTET_STREAM;
    };
    match rest {
        "4.50" | "4.51" | "4.52" | "4.53" | "4.54" | "4.55" | "4.56" | "4.57" | "4.58" | "4.59"
        | "4.60" | "4.61" | "4.62" | "4.63" | "4.64" | "4.65" | "4.66" | "4.70" => "image/jpeg",
        "4.80" | "4.81" => "image/jls",
        "4.90" | "4.91" => "image/jp2",
        "4.92" | "4.93" => "image/jpx",
        "4.201" | "4.202" | "4.203" => "image/jphc",
        "4.110" | "4.111" | "4.112" => "image/jxl",
        "5" => "image/dicom-rle",
        "4.100" | "4.101" => "video/mpeg",
        "4.102" | "4.103" | "4.104" | "4.105" | "4.106" => "video/mp4",
        "4.107" | "4.108" => "video/H265",
        _ => OCTET_STREAM,
    }
}

/// One media range of the `Accept` header, as far as frames and bulk data care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The parts' media type (`type=` of a multipart range, or a single-part type), lower
    /// case; `*/*` for anything.
    pub media: String,
    /// `transfer-syntax`, if given.
    pub transfer_syntax: Option<String>,
    /// A single-part media type (not `multipart/related`).
    pub single: bool,
}

/// The media ranges of `Accept`, in order (q=0 ones left out). No header: PS3.18's default,
/// `multipart/related; type="application/octet-stream"`.
pub fn accepted(headers: &HeaderMap) -> Result<Vec<Accepted>, ApiError> {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return Ok(vec![Accepted {
            media: OCTET_STREAM.into(),
            transfer_syntax: None,
            single: false,
        }]);
    }
    let mut out = Vec::new();
    for range in values.iter().flat_map(|v| v.split(',')) {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        if media.is_empty() {
            continue;
        }
        let mut ty = None;
        let mut ts = None;
        let mut q_zero = false;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "type" => ty = Some(v.to_ascii_lowercase()),
                    "transfer-syntax" => {
                        if v != "*" && !is_uid(v) {
                            return Err(ApiError::bad_request(
                                "transfer-syntax must be * or a transfer syntax UID",
                            ));
                        }
                        ts = Some(v.to_owned());
                    }
                    "q" => q_zero = v.parse::<f32>().is_ok_and(|q| q <= 0.0),
                    _ => {}
                }
            }
        }
        if q_zero {
            continue;
        }
        let (media, single) = match media.as_str() {
            "multipart/related" => (ty.unwrap_or_else(|| OCTET_STREAM.into()), false),
            "multipart/*" | "*/*" => ("*/*".to_owned(), false),
            _ => (media, true),
        };
        out.push(Accepted {
            media,
            transfer_syntax: ts,
            single,
        });
    }
    Ok(out)
}

/// How the frames of one instance are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Representation {
    pub media: &'static str,
    pub transfer_syntax: String,
    pub single: bool,
    /// Compressed frames decoded to uncompressed bytes (the client accepts nothing else).
    pub decode: bool,
}

/// The first acceptable representation of frames stored in `stored_ts` (`compressed`: an
/// encapsulated bitstream), for `count` frames; 406 with what to ask for otherwise.
pub fn choose(
    accepted: &[Accepted],
    stored_ts: &str,
    compressed: bool,
    count: usize,
) -> Result<Representation, ApiError> {
    let (media, ts) = if compressed {
        (media_type_of(stored_ts), stored_ts)
    } else {
        (OCTET_STREAM, EXPLICIT_VR_LE)
    };
    if media.starts_with("video/") {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "the instance is a video ({stored_ts}), which has no separate frames: \
                 retrieve the instance instead"
            ),
        ));
    }
    let family = media.split('/').next().unwrap_or("");
    for a in accepted {
        if a.single && count != 1 {
            continue;
        }
        let asked_ts = a.transfer_syntax.as_deref();
        let ok = if compressed {
            let any_ts = asked_ts.is_none_or(|t| t == "*" || t == ts);
            let named = asked_ts.is_some_and(|t| t == "*" || t == ts);
            // Its media type (or image/*) with any or its syntax; anything with `*` or
            // its syntax named.
            let its_type = a.media == media || a.media == format!("{family}/*");
            let anything =
                a.media == OCTET_STREAM || a.media == "*/*" || a.media == "application/*";
            (its_type && any_ts) || (anything && named)
        } else {
            (a.media == OCTET_STREAM || a.media == "*/*" || a.media == "application/*")
                && asked_ts.is_none_or(|t| t == "*" || t == EXPLICIT_VR_LE || t == IMPLICIT_VR_LE)
        };
        if ok {
            return Ok(Representation {
                media,
                transfer_syntax: ts.to_owned(),
                single: a.single,
                decode: false,
            });
        }
    }
    // Compressed, but the client takes uncompressed octet-stream only: decoded frames.
    if compressed {
        let wants_native = |a: &&Accepted| {
            (a.media == OCTET_STREAM || a.media == "*/*" || a.media == "application/*")
                && a.transfer_syntax
                    .as_deref()
                    .is_none_or(|t| t == EXPLICIT_VR_LE || t == IMPLICIT_VR_LE)
                && !(a.single && count != 1)
        };
        if let Some(a) = accepted.iter().find(wants_native) {
            return Ok(Representation {
                media: OCTET_STREAM,
                transfer_syntax: EXPLICIT_VR_LE.to_owned(),
                single: a.single,
                decode: true,
            });
        }
    }
    let more = if count != 1 && accepted.iter().all(|a| a.single) {
        " (more than one frame needs multipart/related)"
    } else {
        ""
    };
    Err(ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        if compressed {
            format!(
                "the pixel data is stored compressed as {stored_ts} and this archive does not \
                 decompress it: ask for multipart/related; type=\"{media}\" or \
                 multipart/related; type=\"application/octet-stream\"; transfer-syntax=*{more}"
            )
        } else {
            format!(
                "the pixel data is uncompressed: it is sent as multipart/related; \
                 type=\"application/octet-stream\" (transfer syntax {EXPLICIT_VR_LE}){more}"
            )
        },
    ))
}

/// A frame list (`1,2,3`) as numbers, or 400 with the reason.
pub fn parse_frame_list(list: &str) -> Result<Vec<u32>, ApiError> {
    if list.len() > 16 * 1024 {
        return Err(ApiError::bad_request("frame list too long"));
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for item in list.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(ApiError::bad_request(
                "empty frame number in the list: give frame numbers separated by commas, as in 1,2,3",
            ));
        }
        let n: u32 = match item.parse() {
            Ok(n) if item.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "{:?} is not a frame number (frames are numbered from 1)",
                    short(item)
                )));
            }
        };
        if n == 0 {
            return Err(ApiError::bad_request("frame numbers start at 1"));
        }
        if !seen.insert(n) {
            return Err(ApiError::bad_request(format!("frame {n} is listed twice")));
        }
        out.push(n);
        if out.len() > MAX_FRAMES_PER_REQUEST {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_FRAMES_PER_REQUEST} frames per request"
            )));
        }
    }
    Ok(out)
}

/// Store errors of frame reading: `Unsupported` is 501 with its reason.
fn frame_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Unsupported(why) => ApiError::new(StatusCode::NOT_IMPLEMENTED, why),
        other => other.into(),
    }
}

/// 500 for an instance whose stored object cannot be read (`what`: which one).
fn unreadable(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "the stored object of {what} cannot be read (the error is in the server's log); \
             ask an administrator to run pacs check"
        ),
    )
}

/// The instance within the caller's scope, or 404 (audited as a failed transfer).
async fn one_instance(
    state: &ApiState,
    caller: &Caller,
    study: &str,
    series: &str,
    instance: &str,
    what: &str,
) -> Result<InstanceMetadata, ApiError> {
    let mut items = state
        .archive
        .metadata(caller.scope(), study, Some(series), Some(instance))
        .await?;
    match items.pop() {
        Some(item) if item.unreadable => Err(unreadable("this instance")),
        Some(item) => Ok(item),
        None => {
            let event = caller
                .event(EventId::InstancesTransferred, Action::Read)
                .with_study(Some(study.to_owned()))
                .with_outcome(
                    Outcome::MinorFailure,
                    format!("WADO-RS {what}: no such instance, or not permitted"),
                );
            caller.audit_read(state, event).await?;
            Err(ApiError::not_found("no such instance"))
        }
    }
}

async fn audit_transfer(
    state: &ApiState,
    caller: &Caller,
    inst: &InstanceMetadata,
    detail: String,
) -> Result<(), ApiError> {
    let event = caller
        .event(EventId::InstancesTransferred, Action::Read)
        .with_patient(
            Some(inst.item.patient_id.clone()),
            inst.item.issuer_of_patient_id.clone(),
        )
        .with_study(Some(inst.item.study_instance_uid.clone()))
        .with_instances(vec![inst.item.sop_instance_uid.clone()])
        .with_detail(detail);
    caller.audit_read(state, event).await
}

pub async fn frames(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    check_uids(&study, Some(&series), Some(&instance))?;
    let numbers = parse_frame_list(&list)?;
    let accepted = accepted(&headers)?;
    let inst = one_instance(&state, &caller, &study, &series, &instance, "frames").await?;
    send_frames(&state, &caller, &accepted, inst, numbers, "frames").await
}

/// Frames `numbers` of `inst` (checked against its frame count), as negotiated.
async fn send_frames(
    state: &ApiState,
    caller: &Caller,
    accepted: &[Accepted],
    inst: InstanceMetadata,
    numbers: Vec<u32>,
    what: &str,
) -> Result<Response, ApiError> {
    let Some(px) = inst.layout.pixel.as_ref() else {
        return Err(ApiError::not_found(format!(
            "instance {} has no pixel data (SOP class {}), so no frames",
            inst.item.sop_instance_uid, inst.item.sop_class_uid
        )));
    };
    let count = px.number_of_frames.max(1);
    if let Some(n) = numbers.iter().find(|n| **n > count) {
        return Err(ApiError::not_found(format!(
            "frame {n} does not exist: the instance has {count} frame{}",
            if count == 1 { "" } else { "s" }
        )));
    }
    let stored = inst.item.transfer_syntax_uid.as_str();
    let compressed = px.length.is_none() && stored != ENCAPSULATED_UNCOMPRESSED;
    let rep = choose(accepted, stored, compressed, numbers.len())?;
    if rep.decode {
        return send_decoded(state, caller, &rep, inst, numbers, what).await;
    }
    let plan = state.archive.frame_plan(&inst).await.map_err(frame_error)?;
    audit_transfer(
        state,
        caller,
        &inst,
        format!(
            "WADO-RS {what} {} as {}; transfer-syntax={}",
            list_text(&numbers),
            rep.media,
            rep.transfer_syntax
        ),
    )
    .await?;

    let part_type = format!("{}; transfer-syntax={}", rep.media, rep.transfer_syntax);
    let uri = inst.uri();
    if rep.single {
        let bytes = state
            .archive
            .read_frame(&plan, numbers[0])
            .await
            .map_err(frame_error)?;
        return Ok(single_part(&part_type, bytes));
    }
    let archive = state.archive.clone();
    let plan = Arc::new(plan);
    let frames = stream::iter(numbers)
        .then(move |n| frame_part(archive.clone(), plan.clone(), uri.clone(), n));
    multipart(rep.media, &part_type, frames.boxed())
}

/// Frame `n` of the instance at `uri` (its `plan`) as a multipart part: its location and
/// bytes.
async fn frame_part(
    archive: Archive,
    plan: Arc<FramePlan>,
    uri: String,
    n: u32,
) -> std::io::Result<(String, Bytes)> {
    let bytes = archive
        .read_frame(&plan, n)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok((format!("{uri}/frames/{n}"), bytes))
}

/// Compressed frames decoded (`crate::render::decode_frame_native`, with the rendering's
/// checks) for a client that accepts uncompressed frames only.
async fn send_decoded(
    state: &ApiState,
    caller: &Caller,
    rep: &Representation,
    inst: InstanceMetadata,
    numbers: Vec<u32>,
    what: &str,
) -> Result<Response, ApiError> {
    audit_transfer(
        state,
        caller,
        &inst,
        format!(
            "WADO-RS {what} {} decoded to {}; transfer-syntax={}",
            list_text(&numbers),
            rep.media,
            rep.transfer_syntax
        ),
    )
    .await?;
    let key = pacs_store::objects::ObjectKey::parse(&inst.item.object_key)?;
    let object = state.archive.objects().get(&key).await?;
    let wanted = numbers.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        wanted
            .iter()
            .map(|n| crate::render::decode_frame_native(&object, *n))
            .collect::<Result<Vec<Vec<u8>>, _>>()
    })
    .await
    .map_err(|e| ApiError::internal("frame decoding task", &e))??;
    let part_type = format!("{}; transfer-syntax={}", rep.media, rep.transfer_syntax);
    if rep.single {
        let bytes = decoded.into_iter().next().unwrap_or_default();
        return Ok(single_part(&part_type, bytes::Bytes::from(bytes)));
    }
    let uri = inst.uri();
    let parts = numbers.into_iter().zip(decoded).map(move |(n, bytes)| {
        Ok::<_, std::io::Error>((format!("{uri}/frames/{n}"), bytes::Bytes::from(bytes)))
    });
    multipart(rep.media, &part_type, stream::iter(parts).boxed())
}

/// Frames read ahead of the one being sent, in a series' pixel data.
const PIXELDATA_READ_AHEAD: usize = 4;

/// `GET /dicom-web/studies/{study}/series/{series}/pixeldata` (PS3.18 10.4.1.1.5, Series
/// Pixel Data): every frame of every instance of the series, in the series' order (series
/// number, instance number), one part each, as [`frames`] would answer them one by one
/// (`Content-Location` is the frame's URI). One request instead of one per frame: a viewer
/// loading a 500-slice CT sends 1 request, not 500. Multipart only; frames that would need
/// decoding (compressed instances, a client that takes uncompressed data only) are not
/// offered here (406, saying to ask for them frame by frame). Instances without pixel data
/// are left out.
pub async fn series_pixeldata(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_uids(&study, Some(&series), None)?;
    let accepted = accepted(&headers)?;
    let items = state
        .archive
        .metadata(caller.scope(), &study, Some(&series), None)
        .await?;
    if items.is_empty() {
        let event = caller
            .event(EventId::InstancesTransferred, Action::Read)
            .with_study(Some(study.clone()))
            .with_outcome(
                Outcome::MinorFailure,
                "WADO-RS series pixel data: no such series, or not permitted".to_owned(),
            );
        caller.audit_read(&state, event).await?;
        return Err(ApiError::not_found("no such series"));
    }
    let mut plans = Vec::new();
    let mut sops = Vec::new();
    let mut media = None;
    let mut frame_count = 0usize;
    for inst in &items {
        if inst.unreadable {
            return Err(unreadable(&format!(
                "instance {}",
                inst.item.sop_instance_uid
            )));
        }
        let Some(px) = inst.layout.pixel.as_ref() else {
            continue;
        };
        let stored = inst.item.transfer_syntax_uid.as_str();
        let compressed = px.length.is_none() && stored != ENCAPSULATED_UNCOMPRESSED;
        // Several parts whatever the count: a single-part `Accept` does not fit.
        let rep = choose(&accepted, stored, compressed, 2)?;
        if rep.decode {
            return Err(ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "instance {} is stored compressed ({stored}) and the Accept header takes \
                     uncompressed frames only, which are decoded frame by frame: ask for its \
                     frames (…/instances/{{instance}}/frames/{{list}}), or accept \
                     transfer-syntax=*",
                    inst.item.sop_instance_uid
                ),
            ));
        }
        let plan = state.archive.frame_plan(inst).await.map_err(frame_error)?;
        let count = px.number_of_frames.max(1);
        frame_count += count as usize;
        media.get_or_insert(rep.media);
        let part_type: Arc<str> =
            format!("{}; transfer-syntax={}", rep.media, rep.transfer_syntax).into();
        plans.push((Arc::new(plan), part_type, inst.uri(), count));
        sops.push(inst.item.sop_instance_uid.clone());
    }
    let Some(media) = media else {
        return Err(ApiError::not_found(format!(
            "series {series} has no instance with pixel data"
        )));
    };
    let first = &items[0].item;
    let event = caller
        .event(EventId::InstancesTransferred, Action::Read)
        .with_patient(
            Some(first.patient_id.clone()),
            first.issuer_of_patient_id.clone(),
        )
        .with_study(Some(study.clone()))
        .with_detail(format!(
            "WADO-RS series pixel data of {series}: {frame_count} frames of {} instances",
            sops.len()
        ))
        .with_instances(sops);
    caller.audit_read(&state, event).await?;

    let archive = state.archive.clone();
    let frames = stream::iter(plans.into_iter().flat_map(|(plan, part_type, uri, count)| {
        (1..=count).map(move |n| (plan.clone(), part_type.clone(), uri.clone(), n))
    }))
    .map(move |(plan, part_type, uri, n)| {
        frame_part(archive.clone(), plan, uri, n)
            .map_ok(move |(location, bytes)| (part_type, location, bytes))
    })
    .buffered(PIXELDATA_READ_AHEAD);
    multipart_typed(media, frames.boxed())
}

fn list_text(numbers: &[u32]) -> String {
    let shown: Vec<String> = numbers.iter().take(20).map(u32::to_string).collect();
    if numbers.len() > 20 {
        format!("{},… ({} frames)", shown.join(","), numbers.len())
    } else {
        shown.join(",")
    }
}

pub async fn bulkdata(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series, instance, tag)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    check_uids(&study, Some(&series), Some(&instance))?;
    let tag_value = (tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(&tag, 16).ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{:?} is not a tag: give 8 hexadecimal digits, as in 7FE00010",
                short(&tag)
            ))
        })?;
    let tag = format!("{tag_value:08X}");
    let accepted = accepted(&headers)?;
    let inst = one_instance(&state, &caller, &study, &series, &instance, "bulk data").await?;
    let compressed_pixels = tag_value == PIXEL_DATA
        && inst
            .layout
            .pixel
            .as_ref()
            .is_some_and(|px| px.length.is_none());
    if compressed_pixels {
        let count = inst
            .layout
            .pixel
            .as_ref()
            .map_or(1, |px| px.number_of_frames.max(1));
        return send_frames(
            &state,
            &caller,
            &accepted,
            inst,
            (1..=count).collect(),
            "bulk data 7FE00010: frames",
        )
        .await;
    }
    let rep = choose(&accepted, EXPLICIT_VR_LE, false, 1)?;
    let Some(value) = state
        .archive
        .bulk_value(&inst, tag_value)
        .await
        .map_err(frame_error)?
    else {
        return Err(ApiError::not_found(format!(
            "instance {} has no bulk data {tag} (a value it has is in its metadata)",
            inst.item.sop_instance_uid
        )));
    };
    audit_transfer(&state, &caller, &inst, format!("WADO-RS bulk data {tag}")).await?;
    let part_type = if tag_value == PIXEL_DATA {
        format!("{OCTET_STREAM}; transfer-syntax={EXPLICIT_VR_LE}")
    } else {
        OCTET_STREAM.to_owned()
    };
    let body = value.map_err(|e| std::io::Error::other(e.to_string()));
    if rep.single {
        let mut res = Response::new(Body::from_stream(body));
        set_headers(&mut res, &part_type)?;
        return Ok(res);
    }
    let location = format!("{}/bulkdata/{tag}", inst.uri());
    let boundary = new_boundary();
    let head = Bytes::from(format!(
        "--{boundary}\r\nContent-Type: {part_type}\r\nContent-Location: {location}\r\n\r\n"
    ));
    let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
    let body = stream::once(async move { Ok(head) })
        .chain(body)
        .chain(stream::once(async move { Ok(tail) }))
        .inspect_err(|e| tracing::error!(error = %e, "WADO-RS: bulk data stopped halfway"));
    let mut res = Response::new(Body::from_stream(body));
    set_headers(
        &mut res,
        &format!("multipart/related; type=\"{OCTET_STREAM}\"; boundary={boundary}"),
    )?;
    Ok(res)
}

fn new_boundary() -> String {
    format!("pacs-{}", uuid::Uuid::new_v4().simple())
}

fn set_headers(res: &mut Response, content_type: &str) -> Result<(), ApiError> {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .map_err(|e| ApiError::internal("WADO-RS content type", &e))?,
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(())
}

fn single_part(content_type: &str, bytes: Bytes) -> Response {
    let mut res = Response::new(Body::from(bytes));
    if set_headers(&mut res, content_type).is_err() {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
    }
    res
}

type Parts = stream::BoxStream<'static, std::io::Result<(String, Bytes)>>;
/// Parts with a content type each: (type, location, bytes).
type TypedParts = stream::BoxStream<'static, std::io::Result<(Arc<str>, String, Bytes)>>;

/// A streamed `multipart/related` answer, one part of `part_type` per (location, bytes).
fn multipart(media: &str, part_type: &str, parts: Parts) -> Result<Response, ApiError> {
    let part_type: Arc<str> = part_type.into();
    multipart_typed(
        media,
        parts
            .map_ok(move |(location, bytes)| (part_type.clone(), location, bytes))
            .boxed(),
    )
}

/// A streamed `multipart/related` answer. Every part says its length (`Content-Length`), so
/// that a client can cut the parts without searching the bytes for the boundary.
fn multipart_typed(media: &str, parts: TypedParts) -> Result<Response, ApiError> {
    let boundary = new_boundary();
    let content_type = format!("multipart/related; type=\"{media}\"; boundary={boundary}");
    let closing = Bytes::from(format!("--{boundary}--\r\n"));
    let body = parts
        .map_ok(move |(part_type, location, bytes)| {
            let head = Bytes::from(format!(
                "--{boundary}\r\nContent-Type: {part_type}\r\nContent-Location: {location}\r\n\
                 Content-Length: {}\r\n\r\n",
                bytes.len()
            ));
            stream::iter([
                Ok::<_, std::io::Error>(head),
                Ok(bytes),
                Ok(Bytes::from_static(b"\r\n")),
            ])
        })
        .try_flatten()
        .chain(stream::once(async move { Ok(closing) }))
        .inspect_err(|e| tracing::error!(error = %e, "WADO-RS: frames stopped halfway"));
    let mut res = Response::new(Body::from_stream(body));
    set_headers(&mut res, &content_type)?;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Vec<Accepted> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        accepted(&h).unwrap()
    }

    const JPEG: &str = "1.2.840.10008.1.2.4.50";
    const JPEG_LOSSLESS: &str = "1.2.840.10008.1.2.4.70";
    const JLS: &str = "1.2.840.10008.1.2.4.80";

    fn media(v: &str, ts: &str, compressed: bool, count: usize) -> Result<(String, bool), u16> {
        choose(&accept(v), ts, compressed, count)
            .map(|r| (format!("{}; {}", r.media, r.transfer_syntax), r.single))
            .map_err(|e| e.status().as_u16())
    }

    #[test]
    fn negotiation() {
        // Cornerstone's Accept: anything, as stored.
        let cs = "multipart/related; type=application/octet-stream; transfer-syntax=*";
        assert_eq!(
            media(cs, JPEG, true, 1),
            Ok((format!("image/jpeg; {JPEG}"), false))
        );
        assert_eq!(
            media(cs, JLS, true, 2),
            Ok((format!("image/jls; {JLS}"), false))
        );
        assert_eq!(
            media(cs, EXPLICIT_VR_LE, false, 1),
            Ok((format!("application/octet-stream; {EXPLICIT_VR_LE}"), false))
        );
        // The media type of the syntax, with or without it; image/*.
        for v in [
            "multipart/related; type=\"image/jpeg\"",
            "multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.70",
            "multipart/related; type=\"image/*\"",
        ] {
            assert_eq!(
                media(v, JPEG_LOSSLESS, true, 1),
                Ok((format!("image/jpeg; {JPEG_LOSSLESS}"), false)),
                "{v}"
            );
        }
        // Uncompressed only, for compressed data: decoded frames.
        for v in [
            "multipart/related; type=\"application/octet-stream\"",
            "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.1",
            "*/*",
        ] {
            assert_eq!(
                media(v, JPEG_LOSSLESS, true, 1),
                Ok((format!("application/octet-stream; {EXPLICIT_VR_LE}"), false)),
                "{v}"
            );
        }
        // Another compressed type than the stored one: 406; image types for native data: 406.
        for v in [
            "multipart/related; type=\"image/jls\"",
            "multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.50",
        ] {
            assert_eq!(media(v, JPEG_LOSSLESS, true, 1), Err(406), "{v}");
        }
        assert_eq!(
            media(
                "multipart/related; type=\"image/jpeg\"",
                EXPLICIT_VR_LE,
                false,
                1
            ),
            Err(406)
        );
        // No Accept: PS3.18's default, uncompressed octet-stream.
        let none = accepted(&HeaderMap::new()).unwrap();
        assert!(choose(&none, EXPLICIT_VR_LE, false, 3).is_ok());
        assert!(choose(&none, JPEG, true, 1).is_ok_and(|r| r.decode));
        // Single part for one frame only; q=0 is a refusal.
        assert_eq!(
            media("image/jls", JLS, true, 1),
            Ok((format!("image/jls; {JLS}"), true))
        );
        assert_eq!(media("image/jls", JLS, true, 2), Err(406));
        assert_eq!(
            media(&format!("{cs}; q=0, image/jls"), JLS, true, 1),
            Ok((format!("image/jls; {JLS}"), true))
        );
        // Video has no frames.
        assert_eq!(media(cs, "1.2.840.10008.1.2.4.102", true, 1), Err(406));
        // A malformed transfer syntax is 400.
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("multipart/related; type=image/jpeg; transfer-syntax=x'"),
        );
        assert_eq!(accepted(&h).unwrap_err().status().as_u16(), 400);
    }

    #[test]
    fn frame_lists() {
        assert_eq!(parse_frame_list("1").unwrap(), vec![1]);
        assert_eq!(parse_frame_list("3,1, 2").unwrap(), vec![3, 1, 2]);
        for (bad, why) in [
            ("0", "start at 1"),
            ("1,,2", "empty"),
            ("1,", "empty"),
            ("a", "not a frame number"),
            ("-1", "not a frame number"),
            ("+1", "not a frame number"),
            ("1.5", "not a frame number"),
            ("99999999999", "not a frame number"),
            ("2,2", "twice"),
        ] {
            let e = parse_frame_list(bad).unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{bad}");
            assert!(e.reason().contains(why), "{bad}: {}", e.reason());
        }
        let many: Vec<String> = (1..=1001).map(|n| n.to_string()).collect();
        assert!(
            parse_frame_list(&many.join(","))
                .unwrap_err()
                .reason()
                .contains("at most")
        );
        assert_eq!(
            parse_frame_list(&many[..1000].join(",")).unwrap().len(),
            1000
        );
    }

    #[test]
    fn media_types_of_syntaxes() {
        assert_eq!(media_type_of(JPEG), "image/jpeg");
        assert_eq!(media_type_of(JPEG_LOSSLESS), "image/jpeg");
        assert_eq!(media_type_of("1.2.840.10008.1.2.4.57"), "image/jpeg");
        assert_eq!(media_type_of(JLS), "image/jls");
        assert_eq!(media_type_of("1.2.840.10008.1.2.4.90"), "image/jp2");
        assert_eq!(media_type_of("1.2.840.10008.1.2.4.201"), "image/jphc");
        assert_eq!(media_type_of("1.2.840.10008.1.2.5"), "image/dicom-rle");
        assert_eq!(media_type_of("1.2.840.10008.1.2.4.999"), OCTET_STREAM);
    }
}
