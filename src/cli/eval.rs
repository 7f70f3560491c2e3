//! `infogan eval`: the categorical code's unsupervised classification accuracy on the
//! real test images, as one JSON line; the map of code values to labels it finds is
//! stored in the checkpoint.

use std::path::PathBuf;

use clap::Args;

use super::flags::in_range;
use crate::data::{self, Split};
use crate::error::{Error, Result};
use crate::eval::{STABILITY_IMAGES, STABILITY_SEED, categorical_accuracy, code_stability};
use crate::models::ModelKind;
use crate::models::labels::METADATA_KEY;
use crate::models::weights;

#[derive(Args)]
pub struct EvalArgs {
    /// A checkpoint.safetensors written by `infogan train`
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// Folder holding the dataset's official files [default: data/<dataset of the checkpoint>]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Batch-norm statistics of the discriminator: those of each test batch (as real batches were normalised in
    /// training), or the running averages
    #[arg(long, value_enum, default_value_t = BnStats::Batch)]
    bn_stats: BnStats,
    /// Generated images per continuous code for `code_stability`: the share whose categorical value, as Q reads
    /// it, stays the same while the code is swept from -1 to 1 (`within_1`) and from -2 to 2 (`within_2`), everything
    /// else fixed; 0 leaves it out (about 8 s per 1,000 images and code for MNIST on 2 cores)
    #[arg(long, default_value_t = STABILITY_IMAGES, value_name = "N")]
    stability_images: usize,
    /// Only print the result: do not store the code-to-label map in the checkpoint (by default it is written into
    /// the checkpoint's metadata, the weights untouched, for `sample --label`, `serve` and `export`)
    #[arg(long)]
    no_store: bool,
    /// Worker threads [default: all cores, or RAYON_NUM_THREADS]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BnStats {
    Batch,
    Running,
}

/// Images per code for the stability figure, at most.
const MAX_STABILITY_IMAGES: usize = 100_000;

pub fn run(args: EvalArgs) -> Result<()> {
    super::set_threads(args.threads)?;
    in_range("stability-images", args.stability_images, 0..=MAX_STABILITY_IMAGES)?;
    if args.stability_images == 1 {
        return Err(Error::Invalid("--stability-images must be 0 or at least 2 (batch norm needs two images)".into()));
    }
    let (mut loaded, mut file) = weights::read(&args.checkpoint)?;
    let spec = &loaded.arch.latent;
    if spec.categorical.is_empty() {
        return Err(Error::Invalid(format!(
            "{} has no categorical code to evaluate (trained with --categorical none)",
            args.checkpoint.display()
        )));
    }
    let dataset = loaded.arch.dataset;
    let dir = args.data_dir.unwrap_or_else(|| dataset.default_dir());
    let test = data::load(dataset, &dir, Split::Test)?;
    let e = categorical_accuracy(&mut loaded.discriminator, spec, &test, args.bn_stats == BnStats::Batch);
    // Whether each continuous code keeps the digit (issue #13): the generated images
    // come from the prior, so this needs no data.
    let stability: serde_json::Map<String, serde_json::Value> =
        code_stability(&mut loaded.generator, &mut loaded.discriminator, spec, args.stability_images, STABILITY_SEED)
            .iter()
            .map(|c| {
                let round = |v: f64| (v * 1e4).round() / 1e4;
                (
                    format!("cont{}", c.code + 1),
                    serde_json::json!({ "within_1": round(c.within_1), "within_2": round(c.within_2) }),
                )
            })
            .collect();
    let map: serde_json::Map<String, serde_json::Value> = e
        .code_to_label
        .iter()
        .enumerate()
        .map(|(k, l)| (k.to_string(), l.map_or(serde_json::Value::Null, |l| test.class_names[l].clone().into())))
        .collect();
    let line = serde_json::json!({
        "checkpoint": args.checkpoint.display().to_string(),
        "dataset": dataset.name(),
        "model": loaded.model.name(),
        "test_images": test.len(),
        "categorical_accuracy": (e.accuracy * 1e4).round() / 1e4,
        "purity": e.purity.iter().map(|p| p.map(|p| (p * 1e4).round() / 1e4)).collect::<Vec<_>>(),
        "code_to_label": map,
        "confusion": e.counts,
        "code_stability": stability,
    });
    println!("{line}");
    if args.no_store {
        return Ok(());
    }
    if loaded.model != ModelKind::InfoGan {
        eprintln!("infogan: a plain GAN's generator ignores the code, so no code-to-label map is stored");
        return Ok(());
    }
    let step = file.metadata.get("step").and_then(|s| s.parse().ok()).unwrap_or(0);
    file.metadata.insert(METADATA_KEY.to_string(), e.code_labels(&test.class_names, step).to_json());
    file.write(&args.checkpoint)?;
    eprintln!(
        "infogan: stored the code-to-label map in {} (for sample --label, serve and export)",
        args.checkpoint.display()
    );
    Ok(())
}
