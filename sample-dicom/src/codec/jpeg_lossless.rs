//! JPEG Lossless, Non-Hierarchical, First-Order Prediction (process 14, selection
//! value 1): DICOM transfer syntax 1.2.840.10008.1.2.4.70. Grayscale only.

/// Code lengths of the fixed Huffman table for the difference categories 0..=16:
/// BITS[i] = number of codes of length i + 1. The Kraft sum is below one, so no
/// code is all ones (as ISO 10918-1 requires).
const BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
const HUFFVAL: [u8; 17] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

/// Canonical codes (ISO 10918-1 Annex C): (code, length) per category.
fn huffman_codes() -> [(u16, u8); 17] {
    let mut codes = [(0u16, 0u8); 17];
    let mut code: u16 = 0;
    let mut k = 0;
    for (i, &count) in BITS.iter().enumerate() {
        for _ in 0..count {
            codes[HUFFVAL[k] as usize] = (code, i as u8 + 1);
            code += 1;
            k += 1;
        }
        code <<= 1;
    }
    codes
}

struct BitWriter {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, len: u32) {
        for i in (0..len).rev() {
            self.acc = (self.acc << 1) | ((value >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                let b = self.acc as u8;
                self.out.push(b);
                if b == 0xFF {
                    self.out.push(0x00);
                }
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            let pad = 8 - self.n;
            self.put((1 << pad) - 1, pad);
        }
        self.out
    }
}

/// Encode a grayscale frame with `precision` significant bits per sample (2..=16).
pub fn encode_jpeg_lossless_sv1(samples: &[u16], rows: u16, cols: u16, precision: u8) -> Vec<u8> {
    assert!(
        (2..=16).contains(&precision),
        "JPEG lossless: precision 2..=16"
    );
    let (h, w) = (rows as usize, cols as usize);
    assert_eq!(
        samples.len(),
        h * w,
        "JPEG lossless: frame has the wrong size"
    );
    let codes = huffman_codes();
    let mut out = Vec::with_capacity(samples.len());
    out.extend_from_slice(&[0xFF, 0xD8]); // SOI
    // SOF3
    out.extend_from_slice(&[0xFF, 0xC3, 0, 11, precision]);
    out.extend_from_slice(&rows.to_be_bytes());
    out.extend_from_slice(&cols.to_be_bytes());
    out.extend_from_slice(&[1, 1, 0x11, 0]);
    // DHT: DC class 0, table 0
    out.extend_from_slice(&[0xFF, 0xC4]);
    out.extend_from_slice(&((2 + 1 + 16 + HUFFVAL.len()) as u16).to_be_bytes());
    out.push(0x00);
    out.extend_from_slice(&BITS);
    out.extend_from_slice(&HUFFVAL);
    // SOS: one component, predictor 1, point transform 0
    out.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0x00, 1, 0, 0x00]);

    let mut bw = BitWriter { out, acc: 0, n: 0 };
    let mask = if precision == 16 {
        0xFFFF
    } else {
        (1u32 << precision) - 1
    };
    for y in 0..h {
        for x in 0..w {
            let v = samples[y * w + x] as u32 & mask;
            let pred = match (y, x) {
                (0, 0) => 1u32 << (precision - 1),
                (_, 0) => samples[(y - 1) * w] as u32 & mask,
                _ => samples[y * w + x - 1] as u32 & mask,
            };
            // differences are taken modulo 2^16 (H.1.2.1)
            let mut diff = (v as i32 - pred as i32) & 0xFFFF;
            if diff >= 0x8000 {
                diff -= 0x10000;
            }
            let ssss = if diff == -0x8000 {
                16
            } else {
                32 - diff.unsigned_abs().leading_zeros()
            };
            let (code, len) = codes[ssss as usize];
            bw.put(code as u32, len as u32);
            if ssss > 0 && ssss < 16 {
                let bits = if diff < 0 { diff - 1 } else { diff };
                bw.put(bits as u32 & ((1 << ssss) - 1), ssss);
            }
        }
    }
    let mut out = bw.finish();
    out.extend_from_slice(&[0xFF, 0xD9]); // EOI
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(data: &[u8]) -> Vec<u16> {
        let mut d = jpeg_decoder::Decoder::new(data);
        let px = d.decode().expect("decode");
        let info = d.info().unwrap();
        if info.pixel_format == jpeg_decoder::PixelFormat::L16 {
            px.chunks(2)
                .map(|c| u16::from_ne_bytes([c[0], c[1]]))
                .collect()
        } else {
            px.iter().map(|&b| b as u16).collect()
        }
    }

    #[test]
    fn round_trip() {
        for &(precision, rows, cols) in &[(12u8, 33u16, 47u16), (16, 16, 16), (8, 5, 9)] {
            let max = ((1u32 << precision) - 1) as u16;
            let samples: Vec<u16> = (0..rows as u32 * cols as u32)
                .map(|i| {
                    if i % 13 == 0 {
                        max
                    } else {
                        (i.wrapping_mul(2654435761) >> 7) as u16 & max
                    }
                })
                .collect();
            let enc = encode_jpeg_lossless_sv1(&samples, rows, cols, precision);
            assert_eq!(decode(&enc), samples, "precision {precision}");
        }
    }
}
