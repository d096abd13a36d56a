//! [`ApiError`]: every HTTP answer that is not a success, in one place.
//!
//! The status and a reason meant for the caller become `{"error": "<reason>"}`; internals
//! (database errors and the like) are logged at error level and answered with a plain
//! "internal error". A 401 always carries `WWW-Authenticate`, a 429 `Retry-After`.

use std::borrow::Cow;
use std::fmt;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pacs_store::StoreError;

/// `{"error": "<reason>"}`: the body of every error answer (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// What went wrong, and what to do about it when the caller can do something.
    error: String,
}

/// The authentication schemes a 401 offers (`WWW-Authenticate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// Bearer tokens (and the session cookie, which has no challenge).
    Bearer,
    /// Under `/dicom-web`: Bearer or HTTP Basic.
    BearerOrBasic,
}

/// An HTTP error answer: status, reason for the caller, and the headers the status needs.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: Cow<'static, str>,
    challenge: Challenge,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error with `status` and a `reason` safe to show to the caller.
    pub fn new(status: StatusCode, reason: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            reason: reason.into(),
            challenge: Challenge::Bearer,
            retry_after_secs: None,
        }
    }

    pub fn bad_request(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    /// 401 with a `WWW-Authenticate` offering `challenge`.
    pub fn unauthorized(reason: impl Into<Cow<'static, str>>, challenge: Challenge) -> Self {
        ApiError {
            challenge,
            ..Self::new(StatusCode::UNAUTHORIZED, reason)
        }
    }

    pub fn forbidden(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, reason)
    }

    pub fn not_found(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }

    /// 503 with `Retry-After`: something is being prepared; ask again shortly.
    pub fn not_yet(reason: impl Into<Cow<'static, str>>, retry_after_secs: u64) -> Self {
        ApiError {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, reason)
        }
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        ApiError {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins; try again later",
            )
        }
    }

    /// 500: `error` is logged with `context`, the caller only learns that it failed.
    pub fn internal(context: &'static str, error: &dyn fmt::Display) -> Self {
        tracing::error!(error = %error, "{context}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(serde_json::json!({ "error": self.reason })),
        )
            .into_response();
        let h = res.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            h.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pacs\""),
            );
            if self.challenge == Challenge::BearerOrBasic {
                h.append(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"pacs\", charset=\"UTF-8\""),
                );
            }
        }
        if let Some(secs) = self.retry_after_secs {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// A JSON body that could not be read: the status axum chose (400, 413, 415, 422) with a
/// reason of our own (serde's messages may quote the input).
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let reason = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "request body too large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "expected a JSON body (Content-Type: application/json)"
            }
            s if s.is_server_error() => {
                return ApiError::internal("cannot read a request body", &r);
            }
            _ => "malformed JSON body",
        };
        ApiError::new(status, reason)
    }
}

/// Store errors: refusals the store words for people become 400/404/409 with the store's
/// words (they name what the caller asked for, never internals; patient data is never
/// answered through them — a study the caller may not see is `None`, not an error);
/// anything else is internal.
/// Checks the paging parameters of a listing: `limit` 1–1000, `offset` not negative.
pub fn check_page(limit: Option<i64>, offset: Option<i64>) -> Result<(), ApiError> {
    if limit.is_some_and(|l| !(1..=1000).contains(&l)) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    if offset.is_some_and(|o| o < 0) {
        return Err(ApiError::bad_request("offset must not be negative"));
    }
    Ok(())
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(reason) => ApiError::bad_request(reason),
            e @ StoreError::NotFound(_) => ApiError::not_found(e.to_string()),
            e @ StoreError::AlreadyExists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            other => ApiError::internal("index or object store error", &other),
        }
    }
}
