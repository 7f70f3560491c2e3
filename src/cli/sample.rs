//! `infogan sample`: images for chosen codes from a trained checkpoint.

use std::path::PathBuf;

use clap::Args;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::flags::in_range;
use crate::error::{Error, Result};
use crate::models::labels::CodeLabels;
use crate::models::weights::{self, Networks};
use crate::models::{LatentSpec, ModelKind};
use crate::output::grid::{Caption, default_scale, tile, with_captions};
use crate::output::png::Image;

#[derive(Args)]
pub struct SampleArgs {
    /// A checkpoint.safetensors written by `infogan train`
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// Value of the first categorical code (0-based); without it (or --label), one row per value
    #[arg(long, value_name = "K", conflicts_with = "label")]
    cat: Option<usize>,
    /// The label to draw (7, sandal, horse, ...): the code value that `infogan eval` or the end of training matched
    /// to it on the test images
    #[arg(long, value_name = "NAME")]
    label: Option<String>,
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
    /// Pixel magnification (nearest neighbour) [default: 2 for images of 32 pixels or less, else 1]
    #[arg(long, value_name = "K")]
    scale: Option<usize>,
    /// Leave out the captions to the left of the rows (the label and value of each)
    #[arg(long)]
    plain: bool,
    /// The PNG file to write
    #[arg(long, value_name = "FILE.png")]
    out: PathBuf,
}

/// Images per row, at most (a row per categorical value: 2,000 images in all, about
/// a gigabyte of activations for the MNIST generator).
const MAX_PER_ROW: usize = 200;
/// Magnification, at most: a 32x32 image becomes 512x512.
pub const MAX_SCALE: usize = 16;

pub fn run(args: SampleArgs) -> Result<()> {
    let mut loaded = weights::load(&args.checkpoint)?;
    let spec = loaded.arch.latent.clone();
    in_range("n", args.n, 1..=MAX_PER_ROW)?;
    let side = loaded.arch.dataset.image_shape().1;
    let scale = args.scale.unwrap_or_else(|| default_scale(side));
    in_range("scale", scale, 1..=MAX_SCALE)?;
    let cont = match &args.cont {
        None => vec![0.0; spec.continuous],
        Some(list) => parse_cont(list, &spec)?,
    };
    let chosen = match (&args.label, args.cat) {
        (Some(name), _) => Some(value_of_label(&loaded, &args, name)?),
        (None, Some(k)) => Some(k),
        (None, None) => None,
    };
    let rows: Vec<usize> = match (chosen, spec.categorical.first()) {
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
    let mut img = render(&mut loaded, &rows, args.n, &cont, args.seed, scale);
    if chosen.is_none() && !args.plain && !spec.categorical.is_empty() {
        img = with_captions(&img, &captions(&rows, loaded.labels.as_ref()))?;
    }
    img.save(&args.out)?;
    eprintln!("infogan: wrote {} ({} images)", args.out.display(), rows.len() * args.n);
    Ok(())
}

/// The grid of `infogan sample`: row `r` draws code value `rows[r]`, column `c` noise
/// vector `c` of `n` drawn from `seed`, the continuous codes at `cont`. The explorer
/// (`serve`) draws its single image through this too, so that both agree pixel for
/// pixel.
pub fn render(model: &mut Networks, rows: &[usize], n: usize, cont: &[f32], seed: u64, scale: usize) -> Image {
    let latent = model.arch.latent.grid_of(rows, n, cont, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
    tile(&model.generator.generate(&latent.z), rows.len(), n, scale)
}

/// Each row's caption: the label of its code value when the map is known, and the
/// value itself.
pub fn captions(rows: &[usize], labels: Option<&CodeLabels>) -> Vec<Caption> {
    rows.iter()
        .map(|&k| match labels.and_then(|m| m.label(k)) {
            Some(label) => Caption { title: label.to_string(), detail: Some(format!("value {k}")) },
            None => Caption { title: format!("value {k}"), detail: None },
        })
        .collect()
}

/// `--label`: the code value the checkpoint's map gives that label.
fn value_of_label(loaded: &Networks, args: &SampleArgs, name: &str) -> Result<usize> {
    if loaded.model != ModelKind::InfoGan {
        return Err(Error::Invalid(
            "--label: this is a plain GAN, whose generator ignores the code; no value draws a label".into(),
        ));
    }
    let map = loaded.labels.as_ref().ok_or_else(|| {
        Error::Invalid(format!(
            "--label: {} holds no map of code values to labels yet; make one with `infogan eval --checkpoint {}` (it \
             needs the dataset's test images), or pass --cat",
            args.checkpoint.display(),
            args.checkpoint.display()
        ))
    })?;
    map.value_of(name)
}

/// `--cont`: one finite number per continuous code.
fn parse_cont(list: &str, spec: &LatentSpec) -> Result<Vec<f32>> {
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
    Ok(values)
}
