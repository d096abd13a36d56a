//! `GET /api/studies` and `GET /api/studies/{uid}`: the studies a caller may see, for the
//! clinic portal and the radiologist's patient view.
//!
//! Both read only through the access policy (`pacs_store::access`): a study outside the
//! caller's scope is answered exactly like one that does not exist (404 "no such study"),
//! so a guessed UID tells nothing. Every answer is audited before it is sent — a query as
//! 110112 Query, a study read as 110103 DICOM Instances Accessed (action R), a refused or
//! unknown study as the same with a minor failure.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use pacs_store::access::{StudyDetail, StudyFilter, StudySummary};

use pacs_store::audit::{Action, EventId, Outcome};
use pacs_store::query::is_uid;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

/// The longest value of a query parameter or UID looked at.
const MAX_PARAM_CHARS: usize = 64;

/// Query parameters of `GET /api/studies`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StudyQuery {
    /// Patient ID (exact).
    pub patient_id: Option<String>,
    /// Accession number (exact).
    pub accession_number: Option<String>,
    /// At most this many (1–1000, default 100).
    pub limit: Option<i64>,
    /// Skip this many (paging).
    pub offset: Option<i64>,
}

/// `GET /api/studies`: the caller's studies, newest received first.
#[utoipa::path(
    get,
    path = "/api/studies",
    tag = "studies",
    params(StudyQuery),
    responses(
        (status = 200, description = "The studies the caller may see", body = [StudySummary]),
        (status = 400, description = "Bad query parameter", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<StudyQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(query_reason(&e)))?;
    for (name, value) in [
        ("patient_id", &q.patient_id),
        ("accession_number", &q.accession_number),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.chars().count() > MAX_PARAM_CHARS)
        {
            return Err(ApiError::bad_request(format!(
                "{name} is longer than {MAX_PARAM_CHARS} characters"
            )));
        }
    }
    crate::error::check_page(q.limit, q.offset)?;
    let filter = StudyFilter {
        patient_id: q.patient_id.clone(),
        accession_number: q.accession_number.clone(),
        limit: q.limit,
        offset: q.offset,
    };
    let studies = state
        .archive
        .index()
        .visible_studies(caller.scope(), &filter)
        .await?;
    let mut detail = format!("studies listed: {}", studies.len());
    if let Some(a) = &q.accession_number {
        detail.push_str(&format!("; accession number {a}"));
    }
    let event = caller
        .event(EventId::Query, Action::Execute)
        .with_patient(q.patient_id.clone(), None)
        .with_detail(detail);
    caller.audit_read(&state, event).await?;
    Ok(no_store(Json(studies)))
}

/// `GET /api/studies/{uid}`: one study with its series and the patient's other studies
/// (priors) the caller may see.
#[utoipa::path(
    get,
    path = "/api/studies/{study_instance_uid}",
    tag = "studies",
    params(("study_instance_uid" = String, Path, description = "Study Instance UID")),
    responses(
        (status = 200, description = "The study", body = StudyDetail),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such study, or not one the caller may see", body = ErrorBody),
    )
)]
pub async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(uid): Path<String>,
) -> Result<Response, ApiError> {
    let found = if is_uid(&uid) {
        state
            .archive
            .index()
            .visible_study_detail(caller.scope(), &uid)
            .await?
    } else {
        None
    };
    let event = caller.event(EventId::InstancesAccessed, Action::Read);
    let Some(detail) = found else {
        let shown = if is_uid(&uid) {
            uid.as_str()
        } else {
            "(not a UID)"
        };
        let event = event
            .with_study(Some(shown.to_owned()))
            .with_outcome(Outcome::MinorFailure, "no such study, or not permitted");
        caller.audit_read(&state, event).await?;
        return Err(ApiError::not_found("no such study"));
    };
    let s = &detail.study;
    let event = event
        .with_patient(Some(s.patient_id.clone()), s.issuer_of_patient_id.clone())
        .with_study(Some(s.study_instance_uid.clone()))
        .with_detail(format!(
            "study details with {} prior(s)",
            detail.priors.len()
        ));
    caller.audit_read(&state, event).await?;
    Ok(no_store(Json(detail)))
}

pub(crate) fn query_reason(e: &QueryRejection) -> String {
    // serde's message names the parameter and what was wrong, without echoing the value.
    let text = e.body_text();
    let text = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    format!("bad query parameter: {}", truncate(text, 200))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Patient data must not stay in shared caches.
fn no_store(body: impl IntoResponse) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], body).into_response()
}
