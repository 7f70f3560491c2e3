//! Reshapes each sample (for example `[F]` -> `[C, H, W]`), like PyTorch's
//! `view(N, ...)` or `nn.Flatten`, without copying.

use ndarray::{ArrayD, IxDyn};

use super::{Layer, OnnxAttr, OnnxConstant, OnnxOp};

#[derive(Clone)]
pub struct Reshape {
    /// The per-sample shape of the output.
    pub shape: Vec<usize>,
    /// Cache: the per-sample shape forward was given, to undo the reshape in backward.
    from: Vec<usize>,
}

impl Reshape {
    pub fn new(shape: &[usize]) -> Self {
        Reshape { shape: shape.to_vec(), from: Vec::new() }
    }
}

/// `[N, ...]` -> `[N, shape...]`, without copying.
fn reshape_samples(x: ArrayD<f32>, shape: &[usize]) -> ArrayD<f32> {
    let mut full = vec![x.shape()[0]];
    full.extend_from_slice(shape);
    let (from, to): (Vec<usize>, usize) = (x.shape().to_vec(), full.iter().product());
    assert_eq!(x.len(), to, "Reshape: cannot reshape {from:?} to {full:?}");
    x.into_shape_with_order(IxDyn(&full)).expect("contiguous")
}

impl Layer for Reshape {
    /// x: [N, ...] -> y: [N, shape...]
    fn forward(&mut self, x: ArrayD<f32>) -> ArrayD<f32> {
        self.from = x.shape()[1..].to_vec();
        reshape_samples(x, &self.shape)
    }

    /// dy: [N, shape...] -> dx: [N, the input's sample shape]
    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        reshape_samples(dy, &self.from)
    }

    fn onnx(&self) -> Option<OnnxOp> {
        // -1: the batch dimension, whatever it is at run time.
        let dims = std::iter::once(-1).chain(self.shape.iter().map(|&d| d as i64)).collect();
        let attrs: Vec<(&'static str, OnnxAttr)> = Vec::new();
        Some(OnnxOp { op: "Reshape", constants: vec![("shape", OnnxConstant::Int64(dims))], attrs, fold_axis: None })
    }
}
