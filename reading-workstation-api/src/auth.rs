//! Authentication: who is calling, decided once per request by [`authenticate`].
//!
//! Credentials, in this order:
//! - `Authorization: Bearer <token>`: an API token (`pacs user token create`); no CSRF
//!   check (a browser never adds it by itself).
//! - `Authorization: Basic …`: username and password, only under `/dicom-web` (DICOMweb
//!   clients); checked and throttled like a login, failures audited.
//! - the `pacs_session` cookie set by `POST /api/login` (HttpOnly, SameSite=Strict, Path=/,
//!   Secure over HTTPS). A request that may change state (anything but GET, HEAD, OPTIONS)
//!   must also carry the session's CSRF token in `X-CSRF-Token`.
//!
//! Every route needs one of them except `GET /healthz`, `POST /api/login` and the web
//! viewer's built files (`GET /`, `GET /assets/…`: public code, no data); without, the
//! answer is 401 whatever the path (so the routes that exist are not revealed).
//! Malformed `Authorization` headers are 400 with a reason. The authenticated [`Caller`]
//! goes into the request's extensions, where handlers take it as an extractor.
//!
//! Logins (success and failure) and logouts write a 110114 User Authentication audit event
//! with the attempted username and the client address. No password, token, cookie or CSRF
//! token is ever logged: [`Secret`] hides itself in `Debug`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use pacs_store::access::{self, Capability, Scope};
use pacs_store::audit::{Action, AuditEvent, EventId, EventType, Outcome, format_micros};
use pacs_store::users::{AuthFailure, Principal, Username};

use crate::ApiState;
use crate::error::{ApiError, Challenge, ErrorBody};

/// The browser session cookie.
pub const SESSION_COOKIE: &str = "pacs_session";
/// The header that carries a session's CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The largest `Authorization` header looked at.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;
/// The largest login body.
pub const LOGIN_BODY_LIMIT: usize = 16 * 1024;

/// A credential: never shown by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Via {
    /// The session cookie (its secret, to end it on logout, and its CSRF token).
    Session { secret: Secret, csrf_token: Secret },
    /// An API token (its secret, to re-check it while a websocket stays open).
    Token { secret: Secret },
    /// HTTP Basic (DICOMweb).
    Basic,
}

impl Via {
    pub fn as_str(&self) -> &'static str {
        match self {
            Via::Session { .. } => "session",
            Via::Token { .. } => "token",
            Via::Basic => "basic",
        }
    }
}

/// The authenticated caller of a request. As an extractor it is taken from the request's
/// extensions (put there by [`authenticate`]); without one the request is refused with 401.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub via: Via,
    /// The client's address, for the audit trail.
    pub ip: Option<IpAddr>,
}

impl Caller {
    /// The studies this caller may see (the access policy of `pacs_store::access`).
    pub fn scope(&self) -> Scope {
        Scope::of(&self.principal)
    }

    /// An audit event by this caller, from where they called.
    pub fn event(&self, id: EventId, action: Action) -> AuditEvent {
        AuditEvent::new(
            id,
            action,
            self.principal.username.as_str(),
            self.principal.role.as_str(),
        )
        .with_ip(self.ip)
    }

    /// Refuses with 403 (and a security alert in the audit trail) unless the caller has
    /// `capability`.
    pub async fn require(&self, state: &ApiState, capability: Capability) -> Result<(), ApiError> {
        if access::may(&self.principal, capability) {
            return Ok(());
        }
        let reason = format!(
            "{} is not allowed for {}",
            capability.describe(),
            self.principal.role.with_article()
        );
        let event = self
            .event(EventId::SecurityAlert, Action::Execute)
            .with_outcome(
                Outcome::MinorFailure,
                format!("refused: {}", capability.describe()),
            );
        state.archive.audit_or_log(event).await;
        Err(ApiError::forbidden(reason))
    }

    /// Writes `event` before patient data is answered: no audit, no data (fail closed).
    pub async fn audit_read(&self, state: &ApiState, event: AuditEvent) -> Result<(), ApiError> {
        state
            .archive
            .index()
            .audit_read(event)
            .await
            .map(|_| ())
            .map_err(|e| ApiError::internal("cannot write the audit event of a read", &e))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("authentication required", Challenge::Bearer))
    }
}

/// The client's address (from the connection), when the server knows it.
#[derive(Debug, Clone, Copy)]
pub struct PeerIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(peer_ip(&parts.extensions)))
    }
}

fn peer_ip(ext: &axum::http::Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Routes anyone may call.
///
/// Besides the health check and the login itself, the web viewer's built files (`GET /`
/// and `GET /assets/…`, see [`crate::viewer`]): the login page has to load before there is
/// a session to send, and those files are the same public build for every visitor, with no
/// patient data and no secret in them. Only reads of exactly these paths are let through;
/// every route that answers with data (`/api/…`, `/dicom-web/…`, `/metrics`) still needs
/// credentials.
fn is_public(method: &Method, path: &str) -> bool {
    let read = method == Method::GET || method == Method::HEAD;
    match path {
        "/healthz" => read,
        "/api/login" => method == Method::POST,
        "/" => read,
        // Report verification: no secret needed, no patient data answered.
        _ if read && is_report_verification(path) => true,
        _ => read && path.starts_with(crate::viewer::ASSETS_PREFIX),
    }
}

/// `/api/reports/{id}/verify` with a numeric id.
fn is_report_verification(path: &str) -> bool {
    path.strip_prefix("/api/reports/")
        .and_then(|rest| rest.strip_suffix("/verify"))
        .is_some_and(|id| {
            !id.is_empty() && id.len() <= 19 && id.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Where HTTP Basic is accepted.
fn is_dicom_web(path: &str) -> bool {
    path == "/dicom-web" || path.starts_with("/dicom-web/")
}

/// Requests that must not change state (and so need no CSRF token).
fn is_safe(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD || method == Method::OPTIONS
}

/// The middleware: resolves the caller of every non-public request, or refuses it.
pub async fn authenticate(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if is_public(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    // The body is not `Sync`: only the head is borrowed while the index is asked.
    let (mut parts, body) = req.into_parts();
    match resolve(&state, &parts).await {
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => e.into_response(),
    }
}

async fn resolve(state: &ApiState, req: &Parts) -> Result<Caller, ApiError> {
    let dicom_web = is_dicom_web(req.uri.path());
    let challenge = if dicom_web {
        Challenge::BearerOrBasic
    } else {
        Challenge::Bearer
    };
    let index = state.archive.index();
    let ip = peer_ip(&req.extensions);
    let header = match authorization(&req.headers) {
        Ok(h) => h,
        Err(e) => {
            audit_credential_failure(state, ip, "Authorization header", &e).await;
            return Err(e);
        }
    };
    match header {
        Some(Authorization::Bearer(token)) => {
            let principal = match index.verify_token(token.expose()).await {
                Ok(p) => p,
                Err(f) => {
                    let e = refusal(f, challenge);
                    audit_credential_failure(state, ip, "API token", &e).await;
                    return Err(e);
                }
            };
            return Ok(Caller {
                principal,
                via: Via::Token { secret: token },
                ip: peer_ip(&req.extensions),
            });
        }
        Some(Authorization::Basic { username, password }) => {
            if !dicom_web {
                let e = ApiError::unauthorized(
                    "HTTP Basic authentication is accepted only under /dicom-web: use a bearer token or log in",
                    challenge,
                );
                audit_credential_failure(state, ip, "HTTP Basic outside /dicom-web", &e).await;
                return Err(e);
            }
            let result = index
                .authenticate(
                    &username,
                    password.expose(),
                    ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                )
                .await;
            return match result {
                Ok(principal) => Ok(Caller {
                    principal,
                    via: Via::Basic,
                    ip,
                }),
                Err(f) => {
                    let (err, why) = login_refusal(f, challenge);
                    audit_login_failure(state, &username, ip, why, "HTTP Basic (DICOMweb)").await;
                    Err(err)
                }
            };
        }
        Some(Authorization::Other) => {
            let e = ApiError::unauthorized("unsupported authentication scheme", challenge);
            audit_credential_failure(state, ip, "Authorization header", &e).await;
            return Err(e);
        }
        None => {}
    }
    let Some(secret) = session_cookie(&req.headers) else {
        return Err(ApiError::unauthorized("authentication required", challenge));
    };
    let (principal, csrf_token) = match index.session_principal(secret.expose()).await {
        Ok(p) => p,
        Err(f) => {
            let e = refusal(f, challenge);
            audit_credential_failure(state, ip, "session cookie", &e).await;
            return Err(e);
        }
    };
    if !is_safe(&req.method) {
        let given = req.headers.get(CSRF_HEADER).map(HeaderValue::as_bytes);
        if !given.is_some_and(|g| same_secret(g, csrf_token.as_bytes())) {
            // A forged cross-site request, or a page that lost its token: either way the
            // owner of the session should be able to find it.
            let why = if given.is_some() {
                "CSRF token wrong"
            } else {
                "CSRF token missing"
            };
            let event = AuditEvent::new(
                EventId::SecurityAlert,
                Action::Execute,
                principal.username.as_str(),
                principal.role.as_str(),
            )
            .with_ip(ip)
            .with_outcome(
                Outcome::MinorFailure,
                format!("{why}: {} {} refused", req.method, req.uri.path()),
            );
            state.archive.audit_or_log(event).await;
            return Err(ApiError::forbidden(
                "CSRF token missing or wrong: send the token from the login answer in X-CSRF-Token",
            ));
        }
    }
    Ok(Caller {
        principal,
        via: Via::Session {
            secret,
            csrf_token: Secret(csrf_token),
        },
        ip,
    })
}

/// A token, session or Basic login refused.
fn refusal(f: AuthFailure, challenge: Challenge) -> ApiError {
    match f {
        AuthFailure::BadCredentials => ApiError::unauthorized("invalid credentials", challenge),
        AuthFailure::Expired => {
            ApiError::unauthorized("the credentials have expired; log in again", challenge)
        }
        AuthFailure::Disabled => ApiError::forbidden("account disabled"),
        AuthFailure::Throttled { retry_after_secs } => {
            ApiError::too_many_requests(retry_after_secs)
        }
        AuthFailure::Store(e) => ApiError::internal("authentication: index error", &e),
    }
}

/// A username and password refused: the answer, and the reason kind for the audit trail.
fn login_refusal(f: AuthFailure, challenge: Challenge) -> (ApiError, &'static str) {
    match f {
        AuthFailure::BadCredentials => (
            ApiError::unauthorized("wrong username or password", challenge),
            "wrong username or password",
        ),
        AuthFailure::Disabled => (ApiError::forbidden("account disabled"), "account disabled"),
        AuthFailure::Throttled { retry_after_secs } => (
            ApiError::too_many_requests(retry_after_secs),
            "throttled after too many failed logins",
        ),
        AuthFailure::Expired => (
            ApiError::unauthorized("the credentials have expired", challenge),
            "credentials expired",
        ),
        AuthFailure::Store(e) => (
            ApiError::internal("login: index error", &e),
            "internal error",
        ),
    }
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------------------------------
// Headers

enum Authorization {
    Bearer(Secret),
    Basic {
        username: String,
        password: Secret,
    },
    /// A well-formed header with a scheme this server does not take.
    Other,
}

/// The `Authorization` header, if any; malformed → 400 with a reason.
fn authorization(headers: &HeaderMap) -> Result<Option<Authorization>, ApiError> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(ApiError::bad_request("more than one Authorization header"));
    }
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(ApiError::bad_request(
            "Authorization header too long (at most 8 KiB)",
        ));
    }
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| ApiError::bad_request("Authorization header is not valid UTF-8"))?
        .trim();
    if text.is_empty() {
        return Err(ApiError::bad_request("empty Authorization header"));
    }
    let Some((scheme, credentials)) = text.split_once(' ') else {
        return Err(ApiError::bad_request(
            "malformed Authorization header: expected a scheme and credentials (Bearer TOKEN)",
        ));
    };
    let credentials = credentials.trim_start();
    if scheme.eq_ignore_ascii_case("bearer") {
        if credentials.is_empty() || credentials.contains(char::is_whitespace) {
            return Err(ApiError::bad_request("malformed bearer token"));
        }
        return Ok(Some(Authorization::Bearer(Secret(credentials.to_owned()))));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .map_err(|_| ApiError::bad_request("malformed Basic credentials: not base64"))?;
        let decoded = String::from_utf8(bytes)
            .map_err(|_| ApiError::bad_request("malformed Basic credentials: not UTF-8"))?;
        let Some((username, password)) = decoded.split_once(':') else {
            return Err(ApiError::bad_request(
                "malformed Basic credentials: no ':' between username and password",
            ));
        };
        return Ok(Some(Authorization::Basic {
            username: username.to_owned(),
            password: Secret(password.to_owned()),
        }));
    }
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err(ApiError::bad_request(
            "malformed Authorization header: bad scheme",
        ));
    }
    Ok(Some(Authorization::Other))
}

/// The value of the session cookie, if sent.
fn session_cookie(headers: &HeaderMap) -> Option<Secret> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name.trim() == SESSION_COOKIE)
                .then(|| Secret(value.trim().trim_matches('"').to_owned()))
        })
}

fn session_cookie_header(
    value: &str,
    max_age_secs: u64,
    secure: bool,
) -> Result<HeaderValue, ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}"
    ))
    .map_err(|e| ApiError::internal("cannot build the session cookie", &e))
}

// ---------------------------------------------------------------------------------------
// Audit

/// The name recorded for an attempted login: the username as the store would read it, or
/// a placeholder when it cannot be one (it may be a password typed in the wrong field).
fn attempted_name(raw: &str) -> String {
    Username::parse(raw)
        .map(|u| u.to_string())
        .unwrap_or_else(|_| "(not a valid username)".into())
}

fn authentication_event(
    ty: EventType,
    who: String,
    role: &str,
    ip: Option<IpAddr>,
    detail: &str,
) -> AuditEvent {
    AuditEvent::new(EventId::UserAuthentication, Action::Execute, who, role)
        .with_type(ty)
        .with_ip(ip)
        .with_detail(detail)
}

/// Credentials that were presented but refused — a malformed `Authorization` header, an
/// unknown, revoked or expired token or session cookie — are a failed authentication
/// (110114, minor failure) by an unknown user, with the reason. A request without any
/// credentials is not audited (every scanner on the network would fill the trail).
async fn audit_credential_failure(
    state: &ApiState,
    ip: Option<IpAddr>,
    what: &str,
    error: &ApiError,
) {
    let event = authentication_event(EventType::Login, "unknown".into(), "user", ip, what)
        .with_outcome(
            Outcome::MinorFailure,
            format!("{} {}", error.status().as_u16(), error.reason()),
        );
    state.archive.audit_or_log(event).await;
}

async fn audit_login_failure(
    state: &ApiState,
    username: &str,
    ip: Option<IpAddr>,
    why: &str,
    detail: &str,
) {
    let event = authentication_event(
        EventType::Login,
        attempted_name(username),
        "user",
        ip,
        detail,
    )
    .with_outcome(Outcome::MinorFailure, why);
    state.archive.audit_or_log(event).await;
}

// ---------------------------------------------------------------------------------------
// Routes

/// The body of `POST /api/login`. No `Debug`: it holds a password.
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// `POST /api/login`: checks the password, starts a session and sets its cookie.
#[utoipa::path(post, path = "/api/login", tag = "session", request_body = LoginRequest,
    security(()),
    responses(
        (status = 200, description = "Logged in: the `pacs_session` cookie is set; the body \
            gives the user and the CSRF token for state-changing requests", body = serde_json::Value),
        (status = 401, description = "Wrong username or password", body = ErrorBody),
        (status = 403, description = "Account disabled", body = ErrorBody),
        (status = 429, description = "Too many failed logins (Retry-After)", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<ApiState>,
    PeerIp(ip): PeerIp,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let index = state.archive.index();
    let result = index
        .authenticate(
            &req.username,
            &req.password,
            ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        )
        .await;
    let principal = match result {
        Ok(p) => p,
        Err(f) => {
            let (err, why) = login_refusal(f, Challenge::Bearer);
            audit_login_failure(&state, &req.username, ip, why, "HTTP login").await;
            return Err(err);
        }
    };
    let ttl = state.session_ttl;
    let session = match index.create_session(principal.user_id, ttl).await {
        Ok(s) => s,
        Err(e) => {
            audit_login_failure(&state, &req.username, ip, "internal error", "HTTP login").await;
            return Err(ApiError::internal("login: cannot create a session", &e));
        }
    };
    let cookie = session_cookie_header(&session.secret, ttl.absolute.as_secs(), state.https)?;
    let event = authentication_event(
        EventType::Login,
        principal.username.to_string(),
        principal.role.as_str(),
        ip,
        "HTTP login",
    );
    state.archive.audit_or_log(event).await;
    let body = serde_json::json!({
        "username": principal.username,
        "role": principal.role,
        "clinic": principal.clinic_name,
        "csrf_token": session.csrf_token,
        "expires_at": format_micros(session.expires_at),
    });
    Ok((
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(body),
    )
        .into_response())
}

/// `POST /api/logout`: ends the session of the cookie (if that is how the caller came) and
/// clears the cookie.
#[utoipa::path(post, path = "/api/logout", tag = "session",
    responses((status = 200, body = serde_json::Value), (status = 401, body = ErrorBody),
        (status = 403, description = "CSRF token missing or wrong", body = ErrorBody)))]
pub async fn logout(
    State(state): State<ApiState>,
    PeerIp(ip): PeerIp,
    caller: Caller,
) -> Result<Response, ApiError> {
    if let Via::Session { secret, .. } = &caller.via {
        state
            .archive
            .index()
            .revoke_session(secret.expose())
            .await
            .map_err(|e| ApiError::internal("logout: cannot end the session", &e))?;
        // The session's websockets on this node close now, not at the next re-check.
        state.live.recheck_now();
    }
    let event = authentication_event(
        EventType::Logout,
        caller.principal.username.to_string(),
        caller.principal.role.as_str(),
        ip,
        match caller.via {
            Via::Session { .. } => "HTTP logout",
            _ => "HTTP logout (no session to end)",
        },
    );
    state.archive.audit_or_log(event).await;
    let clear = session_cookie_header("", 0, state.https)?;
    Ok((
        [(header::SET_COOKIE, clear)],
        Json(serde_json::json!({ "status": "logged out" })),
    )
        .into_response())
}

/// `GET /api/me`: who the caller is (and, for a browser session, its CSRF token, which the
/// page needs again after a reload).
#[utoipa::path(get, path = "/api/me", tag = "session",
    responses((status = 200, body = serde_json::Value), (status = 401, body = ErrorBody)))]
pub async fn me(caller: Caller) -> Response {
    let p = &caller.principal;
    let mut body = serde_json::json!({
        "username": p.username,
        "role": p.role,
        "clinic": p.clinic_name,
        "subspecialties": p.subspecialties,
        "authenticated_by": caller.via.as_str(),
    });
    if let Via::Session { csrf_token, .. } = &caller.via {
        body["csrf_token"] = csrf_token.expose().into();
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// `GET /dicom-web/`: the DICOMweb root, for now only saying who the caller is (DICOMweb
/// services come with a later issue).
pub async fn dicom_web_root(caller: Caller) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "username": caller.principal.username }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn reason(values: &[&[u8]]) -> String {
        match authorization(&headers(values)) {
            Err(e) => {
                assert_eq!(e.status().as_u16(), 400);
                e.reason().to_owned()
            }
            Ok(_) => panic!("{values:?} accepted"),
        }
    }

    #[test]
    fn authorization_headers() {
        assert!(matches!(authorization(&HeaderMap::new()), Ok(None)));
        assert!(matches!(
            authorization(&headers(&[b"Bearer pacs_abc"])),
            Ok(Some(Authorization::Bearer(t))) if t.expose() == "pacs_abc"
        ));
        assert!(matches!(
            authorization(&headers(&[b"bearer   pacs_abc "])),
            Ok(Some(Authorization::Bearer(_)))
        ));
        // "alice:pass:word"
        match authorization(&headers(&[b"Basic YWxpY2U6cGFzczp3b3Jk"])) {
            Ok(Some(Authorization::Basic { username, password })) => {
                assert_eq!(
                    (username.as_str(), password.expose()),
                    ("alice", "pass:word")
                );
            }
            _ => panic!("basic"),
        }
        assert!(matches!(
            authorization(&headers(&[b"Digest abc"])),
            Ok(Some(Authorization::Other))
        ));
        assert!(reason(&[b"pacs_abc"]).contains("scheme"));
        assert!(reason(&[b"Bearer"]).contains("scheme"));
        assert!(reason(&[b"Bearer a b"]).contains("bearer token"));
        assert!(reason(&[b"Basic !!!"]).contains("base64"));
        assert!(reason(&[b"Basic /w=="]).contains("UTF-8")); // 0xFF
        assert!(reason(&[b"Basic YWxpY2U="]).contains("':'")); // "alice"
        assert!(reason(&[b"Bearer \xff\xfe"]).contains("UTF-8"));
        assert!(reason(&[b"Bearer a", b"Bearer b"]).contains("more than one"));
        let long = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        assert!(reason(&[long.as_bytes()]).contains("too long"));
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; pacs_session=abc ; b=2"),
        );
        assert_eq!(session_cookie(&h).unwrap().expose(), "abc");
        assert!(session_cookie(&HeaderMap::new()).is_none());
        assert_eq!(format!("{:?}", session_cookie(&h).unwrap()), "<redacted>");
    }

    #[test]
    fn public_routes_and_secrets() {
        assert!(is_public(&Method::GET, "/healthz"));
        assert!(is_public(&Method::POST, "/api/login"));
        assert!(!is_public(&Method::GET, "/api/login"));
        assert!(!is_public(&Method::GET, "/metrics"));
        assert!(!is_public(&Method::GET, "/healthz/"));
        // The viewer's files, read only; nothing else under the root.
        assert!(is_public(&Method::GET, "/") && is_public(&Method::HEAD, "/"));
        assert!(is_public(&Method::GET, "/assets/index-abc.js"));
        assert!(!is_public(&Method::POST, "/") && !is_public(&Method::PUT, "/assets/x.js"));
        assert!(!is_public(&Method::GET, "/assets") && !is_public(&Method::GET, "/index.html"));
        assert!(
            !is_public(&Method::GET, "/api/studies")
                && !is_public(&Method::GET, "/dicom-web/studies")
        );
        assert!(
            !is_public(&Method::GET, "/api/assets/x") && !is_public(&Method::GET, "/x/assets/y")
        );
        // Report verification only, by number, read only.
        assert!(is_public(&Method::GET, "/api/reports/12/verify"));
        for path in [
            "/api/reports/12",
            "/api/reports//verify",
            "/api/reports/../verify",
            "/api/reports/12/verify/x",
            "/api/reports/1%2F2/verify",
            "/api/reports/12/sign",
        ] {
            assert!(!is_public(&Method::GET, path), "{path}");
        }
        assert!(!is_public(&Method::POST, "/api/reports/12/verify"));
        assert!(is_dicom_web("/dicom-web/") && is_dicom_web("/dicom-web/studies"));
        assert!(!is_dicom_web("/dicom-webx"));
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd") && !same_secret(b"abc", b"ab"));
        assert_eq!(attempted_name("Alice"), "alice");
        assert_eq!(attempted_name("my secret pw!"), "(not a valid username)");
    }
}
