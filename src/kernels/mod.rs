//! Compute kernels shared by the layers: a parallel, deterministic sgemm over
//! `matrixmultiply`, and the im2col / col2im pair that turns convolutions into it.

pub mod gemm;
pub mod im2col;

use ndarray::{ArrayView2, ArrayViewMut2};

/// A scratch matrix kept from step to step. It grows to the largest shape it is asked
/// for and never shrinks, so alternating batch sizes (the discriminator sees 128
/// images, then 64) cost no allocation and no page faults after the first steps.
#[derive(Clone, Default)]
pub struct Workspace {
    buf: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl Workspace {
    /// Reshapes to `[rows, cols]`; the contents are unspecified (callers overwrite them).
    pub fn resize(&mut self, rows: usize, cols: usize) {
        if self.buf.len() < rows * cols {
            self.buf.resize(rows * cols, 0.0);
        }
        (self.rows, self.cols) = (rows, cols);
    }

    /// The current `[rows, cols]` matrix.
    pub fn view(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.rows, self.cols), &self.buf[..self.rows * self.cols]).expect("sized by resize")
    }

    /// The current `[rows, cols]` matrix, mutably.
    pub fn view_mut(&mut self) -> ArrayViewMut2<'_, f32> {
        let len = self.rows * self.cols;
        ArrayViewMut2::from_shape((self.rows, self.cols), &mut self.buf[..len]).expect("sized by resize")
    }

    pub fn dim(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
}
