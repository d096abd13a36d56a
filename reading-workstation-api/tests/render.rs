//! Rendering the committed sample set (`sample-dicom/files/`) and hostile variants of it.
//!
//! What a user notices: every image sample renders at its size in both media types, a
//! window changes what is shown, MONOCHROME1 is shown inverted, rescale is honoured, cine
//! frames differ, the viewport scales down; and broken objects are errors, not crashes.

use std::path::PathBuf;

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, DicomValue, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_object::file::ReadPreamble;
use image::DynamicImage;
use reading_workstation_api::render::{
    self, MediaType, OutputFormat, RenderError, RenderParams, Viewport, Window, WindowFunction,
};

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sample-dicom/files")
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(samples_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn open(bytes: &[u8]) -> DefaultDicomObject {
    dicom_object::OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(&bytes[128..])
        .unwrap()
}

/// A sample changed by `f`, written back as a Part 10 file.
fn edit(name: &str, f: impl FnOnce(&mut DefaultDicomObject)) -> Vec<u8> {
    let mut obj = open(&sample(name));
    f(&mut obj);
    let mut out = Vec::new();
    obj.write_all(&mut out).unwrap();
    out
}

fn put_us(obj: &mut DefaultDicomObject, tag: Tag, v: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
}

fn put_str(obj: &mut DefaultDicomObject, tag: Tag, vr: VR, v: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

fn native_pixels(obj: &DefaultDicomObject) -> Vec<u8> {
    obj.element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .into_owned()
}

fn fragments(obj: &DefaultDicomObject) -> Vec<Vec<u8>> {
    match obj.element(tags::PIXEL_DATA).unwrap().value() {
        DicomValue::PixelSequence(seq) => seq.fragments().to_vec(),
        _ => panic!("not encapsulated"),
    }
}

fn put_fragments(obj: &mut DefaultDicomObject, fragments: Vec<Vec<u8>>) {
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        DicomValue::PixelSequence(PixelFragmentSequence::new(Vec::<u32>::new(), fragments)),
    ));
}

fn params(query: &str, accept: Option<&str>) -> RenderParams {
    RenderParams::from_query(query, accept).unwrap()
}

fn png() -> RenderParams {
    params("", Some("image/png"))
}

fn decoded(r: &render::Rendered) -> DynamicImage {
    let format = match r.media_type {
        MediaType::Jpeg => image::ImageFormat::Jpeg,
        MediaType::Png => image::ImageFormat::Png,
    };
    let img = image::load_from_memory_with_format(&r.bytes, format).unwrap();
    assert_eq!((img.width(), img.height()), (r.width, r.height));
    img
}

fn render_png(bytes: &[u8], p: &RenderParams) -> DynamicImage {
    decoded(&render::render(bytes, p).unwrap())
}

fn luma(img: &DynamicImage) -> Vec<u8> {
    img.to_luma8().into_raw()
}

/// (file, frames) of the manifest.
fn manifest() -> Vec<(String, u32)> {
    std::fs::read_to_string(samples_dir().join("MANIFEST.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[0].to_owned(), cols[5].parse().unwrap())
        })
        .collect()
}

#[test]
fn every_image_sample_renders_at_its_size_as_jpeg_and_png() {
    let mut rendered = 0;
    for (file, frames) in manifest() {
        if frames == 0 {
            continue;
        }
        let bytes = sample(&file);
        let obj = open(&bytes);
        let rows = obj.element(tags::ROWS).unwrap().to_int::<u32>().unwrap();
        let cols = obj.element(tags::COLUMNS).unwrap().to_int::<u32>().unwrap();
        for (accept, media_type) in [(None, MediaType::Jpeg), (Some("image/png"), MediaType::Png)] {
            for frame in [1, frames] {
                let mut p = params("", accept);
                p.frame = frame;
                let r = render::render(&bytes, &p)
                    .unwrap_or_else(|e| panic!("{file} frame {frame} as {media_type}: {e}"));
                assert_eq!(r.media_type, media_type);
                let img = decoded(&r);
                assert_eq!((img.width(), img.height()), (cols, rows), "{file}");
                // Not a blank picture: the samples are phantoms with structure.
                let l = luma(&img);
                let (min, max) = (l.iter().min().unwrap(), l.iter().max().unwrap());
                assert!(
                    max - min > 50,
                    "{file} frame {frame}: gray range {min}..{max}"
                );
            }
        }
        rendered += 1;
    }
    assert_eq!(rendered, 22, "every image sample of the manifest");
}

#[test]
fn pdf_and_sr_are_not_images_406() {
    for (file, what) in [
        ("doc_pdf.dcm", "Encapsulated PDF"),
        ("sr_text_deflated.dcm", "Basic Text SR"),
    ] {
        let err = render::render(&sample(file), &RenderParams::default()).unwrap_err();
        assert!(matches!(err, RenderError::NotAnImage(_)), "{file}: {err:?}");
        assert_eq!(err.status().as_u16(), 406);
        assert!(err.reason().contains(what), "{}", err.reason());
        assert!(matches!(
            render::thumbnail(&sample(file), 64),
            Err(RenderError::NotAnImage(_))
        ));
    }
}

#[test]
fn a_window_change_changes_the_picture() {
    let ct = sample("ct_01.dcm");
    let soft = render_png(&ct, &params("window=40,400", Some("image/png")));
    let lung = render_png(&ct, &params("window=-600,1500", Some("image/png")));
    let default = render_png(&ct, &png());
    assert_ne!(luma(&soft), luma(&lung));
    // The object's first window is 40/400: the default is the soft-tissue window.
    assert_eq!(luma(&soft), luma(&default));
}

#[test]
fn rescale_is_honoured_a_window_in_hu_shows_the_expected_gray() {
    let ct = sample("ct_01.dcm");
    let obj = open(&ct);
    let intercept: f64 = obj
        .element(tags::RESCALE_INTERCEPT)
        .unwrap()
        .to_float64()
        .unwrap();
    assert_eq!(intercept, -1024.0);
    let raw = native_pixels(&obj);
    let (row, col) = (64usize, 64usize);
    let i = (row * 128 + col) * 2;
    let stored = i16::from_le_bytes([raw[i], raw[i + 1]]);
    let hu = f64::from(stored) + intercept;
    // LINEAR_EXACT: gray = ((HU - center) / width + 0.5) * 255.
    for (offset, expected) in [(0.0, 127.5), (25.0, 63.75), (-25.0, 191.25)] {
        let p = RenderParams {
            format: OutputFormat::Png,
            window: Some(Window {
                center: hu + offset,
                width: 100.0,
                function: WindowFunction::LinearExact,
            }),
            ..RenderParams::default()
        };
        let img = render_png(&ct, &p);
        let gray = f64::from(img.to_luma8().get_pixel(col as u32, row as u32).0[0]);
        assert!(
            (gray - expected).abs() <= 2.0,
            "HU {hu}, window center {}: gray {gray}, expected {expected}",
            hu + offset
        );
    }
}

#[test]
fn monochrome1_is_shown_inverted() {
    let mono2 = sample("ct_01.dcm");
    let mono1 = edit("ct_01.dcm", |obj| {
        put_str(obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME1")
    });
    for query in ["", "window=-600,1500"] {
        let a = luma(&render_png(&mono2, &params(query, Some("image/png"))));
        let b = luma(&render_png(&mono1, &params(query, Some("image/png"))));
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| (i32::from(*x) + i32::from(*y) - 255).abs() <= 1)
        );
        assert!(a.iter().any(|&x| x > 200) && a.iter().any(|&x| x < 50));
    }
    // And `invert` turns MONOCHROME1 back.
    let mut p = png();
    p.invert = true;
    assert_eq!(
        luma(&render_png(&mono1, &p)),
        luma(&render_png(&mono2, &png()))
    );
}

#[test]
fn cine_frames_differ_and_a_frame_beyond_the_end_is_404() {
    let us = sample("us_cine_jpeg.dcm");
    let frame = |n: u32| {
        let mut p = png();
        p.frame = n;
        render_png(&us, &p).to_rgb8().into_raw()
    };
    assert_ne!(frame(1), frame(2));
    // Color: YBR_FULL_422 JPEG comes out as RGB, not gray.
    let rgb = frame(1);
    assert!(rgb.chunks(3).any(|p| p[0] != p[1] || p[1] != p[2]));
    let mut p = png();
    p.frame = 11;
    let err = render::render(&us, &p).unwrap_err();
    assert_eq!(err, RenderError::NotFound("frame 11 of 10".into()));
    assert_eq!(err.status().as_u16(), 404);
    p.frame = 2;
    assert_eq!(
        render::render(&sample("ct_01.dcm"), &p).unwrap_err(),
        RenderError::NotFound("frame 2 of 1".into())
    );
}

#[test]
fn the_viewport_scales_down_keeping_the_aspect_and_never_up() {
    let mg = sample("mg_rle.dcm"); // 192 wide, 256 high
    let size = |query: &str| {
        let r = render::render(&mg, &params(query, None)).unwrap();
        let img = decoded(&r);
        (img.width(), img.height())
    };
    assert_eq!(size("viewport=96,96"), (72, 96));
    assert_eq!(size("viewport=48,1000"), (48, 64));
    assert_eq!(size("viewport=1000,1000"), (192, 256));
    // A source region, then fitted.
    assert_eq!(size("viewport=1000,1000,10,20,50,40"), (50, 40));
    assert_eq!(size("viewport=25,1000,10,20,50,40"), (25, 20));
    // A region that starts outside the frame is the caller's mistake.
    let err = render::render(&mg, &params("viewport=10,10,500,0,10,10", None)).unwrap_err();
    assert_eq!(err.status().as_u16(), 400);
    // A negative width flips: the flipped region of a flipped picture is the original.
    let plain = render_png(
        &mg,
        &params("viewport=1000,1000,0,0,192,256", Some("image/png")),
    );
    let flipped = render_png(
        &mg,
        &params("viewport=1000,1000,0,0,-192,256", Some("image/png")),
    );
    assert_eq!(luma(&plain.fliph()), luma(&flipped));
}

#[test]
fn png_of_an_8_bit_rgb_image_is_exactly_its_pixels() {
    let sc = sample("sc_rgb_implicit.dcm");
    let img = render_png(&sc, &png());
    assert_eq!(img.to_rgb8().into_raw(), native_pixels(&open(&sc)));
    // A window means nothing to a color image: ignored.
    let windowed = render_png(&sc, &params("window=10,20", Some("image/png")));
    assert_eq!(windowed.to_rgb8().into_raw(), img.to_rgb8().into_raw());
}

#[test]
fn jpeg_quality_trades_size_for_fidelity() {
    let dx = sample("dx_jpeg_lossless.dcm");
    let size = |q: &str| render::render(&dx, &params(q, None)).unwrap().bytes.len();
    assert!(size("quality=10") < size("quality=95"));
}

#[test]
fn palette_color_is_looked_up() {
    let bytes = edit("sc_rgb_implicit.dcm", |obj| {
        put_us(obj, tags::SAMPLES_PER_PIXEL, 1);
        obj.remove_element(tags::PLANAR_CONFIGURATION);
        put_str(
            obj,
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "PALETTE COLOR",
        );
        let indices: Vec<u8> = (0..128 * 128).map(|i| (i % 256) as u8).collect();
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8(indices.into()),
        ));
        let ramp = |f: fn(u16) -> u16| -> Vec<u16> { (0..256u16).map(f).collect() };
        for (desc, data, values) in [
            (
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                ramp(|i| i * 257),
            ),
            (
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                ramp(|_| 0),
            ),
            (
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                ramp(|i| (255 - i) * 257),
            ),
        ] {
            obj.put(DataElement::new(
                desc,
                VR::US,
                PrimitiveValue::U16([256u16, 0, 16].as_slice().into()),
            ));
            obj.put(DataElement::new(
                data,
                VR::OW,
                PrimitiveValue::U16(values.into()),
            ));
        }
    });
    let rgb = render_png(&bytes, &png()).to_rgb8();
    for (i, p) in rgb.pixels().enumerate() {
        let idx = (i % 256) as u8;
        assert_eq!(p.0, [idx, 0, 255 - idx], "pixel {i}");
    }
}

fn to_ycbcr(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks(3)
        .flat_map(|p| {
            let (r, g, b) = (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]));
            let y = 0.299 * r + 0.587 * g + 0.114 * b;
            let cb = -0.168_736 * r - 0.331_264 * g + 0.5 * b + 128.0;
            let cr = 0.5 * r - 0.418_688 * g - 0.081_312 * b + 128.0;
            [y, cb, cr].map(|v| v.round().clamp(0.0, 255.0) as u8)
        })
        .collect()
}

/// Interleaved triplets to three planes.
fn planes(interleaved: &[u8]) -> Vec<Vec<u8>> {
    (0..3)
        .map(|c| interleaved.iter().skip(c).step_by(3).copied().collect())
        .collect()
}

fn set_rle_lossless(obj: &mut DefaultDicomObject) {
    use dicom_encoding::TransferSyntaxIndex;
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get("1.2.840.10008.1.2.5")
        .unwrap();
    obj.meta_mut().set_transfer_syntax(ts);
}

/// PS3.5 G: one segment per 8-bit plane, literal runs only.
fn rle_encode(planes: &[Vec<u8>]) -> Vec<u8> {
    let mut header = vec![0u8; 64];
    header[0..4].copy_from_slice(&(planes.len() as u32).to_le_bytes());
    let mut body = Vec::new();
    for (i, plane) in planes.iter().enumerate() {
        let offset = 64 + body.len() as u32;
        header[4 + 4 * i..8 + 4 * i].copy_from_slice(&offset.to_le_bytes());
        for run in plane.chunks(128) {
            body.push((run.len() - 1) as u8);
            body.extend_from_slice(run);
        }
        if body.len() % 2 == 1 {
            body.push(0x80); // no-op, keeps segments even
        }
    }
    header.extend(body);
    header
}

#[test]
fn ybr_full_and_ybr_full_422_native_come_out_as_rgb() {
    let sc = sample("sc_rgb_implicit.dcm");
    let original = native_pixels(&open(&sc));
    let ybr = edit("sc_rgb_implicit.dcm", |obj| {
        put_str(obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "YBR_FULL");
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8(to_ycbcr(&original).into()),
        ));
    });
    let back = render_png(&ybr, &png()).to_rgb8().into_raw();
    let worst = back
        .iter()
        .zip(&original)
        .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
        .max()
        .unwrap();
    assert!(worst <= 3, "YBR_FULL round trip off by {worst}");

    // Planar configuration 1 (all Y, all Cb, all Cr) gives the same picture.
    let planar = edit("sc_rgb_implicit.dcm", |obj| {
        put_str(obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "YBR_FULL");
        put_us(obj, tags::PLANAR_CONFIGURATION, 1);
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8(planes(&to_ycbcr(&original)).concat().into()),
        ));
    });
    assert_eq!(render_png(&planar, &png()).to_rgb8().into_raw(), back);

    // RLE keeps YBR_FULL as it is (PS3.5 8.2.2): converted after decoding. And RGB in RLE
    // is exact.
    let rle_ybr = edit("sc_rgb_implicit.dcm", |obj| {
        put_str(obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "YBR_FULL");
        put_fragments(obj, vec![rle_encode(&planes(&to_ycbcr(&original)))]);
        set_rle_lossless(obj);
    });
    assert_eq!(render_png(&rle_ybr, &png()).to_rgb8().into_raw(), back);
    let rle_rgb = edit("sc_rgb_implicit.dcm", |obj| {
        put_fragments(obj, vec![rle_encode(&planes(&original))]);
        set_rle_lossless(obj);
    });
    assert_eq!(render_png(&rle_rgb, &png()).to_rgb8().into_raw(), original);

    // 4:2:2 of a gray ramp (Cb = Cr = 128): Y1 Y2 Cb Cr per pair of pixels.
    let ybr422 = edit("sc_rgb_implicit.dcm", |obj| {
        put_str(
            obj,
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "YBR_FULL_422",
        );
        let mut data = Vec::new();
        for i in (0..128 * 128).step_by(2) {
            data.extend_from_slice(&[(i % 256) as u8, ((i + 1) % 256) as u8, 128, 128]);
        }
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8(data.into()),
        ));
    });
    let rgb = render_png(&ybr422, &png()).to_rgb8();
    assert_eq!(rgb.dimensions(), (128, 128));
    for (i, p) in rgb.pixels().enumerate() {
        let g = (i % 256) as u8;
        assert_eq!(p.0, [g, g, g], "pixel {i}");
    }
}

#[test]
fn thumbnails_are_the_middle_frame_in_a_small_square() {
    let us = sample("us_cine_jpeg.dcm");
    let thumb = render::thumbnail(&us, 32).unwrap();
    assert_eq!(thumb.media_type, MediaType::Jpeg);
    let img = decoded(&thumb);
    assert_eq!((img.width(), img.height()), (32, 32));
    // Frame 5 of 10, rendered the same way.
    let p = RenderParams {
        frame: 5,
        format: OutputFormat::Jpeg {
            quality: render::THUMBNAIL_QUALITY,
        },
        viewport: Some(Viewport {
            width: 32,
            height: 32,
            region: None,
        }),
        ..RenderParams::default()
    };
    assert_eq!(render::render(&us, &p).unwrap().bytes, thumb.bytes);

    let mg = decoded(&render::thumbnail(&sample("mg_rle.dcm"), 64).unwrap());
    assert_eq!((mg.width(), mg.height()), (48, 64));
    // Never scaled up.
    let ct = decoded(&render::thumbnail(&sample("ct_01.dcm"), 1024).unwrap());
    assert_eq!((ct.width(), ct.height()), (128, 128));
    assert_eq!(
        render::thumbnail(&us, 0).unwrap_err().status().as_u16(),
        400
    );
}

// --- hostile input -------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift), so that failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn undecodable(bytes: &[u8]) -> String {
    match render::render(bytes, &RenderParams::default()) {
        Err(e @ (RenderError::Undecodable(_) | RenderError::TooLarge(_))) => {
            assert_eq!(e.status().as_u16(), 422);
            e.reason()
        }
        other => panic!("expected a 422 error, got {other:?}"),
    }
}

#[test]
fn truncated_pixel_data_is_refused_with_a_reason() {
    // Pixel Data element shorter than Rows × Columns × 2 bytes.
    let short = edit("ct_01.dcm", |obj| {
        let half = native_pixels(obj)[..128 * 128].to_vec();
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8(half.into()),
        ));
    });
    let reason = undecodable(&short);
    assert!(reason.contains("pixel data holds 16384 bytes"), "{reason}");
    assert!(reason.contains("need 32768"), "{reason}");

    // The file itself cut short in the middle of the pixel data.
    let ct = sample("ct_01.dcm");
    let reason = undecodable(&ct[..ct.len() - 1000]);
    assert!(reason.contains("truncated"), "{reason}");

    // Number of Frames far beyond the data.
    let frames = edit("ct_01.dcm", |obj| {
        put_str(obj, tags::NUMBER_OF_FRAMES, VR::IS, "2147483647")
    });
    assert!(undecodable(&frames).contains("pixel data holds"));
}

#[test]
fn not_dicom_at_all_is_refused() {
    for bytes in [&b""[..], b"hello", &[0u8; 200][..]] {
        let reason = undecodable(bytes);
        assert!(reason.contains("DICOM"), "{reason}");
    }
}

#[test]
fn allocation_bombs_are_refused_before_decoding() {
    // 60000 × 60000 declared, 32 KiB of data: above the per-frame limit.
    let huge = edit("ct_01.dcm", |obj| {
        put_us(obj, tags::ROWS, 60000);
        put_us(obj, tags::COLUMNS, 60000);
    });
    let err = render::render(&huge, &RenderParams::default()).unwrap_err();
    assert!(matches!(err, RenderError::TooLarge(_)), "{err:?}");
    assert!(err.reason().contains("60000×60000"), "{}", err.reason());

    // Under the limit but far beyond the data, native and compressed.
    for file in [
        "ct_01.dcm",
        "cr_jpeg_baseline.dcm",
        "mr_jpegls_01.dcm",
        "dx_j2k.dcm",
        "mg_rle.dcm",
        "dx_jpeg_lossless.dcm",
    ] {
        let big = edit(file, |obj| {
            put_us(obj, tags::ROWS, 8000);
            put_us(obj, tags::COLUMNS, 8000);
        });
        let err = render::render(&big, &RenderParams::default()).unwrap_err();
        assert_eq!(err.status().as_u16(), 422, "{file}: {err:?}");
    }
    assert_peak_memory_is_bounded();
}

#[test]
fn a_compressed_stream_larger_than_declared_is_refused() {
    // dicom-rs copies the decoded stream into a buffer sized from Rows × Columns: a stream
    // that decodes to more would index out of bounds.
    for (file, kind) in [
        ("cr_jpeg_baseline.dcm", "JPEG"),
        ("dx_jpeg_lossless.dcm", "JPEG"),
        ("mr_jpegls_01.dcm", "JPEG-LS"),
        ("dx_j2k.dcm", "JPEG 2000"),
    ] {
        let small = edit(file, |obj| {
            put_us(obj, tags::ROWS, 64);
            put_us(obj, tags::COLUMNS, 64);
        });
        let reason = undecodable(&small);
        assert!(
            reason.contains("the compressed stream is"),
            "{file} ({kind}): {reason}"
        );
    }
    // More components than samples per pixel.
    let gray_us = edit("us_cine_jpeg.dcm", |obj| {
        put_us(obj, tags::SAMPLES_PER_PIXEL, 1);
        put_str(obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
    });
    assert!(undecodable(&gray_us).contains("3 component(s)"));
}

#[test]
fn garbage_in_encapsulated_fragments_is_an_error_not_a_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for file in [
        "cr_jpeg_baseline.dcm",
        "dx_jpeg_lossless.dcm",
        "mr_jpegls_01.dcm",
        "dx_j2k.dcm",
        "mg_rle.dcm",
        "us_cine_jpeg.dcm",
    ] {
        let original = fragments(&open(&sample(file)));
        // Pure garbage in every fragment.
        let garbage = edit(file, |obj| {
            let f = original.iter().map(|f| rng.bytes(f.len())).collect();
            put_fragments(obj, f);
        });
        let reason = undecodable(&garbage);
        assert!(reason.contains("frame 1"), "{file}: {reason}");

        // A valid stream header, then garbage; and streams cut short.
        for keep in [16usize, 200, 1000] {
            let variant = edit(file, |obj| {
                let f = original
                    .iter()
                    .map(|f| {
                        let keep = keep.min(f.len());
                        let mut v = f[..keep].to_vec();
                        v.extend(rng.bytes(f.len() - keep));
                        v
                    })
                    .collect();
                put_fragments(obj, f);
            });
            // The decoders may or may not notice garbage entropy-coded data; what matters
            // is an answer instead of a crash.
            let _ = render::render(&variant, &RenderParams::default());
            let cut = edit(file, |obj| {
                let f = original
                    .iter()
                    .map(|f| {
                        let mut v = f[..keep.min(f.len())].to_vec();
                        v.truncate(v.len() & !1);
                        v
                    })
                    .collect();
                put_fragments(obj, f);
            });
            let _ = render::render(&cut, &RenderParams::default());
        }
        // An empty fragment list.
        let empty = edit(file, |obj| put_fragments(obj, Vec::new()));
        assert!(render::render(&empty, &RenderParams::default()).is_err());
    }

    // A JPEG-LS stream cut short: refused before CharLS, which would spin for seconds.
    let cut = edit("mr_jpegls_01.dcm", |obj| {
        let f = fragments(obj);
        put_fragments(obj, vec![f[0][..1000].to_vec()]);
    });
    assert!(undecodable(&cut).contains("truncated"));

    // An RLE segment that decodes short: dicom-rs's RLE reader indexes past it and panics;
    // the panic is caught and answered as malformed data.
    let short_segment = edit("mg_rle.dcm", |obj| {
        let mut f = fragments(obj);
        let second = u32::from_le_bytes(f[0][8..12].try_into().unwrap()) as usize;
        f[0].truncate(second + 16);
        put_fragments(obj, f);
    });
    assert!(undecodable(&short_segment).contains("the pixel data is malformed"));

    // An RLE header that claims 4 billion segments (dicom-rs would allocate for them).
    let rle = edit("mg_rle.dcm", |obj| {
        let mut f = fragments(obj);
        f[0][0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        put_fragments(obj, f);
    });
    assert!(undecodable(&rle).contains("invalid RLE data"));
    assert_peak_memory_is_bounded();
}

#[test]
fn random_corruption_of_every_sample_never_panics() {
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    for (file, frames) in manifest() {
        let original = sample(&file);
        let rounds = if frames == 0 { 10 } else { 30 };
        for _ in 0..rounds {
            let mut bytes = original.clone();
            // Flip a few bytes after the preamble.
            for _ in 0..1 + rng.next() % 8 {
                let i = 132 + (rng.next() as usize % (bytes.len() - 132));
                bytes[i] = rng.next() as u8;
            }
            // Must return (Ok or Err) rather than panic or abort.
            let _ = render::render(&bytes, &RenderParams::default());
        }
    }
    assert_peak_memory_is_bounded();
}

/// Peak resident memory of this test process stays far below what a single allocation
/// bomb above would have taken (60000² × 2 bytes = 7.2 GB; 8000² × 2 = 128 MB per frame).
fn assert_peak_memory_is_bounded() {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        assert!(kib < 1024 * 1024, "peak RSS {kib} KiB");
    }
}
