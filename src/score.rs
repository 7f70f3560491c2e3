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

/// A Gaussian fitted to rows of features: their mean and covariance (with `N - 1`).
pub struct Gaussian {
    pub mean: Vec<f64>,
    /// cov: [F, F] row-major
    pub cov: Vec<f64>,
    pub dim: usize,
}

impl Gaussian {
    /// x: [N, F], N >= 2
    pub fn fit(x: ArrayView2<f32>) -> Self {
        let (n, f) = x.dim();
        assert!(n >= 2, "Gaussian::fit needs two or more rows, got {n}");
        let mut mean = vec![0f64; f];
        for row in x.outer_iter() {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0f64; f * f];
        let mut centred = vec![0f64; f];
        for row in x.outer_iter() {
            for ((c, &v), &m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = v as f64 - m;
            }
            for i in 0..f {
                let ci = centred[i];
                for (cov, &cj) in cov[i * f..(i + 1) * f].iter_mut().zip(&centred) {
                    *cov += ci * cj;
                }
            }
        }
        cov.iter_mut().for_each(|c| *c /= (n - 1) as f64);
        Gaussian { mean, cov, dim: f }
    }
}

/// `|mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))`, where the last trace is
/// the sum of the square roots of the eigenvalues of the symmetric `S1^(1/2) S2 S1^(1/2)`
/// (which has the eigenvalues of `S1 S2`).
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    assert_eq!(a.dim, b.dim, "frechet_distance: feature widths differ");
    let f = a.dim;
    let mean_term: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |m: &[f64]| (0..f).map(|i| m[i * f + i]).sum::<f64>();
    let root_a = sqrtm_psd(&a.cov, f);
    let inner = matmul(&matmul(&root_a, &b.cov, f), &root_a, f);
    let (eig, _) = symmetric_eigen(&inner, f);
    let cross: f64 = eig.iter().map(|&l| l.max(0.0).sqrt()).sum();
    (mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * cross).max(0.0)
}

/// `exp(mean over images of KL(p(y|x) || p(y)))`, `p(y)` the mean of the rows.
/// probs: [N, K], rows summing to 1
pub fn inception_score(probs: ArrayView2<f32>) -> f64 {
    let n = probs.nrows().max(1) as f64;
    let marginal: Vec<f64> = probs.axis_iter(Axis(1)).map(|c| c.iter().map(|&p| p as f64).sum::<f64>() / n).collect();
    let kl: f64 = probs
        .outer_iter()
        .map(|row| {
            row.iter()
                .zip(&marginal)
                .filter(|(p, _)| **p > 0.0)
                .map(|(&p, &q)| p as f64 * ((p as f64).ln() - q.max(1e-300).ln()))
                .sum::<f64>()
        })
        .sum();
    (kl / n).exp()
}

/// The mean Euclidean distance between two distinct rows. x: [N, F], N >= 2
pub fn mean_pairwise_distance(x: ArrayView2<f32>) -> f64 {
    let n = x.nrows();
    if n < 2 {
        return 0.0;
    }
    let mut total = 0f64;
    for i in 0..n {
        let a = x.row(i);
        for j in i + 1..n {
            let d2: f64 = a.iter().zip(x.row(j)).map(|(&p, &q)| ((p - q) as f64).powi(2)).sum();
            total += d2.sqrt();
        }
    }
    total / (n * (n - 1) / 2) as f64
}

/// `a b` for `[f, f]` row-major matrices.
fn matmul(a: &[f64], b: &[f64], f: usize) -> Vec<f64> {
    let mut c = vec![0f64; f * f];
    for i in 0..f {
        for k in 0..f {
            let aik = a[i * f + k];
            for (c, &bkj) in c[i * f..(i + 1) * f].iter_mut().zip(&b[k * f..(k + 1) * f]) {
                *c += aik * bkj;
            }
        }
    }
    c
}

/// The square root of a symmetric positive semi-definite matrix, `V diag(sqrt(l)) V^T`
/// from its eigen-decomposition (negative round-off eigenvalues taken as 0).
fn sqrtm_psd(m: &[f64], f: usize) -> Vec<f64> {
    let (eig, vecs) = symmetric_eigen(m, f);
    let mut out = vec![0f64; f * f];
    for (k, &l) in eig.iter().enumerate() {
        let r = l.max(0.0).sqrt();
        for i in 0..f {
            let vik = vecs[i * f + k] * r;
            for j in 0..f {
                out[i * f + j] += vik * vecs[j * f + k];
            }
        }
    }
    out
}

/// Eigenvalues and eigenvectors (the columns of the second result, `[f, f]`
/// row-major) of a symmetric matrix, by cyclic Jacobi rotations (Golub and Van Loan,
/// "Matrix Computations", section 8.5) until the off-diagonal part is negligible.
pub fn symmetric_eigen(m: &[f64], f: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(m.len(), f * f, "symmetric_eigen: a {f}x{f} matrix has {} entries", f * f);
    let mut a = m.to_vec();
    let mut v = vec![0f64; f * f];
    (0..f).for_each(|i| v[i * f + i] = 1.0);
    let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..f)
            .flat_map(|i| (0..f).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * f + j].powi(2))
            .sum();
        if off.sqrt() <= 1e-15 * norm.max(1e-300) {
            break;
        }
        for p in 0..f {
            for q in p + 1..f {
                let apq = a[p * f + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                // The rotation that zeroes a[p, q]: t = tan(theta), the smaller root.
                let theta = (a[q * f + q] - a[p * f + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..f {
                    let (akp, akq) = (a[k * f + p], a[k * f + q]);
                    a[k * f + p] = c * akp - s * akq;
                    a[k * f + q] = s * akp + c * akq;
                }
                for k in 0..f {
                    let (apk, aqk) = (a[p * f + k], a[q * f + k]);
                    a[p * f + k] = c * apk - s * aqk;
                    a[q * f + k] = s * apk + c * aqk;
                }
                for k in 0..f {
                    let (vkp, vkq) = (v[k * f + p], v[k * f + q]);
                    v[k * f + p] = c * vkp - s * vkq;
                    v[k * f + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..f).map(|i| a[i * f + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_array;

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix() {
        let f = 12;
        let x: Array2<f32> = random_array([40, f], 3);
        let g = Gaussian::fit(x.view());
        let (eig, v) = symmetric_eigen(&g.cov, f);
        for i in 0..f {
            for j in 0..f {
                let back: f64 = (0..f).map(|k| v[i * f + k] * eig[k] * v[j * f + k]).sum();
                assert!((back - g.cov[i * f + j]).abs() < 1e-10, "({i}, {j}): {back} vs {}", g.cov[i * f + j]);
            }
        }
        let root = sqrtm_psd(&g.cov, f);
        let square = matmul(&root, &root, f);
        assert!(square.iter().zip(&g.cov).all(|(a, b)| (a - b).abs() < 1e-10));
    }

    /// Between two Gaussians with diagonal covariances the distance is known in closed
    /// form: `|mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2`.
    #[test]
    fn frechet_distance_of_diagonal_gaussians() {
        let (f, s1, s2) = (3, [1.0, 4.0, 0.25], [4.0, 1.0, 0.25]);
        let diag = |s: [f64; 3]| {
            let mut c = vec![0f64; f * f];
            (0..f).for_each(|i| c[i * f + i] = s[i]);
            c
        };
        let a = Gaussian { mean: vec![0.0, 1.0, 2.0], cov: diag(s1), dim: f };
        let b = Gaussian { mean: vec![1.0, 1.0, 0.0], cov: diag(s2), dim: f };
        let expected = 1.0 + 4.0 + (0..f).map(|i| (s1[i].sqrt() - s2[i].sqrt()).powi(2)).sum::<f64>();
        assert!((frechet_distance(&a, &b) - expected).abs() < 1e-9);
        assert!(frechet_distance(&a, &a) < 1e-9);
    }

    #[test]
    fn inception_score_ranges_from_one_to_the_class_count() {
        let sure = Array2::from_shape_fn((10, 10), |(i, j)| if i == j { 1.0f32 } else { 0.0 });
        assert!((inception_score(sure.view()) - 10.0).abs() < 1e-9);
        let unsure = Array2::from_elem((10, 10), 0.1f32);
        assert!((inception_score(unsure.view()) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn pairwise_distance_of_known_points() {
        let x = ndarray::arr2(&[[0.0f32, 0.0], [3.0, 4.0], [0.0, 4.0]]);
        assert!((mean_pairwise_distance(x.view()) - (5.0 + 4.0 + 3.0) / 3.0).abs() < 1e-9);
    }
}
