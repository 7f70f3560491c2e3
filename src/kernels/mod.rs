//! Compute kernels shared by the layers: a parallel, deterministic sgemm over
//! `matrixmultiply`, and the im2col / col2im pair that turns convolutions into it.

pub mod gemm;
pub mod im2col;

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

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

/// Images per chunk in `gemm_col2im`: as many as keep a chunk's column matrix within
/// this many bytes (one core's L2 cache here), but at least enough that the chunk's
/// columns outnumber A's columns (see `gemm_col2im`).
const COL2IM_CHUNK_BYTES: usize = 1 << 20;

/// `gemm_col2im` cuts a batch into chunks only if that gives at least this many, so
/// that a few cores can share them.
const MIN_CHUNKS: usize = 4;

/// `x = col2im(a b) + bias`, a few images at a time, each chunk on one thread: its
/// GEMM, then its col2im, while its product is still in that core's cache. A whole
/// batch's product (up to 32 MiB in the CIFAR-10 discriminator) would go out to memory
/// between the two. Every chunk packs A again, so a chunk has at least as many columns
/// as A has, to keep that re-packing below the chunk's own output. Measured with
/// `infogan bench --dataset cifar10` (2 threads, 3 interleaved runs each): 202-231
/// images/s with the chunks taken in turn (each GEMM parallel inside) against 238-253
/// with one task per chunk.
///
/// a: [C*KH*KW, K], b: [K, N*P_out], x: [N, C, H, W] with `g` describing `x` (as for
/// `col2im`); `cols` holds the chunks' products. The chunks depend only on the shapes,
/// so the result is the same on any number of threads.
pub fn gemm_col2im(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    g: &im2col::ConvGeom,
    bias: Option<&[f32]>,
    cols: &mut Workspace,
    x: ndarray::ArrayViewMut4<f32>,
) {
    let (n, p_out) = (x.dim().0, g.p_out().max(1));
    let by_cache = COL2IM_CHUNK_BYTES / (g.rows() * p_out * std::mem::size_of::<f32>()).max(1);
    let by_packing = a.ncols().div_ceil(p_out);
    let chunk = by_cache.max(by_packing);
    if chunk * MIN_CHUNKS > n {
        // Too few chunks to share out: one GEMM (parallel inside) over the batch.
        cols.resize(g.rows(), n * p_out);
        gemm::gemm(1.0, a, b, 0.0, cols.view_mut());
        im2col::col2im(cols.view(), g, bias, x);
        return;
    }
    gemm_col2im_chunked(a, b, g, bias, cols, x, chunk);
}

/// `gemm_col2im` with `chunk` images at a time (at least 1).
fn gemm_col2im_chunked(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    g: &im2col::ConvGeom,
    bias: Option<&[f32]>,
    cols: &mut Workspace,
    mut x: ndarray::ArrayViewMut4<f32>,
    chunk: usize,
) {
    let n = x.dim().0;
    let (rows, p_out) = (g.rows(), g.p_out());
    assert_eq!(b.ncols(), n * p_out, "gemm_col2im: b has {} columns for {n} images of {p_out} positions", b.ncols());
    assert_eq!(a.nrows(), rows, "gemm_col2im: a has {} rows, the geometry {rows}", a.nrows());
    let chunk = chunk.clamp(1, n.max(1));
    cols.resize(rows, n * p_out);
    let b_parts: Vec<_> = b.axis_chunks_iter(Axis(1), chunk * p_out).collect();
    let x_parts: Vec<_> = x.axis_chunks_iter_mut(Axis(0), chunk).collect();
    let col_parts: Vec<_> = cols.buf[..rows * n * p_out].chunks_mut(rows * chunk * p_out).collect();
    b_parts.into_par_iter().zip(x_parts).zip(col_parts).for_each(|((b, x), buf)| {
        let mut c = ArrayViewMut2::from_shape((rows, b.ncols()), buf).expect("rows * chunk columns");
        gemm::gemm_serial(1.0, a, b, 0.0, c.view_mut());
        im2col::col2im_serial(c.view(), g, bias, x);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, random_array};
    use ndarray::{Array2, Array4};

    /// Any chunking gives what one GEMM and one col2im over the whole batch give.
    #[test]
    fn gemm_col2im_in_chunks_matches_whole_batch() {
        let g = im2col::ConvGeom { c: 3, h: 9, w: 7, kh: 4, kw: 3, stride: 2, padding: 1 };
        let n = 5;
        let a: Array2<f32> = random_array([g.rows(), 6], 1);
        let b: Array2<f32> = random_array([6, n * g.p_out()], 2);
        let bias = [0.5, -1.0, 2.0];
        let mut cols = Array2::zeros((g.rows(), n * g.p_out()));
        gemm::gemm(1.0, a.view(), b.view(), 0.0, cols.view_mut());
        let mut expected = Array4::zeros((n, g.c, g.h, g.w));
        im2col::col2im(cols.view(), &g, Some(&bias), expected.view_mut());
        for chunk in [1, 2, 3, 5, 8] {
            let mut x = Array4::from_elem((n, g.c, g.h, g.w), f32::NAN);
            gemm_col2im_chunked(a.view(), b.view(), &g, Some(&bias), &mut Workspace::default(), x.view_mut(), chunk);
            assert_close(&x, &expected, 1e-6, 1e-6, &format!("gemm_col2im in chunks of {chunk}"));
        }
    }
}
