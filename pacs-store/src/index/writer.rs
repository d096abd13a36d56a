//! Group commit of instance inserts.
//!
//! Every association hands its insert to one writer task. The task takes whatever inserts
//! are waiting (up to [`MAX_BATCH`]) and writes them in one transaction, so one fsync of the
//! database serves them all. If the batch fails (say, one UID was indexed meanwhile), it is
//! rolled back and each insert is retried alone so that one bad row never fails the others.

use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::instances::NewInstance;
use super::{is_unique_violation, name_keys, outbox};
use crate::{Result, StoreError};

const MAX_BATCH: usize = 64;

type Job = (NewInstance, oneshot::Sender<Result<()>>);

#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    done: std::sync::Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

pub(super) fn spawn(pool: AnyPool) -> WriterHandle {
    let (tx, rx) = mpsc::channel::<Job>(1024);
    let task = tokio::spawn(run(pool, rx));
    WriterHandle {
        tx,
        done: std::sync::Arc::new(tokio::sync::Mutex::new(Some(task))),
    }
}

impl WriterHandle {
    pub(super) async fn insert(&self, new: NewInstance) -> Result<()> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send((new, reply))
            .await
            .map_err(|_| StoreError::Config("the index writer has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Config("the index writer stopped before answering".into()))?
    }

    /// Lets queued inserts finish. Only the last clone's shutdown has an effect on the task;
    /// earlier ones return at once.
    pub(super) async fn shutdown(&self) {
        // The task ends when every sender is dropped; we cannot drop the others' senders, so
        // wait only if nothing else holds one.
        if self.tx.strong_count() > 1 {
            return;
        }
        let handle = self.done.lock().await.take();
        if let Some(h) = handle {
            h.abort();
            let _ = h.await;
        }
    }
}

async fn run(pool: AnyPool, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let jobs = std::mem::take(&mut batch);
        metrics::histogram!("pacs_index_batch_size").record(jobs.len() as f64);
        let news: Vec<&NewInstance> = jobs.iter().map(|(n, _)| n).collect();
        let result = write_batch(&pool, &news).await;
        drop(news);
        match result {
            Ok(()) => {
                for (_, reply) in jobs {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) if jobs.len() == 1 => {
                let (_, reply) = jobs.into_iter().next().expect("one job");
                let _ = reply.send(Err(e));
            }
            Err(e) => {
                tracing::debug!(error = %e, n = jobs.len(), "batch insert failed; retrying one by one");
                for (new, reply) in jobs {
                    let _ = reply.send(write_batch(&pool, &[&new]).await);
                }
            }
        }
    }
}

async fn write_batch(pool: &AnyPool, news: &[&NewInstance]) -> Result<()> {
    let mut tx = pool.begin().await?;
    let mut payloads = Vec::with_capacity(news.len());
    for new in news {
        payloads.push(insert_one(&mut tx, new).await?);
    }
    // The `instance_stored` events go last, after every row of the batch (outbox docs).
    let events: Vec<outbox::NewEvent> = news
        .iter()
        .zip(&payloads)
        .map(|(n, payload)| outbox::NewEvent {
            kind: "instance_stored",
            study: outbox::EventStudy::Uid(&n.attrs.study_instance_uid),
            sop_instance_uid: Some(&n.attrs.sop_instance_uid),
            payload,
            created_at: n.received_at,
        })
        .collect();
    outbox::append(&mut tx, &events).await?;
    tx.commit().await?;
    Ok(())
}

/// Writes one instance's rows; returns the payload of its `instance_stored` event.
async fn insert_one(
    tx: &mut Transaction<'static, Any>,
    n: &NewInstance,
) -> Result<serde_json::Value> {
    let a = &n.attrs;
    let now = n.received_at;
    let (issuer, patient_id) = n.patient_key();
    let name = a.patient_name.as_ref();
    let patient = sqlx::query(
        "INSERT INTO patients (issuer, patient_id, issuer_of_patient_id, patient_name, name_alphabetic, \
           name_ideographic, name_phonetic, birth_date, sex, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
         ON CONFLICT (issuer, patient_id) DO UPDATE SET \
           patient_name = COALESCE(excluded.patient_name, patients.patient_name), \
           name_alphabetic = COALESCE(excluded.name_alphabetic, patients.name_alphabetic), \
           name_ideographic = COALESCE(excluded.name_ideographic, patients.name_ideographic), \
           name_phonetic = COALESCE(excluded.name_phonetic, patients.name_phonetic), \
           birth_date = COALESCE(excluded.birth_date, patients.birth_date), \
           sex = COALESCE(excluded.sex, patients.sex), \
           updated_at = excluded.updated_at \
         RETURNING id, patient_name, name_alphabetic, name_ideographic, name_phonetic, \
           name_keys_source",
    )
    .bind(&issuer)
    .bind(&patient_id)
    .bind(&a.issuer_of_patient_id)
    .bind(name.map(|p| p.to_dicom_string()).filter(|s| !s.is_empty()))
    .bind(name.map(|p| p.alphabetic.clone()).filter(|s| !s.is_empty()))
    .bind(name.map(|p| p.ideographic.clone()).filter(|s| !s.is_empty()))
    .bind(name.map(|p| p.phonetic.clone()).filter(|s| !s.is_empty()))
    .bind(&a.patient_birth_date)
    .bind(&a.patient_sex)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let patient_ref: i64 = patient.try_get(0)?;
    let stored_names = name_keys::StoredNames {
        whole: patient.try_get(1)?,
        alphabetic: patient.try_get(2)?,
        ideographic: patient.try_get(3)?,
        phonetic: patient.try_get(4)?,
    };
    let keys_source: Option<String> = patient.try_get(5)?;
    name_keys::refresh(tx, patient_ref, &stored_names, keys_source.as_deref()).await?;

    let referring = a
        .referring_physician_name
        .as_ref()
        .map(|p| p.to_dicom_string())
        .filter(|s| !s.is_empty());
    let study_ref: i64 = sqlx::query(
        "INSERT INTO studies (study_instance_uid, patient_ref, clinic_id, source_ae, study_date, study_time, \
           accession_number, study_id, study_description, referring_physician_name, institution_name, \
           requested_priority, first_received_at, last_received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
         ON CONFLICT (study_instance_uid) DO UPDATE SET \
           last_received_at = CASE WHEN $14 = 1 THEN studies.last_received_at \
             ELSE excluded.last_received_at END, \
           state = CASE WHEN $14 = 1 THEN studies.state ELSE 'receiving' END, \
           study_date = COALESCE(studies.study_date, excluded.study_date), \
           study_time = COALESCE(studies.study_time, excluded.study_time), \
           accession_number = COALESCE(studies.accession_number, excluded.accession_number), \
           study_id = COALESCE(studies.study_id, excluded.study_id), \
           study_description = COALESCE(studies.study_description, excluded.study_description), \
           referring_physician_name = COALESCE(studies.referring_physician_name, excluded.referring_physician_name), \
           institution_name = COALESCE(studies.institution_name, excluded.institution_name), \
           requested_priority = COALESCE(studies.requested_priority, excluded.requested_priority) \
         RETURNING id",
    )
    .bind(&a.study_instance_uid)
    .bind(patient_ref)
    .bind(n.clinic_id)
    .bind(&n.source_ae)
    .bind(&a.study_date)
    .bind(&a.study_time)
    .bind(&a.accession_number)
    .bind(&a.study_id)
    .bind(&a.study_description)
    .bind(&referring)
    .bind(&a.institution_name)
    .bind(&a.requested_procedure_priority)
    .bind(now)
    .bind(i64::from(n.archive_authored))
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;

    let series_ref: i64 = sqlx::query(
        "INSERT INTO series (series_instance_uid, study_ref, modality, series_number, series_description, \
           body_part_examined, series_date, series_time, station_name, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (series_instance_uid) DO UPDATE SET \
           modality = COALESCE(series.modality, excluded.modality), \
           series_number = COALESCE(series.series_number, excluded.series_number), \
           series_description = COALESCE(series.series_description, excluded.series_description), \
           body_part_examined = COALESCE(series.body_part_examined, excluded.body_part_examined) \
         RETURNING id, study_ref",
    )
    .bind(&a.series_instance_uid)
    .bind(study_ref)
    .bind(&a.modality)
    .bind(a.series_number)
    .bind(&a.series_description)
    .bind(&a.body_part_examined)
    .bind(&a.series_date)
    .bind(&a.series_time)
    .bind(&a.station_name)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map(|r| -> Result<(i64, i64)> { Ok((r.try_get(0)?, r.try_get(1)?)) })??
    .0;

    let charset =
        (!a.specific_character_set.is_empty()).then(|| a.specific_character_set.join("\\"));
    sqlx::query(
        "INSERT INTO instances (sop_instance_uid, series_ref, study_ref, sop_class_uid, instance_number, \
           transfer_syntax_uid, object_key, size_bytes, dataset_offset, content_hash, rows, columns, \
           number_of_frames, specific_character_set, clinic_id, source_ae, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&a.sop_instance_uid)
    .bind(series_ref)
    .bind(study_ref)
    .bind(&a.sop_class_uid)
    .bind(a.instance_number)
    .bind(&n.transfer_syntax_uid)
    .bind(n.object_key.as_str())
    .bind(n.size_bytes)
    .bind(n.dataset_offset)
    .bind(&n.content_hash)
    .bind(a.rows)
    .bind(a.columns)
    .bind(a.number_of_frames)
    .bind(charset)
    .bind(n.clinic_id)
    .bind(&n.source_ae)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::AlreadyExists(format!("SOP Instance {}", a.sop_instance_uid))
        } else {
            e.into()
        }
    })?;

    sqlx::query(
        "UPDATE series SET number_of_instances = number_of_instances + 1, size_bytes = size_bytes + $1 WHERE id = $2",
    )
    .bind(n.size_bytes)
    .bind(series_ref)
    .execute(&mut **tx)
    .await?;

    // Study-level computed attributes, kept current on every insert so that queries never
    // aggregate at read time.
    let rows = sqlx::query("SELECT modality, body_part_examined FROM series WHERE study_ref = $1")
        .bind(study_ref)
        .fetch_all(&mut **tx)
        .await?;
    let mut modalities = std::collections::BTreeSet::new();
    let mut body_parts = std::collections::BTreeSet::new();
    for r in &rows {
        if let Some(m) = r.try_get::<Option<String>, _>(0)?.filter(|m| !m.is_empty()) {
            modalities.insert(m);
        }
        if let Some(b) = r.try_get::<Option<String>, _>(1)?.filter(|b| !b.is_empty()) {
            body_parts.insert(b);
        }
    }
    sqlx::query(
        "UPDATE studies SET number_of_instances = number_of_instances + 1, size_bytes = size_bytes + $1, \
           number_of_series = $2, modalities_in_study = $3, body_parts = $4 WHERE id = $5",
    )
    .bind(n.size_bytes)
    .bind(rows.len() as i64)
    .bind(modalities.into_iter().collect::<Vec<_>>().join("\\"))
    .bind(body_parts.into_iter().collect::<Vec<_>>().join("\\"))
    .bind(study_ref)
    .execute(&mut **tx)
    .await?;

    let payload = serde_json::json!({
        "series_instance_uid": a.series_instance_uid,
        "sop_class_uid": a.sop_class_uid,
        "source_ae": n.source_ae,
        "clinic_id": n.clinic_id,
    });
    Ok(payload)
}
