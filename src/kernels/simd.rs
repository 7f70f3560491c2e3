//! The transposing copy that packing needs when an operand's contiguous lines run
//! across the panel (A with contiguous rows, B with contiguous columns): 8x8 blocks
//! transposed in AVX registers, with a scalar loop for what is left and for CPUs
//! without AVX2.

/// `dst[p*width + r] = src[r*stride + p]` for `r < lines`, `p < len`, and zeros in
/// `dst[p*width + r]` for `lines <= r < width`. That is: `lines` lines of `len` floats,
/// `stride` apart in `src`, become the columns of a `[len, width]` row-major block.
pub(crate) fn transpose_lines(src: &[f32], stride: usize, lines: usize, len: usize, dst: &mut [f32], width: usize) {
    assert!(lines <= width, "transpose_lines: {lines} lines into a block {width} wide");
    assert_eq!(dst.len(), len * width, "transpose_lines: destination length for [{len}, {width}]");
    if lines == 0 || len == 0 {
        dst.fill(0.0);
        return;
    }
    assert!(
        src.len() >= (lines - 1) * stride + len,
        "transpose_lines: {lines} lines of {len} floats {stride} apart need more than {} source floats",
        src.len()
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; the asserts above bound every index the function
        // reads (line r < lines at r*stride + p, p < len) and writes (p*width + r).
        unsafe { x86::transpose_lines_avx2(src.as_ptr(), stride, lines, len, dst.as_mut_ptr(), width) };
        return;
    }
    transpose_lines_scalar(src, stride, lines, len, dst, width);
}

/// Asks the CPU to bring every cache line of `data` into L1 ahead of its use: a
/// hint, with no effect on any result.
pub(crate) fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16).map(|c| c.as_ptr()).chain(data.last().map(|v| v as *const f32)) {
        // SAFETY: PREFETCHT0 is part of SSE, which every x86-64 CPU has; it reads no
        // memory architecturally (it cannot fault), and the address is inside `data`.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Whether `vectorized!` functions run their AVX2 build: the instruction set in use
/// (`microkernel::isa`, which `INFOGAN_ISA` caps) is not the portable one, and the
/// CPU has AVX2.
pub(crate) fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::microkernel::isa() != super::microkernel::Isa::Portable
        && std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A function built twice, for AVX2 and for the crate's baseline (x86-64, whose SSE2
/// vectors hold 4 floats where AVX2's hold 8), and run in the first when `wide()`:
/// for the element-wise loops of batch norm and the activations. Measured with
/// `infogan bench --profile`, 2 threads, AVX-512 machine, minimum of four alternated
/// runs, two sittings: CIFAR-10 batch norm 4.35-4.83 ms a step against 5.61-6.25,
/// activations 4.87-5.39 against 5.55-5.96; MNIST batch norm 4.82-5.37 against
/// 6.52-6.86, activations 2.48-2.57 against 3.01-3.03. (im2col, col2im and the layout
/// moves built this way gained nothing.) No result changes: only "avx2" is enabled,
/// not "fma", so no multiply and add are fused, and every vector operation rounds as
/// its scalar one does.
macro_rules! vectorized {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::kernels::wide() {
                // SAFETY: `wide()` found AVX2 on this CPU.
                return unsafe { avx2($($arg),*) };
            }
            body($($arg),*)
        }
    };
}
pub(crate) use vectorized;

/// Orders the non-temporal stores made so far before any later store, so that the
/// thread that waits for this one's task sees them (`MicroKernel::tile`'s `stream`).
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SFENCE is part of SSE, which every x86-64 CPU has.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// The reference, one element at a time.
pub(crate) fn transpose_lines_scalar(
    src: &[f32],
    stride: usize,
    lines: usize,
    len: usize,
    dst: &mut [f32],
    width: usize,
) {
    for (p, row) in dst.chunks_exact_mut(width).take(len).enumerate() {
        for (r, d) in row.iter_mut().enumerate() {
            *d = if r < lines { src[r * stride + p] } else { 0.0 };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// As `transpose_lines`, in 8x8 blocks: eight lines are loaded in half-rows and
    /// transposed within each 128-bit lane (`transpose8_lines`), or, where fewer than
    /// eight lines are left, loaded with zeros for the rest and transposed with the
    /// unpack / shuffle / permute sequence (`transpose8`); each block is stored as eight
    /// rows of up to eight floats.
    ///
    /// # Safety
    /// AVX2 is present; `src` holds `(lines - 1)*stride + len` floats, `dst`
    /// `len*width`, and `lines <= width`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose_lines_avx2(
        src: *const f32,
        stride: usize,
        lines: usize,
        len: usize,
        dst: *mut f32,
        width: usize,
    ) {
        let full = len / 8 * 8;
        for g in (0..width).step_by(8) {
            let lanes = (width - g).min(8);
            let store_mask = lane_mask(lanes);
            let valid = lines.saturating_sub(g).min(8);
            for p in (0..full).step_by(8) {
                let t = if valid == 8 {
                    // SAFETY: lines g..g+8 < lines, and p+8 <= len.
                    unsafe { transpose8_lines(src.add(g * stride + p), stride) }
                } else {
                    let mut r = [_mm256_setzero_ps(); 8];
                    for (i, r) in r.iter_mut().enumerate().take(valid) {
                        // SAFETY: line g+i < lines, and p+8 <= len.
                        *r = unsafe { _mm256_loadu_ps(src.add((g + i) * stride + p)) };
                    }
                    transpose8(r)
                };
                for (q, t) in t.iter().enumerate() {
                    // SAFETY: row p+q < len; lanes g..g+lanes < width. A full row takes a
                    // plain store: AMD's Zen cores microcode vmaskmovps stores, which
                    // made this loop several times slower.
                    unsafe {
                        let d = dst.add((p + q) * width + g);
                        if lanes == 8 { _mm256_storeu_ps(d, *t) } else { _mm256_maskstore_ps(d, store_mask, *t) }
                    }
                }
            }
            for p in full..len {
                for i in 0..lanes {
                    let v = if i < valid {
                        // SAFETY: line g+i < lines and p < len.
                        unsafe { *src.add((g + i) * stride + p) }
                    } else {
                        0.0
                    };
                    // SAFETY: p < len and g+i < width.
                    unsafe { *dst.add(p * width + g + i) = v };
                }
            }
        }
    }

    /// Lanes `0..lanes` selected, for maskload / maskstore.
    #[target_feature(enable = "avx2")]
    fn lane_mask(lanes: usize) -> __m256i {
        _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// The transpose of the 8x8 block whose row `i` is the 8 floats at `at + i*stride`.
    /// Each register is loaded with row `i`'s half in its low lane and row `i + 4`'s
    /// in its high lane, so that the lanes are two 4x4 transposes (`transpose4_lanes`
    /// each way) and no lane-crossing permute is left: 16 shuffles where `transpose8`
    /// takes 24, all on the one port that shuffles on Intel's cores. A panel of 32
    /// lines of 256 floats, 4 KiB apart, hot in the caches (Intel Xeon, family 6 model
    /// 207, best of five rounds of 20000): 8.0 us against 11.6.
    ///
    /// # Safety
    /// AVX2 is present, and `at + i*stride + j` is readable for `i, j < 8`.
    #[target_feature(enable = "avx2")]
    unsafe fn transpose8_lines(at: *const f32, stride: usize) -> [__m256; 8] {
        // SAFETY: rows i and i+4 (< 8), floats `half..half + 4` (< 8), per the contract.
        let load = |i: usize, half: usize| unsafe {
            _mm256_loadu2_m128(at.add((i + 4) * stride + half), at.add(i * stride + half))
        };
        let low = transpose4_lanes(std::array::from_fn(|i| load(i, 0)));
        let high = transpose4_lanes(std::array::from_fn(|i| load(i, 4)));
        [low[0], low[1], low[2], low[3], high[0], high[1], high[2], high[3]]
    }

    /// In each 128-bit lane, the transpose of the 4x4 matrix whose rows are that lane
    /// of `r`: unpack pairs of rows, then shuffle pairs of those.
    #[target_feature(enable = "avx2")]
    fn transpose4_lanes(r: [__m256; 4]) -> [__m256; 4] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        [
            _mm256_shuffle_ps::<0x44>(t0, t2),
            _mm256_shuffle_ps::<0xEE>(t0, t2),
            _mm256_shuffle_ps::<0x44>(t1, t3),
            _mm256_shuffle_ps::<0xEE>(t1, t3),
        ]
    }

    /// The transpose of the 8x8 matrix whose rows are `r`: each half of the rows
    /// transposed within lanes, then the lanes exchanged.
    #[target_feature(enable = "avx2")]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let s = transpose4_lanes([r[0], r[1], r[2], r[3]]);
        let u = transpose4_lanes([r[4], r[5], r[6], r[7]]);
        [
            _mm256_permute2f128_ps::<0x20>(s[0], u[0]),
            _mm256_permute2f128_ps::<0x20>(s[1], u[1]),
            _mm256_permute2f128_ps::<0x20>(s[2], u[2]),
            _mm256_permute2f128_ps::<0x20>(s[3], u[3]),
            _mm256_permute2f128_ps::<0x31>(s[0], u[0]),
            _mm256_permute2f128_ps::<0x31>(s[1], u[1]),
            _mm256_permute2f128_ps::<0x31>(s[2], u[2]),
            _mm256_permute2f128_ps::<0x31>(s[3], u[3]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_array;

    /// The loops `vectorized!` serves: an affine map in f32, and f64 sums in lanes.
    fn affine_and_sums(xs: &mut [f32], scale: f32, shift: f32, sums: &mut [f64]) {
        for x in xs.iter_mut() {
            *x = (*x - shift) * scale * 1.5 + shift;
        }
        for (chunk, s) in xs.chunks(7).zip(sums.iter_mut()) {
            for &v in chunk {
                *s += v as f64 * v as f64 - 0.25;
            }
        }
    }

    vectorized! {
        fn affine_and_sums_wide(xs: &mut [f32], scale: f32, shift: f32, sums: &mut [f64]) {
            affine_and_sums(xs, scale, shift, sums)
        }
    }

    #[test]
    fn vectorized_functions_have_the_bits_of_the_baseline_build() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            wide(),
            super::super::microkernel::isa() != super::super::microkernel::Isa::Portable
                && std::arch::is_x86_feature_detected!("avx2")
        );
        for len in [0, 1, 7, 8, 9, 63, 1000] {
            let x: ndarray::Array1<f32> = random_array(len, len as u64 + 17);
            let (mut plain, mut wide) = (x.to_vec(), x.to_vec());
            let (mut plain_sums, mut wide_sums) = (vec![0.5f64; len.div_ceil(7)], vec![0.5f64; len.div_ceil(7)]);
            affine_and_sums(&mut plain, 0.3, -1.7, &mut plain_sums);
            affine_and_sums_wide(&mut wide, 0.3, -1.7, &mut wide_sums);
            let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits32(&plain), bits32(&wide), "f32 loop, length {len}");
            assert_eq!(bits64(&plain_sums), bits64(&wide_sums), "f64 sums, length {len}");
        }
    }

    #[test]
    fn transpose_matches_scalar_on_every_edge() {
        for &(lines, len, width, stride_pad) in
            &[(8, 8, 8, 0), (6, 17, 6, 3), (5, 9, 8, 0), (32, 40, 32, 1), (13, 7, 16, 5), (1, 1, 6, 0), (16, 64, 32, 0)]
        {
            let stride = len + stride_pad;
            let src: ndarray::Array1<f32> = random_array(lines * stride, (lines * 1000 + len) as u64);
            let src = src.as_slice().unwrap();
            let mut fast = vec![f32::NAN; len * width];
            let mut slow = vec![f32::NAN; len * width];
            transpose_lines(src, stride, lines, len, &mut fast, width);
            transpose_lines_scalar(src, stride, lines, len, &mut slow, width);
            assert_eq!(fast, slow, "{lines} lines of {len}, stride {stride}, width {width}");
        }
    }
}
