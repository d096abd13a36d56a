//! Bounded scanner of a DICOM data set's top-level elements, for the index.
//!
//! Every received image goes through here, so this is a plain buffered loop over element
//! headers: it keeps the raw bytes of a few dozen wanted top-level attributes, skips
//! everything else without allocating, and stops at Pixel Data (7FE0,0010). It does not use
//! dicom-rs's parser because that one fails on UN elements of undefined length (CP-246,
//! common in private vendor sequences) and does not decode multi-valued Specific Character
//! Sets; text is decoded with [`crate::charset::CharsetDecoder`] instead.
//!
//! Bounds: wanted values are capped at [`MAX_VALUE_LEN`] bytes ([`HeaderError::TooLarge`]),
//! sequences nest at most [`MAX_SEQUENCE_DEPTH`] levels ([`HeaderError::TooDeep`]), no length
//! read from the data is trusted for an allocation, and a length that runs past the end of
//! the data gives [`HeaderError::Truncated`].

use std::io::{self, BufRead, BufReader, Read};

use dicom_core::{DataElementHeader, Length, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::encode::EncodeTo;
use dicom_encoding::{Codec, Endianness, TransferSyntax, TransferSyntaxIndex};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde::{Deserialize, Serialize};

use crate::charset::{CharsetDecoder, PersonName};

/// Largest value of a wanted element that is read into memory (64 KiB).
pub const MAX_VALUE_LEN: u32 = 64 * 1024;
/// Deepest nesting of undefined-length sequences that is walked.
pub const MAX_SEQUENCE_DEPTH: usize = 64;
/// Largest File Meta Information group accepted.
const MAX_META_GROUP_LEN: u32 = 1024 * 1024;
/// Length value meaning "undefined length".
const UNDEFINED: u32 = 0xFFFF_FFFF;
// Item and delimitation tags (PS3.5 7.5): dicom_dictionary_std::tags has no constants for them.
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITATION_ITEM: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITATION_ITEM: Tag = Tag(0xFFFE, 0xE0DD);
const ITEM_GROUP: u16 = 0xFFFE;

/// The File Meta Information of a DICOM Part 10 file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub transfer_syntax_uid: String,
    pub media_storage_sop_class_uid: String,
    pub media_storage_sop_instance_uid: String,
    pub source_ae_title: Option<String>,
    /// byte offset where the data set starts
    pub dataset_offset: u64,
}

/// The top-level attributes the index keeps, decoded to UTF-8.
///
/// Optional attributes that are absent or empty (after trimming) are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexedAttributes {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub specific_character_set: Vec<String>,
    pub patient_id: Option<String>,
    pub issuer_of_patient_id: Option<String>,
    pub patient_name: Option<PersonName>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_id: Option<String>,
    pub study_description: Option<String>,
    pub referring_physician_name: Option<PersonName>,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub body_part_examined: Option<String>,
    pub series_date: Option<String>,
    pub series_time: Option<String>,
    pub instance_number: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub number_of_frames: Option<i64>,
    pub institution_name: Option<String>,
    pub station_name: Option<String>,
    pub requested_procedure_priority: Option<String>,
    /// true when the data set contains (7FE0,0010) Pixel Data
    pub has_pixel_data: bool,
}

/// Why a header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("not a DICOM Part 10 file: {0}")]
    NotPart10(String),
    #[error("data set truncated{}", in_tag(.tag))]
    Truncated { tag: Option<String> },
    #[error("malformed data set: {0}")]
    Malformed(String),
    #[error("sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")]
    TooDeep,
    #[error("value too large: {0}")]
    TooLarge(String),
    #[error("missing required attribute {0}")]
    MissingAttribute(&'static str),
    #[error("unsupported transfer syntax {0:?}")]
    UnsupportedTransferSyntax(String),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

fn in_tag(tag: &Option<String>) -> String {
    tag.as_ref()
        .map(|t| format!(" in element {t}"))
        .unwrap_or_default()
}

fn truncated(ctx: Option<Tag>) -> HeaderError {
    HeaderError::Truncated {
        tag: ctx.map(|t| t.to_string()),
    }
}

/// Map a read error: a short read is truncation, corrupt deflate data is malformed.
fn read_error(e: io::Error, ctx: Option<Tag>) -> HeaderError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => truncated(ctx),
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
            HeaderError::Malformed(format!("unreadable data: {e}"))
        }
        _ => HeaderError::Io(e),
    }
}

/// Read until `buf` is full or the end of the stream; returns how many bytes were read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
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

/// Reads "128-byte preamble + DICM + group 0002" (explicit VR LE). Errors when it is not a DICOM Part 10 file.
///
/// Reads exactly up to the start of the data set and no further, so the same reader can be
/// handed to [`scan_dataset`] next (pass a buffered reader). The group must start with
/// (0002,0000) File Meta Information Group Length, which tells where it ends.
pub fn read_file_meta(r: &mut impl Read) -> Result<FileMeta, HeaderError> {
    let mut head = [0u8; 132];
    let n = fill(r, &mut head).map_err(|e| read_error(e, None))?;
    if n < head.len() {
        return Err(HeaderError::NotPart10(format!(
            "{n} bytes, shorter than the 128-byte preamble and DICM prefix"
        )));
    }
    if &head[128..] != b"DICM" {
        return Err(HeaderError::NotPart10("no DICM prefix at byte 128".into()));
    }
    let mut first = [0u8; 12];
    r.read_exact(&mut first)
        .map_err(|e| read_error(e, Some(tags::FILE_META_INFORMATION_GROUP_LENGTH)))?;
    let tag = tag_from([first[0], first[1], first[2], first[3]], false);
    if tag != tags::FILE_META_INFORMATION_GROUP_LENGTH
        || &first[4..6] != b"UL"
        || u16::from_le_bytes([first[6], first[7]]) != 4
    {
        return Err(HeaderError::Malformed(format!(
            "file meta group must start with {} UL File Meta Information Group Length, found {tag}",
            tags::FILE_META_INFORMATION_GROUP_LENGTH
        )));
    }
    let group_len = u32::from_le_bytes([first[8], first[9], first[10], first[11]]);
    if group_len > MAX_META_GROUP_LEN {
        return Err(HeaderError::TooLarge(format!(
            "file meta group of {group_len} bytes, more than {MAX_META_GROUP_LEN}"
        )));
    }
    let mut group = Vec::new();
    r.take(u64::from(group_len))
        .read_to_end(&mut group)
        .map_err(|e| read_error(e, None))?;
    if group.len() < group_len as usize {
        return Err(truncated(None));
    }

    let mut ts = None;
    let mut class = None;
    let mut instance = None;
    let mut source_ae = None;
    let mut pos = 0usize;
    let mut last = tags::FILE_META_INFORMATION_GROUP_LENGTH;
    let malformed = |what: String| HeaderError::Malformed(format!("file meta group: {what}"));
    while pos < group.len() {
        let rest = &group[pos..];
        if rest.len() < 8 {
            return Err(malformed("element header crosses the group length".into()));
        }
        let tag = tag_from([rest[0], rest[1], rest[2], rest[3]], false);
        if tag.0 != 0x0002 {
            return Err(malformed(format!("{tag} inside group 0002")));
        }
        if tag <= last {
            return Err(malformed(format!("tag {tag} after {last}")));
        }
        last = tag;
        let vr = VR::from_binary([rest[4], rest[5]])
            .ok_or_else(|| malformed(format!("unknown VR {:?} in {tag}", &rest[4..6])))?;
        let (len, header_len): (u32, usize) = if has_long_length(vr) {
            if rest.len() < 12 {
                return Err(malformed("element header crosses the group length".into()));
            }
            (
                u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]),
                12,
            )
        } else {
            (u32::from(u16::from_le_bytes([rest[6], rest[7]])), 8)
        };
        if len == UNDEFINED || len % 2 == 1 {
            return Err(malformed(format!("invalid length {len:#x} of {tag}")));
        }
        let end = header_len.checked_add(len as usize);
        let value = end
            .and_then(|end| rest.get(header_len..end))
            .ok_or_else(|| malformed(format!("{tag} runs past the group length")))?;
        match tag {
            tags::TRANSFER_SYNTAX_UID => ts = Some(uid_value(value, "TransferSyntaxUID")?),
            tags::MEDIA_STORAGE_SOP_CLASS_UID => {
                class = Some(uid_value(value, "MediaStorageSOPClassUID")?)
            }
            tags::MEDIA_STORAGE_SOP_INSTANCE_UID => {
                instance = Some(uid_value(value, "MediaStorageSOPInstanceUID")?)
            }
            tags::SOURCE_APPLICATION_ENTITY_TITLE => source_ae = ascii_value(value),
            _ => {}
        }
        pos += header_len + len as usize;
    }
    let required = |v: Option<String>, name: &'static str| {
        v.filter(|s| !s.is_empty())
            .ok_or(HeaderError::MissingAttribute(name))
    };
    Ok(FileMeta {
        transfer_syntax_uid: required(ts, "TransferSyntaxUID")?,
        media_storage_sop_class_uid: required(class, "MediaStorageSOPClassUID")?,
        media_storage_sop_instance_uid: required(instance, "MediaStorageSOPInstanceUID")?,
        source_ae_title: source_ae,
        dataset_offset: 132 + 12 + u64::from(group_len),
    })
}

/// How the elements at one level are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Enc {
    explicit: bool,
    big: bool,
}

/// Content of a UN element of undefined length is implicit VR little endian (CP-246).
const IMPLICIT_LE: Enc = Enc {
    explicit: false,
    big: false,
};

/// Explicit VR or not, from the registry's encoder for this transfer syntax: an explicit VR
/// encoder writes the VR after the tag.
pub(crate) fn is_explicit_vr(ts: &TransferSyntax) -> Option<bool> {
    let encoder = ts.encoder_for::<Vec<u8>>()?;
    let mut probe = Vec::with_capacity(12);
    encoder
        .encode_element_header(
            &mut probe,
            DataElementHeader::new(tags::SOP_CLASS_UID, VR::UI, Length(2)),
        )
        .ok()?;
    Some(probe.get(4..6) == Some(b"UI".as_slice()))
}

/// Scans the data set (bytes right after the meta group) encoded in `transfer_syntax_uid`.
/// Reads only up to Pixel Data (7FE0,0010) or the end; never reads pixel data into memory.
pub fn scan_dataset(
    r: impl Read,
    transfer_syntax_uid: &str,
) -> Result<IndexedAttributes, HeaderError> {
    scan_with(r, transfer_syntax_uid, Extent::Header)
}

/// Like [`scan_dataset`], and also checks that the whole data set is structurally complete:
/// Pixel Data of the declared length (or encapsulated fragments up to their delimiter) and
/// every element after it, ending exactly at the end. What the archive acknowledges must
/// not be a truncated image. Streams through the pixel data without keeping it.
pub fn scan_complete_dataset(
    r: impl Read,
    transfer_syntax_uid: &str,
) -> Result<IndexedAttributes, HeaderError> {
    scan_with(r, transfer_syntax_uid, Extent::Whole)
}

/// How far a scan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extent {
    /// Up to Pixel Data.
    Header,
    /// To the end of the data set.
    Whole,
}

fn scan_with(
    r: impl Read,
    transfer_syntax_uid: &str,
    extent: Extent,
) -> Result<IndexedAttributes, HeaderError> {
    let uid = transfer_syntax_uid.trim_matches(['\0', ' ']);
    let unsupported = || HeaderError::UnsupportedTransferSyntax(uid.to_owned());
    let ts = TransferSyntaxRegistry.get(uid).ok_or_else(unsupported)?;
    let enc = Enc {
        explicit: is_explicit_vr(ts).ok_or_else(unsupported)?,
        big: ts.endianness() == Endianness::Big,
    };
    if matches!(ts.codec(), Codec::Dataset(_)) {
        // Deflated Explicit VR Little Endian (and JPIP Referenced Deflate): raw deflate.
        let inflated = flate2::read::DeflateDecoder::new(r);
        Scanner::new(Streamed(BufReader::new(inflated))).scan(enc, extent)
    } else {
        Scanner::new(Streamed(BufReader::new(r))).scan(enc, extent)
    }
}

/// [`scan_complete_dataset`] for a data set in a file, from `offset` to the end of the
/// file. Values that are skipped (pixel data above all) are seeked over, not read: the
/// check that a large image is complete costs a few reads, not a second pass over it.
pub fn scan_complete_file(
    file: std::fs::File,
    offset: u64,
    transfer_syntax_uid: &str,
) -> Result<IndexedAttributes, HeaderError> {
    use std::io::Seek;
    let uid = transfer_syntax_uid.trim_matches(['\0', ' ']);
    let unsupported = || HeaderError::UnsupportedTransferSyntax(uid.to_owned());
    let ts = TransferSyntaxRegistry.get(uid).ok_or_else(unsupported)?;
    let mut file = file;
    let end = file.metadata()?.len();
    file.seek(io::SeekFrom::Start(offset))?;
    if matches!(ts.codec(), Codec::Dataset(_)) {
        return scan_complete_dataset(file, transfer_syntax_uid);
    }
    let enc = Enc {
        explicit: is_explicit_vr(ts).ok_or_else(unsupported)?,
        big: ts.endianness() == Endianness::Big,
    };
    let source = SeekableFile {
        r: BufReader::with_capacity(64 * 1024, file),
        end,
    };
    Scanner::new(source).scan(enc, Extent::Whole)
}

/// What the scanner reads from: a buffered stream, which can only skip by reading, or a
/// file, which skips by seeking.
trait Source: BufRead {
    /// Skips `n` bytes without reading them, if this source can; `Ok(false)` if it cannot.
    /// Skipping past the end is an `UnexpectedEof` error.
    fn seek_skip(&mut self, _n: u64) -> io::Result<bool> {
        Ok(false)
    }
}

struct Streamed<R>(BufReader<R>);

impl<R: Read> Read for Streamed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> BufRead for Streamed<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.0.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.0.consume(amt)
    }
}

impl<R: Read> Source for Streamed<R> {}

struct SeekableFile {
    r: BufReader<std::fs::File>,
    /// File length: a skip beyond it is truncation.
    end: u64,
}

impl Read for SeekableFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.r.read(buf)
    }
}

impl BufRead for SeekableFile {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.r.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.r.consume(amt)
    }
}

impl Source for SeekableFile {
    fn seek_skip(&mut self, n: u64) -> io::Result<bool> {
        use std::io::Seek;
        let here = self.r.stream_position()?;
        if here.saturating_add(n) > self.end {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.r.seek_relative(n as i64)?;
        Ok(true)
    }
}

/// One open level while skipping an undefined-length element.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// Inside a sequence (or encapsulated fragments): expecting items or the delimiter.
    Sequence(Enc),
    /// Inside an undefined-length item: expecting elements or the item delimiter.
    Item(Enc),
}

struct Scanner<R> {
    r: R,
    /// Value bytes of the wanted element being read (reused).
    value: Vec<u8>,
    /// Open levels while skipping (reused).
    stack: Vec<Frame>,
    /// Bytes of the (inflated) data set consumed so far, for error messages.
    pos: u64,
}

impl<R: Source> Scanner<R> {
    fn new(r: R) -> Self {
        Scanner {
            r,
            value: Vec::new(),
            stack: Vec::new(),
            pos: 0,
        }
    }

    fn malformed(&self, what: String) -> HeaderError {
        HeaderError::Malformed(format!("{what} (data set byte {})", self.pos))
    }

    fn read_array<const N: usize>(&mut self, ctx: Option<Tag>) -> Result<[u8; N], HeaderError> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| read_error(e, ctx))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn read_u32(&mut self, big: bool, ctx: Option<Tag>) -> Result<u32, HeaderError> {
        Ok(u32_from(self.read_array(ctx)?, big))
    }

    /// A tag, or None at a clean end of the stream (no byte left).
    fn read_tag_or_end(&mut self, enc: Enc) -> Result<Option<Tag>, HeaderError> {
        let mut b = [0u8; 4];
        match fill(&mut self.r, &mut b).map_err(|e| read_error(e, None))? {
            0 => Ok(None),
            4 => {
                self.pos += 4;
                Ok(Some(tag_from(b, enc.big)))
            }
            _ => Err(truncated(None)),
        }
    }

    /// VR (None when implicit, or for item/delimiter tags) and length after a tag.
    fn read_vr_len(
        &mut self,
        tag: Tag,
        enc: Enc,
        ctx: Tag,
    ) -> Result<(Option<VR>, u32), HeaderError> {
        if !enc.explicit || tag.0 == ITEM_GROUP {
            return Ok((None, self.read_u32(enc.big, Some(ctx))?));
        }
        let code: [u8; 2] = self.read_array(Some(ctx))?;
        let vr = VR::from_binary(code).ok_or_else(|| {
            self.malformed(format!(
                "unknown VR {:?} in {tag}",
                String::from_utf8_lossy(&code)
            ))
        })?;
        if has_long_length(vr) {
            let [_, _, a, b, c, d]: [u8; 6] = self.read_array(Some(ctx))?;
            Ok((Some(vr), u32_from([a, b, c, d], enc.big)))
        } else {
            let len: [u8; 2] = self.read_array(Some(ctx))?;
            Ok((Some(vr), u32::from(u16_from(len, enc.big))))
        }
    }

    /// Discard `n` bytes: by seeking where the source can (large values), else through the
    /// buffer, without allocating.
    fn skip(&mut self, mut n: u64, ctx: Tag) -> Result<(), HeaderError> {
        if n > 64 * 1024
            && i64::try_from(n).is_ok()
            && self.r.seek_skip(n).map_err(|e| read_error(e, Some(ctx)))?
        {
            self.pos += n;
            return Ok(());
        }
        while n > 0 {
            let available = self.r.fill_buf().map_err(|e| read_error(e, Some(ctx)))?;
            if available.is_empty() {
                return Err(truncated(Some(ctx)));
            }
            let k = available
                .len()
                .min(usize::try_from(n).unwrap_or(usize::MAX));
            self.r.consume(k);
            self.pos += k as u64;
            n -= k as u64;
        }
        Ok(())
    }

    /// Odd value lengths break PS3.5 7.1.1 but some devices write them and the bytes are
    /// still readable: an image is never refused for that, so they are accepted as declared.
    fn check_len(&self, _len: u32, _tag: Tag) -> Result<(), HeaderError> {
        Ok(())
    }

    /// Read the value of a wanted element (at most [`MAX_VALUE_LEN`] bytes).
    fn read_value(&mut self, len: u32, tag: Tag) -> Result<&[u8], HeaderError> {
        if len > MAX_VALUE_LEN {
            return Err(HeaderError::TooLarge(format!(
                "{tag} has {len} bytes, more than {MAX_VALUE_LEN}"
            )));
        }
        self.value.clear();
        self.value.resize(len as usize, 0);
        self.r
            .read_exact(&mut self.value)
            .map_err(|e| read_error(e, Some(tag)))?;
        self.pos += u64::from(len);
        Ok(&self.value)
    }

    /// Skip the content of an undefined-length element (a sequence, encapsulated fragments,
    /// or a CP-246 UN), walking items and delimiters without recursion.
    fn skip_undefined(&mut self, ctx: Tag, enc: Enc) -> Result<(), HeaderError> {
        self.stack.clear();
        self.stack.push(Frame::Sequence(enc));
        let mut depth = 1;
        while let Some(&frame) = self.stack.last() {
            match frame {
                Frame::Sequence(e) => {
                    let tag = tag_from(self.read_array(Some(ctx))?, e.big);
                    let len = self.read_u32(e.big, Some(ctx))?;
                    match tag {
                        ITEM if len == UNDEFINED => self.stack.push(Frame::Item(e)),
                        ITEM => {
                            self.check_len(len, ctx)?;
                            self.skip(u64::from(len), ctx)?;
                        }
                        SEQUENCE_DELIMITATION_ITEM => {
                            self.stack.pop();
                            depth -= 1;
                        }
                        _ => {
                            return Err(self
                                .malformed(format!("{tag} where an item was expected in {ctx}")));
                        }
                    }
                }
                Frame::Item(e) => {
                    let tag = tag_from(self.read_array(Some(ctx))?, e.big);
                    let (vr, len) = self.read_vr_len(tag, e, ctx)?;
                    if tag == ITEM_DELIMITATION_ITEM {
                        self.stack.pop();
                    } else if tag.0 == ITEM_GROUP {
                        return Err(
                            self.malformed(format!("{tag} where an element was expected in {ctx}"))
                        );
                    } else if len == UNDEFINED {
                        if depth >= MAX_SEQUENCE_DEPTH {
                            return Err(HeaderError::TooDeep);
                        }
                        depth += 1;
                        let inner = if vr == Some(VR::UN) { IMPLICIT_LE } else { e };
                        self.stack.push(Frame::Sequence(inner));
                    } else {
                        self.check_len(len, ctx)?;
                        self.skip(u64::from(len), ctx)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn scan(mut self, enc: Enc, extent: Extent) -> Result<IndexedAttributes, HeaderError> {
        let mut attrs = IndexedAttributes::default();
        let mut decoder = CharsetDecoder::default();
        let mut last: Option<Tag> = None;
        while let Some(tag) = self.read_tag_or_end(enc)? {
            if let Some(prev) = last
                && tag <= prev
            {
                return Err(self.malformed(format!("tag {tag} after {prev}")));
            }
            last = Some(tag);
            if tag == tags::PIXEL_DATA {
                attrs.has_pixel_data = true;
                if extent == Extent::Header {
                    break;
                }
            }
            if tag.0 == ITEM_GROUP {
                return Err(self.malformed(format!("{tag} outside of a sequence")));
            }
            let (vr, len) = self.read_vr_len(tag, enc, tag)?;
            if len == UNDEFINED {
                let inner = if vr == Some(VR::UN) { IMPLICIT_LE } else { enc };
                self.skip_undefined(tag, inner)?;
                continue;
            }
            self.check_len(len, tag)?;
            if is_wanted(tag) {
                let value = self.read_value(len, tag)?;
                apply(&mut attrs, &mut decoder, tag, vr, value, enc.big)?;
            } else {
                self.skip(u64::from(len), tag)?;
            }
        }
        for (value, name) in [
            (&attrs.sop_class_uid, "SOPClassUID"),
            (&attrs.sop_instance_uid, "SOPInstanceUID"),
            (&attrs.study_instance_uid, "StudyInstanceUID"),
            (&attrs.series_instance_uid, "SeriesInstanceUID"),
        ] {
            if value.is_empty() {
                return Err(HeaderError::MissingAttribute(name));
            }
        }
        Ok(attrs)
    }
}

fn is_wanted(tag: Tag) -> bool {
    matches!(
        tag,
        tags::SPECIFIC_CHARACTER_SET
            | tags::SOP_CLASS_UID
            | tags::SOP_INSTANCE_UID
            | tags::STUDY_DATE
            | tags::SERIES_DATE
            | tags::STUDY_TIME
            | tags::SERIES_TIME
            | tags::ACCESSION_NUMBER
            | tags::MODALITY
            | tags::INSTITUTION_NAME
            | tags::REFERRING_PHYSICIAN_NAME
            | tags::STATION_NAME
            | tags::STUDY_DESCRIPTION
            | tags::SERIES_DESCRIPTION
            | tags::PATIENT_NAME
            | tags::PATIENT_ID
            | tags::ISSUER_OF_PATIENT_ID
            | tags::PATIENT_BIRTH_DATE
            | tags::PATIENT_SEX
            | tags::BODY_PART_EXAMINED
            | tags::STUDY_INSTANCE_UID
            | tags::SERIES_INSTANCE_UID
            | tags::STUDY_ID
            | tags::SERIES_NUMBER
            | tags::INSTANCE_NUMBER
            | tags::NUMBER_OF_FRAMES
            | tags::ROWS
            | tags::COLUMNS
            | tags::REQUESTED_PROCEDURE_PRIORITY
    )
}

/// Store one wanted value in `attrs`.
fn apply(
    attrs: &mut IndexedAttributes,
    decoder: &mut CharsetDecoder,
    tag: Tag,
    vr: Option<VR>,
    value: &[u8],
    big: bool,
) -> Result<(), HeaderError> {
    let text = |d: &CharsetDecoder| trimmed(d.decode_text(value));
    let name = |d: &CharsetDecoder| Some(d.decode_person_name(value)).filter(|n| !n.is_empty());
    match tag {
        tags::SPECIFIC_CHARACTER_SET => {
            let all = latin1(value);
            attrs.specific_character_set = if all.trim_matches([' ', '\0']).is_empty() {
                Vec::new()
            } else {
                all.split('\\')
                    .map(|v| v.trim_matches([' ', '\0']).to_owned())
                    .collect()
            };
            *decoder = CharsetDecoder::new(&attrs.specific_character_set);
        }
        tags::SOP_CLASS_UID => attrs.sop_class_uid = uid_value(value, "SOPClassUID")?,
        tags::SOP_INSTANCE_UID => attrs.sop_instance_uid = uid_value(value, "SOPInstanceUID")?,
        tags::STUDY_INSTANCE_UID => {
            attrs.study_instance_uid = uid_value(value, "StudyInstanceUID")?
        }
        tags::SERIES_INSTANCE_UID => {
            attrs.series_instance_uid = uid_value(value, "SeriesInstanceUID")?
        }
        tags::STUDY_DATE => attrs.study_date = ascii_value(value),
        tags::SERIES_DATE => attrs.series_date = ascii_value(value),
        tags::STUDY_TIME => attrs.study_time = ascii_value(value),
        tags::SERIES_TIME => attrs.series_time = ascii_value(value),
        tags::PATIENT_BIRTH_DATE => attrs.patient_birth_date = ascii_value(value),
        tags::MODALITY => attrs.modality = ascii_value(value),
        tags::PATIENT_SEX => attrs.patient_sex = ascii_value(value),
        tags::BODY_PART_EXAMINED => attrs.body_part_examined = ascii_value(value),
        tags::ACCESSION_NUMBER => attrs.accession_number = text(decoder),
        tags::INSTITUTION_NAME => attrs.institution_name = text(decoder),
        tags::STATION_NAME => attrs.station_name = text(decoder),
        tags::STUDY_DESCRIPTION => attrs.study_description = text(decoder),
        tags::SERIES_DESCRIPTION => attrs.series_description = text(decoder),
        tags::PATIENT_ID => attrs.patient_id = text(decoder),
        tags::ISSUER_OF_PATIENT_ID => attrs.issuer_of_patient_id = text(decoder),
        tags::STUDY_ID => attrs.study_id = text(decoder),
        tags::REQUESTED_PROCEDURE_PRIORITY => attrs.requested_procedure_priority = text(decoder),
        tags::PATIENT_NAME => attrs.patient_name = name(decoder),
        tags::REFERRING_PHYSICIAN_NAME => attrs.referring_physician_name = name(decoder),
        tags::SERIES_NUMBER => attrs.series_number = int_value(value),
        tags::INSTANCE_NUMBER => attrs.instance_number = int_value(value),
        tags::NUMBER_OF_FRAMES => attrs.number_of_frames = int_value(value),
        tags::ROWS => attrs.rows = us_value(value, vr, big),
        tags::COLUMNS => attrs.columns = us_value(value, vr, big),
        _ => {}
    }
    Ok(())
}

/// Trailing spaces and NULs off; None when nothing is left.
fn trimmed(mut s: String) -> Option<String> {
    let len = s.trim_end_matches([' ', '\0']).len();
    s.truncate(len);
    Some(s).filter(|s| !s.is_empty())
}

fn latin1(value: &[u8]) -> String {
    value.iter().map(|&b| b as char).collect()
}

/// A value of the default repertoire (CS, DA, TM, AE): padding off both ends.
fn ascii_value(value: &[u8]) -> Option<String> {
    let s = latin1(value);
    let t = s.trim_matches([' ', '\0']);
    (!t.is_empty()).then(|| t.to_owned())
}

/// A UID: padding off, then syntax-checked. Empty stays empty (reported as missing later).
fn uid_value(value: &[u8], name: &'static str) -> Result<String, HeaderError> {
    let s = latin1(value);
    let s = s.trim_matches([' ', '\0']);
    if s.is_empty() || is_valid_uid(s) {
        Ok(s.to_owned())
    } else {
        Err(HeaderError::Malformed(format!("{name} {s:?} is not a UID")))
    }
}

/// Digits and dots, at most 64 characters, no empty component (PS3.5 9.1).
pub fn is_valid_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// IS, leniently: first value, trimmed; "12.0" is accepted as 12.
fn int_value(value: &[u8]) -> Option<i64> {
    let s = latin1(value);
    let first = s.split('\\').next()?.trim_matches([' ', '\0']);
    first.parse::<i64>().ok().or_else(|| {
        let f = first.parse::<f64>().ok()?;
        (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

/// US (Rows, Columns): binary in the transfer syntax' byte order, unless an explicit VR says
/// the sender wrote it as a string.
fn us_value(value: &[u8], vr: Option<VR>, big: bool) -> Option<i64> {
    match vr {
        Some(VR::IS | VR::DS | VR::CS | VR::SH | VR::LO) => int_value(value),
        _ => {
            let b: [u8; 2] = value.get(..2)?.try_into().ok()?;
            Some(i64::from(u16_from(b, big)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue};
    use dicom_dictionary_std::uids;
    use dicom_object::InMemDicomObject;
    use dicom_object::meta::FileMetaTableBuilder;
    use std::io::Write;

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const SOP: &str = "1.2.826.0.1.3680043.2.1125.1.1";
    const STUDY: &str = "1.2.826.0.1.3680043.2.1125.2";
    const SERIES: &str = "1.2.826.0.1.3680043.2.1125.3";

    /// Writes elements by hand in one of the three encodings.
    struct DsWriter {
        out: Vec<u8>,
        explicit: bool,
        big: bool,
        /// Nesting level; elements written at level 0 record a boundary.
        level: usize,
        /// Byte offsets where a top-level element ends.
        boundaries: Vec<usize>,
    }

    impl DsWriter {
        fn new(explicit: bool, big: bool) -> Self {
            DsWriter {
                out: Vec::new(),
                explicit,
                big,
                level: 0,
                boundaries: vec![0],
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

        fn tag(&mut self, t: Tag) {
            self.u16(t.0);
            self.u16(t.1);
        }

        fn header(&mut self, t: Tag, vr: &[u8; 2], len: u32) {
            self.tag(t);
            if self.explicit {
                self.out.extend_from_slice(vr);
                if has_long_length(VR::from_binary(*vr).unwrap_or(VR::UN)) {
                    self.out.extend_from_slice(&[0, 0]);
                    self.u32(len);
                } else {
                    self.u16(len as u16);
                }
            } else {
                self.u32(len);
            }
        }

        fn mark(&mut self) {
            if self.level == 0 {
                self.boundaries.push(self.out.len());
            }
        }

        /// An element; odd values padded (NUL for UI/OB/UN, else space).
        fn elem(&mut self, t: Tag, vr: &[u8; 2], value: &[u8]) -> &mut Self {
            let mut v = value.to_vec();
            if v.len() % 2 == 1 {
                v.push(if matches!(vr, b"UI" | b"OB" | b"UN") {
                    0
                } else {
                    b' '
                });
            }
            self.header(t, vr, v.len() as u32);
            self.out.extend_from_slice(&v);
            self.mark();
            self
        }

        fn us(&mut self, t: Tag, v: u16) -> &mut Self {
            self.header(t, b"US", 2);
            self.u16(v);
            self.mark();
            self
        }

        fn seq_start(&mut self, t: Tag) {
            self.header(t, b"SQ", UNDEFINED);
            self.level += 1;
        }

        fn seq_end(&mut self) {
            self.tag(SEQUENCE_DELIMITATION_ITEM);
            self.u32(0);
            self.level -= 1;
            self.mark();
        }

        fn item_start(&mut self) {
            self.tag(ITEM);
            self.u32(UNDEFINED);
        }

        fn item_end(&mut self) {
            self.tag(ITEM_DELIMITATION_ITEM);
            self.u32(0);
        }

        /// Raw bytes as one top-level element.
        fn raw(&mut self, bytes: &[u8]) {
            self.out.extend_from_slice(bytes);
            self.mark();
        }
    }

    /// Content of a private sequence as a CP-246 UN: implicit VR LE, nested undefined lengths.
    fn private_un_content() -> Vec<u8> {
        let mut w = DsWriter::new(false, false);
        w.item_start();
        w.elem(Tag(0x0009, 0x1010), b"LO", b"vendor blob");
        w.seq_start(Tag(0x0009, 0x1011));
        w.item_start();
        w.elem(Tag(0x0009, 0x1012), b"OB", &[0xFF; 10]);
        w.seq_start(Tag(0x0009, 0x1013));
        w.item_start();
        w.elem(Tag(0x0009, 0x1014), b"SH", b"deep");
        w.item_end();
        w.seq_end();
        w.item_end();
        w.seq_end();
        w.item_end();
        // A defined-length item too.
        w.tag(ITEM);
        w.u32(10);
        w.elem(Tag(0x0009, 0x1015), b"US", &[1, 0]);
        w.tag(SEQUENCE_DELIMITATION_ITEM);
        w.u32(0);
        w.out
    }

    /// A small CT data set with sequences, a private CP-246 UN sequence and pixel data.
    fn sample(explicit: bool, big: bool) -> DsWriter {
        let mut w = DsWriter::new(explicit, big);
        w.elem(tags::SPECIFIC_CHARACTER_SET, b"CS", b"ISO_IR 100")
            .elem(tags::IMAGE_TYPE, b"CS", b"ORIGINAL\\PRIMARY\\AXIAL")
            .elem(tags::SOP_CLASS_UID, b"UI", CT.as_bytes())
            .elem(tags::SOP_INSTANCE_UID, b"UI", SOP.as_bytes())
            .elem(tags::STUDY_DATE, b"DA", b"20240131")
            .elem(tags::SERIES_DATE, b"DA", b"20240131")
            .elem(tags::STUDY_TIME, b"TM", b"101500.123")
            .elem(tags::SERIES_TIME, b"TM", b"101600")
            .elem(tags::ACCESSION_NUMBER, b"SH", b"ACC-0042")
            .elem(tags::MODALITY, b"CS", b"CT")
            .elem(tags::INSTITUTION_NAME, b"LO", b"H\xf4pital Sud")
            .elem(tags::REFERRING_PHYSICIAN_NAME, b"PN", b"Ref^Doc")
            .elem(tags::STATION_NAME, b"SH", b"CT01")
            .elem(tags::STUDY_DESCRIPTION, b"LO", b"Head w/o contrast")
            .elem(tags::SERIES_DESCRIPTION, b"LO", b"Axial 5mm");
        // Referenced Image Sequence: undefined-length items, nested defined-length SQ.
        w.seq_start(tags::REFERENCED_IMAGE_SEQUENCE);
        w.item_start();
        w.elem(tags::REFERENCED_SOP_CLASS_UID, b"UI", CT.as_bytes());
        w.elem(tags::REFERENCED_SOP_INSTANCE_UID, b"UI", b"1.2.3.4");
        let mut content = DsWriter::new(explicit, big);
        content.elem(tags::REFERENCED_FRAME_NUMBER, b"IS", b"1\\2");
        let mut inner = DsWriter::new(explicit, big);
        inner.tag(ITEM);
        inner.u32(content.out.len() as u32);
        inner.out.extend_from_slice(&content.out);
        let inner_bytes = inner.out;
        w.header(
            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
            b"SQ",
            inner_bytes.len() as u32,
        );
        w.out.extend_from_slice(&inner_bytes);
        w.item_end();
        w.item_start();
        w.item_end();
        w.seq_end();
        // Private block with a CP-246 UN sequence.
        w.elem(Tag(0x0009, 0x0010), b"LO", b"ACME 1.0");
        if explicit {
            let content = private_un_content();
            w.header(Tag(0x0009, 0x1001), b"UN", UNDEFINED);
            w.raw(&content);
        } else {
            // In implicit VR the private sequence is just an undefined-length element.
            let mut seq = DsWriter::new(false, big);
            seq.item_start();
            seq.elem(Tag(0x0009, 0x1010), b"LO", b"vendor blob");
            seq.item_end();
            seq.tag(SEQUENCE_DELIMITATION_ITEM);
            seq.u32(0);
            w.header(Tag(0x0009, 0x1001), b"SQ", UNDEFINED);
            w.raw(&seq.out);
        }
        w.elem(tags::PATIENT_NAME, b"PN", b"M\xfcller^J\xf6rg")
            .elem(tags::PATIENT_ID, b"LO", b"PID-1")
            .elem(tags::ISSUER_OF_PATIENT_ID, b"LO", b"CLINIC-A")
            .elem(tags::PATIENT_BIRTH_DATE, b"DA", b"19700101")
            .elem(tags::PATIENT_SEX, b"CS", b"M")
            .elem(tags::BODY_PART_EXAMINED, b"CS", b"HEAD")
            .elem(tags::STUDY_INSTANCE_UID, b"UI", STUDY.as_bytes())
            .elem(tags::SERIES_INSTANCE_UID, b"UI", SERIES.as_bytes())
            .elem(tags::STUDY_ID, b"SH", b"S1")
            .elem(tags::SERIES_NUMBER, b"IS", b"3")
            .elem(tags::INSTANCE_NUMBER, b"IS", b" 12 ")
            .elem(tags::NUMBER_OF_FRAMES, b"IS", b"1")
            .us(tags::ROWS, 512)
            .us(tags::COLUMNS, 256)
            .elem(tags::REQUESTED_PROCEDURE_PRIORITY, b"SH", b"HIGH");
        w.elem(tags::PIXEL_DATA, b"OW", &[0x11; 16]);
        w
    }

    fn check_sample(a: &IndexedAttributes) {
        assert_eq!(a.sop_class_uid, CT);
        assert_eq!(a.sop_instance_uid, SOP);
        assert_eq!(a.study_instance_uid, STUDY);
        assert_eq!(a.series_instance_uid, SERIES);
        assert_eq!(a.specific_character_set, vec!["ISO_IR 100".to_owned()]);
        assert_eq!(a.patient_id.as_deref(), Some("PID-1"));
        assert_eq!(a.issuer_of_patient_id.as_deref(), Some("CLINIC-A"));
        let name = a.patient_name.as_ref().expect("patient name");
        assert_eq!(name.to_dicom_string(), "Müller^Jörg");
        assert_eq!(a.patient_birth_date.as_deref(), Some("19700101"));
        assert_eq!(a.patient_sex.as_deref(), Some("M"));
        assert_eq!(a.study_date.as_deref(), Some("20240131"));
        assert_eq!(a.study_time.as_deref(), Some("101500.123"));
        assert_eq!(a.accession_number.as_deref(), Some("ACC-0042"));
        assert_eq!(a.study_id.as_deref(), Some("S1"));
        assert_eq!(a.study_description.as_deref(), Some("Head w/o contrast"));
        assert_eq!(
            a.referring_physician_name
                .as_ref()
                .map(PersonName::to_dicom_string)
                .as_deref(),
            Some("Ref^Doc")
        );
        assert_eq!(a.modality.as_deref(), Some("CT"));
        assert_eq!(a.series_number, Some(3));
        assert_eq!(a.series_description.as_deref(), Some("Axial 5mm"));
        assert_eq!(a.body_part_examined.as_deref(), Some("HEAD"));
        assert_eq!(a.series_date.as_deref(), Some("20240131"));
        assert_eq!(a.series_time.as_deref(), Some("101600"));
        assert_eq!(a.instance_number, Some(12));
        assert_eq!(a.rows, Some(512));
        assert_eq!(a.columns, Some(256));
        assert_eq!(a.number_of_frames, Some(1));
        assert_eq!(a.institution_name.as_deref(), Some("Hôpital Sud"));
        assert_eq!(a.station_name.as_deref(), Some("CT01"));
        assert_eq!(a.requested_procedure_priority.as_deref(), Some("HIGH"));
        assert!(a.has_pixel_data);
    }

    const IMPLICIT: &str = "1.2.840.10008.1.2";
    const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
    const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
    const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

    fn scan(bytes: &[u8], ts: &str) -> Result<IndexedAttributes, HeaderError> {
        scan_dataset(bytes, ts)
    }

    fn deflate(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn explicit_little_endian() {
        check_sample(&scan(&sample(true, false).out, EXPLICIT_LE).unwrap());
    }

    #[test]
    fn implicit_little_endian() {
        check_sample(&scan(&sample(false, false).out, IMPLICIT).unwrap());
    }

    #[test]
    fn explicit_big_endian() {
        check_sample(&scan(&sample(true, true).out, EXPLICIT_BE).unwrap());
    }

    #[test]
    fn deflated_explicit_little_endian() {
        let packed = deflate(&sample(true, false).out);
        check_sample(&scan(&packed, DEFLATED).unwrap());
        // Corrupt deflate data is an error, not a panic.
        let mut bad = packed.clone();
        bad.truncate(bad.len() / 2);
        assert!(scan(&bad, DEFLATED).is_err());
        assert!(scan(&[0xFF; 64], DEFLATED).is_err());
    }

    #[test]
    fn encapsulated_transfer_syntax_reads_as_explicit_le() {
        let mut w = sample(true, false);
        // Replace the native pixel data with encapsulated fragments.
        w.out.truncate(*w.boundaries.iter().rev().nth(1).unwrap());
        w.header(tags::PIXEL_DATA, b"OB", UNDEFINED);
        w.tag(ITEM);
        w.u32(0);
        w.tag(ITEM);
        w.u32(4);
        w.out.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xD9]);
        w.tag(SEQUENCE_DELIMITATION_ITEM);
        w.u32(0);
        check_sample(&scan(&w.out, uids::JPEG_BASELINE8_BIT).unwrap());
        check_sample(&scan(&w.out, uids::JPEG2000).unwrap());
    }

    #[test]
    fn complete_scan_refuses_truncated_pixel_data() {
        let full = sample(true, false).out;
        assert!(scan_complete_dataset(&full[..], EXPLICIT_LE).is_ok());
        // Cut inside the pixel data value: the header scan is happy, the complete one not.
        let cut = &full[..full.len() - 3];
        assert!(scan(cut, EXPLICIT_LE).is_ok());
        assert!(matches!(
            scan_complete_dataset(cut, EXPLICIT_LE),
            Err(HeaderError::Truncated { .. })
        ));
        // Trailing garbage after the data set is not an image either.
        let mut junk = full.clone();
        junk.extend_from_slice(&[0x08, 0x00, 0x10, 0x00, b'C', b'S', 2, 0, b'A', b'B']);
        assert!(scan_complete_dataset(&junk[..], EXPLICIT_LE).is_err());
        // Encapsulated fragments without their sequence delimiter.
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        study_series(&mut w);
        w.header(tags::PIXEL_DATA, b"OB", UNDEFINED);
        w.tag(ITEM);
        w.u32(0);
        w.tag(ITEM);
        w.u32(4);
        w.raw(&[1, 2, 3, 4]);
        let open = w.out.clone();
        assert!(matches!(
            scan_complete_dataset(&open[..], EXPLICIT_LE),
            Err(HeaderError::Truncated { .. })
        ));
        w.tag(SEQUENCE_DELIMITATION_ITEM);
        w.u32(0);
        assert!(scan_complete_dataset(&w.out[..], EXPLICIT_LE).is_ok());
    }

    #[test]
    fn complete_file_scan_seeks_over_pixel_data_and_still_sees_truncation() {
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        study_series(&mut w);
        w.elem(tags::PIXEL_DATA, b"OW", &vec![0x11; 300_000]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ds.dcm");
        let mut bytes = vec![0xAA; 10]; // pretend meta group before the data set
        bytes.extend_from_slice(&w.out);
        std::fs::write(&path, &bytes).unwrap();
        let open = || std::fs::File::open(&path).unwrap();
        let a = scan_complete_file(open(), 10, EXPLICIT_LE).unwrap();
        assert!(a.has_pixel_data);
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(
            scan_complete_file(open(), 10, EXPLICIT_LE),
            Err(HeaderError::Truncated { .. })
        ));
    }

    #[test]
    fn unknown_transfer_syntax() {
        let err = scan(&sample(true, false).out, "1.2.3.4.5").unwrap_err();
        assert!(matches!(err, HeaderError::UnsupportedTransferSyntax(ref u) if u == "1.2.3.4.5"));
        // Trailing NUL padding from a UI value is fine.
        check_sample(&scan(&sample(true, false).out, "1.2.840.10008.1.2.1\0").unwrap());
    }

    #[test]
    fn private_un_sequence_of_undefined_length_in_every_syntax() {
        // The CP-246 UN element is part of the sample; also in big endian, where its content
        // stays implicit VR little endian.
        for (explicit, big, ts) in [(true, false, EXPLICIT_LE), (true, true, EXPLICIT_BE)] {
            let a = scan(&sample(explicit, big).out, ts).unwrap();
            check_sample(&a);
        }
    }

    #[test]
    fn empty_and_pixelless_data_sets() {
        assert!(matches!(
            scan(&[], EXPLICIT_LE),
            Err(HeaderError::MissingAttribute("SOPClassUID"))
        ));
        // No pixel data: the end of the stream is a normal end.
        let w = sample(true, false);
        let before_pixels = w.boundaries[w.boundaries.len() - 2];
        let a = scan(&w.out[..before_pixels], EXPLICIT_LE).unwrap();
        assert!(!a.has_pixel_data);
        assert_eq!(a.rows, Some(512));
    }

    #[test]
    fn every_cut_point_is_truncated_or_clean() {
        for (explicit, big, ts) in [
            (true, false, EXPLICIT_LE),
            (false, false, IMPLICIT),
            (true, true, EXPLICIT_BE),
        ] {
            let w = sample(explicit, big);
            // The scan stops right after the Pixel Data tag.
            let pixel_tag_end = w.boundaries[w.boundaries.len() - 2] + 4;
            for cut in 0..w.out.len() {
                let result = scan(&w.out[..cut], ts);
                if cut >= pixel_tag_end {
                    assert!(
                        matches!(result, Ok(ref a) if a.has_pixel_data),
                        "{ts} cut at {cut}: {result:?}"
                    );
                } else if w.boundaries.contains(&cut) {
                    assert!(
                        matches!(result, Ok(_) | Err(HeaderError::MissingAttribute(_))),
                        "{ts} cut at boundary {cut}: {result:?}"
                    );
                } else {
                    assert!(
                        matches!(result, Err(HeaderError::Truncated { .. })),
                        "{ts} cut at {cut}: {result:?}"
                    );
                }
            }
        }
        // Deflated: any cut is an error or a clean result, never a panic.
        let packed = deflate(&sample(true, false).out);
        for cut in 0..packed.len() {
            let _ = scan(&packed[..cut], DEFLATED);
        }
    }

    fn required(w: &mut DsWriter) {
        w.elem(tags::SOP_CLASS_UID, b"UI", CT.as_bytes()).elem(
            tags::SOP_INSTANCE_UID,
            b"UI",
            SOP.as_bytes(),
        );
    }

    fn study_series(w: &mut DsWriter) {
        w.elem(tags::STUDY_INSTANCE_UID, b"UI", STUDY.as_bytes())
            .elem(tags::SERIES_INSTANCE_UID, b"UI", SERIES.as_bytes());
    }

    #[test]
    fn bogus_length_on_a_skipped_element_is_truncated() {
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        w.header(Tag(0x0009, 0x1002), b"OB", 0xFFFF_FFF0);
        w.out.extend_from_slice(&[0; 32]);
        let err = scan(&w.out, EXPLICIT_LE).unwrap_err();
        assert!(
            matches!(err, HeaderError::Truncated { tag: Some(ref t) } if t == "(0009,1002)"),
            "{err:?}"
        );
    }

    #[test]
    fn bogus_length_on_a_wanted_element_is_too_large() {
        let mut w = DsWriter::new(false, false);
        required(&mut w);
        w.header(tags::PATIENT_NAME, b"PN", 0xFFFF_FFF0);
        w.out.extend_from_slice(b"Doe^John");
        assert!(matches!(
            scan(&w.out, IMPLICIT),
            Err(HeaderError::TooLarge(_))
        ));
        // 64 KiB exactly is still read.
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        w.elem(
            tags::STUDY_DESCRIPTION,
            b"UT",
            &vec![b'x'; MAX_VALUE_LEN as usize],
        );
        study_series(&mut w);
        let a = scan(&w.out, EXPLICIT_LE).unwrap();
        assert_eq!(a.study_description.map(|s| s.len()), Some(65536));
    }

    fn nested(levels: usize, un: bool) -> Vec<u8> {
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        if un {
            w.header(Tag(0x0009, 0x1001), b"UN", UNDEFINED);
            w.explicit = false;
        } else {
            w.header(tags::REFERENCED_IMAGE_SEQUENCE, b"SQ", UNDEFINED);
        }
        for _ in 1..levels {
            w.item_start();
            w.header(tags::REFERENCED_IMAGE_SEQUENCE, b"SQ", UNDEFINED);
        }
        for _ in 1..levels {
            w.tag(SEQUENCE_DELIMITATION_ITEM);
            w.u32(0);
            w.item_end();
        }
        w.tag(SEQUENCE_DELIMITATION_ITEM);
        w.u32(0);
        w.explicit = true;
        w.level = 0;
        study_series(&mut w);
        w.out
    }

    #[test]
    fn nesting_depth_is_capped() {
        assert!(scan(&nested(MAX_SEQUENCE_DEPTH, false), EXPLICIT_LE).is_ok());
        assert!(scan(&nested(MAX_SEQUENCE_DEPTH, true), EXPLICIT_LE).is_ok());
        assert!(matches!(
            scan(&nested(MAX_SEQUENCE_DEPTH + 1, false), EXPLICIT_LE),
            Err(HeaderError::TooDeep)
        ));
        assert!(matches!(
            scan(&nested(100, false), EXPLICIT_LE),
            Err(HeaderError::TooDeep)
        ));
        assert!(matches!(
            scan(&nested(100, true), EXPLICIT_LE),
            Err(HeaderError::TooDeep)
        ));
    }

    #[test]
    fn out_of_order_tags_are_malformed() {
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        w.elem(tags::PATIENT_NAME, b"PN", b"Doe^John");
        w.elem(tags::ACCESSION_NUMBER, b"SH", b"A1");
        match scan(&w.out, EXPLICIT_LE) {
            Err(HeaderError::Malformed(m)) => {
                assert!(m.contains("(0008,0050) after (0010,0010)"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // A repeated tag too.
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        w.elem(tags::SOP_INSTANCE_UID, b"UI", SOP.as_bytes());
        assert!(matches!(
            scan(&w.out, EXPLICIT_LE),
            Err(HeaderError::Malformed(_))
        ));
    }

    #[test]
    fn missing_or_invalid_required_attributes() {
        let mut w = DsWriter::new(true, false);
        w.elem(tags::SOP_CLASS_UID, b"UI", CT.as_bytes());
        study_series(&mut w);
        assert!(matches!(
            scan(&w.out, EXPLICIT_LE),
            Err(HeaderError::MissingAttribute("SOPInstanceUID"))
        ));
        // Present but empty counts as missing.
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        w.elem(tags::STUDY_INSTANCE_UID, b"UI", b"");
        w.elem(tags::SERIES_INSTANCE_UID, b"UI", SERIES.as_bytes());
        assert!(matches!(
            scan(&w.out, EXPLICIT_LE),
            Err(HeaderError::MissingAttribute("StudyInstanceUID"))
        ));
        for bad in [&b"1.2..3"[..], b"1.2.abc", b".1.2", &[b'1'; 66]] {
            let mut w = DsWriter::new(true, false);
            w.elem(tags::SOP_CLASS_UID, b"UI", CT.as_bytes());
            w.elem(tags::SOP_INSTANCE_UID, b"UI", bad);
            study_series(&mut w);
            assert!(
                matches!(scan(&w.out, EXPLICIT_LE), Err(HeaderError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(is_valid_uid("1.2.840.10008.1.2"));
        assert!(!is_valid_uid(""));
    }

    #[test]
    fn unknown_vr_is_malformed_and_odd_length_is_tolerated() {
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        w.tag(tags::PATIENT_NAME);
        w.out.extend_from_slice(b"ZZ\x02\x00ab");
        assert!(matches!(
            scan(&w.out, EXPLICIT_LE),
            Err(HeaderError::Malformed(m)) if m.contains("unknown VR")
        ));
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        w.header(tags::PATIENT_NAME, b"PN", 3);
        w.out.extend_from_slice(b"abc");
        study_series(&mut w);
        let attrs = scan(&w.out, EXPLICIT_LE).expect("odd length is read as declared");
        assert_eq!(attrs.patient_name.unwrap().alphabetic, "abc");
        // An item tag at the top level.
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        w.tag(ITEM);
        w.u32(0);
        assert!(matches!(
            scan(&w.out, EXPLICIT_LE),
            Err(HeaderError::Malformed(_))
        ));
    }

    #[test]
    fn path_characters_are_just_text() {
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        w.elem(tags::PATIENT_NAME, b"PN", b"../../etc/passwd");
        w.elem(tags::PATIENT_ID, b"LO", b"..\\..\\boot.ini");
        study_series(&mut w);
        let a = scan(&w.out, EXPLICIT_LE).unwrap();
        let name = a.patient_name.unwrap();
        assert_eq!(name.alphabetic, "../../etc/passwd");
        assert_eq!(a.patient_id.as_deref(), Some("..\\..\\boot.ini"));
        assert!(!a.has_pixel_data);
    }

    #[test]
    fn code_extensions_in_the_data_set() {
        let mut w = DsWriter::new(true, false);
        w.elem(tags::SPECIFIC_CHARACTER_SET, b"CS", b"\\ISO 2022 IR 87");
        required(&mut w);
        w.elem(tags::STUDY_DESCRIPTION, b"LO", b"\x1b$B;3ED\x1b(B CT");
        w.elem(
            tags::PATIENT_NAME,
            b"PN",
            b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
        );
        study_series(&mut w);
        let a = scan(&w.out, EXPLICIT_LE).unwrap();
        assert_eq!(
            a.specific_character_set,
            vec![String::new(), "ISO 2022 IR 87".to_owned()]
        );
        assert_eq!(
            a.patient_name.unwrap().to_dicom_string(),
            "Yamada^Tarou=山田^太郎=やまだ^たろう"
        );
        assert_eq!(a.study_description.as_deref(), Some("山田 CT"));
    }

    #[test]
    fn rows_written_as_string_or_unknown_vr() {
        let mut w = DsWriter::new(true, false);
        required(&mut w);
        study_series(&mut w);
        w.elem(tags::ROWS, b"IS", b"300");
        w.elem(tags::COLUMNS, b"UN", &[0x00, 0x02]);
        let a = scan(&w.out, EXPLICIT_LE).unwrap();
        assert_eq!(a.rows, Some(300));
        assert_eq!(a.columns, Some(512));
        assert_eq!(int_value(b"+7\\8"), Some(7));
        assert_eq!(int_value(b"12.0 "), Some(12));
        assert_eq!(int_value(b"x"), None);
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let bases = [
            (sample(true, false).out, EXPLICIT_LE),
            (sample(false, false).out, IMPLICIT),
            (sample(true, true).out, EXPLICIT_BE),
            (deflate(&sample(true, false).out), DEFLATED),
            (nested(30, true), EXPLICIT_LE),
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut outcomes = [0usize; 2];
        for i in 0..4000 {
            let (base, ts) = &bases[i % bases.len()];
            let mut data = base.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(data.len());
                match rng.below(4) {
                    0 => data[at] = rng.next() as u8,
                    1 => data[at] ^= 1 << rng.below(8),
                    2 => {
                        // A random 4-byte length-like value.
                        let v = (rng.next() as u32).to_le_bytes();
                        let end = (at + 4).min(data.len());
                        data[at..end].copy_from_slice(&v[..end - at]);
                    }
                    _ => data[at] = 0xFF,
                }
            }
            if rng.below(4) == 0 {
                let keep = rng.below(data.len() + 1);
                data.truncate(keep);
            }
            outcomes[usize::from(scan(&data, ts).is_ok())] += 1;
        }
        // Both outcomes occur: the mutations reach the parser in both directions.
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    }

    // --- Files written by dicom-object ---

    fn dicom_object_sample() -> InMemDicomObject {
        InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                PrimitiveValue::from("ISO_IR 192"),
            ),
            DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from(CT)),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(SOP)),
            DataElement::new(tags::STUDY_DATE, VR::DA, PrimitiveValue::from("20240131")),
            DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("MR")),
            DataElement::new(
                tags::STUDY_DESCRIPTION,
                VR::LO,
                PrimitiveValue::from("Schädel nativ"),
            ),
            DataElement::new(
                tags::PATIENT_NAME,
                VR::PN,
                PrimitiveValue::from("Wang^XiaoDong=王^小東"),
            ),
            DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("PID-9")),
            DataElement::new(
                tags::STUDY_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(STUDY),
            ),
            DataElement::new(
                tags::SERIES_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(SERIES),
            ),
            DataElement::new(tags::SERIES_NUMBER, VR::IS, PrimitiveValue::from("7")),
            DataElement::new(tags::INSTANCE_NUMBER, VR::IS, PrimitiveValue::from("21")),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(64_u16)),
            DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(32_u16)),
            DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8_u16)),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                PrimitiveValue::from(vec![0x55_u8; 64 * 32]),
            ),
        ])
    }

    #[test]
    fn files_written_by_dicom_object() {
        let dir = tempfile::tempdir().unwrap();
        for ts in [IMPLICIT, EXPLICIT_LE, EXPLICIT_BE, DEFLATED] {
            let path = dir.path().join(format!("{ts}.dcm"));
            let file = dicom_object_sample()
                .with_meta(
                    FileMetaTableBuilder::new()
                        .transfer_syntax(ts)
                        .source_application_entity_title("MODALITY1"),
                )
                .unwrap();
            file.write_to_file(&path).unwrap();

            let mut r = BufReader::new(std::fs::File::open(&path).unwrap());
            let meta = read_file_meta(&mut r).unwrap();
            assert_eq!(meta.transfer_syntax_uid, ts);
            assert_eq!(meta.media_storage_sop_class_uid, CT);
            assert_eq!(meta.media_storage_sop_instance_uid, SOP);
            assert_eq!(meta.source_ae_title.as_deref(), Some("MODALITY1"));
            assert_eq!(
                meta.dataset_offset,
                132 + 12 + u64::from(file.meta().information_group_length)
            );
            let a = scan_dataset(r, &meta.transfer_syntax_uid).unwrap();

            // Compare with what dicom-object reads back from the same file.
            let back = dicom_object::OpenFileOptions::new()
                .read_until(tags::PIXEL_DATA)
                .open_file(&path)
                .unwrap();
            let s = |t: Tag| back.element(t).unwrap().to_str().unwrap().trim().to_owned();
            assert_eq!(a.sop_class_uid, s(tags::SOP_CLASS_UID), "{ts}");
            assert_eq!(a.sop_instance_uid, s(tags::SOP_INSTANCE_UID));
            assert_eq!(a.study_instance_uid, s(tags::STUDY_INSTANCE_UID));
            assert_eq!(a.series_instance_uid, s(tags::SERIES_INSTANCE_UID));
            assert_eq!(
                a.patient_name.as_ref().unwrap().to_dicom_string(),
                s(tags::PATIENT_NAME)
            );
            assert_eq!(a.patient_name.as_ref().unwrap().ideographic, "王^小東");
            assert_eq!(a.study_description.as_deref(), Some("Schädel nativ"));
            assert_eq!(
                a.study_description.as_deref().unwrap(),
                s(tags::STUDY_DESCRIPTION)
            );
            assert_eq!(a.patient_id.as_deref(), Some("PID-9"));
            assert_eq!(a.modality.as_deref(), Some("MR"));
            assert_eq!(a.study_date.as_deref(), Some("20240131"));
            assert_eq!(a.series_number, Some(7));
            assert_eq!(a.instance_number, Some(21));
            let rows = back.element(tags::ROWS).unwrap().to_int::<i64>().unwrap();
            assert_eq!(a.rows, Some(rows));
            assert_eq!(a.columns, Some(32));
            assert!(a.has_pixel_data);
            assert_eq!(a.specific_character_set, vec!["ISO_IR 192".to_owned()]);
        }
    }

    #[test]
    fn file_meta_errors() {
        assert!(matches!(
            read_file_meta(&mut &[0u8; 64][..]),
            Err(HeaderError::NotPart10(_))
        ));
        assert!(matches!(
            read_file_meta(&mut &[0u8; 300][..]),
            Err(HeaderError::NotPart10(_))
        ));
        let mut head = vec![0u8; 128];
        head.extend_from_slice(b"DICM");
        // DICM and then nothing.
        assert!(matches!(
            read_file_meta(&mut head.as_slice()),
            Err(HeaderError::Truncated { .. })
        ));
        // Group length, then a group shorter than announced.
        let mut w = DsWriter::new(true, false);
        w.elem(
            tags::FILE_META_INFORMATION_GROUP_LENGTH,
            b"UL",
            &100u32.to_le_bytes(),
        );
        w.elem(tags::TRANSFER_SYNTAX_UID, b"UI", EXPLICIT_LE.as_bytes());
        let mut file = head.clone();
        file.extend_from_slice(&w.out);
        assert!(matches!(
            read_file_meta(&mut file.as_slice()),
            Err(HeaderError::Truncated { .. })
        ));
        // A complete group without the SOP Class.
        let mut group = DsWriter::new(true, false);
        group.elem(tags::TRANSFER_SYNTAX_UID, b"UI", EXPLICIT_LE.as_bytes());
        let mut w = DsWriter::new(true, false);
        w.elem(
            tags::FILE_META_INFORMATION_GROUP_LENGTH,
            b"UL",
            &(group.out.len() as u32).to_le_bytes(),
        );
        let mut file = head.clone();
        file.extend_from_slice(&w.out);
        file.extend_from_slice(&group.out);
        assert!(matches!(
            read_file_meta(&mut file.as_slice()),
            Err(HeaderError::MissingAttribute("MediaStorageSOPClassUID"))
        ));
        // No group length first.
        let mut file = head.clone();
        file.extend_from_slice(&group.out);
        assert!(matches!(
            read_file_meta(&mut file.as_slice()),
            Err(HeaderError::Malformed(_))
        ));
    }

    #[test]
    fn file_meta_then_data_set_from_one_stream() {
        let mut group = DsWriter::new(true, false);
        group
            .elem(tags::FILE_META_INFORMATION_VERSION, b"OB", &[0, 1])
            .elem(tags::MEDIA_STORAGE_SOP_CLASS_UID, b"UI", CT.as_bytes())
            .elem(tags::MEDIA_STORAGE_SOP_INSTANCE_UID, b"UI", SOP.as_bytes())
            .elem(tags::TRANSFER_SYNTAX_UID, b"UI", IMPLICIT.as_bytes());
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        let mut w = DsWriter::new(true, false);
        w.elem(
            tags::FILE_META_INFORMATION_GROUP_LENGTH,
            b"UL",
            &(group.out.len() as u32).to_le_bytes(),
        );
        file.extend_from_slice(&w.out);
        file.extend_from_slice(&group.out);
        let offset = file.len() as u64;
        file.extend_from_slice(&sample(false, false).out);
        let mut r = file.as_slice();
        let meta = read_file_meta(&mut r).unwrap();
        assert_eq!(meta.dataset_offset, offset);
        assert_eq!(meta.source_ae_title, None);
        check_sample(&scan_dataset(r, &meta.transfer_syntax_uid).unwrap());
    }
}
