//! `C = alpha * A B + beta * C` in f32, on all cores, with bit-identical results
//! whatever the thread count.
//!
//! The arithmetic is `matrixmultiply::sgemm` (packed panels and a SIMD micro-kernel
//! chosen at run time: AVX-512, FMA/AVX2 or AVX). Parallelism is ours: C is cut into
//! blocks of whole rows or whole columns, or the inner dimension K is cut into slices
//! whose partial products are summed; each block is one single-threaded sgemm, and
//! rayon runs the blocks. The cut depends only on the shape (never on the number of
//! threads), so every element of C sees the same sequence of floating-point
//! operations on 1 thread or on 32. That is what makes training reproducible.

use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// Multiply-adds done by `gemm` since the program started, over all threads: what
/// `infogan bench` divides by time to report the arithmetic rate of a training step.
/// One relaxed atomic add per call: a few hundred adds in a training step of 150-250 ms.
static MACS: AtomicU64 = AtomicU64::new(0);

/// The multiply-adds (`M * K * N` per call) that `gemm` has done so far.
pub fn macs_done() -> u64 {
    MACS.load(Ordering::Relaxed)
}

/// Below this many multiply-adds a GEMM runs as one block: splitting it would cost
/// more in rayon hand-off and repeated packing than it gains.
const MIN_PARALLEL_MACS: usize = 1 << 18;

/// Rows (or columns) of C per block are a multiple of this, so that block edges fall
/// on the micro-kernel's 16x16 tile grid and only the matrix's own edge is ragged.
const BLOCK_ALIGN: usize = 64;

/// At most this many blocks. Each block re-packs the whole operand it shares with the
/// others (B when rows are split, A when columns are), so more blocks cost more
/// packing; 4 leaves room for load balancing on a shared machine with 2 cores
/// (measured: 4 beat 2 and 8 on the model's shapes in training steps).
const MAX_BLOCKS: usize = 4;

/// Each block keeps at least this many rows (or columns) so that the repeated packing
/// of the shared operand stays a few percent of the block's arithmetic.
const MIN_BLOCK: usize = 128;

/// `c = alpha * a b + beta * c`, with `a: [M, K]`, `b: [K, N]`, `c: [M, N]` in any
/// strides (pass `x.t()` for a transpose). With `beta == 0`, `c` is only written.
///
/// Panics if the shapes disagree: that is a bug in the caller, never a user error.
pub fn gemm(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, mut c: ArrayViewMut2<f32>) {
    check_shapes("gemm", &a, &b, &c);
    let (m, k) = a.dim();
    let n = b.ncols();
    MACS.fetch_add((m * k * n) as u64, Ordering::Relaxed);
    let blocks = block_plan(m, k, n);
    if blocks.count <= 1 {
        sgemm_block(alpha, a, b, beta, c);
        return;
    }
    match blocks.split {
        Split::Rows => {
            let a_parts: Vec<_> = a.axis_chunks_iter(Axis(0), blocks.size).collect();
            let c_parts: Vec<_> = c.axis_chunks_iter_mut(Axis(0), blocks.size).collect();
            a_parts.into_par_iter().zip(c_parts).for_each(|(a, c)| sgemm_block(alpha, a, b, beta, c));
        }
        Split::Cols => {
            let b_parts: Vec<_> = b.axis_chunks_iter(Axis(1), blocks.size).collect();
            let c_parts: Vec<_> = c.axis_chunks_iter_mut(Axis(1), blocks.size).collect();
            b_parts.into_par_iter().zip(c_parts).for_each(|(b, c)| sgemm_block(alpha, a, b, beta, c));
        }
        Split::Depth => {
            // Slice p of K gives the partial product A[:, p] B[p, :]. The first lands in
            // C itself (with beta), the others in scratch; then C adds them in order.
            let a_parts: Vec<_> = a.axis_chunks_iter(Axis(1), blocks.size).collect();
            let b_parts: Vec<_> = b.axis_chunks_iter(Axis(0), blocks.size).collect();
            let mut scratch = vec![0f32; (blocks.count - 1) * m * n];
            let partials = scratch.chunks_exact_mut(m * n).map(|p| ArrayViewMut2::from_shape((m, n), p).expect("m*n"));
            let outs = std::iter::once(c.view_mut()).chain(partials);
            let betas = std::iter::once(beta).chain(std::iter::repeat(0.0));
            let jobs: Vec<_> = a_parts.into_iter().zip(b_parts).zip(betas).zip(outs).collect();
            jobs.into_par_iter().for_each(|(((a, b), beta), c)| sgemm_block(alpha, a, b, beta, c));
            for p in scratch.chunks_exact(m * n) {
                c.zip_mut_with(&ArrayView2::from_shape((m, n), p).expect("m*n"), |c, &p| *c += p);
            }
        }
    }
}

/// How `gemm` cuts the work: `count` blocks of `size` rows of C, columns of C, or
/// indices of K each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPlan {
    pub split: Split,
    pub size: usize,
    pub count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Blocks of rows of A and C; every block packs all of B.
    Rows,
    /// Blocks of columns of B and C; every block packs all of A.
    Cols,
    /// Slices of K; every block packs only its own slices of A and B, and writes a
    /// whole `[M, N]` partial product that is then summed.
    Depth,
}

/// Cut K rather than C when K is at least this many times as long as either side of
/// C. Cutting the long side of C re-packs the whole shared operand (`K` times the
/// short side) in every block; cutting K instead costs one `[M, N]` partial per
/// block, which is much less when C is small and K long: the weight gradients of the
/// one- and three-channel convolutions (K = N*H*W). Measured with 2 threads, best of
/// 30, two runs: CIFAR-10 D conv 3->64 weight gradient at batch 128 (48x32768x64),
/// 4.9-5.2 ms cutting C against 3.7-3.9 ms cutting K; MNIST D conv 1->64 at batch 128
/// (16x25088x64), 1.04-1.08 ms against 0.88-0.90 ms. At a ratio of 8 (1024x8192x128)
/// the two were within the machine's noise, so the threshold stays well above that.
const DEPTH_SPLIT_RATIO: usize = 16;

/// The cut of an `[M, K] x [K, N]` product. A function of the shape alone.
pub fn block_plan(m: usize, k: usize, n: usize) -> BlockPlan {
    let whole = BlockPlan { split: Split::Rows, size: m.max(1), count: 1 };
    if m.saturating_mul(k).saturating_mul(n) < MIN_PARALLEL_MACS {
        return whole;
    }
    if k >= DEPTH_SPLIT_RATIO * m.max(n) {
        let count = k.div_ceil(MIN_BLOCK).clamp(1, MAX_BLOCKS);
        let size = k.div_ceil(count).next_multiple_of(BLOCK_ALIGN);
        return BlockPlan { split: Split::Depth, size, count: k.div_ceil(size) };
    }
    // Split the longer side of C: the operand that gets re-packed per block is then
    // the smaller one.
    let split_rows = m >= n;
    let split = if split_rows { Split::Rows } else { Split::Cols };
    let len = if split_rows { m } else { n };
    let wanted = len.div_ceil(MIN_BLOCK).clamp(1, MAX_BLOCKS);
    if wanted < 2 {
        // Too thin to split by the long side's rule, but still worth two halves.
        let size = len.div_ceil(2).next_multiple_of(16);
        if size >= len {
            return whole;
        }
        return BlockPlan { split, size, count: len.div_ceil(size) };
    }
    let size = len.div_ceil(wanted).next_multiple_of(BLOCK_ALIGN);
    BlockPlan { split, size, count: len.div_ceil(size) }
}

/// One single-threaded `matrixmultiply::sgemm` call on views.
fn sgemm_block(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, mut c: ArrayViewMut2<f32>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = (a.strides()[0], a.strides()[1]);
    let (rsb, csb) = (b.strides()[0], b.strides()[1]);
    let (rsc, csc) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the pointers and strides come from live ndarray views whose shapes were
    // checked to be [m, k], [k, n] and [m, n], so every element sgemm touches is inside
    // its view. `c` is a unique mutable view, so it aliases neither `a` nor `b`, and
    // its strides are those of a valid ndarray view, so its elements do not overlap.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            rsc,
            csc,
        );
    }
}

fn check_shapes(what: &str, a: &ArrayView2<f32>, b: &ArrayView2<f32>, c: &ArrayViewMut2<f32>) {
    assert!(
        a.ncols() == b.nrows() && c.dim() == (a.nrows(), b.ncols()),
        "{what}: shapes do not chain: A {:?} x B {:?} -> C {:?} (expected C {:?})",
        a.dim(),
        b.dim(),
        c.dim(),
        (a.nrows(), b.ncols()),
    );
}

/// The reference: a triple loop, accumulated in f64. Slow and obviously right.
pub fn gemm_naive(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, mut c: ArrayViewMut2<f32>) {
    check_shapes("gemm_naive", &a, &b, &c);
    let (m, k) = a.dim();
    let n = b.ncols();
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f64;
            for p in 0..k {
                acc += a[[i, p]] as f64 * b[[p, j]] as f64;
            }
            let old = if beta == 0.0 { 0.0 } else { beta as f64 * c[[i, j]] as f64 };
            c[[i, j]] = (alpha as f64 * acc + old) as f32;
        }
    }
}
