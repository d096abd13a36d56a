//! WADO-RS rendered resources (PS3.18 10.4.1.1.3, 10.7): a frame as a consumer image.
//!
//! - `GET …/instances/{instance}/rendered` (frame 1, or `?frame=N`) and
//!   `…/instances/{instance}/frames/{n}/rendered`: JPEG (default) or PNG, with `window`,
//!   `quality`, `viewport` (see `crate::render::RenderParams`);
//! - `GET /studies/{study}/thumbnail`, `…/series/{series}/thumbnail`,
//!   `…/instances/{instance}/thumbnail`: a JPEG of at most `?viewport=N,N` (default
//!   128×128) of the middle frame of a representative instance (the middle instance of the
//!   first series with an image).
//!
//! Rendering runs on the blocking pool, a few at a time (each decodes a whole object), so
//! a burst of thumbnails cannot starve the server. Scope and audit as for every read:
//! 404 "no such …" for what the caller may not see, 110103 (action R) per rendering.
//! Study- and series-level `/rendered` (a multipart of every instance rendered) is not
//! offered: 406 with the reason.

use std::sync::LazyLock;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pacs_store::audit::{Action, EventId};
use pacs_store::objects::ObjectKey;
use pacs_store::query::{Retrievable, is_uid};
use tokio::sync::Semaphore;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::render::{self, RenderError, RenderParams, Rendered};

/// Renderings at once (each holds a decoded object).
static RENDER_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Semaphore::new(cores.max(2))
});

/// Default thumbnail edge.
const THUMBNAIL: u32 = 128;

pub async fn instance(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series, instance)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = RenderParams::from_query(q.as_deref().unwrap_or(""), accept(&headers))?;
    let item = one(&state, &caller, &study, Some(&series), Some(&instance)).await?;
    respond(&state, &caller, item, Job::Render(params)).await
}

pub async fn frame(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series, instance, frame)): Path<(String, String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let mut params = RenderParams::from_query(q.as_deref().unwrap_or(""), accept(&headers))?;
    params.frame = render::parse_frame_number(&frame)?;
    let item = one(&state, &caller, &study, Some(&series), Some(&instance)).await?;
    respond(&state, &caller, item, Job::Render(params)).await
}

pub async fn study_thumbnail(
    State(state): State<ApiState>,
    caller: Caller,
    Path(study): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let size = thumbnail_size(q.as_deref())?;
    let item = representative(&state, &caller, &study, None).await?;
    respond(&state, &caller, item, Job::Thumbnail(size)).await
}

pub async fn series_thumbnail(
    State(state): State<ApiState>,
    caller: Caller,
    Path((study, series)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let size = thumbnail_size(q.as_deref())?;
    let item = representative(&state, &caller, &study, Some(&series)).await?;
    respond(&state, &caller, item, Job::Thumbnail(size)).await
}

pub async fn instance_thumbnail(
    State(state): State<ApiState>,
    caller: Caller,
    Path((study, series, instance)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let size = thumbnail_size(q.as_deref())?;
    let item = one(&state, &caller, &study, Some(&series), Some(&instance)).await?;
    respond(&state, &caller, item, Job::Thumbnail(size)).await
}

/// One instance rendered with `params` (for WADO-URI's image content types too).
pub(crate) async fn render_item(
    state: &ApiState,
    caller: &Caller,
    item: Retrievable,
    params: RenderParams,
) -> Result<Response, ApiError> {
    respond(state, caller, item, Job::Render(params)).await
}

/// `/studies/{study}/rendered` and `/series/{series}/rendered`.
pub async fn not_offered() -> ApiError {
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "rendered studies and series are not offered: render instances or frames, or ask for \
         a thumbnail",
    )
}

enum Job {
    Render(RenderParams),
    Thumbnail(u32),
}

fn accept(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

/// `viewport=N,N` (square thumbnails; the larger edge counts) or the default.
fn thumbnail_size(q: Option<&str>) -> Result<u32, ApiError> {
    let Some(q) = q.filter(|q| !q.is_empty()) else {
        return Ok(THUMBNAIL);
    };
    let params = RenderParams::from_query(q, None)?;
    Ok(params
        .viewport
        .map_or(THUMBNAIL, |v| v.width.max(v.height))
        .min(render::MAX_THUMBNAIL_SIZE))
}

fn check_uids(uids: &[&str]) -> Result<(), ApiError> {
    match uids.iter().find(|u| !is_uid(u)) {
        Some(bad) => Err(ApiError::bad_request(format!(
            "{:?} is not a UID",
            &bad[..bad.len().min(64)]
        ))),
        None => Ok(()),
    }
}

async fn one(
    state: &ApiState,
    caller: &Caller,
    study: &str,
    series: Option<&str>,
    instance: Option<&str>,
) -> Result<Retrievable, ApiError> {
    let mut uids = vec![study];
    uids.extend(series);
    uids.extend(instance);
    check_uids(&uids)?;
    state
        .archive
        .index()
        .retrievable(caller.scope(), study, series, instance)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("no such instance"))
}

/// The middle instance with pixel data of the first series that has one.
async fn representative(
    state: &ApiState,
    caller: &Caller,
    study: &str,
    series: Option<&str>,
) -> Result<Retrievable, ApiError> {
    let mut uids = vec![study];
    uids.extend(series);
    check_uids(&uids)?;
    let all = state
        .archive
        .index()
        .retrievable(caller.scope(), study, series, None)
        .await?;
    if all.is_empty() {
        return Err(ApiError::not_found(if series.is_some() {
            "no such series"
        } else {
            "no such study"
        }));
    }
    let images: Vec<&Retrievable> = all.iter().filter(|i| is_image(&i.sop_class_uid)).collect();
    let first_series = images
        .first()
        .map(|i| i.series_instance_uid.clone())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "nothing to show: no image in this study or series",
            )
        })?;
    let in_series: Vec<&&Retrievable> = images
        .iter()
        .filter(|i| i.series_instance_uid == first_series)
        .collect();
    Ok((*in_series[in_series.len() / 2]).clone())
}

/// Documents (PDF, CDA), structured reports and the like have no pixels.
fn is_image(sop_class: &str) -> bool {
    !(sop_class.starts_with("1.2.840.10008.5.1.4.1.1.88.")
        || sop_class.starts_with("1.2.840.10008.5.1.4.1.1.104.")
        || sop_class.starts_with("1.2.840.10008.5.1.4.1.1.11.")
        || sop_class.starts_with("1.2.840.10008.5.1.4.1.1.9."))
}

async fn respond(
    state: &ApiState,
    caller: &Caller,
    item: Retrievable,
    job: Job,
) -> Result<Response, ApiError> {
    let what = match &job {
        Job::Render(p) => format!("WADO-RS rendered frame {}", p.frame),
        Job::Thumbnail(size) => format!("WADO-RS thumbnail {size}px"),
    };
    let event = caller
        .event(EventId::InstancesAccessed, Action::Read)
        .with_patient(
            Some(item.patient_id.clone()),
            item.issuer_of_patient_id.clone(),
        )
        .with_study(Some(item.study_instance_uid.clone()))
        .with_instances(vec![item.sop_instance_uid.clone()])
        .with_detail(what);
    caller.audit_read(state, event).await?;
    let key = ObjectKey::parse(&item.object_key)?;
    let object = state.archive.objects().get(&key).await?;
    let _slot = RENDER_SLOTS
        .acquire()
        .await
        .map_err(|e| ApiError::internal("rendering slots", &e))?;
    let rendered: Rendered = tokio::task::spawn_blocking(move || match job {
        Job::Render(params) => render::render(&object, &params),
        Job::Thumbnail(size) => render::thumbnail(&object, size),
    })
    .await
    .map_err(|e| ApiError::internal("rendering task", &e))?
    .map_err(|e: RenderError| {
        if e.status().is_server_error() || e.status() == StatusCode::UNPROCESSABLE_ENTITY {
            tracing::warn!(sop = %item.sop_instance_uid, error = %e, "cannot render");
        }
        ApiError::from(e)
    })?;
    let mut res = rendered.bytes.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(rendered.media_type.as_str()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
