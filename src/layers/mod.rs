//! The layers, each with a hand-written forward and backward pass that match
//! PyTorch's definitions.
//!
//! Conventions shared by every layer:
//! - `forward` takes its input by value, so a layer can keep what its backward pass
//!   needs without copying, and returns its output.
//! - `backward` takes `dy` (the gradient of the loss with respect to the output),
//!   *adds* the gradients of the parameters into `dweight`, `dbias`, ... and returns
//!   `dx`. Zeroing the parameter gradients is separate (`zero_grad`), so that several
//!   backward passes (real and generated batches) can accumulate.
//! - Backward reads only what the latest forward cached, by name.
//! - A wrong input shape is a bug in the model code, not a user error: the layer
//!   panics at once with a message naming itself and both shapes.

/// `Module` for a layer whose parameters are `weight` and `bias`, with gradients
/// `dweight` and `dbias`.
macro_rules! weight_bias_module {
    ($layer:ty) => {
        impl $crate::layers::Module for $layer {
            fn params(&mut self) -> Vec<$crate::layers::Param<'_>> {
                vec![
                    $crate::layers::Param {
                        name: "weight",
                        value: self.weight.view_mut().into_dyn(),
                        grad: self.dweight.view().into_dyn(),
                    },
                    $crate::layers::Param {
                        name: "bias",
                        value: self.bias.view_mut().into_dyn(),
                        grad: self.dbias.view().into_dyn(),
                    },
                ]
            }

            fn zero_grad(&mut self) {
                self.dweight.fill(0.0);
                self.dbias.fill(0.0);
            }
        }
    };
}

pub mod activation;
pub mod batchnorm;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod diffaugment;
pub mod linear;

pub use activation::{LeakyRelu, Relu, Sigmoid, Tanh};
pub use batchnorm::BatchNorm;
pub use conv_transpose2d::ConvTranspose2d;
pub use conv2d::Conv2d;
pub use diffaugment::{AugmentPolicy, DiffAugment};
pub use linear::Linear;

use ndarray::{Array, ArrayViewD, ArrayViewMutD, Dimension};

/// Panics with a message naming the layer, the tensor and both shapes, unless
/// `actual` matches `expected` (where `None` in `expected` matches any size).
#[track_caller]
pub fn check_shape(layer: &str, tensor: &str, expected: &[Option<usize>], actual: &[usize]) {
    let ok = expected.len() == actual.len() && expected.iter().zip(actual).all(|(e, a)| e.is_none_or(|e| e == *a));
    if !ok {
        let want: Vec<String> = expected.iter().map(|e| e.map_or("*".to_string(), |e| e.to_string())).collect();
        panic!("{layer}: {tensor} has shape {actual:?}, expected [{}]", want.join(", "));
    }
}

/// `x` itself when it is in standard (row-major, contiguous) layout, which is the
/// usual case; otherwise a standard-layout copy. The fast loops need flat slices.
pub fn standard<D: Dimension>(x: Array<f32, D>) -> Array<f32, D> {
    if x.is_standard_layout() { x } else { x.as_standard_layout().into_owned() }
}

/// One trainable tensor: its value and the gradient accumulated for it, under the
/// name PyTorch gives it inside its module (`weight`, `bias`).
pub struct Param<'a> {
    pub name: &'static str,
    pub value: ArrayViewMutD<'a, f32>,
    pub grad: ArrayViewD<'a, f32>,
}

/// A non-trainable tensor that a checkpoint must keep (batch norm's running statistics).
pub struct Buffer<'a> {
    pub name: &'static str,
    pub value: ArrayViewMutD<'a, f32>,
}

/// What the optimizer and the checkpoint see of a layer.
pub trait Module {
    /// The trainable tensors with their gradients, in a fixed order.
    fn params(&mut self) -> Vec<Param<'_>>;

    /// The non-trainable state; most layers have none.
    fn buffers(&mut self) -> Vec<Buffer<'_>> {
        Vec::new()
    }

    /// Sets every parameter gradient to zero.
    fn zero_grad(&mut self);
}
