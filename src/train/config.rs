//! What defines a training run (`TrainConfig`, stored in every checkpoint), the
//! defaults of each dataset, and the one check that every configuration passes,
//! whether it comes from flags or from a checkpoint's metadata.

use serde::{Deserialize, Serialize};

use crate::data::DatasetKind;
use crate::error::{Error, Result};
use crate::layers::AugmentPolicy;
use crate::models::{Architecture, ModelKind, default_latent};

/// Everything that defines a training run; stored in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub arch: Architecture,
    pub model: ModelKind,
    pub lambda_cat: f32,
    /// Steps over which the categorical weight rises linearly from 0 to
    /// `lambda_cat` (0: none, as in checkpoints written before this setting existed).
    #[serde(default)]
    pub lambda_cat_warmup: u64,
    pub lambda_cont: f32,
    /// Checkpoints written before this setting existed learned the std.
    #[serde(default = "ContStd::learned")]
    pub cont_std: ContStd,
    /// DiffAugment before D (Zhao et al., 2020); checkpoints written before this
    /// setting existed had none.
    #[serde(default)]
    pub diffaug: AugmentPolicy,
    /// Weight of MSGAN's mode-seeking term in G's loss (`loss::mode_seeking`); 0 for
    /// none, as in checkpoints written before this setting existed.
    #[serde(default)]
    pub mode_seeking: f32,
    /// Weight of Q's consistency on real images under random affine warps
    /// (`data::affine`); 0 for none, as in checkpoints written before this setting
    /// existed.
    #[serde(default)]
    pub q_consistency: f32,
    /// G's step on a latent batch of its own instead of the one D's step generated
    /// from; false in checkpoints written before this setting existed.
    #[serde(default)]
    pub fresh_g_latent: bool,
    pub lr_d: f32,
    pub lr_g: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub batch_size: usize,
    /// Equal shards of each batch, whose sums (gradients, batch statistics, losses)
    /// are made one per shard and added in one fixed tree (`collective`): any number
    /// of ranks that gets a power of two of them each trains the same bits. 1 in
    /// checkpoints written before this setting existed, and the default of a single
    /// process; an MPI job defaults to one per rank.
    #[serde(default = "one_shard")]
    pub shards: usize,
    pub epochs: usize,
    pub seed: u64,
}

fn one_shard() -> usize {
    1
}

/// How Q scores a continuous code: a Gaussian whose standard deviation is either
/// fixed at 1 or predicted by Q (its log-std outputs).
///
/// The InfoGAN authors' MNIST code uses `Uniform(1, fix_std=True)`: with the std
/// fixed, the NLL is `0.5 (c - mean)^2 + const`. With a learned std the gradient on
/// the mean is scaled by `1 / std^2`, which grows as Q gets precise; the continuous
/// codes then win the trunk's capacity from the categorical code and take over
/// digit identity (a traversal that turns a 4 into a 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ContStd {
    /// Standard deviation 1, as in the InfoGAN authors' code; Q's log-std outputs are unused
    Fixed,
    /// Standard deviation predicted by Q's log-std outputs
    Learned,
}

impl ContStd {
    fn learned() -> Self {
        ContStd::Learned
    }

    /// The flag value, as in `--cont-std fixed`.
    pub fn name(self) -> &'static str {
        match self {
            ContStd::Fixed => "fixed",
            ContStd::Learned => "learned",
        }
    }
}

/// Where a run's settings start, before the flags given beside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Recipe {
    /// This project's settings, chosen per dataset on several seeds (README, "How the defaults were chosen")
    #[default]
    Default,
    /// The InfoGAN paper's and its authors' code (run_mnist_exp.py): batch 128, Adam 2e-4 for D and 1e-3 for G
    /// (beta1 0.5), weight 1 for every code, the continuous codes' std fixed at 1, no DiffAugment, mode seeking or
    /// Q consistency, about 5,000 steps
    Paper,
}

impl Recipe {
    /// The flag value, as in `--recipe paper`.
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Default => "default",
            Recipe::Paper => "paper",
        }
    }
}

/// The InfoGAN authors' batch size (Chen et al., 2016; `run_mnist_exp.py`).
pub const PAPER_BATCH_SIZE: usize = 128;

/// Optimizer steps that the default number of epochs aims at: about what the
/// InfoGAN authors' code runs (5,000 updates), and about 15 minutes of MNIST on 2
/// cores (README, Results).
pub const DEFAULT_STEPS: usize = 5000;

/// Images per mini-batch unless told otherwise (training and `infogan bench`).
pub const DEFAULT_BATCH_SIZE: usize = 64;

/// The seed of a run unless told otherwise.
pub const DEFAULT_SEED: u64 = 1;

/// The default epochs for a training set: the whole number of epochs closest to
/// `DEFAULT_STEPS` (5 for MNIST at batch 64; for CIFAR-10, 63 on the 5,085-image
/// subset, 6 on the full 50,000).
pub fn default_epochs(train_images: usize, batch_size: usize) -> usize {
    let per_epoch = (train_images / batch_size.max(1)).max(1);
    (DEFAULT_STEPS as f64 / per_epoch as f64).round().max(1.0) as usize
}

/// Largest values a configuration may hold beyond the latent layout's
/// (`models::latent::limits`). They are far beyond any sensible run and keep the
/// memory a run takes within what a computer has, so that a mistyped flag or an
/// edited checkpoint is an error, not an abort.
pub mod limits {
    /// Images per batch.
    pub const BATCH_SIZE: usize = 8192;
    /// Passes over the training set.
    pub const EPOCHS: usize = 1_000_000;
}

impl TrainConfig {
    /// The settings a run on `dataset` takes unless told otherwise. They differ by
    /// dataset: MNIST's (also used for Fashion-MNIST) were chosen on MNIST, CIFAR-10's
    /// on the CIFAR-10 subset, each on several seeds (README, "How the defaults were
    /// chosen"). `epochs` is the default for the dataset's full official training set;
    /// `default_epochs` gives it for another size.
    pub fn defaults(dataset: DatasetKind) -> Self {
        let batch_size = DEFAULT_BATCH_SIZE;
        let mnist_like = TrainConfig {
            arch: Architecture { dataset, latent: default_latent(dataset) },
            model: ModelKind::InfoGan,
            lambda_cat: 0.5,
            lambda_cat_warmup: 0,
            lambda_cont: 0.1,
            cont_std: ContStd::Fixed,
            diffaug: AugmentPolicy::default(),
            mode_seeking: 0.0,
            q_consistency: 0.0,
            fresh_g_latent: false,
            lr_d: 1e-3,
            lr_g: 1e-3,
            beta1: 0.5,
            beta2: 0.999,
            batch_size,
            shards: 1,
            epochs: default_epochs(dataset.train_images(), batch_size),
            seed: DEFAULT_SEED,
        };
        match dataset {
            // Q's consistency on warped real digits makes the categorical code split
            // the digits by identity rather than by slant (README, "How the defaults
            // were chosen"). Fashion-MNIST keeps the settings it was measured with.
            DatasetKind::Mnist => TrainConfig { q_consistency: 1.0, ..mnist_like },
            DatasetKind::FashionMnist => mnist_like,
            // On 5,085 images D memorises the training set (DiffAugment), each
            // categorical value then draws one picture (mode seeking), and the DCGAN
            // family's learning rates keep the two networks level; with those, the
            // paper's weight of 1 for the categorical code does best.
            DatasetKind::Cifar10 => TrainConfig {
                lambda_cat: 1.0,
                lr_d: 2e-4,
                lr_g: 2e-4,
                diffaug: AugmentPolicy { color: true, translation: true, cutout: true },
                mode_seeking: 1.0,
                ..mnist_like
            },
        }
    }

    /// The settings `recipe` starts a run on `dataset` with. The paper's are those of
    /// the authors' MNIST experiment: `info_reg_coeff` 1 for every code, with the
    /// continuous codes scored by `Uniform(1, fix_std=True)`; 50 epochs of 100
    /// updates at batch 128, so `DEFAULT_STEPS` at that batch size. (The paper gives no
    /// CIFAR-10 settings; the same ones apply there.)
    pub fn recipe(dataset: DatasetKind, recipe: Recipe) -> Self {
        let defaults = TrainConfig::defaults(dataset);
        match recipe {
            Recipe::Default => defaults,
            Recipe::Paper => TrainConfig {
                lambda_cat: 1.0,
                lambda_cont: 1.0,
                cont_std: ContStd::Fixed,
                diffaug: AugmentPolicy::default(),
                mode_seeking: 0.0,
                q_consistency: 0.0,
                lr_d: 2e-4,
                lr_g: 1e-3,
                beta1: 0.5,
                beta2: 0.999,
                batch_size: PAPER_BATCH_SIZE,
                epochs: default_epochs(dataset.train_images(), PAPER_BATCH_SIZE),
                ..defaults
            },
        }
    }

    /// The categorical codes' weight at optimizer step `step` (0-based): `lambda_cat`,
    /// or during the warm-up its share `(step + 1) / lambda_cat_warmup`.
    pub fn lambda_cat_at(&self, step: u64) -> f32 {
        if step >= self.lambda_cat_warmup {
            return self.lambda_cat;
        }
        self.lambda_cat * ((step + 1) as f64 / self.lambda_cat_warmup as f64) as f32
    }

    /// Whether Q's consistency term can apply: it needs an InfoGAN with a categorical
    /// code, and DiffAugment would have to augment the warped images as well.
    pub fn q_consistency_applies(&self) -> bool {
        self.model == ModelKind::InfoGan && !self.arch.latent.categorical.is_empty() && self.diffaug.is_none()
    }

    /// Whether `ranks` processes can share this run's shards: each gets the same
    /// power of two of them.
    pub fn check_shards(&self, ranks: usize) -> Result<()> {
        if self.shards.is_multiple_of(ranks) && (self.shards / ranks).is_power_of_two() {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "{ranks} ranks cannot share --shards {}: each rank needs the same power of two of the shards (1, 2, 4, \
             ...). Pass --shards {ranks} (or a power-of-two multiple of it)",
            self.shards
        )))
    }

    /// Checks every value: the one gate of configurations given as flags and of those
    /// read from a checkpoint. The message names the flag that sets the value.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid(msg));
        let positive = |v: f32| v.is_finite() && v > 0.0;
        if self.batch_size < 2 {
            return bad(format!(
                "--batch-size {} is too small: batch norm needs at least 2 images per batch",
                self.batch_size
            ));
        }
        if self.batch_size > limits::BATCH_SIZE {
            return bad(format!("--batch-size {} is larger than the limit of {}", self.batch_size, limits::BATCH_SIZE));
        }
        if !positive(self.lr_d) || !positive(self.lr_g) {
            return bad(format!(
                "learning rates must be positive numbers, got --lr-d {} --lr-g {}",
                self.lr_d, self.lr_g
            ));
        }
        for (flag, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("--{flag} {b} must be in [0, 1)"));
            }
        }
        if self.mode_seeking > 0.0 && !self.batch_size.is_multiple_of(2) {
            return bad(format!(
                "--mode-seeking pairs the images of a batch: --batch-size {} must be even",
                self.batch_size
            ));
        }
        let pairs = if self.mode_seeking > 0.0 { 2 } else { 1 };
        if self.shards == 0 || !self.batch_size.is_multiple_of(self.shards * pairs) {
            return bad(format!(
                "--shards {} must divide --batch-size {}{} into equal shards",
                self.shards,
                self.batch_size,
                if pairs == 2 { " (with --mode-seeking, into shards of whole pairs: batch / shards even)" } else { "" }
            ));
        }
        for (flag, l) in [
            ("lambda-cat", self.lambda_cat),
            ("lambda-cont", self.lambda_cont),
            ("mode-seeking", self.mode_seeking),
            ("q-consistency", self.q_consistency),
        ] {
            if !(l.is_finite() && l >= 0.0) {
                return bad(format!("--{flag} {l} must be a number >= 0"));
            }
        }
        self.arch.latent.validate()?;
        if self.q_consistency > 0.0 && !self.q_consistency_applies() {
            return bad(if self.diffaug.is_none() {
                format!(
                    "--q-consistency {} needs an InfoGAN with a categorical code (--model infogan, --categorical K)",
                    self.q_consistency
                )
            } else {
                format!(
                    "--q-consistency {} and --diffaug {} cannot be used together yet: the warped real images would \
                     need augmenting as well. Pass --diffaug none, or --q-consistency 0",
                    self.q_consistency,
                    self.diffaug.name()
                )
            });
        }
        if self.epochs == 0 || self.epochs > limits::EPOCHS {
            return bad(format!("--epochs {} must be from 1 to {}", self.epochs, limits::EPOCHS));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_categorical_weight_warms_up_linearly() {
        let c = TrainConfig { lambda_cat: 0.5, lambda_cat_warmup: 4, ..TrainConfig::defaults(DatasetKind::Mnist) };
        let weights: Vec<f32> = (0..6).map(|s| c.lambda_cat_at(s)).collect();
        assert_eq!(weights, [0.125, 0.25, 0.375, 0.5, 0.5, 0.5]);
        let none = TrainConfig::defaults(DatasetKind::Mnist);
        assert_eq!((none.lambda_cat_warmup, none.lambda_cat_at(0)), (0, none.lambda_cat));
    }

    #[test]
    fn the_paper_recipe_is_the_authors_settings() {
        for dataset in [DatasetKind::Mnist, DatasetKind::FashionMnist, DatasetKind::Cifar10] {
            let p = TrainConfig::recipe(dataset, Recipe::Paper);
            p.validate().unwrap();
            assert_eq!((p.batch_size, p.lr_d, p.lr_g, p.beta1, p.beta2), (128, 2e-4, 1e-3, 0.5, 0.999));
            assert_eq!((p.lambda_cat, p.lambda_cont, p.cont_std, p.mode_seeking), (1.0, 1.0, ContStd::Fixed, 0.0));
            assert_eq!((p.q_consistency, p.fresh_g_latent, p.lambda_cat_warmup), (0.0, false, 0));
            assert_eq!(p.diffaug, AugmentPolicy::default());
            assert_eq!((p.arch, p.model, p.seed), (TrainConfig::defaults(dataset).arch, ModelKind::InfoGan, 1));
            assert_eq!(TrainConfig::recipe(dataset, Recipe::Default), TrainConfig::defaults(dataset));
        }
        // 50 epochs of 100 updates in the authors' code: 5,000 steps, 11 passes over MNIST at batch 128.
        assert_eq!(TrainConfig::recipe(DatasetKind::Mnist, Recipe::Paper).epochs, 11);
    }

    #[test]
    fn the_defaults_are_valid_and_each_flaw_is_named() {
        for dataset in [DatasetKind::Mnist, DatasetKind::FashionMnist, DatasetKind::Cifar10] {
            TrainConfig::defaults(dataset).validate().unwrap();
        }
        let base = TrainConfig::defaults(DatasetKind::Mnist);
        type Change = Box<dyn Fn(&mut TrainConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            ("--batch-size 0", Box::new(|c| c.batch_size = 0)),
            ("--batch-size 1", Box::new(|c| c.batch_size = 1)),
            ("--batch-size 100000", Box::new(|c| c.batch_size = 100_000)),
            ("--lr-d -1", Box::new(|c| c.lr_d = -1.0)),
            ("--lr-g NaN", Box::new(|c| c.lr_g = f32::NAN)),
            ("--beta2 1", Box::new(|c| c.beta2 = 1.0)),
            ("--lambda-cat -1", Box::new(|c| c.lambda_cat = -1e30)),
            ("a code of 0 values", Box::new(|c| c.arch.latent.categorical = vec![0, 10])),
            ("larger than the limit", Box::new(|c| c.arch.latent.noise = 1_000_000_000)),
            ("larger than the limit", Box::new(|c| c.arch.latent.continuous = usize::MAX)),
            ("empty", Box::new(|c| c.arch.latent = crate::models::LatentSpec::default())),
            ("--epochs 0", Box::new(|c| c.epochs = 0)),
            ("--q-consistency -1", Box::new(|c| c.q_consistency = -1.0)),
            (
                "cannot be used together",
                Box::new(|c| {
                    c.q_consistency = 1.0;
                    c.diffaug = AugmentPolicy { color: true, translation: false, cutout: false };
                }),
            ),
            (
                "needs an InfoGAN",
                Box::new(|c| {
                    c.q_consistency = 1.0;
                    c.model = ModelKind::Gan;
                }),
            ),
        ];
        for (expected, change) in cases {
            let mut c = base.clone();
            change(&mut c);
            let e = c.validate().expect_err(expected).to_string();
            assert!(e.contains(expected), "expected a message with {expected:?}, got {e:?}");
        }
    }

    #[test]
    fn default_epochs_aim_at_5000_steps() {
        assert_eq!(default_epochs(60_000, 64), 5);
        assert_eq!(default_epochs(5_085, 64), 63);
        assert_eq!(default_epochs(50_000, 64), 6);
        assert_eq!(TrainConfig::defaults(DatasetKind::Cifar10).epochs, 6);
    }
}
