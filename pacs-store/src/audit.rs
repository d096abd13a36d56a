//! The audit trail: who did what to whose data, from where, when, and how it ended —
//! append-only and hash-chained, so that an altered or deleted entry is found.
//!
//! ## Events
//! An [`AuditEvent`] carries the DICOM audit event ID of PS3.15 A.5 ([`EventId`], 110100 …
//! 110114), optionally an event type code ([`EventType`], e.g. 110120 Application Start),
//! the event action code ([`Action`]: C R U D E), the outcome ([`Outcome`]: 0, 4, 8, 12)
//! with a description, the active participant (a user name or an AE title, and its role),
//! its network address, the patient (Patient ID and the namespace that qualifies it), the
//! study, the SOP instances (how many, and their UIDs) and a free-text detail, and the time
//! (Unix microseconds, UTC). The wiring of today's events is listed in the README ("Audit
//! trail").
//!
//! ## The chain
//! Entries are numbered 1, 2, 3, … without gaps. Entry n stores `prev_hash`, the `hash` of
//! entry n−1 ([`GENESIS_HASH`], 64 zeros, for entry 1), and its own
//! `hash = hex(SHA-256(canonical form))`. SHA-256 rather than the BLAKE3 of object content
//! hashes: an auditor can recompute the chain with any standard tool (Python's `hashlib`).
//! The canonical form (version 1) is the ASCII line `pacs-audit-v1\n` followed by every
//! column of the row as a netstring — `<byte length>:<UTF-8 text>,`, integers in decimal,
//! `-,` for NULL — in this order: prev_hash, id, occurred_at, event_id, event_type, action,
//! outcome, outcome_description, user_id, user_role, source_ip, patient_id, patient_issuer,
//! study_instance_uid, instance_count, sop_instance_uids (joined with `\`), detail. It is
//! computed over the values as stored (text is cleaned of control characters and capped
//! before hashing), so [`Index::verify_audit`] recomputes it from the rows alone:
//! - an edited entry no longer matches its hash → [`AuditProblem::Altered`];
//! - an edited entry whose hash was recomputed breaks the next entry's `prev_hash` →
//!   [`AuditProblem::BrokenLink`] (names the edited entry);
//! - a deleted entry leaves a gap in the ids → [`AuditProblem::Missing`].
//!
//! Triggers refuse UPDATE and DELETE on the table (a guard against mistakes; whoever owns
//! the database can drop them — that is what the chain is for).
//!
//! ## One chain, however many writers
//! An append reads the last entry and writes the next, so appends are serialised or the
//! chain would fork: in this process by one async mutex (one writer at a time; concurrent
//! callers of [`Index::audit`] are written together by its [`AuditBatcher`], in one
//! transaction, one fsync), across
//! processes and nodes by the database — SQLite: the transaction starts with
//! `BEGIN IMMEDIATE` (the write lock is taken before the last hash is read); PostgreSQL:
//! `pg_advisory_xact_lock` is taken inside the transaction before the last hash is read, and
//! in READ COMMITTED the next statement sees whatever the previous holder committed. On
//! SQLite a process that wrote the last entry itself chains the next ones to it in memory
//! and writes them with one `INSERT … SELECT … WHERE` that entry is still the last, one
//! statement under the write lock (`Index::append_after_known_head`): when another
//! process appended in between nothing is written and the locked read above runs. The
//! primary key on `id` is the last line of defence: a fork would be a unique violation,
//! never two entries with one id. On several nodes the ids give the order; `occurred_at`
//! comes from each node's clock and may step back by the clocks' skew.
//!
//! ## What the chain cannot show
//! Deleting the *last* entries (truncating the tail) leaves a shorter chain that verifies.
//! Mitigation: `pacs audit verify` prints the last id and hash; an operator who records them
//! elsewhere (a ticket, a printout, another system) can later run
//! `pacs audit verify --anchor ID:HASH`, which fails if entry ID is gone or has another hash
//! (this also catches a chain rewritten and re-hashed from before the anchor). Entries
//! forwarded off the machine (`audit_syslog`: each message carries its entry's id and hash)
//! anchor it the same way. Rewriting the whole
//! chain after the last anchor is always possible for whoever can write the database.

use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::sync::oneshot;

use crate::index::{Backend, Index, now_micros};
use crate::lock;
use crate::{Result, StoreError};

// ---------------------------------------------------------------------------------------
// Codes (PS3.15 A.5, PS3.16 DCM)

/// The DICOM audit event ID (PS3.15 A.5, coding scheme DCM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventId {
    ApplicationActivity,
    AuditLogUsed,
    BeginTransferringInstances,
    InstancesAccessed,
    InstancesTransferred,
    StudyDeleted,
    Export,
    Import,
    NetworkEntry,
    OrderRecord,
    PatientRecord,
    ProcedureRecord,
    Query,
    SecurityAlert,
    UserAuthentication,
}

impl EventId {
    pub const ALL: [EventId; 15] = [
        EventId::ApplicationActivity,
        EventId::AuditLogUsed,
        EventId::BeginTransferringInstances,
        EventId::InstancesAccessed,
        EventId::InstancesTransferred,
        EventId::StudyDeleted,
        EventId::Export,
        EventId::Import,
        EventId::NetworkEntry,
        EventId::OrderRecord,
        EventId::PatientRecord,
        EventId::ProcedureRecord,
        EventId::Query,
        EventId::SecurityAlert,
        EventId::UserAuthentication,
    ];

    /// The code value (110100 … 110114).
    pub const fn code(self) -> i64 {
        match self {
            EventId::ApplicationActivity => 110100,
            EventId::AuditLogUsed => 110101,
            EventId::BeginTransferringInstances => 110102,
            EventId::InstancesAccessed => 110103,
            EventId::InstancesTransferred => 110104,
            EventId::StudyDeleted => 110105,
            EventId::Export => 110106,
            EventId::Import => 110107,
            EventId::NetworkEntry => 110108,
            EventId::OrderRecord => 110109,
            EventId::PatientRecord => 110110,
            EventId::ProcedureRecord => 110111,
            EventId::Query => 110112,
            EventId::SecurityAlert => 110113,
            EventId::UserAuthentication => 110114,
        }
    }

    /// The code meaning.
    pub const fn meaning(self) -> &'static str {
        match self {
            EventId::ApplicationActivity => "Application Activity",
            EventId::AuditLogUsed => "Audit Log Used",
            EventId::BeginTransferringInstances => "Begin Transferring DICOM Instances",
            EventId::InstancesAccessed => "DICOM Instances Accessed",
            EventId::InstancesTransferred => "DICOM Instances Transferred",
            EventId::StudyDeleted => "DICOM Study Deleted",
            EventId::Export => "Export",
            EventId::Import => "Import",
            EventId::NetworkEntry => "Network Entry",
            EventId::OrderRecord => "Order Record",
            EventId::PatientRecord => "Patient Record",
            EventId::ProcedureRecord => "Procedure Record",
            EventId::Query => "Query",
            EventId::SecurityAlert => "Security Alert",
            EventId::UserAuthentication => "User Authentication",
        }
    }

    pub fn from_code(code: i64) -> Option<EventId> {
        EventId::ALL.into_iter().find(|e| e.code() == code)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.meaning())
    }
}

/// Event type codes (PS3.16 DCM, audit event type), for the events that use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    ApplicationStart,
    ApplicationStop,
    Login,
    Logout,
    Attach,
    Detach,
    NodeAuthentication,
    EmergencyOverrideStarted,
    NetworkConfiguration,
    SecurityConfiguration,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::ApplicationStart,
        EventType::ApplicationStop,
        EventType::Login,
        EventType::Logout,
        EventType::Attach,
        EventType::Detach,
        EventType::NodeAuthentication,
        EventType::EmergencyOverrideStarted,
        EventType::NetworkConfiguration,
        EventType::SecurityConfiguration,
    ];

    pub const fn code(self) -> i64 {
        match self {
            EventType::ApplicationStart => 110120,
            EventType::ApplicationStop => 110121,
            EventType::Login => 110122,
            EventType::Logout => 110123,
            EventType::Attach => 110124,
            EventType::Detach => 110125,
            EventType::NodeAuthentication => 110126,
            EventType::EmergencyOverrideStarted => 110127,
            EventType::NetworkConfiguration => 110128,
            EventType::SecurityConfiguration => 110129,
        }
    }

    pub const fn meaning(self) -> &'static str {
        match self {
            EventType::ApplicationStart => "Application Start",
            EventType::ApplicationStop => "Application Stop",
            EventType::Login => "Login",
            EventType::Logout => "Logout",
            EventType::Attach => "Attach",
            EventType::Detach => "Detach",
            EventType::NodeAuthentication => "Node Authentication",
            EventType::EmergencyOverrideStarted => "Emergency Override Started",
            EventType::NetworkConfiguration => "Network Configuration",
            EventType::SecurityConfiguration => "Security Configuration",
        }
    }

    pub fn from_code(code: i64) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// Event action code (PS3.15 A.5.1: Create, Read, Update, Delete, Execute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl Action {
    pub const fn code(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }
}

/// Event outcome indicator (PS3.15 A.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// 0
    Success,
    /// 4: the action was refused or failed but may be retried (e.g. a refused caller).
    MinorFailure,
    /// 8: the action was terminated (e.g. a refused object).
    SeriousFailure,
    /// 12: the action was made unavailable.
    MajorFailure,
}

impl Outcome {
    pub const fn code(self) -> i64 {
        match self {
            Outcome::Success => 0,
            Outcome::MinorFailure => 4,
            Outcome::SeriousFailure => 8,
            Outcome::MajorFailure => 12,
        }
    }

    pub const fn meaning(code: i64) -> &'static str {
        match code {
            0 => "success",
            4 => "minor failure",
            8 => "serious failure",
            12 => "major failure",
            _ => "unknown outcome",
        }
    }
}

/// Roles of the active participant, as recorded in `user_role`.
pub mod roles {
    /// The archive itself (start, stop).
    pub const APPLICATION: &str = "application";
    /// A person at the command line of the archive's machine.
    pub const OPERATOR: &str = "operator";
    /// A registered modality or workstation sending over DICOM.
    pub const SENDING_AE: &str = "sending AE";
    /// A DICOM peer that is not registered (or not from the host it is bound to).
    pub const UNREGISTERED_AE: &str = "unregistered AE";
}

// ---------------------------------------------------------------------------------------
// Events

/// Something to record. Build with [`AuditEvent::new`] and the `with_…` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub event_id: EventId,
    pub event_type: Option<EventType>,
    pub action: Action,
    pub outcome: Outcome,
    /// Why it failed (or a note on a success).
    pub outcome_description: Option<String>,
    /// Who: a user name, an AE title, or the archive's own AE title.
    pub user: String,
    /// As what: see [`roles`].
    pub user_role: String,
    /// From where.
    pub source_ip: Option<String>,
    pub patient_id: Option<String>,
    /// The namespace that qualifies the Patient ID (Issuer of Patient ID, or the clinic).
    pub patient_issuer: Option<String>,
    pub study_instance_uid: Option<String>,
    /// How many SOP instances the event concerns (at least the UIDs listed).
    pub instance_count: i64,
    pub sop_instance_uids: Vec<String>,
    pub detail: Option<String>,
    /// When, Unix microseconds (UTC).
    pub occurred_at: i64,
}

impl AuditEvent {
    /// A successful event now, by `user` in `role`.
    pub fn new(
        event_id: EventId,
        action: Action,
        user: impl Into<String>,
        role: impl Into<String>,
    ) -> Self {
        AuditEvent {
            event_id,
            event_type: None,
            action,
            outcome: Outcome::Success,
            outcome_description: None,
            user: user.into(),
            user_role: role.into(),
            source_ip: None,
            patient_id: None,
            patient_issuer: None,
            study_instance_uid: None,
            instance_count: 0,
            sop_instance_uids: Vec::new(),
            detail: None,
            occurred_at: now_micros(),
        }
    }

    pub fn with_type(mut self, t: EventType) -> Self {
        self.event_type = Some(t);
        self
    }

    pub fn with_outcome(mut self, outcome: Outcome, description: impl Into<String>) -> Self {
        self.outcome = outcome;
        self.outcome_description = Some(description.into());
        self
    }

    pub fn with_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.source_ip = ip.map(|ip| match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(|v4| v4.to_string())
                .unwrap_or_else(|| v6.to_string()),
            v4 => v4.to_string(),
        });
        self
    }

    pub fn with_patient(mut self, patient_id: Option<String>, issuer: Option<String>) -> Self {
        self.patient_id = patient_id;
        self.patient_issuer = issuer;
        self
    }

    pub fn with_study(mut self, study_instance_uid: Option<String>) -> Self {
        self.study_instance_uid = study_instance_uid;
        self
    }

    /// The SOP instances concerned (sets the count too).
    pub fn with_instances(mut self, uids: Vec<String>) -> Self {
        self.instance_count = uids.len() as i64;
        self.sop_instance_uids = uids;
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Who is behind a command run on this machine: the login name of this process's user
/// (from `/etc/passwd` by the process's user ID where there is one, else `$USER`), or
/// `uid N`. Recorded with role [`roles::OPERATOR`].
pub fn local_operator() -> String {
    static WHO: OnceLock<String> = OnceLock::new();
    WHO.get_or_init(|| {
        let uid = process_uid();
        let from_passwd = uid.and_then(|uid| {
            let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
            passwd.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let id = f.nth(1)?;
                (id == uid.to_string()).then(|| name.to_owned())
            })
        });
        from_passwd
            .or_else(|| {
                ["USER", "LOGNAME"]
                    .iter()
                    .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
            })
            .or_else(|| uid.map(|u| format!("uid {u}")))
            .unwrap_or_else(|| "unknown".to_owned())
    })
    .clone()
}

#[cfg(unix)]
fn process_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's user: no libc call (and no unsafe) needed.
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(not(unix))]
fn process_uid() -> Option<u32> {
    None
}

// ---------------------------------------------------------------------------------------
// Records and the hash

/// The hash before entry 1.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const CANONICAL_TAG: &[u8] = b"pacs-audit-v1\n";
/// Key of the PostgreSQL advisory lock that serialises appends ("PACSAUDT").
const PG_APPEND_LOCK: i64 = 0x5041_4353_4155_4454;
const MAX_SHORT: usize = 256;
const MAX_TEXT: usize = 4096;
/// UIDs listed in one entry; `instance_count` stays exact beyond.
const MAX_LISTED_UIDS: usize = 1000;

/// An entry as stored: the raw values the hash covers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub occurred_at: i64,
    pub event_id: i64,
    pub event_type: Option<i64>,
    pub action: String,
    pub outcome: i64,
    pub outcome_description: Option<String>,
    pub user: String,
    pub user_role: String,
    pub source_ip: Option<String>,
    pub patient_id: Option<String>,
    pub patient_issuer: Option<String>,
    pub study_instance_uid: Option<String>,
    pub instance_count: i64,
    /// `\`-separated, as stored.
    pub sop_instance_uids: Option<String>,
    pub detail: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// Entry `id` for `event`, chained to `prev_hash`, with its hash.
    pub fn chained(id: i64, prev_hash: &str, event: &AuditEvent) -> AuditRecord {
        let uids: Vec<&str> = event
            .sop_instance_uids
            .iter()
            .map(|u| u.trim_end_matches('\0').trim())
            .filter(|u| !u.is_empty())
            .take(MAX_LISTED_UIDS)
            .collect();
        let mut r = AuditRecord {
            id,
            occurred_at: event.occurred_at,
            event_id: event.event_id.code(),
            event_type: event.event_type.map(EventType::code),
            action: event.action.code().to_owned(),
            outcome: event.outcome.code(),
            outcome_description: clean_opt(&event.outcome_description, MAX_TEXT),
            user: clean(&event.user, MAX_SHORT).unwrap_or_else(|| "unknown".into()),
            user_role: clean(&event.user_role, MAX_SHORT).unwrap_or_else(|| "unknown".into()),
            source_ip: clean_opt(&event.source_ip, MAX_SHORT),
            patient_id: clean_opt(&event.patient_id, MAX_SHORT),
            patient_issuer: clean_opt(&event.patient_issuer, MAX_SHORT),
            study_instance_uid: clean_opt(&event.study_instance_uid, MAX_SHORT),
            instance_count: event.instance_count.max(uids.len() as i64),
            sop_instance_uids: clean(&uids.join("\\"), usize::MAX),
            detail: clean_opt(&event.detail, MAX_TEXT),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        r.hash = r.compute_hash();
        r
    }

    /// The canonical form the hash is computed over (see the module docs).
    pub fn canonical(&self) -> Vec<u8> {
        fn text(out: &mut Vec<u8>, v: Option<&str>) {
            match v {
                Some(s) => {
                    let _ = write!(out, "{}:", s.len());
                    out.extend_from_slice(s.as_bytes());
                    out.push(b',');
                }
                None => out.extend_from_slice(b"-,"),
            }
        }
        fn int(out: &mut Vec<u8>, v: Option<i64>) {
            text(out, v.map(|v| v.to_string()).as_deref())
        }
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(CANONICAL_TAG);
        text(&mut out, Some(&self.prev_hash));
        int(&mut out, Some(self.id));
        int(&mut out, Some(self.occurred_at));
        int(&mut out, Some(self.event_id));
        int(&mut out, self.event_type);
        text(&mut out, Some(&self.action));
        int(&mut out, Some(self.outcome));
        text(&mut out, self.outcome_description.as_deref());
        text(&mut out, Some(&self.user));
        text(&mut out, Some(&self.user_role));
        text(&mut out, self.source_ip.as_deref());
        text(&mut out, self.patient_id.as_deref());
        text(&mut out, self.patient_issuer.as_deref());
        text(&mut out, self.study_instance_uid.as_deref());
        int(&mut out, Some(self.instance_count));
        text(&mut out, self.sop_instance_uids.as_deref());
        text(&mut out, self.detail.as_deref());
        out
    }

    /// `hex(SHA-256(canonical form))`.
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical()))
    }

    /// The SOP Instance UIDs listed.
    pub fn instance_uids(&self) -> Vec<&str> {
        self.sop_instance_uids
            .as_deref()
            .map(|s| s.split('\\').collect())
            .unwrap_or_default()
    }

    /// The meaning of the event ID, if it is one of PS3.15's.
    pub fn event_meaning(&self) -> &'static str {
        EventId::from_code(self.event_id)
            .map(EventId::meaning)
            .unwrap_or("unknown event")
    }

    /// As JSON, with the meanings and the time in RFC 3339 next to the codes.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "time": format_micros(self.occurred_at),
            "occurred_at": self.occurred_at,
            "event_id": self.event_id,
            "event": self.event_meaning(),
            "event_type": self.event_type,
            "event_type_meaning": self.event_type.and_then(EventType::from_code).map(EventType::meaning),
            "action": self.action,
            "outcome": self.outcome,
            "outcome_meaning": Outcome::meaning(self.outcome),
            "outcome_description": self.outcome_description,
            "user": self.user,
            "user_role": self.user_role,
            "source_ip": self.source_ip,
            "patient_id": self.patient_id,
            "patient_issuer": self.patient_issuer,
            "study_instance_uid": self.study_instance_uid,
            "instance_count": self.instance_count,
            "sop_instance_uids": self.instance_uids(),
            "detail": self.detail,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        })
    }
}

/// Text as stored: control characters (NUL included, which PostgreSQL refuses) replaced,
/// capped at `max` bytes, empty as NULL.
fn clean(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    Some(out)
}

fn clean_opt(s: &Option<String>, max: usize) -> Option<String> {
    s.as_deref().and_then(|s| clean(s, max))
}

macro_rules! audit_columns {
    () => {
        "id, occurred_at, event_id, event_type, action, outcome, outcome_description, user_id, \
         user_role, source_ip, patient_id, patient_issuer, study_instance_uid, instance_count, \
         sop_instance_uids, detail, prev_hash, hash"
    };
}
pub(crate) use audit_columns;

pub(crate) fn record_from_row(r: &AnyRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        id: r.try_get(0)?,
        occurred_at: r.try_get(1)?,
        event_id: r.try_get(2)?,
        event_type: r.try_get(3)?,
        action: r.try_get(4)?,
        outcome: r.try_get(5)?,
        outcome_description: r.try_get(6)?,
        user: r.try_get(7)?,
        user_role: r.try_get(8)?,
        source_ip: r.try_get(9)?,
        patient_id: r.try_get(10)?,
        patient_issuer: r.try_get(11)?,
        study_instance_uid: r.try_get(12)?,
        instance_count: r.try_get(13)?,
        sop_instance_uids: r.try_get(14)?,
        detail: r.try_get(15)?,
        prev_hash: r.try_get(16)?,
        hash: r.try_get(17)?,
    })
}

// ---------------------------------------------------------------------------------------
// Appending

/// One writer of audit entries in this process (see the module docs).
static APPEND_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Index {
    /// Appends one event to the audit trail; returns its id once the entry is durable.
    /// Concurrent calls on this index (and its clones) are written together, in one
    /// transaction and one fsync ([`AuditBatcher`]): a burst of audited reads — a viewer
    /// fetching a series frame by frame, four at a time — costs one commit per burst, not
    /// one each.
    pub async fn audit(&self, event: AuditEvent) -> Result<i64> {
        let id = self.audit.append(self, event).await?;
        self.sync().await?;
        Ok(id)
    }

    /// [`Index::audit`] for the entry of a read, made before its data is released: returns
    /// once the entry is committed, when a crash of pacs can no longer lose it; its fsync
    /// follows at once, in the background, while the data goes out (on SQLite; see
    /// `index::wal_sync` for why and what a power cut in between can lose).
    pub async fn audit_read(&self, event: AuditEvent) -> Result<i64> {
        let id = self.audit.append(self, event).await?;
        self.sync_soon()?;
        Ok(id)
    }

    /// Appends events in order, in one transaction of their own; returns their ids once
    /// the entries are durable.
    pub async fn audit_all(&self, events: &[AuditEvent]) -> Result<Vec<i64>> {
        let ids = self.append_all(events).await?;
        self.sync().await?;
        Ok(ids)
    }

    /// [`Index::audit_all`] without the wait for durability: the caller syncs.
    async fn append_all(&self, events: &[AuditEvent]) -> Result<Vec<i64>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let _one_writer = APPEND_LOCK.lock().await;
        if self.backend() == Backend::Sqlite
            && let Some(ids) = self.append_after_known_head(events).await?
        {
            return Ok(ids);
        }
        self.append_chained(events).await
    }

    /// The append as one statement, when this process knows the last entry from its own
    /// previous append: the entries are chained to it in memory and inserted on condition
    /// that it is still the last one — checked by the INSERT itself, under SQLite's write
    /// lock, so nothing can come in between. One statement in autocommit is one trip to the
    /// database and one fsync, where the transaction of [`Index::append_chained`] takes four
    /// trips; the audited read a user waits for is that much shorter. `None` (nothing
    /// written) when the last entry is not known or no longer the last (another process or
    /// node appended): the caller then appends the long way, which reads it.
    async fn append_after_known_head(&self, events: &[AuditEvent]) -> Result<Option<Vec<i64>>> {
        if events.len() > MAX_BATCH {
            return Ok(None);
        }
        let Some((head_id, head_hash)) = self.audit.known_head() else {
            return Ok(None);
        };
        let (mut id, mut prev) = (head_id, head_hash.clone());
        let records: Vec<AuditRecord> = events
            .iter()
            .map(|event| {
                id += 1;
                let r = AuditRecord::chained(id, &prev, event);
                prev.clone_from(&r.hash);
                r
            })
            .collect();
        const COLUMNS: usize = 18;
        let mut sql = String::from(concat!(
            "INSERT INTO audit_log (",
            audit_columns!(),
            ") SELECT * FROM (VALUES "
        ));
        for i in 0..records.len() {
            let first = i * COLUMNS + 1;
            sql.push_str(if i == 0 { "(" } else { ", (" });
            let params: Vec<String> = (first..first + COLUMNS).map(|n| format!("${n}")).collect();
            sql.push_str(&params.join(", "));
            sql.push(')');
        }
        let after = records.len() * COLUMNS;
        sql.push_str(&format!(
            ") WHERE (SELECT MAX(id) FROM audit_log) = ${} \
             AND (SELECT hash FROM audit_log WHERE id = ${}) = ${}",
            after + 1,
            after + 1,
            after + 2
        ));
        // Placeholders and column names only; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in &records {
            q = bind_record(q, r);
        }
        let written = self
            .execute_alone(q.bind(head_id).bind(head_hash))
            .await
            .inspect_err(|_| self.audit.remember_head(None))?;
        if written != records.len() as u64 {
            // Someone else appended since: nothing was written (one statement).
            self.audit.remember_head(None);
            return Ok(None);
        }
        self.audit.remember_head(Some((id, prev)));
        Ok(Some(records.iter().map(|r| r.id).collect()))
    }

    /// The append itself, serialised by the database only (the process lock is the caller's).
    async fn append_chained(&self, events: &[AuditEvent]) -> Result<Vec<i64>> {
        let mut tx = match self.backend() {
            // The write lock before the read of the last hash: no other connection or process
            // can append in between (and WAL's "snapshot too old" cannot happen).
            Backend::Sqlite => self.pool().begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.pool().begin().await?;
                // A node stuck while holding the lock must not stall every other one forever.
                sqlx::query("SET LOCAL lock_timeout = '30s'")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PG_APPEND_LOCK)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        let head = sqlx::query("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (mut id, mut prev): (i64, String) = match head {
            Some(r) => (r.try_get(0)?, r.try_get(1)?),
            None => (0, GENESIS_HASH.to_owned()),
        };
        let mut ids = Vec::with_capacity(events.len());
        for event in events {
            id += 1;
            let r = AuditRecord::chained(id, &prev, event);
            let insert = sqlx::query(concat!(
                "INSERT INTO audit_log (",
                audit_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
            ));
            bind_record(insert, &r).execute(&mut *tx).await?;
            ids.push(id);
            prev = r.hash;
        }
        match tx.commit().await {
            Ok(()) => self.audit.remember_head(Some((id, prev))),
            Err(e) => {
                self.audit.remember_head(None);
                return Err(e.into());
            }
        }
        Ok(ids)
    }
}

/// Binds the columns of `r` in the order of `audit_columns!`.
fn bind_record<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    r: &'q AuditRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    q.bind(r.id)
        .bind(r.occurred_at)
        .bind(r.event_id)
        .bind(r.event_type)
        .bind(&r.action)
        .bind(r.outcome)
        .bind(&r.outcome_description)
        .bind(&r.user)
        .bind(&r.user_role)
        .bind(&r.source_ip)
        .bind(&r.patient_id)
        .bind(&r.patient_issuer)
        .bind(&r.study_instance_uid)
        .bind(r.instance_count)
        .bind(&r.sop_instance_uids)
        .bind(&r.detail)
        .bind(&r.prev_hash)
        .bind(&r.hash)
}

type Waiting = (AuditEvent, oneshot::Sender<Result<i64>>);

/// Appends from many concurrent callers ([`Index::audit`]: one event per received object,
/// per audited read), written together: whoever finds the queue non-empty and the writer
/// free writes everything queued in one transaction (one lock, one fsync), the others find
/// their ids written for them. Each caller still returns only once its own entry is
/// committed. Cheap to clone; clones share the queue.
#[derive(Debug, Clone, Default)]
pub struct AuditBatcher {
    inner: Arc<BatcherInner>,
}

#[derive(Debug, Default)]
struct BatcherInner {
    queue: std::sync::Mutex<Vec<Waiting>>,
    leader: tokio::sync::Mutex<()>,
    /// The last entry (id, hash) as this process last wrote it: a hint for
    /// [`Index::append_after_known_head`], which checks it in the database.
    head: std::sync::Mutex<Option<(i64, String)>>,
}

/// Entries written in one transaction at most.
const MAX_BATCH: usize = 256;

impl AuditBatcher {
    fn known_head(&self) -> Option<(i64, String)> {
        lock(&self.inner.head).clone()
    }

    fn remember_head(&self, head: Option<(i64, String)>) {
        *lock(&self.inner.head) = head;
    }

    /// Appends `event` to the audit trail of `index`; returns its id once committed.
    pub async fn append(&self, index: &Index, event: AuditEvent) -> Result<i64> {
        let (reply, mut answer) = oneshot::channel();
        lock(&self.inner.queue).push((event, reply));
        loop {
            let leader = self.inner.leader.lock().await;
            match answer.try_recv() {
                Ok(r) => return r,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(StoreError::Invalid(
                        "the audit append was abandoned before it was written".into(),
                    ));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<Waiting> = {
                let mut q = lock(&self.inner.queue);
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            // Others' entries are written by a task of its own, so that a caller that goes
            // away (an aborted association) cannot cut their appends short. An entry alone
            // is the caller's own (the others' are answered before their leader lets go):
            // written in place, without waking another worker thread. Cut short, it
            // leaves at most a remembered head that is no longer the last entry, which
            // the next append finds out and reads again.
            let index = index.clone();
            if batch.len() == 1 {
                write_batch(index, batch).await;
            } else {
                let _ = tokio::spawn(write_batch(index, batch)).await;
            }
            drop(leader);
        }
    }
}

async fn write_batch(index: Index, batch: Vec<Waiting>) {
    metrics::histogram!("pacs_audit_batch_size").record(batch.len() as f64);
    let (events, replies): (Vec<AuditEvent>, Vec<_>) = batch.into_iter().unzip();
    match index.append_all(&events).await {
        Ok(ids) => {
            for (reply, id) in replies.into_iter().zip(ids) {
                let _ = reply.send(Ok(id));
            }
        }
        Err(e) if events.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, n = events.len(), "audit batch failed; appending one by one");
            for (event, reply) in events.into_iter().zip(replies) {
                // Alone, past the batcher (whose leader is waiting for this task).
                let one = index.append_all(std::slice::from_ref(&event)).await;
                let _ = reply.send(one.map(|ids| ids[0]));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Verifying

/// What [`Index::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditVerification {
    /// Entries checked and intact, from id 1 (all of them when there is no problem).
    pub intact_events: i64,
    /// The last intact entry.
    pub last_id: Option<i64>,
    pub last_hash: Option<String>,
    /// The first problem, if any.
    pub problem: Option<AuditProblem>,
}

impl AuditVerification {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// The first thing wrong with the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditProblem {
    /// Entries `first..=last` are missing (deleted).
    Missing { first: i64, last: i64 },
    /// Entry `id` no longer matches its hash: it was altered.
    Altered { id: i64 },
    /// Entry `id` does not chain to entry `id - 1`: entry `id - 1` was altered and re-hashed
    /// (or entry `id`'s link was rewritten, or entries were removed and renumbered).
    BrokenLink { id: i64 },
    /// The anchor entry is gone: the trail ends at `last_id` (its tail was deleted).
    AnchorMissing { id: i64, last_id: Option<i64> },
    /// The anchor entry has another hash than the one recorded: the chain was rewritten.
    AnchorMismatch {
        id: i64,
        expected: String,
        found: String,
    },
}

impl AuditProblem {
    /// The first entry the problem names as altered or missing.
    pub fn first_bad_id(&self) -> i64 {
        match self {
            AuditProblem::Missing { first, .. } => *first,
            AuditProblem::Altered { id } => *id,
            AuditProblem::BrokenLink { id } => (id - 1).max(1),
            AuditProblem::AnchorMissing { last_id, .. } => last_id.unwrap_or(0) + 1,
            AuditProblem::AnchorMismatch { id, .. } => *id,
        }
    }
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditProblem::Missing { first, last } if first == last => {
                write!(f, "entry {first} is missing (deleted)")
            }
            AuditProblem::Missing { first, last } => {
                write!(f, "entries {first} to {last} are missing (deleted)")
            }
            AuditProblem::Altered { id } => {
                write!(f, "entry {id} was altered: it no longer matches its hash")
            }
            AuditProblem::BrokenLink { id } => write!(
                f,
                "entry {} was altered: entry {id} chains to another hash (entry {} was re-hashed \
                 after a change, or entries before {id} were removed and renumbered)",
                id - 1,
                id - 1
            ),
            AuditProblem::AnchorMissing { id, last_id } => write!(
                f,
                "anchor entry {id} is missing: the trail ends at {}, entries after it were deleted",
                last_id.map_or("nothing".to_owned(), |l| format!("entry {l}"))
            ),
            AuditProblem::AnchorMismatch {
                id,
                expected,
                found,
            } => write!(
                f,
                "anchor entry {id} has hash {found}, not the recorded {expected}: the chain was rewritten"
            ),
        }
    }
}

impl Index {
    /// Recomputes the whole chain and names the first altered or missing entry.
    pub async fn verify_audit(&self) -> Result<AuditVerification> {
        self.verify_audit_anchored(None).await
    }

    /// [`Index::verify_audit`], and checks that entry `anchor.0` still exists with hash
    /// `anchor.1` (recorded earlier, elsewhere): catches a deleted tail and a re-hashed chain.
    pub async fn verify_audit_anchored(
        &self,
        anchor: Option<(i64, &str)>,
    ) -> Result<AuditVerification> {
        let mut rows = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log ORDER BY id"
        ))
        .fetch(self.pool());
        let mut v = AuditVerification {
            intact_events: 0,
            last_id: None,
            last_hash: None,
            problem: None,
        };
        let mut prev = GENESIS_HASH.to_owned();
        let mut anchor_found = None;
        while let Some(row) = rows.try_next().await? {
            let r = record_from_row(&row)?;
            let expected_id = v.last_id.unwrap_or(0) + 1;
            if r.id != expected_id {
                v.problem = Some(AuditProblem::Missing {
                    first: expected_id,
                    last: r.id - 1,
                });
                break;
            }
            if r.prev_hash != prev {
                v.problem = Some(AuditProblem::BrokenLink { id: r.id });
                break;
            }
            if r.compute_hash() != r.hash {
                v.problem = Some(AuditProblem::Altered { id: r.id });
                break;
            }
            if anchor.is_some_and(|(id, _)| id == r.id) {
                anchor_found = Some(r.hash.clone());
            }
            v.intact_events += 1;
            v.last_id = Some(r.id);
            prev = r.hash.clone();
            v.last_hash = Some(r.hash);
        }
        drop(rows);
        if v.problem.is_none()
            && let Some((id, expected)) = anchor
        {
            v.problem = match anchor_found {
                None => Some(AuditProblem::AnchorMissing {
                    id,
                    last_id: v.last_id,
                }),
                Some(found) if !found.eq_ignore_ascii_case(expected.trim()) => {
                    Some(AuditProblem::AnchorMismatch {
                        id,
                        expected: expected.trim().to_owned(),
                        found,
                    })
                }
                Some(_) => None,
            };
        }
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------
// Searching

/// What to look for; every field set must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Patient ID (exact).
    pub patient: Option<String>,
    /// User name or AE title (exact).
    pub user: Option<String>,
    /// Unix µs, inclusive.
    pub since: Option<i64>,
    /// Unix µs, inclusive.
    pub until: Option<i64>,
    pub event_id: Option<EventId>,
    /// Study Instance UID (exact).
    pub study: Option<String>,
    /// Only entries with an id below this one (the next page of a search, older entries).
    pub before: Option<i64>,
    /// At most this many (the most recent); default 100, at most 10 000.
    pub limit: Option<i64>,
}

impl Index {
    /// Entries matching `filter`: the most recent `limit`, oldest first.
    pub async fn search_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let limit = filter.limit.unwrap_or(100).clamp(1, 10_000);
        let event = filter.event_id.map(EventId::code);
        // One statement per leading filter, so that each can use its index.
        let rows = if let Some(patient) = &filter.patient {
            sqlx::query(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log WHERE patient_id = $1 AND ($2 IS NULL OR user_id = $2) \
                 AND ($3 IS NULL OR occurred_at >= $3) AND ($4 IS NULL OR occurred_at <= $4) \
                 AND ($5 IS NULL OR event_id = $5) AND ($6 IS NULL OR study_instance_uid = $6) \
                 AND ($7 IS NULL OR id < $7) ORDER BY id DESC LIMIT $8"
            ))
            .bind(patient)
            .bind(&filter.user)
            .bind(filter.since)
            .bind(filter.until)
            .bind(event)
            .bind(&filter.study)
            .bind(filter.before)
            .bind(limit)
            .fetch_all(self.pool())
            .await?
        } else if let Some(user) = &filter.user {
            sqlx::query(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log WHERE user_id = $1 \
                 AND ($2 IS NULL OR occurred_at >= $2) AND ($3 IS NULL OR occurred_at <= $3) \
                 AND ($4 IS NULL OR event_id = $4) AND ($5 IS NULL OR study_instance_uid = $5) \
                 AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7"
            ))
            .bind(user)
            .bind(filter.since)
            .bind(filter.until)
            .bind(event)
            .bind(&filter.study)
            .bind(filter.before)
            .bind(limit)
            .fetch_all(self.pool())
            .await?
        } else {
            sqlx::query(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log WHERE ($1 IS NULL OR occurred_at >= $1) \
                 AND ($2 IS NULL OR occurred_at <= $2) \
                 AND ($3 IS NULL OR event_id = $3) AND ($4 IS NULL OR study_instance_uid = $4) \
                 AND ($5 IS NULL OR id < $5) ORDER BY id DESC LIMIT $6"
            ))
            .bind(filter.since)
            .bind(filter.until)
            .bind(event)
            .bind(&filter.study)
            .bind(filter.before)
            .bind(limit)
            .fetch_all(self.pool())
            .await?
        };
        let mut out: Vec<AuditRecord> = rows.iter().map(record_from_row).collect::<Result<_>>()?;
        out.reverse();
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// Times (UTC; no time zone database needed)

/// Unix µs as RFC 3339 in UTC with microseconds: `2025-03-01T08:15:00.000000Z`.
pub fn format_micros(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Parses `YYYY-MM-DD` (a UTC day: its first microsecond, or its last when `end_of_day`)
/// or RFC 3339 (`2025-03-01T08:15:00Z`, `…+08:00`, fractions allowed) into Unix µs.
pub fn parse_time(s: &str, end_of_day: bool) -> std::result::Result<i64, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is neither YYYY-MM-DD nor an RFC 3339 date and time");
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> std::result::Result<i64, String> {
        let part = s.get(from..from + len).ok_or_else(bad)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse::<i64>().map_err(|_| bad())
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return Err(bad());
    }
    let day_us = days_from_civil(y, mo, d) * 86_400_000_000;
    if b.len() == 10 {
        return Ok(if end_of_day {
            day_us + 86_400_000_000 - 1
        } else {
            day_us
        });
    }
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        let digits = &s[start..i.min(start + 6)];
        micros = format!("{digits:0<6}").parse().map_err(|_| bad())?;
    }
    let offset_s = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6
            && matches!(tz.as_bytes()[0], b'+' | b'-')
            && tz.as_bytes()[3] == b':' =>
        {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let off = oh * 3600 + om * 60;
            if tz.starts_with('-') { -off } else { off }
        }
        _ => return Err(bad()),
    };
    Ok(day_us + ((h * 3600 + mi * 60 + sec) - offset_s) * 1_000_000 + micros)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Executor;

    async fn sqlite_index(dir: &tempfile::TempDir) -> Index {
        Index::open(&format!("sqlite:{}", dir.path().join("index.db").display()))
            .await
            .unwrap()
    }

    fn store_event(n: usize) -> AuditEvent {
        AuditEvent::new(
            EventId::InstancesTransferred,
            Action::Create,
            "CT_TOWNSHIP_A",
            roles::SENDING_AE,
        )
        .with_ip(Some("10.1.2.3".parse().unwrap()))
        .with_patient(Some(format!("P-{}", n % 3)), Some("CLINIC-A".into()))
        .with_study(Some(format!("1.2.826.0.1.3680043.2.1125.{}", n % 2)))
        .with_instances(vec![format!("1.2.826.0.1.3680043.2.1125.9.{n}")])
        .with_detail(format!("clinic \"Township A\"; object {n}"))
    }

    async fn append_n(index: &Index, n: usize) -> Vec<i64> {
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(index.audit(store_event(i)).await.unwrap());
        }
        ids
    }

    /// Lets the test tamper with the table as someone with database access would.
    async fn drop_guards(index: &Index) {
        match index.backend() {
            Backend::Sqlite => {
                index
                    .pool()
                    .execute("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete")
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                index
                    .pool()
                    .execute("DROP TRIGGER audit_log_no_change ON audit_log")
                    .await
                    .unwrap();
            }
        }
    }

    #[test]
    fn event_codes_are_ps3_15() {
        let codes: Vec<i64> = EventId::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, (110100..=110114).collect::<Vec<_>>());
        assert_eq!(
            EventId::from_code(110104),
            Some(EventId::InstancesTransferred)
        );
        assert_eq!(
            EventId::InstancesTransferred.to_string(),
            "110104 DICOM Instances Transferred"
        );
        assert_eq!(EventId::from_code(110115), None);
        assert_eq!(EventType::SecurityConfiguration.code(), 110129);
        assert_eq!(
            EventType::from_code(110120),
            Some(EventType::ApplicationStart)
        );
        assert_eq!(
            [
                Action::Create,
                Action::Read,
                Action::Update,
                Action::Delete,
                Action::Execute
            ]
            .map(Action::code),
            ["C", "R", "U", "D", "E"]
        );
        assert_eq!(
            [
                Outcome::Success,
                Outcome::MinorFailure,
                Outcome::SeriousFailure,
                Outcome::MajorFailure
            ]
            .map(Outcome::code),
            [0, 4, 8, 12]
        );
    }

    #[test]
    fn canonical_form_is_unambiguous_and_stable() {
        let mut e = store_event(1);
        e.occurred_at = 1_700_000_000_000_000;
        let r = AuditRecord::chained(1, GENESIS_HASH, &e);
        let text = String::from_utf8(r.canonical()).unwrap();
        assert!(text.starts_with("pacs-audit-v1\n64:0000"), "{text}");
        assert!(text.contains("1:1,16:1700000000000000,6:110104,-,1:C,1:0,-,13:CT_TOWNSHIP_A,"));
        // Moving text between adjacent fields changes the hash.
        let mut moved = r.clone();
        moved.patient_id = Some("P-1CLINIC".into());
        moved.patient_issuer = Some("-A".into());
        assert_ne!(moved.compute_hash(), r.hash);
        // NULL and empty differ; control characters are cleaned before hashing.
        let mut e2 = e.clone();
        e2.detail = Some("a\0b\x1b[31m".into());
        let r2 = AuditRecord::chained(1, GENESIS_HASH, &e2);
        assert_eq!(r2.detail.as_deref(), Some("a\u{FFFD}b\u{FFFD}[31m"));
        assert_eq!(r2.compute_hash(), r2.hash);
        e2.detail = Some(String::new());
        assert_eq!(AuditRecord::chained(1, GENESIS_HASH, &e2).detail, None);
    }

    #[tokio::test]
    async fn append_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let index = sqlite_index(&dir).await;
        let empty = index.verify_audit().await.unwrap();
        assert!(empty.is_intact());
        assert_eq!(empty.intact_events, 0);
        assert_eq!(append_n(&index, 5).await, vec![1, 2, 3, 4, 5]);
        let v = index.verify_audit().await.unwrap();
        assert!(v.is_intact(), "{v:?}");
        assert_eq!((v.intact_events, v.last_id), (5, Some(5)));
        let all = index.search_audit(&AuditFilter::default()).await.unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].prev_hash, GENESIS_HASH);
        for w in all.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
        }
        assert_eq!(v.last_hash.as_deref(), Some(all[4].hash.as_str()));
        assert_eq!(
            all[2].instance_uids(),
            vec!["1.2.826.0.1.3680043.2.1125.9.2"]
        );
        assert_eq!(all[2].source_ip.as_deref(), Some("10.1.2.3"));
        // The anchor of the last entry holds.
        let anchored = index
            .verify_audit_anchored(Some((5, &all[4].hash)))
            .await
            .unwrap();
        assert!(anchored.is_intact());
        index.close().await;
    }

    #[tokio::test]
    async fn the_table_refuses_update_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let index = sqlite_index(&dir).await;
        append_n(&index, 2).await;
        let up = index
            .pool()
            .execute("UPDATE audit_log SET detail = 'x' WHERE id = 1")
            .await;
        assert!(up.unwrap_err().to_string().contains("append-only"));
        let del = index.pool().execute("DELETE FROM audit_log").await;
        assert!(del.unwrap_err().to_string().contains("append-only"));
        index.close().await;
    }

    #[tokio::test]
    async fn an_edited_entry_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let index = sqlite_index(&dir).await;
        append_n(&index, 6).await;
        drop_guards(&index).await;
        index
            .pool()
            .execute("UPDATE audit_log SET detail = 'nothing to see' WHERE id = 4")
            .await
            .unwrap();
        let v = index.verify_audit().await.unwrap();
        assert_eq!(v.problem, Some(AuditProblem::Altered { id: 4 }));
        assert_eq!(v.problem.as_ref().unwrap().first_bad_id(), 4);
        assert_eq!((v.intact_events, v.last_id), (3, Some(3)));
        index.close().await;
    }

    #[tokio::test]
    async fn an_edited_and_rehashed_entry_breaks_the_next_link() {
        let dir = tempfile::tempdir().unwrap();
        let index = sqlite_index(&dir).await;
        append_n(&index, 6).await;
        drop_guards(&index).await;
        let mut r = index.search_audit(&AuditFilter::default()).await.unwrap()[2].clone();
        assert_eq!(r.id, 3);
        r.patient_id = Some("SOMEONE-ELSE".into());
        let forged = r.compute_hash();
        sqlx::query("UPDATE audit_log SET patient_id = $1, hash = $2 WHERE id = 3")
            .bind("SOMEONE-ELSE")
            .bind(&forged)
            .execute(index.pool())
            .await
            .unwrap();
        let v = index.verify_audit().await.unwrap();
        assert_eq!(v.problem, Some(AuditProblem::BrokenLink { id: 4 }));
        assert_eq!(v.problem.as_ref().unwrap().first_bad_id(), 3);
        assert!(
            v.problem
                .unwrap()
                .to_string()
                .starts_with("entry 3 was altered")
        );
        index.close().await;
    }

    #[tokio::test]
    async fn a_deleted_middle_entry_is_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let index = sqlite_index(&dir).await;
        append_n(&index, 6).await;
        drop_guards(&index).await;
        index
            .pool()
            .execute("DELETE FROM audit_log WHERE id IN (3, 4)")
            .await
            .unwrap();
        let v = index.verify_audit().await.unwrap();
        assert_eq!(v.problem, Some(AuditProblem::Missing { first: 3, last: 4 }));
        assert_eq!(
            v.problem.unwrap().to_string(),
            "entries 3 to 4 are missing (deleted)"
        );
        // Deleting the first entry is a gap too.
        index
            .pool()
            .execute("DELETE FROM audit_log WHERE id = 1")
            .await
            .unwrap();
        let v = index.verify_audit().await.unwrap();
        assert_eq!(v.problem, Some(AuditProblem::Missing { first: 1, last: 1 }));
        index.close().await;
    }

    /// The limitation: a deleted tail leaves a shorter chain that verifies. An anchor
    /// recorded elsewhere (the last id and hash that `pacs audit verify` prints) catches it.
    #[tokio::test]
    async fn a_deleted_last_entry_needs_an_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let index = sqlite_index(&dir).await;
        append_n(&index, 4).await;
        let before = index.verify_audit().await.unwrap();
        let anchor_hash = before.last_hash.clone().unwrap();
        drop_guards(&index).await;
        index
            .pool()
            .execute("DELETE FROM audit_log WHERE id = 4")
            .await
            .unwrap();
        let v = index.verify_audit().await.unwrap();
        assert!(v.is_intact(), "the chain alone cannot see a deleted tail");
        assert_eq!(v.last_id, Some(3));
        let v = index
            .verify_audit_anchored(Some((4, &anchor_hash)))
            .await
            .unwrap();
        assert_eq!(
            v.problem,
            Some(AuditProblem::AnchorMissing {
                id: 4,
                last_id: Some(3)
            })
        );
        // A tail rewritten after the deletion (new entry 4) does not match the anchor either.
        index.audit(store_event(99)).await.unwrap();
        let v = index
            .verify_audit_anchored(Some((4, &anchor_hash)))
            .await
            .unwrap();
        assert!(matches!(
            v.problem,
            Some(AuditProblem::AnchorMismatch { id: 4, .. })
        ));
        index.close().await;
    }

    #[tokio::test]
    async fn search_filters() {
        let dir = tempfile::tempdir().unwrap();
        let index = sqlite_index(&dir).await;
        append_n(&index, 9).await;
        let mut other = AuditEvent::new(
            EventId::SecurityAlert,
            Action::Execute,
            "INTRUDER",
            roles::UNREGISTERED_AE,
        )
        .with_type(EventType::NodeAuthentication)
        .with_outcome(Outcome::MinorFailure, "not registered");
        other.occurred_at = 1_000_000;
        index.audit(other).await.unwrap();
        let search = |f: AuditFilter| {
            let index = index.clone();
            async move { index.search_audit(&f).await.unwrap() }
        };
        let p1 = search(AuditFilter {
            patient: Some("P-1".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(p1.iter().map(|r| r.id).collect::<Vec<_>>(), vec![2, 5, 8]);
        let p1_last = search(AuditFilter {
            patient: Some("P-1".into()),
            limit: Some(2),
            ..Default::default()
        })
        .await;
        assert_eq!(p1_last.iter().map(|r| r.id).collect::<Vec<_>>(), vec![5, 8]);
        let intruder = search(AuditFilter {
            user: Some("INTRUDER".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(intruder.len(), 1);
        assert_eq!(intruder[0].event_type, Some(110126));
        assert_eq!(intruder[0].outcome, 4);
        let alerts = search(AuditFilter {
            event_id: Some(EventId::SecurityAlert),
            ..Default::default()
        })
        .await;
        assert_eq!(alerts.len(), 1);
        let old = search(AuditFilter {
            until: Some(2_000_000),
            ..Default::default()
        })
        .await;
        assert_eq!(old.iter().map(|r| r.id).collect::<Vec<_>>(), vec![10]);
        let recent = search(AuditFilter {
            since: Some(2_000_000),
            user: Some("CT_TOWNSHIP_A".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(recent.len(), 9);
        let study1 = search(AuditFilter {
            study: Some("1.2.826.0.1.3680043.2.1125.1".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(
            study1.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![2, 4, 6, 8]
        );
        let p1_study1 = search(AuditFilter {
            patient: Some("P-1".into()),
            study: Some("1.2.826.0.1.3680043.2.1125.1".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(
            p1_study1.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![2, 8]
        );
        // Paging: the next page holds the older entries, below the first id shown.
        let p1_older = search(AuditFilter {
            patient: Some("P-1".into()),
            limit: Some(2),
            before: Some(5),
            ..Default::default()
        })
        .await;
        assert_eq!(p1_older.iter().map(|r| r.id).collect::<Vec<_>>(), vec![2]);
        let none = search(AuditFilter {
            patient: Some("P-1".into()),
            event_id: Some(EventId::Import),
            ..Default::default()
        })
        .await;
        assert!(none.is_empty());
        index.close().await;
    }

    /// Many tasks, two "nodes" (two pools on one database, the second bypassing this
    /// process's lock as another process would), direct appends and batched ones (the
    /// index's own batcher and a second one): one unbroken chain with contiguous ids.
    async fn concurrent_appends(url: &str) {
        let a = Index::open(url).await.unwrap();
        let b = Index::open(url).await.unwrap();
        let batcher = AuditBatcher::default();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..12usize {
            let (a, b, batcher) = (a.clone(), b.clone(), batcher.clone());
            tasks.spawn(async move {
                for i in 0..20usize {
                    let e = store_event(t * 100 + i);
                    match t % 4 {
                        0 => {
                            a.audit(e).await.unwrap();
                        }
                        1 => {
                            batcher.append(&a, e).await.unwrap();
                        }
                        2 => {
                            a.audit_all(std::slice::from_ref(&e)).await.unwrap();
                        }
                        _ => {
                            b.append_chained(std::slice::from_ref(&e)).await.unwrap();
                        }
                    }
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let v = a.verify_audit().await.unwrap();
        assert!(v.is_intact(), "{v:?}");
        assert_eq!((v.intact_events, v.last_id), (240, Some(240)));
        a.close().await;
        b.close().await;
    }

    /// The one-statement append chains to the last entry this process wrote, and writes
    /// nothing once another writer has appended since: the long way then reads the new
    /// last entry, and the chain stays whole.
    #[tokio::test]
    async fn known_head_append_yields_to_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("index.db").display());
        let a = Index::open(&url).await.unwrap();
        let b = Index::open(&url).await.unwrap();
        // Nothing known yet: the long way, which learns the last entry.
        assert_eq!(
            a.append_after_known_head(&[store_event(1)]).await.unwrap(),
            None
        );
        assert_eq!(a.audit_all(&[store_event(1)]).await.unwrap(), vec![1]);
        assert_eq!(a.audit.known_head().map(|h| h.0), Some(1));
        // Known: one statement, two entries chained in memory.
        let ids = a
            .append_after_known_head(&[store_event(2), store_event(3)])
            .await
            .unwrap();
        assert_eq!(ids, Some(vec![2, 3]));
        // Another process appends entry 4: this process's head is stale, nothing is written.
        assert_eq!(b.append_chained(&[store_event(4)]).await.unwrap(), vec![4]);
        assert_eq!(
            a.append_after_known_head(&[store_event(5)]).await.unwrap(),
            None
        );
        assert_eq!(a.verify_audit().await.unwrap().last_id, Some(4));
        // The append a caller makes goes the long way and chains to entry 4.
        assert_eq!(a.audit(store_event(5)).await.unwrap(), 5);
        assert_eq!(a.audit(store_event(6)).await.unwrap(), 6);
        let v = a.verify_audit().await.unwrap();
        assert!(v.is_intact(), "{v:?}");
        assert_eq!((v.intact_events, v.last_id), (6, Some(6)));
        assert_eq!(a.audit.known_head(), Some((6, v.last_hash.unwrap())));
        a.close().await;
        b.close().await;
    }

    /// On SQLite the one-statement append commits without an fsync (the direct
    /// connections run `synchronous=NORMAL`, everything else `FULL`); `audit` returns only
    /// after the WAL was synced since, `audit_read` once committed, having asked for that
    /// sync. Both entries are in the chain, read by another connection at once.
    #[tokio::test]
    async fn an_audited_read_is_committed_and_its_sync_follows() {
        let dir = tempfile::tempdir().unwrap();
        let index = sqlite_index(&dir).await;
        let wal = index.wal.clone().expect("an SQLite file has a WAL sync");
        let synchronous = |r: Option<AnyRow>| r.unwrap().try_get::<i64, _>(0).unwrap();
        let direct = index
            .fetch_optional_alone(sqlx::query("PRAGMA synchronous"))
            .await
            .unwrap();
        assert_eq!(synchronous(direct), 1, "NORMAL on the direct connections");
        let pooled = sqlx::query("PRAGMA synchronous")
            .fetch_optional(index.pool())
            .await
            .unwrap();
        assert_eq!(synchronous(pooled), 2, "FULL everywhere else");

        // The first append goes the long way (FULL); the next ones are one statement.
        for n in 1..=3 {
            let before = wal.requested();
            assert_eq!(index.audit(store_event(n)).await.unwrap(), n as i64);
            assert!(wal.requested() > before, "audit asks for a sync");
            assert_eq!(wal.synced_through(), wal.requested(), "and waits for it");
        }
        let before = wal.requested();
        assert_eq!(index.audit_read(store_event(4)).await.unwrap(), 4);
        assert_eq!(wal.requested(), before + 1, "audit_read asks for a sync");
        let other = Index::open(&format!("sqlite:{}", dir.path().join("index.db").display()))
            .await
            .unwrap();
        let v = other.verify_audit().await.unwrap();
        assert!(v.is_intact(), "{v:?}");
        assert_eq!(v.last_id, Some(4));
        // Closing waits for the last sync.
        index.close().await;
        assert_eq!(wal.synced_through(), wal.requested());
        other.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_keep_one_chain_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        concurrent_appends(&format!("sqlite:{}", dir.path().join("index.db").display())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_keep_one_chain_postgres() {
        let Some(url) = crate::test_postgres::fresh_database("audit chain multi-node").await else {
            return;
        };
        concurrent_appends(&url).await;
        // Tampering is found the same way on PostgreSQL.
        let index = Index::open(&url).await.unwrap();
        drop_guards(&index).await;
        index
            .pool()
            .execute("UPDATE audit_log SET detail = 'x' WHERE id = 17; DELETE FROM audit_log WHERE id = 30")
            .await
            .unwrap();
        let v = index.verify_audit().await.unwrap();
        assert_eq!(v.problem, Some(AuditProblem::Altered { id: 17 }));
        index.close().await;
        crate::test_postgres::drop_database(&url).await;
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01", false), Ok(0));
        assert_eq!(parse_time("1970-01-01", true), Ok(86_400_000_000 - 1));
        assert_eq!(
            parse_time("2024-02-29T12:30:00Z", false),
            Ok(1_709_209_800_000_000)
        );
        assert_eq!(
            parse_time("2024-02-29T20:30:00.5+08:00", false),
            Ok(1_709_209_800_500_000)
        );
        assert_eq!(
            parse_time("2024-02-29 04:30:00.123456789-08:00", false),
            Ok(1_709_209_800_123_456)
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "yesterday",
            "2024-01-01T25:00:00Z",
            "2024-01-01T10:00:00",
            "2024-01-01T10:00:00+0800",
            "2024-01-01T10:00:00.Z",
            "2024-1-01",
        ] {
            assert!(parse_time(bad, false).is_err(), "{bad}");
        }
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_micros(1_709_209_800_123_456),
            "2024-02-29T12:30:00.123456Z"
        );
        assert_eq!(format_micros(-1), "1969-12-31T23:59:59.999999Z");
        for us in [
            0,
            951_782_400_000_000,
            4_107_542_400_000_000,
            1_709_209_800_123_456,
        ] {
            assert_eq!(parse_time(&format_micros(us), false), Ok(us));
        }
    }
}
