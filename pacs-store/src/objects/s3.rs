//! The S3 object store: any S3-compatible server (Garage, Ceph RGW, MinIO, a cloud).
//!
//! rust-s3's own 60 s whole-request timeout is switched off (it kills large transfers);
//! every operation here carries its own timeout instead: a fixed one for small requests,
//! one that grows with the object size for uploads, and an idle timeout between chunks
//! for downloads.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::{Bucket, Region};

use super::{ByteStream, ObjectKey, ObjectStore};
use crate::error::StoreError;

/// Objects up to this size are uploaded with one PUT; larger ones with a multipart upload
/// (rust-s3's part size), reading the staging file part by part.
const SINGLE_PUT_MAX: u64 = 8 * 1024 * 1024;
/// Multipart parts in flight per upload: memory stays around (this + 1) × 8 MiB.
const MULTIPART_CONCURRENCY: usize = 2;
/// Timeout of requests without a large body (HEAD, DELETE, one listing page, GET headers).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the next chunk of a download.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Uploads get `UPLOAD_BASE_TIMEOUT` plus the time to send the object at this rate.
const UPLOAD_MIN_BYTES_PER_SEC: u64 = 1024 * 1024;
const UPLOAD_BASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest ranged GET of [`ObjectStore::get_range`] (rust-s3 buffers each one).
const RANGE_CHUNK: u64 = 8 * 1024 * 1024;
/// Listing page size.
const LIST_PAGE: usize = 1000;
const CONTENT_TYPE: &str = "application/dicom";

/// Connection settings of an S3-compatible bucket.
///
/// `Debug` redacts the secret key. `Serialize` (for layered configuration) does not: never
/// log a serialized configuration.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
pub struct S3Config {
    /// Base URL of the server, e.g. `http://127.0.0.1:3900` or `https://s3.example.org`.
    pub endpoint: String,
    /// Signing region; must equal the server's region (Garage: its `s3_region`).
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// `http://host/bucket/key` addressing instead of `http://bucket.host/key`
    /// (Garage without `root_domain`, MinIO, most self-hosted servers).
    #[serde(default)]
    pub path_style: bool,
    /// Optional key prefix (`site-a/`), so that several archives or test runs can share a
    /// bucket; object keys become `<prefix>objects/…`.
    #[serde(default)]
    pub prefix: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// Objects stored in one S3 bucket under their key (`objects/…`).
#[derive(Clone)]
pub struct S3ObjectStore {
    bucket: Box<Bucket>,
    endpoint: String,
    /// Normalised key prefix: empty or ending in `/`.
    prefix: String,
}

impl std::fmt::Debug for S3ObjectStore {
    // By hand: rust-s3's Bucket prints its credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3ObjectStore")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket.name)
            .field("region", &self.bucket.region.to_string())
            .field("path_style", &self.bucket.is_path_style())
            .finish()
    }
}

impl S3ObjectStore {
    /// The key as stored in the bucket.
    /// Up to [`RANGE_CHUNK`] bytes of the object from `at` (of the `left` wanted).
    async fn range_chunk(&self, key: &ObjectKey, at: u64, left: u64) -> Result<Bytes, StoreError> {
        let n = left.min(RANGE_CHUNK);
        let last = at + n - 1;
        let remote = self.remote(key);
        let got = match with_timeout(
            IDLE_TIMEOUT,
            self.bucket.get_object_range(&remote, at, Some(last)),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(s3_error("download", key, e)),
            Err(()) => return Err(timeout_error("download (range)", key, IDLE_TIMEOUT)),
        };
        let body = got.bytes().clone();
        if body.len() as u64 != n {
            return Err(StoreError::S3(format!(
                "download {key}: asked for bytes {at}-{last}, got {} bytes (the object is \
                 shorter than the index says)",
                body.len()
            )));
        }
        Ok(body)
    }

    fn remote(&self, key: &ObjectKey) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// Builds the client and checks that the bucket answers (a listing of at most one key)
    /// with these credentials, so that a misconfiguration fails at startup, not at the first
    /// C-STORE.
    pub async fn connect(cfg: &S3Config) -> Result<Self, StoreError> {
        for (name, value) in [
            ("endpoint", &cfg.endpoint),
            ("region", &cfg.region),
            ("bucket", &cfg.bucket),
            ("access key", &cfg.access_key),
            ("secret key", &cfg.secret_key),
        ] {
            if value.trim().is_empty() {
                return Err(StoreError::Config(format!("S3 {name} is empty")));
            }
        }
        if !(cfg.endpoint.starts_with("http://") || cfg.endpoint.starts_with("https://")) {
            return Err(StoreError::Config(format!(
                "S3 endpoint {:?} must start with http:// or https://",
                cfg.endpoint
            )));
        }
        let endpoint = cfg.endpoint.trim_end_matches('/').to_owned();
        let region = Region::Custom {
            region: cfg.region.clone(),
            endpoint: endpoint.clone(),
        };
        let credentials = Credentials::new(
            Some(&cfg.access_key),
            Some(&cfg.secret_key),
            None,
            None,
            None,
        )
        .map_err(|e| StoreError::Config(format!("S3 credentials: {e}")))?;
        let mut bucket = Bucket::new(&cfg.bucket, region, credentials)
            .map_err(|e| StoreError::Config(format!("S3 bucket {}: {e}", cfg.bucket)))?;
        if cfg.path_style {
            bucket = bucket.with_path_style();
        }
        bucket.set_request_timeout(None);
        let prefix = normalize_prefix(cfg.prefix.as_deref())?;
        let store = S3ObjectStore {
            bucket,
            endpoint,
            prefix,
        };

        let probe = with_timeout(
            REQUEST_TIMEOUT,
            store.bucket.list_page(
                format!("{}objects/", store.prefix),
                None,
                None,
                None,
                Some(1),
            ),
        )
        .await;
        let detail = match probe {
            Ok(Ok(_)) => return Ok(store),
            Ok(Err(e)) => describe_s3_error(&e),
            Err(()) => format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        };
        Err(StoreError::S3(format!(
            "cannot reach S3 bucket {} at {}: {detail}; check endpoint, region (Garage wants its s3_region), credentials",
            cfg.bucket, store.endpoint
        )))
    }

    async fn upload(&self, key: &ObjectKey, staged: &Path, size: u64) -> Result<(), StoreError> {
        let remote = self.remote(key);
        let limit = upload_timeout(size);
        let status = if size <= SINGLE_PUT_MAX {
            let bytes = tokio::fs::read(staged)
                .await
                .map_err(|e| StoreError::io("cannot read staging file", staged, e))?;
            let put = self
                .bucket
                .put_object_with_content_type(&remote, &bytes, CONTENT_TYPE);
            match with_timeout(limit, put).await {
                Ok(Ok(response)) => response.status_code(),
                Ok(Err(e)) => return Err(s3_error("upload", key, e)),
                Err(()) => return Err(timeout_error("upload", key, limit)),
            }
        } else {
            let mut file = tokio::fs::File::open(staged)
                .await
                .map_err(|e| StoreError::io("cannot open staging file", staged, e))?;
            let put = self
                .bucket
                .put_object_stream_builder(&remote)
                .with_content_type(CONTENT_TYPE)
                .with_max_concurrent_chunks(MULTIPART_CONCURRENCY)
                .execute_stream(&mut file);
            match with_timeout(limit, put).await {
                Ok(Ok(response)) if response.uploaded_bytes() as u64 != size => {
                    return Err(StoreError::S3(format!(
                        "upload {key}: sent {} bytes of {size}: the staging file changed during the upload",
                        response.uploaded_bytes()
                    )));
                }
                Ok(Ok(response)) => response.status_code(),
                Ok(Err(e)) => return Err(s3_error("upload", key, e)),
                Err(()) => {
                    // Dropping the upload future skipped rust-s3's own abort.
                    self.abort_multipart_uploads(key).await;
                    return Err(timeout_error("upload", key, limit));
                }
            }
        };
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(StoreError::S3(format!("upload {key}: HTTP {status}")))
        }
    }

    /// Best effort: aborts incomplete multipart uploads of `key` (their parts use space
    /// but are invisible to GET and LIST).
    async fn abort_multipart_uploads(&self, key: &ObjectKey) {
        let remote = self.remote(key);
        let listing = with_timeout(
            REQUEST_TIMEOUT,
            self.bucket.list_multiparts_uploads(Some(&remote), None),
        )
        .await;
        let Ok(Ok(pages)) = listing else {
            tracing::warn!(%key, "cannot list incomplete multipart uploads to abort them");
            return;
        };
        for upload in pages
            .iter()
            .flat_map(|p| p.uploads.iter())
            .filter(|u| u.key == remote)
        {
            let abort = with_timeout(
                REQUEST_TIMEOUT,
                self.bucket.abort_upload(&upload.key, &upload.id),
            )
            .await;
            if !matches!(abort, Ok(Ok(()))) {
                tracing::warn!(%key, upload_id = %upload.id, "cannot abort incomplete multipart upload");
            }
        }
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put_file(&self, key: &ObjectKey, staged: &Path) -> Result<(), StoreError> {
        let meta = tokio::fs::metadata(staged)
            .await
            .map_err(|e| StoreError::io("cannot read staging file", staged, e))?;
        if !meta.is_file() {
            return Err(StoreError::io(
                "staging path is not a regular file",
                staged,
                std::io::ErrorKind::InvalidInput.into(),
            ));
        }
        // Check-then-put is not atomic, but keys are random UUIDs: the check guards against
        // a caller bug reusing a key, not against a race.
        if self.exists(key).await? {
            return Err(StoreError::AlreadyExists(format!("object {key}")));
        }
        if let Err(err) = self.upload(key, staged, meta.len()).await {
            // Leave nothing under the key (a single PUT may have landed before a lost answer).
            if let Err(cleanup) = self.delete(key).await {
                tracing::warn!(%key, error = %cleanup, "cannot remove a partially uploaded object");
            }
            return Err(err);
        }
        Ok(())
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StoreError> {
        let mut stream = self.get_stream(key).await?;
        let mut buf = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
        }
        Ok(buf.freeze())
    }

    async fn get_stream(&self, key: &ObjectKey) -> Result<ByteStream, StoreError> {
        let remote = self.remote(key);
        let response =
            match with_timeout(REQUEST_TIMEOUT, self.bucket.get_object_stream(&remote)).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => return Err(s3_error("download", key, e)),
                Err(()) => return Err(timeout_error("download", key, REQUEST_TIMEOUT)),
            };
        if !(200..300).contains(&response.status_code) {
            return Err(StoreError::S3(format!(
                "download {key}: HTTP {}",
                response.status_code
            )));
        }
        // Each chunk must arrive within IDLE_TIMEOUT; after an error the stream ends.
        let state = Some((response.bytes, key.clone()));
        let stream = futures::stream::unfold(state, |state| async move {
            let (mut bytes, key) = state?;
            match tokio::time::timeout(IDLE_TIMEOUT, bytes.next()).await {
                Ok(None) => None,
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some((bytes, key)))),
                Ok(Some(Err(e))) => Some((Err(s3_error("download", &key, e)), None)),
                Err(_) => Some((
                    Err(timeout_error("download (idle)", &key, IDLE_TIMEOUT)),
                    None,
                )),
            }
        });
        Ok(Box::pin(stream))
    }

    async fn get_range(
        &self,
        key: &ObjectKey,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, StoreError> {
        // rust-s3 buffers a ranged GET: ask for RANGE_CHUNK bytes at a time, one request
        // after the other as the consumer reads, so that memory stays at one chunk. The
        // first one is made here, so that a missing object is an error before any byte.
        if len == 0 {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let first = self.range_chunk(key, start, len).await?;
        let n = first.len() as u64;
        let this = self.clone();
        let rest = futures::stream::unfold(Some((start + n, len - n, key.clone())), move |state| {
            let this = this.clone();
            async move {
                let (at, left, key) = state?;
                if left == 0 {
                    return None;
                }
                match this.range_chunk(&key, at, left).await {
                    Ok(chunk) => {
                        let n = chunk.len() as u64;
                        Some((Ok(chunk), Some((at + n, left - n, key))))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        });
        let stream = futures::stream::once(async move { Ok(first) }).chain(rest);
        Ok(Box::pin(stream))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let remote = self.remote(key);
        match with_timeout(REQUEST_TIMEOUT, self.bucket.delete_object(&remote)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(S3Error::HttpFailWithBody(404, _))) => Ok(()),
            Ok(Err(e)) => Err(s3_error("delete", key, e)),
            Err(()) => Err(timeout_error("delete", key, REQUEST_TIMEOUT)),
        }
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        let remote = self.remote(key);
        // Not Bucket::object_exists: it reports any non-404 answer (403, 500) as "exists".
        match with_timeout(REQUEST_TIMEOUT, self.bucket.head_object(&remote)).await {
            Ok(Ok((_, status))) if (200..300).contains(&status) => Ok(true),
            Ok(Ok((_, 404))) | Ok(Err(S3Error::HttpFailWithBody(404, _))) => Ok(false),
            Ok(Ok((_, status))) => Err(StoreError::S3(format!("check {key}: HTTP {status}"))),
            Ok(Err(e)) => Err(s3_error("check", key, e)),
            Err(()) => Err(timeout_error("check", key, REQUEST_TIMEOUT)),
        }
    }

    async fn list(&self) -> Result<Vec<ObjectKey>, StoreError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self.bucket.list_page(
                format!("{}objects/", self.prefix),
                None,
                token,
                None,
                Some(LIST_PAGE),
            );
            let (page, _) = match with_timeout(REQUEST_TIMEOUT, page).await {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    return Err(StoreError::S3(format!(
                        "list objects/: {}",
                        describe_s3_error(&e)
                    )));
                }
                Err(()) => {
                    return Err(StoreError::S3(format!(
                        "list objects/: no answer within {} s",
                        REQUEST_TIMEOUT.as_secs()
                    )));
                }
            };
            for object in &page.contents {
                match ObjectKey::parse(
                    object
                        .key
                        .strip_prefix(self.prefix.as_str())
                        .unwrap_or(&object.key),
                ) {
                    Ok(key) => keys.push(key),
                    Err(_) => {
                        tracing::warn!(key = %object.key, "skipping an S3 key that is not an object")
                    }
                }
            }
            token = page.next_continuation_token;
            if token.is_none() {
                break;
            }
        }
        Ok(keys)
    }

    fn describe(&self) -> String {
        format!("s3 bucket {} at {}", self.bucket.name, self.endpoint)
    }
}

async fn with_timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> Result<T, ()> {
    tokio::time::timeout(limit, fut).await.map_err(|_| ())
}

fn upload_timeout(size: u64) -> Duration {
    UPLOAD_BASE_TIMEOUT + Duration::from_secs(size / UPLOAD_MIN_BYTES_PER_SEC)
}

fn timeout_error(op: &str, key: &ObjectKey, limit: Duration) -> StoreError {
    StoreError::S3(format!(
        "{op} {key}: no progress within {} s",
        limit.as_secs()
    ))
}

/// Maps a rust-s3 error of an operation on `key`. Not found and out-of-space answers get
/// their own variants; everything else says operation, key and status.
fn s3_error(op: &str, key: &ObjectKey, e: S3Error) -> StoreError {
    match &e {
        S3Error::HttpFailWithBody(404, body)
            if op == "download" && !body.contains("NoSuchBucket") =>
        {
            StoreError::ObjectNotFound(key.to_string())
        }
        S3Error::HttpFailWithBody(status, body)
            if *status == 507
                || body.contains("QuotaExceeded")
                || body.to_ascii_lowercase().contains("quota") =>
        {
            StoreError::OutOfSpace(format!("{op} {key}: {}", describe_s3_error(&e)))
        }
        _ => StoreError::S3(format!("{op} {key}: {}", describe_s3_error(&e))),
    }
}

/// A short description of a rust-s3 error: the HTTP status with the S3 error code and
/// message when the server sent an XML error body. rust-s3's messages never contain the
/// secret key (requests are signed in headers, not presigned URLs).
fn describe_s3_error(e: &S3Error) -> String {
    match e {
        S3Error::HttpFailWithBody(status, body) => {
            let code = xml_element(body, "Code");
            let message = xml_element(body, "Message");
            match (code, message) {
                (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
                (Some(code), None) => format!("HTTP {status} {code}"),
                (None, Some(message)) => format!("HTTP {status}: {message}"),
                (None, None) if body.trim().is_empty() => format!("HTTP {status}"),
                (None, None) => format!("HTTP {status}: {}", truncate(body.trim(), 200)),
            }
        }
        // Transport errors: the causes say why ("Connection refused", a TLS failure).
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    }
}

/// The text of the first `<name>…</name>` of an S3 XML error body, entities decoded.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    let text = body[start..end].trim();
    Some(
        text.replace("&apos;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Checks and normalises a key prefix: relative, no `..`, plain characters, ending in `/`.
fn normalize_prefix(prefix: Option<&str>) -> Result<String, StoreError> {
    let p = prefix.unwrap_or("").trim_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    let ok = p.split('/').all(|part| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    });
    if !ok {
        return Err(StoreError::Config(format!(
            "S3 prefix {p:?} may hold only letters, digits, '-', '_', '.' and '/'"
        )));
    }
    Ok(format!("{p}/"))
}
