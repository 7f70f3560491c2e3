//! Packing: copies of a GEMM operand's block into the panel order the micro-kernels
//! read from, zero-padded to whole panels.
//!
//! - A `[mc, kc]` becomes panels of `MR` rows: `out[(r / MR)*kc*MR + p*MR + r % MR] = A[r, p]`.
//! - B `[kc, nc]` becomes panels of `NR` columns: `out[(j / NR)*kc*NR + p*NR + j % NR] = B[p, j]`.
//!
//! A packed panel is read with unit stride, stays in the cache level its loop needs,
//! and has no ragged edge. Each operand comes in one of two layouts: its lines along
//! the panel (A's columns, B's rows) are contiguous, and a panel is a run of copies;
//! or its lines across the panel are (A's rows, B's columns), and a panel is a
//! transpose (`simd::transpose_lines`). Any other strides take an element loop.

use ndarray::ArrayView2;

use super::simd::{prefetch, transpose_lines};

/// Floats of padding that make a buffer's start 64-byte aligned (a cache line).
const ALIGN: usize = 16;

/// A grow-only buffer whose slices start on a cache line, kept across calls (one per
/// thread) so that packing allocates nothing after the first GEMMs.
#[derive(Default)]
pub(crate) struct PackBuf {
    raw: Vec<f32>,
}

impl PackBuf {
    /// Room for `len` floats from now on, so that a later `get` of at most `len`
    /// does not allocate.
    pub(crate) fn reserve(&mut self, len: usize) {
        if self.raw.len() < len + ALIGN {
            self.raw.resize(len + ALIGN, 0.0);
        }
    }

    /// `len` floats starting on a 64-byte boundary; the contents are unspecified.
    pub(crate) fn get(&mut self, len: usize) -> &mut [f32] {
        self.reserve(len);
        let misalign = (self.raw.as_ptr() as usize / 4) % ALIGN;
        let start = (ALIGN - misalign) % ALIGN;
        &mut self.raw[start..start + len]
    }
}

/// Packed length of an `[mc, kc]` A block in panels of `mr` rows.
pub(crate) fn packed_a_len(mc: usize, kc: usize, mr: usize) -> usize {
    mc.div_ceil(mr) * mr * kc
}

/// Packed length of a `[kc, nc]` B block in panels of `nr` columns.
pub(crate) fn packed_b_len(kc: usize, nc: usize, nr: usize) -> usize {
    nc.div_ceil(nr) * nr * kc
}

/// a: [mc, kc] -> out: panels of `MR` rows (see the module comment).
pub(crate) fn pack_a<const MR: usize>(a: ArrayView2<f32>, out: &mut [f32]) {
    let (mc, kc) = a.dim();
    assert_eq!(out.len(), packed_a_len(mc, kc, MR), "pack_a: buffer length for a {mc}x{kc} block");
    for (panel, dst) in out.chunks_exact_mut(kc * MR).enumerate() {
        let r0 = panel * MR;
        let block = a.slice(ndarray::s![r0..(r0 + MR).min(mc), ..]);
        pack_panel::<MR>(block, dst);
    }
}

/// Rows of B that `pack_b` asks the CPU for ahead of the row it copies. A weight
/// packed as B (`dx = dy W` of MNIST's dense layers: rows of 4 or 25 KiB, a page or
/// more apart, each block's row a run of 1 KiB) comes from memory, and the hardware
/// prefetchers, which follow a run within a page, start over on every row. Measured
/// with `infogan bench --dataset mnist --profile`, 2 threads, AVX-512, minimum of four
/// alternated runs in each of three sittings: 64x6272x1024 5.03-5.47 ms a step
/// against 6.03-6.07 without, 64x1024x6272 4.22-4.50 against 4.49-4.76.
const PREFETCH_ROWS: usize = 8;

/// b: [kc, nc] -> out: panels of `NR` columns (see the module comment).
pub(crate) fn pack_b<const NR: usize>(b: ArrayView2<f32>, out: &mut [f32]) {
    let (kc, nc) = b.dim();
    assert_eq!(out.len(), packed_b_len(kc, nc, NR), "pack_b: buffer length for a {kc}x{nc} block");
    let panel_len = kc * NR;
    if b.strides()[1] == 1 || nc == 1 {
        // Rows contiguous (the usual case: an im2col matrix, activations): each row of
        // the block is cut into runs of NR floats, one per panel. Row by row rather than
        // panel by panel, so that B is read in order.
        for (p, row) in b.rows().into_iter().enumerate() {
            let row = row.to_slice().expect("unit column stride");
            if p + PREFETCH_ROWS < kc {
                prefetch(b.row(p + PREFETCH_ROWS).to_slice().expect("unit column stride"));
            }
            for (panel, run) in row.chunks(NR).enumerate() {
                copy_padded::<NR>(run, &mut out[panel * panel_len + p * NR..][..NR]);
            }
        }
        return;
    }
    for (panel, dst) in out.chunks_exact_mut(panel_len).enumerate() {
        let j0 = panel * NR;
        let block = b.slice(ndarray::s![.., j0..(j0 + NR).min(nc)]);
        // B's panel is A's panel of B^T: `NR` lines across, kc along.
        pack_panel::<NR>(block.reversed_axes(), dst);
    }
}

/// One panel: `dst[p*W + r] = block[r, p]` for the block's `rows <= W` rows
/// and `kc` columns, zeros for the rows beyond.
fn pack_panel<const W: usize>(block: ArrayView2<f32>, dst: &mut [f32]) {
    let (rows, kc) = block.dim();
    if let Some((flat, stride)) = lines(block.t()) {
        // Row r is flat[r*stride..][..kc]: a transpose.
        transpose_lines(flat, stride, rows, kc, dst, W);
    } else if let Some((flat, stride)) = lines(block) {
        // Column p is flat[p*stride..][..rows]: one copy per p.
        for (p, d) in dst.chunks_exact_mut(W).enumerate() {
            copy_padded::<W>(&flat[p * stride..][..rows], d);
        }
    } else {
        for (p, d) in dst.chunks_exact_mut(W).enumerate() {
            for (r, d) in d.iter_mut().enumerate() {
                *d = if r < rows { block[[r, p]] } else { 0.0 };
            }
        }
    }
}

/// `dst = src` followed by zeros, for `src` of at most `W` floats and `dst` of `W`. A
/// whole `src` is a copy of a constant size, a few vector moves, where a copy of a
/// run's length calls memcpy for each run.
fn copy_padded<const W: usize>(src: &[f32], dst: &mut [f32]) {
    if let (Ok(d), Ok(s)) = (<&mut [f32; W]>::try_from(&mut *dst), <&[f32; W]>::try_from(src)) {
        *d = *s;
    } else {
        dst[..src.len()].copy_from_slice(src);
        dst[src.len()..].fill(0.0);
    }
}

/// For a view `[len, count]` whose columns are contiguous lines (row stride 1, and
/// lines that do not overlap): the memory from its first element to its last as one
/// slice, and the distance between lines, so that column `q` is
/// `flat[q*stride..][..len]`. `None` for any other layout.
pub(crate) fn lines<'a>(view: ArrayView2<'a, f32>) -> Option<(&'a [f32], usize)> {
    let (len, count) = view.dim();
    if len == 0 || count == 0 || (len > 1 && view.strides()[0] != 1) {
        return None;
    }
    // A single line's stride means nothing: call it the line's length.
    let stride = if count == 1 { len as isize } else { view.strides()[1] };
    if stride < len as isize {
        return None;
    }
    let stride = stride as usize;
    let extent = (count - 1) * stride + len;
    // SAFETY: the view's elements are at ptr + i + q*stride for i < len, q < count, all
    // inside the array it borrows; the slice covers ptr .. ptr + extent, from the first
    // element to one past the last, inside that same allocation. The view is a shared
    // borrow for 'a, so nothing writes to that memory while the slice lives.
    Some((unsafe { std::slice::from_raw_parts(view.as_ptr(), extent) }, stride))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_array;
    use ndarray::{Array2, s};

    fn check_a<const MR: usize>(a: ArrayView2<f32>) {
        let (mc, kc) = a.dim();
        let mut out = vec![f32::NAN; packed_a_len(mc, kc, MR)];
        pack_a::<MR>(a, &mut out);
        for (idx, &v) in out.iter().enumerate() {
            let (panel, p, i) = (idx / (kc * MR), idx % (kc * MR) / MR, idx % MR);
            let r = panel * MR + i;
            let want = if r < mc { a[[r, p]] } else { 0.0 };
            assert_eq!(v, want, "pack_a {mc}x{kc} MR={MR} at panel {panel} p {p} i {i}");
        }
    }

    fn check_b<const NR: usize>(b: ArrayView2<f32>) {
        let (kc, nc) = b.dim();
        let mut out = vec![f32::NAN; packed_b_len(kc, nc, NR)];
        pack_b::<NR>(b, &mut out);
        for (idx, &v) in out.iter().enumerate() {
            let (panel, p, j) = (idx / (kc * NR), idx % (kc * NR) / NR, idx % NR);
            let col = panel * NR + j;
            let want = if col < nc { b[[p, col]] } else { 0.0 };
            assert_eq!(v, want, "pack_b {kc}x{nc} NR={NR} at panel {panel} p {p} j {j}");
        }
    }

    /// Every layout (rows contiguous, columns contiguous, both strided) and every edge
    /// (full panels, a ragged last panel, a single row or column) against the definition.
    #[test]
    fn packing_matches_definition() {
        for &(r, c) in &[(1, 1), (5, 3), (8, 7), (13, 9), (17, 33), (6, 16), (40, 1), (1, 40), (33, 70)] {
            let m: Array2<f32> = random_array([r, c], (r * 100 + c) as u64);
            let t: Array2<f32> = m.t().to_owned();
            let wide: Array2<f32> = random_array([r, 2 * c], 7);
            let tall: Array2<f32> = random_array([2 * c, r], 8);
            for view in [
                m.view(),
                t.t(),
                wide.slice(s![.., ..;2]),
                wide.slice(s![.., 1..c + 1]),
                tall.slice(s![1..c + 1, ..]).reversed_axes(),
            ] {
                check_a::<8>(view);
                check_a::<6>(view);
                check_b::<32>(view);
                check_b::<16>(view);
            }
        }
    }

    #[test]
    fn lines_of_a_view_with_contiguous_columns() {
        let store: Array2<f32> = random_array([6, 9], 3);
        // [5, 3]: column q is row 1+q of the store, columns 2..7: 5 floats, 9 apart.
        let view = store.slice(s![1..4, 2..7]).reversed_axes();
        let (flat, stride) = lines(view).expect("contiguous columns");
        assert_eq!(stride, 9);
        for q in 0..3 {
            assert_eq!(&flat[q * stride..][..5], store.slice(s![1 + q, 2..7]).to_vec().as_slice());
        }
        assert!(lines(store.view()).is_none(), "a row-major view's columns are strided");
    }

    #[test]
    fn pack_buffers_are_cache_line_aligned() {
        let mut buf = PackBuf::default();
        for len in [1, 100, 4096, 7] {
            assert_eq!(buf.get(len).as_ptr() as usize % 64, 0, "length {len}");
            assert_eq!(buf.get(len).len(), len);
        }
    }
}
