//! Reports over HTTP (`pacs_store::reports`):
//! - `POST /api/studies/{uid}/preliminary`: a township doctor's first impression of a study
//!   of their clinic (`{"text", "urgent"?}`);
//! - `GET /api/studies/{uid}/reports`: the study's reports (signed ones for clinic users,
//!   drafts too for radiologists and administrators) and preliminary impressions;
//! - `PUT /api/worklist/tasks/{id}/report`: the draft, by the radiologist holding the claim;
//! - `POST /api/reports/{id}/sign`, `POST /api/reports/{id}/addenda` (`{"text"}`);
//! - `GET /api/reports/{id}`; `GET /api/reports/{id}/verify` (public: it needs no secret
//!   and answers no patient data, only whether the signatures hold and whose they are);
//! - `GET /api/report-templates`; `GET /api/admin/discrepancies` (rates per clinic).
//!
//! Reads of reports are audited as 110103 (read) before the data is sent; writes as 110103
//! with action create/update.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pacs_store::access::Capability;
use pacs_store::audit::{Action, EventId, Outcome};
use pacs_store::index::now_micros;
use pacs_store::query::is_uid;
use pacs_store::reports::critical::{CriticalNotice, PortalStudy};
use pacs_store::reports::delivery::Delivery;
use pacs_store::reports::{
    ClinicDiscrepancies, Preliminary, Report, ReportContent, TEMPLATES, Template, Verification,
};

use crate::ApiState;
use crate::admin::body;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

fn no_store(r: impl IntoResponse) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], r).into_response()
}

/// The body of `POST /api/studies/{uid}/preliminary`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPreliminary {
    pub text: String,
    /// Raises a routine reading task to urgent.
    #[serde(default)]
    pub urgent: bool,
}

/// `POST /api/studies/{uid}/preliminary` (township doctors of the sending clinic).
#[utoipa::path(post, path = "/api/studies/{study_instance_uid}/preliminary", tag = "reports",
    params(("study_instance_uid" = String, Path)), request_body = NewPreliminary,
    responses((status = 200, body = Preliminary), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn save_preliminary(
    State(state): State<ApiState>,
    caller: Caller,
    Path(uid): Path<String>,
    req: Result<Json<NewPreliminary>, JsonRejection>,
) -> Result<Response, ApiError> {
    if caller.principal.role != pacs_store::users::Role::TownshipDoctor {
        return Err(ApiError::forbidden(
            "preliminary impressions are written by township doctors",
        ));
    }
    let req = body(req)?;
    if !is_uid(&uid) {
        return Err(ApiError::not_found("no such study"));
    }
    let saved = state
        .archive
        .index()
        .save_preliminary(&caller.principal, &uid, &req.text, req.urgent, now_micros())
        .await;
    let event = caller
        .event(EventId::InstancesAccessed, Action::Update)
        .with_study(Some(uid.clone()))
        .with_detail("preliminary impression");
    let event = match &saved {
        Ok(_) => event,
        Err(e) => event.with_outcome(Outcome::MinorFailure, e.to_string()),
    };
    caller.audit_read(&state, event).await?;
    Ok(no_store(Json(saved?)))
}

/// What `GET /api/studies/{uid}/reports` answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct StudyReports {
    pub preliminary: Vec<Preliminary>,
    pub reports: Vec<Report>,
}

/// `GET /api/studies/{uid}/reports`
#[utoipa::path(get, path = "/api/studies/{study_instance_uid}/reports", tag = "reports",
    params(("study_instance_uid" = String, Path)),
    responses((status = 200, body = StudyReports), (status = 404, body = ErrorBody)))]
pub async fn study_reports(
    State(state): State<ApiState>,
    caller: Caller,
    Path(uid): Path<String>,
) -> Result<Response, ApiError> {
    let index = state.archive.index();
    let visible = is_uid(&uid) && index.visible_study(caller.scope(), &uid).await?.is_some();
    let event = caller
        .event(EventId::InstancesAccessed, Action::Read)
        .with_study(Some(if is_uid(&uid) {
            uid.clone()
        } else {
            "(not a UID)".into()
        }))
        .with_detail("reports");
    if !visible {
        let event = event.with_outcome(Outcome::MinorFailure, "no such study, or not permitted");
        caller.audit_read(&state, event).await?;
        return Err(ApiError::not_found("no such study"));
    }
    let mut reports = Vec::new();
    for id in index.study_report_ids(&uid).await? {
        if let Some(r) = index.visible_report(caller.scope(), id).await? {
            reports.push(r);
        }
    }
    let preliminary = index.preliminaries(&uid).await?;
    caller.audit_read(&state, event).await?;
    Ok(no_store(Json(StudyReports {
        preliminary,
        reports,
    })))
}

/// `PUT /api/worklist/tasks/{id}/report`: the draft of the task the caller holds.
#[utoipa::path(put, path = "/api/worklist/tasks/{id}/report", tag = "reports",
    params(("id" = i64, Path, description = "Task id")), request_body = ReportContent,
    responses((status = 200, body = Report), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn save_draft(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
    req: Result<Json<ReportContent>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&state, Capability::ClaimTasks).await?;
    let content = body(req)?;
    let index = state.archive.index();
    if !index.task_visible(caller.scope(), id).await? {
        return Err(ApiError::not_found("no such task"));
    }
    let saved = index
        .save_draft(id, caller.principal.user_id, &content, now_micros())
        .await;
    audit_write(
        &state,
        &caller,
        saved.as_ref().ok().map(|r| r.study_instance_uid.clone()),
        "report draft",
        &saved,
    )
    .await?;
    Ok(no_store(Json(saved?)))
}

async fn audit_write<T>(
    state: &ApiState,
    caller: &Caller,
    study: Option<String>,
    what: &str,
    result: &Result<T, pacs_store::StoreError>,
) -> Result<(), ApiError> {
    let event = caller
        .event(EventId::InstancesAccessed, Action::Update)
        .with_study(study)
        .with_detail(what.to_owned());
    let event = match result {
        Ok(_) => event,
        Err(e) => event.with_outcome(Outcome::MinorFailure, e.to_string()),
    };
    caller.audit_read(state, event).await
}

/// 404 unless the caller may see report `id`.
async fn visible(state: &ApiState, caller: &Caller, id: i64) -> Result<Report, ApiError> {
    state
        .archive
        .index()
        .visible_report(caller.scope(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such report"))
}

/// `POST /api/reports/{id}/sign`: by the radiologist holding the task; final at once.
#[utoipa::path(post, path = "/api/reports/{id}/sign", tag = "reports",
    params(("id" = i64, Path, description = "Report id")),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn sign(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    caller.require(&state, Capability::ClaimTasks).await?;
    let report = visible(&state, &caller, id).await?;
    let signed = state
        .archive
        .index()
        .sign_report(
            &state.report_key,
            &state.worklist,
            id,
            caller.principal.user_id,
            now_micros(),
        )
        .await;
    audit_write(
        &state,
        &caller,
        Some(report.study_instance_uid),
        "report signed",
        &signed,
    )
    .await?;
    Ok(no_store(Json(signed?)))
}

/// The body of `POST /api/reports/{id}/addenda`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAddendum {
    pub text: String,
}

/// `POST /api/reports/{id}/addenda`: a signed addendum to a signed report.
#[utoipa::path(post, path = "/api/reports/{id}/addenda", tag = "reports",
    params(("id" = i64, Path, description = "Report id")), request_body = NewAddendum,
    responses((status = 201, body = pacs_store::reports::Addendum), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_addendum(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
    req: Result<Json<NewAddendum>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&state, Capability::ClaimTasks).await?;
    let req = body(req)?;
    let report = visible(&state, &caller, id).await?;
    let added = state
        .archive
        .index()
        .add_addendum(
            &state.report_key,
            id,
            caller.principal.user_id,
            &req.text,
            now_micros(),
        )
        .await;
    audit_write(
        &state,
        &caller,
        Some(report.study_instance_uid),
        "report addendum",
        &added,
    )
    .await?;
    Ok((StatusCode::CREATED, no_store(Json(added?))).into_response())
}

/// `GET /api/reports/{id}`
#[utoipa::path(get, path = "/api/reports/{id}", tag = "reports",
    params(("id" = i64, Path, description = "Report id")),
    responses((status = 200, body = Report), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let report = read_report(&state, &caller, id, format!("report {id}")).await?;
    Ok(no_store(Json(report)))
}

/// Report `id` if the caller may see it, audited as a read (110103, with `detail`) before
/// it is answered; a refused or unknown report is audited as a minor failure.
async fn read_report(
    state: &ApiState,
    caller: &Caller,
    id: i64,
    detail: String,
) -> Result<Report, ApiError> {
    let found = state
        .archive
        .index()
        .visible_report(caller.scope(), id)
        .await?;
    let event = caller
        .event(EventId::InstancesAccessed, Action::Read)
        .with_detail(detail);
    let Some(report) = found else {
        let event = event.with_outcome(Outcome::MinorFailure, "no such report, or not permitted");
        caller.audit_read(state, event).await?;
        return Err(ApiError::not_found("no such report"));
    };
    let event = event
        .with_patient(
            Some(report.patient_id.clone()),
            report.issuer_of_patient_id.clone(),
        )
        .with_study(Some(report.study_instance_uid.clone()));
    caller.audit_read(state, event).await?;
    Ok(report)
}

/// `GET /api/reports/{id}/pdf`: the newest signed version of the report as the PDF the
/// clinic received (read from the Encapsulated PDF stored in the study). 503 with
/// Retry-After for the second or so after signing while it is being made; 409 for a draft.
#[utoipa::path(get, path = "/api/reports/{id}/pdf", tag = "reports",
    params(("id" = i64, Path, description = "Report id")),
    responses((status = 200, description = "application/pdf"), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn pdf(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let report = read_report(&state, &caller, id, format!("report {id} as PDF")).await?;
    if report.signed_at.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the report is a draft: a PDF is made when it is signed",
        ));
    }
    let Some(bytes) = pacs_store::reports::delivery::report_pdf(&state.archive, id).await? else {
        return Err(ApiError::not_yet(
            "the report's PDF is being made; try again in a few seconds",
            2,
        ));
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"report-{id}.pdf\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /api/reports/{id}/deliveries`: where each signed version of the report stands on
/// its way to the clinic (pending with the last error and next attempt, delivered,
/// failed, no destination).
#[utoipa::path(get, path = "/api/reports/{id}/deliveries", tag = "reports",
    params(("id" = i64, Path, description = "Report id")),
    responses((status = 200, body = [Delivery]), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    read_report(&state, &caller, id, format!("deliveries of report {id}")).await?;
    let list = state.archive.index().report_deliveries(id).await?;
    Ok(no_store(Json(list)))
}

/// Query parameters of `GET /api/admin/deliveries`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// pending, delivered, failed or no_destination; all when absent.
    pub state: Option<String>,
    /// At most this many, newest first (1–1000, default 100).
    pub limit: Option<i64>,
}

/// `GET /api/admin/deliveries`: report deliveries, newest first (administrators).
#[utoipa::path(get, path = "/api/admin/deliveries", tag = "admin", params(DeliveryParams),
    responses((status = 200, body = [Delivery]), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn admin_deliveries(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<axum::extract::Query<DeliveryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&state, Capability::Administer).await?;
    let axum::extract::Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(s) = p.state.as_deref()
        && !["pending", "delivered", "failed", "no_destination"].contains(&s)
    {
        return Err(ApiError::bad_request(format!(
            "state {s:?} is none of pending, delivered, failed, no_destination"
        )));
    }
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1–1000"));
    }
    let list = state
        .archive
        .index()
        .deliveries(p.state.as_deref(), limit)
        .await?;
    Ok(no_store(Json(list)))
}

/// `POST /api/admin/deliveries/{id}/retry`: sends a failed delivery (or one that had no
/// destination) again at once, with a fresh count of attempts.
#[utoipa::path(post, path = "/api/admin/deliveries/{id}/retry", tag = "admin",
    params(("id" = i64, Path, description = "Delivery id")),
    responses((status = 200, body = Delivery), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn retry_delivery(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    caller.require(&state, Capability::Administer).await?;
    let d = state
        .archive
        .index()
        .retry_delivery(id, now_micros())
        .await?;
    let event = caller
        .event(EventId::InstancesAccessed, Action::Update)
        .with_detail(format!("retry of delivery {id} (report {})", d.report_id));
    state.archive.audit_or_log(event).await;
    Ok(no_store(Json(d)))
}

/// `GET /api/reports/{id}/verify`: public — whether the report's and its addenda's
/// signatures hold for what is stored now, and whose they are. No patient data.
#[utoipa::path(get, path = "/api/reports/{id}/verify", tag = "reports", security(()),
    params(("id" = i64, Path, description = "Report id")),
    responses((status = 200, body = Verification), (status = 404, body = ErrorBody)))]
pub async fn verify(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<Verification>, ApiError> {
    state
        .archive
        .index()
        .verify_report(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such report"))
}

/// `GET /api/report-templates`
#[utoipa::path(get, path = "/api/report-templates", tag = "reports",
    responses((status = 200, body = [Template])))]
pub async fn templates(_caller: Caller) -> Json<&'static [Template]> {
    Json(TEMPLATES)
}

/// `GET /api/admin/discrepancies`: per clinic, how its preliminary impressions were judged.
#[utoipa::path(get, path = "/api/admin/discrepancies", tag = "admin",
    responses((status = 200, body = [ClinicDiscrepancies]), (status = 403, body = ErrorBody)))]
pub async fn discrepancies(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<ClinicDiscrepancies>>, ApiError> {
    caller.require(&state, Capability::Administer).await?;
    Ok(Json(state.archive.index().discrepancy_rates().await?))
}

/// Query parameters of `GET /api/critical-findings`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CriticalParams {
    /// Only those not yet acknowledged (default true).
    pub open: Option<bool>,
}

/// `GET /api/critical-findings`: a clinic's notices, a radiologist's (reports they signed),
/// or all (administrators), newest first.
#[utoipa::path(get, path = "/api/critical-findings", tag = "reports", params(CriticalParams),
    responses((status = 200, body = [CriticalNotice]), (status = 400, body = ErrorBody)))]
pub async fn critical_findings(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<axum::extract::Query<CriticalParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let notices = state
        .archive
        .index()
        .critical_notices(caller.scope(), p.open.unwrap_or(true))
        .await?;
    let event = caller
        .event(EventId::Query, Action::Execute)
        .with_detail(format!("critical findings listed: {}", notices.len()));
    caller.audit_read(&state, event).await?;
    Ok(no_store(Json(notices)))
}

/// `POST /api/reports/{id}/critical/acknowledge`: a doctor of the originating clinic
/// confirms the critical finding was received (the first acknowledgement stands).
#[utoipa::path(post, path = "/api/reports/{id}/critical/acknowledge", tag = "reports",
    params(("id" = i64, Path, description = "Report id")),
    responses((status = 200, body = CriticalNotice), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn acknowledge_critical(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let acked = state
        .archive
        .index()
        .acknowledge_critical(&caller.principal, id, now_micros())
        .await;
    let study = acked.as_ref().ok().map(|n| n.study_instance_uid.clone());
    audit_write(
        &state,
        &caller,
        study,
        "critical finding acknowledged",
        &acked,
    )
    .await?;
    Ok(no_store(Json(acked?)))
}

/// Query parameters of `GET /api/portal/studies`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PortalParams {
    /// 1–1000, default 100.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// `GET /api/portal/studies`: the caller's studies with where they stand (received, in
/// reading, reported, critical), newest first.
#[utoipa::path(get, path = "/api/portal/studies", tag = "reports", params(PortalParams),
    responses((status = 200, body = [PortalStudy]), (status = 400, body = ErrorBody)))]
pub async fn portal_studies(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<axum::extract::Query<PortalParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    crate::error::check_page(p.limit, p.offset)?;
    let studies = state
        .archive
        .index()
        .portal_studies(
            caller.scope(),
            p.limit.unwrap_or(100),
            p.offset.unwrap_or(0),
        )
        .await?;
    let event = caller
        .event(EventId::Query, Action::Execute)
        .with_detail(format!("portal studies listed: {}", studies.len()));
    caller.audit_read(&state, event).await?;
    Ok(no_store(Json(studies)))
}

/// The signed report `id` the caller may see, audited as a read; 409 for a draft.
async fn signed_for_export(
    state: &ApiState,
    caller: &Caller,
    id: i64,
    form: &str,
) -> Result<Report, ApiError> {
    let report = read_report(state, caller, id, format!("report {id} as {form}")).await?;
    if report.signed_at.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the report is a draft: it is exported once signed",
        ));
    }
    Ok(report)
}

/// `GET /api/reports/{id}/fhir`: the signed report as a FHIR R4 DiagnosticReport.
#[utoipa::path(get, path = "/api/reports/{id}/fhir", tag = "reports",
    params(("id" = i64, Path, description = "Report id")),
    responses((status = 200, description = "application/fhir+json DiagnosticReport"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn fhir(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let report = signed_for_export(&state, &caller, id, "FHIR").await?;
    let body = pacs_store::reports::interop::fhir_diagnostic_report(&report)
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "the report is a draft"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/fhir+json; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response())
}

/// `GET /api/reports/{id}/hl7`: the signed report as an HL7 v2.5.1 ORU^R01 message
/// (segments separated by carriage returns, UTF-8).
#[utoipa::path(get, path = "/api/reports/{id}/hl7", tag = "reports",
    params(("id" = i64, Path, description = "Report id")),
    responses((status = 200, description = "application/hl7-v2 ORU^R01"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn hl7(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let report = signed_for_export(&state, &caller, id, "HL7 v2").await?;
    let clinic = match report.clinic_id {
        Some(cid) => state
            .archive
            .index()
            .list_clinics()
            .await?
            .into_iter()
            .find(|c| c.id == cid)
            .map(|c| c.name)
            .unwrap_or_default(),
        None => String::new(),
    };
    let message =
        pacs_store::reports::interop::hl7_oru(&report, "IMAGING CENTRE", &clinic, now_micros())
            .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "the report is a draft"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/hl7-v2; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        message,
    )
        .into_response())
}
