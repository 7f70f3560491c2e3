//! `C = alpha * A B + beta * C` in f32, on all cores, with bit-identical results
//! whatever the thread count.
//!
//! On x86-64 with AVX2+FMA or AVX-512 the arithmetic is our own (`blis.rs`): the
//! five loops of BLIS (Goto and van de Geijn, "Anatomy of high-performance matrix
//! multiplication", 2008; Van Zee and van de Geijn, 2015) around the register-blocked
//! micro-kernels of `microkernel.rs`, on operands packed into panels (`pack.rs`):
//!
//! ```text
//! for each task's columns jc .. jc+nc  (parallel; nc <= NC)
//!   for pc in steps of KC               pack B[pc.., jc..] into NR-wide panels
//!     for ic in steps of MC             pack A[ic.., pc..] into MR-tall panels
//!       for each B panel (NR columns)   stays in L1 across the loop below
//!         for each A panel (MR rows)    streams from L2
//!           micro-kernel: one MR x NR tile of C, kc FMAs deep
//! ```
//!
//! Every element of C is the same chain of operations whatever the cut into tasks:
//! its tile's FMAs over one KC block at a time, added to C block after block. Only
//! KC and the shape decide that chain, so the result does not depend on the number
//! of threads, nor on the instruction set (both kernels do the same operations).
//! Long-K, small-C products are cut along K instead (`Split::Depth`): each slice is a
//! partial product, summed in order; the slices depend on the shape alone.
//!
//! Elsewhere (`INFOGAN_ISA=portable`, aarch64, x86 without AVX2) the arithmetic is
//! `matrixmultiply::sgemm`, one call per block of rows or columns of C: the portable
//! path, and the reference the fast one is tested against.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{ArrayView2, ArrayViewMut2, Axis, s};
use rayon::prelude::*;

use super::blis;
use super::microkernel::{Isa, isa};
use crate::profile::Product;

/// Multiply-adds done by `gemm` since the program started, over all threads: what
/// `infogan bench` divides by time to report the arithmetic rate of a training step.
/// One relaxed atomic add per call: a few hundred adds in a training step of 150-250 ms.
pub(super) static MACS: AtomicU64 = AtomicU64::new(0);

/// The multiply-adds (`M * K * N` per call) that `gemm` has done so far.
pub fn macs_done() -> u64 {
    MACS.load(Ordering::Relaxed)
}

/// Below this many multiply-adds a GEMM runs as one block: splitting it would cost
/// more in rayon hand-off and repeated packing than it gains.
pub(super) const MIN_PARALLEL_MACS: usize = 1 << 18;

/// Rows (or columns) of C per block are a multiple of this, so that block edges fall
/// on the micro-kernel's 16x16 tile grid and only the matrix's own edge is ragged.
const BLOCK_ALIGN: usize = 64;

/// At most this many blocks. Each block re-packs the whole operand it shares with the
/// others (B when rows are split, A when columns are), so more blocks cost more
/// packing; 4 leaves room for load balancing on a shared machine with 2 cores
/// (measured: 4 beat 2 and 8 on the model's shapes in training steps).
pub(super) const MAX_BLOCKS: usize = 4;

/// Each block keeps at least this many rows (or columns) so that the repeated packing
/// of the shared operand stays a few percent of the block's arithmetic.
const MIN_BLOCK: usize = 128;

/// Depth of one packed block: the FMAs a micro-kernel chains before it touches C.
/// A B panel of the AVX-512 kernel is then `KC*32*4` = 32 KiB, inside a 48 KiB L1.
/// The same for every instruction set, so that they all sum in the same order.
pub const KC: usize = 256;

/// `c = alpha * a b + beta * c`, with `a: [M, K]`, `b: [K, N]`, `c: [M, N]` in any
/// strides (pass `x.t()` for a transpose). With `beta == 0`, `c` is only written.
///
/// Panics if the shapes disagree: that is a bug in the caller, never a user error.
pub fn gemm(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, c: ArrayViewMut2<f32>) {
    let _time = crate::profile::scope(crate::profile::Phase::Gemm);
    check_shapes("gemm", &a, &b, &c);
    let (m, k) = a.dim();
    let n = b.ncols();
    let _product = crate::profile::product(|| product(&a, &b, &c, false));
    MACS.fetch_add((m * k * n) as u64, Ordering::Relaxed);
    gemm_on(isa(), alpha, a, b, beta, c);
}

/// `gemm` on a chosen instruction set (tests and benches compare them; `gemm` uses
/// `isa()`). An instruction set the CPU lacks falls back to the best it has.
pub fn gemm_on(isa: Isa, alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, mut c: ArrayViewMut2<f32>) {
    check_shapes("gemm", &a, &b, &c);
    let (m, k) = a.dim();
    let n = b.ncols();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: C = beta C (and exactly 0 when beta is 0, whatever C held).
        c.mapv_inplace(|v| if beta == 0.0 { 0.0 } else { beta * v });
        return;
    }
    match isa.min(Isa::detect()) {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => blis::fast::<super::microkernel::Avx512>(alpha, a, b, beta, c),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => blis::fast::<super::microkernel::Avx2>(alpha, a, b, beta, c),
        _ => portable(alpha, a, b, beta, c),
    }
}

/// The `matrixmultiply` path: C cut into blocks by `block_plan`, one sgemm each.
fn portable(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, mut c: ArrayViewMut2<f32>) {
    let (m, k) = a.dim();
    let n = b.ncols();
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
            depth_split(alpha, a, b, beta, c, blocks, |_, alpha, a, b, beta, c| sgemm_block(alpha, a, b, beta, c))
        }
    }
}

/// Slice p of K gives the partial product `A[:, p] B[p, :]`, computed by `block` (told
/// `p`) on one thread into scratch kept by the calling thread; then C takes beta C
/// plus the partials, added in order.
pub(super) fn depth_split(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    mut c: ArrayViewMut2<f32>,
    blocks: BlockPlan,
    block: impl Fn(usize, f32, ArrayView2<f32>, ArrayView2<f32>, f32, ArrayViewMut2<f32>) + Sync,
) {
    thread_local! {
        static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    let (m, n) = c.dim();
    let k = a.ncols();
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    scratch.resize(blocks.count * m * n, 0.0);
    scratch.par_chunks_exact_mut(m * n).enumerate().for_each(|(p, partial)| {
        let depth = p * blocks.size..((p + 1) * blocks.size).min(k);
        let partial = ArrayViewMut2::from_shape((m, n), partial).expect("m*n");
        block(p, alpha, a.slice(s![.., depth.clone()]), b.slice(s![depth, ..]), 0.0, partial);
    });
    let mut partials = scratch.chunks_exact(m * n).map(|p| ArrayView2::from_shape((m, n), p).expect("m*n"));
    let first = partials.next().expect("at least one slice");
    // As the micro-kernels combine a product with C.
    c.zip_mut_with(&first, |c, &p| {
        *c = if beta == 0.0 {
            p
        } else if beta == 1.0 {
            *c + p
        } else {
            c.mul_add(beta, p)
        }
    });
    for p in partials {
        c.zip_mut_with(&p, |c, &p| *c += p);
    }
    SCRATCH.with(|s| *s.borrow_mut() = scratch);
}

/// Runs `f` with `mul`, where `mul(b, c)` sets `c = a b` (`c` with contiguous rows):
/// `a` is packed once for all the products `f` asks for, as when one weight matrix
/// multiplies a batch a few images at a time (`gemm_col2im`), from any number of
/// threads at once. Each product counts as a GEMM in `macs_done` and in the profile.
pub fn with_packed_lhs(a: ArrayView2<f32>, f: impl FnOnce(&(dyn Fn(ArrayView2<f32>, ArrayViewMut2<f32>) + Sync))) {
    fn checked(a: &ArrayView2<f32>, b: &ArrayView2<f32>, c: &ArrayViewMut2<f32>) {
        check_shapes("with_packed_lhs", a, b, c);
        assert!(
            c.ncols() <= 1 || c.strides()[1] == 1,
            "with_packed_lhs: C must have contiguous rows, strides {:?}",
            c.strides()
        );
        let (m, k) = a.dim();
        MACS.fetch_add((m * k * b.ncols()) as u64, Ordering::Relaxed);
    }
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => blis::packed_lhs::<super::microkernel::Avx512>(a, f, checked),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => blis::packed_lhs::<super::microkernel::Avx2>(a, f, checked),
        _ => f(&|b, c| {
            checked(&a, &b, &c);
            let _time = crate::profile::scope(crate::profile::Phase::Gemm);
            let _product = crate::profile::product(|| product(&a, &b, &c, true));
            gemm_on(Isa::Portable, 1.0, a, b, 0.0, c);
        }),
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

/// The profiler's description of `c = a b`: an operand is transposed when its rows
/// are not contiguous (a single column counts as contiguous).
pub(super) fn product(a: &ArrayView2<f32>, b: &ArrayView2<f32>, c: &ArrayViewMut2<f32>, packed: bool) -> Product {
    let transposed = |dim: (usize, usize), strides: &[isize]| dim.1 > 1 && strides[1] != 1;
    Product {
        m: a.nrows(),
        k: a.ncols(),
        n: b.ncols(),
        ta: transposed(a.dim(), a.strides()),
        tb: transposed(b.dim(), b.strides()),
        tc: transposed(c.dim(), c.strides()),
        packed,
    }
}

pub(super) fn check_shapes(what: &str, a: &ArrayView2<f32>, b: &ArrayView2<f32>, c: &ArrayViewMut2<f32>) {
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
