//! The `infogan` command line: argument parsing, and one module per subcommand.
//!
//! A thin layer over the library: each subcommand parses its flags, calls the
//! library and reports. The doc comments of the argument structs are clap's `--help`
//! text for a terminal, where `<dataset>` is a placeholder, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

pub mod bench;
pub mod eval;
#[cfg(feature = "onnx")]
pub mod export;
pub mod flags;
pub mod interpolate;
pub mod plot;
mod progress;
pub mod sample;
pub mod score;
pub mod serve;
pub mod train;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::data::DatasetKind;
use crate::error::{Error, Result};
use crate::models::ModelKind;

#[derive(Parser)]
#[command(
    name = "infogan",
    version,
    about = "InfoGAN and plain GANs on a CPU, with every layer written by hand",
    long_about = "InfoGAN and plain GANs on a CPU, with every layer written by hand.\n\n\
                  Start with `infogan train --dataset mnist` (or `make train DATASET=mnist`, which also fetches the \
                  data). Each subcommand's --help explains its flags."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an InfoGAN (or a plain GAN) and write samples, curves and a checkpoint
    Train(train::TrainArgs),
    /// Generate images for chosen codes from a checkpoint
    Sample(sample::SampleArgs),
    /// Time training steps on random data and print one JSON line (the step of the PyTorch reference,
    /// without DiffAugment or mode seeking unless asked for)
    Bench(bench::BenchArgs),
    /// Score the categorical code as an unsupervised classifier of the real test images
    Eval(eval::EvalArgs),
    /// Image quality of a generator (or of the real test images): Frechet distance, Inception-style score, diversity
    Score(score::ScoreArgs),
    /// Interpolate between latent points (linear and slerp) and sweep codes, as PNG strips and GIFs
    Interpolate(interpolate::InterpolateArgs),
    /// Overlay the information curves and accuracies of several runs in one PNG
    Plot(plot::PlotArgs),
    /// Explore a trained generator live in the browser: sliders for the codes, a button per categorical value
    Serve(serve::ServeArgs),
    /// Export the trained generator as an ONNX model
    #[cfg(feature = "onnx")]
    Export(export::ExportArgs),
}

/// Sets the size of the global thread pool (`None`: rayon's default, all cores or
/// RAYON_NUM_THREADS). Returns the number of threads in use.
pub fn set_threads(threads: Option<usize>) -> Result<usize> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(Error::Invalid("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Invalid(format!("cannot start {n} threads: {e}")))?;
    }
    Ok(rayon::current_num_threads())
}

/// Exit status of a training run stopped by a signal, its checkpoint saved:
/// sysexits.h's EX_TEMPFAIL ("try again later"), so that a scheduler can tell a run to
/// resume from one that is done (0) or failed (1).
pub const EXIT_STOPPED: u8 = 75;

/// Parses the command line and runs the subcommand.
pub fn run(cli: Cli) -> Result<crate::train::run::Outcome> {
    let done = |r: Result<()>| r.map(|()| crate::train::run::Outcome::Done);
    match cli.command {
        Command::Train(args) => train::run(args),
        Command::Sample(args) => done(sample::run(args)),
        Command::Eval(args) => done(eval::run(args)),
        Command::Score(args) => done(score::run(args)),
        Command::Interpolate(args) => done(interpolate::run(args)),
        Command::Plot(args) => done(plot::run(args)),
        Command::Serve(args) => done(serve::run(args)),
        #[cfg(feature = "onnx")]
        Command::Export(args) => done(export::run(args)),
        Command::Bench(args) => done(bench::run(args)),
    }
}

/// Tells the C allocator to serve every allocation from its heap and to keep freed
/// memory for reuse. By default glibc maps large blocks fresh from the kernel and
/// returns them on free, so every training step would pay page faults for the same
/// few megabytes of activations, allocated and freed again at each step.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; it is called before
    // any other thread exists. The values are within glibc's documented ranges
    // (M_MMAP_THRESHOLD at most 32 MiB on 64-bit systems).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// The entry point of the binary: runs the command and turns an error into a message
/// on stderr and exit status 1.
pub fn main() -> std::process::ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "infogan: internal error, this is a bug: {info}\n  please report it with the command that caused it \
             (set RUST_BACKTRACE=1 for a backtrace)"
        );
    }));
    let cli = Cli::parse();
    match run(cli) {
        Ok(crate::train::run::Outcome::Done) => std::process::ExitCode::SUCCESS,
        Ok(crate::train::run::Outcome::Stopped) => std::process::ExitCode::from(EXIT_STOPPED),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `runs/<dataset>-<model>`, the default output folder.
pub fn default_out(dataset: DatasetKind, model: ModelKind) -> PathBuf {
    PathBuf::from("runs").join(format!("{}-{}", dataset.name(), model.name()))
}
