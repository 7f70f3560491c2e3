//! Element-wise activations: ReLU, LeakyReLU, Tanh and Sigmoid, as in PyTorch.
//! Each works in place on the array it is given and keeps the least its backward
//! pass needs: a sign mask for the piecewise-linear ones, the output for the others.

use crate::kernels::vectorized;
use ndarray::{Array, ArrayD, Dimension};
use rayon::prelude::*;

use super::{Layer, OnnxAttr, OnnxOp, check_same_shape, standard};

/// `y = max(x, 0)`. PyTorch's gradient at exactly 0 is 0, and so is ours.
#[derive(Clone, Default)]
pub struct Relu {
    /// Cache: positive: x > 0, flat, for an x of shape `shape`.
    positive: Vec<bool>,
    shape: Vec<usize>,
}

impl Relu {
    pub fn new() -> Self {
        Self::default()
    }

    /// x: any shape -> y: the same shape
    pub fn forward<D: Dimension>(&mut self, x: Array<f32, D>) -> Array<f32, D> {
        leaky_forward(x, 0.0, &mut self.positive, &mut self.shape)
    }

    /// `dx = dy` where `x > 0`, else 0.
    pub fn backward<D: Dimension>(&mut self, dy: Array<f32, D>) -> Array<f32, D> {
        leaky_backward("ReLU", dy, 0.0, &self.positive, &self.shape)
    }
}

/// `y = x` for `x > 0`, else `negative_slope * x` (PyTorch's default slope is 0.01;
/// InfoGAN uses 0.1).
#[derive(Clone)]
pub struct LeakyRelu {
    pub negative_slope: f32,
    /// Cache: positive: x > 0, flat, for an x of shape `shape`.
    positive: Vec<bool>,
    shape: Vec<usize>,
}

impl LeakyRelu {
    pub fn new(negative_slope: f32) -> Self {
        LeakyRelu { negative_slope, positive: Vec::new(), shape: Vec::new() }
    }

    /// x: any shape -> y: the same shape
    pub fn forward<D: Dimension>(&mut self, x: Array<f32, D>) -> Array<f32, D> {
        leaky_forward(x, self.negative_slope, &mut self.positive, &mut self.shape)
    }

    /// `dx = dy` where `x > 0`, else `negative_slope * dy`.
    pub fn backward<D: Dimension>(&mut self, dy: Array<f32, D>) -> Array<f32, D> {
        leaky_backward("LeakyReLU", dy, self.negative_slope, &self.positive, &self.shape)
    }
}

/// Elements per parallel task of the element-wise loops: large enough that rayon's
/// hand-off is noise, small enough to spread a 64-image batch over the cores.
const CHUNK: usize = 1 << 14;

/// The mask vector keeps its allocation when the batch size changes.
fn leaky_forward<D: Dimension>(
    x: Array<f32, D>,
    slope: f32,
    positive: &mut Vec<bool>,
    shape: &mut Vec<usize>,
) -> Array<f32, D> {
    let _time = crate::profile::scope(crate::profile::Phase::Activation);
    let mut x = standard(x);
    positive.resize(x.len(), false);
    shape.clear();
    shape.extend_from_slice(x.shape());
    let xs = x.as_slice_mut().expect("standard layout");
    let ps = positive.as_mut_slice();
    xs.par_chunks_mut(CHUNK).zip(ps.par_chunks_mut(CHUNK)).for_each(|(xs, ps)| leaky(xs, ps, slope));
    x
}

vectorized! {
    /// `x = max(x, 0) + slope min(x, 0)` in place, and whether each x was positive. Built
    /// for AVX2 as well (`vectorized!`).
    fn leaky(xs: &mut [f32], positive: &mut [bool], slope: f32) {
        // Arithmetic rather than a branch on the sign: activations have random signs,
        // and a branch mispredicted half the time made this loop 4x slower.
        for (v, p) in xs.iter_mut().zip(positive) {
            let x = *v;
            *p = x > 0.0;
            *v = x.max(0.0) + slope * x.min(0.0);
        }
    }
}

vectorized! {
    /// `dy *= 1` where x was positive, `slope` elsewhere, in place. Built for AVX2 as well.
    fn leaky_gradient(ds: &mut [f32], positive: &[bool], slope: f32) {
        for (d, &p) in ds.iter_mut().zip(positive) {
            *d *= slope + (1.0 - slope) * f32::from(u8::from(p));
        }
    }
}

fn leaky_backward<D: Dimension>(
    layer: &str,
    dy: Array<f32, D>,
    slope: f32,
    positive: &[bool],
    shape: &[usize],
) -> Array<f32, D> {
    let _time = crate::profile::scope(crate::profile::Phase::Activation);
    let mut dy = standard(dy);
    check_same_shape(layer, "dy", shape, dy.shape());
    let ds = dy.as_slice_mut().expect("standard layout");
    let ps = &positive[..ds.len()];
    ds.par_chunks_mut(CHUNK).zip(ps.par_chunks(CHUNK)).for_each(|(ds, ps)| leaky_gradient(ds, ps, slope));
    dy
}

/// `y = tanh(x)`.
#[derive(Clone, Default)]
pub struct Tanh {
    /// Cache: y: the output, which is all the gradient needs.
    y: Output,
}

impl Tanh {
    pub fn new() -> Self {
        Self::default()
    }

    /// x: any shape -> y: the same shape
    pub fn forward<D: Dimension>(&mut self, mut x: Array<f32, D>) -> Array<f32, D> {
        let _time = crate::profile::scope(crate::profile::Phase::Activation);
        x.par_mapv_inplace(f32::tanh);
        self.y.keep(&x);
        x
    }

    /// `dx = dy (1 - y^2)`.
    pub fn backward<D: Dimension>(&mut self, dy: Array<f32, D>) -> Array<f32, D> {
        output_backward("Tanh", dy, &self.y, |y| 1.0 - y * y)
    }
}

/// `y = 1 / (1 + exp(-x))`.
#[derive(Clone, Default)]
pub struct Sigmoid {
    /// Cache: y: the output, which is all the gradient needs.
    y: Output,
}

impl Sigmoid {
    pub fn new() -> Self {
        Self::default()
    }

    /// x: any shape -> y: the same shape
    pub fn forward<D: Dimension>(&mut self, mut x: Array<f32, D>) -> Array<f32, D> {
        let _time = crate::profile::scope(crate::profile::Phase::Activation);
        x.par_mapv_inplace(sigmoid);
        self.y.keep(&x);
        x
    }

    /// `dx = dy y (1 - y)`.
    pub fn backward<D: Dimension>(&mut self, dy: Array<f32, D>) -> Array<f32, D> {
        output_backward("Sigmoid", dy, &self.y, |y| y * (1.0 - y))
    }
}

/// The logistic function, written so that neither branch overflows.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// A copy of a layer's output, in a buffer kept from call to call.
#[derive(Clone, Default)]
struct Output {
    values: Vec<f32>,
    shape: Vec<usize>,
}

impl Output {
    fn keep<D: Dimension>(&mut self, y: &Array<f32, D>) {
        self.values.clear();
        self.values.extend(y.iter());
        self.shape.clear();
        self.shape.extend_from_slice(y.shape());
    }
}

fn output_backward<D: Dimension>(
    layer: &str,
    dy: Array<f32, D>,
    y: &Output,
    dydx: impl Fn(f32) -> f32 + Sync,
) -> Array<f32, D> {
    let _time = crate::profile::scope(crate::profile::Phase::Activation);
    let mut dy = standard(dy);
    check_same_shape(layer, "dy", &y.shape, dy.shape());
    let ds = dy.as_slice_mut().expect("standard layout");
    let ys = &y.values;
    ds.par_chunks_mut(CHUNK).zip(ys.par_chunks(CHUNK)).for_each(|(ds, ys)| {
        for (d, &y) in ds.iter_mut().zip(ys) {
            *d *= dydx(y);
        }
    });
    dy
}

/// An activation as a `Layer`: forward and backward over any rank, and its ONNX
/// operator.
macro_rules! activation_layer {
    ($layer:ty, $op:literal, $attrs:expr) => {
        impl Layer for $layer {
            fn forward(&mut self, x: ArrayD<f32>) -> ArrayD<f32> {
                <$layer>::forward(self, x)
            }

            fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
                <$layer>::backward(self, dy)
            }

            fn onnx(&self) -> Option<OnnxOp> {
                let attrs: fn(&$layer) -> Vec<(&'static str, OnnxAttr)> = $attrs;
                Some(OnnxOp { op: $op, constants: Vec::new(), attrs: attrs(self), fold_axis: None })
            }
        }
    };
}

activation_layer!(Relu, "Relu", |_| Vec::new());
activation_layer!(LeakyRelu, "LeakyRelu", |l: &LeakyRelu| vec![("alpha", OnnxAttr::Float(l.negative_slope))]);
activation_layer!(Tanh, "Tanh", |_| Vec::new());
activation_layer!(Sigmoid, "Sigmoid", |_| Vec::new());
