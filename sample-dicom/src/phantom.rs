//! Synthetic pixel content. Nothing here comes from a real patient: every image is
//! drawn from circles, ellipses and seeded noise.

use crate::uid::SplitMix64;

/// Normalised coordinates of pixel (x, y): centre of the image is (0, 0), edges ±1.
fn uv(x: usize, y: usize, cols: usize, rows: usize) -> (f64, f64) {
    (
        (x as f64 + 0.5) / cols as f64 * 2.0 - 1.0,
        (y as f64 + 0.5) / rows as f64 * 2.0 - 1.0,
    )
}

fn in_ellipse(u: f64, v: f64, cu: f64, cv: f64, ru: f64, rv: f64) -> bool {
    let (a, b) = ((u - cu) / ru, (v - cv) / rv);
    a * a + b * b < 1.0
}

/// Axial CT slice in Hounsfield units: air, a body of soft tissue and fat, two lungs
/// and a heart whose size follows `z` (0..=1 along the series), a spine of bone and a
/// water vial; outside the reconstruction circle -3024 HU, as many scanners write.
pub fn ct_slice_hu(rows: usize, cols: usize, z: f64, seed: u64) -> Vec<i16> {
    let mut rng = SplitMix64(seed ^ (z * 1e6) as u64);
    let lung = 0.55 + 0.45 * (std::f64::consts::PI * z).sin();
    let heart = 0.22 * (1.0 - 0.6 * z).max(0.05);
    let mut out = Vec::with_capacity(rows * cols);
    for y in 0..rows {
        for x in 0..cols {
            let (u, v) = uv(x, y, cols, rows);
            let hu: i32 = if u * u + v * v >= 0.98 * 0.98 {
                -3024
            } else if !in_ellipse(u, v, 0.0, 0.05, 0.85, 0.68) {
                -1000 + rng.noise(6)
            } else if in_ellipse(u, v, 0.0, 0.5, 0.06, 0.06) {
                300 + rng.noise(20)
            } else if in_ellipse(u, v, 0.0, 0.5, 0.11, 0.11) {
                1000 + rng.noise(20)
            } else if in_ellipse(u, v, -0.33, -0.02, 0.24 * lung, 0.38 * lung)
                || in_ellipse(u, v, 0.35, -0.02, 0.22 * lung, 0.36 * lung)
            {
                -850 + rng.noise(15)
            } else if in_ellipse(u, v, 0.08, 0.08, heart, heart * 0.9) {
                45 + rng.noise(8)
            } else if in_ellipse(u, v, 0.55, 0.45, 0.07, 0.07) {
                rng.noise(4) // water vial
            } else if !in_ellipse(u, v, 0.0, 0.05, 0.78, 0.61) {
                -100 + rng.noise(8)
            } else {
                40 + rng.noise(8)
            };
            out.push(hu as i16);
        }
    }
    out
}

/// Axial T2-like MR head slice, 12-bit (0..=4095).
pub fn mr_slice(rows: usize, cols: usize, z: f64, seed: u64) -> Vec<u16> {
    let mut rng = SplitMix64(seed ^ 0x4d52 ^ (z * 1e6) as u64);
    let vent = 0.05 + 0.12 * (std::f64::consts::PI * z).sin();
    let mut out = Vec::with_capacity(rows * cols);
    for y in 0..rows {
        for x in 0..cols {
            let (u, v) = uv(x, y, cols, rows);
            let s: i32 = if !in_ellipse(u, v, 0.0, 0.0, 0.72, 0.86) {
                40 + rng.noise(25)
            } else if !in_ellipse(u, v, 0.0, 0.0, 0.66, 0.80) {
                300 + rng.noise(40) // skull
            } else if in_ellipse(u, v, -0.12, -0.05, 0.07, vent)
                || in_ellipse(u, v, 0.12, -0.05, 0.07, vent)
            {
                3600 + rng.noise(60) // CSF
            } else if !in_ellipse(u, v, 0.0, 0.0, 0.58, 0.72) {
                2300 + rng.noise(60) // grey matter
            } else {
                1700 + rng.noise(60)
            };
            out.push(s.clamp(0, 4095) as u16);
        }
    }
    out
}

/// Projection chest radiograph, values 0..=`max` (MONOCHROME2: bone bright).
pub fn chest_xray(rows: usize, cols: usize, max: u16, seed: u64) -> Vec<u16> {
    let mut rng = SplitMix64(seed ^ 0x4358);
    let m = max as f64;
    let mut out = Vec::with_capacity(rows * cols);
    for y in 0..rows {
        for x in 0..cols {
            let (u, v) = uv(x, y, cols, rows);
            let mut f: f64 = if in_ellipse(u, v, 0.0, 0.1, 0.82, 1.05) {
                0.55
            } else {
                0.06
            };
            if in_ellipse(u, v, -0.36, -0.05, 0.28, 0.6) || in_ellipse(u, v, 0.36, -0.05, 0.28, 0.6)
            {
                f = 0.28;
                // ribs: bright bands across the lungs
                if ((v * 9.0 + u.abs() * 2.5).sin()) > 0.75 {
                    f = 0.45;
                }
            }
            if u.abs() < 0.07 {
                f = f.max(0.85); // spine
            }
            if in_ellipse(u, v, 0.12, 0.25, 0.22, 0.2) {
                f = f.max(0.62); // heart shadow
            }
            let noise = rng.noise(100) as f64 / 100.0 * 0.015;
            out.push(((f + noise).clamp(0.0, 1.0) * m).round() as u16);
        }
    }
    out
}

/// Mammogram (left breast, chest wall on the left edge), 12-bit.
pub fn mammogram(rows: usize, cols: usize, seed: u64) -> Vec<u16> {
    let mut rng = SplitMix64(seed ^ 0x4d47);
    let mut out = Vec::with_capacity(rows * cols);
    for y in 0..rows {
        for x in 0..cols {
            let (u, v) = uv(x, y, cols, rows);
            let s: f64 = if in_ellipse(u, v, -1.0, 0.0, 1.5, 0.9) {
                let texture = ((u * 23.0).sin() * (v * 17.0 + u * 5.0).cos()) * 180.0;
                let depth = (1.0 - ((u + 1.0) / 1.5)).clamp(0.0, 1.0) * 900.0;
                1500.0 + depth + texture
            } else {
                120.0
            };
            // a few bright calcification-like dots
            let dot = [(0.1, -0.2), (0.15, -0.17), (-0.2, 0.3)]
                .iter()
                .any(|&(cu, cv)| in_ellipse(u, v, cu, cv, 0.015, 0.02));
            let s = if dot {
                3900.0
            } else {
                s + rng.noise(30) as f64
            };
            out.push(s.clamp(0.0, 4095.0) as u16);
        }
    }
    out
}

/// One frame of an RGB ultrasound cine (interleaved RGB): a fan with speckle, a wall
/// that moves with `frame`, and a colour-Doppler blob.
pub fn us_frame(rows: usize, cols: usize, frame: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64(seed ^ 0x5553 ^ frame as u64);
    let phase = frame as f64 / 10.0 * std::f64::consts::TAU;
    let mut out = Vec::with_capacity(rows * cols * 3);
    for y in 0..rows {
        for x in 0..cols {
            let dx = x as f64 - cols as f64 / 2.0;
            let dy = y as f64 + 2.0;
            let r = (dx * dx + dy * dy).sqrt() / rows as f64;
            let angle = dx.atan2(dy);
            let mut px = [0u8; 3];
            if angle.abs() < 0.7 && r < 0.95 && r > 0.08 {
                let wall = 0.55 + 0.08 * phase.sin();
                let base = if (r - wall).abs() < 0.04 { 200 } else { 70 };
                let g = (base + rng.noise(40)).clamp(0, 255) as u8;
                px = [g, g, g];
                let (bu, bv) = (0.1 * phase.cos(), 0.35);
                if (angle - bu).abs() < 0.15 && (r - bv).abs() < 0.08 {
                    px = if phase.sin() > 0.0 {
                        [220, 30, 30]
                    } else {
                        [30, 60, 220]
                    };
                }
            }
            out.extend_from_slice(&px);
        }
    }
    out
}

/// A secondary-capture test card (interleaved RGB): colour bars, a grey ramp and a
/// circle.
pub fn test_card(rows: usize, cols: usize) -> Vec<u8> {
    const BARS: [[u8; 3]; 8] = [
        [255, 255, 255],
        [255, 255, 0],
        [0, 255, 255],
        [0, 255, 0],
        [255, 0, 255],
        [255, 0, 0],
        [0, 0, 255],
        [0, 0, 0],
    ];
    let mut out = Vec::with_capacity(rows * cols * 3);
    for y in 0..rows {
        for x in 0..cols {
            let (u, v) = uv(x, y, cols, rows);
            let px = if in_ellipse(u, v, 0.0, -0.3, 0.3, 0.3)
                && !in_ellipse(u, v, 0.0, -0.3, 0.25, 0.25)
            {
                [255, 128, 0]
            } else if y < rows * 3 / 4 {
                BARS[x * 8 / cols]
            } else {
                let g = (x * 255 / (cols - 1).max(1)) as u8;
                [g, g, g]
            };
            out.extend_from_slice(&px);
        }
    }
    out
}
