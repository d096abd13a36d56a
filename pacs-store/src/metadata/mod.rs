//! WADO-RS metadata, frames and bulk data of stored instances (PS3.18 10.4).
//!
//! - [`json`]: one stored data set as the DICOM JSON model, read up to Pixel Data, with
//!   where its bulk values are (the [`Layout`]);
//! - [`frames`]: where frame *n* of an instance is (native offsets, Basic or Extended
//!   Offset Table, fragments) and its bytes;
//! - here: the metadata cache and [`Archive::metadata`].
//!
//! Here rather than in the HTTP adapter: C-FIND (instance-level return keys), the worklist
//! and the viewer's API all want a stored instance's attributes without reopening its object,
//! and only this crate reads objects and writes SQL.
//!
//! ## The cache (migration 0007)
//!
//! One row per instance in `instance_metadata`: its DICOM JSON (`body`, the text answered
//! as is) and its layout (`layout`, JSON), built the first time any metadata, frames or bulk
//! data of the instance is asked for, and kept. A study's metadata is then one SQL
//! statement — the scope check, the instances in order and their cached JSON together —
//! and the answer is the bodies joined into an array, never parsed again: a 1000-instance
//! study is served without opening one object.
//!
//! Rows are per instance rather than one text per series: an instance never changes once
//! stored (a different object under the same UID is kept as a conflict copy, not an
//! update), so a row is never stale; a late instance in a series gets its own row when the
//! series is next read, without rebuilding the 999 others; and an instance's frames find
//! its pixel layout without loading its series. A series is complete in the cache exactly
//! when every instance row has a metadata row (the LEFT JOIN says which are missing), which
//! is what "the cached count equals the series' number of instances" would approximate. A
//! row whose `format` is older than [`FORMAT`] is rebuilt (the JSON rendering changed).
//! Rows go with their instance (`ON DELETE CASCADE`: `pacs check --repair`).
//!
//! Building is best effort: the answer does not wait for the cache write to succeed (a busy
//! SQLite database only means the next request builds again). An instance whose object
//! cannot be read is answered from the index alone (its UIDs and what the index holds) and
//! not cached, with an error in the log, rather than failing its whole study.

pub mod frames;
pub mod json;

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use dicom_encoding::{Codec, Endianness, TransferSyntaxIndex};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use crate::access::Scope;
use crate::archive::Archive;
use crate::header::{self, HeaderError};
use crate::index::now_micros;
use crate::objects::{ObjectKey, ObjectStore};
use crate::query::Retrievable;
use crate::{Result, StoreError};

/// Version of the cached rendering: rows of another format are rebuilt.
pub const FORMAT: i64 = 1;
/// Instances read at once when building the cache.
const BUILD_CONCURRENCY: usize = 4;

/// Where an instance's bulk values are.
///
/// Offsets are byte positions in the stored object, or, when `deflated`, in the inflated
/// data set (a deflated data set cannot be read from the middle).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    #[serde(default)]
    pub deflated: bool,
    #[serde(default)]
    pub big_endian: bool,
    #[serde(default)]
    pub pixel: Option<PixelLayout>,
    /// Top-level bulk values other than Pixel Data, in data set order.
    #[serde(default)]
    pub bulk: Vec<BulkLocation>,
}

/// Pixel Data (7FE0,0010) and the attributes that say how it is cut into frames.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelLayout {
    /// `OB` or `OW` (as sent; `OW` in implicit VR).
    pub vr: String,
    /// Where the value starts (for encapsulated pixel data: the Basic Offset Table item).
    pub offset: u64,
    /// The value length; `None` for encapsulated pixel data (undefined length).
    pub length: Option<u64>,
    pub rows: u32,
    pub columns: u32,
    pub samples_per_pixel: u32,
    pub bits_allocated: u32,
    /// Number of Frames, 1 when absent.
    pub number_of_frames: u32,
    #[serde(default)]
    pub photometric_interpretation: Option<String>,
    /// The Basic Offset Table (encapsulated; empty when the table is empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basic_offsets: Vec<u32>,
    /// Where the first fragment item starts (encapsulated).
    #[serde(default)]
    pub first_fragment: Option<u64>,
    /// The Extended Offset Table with its lengths (7FE0,0001/0002), when present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extended_offsets: Vec<(u64, u64)>,
}

/// A top-level bulk value other than Pixel Data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkLocation {
    /// `(group << 16) | element`.
    pub tag: u32,
    pub vr: String,
    pub offset: u64,
    pub length: u64,
}

/// One instance's metadata, and where its object is.
#[derive(Debug, Clone)]
pub struct InstanceMetadata {
    pub item: Retrievable,
    /// The instance's DICOM JSON object, as text.
    pub json: String,
    pub layout: Layout,
    /// The object could not be read: `json` is what the index alone says, `layout` empty.
    pub unreadable: bool,
}

impl InstanceMetadata {
    /// The base of this instance's URIs: `/dicom-web/studies/…/series/…/instances/…`.
    pub fn uri(&self) -> String {
        instance_uri(&self.item)
    }
}

fn instance_uri(item: &Retrievable) -> String {
    format!(
        "/dicom-web/studies/{}/series/{}/instances/{}",
        item.study_instance_uid, item.series_instance_uid, item.sop_instance_uid
    )
}

/// Reads a stored Part 10 object (from its first byte) as DICOM JSON text and its layout.
/// `bulk_base` is the instance's URI, which bulk values' URIs start with.
pub fn read_object(r: impl json::Source, bulk_base: &str) -> Result<(String, Layout), HeaderError> {
    let mut r = r;
    let meta = header::read_file_meta(&mut r)?;
    let uid = meta
        .transfer_syntax_uid
        .trim_matches(['\0', ' '])
        .to_owned();
    let unsupported = || HeaderError::UnsupportedTransferSyntax(uid.clone());
    let ts = TransferSyntaxRegistry.get(&uid).ok_or_else(unsupported)?;
    let enc = json::Enc {
        explicit: header::is_explicit_vr(ts).ok_or_else(unsupported)?,
        big: ts.endianness() == Endianness::Big,
    };
    let (parsed, deflated) = if matches!(ts.codec(), Codec::Dataset(_)) {
        let inflated = io::BufReader::new(flate2::read::DeflateDecoder::new(r));
        (json::read_dataset(inflated, enc, 0, bulk_base)?, true)
    } else {
        (
            json::read_dataset(r, enc, meta.dataset_offset, bulk_base)?,
            false,
        )
    };
    let mut layout = parsed.layout;
    layout.deflated = deflated;
    let text = serde_json::Value::Object(parsed.json).to_string();
    Ok((text, layout))
}

/// An object read through [`ObjectStore::get_range`] from a blocking task: ranges of
/// growing size (64 KiB first — most headers fit —, then up to 8 MiB), and skips that move
/// the position without reading (values that are not wanted are never downloaded).
pub(crate) struct ObjectReader {
    objects: Arc<dyn ObjectStore>,
    key: ObjectKey,
    size: u64,
    handle: tokio::runtime::Handle,
    buf: Bytes,
    /// Object position just after `buf`.
    next: u64,
    want: u64,
}

const FIRST_READ: u64 = 64 * 1024;
const LARGEST_READ: u64 = 8 * 1024 * 1024;

impl ObjectReader {
    /// A reader from `start`; must be created inside the runtime and used from a blocking
    /// thread (it waits for each range on `handle`).
    pub(crate) fn new(
        objects: Arc<dyn ObjectStore>,
        key: ObjectKey,
        size: u64,
        start: u64,
    ) -> Self {
        ObjectReader {
            objects,
            key,
            size,
            handle: tokio::runtime::Handle::current(),
            buf: Bytes::new(),
            next: start,
            want: FIRST_READ,
        }
    }

    /// The object position of the next byte read.
    pub(crate) fn position(&self) -> u64 {
        self.next - self.buf.len() as u64
    }

    fn fetch(&mut self) -> io::Result<()> {
        if self.next >= self.size {
            return Ok(());
        }
        let n = self.want.min(self.size - self.next);
        self.want = (self.want * 2).min(LARGEST_READ);
        let objects = self.objects.clone();
        let key = self.key.clone();
        let at = self.next;
        let bytes = self
            .handle
            .block_on(async move {
                let mut s = objects.get_range(&key, at, n).await?;
                let mut out = bytes::BytesMut::with_capacity(n as usize);
                while let Some(chunk) = s.next().await {
                    out.extend_from_slice(&chunk?);
                }
                Ok::<_, StoreError>(out.freeze())
            })
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.next += bytes.len() as u64;
        self.buf = bytes;
        Ok(())
    }

    /// `len` bytes from the current position.
    pub(crate) fn take_bytes(&mut self, len: u64) -> io::Result<Bytes> {
        if len <= self.buf.len() as u64 {
            return Ok(self.buf.split_to(len as usize));
        }
        let mut out = bytes::BytesMut::with_capacity(len.min(LARGEST_READ) as usize);
        let mut left = len;
        while left > 0 {
            if self.buf.is_empty() {
                // A large value: read exactly what is left rather than growing chunks.
                self.want = self.want.max(left.min(LARGEST_READ));
                self.fetch()?;
                if self.buf.is_empty() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            let k = left.min(self.buf.len() as u64) as usize;
            out.extend_from_slice(&self.buf.split_to(k));
            left -= k as u64;
        }
        Ok(out.freeze())
    }
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf.is_empty() {
            self.fetch()?;
        }
        let k = out.len().min(self.buf.len());
        out[..k].copy_from_slice(&self.buf[..k]);
        let _ = self.buf.split_to(k);
        Ok(k)
    }
}

impl json::Source for ObjectReader {
    fn skip_bytes(&mut self, n: u64) -> io::Result<u64> {
        let here = self.position();
        let n = n.min(self.size.saturating_sub(here));
        if n <= self.buf.len() as u64 {
            let _ = self.buf.split_to(n as usize);
        } else {
            self.next = here + n;
            self.buf = Bytes::new();
        }
        Ok(n)
    }
}

/// Reads and parses one instance's object (blocking: call from `spawn_blocking`).
fn build_blocking(objects: Arc<dyn ObjectStore>, item: &Retrievable) -> Result<(String, Layout)> {
    let key = ObjectKey::parse(&item.object_key)?;
    let size = u64::try_from(item.size_bytes).unwrap_or(0);
    let reader = ObjectReader::new(objects, key.clone(), size, 0);
    read_object(reader, &instance_uri(item)).map_err(|e| {
        StoreError::Corrupt(format!(
            "the object {key} of instance {} cannot be read: {e}",
            item.sop_instance_uid
        ))
    })
}

/// What the index alone says about an instance whose object cannot be read.
fn index_only_json(item: &Retrievable) -> String {
    let ui = |v: &str| serde_json::json!({"vr": "UI", "Value": [v]});
    serde_json::json!({
        "00080016": ui(&item.sop_class_uid),
        "00080018": ui(&item.sop_instance_uid),
        "00100020": {"vr": "LO", "Value": [item.patient_id]},
        "0020000D": ui(&item.study_instance_uid),
        "0020000E": ui(&item.series_instance_uid),
    })
    .to_string()
}

/// A row of the metadata query: the instance, and its cache row if current.
struct Row {
    item: Retrievable,
    id: i64,
    cached: Option<(String, Layout)>,
}

impl Archive {
    /// The metadata of a study's instances (of one of its series, or one instance) that
    /// `scope` may see, in series and instance order, from the cache or read from their
    /// objects and cached. Empty when there are none or they are outside the scope.
    pub async fn metadata(
        &self,
        scope: Scope,
        study_instance_uid: &str,
        series_instance_uid: Option<&str>,
        sop_instance_uid: Option<&str>,
    ) -> Result<Vec<InstanceMetadata>> {
        self.metadata_with(
            scope,
            study_instance_uid,
            series_instance_uid,
            sop_instance_uid,
            false,
        )
        .await
    }

    /// [`Archive::metadata`]; `wait_for_cache`: return only once what was built is cached
    /// (the warmer), otherwise the answer goes first and the cache is written meanwhile.
    async fn metadata_with(
        &self,
        scope: Scope,
        study_instance_uid: &str,
        series_instance_uid: Option<&str>,
        sop_instance_uid: Option<&str>,
        wait_for_cache: bool,
    ) -> Result<Vec<InstanceMetadata>> {
        let rows = self
            .metadata_rows(
                scope,
                study_instance_uid,
                series_instance_uid,
                sop_instance_uid,
            )
            .await?;
        let missing: Vec<(usize, Retrievable)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.cached.is_none())
            .map(|(i, r)| (i, r.item.clone()))
            .collect();
        let objects = self.objects().clone();
        let built: Vec<(usize, Result<(String, Layout)>)> = futures::stream::iter(missing)
            .map(|(i, item)| {
                let objects = objects.clone();
                async move {
                    let res = tokio::task::spawn_blocking(move || build_blocking(objects, &item))
                        .await
                        .map_err(|e| StoreError::Corrupt(format!("metadata task failed: {e}")))
                        .and_then(|r| r);
                    (i, res)
                }
            })
            .buffered(BUILD_CONCURRENCY)
            .collect()
            .await;
        let mut rows: Vec<Option<Row>> = rows.into_iter().map(Some).collect();
        let mut fresh = Vec::new();
        let mut out: Vec<Option<InstanceMetadata>> = vec![None; rows.len()];
        for (i, res) in built {
            let Some(row) = rows[i].take() else { continue };
            match res {
                Ok((json, layout)) => {
                    fresh.push((row.id, json.clone(), layout.clone()));
                    out[i] = Some(InstanceMetadata {
                        item: row.item,
                        json,
                        layout,
                        unreadable: false,
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, sop = %row.item.sop_instance_uid,
                        "metadata of an instance answered from the index only");
                    out[i] = Some(InstanceMetadata {
                        json: index_only_json(&row.item),
                        item: row.item,
                        layout: Layout::default(),
                        unreadable: true,
                    });
                }
            }
        }
        for (i, row) in rows.into_iter().enumerate() {
            if let Some(Row {
                item,
                cached: Some((json, layout)),
                ..
            }) = row
            {
                out[i] = Some(InstanceMetadata {
                    item,
                    json,
                    layout,
                    unreadable: false,
                });
            }
        }
        if !fresh.is_empty() {
            let archive = self.clone();
            let write = async move {
                if let Err(e) = archive.cache_metadata(&fresh).await {
                    tracing::warn!(error = %e, instances = fresh.len(),
                        "cannot cache instance metadata; the next request reads the objects again");
                }
            };
            if wait_for_cache {
                write.await;
            } else {
                // The answer does not wait for the cache (measured: writing 1000 entries
                // took 50–100 ms of a 170 ms cold request).
                tokio::spawn(write);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Builds and caches the metadata of a study's instances that are not cached yet (all
    /// of them: warming runs with the archive's own scope).
    pub async fn warm_metadata(&self, study_instance_uid: &str) -> Result<usize> {
        let rows = self
            .metadata_rows(Scope::All, study_instance_uid, None, None)
            .await?;
        let missing = rows.iter().filter(|r| r.cached.is_none()).count();
        if missing > 0 {
            self.metadata_with(Scope::All, study_instance_uid, None, None, true)
                .await?;
        }
        Ok(missing)
    }

    async fn metadata_rows(
        &self,
        scope: Scope,
        study_instance_uid: &str,
        series_instance_uid: Option<&str>,
        sop_instance_uid: Option<&str>,
    ) -> Result<Vec<Row>> {
        let (kind, subject) = scope.binds();
        let statement = sqlx::query(concat!(
            "SELECT s.study_instance_uid, se.series_instance_uid, i.sop_instance_uid, \
             i.sop_class_uid, i.transfer_syntax_uid, i.object_key, i.size_bytes, \
             i.dataset_offset, i.number_of_frames, p.patient_id, p.issuer_of_patient_id, \
             i.id, m.format, m.body, m.layout \
             FROM instances i JOIN series se ON se.id = i.series_ref \
             JOIN studies s ON s.id = i.study_ref JOIN patients p ON p.id = s.patient_ref \
             LEFT JOIN instance_metadata m ON m.instance_ref = i.id \
             WHERE s.study_instance_uid = $1 \
             AND ($2 IS NULL OR se.series_instance_uid = $2) \
             AND ($3 IS NULL OR i.sop_instance_uid = $3) AND ",
            crate::access::in_scope!("$4", "$5"),
            " ORDER BY se.series_number, se.id, i.instance_number, i.id"
        ))
        .bind(study_instance_uid)
        .bind(series_instance_uid)
        .bind(sop_instance_uid)
        .bind(kind)
        .bind(subject);
        let rows = self.index().fetch_all_alone(statement).await?;
        rows.iter()
            .map(|r| {
                let item = Retrievable {
                    study_instance_uid: r.try_get(0)?,
                    series_instance_uid: r.try_get(1)?,
                    sop_instance_uid: r.try_get(2)?,
                    sop_class_uid: r.try_get(3)?,
                    transfer_syntax_uid: r.try_get(4)?,
                    object_key: r.try_get(5)?,
                    size_bytes: r.try_get(6)?,
                    dataset_offset: r.try_get(7)?,
                    number_of_frames: r.try_get(8)?,
                    patient_id: r.try_get(9)?,
                    issuer_of_patient_id: r.try_get(10)?,
                };
                let format: Option<i64> = r.try_get(12)?;
                let body: Option<String> = r.try_get(13)?;
                let layout: Option<String> = r.try_get(14)?;
                let cached = match (format, body, layout) {
                    (Some(FORMAT), Some(body), Some(layout)) => {
                        serde_json::from_str(&layout).ok().map(|l| (body, l))
                    }
                    _ => None,
                };
                Ok(Row {
                    item,
                    id: r.try_get(11)?,
                    cached,
                })
            })
            .collect()
    }

    async fn cache_metadata(&self, rows: &[(i64, String, Layout)]) -> Result<()> {
        let now = now_micros();
        let mut tx = self.index().pool().begin().await?;
        for (id, body, layout) in rows {
            let layout = serde_json::to_string(layout)
                .map_err(|e| StoreError::Corrupt(format!("layout: {e}")))?;
            sqlx::query(
                "INSERT INTO instance_metadata (instance_ref, format, body, layout, built_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (instance_ref) DO UPDATE SET \
                 format = excluded.format, body = excluded.body, layout = excluded.layout, \
                 built_at = excluded.built_at",
            )
            .bind(*id)
            .bind(FORMAT)
            .bind(body.as_str())
            .bind(layout)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn sample(name: &str) -> (Value, Layout) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../sample-dicom/files")
            .join(name);
        let bytes = std::fs::read(&path).unwrap();
        let (text, layout) =
            read_object(&bytes[..], "/x").unwrap_or_else(|e| panic!("{name}: {e}"));
        (serde_json::from_str(&text).unwrap(), layout)
    }

    #[test]
    fn sample_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-dicom/files");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".dcm") {
                let (j, _) = sample(&name);
                assert!(j["00080018"]["Value"][0].is_string(), "{name}");
            }
        }
        // GB2312 through ISO 2022 escapes.
        let (j, layout) = sample("cr_jpeg_baseline.dcm");
        assert_eq!(
            j["00100010"]["Value"][0],
            json!({"Alphabetic": "Zhou^Guoqiang", "Ideographic": "周^国强"})
        );
        let px = layout.pixel.unwrap();
        assert_eq!((px.length, px.basic_offsets.clone()), (None, vec![0]));
        // GB18030, and a multi-frame JPEG with a Basic Offset Table.
        let (j, layout) = sample("us_cine_jpeg.dcm");
        assert_eq!(j["00100010"]["Value"][0]["Ideographic"], "刘^䶮");
        assert_eq!(j["00280008"]["Value"][0], 10);
        let px = layout.pixel.unwrap();
        assert_eq!((px.number_of_frames, px.basic_offsets.len()), (10, 10));
        assert_eq!(
            j["7FE00010"],
            json!({"vr": "OB", "BulkDataURI": "/x/bulkdata/7FE00010"})
        );
        // Big endian: numbers right, Latin-1 decoded.
        let (j, layout) = sample("cr_big_endian.dcm");
        assert_eq!(j["00280010"]["Value"][0], 128);
        assert_eq!(j["00100010"]["Value"][0]["Alphabetic"], "Müller^Jörg");
        assert!(layout.big_endian);
        assert_eq!(layout.pixel.unwrap().length, Some(32768));
        // Deflated: positions in the inflated data set; a sequence.
        let (j, layout) = sample("sr_text_deflated.dcm");
        assert!(layout.deflated);
        assert!(
            j["0040A730"]["Value"]
                .as_array()
                .is_some_and(|v| !v.is_empty())
        );
        // Implicit VR: VRs from the dictionary.
        let (j, _) = sample("sc_rgb_implicit.dcm");
        assert_eq!(j["00280002"], json!({"vr": "US", "Value": [3]}));
    }
}
