//! Everything that is checked before a decoder touches the data: the object's structure,
//! the declared image geometry against the rendering limits and against the bytes that are
//! really there, and the header of the compressed stream of the requested frame.
//!
//! The decoders of dicom-rs size their output from the declared Rows × Columns (or from the
//! stream's own header) and several index into it without bounds checks, so a header that
//! lies is either an allocation bomb or a panic. The checks here refuse both with a reason;
//! [`super::no_panic`] is the second line for what they cannot foresee.

use std::io::Read;

use dicom_core::DicomValue;
use dicom_core::dictionary::UidDictionary;
use dicom_dictionary_std::StandardSopClassDictionary;
use dicom_dictionary_std::tags;
use dicom_encoding::Codec;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use pacs_store::header::{self, HeaderError};

use super::{MAX_FRAME_PIXELS, MAX_INFLATED_BYTES, RenderError};

/// Transfer syntaxes whose frames are JPEG (ISO 10918) or JPEG-LS (ISO 14495) streams.
const JPEG_FAMILY: &[&str] = &[
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
];
const JPEG_LS: &[&str] = &["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"];
/// JPEG 2000 and High-Throughput JPEG 2000.
const J2K_FAMILY: &[&str] = &[
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
];
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
const ENCAPSULATED_UNCOMPRESSED: &str = "1.2.840.10008.1.2.1.98";

/// Opens a whole Part 10 object (preamble, `DICM`, meta group, data set) from memory.
///
/// The archive's own header scanner ([`header::scan_complete_dataset`], the check every
/// ingested object passed) walks the data set first: it trusts no length for an
/// allocation and fails on any element that runs past the end. dicom-rs's parser does
/// allocate (and zero) an element's declared length before reading it, so a forged length
/// would otherwise cost up to 4 GiB per element. A deflated data set is inflated once,
/// counting, and refused above [`MAX_INFLATED_BYTES`].
pub(super) fn open(object: &[u8]) -> Result<DefaultDicomObject, RenderError> {
    let mut reader = object;
    let meta = header::read_file_meta(&mut reader).map_err(structure_error)?;
    let dataset = usize::try_from(meta.dataset_offset)
        .ok()
        .and_then(|offset| object.get(offset..))
        .ok_or_else(|| RenderError::Undecodable("the object ends inside its meta group".into()))?;
    let ts_uid = meta.transfer_syntax_uid.trim_end_matches(['\0', ' ']);
    let ts = TransferSyntaxRegistry.get(ts_uid).ok_or_else(|| {
        RenderError::Unsupported(format!(
            "transfer syntax {ts_uid} is not known to this server"
        ))
    })?;
    if matches!(ts.codec(), Codec::Dataset(_)) {
        let inflated = std::io::copy(
            &mut flate2::read::DeflateDecoder::new(dataset).take(MAX_INFLATED_BYTES + 1),
            &mut std::io::sink(),
        )
        .map_err(|_| RenderError::Undecodable("the deflated data set is corrupt".into()))?;
        if inflated > MAX_INFLATED_BYTES {
            return Err(RenderError::TooLarge(format!(
                "the deflated data set inflates to more than {} MiB",
                MAX_INFLATED_BYTES >> 20
            )));
        }
    }
    header::scan_complete_dataset(dataset, ts_uid).map_err(structure_error)?;
    // `from_reader` expects what follows the preamble: `DICM` and the meta group.
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(&object[128..])
        .map_err(|e| {
            tracing::warn!(error = %e, "render: dicom-object cannot parse an object the header scanner accepted");
            RenderError::Undecodable("the data set cannot be parsed".into())
        })
}

fn structure_error(e: HeaderError) -> RenderError {
    match e {
        HeaderError::UnsupportedTransferSyntax(uid) => {
            RenderError::Unsupported(format!("transfer syntax {uid} is not known to this server"))
        }
        HeaderError::Io(e) => RenderError::Internal(format!("reading the object: {e}")),
        // The scanner's messages name tags and lengths, never anything of the server.
        other => RenderError::Undecodable(format!("the object is not well formed: {other}")),
    }
}

/// The image geometry the object declares, validated.
#[derive(Debug, Clone)]
pub(super) struct ImageInfo {
    pub rows: u32,
    pub cols: u32,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub photometric: Photometric,
    pub frames: u32,
    pub transfer_syntax: String,
    pub transfer_syntax_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Photometric {
    Monochrome1,
    Monochrome2,
    Palette,
    Rgb,
    YbrFull,
    YbrFull422,
    /// Other YBR interpretations: only in compressed streams, whose codecs give RGB.
    YbrCodec,
}

impl ImageInfo {
    /// Bytes of one frame in native (uncompressed) form.
    pub fn native_frame_bits(&self) -> u128 {
        let pixels = u128::from(self.rows) * u128::from(self.cols);
        let samples = if self.photometric == Photometric::YbrFull422 {
            // Two luminance samples share one pair of chrominance samples.
            pixels * 2
        } else {
            pixels * u128::from(self.samples_per_pixel)
        };
        samples * u128::from(self.bits_allocated)
    }
}

fn attr_u16(
    obj: &DefaultDicomObject,
    tag: dicom_core::Tag,
    name: &str,
) -> Result<u16, RenderError> {
    let elem = obj
        .get(tag)
        .ok_or_else(|| RenderError::Undecodable(format!("{name} is missing")))?;
    elem.to_int::<u16>()
        .map_err(|_| RenderError::Undecodable(format!("{name} is not a valid number")))
}

/// Reads and validates the image attributes; `NotAnImage` when there is no pixel data.
pub(super) fn image_info(obj: &DefaultDicomObject) -> Result<ImageInfo, RenderError> {
    if obj.get(tags::PIXEL_DATA).is_none() {
        if obj.get(tags::FLOAT_PIXEL_DATA).is_some()
            || obj.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some()
        {
            return Err(RenderError::Unsupported(
                "floating-point pixel data cannot be rendered".into(),
            ));
        }
        let sop_class = obj
            .get(tags::SOP_CLASS_UID)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_owned())
            .unwrap_or_default();
        let what = StandardSopClassDictionary
            .by_uid(&sop_class)
            .map(|e| format!("a {} object", e.name))
            .unwrap_or_else(|| "this object".into());
        return Err(RenderError::NotAnImage(format!(
            "{what} has no pixel data to render"
        )));
    }
    let rows = attr_u16(obj, tags::ROWS, "Rows")?;
    let cols = attr_u16(obj, tags::COLUMNS, "Columns")?;
    let samples_per_pixel = attr_u16(obj, tags::SAMPLES_PER_PIXEL, "Samples per Pixel")?;
    let bits_allocated = attr_u16(obj, tags::BITS_ALLOCATED, "Bits Allocated")?;
    let bits_stored = attr_u16(obj, tags::BITS_STORED, "Bits Stored")?;
    let pi = obj
        .get(tags::PHOTOMETRIC_INTERPRETATION)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_matches(['\0', ' ']).to_ascii_uppercase())
        .ok_or_else(|| RenderError::Undecodable("Photometric Interpretation is missing".into()))?;
    let frames = match obj.get(tags::NUMBER_OF_FRAMES) {
        None => 1,
        Some(e)
            if e.to_str()
                .is_ok_and(|s| s.trim_matches(['\0', ' ']).is_empty()) =>
        {
            1
        }
        Some(e) => match e.to_int::<i64>() {
            Ok(n) if n >= 1 && n <= i64::from(u32::MAX) => n as u32,
            _ => {
                return Err(RenderError::Undecodable(
                    "Number of Frames is not a positive number".into(),
                ));
            }
        },
    };

    if rows == 0 || cols == 0 {
        return Err(RenderError::Undecodable(format!(
            "the image has no pixels ({cols}×{rows})"
        )));
    }
    let pixels = u64::from(rows) * u64::from(cols);
    if pixels > MAX_FRAME_PIXELS {
        return Err(RenderError::TooLarge(format!(
            "a frame of {cols}×{rows} pixels is above the rendering limit of {MAX_FRAME_PIXELS} pixels per frame"
        )));
    }
    if !matches!(bits_allocated, 1 | 8 | 16) {
        return Err(RenderError::Unsupported(format!(
            "{bits_allocated} bits allocated per sample cannot be rendered (1, 8 or 16 can)"
        )));
    }
    if bits_stored == 0 || bits_stored > bits_allocated {
        return Err(RenderError::Undecodable(format!(
            "Bits Stored {bits_stored} does not fit Bits Allocated {bits_allocated}"
        )));
    }
    let photometric = match pi.as_str() {
        "MONOCHROME1" => Photometric::Monochrome1,
        "MONOCHROME2" => Photometric::Monochrome2,
        "PALETTE COLOR" => Photometric::Palette,
        "RGB" => Photometric::Rgb,
        "YBR_FULL" => Photometric::YbrFull,
        "YBR_FULL_422" => Photometric::YbrFull422,
        "YBR_PARTIAL_420" | "YBR_PARTIAL_422" | "YBR_ICT" | "YBR_RCT" => Photometric::YbrCodec,
        other => {
            return Err(RenderError::Unsupported(format!(
                "photometric interpretation {other:?} cannot be rendered"
            )));
        }
    };
    let expected_spp = match photometric {
        Photometric::Monochrome1 | Photometric::Monochrome2 | Photometric::Palette => 1,
        _ => 3,
    };
    if samples_per_pixel != expected_spp {
        return Err(RenderError::Undecodable(format!(
            "{pi} needs {expected_spp} samples per pixel, the object declares {samples_per_pixel}"
        )));
    }
    if bits_allocated == 1 && expected_spp != 1 {
        return Err(RenderError::Undecodable(format!(
            "{pi} cannot have 1 bit allocated per sample"
        )));
    }
    let transfer_syntax = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_owned();
    let ts = TransferSyntaxRegistry
        .get(&transfer_syntax)
        .ok_or_else(|| {
            RenderError::Unsupported(format!(
                "transfer syntax {transfer_syntax} is not known to this server"
            ))
        })?;
    if !ts.can_decode_all() {
        return Err(RenderError::Unsupported(format!(
            "{} pixel data cannot be decoded by this server",
            ts.name()
        )));
    }
    Ok(ImageInfo {
        rows: u32::from(rows),
        cols: u32::from(cols),
        samples_per_pixel,
        bits_allocated,
        photometric,
        frames,
        transfer_syntax_name: ts.name().to_owned(),
        transfer_syntax,
    })
}

/// Checks that the pixel data can hold what is declared (native), or that the stream of
/// the requested frame (0-based) does not decode to more than is declared (encapsulated).
pub(super) fn check_pixel_data(
    obj: &DefaultDicomObject,
    info: &ImageInfo,
    frame: u32,
) -> Result<(), RenderError> {
    let pixel_data = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| RenderError::NotAnImage("the object has no pixel data".into()))?;
    let needed_bits = info.native_frame_bits() * u128::from(info.frames);
    let needed = needed_bits.div_ceil(8);
    match pixel_data.value() {
        DicomValue::Primitive(p) => {
            let have = p.calculate_byte_len() as u128;
            if have < needed {
                return Err(RenderError::Undecodable(format!(
                    "the pixel data holds {have} bytes; {} frame(s) of {}×{} with {} sample(s) of {} bits need {needed}",
                    info.frames, info.cols, info.rows, info.samples_per_pixel, info.bits_allocated
                )));
            }
            Ok(())
        }
        DicomValue::Sequence(_) => Err(RenderError::Undecodable(
            "the pixel data is a sequence of items, not pixels".into(),
        )),
        DicomValue::PixelSequence(seq) => {
            let fragments = seq.fragments();
            if fragments.is_empty() {
                return Err(RenderError::Undecodable(
                    "the encapsulated pixel data has no fragments".into(),
                ));
            }
            let ts = info.transfer_syntax.as_str();
            let n = frame + 1;
            if ts == ENCAPSULATED_UNCOMPRESSED {
                let have: u128 = fragments.iter().map(|f| f.len() as u128).sum();
                if have < needed {
                    return Err(RenderError::Undecodable(format!(
                        "the pixel data fragments hold {have} bytes; the declared frames need {needed}"
                    )));
                }
                return Ok(());
            }
            if ts == RLE_LOSSLESS {
                // One fragment per frame (PS3.5 A.4.2).
                let fragment = fragments.get(frame as usize).ok_or_else(|| {
                    RenderError::Undecodable(format!(
                        "frame {n} has no fragment ({} fragments for {} frames)",
                        fragments.len(),
                        info.frames
                    ))
                })?;
                return check_rle_header(fragment, info, n);
            }
            let jpeg = JPEG_FAMILY.contains(&ts);
            let j2k = J2K_FAMILY.contains(&ts);
            if !jpeg && !j2k {
                return Ok(());
            }
            let Some(first) =
                first_fragment_of_frame(fragments, seq.offset_table(), info.frames, frame)
            else {
                // The decoder cannot find the frame either and says so.
                return Ok(());
            };
            let header = if jpeg {
                jpeg_header(first)
            } else {
                j2k_header(first)
            };
            let Some(h) = header else {
                return Err(RenderError::Undecodable(format!(
                    "frame {n} is not a valid {} stream",
                    info.transfer_syntax_name
                )));
            };
            let declared_bytes = u32::from(info.bits_allocated.div_ceil(8));
            if h.width > info.cols
                || h.height > info.rows
                || h.components > u32::from(info.samples_per_pixel)
                || h.precision.div_ceil(8) > declared_bytes
                || h.precision == 0
            {
                return Err(RenderError::Undecodable(format!(
                    "frame {n}: the compressed stream is {}×{} with {} component(s) of {} bits, the object declares {}×{} with {} sample(s) of {} bits",
                    h.width,
                    h.height,
                    h.components,
                    h.precision,
                    info.cols,
                    info.rows,
                    info.samples_per_pixel,
                    info.bits_allocated
                )));
            }
            if JPEG_LS.contains(&ts)
                && let Some(last) = last_fragment_of_frame(fragments, info.frames, frame)
                && !ends_with_eoi(last)
            {
                // CharLS spends seconds (about 5 s for a 128×128 frame) on a stream that
                // stops without a marker, whatever its length: refuse it up front.
                return Err(RenderError::Undecodable(format!(
                    "frame {n}: the JPEG-LS stream is truncated (no end-of-image marker)"
                )));
            }
            Ok(())
        }
    }
}

/// The fragment where frame `frame` (0-based) ends, when that is known without the
/// offset table: one fragment per frame, or a single frame.
fn last_fragment_of_frame<F: AsRef<[u8]>>(
    fragments: &[F],
    frames: u32,
    frame: u32,
) -> Option<&[u8]> {
    if fragments.len() == frames as usize {
        fragments.get(frame as usize).map(AsRef::as_ref)
    } else if frames == 1 {
        fragments.last().map(AsRef::as_ref)
    } else {
        None
    }
}

/// Whether a JPEG(-LS) stream ends with EOI (FFD9), before any zero padding (fragments
/// have an even length).
fn ends_with_eoi(data: &[u8]) -> bool {
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    data[..end].ends_with(&[0xFF, 0xD9])
}

/// The fragment where frame `frame` (0-based) starts, found the way dicom-rs's decoders
/// find it: one fragment per frame, or the Basic Offset Table.
fn first_fragment_of_frame<'a, F: AsRef<[u8]>>(
    fragments: &'a [F],
    offset_table: &[u32],
    frames: u32,
    frame: u32,
) -> Option<&'a [u8]> {
    if fragments.len() == frames as usize || fragments.len() == 1 {
        return fragments.get(frame as usize).map(AsRef::as_ref);
    }
    let start = match offset_table.get(frame as usize) {
        Some(&o) => o as u64,
        None if frame == 0 => 0,
        None => return None,
    };
    let mut offset = 0u64;
    for f in fragments {
        if offset >= start {
            return Some(f.as_ref());
        }
        offset += f.as_ref().len() as u64 + 8;
    }
    None
}

/// What a compressed stream's header says it decodes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StreamHeader {
    pub width: u32,
    pub height: u32,
    pub components: u32,
    pub precision: u32,
}

/// The frame header (SOFn, or SOF55 of JPEG-LS) of a JPEG stream, if the data starts one.
pub(super) fn jpeg_header(data: &[u8]) -> Option<StreamHeader> {
    if data.get(0..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2usize;
    loop {
        // Markers may be preceded by fill bytes 0xFF.
        if *data.get(i)? != 0xFF {
            return None;
        }
        while *data.get(i)? == 0xFF {
            i += 1;
        }
        let marker = *data.get(i)?;
        i += 1;
        match marker {
            // Markers without a length: TEM, RSTn, SOI.
            0x01 | 0xD0..=0xD8 => continue,
            // End of image or start of scan before any frame header.
            0xD9 | 0xDA | 0x00 => return None,
            _ => {}
        }
        let len = u16::from_be_bytes([*data.get(i)?, *data.get(i + 1)?]) as usize;
        if len < 2 {
            return None;
        }
        let is_sof = matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xF7);
        if is_sof {
            let seg = data.get(i + 2..i + len)?;
            if seg.len() < 6 {
                return None;
            }
            return Some(StreamHeader {
                precision: u32::from(seg[0]),
                height: u32::from(u16::from_be_bytes([seg[1], seg[2]])),
                width: u32::from(u16::from_be_bytes([seg[3], seg[4]])),
                components: u32::from(seg[5]),
            });
        }
        i += len;
    }
}

/// The SIZ segment of a JPEG 2000 codestream (or of the codestream in a JP2 file).
pub(super) fn j2k_header(data: &[u8]) -> Option<StreamHeader> {
    const SOC_SIZ: [u8; 4] = [0xFF, 0x4F, 0xFF, 0x51];
    const JP2_SIGNATURE: [u8; 12] = [
        0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20, 0x0D, 0x0A, 0x87, 0x0A,
    ];
    let start = if data.get(0..4)? == SOC_SIZ {
        0
    } else if data.get(0..12)? == JP2_SIGNATURE {
        // The codestream box follows a few small header boxes.
        let window = &data[..data.len().min(64 * 1024)];
        window.windows(4).position(|w| w == SOC_SIZ)?
    } else {
        return None;
    };
    let siz = data.get(start + 4..)?;
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_be_bytes(siz.get(o..o + 4)?.try_into().ok()?)) };
    // Lsiz(2) Rsiz(2) Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz (4 each) Csiz(2)
    let (xsiz, ysiz, xo, yo) = (u32_at(4)?, u32_at(8)?, u32_at(12)?, u32_at(16)?);
    let csiz = u16::from_be_bytes(siz.get(36..38)?.try_into().ok()?);
    if csiz == 0 || xsiz <= xo || ysiz <= yo {
        return None;
    }
    let mut precision = 0;
    for c in 0..usize::from(csiz) {
        let ssiz = *siz.get(38 + 3 * c)?;
        precision = precision.max(u32::from(ssiz & 0x7F) + 1);
    }
    Some(StreamHeader {
        width: xsiz - xo,
        height: ysiz - yo,
        components: u32::from(csiz),
        precision,
    })
}

/// The 64-byte RLE header (PS3.5 G.5): as many segments as bytes per pixel, offsets
/// increasing, inside the fragment. dicom-rs indexes the fragment with these unchecked.
fn check_rle_header(fragment: &[u8], info: &ImageInfo, n: u32) -> Result<(), RenderError> {
    let bad = |why: &str| RenderError::Undecodable(format!("frame {n}: invalid RLE data ({why})"));
    if fragment.len() < 64 {
        return Err(bad("shorter than its 64-byte header"));
    }
    let word =
        |i: usize| u32::from_le_bytes(fragment[4 * i..4 * i + 4].try_into().unwrap_or([0; 4]));
    let segments = word(0);
    let expected = u32::from(info.samples_per_pixel) * u32::from(info.bits_allocated.div_ceil(8));
    if info.bits_allocated == 1 || segments != expected {
        return Err(bad(&format!(
            "{segments} segments where the image needs {expected}"
        )));
    }
    let mut previous = 64u32;
    for s in 0..segments as usize {
        let offset = word(1 + s);
        if offset < previous || offset as usize >= fragment.len() {
            return Err(bad("segment offsets out of order or outside the fragment"));
        }
        previous = offset;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_frame_header_is_found_after_other_segments() {
        // SOI, APP0 (len 4), fill byte, SOF0: P=8, Y=64, X=32, Nf=3
        let data = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xFF, 0xC0, 0x00, 0x11, 8, 0, 64,
            0, 32, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1,
        ];
        assert_eq!(
            jpeg_header(&data),
            Some(StreamHeader {
                width: 32,
                height: 64,
                components: 3,
                precision: 8
            })
        );
        // JPEG-LS SOF55
        let ls = [
            0xFF, 0xD8, 0xFF, 0xF7, 0x00, 0x0B, 12, 1, 0, 2, 0, 1, 1, 0x11, 0,
        ];
        assert_eq!(
            jpeg_header(&ls).map(|h| (h.width, h.height)),
            Some((512, 256))
        );
    }

    #[test]
    fn garbage_is_no_jpeg_header() {
        assert_eq!(jpeg_header(&[]), None);
        assert_eq!(jpeg_header(&[0xFF, 0xD8]), None);
        assert_eq!(jpeg_header(&[0x12, 0x34, 0x56]), None);
        assert_eq!(jpeg_header(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x08]), None);
        // A segment length running past the end.
        assert_eq!(
            jpeg_header(&[0xFF, 0xD8, 0xFF, 0xC0, 0xFF, 0xFF, 8, 0]),
            None
        );
        assert_eq!(j2k_header(&[0xFF, 0x4F, 0xFF, 0x51, 0, 0]), None);
    }

    #[test]
    fn end_of_image_may_be_followed_by_padding() {
        assert!(ends_with_eoi(&[1, 2, 0xFF, 0xD9]));
        assert!(ends_with_eoi(&[1, 0xFF, 0xD9, 0]));
        assert!(!ends_with_eoi(&[1, 2, 3, 4]));
        assert!(!ends_with_eoi(&[0, 0]));
        assert!(!ends_with_eoi(&[]));
    }

    #[test]
    fn j2k_siz_is_read() {
        let mut siz = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00];
        for v in [300u32, 200, 44, 0, 300, 200, 0, 0] {
            siz.extend_from_slice(&v.to_be_bytes());
        }
        siz.extend_from_slice(&1u16.to_be_bytes());
        siz.extend_from_slice(&[11, 1, 1]);
        assert_eq!(
            j2k_header(&siz),
            Some(StreamHeader {
                width: 256,
                height: 200,
                components: 1,
                precision: 12
            })
        );
    }

    #[test]
    fn frame_fragments_follow_the_offset_table() {
        let fragments: Vec<Vec<u8>> = vec![vec![1; 10], vec![2; 6], vec![3; 4]];
        // Two frames: the first in fragments 0 and 1 (18 + 14 bytes), the second in 2.
        assert_eq!(
            first_fragment_of_frame(&fragments, &[0, 32], 2, 1),
            Some(&[3u8; 4][..])
        );
        assert_eq!(
            first_fragment_of_frame(&fragments, &[0, 32], 2, 0),
            Some(&[1u8; 10][..])
        );
        assert_eq!(first_fragment_of_frame(&fragments, &[], 2, 1), None);
        assert_eq!(
            first_fragment_of_frame(&fragments, &[], 3, 2),
            Some(&[3u8; 4][..])
        );
    }
}
