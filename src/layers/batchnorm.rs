//! Batch normalisation, PyTorch's `nn.BatchNorm1d` over `[N, F]` and `nn.BatchNorm2d`
//! over `[N, C, H, W]` (Ioffe and Szegedy, 2015), with affine weight and bias and
//! running statistics.
//!
//! Both shapes are handled as `[N, C, P]`: `P = 1` for features, `P = H*W` for images.
//! Statistics are per channel over the `M = N*P` values of that channel.
//!
//! Training mode, as PyTorch computes it:
//! - `mean = sum x / M`, `var = sum (x - mean)^2 / M` (biased),
//! - `x_hat = (x - mean) / sqrt(var + eps)`, `y = weight * x_hat + bias`,
//! - `running_mean = (1 - momentum) running_mean + momentum mean`,
//! - `running_var = (1 - momentum) running_var + momentum var * M / (M - 1)` (unbiased).
//!
//! Evaluation mode normalises with the running statistics instead and updates nothing.

use ndarray::{Array, Array1, Array3, ArrayD, Dimension};
use rayon::prelude::*;

use crate::buffers;
use crate::collective::Shards;
use crate::kernels::vectorized;

use super::{Layer, OnnxAttr, OnnxConstant, OnnxOp, check_shape, standard};

#[derive(Clone)]
pub struct BatchNorm {
    /// weight (gamma): `[C]`
    pub weight: Array1<f32>,
    /// bias (beta): `[C]`
    pub bias: Array1<f32>,
    /// dweight: `[C]`
    pub dweight: Array1<f32>,
    /// dbias: `[C]`
    pub dbias: Array1<f32>,
    /// running_mean: `[C]`
    pub running_mean: Array1<f32>,
    /// running_var: `[C]`
    pub running_var: Array1<f32>,
    pub momentum: f32,
    pub eps: f32,
    /// Batch statistics (true) or running statistics (false).
    pub training: bool,
    /// When false, `backward` returns `dx` but leaves `dweight` and `dbias` alone.
    pub requires_grad: bool,
    /// The batch is this many equal groups stacked along N, each normalised with its
    /// own statistics (and updating the running statistics in turn), exactly as if
    /// each group had gone through a forward pass of its own. The discriminator uses
    /// 2 to see the real and the generated batch in one pass. Default 1.
    pub groups: usize,
    /// The batch's shards (`collective`): each statistic is summed per shard and
    /// group, then over the shards of the job, so that every group is normalised with
    /// the statistics of its whole batch, on every rank.
    pub shards: Shards,
    /// Cache of the latest forward. x_hat: [N, C, P]; inv_std: [groups*C],
    /// `1/sqrt(var + eps)` of whichever variance normalised each group; and whether
    /// that forward was in training mode.
    x_hat: Array3<f32>,
    inv_std: Vec<f32>,
    trained: bool,
    /// Workspaces kept from step to step: mean: [groups*C], the means of the latest
    /// forward; stats: the per-shard partial sums of either pass; coef: backward's
    /// per-channel coefficients.
    mean: Vec<f32>,
    stats: Vec<f64>,
    coef: Vec<[f32; 3]>,
}

impl BatchNorm {
    /// PyTorch's defaults: weight 1, bias 0, running mean 0, running variance 1,
    /// momentum 0.1, eps 1e-5, training mode.
    pub fn new(channels: usize) -> Self {
        BatchNorm {
            weight: Array1::ones(channels),
            bias: Array1::zeros(channels),
            dweight: Array1::zeros(channels),
            dbias: Array1::zeros(channels),
            running_mean: Array1::zeros(channels),
            running_var: Array1::ones(channels),
            momentum: 0.1,
            eps: 1e-5,
            training: true,
            requires_grad: true,
            groups: 1,
            shards: Shards::single(),
            x_hat: Array3::zeros((0, channels, 1)),
            inv_std: vec![0.0; channels],
            trained: true,
            mean: Vec::new(),
            stats: Vec::new(),
            coef: Vec::new(),
        }
    }

    pub fn channels(&self) -> usize {
        self.weight.len()
    }

    /// x: [N, C] or [N, C, H, W] -> y: the same shape
    pub fn forward<D: Dimension>(&mut self, x: Array<f32, D>) -> Array<f32, D> {
        let _time = crate::profile::scope(crate::profile::Phase::BatchNorm);
        let c = self.channels();
        assert!(
            (x.ndim() == 2 || x.ndim() == 4) && x.shape()[1] == c,
            "BatchNorm: input has shape {:?}, expected [N, {c}] or [N, {c}, H, W]",
            x.shape()
        );
        let groups = self.groups;
        assert!(
            groups > 0 && x.shape()[0].is_multiple_of(groups),
            "BatchNorm: a batch of {} cannot be split into {groups} equal groups",
            x.shape()[0]
        );
        let dim = x.raw_dim();
        let mut x_hat = into3(x);
        let (n, _, p) = x_hat.dim();
        let (local, blocks) = (self.shards.local(), self.shards.local() * groups);
        assert!(
            n.is_multiple_of(blocks),
            "BatchNorm: a batch of {n} cannot be split into {local} shards of {groups} equal groups"
        );
        let block_len = n / blocks * c * p;
        // Per group, per channel: the mean and 1/sqrt(var + eps) that normalise it.
        let (mean, inv_std) = (&mut self.mean, &mut self.inv_std);
        mean.clear();
        inv_std.clear();
        if self.training {
            // The values of a channel in a group, over every shard of the job.
            let m = n / blocks * p * self.shards.total();
            assert!(m > 1, "BatchNorm: training needs more than one value per channel, got input {:?}", dim.slice());
            let xs = x_hat.as_slice().expect("standard layout");
            // Each statistic: per shard, per group, per channel (`blocks * c` partials),
            // added over the shards of the job into the first `groups * c`.
            let stats = &mut self.stats;
            stats.resize(2 * blocks * c, 0.0);
            let (sums, squares) = stats.split_at_mut(blocks * c);
            sums.chunks_exact_mut(c)
                .enumerate()
                .for_each(|(b, out)| channel_sums(&xs[b * block_len..][..block_len], c, p, out));
            let sums = self.shards.sum_f64_in_place(sums, groups * c);
            sums.iter_mut().for_each(|v| *v /= m as f64);
            let all_mean = &*sums;
            // Two passes, each a sum over the batch: the means, then the spreads about them.
            squares.chunks_exact_mut(c).enumerate().for_each(|(b, out)| {
                let g = b % groups;
                channel_squares(&xs[b * block_len..][..block_len], &all_mean[g * c..][..c], c, p, out)
            });
            let squares = self.shards.sum_f64_in_place(squares, groups * c);
            let mom = self.momentum as f64;
            let eps = self.eps as f64;
            for g in 0..groups {
                let group_mean = &all_mean[g * c..][..c];
                let group_var = &mut squares[g * c..][..c];
                group_var.iter_mut().for_each(|v| *v /= m as f64);
                for ch in 0..c {
                    let unbiased = group_var[ch] * m as f64 / (m - 1) as f64;
                    self.running_mean[ch] = ((1.0 - mom) * self.running_mean[ch] as f64 + mom * group_mean[ch]) as f32;
                    self.running_var[ch] = ((1.0 - mom) * self.running_var[ch] as f64 + mom * unbiased) as f32;
                }
                mean.extend(group_mean.iter().map(|&v| v as f32));
                inv_std.extend(group_var.iter().map(|&v| (1.0 / (v + eps).sqrt()) as f32));
            }
        } else {
            for _ in 0..groups {
                mean.extend(self.running_mean.iter());
                inv_std.extend(self.running_var.iter().map(|&v| 1.0 / (v + self.eps).sqrt()));
            }
        }
        let mut y = buffers::take(x_hat.dim());
        let (gamma, beta) = (self.weight.as_slice().expect("contiguous"), self.bias.as_slice().expect("contiguous"));
        let per_block = n / blocks;
        let (mean, inv_std) = (&*mean, &*inv_std);
        let xs = x_hat.as_slice_mut().expect("standard layout");
        let ys = y.as_slice_mut().expect("standard layout");
        xs.par_chunks_mut(c * p).zip(ys.par_chunks_mut(c * p)).enumerate().for_each(|(img, (xs, ys))| {
            let g = img / per_block % groups;
            normalize(xs, ys, &mean[g * c..][..c], &inv_std[g * c..][..c], gamma, beta)
        });
        buffers::give(std::mem::replace(&mut self.x_hat, x_hat));
        self.trained = self.training;
        y.into_shape_with_order(dim).expect("same element count")
    }

    /// Training mode. With `g = weight`, per channel (and group) over its M values:
    /// - `dbias += sum dy`, `dweight += sum dy x_hat`;
    /// - `dx = g inv_std / M (M dy - sum dy - x_hat sum(dy x_hat))`: the gradient through
    ///   `x_hat`, minus its projection onto the directions that the mean and the
    ///   variance remove (they depend on every x of the channel).
    ///
    /// Evaluation mode: the statistics are constants, so `dx = g inv_std dy`.
    ///
    /// dy: the shape of y -> dx: the same shape
    pub fn backward<D: Dimension>(&mut self, dy: Array<f32, D>) -> Array<f32, D> {
        let _time = crate::profile::scope(crate::profile::Phase::BatchNorm);
        let dim = dy.raw_dim();
        let (n, c, p) = self.x_hat.dim();
        if dim.ndim() == 2 {
            check_shape("BatchNorm", "dy", &[Some(n), Some(c)], dim.slice());
        } else {
            check_shape("BatchNorm", "dy", &[Some(n), Some(c), None, None], dim.slice());
        }
        let mut dx = into3(dy);
        check_shape("BatchNorm", "dy", &[Some(n), Some(c), Some(p)], dx.shape());
        let groups = self.inv_std.len() / c;
        let blocks = self.shards.local() * groups;
        let per_block = n / blocks;
        let block_len = per_block * c * p;
        let x_hat = self.x_hat.as_slice().expect("standard layout");
        let m = (per_block * p * self.shards.total()) as f64;
        // Per shard, per group, per channel: [sum dy, sum dy * x_hat]; then their sums
        // over every shard of the job.
        let dys = dx.as_slice().expect("standard layout");
        let leaves = &mut self.stats;
        leaves.resize(blocks * c * 2, 0.0);
        leaves.chunks_exact_mut(2 * c).enumerate().for_each(|(b, out)| {
            let at = b * block_len..(b + 1) * block_len;
            channel_pair_sums(&dys[at.clone()], &x_hat[at], c, p, out)
        });
        let sums = self.shards.sum_f64_in_place(leaves, groups * c * 2);
        // Per group, per channel: [scale, mean of dy, mean of dy * x_hat].
        let coef = &mut self.coef;
        coef.clear();
        for g in 0..groups {
            for ch in 0..c {
                let (sum_dy, sum_dy_xhat) = (sums[(g * c + ch) * 2], sums[(g * c + ch) * 2 + 1]);
                if self.requires_grad {
                    self.dbias[ch] += sum_dy as f32;
                    self.dweight[ch] += sum_dy_xhat as f32;
                }
                let scale = self.weight[ch] * self.inv_std[g * c + ch];
                coef.push(if self.trained {
                    [scale, (sum_dy / m) as f32, (sum_dy_xhat / m) as f32]
                } else {
                    [scale, 0.0, 0.0]
                });
            }
        }
        let coef = &*coef;
        let dxs = dx.as_slice_mut().expect("standard layout");
        dxs.par_chunks_mut(c * p).zip(x_hat.par_chunks(c * p)).enumerate().for_each(|(img, (dxs, xhs))| {
            let coef = &coef[img / per_block % groups * c..][..c];
            input_gradient(dxs, xhs, coef)
        });
        dx.into_shape_with_order(dim).expect("same element count")
    }
}

vectorized! {
    /// One image's `x_hat = (x - mean) inv_std` (in place of x) and `y = weight x_hat +
    /// bias`, per channel. Built for AVX2 as well (`vectorized!`).
    ///
    /// xs, ys: [C, P] flat; mean, inv_std, gamma, beta: `[C]`
    fn normalize(xs: &mut [f32], ys: &mut [f32], mean: &[f32], inv_std: &[f32], gamma: &[f32], beta: &[f32]) {
        let p = xs.len() / mean.len();
        let channels = xs.chunks_exact_mut(p).zip(ys.chunks_exact_mut(p));
        for ((xs, ys), (((&mu, &s), &w), &b)) in channels.zip(mean.iter().zip(inv_std).zip(gamma).zip(beta)) {
            for (xh, y) in xs.iter_mut().zip(ys) {
                *xh = (*xh - mu) * s;
                *y = w * *xh + b;
            }
        }
    }
}

vectorized! {
    /// One image's `dx = scale (dy - mean dy - x_hat mean(dy x_hat))` (in place of dy),
    /// per channel, with `coef[ch] = [scale, mean dy, mean dy x_hat]` (see `backward`).
    /// Built for AVX2 as well (`vectorized!`).
    ///
    /// dxs, xhs: [C, P] flat; coef: `[C]`
    fn input_gradient(dxs: &mut [f32], xhs: &[f32], coef: &[[f32; 3]]) {
        let p = dxs.len() / coef.len();
        for ((dxs, xhs), &[scale, mean_dy, mean_dy_xhat]) in dxs.chunks_exact_mut(p).zip(xhs.chunks_exact(p)).zip(coef) {
            for (d, &xh) in dxs.iter_mut().zip(xhs) {
                *d = scale * (*d - mean_dy - xh * mean_dy_xhat);
            }
        }
    }
}

/// `[N, C]` as `[N, C, 1]`, `[N, C, H, W]` as `[N, C, H*W]`, without copying.
fn into3<D: Dimension>(x: Array<f32, D>) -> Array3<f32> {
    let s = x.shape();
    let (n, c) = (s[0], s[1]);
    let p: usize = s[2..].iter().product();
    standard(x).into_shape_with_order((n, c, p)).expect("same element count")
}

/// Channels per parallel task of the reductions: at most `4096 / P` (a task's run of
/// one image stays small), and few enough that every thread gets two tasks. Each
/// channel is summed within one task, so the cut does not change any bits.
fn channel_block(c: usize, p: usize) -> usize {
    let tasks = 2 * rayon::current_num_threads();
    (4096 / p.max(1)).min(c.div_ceil(tasks)).clamp(1, c.max(1))
}

/// Runs `f(c0, c1, acc)` for blocks of channels `c0..c1` in parallel, each on the
/// zeroed `acc = out[c0 * width..c1 * width]` of its channels' results (`width`
/// values per channel).
fn per_channel_block(out: &mut [f64], width: usize, c: usize, p: usize, f: impl Fn(usize, usize, &mut [f64]) + Sync) {
    let block = channel_block(c, p);
    out.par_chunks_mut(block * width).enumerate().for_each(|(b, acc)| {
        acc.fill(0.0);
        f(b * block, ((b + 1) * block).min(c), acc)
    });
}

/// Interleaved partial sums of a run: value `i` goes to lane `i % LANES`, and the lanes
/// are added pairwise at the end. One f64 chain would wait out an add's latency
/// (4 cycles) on every value; eight independent ones fill the vector units. The
/// order is fixed, so the sum does not depend on the thread count.
const LANES: usize = 8;

/// `sum f(v)` over `run` in f64, in `LANES` partial sums.
#[inline(always)]
fn lane_sum(run: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0f64; LANES];
    let mut chunks = run.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += f(v);
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += f(v);
    }
    add_lanes(lanes)
}

/// `[sum d, sum d*x]` over the runs `d` and `x` in f64, in `LANES` partial sums each.
#[inline(always)]
fn lane_pair_sum(d: &[f32], x: &[f32]) -> [f64; 2] {
    let (mut sums, mut products) = ([0f64; LANES], [0f64; LANES]);
    let (mut dc, mut xc) = (d.chunks_exact(LANES), x.chunks_exact(LANES));
    for (dv, xv) in (&mut dc).zip(&mut xc) {
        for i in 0..LANES {
            sums[i] += dv[i] as f64;
            products[i] += dv[i] as f64 * xv[i] as f64;
        }
    }
    for (i, (&dv, &xv)) in dc.remainder().iter().zip(xc.remainder()).enumerate() {
        sums[i] += dv as f64;
        products[i] += dv as f64 * xv as f64;
    }
    [add_lanes(sums), add_lanes(products)]
}

#[inline(always)]
fn add_lanes(l: [f64; LANES]) -> f64 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// Each channel's sum over its values, in f64, image after image, each image's run in
/// `LANES` partial sums. A block of channels reads, for each image, one contiguous run
/// of `x`; with one value per channel (`P = 1`, features) the adds run across the
/// channels instead, which are independent already.
///
/// x: [N, C, P] flat, out: `[C]`
fn channel_sums(x: &[f32], c: usize, p: usize, out: &mut [f64]) {
    per_channel_block(out, 1, c, p, |c0, c1, acc| block_sums(x, c, p, c0, c1, acc))
}

vectorized! {
    /// `channel_sums` of channels `c0..c1` into their `acc`, built for AVX2 as well
    /// (`vectorized!`), as the two below.
    fn block_sums(x: &[f32], c: usize, p: usize, c0: usize, c1: usize, acc: &mut [f64]) {
        let n = x.len() / (c * p);
        for img in 0..n {
            let run = &x[(img * c + c0) * p..(img * c + c1) * p];
            if p == 1 {
                acc.iter_mut().zip(run).for_each(|(a, &v)| *a += v as f64);
            } else {
                for (a, seg) in acc.iter_mut().zip(run.chunks_exact(p)) {
                    *a += lane_sum(seg, |v| v as f64);
                }
            }
        }
    }
}

/// Each channel's sum of squared differences from `mean[channel]`, in the same order:
/// the second of two passes (for accuracy when the mean is large against the spread).
///
/// x: [N, C, P] flat, mean: `[C]`, out: `[C]`
fn channel_squares(x: &[f32], mean: &[f64], c: usize, p: usize, out: &mut [f64]) {
    per_channel_block(out, 1, c, p, |c0, c1, acc| block_squares(x, mean, c, p, c0, c1, acc))
}

vectorized! {
    fn block_squares(x: &[f32], mean: &[f64], c: usize, p: usize, c0: usize, c1: usize, acc: &mut [f64]) {
        let n = x.len() / (c * p);
        for img in 0..n {
            let run = &x[(img * c + c0) * p..(img * c + c1) * p];
            let mean = &mean[c0..c1];
            if p == 1 {
                acc.iter_mut().zip(run).zip(mean).for_each(|((a, &v), &mu)| *a += (v as f64 - mu).powi(2));
            } else {
                for ((a, seg), &mu) in acc.iter_mut().zip(run.chunks_exact(p)).zip(mean) {
                    *a += lane_sum(seg, |v| (v as f64 - mu).powi(2));
                }
            }
        }
    }
}

/// For each channel, `[sum dy, sum dy*x_hat]` over its values, in the same fixed order.
///
/// dy, x_hat: [N, C, P] flat, out: [C, 2] flat
fn channel_pair_sums(dy: &[f32], x_hat: &[f32], c: usize, p: usize, out: &mut [f64]) {
    per_channel_block(out, 2, c, p, |c0, c1, acc| block_pair_sums(dy, x_hat, c, p, c0, c1, acc))
}

vectorized! {
    fn block_pair_sums(dy: &[f32], x_hat: &[f32], c: usize, p: usize, c0: usize, c1: usize, acc: &mut [f64]) {
        let n = dy.len() / (c * p);
        for img in 0..n {
            let range = (img * c + c0) * p..(img * c + c1) * p;
            let (ds, xs) = (&dy[range.clone()], &x_hat[range]);
            if p == 1 {
                for (a, (&d, &xh)) in acc.chunks_exact_mut(2).zip(ds.iter().zip(xs)) {
                    a[0] += d as f64;
                    a[1] += d as f64 * xh as f64;
                }
            } else {
                for (a, (d, x)) in acc.chunks_exact_mut(2).zip(ds.chunks_exact(p).zip(xs.chunks_exact(p))) {
                    let [sum, product] = lane_pair_sum(d, x);
                    a[0] += sum;
                    a[1] += product;
                }
            }
        }
    }
}

impl Layer for BatchNorm {
    layer_tensors!(params: [weight => dweight, bias => dbias], buffers: [running_mean, running_var]);

    fn forward(&mut self, x: ArrayD<f32>) -> ArrayD<f32> {
        BatchNorm::forward(self, x)
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        BatchNorm::backward(self, dy)
    }

    fn set_requires_grad(&mut self, on: bool) {
        self.requires_grad = on;
    }

    fn set_training(&mut self, on: bool) {
        self.training = on;
    }

    fn set_groups(&mut self, groups: usize) {
        self.groups = groups;
    }

    fn set_shards(&mut self, shards: &Shards) {
        self.shards = shards.clone();
    }

    /// Inference form: the running statistics.
    fn onnx(&self) -> Option<OnnxOp> {
        let constant = |a: &Array1<f32>| OnnxConstant::Float(a.clone().into_dyn());
        let constants = vec![
            ("weight", constant(&self.weight)),
            ("bias", constant(&self.bias)),
            ("running_mean", constant(&self.running_mean)),
            ("running_var", constant(&self.running_var)),
        ];
        let attrs = vec![("epsilon", OnnxAttr::Float(self.eps))];
        Some(OnnxOp { op: "BatchNormalization", constants, attrs, fold_axis: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, random_array};
    use ndarray::{Axis, concatenate};

    /// Two groups in one pass give what two separate passes give: outputs, input
    /// gradients, parameter gradients and running statistics.
    #[test]
    fn groups_match_separate_passes() {
        for shape in [vec![6, 3], vec![4, 3, 2, 5]] {
            let x = random_array(shape.clone(), 1);
            let dy = random_array(shape.clone(), 2);
            let half = shape[0] / 2;
            let mut base = BatchNorm::new(3);
            base.weight = random_array(3, 3) + 1.0;

            let mut separate = base.clone();
            let mut ys = Vec::new();
            let mut dxs = Vec::new();
            for part in 0..2 {
                let rows = ndarray::Slice::from(part * half..(part + 1) * half);
                ys.push(separate.forward(x.slice_axis(Axis(0), rows).to_owned()));
                dxs.push(separate.backward(dy.slice_axis(Axis(0), rows).to_owned()));
            }
            let mut grouped = base.clone();
            grouped.groups = 2;
            let y = grouped.forward(x.clone());
            let dx = grouped.backward(dy.clone());
            let cat = |v: &[ndarray::ArrayD<f32>]| concatenate(Axis(0), &[v[0].view(), v[1].view()]).unwrap();
            assert_close(&y, &cat(&ys), 1e-6, 1e-6, "grouped y");
            assert_close(&dx, &cat(&dxs), 1e-6, 1e-6, "grouped dx");
            assert_close(&grouped.dweight, &separate.dweight, 1e-6, 1e-6, "grouped dweight");
            assert_close(&grouped.dbias, &separate.dbias, 1e-6, 1e-6, "grouped dbias");
            assert_close(&grouped.running_mean, &separate.running_mean, 1e-6, 1e-7, "grouped running_mean");
            assert_close(&grouped.running_var, &separate.running_var, 1e-6, 1e-7, "grouped running_var");
        }
    }
}
