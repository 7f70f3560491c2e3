//! `infogan interpolate`: walks through the latent space of a trained generator.
//! Between two latent points drawn from the prior with two seeds, along a straight
//! line and along a great circle (slerp, which keeps the noise at the norm the prior
//! gives it), as PNG strips and animated GIFs; and sweeps of one code, as a GIF.

use std::path::{Path, PathBuf};

use clap::Args;
use ndarray::{Array2, s};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::flags::in_range;
use super::sample::MAX_SCALE;
use crate::error::{Error, Result};
use crate::models::Generator;
use crate::models::weights;
use crate::output::gif;
use crate::output::grid::{default_scale, tile};
use crate::output::png::Image;

#[derive(Args)]
pub struct InterpolateArgs {
    /// A checkpoint.safetensors written by `infogan train`
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// Seed of the latent point at the start
    #[arg(long, default_value_t = 1, value_name = "SEED")]
    from: u64,
    /// Seed of the latent point at the end
    #[arg(long, default_value_t = 2, value_name = "SEED")]
    to: u64,
    /// Images along each path (and frames of each GIF)
    #[arg(long, default_value_t = 12, value_name = "N")]
    steps: usize,
    /// Also sweep one code, with everything else fixed: cat1, cat2, ... (every value) or cont1, cont2, ...
    /// (from -2 to 2)
    #[arg(long, value_name = "CODE")]
    sweep: Option<String>,
    /// Noise vectors side by side in each frame of the sweep
    #[arg(long, default_value_t = 8, value_name = "N")]
    n: usize,
    /// Pixel magnification of the pictures (nearest neighbour) [default: 2 for images of 32 pixels or less, else 1]
    #[arg(long, value_name = "K")]
    scale: Option<usize>,
    /// Folder for the pictures: interp_linear.png/.gif, interp_slerp.png/.gif, sweep_<code>.gif
    #[arg(long, value_name = "DIR", default_value = "interpolation")]
    out_dir: PathBuf,
}

/// Frames of a path or a sweep, at most.
const MAX_STEPS: usize = 1000;
/// Images side by side in a sweep's frame, at most.
const MAX_SIDE: usize = 100;

pub fn run(args: InterpolateArgs) -> Result<()> {
    in_range("steps", args.steps, 2..=MAX_STEPS)?;
    in_range("n", args.n, 1..=MAX_SIDE)?;
    let mut loaded = weights::load(&args.checkpoint)?;
    let scale = args.scale.unwrap_or_else(|| default_scale(loaded.arch.dataset.image_shape().1));
    in_range("scale", scale, 1..=MAX_SCALE)?;
    let spec = loaded.arch.latent.clone();
    std::fs::create_dir_all(&args.out_dir).map_err(|e| Error::Io {
        action: "create the folder",
        path: args.out_dir.clone(),
        source: e,
        hint: Some("pass --out-dir with a folder you can write to".into()),
    })?;
    let start = spec.sample(1, &mut Xoshiro256PlusPlus::seed_from_u64(args.from)).z.row(0).to_owned();
    let end = spec.sample(1, &mut Xoshiro256PlusPlus::seed_from_u64(args.to)).z.row(0).to_owned();
    let mut written = Vec::new();
    for (name, spherical) in [("linear", false), ("slerp", true)] {
        let z = spec.interpolate(&start, &end, args.steps, spherical);
        let frames = single_frames(&mut loaded.generator, &z, scale);
        let strip = tile(&loaded.generator.generate(&z), 1, args.steps, scale);
        written.push(save_png(&strip, &args.out_dir.join(format!("interp_{name}.png")))?);
        // Forth and back, so the loop has no jump.
        let looped: Vec<Image> = frames.iter().chain(frames.iter().rev().skip(1)).cloned().collect();
        let gif_path = args.out_dir.join(format!("interp_{name}.gif"));
        gif::save(&gif_path, &looped, 12)?;
        written.push(gif_path);
    }
    if let Some(code) = &args.sweep {
        let frames_z = spec.sweep(code, args.n, args.steps, &mut Xoshiro256PlusPlus::seed_from_u64(args.from))?;
        let frames: Vec<Image> =
            frames_z.iter().map(|z| tile(&loaded.generator.generate(z), 1, args.n, scale)).collect();
        let looped: Vec<Image> = frames.iter().chain(frames.iter().rev().skip(1)).cloned().collect();
        let gif_path = args.out_dir.join(format!("sweep_{code}.gif"));
        gif::save(&gif_path, &looped, 12)?;
        written.push(gif_path);
    }
    for p in written {
        eprintln!("infogan: wrote {}", p.display());
    }
    Ok(())
}

fn save_png(img: &Image, path: &Path) -> Result<PathBuf> {
    img.save(path)?;
    Ok(path.to_path_buf())
}

/// One image per latent row, each a frame.
fn single_frames(g: &mut Generator, z: &Array2<f32>, scale: usize) -> Vec<Image> {
    let images = g.generate(z);
    (0..z.nrows()).map(|i| tile(&images.slice(s![i..i + 1, .., .., ..]).to_owned(), 1, 1, scale)).collect()
}
