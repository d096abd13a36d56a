//! `pacs report …`: check the signatures of a stored report.

use std::process::ExitCode;

use anyhow::Context;

use crate::settings::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// Rebuild what report ID and its addenda signed from the database and check each
    /// Ed25519 signature against its signer's public key; exit 1 when one fails. Needs no
    /// secret: anyone with read access to the index can check.
    Verify {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: &Settings, cmd: ReportCommand) -> anyhow::Result<ExitCode> {
    let archive = settings
        .store()
        .open()
        .await
        .context("cannot open the archive")?;
    let code = match cmd {
        ReportCommand::Verify { id, json } => {
            let Some(v) = archive.index().verify_report(id).await? else {
                archive.index().close().await;
                anyhow::bail!("no report {id}");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if v.valid {
                println!(
                    "report {id}: signatures valid — signed by {} (key {}) at {}{}",
                    v.signer.as_deref().unwrap_or("?"),
                    v.signer_key_id.as_deref().unwrap_or("?"),
                    v.signed_at
                        .map(pacs_store::audit::format_micros)
                        .unwrap_or_default(),
                    match v.addenda.len() {
                        0 => String::new(),
                        n => format!(", {n} signed addend{}", if n == 1 { "um" } else { "a" }),
                    }
                );
            } else {
                println!(
                    "report {id}: NOT VALID — {}",
                    v.problem.as_deref().unwrap_or("a signature does not match")
                );
            }
            if v.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    };
    archive.index().close().await;
    Ok(code)
}
