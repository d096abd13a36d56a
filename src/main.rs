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

/// mimalloc rather than glibc's malloc: a search answer is hundreds of small JSON values
/// made and freed per request, and glibc spent 8–12% of the server's CPU in malloc, free
/// and `malloc_consolidate` (perf, QIDO-RS). Measured in docs/benchmarks.md: 5–8% off the
/// QIDO-RS latencies.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
