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
pub(crate) use simd::{vectorized, wide};

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
/// as many as fit in `COLS_CHUNK_BYTES`, at least 1: the most a chunk may hold
/// (`ImageChunks` cuts evenly, and at least one chunk per thread).
pub fn chunk_images(g: &im2col::ConvGeom) -> usize {
    let per_image = g.rows() * g.p_out() * std::mem::size_of::<f32>();
    (COLS_CHUNK_BYTES / per_image.max(1)).max(1)
}

/// Positions per span of a weight gradient `cols dy^T` over a batch of `n`, whose sum
/// runs along the column matrix's `n*P_out` columns, with `other` columns in `dy^T`
/// (see `for_each_summed_rows`). The spans' products are added to the gradient one
/// after the other, which is the chain of one product over the whole batch (block
/// after block of `KC` terms, each added to C) because every span but the last is a
/// whole number of `KC` blocks: as many as fit in `COLS_CHUNK_BYTES`. A span may end
/// inside an image (MNIST's 49 positions share no factor with `KC`), so a batch is
/// still cut where no whole number of images would end on a block. When the whole
/// product would be cut along K (`Split::Depth`, partials summed otherwise), or no
/// block fits, the batch is one span. Either way the gradient has the bits of the
/// unspanned product.
pub fn summed_span(g: &im2col::ConvGeom, n: usize, other: usize) -> usize {
    let whole = (n * g.p_out()).max(1);
    let plan = gemm::block_plan(g.rows(), n * g.p_out(), other);
    if plan.split == gemm::Split::Depth && plan.count > 1 {
        return whole;
    }
    let per_position = g.rows() * std::mem::size_of::<f32>();
    match COLS_CHUNK_BYTES / per_position.max(1) / gemm::KC * gemm::KC {
        0 => whole,
        span => span.min(whole),
    }
}

/// The greatest common divisor of `a` and `b` (Euclid's algorithm).
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The images `0..n` in consecutive chunks of at most `chunk`, no chunk crossing a
/// multiple of `shard`, by index: chunk `i` is `get(i)`. A shard's chunks are as
/// even as can be (their lengths differ by at most one), and as many for each
/// thread: with a ragged last chunk, or one chunk more for some threads, the others
/// wait (the CIFAR-10 discriminator's first layer cut 128 images into 42, 42, 42 and
/// 2, two chunks a thread; MNIST's second cut 64 into seven chunks).
///
/// How a batch is cut changes no bits: every column of a chunk's product is the same
/// chain of multiply-adds whatever the chunk holds.
#[derive(Clone, Copy)]
struct ImageChunks {
    n: usize,
    chunk: usize,
    shard: usize,
    threads: usize,
}

impl ImageChunks {
    /// The chunks for `threads` threads: a shard's count is a multiple of it (but
    /// never more than its images), so that every thread gets as many.
    fn new(n: usize, chunk: usize, shard: usize, threads: usize) -> Self {
        ImageChunks { n, chunk: chunk.max(1), shard: shard.clamp(1, n.max(1)), threads: threads.max(1) }
    }

    /// Chunks in a shard of `len` images.
    fn in_shard(&self, len: usize) -> usize {
        len.div_ceil(self.chunk).next_multiple_of(self.threads).min(len)
    }

    fn count(&self) -> usize {
        (self.n / self.shard) * self.in_shard(self.shard) + self.in_shard(self.n % self.shard)
    }

    fn get(&self, i: usize) -> std::ops::Range<usize> {
        let per_shard = self.in_shard(self.shard);
        let (first, j) = (i / per_shard * self.shard, i % per_shard);
        // The shard's images and its chunks (fewer in a short last shard).
        let len = self.shard.min(self.n - first);
        let count = self.in_shard(len);
        first + j * len / count..first + (j + 1) * len / count
    }
}

/// `f(images, x[images])` for the chunks `range` of `chunks`, whose first image is
/// `x`'s first, in parallel: each chunk on one thread, its part of `x` its own. The
/// batch is split in two at a chunk's start, recursively, so nothing is allocated.
fn par_image_chunks(
    x: ndarray::ArrayViewMut4<f32>,
    chunks: ImageChunks,
    range: std::ops::Range<usize>,
    f: &(impl Fn(std::ops::Range<usize>, ndarray::ArrayViewMut4<f32>) + Sync),
) {
    match range.len() {
        0 => {}
        1 => f(chunks.get(range.start), x),
        len => {
            let mid = range.start + len / 2;
            let split = chunks.get(mid).start - chunks.get(range.start).start;
            let (left, right) = x.split_at(ndarray::Axis(0), split);
            rayon::join(
                || par_image_chunks(left, chunks, range.start..mid, f),
                || par_image_chunks(right, chunks, mid..range.end, f),
            );
        }
    }
}

/// The most floats any thread's chunk scratch has held: every thread reserves as
/// many, so that a step allocates nothing once each thread has run one chunk of it,
/// whichever chunks it runs (see `im2col::with_plane_block`).
static CHUNK_SCRATCH_MOST: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Each thread's chunk scratch: a stack, since a thread waiting inside one chunk
    /// may run another (rayon runs queued work while a join waits), which then takes
    /// a buffer of its own.
    static CHUNK_SCRATCH: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's chunk scratch (contents unspecified),
/// taken off its stack for the call.
fn with_chunk_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let most = CHUNK_SCRATCH_MOST.fetch_max(len, Ordering::Relaxed).max(len);
    let mut buf = CHUNK_SCRATCH.with(|s| s.borrow_mut().pop().unwrap_or_default());
    if buf.len() < most {
        buf.resize(most, 0.0);
    }
    let out = f(&mut buf[..len]);
    CHUNK_SCRATCH.with(|s| s.borrow_mut().push(buf));
    out
}

/// The chunks of `x: [N, C, H, W]` (at most `chunk` images each, none crossing a
/// multiple of `shard`, as many for each thread: `ImageChunks`), each made on one
/// thread by `f(images, x[images], scratch)` with `scratch` floats of the thread's
/// own: the chunks of a convolution's output or
/// input gradient, which depend only on their own images. A chunk's unfolded columns
/// are then written and read by one core, and its steps (unfold, multiply, move)
/// need no barrier between them; the kernels inside still run in parallel, which
/// keeps every core busy when a shard has fewer images than threads. Profiled as a
/// `parallel_section`.
fn for_each_chunk_mut(
    x: ndarray::ArrayViewMut4<f32>,
    (chunk, shard): (usize, usize),
    scratch: usize,
    f: impl Fn(std::ops::Range<usize>, ndarray::ArrayViewMut4<f32>, &mut [f32]) + Sync,
) {
    let chunks = ImageChunks::new(x.dim().0, chunk, shard, rayon::current_num_threads());
    crate::profile::parallel_section(|| {
        par_image_chunks(x, chunks, 0..chunks.count(), &|images, x| {
            with_chunk_scratch(scratch, |buf| f(images, x, buf))
        })
    });
}

/// `y = a im2col(x) + bias`, moved into `y`'s batch-major layout: a convolution's
/// output (Conv2d's forward pass, ConvTranspose2d's `dx`), `gemm_col2im`'s twin. Made
/// a chunk of images at a time (`chunk_images`), the chunks in parallel
/// (`for_each_chunk_mut`): each chunk's columns are multiplied and moved while they
/// are in the cache of the core that unfolded them, so neither the whole column
/// matrix nor the whole product ever exists. No chunk crosses a multiple of `shard`
/// images, so a shard's chunks, and every product made of them, are those of a batch
/// holding that shard alone (`collective`); each column of the product is the same
/// whatever the chunk, so the bits are those of one GEMM on any number of threads.
///
/// a: [C_out, C*KH*KW], x: [N, C, H, W] with `g` describing `x`, bias: `[C_out]` or
/// none, y: [N, C_out, H_out, W_out].
pub fn im2col_gemm(
    a: ArrayView2<f32>,
    x: ndarray::ArrayView4<f32>,
    g: &im2col::ConvGeom,
    bias: Option<&[f32]>,
    y: ndarray::ArrayViewMut4<f32>,
    shard: usize,
) {
    let (c_out, rows, p_out) = (a.nrows(), g.rows(), g.p_out());
    assert_eq!(a.ncols(), rows, "im2col_gemm: a has {} columns for {rows} unfolded rows", a.ncols());
    let chunk = chunk_images(g);
    // `a` is the same for every chunk: packed once.
    gemm::with_packed_lhs(a, |mul| {
        let scratch = (rows + c_out) * chunk * p_out;
        for_each_chunk_mut(y, (chunk, shard), scratch, |images, y, scratch| {
            let positions = images.len() * p_out;
            let (cols, product) = scratch.split_at_mut(rows * positions);
            let mut cols = ArrayViewMut2::from_shape((rows, positions), cols).expect("sized");
            im2col::im2col(x.slice(ndarray::s![images, .., .., ..]), g, cols.view_mut());
            let mut product =
                ArrayViewMut2::from_shape((c_out, positions), &mut product[..c_out * positions]).expect("sized");
            mul(cols.view(), product.view_mut());
            let (count, _, h_out, w_out) = y.dim();
            let y = y.into_shape_with_order((count, c_out, h_out * w_out)).expect("contiguous");
            im2col::from_channel_major(product.view(), bias, y);
        });
    });
}

/// The batch `x: [N, C, H, W]` unfolded as rows (`im2row`) for a sum along its
/// `N*P_out` positions (a weight gradient), `span` positions at a time
/// (`summed_span`): `f` gets each span's positions and exactly its rows,
/// `[span, C*KH*KW]`. A span that ends inside an image unfolds that image again for
/// the next span.
pub fn for_each_summed_rows(
    x: ndarray::ArrayView4<f32>,
    g: &im2col::ConvGeom,
    span: usize,
    rows: &mut Workspace,
    mut f: impl FnMut(std::ops::Range<usize>, ArrayView2<f32>),
) {
    let p_out = g.p_out();
    unfold_spans(
        x,
        g,
        span,
        rows,
        |positions| (positions, g.rows()),
        im2col::im2row,
        |positions, images, rows| {
            let skip = images.start * p_out;
            f(positions.clone(), rows.slice_move(ndarray::s![positions.start - skip..positions.end - skip, ..]));
        },
    );
}

/// `dweight += dy_cm im2row(x)`: a convolution's weight gradient, a sum along the
/// batch's `N*P_out` positions, `span` of them at a time (`summed_span`), by blocks of
/// input channels in parallel, one block per thread. Each thread unfolds its channels
/// of each span (`im2row_channels`: its own columns of the rows) and multiplies them
/// into its own columns of `dweight`. So a span's rows are written and read by one
/// core, and the threads meet once, where unfolding every span on all threads and then
/// multiplying it on all threads made them meet twice per span and read the rows
/// another core had written.
///
/// Every element of `dweight` is the chain it is in `for_each_summed_rows` with one
/// product per span (the spans in order, each a whole number of `KC` blocks), since a
/// product's columns do not change each other's sums; when a product would be cut
/// along K (`Split::Depth`, which depends on its width) or there are fewer channels
/// than threads, the spans run that way instead.
///
/// dy_cm: [C_out, N*P_out], x: [N, C, H, W] with `g` describing `x`, dweight:
/// [C_out, C*KH*KW]; `rows` serves the other way.
pub fn summed_rows_gemm(
    dy_cm: ArrayView2<f32>,
    x: ndarray::ArrayView4<f32>,
    g: &im2col::ConvGeom,
    span: usize,
    rows: &mut Workspace,
    mut dweight: ArrayViewMut2<f32>,
) {
    let (c_out, n, p_out, window) = (dy_cm.nrows(), x.dim().0, g.p_out(), g.kh * g.kw);
    assert_eq!(dy_cm.ncols(), n * p_out, "summed_rows_gemm: dy_cm has {} columns for {n} images", dy_cm.ncols());
    assert_eq!(dweight.dim(), (c_out, g.rows()), "summed_rows_gemm: dweight shape");
    let groups = rayon::current_num_threads().min(g.c);
    let depth_split = |cols: usize| {
        let plan = gemm::block_plan(c_out, span.clamp(1, (n * p_out).max(1)), cols);
        plan.split == gemm::Split::Depth && plan.count > 1
    };
    if groups < 2 || depth_split(g.rows()) || depth_split(g.c / groups * window) {
        for_each_summed_rows(x, g, span, rows, |positions, rows| {
            gemm::gemm(1.0, dy_cm.slice(ndarray::s![.., positions]), rows, 1.0, dweight.view_mut());
        });
        return;
    }
    let block = |channels: std::ops::Range<usize>, mut dweight: ArrayViewMut2<f32>| {
        let width = channels.len() * window;
        for (positions, images) in spans(n, p_out, span) {
            let skip = images.start * p_out;
            let len = images.len() * p_out;
            with_chunk_scratch(len * width, |buf| {
                let mut rows = ArrayViewMut2::from_shape((len, width), buf).expect("sized");
                im2col::im2row_channels(x.slice(ndarray::s![images, .., .., ..]), g, channels.clone(), rows.view_mut());
                let rows = rows.slice(ndarray::s![positions.start - skip..positions.end - skip, ..]);
                gemm::gemm(1.0, dy_cm.slice(ndarray::s![.., positions.clone()]), rows, 1.0, dweight.view_mut());
            });
        }
    };
    let channels = |b: usize| b * g.c / groups;
    crate::profile::parallel_section(|| par_channel_blocks(dweight.view_mut(), window, 0..groups, &channels, &block));
}

/// `f(channels, dweight[.., channels' columns])` for the channel blocks `range`, whose
/// first column is `dweight`'s first, in parallel, split in two recursively (nothing
/// is allocated). Block `b` holds channels `start(b)..start(b + 1)`.
fn par_channel_blocks(
    dweight: ArrayViewMut2<f32>,
    window: usize,
    range: std::ops::Range<usize>,
    start: &(impl Fn(usize) -> usize + Sync),
    f: &(impl Fn(std::ops::Range<usize>, ArrayViewMut2<f32>) + Sync),
) {
    match range.len() {
        0 => {}
        1 => f(start(range.start)..start(range.end), dweight),
        len => {
            let mid = range.start + len / 2;
            let (left, right) = dweight.split_at(ndarray::Axis(1), (start(mid) - start(range.start)) * window);
            rayon::join(
                || par_channel_blocks(left, window, range.start..mid, start, f),
                || par_channel_blocks(right, window, mid..range.end, start, f),
            );
        }
    }
}

/// The batch `x: [N, C, H, W]` unfolded as columns (`im2col`) for a sum along its
/// positions that also feeds a product of its own per image (a transposed
/// convolution's `dweight` and `dx`): for each span (`summed_span`), `f` gets its
/// positions and exactly its columns, `[C*KH*KW, span]`, then the images not given
/// before and all of their columns. Every image is given once, in order.
pub fn for_each_summed_unfolded(
    x: ndarray::ArrayView4<f32>,
    g: &im2col::ConvGeom,
    span: usize,
    cols: &mut Workspace,
    mut f: impl FnMut(std::ops::Range<usize>, ArrayView2<f32>, std::ops::Range<usize>, ArrayView2<f32>),
) {
    let p_out = g.p_out();
    let mut given = 0;
    unfold_spans(
        x,
        g,
        span,
        cols,
        |positions| (g.rows(), positions),
        im2col::im2col,
        |positions, images, cols| {
            let skip = images.start * p_out;
            let span_cols = cols.slice(ndarray::s![.., positions.start - skip..positions.end - skip]);
            let fresh = images.start.max(given)..images.end;
            given = images.end;
            f(positions, span_cols, fresh.clone(), cols.slice(ndarray::s![.., (fresh.start - images.start) * p_out..]));
        },
    );
}

/// The spans of `span` positions (the last may be shorter) of `n` images of `p_out`
/// positions each, and the images each span touches.
fn spans(
    n: usize,
    p_out: usize,
    span: usize,
) -> impl Iterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)> {
    (0..n * p_out).step_by(span.max(1)).map(move |start| {
        let positions = start..(start + span).min(n * p_out);
        let images = positions.start / p_out..positions.end.div_ceil(p_out);
        (positions, images)
    })
}

/// The span loop of `for_each_summed_rows` and `for_each_summed_unfolded`: `ws` takes
/// `shape(positions)` for the images that each span of positions touches, `unfold`
/// fills it, and `f` gets the span, the images and the matrix.
fn unfold_spans(
    x: ndarray::ArrayView4<f32>,
    g: &im2col::ConvGeom,
    span: usize,
    ws: &mut Workspace,
    shape: impl Fn(usize) -> (usize, usize),
    unfold: fn(ndarray::ArrayView4<f32>, &im2col::ConvGeom, ndarray::ArrayViewMut2<f32>),
    mut f: impl FnMut(std::ops::Range<usize>, std::ops::Range<usize>, ArrayView2<f32>),
) {
    let p_out = g.p_out();
    for (positions, images) in spans(x.dim().0, p_out, span) {
        let (rows, cols) = shape(images.len() * p_out);
        ws.resize(rows, cols);
        unfold(x.slice(ndarray::s![images.clone(), .., .., ..]), g, ws.view_mut());
        f(positions, images, ws.view());
    }
}

/// `x = col2im(a b) + bias`, computed a few images at a time so that the product never
/// exists for the whole batch, the chunks in parallel (`for_each_chunk_mut`); no
/// chunk crosses a multiple of `shard` images.
///
/// a: [C*KH*KW, K], b: [K, N*P_out], x: [N, C, H, W] with `g` describing `x` (as for
/// `col2im`). The chunks depend on the thread count, but each column of the product
/// is the same whatever the chunk, so the result is the same on any number of
/// threads.
pub fn gemm_col2im(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    g: &im2col::ConvGeom,
    bias: Option<&[f32]>,
    x: ndarray::ArrayViewMut4<f32>,
    shard: usize,
) {
    gemm_col2im_chunked(a, b, g, bias, x, (chunk_images(g), shard));
}

/// `gemm_col2im` with `chunk` images at a time (at least 1).
fn gemm_col2im_chunked(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    g: &im2col::ConvGeom,
    bias: Option<&[f32]>,
    x: ndarray::ArrayViewMut4<f32>,
    (chunk, shard): (usize, usize),
) {
    let n = x.dim().0;
    let p_out = g.p_out();
    assert_eq!(b.ncols(), n * p_out, "gemm_col2im: b has {} columns for {n} images of {p_out} positions", b.ncols());
    // `a` is the same for every chunk: packed once.
    let rows = g.rows();
    gemm::with_packed_lhs(a, |mul| {
        for_each_chunk_mut(x, (chunk, shard), rows * chunk * p_out, |images, x, scratch| {
            let columns = images.len() * p_out;
            let mut cols = ArrayViewMut2::from_shape((rows, columns), &mut scratch[..rows * columns]).expect("sized");
            mul(b.slice(ndarray::s![.., images.start * p_out..images.end * p_out]), cols.view_mut());
            im2col::col2im(cols.view(), g, bias, x);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, random_array};
    use ndarray::{Array2, Array4};

    /// The chunks of `ImageChunks::new(n, chunk, shard, 1)` in order.
    fn image_chunks(n: usize, chunk: usize, shard: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        let chunks = ImageChunks::new(n, chunk, shard, 1);
        (0..chunks.count()).map(move |i| chunks.get(i))
    }

    /// Chunks cover the batch in order and never cross a shard's end.
    #[test]
    fn chunks_stay_within_shards() {
        let chunks: Vec<_> = image_chunks(12, 5, 6).collect();
        assert_eq!(chunks, [0..3, 3..6, 6..9, 9..12]);
        assert_eq!(image_chunks(7, 3, 7).collect::<Vec<_>>(), [0..2, 2..4, 4..7]);
        assert_eq!(image_chunks(128, 42, 128).collect::<Vec<_>>(), [0..32, 32..64, 64..96, 96..128]);
        // A short last shard, cut on its own.
        assert_eq!(image_chunks(11, 3, 8).collect::<Vec<_>>(), [0..2, 2..5, 5..8, 8..11]);
        assert_eq!(image_chunks(0, 3, 0).count(), 0);
        // As many chunks for each of the threads: MNIST D conv2's 64 images, 10 at
        // most, in 8 chunks for 2 threads (7 for 1); fewer images than threads.
        let for_threads = |n, chunk, shard, threads| {
            let chunks = ImageChunks::new(n, chunk, shard, threads);
            (0..chunks.count()).map(|i| chunks.get(i).len()).collect::<Vec<_>>()
        };
        assert_eq!(for_threads(64, 10, 64, 2), [8; 8]);
        assert_eq!(for_threads(64, 10, 64, 1), [9, 9, 9, 9, 9, 9, 10]);
        assert_eq!(for_threads(3, 10, 3, 4), [1, 1, 1]);
        // Every cut: consecutive chunks covering the batch, none longer than asked, the
        // lengths within a shard at most one apart.
        for n in 0..40 {
            for chunk in 1..12 {
                for shard in [n, 1, 3, 8, 16] {
                    let chunks: Vec<_> = image_chunks(n, chunk, shard).collect();
                    assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), n);
                    assert!(chunks.windows(2).all(|w| w[0].end == w[1].start), "{chunks:?}");
                    assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= chunk), "{chunks:?}");
                    let shard = shard.clamp(1, n.max(1));
                    for c in &chunks {
                        let same: Vec<_> = chunks.iter().filter(|d| d.start / shard == c.start / shard).collect();
                        assert!(same.iter().all(|d| d.len().abs_diff(c.len()) <= 1), "{chunks:?}");
                    }
                }
            }
        }
    }

    /// `for_each_chunk_mut` gives every chunk once, with its own images of `x` and a
    /// scratch of the length asked for, whatever the thread count.
    #[test]
    fn chunks_in_parallel_cover_the_batch_once() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a pool");
            for (n, chunk, shard) in [(12, 5, 6), (7, 3, 7), (1, 4, 1), (0, 3, 0), (10, 1, 4)] {
                let mut x = Array4::from_elem((n, 1, 1, 2), -1.0f32);
                pool.install(|| {
                    for_each_chunk_mut(x.view_mut(), (chunk, shard), 3, |images, mut x, scratch| {
                        assert_eq!(scratch.len(), 3);
                        assert_eq!(x.dim().0, images.len());
                        for (i, mut image) in images.zip(x.outer_iter_mut()) {
                            assert!(image.iter().all(|&v| v == -1.0), "image {i} given twice");
                            image.fill(i as f32);
                        }
                    });
                });
                let expected = Array4::from_shape_fn((n, 1, 1, 2), |(i, ..)| i as f32);
                assert_close(&x, &expected, 0.0, 0.0, &format!("n {n}, chunk {chunk}, shard {shard}"));
                let chunks: Vec<_> = image_chunks(n, chunk, shard).collect();
                assert!(chunks.iter().all(|c| c.start / shard.max(1) == (c.end - 1) / shard.max(1)));
            }
        }
    }

    /// Weight-gradient spans are whole KC blocks, or the batch is one span.
    #[test]
    fn summed_spans_are_kc_blocks() {
        let conv = |c, h| im2col::ConvGeom { c, h, w: h, kh: 4, kw: 4, stride: 2, padding: 1 };
        // CIFAR-10 D conv2 (1024 rows, 4 KiB a position): 512 positions, 8 images.
        assert_eq!(summed_span(&conv(64, 16), 128, 128), 512);
        // MNIST D conv2 (49 positions an image): 512 too, ending inside images.
        assert_eq!(summed_span(&conv(64, 14), 128, 128), 512);
        // CIFAR-10 D conv1, cut along K as a whole: one span.
        assert_eq!(summed_span(&conv(3, 32), 128, 64), 128 * 256);
        for (g, n, other) in [(conv(64, 16), 128, 128), (conv(128, 8), 64, 256), (conv(32, 32), 10, 8)] {
            let (span, whole) = (summed_span(&g, n, other), n * g.p_out());
            assert!(span == whole || span.is_multiple_of(gemm::KC), "{g:?}: {span} positions");
        }
    }

    /// Spans cover the positions in order, each with exactly its rows, unfolding an
    /// image that two spans share for both; `for_each_summed_unfolded` gives each
    /// image's columns once, in order.
    #[test]
    fn spans_cover_the_positions_and_the_images_once() {
        let g = im2col::ConvGeom { c: 2, h: 6, w: 6, kh: 3, kw: 3, stride: 2, padding: 1 };
        let n = 7;
        let p = g.p_out();
        let x: Array4<f32> = random_array([n, g.c, g.h, g.w], 3);
        let mut rows_whole = Array2::zeros((n * p, g.rows()));
        im2col::im2row(x.view(), &g, rows_whole.view_mut());
        let mut cols_whole = Array2::zeros((g.rows(), n * p));
        im2col::im2col(x.view(), &g, cols_whole.view_mut());
        // 9 positions an image, spans of 4: most end inside an image.
        let span = 4;
        let mut next = 0;
        for_each_summed_rows(x.view(), &g, span, &mut Workspace::default(), |positions, rows| {
            assert_eq!(positions.start, next);
            next = positions.end;
            assert_close(&rows, &rows_whole.slice(ndarray::s![positions, ..]), 0.0, 0.0, "span rows");
        });
        assert_eq!(next, n * p);
        let (mut next, mut images_given) = (0, 0);
        for_each_summed_unfolded(
            x.view(),
            &g,
            span,
            &mut Workspace::default(),
            |positions, cols, fresh, fresh_cols| {
                assert_eq!(positions.start, next);
                next = positions.end;
                assert_close(&cols, &cols_whole.slice(ndarray::s![.., positions]), 0.0, 0.0, "span columns");
                assert_eq!(fresh.start, images_given);
                images_given = fresh.end;
                let whole = cols_whole.slice(ndarray::s![.., fresh.start * p..fresh.end * p]);
                assert_close(&fresh_cols, &whole, 0.0, 0.0, "the images' columns");
            },
        );
        assert_eq!((next, images_given), (n * p, n));
    }

    /// Channel blocks in parallel give the bits of one product per span over all the
    /// rows, on 1, 2 and 3 threads: spans that end inside an image, the `KW == 3`
    /// unfolding, channel counts that do not divide among the threads, and fewer
    /// channels than threads.
    #[test]
    fn weight_gradient_by_channel_blocks_has_the_bits_of_whole_spans() {
        let geom = |c, h, k, stride| im2col::ConvGeom { c, h, w: h, kh: k, kw: k, stride, padding: 1 };
        let cases = [
            (geom(5, 12, 4, 2), 10, 7),
            (geom(17, 7, 3, 1), 6, 9),
            (geom(3, 8, 4, 2), 4, 64),
            (geom(1, 9, 4, 2), 5, 3),
        ];
        for (seed, (g, n, c_out)) in cases.into_iter().enumerate() {
            let seed = 10 * seed as u64;
            let x: Array4<f32> = random_array([n, g.c, g.h, g.w], seed);
            let dy_cm: Array2<f32> = random_array([c_out, n * g.p_out()], seed + 1);
            let start: Array2<f32> = random_array([c_out, g.rows()], seed + 2);
            let mut expected = start.clone();
            for_each_summed_rows(x.view(), &g, gemm::KC, &mut Workspace::default(), |positions, rows| {
                gemm::gemm(1.0, dy_cm.slice(ndarray::s![.., positions]), rows, 1.0, expected.view_mut());
            });
            for threads in 1..=3 {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a pool");
                let mut got = start.clone();
                pool.install(|| {
                    summed_rows_gemm(dy_cm.view(), x.view(), &g, gemm::KC, &mut Workspace::default(), got.view_mut())
                });
                let bits = |a: &Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert!(bits(&got) == bits(&expected), "{g:?}, {threads} threads: not the same bits");
            }
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
            gemm_col2im_chunked(a.view(), b.view(), &g, Some(&bias), x.view_mut(), (chunk, whole));
            assert_close(&x, &expected, 1e-6, 1e-6, &format!("gemm_col2im in chunks of {chunk}"));
        }
    }
}
