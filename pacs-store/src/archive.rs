//! The archive: receiving an object durably, indexing it, and answering what happened.
//!
//! Ingest path (the same for C-STORE, STOW-RS later and `pacs import`):
//! 1. [`Archive::stage`] opens a staging file under the data directory and writes the
//!    128-byte preamble, `DICM` and the file meta group; the adapter streams the data set
//!    bytes into it ([`StagedObject::write_dataset`]), hashed on the way, never whole in memory.
//! 2. [`Archive::ingest`] fsyncs it, reads the header with [`crate::header`] (never decoding
//!    pixel data, never rewriting the received bytes), checks that it is what the sender said,
//!    then moves it into the object store (durable on return), then indexes it in one
//!    transaction with its `instance_stored` event. Only then does the caller acknowledge.
//! 3. Anything that fails on the way removes what it wrote: a staging file is deleted on
//!    drop, an object whose index insert failed is deleted.
//! 4. Every ingest, stored or refused, appends one audit event ([`crate::audit`]): 110104
//!    DICOM Instances Transferred for the network ([`Channel::Network`]), 110107 Import for
//!    files ([`Channel::Files`]); appends of concurrent ingests are written together.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::audit::{self, Action, AuditEvent, EventId, Outcome};
use crate::header::{self, HeaderError, IndexedAttributes};
use crate::index::{Index, NewConflict, NewInstance, now_micros};
use crate::objects::{ObjectKey, ObjectStore};
use crate::{Result, StoreError};

/// This implementation's class UID and version name, written into file meta groups we make.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.156874699224213967349718253773726085141";
pub const IMPLEMENTATION_VERSION_NAME: &str = "REGIONAL_PACS_01";

/// Who sent an object.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub clinic_id: Option<i64>,
    pub clinic_name: Option<String>,
    pub ae_title: Option<String>,
    /// The user who uploaded it over HTTP (STOW-RS): (username, role).
    pub uploader: Option<(String, String)>,
    /// Made by this archive (a signed report's SR and PDF): joins its study without
    /// reopening it, so it starts no quiet period and no `study_updated` event (which
    /// would ask for an addendum review of the report it carries).
    pub archive_authored: bool,
}

/// What the sender declared about the object (the C-STORE command, or the file meta).
#[derive(Debug, Clone)]
pub struct Declared {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    /// The study the object must belong to, when the sender named one (STOW-RS to
    /// `/studies/{study}`): another study is refused as not matching.
    pub study_instance_uid: Option<String>,
}

/// The result of a successful ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// New instance, stored and indexed.
    Stored { study_instance_uid: String },
    /// The same SOP Instance with identical content was already archived: nothing new kept.
    Duplicate,
    /// The SOP Instance UID was already archived with different content. The first copy
    /// stays the instance; this copy is kept aside as a conflict for review, never
    /// overwriting the first.
    ConflictKept { object_key: String },
}

/// Why an object was refused. Adapters map these to protocol statuses.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The data set cannot be parsed (DIMSE 0xC000 family).
    #[error("the data set cannot be understood: {0}")]
    CannotUnderstand(#[source] HeaderError),
    /// The data set does not match what the sender declared or lacks its identity
    /// (DIMSE 0xA900).
    #[error("the data set does not match its SOP class: {0}")]
    DoesNotMatch(String),
    /// The object is larger than the configured maximum (DIMSE 0xA700).
    #[error("the object is larger than the configured maximum of {limit} bytes")]
    TooLarge { limit: u64 },
    /// Storage or index failure (out of resources: 0xA700; otherwise 0xC000 family).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    pub fn is_out_of_resources(&self) -> bool {
        match self {
            IngestError::TooLarge { .. } => true,
            IngestError::Store(e) => e.is_out_of_resources(),
            _ => false,
        }
    }
}

/// The archive: object store + index + staging area.
#[derive(Debug, Clone)]
pub struct Archive {
    index: Index,
    objects: Arc<dyn ObjectStore>,
    staging_dir: PathBuf,
    max_object_size: u64,
    /// The command named in the audit events of file ingests.
    audit_command: &'static str,
}

impl Archive {
    /// Puts the parts together. `staging_dir` must be on the same filesystem as a
    /// filesystem object store (so that moving an object in is a rename).
    pub fn new(
        index: Index,
        objects: Arc<dyn ObjectStore>,
        staging_dir: PathBuf,
        max_object_size: u64,
    ) -> Result<Self> {
        std::fs::create_dir_all(&staging_dir)
            .map_err(|e| StoreError::io("cannot create the staging directory", &staging_dir, e))?;
        Ok(Archive {
            index,
            objects,
            staging_dir,
            max_object_size,
            audit_command: "pacs import",
        })
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    pub fn staging_dir(&self) -> &Path {
        &self.staging_dir
    }

    pub fn max_object_size(&self) -> u64 {
        self.max_object_size
    }

    /// Start-up recovery of the staging area after a crash. A staging file `<id>.part` is
    /// kept until its object is indexed, so a leftover one whose object exists in the store
    /// but is not indexed marks an interrupted ingest (never acknowledged): that object is
    /// removed. Then the staging file goes. Returns how many files were cleaned.
    pub async fn recover_staging(&self) -> Result<usize> {
        let mut leftovers = Vec::new();
        let rd = std::fs::read_dir(&self.staging_dir).map_err(|e| {
            StoreError::io("cannot list the staging directory", &self.staging_dir, e)
        })?;
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".part") {
                leftovers.push((entry.path(), ObjectKey::from_id(id).ok()));
            }
        }
        for (path, key) in &leftovers {
            if let Some(key) = key
                && self.objects.exists(key).await?
                && !self.index.object_key_indexed(key).await?
            {
                tracing::warn!(object_key = %key, "removing an object whose ingest was interrupted (never acknowledged)");
                self.objects.delete(key).await?;
            }
            let _ = std::fs::remove_file(path);
        }
        Ok(leftovers.len())
    }

    /// Starts a staged object for a data set arriving over the network: writes preamble,
    /// `DICM` and a file meta group made from what the sender declared.
    pub fn stage_network(
        &self,
        declared: &Declared,
        source_ae: Option<&str>,
    ) -> Result<StagedObject> {
        let mut builder = dicom_object::meta::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(declared.sop_class_uid.as_str())
            .media_storage_sop_instance_uid(declared.sop_instance_uid.as_str())
            .transfer_syntax(declared.transfer_syntax_uid.as_str())
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
        if let Some(ae) = source_ae {
            builder = builder.source_application_entity_title(ae);
        }
        let meta = builder
            .build()
            .map_err(|e| StoreError::Invalid(format!("cannot build the file meta group: {e}")))?;
        let mut head = vec![0u8; 128];
        head.extend_from_slice(b"DICM");
        meta.write(&mut head)
            .map_err(|e| StoreError::Invalid(format!("cannot write the file meta group: {e}")))?;
        self.stage_with_head(&head, declared.clone())
    }

    /// Starts a staged object whose first bytes (preamble + meta) are `head`, as read from
    /// a file: the original bytes are kept.
    pub fn stage_with_head(&self, head: &[u8], declared: Declared) -> Result<StagedObject> {
        // The staging file is named after the object key it will be stored under, which is
        // what lets start-up recovery find an interrupted ingest (see `recover_staging`).
        let key = ObjectKey::generate();
        let path = self.staging_dir.join(format!("{}.part", key.id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io("cannot create a staging file", &path, e))?;
        let mut staged = StagedObject {
            key,
            early_sync: None,
            unsynced: 0,
            path,
            // 64 KiB: data set fragments (up to the maximum PDU) are larger and bypass the
            // buffer instead of being copied through it.
            file: Some(std::io::BufWriter::with_capacity(64 * 1024, file)),
            hasher: blake3::Hasher::new(),
            dataset_offset: head.len() as u64,
            dataset_len: 0,
            limit: self.max_object_size,
            exceeded: false,
            declared,
            started: Instant::now(),
        };
        staged.write_raw(head)?;
        Ok(staged)
    }

    /// Makes a staged object durable, checks it and archives it. See the module docs.
    /// Audited as received over the network from an unknown address; adapters that know the
    /// peer call [`Archive::ingest_via`].
    pub async fn ingest(
        &self,
        staged: StagedObject,
        source: &Source,
    ) -> Result<IngestOutcome, IngestError> {
        self.ingest_via(staged, source, Channel::Network { peer: None })
            .await
    }

    /// [`Archive::ingest`], audited as arriving through `channel`.
    pub async fn ingest_via(
        &self,
        staged: StagedObject,
        source: &Source,
        channel: Channel,
    ) -> Result<IngestOutcome, IngestError> {
        let declared_uid = staged.declared.sop_instance_uid.clone();
        let mut subject = None;
        let outcome = self.ingest_unaudited(staged, source, &mut subject).await;
        self.audit_ingest(source, channel, &declared_uid, subject, &outcome)
            .await;
        outcome
    }

    async fn ingest_unaudited(
        &self,
        mut staged: StagedObject,
        source: &Source,
        subject: &mut Option<AuditSubject>,
    ) -> Result<IngestOutcome, IngestError> {
        if staged.exceeded {
            return Err(IngestError::TooLarge {
                limit: self.max_object_size,
            });
        }
        let started = staged.started;
        // Flush, fsync and parse the header off the async threads.
        let (staged, attrs) = tokio::task::spawn_blocking(move || -> Result<_, IngestError> {
            staged.sync()?;
            let attrs = staged.read_header()?;
            Ok((staged, attrs))
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("ingest task failed: {e}")))??;
        *subject = Some(AuditSubject::of(&attrs, source));

        let d = &staged.declared;
        if attrs.sop_class_uid != d.sop_class_uid {
            return Err(IngestError::DoesNotMatch(format!(
                "SOP Class UID in the data set is {} but {} was declared",
                attrs.sop_class_uid, d.sop_class_uid
            )));
        }
        if attrs.sop_instance_uid != d.sop_instance_uid {
            return Err(IngestError::DoesNotMatch(format!(
                "SOP Instance UID in the data set is {} but {} was declared",
                attrs.sop_instance_uid, d.sop_instance_uid
            )));
        }
        if let Some(study) = d
            .study_instance_uid
            .as_ref()
            .filter(|s| **s != attrs.study_instance_uid)
        {
            return Err(IngestError::DoesNotMatch(format!(
                "the instance belongs to study {}, not to study {study} it was sent to",
                attrs.study_instance_uid
            )));
        }
        let hash = staged.hasher.finalize().to_hex().to_string();
        let outcome = self.archive_checked(staged, attrs, hash, source).await;
        metrics::histogram!("pacs_ingest_seconds").record(started.elapsed().as_secs_f64());
        outcome
    }

    async fn archive_checked(
        &self,
        staged: StagedObject,
        attrs: IndexedAttributes,
        hash: String,
        source: &Source,
    ) -> Result<IngestOutcome, IngestError> {
        let sop_uid = attrs.sop_instance_uid.clone();
        if let Some(existing) = self.index.find_instance(&sop_uid).await? {
            return self
                .handle_known(staged, existing.content_hash, hash, source)
                .await;
        }
        let key = staged.key.clone();
        let size = staged.total_len() as i64;
        let study_uid = attrs.study_instance_uid.clone();
        self.objects.put_file(&key, &staged.path).await?;
        let new = NewInstance {
            attrs,
            transfer_syntax_uid: staged.declared.transfer_syntax_uid.clone(),
            object_key: key.clone(),
            size_bytes: size,
            dataset_offset: staged.dataset_offset as i64,
            content_hash: hash.clone(),
            clinic_id: source.clinic_id,
            clinic_name: source.clinic_name.clone(),
            source_ae: source.ae_title.clone(),
            received_at: now_micros(),
            archive_authored: source.archive_authored,
        };
        match self.index.insert_instance(new).await {
            Ok(()) => {
                metrics::counter!("pacs_instances_stored_total").increment(1);
                metrics::counter!("pacs_bytes_stored_total").increment(size as u64);
                drop(staged);
                Ok(IngestOutcome::Stored {
                    study_instance_uid: study_uid,
                })
            }
            Err(StoreError::AlreadyExists(_)) => {
                // Another association indexed the same UID between our look-up and insert.
                let existing = self.index.find_instance(&sop_uid).await?;
                match existing {
                    Some(e) if e.content_hash == hash => {
                        self.delete_quietly(&key).await;
                        Ok(IngestOutcome::Duplicate)
                    }
                    _ => self.record_conflict(staged, hash, source).await,
                }
            }
            Err(e) => {
                self.delete_quietly(&key).await;
                Err(e.into())
            }
        }
    }

    async fn handle_known(
        &self,
        staged: StagedObject,
        existing_hash: String,
        hash: String,
        source: &Source,
    ) -> Result<IngestOutcome, IngestError> {
        let sop_uid = &staged.declared.sop_instance_uid;
        if existing_hash == hash || self.index.has_conflict_copy(sop_uid, &hash).await? {
            metrics::counter!("pacs_instances_duplicate_total").increment(1);
            return Ok(IngestOutcome::Duplicate);
        }
        self.objects.put_file(&staged.key, &staged.path).await?;
        self.record_conflict(staged, hash, source).await
    }

    /// Indexes an already stored object as a conflict copy of a known SOP Instance UID.
    async fn record_conflict(
        &self,
        staged: StagedObject,
        hash: String,
        source: &Source,
    ) -> Result<IngestOutcome, IngestError> {
        let key = staged.key.clone();
        let sop_uid = staged.declared.sop_instance_uid.clone();
        let r = self
            .index
            .insert_conflict(NewConflict {
                sop_instance_uid: sop_uid.clone(),
                object_key: key.clone(),
                content_hash: hash,
                size_bytes: staged.total_len() as i64,
                dataset_offset: staged.dataset_offset as i64,
                transfer_syntax_uid: staged.declared.transfer_syntax_uid.clone(),
                clinic_id: source.clinic_id,
                source_ae: source.ae_title.clone(),
                received_at: now_micros(),
            })
            .await;
        if let Err(e) = r {
            self.delete_quietly(&key).await;
            return Err(e.into());
        }
        metrics::counter!("pacs_instances_conflict_total").increment(1);
        tracing::warn!(sop_instance_uid = %sop_uid, object_key = %key,
            "same SOP Instance UID with different content: first copy kept, new copy kept as a conflict");
        Ok(IngestOutcome::ConflictKept {
            object_key: key.to_string(),
        })
    }

    async fn delete_quietly(&self, key: &ObjectKey) {
        if let Err(e) = self.objects.delete(key).await {
            tracing::error!(object_key = %key, error = %e, "could not remove an object after a failed index insert; `pacs check --repair` will");
        }
    }

    /// Archives a DICOM Part 10 file (for `pacs import`): same checks and durability as a
    /// C-STORE; the file's own bytes are kept, meta group included, except the 128-byte
    /// preamble, which is stored zeroed.
    pub async fn import_file(
        &self,
        path: &Path,
        source: &Source,
    ) -> Result<IngestOutcome, IngestError> {
        let path = path.to_owned();
        let this = self.clone();
        let staged = tokio::task::spawn_blocking(move || -> Result<StagedObject, IngestError> {
            let f = File::open(&path).map_err(|e| StoreError::io("cannot open", &path, e))?;
            this.stage_part10(f, &path)
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("import task failed: {e}")))??;
        self.ingest_via(staged, source, Channel::Files).await
    }

    /// Archives a DICOM Part 10 object this archive made (a report's SR or PDF), as
    /// [`Archive::import_file`] does a file.
    pub async fn import_bytes(
        &self,
        bytes: Vec<u8>,
        source: &Source,
    ) -> Result<IngestOutcome, IngestError> {
        let this = self.clone();
        let staged = tokio::task::spawn_blocking(move || {
            this.stage_part10(
                std::io::Cursor::new(bytes),
                Path::new("(made by the archive)"),
            )
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("import task failed: {e}")))??;
        self.ingest_via(staged, source, Channel::Files).await
    }

    /// Stages a Part 10 stream (`name` for messages), preamble zeroed.
    fn stage_part10<R: Read + Seek>(
        &self,
        mut f: R,
        name: &Path,
    ) -> Result<StagedObject, IngestError> {
        let meta = header::read_file_meta(&mut BufReader::new(&mut f))
            .map_err(IngestError::CannotUnderstand)?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| StoreError::io("cannot read", name, e))?;
        let mut head = vec![0u8; meta.dataset_offset as usize];
        f.read_exact(&mut head)
            .map_err(|e| StoreError::io("cannot read", name, e))?;
        // The preamble is free-form and has carried executables (PE/ELF polyglots,
        // CVE-2019-11687): it is not part of the data set, so it is stored zeroed.
        head[..128].fill(0);
        let mut staged = self.stage_with_head(
            &head,
            Declared {
                sop_class_uid: meta.media_storage_sop_class_uid.clone(),
                sop_instance_uid: meta.media_storage_sop_instance_uid.clone(),
                transfer_syntax_uid: meta.transfer_syntax_uid.clone(),
                study_instance_uid: None,
            },
        )?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| StoreError::io("cannot read", name, e))?;
            if n == 0 {
                break;
            }
            staged.write_dataset(&buf[..n])?;
        }
        Ok(staged)
    }
}

// ---------------------------------------------------------------------------------------
// Audit trail of the ingest path (see crate::audit)

/// How an object reached the archive, which decides its audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Over the DICOM network (C-STORE) from `peer`: 110104 DICOM Instances Transferred,
    /// by the sending AE.
    Network { peer: Option<IpAddr> },
    /// Uploaded over HTTP (STOW-RS) from `peer`: 110104 DICOM Instances Transferred, by
    /// the uploading user ([`Source::uploader`]).
    Web { peer: Option<IpAddr> },
    /// Read from files by a local command (`pacs import`, the demo load, `pacs check
    /// --repair`): 110107 Import, by the local operator.
    Files,
}

/// Whose data an ingested object is, for its audit event.
#[derive(Debug, Clone)]
struct AuditSubject {
    patient_id: Option<String>,
    patient_issuer: Option<String>,
    study_instance_uid: String,
}

impl AuditSubject {
    /// The patient as the index keys it (the namespace as in `NewInstance::patient_issuer`).
    fn of(attrs: &IndexedAttributes, source: &Source) -> Self {
        let issuer = crate::index::patient_namespace(
            attrs.issuer_of_patient_id.as_deref(),
            source.clinic_name.as_deref(),
            source.ae_title.as_deref(),
        );
        AuditSubject {
            patient_id: attrs
                .patient_id
                .as_deref()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            patient_issuer: Some(issuer),
            study_instance_uid: attrs.study_instance_uid.clone(),
        }
    }
}

impl Archive {
    /// This archive handle, naming `command` in the audit events of file ingests.
    pub fn with_audit_command(mut self, command: &'static str) -> Self {
        self.audit_command = command;
        self
    }

    /// Appends an audit event (written together with concurrent ones); returns its id.
    pub async fn audit(&self, event: AuditEvent) -> Result<i64> {
        self.index.audit(event).await
    }

    /// [`Archive::audit`] for callers that go on whatever happens: a failure is logged and
    /// counted (`pacs_audit_failures_total`).
    pub async fn audit_or_log(&self, event: AuditEvent) {
        let what = event.event_id;
        if let Err(e) = self.audit(event).await {
            metrics::counter!("pacs_audit_failures_total").increment(1);
            tracing::error!(event = %what, error = %e, "cannot write an audit event");
        }
    }

    /// Audits an object refused before it reached [`Archive::ingest`] (an adapter's own
    /// checks: SOP class, UID, size), like the refusals of the ingest path.
    pub async fn audit_store_refused(
        &self,
        source: &Source,
        channel: Channel,
        sop_instance_uid: Option<&str>,
        reason: &str,
    ) {
        let event = self
            .ingest_event(source, channel, sop_instance_uid.unwrap_or_default(), None)
            .with_outcome(Outcome::SeriousFailure, reason);
        self.audit_or_log(event).await;
    }

    fn ingest_event(
        &self,
        source: &Source,
        channel: Channel,
        sop_instance_uid: &str,
        subject: Option<AuditSubject>,
    ) -> AuditEvent {
        let (event, mut detail) = match channel {
            Channel::Network { peer } => (
                AuditEvent::new(
                    EventId::InstancesTransferred,
                    Action::Create,
                    source.ae_title.as_deref().unwrap_or("unknown AE"),
                    audit::roles::SENDING_AE,
                )
                .with_ip(peer),
                String::new(),
            ),
            Channel::Web { peer } => {
                let (user, role) = source
                    .uploader
                    .clone()
                    .unwrap_or_else(|| ("unknown user".into(), "user".into()));
                (
                    AuditEvent::new(EventId::InstancesTransferred, Action::Create, user, role)
                        .with_ip(peer),
                    "STOW-RS; ".to_owned(),
                )
            }
            Channel::Files => (
                AuditEvent::new(
                    EventId::Import,
                    Action::Create,
                    audit::local_operator(),
                    audit::roles::OPERATOR,
                ),
                format!("{}; ", self.audit_command),
            ),
        };
        match &source.clinic_name {
            Some(c) => detail.push_str(&format!("clinic {c:?}")),
            None => detail.push_str("no clinic"),
        }
        if let (Channel::Files, Some(ae)) = (channel, &source.ae_title) {
            detail.push_str(&format!(" (AE {ae})"));
        }
        let (patient, issuer, study) = match subject {
            Some(s) => (s.patient_id, s.patient_issuer, Some(s.study_instance_uid)),
            None => (None, None, None),
        };
        event
            .with_patient(patient, issuer)
            .with_study(study)
            .with_instances(vec![sop_instance_uid.to_owned()])
            .with_detail(detail)
    }

    /// The audit event of one ingest: stored → C; identical copy already archived → R
    /// (PS3.15 A.5.3.4: the receiver already held it); conflict copy kept → C with a minor
    /// failure; refused → C with a serious failure and the reason.
    async fn audit_ingest(
        &self,
        source: &Source,
        channel: Channel,
        sop_instance_uid: &str,
        subject: Option<AuditSubject>,
        outcome: &Result<IngestOutcome, IngestError>,
    ) {
        let event = self.ingest_event(source, channel, sop_instance_uid, subject);
        let event = match outcome {
            Ok(IngestOutcome::Stored { .. }) => event,
            Ok(IngestOutcome::Duplicate) => {
                let mut e = event;
                e.action = Action::Read;
                let d = e.detail.take().unwrap_or_default();
                e.with_detail(format!("{d}; identical copy already archived"))
            }
            Ok(IngestOutcome::ConflictKept { object_key }) => event.with_outcome(
                Outcome::MinorFailure,
                format!(
                    "SOP Instance UID already archived with other content: first copy kept, \
                     this one kept as conflict copy {object_key}"
                ),
            ),
            Err(e) => event.with_outcome(Outcome::SeriousFailure, e.to_string()),
        };
        self.audit_or_log(event).await;
    }
}

/// After this many new bytes of a large object, its writeback to disk is started in the
/// background while the rest arrives, so that the fsync before acknowledging only has the
/// tail left to flush (receiving and writing overlap; measured with bench/ingest).
const EARLY_SYNC_BYTES: u64 = 2 << 20;

/// An object being received into the staging area. Dropping it removes the staging file.
#[derive(Debug)]
pub struct StagedObject {
    /// The object key this object will be stored under.
    key: ObjectKey,
    /// A writeback of what was written so far, started while more is still arriving (see
    /// [`EARLY_SYNC_BYTES`]).
    early_sync: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    /// Bytes written since the last early writeback was started.
    unsynced: u64,
    path: PathBuf,
    file: Option<std::io::BufWriter<File>>,
    /// BLAKE3 of the data set bytes: as strong as SHA-256 for integrity and several times
    /// faster (SHA-256 was a quarter of the server's CPU while receiving large images).
    hasher: blake3::Hasher,
    dataset_offset: u64,
    dataset_len: u64,
    limit: u64,
    exceeded: bool,
    declared: Declared,
    started: Instant,
}

impl StagedObject {
    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| StoreError::Invalid("staging file already closed".into()))?;
        f.write_all(bytes)
            .map_err(|e| StoreError::io("cannot write a staging file", &self.path, e))
    }

    /// Appends data set bytes. Past the size limit the bytes are counted and dropped, so
    /// that the caller can drain the sender and then refuse cleanly.
    pub fn write_dataset(&mut self, bytes: &[u8]) -> Result<()> {
        self.dataset_len += bytes.len() as u64;
        if self.exceeded || self.dataset_offset + self.dataset_len > self.limit {
            if !self.exceeded {
                self.exceeded = true;
                // Free the disk space now; the object will be refused.
                self.file = None;
                let _ = std::fs::remove_file(&self.path);
            }
            return Ok(());
        }
        self.hasher.update(bytes);
        self.write_raw(bytes)?;
        self.unsynced += bytes.len() as u64;
        if self.unsynced >= EARLY_SYNC_BYTES
            && self.early_sync.as_ref().is_none_or(|h| h.is_finished())
        {
            self.start_early_sync()?;
        }
        Ok(())
    }

    fn start_early_sync(&mut self) -> Result<()> {
        if let Some(previous) = self.early_sync.take() {
            join_sync(previous, &self.path)?;
        }
        let Some(writer) = self.file.as_mut() else {
            return Ok(());
        };
        writer
            .flush()
            .map_err(|e| StoreError::io("cannot write a staging file", &self.path, e))?;
        let file = writer
            .get_ref()
            .try_clone()
            .map_err(|e| StoreError::io("cannot write a staging file", &self.path, e))?;
        self.early_sync = Some(std::thread::spawn(move || file.sync_data()));
        self.unsynced = 0;
        Ok(())
    }

    /// The SOP Instance UID the sender declared (for the audit event of a refusal).
    pub fn declared_sop_instance_uid(&self) -> &str {
        &self.declared.sop_instance_uid
    }

    /// Whether the size limit was exceeded.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// Data set bytes received so far.
    pub fn dataset_len(&self) -> u64 {
        self.dataset_len
    }

    fn total_len(&self) -> u64 {
        self.dataset_offset + self.dataset_len
    }

    fn sync(&mut self) -> Result<()> {
        if let Some(early) = self.early_sync.take() {
            join_sync(early, &self.path)?;
        }
        let f = self
            .file
            .take()
            .ok_or_else(|| StoreError::Invalid("staging file already closed".into()))?;
        let f = f.into_inner().map_err(|e| {
            StoreError::io("cannot write a staging file", &self.path, e.into_error())
        })?;
        f.sync_data()
            .map_err(|e| StoreError::io("cannot fsync a staging file", &self.path, e))?;
        Ok(())
    }

    fn read_header(&self) -> Result<IndexedAttributes, IngestError> {
        let f = File::open(&self.path)
            .map_err(|e| StoreError::io("cannot reopen a staging file", &self.path, e))?;
        header::scan_complete_file(f, self.dataset_offset, &self.declared.transfer_syntax_uid)
            .map_err(|e| match e {
                HeaderError::MissingAttribute(name) => IngestError::DoesNotMatch(format!(
                    "the data set lacks {name}, which every stored object needs"
                )),
                HeaderError::Io(io) => {
                    IngestError::Store(StoreError::io("cannot read a staging file", &self.path, io))
                }
                other => IngestError::CannotUnderstand(other),
            })
    }
}

fn join_sync(h: std::thread::JoinHandle<std::io::Result<()>>, path: &Path) -> Result<()> {
    match h.join() {
        Ok(r) => r.map_err(|e| StoreError::io("cannot fsync a staging file", path, e)),
        Err(_) => Err(StoreError::Invalid("a background fsync panicked".into())),
    }
}

impl Drop for StagedObject {
    fn drop(&mut self) {
        self.file = None;
        let _ = std::fs::remove_file(&self.path);
    }
}
