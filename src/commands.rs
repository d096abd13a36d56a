//! The one-shot commands: clinic, import, check, stats.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use pacs_store::ae_title::AeTitle;
use pacs_store::archive::{Archive, IngestError, IngestOutcome, Source};
use pacs_store::index::AeOptions;

use crate::cli::{CheckArgs, Cli, ClinicCommand, Command, ImportArgs, StatsArgs};
use crate::settings::Settings;

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::load(&cli.common, Some(&args))?;
            crate::serve::serve(settings, args.demo).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Clinic(c) => clinic(&Settings::load(&cli.common, None)?, c).await,
        Command::Import(a) => import(&Settings::load(&cli.common, None)?, a).await,
        Command::Check(a) => check(&Settings::load(&cli.common, None)?, a).await,
        Command::Stats(a) => stats(&Settings::load(&cli.common, None)?, a).await,
        Command::User(c) => crate::users_cli::run(&Settings::load(&cli.common, None)?, c).await,
        Command::Audit(c) => crate::audit_cli::run(&Settings::load(&cli.common, None)?, c).await,
        Command::Report(c) => crate::report_cli::run(&Settings::load(&cli.common, None)?, c).await,
    }
}

async fn open(settings: &Settings) -> anyhow::Result<Archive> {
    settings
        .store()
        .open()
        .await
        .context("cannot open the archive")
}

async fn clinic(settings: &Settings, cmd: ClinicCommand) -> anyhow::Result<ExitCode> {
    let archive = open(settings).await?;
    match cmd {
        ClinicCommand::Add {
            name,
            ae_title,
            host,
            tls_only,
            require_client_cert,
            port,
            receives_reports,
        } => {
            let ae = AeTitle::parse(&ae_title)?;
            let options = AeOptions {
                host,
                tls_only,
                require_client_cert,
                port,
                receives_reports,
            }
            .normalized();
            let added = archive.index().add_clinic_ae(&name, &ae, options).await;
            audit_clinic_add(&archive, &name, &ae, &options, &added).await;
            let reg = added?;
            println!(
                "registered AE title {} for clinic {:?} ({})",
                reg.ae_title,
                reg.clinic_name,
                reg.options().describe()
            );
            // Hints only: `pacs serve` may run with another configuration than this command.
            if reg.tls_only && settings.dicom_tls_port.is_none() {
                println!(
                    "note: {} is accepted only over DICOM TLS, and this configuration has no \
                     dicom_tls_port: `pacs serve` needs dicom_tls_port, dicom_tls_cert and \
                     dicom_tls_key for it to connect",
                    reg.ae_title
                );
            }
            if reg.require_client_cert && settings.dicom_tls_client_ca.is_none() {
                println!(
                    "note: {} needs a client certificate, and this configuration has no \
                     dicom_tls_client_ca: `pacs serve` needs it (PEM bundle of the CAs that sign \
                     the modalities' certificates) to verify one",
                    reg.ae_title
                );
            }
        }
        ClinicCommand::List { json } => {
            let clinics = archive.index().list_clinics().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&clinics)?);
            } else if clinics.is_empty() {
                println!(
                    "no clinics registered; add one with `pacs clinic add --name NAME --ae-title AE`"
                );
            } else {
                for c in clinics {
                    println!("{}", c.name);
                    for a in c.ae_titles {
                        println!("  {:<16}  {}", a.ae_title.as_str(), a.options().describe());
                    }
                }
            }
        }
    }
    archive.index().close().await;
    Ok(ExitCode::SUCCESS)
}

/// Every regular file under `paths` (folders searched recursively, symlinks not followed).
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)
            .with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            stack.extend(entries.into_iter().rev());
        } else if meta.is_file() {
            out.push(p);
        }
    }
    Ok(out)
}

pub async fn import_paths(
    archive: &Archive,
    paths: &[PathBuf],
    source: &Source,
    quiet: bool,
) -> anyhow::Result<ImportSummary> {
    let files = collect_files(paths)?;
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(files.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} files  {elapsed_precise}  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let mut summary = ImportSummary::default();
    for f in &files {
        if is_part10(f) {
            let r = archive.import_file(f, source).await;
            summary.record(f, r);
        } else {
            summary.skipped.push(f.clone());
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Whether a file starts like a DICOM Part 10 file (`DICM` after the preamble). Folders
/// hold other files too (DICOMDIR is DICOM; notes, scans of request forms are not).
fn is_part10(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|_| &head[128..132] == b"DICM")
        .unwrap_or(false)
}

#[derive(Debug, Default)]
pub struct ImportSummary {
    pub stored: usize,
    pub duplicates: usize,
    pub conflicts: usize,
    pub refused: Vec<(PathBuf, String)>,
    /// Files that are not DICOM Part 10 files at all.
    pub skipped: Vec<PathBuf>,
}

impl ImportSummary {
    fn record(&mut self, path: &Path, r: Result<IngestOutcome, IngestError>) {
        match r {
            Ok(IngestOutcome::Stored { .. }) => self.stored += 1,
            Ok(IngestOutcome::Duplicate) => self.duplicates += 1,
            Ok(IngestOutcome::ConflictKept { .. }) => self.conflicts += 1,
            Err(e) => self.refused.push((path.to_owned(), e.to_string())),
        }
    }
}

async fn import(settings: &Settings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let archive = open(settings).await?;
    let source = match &args.clinic {
        None => Source::default(),
        Some(name) => {
            let clinics = archive.index().list_clinics().await?;
            let c = clinics
                .into_iter()
                .find(|c| &c.name == name)
                .with_context(|| format!("no clinic named {name:?}; see `pacs clinic list`"))?;
            Source {
                clinic_id: Some(c.id),
                clinic_name: Some(c.name),
                ae_title: None,
                uploader: None,
                archive_authored: false,
            }
        }
    };
    let s = import_paths(&archive, &args.paths, &source, args.quiet).await?;
    println!(
        "imported {} new instances, {} already archived, {} kept as conflicts, {} refused, {} skipped",
        s.stored,
        s.duplicates,
        s.conflicts,
        s.refused.len(),
        s.skipped.len()
    );
    for (p, why) in &s.refused {
        println!("  refused {}: {why}", p.display());
    }
    for p in &s.skipped {
        println!(
            "  skipped {}: not a DICOM file (no DICM marker)",
            p.display()
        );
    }
    archive.index().close().await;
    Ok(if s.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn check(settings: &Settings, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let archive = open(settings)
        .await?
        .with_audit_command("pacs check --repair");
    let r = pacs_store::check::check(&archive, args.repair).await?;
    if args.repair {
        audit_repair(&archive, &r).await;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "checked {} indexed objects against {} stored objects ({})",
            r.indexed_objects,
            r.stored_objects,
            archive.objects().describe()
        );
        for m in &r.missing_objects {
            println!("  MISSING object for indexed instance {m}");
        }
        for m in &r.hash_mismatches {
            println!("  HASH MISMATCH {m}");
        }
        for m in &r.orphaned_objects {
            println!("  ORPHANED object {m} (no index row)");
        }
        for m in &r.repairs {
            println!("  repaired: {m}");
        }
        if r.staging_leftovers > 0 {
            println!(
                "  {} file(s) in the staging area (in flight, or left by a crash: removed when the server starts)",
                r.staging_leftovers
            );
        }
        println!(
            "{}",
            if r.is_clean() {
                "archive is clean"
            } else {
                "ARCHIVE IS DAMAGED"
            }
        );
    }
    archive.index().close().await;
    Ok(if r.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn stats(settings: &Settings, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let archive = open(settings).await?;
    let s = archive.index().stats().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!("patients   {}", s.patients);
        println!("studies    {}", s.studies);
        println!("series     {}", s.series);
        println!("instances  {}", s.instances);
        println!("bytes      {}", s.bytes);
        if s.conflicts > 0 {
            println!(
                "conflicts  {} (same SOP Instance UID, other content; kept for review)",
                s.conflicts
            );
        }
    }
    archive.index().close().await;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------
// Audit trail of the commands above (imports are audited by the ingest path itself).

/// Registering an AE title changes who may send: PS3.15 has no "configuration" event ID,
/// and its Security Alert (110113) is the one meant for security configuration changes
/// (event type 110129 Security Configuration; success is an informative alert).
async fn audit_clinic_add(
    archive: &Archive,
    name: &str,
    ae: &AeTitle,
    options: &AeOptions,
    added: &pacs_store::Result<pacs_store::index::AeRegistration>,
) {
    use pacs_store::audit::{
        Action, AuditEvent, EventId, EventType, Outcome, local_operator, roles,
    };
    let what = format!(
        "register AE title {ae} for clinic {name:?}, {}",
        options.describe()
    );
    let mut event = AuditEvent::new(
        EventId::SecurityAlert,
        Action::Create,
        local_operator(),
        roles::OPERATOR,
    )
    .with_type(EventType::SecurityConfiguration)
    .with_detail(format!("pacs clinic add: {what}"));
    if let Err(e) = added {
        event = event.with_outcome(Outcome::MinorFailure, e.to_string());
    }
    archive.audit_or_log(event).await;
}

/// `pacs check --repair` changes the index (rows dropped, orphans re-indexed — each of those
/// also gets its own Import event — staging leftovers removed): 110103 DICOM Instances
/// Accessed, action U, listing what was done.
async fn audit_repair(archive: &Archive, r: &pacs_store::check::CheckReport) {
    use pacs_store::audit::{Action, AuditEvent, EventId, Outcome, local_operator, roles};
    let done = if r.repairs.is_empty() {
        "nothing to repair".to_owned()
    } else {
        r.repairs.join("; ")
    };
    let mut event = AuditEvent::new(
        EventId::InstancesAccessed,
        Action::Update,
        local_operator(),
        roles::OPERATOR,
    )
    .with_detail(format!("pacs check --repair: {done}"));
    if !r.is_clean() {
        event = event.with_outcome(
            Outcome::MinorFailure,
            format!("{} problem(s) left unrepaired", r.unrepaired),
        );
    }
    archive.audit_or_log(event).await;
}
