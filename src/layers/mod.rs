//! The layers, each with a hand-written forward and backward pass that match
//! PyTorch's definitions.
//!
//! Conventions shared by every layer:
//! - `forward` takes its input by value, so a layer can keep what its backward pass
//!   needs without copying, and returns its output.
//! - `backward` takes `dy` (the gradient of the loss with respect to the output),
//!   *adds* the gradients of the parameters into `dweight`, `dbias`, ... and returns
//!   `dx`. Zeroing the parameter gradients is separate (`zero_grad`), so that several
//!   backward passes (real and generated batches) can accumulate. (A layer with large
//!   gradients may only note the zeroing, and have its next backward pass write where
//!   it would add: see `layer_tensors!`.)
//! - Backward reads only what the latest forward cached, by name.
//! - A wrong input shape is a bug in the model code, not a user error: the layer
//!   panics at once with a message naming itself and both shapes.

/// The tensor methods of `Layer` for a layer whose fields hold them: parameters
/// with their gradients (`weight => dweight`) and buffers. The field names are the
/// tensors' names, as PyTorch names them inside its modules; they are written here
/// and nowhere else.
///
/// With `zeroed: flag`, `zero_grad` only sets the layer's `flag`, and the layer's
/// backward pass, when it finds the flag set, writes its gradients instead of adding
/// to them (and clears it): for the largest gradients (the dense layers' weights, 6.4
/// million floats each in the MNIST networks) this saves a pass that writes zeros and
/// a GEMM that reads them back. Whoever reads the gradients through `params` or
/// `visit_params` while the flag is still set (no backward pass since) gets the zeros
/// written then.
macro_rules! layer_tensors {
    (params: [$($p:ident => $dp:ident),*], buffers: [$($b:ident),*]) => {
        layer_tensors!(@tensors [$($p => $dp),*] [$($b),*] |_layer| {});

        fn zero_grad(&mut self) {
            $(self.$dp.fill(0.0);)*
        }
    };
    (params: [$($p:ident => $dp:ident),*], buffers: [$($b:ident),*], zeroed: $z:ident) => {
        layer_tensors!(@tensors [$($p => $dp),*] [$($b),*] |layer| {
            if std::mem::take(&mut layer.$z) {
                $(layer.$dp.fill(0.0);)*
            }
        });

        fn zero_grad(&mut self) {
            self.$z = true;
        }
    };
    // `before` runs on the layer (named by `$this`) before its gradients are handed out.
    (@tensors [$($p:ident => $dp:ident),*] [$($b:ident),*] |$this:ident| { $($before:tt)* }) => {
        fn params(&mut self) -> Vec<$crate::layers::Param<'_>> {
            {
                let $this = &mut *self;
                $($before)*
            }
            vec![$($crate::layers::Param {
                name: stringify!($p),
                value: self.$p.view_mut().into_dyn(),
                grad: self.$dp.view().into_dyn(),
            }),*]
        }

        fn visit_params(&mut self, f: &mut dyn FnMut($crate::layers::Param<'_>)) {
            {
                let $this = &mut *self;
                $($before)*
            }
            $(f($crate::layers::Param {
                name: stringify!($p),
                value: self.$p.view_mut().into_dyn(),
                grad: self.$dp.view().into_dyn(),
            });)*
        }

        fn buffers(&mut self) -> Vec<$crate::layers::Buffer<'_>> {
            vec![$($crate::layers::Buffer { name: stringify!($b), value: self.$b.view_mut().into_dyn() }),*]
        }

        fn tensors(&self) -> Vec<(&'static str, ndarray::ArrayViewD<'_, f32>)> {
            vec![$((stringify!($p), self.$p.view().into_dyn()),)* $((stringify!($b), self.$b.view().into_dyn()),)*]
        }

        fn param_names(&self) -> Vec<&'static str> {
            vec![$(stringify!($p)),*]
        }
    };
}

pub mod activation;
pub mod batchnorm;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod diffaugment;
pub mod export;
pub mod linear;
pub mod reshape;

pub use activation::{LeakyRelu, Relu, Sigmoid, Tanh};
pub use batchnorm::BatchNorm;
pub use conv_transpose2d::ConvTranspose2d;
pub use conv2d::Conv2d;
pub use diffaugment::{AugmentPolicy, DiffAugment};
pub use export::{OnnxAttr, OnnxConstant, OnnxOp};
pub use linear::Linear;
pub use reshape::Reshape;

use ndarray::{Array, ArrayD, ArrayViewD, ArrayViewMutD, Dimension};

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

/// `check_shape` against one exact shape, without building the expected list unless
/// the shapes differ.
#[track_caller]
pub fn check_same_shape(layer: &str, tensor: &str, expected: &[usize], actual: &[usize]) {
    if expected != actual {
        let expected: Vec<Option<usize>> = expected.iter().map(|&d| Some(d)).collect();
        check_shape(layer, tensor, &expected, actual);
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

/// A layer of a network (`models::Sequential` chains them over tensors of any rank).
/// Each layer's file implements it; a model lists its layers in one place, and
/// nothing else needs to know the layer's type.
pub trait Layer: LayerClone + Send {
    /// x: [N, ...] -> y: [N, ...]
    fn forward(&mut self, x: ArrayD<f32>) -> ArrayD<f32>;

    /// dy: the output's gradient -> dx; accumulates the parameter gradients.
    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32>;

    /// `backward` for a layer whose input is data: only the parameter gradients,
    /// not the unused `dx` (a layer may skip computing it).
    fn backward_params(&mut self, dy: ArrayD<f32>) {
        self.backward(dy);
    }

    /// The trainable tensors with their gradients, in a fixed order.
    fn params(&mut self) -> Vec<Param<'_>> {
        Vec::new()
    }

    /// `f` on each of `params` in turn, without collecting them (as a step's
    /// optimizer update does, allocating nothing).
    fn visit_params(&mut self, _f: &mut dyn FnMut(Param<'_>)) {}

    /// The non-trainable state a checkpoint keeps (batch norm's running statistics).
    fn buffers(&mut self) -> Vec<Buffer<'_>> {
        Vec::new()
    }

    /// Parameters, then buffers, read-only, under their names (for writing
    /// checkpoints without copying).
    fn tensors(&self) -> Vec<(&'static str, ArrayViewD<'_, f32>)> {
        Vec::new()
    }

    /// The names of `params`, in their order, read-only.
    fn param_names(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Sets every parameter gradient to zero.
    fn zero_grad(&mut self) {}

    /// Whether backward accumulates parameter gradients (false: gradients only pass
    /// through to the input, as through a frozen network).
    fn set_requires_grad(&mut self, _on: bool) {}

    /// Training mode (batch statistics) or evaluation mode (running statistics).
    fn set_training(&mut self, _on: bool) {}

    /// How many independent batches the input stacks along N (see `BatchNorm::groups`).
    fn set_groups(&mut self, _groups: usize) {}

    /// How the batch is split into shards whose sums are added in a fixed order, here
    /// and on the other ranks of a job (see `collective`). A layer that sums over the
    /// batch (weight gradients, batch statistics) keeps it; the others ignore it.
    fn set_shards(&mut self, _shards: &crate::collective::Shards) {}

    /// The layer as an ONNX operator, for the export of a trained network; `None` for
    /// a layer that has no export.
    fn onnx(&self) -> Option<OnnxOp> {
        None
    }
}

/// Cloning a boxed layer.
pub trait LayerClone {
    fn clone_box(&self) -> Box<dyn Layer>;
}

impl<T: Layer + Clone + 'static> LayerClone for T {
    fn clone_box(&self) -> Box<dyn Layer> {
        Box::new(self.clone())
    }
}

impl Clone for Box<dyn Layer> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// `x` as an array of rank `D`; a tensor of another rank is a bug in the model code.
#[track_caller]
pub fn rank<D: Dimension>(layer: &str, tensor: &str, x: ArrayD<f32>) -> Array<f32, D> {
    if D::NDIM.is_some_and(|d| d != x.ndim()) {
        panic!("{layer}: {tensor} has shape {:?}, expected {} dimensions", x.shape(), D::NDIM.unwrap_or(0));
    }
    x.into_dimensionality::<D>().expect("the rank was checked")
}
