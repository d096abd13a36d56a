//! Sending a stored instance in another transfer syntax than it was stored in, for the
//! retrieve services (C-GET, C-MOVE) when the peer does not accept the stored one.
//!
//! The archive stores what it received; a peer that accepts that syntax gets those bytes
//! unchanged. Otherwise the instance goes in a native (uncompressed) syntax the peer
//! accepted: native ↔ native is a re-encoding of the data set (dicom-object), compressed →
//! native decodes the pixel data (dicom-pixeldata's `Transcode`). Decoding runs off the
//! async threads, under `catch_unwind`, and only for frames whose declared size stays
//! within [`MAX_DECODED_BYTES`]: a stored object is trusted to be well formed, not to be
//! small.

use bytes::Bytes;
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex as _;
use dicom_object::OpenFileOptions;
use dicom_object::file::ReadPreamble;
use dicom_pixeldata::Transcode as _;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use pacs_store::archive::Archive;
use pacs_store::objects::ObjectKey;
use pacs_store::query::Retrievable;

/// The native transfer syntaxes an instance can be re-encoded into, in order of
/// preference.
pub const NATIVE: [&str; 2] = [
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
];

/// The largest decoded pixel data a transcoding may produce (all frames).
pub const MAX_DECODED_BYTES: u64 = 2 << 30;

/// Whether an instance stored in `stored` can be sent in `target`.
pub fn sendable(stored: &str, target: &str) -> bool {
    stored == target || (NATIVE.contains(&target) && TransferSyntaxRegistry.get(stored).is_some())
}

/// Of the transfer syntaxes a peer accepted, the one to send an instance stored in
/// `stored` in: the stored one if accepted, else a native one.
pub fn pick<'a>(
    stored: &str,
    accepted: impl IntoIterator<Item = &'a str> + Clone,
) -> Option<&'a str> {
    let accepted = accepted.into_iter();
    let all: Vec<&str> = accepted.collect();
    all.iter()
        .find(|ts| **ts == stored)
        .or_else(|| NATIVE.iter().find_map(|n| all.iter().find(|ts| *ts == n)))
        .copied()
}

/// The data set of `item` (no meta group) in `target`: the stored bytes when `target` is
/// the stored syntax, else re-encoded.
pub async fn dataset_in(
    archive: &Archive,
    item: &Retrievable,
    target: &str,
) -> Result<Bytes, String> {
    let key = ObjectKey::parse(&item.object_key).map_err(|e| e.to_string())?;
    let bytes = archive.objects().get(&key).await.map_err(|e| {
        tracing::error!(error = %e, sop = %item.sop_instance_uid, "retrieve: cannot read a stored object");
        "the stored object cannot be read".to_owned()
    })?;
    if target == item.transfer_syntax_uid {
        return Ok(bytes.slice((item.dataset_offset as usize).min(bytes.len())..));
    }
    let target = target.to_owned();
    let sop = item.sop_instance_uid.clone();
    let from = item.transfer_syntax_uid.clone();
    tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(|| transcode(&bytes, &target))
            .unwrap_or_else(|_| Err("the decoder failed".into()))
            .map(Bytes::from)
            .map_err(|e| format!("cannot convert {sop} from {from} to {target}: {e}"))
    })
    .await
    .map_err(|e| format!("transcoding task failed: {e}"))?
}

fn transcode(part10: &[u8], target: &str) -> Result<Vec<u8>, String> {
    let ts = TransferSyntaxRegistry
        .get(target)
        .ok_or_else(|| format!("unknown transfer syntax {target}"))?;
    let body = part10.get(128..).filter(|b| b.starts_with(b"DICM"));
    let body = body.ok_or("the stored object has no DICOM file header")?;
    let mut obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(body)
        .map_err(|e| e.to_string())?;
    if obj.get(tags::PIXEL_DATA).is_some() {
        let n = |tag| {
            obj.get(tag)
                .and_then(|e| e.to_int::<u64>().ok())
                .unwrap_or(1)
        };
        let bits = n(tags::BITS_ALLOCATED).max(8);
        let decoded = n(tags::ROWS)
            .saturating_mul(n(tags::COLUMNS))
            .saturating_mul(n(tags::NUMBER_OF_FRAMES))
            .saturating_mul(n(tags::SAMPLES_PER_PIXEL))
            .saturating_mul(bits.div_ceil(8));
        if decoded > MAX_DECODED_BYTES {
            return Err(format!(
                "{decoded} bytes of decoded pixel data is more than the {MAX_DECODED_BYTES} a \
                 conversion may make"
            ));
        }
    }
    obj.transcode(ts).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG_LS: &str = "1.2.840.10008.1.2.4.80";

    #[test]
    fn the_stored_syntax_first_then_native() {
        let both = [uids::IMPLICIT_VR_LITTLE_ENDIAN, JPEG_LS];
        assert_eq!(pick(JPEG_LS, both), Some(JPEG_LS));
        assert_eq!(
            pick(uids::EXPLICIT_VR_LITTLE_ENDIAN, both),
            Some(uids::IMPLICIT_VR_LITTLE_ENDIAN)
        );
        assert_eq!(pick(uids::IMPLICIT_VR_LITTLE_ENDIAN, [JPEG_LS]), None);
        assert!(sendable(JPEG_LS, uids::EXPLICIT_VR_LITTLE_ENDIAN));
        assert!(!sendable(uids::EXPLICIT_VR_LITTLE_ENDIAN, JPEG_LS));
    }
}
