//! The color cases dicom-pixeldata 0.10.1 does not render right: PALETTE COLOR (it would
//! show the indices as gray levels), native YBR_FULL_422 (it assumes three samples per
//! pixel), native YBR_FULL (its YCbCr to RGB conversion adds the Cb term to green instead
//! of subtracting it: green is off by up to ~90 levels) and RLE-compressed YBR_FULL (the
//! RLE codec does not convert, yet the decoded data is labelled RGB).

use dicom_core::{PrimitiveValue, Tag};
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{DecodedPixelData, PixelRepresentation, PlanarConfiguration};
use image::RgbImage;

use super::RenderError;
use super::guard::ImageInfo;

/// YCbCr (full range, PS3.3 C.7.6.3.1.2) to RGB, in place, on interleaved triplets.
pub(super) fn ycbcr_full_to_rgb(samples: &mut [u8]) {
    for px in samples.chunks_exact_mut(3) {
        let y = f32::from(px[0]);
        let cb = f32::from(px[1]) - 128.0;
        let cr = f32::from(px[2]) - 128.0;
        let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        px[0] = clamp(y + 1.402 * cr);
        px[1] = clamp(y - 0.344_136 * cb - 0.714_136 * cr);
        px[2] = clamp(y + 1.772 * cb);
    }
}

/// One frame (0-based) of native YBR_FULL_422: each pair of pixels in a row is stored as
/// Y1 Y2 Cb Cr (PS3.3 C.7.6.3.1.2, PS3.5 8.2.1).
pub(super) fn native_ybr422_to_rgb(
    obj: &DefaultDicomObject,
    info: &ImageInfo,
    frame: u32,
) -> Result<RgbImage, RenderError> {
    if info.bits_allocated != 8 {
        return Err(RenderError::Unsupported(
            "native YBR_FULL_422 with more than 8 bits per sample cannot be rendered".into(),
        ));
    }
    if !info.cols.is_multiple_of(2) {
        return Err(RenderError::Undecodable(
            "YBR_FULL_422 needs an even number of columns".into(),
        ));
    }
    let data = obj
        .get(tags::PIXEL_DATA)
        .and_then(|e| e.to_bytes().ok())
        .ok_or_else(|| RenderError::Undecodable("the pixel data cannot be read".into()))?;
    let frame_len = info.rows as usize * info.cols as usize * 2;
    let start = frame as usize * frame_len;
    let src = data
        .get(start..start + frame_len)
        .ok_or_else(|| RenderError::Undecodable(format!("frame {} is cut short", frame + 1)))?;
    let mut rgb = Vec::with_capacity(frame_len / 2 * 3);
    for quad in src.chunks_exact(4) {
        let (y1, y2, cb, cr) = (quad[0], quad[1], quad[2], quad[3]);
        rgb.extend_from_slice(&[y1, cb, cr, y2, cb, cr]);
    }
    ycbcr_full_to_rgb(&mut rgb);
    RgbImage::from_raw(info.cols, info.rows, rgb)
        .ok_or_else(|| RenderError::Internal("YBR_FULL_422 buffer size".into()))
}

/// One decoded frame of native YBR_FULL (8 bits, either planar configuration) as RGB.
pub(super) fn native_ybr_full_to_rgb(
    decoded: &DecodedPixelData<'_>,
    info: &ImageInfo,
) -> Result<RgbImage, RenderError> {
    if info.bits_allocated != 8 {
        return Err(RenderError::Unsupported(
            "native YBR_FULL with more than 8 bits per sample cannot be rendered".into(),
        ));
    }
    let pixels = info.rows as usize * info.cols as usize;
    let data = decoded
        .frame_data(0)
        .ok()
        .and_then(|d| d.get(..pixels * 3))
        .ok_or_else(|| RenderError::Undecodable("the YBR_FULL frame is cut short".into()))?;
    let mut samples = match decoded.planar_configuration() {
        PlanarConfiguration::Standard => data.to_vec(),
        // Planar: all Y, then all Cb, then all Cr.
        PlanarConfiguration::PixelFirst => (0..pixels)
            .flat_map(|i| [data[i], data[pixels + i], data[2 * pixels + i]])
            .collect(),
    };
    ycbcr_full_to_rgb(&mut samples);
    RgbImage::from_raw(info.cols, info.rows, samples)
        .ok_or_else(|| RenderError::Internal("YBR_FULL buffer size".into()))
}

/// One palette lookup table: descriptor and data, as 8-bit output values.
struct Lut {
    first_mapped: i64,
    entries: Vec<u8>,
}

impl Lut {
    fn read(
        obj: &DefaultDicomObject,
        descriptor: Tag,
        data: Tag,
        segmented: Tag,
        color: &str,
        signed: bool,
    ) -> Result<Lut, RenderError> {
        let bad =
            |why: &str| RenderError::Undecodable(format!("the {color} palette lookup table {why}"));
        let Some(data_elem) = obj.get(data) else {
            if obj.get(segmented).is_some() {
                return Err(RenderError::Unsupported(
                    "segmented palette color lookup tables cannot be rendered".into(),
                ));
            }
            return Err(bad("is missing"));
        };
        let desc = obj
            .get(descriptor)
            .and_then(|e| e.to_multi_int::<i64>().ok())
            .filter(|d| d.len() == 3)
            .ok_or_else(|| bad("descriptor is missing or malformed"))?;
        let count = match desc[0] {
            0 => 65536,
            n @ 1..=65535 => n as usize,
            _ => return Err(bad("descriptor has an invalid number of entries")),
        };
        // The first mapped value is US or SS: with signed pixels, a US value above 32767
        // is a negative number.
        let first_mapped = if signed && desc[1] > 32767 {
            desc[1] - 65536
        } else {
            desc[1]
        };
        let bits = desc[2];
        if bits != 8 && bits != 16 {
            return Err(bad("descriptor has entries of neither 8 nor 16 bits"));
        }
        let words: Vec<u16> = match data_elem.value().primitive() {
            Some(PrimitiveValue::U16(v)) => v.to_vec(),
            Some(PrimitiveValue::I16(v)) => v.iter().map(|&x| x as u16).collect(),
            Some(PrimitiveValue::U8(v)) => v
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect(),
            _ => return Err(bad("data is not a list of 16-bit words")),
        };
        let entries: Vec<u8> = if words.len() >= count {
            let words = &words[..count];
            if bits == 16 || words.iter().any(|&w| w > 255) {
                words.iter().map(|&w| (w >> 8) as u8).collect()
            } else {
                words.iter().map(|&w| w as u8).collect()
            }
        } else if bits == 8 && words.len() * 2 >= count {
            // Two 8-bit entries packed in each word.
            words
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .take(count)
                .collect()
        } else {
            return Err(bad("data is shorter than its descriptor says"));
        };
        Ok(Lut {
            first_mapped,
            entries,
        })
    }

    fn map(&self, value: i64) -> u8 {
        let last = self.entries.len() as i64 - 1;
        let i = (value - self.first_mapped).clamp(0, last);
        self.entries[i as usize]
    }
}

/// PALETTE COLOR: each stored value indexes the red, green and blue tables (PS3.3 C.7.6.3.1.5).
pub(super) fn palette_to_rgb(
    obj: &DefaultDicomObject,
    decoded: &DecodedPixelData<'_>,
    info: &ImageInfo,
) -> Result<RgbImage, RenderError> {
    let signed = decoded.pixel_representation() == PixelRepresentation::Signed;
    let red = Lut::read(
        obj,
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        "red",
        signed,
    )?;
    let green = Lut::read(
        obj,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        "green",
        signed,
    )?;
    let blue = Lut::read(
        obj,
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        "blue",
        signed,
    )?;
    let data = decoded
        .frame_data(0)
        .map_err(|_| RenderError::Undecodable("the palette indices are cut short".into()))?;
    let pixels = info.rows as usize * info.cols as usize;
    let values: Vec<i64> = match info.bits_allocated {
        8 if signed => data.iter().map(|&b| i64::from(b as i8)).collect(),
        8 => data.iter().map(|&b| i64::from(b)).collect(),
        16 => data
            .chunks_exact(2)
            .map(|b| {
                let v = u16::from_ne_bytes([b[0], b[1]]);
                if signed {
                    i64::from(v as i16)
                } else {
                    i64::from(v)
                }
            })
            .collect(),
        other => {
            return Err(RenderError::Unsupported(format!(
                "PALETTE COLOR with {other} bits allocated cannot be rendered"
            )));
        }
    };
    if values.len() < pixels {
        return Err(RenderError::Undecodable(
            "the palette indices are cut short".into(),
        ));
    }
    let mut rgb = Vec::with_capacity(pixels * 3);
    for &v in &values[..pixels] {
        rgb.extend_from_slice(&[red.map(v), green.map(v), blue.map(v)]);
    }
    RgbImage::from_raw(info.cols, info.rows, rgb)
        .ok_or_else(|| RenderError::Internal("palette buffer size".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ycbcr_gray_and_primaries() {
        let mut px = [128, 128, 128, 255, 128, 128, 76, 85, 255];
        ycbcr_full_to_rgb(&mut px);
        assert_eq!(&px[..6], &[128, 128, 128, 255, 255, 255]);
        // Y=76, Cb=85, Cr=255 is (about) pure red.
        assert!(px[6] >= 250 && px[7] <= 3 && px[8] <= 3, "{px:?}");
    }
}
