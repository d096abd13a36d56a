//! Integrity check (`pacs check [--repair]`): every index row has its object with a matching
//! hash, and every object has its row.

use std::collections::HashSet;

use futures::StreamExt;

use crate::ae_title::AeTitle;
use crate::archive::{Archive, IngestOutcome, Source};
use crate::objects::ObjectKey;
use crate::{Result, StoreError};

/// What `check` found (and, with repair, did).
#[derive(Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub indexed_objects: usize,
    pub stored_objects: usize,
    /// Index rows whose object is missing: `sop_instance_uid object_key`.
    pub missing_objects: Vec<String>,
    /// Objects whose content no longer hashes to what was received.
    pub hash_mismatches: Vec<String>,
    /// Objects no index row refers to (a crash between storing and indexing).
    pub orphaned_objects: Vec<String>,
    /// Files in the staging area: stores in flight, or leftovers of a crash (never
    /// acknowledged, removed when the server starts). Not damage.
    pub staging_leftovers: usize,
    /// What `--repair` did.
    pub repairs: Vec<String>,
    /// Damage found that is still there (not repaired, or not repairable).
    pub unrepaired: usize,
}

impl CheckReport {
    /// No damage left (after repairs, when repairing).
    pub fn is_clean(&self) -> bool {
        self.unrepaired == 0
    }
}

/// Checks the archive; with `repair`, re-indexes orphaned objects (they are intact images
/// whose index insert was interrupted), drops rows whose object is gone, and removes
/// staging leftovers. Hash mismatches are never "repaired": they need a person.
pub async fn check(archive: &Archive, repair: bool) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    if repair {
        // Interrupted ingests first, exactly as the server does when it starts.
        let n = archive.recover_staging().await?;
        if n > 0 {
            report.repairs.push(format!(
                "recovered {n} interrupted ingest(s) from the staging area"
            ));
        }
    }
    let locations = archive.index().all_object_locations().await?;
    let stored: HashSet<String> = archive
        .objects()
        .list()
        .await?
        .into_iter()
        .map(|k| k.to_string())
        .collect();
    report.indexed_objects = locations.len();
    report.stored_objects = stored.len();
    let mut referenced = HashSet::with_capacity(locations.len());
    for loc in &locations {
        referenced.insert(loc.object_key.clone());
        if !stored.contains(&loc.object_key) {
            report
                .missing_objects
                .push(format!("{} {}", loc.sop_instance_uid, loc.object_key));
            if repair {
                match loc.table {
                    "instances" => {
                        archive
                            .index()
                            .remove_instance_row(&loc.sop_instance_uid)
                            .await?
                    }
                    _ => archive.index().remove_conflict_row(&loc.object_key).await?,
                }
                report.repairs.push(format!(
                    "removed the index row of {} (object {} is gone)",
                    loc.sop_instance_uid, loc.object_key
                ));
            } else {
                report.unrepaired += 1;
            }
            continue;
        }
        let key = ObjectKey::parse(&loc.object_key)?;
        let (hash, len) = hash_object(archive, &key, loc.dataset_offset as u64).await?;
        if hash != loc.content_hash || len != loc.size_bytes as u64 {
            report.hash_mismatches.push(format!(
                "{} {}: expected BLAKE3 {} and {} bytes, found {} and {} bytes",
                loc.sop_instance_uid, loc.object_key, loc.content_hash, loc.size_bytes, hash, len
            ));
            report.unrepaired += 1;
        }
    }
    for key in stored.iter().filter(|k| !referenced.contains(*k)) {
        report.orphaned_objects.push(key.clone());
        if repair {
            let key = ObjectKey::parse(key)?;
            match reindex_orphan(archive, &key).await? {
                Ok(done) => report.repairs.push(done),
                Err(left) => {
                    report.repairs.push(left);
                    report.unrepaired += 1;
                }
            }
        } else {
            report.unrepaired += 1;
        }
    }
    report.staging_leftovers = std::fs::read_dir(archive.staging_dir())
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
                .count()
        })
        .unwrap_or(0);
    Ok(report)
}

/// BLAKE3 of the bytes after `offset`, and the object's total length.
async fn hash_object(archive: &Archive, key: &ObjectKey, offset: u64) -> Result<(String, u64)> {
    let mut stream = archive.objects().get_stream(key).await?;
    let mut hasher = blake3::Hasher::new();
    let mut pos = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let start = offset.saturating_sub(pos).min(chunk.len() as u64) as usize;
        hasher.update(&chunk[start..]);
        pos += chunk.len() as u64;
    }
    Ok((hasher.finalize().to_hex().to_string(), pos))
}

/// Indexes an orphaned object through the normal ingest path (so it gets the same checks),
/// attributing it to the clinic of the AE title recorded in its meta group, then removes
/// the orphan (ingest stored its own copy, or already had it).
async fn reindex_orphan(
    archive: &Archive,
    key: &ObjectKey,
) -> Result<std::result::Result<String, String>> {
    let bytes = archive.objects().get(key).await?;
    let tmp = archive
        .staging_dir()
        .join(format!("orphan-{}.dcm.tmp", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, &bytes).map_err(|e| StoreError::io("cannot write", &tmp, e))?;
    let meta = crate::header::read_file_meta(&mut std::io::Cursor::new(&bytes[..]));
    let mut source = Source::default();
    if let Some(ae) = meta.ok().and_then(|m| m.source_ae_title)
        && let Ok(ae) = AeTitle::parse(&ae)
        && let Some(reg) = archive.index().find_ae(&ae).await?
    {
        source = Source {
            clinic_id: Some(reg.clinic_id),
            clinic_name: Some(reg.clinic_name),
            ae_title: Some(ae.to_string()),
            uploader: None,
            archive_authored: false,
        };
    }
    let outcome = archive.import_file(&tmp, &source).await;
    let _ = std::fs::remove_file(&tmp);
    let msg = match outcome {
        Ok(IngestOutcome::Stored { study_instance_uid }) => {
            archive.objects().delete(key).await?;
            Ok(format!(
                "re-indexed orphaned object {key} (study {study_instance_uid})"
            ))
        }
        Ok(IngestOutcome::Duplicate) => {
            archive.objects().delete(key).await?;
            Ok(format!(
                "removed orphaned object {key}: the same instance is archived"
            ))
        }
        Ok(IngestOutcome::ConflictKept { object_key }) => {
            archive.objects().delete(key).await?;
            Ok(format!(
                "orphaned object {key} kept as conflict copy {object_key}"
            ))
        }
        Err(e) => Err(format!(
            "left orphaned object {key} in place: it cannot be indexed ({e})"
        )),
    };
    Ok(msg)
}
