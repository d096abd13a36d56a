//! Rendering a frame of a stored DICOM object as a JPEG or PNG picture: the library behind
//! WADO-RS `/rendered` and `/thumbnail` (PS3.18 8.3.5, 10.4) and the viewer's frames.
//!
//! [`render`] takes the whole Part 10 object and [`RenderParams`] (from
//! [`RenderParams::from_query`]) and gives [`Rendered`] bytes with their media type;
//! [`thumbnail`] renders the middle frame into a small square. Failures are
//! [`RenderError`]s, each with an HTTP status ([`RenderError::status`]) and a reason safe to
//! show ([`RenderError::reason`]); nothing here panics on hostile input.
//!
//! # Pipeline
//!
//! 1. **Open** ([`guard::open`]): the archive's header scanner checks the whole data set's
//!    structure first (no length in it is trusted for an allocation), then dicom-object
//!    parses it from memory.
//! 2. **Refuse before decoding** ([`guard::image_info`], [`guard::check_pixel_data`]): no
//!    Pixel Data → [`RenderError::NotAnImage`]; more than [`MAX_FRAME_PIXELS`] per frame →
//!    [`RenderError::TooLarge`]; native pixel data shorter than Rows × Columns × samples ×
//!    bits × frames → [`RenderError::Undecodable`]; a compressed frame whose own header
//!    (JPEG SOF, JPEG-LS SOF55, JPEG 2000 SIZ, RLE header) decodes to more than the object
//!    declares → [`RenderError::Undecodable`]. dicom-rs sizes buffers from these values and
//!    indexes into them unchecked, so a lie would be an allocation bomb or a panic. A
//!    JPEG-LS frame must also end with its end-of-image marker: CharLS spends seconds on a
//!    stream that just stops.
//! 3. **Decode one frame** with dicom-pixeldata (`decode_pixel_data_frame`), under
//!    [`std::panic::catch_unwind`]: its codecs (jpeg-decoder, CharLS, the OpenJPEG port,
//!    its own RLE reader) still slice unchecked on malformed streams (a RLE segment that
//!    decodes short, a JPEG 2000 stream with more components than declared). A panic there
//!    is a property of the data, not a server fault: it becomes
//!    [`RenderError::Undecodable`], logged at error level. (The release profile unwinds;
//!    `panic = "abort"` would defeat this.)
//! 4. **Grayscale**: `to_dynamic_image_with_options`, always forced to 8 bits: modality LUT
//!    (Rescale Slope/Intercept), then the explicit `window` of the request if any
//!    ([`Window`], in modality units — HU for CT), else the object's first VOI LUT or first
//!    Window Center/Width (per frame for enhanced multi-frame objects), else a min-max
//!    window over the frame. MONOCHROME1 is inverted so that it looks as it should.
//!    **Color**: RGB and the YBR_* of JPEG-family streams (converted by their codecs) by
//!    dicom-pixeldata; PALETTE COLOR, native YBR_FULL and YBR_FULL_422, and RLE YBR_FULL by
//!    [`color`] (dicom-pixeldata gets each of these wrong, see there). A `window` is
//!    ignored for color.
//! 5. **Viewport** (source region, flips, then scaled down to fit with a triangle filter,
//!    keeping the aspect ratio, never up), optional inversion, then JPEG (`image`'s
//!    baseline encoder) or PNG.
//!
//! # HTTP statuses ([`RenderError::status`])
//!
//! | error | status | why |
//! |---|---|---|
//! | `BadRequest` | 400 | a parameter that does not parse |
//! | `NotFound` | 404 | frame beyond Number of Frames ("frame 7 of 5") |
//! | `NotAcceptable` | 406 | no requested media type is JPEG or PNG |
//! | `NotAnImage` | 406 | encapsulated PDF, SR and other objects without Pixel Data: PS3.18 lists their rendered media types as text or PDF, never images, so a request for an image has no acceptable representation |
//! | `Undecodable`, `TooLarge` | 422 | the stored object itself cannot be rendered (corrupt, truncated, or over the limits). A permanent property of the data: a 4xx tells clients not to retry, and that the server is not broken |
//! | `Unsupported` | 501 | a valid object this server cannot render (unknown transfer syntax, 32-bit or float pixels, segmented palettes) |
//! | `Internal` | 500 | encoder failures; the reason shown is generic |
//!
//! # Limits
//!
//! - [`MAX_FRAME_PIXELS`]: 64 Mi pixels (8192 × 8192) per frame. Mammography, the largest
//!   single frames in practice, is about 4096 × 3328; whole-slide images are tiled into
//!   small frames. The decoded frame then takes at most 384 MiB (three 16-bit samples).
//! - [`MAX_INFLATED_BYTES`]: a deflated data set inflates to at most 1 GiB.
//! - Memory per call is about twice the object (the bytes and their parsed copy) plus one
//!   decoded frame and its 8-bit picture. The object is parsed anew on every call: callers
//!   that render many frames of one object should cache the rendered results.
//! - Rendering is CPU-bound and synchronous (a 512×512 CT frame takes a few milliseconds
//!   in release builds): HTTP handlers run it in `tokio::task::spawn_blocking`, with a
//!   bound on how many run at once.
//! - Data sets dicom-object cannot parse (a UN element of undefined length, CP-246, which
//!   the header scanner accepts) are `Undecodable`.

mod color;
mod guard;
mod params;

use std::panic::AssertUnwindSafe;

use axum::http::StatusCode;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutFunction, VoiLutOption, WindowLevel};
use image::{DynamicImage, ImageEncoder};

use crate::error::ApiError;
use guard::{ImageInfo, Photometric};
pub use params::{
    DEFAULT_JPEG_QUALITY, MediaType, OutputFormat, Region, RenderParams, Viewport, Window,
    WindowFunction, parse_frame_number,
};

/// Largest frame that is rendered: 64 Mi pixels (8192 × 8192).
pub const MAX_FRAME_PIXELS: u64 = 64 * 1024 * 1024;
/// Largest inflated size of a deflated data set: 1 GiB.
pub const MAX_INFLATED_BYTES: u64 = 1 << 30;
/// JPEG quality of thumbnails.
pub const THUMBNAIL_QUALITY: u8 = 80;
/// Largest thumbnail edge.
pub const MAX_THUMBNAIL_SIZE: u32 = 1024;

/// A rendered frame.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub media_type: MediaType,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Why a frame was not rendered. See the module documentation for the statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not acceptable: {0}")]
    NotAcceptable(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("not an image: {0}")]
    NotAnImage(String),
    #[error("cannot be rendered: {0}")]
    Undecodable(String),
    #[error("too large to render: {0}")]
    TooLarge(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("internal rendering error: {0}")]
    Internal(String),
}

impl RenderError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            RenderError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RenderError::NotAcceptable(_) | RenderError::NotAnImage(_) => {
                StatusCode::NOT_ACCEPTABLE
            }
            RenderError::NotFound(_) => StatusCode::NOT_FOUND,
            RenderError::Undecodable(_) | RenderError::TooLarge(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            RenderError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            RenderError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A reason safe to show to the caller: what is wrong with the request or the object,
    /// never the server's internals (those are only in [`Internal`](Self::Internal)'s
    /// message, for the log).
    pub fn reason(&self) -> String {
        match self {
            RenderError::Internal(_) => "internal error while rendering".to_owned(),
            other => other.to_string(),
        }
    }
}

/// One error answer for the HTTP routes; internal details go to the log only.
impl From<RenderError> for ApiError {
    fn from(e: RenderError) -> Self {
        match &e {
            RenderError::Internal(detail) => ApiError::internal("rendering failed", detail),
            other => ApiError::new(other.status(), other.reason()),
        }
    }
}

/// Renders frame `params.frame` of a whole Part 10 object.
pub fn render(object: &[u8], params: &RenderParams) -> Result<Rendered, RenderError> {
    if params.frame == 0 {
        return Err(RenderError::BadRequest("frame numbers start at 1".into()));
    }
    let image = render_frame(object, FrameChoice::Number(params.frame), params.window)?;
    let image = apply_viewport(image, params.viewport.as_ref())?;
    let image = if params.invert {
        let mut image = image;
        image.invert();
        image
    } else {
        image
    };
    encode(&image, params.format)
}

/// A JPEG thumbnail of the middle frame (the first of a single-frame image) that fits in
/// `size`×`size`, in the object's own window.
pub fn thumbnail(object: &[u8], size: u32) -> Result<Rendered, RenderError> {
    if !(1..=MAX_THUMBNAIL_SIZE).contains(&size) {
        return Err(RenderError::BadRequest(format!(
            "thumbnail size must be from 1 to {MAX_THUMBNAIL_SIZE} pixels, got {size}"
        )));
    }
    let image = render_frame(object, FrameChoice::Middle, None)?;
    let viewport = Viewport {
        width: size,
        height: size,
        region: None,
    };
    let image = apply_viewport(image, Some(&viewport))?;
    encode(
        &image,
        OutputFormat::Jpeg {
            quality: THUMBNAIL_QUALITY,
        },
    )
}

/// The most pixel data bytes [`decompress_to_explicit_le`] produces for one object.
pub const MAX_DECOMPRESSED_BYTES: u128 = 1 << 30;

/// The whole object with its pixel data decoded and re-encoded in Explicit VR Little
/// Endian (WADO-RS's default transfer syntax), for clients that cannot decode the stored
/// compression. The same checks as rendering run on every frame first, and the decoders
/// run under `catch_unwind`. RLE with a YBR photometric interpretation is refused
/// ([`RenderError::Unsupported`]): dicom-pixeldata 0.10 labels it RGB without converting
/// it (see `color.rs`), which would be a wrong picture, not an error.
pub fn decompress_to_explicit_le(object: &[u8]) -> Result<Vec<u8>, RenderError> {
    use dicom_pixeldata::Transcode;
    let mut obj = guard::open(object)?;
    let info = guard::image_info(&obj)?;
    if info.transfer_syntax == "1.2.840.10008.1.2.5"
        && matches!(
            info.photometric,
            Photometric::YbrFull | Photometric::YbrFull422
        )
    {
        return Err(RenderError::Unsupported(
            "RLE with YBR colour cannot be decoded correctly here: ask for the stored syntax"
                .into(),
        ));
    }
    let total = info.native_frame_bits() / 8 * u128::from(info.frames);
    if total > MAX_DECOMPRESSED_BYTES {
        return Err(RenderError::TooLarge(format!(
            "the decoded pixel data would be {total} bytes (at most {MAX_DECOMPRESSED_BYTES})"
        )));
    }
    for index in 0..info.frames {
        guard::check_pixel_data(&obj, &info, index)?;
    }
    no_panic(1, move || {
        obj.transcode(&dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased())
            .map_err(|e| RenderError::Undecodable(format!("cannot decode the pixel data: {e}")))?;
        let mut out = Vec::new();
        obj.write_all(&mut out)
            .map_err(|e| RenderError::Internal(format!("cannot write the decoded object: {e}")))?;
        Ok(out)
    })
}

/// Frame `frame` (1-based) decoded to its uncompressed bytes (little endian, colour as
/// RGB), for WADO-RS frames asked as `application/octet-stream` of a compressed instance.
/// The rendering's checks run first and the decoder runs under `catch_unwind`; RLE with
/// YBR colour is refused as in [`decompress_to_explicit_le`].
pub fn decode_frame_native(object: &[u8], frame: u32) -> Result<Vec<u8>, RenderError> {
    use dicom_pixeldata::PixelDecoder as _;
    let obj = guard::open(object)?;
    let info = guard::image_info(&obj)?;
    if frame == 0 || frame > info.frames {
        return Err(RenderError::NotFound(format!(
            "frame {frame} of {}",
            info.frames
        )));
    }
    if info.transfer_syntax == "1.2.840.10008.1.2.5"
        && matches!(
            info.photometric,
            Photometric::YbrFull | Photometric::YbrFull422
        )
    {
        return Err(RenderError::Unsupported(
            "RLE with YBR colour cannot be decoded correctly here: ask for the stored syntax"
                .into(),
        ));
    }
    let index = frame - 1;
    guard::check_pixel_data(&obj, &info, index)?;
    no_panic(frame, || {
        let decoded = obj
            .decode_pixel_data_frame(index)
            .map_err(|e| RenderError::Undecodable(format!("frame {frame}: {e}")))?;
        Ok(decoded.data().to_vec())
    })
}

#[derive(Debug, Clone, Copy)]
enum FrameChoice {
    /// 1-based.
    Number(u32),
    Middle,
}

/// Opens, checks and decodes one frame into an 8-bit grayscale or RGB picture.
fn render_frame(
    object: &[u8],
    choice: FrameChoice,
    window: Option<Window>,
) -> Result<DynamicImage, RenderError> {
    let obj = guard::open(object)?;
    let info = guard::image_info(&obj)?;
    let n = match choice {
        FrameChoice::Number(n) => n,
        FrameChoice::Middle => info.frames.div_ceil(2),
    };
    if n > info.frames {
        return Err(RenderError::NotFound(format!(
            "frame {n} of {}",
            info.frames
        )));
    }
    let index = n - 1;
    guard::check_pixel_data(&obj, &info, index)?;
    no_panic(n, || decode_frame(&obj, &info, index, window))
}

/// Runs a decoder that may panic on malformed data; see the module documentation.
fn no_panic<T>(frame: u32, f: impl FnOnce() -> Result<T, RenderError>) -> Result<T, RenderError> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            tracing::error!(panic = %message, frame, "render: a pixel data decoder panicked on malformed data");
            Err(RenderError::Undecodable(format!(
                "frame {frame}: the pixel data is malformed"
            )))
        }
    }
}

fn decode_frame(
    obj: &DefaultDicomObject,
    info: &ImageInfo,
    index: u32,
    window: Option<Window>,
) -> Result<DynamicImage, RenderError> {
    let n = index + 1;
    let encapsulated = matches!(
        obj.get(dicom_dictionary_std::tags::PIXEL_DATA)
            .map(|e| e.value()),
        Some(dicom_core::DicomValue::PixelSequence(_))
    );
    if info.photometric == Photometric::YbrFull422 && !encapsulated {
        return color::native_ybr422_to_rgb(obj, info, index).map(DynamicImage::ImageRgb8);
    }
    let decoded = obj.decode_pixel_data_frame(index).map_err(|e| {
        tracing::warn!(error = %e, frame = n, transfer_syntax = %info.transfer_syntax, "render: cannot decode a frame");
        RenderError::Undecodable(format!(
            "frame {n} could not be decoded ({})",
            info.transfer_syntax_name
        ))
    })?;
    if info.photometric == Photometric::Palette {
        return color::palette_to_rgb(obj, &decoded, info).map(DynamicImage::ImageRgb8);
    }
    if info.photometric == Photometric::YbrFull && !encapsulated {
        return color::native_ybr_full_to_rgb(&decoded, info).map(DynamicImage::ImageRgb8);
    }
    let voi = match window {
        Some(w) => VoiLutOption::CustomWithFunction(
            WindowLevel {
                center: w.center,
                width: w.width,
            },
            match w.function {
                WindowFunction::Linear => VoiLutFunction::Linear,
                WindowFunction::LinearExact => VoiLutFunction::LinearExact,
                WindowFunction::Sigmoid => VoiLutFunction::Sigmoid,
            },
        ),
        None => VoiLutOption::Default,
    };
    let options = ConvertOptions::new().with_voi_lut(voi).force_8bit();
    let image = decoded
        .to_dynamic_image_with_options(0, &options)
        .map_err(|e| {
            tracing::warn!(error = %e, frame = n, "render: cannot convert a decoded frame");
            RenderError::Undecodable(format!("frame {n} could not be converted to a picture"))
        })?;
    let image = match image {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => image,
        other if info.samples_per_pixel == 1 => DynamicImage::ImageLuma8(other.into_luma8()),
        other => DynamicImage::ImageRgb8(other.into_rgb8()),
    };
    let rle_ybr =
        info.transfer_syntax == "1.2.840.10008.1.2.5" && info.photometric == Photometric::YbrFull;
    match image {
        DynamicImage::ImageRgb8(mut rgb) if rle_ybr => {
            color::ycbcr_full_to_rgb(&mut rgb);
            Ok(DynamicImage::ImageRgb8(rgb))
        }
        image => Ok(image),
    }
}

/// Region, flips, then scale down to fit the viewport (never up).
fn apply_viewport(
    image: DynamicImage,
    viewport: Option<&Viewport>,
) -> Result<DynamicImage, RenderError> {
    let Some(vp) = viewport else {
        return Ok(image);
    };
    let mut image = image;
    if let Some(region) = vp.region {
        let (w, h) = (image.width(), image.height());
        if region.x >= w || region.y >= h {
            return Err(RenderError::BadRequest(format!(
                "the viewport region starts at ({}, {}), outside the {w}×{h} frame",
                region.x, region.y
            )));
        }
        let extent = |requested: Option<i64>, room: u32| -> u32 {
            match requested {
                None => room,
                Some(v) => (v.unsigned_abs().min(u64::from(room))) as u32,
            }
        };
        let cw = extent(region.width, w - region.x);
        let ch = extent(region.height, h - region.y);
        image = image.crop_imm(region.x, region.y, cw, ch);
        if region.width.is_some_and(|v| v < 0) {
            image = image.fliph();
        }
        if region.height.is_some_and(|v| v < 0) {
            image = image.flipv();
        }
    }
    let (w, h) = (image.width(), image.height());
    let (nw, nh) = fit(w, h, vp.width, vp.height);
    if (nw, nh) != (w, h) {
        image = image.resize_exact(nw, nh, image::imageops::FilterType::Triangle);
    }
    Ok(image)
}

/// The size of a `w`×`h` picture scaled down to fit `max_w`×`max_h`, aspect kept.
fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if w <= max_w && h <= max_h {
        return (w, h);
    }
    let scale = f64::min(
        f64::from(max_w) / f64::from(w),
        f64::from(max_h) / f64::from(h),
    );
    let nw = ((f64::from(w) * scale).round() as u32).clamp(1, max_w);
    let nh = ((f64::from(h) * scale).round() as u32).clamp(1, max_h);
    (nw, nh)
}

fn encode(image: &DynamicImage, format: OutputFormat) -> Result<Rendered, RenderError> {
    let (width, height) = (image.width(), image.height());
    let color = match image {
        DynamicImage::ImageLuma8(_) => image::ExtendedColorType::L8,
        DynamicImage::ImageRgb8(_) => image::ExtendedColorType::Rgb8,
        other => {
            return Err(RenderError::Internal(format!(
                "unexpected picture type {:?}",
                other.color()
            )));
        }
    };
    let mut bytes = Vec::with_capacity((width as usize * height as usize) / 4 + 1024);
    let result = match format {
        OutputFormat::Jpeg { quality } => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100))
                .write_image(image.as_bytes(), width, height, color)
        }
        OutputFormat::Png => image::codecs::png::PngEncoder::new(&mut bytes).write_image(
            image.as_bytes(),
            width,
            height,
            color,
        ),
    };
    result.map_err(|e| RenderError::Internal(format!("encoding {format:?}: {e}")))?;
    Ok(Rendered {
        media_type: format.media_type(),
        bytes,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_scales_down_keeping_the_aspect_and_never_up() {
        assert_eq!(fit(512, 512, 1024, 1024), (512, 512));
        assert_eq!(fit(512, 512, 128, 128), (128, 128));
        assert_eq!(fit(512, 256, 128, 128), (128, 64));
        assert_eq!(fit(256, 512, 128, 100), (50, 100));
        assert_eq!(fit(10000, 1, 10, 10), (10, 1));
    }

    #[test]
    fn statuses_and_reasons() {
        let cases = [
            (RenderError::BadRequest("x".into()), 400),
            (RenderError::NotAcceptable("x".into()), 406),
            (RenderError::NotAnImage("x".into()), 406),
            (RenderError::NotFound("frame 7 of 5".into()), 404),
            (RenderError::Undecodable("x".into()), 422),
            (RenderError::TooLarge("x".into()), 422),
            (RenderError::Unsupported("x".into()), 501),
            (RenderError::Internal("x".into()), 500),
        ];
        for (e, status) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
        }
        let internal = RenderError::Internal("encoder said /tmp/secret".into());
        assert!(!internal.reason().contains("secret"));
        assert_eq!(
            RenderError::NotFound("frame 7 of 5".into()).reason(),
            "not found: frame 7 of 5"
        );
        let api: ApiError = RenderError::NotFound("frame 7 of 5".into()).into();
        assert_eq!(api.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_panicking_decoder_is_an_error() {
        let result: Result<(), RenderError> = no_panic(3, || panic!("index out of bounds"));
        assert_eq!(
            result,
            Err(RenderError::Undecodable(
                "frame 3: the pixel data is malformed".into()
            ))
        );
    }
}
