//! Frames and bulk values of a stored instance, from its [`Layout`].
//!
//! - **Native** pixel data: frame *n* (1-based) is `frame_len` bytes at
//!   `offset + (n − 1) × frame_len`, with `frame_len = rows × columns × samples × bits / 8`
//!   (`YBR_FULL_422`: two samples per pixel; 1-bit data only when a frame fills whole
//!   bytes). One ranged read. Big endian pixel data (a retired syntax) is swapped to little
//!   endian, as PS3.18 wants for `application/octet-stream`, per Bits Allocated (or per
//!   16-bit word for 8-bit data sent as OW). A deflated data set is inflated from the
//!   start up to the frame: correct, and slow for late frames of large objects.
//! - **Encapsulated** pixel data: the frame's compressed bitstream, its fragments' bytes
//!   concatenated. Where frame *n* starts comes from the Basic Offset Table, else the
//!   Extended Offset Table; a frame ends where the next starts (the last one at the
//!   sequence delimiter). Without either table: a single-frame image is all fragments; a
//!   multi-frame one walks the fragment items (reading 4 bytes of each, seeking over the
//!   rest) — one fragment per frame when the counts agree, else frames begin at fragments
//!   that start a JPEG/JPEG-LS (`FF D8`) or JPEG 2000 (`FF 4F`) codestream, as pydicom does;
//!   when that does not give the declared number of frames the request is refused
//!   ([`StoreError::Unsupported`]). The walk is done again for each request (it is not
//!   cached): such objects are rare (modalities write offset tables for multi-frame
//!   images), and each walk is one pass over item headers.
//!
//! A frame is held in memory while it is sent (the HTTP adapter asks for one at a time).

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use dicom_core::VR;
use futures::StreamExt;

use super::json::{self, swap_in_place, swap_unit};
use super::{InstanceMetadata, Layout, ObjectReader, PixelLayout};
use crate::archive::Archive;
use crate::header;
use crate::objects::{ByteStream, ObjectKey, ObjectStore};
use crate::{Result, StoreError};

/// Pixel Data (7FE0,0010) as `(group << 16) | element`.
pub const PIXEL_DATA: u32 = 0x7FE0_0010;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const SEQUENCE_DELIMITATION: (u16, u16) = (0xFFFE, 0xE0DD);
/// Most fragments walked in one pixel data element.
const MAX_FRAGMENTS: usize = 1_000_000;
/// Largest compressed frame, or deflated bulk value, read into memory.
const MAX_IN_MEMORY: u64 = 1024 * 1024 * 1024;

/// How to find each frame of one instance.
#[derive(Debug, Clone)]
pub struct FramePlan {
    key: ObjectKey,
    size: u64,
    frames: u32,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Native {
        offset: u64,
        length: u64,
        frame_len: u64,
        swap: usize,
        deflated: bool,
    },
    /// Where each frame's first item starts (object offsets), in frame order.
    Table(Vec<u64>),
    /// The fragments (offset, length of their data) of each frame.
    Fragments(Vec<Vec<(u64, u64)>>),
}

impl FramePlan {
    /// The number of frames (Number of Frames, 1 when absent).
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Whether the frames are encapsulated (compressed) bitstreams.
    pub fn is_encapsulated(&self) -> bool {
        !matches!(self.kind, Kind::Native { .. })
    }
}

/// Bytes per native frame, or why frames cannot be cut.
pub fn native_frame_len(px: &PixelLayout) -> Result<u64> {
    let pixels = u64::from(px.rows) * u64::from(px.columns);
    let samples = if px.photometric_interpretation.as_deref() == Some("YBR_FULL_422") {
        2
    } else {
        u64::from(px.samples_per_pixel.max(1))
    };
    let bits = pixels * samples * u64::from(px.bits_allocated);
    if bits == 0 {
        return Err(StoreError::Unsupported(
            "the instance's Rows, Columns or Bits Allocated is missing or zero, so its pixel \
             data cannot be cut into frames"
                .into(),
        ));
    }
    if bits % 8 != 0 {
        return Err(StoreError::Unsupported(format!(
            "frames of {bits} bits do not start on byte boundaries; retrieve the whole pixel \
             data (bulkdata/7FE00010) instead"
        )));
    }
    Ok(bits / 8)
}

/// The unit to swap big endian pixel data by.
fn pixel_swap_unit(px: &PixelLayout) -> usize {
    match px.bits_allocated {
        16 => 2,
        32 => 4,
        64 => 8,
        _ if px.vr == "OW" => 2,
        _ => 1,
    }
}

fn corrupt(key: &ObjectKey, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("object {key}: {what}"))
}

fn io_corrupt(key: &ObjectKey) -> impl Fn(io::Error) -> StoreError + '_ {
    move |e| corrupt(key, format!("cannot read its pixel data: {e}"))
}

/// Reads an item header (tag, length) of encapsulated pixel data (always little endian).
fn item_header(r: &mut impl Read) -> io::Result<((u16, u16), u32)> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok((
        (
            u16::from_le_bytes([b[0], b[1]]),
            u16::from_le_bytes([b[2], b[3]]),
        ),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    ))
}

/// Whether a fragment's first bytes start a codestream (a new frame).
fn starts_codestream(head: &[u8]) -> bool {
    matches!(head, [0xFF, 0xD8, ..] | [0xFF, 0x4F, ..])
}

/// Walks the fragment items from `first` (blocking). Each: (data offset, length, first 4
/// bytes).
fn walk_fragments(
    objects: Arc<dyn ObjectStore>,
    key: &ObjectKey,
    size: u64,
    first: u64,
) -> Result<Vec<(u64, u64, Vec<u8>)>> {
    use json::Source as _;
    let mut r = ObjectReader::new(objects, key.clone(), size, first);
    let mut out = Vec::new();
    loop {
        if r.position() >= size {
            return Err(corrupt(key, "the pixel data has no sequence delimiter"));
        }
        let (tag, len) = item_header(&mut r).map_err(io_corrupt(key))?;
        match tag {
            ITEM if len != u32::MAX => {
                if out.len() >= MAX_FRAGMENTS {
                    return Err(StoreError::Unsupported(format!(
                        "the pixel data has more than {MAX_FRAGMENTS} fragments"
                    )));
                }
                let at = r.position();
                let head_len = u64::from(len).min(4);
                let head = r.take_bytes(head_len).map_err(io_corrupt(key))?.to_vec();
                r.skip_bytes(u64::from(len) - head_len)
                    .map_err(io_corrupt(key))?;
                out.push((at, u64::from(len), head));
            }
            SEQUENCE_DELIMITATION => return Ok(out),
            other => {
                return Err(corrupt(
                    key,
                    format!(
                        "({:04X},{:04X}) where a fragment item was expected",
                        other.0, other.1
                    ),
                ));
            }
        }
    }
}

/// Groups fragments into `frames` frames, or says why it cannot.
fn group_fragments(
    fragments: Vec<(u64, u64, Vec<u8>)>,
    frames: u32,
) -> Result<Vec<Vec<(u64, u64)>>> {
    let n = fragments.len();
    if frames == 1 {
        return Ok(vec![
            fragments.into_iter().map(|(o, l, _)| (o, l)).collect(),
        ]);
    }
    if n == frames as usize {
        return Ok(fragments
            .into_iter()
            .map(|(o, l, _)| vec![(o, l)])
            .collect());
    }
    let mut out: Vec<Vec<(u64, u64)>> = Vec::new();
    for (o, l, head) in fragments {
        if out.is_empty() || starts_codestream(&head) {
            out.push(Vec::new());
        }
        if let Some(last) = out.last_mut() {
            last.push((o, l));
        }
    }
    if out.len() == frames as usize {
        Ok(out)
    } else {
        Err(StoreError::Unsupported(format!(
            "the pixel data has {n} fragments for {frames} frames and no offset table, so \
             where each frame starts is unknown; retrieve the instance instead"
        )))
    }
}

/// Frame starts from an offset table relative to the first fragment, if it fits.
fn table_starts(offsets: &[u64], first: u64, frames: u32, size: u64) -> Option<Vec<u64>> {
    if offsets.len() != frames as usize || offsets.first() != Some(&0) {
        return None;
    }
    let starts: Vec<u64> = offsets
        .iter()
        .map(|o| first.checked_add(*o))
        .collect::<Option<_>>()?;
    let ordered = starts.windows(2).all(|w| w[0] < w[1]);
    (ordered && starts.iter().all(|s| *s < size)).then_some(starts)
}

/// The items between `start` and `end` (or the sequence delimiter), their data
/// concatenated (blocking).
fn read_items(
    objects: Arc<dyn ObjectStore>,
    key: &ObjectKey,
    size: u64,
    start: u64,
    end: u64,
) -> Result<Bytes> {
    let mut r = ObjectReader::new(objects, key.clone(), size, start);
    let mut out = BytesMut::new();
    while r.position() < end {
        let (tag, len) = item_header(&mut r).map_err(io_corrupt(key))?;
        match tag {
            ITEM if len != u32::MAX => {
                if out.len() as u64 + u64::from(len) > MAX_IN_MEMORY {
                    return Err(StoreError::Unsupported(
                        "a compressed frame larger than 1 GiB".into(),
                    ));
                }
                out.extend_from_slice(&r.take_bytes(u64::from(len)).map_err(io_corrupt(key))?);
            }
            SEQUENCE_DELIMITATION => break,
            other => {
                return Err(corrupt(
                    key,
                    format!(
                        "({:04X},{:04X}) where a fragment item was expected",
                        other.0, other.1
                    ),
                ));
            }
        }
    }
    Ok(out.freeze())
}

/// `len` bytes at `offset` of the inflated data set of a deflated object (blocking).
fn read_inflated(
    objects: Arc<dyn ObjectStore>,
    key: &ObjectKey,
    size: u64,
    offset: u64,
    len: u64,
) -> Result<Bytes> {
    use json::Source as _;
    if len > MAX_IN_MEMORY {
        return Err(StoreError::Unsupported(
            "values over 1 GiB of a deflated data set".into(),
        ));
    }
    let mut r = ObjectReader::new(objects, key.clone(), size, 0);
    header::read_file_meta(&mut r).map_err(|e| corrupt(key, e))?;
    let mut inflated = io::BufReader::new(flate2::read::DeflateDecoder::new(r));
    let skipped = inflated.skip_bytes(offset).map_err(io_corrupt(key))?;
    if skipped < offset {
        return Err(corrupt(key, "the data set ends before the value"));
    }
    let mut out = Vec::with_capacity(len as usize);
    let got = inflated
        .take(len)
        .read_to_end(&mut out)
        .map_err(io_corrupt(key))?;
    if (got as u64) < len {
        return Err(corrupt(key, "the data set ends inside the value"));
    }
    Ok(Bytes::from(out))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Corrupt(format!("a read task failed: {e}")))?
}

async fn collect(mut s: ByteStream, capacity: u64) -> Result<Bytes> {
    let mut out = BytesMut::with_capacity(capacity.min(MAX_IN_MEMORY) as usize);
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out.freeze())
}

/// A stream whose bytes are swapped in `unit`-byte groups (big to little endian), across
/// chunk boundaries; the stream must start on a group boundary.
pub fn swapped(stream: ByteStream, unit: usize) -> ByteStream {
    if unit <= 1 {
        return stream;
    }
    let state = Some((stream, Vec::<u8>::new()));
    Box::pin(futures::stream::unfold(state, move |state| async move {
        let (mut s, mut carry) = state?;
        loop {
            match s.next().await {
                Some(Ok(chunk)) => {
                    carry.extend_from_slice(&chunk);
                    let whole = carry.len() - carry.len() % unit;
                    if whole == 0 {
                        continue;
                    }
                    let mut out: Vec<u8> = carry.drain(..whole).collect();
                    swap_in_place(&mut out, unit);
                    return Some((Ok(Bytes::from(out)), Some((s, carry))));
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None if carry.is_empty() => return None,
                // A trailing partial group (an odd-length value) as it is.
                None => return Some((Ok(Bytes::from(std::mem::take(&mut carry))), None)),
            }
        }
    }))
}

impl Archive {
    /// How to find the frames of an instance. `NotFound` when it has no pixel data.
    pub async fn frame_plan(&self, inst: &InstanceMetadata) -> Result<FramePlan> {
        let px = inst.layout.pixel.as_ref().ok_or_else(|| {
            StoreError::NotFound(format!(
                "pixel data in instance {}",
                inst.item.sop_instance_uid
            ))
        })?;
        let key = ObjectKey::parse(&inst.item.object_key)?;
        let size = u64::try_from(inst.item.size_bytes).unwrap_or(0);
        let frames = px.number_of_frames.max(1);
        let kind = match (px.length, px.first_fragment) {
            (Some(length), _) => Kind::Native {
                offset: px.offset,
                length,
                frame_len: native_frame_len(px)?,
                swap: if inst.layout.big_endian {
                    pixel_swap_unit(px)
                } else {
                    1
                },
                deflated: inst.layout.deflated,
            },
            (None, Some(first)) => {
                let bot: Vec<u64> = px.basic_offsets.iter().map(|o| u64::from(*o)).collect();
                let eot: Vec<u64> = px.extended_offsets.iter().map(|(o, _)| *o).collect();
                if let Some(starts) = table_starts(&bot, first, frames, size)
                    .or_else(|| table_starts(&eot, first, frames, size))
                {
                    Kind::Table(starts)
                } else if frames == 1 {
                    Kind::Table(vec![first])
                } else {
                    let objects = self.objects().clone();
                    let k = key.clone();
                    let fragments =
                        blocking(move || walk_fragments(objects, &k, size, first)).await?;
                    Kind::Fragments(group_fragments(fragments, frames)?)
                }
            }
            (None, None) => {
                return Err(corrupt(&key, "encapsulated pixel data without fragments"));
            }
        };
        Ok(FramePlan {
            key,
            size,
            frames,
            kind,
        })
    }

    /// Frame `n` (1-based, at most [`FramePlan::frames`]): native bytes in little endian,
    /// or the compressed bitstream.
    pub async fn read_frame(&self, plan: &FramePlan, n: u32) -> Result<Bytes> {
        if n == 0 || n > plan.frames {
            return Err(StoreError::NotFound(format!(
                "frame {n} (the instance has {})",
                plan.frames
            )));
        }
        let i = (n - 1) as usize;
        let objects = self.objects().clone();
        let key = plan.key.clone();
        let size = plan.size;
        match &plan.kind {
            Kind::Native {
                offset,
                length,
                frame_len,
                swap,
                deflated,
            } => {
                let rel = u64::from(n - 1) * frame_len;
                if rel + frame_len > *length {
                    return Err(corrupt(
                        &key,
                        format!(
                            "its pixel data of {length} bytes ends before frame {n} \
                             ({frame_len} bytes each)"
                        ),
                    ));
                }
                // Swapped data is read from a group boundary (8-bit OW frames may start
                // mid-word).
                let unit = *swap as u64;
                let front = rel % unit;
                let end = (rel + frame_len).div_ceil(unit) * unit;
                let end = end.min(*length);
                let (start, len) = (offset + rel - front, end - (rel - front));
                let mut bytes = if *deflated {
                    blocking(move || read_inflated(objects, &key, size, start, len)).await?
                } else {
                    collect(objects.get_range(&key, start, len).await?, len).await?
                };
                if *swap > 1 {
                    let mut v = bytes.to_vec();
                    swap_in_place(&mut v, *swap);
                    bytes = Bytes::from(v);
                }
                Ok(bytes.slice(front as usize..(front + frame_len) as usize))
            }
            Kind::Table(starts) => {
                let start = starts[i];
                let end = starts.get(i + 1).copied().unwrap_or(size);
                blocking(move || read_items(objects, &key, size, start, end)).await
            }
            Kind::Fragments(frames) => {
                let mut out = BytesMut::new();
                for (offset, len) in &frames[i] {
                    let part = collect(objects.get_range(&key, *offset, *len).await?, *len).await?;
                    out.extend_from_slice(&part);
                }
                Ok(out.freeze())
            }
        }
    }

    /// A top-level bulk value of an instance (`tag` as `(group << 16) | element`) as
    /// little endian bytes: native Pixel Data, or one of the [`Layout::bulk`] values.
    /// `None` when the instance has no such bulk value (encapsulated Pixel Data is read as
    /// frames).
    pub async fn bulk_value(
        &self,
        inst: &InstanceMetadata,
        tag: u32,
    ) -> Result<Option<ByteStream>> {
        let layout: &Layout = &inst.layout;
        let (offset, length, unit) = if tag == PIXEL_DATA {
            match layout.pixel.as_ref() {
                Some(px) => match px.length {
                    Some(length) => (px.offset, length, pixel_swap_unit(px)),
                    None => return Ok(None),
                },
                None => return Ok(None),
            }
        } else {
            match layout.bulk.iter().find(|b| b.tag == tag) {
                Some(b) => {
                    let vr = VR::from_binary(b.vr.as_bytes().try_into().unwrap_or([b'O', b'B']))
                        .unwrap_or(VR::OB);
                    (b.offset, b.length, swap_unit(vr))
                }
                None => return Ok(None),
            }
        };
        let unit = if layout.big_endian { unit } else { 1 };
        let key = ObjectKey::parse(&inst.item.object_key)?;
        let size = u64::try_from(inst.item.size_bytes).unwrap_or(0);
        let objects = self.objects().clone();
        let stream = if layout.deflated {
            let bytes =
                blocking(move || read_inflated(objects, &key, size, offset, length)).await?;
            Box::pin(futures::stream::once(async move { Ok(bytes) })) as ByteStream
        } else {
            objects.get_range(&key, offset, length).await?
        };
        Ok(Some(swapped(stream, unit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_frame_sizes() {
        let px = |rows, cols, spp, bits, pi: &str| PixelLayout {
            rows,
            columns: cols,
            samples_per_pixel: spp,
            bits_allocated: bits,
            photometric_interpretation: Some(pi.into()),
            ..PixelLayout::default()
        };
        assert_eq!(
            native_frame_len(&px(128, 128, 1, 16, "MONOCHROME2")).unwrap(),
            32768
        );
        assert_eq!(native_frame_len(&px(3, 3, 3, 8, "RGB")).unwrap(), 27);
        assert_eq!(
            native_frame_len(&px(2, 4, 3, 8, "YBR_FULL_422")).unwrap(),
            16
        );
        assert_eq!(native_frame_len(&px(8, 8, 1, 1, "MONOCHROME2")).unwrap(), 8);
        assert!(matches!(
            native_frame_len(&px(3, 3, 1, 1, "MONOCHROME2")),
            Err(StoreError::Unsupported(_))
        ));
        assert!(matches!(
            native_frame_len(&px(0, 3, 1, 8, "MONOCHROME2")),
            Err(StoreError::Unsupported(_))
        ));
    }

    #[test]
    fn offset_tables() {
        assert_eq!(
            table_starts(&[0, 10, 30], 100, 3, 1000),
            Some(vec![100, 110, 130])
        );
        assert_eq!(table_starts(&[0, 10], 100, 3, 1000), None, "count");
        assert_eq!(
            table_starts(&[5, 10, 30], 100, 3, 1000),
            None,
            "first not 0"
        );
        assert_eq!(table_starts(&[0, 30, 10], 100, 3, 1000), None, "order");
        assert_eq!(
            table_starts(&[0, 10, 3000], 100, 3, 1000),
            None,
            "past the end"
        );
        assert_eq!(table_starts(&[0, u64::MAX], 100, 2, 1000), None, "overflow");
        assert_eq!(table_starts(&[], 100, 1, 1000), None);
    }

    #[test]
    fn fragments_into_frames() {
        let f = |o: u64, head: &[u8]| (o, 10, head.to_vec());
        // One per frame.
        let g = group_fragments(vec![f(0, b"\xff\xd8"), f(20, b"\xff\xd8")], 2).unwrap();
        assert_eq!(g, vec![vec![(0, 10)], vec![(20, 10)]]);
        // Split frames: a new frame at each start of a codestream.
        let g = group_fragments(
            vec![
                f(0, b"\xff\xd8\xff\xe0"),
                f(20, b"\x12\x34"),
                f(40, b"\xff\x4f\xff\x51"),
            ],
            2,
        )
        .unwrap();
        assert_eq!(g, vec![vec![(0, 10), (20, 10)], vec![(40, 10)]]);
        // A single frame takes every fragment.
        let g = group_fragments(vec![f(0, b"a"), f(20, b"b")], 1).unwrap();
        assert_eq!(g, vec![vec![(0, 10), (20, 10)]]);
        // Cannot tell.
        assert!(matches!(
            group_fragments(vec![f(0, b"ab"), f(20, b"cd"), f(40, b"ef")], 2),
            Err(StoreError::Unsupported(_))
        ));
    }

    #[tokio::test]
    async fn swapping_across_chunks() {
        let chunks: Vec<Result<Bytes>> = vec![
            Ok(Bytes::from_static(&[1, 2, 3])),
            Ok(Bytes::from_static(&[4, 5])),
            Ok(Bytes::from_static(&[6, 7, 8, 9])),
        ];
        let s: ByteStream = Box::pin(futures::stream::iter(chunks));
        let out = collect(swapped(s, 2), 0).await.unwrap();
        assert_eq!(&out[..], &[2, 1, 4, 3, 6, 5, 8, 7, 9]);
        let s: ByteStream = Box::pin(futures::stream::iter(vec![Ok(Bytes::from_static(&[
            1, 2, 3, 4, 5, 6, 7, 8,
        ]))]));
        let out = collect(swapped(s, 4), 0).await.unwrap();
        assert_eq!(&out[..], &[4, 3, 2, 1, 8, 7, 6, 5]);
    }
}
