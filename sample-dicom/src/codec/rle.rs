//! DICOM RLE Lossless (PS3.5 Annex G) encoder.

/// Encode one frame as a DICOM RLE Lossless fragment.
///
/// `frame` holds the pixels in the usual little-endian, colour-by-pixel order
/// (Planar Configuration 0): `rows * cols * samples_per_pixel * bytes_per_sample` bytes.
/// One segment is written per byte plane: for each sample, most significant byte first.
pub fn encode_rle_frame(
    frame: &[u8],
    rows: u16,
    cols: u16,
    samples_per_pixel: u16,
    bytes_per_sample: u16,
) -> Vec<u8> {
    let (rows, cols) = (rows as usize, cols as usize);
    let spp = samples_per_pixel as usize;
    let bps = bytes_per_sample as usize;
    let nseg = spp * bps;
    assert!((1..=15).contains(&nseg), "RLE: 1 to 15 segments");
    assert_eq!(
        frame.len(),
        rows * cols * nseg,
        "RLE: frame has the wrong size"
    );
    let stride = nseg; // bytes per pixel
    let mut segments: Vec<Vec<u8>> = Vec::with_capacity(nseg);
    let mut plane_row = vec![0u8; cols];
    for s in 0..spp {
        for b in (0..bps).rev() {
            // byte b of sample s (little-endian in the input), MSB plane first
            let offset = s * bps + b;
            let mut seg = Vec::new();
            for r in 0..rows {
                for (c, v) in plane_row.iter_mut().enumerate() {
                    *v = frame[(r * cols + c) * stride + offset];
                }
                packbits_row(&plane_row, &mut seg);
            }
            if seg.len() % 2 == 1 {
                seg.push(0);
            }
            segments.push(seg);
        }
    }
    let mut out = Vec::with_capacity(64 + segments.iter().map(Vec::len).sum::<usize>());
    out.extend_from_slice(&(nseg as u32).to_le_bytes());
    let mut off = 64u32;
    for seg in &segments {
        out.extend_from_slice(&off.to_le_bytes());
        off += seg.len() as u32;
    }
    for _ in nseg..15 {
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    for seg in &segments {
        out.extend_from_slice(seg);
    }
    out
}

/// PackBits one row (runs never cross a row boundary, as Annex G recommends).
fn packbits_row(row: &[u8], out: &mut Vec<u8>) {
    let n = row.len();
    let mut i = 0;
    while i < n {
        let mut run = 1;
        while i + run < n && run < 128 && row[i + run] == row[i] {
            run += 1;
        }
        if run >= 2 {
            out.push((1 - run as i16) as i8 as u8);
            out.push(row[i]);
            i += run;
            continue;
        }
        let start = i;
        let mut len = 0;
        while i < n && len < 128 {
            if i + 1 < n && row[i + 1] == row[i] {
                break;
            }
            i += 1;
            len += 1;
        }
        out.push((len - 1) as u8);
        out.extend_from_slice(&row[start..start + len]);
    }
}

/// Decoder used by the tests to check the encoder.
#[cfg(test)]
pub(crate) fn decode_rle_frame(
    data: &[u8],
    rows: usize,
    cols: usize,
    spp: usize,
    bps: usize,
) -> Vec<u8> {
    let nseg = u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
    assert_eq!(nseg, spp * bps);
    let offs: Vec<usize> = (0..nseg)
        .map(|i| u32::from_le_bytes(data[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let mut out = vec![0u8; rows * cols * nseg];
    for (si, &start) in offs.iter().enumerate() {
        let end = offs.get(si + 1).copied().unwrap_or(data.len());
        let seg = &data[start..end];
        let mut plane = Vec::with_capacity(rows * cols);
        let mut i = 0;
        while plane.len() < rows * cols {
            let h = seg[i] as i8;
            i += 1;
            if h >= 0 {
                let l = h as usize + 1;
                plane.extend_from_slice(&seg[i..i + l]);
                i += l;
            } else if h != -128 {
                let l = (1 - h as isize) as usize;
                plane.extend(std::iter::repeat_n(seg[i], l));
                i += 1;
            }
        }
        let (s, b) = (si / bps, bps - 1 - si % bps);
        for (p, v) in plane.iter().enumerate() {
            out[p * nseg + s * bps + b] = *v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_16bit_and_rgb() {
        let (rows, cols) = (7usize, 131usize);
        let mut px = Vec::new();
        for i in 0..rows * cols {
            let v: u16 = if i % 50 < 20 {
                1000
            } else {
                (i * 37 % 4096) as u16
            };
            px.extend_from_slice(&v.to_le_bytes());
        }
        let enc = encode_rle_frame(&px, rows as u16, cols as u16, 1, 2);
        assert_eq!(decode_rle_frame(&enc, rows, cols, 1, 2), px);
        let rgb: Vec<u8> = (0..rows * cols * 3)
            .map(|i| ((i / 9) % 7) as u8 * 30)
            .collect();
        let enc = encode_rle_frame(&rgb, rows as u16, cols as u16, 3, 1);
        assert_eq!(decode_rle_frame(&enc, rows, cols, 3, 1), rgb);
    }
}
