//! WADO-RS metadata (PS3.18 10.4.1.1.2): `GET /dicom-web/studies/{study}/metadata`,
//! `/studies/{study}/series/{series}/metadata`,
//! `/studies/{study}/series/{series}/instances/{instance}/metadata`.
//!
//! An `application/dicom+json` array with one object per instance, in series and instance
//! order: every attribute of the stored data set up to Pixel Data, text decoded from its
//! Specific Character Set (which is kept as sent), bulk values as `BulkDataURI`s that
//! [`super::frames::bulkdata`] serves (absolute paths, `/dicom-web/studies/…/bulkdata/{tag}`,
//! which OHIF resolves against its server). How values are rendered is
//! `pacs_store::metadata::json`'s, from a per-instance cache (see `pacs_store::metadata`):
//! a study is answered from the index without opening its objects once they have been read.
//!
//! Nothing outside the caller's scope: an empty result is 404 ("no such study", "… series",
//! "… instance") whether it does not exist or is not the caller's. An `Accept` without JSON
//! is 406. Each read is audited (110103 DICOM Instances Accessed, action R, with the
//! instances) before the answer is sent.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use pacs_store::audit::{Action, EventId, Outcome};

use super::frames::check_uids;
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

pub async fn study(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(study): Path<String>,
) -> Result<Response, ApiError> {
    metadata(&state, &caller, &headers, &study, None, None).await
}

pub async fn series(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    metadata(&state, &caller, &headers, &study, Some(&series), None).await
}

pub async fn instance(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((study, series, instance)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    metadata(
        &state,
        &caller,
        &headers,
        &study,
        Some(&series),
        Some(&instance),
    )
    .await
}

async fn metadata(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    study: &str,
    series: Option<&str>,
    instance: Option<&str>,
) -> Result<Response, ApiError> {
    check_uids(study, series, instance)?;
    super::accepts_json(headers)?;
    let items = state
        .archive
        .metadata(caller.scope(), study, series, instance)
        .await?;
    let what = match (series, instance) {
        (_, Some(_)) => "instance",
        (Some(_), None) => "series",
        _ => "study",
    };
    let Some(first) = items.first() else {
        let event = caller
            .event(EventId::InstancesAccessed, Action::Read)
            .with_study(Some(study.to_owned()))
            .with_outcome(
                Outcome::MinorFailure,
                format!("WADO-RS metadata: no such {what}, or not permitted"),
            );
        caller.audit_read(state, event).await?;
        return Err(ApiError::not_found(format!("no such {what}")));
    };
    let event = caller
        .event(EventId::InstancesAccessed, Action::Read)
        .with_patient(
            Some(first.item.patient_id.clone()),
            first.item.issuer_of_patient_id.clone(),
        )
        .with_study(Some(study.to_owned()))
        .with_instances(
            items
                .iter()
                .map(|i| i.item.sop_instance_uid.clone())
                .collect(),
        )
        .with_detail(format!("WADO-RS metadata of a {what}"));
    caller.audit_read(state, event).await?;

    let mut body = String::with_capacity(items.iter().map(|i| i.json.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(&item.json);
    }
    body.push(']');
    Ok(super::dicom_json_text(body))
}
