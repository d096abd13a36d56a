//! Small, dependency-free encoders for the encapsulated transfer syntaxes that the
//! generator writes itself (RLE Lossless, JPEG Lossless SV1, JPEG-LS lossless), plus a
//! thin wrapper over `jpeg-encoder` for 8-bit baseline JPEG.
//!
//! All encoders are deterministic: the same input gives the same bytes.

pub mod jpeg_lossless;
pub mod jpegls;
pub mod rle;

pub use jpeg_lossless::encode_jpeg_lossless_sv1;
pub use jpegls::encode_jpegls_lossless;
pub use rle::encode_rle_frame;

/// Encode one 8-bit frame (grayscale: 1 sample per pixel, or interleaved RGB: 3) as a
/// baseline JPEG (ISO 10918-1 process 1). RGB input is stored as YCbCr 4:2:2, i.e.
/// DICOM Photometric Interpretation `YBR_FULL_422`.
pub fn encode_jpeg_baseline(
    pixels: &[u8],
    rows: u16,
    cols: u16,
    samples_per_pixel: u16,
    quality: u8,
) -> anyhow::Result<Vec<u8>> {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, quality);
    let color = match samples_per_pixel {
        1 => ColorType::Luma,
        3 => {
            enc.set_sampling_factor(SamplingFactor::F_2_1);
            ColorType::Rgb
        }
        n => anyhow::bail!("baseline JPEG: unsupported samples per pixel {n}"),
    };
    anyhow::ensure!(
        pixels.len() == rows as usize * cols as usize * samples_per_pixel as usize,
        "baseline JPEG: pixel buffer has the wrong size"
    );
    enc.encode(pixels, cols, rows, color)?;
    Ok(out)
}

/// Pad an encapsulated fragment to an even length (trailing 0x00, which JPEG-family
/// decoders ignore after the EOI marker).
pub(crate) fn pad_even(mut v: Vec<u8>) -> Vec<u8> {
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}
