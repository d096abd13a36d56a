//! DICOMweb (PS3.18) under `/dicom-web`: [`qido`] searches, [`wado`] retrieves, [`metadata`]
//! gives instances as DICOM JSON, [`frames`] their frames and bulk data, [`rendered`] frames as JPEG/PNG and thumbnails, [`stow`] uploads,
//! [`wado_uri`] single objects for older clients. Every service authenticates
//! like the rest of the API (HTTP Basic also accepted here) and reads only through the
//! access policy.

pub mod frames;
pub mod metadata;
pub mod qido;
pub mod rendered;
pub mod stow;
pub mod wado;
pub mod wado_uri;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The media type of DICOM JSON answers.
pub const DICOM_JSON: &str = "application/dicom+json";

/// 406 unless the `Accept` header allows DICOM JSON (or says nothing).
pub fn accepts_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .filter(|t| !t.is_empty())
        .collect();
    if accept.is_empty()
        || accept.iter().any(|t| {
            matches!(
                t.to_ascii_lowercase().as_str(),
                "application/dicom+json" | "application/json" | "application/*" | "*/*"
            )
        })
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "this resource is available as application/dicom+json only",
        ))
    }
}

/// A DICOM JSON answer, not to be cached by anyone (patient data).
pub fn dicom_json(body: serde_json::Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, DICOM_JSON),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// A DICOM JSON answer already rendered as text (metadata from the cache), not to be cached.
pub fn dicom_json_text(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, DICOM_JSON),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
