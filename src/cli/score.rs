//! `infogan score`: a Frechet distance, an Inception-style score and a diversity ratio
//! for a trained generator, or for the real test images (the yardstick), as one JSON
//! line. The classifier behind them is trained on the dataset's training images on
//! first use and cached beside them.

use std::path::PathBuf;

use clap::Args;

use crate::data::{self, DatasetKind, Split};
use crate::error::{Error, Result};
use crate::models::weights;
use crate::score::{SCORE_IMAGES, quality_of_dataset, quality_of_generator, reference};
use crate::train::classifier;

#[derive(Args)]
#[command(after_help = "The figures come from a small classifier trained here on the dataset's own training images \
                        (cached as data/<dataset>/scorer.safetensors), not from the Inception network: they compare \
                        runs of infogan with each other and with real images, and are not comparable with published \
                        FID or Inception-score values.")]
pub struct ScoreArgs {
    /// A checkpoint.safetensors written by `infogan train` (its generator is scored)
    #[arg(long, value_name = "FILE", required_unless_present = "real", conflicts_with = "real")]
    checkpoint: Option<PathBuf>,
    /// Score the real test images instead: the yardstick for a generator's figures
    #[arg(long, requires = "dataset")]
    real: bool,
    /// The dataset, with --real (a checkpoint names its own)
    #[arg(long, value_enum)]
    dataset: Option<crate::data::DatasetKind>,
    /// Folder holding the dataset's official files [default: data/<dataset>]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Images to score: generated ones, or with --real the first N test images [default: the test split's size, at
    /// most 5,000, the same for both so that the figures compare]
    #[arg(long, value_name = "N")]
    images: Option<usize>,
    /// Seed of the generated images' latent vectors
    #[arg(long, default_value_t = 1, value_name = "N")]
    seed: u64,
    /// Worker threads [default: all cores, or RAYON_NUM_THREADS]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

/// More generated images than this would only cost time: the covariance of 128
/// features is well estimated long before.
const MAX_IMAGES: usize = 50_000;

pub fn run(args: ScoreArgs) -> Result<()> {
    super::set_threads(args.threads)?;
    let loaded = args.checkpoint.as_ref().map(|p| weights::load(p)).transpose()?;
    let dataset: DatasetKind = match (&loaded, args.dataset) {
        (Some(l), _) => l.arch.dataset,
        (None, Some(d)) => d,
        (None, None) => return Err(Error::Invalid("--real needs --dataset".into())),
    };
    let dir = args.data_dir.clone().unwrap_or_else(|| dataset.default_dir());
    let train = data::load(dataset, &dir, Split::Train)?;
    let test = data::load(dataset, &dir, Split::Test)?;
    let mut scorer = classifier::load_or_train(&dir, &train, Some(&test), &mut |m| eprintln!("{m}"))?;
    let reference = reference(&mut scorer.classifier, &train);
    let images = args.images.unwrap_or(test.len().min(SCORE_IMAGES));
    if !(2..=MAX_IMAGES).contains(&images) {
        return Err(Error::Invalid(format!("--images {images} must be between 2 and {MAX_IMAGES}")));
    }
    let (source, q) = match loaded {
        Some(mut l) => {
            let spec = l.arch.latent.clone();
            let q =
                quality_of_generator(&mut l.generator, &spec, &mut scorer.classifier, &reference, images, args.seed);
            (args.checkpoint.as_ref().expect("a checkpoint").display().to_string(), q)
        }
        None => ("real test images".to_string(), quality_of_dataset(&mut scorer.classifier, &test, images, &reference)),
    };
    let round = |v: f64| (v * 1e4).round() / 1e4;
    let line = serde_json::json!({
        "source": source,
        "dataset": dataset.name(),
        "images": q.images,
        "frechet_distance": round(q.frechet),
        "inception_score": round(q.inception),
        "diversity": round(q.diversity),
        "classes_covered": q.classes_covered(),
        "class_shares": train.class_names.iter().zip(&q.class_shares).map(|(name, &s)| (name.clone(), round(s).into())).collect::<serde_json::Map<String, serde_json::Value>>(),
        "reference": format!("{} real training images", train.len()),
        "scorer_test_accuracy": round(scorer.test_accuracy),
    });
    println!("{line}");
    Ok(())
}
