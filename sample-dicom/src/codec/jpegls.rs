//! JPEG-LS lossless encoder (ITU-T T.87 / ISO 14495-1, NEAR = 0), single component,
//! 8 to 16 bits: DICOM transfer syntax 1.2.840.10008.1.2.4.80. Default thresholds
//! (T.87 C.2.4.1.1), so no LSE marker is written.

const J: [u32; 32] = [
    0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13,
    14, 15,
];
const RESET: i32 = 64;

struct Bits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
    cap: u32,
}

impl Bits {
    #[inline]
    fn bit(&mut self, b: u32) {
        self.acc = (self.acc << 1) | b;
        self.n += 1;
        if self.n == self.cap {
            let byte = self.acc as u8;
            self.out.push(byte);
            // after 0xFF only seven bits go into the next byte (T.87 A.1)
            self.cap = if byte == 0xFF { 7 } else { 8 };
            self.acc = 0;
            self.n = 0;
        }
    }

    fn bits(&mut self, value: u32, len: u32) {
        for i in (0..len).rev() {
            self.bit((value >> i) & 1);
        }
    }

    fn zeros(&mut self, count: i32) {
        for _ in 0..count {
            self.bit(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        while self.n != 0 {
            self.bit(0);
        }
        if self.out.last() == Some(&0xFF) {
            self.out.push(0x00);
        }
        self.out
    }
}

struct Coder {
    bits: Bits,
    maxval: i32,
    range: i32,
    qbpp: i32,
    limit: i32,
    t: [i32; 3],
    a: [i32; 367],
    b: [i32; 365],
    c: [i32; 365],
    n: [i32; 367],
    nn: [i32; 2],
    run_index: usize,
}

impl Coder {
    fn quantize(&self, d: i32) -> i32 {
        let [t1, t2, t3] = self.t;
        if d <= -t3 {
            -4
        } else if d <= -t2 {
            -3
        } else if d <= -t1 {
            -2
        } else if d < 0 {
            -1
        } else if d == 0 {
            0
        } else if d < t1 {
            1
        } else if d < t2 {
            2
        } else if d < t3 {
            3
        } else {
            4
        }
    }

    fn modulo(&self, mut e: i32) -> i32 {
        if e < 0 {
            e += self.range;
        }
        if e >= (self.range + 1) / 2 {
            e -= self.range;
        }
        e
    }

    fn golomb(&mut self, k: u32, merr: i32, limit: i32) {
        let high = merr >> k;
        if high < limit - self.qbpp - 1 {
            self.bits.zeros(high);
            self.bits.bit(1);
            self.bits.bits(merr as u32 & ((1u32 << k) - 1), k);
        } else {
            self.bits.zeros(limit - self.qbpp - 1);
            self.bits.bit(1);
            self.bits.bits(
                (merr - 1) as u32 & ((1u32 << self.qbpp) - 1),
                self.qbpp as u32,
            );
        }
    }

    fn regular(&mut self, ix: i32, ra: i32, rb: i32, rc: i32, qs: i32) {
        let sign = if qs < 0 { -1 } else { 1 };
        let q = qs.unsigned_abs() as usize;
        let px = if rc >= ra.max(rb) {
            ra.min(rb)
        } else if rc <= ra.min(rb) {
            ra.max(rb)
        } else {
            ra + rb - rc
        };
        let px = (px + sign * self.c[q]).clamp(0, self.maxval);
        let err = self.modulo(sign * (ix - px));
        let mut k = 0u32;
        while (self.n[q] << k) < self.a[q] {
            k += 1;
        }
        let merr = if k == 0 && 2 * self.b[q] <= -self.n[q] {
            if err >= 0 {
                2 * err + 1
            } else {
                -2 * (err + 1)
            }
        } else if err >= 0 {
            2 * err
        } else {
            -2 * err - 1
        };
        self.golomb(k, merr, self.limit);
        // context update (A.6)
        self.b[q] += err;
        self.a[q] += err.abs();
        if self.n[q] == RESET {
            self.a[q] >>= 1;
            self.b[q] >>= 1;
            self.n[q] >>= 1;
        }
        self.n[q] += 1;
        if self.b[q] + self.n[q] <= 0 {
            self.b[q] += self.n[q];
            if self.b[q] <= -self.n[q] {
                self.b[q] = -self.n[q] + 1;
            }
            if self.c[q] > -128 {
                self.c[q] -= 1;
            }
        } else if self.b[q] > 0 {
            self.b[q] -= self.n[q];
            if self.b[q] > 0 {
                self.b[q] = 0;
            }
            if self.c[q] < 127 {
                self.c[q] += 1;
            }
        }
    }

    fn run_interruption(&mut self, ix: i32, ra: i32, rb: i32) {
        let ritype = i32::from(ra == rb);
        let err = if ritype == 1 {
            ix - ra
        } else if rb < ra {
            rb - ix
        } else {
            ix - rb
        };
        let err = self.modulo(err);
        let q = 365 + ritype as usize;
        let temp = self.a[q] + (self.n[q] >> 1) * ritype;
        let mut k = 0u32;
        while (self.n[q] << k) < temp {
            k += 1;
        }
        let nn = self.nn[ritype as usize];
        let map = (k == 0 && err > 0 && 2 * nn < self.n[q])
            || (err < 0 && 2 * nn >= self.n[q])
            || (err < 0 && k != 0);
        let em = 2 * err.abs() - ritype - i32::from(map);
        let limit = self.limit - J[self.run_index] as i32 - 1;
        self.golomb(k, em, limit);
        if err < 0 {
            self.nn[ritype as usize] += 1;
        }
        self.a[q] += (em + 1 - ritype) >> 1;
        if self.n[q] == RESET {
            self.a[q] >>= 1;
            self.n[q] >>= 1;
            self.nn[ritype as usize] >>= 1;
        }
        self.n[q] += 1;
    }
}

/// Encode a grayscale frame losslessly with `precision` bits per sample (8..=16).
pub fn encode_jpegls_lossless(samples: &[u16], rows: u16, cols: u16, precision: u8) -> Vec<u8> {
    assert!((8..=16).contains(&precision), "JPEG-LS: precision 8..=16");
    let (h, w) = (rows as usize, cols as usize);
    assert_eq!(samples.len(), h * w, "JPEG-LS: frame has the wrong size");
    let maxval = (1i32 << precision) - 1;
    let range = maxval + 1;
    let bpp = (precision as i32).max(2);
    let factor = (maxval.min(4095) + 128) >> 8;
    // FACTOR * (BASIC_Ti - i - 1) + i + 1 with BASIC_T1..3 = 3, 7, 21 and NEAR = 0
    let t1 = (factor + 2).clamp(1, maxval);
    let t2 = (factor * 4 + 3).clamp(t1, maxval);
    let t3 = (factor * 17 + 4).clamp(t2, maxval);
    let a_init = ((range + 32) / 64).max(2);

    let mut header = vec![0xFF, 0xD8]; // SOI
    header.extend_from_slice(&[0xFF, 0xF7, 0, 11, precision]); // SOF55
    header.extend_from_slice(&rows.to_be_bytes());
    header.extend_from_slice(&cols.to_be_bytes());
    header.extend_from_slice(&[1, 1, 0x11, 0]);
    // SOS: 1 component, no mapping table, NEAR 0, ILV 0, no point transform
    header.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0, 0]);

    let mut cd = Coder {
        bits: Bits {
            out: header,
            acc: 0,
            n: 0,
            cap: 8,
        },
        maxval,
        range,
        qbpp: precision as i32,
        limit: 2 * (bpp + bpp.max(8)),
        t: [t1, t2, t3],
        a: [a_init; 367],
        b: [0; 365],
        c: [0; 365],
        n: [1; 367],
        nn: [0; 2],
        run_index: 0,
    };

    // line buffers with one guard sample each side: index x + 1 is column x
    let mut prev = vec![0i32; w + 2];
    let mut cur = vec![0i32; w + 2];
    for y in 0..h {
        prev[w + 1] = prev[w];
        cur[0] = prev[1];
        for x in 0..w {
            cur[x + 1] = i32::from(samples[y * w + x]).min(maxval);
        }
        let mut x = 0;
        while x < w {
            let (ra, rb, rc, rd) = (cur[x], prev[x + 1], prev[x], prev[x + 2]);
            let ix = cur[x + 1];
            let (q1, q2, q3) = (
                cd.quantize(rd - rb),
                cd.quantize(rb - rc),
                cd.quantize(rc - ra),
            );
            let qs = (q1 * 9 + q2) * 9 + q3;
            if qs != 0 {
                cd.regular(ix, ra, rb, rc, qs);
                x += 1;
                continue;
            }
            // run mode (A.7)
            let mut run = 0;
            while x + run < w && cur[x + 1 + run] == ra {
                run += 1;
            }
            let mut left = run;
            while left >= (1 << J[cd.run_index]) {
                cd.bits.bit(1);
                left -= 1 << J[cd.run_index];
                if cd.run_index < 31 {
                    cd.run_index += 1;
                }
            }
            if x + run == w {
                if left > 0 {
                    cd.bits.bit(1);
                }
                x = w;
                continue;
            }
            cd.bits.bit(0);
            cd.bits.bits(left as u32, J[cd.run_index]);
            let pos = x + run;
            cd.run_interruption(cur[pos + 1], ra, prev[pos + 1]);
            if cd.run_index > 0 {
                cd.run_index -= 1;
            }
            x = pos + 1;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let mut out = cd.bits.finish();
    out.extend_from_slice(&[0xFF, 0xD9]); // EOI
    out
}
