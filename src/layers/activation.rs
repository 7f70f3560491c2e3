//! Element-wise activations: ReLU, LeakyReLU, Tanh and Sigmoid, as in PyTorch.
//! Each works in place on the array it is given and keeps the least its backward
//! pass needs: a sign mask for the piecewise-linear ones, the output for the others.

use ndarray::{Array, ArrayD, Dimension, Zip};

use super::check_shape;

/// `y = max(x, 0)`. PyTorch's gradient at exactly 0 is 0, and so is ours.
#[derive(Clone, Default)]
pub struct Relu {
    /// Cache: positive: x > 0, the shape of x.
    positive: ArrayD<bool>,
}

impl Relu {
    pub fn new() -> Self {
        Self::default()
    }

    /// x: any shape -> y: the same shape
    pub fn forward<D: Dimension>(&mut self, x: Array<f32, D>) -> Array<f32, D> {
        leaky_forward(x, 0.0, &mut self.positive)
    }

    /// `dx = dy` where `x > 0`, else 0.
    pub fn backward<D: Dimension>(&mut self, dy: Array<f32, D>) -> Array<f32, D> {
        leaky_backward("ReLU", dy, 0.0, &self.positive)
    }
}

/// `y = x` for `x > 0`, else `negative_slope * x` (PyTorch's default slope is 0.01;
/// InfoGAN uses 0.1).
#[derive(Clone)]
pub struct LeakyRelu {
    pub negative_slope: f32,
    /// Cache: positive: x > 0, the shape of x.
    positive: ArrayD<bool>,
}

impl LeakyRelu {
    pub fn new(negative_slope: f32) -> Self {
        LeakyRelu { negative_slope, positive: ArrayD::from_elem(vec![0], false) }
    }

    /// x: any shape -> y: the same shape
    pub fn forward<D: Dimension>(&mut self, x: Array<f32, D>) -> Array<f32, D> {
        leaky_forward(x, self.negative_slope, &mut self.positive)
    }

    /// `dx = dy` where `x > 0`, else `negative_slope * dy`.
    pub fn backward<D: Dimension>(&mut self, dy: Array<f32, D>) -> Array<f32, D> {
        leaky_backward("LeakyReLU", dy, self.negative_slope, &self.positive)
    }
}

fn leaky_forward<D: Dimension>(mut x: Array<f32, D>, slope: f32, positive: &mut ArrayD<bool>) -> Array<f32, D> {
    if positive.shape() != x.shape() {
        *positive = ArrayD::from_elem(x.shape(), false);
    }
    Zip::from(&mut x).and(positive.view_mut().into_dimensionality::<D>().expect("same rank")).par_for_each(|v, p| {
        *p = *v > 0.0;
        if !*p {
            *v *= slope;
        }
    });
    x
}

fn leaky_backward<D: Dimension>(
    layer: &str,
    mut dy: Array<f32, D>,
    slope: f32,
    positive: &ArrayD<bool>,
) -> Array<f32, D> {
    let expected: Vec<Option<usize>> = positive.shape().iter().map(|&d| Some(d)).collect();
    check_shape(layer, "dy", &expected, dy.shape());
    Zip::from(&mut dy).and(positive.view().into_dimensionality::<D>().expect("same rank")).par_for_each(|d, &p| {
        if !p {
            *d *= slope;
        }
    });
    dy
}

/// `y = tanh(x)`.
#[derive(Clone, Default)]
pub struct Tanh {
    /// Cache: y: the output, which is all the gradient needs.
    y: ArrayD<f32>,
}

impl Tanh {
    pub fn new() -> Self {
        Self::default()
    }

    /// x: any shape -> y: the same shape
    pub fn forward<D: Dimension>(&mut self, mut x: Array<f32, D>) -> Array<f32, D> {
        x.par_mapv_inplace(f32::tanh);
        self.y = x.clone().into_dyn();
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
    y: ArrayD<f32>,
}

impl Sigmoid {
    pub fn new() -> Self {
        Self::default()
    }

    /// x: any shape -> y: the same shape
    pub fn forward<D: Dimension>(&mut self, mut x: Array<f32, D>) -> Array<f32, D> {
        x.par_mapv_inplace(sigmoid);
        self.y = x.clone().into_dyn();
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

fn output_backward<D: Dimension>(
    layer: &str,
    mut dy: Array<f32, D>,
    y: &ArrayD<f32>,
    dydx: impl Fn(f32) -> f32 + Sync,
) -> Array<f32, D> {
    let expected: Vec<Option<usize>> = y.shape().iter().map(|&d| Some(d)).collect();
    check_shape(layer, "dy", &expected, dy.shape());
    Zip::from(&mut dy).and(y.view().into_dimensionality::<D>().expect("same rank")).par_for_each(|d, &y| *d *= dydx(y));
    dy
}
