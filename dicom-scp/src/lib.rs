//! # dicom-scp — DICOM networking for the regional archive
//!
//! An SCP for Verification (C-ECHO) and Storage (C-STORE of every storage SOP class of the
//! standard dictionary, in every transfer syntax the registry knows, stored as received).
//! It translates DIMSE into calls on [`pacs_store::archive::Archive`]; it does not touch SQL
//! or objects itself, and it does not depend on the HTTP adapter.
//!
//! ## Layout
//! - [`server`]: [`server::run`] / [`server::run_with_tls`] — the accept loops (plain port
//!   and DICOM TLS port, with timed handshakes), the shared association limit, graceful
//!   shutdown. What the transport established (TLS, verified client certificate) goes into
//!   the AE registry's decision ([`pacs_store::index::AeRegistration::admit`]).
//! - [`association`]: A-ASSOCIATE negotiation (AE registry, host binding, presentation
//!   contexts) and the PDU transport (TCP or TLS) with strict size and idle limits.
//! - [`service`]: the DIMSE loop of one association and the C-STORE status mapping.
//! - [`dimse`]: command set encoding and decoding.
//! - [`sop_classes`]: which abstract syntaxes are accepted.

pub mod association;
pub mod deliver;
pub mod dimse;
pub mod find;
pub mod get;
pub mod moves;
pub mod server;
pub mod service;
pub mod sop_classes;
pub mod store_scu;
pub mod transcode;
pub mod uid;

pub use server::{ScpConfig, TlsListener, run, run_with_tls};
