//! Instance rows: lookup, insertion (through the group-commit writer), conflicts, and the
//! listings `pacs check` walks.

use sqlx::Row;

use super::Index;
use crate::header::IndexedAttributes;
use crate::objects::ObjectKey;
use crate::{Result, StoreError};

/// Everything the index records about one received instance.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub attrs: IndexedAttributes,
    pub transfer_syntax_uid: String,
    pub object_key: ObjectKey,
    pub size_bytes: i64,
    /// Where the data set starts in the stored object (after preamble and meta group).
    pub dataset_offset: i64,
    /// BLAKE3 (hex) of the data set bytes as received.
    pub content_hash: String,
    pub clinic_id: Option<i64>,
    pub clinic_name: Option<String>,
    pub source_ae: Option<String>,
    pub received_at: i64,
    /// Made by this archive: the study's state and quiet period stay as they are
    /// ([`crate::archive::Source::archive_authored`]).
    pub archive_authored: bool,
}

impl NewInstance {
    /// The namespace that qualifies the Patient ID: the Issuer of Patient ID when the sender
    /// gave one, otherwise the sending clinic — the same ID from two clinics is two patients
    /// until someone links them (Orthanc keys patients on PatientID alone and mixes them).
    pub fn patient_issuer(&self) -> String {
        patient_namespace(
            self.attrs.issuer_of_patient_id.as_deref(),
            self.clinic_name.as_deref(),
            self.source_ae.as_deref(),
        )
    }

    /// The Patient ID to key on; an empty one is scoped to its study so that unrelated
    /// anonymous patients are never merged.
    pub fn patient_key(&self) -> (String, String) {
        match &self.attrs.patient_id {
            Some(id) if !id.trim().is_empty() => (self.patient_issuer(), id.trim().to_owned()),
            _ => (
                format!("study:{}", self.attrs.study_instance_uid),
                String::new(),
            ),
        }
    }
}

/// The namespace of a Patient ID: the Issuer of Patient ID when the sender gave one, else
/// the sending clinic, else the sending AE title, else `local`.
pub fn patient_namespace(issuer: Option<&str>, clinic: Option<&str>, ae: Option<&str>) -> String {
    match (issuer.map(str::trim), clinic, ae) {
        (Some(i), _, _) if !i.is_empty() => i.to_owned(),
        (_, Some(c), _) => format!("clinic:{c}"),
        (_, _, Some(ae)) => format!("ae:{ae}"),
        _ => "local".to_owned(),
    }
}

/// A second copy of a known SOP Instance UID with different content.
#[derive(Debug, Clone)]
pub struct NewConflict {
    pub sop_instance_uid: String,
    pub object_key: ObjectKey,
    pub content_hash: String,
    pub size_bytes: i64,
    pub dataset_offset: i64,
    pub transfer_syntax_uid: String,
    pub clinic_id: Option<i64>,
    pub source_ae: Option<String>,
    pub received_at: i64,
}

/// An instance as the index knows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceRecord {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub series_instance_uid: String,
    pub study_instance_uid: String,
    pub transfer_syntax_uid: String,
    pub object_key: String,
    pub size_bytes: i64,
    pub dataset_offset: i64,
    pub content_hash: String,
    pub source_ae: Option<String>,
}

/// Where an indexed object lives and what it must hash to, for `pacs check`.
#[derive(Debug, Clone)]
pub struct InstanceLocation {
    pub object_key: String,
    pub content_hash: String,
    pub dataset_offset: i64,
    pub size_bytes: i64,
    /// `instances` or `instance_conflicts`.
    pub table: &'static str,
    pub sop_instance_uid: String,
}

impl Index {
    /// The indexed instance with this SOP Instance UID.
    pub async fn find_instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>> {
        let row = sqlx::query(
            "SELECT i.sop_instance_uid, i.sop_class_uid, se.series_instance_uid, st.study_instance_uid, \
                    i.transfer_syntax_uid, i.object_key, i.size_bytes, i.dataset_offset, i.content_hash, i.source_ae \
             FROM instances i JOIN series se ON se.id = i.series_ref JOIN studies st ON st.id = i.study_ref \
             WHERE i.sop_instance_uid = $1",
        )
        .bind(sop_instance_uid)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(InstanceRecord {
                sop_instance_uid: r.try_get(0)?,
                sop_class_uid: r.try_get(1)?,
                series_instance_uid: r.try_get(2)?,
                study_instance_uid: r.try_get(3)?,
                transfer_syntax_uid: r.try_get(4)?,
                object_key: r.try_get(5)?,
                size_bytes: r.try_get(6)?,
                dataset_offset: r.try_get(7)?,
                content_hash: r.try_get(8)?,
                source_ae: r.try_get(9)?,
            })
        })
        .transpose()
    }

    /// The patient an instance belongs to: (issuer, patient ID, name as DICOM groups).
    pub async fn patient_of_instance(
        &self,
        sop_instance_uid: &str,
    ) -> Result<Option<(String, String, Option<String>)>> {
        let row = sqlx::query(
            "SELECT p.issuer, p.patient_id, p.patient_name FROM instances i \
             JOIN studies s ON s.id = i.study_ref JOIN patients p ON p.id = s.patient_ref \
             WHERE i.sop_instance_uid = $1",
        )
        .bind(sop_instance_uid)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .transpose()
    }

    /// Whether any index row (instance or conflict copy) refers to this object.
    pub async fn object_key_indexed(&self, key: &ObjectKey) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM instances WHERE object_key = $1 \
             UNION ALL SELECT 1 FROM instance_conflicts WHERE object_key = $1",
        )
        .bind(key.as_str())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Whether a conflict copy with this content is already kept for the UID.
    pub async fn has_conflict_copy(
        &self,
        sop_instance_uid: &str,
        content_hash: &str,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM instance_conflicts WHERE sop_instance_uid = $1 AND content_hash = $2",
        )
        .bind(sop_instance_uid)
        .bind(content_hash)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Indexes a new instance (group-committed with concurrent inserts). Fails with
    /// [`StoreError::AlreadyExists`] when the SOP Instance UID was indexed meanwhile.
    pub async fn insert_instance(&self, new: NewInstance) -> Result<()> {
        self.writer.insert(new).await
    }

    /// Records a conflict copy.
    pub async fn insert_conflict(&self, c: NewConflict) -> Result<()> {
        sqlx::query(
            "INSERT INTO instance_conflicts (sop_instance_uid, object_key, content_hash, size_bytes, \
             dataset_offset, transfer_syntax_uid, clinic_id, source_ae, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&c.sop_instance_uid)
        .bind(c.object_key.as_str())
        .bind(&c.content_hash)
        .bind(c.size_bytes)
        .bind(c.dataset_offset)
        .bind(&c.transfer_syntax_uid)
        .bind(c.clinic_id)
        .bind(&c.source_ae)
        .bind(c.received_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every object the index refers to (instances and conflict copies).
    pub async fn all_object_locations(&self) -> Result<Vec<InstanceLocation>> {
        let mut out = Vec::new();
        for (table, sql) in [
            (
                "instances",
                "SELECT object_key, content_hash, dataset_offset, size_bytes, sop_instance_uid FROM instances",
            ),
            (
                "instance_conflicts",
                "SELECT object_key, content_hash, dataset_offset, size_bytes, sop_instance_uid FROM instance_conflicts",
            ),
        ] {
            for r in sqlx::query(sql).fetch_all(self.pool()).await? {
                out.push(InstanceLocation {
                    object_key: r.try_get(0)?,
                    content_hash: r.try_get(1)?,
                    dataset_offset: r.try_get(2)?,
                    size_bytes: r.try_get(3)?,
                    table,
                    sop_instance_uid: r.try_get(4)?,
                });
            }
        }
        Ok(out)
    }

    /// Removes the index rows of an instance whose object is gone (`pacs check --repair`),
    /// keeping the series and study counts true.
    pub async fn remove_instance_row(&self, sop_instance_uid: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "SELECT series_ref, study_ref, size_bytes FROM instances WHERE sop_instance_uid = $1",
        )
        .bind(sop_instance_uid)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("instance {sop_instance_uid}")))?;
        let (series_ref, study_ref, size): (i64, i64, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        sqlx::query("DELETE FROM instances WHERE sop_instance_uid = $1")
            .bind(sop_instance_uid)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE series SET number_of_instances = number_of_instances - 1, size_bytes = size_bytes - $1 WHERE id = $2",
        )
        .bind(size)
        .bind(series_ref)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE studies SET number_of_instances = number_of_instances - 1, size_bytes = size_bytes - $1 WHERE id = $2",
        )
        .bind(size)
        .bind(study_ref)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a conflict-copy row whose object is gone.
    pub async fn remove_conflict_row(&self, object_key: &str) -> Result<()> {
        sqlx::query("DELETE FROM instance_conflicts WHERE object_key = $1")
            .bind(object_key)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
