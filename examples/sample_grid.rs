//! Loads a trained generator and writes a grid of its images: one row per value of
//! the categorical code, one column per noise vector.
//!
//! cargo run --release --example sample_grid -- CHECKPOINT OUT.png

use std::path::PathBuf;

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use infogan::error::{Error, Result};
use infogan::models::weights;
use infogan::output::grid::{default_scale, tile};

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1).map(PathBuf::from);
    let (Some(checkpoint), Some(out)) = (args.next(), args.next()) else {
        return Err(Error::Invalid("usage: sample_grid CHECKPOINT OUT.png".into()));
    };
    let mut model = weights::load(&checkpoint)?;
    let spec = &model.arch.latent;
    let rows = spec.categorical.first().copied().unwrap_or(1);
    let cols = 8;
    let latent = spec.grid(rows, cols, &mut Xoshiro256PlusPlus::seed_from_u64(0));
    // images: [rows * cols, C, H, W] in [-1, 1], batch norm in evaluation mode.
    let images = model.generator.generate(&latent.z);
    tile(&images, rows, cols, default_scale(images.dim().2)).save(&out)?;
    println!("{rows}x{cols} grid of {} written to {}", model.arch.dataset, out.display());
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
