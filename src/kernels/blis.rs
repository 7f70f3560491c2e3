//! The fast GEMM path: the five loops of BLIS around our register-blocked
//! micro-kernels (`microkernel.rs`), on operands packed into panels (`pack.rs`), cut
//! into rayon tasks by C's columns (see `gemm.rs` for the loop nest and why the
//! result does not depend on the thread count).

use std::cell::RefCell;
use std::sync::Mutex;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};
use rayon::prelude::*;

use super::gemm::{BlockPlan, KC, MAX_BLOCKS, MIN_PARALLEL_MACS, Split, block_plan, depth_split};
use super::microkernel::MicroKernel;
use super::pack::{PackBuf, packed_b_len};

/// Rows of A per packed block (a multiple of both kernels' MR): `MC*KC*4` = 192 KiB,
/// which stays in L2 while every B panel of the block streams past it.
pub(super) const MC: usize = 192;

/// Columns of B per packed block and per parallel task: `KC*NC*4` = 512 KiB.
pub(super) const NC: usize = 512;

/// The narrowest column block a task is cut to before rows are split instead.
const MIN_TASK_COLS: usize = 128;

/// The fast path with micro-kernel `K`: orients the product so that C's rows are
/// contiguous (the kernel stores vectors along rows), then runs the five loops.
pub(super) fn fast<K: MicroKernel>(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    mut c: ArrayViewMut2<f32>,
) {
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
        if tile_padded::<K>(n, m) < tile_padded::<K>(m, n) {
            // The partials are C^T = B^T A^T, added to C transposed. Every element is
            // the same chain of multiply-adds either way, so the bits are the same.
            depth_rows::<K>(alpha, b.t(), a.t(), beta, c.reversed_axes(), plan);
        } else {
            depth_rows::<K>(alpha, a, b, beta, c, plan);
        }
        return;
    }
    with_packed_a::<K>(a, m * k * n >= MIN_PARALLEL_MACS, n, |pa| run_tasks::<K>(alpha, pa, b, beta, c));
}

/// The area of an `m x n` product's tiles, `MR x NR` each: the multiply-adds its
/// micro-kernel calls make, padding included. A cut along K runs the product the way
/// round with the smaller area. The weight gradients of the first and last layers
/// (`C_out x C_in*KH*KW`, 64x48 or 64x16, summed along a long K) waste a quarter or
/// half of their tiles' columns one way round and none the other, where their A,
/// `rows^T`, is also read in place. Measured with `infogan bench --profile`, 2
/// threads, AVX-512, three alternated runs: CIFAR-10 D conv1's 64x32768x48 1.8-1.9 ms
/// a step against 2.7-3.3, G deconv4's 48x16384x64 1.04-1.13 against 1.36-1.53;
/// MNIST D conv1's 64x25088x16 0.65 against 1.15-1.28.
fn tile_padded<K: MicroKernel>(m: usize, n: usize) -> usize {
    m.next_multiple_of(K::MR) * n.next_multiple_of(K::NR)
}

/// `fast_rows` cut along K (`Split::Depth`): each slice a serial product into its own
/// partial, the partials then added to C.
fn depth_rows<K: MicroKernel>(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: ArrayViewMut2<f32>,
    plan: BlockPlan,
) {
    let k = a.ncols();
    let n = b.ncols();
    // Each slice of K packs its part of A into its own part of one buffer of the
    // calling thread's: whichever thread runs a slice, no thread's buffer grows.
    let depth = |p: usize| p * plan.size..((p + 1) * plan.size).min(k);
    let need = |p: usize| packed_a_need::<K>(a.slice(s![.., depth(p)]), n);
    let total = (0..plan.count).map(need).sum();
    with_a_buffer(|buf| {
        let mut rest = buf.get(total);
        let parts: [Mutex<&mut [f32]>; MAX_BLOCKS] = std::array::from_fn(|p| {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(if p < plan.count { need(p) } else { 0 });
            rest = tail;
            Mutex::new(part)
        });
        depth_split(alpha, a, b, beta, c, plan, |p, alpha, a, b, beta, c| {
            let mut part = parts[p].lock().unwrap_or_else(|e| e.into_inner());
            fast_rows_serial::<K>(&mut part, alpha, a, b, beta, c)
        });
    });
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
    let stream = streams(beta, pa.k, m, n);
    let run = |t: usize| {
        let (r0, c0) = ((t / col_tasks) * row_block, (t % col_tasks) * col_block);
        let (rows, cols) = (row_block.min(m - r0), col_block.min(n - c0));
        // SAFETY: (r0, c0) is inside C and the task's tiles are rows r0..r0+rows and
        // columns c0..c0+cols of C, disjoint from every other task's.
        let c = unsafe { base.at(r0 * rsc + c0) };
        task::<K>(alpha, pa, r0..r0 + rows, b.slice(s![.., c0..c0 + cols]), beta, c, rsc, stream);
    };
    if tasks == 1 {
        run(0);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
}

pub(super) fn packed_lhs<K: MicroKernel>(
    a: ArrayView2<f32>,
    f: impl FnOnce(&(dyn Fn(ArrayView2<f32>, ArrayViewMut2<f32>) + Sync)),
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
            let _product = crate::profile::product(|| super::gemm::product(&a, &b, &c, true));
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

/// `fast_rows` on the calling thread alone (one slice of a depth split), with A
/// packed into `data` (`packed_a_need` floats).
fn fast_rows_serial<K: MicroKernel>(
    data: &mut [f32],
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    mut c: ArrayViewMut2<f32>,
) {
    let (m, n) = c.dim();
    let rsc = c.strides()[0].max(0) as usize;
    let base = TilePtr(c.as_mut_ptr());
    let pa = pack_a_into::<K>(a, false, n, data);
    for c0 in (0..n).step_by(NC) {
        let cols = NC.min(n - c0);
        // SAFETY: column c0 of row 0 is inside C, which this call borrows mutably.
        let tile = unsafe { base.at(c0) };
        task::<K>(alpha, &pa, 0..m, b.slice(s![.., c0..c0 + cols]), beta, tile, rsc, false);
    }
}

/// C is written with non-temporal stores (`MicroKernel::tile`'s `stream`) from this
/// size on: a C larger than the L2 caches of all the threads together leaves the
/// caches as it is written anyway, and a cached store first reads each line of C from
/// memory (read for ownership) only to overwrite it. The weight gradients of MNIST's
/// dense layers (6272x1024, 25.7 MB, K = the batch) are such products: measured in
/// `infogan bench --dataset mnist --profile`, 2 threads, AVX-512, three alternated
/// runs, 1024x128x6272 (ta) took 5.9-6.7 ms a step against 7.5-8.3 cached, and
/// 6272x64x1024 (ta) 3.6-4.7 against 5.2-5.9; Adam, which reads them next, 9.8-10.1
/// against 9.7-10.3.
const STREAM_MIN_BYTES: usize = 8 << 20;

/// Whether a product writes C with non-temporal stores: C is large, written once (one
/// K block, beta 0) and not read.
fn streams(beta: f32, k: usize, m: usize, n: usize) -> bool {
    beta == 0.0 && k <= KC && m * n * size_of::<f32>() >= STREAM_MIN_BYTES
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
    /// called; a stack, since a GEMM may run inside `packed_lhs`'s closure while its
    /// A stays packed) and packed B block (of the task it runs), kept from call to
    /// call.
    static A_PACK: RefCell<Vec<PackBuf>> = const { RefCell::new(Vec::new()) };
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

/// Groups of panels an A of a single K block is packed in, in parallel: a few per
/// thread of 2, for balance. Measured with `INFOGAN_ISA=avx2 cargo bench --bench
/// gemm`, 2 threads, two alternated runs, before and after this and the fixed-size
/// copies of `pack.rs`: 2048x256x256 (ta) 143-146 -> 173-183 GFLOP/s, 6272x64x1024
/// (ta) 144-172 -> 175-189, 4096x448x128 (ta) 115-134 -> 135-147.
const PACK_A_GROUPS: usize = 4;

/// Packs A (in parallel if `parallel`: over K blocks, or a single block's panels) into
/// the calling thread's buffer, or only its ragged last panel when A can be read in
/// place and the product is `n` columns narrow, and runs `f` on it.
/// Packing A once for the whole call, rather than in every task, matters when C is
/// cut into many column blocks.
fn with_packed_a<K: MicroKernel>(a: ArrayView2<f32>, parallel: bool, n: usize, f: impl FnOnce(&PackedA)) {
    // Taken off the thread-local stack for the call, so that the tasks this thread
    // runs meanwhile (which use only B_PACK) never find it borrowed, and a GEMM nested
    // in `f` takes a buffer of its own.
    with_a_buffer(|buf| f(&pack_a_into::<K>(a, parallel, n, buf.get(packed_a_need::<K>(a, n)))));
}

/// Runs `f` on a buffer taken off this thread's A_PACK stack for the call.
fn with_a_buffer(f: impl FnOnce(&mut PackBuf)) {
    let mut buf = A_PACK.with(|b| b.borrow_mut().pop().unwrap_or_default());
    f(&mut buf);
    A_PACK.with(|b| b.borrow_mut().push(buf));
}

/// A read in place (rows adjacent in memory, the product narrow enough, and a panel
/// that the L1 cache can hold): its flat storage and the distance between consecutive
/// `p`.
fn in_place<'a, K: MicroKernel>(a: &ArrayView2<'a, f32>, n: usize) -> Option<(&'a [f32], usize)> {
    super::pack::lines(*a).filter(|&(_, lda)| {
        K::READS_A_IN_PLACE && a.nrows() >= K::MR && n < IN_PLACE_MAX_N && panel_fits_l1(lda, a.ncols().min(KC))
    })
}

/// Sets of an L1 data cache: 64 on the x86-64 cores of this kind (32 KiB 8-way,
/// 48 KiB 12-way), with 64-byte lines.
const L1_SETS: usize = 64;

/// Lines of an in-place A panel that one L1 set may hold: 8 of its 8 or 12 ways, the
/// rest left to the B panel, which streams through every set.
const L1_WAYS_FOR_A: usize = 8;

/// Whether an in-place A panel (one line per `p`, `kc` values of `p` read `lda` floats
/// apart) stays in L1 while the tiles of one B panel reuse it. Its lines fall in
/// `L1_SETS / gcd(lda/16, L1_SETS)` sets: with rows 4 KiB apart (a weight of 1024
/// output channels read transposed) all of them land in one set, and every tile
/// reloads the panel from L2. Measured on an Intel Xeon (family 6 model 207,
/// AVX-512) with 2 threads, best of 15, in place against packed (GFLOP/s):
/// 1024x128x490 (ta) 253-259 against 285-286, 1024x128x512 (ta) 262 against 282-292,
/// 2048x256x256 (ta) 216-231 against 289-290; 6272x64x1024 (ta), whose 64 lines
/// spread over 8 sets, still reads in place. (On the Zen 5 of `IN_PLACE_MAX_N`'s
/// figures, 2048x256x256 read in place was the faster; not re-measured since.)
fn panel_fits_l1(lda: usize, kc: usize) -> bool {
    const LINE_FLOATS: usize = 16;
    if !lda.is_multiple_of(LINE_FLOATS) {
        return true;
    }
    let sets = L1_SETS / super::gcd(lda / LINE_FLOATS, L1_SETS);
    sets * L1_WAYS_FOR_A >= kc
}

/// The floats `pack_a_into` writes for `a` in a product `n` columns wide.
fn packed_a_need<K: MicroKernel>(a: ArrayView2<f32>, n: usize) -> usize {
    let (m, k) = a.dim();
    match in_place::<K>(&a, n) {
        Some(_) if m % K::MR == 0 => 0,
        Some(_) => K::MR * k,
        None => m.next_multiple_of(K::MR) * k,
    }
}

/// A packed into `data` (`packed_a_need` floats), or read in place with only its
/// ragged last panel packed there.
fn pack_a_into<'a, K: MicroKernel>(
    a: ArrayView2<'a, f32>,
    parallel: bool,
    n: usize,
    data: &'a mut [f32],
) -> PackedA<'a> {
    let (m, k) = a.dim();
    let mpad = m.next_multiple_of(K::MR);
    if let Some((flat, lda)) = in_place::<K>(&a, n) {
        let tail_row = m / K::MR * K::MR;
        if tail_row < m {
            for (blk, dst) in data.chunks_mut(K::MR * KC).enumerate() {
                let pc = blk * KC;
                K::pack_a(a.slice(s![tail_row.., pc..pc + KC.min(k - pc)]), dst);
            }
        }
        PackedA { data, mpad, k, place: Some(InPlace { flat, lda, tail_row }) }
    } else {
        // In parallel over the K blocks, or, when K is a single block (the `ta`
        // products, W^T times a batch, K = C_out), over groups of its panels: else
        // one thread packs while the others wait. The block at depth `pc` holds
        // `mpad * kc` floats, a panel `kc * MR`.
        let panels = mpad / K::MR;
        let group = if parallel && k <= KC { panels.div_ceil(PACK_A_GROUPS) } else { panels };
        let pack_block = |(blk, block): (usize, &mut [f32])| {
            let (pc, kc) = (blk * KC, KC.min(k - blk * KC));
            let pack = |(g, dst): (usize, &mut [f32])| {
                let r0 = g * group * K::MR;
                K::pack_a(a.slice(s![r0..(r0 + group * K::MR).min(m), pc..pc + kc]), dst);
            };
            if group < panels {
                block.par_chunks_mut(group * kc * K::MR).enumerate().for_each(pack);
            } else {
                pack((0, block));
            }
        };
        if parallel && k > KC {
            data.par_chunks_mut(mpad * KC).enumerate().for_each(pack_block);
        } else {
            data.chunks_mut(mpad * KC).enumerate().for_each(pack_block);
        }
        PackedA { data, mpad, k, place: None }
    }
}

/// One task: `C[rows, cols] = alpha A[rows, ..] B + beta C[rows, cols]` on this thread,
/// with A packed and `rows` starting on a panel. b: [K, cols]; c: the block's first
/// element, row stride `rsc`; `stream`: C written with non-temporal stores (`streams`).
#[allow(clippy::too_many_arguments)]
fn task<K: MicroKernel>(
    alpha: f32,
    a: &PackedA,
    rows: std::ops::Range<usize>,
    b: ArrayView2<f32>,
    beta: f32,
    c: TilePtr,
    rsc: usize,
    stream: bool,
) {
    let (m, k) = (rows.len(), a.k);
    let n = b.ncols();
    B_PACK.with(|bpack| {
        let bpack = &mut *bpack.borrow_mut();
        // Sized for the largest block a task can have, at once: which thread runs
        // which task changes from call to call, and a buffer that grew only when its
        // thread first met the widest block would still allocate steps later.
        bpack.reserve(packed_b_len(KC, NC.max(K::NR), K::NR));
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
                                stream,
                            );
                        }
                    }
                }
            }
        }
    });
    if stream {
        super::simd::store_fence();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_place_panels_that_alias_in_l1_are_packed() {
        // Rows 4 KiB apart: one set for all 128 lines.
        assert!(!panel_fits_l1(1024, 128));
        assert!(!panel_fits_l1(2048, KC));
        // 8 sets of 8 lines hold 64 lines, not 65.
        assert!(panel_fits_l1(6272, 64));
        assert!(!panel_fits_l1(6272, 65));
        // Not a whole number of lines apart, or an odd number of lines: every set.
        assert!(panel_fits_l1(490, KC));
        assert!(panel_fits_l1(16 * 65, KC));
    }
}
