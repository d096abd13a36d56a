//! `pacs` — the composition root: configuration, archive, DICOM and HTTP wired together.
//! Logic lives in the library crates; this binary only parses, wires and reports.

mod audit_cli;
mod audit_forward;
mod cli;
mod commands;
mod report_cli;
mod serve;
mod settings;
mod tls;
mod users_cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,dicom_parser=error")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pacs: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pacs: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
