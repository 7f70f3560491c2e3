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

use ndarray::{Array, Array1, Array3, ArrayView2, ArrayView3, ArrayViewMut3, Axis, Dimension, Zip};
use rayon::prelude::*;

use super::{Buffer, Module, Param, check_shape};

#[derive(Clone)]
pub struct BatchNorm {
    /// weight (gamma): [C]
    pub weight: Array1<f32>,
    /// bias (beta): [C]
    pub bias: Array1<f32>,
    /// dweight: [C]
    pub dweight: Array1<f32>,
    /// dbias: [C]
    pub dbias: Array1<f32>,
    /// running_mean: [C]
    pub running_mean: Array1<f32>,
    /// running_var: [C]
    pub running_var: Array1<f32>,
    pub momentum: f32,
    pub eps: f32,
    /// Batch statistics (true) or running statistics (false).
    pub training: bool,
    /// When false, `backward` returns `dx` but leaves `dweight` and `dbias` alone.
    pub requires_grad: bool,
    /// Cache of the latest forward. x_hat: [N, C, P]; inv_std: [C], `1/sqrt(var + eps)`
    /// of whichever variance normalised; and whether that forward was in training mode.
    x_hat: Array3<f32>,
    inv_std: Array1<f32>,
    trained: bool,
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
            x_hat: Array3::zeros((0, channels, 1)),
            inv_std: Array1::zeros(channels),
            trained: true,
        }
    }

    pub fn channels(&self) -> usize {
        self.weight.len()
    }

    /// x: [N, C] or [N, C, H, W] -> y: the same shape
    pub fn forward<D: Dimension>(&mut self, x: Array<f32, D>) -> Array<f32, D> {
        let c = self.channels();
        assert!(
            (x.ndim() == 2 || x.ndim() == 4) && x.shape()[1] == c,
            "BatchNorm: input has shape {:?}, expected [N, {c}] or [N, {c}, H, W]",
            x.shape()
        );
        let dim = x.raw_dim();
        let mut x_hat = into3(x);
        let (n, _, p) = x_hat.dim();
        let m = n * p;
        if self.training {
            assert!(m > 1, "BatchNorm: training needs more than one value per channel, got input {:?}", dim.slice());
            let stats = per_channel(x_hat.view(), |lane| {
                let mean = lane.iter().map(|&v| v as f64).sum::<f64>() / m as f64;
                let var = lane.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m as f64;
                (mean, var)
            });
            for (ch, &(mean, var)) in stats.iter().enumerate() {
                let mom = self.momentum as f64;
                self.running_mean[ch] = ((1.0 - mom) * self.running_mean[ch] as f64 + mom * mean) as f32;
                let unbiased = var * m as f64 / (m - 1) as f64;
                self.running_var[ch] = ((1.0 - mom) * self.running_var[ch] as f64 + mom * unbiased) as f32;
            }
            let eps = self.eps as f64;
            self.inv_std = stats.iter().map(|&(_, var)| (1.0 / (var + eps).sqrt()) as f32).collect();
            let means: Vec<f32> = stats.iter().map(|&(mean, _)| mean as f32).collect();
            normalise(x_hat.view_mut(), &means, self.inv_std.as_slice().expect("contiguous"));
        } else {
            self.inv_std = self.running_var.mapv(|v| 1.0 / (v + self.eps).sqrt());
            normalise(
                x_hat.view_mut(),
                self.running_mean.as_slice().expect("contiguous"),
                self.inv_std.as_slice().expect("contiguous"),
            );
        }
        let mut y = Array3::zeros(x_hat.dim());
        Zip::from(y.axis_iter_mut(Axis(1)))
            .and(x_hat.axis_iter(Axis(1)))
            .and(&self.weight)
            .and(&self.bias)
            .par_for_each(|mut y, x_hat, &g, &b| y.zip_mut_with(&x_hat, |y, &xh| *y = g * xh + b));
        self.x_hat = x_hat;
        self.trained = self.training;
        y.into_shape_with_order(dim).expect("same element count")
    }

    /// Training mode. With `g = weight`, per channel and over its M values:
    /// - `dbias += sum dy`, `dweight += sum dy x_hat`;
    /// - `dx = g inv_std / M (M dy - sum dy - x_hat sum(dy x_hat))`: the gradient through
    ///   `x_hat`, minus its projection onto the directions that the mean and the
    ///   variance remove (they depend on every x of the channel).
    ///
    /// Evaluation mode: the statistics are constants, so `dx = g inv_std dy`.
    ///
    /// dy: the shape of y -> dx: the same shape
    pub fn backward<D: Dimension>(&mut self, dy: Array<f32, D>) -> Array<f32, D> {
        let dim = dy.raw_dim();
        let (n, c, p) = self.x_hat.dim();
        let expected = if dim.ndim() == 2 { vec![Some(n), Some(c)] } else { vec![Some(n), Some(c), None, None] };
        check_shape("BatchNorm", "dy", &expected, dim.slice());
        let mut dx = into3(dy);
        check_shape("BatchNorm", "dy", &[Some(n), Some(c), Some(p)], dx.shape());
        let sums = per_channel_pair(dx.view(), &self.x_hat, |dy, x_hat| {
            let mut sum_dy = 0f64;
            let mut sum_dy_xhat = 0f64;
            Zip::from(&dy).and(&x_hat).for_each(|&d, &xh| {
                sum_dy += d as f64;
                sum_dy_xhat += d as f64 * xh as f64;
            });
            (sum_dy, sum_dy_xhat)
        });
        if self.requires_grad {
            for (ch, &(sum_dy, sum_dy_xhat)) in sums.iter().enumerate() {
                self.dbias[ch] += sum_dy as f32;
                self.dweight[ch] += sum_dy_xhat as f32;
            }
        }
        let m = (n * p) as f32;
        let trained = self.trained;
        Zip::from(dx.axis_iter_mut(Axis(1)))
            .and(self.x_hat.axis_iter(Axis(1)))
            .and(&self.weight)
            .and(&self.inv_std)
            .and(&sums)
            .par_for_each(|mut dx, x_hat, &g, &inv_std, &(sum_dy, sum_dy_xhat)| {
                let scale = g * inv_std;
                if trained {
                    let (mean_dy, mean_dy_xhat) = ((sum_dy / m as f64) as f32, (sum_dy_xhat / m as f64) as f32);
                    dx.zip_mut_with(&x_hat, |d, &xh| *d = scale * (*d - mean_dy - xh * mean_dy_xhat));
                } else {
                    dx.mapv_inplace(|d| scale * d);
                }
            });
        dx.into_shape_with_order(dim).expect("same element count")
    }
}

/// `[N, C]` as `[N, C, 1]`, `[N, C, H, W]` as `[N, C, H*W]`, without copying.
fn into3<D: Dimension>(x: Array<f32, D>) -> Array3<f32> {
    let s = x.shape().to_vec();
    let (n, c) = (s[0], s[1]);
    let p: usize = s[2..].iter().product();
    x.as_standard_layout().into_owned().into_shape_with_order((n, c, p)).expect("same element count")
}

/// `f` of each channel's `[N, P]` values, channels in parallel.
fn per_channel<T: Send>(x: ArrayView3<f32>, f: impl Fn(ArrayView2<f32>) -> T + Sync + Send) -> Vec<T> {
    x.axis_iter(Axis(1)).into_par_iter().map(f).collect()
}

/// `f` of each channel's `[N, P]` values of two arrays, channels in parallel.
fn per_channel_pair<T: Send>(
    a: ArrayView3<f32>,
    b: &Array3<f32>,
    f: impl Fn(ArrayView2<f32>, ArrayView2<f32>) -> T + Sync,
) -> Array1<T> {
    let v: Vec<T> = a.axis_iter(Axis(1)).into_par_iter().zip(b.axis_iter(Axis(1))).map(|(a, b)| f(a, b)).collect();
    Array1::from(v)
}

/// `x = (x - mean[c]) * inv_std[c]` in place.
fn normalise(mut x: ArrayViewMut3<f32>, mean: &[f32], inv_std: &[f32]) {
    x.axis_iter_mut(Axis(1)).into_par_iter().enumerate().for_each(|(c, mut lane)| {
        let (m, s) = (mean[c], inv_std[c]);
        lane.mapv_inplace(|v| (v - m) * s);
    });
}

impl Module for BatchNorm {
    fn params(&mut self) -> Vec<Param<'_>> {
        vec![
            Param { name: "weight", value: self.weight.view_mut().into_dyn(), grad: self.dweight.view().into_dyn() },
            Param { name: "bias", value: self.bias.view_mut().into_dyn(), grad: self.dbias.view().into_dyn() },
        ]
    }

    fn buffers(&mut self) -> Vec<Buffer<'_>> {
        vec![
            Buffer { name: "running_mean", value: self.running_mean.view_mut().into_dyn() },
            Buffer { name: "running_var", value: self.running_var.view_mut().into_dyn() },
        ]
    }

    fn zero_grad(&mut self) {
        self.dweight.fill(0.0);
        self.dbias.fill(0.0);
    }
}
