//! The reading worklist over HTTP (`pacs_store::worklist`):
//! - `GET /api/worklist`: the caller's worklist (`view` = mine, pool, overdue, all;
//!   filters `modality`, `priority`, `clinic`; `sort` = priority, due, ready), through the
//!   access policy — a radiologist sees their tasks and the pool, a clinic's users their
//!   clinic's tasks, administrators all. Audited as a query (110112).
//! - `POST /api/worklist/tasks/{id}/claim` (also renews the lease) and `…/release`:
//!   radiologists only; 409 with who holds it when someone else does.
//! - Administrators: `POST /api/admin/worklist/tasks/{id}/reassign` and `…/return-to-pool`;
//!   routing rules at `/api/admin/routing-rules`; a radiologist's credentials and shifts at
//!   `PUT /api/admin/users/{username}/reading-profile`. Audited like all administration.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pacs_store::access::Capability;
use pacs_store::audit::{Action, EventId};
use pacs_store::index::now_micros;
use pacs_store::users::Username;
use pacs_store::worklist::{
    Claim, Priority, ReadingProfile, RoutingRule, Sort, View, WorklistItem, WorklistQuery,
};

use crate::ApiState;
use crate::admin::{admin, body};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

/// Query parameters of `GET /api/worklist`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WorklistParams {
    /// mine, pool, overdue or all (default: mine for radiologists, all for others).
    pub view: Option<String>,
    /// Only studies with this modality (CT, MR…).
    pub modality: Option<String>,
    /// stat, urgent or routine.
    pub priority: Option<String>,
    /// Only this clinic (by name).
    pub clinic: Option<String>,
    /// priority (default), due or ready.
    pub sort: Option<String>,
    /// 1–1000, default 200.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

fn parse_view(v: &str) -> Result<View, ApiError> {
    match v {
        "mine" => Ok(View::Mine),
        "pool" => Ok(View::Pool),
        "overdue" => Ok(View::Overdue),
        "all" => Ok(View::All),
        _ => Err(ApiError::bad_request(
            "view must be mine, pool, overdue or all",
        )),
    }
}

fn parse_sort(v: &str) -> Result<Sort, ApiError> {
    match v {
        "priority" => Ok(Sort::Priority),
        "due" => Ok(Sort::Due),
        "ready" => Ok(Sort::Ready),
        _ => Err(ApiError::bad_request("sort must be priority, due or ready")),
    }
}

/// `GET /api/worklist`
#[utoipa::path(get, path = "/api/worklist", tag = "worklist", params(WorklistParams),
    responses((status = 200, body = [WorklistItem]), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<WorklistParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    for (name, v) in [
        ("modality", &p.modality),
        ("clinic", &p.clinic),
        ("view", &p.view),
        ("sort", &p.sort),
        ("priority", &p.priority),
    ] {
        if v.as_ref().is_some_and(|v| v.chars().count() > 64) {
            return Err(ApiError::bad_request(format!(
                "{name} is longer than 64 characters"
            )));
        }
    }
    let is_radiologist = caller.principal.role == pacs_store::users::Role::Radiologist;
    let view = match p.view.as_deref() {
        Some(v) => parse_view(v)?,
        None if is_radiologist => View::Mine,
        None => View::All,
    };
    let priority = match p.priority.as_deref() {
        Some(v) => Some(
            Priority::parse(v)
                .ok_or_else(|| ApiError::bad_request("priority must be stat, urgent or routine"))?,
        ),
        None => None,
    };
    crate::error::check_page(p.limit, p.offset)?;
    let index = state.archive.index();
    let clinic_id = match p.clinic.as_deref() {
        Some(name) => Some(
            index
                .list_clinics()
                .await?
                .into_iter()
                .find(|c| c.name == name)
                .map(|c| c.id)
                .ok_or_else(|| ApiError::bad_request(format!("no clinic named {name:?}")))?,
        ),
        None => None,
    };
    let query = WorklistQuery {
        view,
        modality: p.modality.clone(),
        priority,
        clinic_id,
        sort: p
            .sort
            .as_deref()
            .map(parse_sort)
            .transpose()?
            .unwrap_or_default(),
        limit: p.limit.unwrap_or(200),
        offset: p.offset.unwrap_or(0),
    };
    let items = index
        .worklist(
            caller.scope(),
            caller.principal.user_id,
            &query,
            now_micros(),
        )
        .await?;
    let event = caller
        .event(EventId::Query, Action::Execute)
        .with_detail(format!("worklist ({view:?}) listed: {} tasks", items.len()));
    caller.audit_read(&state, event).await?;
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(items),
    )
        .into_response())
}

/// What a claim answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ClaimAnswer {
    pub task_id: i64,
    /// Unix microseconds: claim again before then to keep the task.
    pub lease_expires_at: i64,
}

/// `POST /api/worklist/tasks/{id}/claim`: take (or keep) a task; 409 when another
/// radiologist holds it or it is routed to another.
#[utoipa::path(post, path = "/api/worklist/tasks/{id}/claim", tag = "worklist",
    params(("id" = i64, Path, description = "Task id")),
    responses((status = 200, body = ClaimAnswer), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn claim(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    caller.require(&state, Capability::ClaimTasks).await?;
    let index = state.archive.index();
    visible_task(&state, &caller, id).await?;
    let answer = index
        .claim_task(&state.worklist, id, caller.principal.user_id, now_micros())
        .await?;
    match answer {
        Claim::Held { lease_expires_at } => Ok(Json(ClaimAnswer {
            task_id: id,
            lease_expires_at,
        })
        .into_response()),
        Claim::HeldByOther { user_id, .. } => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "task {id} is being read by {}",
                username_of(&state, user_id).await
            ),
        )),
        Claim::RoutedToOther { user_id } => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "task {id} is routed to {}; an administrator can reassign it",
                username_of(&state, user_id).await
            ),
        )),
        Claim::Closed => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("task {id} is closed"),
        )),
    }
}

/// `POST /api/worklist/tasks/{id}/release`: give a claimed task back.
#[utoipa::path(post, path = "/api/worklist/tasks/{id}/release", tag = "worklist",
    params(("id" = i64, Path, description = "Task id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn release(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    caller.require(&state, Capability::ClaimTasks).await?;
    visible_task(&state, &caller, id).await?;
    let released = state
        .archive
        .index()
        .release_task(id, caller.principal.user_id, now_micros())
        .await?;
    if !released {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("task {id} is not claimed by you"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 404 unless the caller's worklist scope includes the task (the same answer as for a
/// task that does not exist).
async fn visible_task(state: &ApiState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    let visible = state
        .archive
        .index()
        .task_visible(caller.scope(), id)
        .await?;
    if visible {
        Ok(())
    } else {
        Err(ApiError::not_found("no such task"))
    }
}

async fn username_of(state: &ApiState, user_id: i64) -> String {
    match state.archive.index().username_of(user_id).await {
        Ok(Some(name)) => name,
        _ => "another radiologist".into(),
    }
}

/// The body of `POST /api/admin/worklist/tasks/{id}/reassign`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reassign {
    /// The radiologist to read it.
    pub username: String,
}

/// `POST /api/admin/worklist/tasks/{id}/reassign`
#[utoipa::path(post, path = "/api/admin/worklist/tasks/{id}/reassign", tag = "admin",
    params(("id" = i64, Path, description = "Task id")), request_body = Reassign,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn reassign(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
    req: Result<Json<Reassign>, JsonRejection>,
) -> Result<Response, ApiError> {
    let admin = admin(&state, &caller).await?;
    let req = body(req)?;
    let username =
        Username::parse(&req.username).map_err(|e| ApiError::bad_request(e.to_string()))?;
    admin.reassign_task(id, &username).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/admin/worklist/tasks/{id}/return-to-pool`
#[utoipa::path(post, path = "/api/admin/worklist/tasks/{id}/return-to-pool", tag = "admin",
    params(("id" = i64, Path, description = "Task id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn return_to_pool(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    admin(&state, &caller)
        .await?
        .return_task_to_pool(id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/admin/routing-rules`: in the order they are tried.
#[utoipa::path(get, path = "/api/admin/routing-rules", tag = "admin",
    responses((status = 200, body = [RoutingRule]), (status = 403, body = ErrorBody)))]
pub async fn list_rules(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<RoutingRule>>, ApiError> {
    admin(&state, &caller).await?;
    Ok(Json(state.archive.index().routing_rules().await?))
}

/// `POST /api/admin/routing-rules`: 201 with the rule; 409 when the name is taken.
#[utoipa::path(post, path = "/api/admin/routing-rules", tag = "admin", request_body = RoutingRule,
    responses((status = 201, body = RoutingRule), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_rule(
    State(state): State<ApiState>,
    caller: Caller,
    req: Result<Json<RoutingRule>, JsonRejection>,
) -> Result<Response, ApiError> {
    let admin = admin(&state, &caller).await?;
    let rule = admin.create_routing_rule(&body(req)?).await?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

/// `PUT /api/admin/routing-rules/{id}`: replaces the rule.
#[utoipa::path(put, path = "/api/admin/routing-rules/{id}", tag = "admin",
    params(("id" = i64, Path, description = "Rule id")), request_body = RoutingRule,
    responses((status = 200, body = RoutingRule), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_rule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
    req: Result<Json<RoutingRule>, JsonRejection>,
) -> Result<Json<RoutingRule>, ApiError> {
    let admin = admin(&state, &caller).await?;
    Ok(Json(admin.update_routing_rule(id, &body(req)?).await?))
}

/// `DELETE /api/admin/routing-rules/{id}`
#[utoipa::path(delete, path = "/api/admin/routing-rules/{id}", tag = "admin",
    params(("id" = i64, Path, description = "Rule id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_rule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    admin(&state, &caller)
        .await?
        .delete_routing_rule(id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /api/admin/users/{username}/reading-profile`: a radiologist's credentials
/// (modalities; none: all) and weekly shifts (UTC minutes of the week; none: always).
#[utoipa::path(put, path = "/api/admin/users/{username}/reading-profile", tag = "admin",
    params(("username" = String, Path, description = "A radiologist")),
    request_body = ReadingProfile,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn set_reading_profile(
    State(state): State<ApiState>,
    caller: Caller,
    Path(username): Path<String>,
    req: Result<Json<ReadingProfile>, JsonRejection>,
) -> Result<Response, ApiError> {
    let admin = admin(&state, &caller).await?;
    let username = Username::parse(&username).map_err(|e| ApiError::bad_request(e.to_string()))?;
    admin.set_reading_profile(&username, &body(req)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
