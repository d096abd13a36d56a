//! The admin API under `/api/admin`: users, API tokens, clinics and AE titles, study
//! assignments and the audit trail. The web admin pages use it; `GET /api/openapi.json`
//! describes it.
//!
//! Every handler first asks the access policy ([`Caller::require`]): only administrators
//! pass; anyone else gets 403 and a security alert in the audit trail. Changes go through
//! `pacs_store::admin`, which audits each of them (success or refusal) with the caller's
//! name and address. Answers carrying a secret (a new token) are `Cache-Control: no-store`.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pacs_store::access::{Assignment, Capability};
use pacs_store::admin::{Actor, Admin};
use pacs_store::ae_title::AeTitle;
use pacs_store::audit::{self, Action, AuditFilter, AuditRecord, EventId};
use pacs_store::index::{AeOptions, AeRegistration, ClinicSummary};
use pacs_store::users::{Password, Role, TokenId, TokenInfo, User, Username};

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use pacs_store::query::is_uid;

const CHANNEL: &str = "HTTP admin API";

/// Checks the caller may administer, and gives the audited administration of the store.
pub(crate) async fn admin<'a>(state: &'a ApiState, caller: &Caller) -> Result<Admin<'a>, ApiError> {
    caller.require(state, Capability::Administer).await?;
    Ok(state
        .archive
        .index()
        .admin(Actor::user(&caller.principal, caller.ip), CHANNEL))
}

fn username(raw: &str) -> Result<Username, ApiError> {
    Username::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

pub(crate) fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(ApiError::from)
}

// ---------------------------------------------------------------------------------------
// Users

/// `GET /api/admin/users`
#[utoipa::path(get, path = "/api/admin/users", tag = "admin",
    responses((status = 200, body = [User]), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<User>>, ApiError> {
    admin(&state, &caller).await?;
    Ok(Json(state.archive.index().list_users().await?))
}

/// `GET /api/admin/users/{username}`
#[utoipa::path(get, path = "/api/admin/users/{username}", tag = "admin",
    params(("username" = String, Path)),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    admin(&state, &caller).await?;
    let name = username(&name)?;
    state
        .archive
        .index()
        .find_user(&name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no user {name}")))
}

/// The body of `POST /api/admin/users`. No `Debug`: it holds a password.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    role: Role,
    /// The clinic's name: required for township doctors and clinicians, optional for
    /// service accounts, refused for admins and radiologists.
    clinic: Option<String>,
    /// Radiologists only (neuro, chest, msk…).
    #[serde(default)]
    subspecialties: Vec<String>,
    /// At least 12 characters; only a service account may have none.
    password: Option<String>,
}

/// `POST /api/admin/users`: 201 with the user.
#[utoipa::path(post, path = "/api/admin/users", tag = "admin", request_body = NewUser,
    responses((status = 201, body = User), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<ApiState>,
    caller: Caller,
    req: Result<Json<NewUser>, JsonRejection>,
) -> Result<Response, ApiError> {
    let admin = admin(&state, &caller).await?;
    let req = body(req)?;
    let name = username(&req.username)?;
    let password = req
        .password
        .as_deref()
        .map(Password::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let user = admin
        .create_user(
            &name,
            req.role,
            req.clinic.as_deref(),
            &req.subspecialties,
            password.as_ref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// `POST /api/admin/users/{username}/disable`: also ends the user's sessions.
#[utoipa::path(post, path = "/api/admin/users/{username}/disable", tag = "admin",
    params(("username" = String, Path)),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn disable_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    set_disabled(state, caller, name, true).await
}

/// `POST /api/admin/users/{username}/enable`
#[utoipa::path(post, path = "/api/admin/users/{username}/enable", tag = "admin",
    params(("username" = String, Path)),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn enable_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    set_disabled(state, caller, name, false).await
}

async fn set_disabled(
    state: ApiState,
    caller: Caller,
    name: String,
    disabled: bool,
) -> Result<Json<User>, ApiError> {
    let admin = admin(&state, &caller).await?;
    let name = username(&name)?;
    if disabled && name == caller.principal.username {
        return Err(ApiError::bad_request(
            "you cannot disable your own account: ask another administrator",
        ));
    }
    let user = admin.set_user_disabled(&name, disabled).await?;
    if disabled {
        // Their open websockets on this node close now, not at the next re-check.
        state.live.recheck_now();
    }
    Ok(Json(user))
}

/// The body of `PUT /api/admin/users/{username}/password`. No `Debug`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    password: String,
}

/// `PUT /api/admin/users/{username}/password`: sets a new password and ends the user's
/// sessions. 204.
#[utoipa::path(put, path = "/api/admin/users/{username}/password", tag = "admin",
    params(("username" = String, Path)), request_body = NewPassword,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn reset_password(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    req: Result<Json<NewPassword>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let admin = admin(&state, &caller).await?;
    let name = username(&name)?;
    let req = body(req)?;
    let password =
        Password::parse(&req.password).map_err(|e| ApiError::bad_request(e.to_string()))?;
    admin.reset_password(&name, &password).await?;
    // The reset ended the user's sessions: their websockets too.
    state.live.recheck_now();
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Tokens

/// `GET /api/admin/users/{username}/tokens`: revoked and expired ones too, no secrets.
#[utoipa::path(get, path = "/api/admin/users/{username}/tokens", tag = "admin",
    params(("username" = String, Path)),
    responses((status = 200, body = [TokenInfo]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    admin(&state, &caller).await?;
    let name = username(&name)?;
    Ok(Json(state.archive.index().list_tokens(&name).await?))
}

/// The body of `POST /api/admin/users/{username}/tokens`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// What the token is for ("prometheus", "report-gateway").
    label: String,
    /// Lifetime in days (1–3660); none: until revoked.
    expires_in_days: Option<u32>,
}

/// A token just created: `token` is shown now and never again.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    id: TokenId,
    /// `pacs_` and 64 hex digits: send as `Authorization: Bearer <token>`.
    token: String,
    /// Unix microseconds; none: until revoked.
    expires_at: Option<i64>,
}

/// `POST /api/admin/users/{username}/tokens`: 201 with the secret, shown once.
#[utoipa::path(post, path = "/api/admin/users/{username}/tokens", tag = "admin",
    params(("username" = String, Path)), request_body = NewTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    req: Result<Json<NewTokenRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let admin = admin(&state, &caller).await?;
    let name = username(&name)?;
    let req = body(req)?;
    let ttl = match req.expires_in_days {
        None => None,
        Some(d @ 1..=3660) => Some(Duration::from_secs(u64::from(d) * 86_400)),
        Some(_) => {
            return Err(ApiError::bad_request(
                "expires_in_days must be between 1 and 3660",
            ));
        }
    };
    let token = admin.create_token(&name, &req.label, ttl).await?;
    let created = CreatedToken {
        id: token.id,
        token: token.secret,
        expires_at: token.expires_at,
    };
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(created),
    )
        .into_response())
}

/// `DELETE /api/admin/tokens/{id}`: revokes for good. 204.
#[utoipa::path(delete, path = "/api/admin/tokens/{id}", tag = "admin",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let admin = admin(&state, &caller).await?;
    let id: TokenId = id
        .parse()
        .map_err(|e: pacs_store::StoreError| ApiError::bad_request(e.to_string()))?;
    admin.revoke_token(id).await?;
    state.live.recheck_now();
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Study assignments

/// The body of `POST /api/admin/studies/{uid}/assignments`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// A radiologist's username.
    username: String,
}

/// `POST /api/admin/studies/{uid}/assignments`: gives the study to a radiologist to read
/// (they then see it and that patient's priors). 201; assigning again is harmless.
#[utoipa::path(post, path = "/api/admin/studies/{study_instance_uid}/assignments", tag = "admin",
    params(("study_instance_uid" = String, Path)), request_body = AssignRequest,
    responses((status = 201, body = Assignment), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn assign_study(
    State(state): State<ApiState>,
    caller: Caller,
    Path(uid): Path<String>,
    req: Result<Json<AssignRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let admin = admin(&state, &caller).await?;
    if !is_uid(&uid) {
        return Err(ApiError::bad_request("not a Study Instance UID"));
    }
    let req = body(req)?;
    let name = username(&req.username)?;
    let a = admin.assign_study(&uid, &name).await?;
    Ok((StatusCode::CREATED, Json(a)).into_response())
}

/// `DELETE /api/admin/studies/{uid}/assignments/{username}`: takes the study back. 204.
#[utoipa::path(delete, path = "/api/admin/studies/{study_instance_uid}/assignments/{username}",
    tag = "admin", params(("study_instance_uid" = String, Path), ("username" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_assignment(
    State(state): State<ApiState>,
    caller: Caller,
    Path((uid, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let admin = admin(&state, &caller).await?;
    if !is_uid(&uid) {
        return Err(ApiError::bad_request("not a Study Instance UID"));
    }
    let name = username(&name)?;
    admin.revoke_assignment(&uid, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Audit trail

/// Query parameters of `GET /api/admin/audit`; every one given must match.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Patient ID (exact).
    patient: Option<String>,
    /// Username or AE title (exact).
    user: Option<String>,
    /// From (inclusive): `2026-03-01` or RFC 3339.
    since: Option<String>,
    /// Until (inclusive): a date means the end of that day.
    until: Option<String>,
    /// PS3.15 event ID (110100–110114).
    event: Option<i64>,
    /// Study Instance UID (exact).
    study: Option<String>,
    /// Only entries with an id below this one: the next (older) page is
    /// `before=<the smallest id of this page>`.
    before: Option<i64>,
    /// At most this many, the most recent (1–10000, default 100).
    limit: Option<i64>,
}

/// `GET /api/admin/audit`: matching entries, oldest first, with their hashes (the most
/// recent `limit`; older ones with `before`). The search is itself audited (110101 Audit
/// Log Used).
#[utoipa::path(get, path = "/api/admin/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, description = "Audit entries (JSON objects)", body = [serde_json::Value]),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn search_audit(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&state, Capability::ReadAuditTrail).await?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(crate::studies::query_reason(&e)))?;
    let time = |v: &Option<String>, name: &str, end: bool| {
        v.as_deref()
            .map(|s| audit::parse_time(s, end))
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
    };
    let filter = AuditFilter {
        patient: q.patient.clone(),
        user: q.user.clone(),
        since: time(&q.since, "since", false)?,
        until: time(&q.until, "until", true)?,
        event_id: q
            .event
            .map(|c| {
                EventId::from_code(c).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "event {c} is not a PS3.15 audit event ID (110100 to 110114)"
                    ))
                })
            })
            .transpose()?,
        study: match q.study.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(uid) if is_uid(uid) => Some(uid.to_owned()),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "study must be a Study Instance UID (digits and dots)",
                ));
            }
        },
        before: match q.before {
            None => None,
            Some(b @ 1..) => Some(b),
            Some(_) => return Err(ApiError::bad_request("before must be an entry id above 0")),
        },
        limit: match q.limit {
            None => None,
            Some(l @ 1..=10_000) => Some(l),
            Some(_) => return Err(ApiError::bad_request("limit must be between 1 and 10000")),
        },
    };
    let records = state.archive.index().search_audit(&filter).await?;
    let event = caller
        .event(EventId::AuditLogUsed, Action::Read)
        .with_patient(filter.patient.clone(), None)
        .with_study(filter.study.clone())
        .with_detail(format!(
            "{CHANNEL}: audit search{}{}; {} entries",
            q.user
                .as_deref()
                .map_or(String::new(), |u| format!(" user {u}")),
            q.event.map_or(String::new(), |e| format!(" event {e}")),
            records.len()
        ));
    caller.audit_read(&state, event).await?;
    let body: Vec<serde_json::Value> = records.iter().map(AuditRecord::to_json).collect();
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

// ---------------------------------------------------------------------------------------
// Clinics and AE titles

fn ae_title(raw: &str) -> Result<AeTitle, ApiError> {
    AeTitle::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `GET /api/admin/clinics`: every clinic with its AE titles and their rules.
#[utoipa::path(get, path = "/api/admin/clinics", tag = "admin",
    responses((status = 200, body = [ClinicSummary]), (status = 403, body = ErrorBody)))]
pub async fn list_clinics(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<ClinicSummary>>, ApiError> {
    admin(&state, &caller).await?;
    Ok(Json(state.archive.index().list_clinics().await?))
}

/// The body of `POST /api/admin/clinics`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClinic {
    /// 1–200 printable characters, unique.
    name: String,
}

/// `POST /api/admin/clinics`: 201 with the clinic; 409 when the name is taken.
#[utoipa::path(post, path = "/api/admin/clinics", tag = "admin", request_body = NewClinic,
    responses((status = 201, body = ClinicSummary), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_clinic(
    State(state): State<ApiState>,
    caller: Caller,
    req: Result<Json<NewClinic>, JsonRejection>,
) -> Result<Response, ApiError> {
    let admin = admin(&state, &caller).await?;
    let req = body(req)?;
    let clinic = admin.create_clinic(&req.name).await?;
    Ok((StatusCode::CREATED, Json(clinic)).into_response())
}

/// The body of `POST /api/admin/clinics/{name}/ae-titles`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAe {
    /// 1–16 characters of the DICOM default repertoire, no backslash.
    ae_title: String,
    /// Accept this AE title only from this IP address.
    #[schema(value_type = Option<String>)]
    host: Option<std::net::IpAddr>,
    /// Accept it only on the DICOM TLS port.
    #[serde(default)]
    tls_only: bool,
    /// Accept it only with a client certificate the TLS port verified (implies TLS only).
    #[serde(default)]
    require_client_cert: bool,
    /// The port the AE listens on: with `host`, a C-MOVE destination for its clinic.
    port: Option<u16>,
    /// Push the clinic's signed reports (SR and PDF) here (needs `host` and `port`).
    #[serde(default)]
    receives_reports: bool,
}

/// `POST /api/admin/clinics/{name}/ae-titles`: registers a calling AE title for the
/// clinic. 201; 409 when the AE title is registered already (to any clinic).
#[utoipa::path(post, path = "/api/admin/clinics/{name}/ae-titles", tag = "admin",
    params(("name" = String, Path, description = "The clinic's name")), request_body = NewAe,
    responses((status = 201, body = AeRegistration), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_ae(
    State(state): State<ApiState>,
    caller: Caller,
    Path(clinic): Path<String>,
    req: Result<Json<NewAe>, JsonRejection>,
) -> Result<Response, ApiError> {
    let admin = admin(&state, &caller).await?;
    let req = body(req)?;
    let ae = ae_title(&req.ae_title)?;
    // The admin API registers AE titles for clinics that exist (`POST /clinics` first): a
    // typo in a clinic's name must not create a second clinic.
    let clinics = state.archive.index().list_clinics().await?;
    if !clinics.iter().any(|c| c.name == clinic.trim()) {
        return Err(ApiError::not_found(format!(
            "no clinic named {:?}: create it first (POST /api/admin/clinics)",
            clinic.trim()
        )));
    }
    let options = AeOptions {
        host: req.host,
        tls_only: req.tls_only,
        require_client_cert: req.require_client_cert,
        port: req.port,
        receives_reports: req.receives_reports,
    };
    let reg = admin.add_ae(&clinic, &ae, options).await?;
    Ok((StatusCode::CREATED, Json(reg)).into_response())
}

/// `PUT /api/admin/ae-titles/{ae_title}`: replaces the AE title's rules (host binding,
/// TLS only, client certificate).
#[utoipa::path(put, path = "/api/admin/ae-titles/{ae_title}", tag = "admin",
    params(("ae_title" = String, Path)), request_body = AeOptions,
    responses((status = 200, body = AeRegistration), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_ae(
    State(state): State<ApiState>,
    caller: Caller,
    Path(raw): Path<String>,
    req: Result<Json<AeOptions>, JsonRejection>,
) -> Result<Json<AeRegistration>, ApiError> {
    let admin = admin(&state, &caller).await?;
    let ae = ae_title(&raw)?;
    let options = body(req)?;
    Ok(Json(admin.update_ae(&ae, options).await?))
}

/// `DELETE /api/admin/ae-titles/{ae_title}`: the AE title may no longer send. 204. What
/// it sent stays in the archive.
#[utoipa::path(delete, path = "/api/admin/ae-titles/{ae_title}", tag = "admin",
    params(("ae_title" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_ae(
    State(state): State<ApiState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let admin = admin(&state, &caller).await?;
    let ae = ae_title(&raw)?;
    admin.remove_ae(&ae).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Dashboard

/// Query parameters of `GET /api/admin/dashboard`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DashboardQuery {
    /// The last this many UTC days, today included (1–366, default 14).
    days: Option<String>,
}

/// `GET /api/admin/dashboard`: studies received per clinic per UTC day, reading turnaround
/// percentiles per priority of the tasks done in the window, the backlog and what is
/// overdue now, and the discrepancy rates per clinic. No patient data.
#[utoipa::path(get, path = "/api/admin/dashboard", tag = "admin", params(DashboardQuery),
    responses((status = 200, body = pacs_store::dashboard::Dashboard),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn dashboard(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<DashboardQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    admin(&state, &caller).await?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(crate::studies::query_reason(&e)))?;
    let max = pacs_store::dashboard::MAX_DAYS;
    let days = match q.days.as_deref().map(str::trim) {
        None => 14,
        Some(d) => match d.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "days must be a whole number from 1 to {max}, not {d:?}"
                )));
            }
        },
    };
    let board = state
        .archive
        .index()
        .dashboard(days, pacs_store::index::now_micros())
        .await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(board)).into_response())
}
