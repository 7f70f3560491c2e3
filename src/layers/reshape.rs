//! Reshapes each sample (for example `[F]` -> `[C, H, W]`), like PyTorch's
//! `view(N, ...)` or `nn.Flatten`, without copying.

use ndarray::{ArrayD, Dimension, IxDyn};

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
    let mut full = IxDyn::zeros(shape.len() + 1);
    full[0] = x.shape()[0];
    full.slice_mut()[1..].copy_from_slice(shape);
    assert_eq!(x.len(), full.size(), "Reshape: cannot reshape {:?} to {:?}", x.shape(), full.slice());
    x.into_shape_with_order(full).expect("contiguous")
}

impl Layer for Reshape {
    /// x: [N, ...] -> y: [N, shape...]
    fn forward(&mut self, x: ArrayD<f32>) -> ArrayD<f32> {
        self.from.clear();
        self.from.extend_from_slice(&x.shape()[1..]);
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
