//! Command-line interface.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pacs",
    version,
    about = "Regional PACS: DICOM archive for township clinics and the imaging centre"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command honours (they override the config file and PACS_* environment).
#[derive(Debug, Args, Default, Clone)]
pub struct CommonArgs {
    /// TOML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (SQLite index, object files, staging area). Env: PACS_DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Index database: sqlite:PATH or postgres://… Env: PACS_DATABASE_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the archive: DICOM listener and HTTP server.
    Serve(ServeArgs),
    /// Township clinics and the AE titles allowed to send for them.
    #[command(subcommand)]
    Clinic(ClinicCommand),
    /// Import DICOM files and folders, with the same checks and durability as C-STORE.
    Import(ImportArgs),
    /// Check that every index row has its object with a matching hash, and every object its row.
    Check(CheckArgs),
    /// Counts of patients, studies, series, instances and bytes.
    Stats(StatsArgs),
    /// Users, roles and credentials.
    #[command(subcommand)]
    User(crate::users_cli::UserCommand),
    /// The tamper-evident audit trail.
    #[command(subcommand)]
    Audit(crate::audit_cli::AuditCommand),
    /// Signed reports.
    #[command(subcommand)]
    Report(crate::report_cli::ReportCommand),
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// DICOM port (0 picks a free one). Env: PACS_DICOM_PORT.
    #[arg(long)]
    pub dicom_port: Option<u16>,
    /// Address the DICOM listener binds. Env: PACS_DICOM_BIND.
    #[arg(long)]
    pub dicom_bind: Option<IpAddr>,
    /// DICOM TLS port (0 picks a free one); needs dicom_tls_cert and dicom_tls_key.
    /// Env: PACS_DICOM_TLS_PORT.
    #[arg(long)]
    pub dicom_tls_port: Option<u16>,
    /// HTTP port (0 picks a free one). Env: PACS_HTTP_PORT.
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Address the HTTP server binds (loopback unless set). Env: PACS_HTTP_BIND.
    #[arg(long)]
    pub http_bind: Option<IpAddr>,
    /// The archive's AE title. Env: PACS_AE_TITLE.
    #[arg(long)]
    pub ae_title: Option<String>,
    /// Load the synthetic demo studies and register the demo clinic before serving.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClinicCommand {
    /// Register a clinic (created if new) and a modality AE title allowed to send for it.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long = "ae-title")]
        ae_title: String,
        /// Accept this AE only from this IP address.
        #[arg(long)]
        host: Option<IpAddr>,
        /// Accept this AE only over the DICOM TLS port (refused on the plain port).
        #[arg(long)]
        tls_only: bool,
        /// Accept this AE only with a client certificate verified against
        /// dicom_tls_client_ca (implies --tls-only).
        #[arg(long)]
        require_client_cert: bool,
        /// The port this AE listens on: with --host, it becomes a C-MOVE destination for
        /// its clinic.
        #[arg(long, requires = "host", value_parser = clap::value_parser!(u16).range(1..))]
        port: Option<u16>,
        /// Push the clinic's signed reports (DICOM SR and PDF) to this AE by C-STORE
        /// (needs --host and --port).
        #[arg(long, requires = "port")]
        receives_reports: bool,
    },
    /// List clinics and their AE titles.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Files or folders (searched recursively).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Attribute the imported objects to this registered clinic.
    #[arg(long)]
    pub clinic: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Re-index orphaned objects and drop rows whose object is gone. Run with the server stopped.
    #[arg(long)]
    pub repair: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[arg(long)]
    pub json: bool,
}
