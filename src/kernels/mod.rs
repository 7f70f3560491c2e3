//! Compute kernels shared by the layers: a parallel, deterministic sgemm over
//! `matrixmultiply`, and the im2col / col2im pair that turns convolutions into it.

pub mod gemm;
pub mod im2col;

use ndarray::{Array, Dimension, IntoDimension};

/// Makes `buf` a buffer of shape `dim`, keeping its allocation when the shape is
/// already right (the usual case from one training step to the next). The contents
/// are unspecified afterwards: callers overwrite them.
pub fn resize<D: Dimension>(buf: &mut Array<f32, D>, dim: impl IntoDimension<Dim = D>) {
    let dim = dim.into_dimension();
    if buf.raw_dim() != dim {
        *buf = Array::zeros(dim);
    }
}
