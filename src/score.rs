//! Image-quality figures from the scorer's classifier (`models::classifier`):
//!
//! - a Frechet distance (Heusel et al., 2017): Gaussians fitted to the classifier's
//!   features of two image sets, `|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`;
//! - an Inception-style score (Salimans et al., 2016): `exp(E_x KL(p(y|x) || p(y)))`
//!   from the classifier's class probabilities, high when each image is clearly one
//!   class and all classes occur;
//! - a diversity ratio: the mean feature distance between two images of the same
//!   group (the same categorical code value for generated images, the same label for
//!   real ones), over the mean distance between two real training images. Near 0 means
//!   a group is one picture drawn again and again.
//!
//! The classifier is ours, small, and trained on the dataset itself, so these figures
//! are not comparable with FID or IS values computed with the Inception network.

use ndarray::{Array2, ArrayView2, Axis, s};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

pub mod statistics;

pub use statistics::{Gaussian, frechet_distance, inception_score, mean_pairwise_distance};

use crate::data::Dataset;
use crate::eval::EVAL_BATCH;
use crate::models::classifier::Classifier;
use crate::models::{Generator, LatentSpec};

/// The three figures for one set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct Quality {
    pub frechet: f64,
    pub inception: f64,
    pub diversity: f64,
    pub images: usize,
    /// The share of the images the classifier puts in each class (its mean
    /// probabilities): how evenly they cover the dataset's classes.
    pub class_shares: Vec<f64>,
}

impl Quality {
    /// Classes that get at least half of an even share of the images.
    pub fn classes_covered(&self) -> usize {
        let even = 1.0 / self.class_shares.len().max(1) as f64;
        self.class_shares.iter().filter(|&&s| s >= 0.5 * even).count()
    }
}

/// What every score compares with: the real training images' feature Gaussian and
/// their mean pairwise feature distance.
pub struct Reference {
    pub gaussian: Gaussian,
    pub pairwise: f64,
}

/// Generated images scored by default (and the real test images of `--real`): at most
/// this many, fewer when the test split is smaller, so that a generator's figures and
/// the yardstick's come from equally many images (the Frechet distance shrinks with
/// more of them).
pub const SCORE_IMAGES: usize = 5000;

/// The seed of the latent vectors of the images scored at each epoch end.
pub const SCORE_SEED: u64 = 1;

/// The columns the figures take in `metrics.csv`.
pub const SCORE_COLUMNS: [&str; 3] = ["frechet_distance", "inception_score", "diversity"];

/// Real training images whose pairwise distances define the diversity's unit.
const PAIRWISE_SAMPLE: usize = 2000;

/// The classifier's features and class probabilities for a batch of images, in
/// evaluation mode. images: [N, C, H, W] -> ([N, F], [N, K])
pub fn classify(net: &mut Classifier, images: ndarray::Array4<f32>) -> (Array2<f32>, Array2<f32>) {
    net.set_training(false);
    let h = net.features(images);
    let logits = net.logits(h.clone());
    net.set_training(true);
    let mut probs = logits;
    for mut row in probs.outer_iter_mut() {
        let max = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|z| (z - max).exp());
        let sum = row.sum();
        row /= sum;
    }
    (h, probs)
}

/// Features and probabilities of every image of `data`.
fn classify_dataset(net: &mut Classifier, data: &Dataset, indices: &[usize]) -> (Array2<f32>, Array2<f32>) {
    let mut parts = Vec::new();
    for chunk in indices.chunks(EVAL_BATCH) {
        parts.push(classify(net, data.batch(chunk)));
    }
    stack(parts)
}

fn stack(parts: Vec<(Array2<f32>, Array2<f32>)>) -> (Array2<f32>, Array2<f32>) {
    let f: Vec<_> = parts.iter().map(|p| p.0.view()).collect();
    let p: Vec<_> = parts.iter().map(|p| p.1.view()).collect();
    (ndarray::concatenate(Axis(0), &f).expect("same width"), ndarray::concatenate(Axis(0), &p).expect("same width"))
}

/// The reference statistics of the real training images.
pub fn reference(net: &mut Classifier, train: &Dataset) -> Reference {
    let all: Vec<usize> = (0..train.len()).collect();
    let (features, _) = classify_dataset(net, train, &all);
    // An evenly spread sample, the same every time.
    let step = (train.len() / PAIRWISE_SAMPLE).max(1);
    let sample = features.slice(s![..;step, ..]);
    Reference { gaussian: Gaussian::fit(features.view()), pairwise: mean_pairwise_distance(sample) }
}

/// The figures for the first `n` real images of `data` (the yardstick), grouped by label.
pub fn quality_of_dataset(net: &mut Classifier, data: &Dataset, n: usize, reference: &Reference) -> Quality {
    let all: Vec<usize> = (0..data.len().min(n)).collect();
    let (features, probs) = classify_dataset(net, data, &all);
    let groups: Vec<usize> = data.labels[..all.len()].iter().map(|&l| l as usize).collect();
    quality(features.view(), probs.view(), &groups, reference)
}

/// The figures for `n` images of the generator (evaluation mode), their latent
/// vectors drawn from the prior with `seed`, grouped by the value of the first
/// categorical code (one group if there is none).
pub fn quality_of_generator(
    g: &mut Generator,
    spec: &LatentSpec,
    net: &mut Classifier,
    reference: &Reference,
    n: usize,
    seed: u64,
) -> Quality {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut parts = Vec::new();
    let mut groups = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        // Batch norm in evaluation mode works on any batch, but a batch of one is
        // avoided all the same, as elsewhere.
        let b = if left == EVAL_BATCH + 1 { EVAL_BATCH - 1 } else { left.min(EVAL_BATCH) };
        let latent = spec.sample(b, &mut rng);
        groups.extend(latent.cat.first().map_or(vec![0; b], Clone::clone));
        parts.push(classify(net, g.generate(&latent.z)));
        left -= b;
    }
    let (features, probs) = stack(parts);
    quality(features.view(), probs.view(), &groups, reference)
}

fn quality(features: ArrayView2<f32>, probs: ArrayView2<f32>, groups: &[usize], reference: &Reference) -> Quality {
    let frechet = frechet_distance(&Gaussian::fit(features), &reference.gaussian);
    let mut within = Vec::new();
    for g in 0..=groups.iter().copied().max().unwrap_or(0) {
        let rows: Vec<usize> = (0..groups.len()).filter(|&i| groups[i] == g).collect();
        if rows.len() >= 2 {
            within.push(mean_pairwise_distance(features.select(Axis(0), &rows).view()));
        }
    }
    let diversity = within.iter().sum::<f64>() / within.len().max(1) as f64 / reference.pairwise.max(1e-12);
    let n = probs.nrows().max(1) as f64;
    let class_shares = probs.axis_iter(Axis(1)).map(|c| c.iter().map(|&p| p as f64).sum::<f64>() / n).collect();
    Quality { frechet, inception: inception_score(probs), diversity, images: features.nrows(), class_shares }
}
