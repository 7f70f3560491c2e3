//! im2col / col2im, and the two layout moves between `[N, C, P]` images and
//! channel-major `[C, N*P]` matrices that let one GEMM cover a whole batch.
//!
//! A convolution with geometry `g` reads, for output position `q = (oh, ow)` of image
//! `n`, the input pixels `x[n, c, oh*s - p + i, ow*s - p + j]`. im2col lays these out
//! as the matrix `cols: [C*KH*KW, N*P_out]`, row `(c, i, j)`, column `n*P_out + q`,
//! with zeros where the window hangs over the padding. Then `conv(x) = W cols`.
//! col2im is its adjoint (the transpose of the linear map im2col): it sums every
//! column entry back onto the pixel it was read from. Conv2d's backward pass and
//! ConvTranspose2d's forward pass are both col2im.
//!
//! All four functions run in parallel over disjoint pieces of their output and give
//! the same bits on any number of threads (every sum has a fixed order).

use ndarray::{ArrayView2, ArrayView3, ArrayView4, ArrayViewMut2, ArrayViewMut3, ArrayViewMut4, Axis};
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Marks a window position that falls on the zero padding in a gather table.
const PADDING: u32 = u32::MAX;

/// The shape arithmetic of one 2-D convolution (or, read backwards, of one
/// transposed convolution): input `[C, H, W]`, square stride and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    /// Channels of the image that the windows are cut from.
    pub c: usize,
    /// Height and width of that image.
    pub h: usize,
    pub w: usize,
    /// Kernel height and width.
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeom {
    /// Output height, PyTorch's `floor((H + 2p - KH) / s) + 1`.
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.padding - self.kh) / self.stride + 1
    }

    /// Output width, `floor((W + 2p - KW) / s) + 1`.
    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.padding - self.kw) / self.stride + 1
    }

    /// Output positions per image, `P_out = H_out * W_out`.
    pub fn p_out(&self) -> usize {
        self.h_out() * self.w_out()
    }

    /// Rows of the column matrix, `C * KH * KW`.
    pub fn rows(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Window reads that fall on the zero padding: the pairs of a kernel offset `(i, j)`
    /// and an output position whose input pixel lies outside the image, out of the
    /// `KH*KW*P_out` pairs of one channel. Each is a zero in the column matrix (or, read
    /// backwards, an entry col2im drops), so every product over an unfolded batch spends
    /// `C * padding_reads * N` times its other side multiply-adds on nothing. A window
    /// reads inside the image exactly when both its row and its column do, so the
    /// inside pairs are the row pairs times the column pairs.
    pub fn padding_reads(&self) -> usize {
        let inside = |len: usize, k: usize, outs: usize| -> usize {
            let reads = |o: usize| (0..k).filter(move |&i| (o * self.stride + i).wrapping_sub(self.padding) < len);
            (0..outs).map(|o| reads(o).count()).sum()
        };
        let all = self.kh * self.kw * self.p_out();
        all - inside(self.h, self.kh, self.h_out()) * inside(self.w, self.kw, self.w_out())
    }

    /// True if at least one window fits; the layers check this before using the geometry.
    pub fn is_valid(&self) -> bool {
        self.stride > 0
            && self.kh > 0
            && self.kw > 0
            && self.h + 2 * self.padding >= self.kh
            && self.w + 2 * self.padding >= self.kw
    }

    /// For each kernel offset `(i, j)` (row-major) and output position `q`: the index
    /// `ih*W + iw` of the input pixel that the window reads, or `PADDING`. The same
    /// for every image and channel, so im2col and col2im compute it once per call.
    ///
    /// -> [KH*KW * P_out]
    fn gather_table(&self) -> Vec<u32> {
        let (ho, wo) = (self.h_out(), self.w_out());
        let mut table = Vec::with_capacity(self.kh * self.kw * ho * wo);
        for i in 0..self.kh {
            for j in 0..self.kw {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let ih = (oh * self.stride + i).wrapping_sub(self.padding);
                        let iw = (ow * self.stride + j).wrapping_sub(self.padding);
                        table.push(if ih < self.h && iw < self.w { (ih * self.w + iw) as u32 } else { PADDING });
                    }
                }
            }
        }
        table
    }
}

/// `cols[(c, i, j), n*P_out + q] = x[n, c, oh*s - p + i, ow*s - p + j]` (0 in the padding).
///
/// x: [N, C, H, W], cols: [C*KH*KW, N*P_out]. At stride 2 with the output widths of
/// the models, `im2col_k4s2`; otherwise `im2col_table`, the general path.
pub fn im2col(x: ArrayView4<f32>, g: &ConvGeom, mut cols: ArrayViewMut2<f32>) {
    let _time = crate::profile::scope(crate::profile::Phase::Im2col);
    let n = x.dim().0;
    assert_eq!(x.dim(), (n, g.c, g.h, g.w), "im2col: input shape");
    assert_eq!(cols.dim(), (g.rows(), n * g.p_out()), "im2col: cols shape");
    let x = x.as_standard_layout();
    let x = x.as_slice().expect("standard layout");
    let fast = kernel_four(g, |wo| {
        match wo {
            2 => im2col_k4s2::<2>(x, n, g, cols.view_mut()),
            4 => im2col_k4s2::<4>(x, n, g, cols.view_mut()),
            7 => im2col_k4s2::<7>(x, n, g, cols.view_mut()),
            8 => im2col_k4s2::<8>(x, n, g, cols.view_mut()),
            14 => im2col_k4s2::<14>(x, n, g, cols.view_mut()),
            16 => im2col_k4s2::<16>(x, n, g, cols.view_mut()),
            _ => return false,
        }
        true
    });
    if !fast {
        im2col_table(x, n, g, cols.as_slice_mut().expect("im2col: cols must be contiguous"));
    }
}

/// `im2col` for any geometry, on `x: [N, C, H, W]` flat. Parallel over rows of `cols`;
/// each row is, for every image, one pass of the gather table of its kernel offset.
fn im2col_table(x: &[f32], n: usize, g: &ConvGeom, cols: &mut [f32]) {
    let p_out = g.p_out();
    let table = g.gather_table();
    let plane_len = g.h * g.w;
    cols.par_chunks_mut(n * p_out).enumerate().for_each(|(row, out)| {
        let (c, offset) = (row / (g.kh * g.kw), row % (g.kh * g.kw));
        let gather = &table[offset * p_out..][..p_out];
        for (img, out) in out.chunks_exact_mut(p_out).enumerate() {
            let plane = &x[(img * g.c + c) * plane_len..][..plane_len];
            for (o, &src) in out.iter_mut().zip(gather) {
                *o = if src == PADDING { 0.0 } else { plane[src as usize] };
            }
        }
    });
}

/// The adjoint of `im2col`: `x[n, c, ih, iw] = sum of cols[(c, i, j), n*P_out + q]` over
/// every window position that reads pixel `(ih, iw)`. Overwrites `x`.
///
/// With `bias`, each plane starts from `bias[c]` instead of 0 (ConvTranspose2d's bias).
///
/// cols: [C*KH*KW, N*P_out], x: [N, C, H, W], bias: `[C]`. Parallel over the `N*C` image
/// planes; each plane sums its contributions in the fixed order `(i, j, q)`. At kernel
/// 4, stride 2, padding 1 with the models' widths, `col2im_k4s2` (the same sums as a
/// gather); otherwise `col2im_table`, the general path.
pub fn col2im(cols: ArrayView2<f32>, g: &ConvGeom, bias: Option<&[f32]>, mut x: ArrayViewMut4<f32>) {
    let _time = crate::profile::scope(crate::profile::Phase::Im2col);
    let n = x.dim().0;
    assert_eq!(x.dim(), (n, g.c, g.h, g.w), "col2im: output shape");
    let p_out = g.p_out();
    assert_eq!(cols.dim(), (g.rows(), n * p_out), "col2im: cols shape");
    if let Some(b) = bias {
        assert_eq!(b.len(), g.c, "col2im: bias length");
    }
    let cols = cols.as_standard_layout();
    let cols = cols.as_slice().expect("standard layout");
    let x = x.as_slice_mut().expect("col2im: output must be contiguous");
    let fast = kernel_four(g, |wo| {
        match wo {
            2 => col2im_k4s2::<2>(cols, n, g, bias, x),
            4 => col2im_k4s2::<4>(cols, n, g, bias, x),
            7 => col2im_k4s2::<7>(cols, n, g, bias, x),
            8 => col2im_k4s2::<8>(cols, n, g, bias, x),
            14 => col2im_k4s2::<14>(cols, n, g, bias, x),
            16 => col2im_k4s2::<16>(cols, n, g, bias, x),
            _ => return false,
        }
        true
    });
    if !fast {
        col2im_table(cols, n, g, bias, x);
    }
}

/// `col2im` for any geometry, on flat `cols` and `x`: every plane scatters its
/// contributions through the gather table, offset after offset.
fn col2im_table(cols: &[f32], n: usize, g: &ConvGeom, bias: Option<&[f32]>, x: &mut [f32]) {
    let p_out = g.p_out();
    let table = g.gather_table();
    let kernel = g.kh * g.kw;
    let row_len = n * p_out;
    x.par_chunks_mut(g.h * g.w).enumerate().for_each(|(plane_idx, plane)| {
        let (img, c) = (plane_idx / g.c, plane_idx % g.c);
        plane.fill(bias.map_or(0.0, |b| b[c]));
        for offset in 0..kernel {
            let src = &cols[(c * kernel + offset) * row_len + img * p_out..][..p_out];
            let scatter = &table[offset * p_out..][..p_out];
            for (&v, &dst) in src.iter().zip(scatter) {
                if dst != PADDING {
                    plane[dst as usize] += v;
                }
            }
        }
    });
}

/// Runs `f(W_out)` when `g` is the models' up- and down-sampling geometry: kernel
/// 4x4, stride 2, padding 1, on an even plane (so `H = 2*H_out`, `W = 2*W_out`); `f`
/// returns false for a width without a loop of its own.
fn kernel_four(g: &ConvGeom, f: impl FnOnce(usize) -> bool) -> bool {
    (g.kh, g.kw, g.stride, g.padding) == (4, 4, 2, 1)
        && g.h > 0
        && g.w > 0
        && g.h.is_multiple_of(2)
        && g.w.is_multiple_of(2)
        && f(g.w_out())
}

/// `col2im` at kernel 4, stride 2, padding 1, as a gather: pixel `(ih, iw)` is read by
/// exactly the offsets `i` of the other parity than `ih` (`ih + 1 - i` even), at output
/// row `oh = (ih + 1 - i) / 2` when that row exists, and likewise for columns. So the
/// pixel `2v` of a row adds, for each such `i` in order, `cols[(c, i, 1)][oh, v]` then
/// `cols[(c, i, 3)][oh, v - 1]`, and the pixel `2v + 1` adds `cols[(c, i, 0)][oh, v + 1]`
/// then `cols[(c, i, 2)][oh, v]`: runs of `WO` consecutive values, a constant width, in
/// place of one table look-up and one scattered add per element. The terms come in the
/// order of `col2im_table`'s offsets `(i, j)`, after the same bias, so the sums have the
/// same bits. Parallel over channels, each taking its planes image after image, so
/// that its 16 rows of cols are read in order; with few channels (a generator's
/// output), over the `N*C` planes.
fn col2im_k4s2<const WO: usize>(cols: &[f32], n: usize, g: &ConvGeom, bias: Option<&[f32]>, x: &mut [f32]) {
    let plane_len = g.h * g.w;
    if g.c >= K4_CHANNEL_TASKS {
        let mut x = ArrayViewMut3::from_shape((n, g.c, plane_len), x).expect("x is [N, C, H*W]");
        x.axis_iter_mut(Axis(1)).into_par_iter().enumerate().for_each(|(c, mut planes)| {
            for (img, mut plane) in planes.outer_iter_mut().enumerate() {
                let plane = plane.as_slice_mut().expect("a plane is contiguous");
                col2im_plane_k4s2::<WO>(cols, n, g, bias, (img, c), plane);
            }
        });
    } else {
        x.par_chunks_mut(plane_len).enumerate().for_each(|(plane_idx, plane)| {
            col2im_plane_k4s2::<WO>(cols, n, g, bias, (plane_idx / g.c, plane_idx % g.c), plane);
        });
    }
}

/// One plane `(img, c)` of `col2im_k4s2`.
fn col2im_plane_k4s2<const WO: usize>(
    cols: &[f32],
    n: usize,
    g: &ConvGeom,
    bias: Option<&[f32]>,
    (img, c): (usize, usize),
    plane: &mut [f32],
) {
    let (ho, p_out) = (g.h_out(), g.p_out());
    let row_len = n * p_out;
    let start = bias.map_or(0.0, |b| b[c]);
    // The run of output row `oh` in row `(c, i, j)` of cols.
    let run = |i: usize, j: usize, oh: usize| -> &[f32; WO] {
        cols[(c * 16 + i * 4 + j) * row_len + img * p_out + oh * WO..][..WO].try_into().expect("WO values")
    };
    for (ih, out) in plane.chunks_exact_mut(2 * WO).enumerate() {
        let (mut even, mut odd) = ([start; WO], [start; WO]);
        // The two offsets of the other parity, in increasing order, and their rows.
        let first = (ih + 1) % 2;
        for i in [first, first + 2] {
            let Some(oh) = (ih + 1).checked_sub(i).map(|t| t / 2).filter(|&oh| oh < ho) else {
                continue;
            };
            let (r0, r1, r2, r3) = (run(i, 0, oh), run(i, 1, oh), run(i, 2, oh), run(i, 3, oh));
            for v in 0..WO {
                even[v] += r1[v];
            }
            for v in 1..WO {
                even[v] += r3[v - 1];
            }
            for v in 0..WO - 1 {
                odd[v] += r0[v + 1];
            }
            for v in 0..WO {
                odd[v] += r2[v];
            }
        }
        for (pair, (&e, &o)) in out.chunks_exact_mut(2).zip(even.iter().zip(&odd)) {
            pair[0] = e;
            pair[1] = o;
        }
    }
}

/// One zero-padded plane at kernel 4, stride 2, padding 1, laid out so that each
/// window offset's whole column-matrix row is one run of `P_out` consecutive values.
///
/// Window `(i, j)` at output `(oh, ow)` reads padded pixel `(2*oh + i, 2*ow + j)`. Each
/// padded row `R` is stored four times, once per column offset `j`, as the `WO` values
/// `j, j + 2, .., j + 2*(WO - 1)` of the padded row: with `e` and `o` the even and odd
/// pixels of the unpadded row, `[0, o[..WO - 1]]`, `e`, `o` and `[e[1..], 0]`. Each
/// copy sits in section `(j, R % 2)`, at row `R / 2`. The rows `2*oh + i` that window
/// `(i, j)` reads for `oh` in `0..HO` are then the consecutive rows `i / 2 ..` of
/// section `(j, i % 2)`: `HO*WO = P_out` consecutive values, one copy into cols, where
/// a gather table looks up every element.
struct KernelFour<const WO: usize> {
    /// Rows of a section: `HO + 1`, the padded rows of one parity.
    rows: usize,
}

impl<const WO: usize> KernelFour<WO> {
    fn new(g: &ConvGeom) -> Self {
        KernelFour { rows: g.h_out() + 1 }
    }

    /// Floats of one plane's block: 4 column offsets x 2 parities x `rows` x `WO`.
    fn len(&self) -> usize {
        8 * self.rows * WO
    }

    /// The start of window `(i, j)`'s `P_out` values.
    fn window(&self, i: usize, j: usize) -> usize {
        ((j * 2 + i % 2) * self.rows + i / 2) * WO
    }

    /// Fills `block` (`len` floats) from `plane: [2*HO, 2*WO]`. The padding rows (0 and
    /// `2*HO + 1`) are never written, so they stay as the caller left them: zero.
    fn fill(&self, plane: &[f32], block: &mut [f32]) {
        for (ih, row) in plane.chunks_exact(2 * WO).enumerate() {
            let r = ih + 1;
            let (mut even, mut odd) = ([0.0; WO], [0.0; WO]);
            for (t, pair) in row.chunks_exact(2).enumerate() {
                (even[t], odd[t]) = (pair[0], pair[1]);
            }
            let at = |j: usize| ((j * 2 + r % 2) * self.rows + r / 2) * WO;
            let shifted: [[f32; WO]; 4] = [
                std::array::from_fn(|t| if t == 0 { 0.0 } else { odd[t - 1] }),
                even,
                odd,
                std::array::from_fn(|t| if t + 1 == WO { 0.0 } else { even[t + 1] }),
            ];
            for (j, values) in shifted.iter().enumerate() {
                let dst: &mut [f32; WO] = (&mut block[at(j)..][..WO]).try_into().expect("WO values");
                *dst = *values;
            }
        }
    }
}

/// Channels from which `im2col_k4s2` goes channel by channel; below, image by image.
const K4_CHANNEL_TASKS: usize = 16;

/// `im2col` at kernel 4, stride 2, padding 1 with output width `WO` (see `KernelFour`).
/// With many channels, parallel over them: each channel's 16 rows of cols are written
/// in order, whole, from the blocks of all the chunk's images (a few KiB each), so the
/// writes run along cache lines. With few (a network's first layer), parallel over
/// images. Against the phase rows this replaced (image by image, each output row's
/// `WO` values one copy, each pixel placed one at a time), with 2 threads, best of
/// 200: MNIST D conv2's 10-image chunk 96-104 us against 141, CIFAR-10 D conv2's 8
/// images 105-106 against 192; in `infogan bench --profile`, the im2col/col2im phase
/// of MNIST 10.0-10.9 ms a step against 15.3-16.1 (three alternated runs).
fn im2col_k4s2<const WO: usize>(x: &[f32], n: usize, g: &ConvGeom, mut cols: ArrayViewMut2<f32>) {
    let p_out = g.p_out();
    let plane_len = g.h * g.w;
    let layout = KernelFour::<WO>::new(g);
    let len = layout.len();
    let plane = |img: usize, c: usize| &x[(img * g.c + c) * plane_len..][..plane_len];
    if g.c >= K4_CHANNEL_TASKS {
        cols.axis_chunks_iter_mut(Axis(0), 16).into_par_iter().enumerate().for_each(|(c, mut rows)| {
            with_plane_block(n * len, |block| {
                for (img, block) in block.chunks_exact_mut(len).enumerate() {
                    layout.fill(plane(img, c), block);
                }
                for (w, mut row) in rows.outer_iter_mut().enumerate() {
                    let start = layout.window(w / 4, w % 4);
                    let row = row.as_slice_mut().expect("rows of cols are contiguous");
                    for (dst, block) in row.chunks_exact_mut(p_out).zip(block.chunks_exact(len)) {
                        dst.copy_from_slice(&block[start..][..p_out]);
                    }
                }
            });
        });
    } else {
        cols.axis_chunks_iter_mut(Axis(1), p_out).into_par_iter().enumerate().for_each(|(img, mut out)| {
            with_plane_block(len, |block| {
                for c in 0..g.c {
                    layout.fill(plane(img, c), block);
                    for w in 0..16 {
                        let mut row = out.row_mut(c * 16 + w);
                        let row = row.as_slice_mut().expect("a row of an image's columns is contiguous");
                        row.copy_from_slice(&block[layout.window(w / 4, w % 4)..][..p_out]);
                    }
                }
            });
        });
    }
}

/// The transpose of `im2col`, one row per output position:
/// `rows[n*P_out + q, (c, i, j)] = x[n, c, oh*s - p + i, ow*s - p + j]` (0 in the padding).
///
/// x: [N, C, H, W], rows: [N*P_out, C*KH*KW]. This is the layout a weight gradient
/// `dy_cm rows` wants: its GEMM sums along the positions, and with the positions as
/// rows both operands pack as plain copies, where `cols` had to be packed transposed
/// (measured on CIFAR-10 D conv2's chunk, 128x512x1024 on 2 threads: 147 GFLOP/s from
/// `cols`, 176 from `rows`).
///
/// Parallel over images. Each image's planes are copied a few at a time
/// (`IM2ROW_GROUP`) into this thread's zero-bordered block `[group, H + 2p, W + 2p]`,
/// so that a window's row is `KW` consecutive values, copied as one fixed-size move
/// at `KW == 4` (the models' kernels), and the block stays in L1 while every position
/// reads it.
pub fn im2row(x: ArrayView4<f32>, g: &ConvGeom, rows: ArrayViewMut2<f32>) {
    im2row_channels(x, g, 0..g.c, rows);
}

/// `im2row` of the channels `channels` of `x` alone: the columns of their windows,
/// `(c - channels.start, i, j)`.
///
/// x: [N, C, H, W], rows: [N*P_out, channels.len()*KH*KW].
pub fn im2row_channels(x: ArrayView4<f32>, g: &ConvGeom, channels: Range<usize>, mut rows: ArrayViewMut2<f32>) {
    let _time = crate::profile::scope(crate::profile::Phase::Im2col);
    let n = x.dim().0;
    assert_eq!(x.dim(), (n, g.c, g.h, g.w), "im2row: input shape");
    assert!(channels.end <= g.c, "im2row: channels {channels:?} of {}", g.c);
    assert_eq!(rows.dim(), (n * g.p_out(), channels.len() * g.kh * g.kw), "im2row: rows shape");
    let x = x.as_standard_layout();
    let x = x.as_slice().expect("standard layout");
    let rows = rows.as_slice_mut().expect("im2row: rows must be contiguous");
    match g.kw {
        4 => im2row_padded::<4>(x, g, channels, rows),
        _ => im2row_padded::<0>(x, g, channels, rows),
    }
}

/// `im2row_channels` with the window rows as `[f32; KW]` moves, or (`KW == 0`) as
/// slice copies of `g.kw` values.
fn im2row_padded<const KW: usize>(x: &[f32], g: &ConvGeom, channels: Range<usize>, rows: &mut [f32]) {
    let window = g.kh * g.kw;
    let (p_out, wo, k) = (g.p_out(), g.w_out(), channels.len() * window);
    let (hp, wp) = (g.h + 2 * g.padding, g.w + 2 * g.padding);
    let plane_len = g.h * g.w;
    let count = channels.len();
    rows.par_chunks_mut(p_out * k).enumerate().for_each(|(img, out)| {
        // Zeroed once per image: every plane writes the same pixels, so the border stays 0.
        with_plane_block(IM2ROW_GROUP.min(count) * hp * wp, |block| {
            for c0 in (0..count).step_by(IM2ROW_GROUP) {
                let group = IM2ROW_GROUP.min(count - c0);
                for (c, bordered) in block.chunks_exact_mut(hp * wp).take(group).enumerate() {
                    let plane = &x[(img * g.c + channels.start + c0 + c) * plane_len..][..plane_len];
                    for (ih, row) in plane.chunks_exact(g.w).enumerate() {
                        bordered[(ih + g.padding) * wp + g.padding..][..g.w].copy_from_slice(row);
                    }
                }
                for (q, dst) in out.chunks_exact_mut(k).enumerate() {
                    let (oh, ow) = (q / wo, q % wo);
                    let dst = &mut dst[c0 * window..][..group * window];
                    for (c, dst) in dst.chunks_exact_mut(window).enumerate() {
                        let corner = (c * hp + oh * g.stride) * wp + ow * g.stride;
                        for (i, dst) in dst.chunks_exact_mut(g.kw).enumerate() {
                            let src = &block[corner + i * wp..][..g.kw];
                            if KW == 0 {
                                dst.copy_from_slice(src);
                            } else {
                                let dst: &mut [f32; KW] = dst.try_into().expect("KW values");
                                *dst = src.try_into().expect("KW values");
                            }
                        }
                    }
                }
            }
        });
    });
}

/// Channels `im2row` borders at a time. All of an image's (64 KiB for 64 planes of
/// 16x16) would leave L1 while each position reads its windows from every plane; one
/// at a time, each position's window is one cache line, and the lines of consecutive
/// positions, a row of `rows` apart (4 KiB at 64 channels), all fall in one L1 set.
/// Eight planes (10 KiB at 16x16) stay in L1 and make each position's write eight
/// consecutive lines. CIFAR-10 D conv2's 8-image chunk, 2 threads, best of 200:
/// 209 us for whole images, 142 a plane at a time, 99-105 in groups of 8 (97-108 in
/// groups of 4 or 16).
const IM2ROW_GROUP: usize = 8;

thread_local! {
    /// Each thread's plane blocks (`KernelFour`) or bordered image (`im2row`), kept
    /// from call to call.
    static PLANE_BLOCK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The longest plane block any thread has used.
static PLANE_BLOCK_MOST: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` on this thread's plane block, `len` zeros. Every block is given the room
/// of the longest any thread has used: which thread unfolds which image changes from
/// call to call, and a block that grew only when its thread first met the longest
/// would still allocate steps later.
fn with_plane_block(len: usize, f: impl FnOnce(&mut [f32])) {
    let most = PLANE_BLOCK_MOST.fetch_max(len, Ordering::Relaxed).max(len);
    PLANE_BLOCK.with(|block| {
        let block = &mut *block.borrow_mut();
        block.clear();
        block.reserve(most);
        block.resize(len, 0.0);
        f(block);
    });
}

/// Channel-major from batch-major: `cm[c, n*P + q] = x[n, c, q]`.
///
/// x: [N, C, P], cm: [C, N*P]. Parallel over channels (rows of `cm`).
pub fn to_channel_major(x: ArrayView3<f32>, mut cm: ArrayViewMut2<f32>) {
    let _time = crate::profile::scope(crate::profile::Phase::Layout);
    let (n, c, p) = x.dim();
    assert_eq!(cm.dim(), (c, n * p), "to_channel_major: output shape for input {:?}", x.dim());
    let x = x.as_standard_layout();
    let x = x.as_slice().expect("standard layout");
    let cm = cm.as_slice_mut().expect("to_channel_major: output must be contiguous");
    cm.par_chunks_mut(n * p).enumerate().for_each(|(ch, row)| {
        for (img, dst) in row.chunks_exact_mut(p).enumerate() {
            dst.copy_from_slice(&x[(img * c + ch) * p..][..p]);
        }
    });
}

/// Batch-major from channel-major, plus a per-channel bias:
/// `x[n, c, q] = cm[c, n*P + q] + bias[c]`.
///
/// cm: [C, N*P], x: [N, C, P], bias: `[C]` or none. Parallel over images.
pub fn from_channel_major(cm: ArrayView2<f32>, bias: Option<&[f32]>, mut x: ArrayViewMut3<f32>) {
    let _time = crate::profile::scope(crate::profile::Phase::Layout);
    let (n, c, p) = x.dim();
    assert_eq!(cm.dim(), (c, n * p), "from_channel_major: input shape for output {:?}", x.dim());
    if let Some(b) = bias {
        assert_eq!(b.len(), c, "from_channel_major: bias length");
    }
    let cm = cm.as_standard_layout();
    let cm = cm.as_slice().expect("standard layout");
    let x = x.as_slice_mut().expect("from_channel_major: output must be contiguous");
    x.par_chunks_mut(c * p).enumerate().for_each(|(img, planes)| {
        for (ch, dst) in planes.chunks_exact_mut(p).enumerate() {
            let src = &cm[ch * n * p + img * p..][..p];
            let b = bias.map_or(0.0, |b| b[ch]);
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s + b;
            }
        }
    });
}

/// Channels summed together by `row_sums_into` and `channel_sums_into`: each channel
/// is one chain of f64 adds in a fixed order, whose latency (4 cycles an add) one
/// chain alone would wait out on every value; eight chains side by side keep the adder
/// busy, and each still adds its values in the same order.
const SUM_CHANNELS: usize = 8;

/// `acc[r] += run r`, value after value, for runs of one length (at most
/// `SUM_CHANNELS` of them): `runs[r][0]`, then `runs[r][1]`, and so on.
fn add_runs(acc: &mut [f64], runs: &[&[f32]]) {
    let len = runs.first().map_or(0, |r| r.len());
    assert!(runs.iter().all(|r| r.len() == len), "add_runs: runs of one length");
    if let (Ok(acc), Ok(runs)) =
        (<&mut [f64; SUM_CHANNELS]>::try_from(&mut *acc), <&[&[f32]; SUM_CHANNELS]>::try_from(runs))
    {
        for q in 0..len {
            for (a, run) in acc.iter_mut().zip(runs) {
                *a += run[q] as f64;
            }
        }
    } else {
        for (a, run) in acc.iter_mut().zip(runs) {
            run.iter().for_each(|&v| *a += v as f64);
        }
    }
}

/// `out[c] += sum of the row m[c, ..]`, each row summed in order (in f64), blocks of
/// rows in parallel: the per-channel bias gradient of a channel-major `dy`.
///
/// m: [C, L], out: `[C]`
pub fn row_sums_into(m: ArrayView2<f32>, out: &mut [f32]) {
    let _time = crate::profile::scope(crate::profile::Phase::Layout);
    assert_eq!(m.nrows(), out.len(), "row_sums_into: {} rows but {} outputs", m.nrows(), out.len());
    let m = m.as_standard_layout();
    out.par_chunks_mut(SUM_CHANNELS).zip(m.axis_chunks_iter(Axis(0), SUM_CHANNELS)).for_each(|(out, rows)| {
        // From -0.0, as `Iterator::sum` starts an f64 sum.
        let mut acc = [-0.0f64; SUM_CHANNELS];
        let runs: [&[f32]; SUM_CHANNELS] =
            std::array::from_fn(|r| if r < out.len() { rows.row(r).to_slice().expect("standard layout") } else { &[] });
        add_runs(&mut acc[..out.len()], &runs[..out.len()]);
        out.iter_mut().zip(acc).for_each(|(o, a)| *o += a as f32);
    });
}

/// `out[c] += sum over n and q of x[n, c, q]`, in that order (in f64), blocks of
/// channels in parallel: the per-channel bias gradient of a batch-major `dy`.
///
/// x: [N, C, P], out: `[C]`
pub fn channel_sums_into(x: ArrayView3<f32>, out: &mut [f32]) {
    let _time = crate::profile::scope(crate::profile::Phase::Layout);
    let (n, c, p) = x.dim();
    assert_eq!(c, out.len(), "channel_sums_into: {c} channels but {} outputs", out.len());
    let x = x.as_standard_layout();
    let x = x.as_slice().expect("standard layout");
    out.par_chunks_mut(SUM_CHANNELS).enumerate().for_each(|(block, out)| {
        let c0 = block * SUM_CHANNELS;
        let mut acc = [-0.0f64; SUM_CHANNELS];
        for img in 0..n {
            let planes = &x[(img * c + c0) * p..][..out.len() * p];
            let runs: [&[f32]; SUM_CHANNELS] =
                std::array::from_fn(|r| if r < out.len() { &planes[r * p..][..p] } else { &[] });
            add_runs(&mut acc[..out.len()], &runs[..out.len()]);
        }
        out.iter_mut().zip(acc).for_each(|(o, a)| *o += a as f32);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, random_array};
    use ndarray::{Array2, Array4};

    fn geoms() -> Vec<ConvGeom> {
        let mut v = Vec::new();
        for &(c, h, w) in &[(1, 5, 5), (3, 7, 6), (2, 8, 8), (2, 1, 4), (1, 1, 1), (1, 2, 1)] {
            for &(kh, kw) in &[(1, 1), (3, 3), (4, 4), (2, 3)] {
                for stride in 1..=3 {
                    for padding in 0..=2 {
                        let g = ConvGeom { c, h, w, kh, kw, stride, padding };
                        if g.is_valid() {
                            v.push(g);
                        }
                    }
                }
            }
        }
        v
    }

    /// The direct definition, one element at a time.
    fn im2col_naive(x: &Array4<f32>, g: &ConvGeom) -> Array2<f32> {
        let n = x.dim().0;
        let (ho, wo) = (g.h_out(), g.w_out());
        let mut cols = Array2::zeros((g.rows(), n * ho * wo));
        for img in 0..n {
            for c in 0..g.c {
                for i in 0..g.kh {
                    for j in 0..g.kw {
                        for oh in 0..ho {
                            for ow in 0..wo {
                                let ih = (oh * g.stride + i) as isize - g.padding as isize;
                                let iw = (ow * g.stride + j) as isize - g.padding as isize;
                                if ih >= 0 && iw >= 0 && (ih as usize) < g.h && (iw as usize) < g.w {
                                    cols[[(c * g.kh + i) * g.kw + j, img * ho * wo + oh * wo + ow]] =
                                        x[[img, c, ih as usize, iw as usize]];
                                }
                            }
                        }
                    }
                }
            }
        }
        cols
    }

    /// The padding reads are the zeros that padding puts into the column matrix (an
    /// image of ones has no other zeros).
    #[test]
    fn padding_reads_are_the_padding_zeros_of_the_columns() {
        for g in geoms().into_iter().chain(stride_two_geoms()) {
            let ones = Array4::from_elem((1, 1, g.h, g.w), 1.0f32);
            let one_channel = ConvGeom { c: 1, ..g };
            let zeros = im2col_naive(&ones, &one_channel).iter().filter(|&&v| v == 0.0).count();
            assert_eq!(g.padding_reads(), zeros, "{g:?}");
        }
        // CIFAR-10 D conv3, 8x8 -> 4x4: 14 of the 16 (kernel row, output row) pairs read
        // inside the image, and as many column pairs: 60 of 256 reads (23%) are padding.
        let conv3 = ConvGeom { c: 128, h: 8, w: 8, kh: 4, kw: 4, stride: 2, padding: 1 };
        assert_eq!(conv3.padding_reads(), 256 - 14 * 14);
    }

    /// im2row is im2col's transpose, on every geometry of both lists.
    #[test]
    fn im2row_is_the_transpose_of_im2col() {
        for (seed, g) in geoms().into_iter().chain(stride_two_geoms()).enumerate() {
            let x = random_array([3, g.c, g.h, g.w], 700 + seed as u64);
            let mut rows = Array2::from_elem((3 * g.p_out(), g.rows()), f32::NAN);
            im2row(x.view(), &g, rows.view_mut());
            assert_close(&rows, &im2col_naive(&x, &g).t(), 0.0, 0.0, &format!("im2row {g:?}"));
        }
    }

    #[test]
    fn im2col_matches_direct_definition() {
        for (seed, g) in geoms().into_iter().enumerate() {
            let x = random_array([2, g.c, g.h, g.w], seed as u64);
            let mut cols = Array2::from_elem((g.rows(), 2 * g.p_out()), f32::NAN);
            im2col(x.view(), &g, cols.view_mut());
            assert_close(&cols, &im2col_naive(&x, &g), 0.0, 0.0, &format!("im2col {g:?}"));
        }
    }

    /// <im2col(x), c> == <x, col2im(c)> for random x and c: col2im is im2col's transpose.
    #[test]
    fn col2im_is_adjoint_of_im2col() {
        for (seed, g) in geoms().into_iter().enumerate() {
            let x = random_array([3, g.c, g.h, g.w], seed as u64);
            let c = random_array([g.rows(), 3 * g.p_out()], 1000 + seed as u64);
            let mut cols = Array2::zeros(c.dim());
            im2col(x.view(), &g, cols.view_mut());
            let mut back = Array4::from_elem(x.dim(), f32::NAN);
            col2im(c.view(), &g, None, back.view_mut());
            let lhs: f64 = cols.iter().zip(c.iter()).map(|(a, b)| *a as f64 * *b as f64).sum();
            let rhs: f64 = x.iter().zip(back.iter()).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!(
                (lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()),
                "{g:?}: <im2col x, c> = {lhs} but <x, col2im c> = {rhs}"
            );
        }
    }

    /// Stride-2 geometries with every output width `im2col_k4s2` has a loop for, with
    /// few channels (image by image) and many (channel by channel), and some beside
    /// them that fall back to the tables.
    fn stride_two_geoms() -> Vec<ConvGeom> {
        let mut v = Vec::new();
        for &(c, h, w) in &[
            (2, 28, 28),
            (3, 14, 14),
            (2, 32, 32),
            (3, 16, 16),
            (2, 8, 8),
            (3, 4, 4),
            (2, 9, 8),
            (1, 17, 15),
            (20, 14, 14),
            (17, 8, 8),
            (16, 16, 16),
            (16, 4, 4),
        ] {
            for &(kh, kw, padding) in &[(4, 4, 1), (3, 3, 1), (4, 4, 0), (2, 3, 2), (5, 4, 2)] {
                let g = ConvGeom { c, h, w, kh, kw, stride: 2, padding };
                if g.is_valid() {
                    v.push(g);
                }
            }
        }
        v
    }

    /// The kernel-4 loops give the definition's values.
    #[test]
    fn kernel_four_im2col_matches_the_definition() {
        let mut fast = 0;
        for (seed, g) in stride_two_geoms().into_iter().enumerate() {
            fast += usize::from(kernel_four(&g, |wo| [2, 4, 7, 8, 14, 16].contains(&wo)));
            let x = random_array([3, g.c, g.h, g.w], seed as u64);
            let mut cols = Array2::from_elem((g.rows(), 3 * g.p_out()), f32::NAN);
            im2col(x.view(), &g, cols.view_mut());
            assert_close(&cols, &im2col_naive(&x, &g), 0.0, 0.0, &format!("im2col {g:?}"));
        }
        assert!(fast >= 10, "only {fast} geometries took the kernel-4 loops");
    }

    /// The gather at kernel 4, stride 2, padding 1 gives the scatter's bits, with and
    /// without a bias, on every width it has a loop for, by planes and by channels.
    #[test]
    fn kernel_four_col2im_has_the_scatter_bits() {
        let mut fast = 0;
        for (seed, &(c, h, w)) in [
            (2, 4, 4),
            (3, 8, 8),
            (1, 14, 14),
            (2, 16, 16),
            (2, 28, 28),
            (3, 32, 32),
            (2, 8, 16),
            (1, 6, 4),
            (2, 10, 10),
            (16, 8, 8),
            (20, 14, 14),
        ]
        .iter()
        .enumerate()
        {
            let g = ConvGeom { c, h, w, kh: 4, kw: 4, stride: 2, padding: 1 };
            fast += usize::from(kernel_four(&g, |wo| [2, 4, 7, 8, 14, 16].contains(&wo)));
            let n = 3;
            let cols = random_array([g.rows(), n * g.p_out()], 50 + seed as u64);
            let bias: Vec<f32> = (0..c).map(|k| k as f32 - 0.75).collect();
            for bias in [None, Some(&bias[..])] {
                let mut got = Array4::from_elem((n, c, h, w), f32::NAN);
                col2im(cols.view(), &g, bias, got.view_mut());
                let mut want = Array4::from_elem((n, c, h, w), f32::NAN);
                col2im_table(cols.as_slice().unwrap(), n, &g, bias, want.as_slice_mut().unwrap());
                assert_close(&got, &want, 0.0, 0.0, &format!("col2im {g:?}, bias {}", bias.is_some()));
            }
        }
        assert!(fast >= 9, "only {fast} geometries took the gather");
    }

    #[test]
    fn channel_major_round_trip() {
        let x = random_array([3, 4, 5], 7);
        let mut cm = Array2::zeros((4, 15));
        to_channel_major(x.view(), cm.view_mut());
        assert_eq!(cm[[2, 5 + 3]], x[[1, 2, 3]]);
        let bias = [1.0, 2.0, 3.0, 4.0];
        let mut back = ndarray::Array3::zeros((3, 4, 5));
        from_channel_major(cm.view(), Some(&bias), back.view_mut());
        let expected = &x + &ndarray::Array3::from_shape_fn((3, 4, 5), |(_, c, _)| bias[c]);
        assert_close(&back, &expected, 0.0, 0.0, "channel-major round trip");
    }

    /// The bias-gradient sums add each channel's values in order from -0.0, in f64, as
    /// one `Iterator::sum` per channel does: the same bits, for every count of channels
    /// (whole blocks of `SUM_CHANNELS`, a ragged last block, fewer than one block),
    /// and a channel of negative zeros keeps its sign.
    #[test]
    fn bias_sums_have_the_bits_of_one_sum_per_channel() {
        for (n, c, p) in [(3, 1, 5), (2, 7, 9), (4, 8, 1), (3, 9, 13), (2, 17, 49), (0, 3, 4)] {
            let mut x: ndarray::Array3<f32> = random_array([n, c, p], (n * 100 + c * 10 + p) as u64);
            // Values of many magnitudes, so that the order of the adds shows in the bits.
            x.indexed_iter_mut().for_each(|((i, _, q), v)| *v *= 10f32.powi((i * 7 + q) as i32 % 9 - 4));
            if c > 1 {
                x.slice_mut(ndarray::s![.., 1, ..]).fill(-0.0);
            }
            let start: Vec<f32> = (0..c).map(|ch| if ch == 1 { -0.0 } else { ch as f32 * 0.25 }).collect();
            let want: Vec<f32> = (0..c)
                .map(|ch| start[ch] + x.slice(ndarray::s![.., ch, ..]).iter().map(|&v| v as f64).sum::<f64>() as f32)
                .collect();
            let mut got = start.clone();
            channel_sums_into(x.view(), &mut got);
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "channel_sums_into on [{n}, {c}, {p}]");

            let cm = Array2::from_shape_fn((c, n * p), |(ch, t)| x[[t / p, ch, t % p]]);
            let want: Vec<f32> =
                (0..c).map(|ch| start[ch] + cm.row(ch).iter().map(|&v| v as f64).sum::<f64>() as f32).collect();
            let mut got = start.clone();
            row_sums_into(cm.view(), &mut got);
            assert_eq!(bits(&got), bits(&want), "row_sums_into on [{c}, {}]", n * p);
        }
    }
}
