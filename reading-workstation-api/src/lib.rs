//! # reading-workstation-api — the archive's HTTP face
//!
//! Served over HTTPS ([`tls`]) when a certificate is configured. Routes:
//! - `GET /healthz`: liveness + index reachability (no authentication);
//! - `POST /api/login`, `POST /api/logout`, `GET /api/me`: browser sessions ([`auth`]);
//! - `GET /metrics`: Prometheus text (ingest counters and latencies), for service accounts
//!   and administrators;
//! - `GET /api/studies`, `GET /api/studies/{uid}`: the studies the caller may see
//!   ([`studies`], through the access policy of `pacs_store::access`);
//! - `/api/admin/…`: users, tokens, clinics and AE titles, study assignments, audit search,
//!   the dashboard ([`admin`]);
//! - `GET /api/openapi.json`: the OpenAPI document of all of this ([`openapi`]);
//! - `GET /`, `GET /assets/…`: the web viewer's built files ([`viewer`]), without
//!   credentials (public code, no data);
//! - `/dicom-web/…`: DICOMweb ([`dicomweb`]): QIDO-RS searches, WADO-RS retrieve, metadata,
//!   frames and bulk data (HTTP Basic accepted here); `GET /dicom-web/` says who the
//!   caller is. STOW-RS, the worklist and reports come later.
//!
//! Every route but `/healthz`, the login and the viewer's files needs credentials
//! ([`auth::authenticate`]).
//! Every response carries the security headers; errors are [`error::ApiError`], whose
//! bodies never carry internals. This crate never depends on `dicom-scp`.

pub mod admin;
pub mod auth;
pub mod dicomweb;
pub mod error;
pub mod live;
pub mod openapi;
pub mod render;
pub mod reports;
pub mod studies;
pub mod tls;
pub mod viewer;
pub mod worklist;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::serve::ListenerExt as _;
use metrics_exporter_prometheus::PrometheusHandle;
use pacs_store::archive::Archive;

use crate::error::ApiError;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct ApiState {
    pub archive: Archive,
    pub metrics: Option<PrometheusHandle>,
    /// Served over HTTPS: the session cookie is marked `Secure`.
    pub https: bool,
    /// How long browser sessions live.
    pub session_ttl: pacs_store::users::SessionTtl,
    /// The worklist's claim lease and deadlines.
    pub worklist: pacs_store::worklist::WorklistPolicy,
    /// Seals the radiologists' signing keys (`pacs_store::reports::signing`).
    pub report_key: Arc<pacs_store::reports::signing::ReportKey>,
    /// The live feed's reader of the outbox ([`live`]).
    pub live: live::LiveFeed,
    /// The web viewer's built files (`index.html`, `assets/`), served at `/` ([`viewer`]).
    pub viewer_dir: PathBuf,
}

/// The whole HTTP application. It needs the client's address
/// (`into_make_service_with_connect_info::<SocketAddr>`, as [`run`] does) for login
/// throttling and the audit trail.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/api/login",
            post(auth::login).layer(DefaultBodyLimit::max(auth::LOGIN_BODY_LIMIT)),
        )
        .route("/api/logout", post(auth::logout))
        .route("/api/me", get(auth::me))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/studies", get(studies::list))
        .route("/api/studies/{uid}", get(studies::get_one))
        .route(
            "/api/admin/users",
            get(admin::list_users).post(admin::create_user),
        )
        .route("/api/admin/users/{username}", get(admin::get_user))
        .route(
            "/api/admin/users/{username}/disable",
            post(admin::disable_user),
        )
        .route(
            "/api/admin/users/{username}/enable",
            post(admin::enable_user),
        )
        .route(
            "/api/admin/users/{username}/password",
            put(admin::reset_password),
        )
        .route(
            "/api/admin/users/{username}/tokens",
            get(admin::list_tokens).post(admin::create_token),
        )
        .route("/api/admin/tokens/{id}", delete(admin::revoke_token))
        .route(
            "/api/admin/studies/{uid}/assignments",
            post(admin::assign_study),
        )
        .route(
            "/api/admin/studies/{uid}/assignments/{username}",
            delete(admin::revoke_assignment),
        )
        .route("/api/admin/audit", get(admin::search_audit))
        .route("/api/admin/dashboard", get(admin::dashboard))
        .route("/api/events", get(live::events))
        .route("/api/worklist", get(worklist::list))
        .route("/api/worklist/tasks/{id}/report", put(reports::save_draft))
        .route(
            "/api/studies/{uid}/preliminary",
            post(reports::save_preliminary),
        )
        .route("/api/studies/{uid}/reports", get(reports::study_reports))
        .route("/api/reports/{id}", get(reports::get_one))
        .route("/api/reports/{id}/sign", post(reports::sign))
        .route("/api/reports/{id}/addenda", post(reports::add_addendum))
        .route("/api/reports/{id}/verify", get(reports::verify))
        .route("/api/reports/{id}/fhir", get(reports::fhir))
        .route("/api/reports/{id}/hl7", get(reports::hl7))
        .route("/api/reports/{id}/pdf", get(reports::pdf))
        .route("/api/reports/{id}/deliveries", get(reports::deliveries))
        .route("/api/admin/deliveries", get(reports::admin_deliveries))
        .route(
            "/api/admin/deliveries/{id}/retry",
            post(reports::retry_delivery),
        )
        .route("/api/report-templates", get(reports::templates))
        .route("/api/critical-findings", get(reports::critical_findings))
        .route(
            "/api/reports/{id}/critical/acknowledge",
            post(reports::acknowledge_critical),
        )
        .route("/api/portal/studies", get(reports::portal_studies))
        .route("/api/admin/discrepancies", get(reports::discrepancies))
        .route("/api/worklist/tasks/{id}/claim", post(worklist::claim))
        .route("/api/worklist/tasks/{id}/release", post(worklist::release))
        .route(
            "/api/admin/worklist/tasks/{id}/reassign",
            post(worklist::reassign),
        )
        .route(
            "/api/admin/worklist/tasks/{id}/return-to-pool",
            post(worklist::return_to_pool),
        )
        .route(
            "/api/admin/routing-rules",
            get(worklist::list_rules).post(worklist::create_rule),
        )
        .route(
            "/api/admin/routing-rules/{id}",
            put(worklist::update_rule).delete(worklist::delete_rule),
        )
        .route(
            "/api/admin/users/{username}/reading-profile",
            put(worklist::set_reading_profile),
        )
        .route(
            "/api/admin/clinics",
            get(admin::list_clinics).post(admin::create_clinic),
        )
        .route("/api/admin/clinics/{name}/ae-titles", post(admin::add_ae))
        .route(
            "/api/admin/ae-titles/{ae_title}",
            put(admin::update_ae).delete(admin::remove_ae),
        )
        .route("/dicom-web/", get(auth::dicom_web_root))
        .route(
            "/dicom-web/studies",
            get(dicomweb::qido::studies)
                .post(dicomweb::stow::store)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/dicom-web/series", get(dicomweb::qido::series))
        .route("/dicom-web/wado", get(dicomweb::wado_uri::get))
        .route("/dicom-web/instances", get(dicomweb::qido::instances))
        .route(
            "/dicom-web/studies/{study}",
            get(dicomweb::wado::study)
                .post(dicomweb::stow::store_in_study)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}",
            get(dicomweb::wado::series),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}",
            get(dicomweb::wado::instance),
        )
        .route(
            "/dicom-web/studies/{study}/metadata",
            get(dicomweb::metadata::study),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/metadata",
            get(dicomweb::metadata::series),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/metadata",
            get(dicomweb::metadata::instance),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/rendered",
            get(dicomweb::rendered::instance),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
            get(dicomweb::rendered::frame),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            get(dicomweb::rendered::instance_thumbnail),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/thumbnail",
            get(dicomweb::rendered::series_thumbnail),
        )
        .route(
            "/dicom-web/studies/{study}/thumbnail",
            get(dicomweb::rendered::study_thumbnail),
        )
        .route(
            "/dicom-web/studies/{study}/rendered",
            get(dicomweb::rendered::not_offered),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/rendered",
            get(dicomweb::rendered::not_offered),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            get(dicomweb::frames::frames),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
            get(dicomweb::frames::bulkdata),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/pixeldata",
            get(dicomweb::frames::series_pixeldata),
        )
        .route(
            "/dicom-web/studies/{study}/series",
            get(dicomweb::qido::study_series),
        )
        .route(
            "/dicom-web/studies/{study}/instances",
            get(dicomweb::qido::study_instances),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances",
            get(dicomweb::qido::series_instances),
        )
        .merge(viewer::routes(&state.viewer_dir))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            wake_live_feed,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` resolves: HTTPS when `tls` is
/// given, plain HTTP otherwise.
///
/// Every connection gets `TCP_NODELAY`: with Nagle's algorithm on, the last short segment
/// of a response waits for the client's delayed ACK, and on a kept-alive connection (a
/// browser fetching a series frame by frame) every other response took 40 ms longer —
/// measured: 20 frames of a CT on one connection, half of them 44–48 ms instead of 3 ms.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: ApiState,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(config) => {
            // `tap_io` only to get axum's `ConnectInfo<SocketAddr>` for any listener whose
            // address is a `SocketAddr`.
            let listener = tls::TlsListener::new(listener, config)?.tap_io(|_| {});
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

async fn healthz(State(state): State<ApiState>) -> Response {
    match state.archive.index().ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ok" })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: index unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "status": "unavailable", "reason": "index database unreachable" })),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<ApiState>, caller: auth::Caller) -> Response {
    if let Err(e) = caller
        .require(&state, pacs_store::access::Capability::ReadMetrics)
        .await
    {
        return e.into_response();
    }
    match &state.metrics {
        Some(h) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            h.render(),
        )
            .into_response(),
        None => ApiError::not_found("metrics are not enabled").into_response(),
    }
}

/// After a state-changing request that succeeded (a claim, a release, a signature, a
/// preliminary impression, a STOW-RS upload…), wakes the live feed's reader so that the
/// outbox events it committed go out now rather than at the next poll (`live::POLL`). A
/// request that wrote no event costs one empty read of the outbox, and only while someone
/// is connected.
async fn wake_live_feed(
    State(state): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let writes = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let res = next.run(req).await;
    if writes && res.status().is_success() {
        state.archive.index().notify_events();
    }
    res
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// The Content-Security-Policy of every answer. Everything comes from this origin only, and
/// no inline script, inline event handler or `eval` ever runs. What the web viewer
/// (Cornerstone3D and its DICOM image loader) needs beyond `default-src 'self'`:
/// - `'wasm-unsafe-eval'` in `script-src`: the image codecs (JPEG-LS, JPEG 2000, JPEG
///   baseline…) are WebAssembly, and compiling WebAssembly is "eval" to CSP. This keyword
///   allows exactly that and not `eval()`/`new Function` of JavaScript
///   (`'unsafe-eval'` stays out).
/// - `blob:` in `img-src`: the viewer tools draw their mouse cursors as SVG images that
///   they make in the page and load from `blob:` URLs.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     img-src 'self' blob:; frame-ancestors 'none'; object-src 'none'; base-uri 'none'; \
     form-action 'self'";

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}
