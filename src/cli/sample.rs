//! `infogan sample`: images for chosen codes from a trained checkpoint.

use std::path::PathBuf;

use clap::Args;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::flags::in_range;
use crate::error::{Error, Result};
use crate::models::weights;
use crate::output::grid::tile;

#[derive(Args)]
pub struct SampleArgs {
    /// A checkpoint.safetensors written by `infogan train`
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// Value of the first categorical code (0-based); without it, one row per value
    #[arg(long, value_name = "K")]
    cat: Option<usize>,
    /// Values of the continuous codes, comma-separated (the prior is uniform in [-1, 1]; the paper also shows
    /// -2..2) [default: all 0]
    #[arg(long, value_name = "V1,V2", allow_hyphen_values = true)]
    cont: Option<String>,
    /// Images per row, each from a different noise vector
    #[arg(long, default_value_t = 10, value_name = "N")]
    n: usize,
    /// Seed of the noise vectors
    #[arg(long, default_value_t = 0, value_name = "N")]
    seed: u64,
    /// The PNG file to write
    #[arg(long, value_name = "FILE.png")]
    out: PathBuf,
}

/// Images per row, at most (a row per categorical value: 2,000 images in all, about
/// a gigabyte of activations for the MNIST generator).
const MAX_PER_ROW: usize = 200;

pub fn run(args: SampleArgs) -> Result<()> {
    let mut loaded = weights::load(&args.checkpoint)?;
    let spec = loaded.arch.latent.clone();
    in_range("n", args.n, 1..=MAX_PER_ROW)?;
    let cont: Vec<f32> = match &args.cont {
        None => vec![0.0; spec.continuous],
        Some(list) => {
            let values: Vec<f32> = list
                .split(',')
                .map(|v| v.trim().parse::<f32>().ok().filter(|v| v.is_finite()))
                .collect::<Option<_>>()
                .ok_or_else(|| Error::Invalid(format!("--cont {list:?}: expected numbers separated by commas")))?;
            if values.len() != spec.continuous {
                return Err(Error::Invalid(format!(
                    "--cont gives {} values, but this model has {} continuous codes",
                    values.len(),
                    spec.continuous
                )));
            }
            values
        }
    };
    let rows: Vec<usize> = match (args.cat, spec.categorical.first()) {
        (Some(k), Some(&size)) if k < size => vec![k],
        (Some(k), Some(&size)) => {
            return Err(Error::Invalid(format!(
                "--cat {k} is out of range: the categorical code has values 0..{}",
                size - 1
            )));
        }
        (Some(_), None) => return Err(Error::Invalid("--cat: this model has no categorical code".into())),
        (None, Some(&size)) => (0..size).collect(),
        (None, None) => vec![0],
    };
    let latent = spec.grid_of(&rows, args.n, &cont, &mut Xoshiro256PlusPlus::seed_from_u64(args.seed));
    let count = rows.len() * args.n;
    let images = loaded.generator.generate(&latent.z);
    tile(&images, rows.len(), args.n).save(&args.out)?;
    eprintln!("infogan: wrote {} ({} images)", args.out.display(), count);
    Ok(())
}
