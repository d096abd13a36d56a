//! The web viewer's built files (`viewer-web`, built by Vite into `viewer-web/dist`):
//! `index.html` at `GET /`, everything else (scripts, styles, the decoder web worker, the
//! codecs' WebAssembly) under `GET /assets/…`.
//!
//! These two are served without credentials (see `auth::is_public`): the login page must
//! load before there is a session, and the files are the same public build for everyone,
//! holding no patient data and no secret. Everything with data — `/api`, `/dicom-web` —
//! stays behind [`crate::auth::authenticate`].
//!
//! Files under `/assets/` are served by tower-http's `ServeDir`, which refuses paths that
//! leave its directory (`..`, absolute or percent-encoded ones) and sets content types
//! (`application/wasm` for the codecs, which `WebAssembly.instantiateStreaming` requires).
//! Their names carry a content hash, so they may be cached for good; `index.html` names
//! them and is revalidated on every load, so a new build is picked up at once.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeDir;

use crate::ApiState;
use crate::error::ApiError;

/// Where the built files are when nothing else is configured (relative to the working
/// directory, like the default data directory): the output of `npm run build` in
/// `viewer-web`.
pub const DEFAULT_DIR: &str = "viewer-web/dist";

/// The URL prefix of the built assets.
pub const ASSETS_PREFIX: &str = "/assets/";

/// `GET /` and `/assets/…`, from `dir`.
pub fn routes(dir: &Path) -> Router<ApiState> {
    let assets = Router::new()
        .fallback_service(ServeDir::new(dir.join("assets")).append_index_html_on_directories(false))
        .layer(axum::middleware::map_response(cache_forever));
    Router::new()
        .route("/", axum::routing::get(index))
        .nest_service("/assets", assets)
}

/// Whether the built viewer is in `dir`.
pub fn is_built(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// `GET /`: the viewer's page.
async fn index(State(state): State<ApiState>) -> Response {
    let path: PathBuf = state.viewer_dir.join("index.html");
    match tokio::fs::read(&path).await {
        Ok(html) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            html,
        )
            .into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %state.viewer_dir.display(), "GET /: the viewer is not built");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the web viewer is not built on this server: run `npm ci && npm run build` in \
                 viewer-web, or set viewer_dir (PACS_VIEWER_DIR) to the built files",
            )
            .into_response()
        }
        Err(e) => ApiError::internal("cannot read the viewer's index.html", &e).into_response(),
    }
}

/// Hashed asset names change with their content: a found one never needs asking for again.
async fn cache_forever(mut res: Response) -> Response {
    if res.status() == StatusCode::OK {
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
    }
    res
}
