//! End-to-end tests: the real `pacs` binary with real peers. One test binary (see
//! ripgrep's habit); modules by topic. Tests that matter for both deployments run once per
//! backend: SQLite + files (embedded default) and PostgreSQL + S3 (Garage).
//!
//! Run through `scripts/test.sh`, which installs dcmtk, pynetdicom, PostgreSQL and Garage
//! and exports where they listen. A test whose peer is missing fails; nothing is skipped.

mod http;
mod support;

mod access;
mod admin_api;
mod audit;
mod audit_syslog;
mod bad_input;
mod cli;
mod delivery;
mod dicom_tls;
mod find;
mod http_auth;
mod https;
mod live_events;
mod qido;
mod store;
mod stow;
mod users;
mod viewer;
mod viewer_admin;
mod viewer_reading;
mod viewer_tools;
mod wado;
mod wado_metadata;
mod worklist;

/// Declares a module `name` with tests `sqlite_files` and `postgres_s3` calling
/// `name(Backend)`.
#[macro_export]
macro_rules! per_backend {
    ($body:ident) => {
        mod $body {
            #[test]
            fn sqlite_files() {
                super::$body($crate::support::Backend::SqliteFiles);
            }
            #[test]
            fn postgres_s3() {
                super::$body($crate::support::Backend::PostgresS3);
            }
        }
    };
}
