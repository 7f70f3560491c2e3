//! Compute kernels shared by the layers: a parallel, deterministic sgemm over
//! `matrixmultiply`, and the im2col / col2im pair that turns convolutions into it.

mod blis;
pub mod gemm;
pub mod im2col;
mod line_aligned;
pub mod microkernel;
mod pack;
mod simd;

pub use line_aligned::LineAligned;

use std::sync::atomic::{AtomicU64, Ordering};

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

/// Multiply-adds that the products over unfolded batches spent on zero padding
/// (`ConvGeom::padding_reads`) since the program started, over all threads: what
/// `infogan bench` reports as `padding_gflop_per_step`, the part of the GEMM work a
/// convolution that skipped the kernel rows and columns outside the image would not do.
static PADDING_MACS: AtomicU64 = AtomicU64::new(0);

/// Counts the padding multiply-adds of one product over `images` images unfolded with
/// geometry `g` (or folded back, for col2im's), whose other side is `other` long: the
/// output channels of a convolution, the input channels of a transposed one.
pub fn count_padding_macs(g: &im2col::ConvGeom, images: usize, other: usize) {
    PADDING_MACS.fetch_add((g.c * g.padding_reads() * images * other) as u64, Ordering::Relaxed);
}

/// The multiply-adds `count_padding_macs` has counted so far.
pub fn padding_macs_done() -> u64 {
    PADDING_MACS.load(Ordering::Relaxed)
}

/// Bytes a chunk's column matrix may take. A whole batch's columns (up to 32 MiB in
/// the CIFAR-10 discriminator) go out to memory between the im2col or GEMM that writes
/// them and the GEMM or col2im that reads them back; a chunk this size is still in the
/// caches. Measured on col2im after conv 128->256 at 8x8, batch 128, one thread:
/// 33.6 ms for the whole batch against 25.1 ms in chunks of 2 MiB.
const COLS_CHUNK_BYTES: usize = 2 << 20;

/// Images per chunk for the column matrix of geometry `g`, `[C*KH*KW, chunk*P_out]`:
/// as many as fit in `COLS_CHUNK_BYTES`, at least 1. A function of the shapes alone,
/// so the chunks are the same on any number of threads.
pub fn chunk_images(g: &im2col::ConvGeom) -> usize {
    let per_image = g.rows() * g.p_out() * std::mem::size_of::<f32>();
    (COLS_CHUNK_BYTES / per_image.max(1)).max(1)
}

/// Images per chunk for a weight gradient `cols dy^T` over a batch of `n`, whose sum
/// runs along the column matrix's `n*P_out` columns, with `other` columns in `dy^T`.
/// The chunks' products are added to the gradient one after the other, which is the
/// chain of one product over the whole batch (block after block of `KC` terms, each
/// added to C) only if every chunk ends on a `KC` block: so a multiple of
/// `KC / gcd(P_out, KC)` images. When no such multiple fits in a chunk, or when the
/// whole product would be cut along K (`Split::Depth`, partials summed otherwise),
/// the batch is one chunk. Either way the gradient has the bits of the unchunked
/// product.
pub fn summed_chunk_images(g: &im2col::ConvGeom, n: usize, other: usize) -> usize {
    let whole = n.max(1);
    let plan = gemm::block_plan(g.rows(), n * g.p_out(), other);
    if plan.split == gemm::Split::Depth && plan.count > 1 {
        return whole;
    }
    let step = gemm::KC / gcd(g.p_out().max(1), gemm::KC);
    match chunk_images(g) / step * step {
        0 => whole,
        chunk => chunk.min(whole),
    }
}

/// The greatest common divisor of `a` and `b` (Euclid's algorithm).
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The images `0..n` in consecutive chunks of `chunk` (the last may be shorter).
fn image_chunks(n: usize, chunk: usize, shard: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let (chunk, shard) = (chunk.max(1), shard.clamp(1, n.max(1)));
    (0..n).step_by(shard).flat_map(move |first| {
        let end = (first + shard).min(n);
        (first..end).step_by(chunk).map(move |start| start..(start + chunk).min(end))
    })
}

/// The batch `x: [N, C, H, W]` unfolded `chunk` images at a time: for each chunk,
/// `cols` becomes its column matrix `[C*KH*KW, chunk*P_out]` (`im2col`), and `f` gets
/// the chunk's columns in the whole batch's `[.., N*P_out]` and the matrix. No chunk
/// crosses a multiple of `shard` images, so a shard's chunks, and every product made
/// of them, are those of a batch holding that shard alone (`collective`).
pub fn for_each_unfolded(
    x: ndarray::ArrayView4<f32>,
    g: &im2col::ConvGeom,
    (chunk, shard): (usize, usize),
    cols: &mut Workspace,
    f: impl FnMut(std::ops::Range<usize>, ArrayView2<f32>),
) {
    unfold_chunks(x, g, (chunk, shard), cols, |positions| (g.rows(), positions), im2col::im2col, f);
}

/// As `for_each_unfolded`, with each chunk unfolded as rows (`im2row`): `rows`
/// becomes `[chunk*P_out, C*KH*KW]`, and `f` gets the chunk's positions and the matrix.
pub fn for_each_unfolded_rows(
    x: ndarray::ArrayView4<f32>,
    g: &im2col::ConvGeom,
    (chunk, shard): (usize, usize),
    rows: &mut Workspace,
    f: impl FnMut(std::ops::Range<usize>, ArrayView2<f32>),
) {
    unfold_chunks(x, g, (chunk, shard), rows, |positions| (positions, g.rows()), im2col::im2row, f);
}

/// The chunk loop of `for_each_unfolded` and `for_each_unfolded_rows`: `ws` takes
/// `shape(positions)` for each chunk and `unfold` fills it.
fn unfold_chunks(
    x: ndarray::ArrayView4<f32>,
    g: &im2col::ConvGeom,
    (chunk, shard): (usize, usize),
    ws: &mut Workspace,
    shape: impl Fn(usize) -> (usize, usize),
    unfold: fn(ndarray::ArrayView4<f32>, &im2col::ConvGeom, ndarray::ArrayViewMut2<f32>),
    mut f: impl FnMut(std::ops::Range<usize>, ArrayView2<f32>),
) {
    let p_out = g.p_out();
    for images in image_chunks(x.dim().0, chunk, shard) {
        let positions = images.start * p_out..images.end * p_out;
        let (rows, cols) = shape(images.len() * p_out);
        ws.resize(rows, cols);
        unfold(x.slice(ndarray::s![images, .., .., ..]), g, ws.view_mut());
        f(positions, ws.view());
    }
}

/// `x = col2im(a b) + bias`, computed a few images at a time so that the product never
/// exists for the whole batch; no chunk crosses a multiple of `shard` images (see
/// `for_each_unfolded`).
///
/// a: [C*KH*KW, K], b: [K, N*P_out], x: [N, C, H, W] with `g` describing `x` (as for
/// `col2im`); `cols` is the scratch for one chunk. The chunk size depends only on the
/// shapes, so the result is the same on any number of threads.
pub fn gemm_col2im(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    g: &im2col::ConvGeom,
    bias: Option<&[f32]>,
    cols: &mut Workspace,
    x: ndarray::ArrayViewMut4<f32>,
    shard: usize,
) {
    gemm_col2im_chunked(a, b, g, bias, cols, x, (chunk_images(g), shard));
}

/// `gemm_col2im` with `chunk` images at a time (at least 1).
fn gemm_col2im_chunked(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    g: &im2col::ConvGeom,
    bias: Option<&[f32]>,
    cols: &mut Workspace,
    mut x: ndarray::ArrayViewMut4<f32>,
    (chunk, shard): (usize, usize),
) {
    let n = x.dim().0;
    let p_out = g.p_out();
    assert_eq!(b.ncols(), n * p_out, "gemm_col2im: b has {} columns for {n} images of {p_out} positions", b.ncols());
    // `a` is the same for every chunk: packed once.
    gemm::with_packed_lhs(a, |mul| {
        for images in image_chunks(n, chunk, shard) {
            cols.resize(g.rows(), images.len() * p_out);
            mul(b.slice(ndarray::s![.., images.start * p_out..images.end * p_out]), cols.view_mut());
            im2col::col2im(cols.view(), g, bias, x.slice_mut(ndarray::s![images, .., .., ..]));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, random_array};
    use ndarray::{Array2, Array4};

    /// Chunks cover the batch in order and never cross a shard's end.
    #[test]
    fn chunks_stay_within_shards() {
        let chunks: Vec<_> = image_chunks(12, 5, 6).collect();
        assert_eq!(chunks, [0..5, 5..6, 6..11, 11..12]);
        assert_eq!(image_chunks(7, 3, 7).collect::<Vec<_>>(), [0..3, 3..6, 6..7]);
        assert_eq!(image_chunks(0, 3, 0).count(), 0);
    }

    /// Weight-gradient chunks end on KC blocks, or the batch is one chunk.
    #[test]
    fn summed_chunks_end_on_kc_blocks() {
        let conv = |c, h| im2col::ConvGeom { c, h, w: h, kh: 4, kw: 4, stride: 2, padding: 1 };
        // CIFAR-10 D conv2 (64 positions, 256 KiB an image): 8 images, 512 positions.
        assert_eq!(summed_chunk_images(&conv(64, 16), 128, 128), 8);
        // MNIST D conv2 (49 positions): only 256 images would end on a block.
        assert_eq!(summed_chunk_images(&conv(64, 14), 128, 128), 128);
        // CIFAR-10 D conv1, cut along K as a whole: one chunk.
        assert_eq!(summed_chunk_images(&conv(3, 32), 128, 64), 128);
        for (g, n, other) in [(conv(64, 16), 128, 128), (conv(128, 8), 64, 256), (conv(32, 32), 10, 8)] {
            let chunk = summed_chunk_images(&g, n, other);
            assert!(chunk == n || (chunk * g.p_out()).is_multiple_of(gemm::KC), "{g:?}: {chunk} images");
            assert!(chunk <= chunk_images(&g).max(1) || chunk == n);
        }
    }

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
            let whole = x.dim().0;
            gemm_col2im_chunked(
                a.view(),
                b.view(),
                &g,
                Some(&bias),
                &mut Workspace::default(),
                x.view_mut(),
                (chunk, whole),
            );
            assert_close(&x, &expected, 1e-6, 1e-6, &format!("gemm_col2im in chunks of {chunk}"));
        }
    }
}
