//! `C = alpha * A B + beta * C` in f32, on all cores, with bit-identical results
//! whatever the thread count.
//!
//! On x86-64 with AVX2+FMA or AVX-512 the arithmetic is our own: the five loops of
//! BLIS (Goto and van de Geijn, "Anatomy of high-performance matrix multiplication",
//! 2008; Van Zee and van de Geijn, 2015) around the register-blocked micro-kernels of
//! `microkernel.rs`, on operands packed into panels (`pack.rs`):
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

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, s};
use rayon::prelude::*;

use super::microkernel::{Isa, MicroKernel, isa};
use super::pack::{PackBuf, packed_b_len};

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

/// Depth of one packed block: the FMAs a micro-kernel chains before it touches C.
/// A B panel of the AVX-512 kernel is then `KC*32*4` = 32 KiB, inside a 48 KiB L1.
/// The same for every instruction set, so that they all sum in the same order.
pub const KC: usize = 256;

/// Rows of A per packed block (a multiple of both kernels' MR): `MC*KC*4` = 192 KiB,
/// which stays in L2 while every B panel of the block streams past it.
const MC: usize = 192;

/// Columns of B per packed block and per parallel task: `KC*NC*4` = 512 KiB.
const NC: usize = 512;

/// The narrowest column block a task is cut to before rows are split instead.
const MIN_TASK_COLS: usize = 128;

/// `c = alpha * a b + beta * c`, with `a: [M, K]`, `b: [K, N]`, `c: [M, N]` in any
/// strides (pass `x.t()` for a transpose). With `beta == 0`, `c` is only written.
///
/// Panics if the shapes disagree: that is a bug in the caller, never a user error.
pub fn gemm(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, c: ArrayViewMut2<f32>) {
    let _time = crate::profile::scope(crate::profile::Phase::Gemm);
    check_shapes("gemm", &a, &b, &c);
    let (m, k) = a.dim();
    let n = b.ncols();
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
        Isa::Avx512 => fast::<super::microkernel::Avx512>(alpha, a, b, beta, c),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => fast::<super::microkernel::Avx2>(alpha, a, b, beta, c),
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
        Split::Depth => depth_split(alpha, a, b, beta, c, blocks, sgemm_block),
    }
}

/// Slice p of K gives the partial product `A[:, p] B[p, :]`, computed by `block` on
/// one thread into scratch kept by the calling thread; then C takes beta C plus the
/// partials, added in order.
fn depth_split(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    mut c: ArrayViewMut2<f32>,
    blocks: BlockPlan,
    block: impl Fn(f32, ArrayView2<f32>, ArrayView2<f32>, f32, ArrayViewMut2<f32>) + Sync,
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
        block(alpha, a.slice(s![.., depth.clone()]), b.slice(s![depth, ..]), 0.0, partial);
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

/// The fast path with micro-kernel `K`: orients the product so that C's rows are
/// contiguous (the kernel stores vectors along rows), then runs the five loops.
fn fast<K: MicroKernel>(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, mut c: ArrayViewMut2<f32>) {
    let (m, n) = c.dim();
    let unit = |len: usize, stride: isize| len == 1 || stride == 1;
    let (rsc, csc) = (c.strides()[0], c.strides()[1]);
    if unit(n, csc) && (rsc >= 0 || m == 1) {
        fast_rows::<K>(alpha, a, b, beta, c);
    } else if unit(m, rsc) && (csc >= 0 || n == 1) {
        // C^T = B^T A^T has contiguous rows.
        fast_rows::<K>(alpha, b.t(), a.t(), beta, c.reversed_axes());
    } else {
        // C strided both ways (only tests do this): the product into a standard-layout
        // temporary, then C = alpha T + beta C element by element.
        let mut t = Array2::zeros((m, n));
        fast_rows::<K>(1.0, a, b, 0.0, t.view_mut());
        c.zip_mut_with(&t, |c, &t| *c = if beta == 0.0 { alpha * t } else { alpha * t + beta * *c });
    }
}

/// A raw pointer to C that rayon tasks may share: each writes only its own tiles.
#[derive(Clone, Copy)]
struct TilePtr(*mut f32);

// SAFETY: the pointer is only dereferenced inside `task`, on the rows and columns of
// that task, and the tasks of one call cover disjoint blocks of C.
unsafe impl Send for TilePtr {}
// SAFETY: as above; shared references to TilePtr only copy the address.
unsafe impl Sync for TilePtr {}

impl TilePtr {
    /// The element `offset` floats further on.
    ///
    /// # Safety
    /// `offset` stays inside the matrix the pointer points into.
    unsafe fn at(self, offset: usize) -> TilePtr {
        // SAFETY: the caller keeps the offset inside the matrix.
        TilePtr(unsafe { self.0.add(offset) })
    }
}

/// C with contiguous rows: A packed once, then C cut into tasks (blocks of columns,
/// then of rows if there are too few) that share it, or the product cut along K for
/// long-K products.
fn fast_rows<K: MicroKernel>(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, c: ArrayViewMut2<f32>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let plan = block_plan(m, k, n);
    if plan.split == Split::Depth && plan.count > 1 {
        depth_split(alpha, a, b, beta, c, plan, fast_rows_serial::<K>);
        return;
    }
    with_packed_a::<K>(a, m * k * n >= MIN_PARALLEL_MACS, n, |pa| run_tasks::<K>(alpha, pa, b, beta, c));
}

/// `C = alpha A B + beta C` with A already packed and C's rows contiguous: C cut into
/// tasks (blocks of columns, then of rows if there are too few), run in parallel.
fn run_tasks<K: MicroKernel>(alpha: f32, pa: &PackedA, b: ArrayView2<f32>, beta: f32, mut c: ArrayViewMut2<f32>) {
    let (m, n) = c.dim();
    let threads = rayon::current_num_threads();
    let (row_block, col_block) = task_grid(m, pa.k, n, threads, K::MR, K::NR);
    let (row_tasks, col_tasks) = (m.div_ceil(row_block), n.div_ceil(col_block));
    let tasks = row_tasks * col_tasks;
    let rsc = c.strides()[0].max(0) as usize;
    let base = TilePtr(c.as_mut_ptr());
    let run = |t: usize| {
        let (r0, c0) = ((t / col_tasks) * row_block, (t % col_tasks) * col_block);
        let (rows, cols) = (row_block.min(m - r0), col_block.min(n - c0));
        // SAFETY: (r0, c0) is inside C and the task's tiles are rows r0..r0+rows and
        // columns c0..c0+cols of C, disjoint from every other task's.
        let c = unsafe { base.at(r0 * rsc + c0) };
        task::<K>(alpha, pa, r0..r0 + rows, b.slice(s![.., c0..c0 + cols]), beta, c, rsc);
    };
    if tasks == 1 {
        run(0);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
}

/// Runs `f` with `mul`, where `mul(b, c)` sets `c = a b` (`c` with contiguous rows):
/// `a` is packed once for all the products `f` asks for, as when one weight matrix
/// multiplies a batch a few images at a time (`gemm_col2im`). Each product counts
/// as a GEMM in `macs_done` and in the profile.
pub fn with_packed_lhs(a: ArrayView2<f32>, f: impl FnOnce(&dyn Fn(ArrayView2<f32>, ArrayViewMut2<f32>))) {
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
        Isa::Avx512 => packed_lhs::<super::microkernel::Avx512>(a, f, checked),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => packed_lhs::<super::microkernel::Avx2>(a, f, checked),
        _ => f(&|b, c| {
            checked(&a, &b, &c);
            let _time = crate::profile::scope(crate::profile::Phase::Gemm);
            gemm_on(Isa::Portable, 1.0, a, b, 0.0, c);
        }),
    }
}

fn packed_lhs<K: MicroKernel>(
    a: ArrayView2<f32>,
    f: impl FnOnce(&dyn Fn(ArrayView2<f32>, ArrayViewMut2<f32>)),
    checked: fn(&ArrayView2<f32>, &ArrayView2<f32>, &ArrayViewMut2<f32>),
) {
    let (m, k) = a.dim();
    let pack_time = crate::profile::scope(crate::profile::Phase::Gemm);
    // Packed once for all the products (not read in place): `a` serves many of them.
    with_packed_a::<K>(a, true, usize::MAX, |pa| {
        drop(pack_time);
        f(&|b, c| {
            checked(&a, &b, &c);
            let _time = crate::profile::scope(crate::profile::Phase::Gemm);
            if m == 0 || c.ncols() == 0 {
                return;
            }
            if k == 0 {
                let mut c = c;
                c.fill(0.0);
                return;
            }
            run_tasks::<K>(1.0, pa, b, 0.0, c);
        })
    });
}

/// `fast_rows` on the calling thread alone (one slice of a depth split).
fn fast_rows_serial<K: MicroKernel>(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    mut c: ArrayViewMut2<f32>,
) {
    let (m, n) = c.dim();
    let rsc = c.strides()[0].max(0) as usize;
    let base = TilePtr(c.as_mut_ptr());
    with_packed_a::<K>(a, false, n, |pa| {
        for c0 in (0..n).step_by(NC) {
            let cols = NC.min(n - c0);
            // SAFETY: column c0 of row 0 is inside C, which this call borrows mutably.
            let tile = unsafe { base.at(c0) };
            task::<K>(alpha, pa, 0..m, b.slice(s![.., c0..c0 + cols]), beta, tile, rsc);
        }
    });
}

/// The tasks' block of rows and of columns of C. Any grid gives the same bits (it
/// only decides which thread computes a tile), so it may depend on the thread count.
/// Columns are cut first, into blocks of at most NC: each column block packs its own
/// part of B once. Rows are cut only when that leaves too few tasks to keep every
/// thread busy, since each row block packs the task's B again.
fn task_grid(m: usize, k: usize, n: usize, threads: usize, mr: usize, nr: usize) -> (usize, usize) {
    let wanted = if threads <= 1 || m * k * n < MIN_PARALLEL_MACS { 1 } else { 2 * threads };
    let mut col_tasks = n.div_ceil(NC);
    if col_tasks < wanted {
        col_tasks = wanted.min(n.div_ceil(MIN_TASK_COLS)).max(col_tasks);
    }
    let col_block = n.div_ceil(col_tasks).next_multiple_of(nr).min(NC.max(nr));
    let col_tasks = n.div_ceil(col_block);
    let row_tasks = if col_tasks >= wanted { 1 } else { wanted.div_ceil(col_tasks).min(m.div_ceil(4 * mr)).max(1) };
    let row_block = m.div_ceil(row_tasks).next_multiple_of(mr);
    (row_block, col_block)
}

thread_local! {
    /// Each thread's packed A (all of it, shared by the tasks of the GEMM this thread
    /// called) and packed B block (of the task it runs), kept from call to call.
    static A_PACK: RefCell<PackBuf> = RefCell::new(PackBuf::default());
    static B_PACK: RefCell<PackBuf> = RefCell::new(PackBuf::default());
}

/// A as the micro-kernels read it. Packed: all of A in panels of MR rows, one KC block
/// of columns after another (the block at depth `pc` starts at `mpad * pc` and holds
/// `mpad * kc` floats). Or, when A's rows are adjacent in memory (a weight read
/// transposed, `W.t()`), A itself: a panel's MR values for one `p` are already
/// contiguous, `lda` apart from one `p` to the next, so only the ragged last panel is
/// packed, and the copy that packing would make (as large as A, for products whose
/// small N uses each element of A only a few hundred times) is not made.
struct PackedA<'a> {
    /// The packed panels; in place, only the last, ragged panel (`tail_row` on).
    data: &'a [f32],
    /// Rows rounded up to a whole panel.
    mpad: usize,
    k: usize,
    place: Option<InPlace<'a>>,
}

/// A read in place: element `(i, p)` is `flat[p * lda + i]`.
struct InPlace<'a> {
    flat: &'a [f32],
    lda: usize,
    /// The first row of the packed tail panel (a multiple of MR); rows before it are
    /// read in place.
    tail_row: usize,
}

impl PackedA<'_> {
    /// The panel of `mr` rows from row `r` (a multiple of `mr`) for the K block at
    /// `pc` of depth `kc`, and the distance between its consecutive `p`.
    fn panel(&self, r: usize, pc: usize, kc: usize, mr: usize) -> (&[f32], usize) {
        match &self.place {
            Some(p) if r < p.tail_row => (&p.flat[pc * p.lda + r..][..(kc - 1) * p.lda + mr], p.lda),
            Some(_) => (&self.data[pc * mr..][..kc * mr], mr),
            None => (&self.data[self.mpad * pc + r * kc..][..kc * mr], mr),
        }
    }
}

/// A is read in place (when its layout allows) only for products narrower than this:
/// the copy saved costs as much as `1/N` of the arithmetic, and for wide products the
/// contiguous packed panels, read once per column block, win instead. Measured with 2
/// threads (median GFLOP/s, packed against in place): 2048x256x256 296 -> 420,
/// 4096x448x128 284-352 -> 413-425, 6272x64x1024 385 -> 420, but 1024x128x6272
/// 460 -> 415.
const IN_PLACE_MAX_N: usize = 2048;

/// Packs A (in parallel over K blocks if `parallel`) into the calling thread's buffer,
/// or only its ragged last panel when A can be read in place and the product is `n`
/// columns narrow, and runs `f` on it.
/// Packing A once for the whole call, rather than in every task, matters when C is
/// cut into many column blocks.
fn with_packed_a<K: MicroKernel>(a: ArrayView2<f32>, parallel: bool, n: usize, f: impl FnOnce(&PackedA)) {
    let (m, k) = a.dim();
    let mpad = m.next_multiple_of(K::MR);
    // Taken out of the thread-local slot for the call, so that the tasks this thread
    // runs meanwhile (which use only B_PACK) never find it borrowed.
    let mut buf = A_PACK.with(|b| std::mem::take(&mut *b.borrow_mut()));
    if let Some((flat, lda)) = super::pack::lines(a).filter(|_| K::READS_A_IN_PLACE && m >= K::MR && n < IN_PLACE_MAX_N)
    {
        let tail_row = m / K::MR * K::MR;
        let data = buf.get(if tail_row < m { K::MR * k } else { 0 });
        if tail_row < m {
            for (blk, dst) in data.chunks_mut(K::MR * KC).enumerate() {
                let pc = blk * KC;
                K::pack_a(a.slice(s![tail_row.., pc..pc + KC.min(k - pc)]), dst);
            }
        }
        f(&PackedA { data, mpad, k, place: Some(InPlace { flat, lda, tail_row }) });
    } else {
        let data = buf.get(mpad * k);
        let pack = |(blk, dst): (usize, &mut [f32])| {
            let pc = blk * KC;
            K::pack_a(a.slice(s![.., pc..pc + KC.min(k - pc)]), dst);
        };
        if parallel && k > KC {
            data.par_chunks_mut(mpad * KC).enumerate().for_each(pack);
        } else {
            data.chunks_mut(mpad * KC).enumerate().for_each(pack);
        }
        f(&PackedA { data, mpad, k, place: None });
    }
    A_PACK.with(|b| *b.borrow_mut() = buf);
}

/// One task: `C[rows, cols] = alpha A[rows, ..] B + beta C[rows, cols]` on this thread,
/// with A packed and `rows` starting on a panel. b: [K, cols]; c: the block's first
/// element, row stride `rsc`.
fn task<K: MicroKernel>(
    alpha: f32,
    a: &PackedA,
    rows: std::ops::Range<usize>,
    b: ArrayView2<f32>,
    beta: f32,
    c: TilePtr,
    rsc: usize,
) {
    let (m, k) = (rows.len(), a.k);
    let n = b.ncols();
    B_PACK.with(|bpack| {
        let bpack = &mut *bpack.borrow_mut();
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let bp = bpack.get(packed_b_len(kc, n, K::NR));
            K::pack_b(b.slice(s![pc..pc + kc, ..]), bp);
            // The first K block scales C by beta; the later ones add to it.
            let beta = if pc == 0 { beta } else { 1.0 };
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                for (jp, b_panel) in bp.chunks_exact(kc * K::NR).enumerate() {
                    let j = jp * K::NR;
                    for i in (ic..ic + mc).step_by(K::MR) {
                        let (a_panel, a_step) = a.panel(rows.start + i, pc, kc, K::MR);
                        // SAFETY: `fast` only runs K when the CPU has its instruction set
                        // (`gemm_on` caps the choice by `Isa::detect`). The A panel holds
                        // (kc - 1)*a_step + MR floats and the B panel kc*NR. The tile is
                        // rows i..i+MR and columns j..j+NR of this task's block, clipped
                        // to its m x n; the caller gives the task that block of C alone.
                        unsafe {
                            K::tile(
                                kc,
                                a_panel.as_ptr(),
                                a_step,
                                b_panel.as_ptr(),
                                c.0.add(i * rsc + j),
                                rsc,
                                K::MR.min(m - i),
                                K::NR.min(n - j),
                                alpha,
                                beta,
                            );
                        }
                    }
                }
            }
        }
    });
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
