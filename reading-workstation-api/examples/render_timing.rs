//! How long one rendering takes: a 512×512 CT slice (generated, explicit VR little endian,
//! 16-bit) and the committed samples, as JPEG and PNG. Not a test: nothing is asserted.
//!
//! ```sh
//! cargo run --release -p reading-workstation-api --example render_timing [ITERATIONS]
//! ```

use std::time::{Duration, Instant};

use reading_workstation_api::render::{self, RenderParams};

fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(200);
    let tmp = tempfile::tempdir()?;
    let ct512 = sample_dicom::write_ct_series(tmp.path(), 1, 512, 512, 7)?;
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-dicom/files");

    let mut cases: Vec<(String, Vec<u8>)> =
        vec![("ct 512x512 (generated)".into(), std::fs::read(&ct512[0])?)];
    for name in [
        "ct_01.dcm",
        "us_cine_jpeg.dcm",
        "mr_jpegls_01.dcm",
        "mg_rle.dcm",
        "cr_jpeg_baseline.dcm",
        "dx_jpeg_lossless.dcm",
        "dx_j2k.dcm",
        "cr_big_endian.dcm",
        "sc_rgb_implicit.dcm",
    ] {
        cases.push((name.into(), std::fs::read(samples.join(name))?));
    }

    let jpeg = RenderParams::default();
    let png = RenderParams::from_query("", Some("image/png")).expect("valid parameters");
    println!("{iterations} iterations each, after 10 warm-up renderings; times per rendering");
    println!(
        "{:<26} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "object", "as", "min", "p50", "p90", "max"
    );
    for (name, bytes) in &cases {
        for (label, params) in [("jpeg", &jpeg), ("png", &png)] {
            let mut times = Vec::with_capacity(iterations);
            for i in 0..iterations + 10 {
                let start = Instant::now();
                let out = render::render(bytes, params)?;
                let elapsed = start.elapsed();
                std::hint::black_box(out);
                if i >= 10 {
                    times.push(elapsed);
                }
            }
            times.sort();
            let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
            println!(
                "{name:<26} {label:>6} {:>9} {:>9} {:>9} {:>9}",
                ms(times[0]),
                ms(at(0.5)),
                ms(at(0.9)),
                ms(*times.last().expect("at least one iteration"))
            );
        }
    }
    let start = Instant::now();
    let thumb = render::thumbnail(&cases[0].1, 128)?;
    println!(
        "thumbnail 128 of the 512×512 CT: {} ({} bytes)",
        ms(start.elapsed()),
        thumb.bytes.len()
    );
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
