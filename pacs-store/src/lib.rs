//! # pacs-store — the regional archive's domain and persistence
//!
//! Only this crate writes SQL or objects. No HTTP, no DICOM networking: adapters
//! (`dicom-scp`, `reading-workstation-api`, the `pacs` command line) translate their
//! protocol into calls here.
//!
//! ## Layout
//! - [`archive`]: the ingest path — stage, check, store durably, index — and its outcomes.
//! - [`header`]: a bounded scanner of DICOM headers that gives the indexed attributes
//!   without decoding pixel data; [`charset`]: Specific Character Set decoding to UTF-8.
//! - [`index`]: the SQL index (SQLite or PostgreSQL), clinics and AE titles, the event
//!   outbox, study readiness, group-committed inserts.
//! - [`query`]: study/series/instance matching (PS3.4 C.2.2.2) for QIDO-RS and C-FIND.
//! - [`metadata`]: stored instances as DICOM JSON (PS3.18 F.2), cached per instance, and
//!   their frames and bulk values, for WADO-RS.
//! - [`objects`]: the [`objects::ObjectStore`] port and its filesystem and S3 adapters.
//! - [`check`]: integrity check and repair.
//! - [`config`]: [`config::StoreConfig`] and how to open an [`archive::Archive`] from it.
//! - [`access`]: the access policy — which studies a principal or AE may see, and what
//!   else it may do. Every adapter reads patient data through it.
//! - [`audit`]: the audit trail (PS3.15 events, hash-chained); [`audit_message`]: an
//!   entry as a DICOM Audit Message (ATNA XML); [`audit_forwarding`]: forwarding cursors.
//! - [`worklist`]: reading tasks from the outbox's "study ready" events, routing rules,
//!   claims with leases, deadlines and escalations.
//! - [`reports`]: preliminary impressions, drafts, Ed25519-signed reports and addenda,
//!   verification, discrepancy rates.
//! - [`live_events`]: outbox events for the live feed, each with its audience.
//! - [`dashboard`]: the administrators' dashboard (studies per clinic per day, turnaround
//!   percentiles, backlog, overdue, discrepancy rates).
//! - [`admin`]: audited administration (users, tokens, assignments) for the CLI and the API.
//! - [`ae_title`]: the [`ae_title::AeTitle`] newtype; [`error`]: [`StoreError`].

pub mod access;
pub mod admin;
pub mod ae_title;
pub mod archive;
pub mod audit;
pub mod audit_forwarding;
pub mod audit_message;
pub mod charset;
pub mod check;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod header;
pub mod index;
pub mod live_events;
pub mod metadata;
pub mod objects;
pub mod query;
pub mod reports;
#[cfg(test)]
mod test_postgres;
pub mod users;
pub mod worklist;

pub use error::{Result, StoreError};

/// Locks `m`, also after a thread panicked while holding it: the data behind this crate's
/// mutexes (idle connections, queues, counters) stays valid whatever step a panic
/// interrupted, so one panic does not become one in every later caller.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
