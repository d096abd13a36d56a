//! `sample-dicom`: write synthetic, PHI-free DICOM files.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sample-dicom",
    version,
    about = "Write synthetic, PHI-free DICOM files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Regenerate the committed sample set (and its MANIFEST.tsv) into OUT_DIR.
    SampleSet { out_dir: PathBuf },
    /// A CT series of axial slices (explicit VR little endian).
    Ct {
        #[arg(long, default_value_t = 10)]
        slices: usize,
        #[arg(long, default_value_t = 512)]
        rows: u16,
        #[arg(long, default_value_t = 512)]
        cols: u16,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        out_dir: PathBuf,
    },
    /// K single DX images of about B bytes of pixel data each (seeds S, S+1, ...).
    Dx {
        #[arg(long, default_value_t = 10 * 1024 * 1024)]
        bytes: usize,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        out_dir: PathBuf,
    },
    /// Write the source image of the vendored JPEG 2000 codestream as a 16-bit PGM.
    J2kSource { out: PathBuf },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::SampleSet { out_dir } => {
            let paths = sample_dicom::write_sample_set(&out_dir)?;
            println!(
                "wrote {} files and {} to {}",
                paths.len(),
                sample_dicom::MANIFEST_NAME,
                out_dir.display()
            );
        }
        Command::Ct {
            slices,
            rows,
            cols,
            seed,
            out_dir,
        } => {
            let paths = sample_dicom::write_ct_series(&out_dir, slices, rows, cols, seed)?;
            println!("wrote {} CT slices to {}", paths.len(), out_dir.display());
        }
        Command::Dx {
            bytes,
            count,
            seed,
            out_dir,
        } => {
            for k in 0..count as u64 {
                let p = sample_dicom::write_dx_image(&out_dir, bytes, seed + k)?;
                println!("{}", p.display());
            }
        }
        Command::J2kSource { out } => {
            std::fs::write(&out, sample_dicom::j2k_source_pgm())?;
            println!("{}", out.display());
        }
    }
    Ok(())
}
