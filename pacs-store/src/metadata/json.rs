//! A stored data set as the DICOM JSON model (PS3.18 F.2), read in one pass up to Pixel
//! Data, with where its bulk values are ([`Layout`]).
//!
//! A plain reader over element headers, like [`crate::header`], rather than dicom-rs's
//! parser: that one fails on CP-246 UN sequences of undefined length and does not decode
//! multi-valued Specific Character Sets (ISO 2022 escapes); text is decoded here with
//! [`CharsetDecoder`], item by item (an item may carry its own Specific Character Set).
//!
//! What becomes what:
//! - **bulk values** get a `BulkDataURI` instead of a value: Pixel Data always; a top-level
//!   OB/OW/OF/OD/OL/OV/UN value larger than [`INLINE_BINARY_MAX`] (1 KiB); a top-level value
//!   of another VR that PS3.18 Table F.2.3-1 lets be bulk (text, numbers) larger than
//!   [`VALUE_MAX`]. The URI is `{instance}/bulkdata/{tag}`, which the bulkdata route serves.
//!   Inside sequences there is no bulk data route (PS3.18 gives top-level tags only): binary
//!   values up to [`NESTED_INLINE_MAX`] (64 KiB, e.g. icon images) are `InlineBinary`, larger
//!   ones and text over [`VALUE_MAX`] are sent without a value (`{"vr": …}`);
//! - smaller binary values: `InlineBinary`, base64 of the little endian value;
//! - IS and DS: JSON numbers. A value that is not a number (`"abc"`, `"NaN"`) is kept as the
//!   string it is — dropping it would hide what the modality sent, and PS3.18 readers
//!   (pydicom, Cornerstone's `Number(…)`) take strings too;
//! - FL/FD: numbers; NaN and ±infinity, which JSON has no number for, as the strings
//!   `"NaN"`, `"Infinity"`, `"-Infinity"`. SV/UV: numbers within ±(2^53−1), strings beyond
//!   (JavaScript numbers lose the digits);
//! - PN: `{"Alphabetic", "Ideographic", "Phonetic"}` with the empty groups left out;
//! - AT: `"GGGGEEEE"`; an empty value in a multi-valued attribute: `null`; a zero-length
//!   attribute: `{"vr": …}` without `Value`;
//! - sequences recursively (items as objects), also CP-246 UN sequences of undefined length
//!   (given as `SQ`), and a UN of defined length whose tag the dictionary knows is read as
//!   the dictionary's VR (as pydicom does), sequences included;
//! - group length elements (gggg,0000) are left out: they describe an encoding, not the
//!   data, and change with it.
//!
//! Elements after Pixel Data (in practice only Data Set Trailing Padding) are not read: the
//! read stops at Pixel Data so that a multi-gigabyte object costs a header's worth of reads.
//! For encapsulated Pixel Data the Basic Offset Table item is read too (frames need it).
//!
//! Bounds: sequences nest at most [`MAX_DEPTH`] levels, the kept values of one instance at
//! most [`JSON_BUDGET`] bytes ([`HeaderError::TooLarge`]), no length read from the data is
//! trusted for an allocation larger than the value caps, and a length that runs past the
//! end of the data is [`HeaderError::Truncated`]. Nothing here panics on hostile input.

use std::io::{self, Read};

use base64::Engine as _;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use serde_json::{Map, Number, Value};

use super::{BulkLocation, Layout, PixelLayout};
use crate::charset::CharsetDecoder;
use crate::header::HeaderError;

/// Top-level binary values larger than this get a BulkDataURI (1 KiB).
pub const INLINE_BINARY_MAX: u64 = 1024;
/// Binary values inside sequences up to this size are sent inline; larger ones without a
/// value (64 KiB: icon images fit).
pub const NESTED_INLINE_MAX: u64 = 64 * 1024;
/// Values of other VRs larger than this are bulk (top level) or sent without a value.
pub const VALUE_MAX: u64 = 1024 * 1024;
/// The most value bytes kept for one instance's JSON.
pub const JSON_BUDGET: u64 = 32 * 1024 * 1024;
/// Deepest nesting of sequences read.
pub const MAX_DEPTH: usize = 64;
/// Largest Basic Offset Table read (2 million frames).
const MAX_BOT_BYTES: u32 = 8 * 1024 * 1024;
/// Largest Extended Offset Table (and its lengths) read.
const MAX_EOT_BYTES: u64 = 16 * 1024 * 1024;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITATION: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITATION: Tag = Tag(0xFFFE, 0xE0DD);
const EXTENDED_OFFSET_TABLE: Tag = Tag(0x7FE0, 0x0001);
const EXTENDED_OFFSET_TABLE_LENGTHS: Tag = Tag(0x7FE0, 0x0002);

/// How elements are encoded at one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enc {
    pub explicit: bool,
    pub big: bool,
}

/// Content of UN elements (CP-246): implicit VR little endian.
const IMPLICIT_LE: Enc = Enc {
    explicit: false,
    big: false,
};

/// The data set read: its DICOM JSON object and where its bulk values are.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub json: Map<String, Value>,
    pub layout: Layout,
}

/// Reads the data set from `r` (the bytes after the file meta group, inflated when the
/// syntax is deflated) as DICOM JSON. `bulk_base` is the instance's URI; positions in the
/// layout are `offset` + the position in `r`.
pub fn read_dataset(
    r: impl Source,
    enc: Enc,
    offset: u64,
    bulk_base: &str,
) -> Result<Parsed, HeaderError> {
    let mut p = Parser {
        r: Counted { r, pos: 0 },
        budget: JSON_BUDGET,
        bulk_base,
        offset,
        layout: Layout {
            big_endian: enc.big,
            ..Layout::default()
        },
        top: TopLevel::default(),
    };
    let json = p.dataset(enc, None, 0, CharsetDecoder::default())?;
    let mut layout = p.layout;
    if let Some(px) = layout.pixel.as_mut() {
        let t = &p.top;
        px.rows = t.rows;
        px.columns = t.columns;
        px.samples_per_pixel = t.samples_per_pixel.unwrap_or(1);
        px.bits_allocated = t.bits_allocated;
        px.number_of_frames = t.number_of_frames.filter(|n| *n > 0).unwrap_or(1);
        px.photometric_interpretation = t.photometric.clone();
        if let (Some(offsets), Some(lengths)) = (t.eot.as_ref(), t.eot_lengths.as_ref())
            && offsets.len() == lengths.len()
            && !offsets.is_empty()
        {
            px.extended_offsets = offsets
                .iter()
                .copied()
                .zip(lengths.iter().copied())
                .collect();
        }
    }
    Ok(Parsed { json, layout })
}

/// Top-level attributes that say how the pixel data is laid out.
#[derive(Debug, Default)]
struct TopLevel {
    rows: u32,
    columns: u32,
    samples_per_pixel: Option<u32>,
    bits_allocated: u32,
    pixel_representation: u16,
    number_of_frames: Option<u32>,
    photometric: Option<String>,
    eot: Option<Vec<u64>>,
    eot_lengths: Option<Vec<u64>>,
}

/// What the data set is read from: a reader that can skip values without handing them out
/// (an object reader seeks; a stream reads and drops).
pub trait Source: Read {
    /// Skips `n` bytes; returns how many there were (fewer at the end of the data).
    fn skip_bytes(&mut self, n: u64) -> io::Result<u64>
    where
        Self: Sized,
    {
        io::copy(&mut self.take(n), &mut io::sink())
    }
}

impl<R: Read> Source for io::BufReader<R> {}
impl Source for &[u8] {}

/// A reader that counts the bytes it gave out.
struct Counted<R> {
    r: R,
    pos: u64,
}

fn read_error(e: io::Error, ctx: Option<Tag>) -> HeaderError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => truncated(ctx),
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
            HeaderError::Malformed(format!("unreadable data: {e}"))
        }
        _ => HeaderError::Io(e),
    }
}

fn truncated(ctx: Option<Tag>) -> HeaderError {
    HeaderError::Truncated {
        tag: ctx.map(|t| t.to_string()),
    }
}

impl<R: Source> Counted<R> {
    fn array<const N: usize>(&mut self, ctx: Option<Tag>) -> Result<[u8; N], HeaderError> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| read_error(e, ctx))?;
        self.pos += N as u64;
        Ok(b)
    }

    /// 4 bytes of a tag, or None at a clean end of the data.
    fn tag_or_end(&mut self, big: bool) -> Result<Option<Tag>, HeaderError> {
        let mut b = [0u8; 4];
        let mut n = 0;
        while n < 4 {
            match self.r.read(&mut b[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e, None)),
            }
        }
        match n {
            0 => Ok(None),
            4 => {
                self.pos += 4;
                Ok(Some(tag_from(b, big)))
            }
            _ => Err(truncated(None)),
        }
    }

    fn u32(&mut self, big: bool, ctx: Tag) -> Result<u32, HeaderError> {
        Ok(u32_from(self.array(Some(ctx))?, big))
    }

    /// `len` bytes (the caller has checked `len` against a cap).
    fn bytes(&mut self, len: u64, ctx: Tag) -> Result<Vec<u8>, HeaderError> {
        let mut v = Vec::with_capacity(len.min(VALUE_MAX) as usize);
        let got = (&mut self.r)
            .take(len)
            .read_to_end(&mut v)
            .map_err(|e| read_error(e, Some(ctx)))?;
        self.pos += got as u64;
        if (got as u64) < len {
            return Err(truncated(Some(ctx)));
        }
        Ok(v)
    }

    fn skip(&mut self, len: u64, ctx: Tag) -> Result<(), HeaderError> {
        let got = self
            .r
            .skip_bytes(len)
            .map_err(|e| read_error(e, Some(ctx)))?;
        self.pos += got;
        if got < len {
            return Err(truncated(Some(ctx)));
        }
        Ok(())
    }
}

fn u16_from(b: [u8; 2], big: bool) -> u16 {
    if big {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    }
}

fn u32_from(b: [u8; 4], big: bool) -> u32 {
    if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

fn tag_from(b: [u8; 4], big: bool) -> Tag {
    Tag(u16_from([b[0], b[1]], big), u16_from([b[2], b[3]], big))
}

/// VRs whose explicit-VR header has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
fn has_long_length(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::SV
            | VR::UC
            | VR::UN
            | VR::UR
            | VR::UT
            | VR::UV
    )
}

/// Binary VRs: InlineBinary or BulkDataURI, never `Value`.
fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

/// VRs PS3.18 Table F.2.3-1 allows a BulkDataURI for, besides the binary ones.
fn may_be_bulk(vr: VR) -> bool {
    matches!(
        vr,
        VR::DS
            | VR::FL
            | VR::FD
            | VR::IS
            | VR::LT
            | VR::SL
            | VR::SS
            | VR::ST
            | VR::SV
            | VR::UC
            | VR::UL
            | VR::US
            | VR::UT
            | VR::UV
    )
}

/// The byte size of one value unit to swap from big to little endian.
pub(crate) fn swap_unit(vr: VR) -> usize {
    match vr {
        VR::OW | VR::US | VR::SS | VR::AT => 2,
        VR::OF | VR::OL | VR::UL | VR::SL | VR::FL => 4,
        VR::OD | VR::OV | VR::FD | VR::SV | VR::UV => 8,
        _ => 1,
    }
}

/// Reverses every `unit`-byte group (big to little endian); a trailing partial group is
/// left as it is.
pub(crate) fn swap_in_place(bytes: &mut [u8], unit: usize) {
    if unit > 1 {
        for chunk in bytes.chunks_exact_mut(unit) {
            chunk.reverse();
        }
    }
}

/// The VR of an implicit VR element, from the standard dictionary.
fn implicit_vr(tag: Tag, pixel_representation: u16) -> VR {
    if tag.element() == 0x0000 {
        return VR::UL;
    }
    if tag.group() % 2 == 1 {
        // Private: creator elements are LO, everything else unknown.
        return if (0x0010..=0x00FF).contains(&tag.element()) {
            VR::LO
        } else {
            VR::UN
        };
    }
    match StandardDataDictionary.by_tag(tag).map(|e| e.vr()) {
        Some(VirtualVr::Exact(vr)) => vr,
        Some(VirtualVr::Xs) => {
            if pixel_representation == 1 {
                VR::SS
            } else {
                VR::US
            }
        }
        Some(VirtualVr::Ox | VirtualVr::Px | VirtualVr::Lt) => VR::OW,
        Some(_) | None => VR::UN,
    }
}

/// The dictionary's VR for a standard tag sent as UN, when it is unambiguous.
fn known_vr(tag: Tag) -> Option<VR> {
    if tag.group() % 2 == 1 || tag.element() == 0 {
        return None;
    }
    match StandardDataDictionary.by_tag(tag)?.vr() {
        VirtualVr::Exact(VR::UN) => None,
        VirtualVr::Exact(vr) => Some(vr),
        _ => None,
    }
}

fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

fn attr(vr: VR) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("vr".into(), Value::String(vr.to_string().to_owned()));
    m
}

struct Parser<'a, R> {
    r: Counted<R>,
    budget: u64,
    bulk_base: &'a str,
    offset: u64,
    layout: Layout,
    top: TopLevel,
}

impl<R: Source> Parser<'_, R> {
    fn spend(&mut self, n: u64) -> Result<(), HeaderError> {
        self.budget = self.budget.checked_sub(n + 32).ok_or_else(|| {
            HeaderError::TooLarge(format!(
                "the data set's attributes take more than {} MiB",
                JSON_BUDGET / (1024 * 1024)
            ))
        })?;
        Ok(())
    }

    fn malformed(&self, what: String) -> HeaderError {
        HeaderError::Malformed(format!("{what} (data set byte {})", self.r.pos))
    }

    fn bulk_uri(&self, tag: Tag) -> Value {
        Value::String(format!("{}/bulkdata/{}", self.bulk_base, tag_key(tag)))
    }

    /// VR (None when implicit) and length after a tag.
    fn vr_len(&mut self, tag: Tag, enc: Enc) -> Result<(Option<VR>, u32), HeaderError> {
        if !enc.explicit || tag.group() == 0xFFFE {
            return Ok((None, self.r.u32(enc.big, tag)?));
        }
        let code: [u8; 2] = self.r.array(Some(tag))?;
        let vr = VR::from_binary(code).ok_or_else(|| {
            self.malformed(format!(
                "unknown VR {:?} in {tag}",
                String::from_utf8_lossy(&code)
            ))
        })?;
        if has_long_length(vr) {
            let [_, _, a, b, c, d]: [u8; 6] = self.r.array(Some(tag))?;
            Ok((Some(vr), u32_from([a, b, c, d], enc.big)))
        } else {
            let len: [u8; 2] = self.r.array(Some(tag))?;
            Ok((Some(vr), u32::from(u16_from(len, enc.big))))
        }
    }

    /// The elements of a data set (the top level when `depth` is 0, else an item ending at
    /// `end` or at its delimiter).
    fn dataset(
        &mut self,
        enc: Enc,
        end: Option<u64>,
        depth: usize,
        mut decoder: CharsetDecoder,
    ) -> Result<Map<String, Value>, HeaderError> {
        let mut out = Map::new();
        loop {
            if let Some(end) = end {
                if self.r.pos == end {
                    break;
                }
                if self.r.pos > end {
                    return Err(self.malformed("an element runs past the end of its item".into()));
                }
            }
            let Some(tag) = self.r.tag_or_end(enc.big)? else {
                if depth == 0 {
                    break;
                }
                return Err(truncated(None));
            };
            if depth > 0 && end.is_none() && tag == ITEM_DELIMITATION {
                self.r.u32(enc.big, tag)?;
                break;
            }
            if tag.group() == 0xFFFE {
                return Err(self.malformed(format!("{tag} where an element was expected")));
            }
            if depth == 0 && tag == tags::PIXEL_DATA {
                let (vr, len) = self.vr_len(tag, enc)?;
                self.pixel_data(vr.unwrap_or(VR::OW), len, enc, &mut out)?;
                break;
            }
            let (vr, len) = self.vr_len(tag, enc)?;
            self.element(tag, vr, len, enc, depth, &mut decoder, &mut out)?;
        }
        Ok(out)
    }

    /// Pixel Data: a BulkDataURI and where it is; for encapsulated pixel data also the
    /// Basic Offset Table.
    fn pixel_data(
        &mut self,
        vr: VR,
        len: u32,
        enc: Enc,
        out: &mut Map<String, Value>,
    ) -> Result<(), HeaderError> {
        let tag = tags::PIXEL_DATA;
        let value_start = self.offset + self.r.pos;
        let mut px = PixelLayout {
            vr: vr.to_string().to_owned(),
            offset: value_start,
            length: (len != UNDEFINED).then_some(u64::from(len)),
            ..PixelLayout::default()
        };
        if len == UNDEFINED {
            // The Basic Offset Table: the first item.
            let item = self.r.tag_or_end(enc.big)?.ok_or(truncated(Some(tag)))?;
            let bot_len = self.r.u32(enc.big, tag)?;
            if item != ITEM {
                return Err(self.malformed(format!(
                    "encapsulated Pixel Data starts with {item}, not an item"
                )));
            }
            if bot_len == UNDEFINED {
                return Err(self.malformed("Basic Offset Table of undefined length".into()));
            }
            if bot_len <= MAX_BOT_BYTES && bot_len % 4 == 0 {
                let bytes = self.r.bytes(u64::from(bot_len), tag)?;
                px.basic_offsets = bytes
                    .chunks_exact(4)
                    .map(|c| u32_from([c[0], c[1], c[2], c[3]], enc.big))
                    .collect();
            } else {
                self.r.skip(u64::from(bot_len), tag)?;
            }
            px.first_fragment = Some(self.offset + self.r.pos);
        }
        let mut a = attr(vr);
        a.insert("BulkDataURI".into(), self.bulk_uri(tag));
        out.insert(tag_key(tag), Value::Object(a));
        self.layout.pixel = Some(px);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn element(
        &mut self,
        tag: Tag,
        explicit_vr: Option<VR>,
        len: u32,
        enc: Enc,
        depth: usize,
        decoder: &mut CharsetDecoder,
        out: &mut Map<String, Value>,
    ) -> Result<(), HeaderError> {
        let vr = explicit_vr.unwrap_or_else(|| implicit_vr(tag, self.top.pixel_representation));
        let skip_in_json = tag.element() == 0x0000;
        if len == UNDEFINED {
            if matches!(vr, VR::SQ | VR::UN) || explicit_vr.is_none() {
                // A sequence (a CP-246 UN sequence is implicit VR little endian inside).
                let inner = if vr == VR::UN && explicit_vr.is_some() {
                    IMPLICIT_LE
                } else {
                    enc
                };
                let items = self.sequence(tag, inner, None, depth, decoder)?;
                self.put_sequence(tag, items, skip_in_json, out)?;
            } else {
                // Encapsulated fragments somewhere else than top-level Pixel Data.
                self.skip_fragments(tag, enc)?;
                if !skip_in_json {
                    out.insert(tag_key(tag), Value::Object(attr(vr)));
                }
            }
            return Ok(());
        }
        let len = u64::from(len);
        if vr == VR::SQ {
            let end = self.r.pos + len;
            let items = self.sequence(tag, enc, Some(end), depth, decoder)?;
            self.put_sequence(tag, items, skip_in_json, out)?;
            return Ok(());
        }
        // A standard attribute sent as UN: read it as what it is (its value is little
        // endian, as written in an implicit VR little endian data set).
        if vr == VR::UN
            && !enc.big
            && len <= VALUE_MAX
            && let Some(known) = known_vr(tag)
        {
            if known == VR::SQ {
                let bytes = self.r.bytes(len, tag)?;
                let mut sub = Parser {
                    r: Counted {
                        r: &bytes[..],
                        pos: 0,
                    },
                    budget: self.budget,
                    bulk_base: self.bulk_base,
                    offset: 0,
                    layout: Layout::default(),
                    top: TopLevel::default(),
                };
                let items = sub.sequence(tag, IMPLICIT_LE, Some(len), depth, decoder)?;
                self.budget = sub.budget;
                self.put_sequence(tag, items, false, out)?;
                return Ok(());
            }
            if !is_binary(known) || len <= INLINE_BINARY_MAX {
                let bytes = self.r.bytes(len, tag)?;
                if depth == 0 {
                    self.top_level_bytes(tag, known, &bytes, IMPLICIT_LE);
                }
                self.spend(len)?;
                let a = value_attr(known, &bytes, false, decoder);
                out.insert(tag_key(tag), Value::Object(a));
                return Ok(());
            }
        }
        let value_start = self.offset + self.r.pos;
        let bulk = if is_binary(vr) {
            len > INLINE_BINARY_MAX
        } else {
            len > VALUE_MAX
        };
        if bulk {
            let mut a = attr(vr);
            let eot = depth == 0
                && (tag == EXTENDED_OFFSET_TABLE || tag == EXTENDED_OFFSET_TABLE_LENGTHS)
                && len <= MAX_EOT_BYTES;
            if eot {
                // Frames need the Extended Offset Table even when it is bulk data.
                let bytes = self.r.bytes(len, tag)?;
                self.top_level_bytes(tag, vr, &bytes, enc);
            } else if depth > 0 && is_binary(vr) && len <= NESTED_INLINE_MAX {
                let bytes = self.r.bytes(len, tag)?;
                self.spend(len + len / 3)?;
                let a = value_attr(vr, &bytes, enc.big, decoder);
                out.insert(tag_key(tag), Value::Object(a));
                return Ok(());
            } else {
                self.r.skip(len, tag)?;
            }
            if depth == 0 && (is_binary(vr) || may_be_bulk(vr)) {
                self.spend(64)?;
                a.insert("BulkDataURI".into(), self.bulk_uri(tag));
                self.layout.bulk.push(BulkLocation {
                    tag: (u32::from(tag.group()) << 16) | u32::from(tag.element()),
                    vr: vr.to_string().to_owned(),
                    offset: value_start,
                    length: len,
                });
            }
            if !skip_in_json {
                out.insert(tag_key(tag), Value::Object(a));
            }
            return Ok(());
        }
        let bytes = self.r.bytes(len, tag)?;
        if tag == tags::SPECIFIC_CHARACTER_SET {
            let values: Vec<String> = latin1(&bytes)
                .split('\\')
                .map(|v| v.trim_matches([' ', '\0']).to_owned())
                .collect();
            let values = if values.iter().all(String::is_empty) {
                Vec::new()
            } else {
                values
            };
            *decoder = CharsetDecoder::new(&values);
        }
        if depth == 0 {
            self.top_level_bytes(tag, vr, &bytes, enc);
        }
        if skip_in_json {
            return Ok(());
        }
        self.spend(len + len / 3)?;
        let a = value_attr(vr, &bytes, enc.big, decoder);
        out.insert(tag_key(tag), Value::Object(a));
        Ok(())
    }

    /// Top-level values that describe the pixel data.
    fn top_level_bytes(&mut self, tag: Tag, vr: VR, bytes: &[u8], enc: Enc) {
        let us = |b: &[u8]| -> Option<u32> {
            match vr {
                VR::US | VR::UN | VR::OW => b
                    .get(..2)
                    .map(|b| u32::from(u16_from([b[0], b[1]], enc.big && vr != VR::UN))),
                _ => int_text(b).and_then(|v| u32::try_from(v).ok()),
            }
        };
        match tag {
            tags::ROWS => self.top.rows = us(bytes).unwrap_or(0),
            tags::COLUMNS => self.top.columns = us(bytes).unwrap_or(0),
            tags::SAMPLES_PER_PIXEL => self.top.samples_per_pixel = us(bytes),
            tags::BITS_ALLOCATED => self.top.bits_allocated = us(bytes).unwrap_or(0),
            tags::PIXEL_REPRESENTATION => {
                self.top.pixel_representation = us(bytes).unwrap_or(0) as u16
            }
            tags::NUMBER_OF_FRAMES => {
                self.top.number_of_frames = int_text(bytes).and_then(|v| u32::try_from(v).ok())
            }
            tags::PHOTOMETRIC_INTERPRETATION => {
                let s = latin1(bytes);
                let s = s.trim_matches([' ', '\0']);
                self.top.photometric = (!s.is_empty()).then(|| s.to_owned());
            }
            EXTENDED_OFFSET_TABLE | EXTENDED_OFFSET_TABLE_LENGTHS => {
                let v: Vec<u64> = bytes
                    .chunks_exact(8)
                    .map(|c| {
                        let a: [u8; 8] = c.try_into().unwrap_or([0; 8]);
                        if enc.big {
                            u64::from_be_bytes(a)
                        } else {
                            u64::from_le_bytes(a)
                        }
                    })
                    .collect();
                if tag == EXTENDED_OFFSET_TABLE {
                    self.top.eot = Some(v);
                } else {
                    self.top.eot_lengths = Some(v);
                }
            }
            _ => {}
        }
    }

    fn put_sequence(
        &mut self,
        tag: Tag,
        items: Vec<Value>,
        skip: bool,
        out: &mut Map<String, Value>,
    ) -> Result<(), HeaderError> {
        if skip {
            return Ok(());
        }
        let mut a = attr(VR::SQ);
        if !items.is_empty() {
            a.insert("Value".into(), Value::Array(items));
        }
        out.insert(tag_key(tag), Value::Object(a));
        Ok(())
    }

    /// The items of a sequence ending at `end` or at its delimiter.
    fn sequence(
        &mut self,
        seq: Tag,
        enc: Enc,
        end: Option<u64>,
        depth: usize,
        decoder: &CharsetDecoder,
    ) -> Result<Vec<Value>, HeaderError> {
        if depth + 1 > MAX_DEPTH {
            return Err(HeaderError::TooDeep);
        }
        let mut items = Vec::new();
        loop {
            if let Some(end) = end {
                if self.r.pos == end {
                    break;
                }
                if self.r.pos > end {
                    return Err(self.malformed(format!("an item runs past the end of {seq}")));
                }
            }
            let tag = self.r.tag_or_end(enc.big)?.ok_or(truncated(Some(seq)))?;
            let len = self.r.u32(enc.big, seq)?;
            match tag {
                ITEM => {
                    let item_end = (len != UNDEFINED).then(|| self.r.pos + u64::from(len));
                    self.spend(0)?;
                    let item = self.dataset(enc, item_end, depth + 1, decoder.clone())?;
                    items.push(Value::Object(item));
                }
                SEQUENCE_DELIMITATION => break,
                other => {
                    return Err(
                        self.malformed(format!("{other} where an item was expected in {seq}"))
                    );
                }
            }
        }
        Ok(items)
    }

    /// Skips encapsulated fragments up to their sequence delimiter.
    fn skip_fragments(&mut self, ctx: Tag, enc: Enc) -> Result<(), HeaderError> {
        loop {
            let tag = self.r.tag_or_end(enc.big)?.ok_or(truncated(Some(ctx)))?;
            let len = self.r.u32(enc.big, ctx)?;
            match tag {
                ITEM if len != UNDEFINED => self.r.skip(u64::from(len), ctx)?,
                SEQUENCE_DELIMITATION => return Ok(()),
                other => {
                    return Err(
                        self.malformed(format!("{other} where a fragment was expected in {ctx}"))
                    );
                }
            }
        }
    }
}

fn latin1(value: &[u8]) -> String {
    value.iter().map(|&b| b as char).collect()
}

/// An IS value as an integer (first value; "12.0" is 12).
fn int_text(value: &[u8]) -> Option<i64> {
    let s = latin1(value);
    let first = s.split('\\').next()?.trim_matches([' ', '\0']);
    first.parse::<i64>().ok().or_else(|| {
        let f = first.parse::<f64>().ok()?;
        (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

/// Values of a string VR: split on backslashes, padding off, empty ones as null.
fn split_values(text: &str, trim_leading: bool) -> Vec<Value> {
    text.split('\\')
        .map(|v| {
            let v = v.trim_end_matches([' ', '\0']);
            let v = if trim_leading {
                v.trim_start_matches(' ')
            } else {
                v
            };
            if v.is_empty() {
                Value::Null
            } else {
                Value::String(v.to_owned())
            }
        })
        .collect()
}

/// An IS or DS value as a JSON number, or the string it is when it is not one.
fn number_value(v: &str, integer: bool) -> Value {
    let v = v.trim_matches([' ', '\0']);
    if v.is_empty() {
        return Value::Null;
    }
    // An integer stays one (DS "40" is 40, not 40.0).
    if let Ok(n) = v.parse::<i64>() {
        return Value::Number(n.into());
    }
    if integer {
        if let Ok(f) = v.parse::<f64>()
            && f.is_finite()
            && f.fract() == 0.0
            && f.abs() < 9.0e15
        {
            return Value::Number((f as i64).into());
        }
    } else if v
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        && let Ok(f) = v.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(v.to_owned())
}

fn float_value(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// ±(2^53 − 1): the integers a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: i128 = (1 << 53) - 1;

fn big_int_value(v: i128) -> Value {
    if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&v) {
        Value::Number((v as i64).into())
    } else {
        Value::String(v.to_string())
    }
}

/// The JSON attribute (`vr`, and `Value` or `InlineBinary` unless empty) of one element's
/// value bytes. Never fails: what cannot be read as its VR says is given as it is.
pub(crate) fn value_attr(
    vr: VR,
    bytes: &[u8],
    big: bool,
    decoder: &CharsetDecoder,
) -> Map<String, Value> {
    let mut a = attr(vr);
    if bytes.is_empty() {
        return a;
    }
    let values: Vec<Value> = match vr {
        VR::AE | VR::AS | VR::CS | VR::DA | VR::DT | VR::TM | VR::UI => {
            split_values(&latin1(bytes), true)
        }
        VR::LO | VR::SH => split_values(&decoder.decode_text(bytes), true),
        VR::UC => split_values(&decoder.decode_text(bytes), false),
        VR::LT | VR::ST | VR::UT => {
            let t = decoder.decode_text(bytes);
            let t = t.trim_end_matches([' ', '\0']);
            vec![if t.is_empty() {
                Value::Null
            } else {
                Value::String(t.to_owned())
            }]
        }
        VR::UR => {
            let t = latin1(bytes);
            let t = t.trim_end_matches([' ', '\0']);
            vec![if t.is_empty() {
                Value::Null
            } else {
                Value::String(t.to_owned())
            }]
        }
        VR::PN => decoder
            .decode_person_names(bytes)
            .into_iter()
            .map(|n| {
                let mut o = Map::new();
                for (group, text) in [
                    ("Alphabetic", n.alphabetic),
                    ("Ideographic", n.ideographic),
                    ("Phonetic", n.phonetic),
                ] {
                    if !text.is_empty() {
                        o.insert(group.into(), Value::String(text));
                    }
                }
                if o.is_empty() {
                    Value::Null
                } else {
                    Value::Object(o)
                }
            })
            .collect(),
        VR::IS | VR::DS => latin1(bytes)
            .split('\\')
            .map(|v| number_value(v, vr == VR::IS))
            .collect(),
        VR::US => fixed::<2>(bytes, big, |b| Value::from(u16::from_le_bytes(b))),
        VR::SS => fixed::<2>(bytes, big, |b| Value::from(i16::from_le_bytes(b))),
        VR::UL => fixed::<4>(bytes, big, |b| Value::from(u32::from_le_bytes(b))),
        VR::SL => fixed::<4>(bytes, big, |b| Value::from(i32::from_le_bytes(b))),
        VR::FL => fixed::<4>(bytes, big, |b| {
            float_value(f64::from(f32::from_le_bytes(b)))
        }),
        VR::FD => fixed::<8>(bytes, big, |b| float_value(f64::from_le_bytes(b))),
        VR::SV => fixed::<8>(bytes, big, |b| {
            big_int_value(i128::from(i64::from_le_bytes(b)))
        }),
        VR::UV => fixed::<8>(bytes, big, |b| {
            big_int_value(i128::from(u64::from_le_bytes(b)))
        }),
        VR::AT => bytes
            .chunks_exact(4)
            .map(|c| {
                let g = u16_from([c[0], c[1]], big);
                let e = u16_from([c[2], c[3]], big);
                Value::String(format!("{g:04X}{e:04X}"))
            })
            .collect(),
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN => {
            let mut le = bytes.to_vec();
            if big {
                swap_in_place(&mut le, swap_unit(vr));
            }
            a.insert(
                "InlineBinary".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(le)),
            );
            return a;
        }
        // Handled by the caller; never a value here.
        VR::SQ => return a,
    };
    if values.len() == 1 && values[0].is_null() {
        return a;
    }
    a.insert("Value".into(), Value::Array(values));
    a
}

/// Fixed-size binary values, each unit converted to little endian first. A trailing
/// partial unit is dropped.
fn fixed<const N: usize>(bytes: &[u8], big: bool, f: impl Fn([u8; N]) -> Value) -> Vec<Value> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut b: [u8; N] = c.try_into().unwrap_or([0; N]);
            if big {
                b.reverse();
            }
            f(b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Writes elements by hand in one of the three encodings.
    struct W {
        out: Vec<u8>,
        explicit: bool,
        big: bool,
    }

    impl W {
        fn new(explicit: bool, big: bool) -> Self {
            W {
                out: Vec::new(),
                explicit,
                big,
            }
        }
        fn u16(&mut self, v: u16) {
            let b = if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.out.extend_from_slice(&b);
        }
        fn u32(&mut self, v: u32) {
            let b = if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.out.extend_from_slice(&b);
        }
        fn header(&mut self, t: Tag, vr: &[u8; 2], len: u32) -> &mut Self {
            self.u16(t.0);
            self.u16(t.1);
            if self.explicit && t.0 != 0xFFFE {
                self.out.extend_from_slice(vr);
                if has_long_length(VR::from_binary(*vr).unwrap()) {
                    self.out.extend_from_slice(&[0, 0]);
                    self.u32(len);
                } else {
                    self.u16(len as u16);
                }
            } else {
                self.u32(len);
            }
            self
        }
        fn elem(&mut self, t: Tag, vr: &[u8; 2], value: &[u8]) -> &mut Self {
            self.header(t, vr, value.len() as u32);
            self.out.extend_from_slice(value);
            self
        }
        fn item(&mut self) -> &mut Self {
            self.header(ITEM, b"  ", UNDEFINED)
        }
        fn item_end(&mut self) -> &mut Self {
            self.header(ITEM_DELIMITATION, b"  ", 0)
        }
        fn seq_end(&mut self) -> &mut Self {
            self.header(SEQUENCE_DELIMITATION, b"  ", 0)
        }
    }

    fn parse(w: &W) -> Result<Parsed, HeaderError> {
        read_dataset(
            &w.out[..],
            Enc {
                explicit: w.explicit,
                big: w.big,
            },
            1000,
            "/i",
        )
    }

    fn sample(explicit: bool, big: bool) -> W {
        let mut w = W::new(explicit, big);
        w.elem(tags::SPECIFIC_CHARACTER_SET, b"CS", b"ISO_IR 100")
            .elem(tags::IMAGE_TYPE, b"CS", b"ORIGINAL\\\\AXIAL ")
            .elem(tags::SOP_INSTANCE_UID, b"UI", b"1.2.3\0")
            .elem(tags::STUDY_DESCRIPTION, b"LO", b" Cr\xe2ne ")
            .elem(tags::PATIENT_NAME, b"PN", b"M\xfcller^J\xf6rg\\Doe=D ")
            .elem(Tag(0x0010, 0x1010), b"AS", b"042Y");
        w.header(tags::REFERENCED_IMAGE_SEQUENCE, b"SQ", UNDEFINED)
            .item()
            .elem(tags::REFERENCED_SOP_INSTANCE_UID, b"UI", b"1.2.4\0")
            .elem(tags::REFERENCED_FRAME_NUMBER, b"IS", b"1\\2 ")
            .item_end()
            .item()
            .item_end()
            .seq_end();
        w.elem(tags::SLICE_THICKNESS, b"DS", b"2.50")
            .elem(tags::SERIES_NUMBER, b"IS", b"+7 ")
            .elem(tags::INSTANCE_NUMBER, b"IS", b"abc ")
            .elem(tags::PIXEL_SPACING, b"DS", b"0.5\\1e-1");
        // A private CP-246 UN sequence (explicit only) or a private OB.
        if explicit {
            w.elem(Tag(0x0009, 0x0010), b"LO", b"VENDOR  ");
            w.header(Tag(0x0009, 0x1001), b"UN", UNDEFINED);
            let mut inner = W::new(false, false);
            inner
                .item()
                .elem(Tag(0x0009, 0x1002), b"LO", b"blob")
                .item_end()
                .seq_end();
            w.out.extend_from_slice(&inner.out);
        }
        w.header(tags::SAMPLES_PER_PIXEL, b"US", 2).u16(1);
        w.elem(tags::PHOTOMETRIC_INTERPRETATION, b"CS", b"MONOCHROME2 ");
        w.elem(tags::NUMBER_OF_FRAMES, b"IS", b"2 ");
        w.header(tags::ROWS, b"US", 2).u16(2);
        w.header(tags::COLUMNS, b"US", 2).u16(3);
        w.header(tags::BITS_ALLOCATED, b"US", 2).u16(16);
        w.header(tags::PIXEL_REPRESENTATION, b"US", 2).u16(1);
        // SmallestImagePixelValue: US or SS by Pixel Representation.
        w.header(Tag(0x0028, 0x0106), b"SS", 2).u16(0xFFFE);
        w.header(tags::WINDOW_CENTER, b"DS", 4);
        w.out.extend_from_slice(b"40\\ ");
        w.elem(Tag(0x0028, 0x1052), b"DS", b"NaN ");
        w.elem(Tag(0x0029, 0x0010), b"LO", b"BIG BLOB");
        w.elem(Tag(0x0029, 0x1010), b"OB", &[7u8; 2000]);
        w.elem(Tag(0x0029, 0x1011), b"OB", &[1, 2, 3, 4]);
        w.header(tags::PIXEL_DATA, b"OW", 24);
        w.out.extend_from_slice(&[0u8; 24]);
        w
    }

    fn check_sample(p: &Parsed, explicit: bool) {
        let j = &p.json;
        assert_eq!(
            j["00080008"],
            json!({"vr": "CS", "Value": ["ORIGINAL", null, "AXIAL"]})
        );
        assert_eq!(j["00080018"], json!({"vr": "UI", "Value": ["1.2.3"]}));
        assert_eq!(j["00081030"], json!({"vr": "LO", "Value": ["Crâne"]}));
        assert_eq!(
            j["00100010"],
            json!({"vr": "PN", "Value": [{"Alphabetic": "Müller^Jörg"}, {"Alphabetic": "Doe", "Ideographic": "D"}]})
        );
        assert_eq!(j["00101010"], json!({"vr": "AS", "Value": ["042Y"]}));
        assert_eq!(
            j["00081140"],
            json!({"vr": "SQ", "Value": [
                {"00081155": {"vr": "UI", "Value": ["1.2.4"]}, "00081160": {"vr": "IS", "Value": [1, 2]}},
                {}
            ]})
        );
        assert_eq!(j["00180050"], json!({"vr": "DS", "Value": [2.5]}));
        assert_eq!(j["00200011"], json!({"vr": "IS", "Value": [7]}));
        assert_eq!(
            j["00200013"],
            json!({"vr": "IS", "Value": ["abc"]}),
            "not a number: kept"
        );
        assert_eq!(j["00280030"], json!({"vr": "DS", "Value": [0.5, 0.1]}));
        assert_eq!(j["00280010"], json!({"vr": "US", "Value": [2]}));
        assert_eq!(j["00280106"], json!({"vr": "SS", "Value": [-2]}));
        assert_eq!(j["00281050"], json!({"vr": "DS", "Value": [40, null]}));
        assert_eq!(j["00281052"], json!({"vr": "DS", "Value": ["NaN"]}));
        // Private attributes are UN in implicit VR.
        let ob = if explicit { "OB" } else { "UN" };
        assert_eq!(
            j["00291010"],
            json!({"vr": ob, "BulkDataURI": "/i/bulkdata/00291010"})
        );
        assert_eq!(j["00291011"], json!({"vr": ob, "InlineBinary": "AQIDBA=="}));
        assert_eq!(
            j["7FE00010"],
            json!({"vr": "OW", "BulkDataURI": "/i/bulkdata/7FE00010"})
        );
        if explicit {
            assert_eq!(
                j["00091001"],
                json!({"vr": "SQ", "Value": [{"00091002": {"vr": "UN", "InlineBinary": "YmxvYg=="}}]})
            );
        }
        let px = p.layout.pixel.as_ref().unwrap();
        assert_eq!((px.rows, px.columns, px.bits_allocated), (2, 3, 16));
        assert_eq!((px.number_of_frames, px.samples_per_pixel), (2, 1));
        assert_eq!(px.length, Some(24));
        assert_eq!(
            px.photometric_interpretation.as_deref(),
            Some("MONOCHROME2")
        );
        assert_eq!(p.layout.bulk.len(), 1);
        assert_eq!(p.layout.bulk[0].tag, 0x0029_1010);
        assert_eq!(p.layout.bulk[0].length, 2000);
    }

    #[test]
    fn every_encoding() {
        for (explicit, big) in [(true, false), (false, false), (true, true)] {
            let w = sample(explicit, big);
            let p = parse(&w).unwrap_or_else(|e| panic!("{explicit} {big}: {e}"));
            check_sample(&p, explicit);
            // The value starts right after its header; offsets include the base.
            let px = p.layout.pixel.unwrap();
            assert_eq!(px.offset, 1000 + w.out.len() as u64 - 24);
            let b = &p.layout.bulk[0];
            let at = (b.offset - 1000) as usize;
            assert_eq!(&w.out[at..at + 2000], &[7u8; 2000][..]);
        }
    }

    #[test]
    fn big_endian_binary_values_become_little_endian() {
        let mut w = W::new(true, true);
        w.elem(tags::ROWS, b"US", &[0x01, 0x02])
            .elem(Tag(0x0020, 0x5000), b"AT", &[0x00, 0x10, 0x00, 0x20])
            .elem(tags::LARGEST_IMAGE_PIXEL_VALUE, b"US", &[0x00, 0x05])
            .elem(Tag(0x0018, 0x9087), b"FD", &1.5f64.to_be_bytes())
            .elem(Tag(0x0029, 0x1010), b"OW", &[0x12, 0x34, 0x56, 0x78])
            .elem(Tag(0x0029, 0x1011), b"FL", &f32::NAN.to_be_bytes());
        let p = parse(&w).unwrap();
        assert_eq!(p.json["00280010"]["Value"], json!([0x0102]));
        assert_eq!(p.json["00205000"]["Value"], json!(["00100020"]));
        assert_eq!(p.json["00189087"]["Value"], json!([1.5]));
        // OW 0x1234, 0x5678 as little endian bytes.
        assert_eq!(p.json["00291010"]["InlineBinary"], json!("NBJ4Vg=="));
        assert_eq!(p.json["00291011"]["Value"], json!(["NaN"]));
    }

    #[test]
    fn code_extensions_and_item_character_sets() {
        let mut w = W::new(true, false);
        w.elem(tags::SPECIFIC_CHARACTER_SET, b"CS", b"\\ISO 2022 IR 58")
            .elem(
                tags::PATIENT_NAME,
                b"PN",
                b"Zhou^Guoqiang=\x1b$)A\xd6\xdc^\x1b$)A\xb9\xfa\xc7\xbf",
            );
        w.header(tags::REFERENCED_STUDY_SEQUENCE, b"SQ", UNDEFINED)
            .item()
            .elem(tags::SPECIFIC_CHARACTER_SET, b"CS", b"ISO_IR 192")
            .elem(tags::STUDY_DESCRIPTION, b"LO", "头部".as_bytes())
            .item_end()
            .item()
            .elem(tags::STUDY_DESCRIPTION, b"LO", b"\x1b$)A\xcd\xb7")
            .item_end()
            .seq_end();
        let p = parse(&w).unwrap();
        assert_eq!(
            p.json["00100010"]["Value"],
            json!([{"Alphabetic": "Zhou^Guoqiang", "Ideographic": "周^国强"}])
        );
        // Japanese with JIS X 0208 escapes (PS3.5 H.3.1).
        let mut w = W::new(true, false);
        w.elem(tags::SPECIFIC_CHARACTER_SET, b"CS", b"\\ISO 2022 IR 87")
            .elem(
                tags::PATIENT_NAME,
                b"PN",
                b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B ",
            );
        let jp = parse(&w).unwrap();
        assert_eq!(
            jp.json["00100010"]["Value"],
            json!([{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}])
        );
        let items = &p.json["00081110"]["Value"];
        assert_eq!(items[0]["00081030"]["Value"], json!(["头部"]));
        assert_eq!(items[1]["00081030"]["Value"], json!(["头"]));
    }

    #[test]
    fn encapsulated_pixel_data_reads_the_offset_table() {
        let mut w = W::new(true, false);
        w.elem(tags::NUMBER_OF_FRAMES, b"IS", b"2 ");
        w.header(tags::PIXEL_DATA, b"OB", UNDEFINED);
        let start = w.out.len();
        w.header(ITEM, b"  ", 8);
        w.u32(0);
        w.u32(12);
        let first = w.out.len();
        w.header(ITEM, b"  ", 4)
            .out
            .extend_from_slice(b"\xff\xd8ab");
        w.header(ITEM, b"  ", 2).out.extend_from_slice(b"\xff\xd8");
        w.seq_end();
        let p = parse(&w).unwrap();
        let px = p.layout.pixel.unwrap();
        assert_eq!(px.length, None);
        assert_eq!(px.offset, 1000 + start as u64);
        assert_eq!(px.basic_offsets, vec![0, 12]);
        assert_eq!(px.first_fragment, Some(1000 + first as u64));
        assert_eq!(p.json["7FE00010"]["vr"], "OB");
    }

    #[test]
    fn empty_values_and_group_lengths() {
        let mut w = W::new(true, false);
        w.elem(Tag(0x0008, 0x0000), b"UL", &[4, 0, 0, 0])
            .elem(tags::ACCESSION_NUMBER, b"SH", b"")
            .elem(tags::PATIENT_NAME, b"PN", b"  ")
            .header(tags::REFERENCED_IMAGE_SEQUENCE, b"SQ", 0);
        let p = parse(&w).unwrap();
        assert!(!p.json.contains_key("00080000"));
        assert_eq!(p.json["00080050"], json!({"vr": "SH"}));
        assert_eq!(p.json["00100010"], json!({"vr": "PN"}));
        assert_eq!(p.json["00081140"], json!({"vr": "SQ"}));
        assert!(p.layout.pixel.is_none());
    }

    #[test]
    fn standard_attributes_sent_as_un_are_read_as_what_they_are() {
        let mut w = W::new(true, false);
        w.elem(tags::ROWS, b"UN", &[0x00, 0x02]);
        let mut inner = W::new(false, false);
        inner
            .header(ITEM, b"  ", 14)
            .elem(tags::CODE_VALUE, b"SH", b"T-1234");
        w.elem(tags::ANATOMIC_REGION_SEQUENCE, b"UN", &inner.out);
        let p = parse(&w).unwrap();
        assert_eq!(p.json["00280010"], json!({"vr": "US", "Value": [512]}));
        assert_eq!(
            p.json["00082218"],
            json!({"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["T-1234"]}}]})
        );
    }

    #[test]
    fn nesting_is_capped() {
        let mut w = W::new(true, false);
        for _ in 0..(MAX_DEPTH + 2) {
            w.header(tags::REFERENCED_IMAGE_SEQUENCE, b"SQ", UNDEFINED)
                .item();
        }
        assert!(matches!(parse(&w), Err(HeaderError::TooDeep)));
    }

    /// Hostile input: every truncation and random byte flips give an answer or an error,
    /// never a panic, and never an allocation from a length read in the data.
    #[test]
    fn truncations_and_mutations_never_panic() {
        for (explicit, big) in [(true, false), (false, false), (true, true)] {
            let w = sample(explicit, big);
            for cut in 0..w.out.len() {
                let t = W {
                    out: w.out[..cut].to_vec(),
                    explicit,
                    big,
                };
                let _ = parse(&t);
            }
            let mut seed = 0x9E37_79B9_7F4A_7C15u64;
            for _ in 0..3000 {
                let mut m = w.out.clone();
                for _ in 0..4 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let i = (seed as usize) % m.len();
                    m[i] = (seed >> 32) as u8;
                }
                let t = W {
                    out: m,
                    explicit,
                    big,
                };
                let _ = parse(&t);
            }
        }
    }
}
