//! Losses with their gradients, each the mean over its elements as in PyTorch's
//! default `reduction='mean'`. Every function returns the loss (accumulated in f64)
//! and the gradient of that loss with respect to each differentiable input.
//!
//! A sharded step (`collective`) sees a part of the batch: the `_part` forms take the
//! number of elements of the whole batch that the mean is over, and return the sum
//! over their own part, for the caller to add over the shards.

use ndarray::{Array, Array2, ArrayView, ArrayView2, Dimension, Zip};

use crate::buffers;
use crate::collective::Shards;
use crate::layers::activation::sigmoid;

/// PyTorch's `binary_cross_entropy_with_logits`: the mean over elements of
/// `-(t ln s(z) + (1 - t) ln(1 - s(z)))`, with `s` the logistic function.
///
/// Written as `max(z, 0) - z t + ln(1 + exp(-|z|))`, which never takes the log of 0
/// or the exp of a large number, so any finite logit gives a finite loss.
/// The gradient is `dlogits = (s(z) - t) / L`, `L` the number of elements.
///
/// logits, targets: the same shape -> (loss, dlogits: that shape)
pub fn bce_with_logits<D: Dimension>(logits: ArrayView<f32, D>, targets: ArrayView<f32, D>) -> (f32, Array<f32, D>) {
    let len = logits.len();
    let (total, dlogits) = bce_with_logits_part(logits, targets, len);
    ((total / len.max(1) as f64) as f32, dlogits)
}

/// `bce_with_logits` of part of a batch of `count` elements in all: the sum of the
/// part's terms, and the gradient of the whole batch's mean.
pub fn bce_with_logits_part<D: Dimension>(
    logits: ArrayView<f32, D>,
    targets: ArrayView<f32, D>,
    count: usize,
) -> (f64, Array<f32, D>) {
    let _time = crate::profile::scope(crate::profile::Phase::Loss);
    assert_eq!(logits.shape(), targets.shape(), "bce_with_logits: logits and targets differ in shape");
    let len = count.max(1) as f64;
    let mut total = 0f64;
    Zip::from(&logits).and(&targets).for_each(|&z, &t| {
        let z = z as f64;
        total += z.max(0.0) - z * t as f64 + (-z.abs()).exp().ln_1p();
    });
    let scale = 1.0 / len as f32;
    let mut dlogits = buffers::take(logits.raw_dim());
    Zip::from(&mut dlogits).and(&logits).and(&targets).for_each(|d, &z, &t| *d = (sigmoid(z) - t) * scale);
    (total, dlogits)
}

/// PyTorch's `cross_entropy` with class-index targets: the mean over the batch of
/// `logsumexp(z_n) - z_n[t_n]`. The gradient is `(softmax(z_n) - onehot(t_n)) / N`.
/// The maximum logit is subtracted before `exp`, so large logits do not overflow.
///
/// logits: [N, K], targets: N class indices in `0..K` -> (loss, dlogits: [N, K])
pub fn cross_entropy(logits: ArrayView2<f32>, targets: &[usize]) -> (f32, Array2<f32>) {
    let n = logits.nrows();
    let (total, dlogits) = cross_entropy_part(logits, targets, n);
    ((total / n.max(1) as f64) as f32, dlogits)
}

/// `cross_entropy` of some rows of a batch of `count` rows in all: the sum of their
/// terms, and the gradient of the whole batch's mean.
pub fn cross_entropy_part(logits: ArrayView2<f32>, targets: &[usize], count: usize) -> (f64, Array2<f32>) {
    let _time = crate::profile::scope(crate::profile::Phase::Loss);
    let (rows, k) = logits.dim();
    let n = count;
    assert_eq!(targets.len(), rows, "cross_entropy: {} targets for {rows} rows of logits", targets.len());
    let mut dlogits = buffers::take((rows, k));
    let mut total = 0f64;
    for ((row, mut drow), &t) in logits.outer_iter().zip(dlogits.outer_iter_mut()).zip(targets) {
        assert!(t < k, "cross_entropy: target {t} is not a class index below {k}");
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let sum_exp: f64 = row.iter().map(|&z| (z as f64 - max).exp()).sum();
        let log_sum_exp = max + sum_exp.ln();
        total += log_sum_exp - row[t] as f64;
        for (d, &z) in drow.iter_mut().zip(row.iter()) {
            *d = ((z as f64 - log_sum_exp).exp() / n as f64) as f32;
        }
        drow[t] -= 1.0 / n as f32;
    }
    (total, dlogits)
}

/// Each row of `logits` turned into probabilities: `softmax(z_n)`, the maximum logit
/// subtracted before `exp`. logits: [N, K] -> [N, K]
pub fn softmax(logits: ArrayView2<f32>) -> Array2<f32> {
    let mut p = buffers::take(logits.raw_dim());
    for (row, mut prow) in logits.outer_iter().zip(p.outer_iter_mut()) {
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let sum: f32 = row.iter().map(|&z| (z - max).exp()).sum();
        prow.zip_mut_with(&row, |p, &z| *p = (z - max).exp() / sum);
    }
    p
}

/// PyTorch's `cross_entropy` with probability targets: the mean over the batch of
/// `-sum_k p_nk log softmax(z_n)_k = logsumexp(z_n) - sum_k p_nk z_nk` for rows `p_n`
/// that sum to 1. The gradient is `(softmax(z_n) - p_n) / N`; the targets are
/// constants (a prediction held fixed), so they get none.
///
/// logits, probs: [N, K] -> (loss, dlogits: [N, K])
pub fn soft_cross_entropy(logits: ArrayView2<f32>, probs: ArrayView2<f32>) -> (f32, Array2<f32>) {
    let n = logits.nrows();
    let (total, dlogits) = soft_cross_entropy_part(logits, probs, n);
    ((total / n.max(1) as f64) as f32, dlogits)
}

/// `soft_cross_entropy` of some rows of a batch of `count` rows in all: the sum of
/// their terms, and the gradient of the whole batch's mean.
pub fn soft_cross_entropy_part(logits: ArrayView2<f32>, probs: ArrayView2<f32>, count: usize) -> (f64, Array2<f32>) {
    let _time = crate::profile::scope(crate::profile::Phase::Loss);
    assert_eq!(logits.dim(), probs.dim(), "soft_cross_entropy: logits and target probabilities differ in shape");
    let scale = 1.0 / count.max(1) as f64;
    let mut dlogits = buffers::take(logits.raw_dim());
    let mut total = 0f64;
    for ((row, prow), mut drow) in logits.outer_iter().zip(probs.outer_iter()).zip(dlogits.outer_iter_mut()) {
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let log_sum_exp = max + row.iter().map(|&z| (z as f64 - max).exp()).sum::<f64>().ln();
        for ((d, &z), &p) in drow.iter_mut().zip(row.iter()).zip(prow.iter()) {
            total += p as f64 * (log_sum_exp - z as f64);
            *d = (((z as f64 - log_sum_exp).exp() - p as f64) * scale) as f32;
        }
    }
    (total, dlogits)
}

/// The negative log-likelihood of `x` under a normal distribution with the predicted
/// `mean` and log standard deviation `logstd`, averaged over all elements:
/// `mean(logstd + 0.5 ((x - mean) exp(-logstd))^2 + 0.5 ln(2 pi))`.
///
/// With `e = (x - mean) exp(-logstd)` and `L` elements:
/// `dmean = -e exp(-logstd) / L` and `dlogstd = (1 - e^2) / L`. `x` is a sampled
/// code, a constant, so it gets no gradient.
///
/// x, mean, logstd: [N, D] -> (loss, dmean: [N, D], dlogstd: [N, D])
pub fn gaussian_nll(
    x: ArrayView2<f32>,
    mean: ArrayView2<f32>,
    logstd: ArrayView2<f32>,
) -> (f32, Array2<f32>, Array2<f32>) {
    let len = x.len();
    let (total, dmean, dlogstd) = gaussian_nll_part(x, mean, logstd, len);
    ((total / len.max(1) as f64) as f32, dmean, dlogstd)
}

/// `gaussian_nll` of part of a batch of `count` elements in all: the sum of the
/// part's terms, and the gradients of the whole batch's mean.
pub fn gaussian_nll_part(
    x: ArrayView2<f32>,
    mean: ArrayView2<f32>,
    logstd: ArrayView2<f32>,
    count: usize,
) -> (f64, Array2<f32>, Array2<f32>) {
    let _time = crate::profile::scope(crate::profile::Phase::Loss);
    assert!(
        x.dim() == mean.dim() && x.dim() == logstd.dim(),
        "gaussian_nll: x {:?}, mean {:?} and logstd {:?} must have one shape",
        x.dim(),
        mean.dim(),
        logstd.dim()
    );
    let len = count.max(1) as f64;
    let total = gaussian_nll_sum(x, mean, logstd);
    let mut dmean = buffers::take(x.dim());
    let mut dlogstd = buffers::take(x.dim());
    Zip::from(&x).and(&mean).and(&logstd).and(&mut dmean).and(&mut dlogstd).for_each(|&x, &mu, &ls, dm, dl| {
        let inv_std = (-(ls as f64)).exp();
        let e = (x as f64 - mu as f64) * inv_std;
        *dm = (-e * inv_std / len) as f32;
        *dl = ((1.0 - e * e) / len) as f32;
    });
    (total, dmean, dlogstd)
}

/// The sum of `gaussian_nll_part`'s terms alone, in its order (row-major), without
/// the gradients: `sum of logstd + 0.5 ((x - mean) / std)^2 + 0.5 ln(2 pi)`.
pub fn gaussian_nll_sum(x: ArrayView2<f32>, mean: ArrayView2<f32>, logstd: ArrayView2<f32>) -> f64 {
    let half_ln_2pi = 0.5 * (std::f64::consts::TAU).ln();
    let mut total = 0f64;
    Zip::from(&x).and(&mean).and(&logstd).for_each(|&x, &mu, &ls| {
        let e = (x as f64 - mu as f64) * (-(ls as f64)).exp();
        total += ls as f64 + 0.5 * e * e + half_ln_2pi;
    });
    total
}

/// The mode-seeking term of MSGAN (Mao, Lee, Tseng, Ma and Yang, "Mode Seeking
/// Generative Adversarial Networks for Diverse Image Synthesis", CVPR 2019), in the
/// form of the authors' code: for images generated in pairs from the same codes and
/// different noise, `r = mean|x1 - x2| / mean|z1 - z2|` (means over all pixels and all
/// noise values of the pairs), and the loss `1 / (r + eps)`, `eps = 1e-5`, which G
/// lowers by making the two images of a pair differ. Image `i` of the first half of
/// the batch pairs with image `i` of the second half.
///
/// With `L` pixels in a half, `dloss/dx1 = -sign(x1 - x2) / (L mean|z1 - z2| (r + eps)^2)`
/// and `dx2 = -dx1` (where `x1 = x2`, sign 0). The noise is a constant.
///
/// images: [2N, ...], noise: [2N, Z] -> (loss, dimages: the shape of images)
pub fn mode_seeking<D: Dimension>(images: ArrayView<f32, D>, noise: ArrayView2<f32>) -> (f32, Array<f32, D>) {
    mode_seeking_sharded(images, noise, &Shards::single())
}

/// `mode_seeking` over a sharded batch: each of the `shards.local()` equal blocks of
/// `images` (and of `noise`) pairs its first half with its second, and both means are
/// sums over every shard of the job.
pub fn mode_seeking_sharded<D: Dimension>(
    images: ArrayView<f32, D>,
    noise: ArrayView2<f32>,
    shards: &Shards,
) -> (f32, Array<f32, D>) {
    let _time = crate::profile::scope(crate::profile::Phase::Loss);
    const EPS: f64 = 1e-5;
    let n = images.shape()[0];
    let blocks = shards.local();
    assert!(
        n.is_multiple_of(2 * blocks) && noise.nrows() == n,
        "mode_seeking: {n} images and {} noise vectors, expected one number that {blocks} blocks of pairs divide",
        noise.nrows()
    );
    let x = images.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let block_len = xs.len() / blocks;
    let rows = n / blocks;
    let noise_len = rows * noise.ncols();
    // Per block: [sum |x1 - x2|, sum |z1 - z2|], then over every shard of the job.
    let sum_abs_diff = |a: &mut dyn Iterator<Item = (&f32, &f32)>| a.map(|(&a, &b)| (a as f64 - b as f64).abs()).sum();
    let abs_diff = |v: &[f32]| {
        let (a, b) = v.split_at(v.len() / 2);
        sum_abs_diff(&mut a.iter().zip(b))
    };
    // The noise is a view into the latent batch (its first columns), read in place.
    let noise_abs_diff = |s: usize| {
        let first = noise.slice(ndarray::s![s * rows..s * rows + rows / 2, ..]);
        let second = noise.slice(ndarray::s![s * rows + rows / 2..(s + 1) * rows, ..]);
        sum_abs_diff(&mut first.iter().zip(second.iter()))
    };
    // On the stack for up to 8 local shards, so that a step allocates nothing here.
    let (mut stack, mut heap) = ([0f64; 16], Vec::new());
    let leaves = if blocks <= 8 {
        &mut stack[..2 * blocks]
    } else {
        heap.resize(2 * blocks, 0.0);
        &mut heap[..]
    };
    for (s, leaf) in leaves.chunks_exact_mut(2).enumerate() {
        leaf[0] = abs_diff(&xs[s * block_len..][..block_len]);
        leaf[1] = noise_abs_diff(s);
    }
    let sums = shards.sum_f64_in_place(leaves, 2);
    let (pixels, noises) =
        ((block_len / 2 * shards.total()).max(1) as f64, (noise_len / 2 * shards.total()).max(1) as f64);
    let (d_img, d_z) = (sums[0] / pixels, sums[1] / noises);
    let r = d_img / d_z.max(1e-12);
    let scale = 1.0 / ((r + EPS) * (r + EPS) * d_z.max(1e-12) * pixels);
    let mut d = buffers::take(images.raw_dim());
    for (ds, xs) in d.as_slice_mut().expect("fresh array").chunks_mut(block_len).zip(xs.chunks(block_len)) {
        let (d1, d2) = ds.split_at_mut(block_len / 2);
        let (x1, x2) = xs.split_at(block_len / 2);
        for (((g1, g2), &a), &b) in d1.iter_mut().zip(d2.iter_mut()).zip(x1).zip(x2) {
            let g = -(a as f64 - b as f64).signum() * scale;
            let g = if a == b { 0.0 } else { g };
            (*g1, *g2) = (g as f32, -g as f32);
        }
    }
    ((1.0 / (r + EPS)) as f32, d)
}
