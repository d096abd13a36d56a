//! WADO-URI (PS3.18 9): `GET /dicom-web/wado?requestType=WADO&studyUID=…&seriesUID=…&
//! objectUID=…[&contentType=application/dicom][&transferSyntax=…]`, for older viewers and
//! workstations (Weasis, clinic PACS) that fetch one object per request.
//!
//! `application/dicom` (the default here when `contentType` is absent — PS3.18 names
//! image/jpeg, which needs the renderer) answers the object as stored, or in the
//! `transferSyntax` asked for under the same rules as WADO-RS; other content types are 406
//! until rendering arrives. The object must be within the caller's scope (404 otherwise,
//! like an unknown one). Audited like a WADO-RS retrieve.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use pacs_store::audit::{Action, EventId, Outcome};
use pacs_store::objects::ObjectKey;
use pacs_store::query::is_uid;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    _headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = super::qido::form_urlencoded(raw.as_deref().unwrap_or(""))?;
    let value = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if value("requestType") != Some("WADO") {
        return Err(ApiError::bad_request("requestType=WADO is required"));
    }
    let mut uids = Vec::new();
    for name in ["studyUID", "seriesUID", "objectUID"] {
        let v = value(name).ok_or_else(|| ApiError::bad_request(format!("{name} is required")))?;
        if !is_uid(v) {
            return Err(ApiError::bad_request(format!("{name} is not a UID")));
        }
        uids.push(v.to_owned());
    }
    let content_type = value("contentType").unwrap_or("application/dicom");
    let types: Vec<&str> = content_type.split(',').map(str::trim).collect();
    if !types
        .iter()
        .any(|t| *t == "application/dicom" || *t == "*/*")
    {
        if let Some(image) = types
            .iter()
            .find(|t| matches!(**t, "image/jpeg" | "image/png"))
        {
            return rendered(&state, &caller, &uids, image, &params).await;
        }
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "contentType {:?}: available are application/dicom, image/jpeg and image/png",
                &content_type[..content_type.len().min(64)]
            ),
        ));
    }
    let wanted = match value("transferSyntax") {
        None => super::wado::Wanted::AsStored,
        Some(ts) if is_uid(ts) => super::wado::Wanted::Syntax(ts.to_owned()),
        Some(_) => return Err(ApiError::bad_request("transferSyntax is not a UID")),
    };
    let items = state
        .archive
        .index()
        .retrievable(caller.scope(), &uids[0], Some(&uids[1]), Some(&uids[2]))
        .await?;
    let Some(item) = items.into_iter().next() else {
        let event = caller
            .event(EventId::InstancesTransferred, Action::Read)
            .with_study(Some(uids[0].clone()))
            .with_outcome(
                Outcome::MinorFailure,
                "WADO-URI: no such object, or not permitted",
            );
        caller.audit_read(&state, event).await?;
        return Err(ApiError::not_found("no such object"));
    };
    let transcode = match &wanted {
        super::wado::Wanted::Syntax(ts) if *ts != item.transfer_syntax_uid => {
            if ts == super::wado::EXPLICIT_VR_LE
                && super::wado::is_native(&item.transfer_syntax_uid)
            {
                true
            } else {
                return Err(ApiError::new(
                    StatusCode::NOT_ACCEPTABLE,
                    format!(
                        "the object is stored as {} and cannot be sent as {ts}",
                        item.transfer_syntax_uid
                    ),
                ));
            }
        }
        _ => false,
    };
    let event = caller
        .event(EventId::InstancesTransferred, Action::Read)
        .with_patient(
            Some(item.patient_id.clone()),
            item.issuer_of_patient_id.clone(),
        )
        .with_study(Some(item.study_instance_uid.clone()))
        .with_instances(vec![item.sop_instance_uid.clone()])
        .with_detail("WADO-URI retrieve");
    caller.audit_read(&state, event).await?;
    let key = ObjectKey::parse(&item.object_key)?;
    let objects = state.archive.objects();
    let body = if transcode {
        let whole = objects.get(&key).await?;
        let out = tokio::task::spawn_blocking(move || super::wado::to_explicit_le(&whole))
            .await
            .map_err(|e| ApiError::internal("WADO-URI transcoding task", &e))?
            .map_err(|e| ApiError::internal("WADO-URI transcoding", &e))?;
        Body::from(out)
    } else {
        Body::from_stream(
            objects
                .get_stream(&key)
                .await?
                .map_err(std::io::Error::other),
        )
    };
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/dicom"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res.into_response())
}

/// `contentType=image/jpeg|image/png`: the frame rendered (PS3.18 9.1.2: `frameNumber`,
/// `windowCenter` with `windowWidth`, `rows`/`columns` as the largest size, `imageQuality`).
async fn rendered(
    state: &ApiState,
    caller: &Caller,
    uids: &[String],
    media_type: &str,
    params: &[(String, String)],
) -> Result<Response, ApiError> {
    let value = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut q = vec![format!("accept={media_type}")];
    if let Some(f) = value("frameNumber") {
        q.push(format!("frame={f}"));
    }
    match (value("windowCenter"), value("windowWidth")) {
        (Some(c), Some(w)) => q.push(format!("window={c},{w}")),
        (None, None) => {}
        _ => {
            return Err(ApiError::bad_request(
                "windowCenter and windowWidth go together",
            ));
        }
    }
    if let Some(quality) = value("imageQuality") {
        q.push(format!("quality={quality}"));
    }
    match (value("rows"), value("columns")) {
        (None, None) => {}
        (r, c) => q.push(format!(
            "viewport={},{}",
            c.or(r).unwrap_or_default(),
            r.or(c).unwrap_or_default()
        )),
    }
    // The values were percent-decoded already; re-encode the few characters that matter.
    let query = q
        .iter()
        .map(|p| {
            p.replace('%', "%25")
                .replace('&', "%26")
                .replace('+', "%2B")
        })
        .collect::<Vec<_>>()
        .join("&");
    let params = crate::render::RenderParams::from_query(&query, None)?;
    let item = state
        .archive
        .index()
        .retrievable(caller.scope(), &uids[0], Some(&uids[1]), Some(&uids[2]))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("no such object"))?;
    super::rendered::render_item(state, caller, item, params).await
}
