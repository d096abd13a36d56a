//! Deterministic UIDs of the form `2.25.<decimal UUID>` (PS3.5 B.2): no registered
//! root is needed. The UUID is the first 128 bits of SHA-256 over a fixed namespace,
//! the seed and a label, with the version (8, "custom") and variant bits set as
//! RFC 9562 requires.

use sha2::{Digest, Sha256};

/// A `2.25.` UID derived from `seed` and `label`. Same inputs, same UID.
pub fn derived_uid(seed: u64, label: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"sample-dicom synthetic uid v1\0");
    h.update(seed.to_be_bytes());
    h.update(label.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0F) | 0x80; // version 8
    b[8] = (b[8] & 0x3F) | 0x80; // RFC variant
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// Implementation Class UID written in every file meta group.
pub fn implementation_class_uid() -> String {
    derived_uid(0, "implementation-class")
}

/// A small deterministic pseudo-random generator (SplitMix64), for phantom noise.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-amp, amp].
    pub fn noise(&mut self, amp: i32) -> i32 {
        if amp <= 0 {
            return 0;
        }
        (self.next_u64() % (2 * amp as u64 + 1)) as i32 - amp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_valid_and_stable() {
        let a = derived_uid(7, "study");
        assert_eq!(a, derived_uid(7, "study"));
        assert_ne!(a, derived_uid(8, "study"));
        assert!(a.starts_with("2.25."));
        assert!(a.len() <= 64);
        let tail = &a[5..];
        assert!(tail.bytes().all(|c| c.is_ascii_digit()));
        assert!(!tail.starts_with('0'));
    }
}
