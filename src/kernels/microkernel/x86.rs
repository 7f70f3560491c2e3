//! The x86-64 micro-kernels (AVX-512 and AVX2 with FMA) and the FMA loops that
//! measure the machine's peak, written with `std::arch` intrinsics.

use std::arch::x86_64::*;

use ndarray::ArrayView2;

use super::MicroKernel;
use crate::kernels::pack::{pack_a, pack_b};

/// The AVX-512 kernel: 8 rows x 32 columns, two zmm registers per row.
pub(crate) struct Avx512;

/// The AVX2+FMA kernel: 6 rows x 16 columns, two ymm registers per row.
pub(crate) struct Avx2;

impl MicroKernel for Avx512 {
    const MR: usize = 8;
    const NR: usize = 32;
    const READS_A_IN_PLACE: bool = true;

    fn pack_a(a: ArrayView2<f32>, out: &mut [f32]) {
        pack_a::<8>(a, out)
    }

    fn pack_b(b: ArrayView2<f32>, out: &mut [f32]) {
        pack_b::<32>(b, out)
    }

    unsafe fn tile(
        kc: usize,
        a: *const f32,
        a_step: usize,
        b: *const f32,
        c: *mut f32,
        rsc: usize,
        m: usize,
        n: usize,
        alpha: f32,
        beta: f32,
        stream: bool,
    ) {
        // SAFETY: forwarded from the caller's contract, which includes AVX-512F.
        unsafe { tile_avx512::<8, 2>(kc, a, a_step, b, c, rsc, m, n, alpha, beta, stream) }
    }
}

impl MicroKernel for Avx2 {
    const MR: usize = 6;
    const NR: usize = 16;
    // A 6-row panel read in place straddles cache lines at every `p`: with 2
    // threads 2048x256x256 runs at 173 GFLOP/s in place against 208 packed,
    // 4096x448x128 at 160 against 195, 1024x128x490 at 162 against 220
    // (`INFOGAN_ISA=avx2 cargo bench --bench gemm`); the 8-row AVX-512 panel is
    // one 32-byte piece of a line and gains.
    const READS_A_IN_PLACE: bool = false;

    fn pack_a(a: ArrayView2<f32>, out: &mut [f32]) {
        pack_a::<6>(a, out)
    }

    fn pack_b(b: ArrayView2<f32>, out: &mut [f32]) {
        pack_b::<16>(b, out)
    }

    unsafe fn tile(
        kc: usize,
        a: *const f32,
        a_step: usize,
        b: *const f32,
        c: *mut f32,
        rsc: usize,
        m: usize,
        n: usize,
        alpha: f32,
        beta: f32,
        stream: bool,
    ) {
        // SAFETY: forwarded from the caller's contract, which includes AVX2 and FMA.
        unsafe { tile_avx2::<6, 2>(kc, a, a_step, b, c, rsc, m, n, alpha, beta, stream) }
    }
}

/// `iters` rounds of 24 independent FMAs on zmm registers; returns a value that
/// depends on all of them, so that none can be optimised away.
#[target_feature(enable = "avx512f")]
pub(super) fn fma_loop_avx512(iters: u64) -> f64 {
    let mut acc = [_mm512_set1_ps(0.5); 24];
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(*r, a, b);
        }
    }
    acc.iter().map(|&r| _mm512_reduce_add_ps(r) as f64).sum()
}

/// As `fma_loop_avx512` with 12 ymm registers.
#[target_feature(enable = "avx2,fma")]
pub(super) fn fma_loop_avx2(iters: u64) -> f64 {
    let mut acc = [_mm256_set1_ps(0.5); 12];
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(*r, a, b);
        }
    }
    let mut lanes = [0f32; 8];
    acc.iter()
        .map(|&r| {
            // SAFETY: `lanes` holds 8 floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), r) };
            lanes.iter().map(|&v| v as f64).sum::<f64>()
        })
        .sum()
}

/// `MR` rows of `NV` zmm vectors (16 floats each). The row loops have constant
/// bounds, so the accumulators live in registers; the edge test `i < m` is only in
/// the store.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx512<const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    a_step: usize,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    m: usize,
    n: usize,
    alpha: f32,
    beta: f32,
    stream: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..kc {
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, bv) in bv.iter_mut().enumerate() {
            // SAFETY: p < kc, so b[p*NR .. p*NR + NR] is inside the panel.
            *bv = unsafe { _mm512_loadu_ps(bp.add(16 * v)) };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: a[p*a_step + i] is inside the panel for i < MR.
            let ai = _mm512_set1_ps(unsafe { *ap.add(i) });
            for (acc, &bv) in row.iter_mut().zip(&bv) {
                *acc = _mm512_fmadd_ps(ai, bv, *acc);
            }
        }
        // SAFETY: advancing within (or one step past the end of) the panels.
        (ap, bp) = unsafe { (ap.add(a_step), bp.add(16 * NV)) };
    }
    let (alpha_v, beta_v) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
    for (i, row) in acc.iter().enumerate() {
        if i >= m {
            break;
        }
        for (v, &t) in row.iter().enumerate() {
            let cols = n.saturating_sub(16 * v).min(16);
            if cols == 0 {
                break;
            }
            let mask = ((1u32 << cols) - 1) as __mmask16;
            // SAFETY: i < m and the mask selects only columns j < n, which the caller
            // guarantees are valid and unshared.
            unsafe {
                let dst = c.add(i * rsc + 16 * v);
                let t = if alpha == 1.0 { t } else { _mm512_mul_ps(t, alpha_v) };
                if stream && beta == 0.0 && cols == 16 && dst.addr().is_multiple_of(64) {
                    // The whole line, aligned (vmovntps needs 64 bytes).
                    _mm512_stream_ps(dst, t);
                    continue;
                }
                let t = if beta == 0.0 {
                    t
                } else if beta == 1.0 {
                    _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), t)
                } else {
                    _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, dst), beta_v, t)
                };
                _mm512_mask_storeu_ps(dst, mask, t);
            }
        }
    }
}

/// `MR` rows of `NV` ymm vectors (8 floats each), as `tile_avx512`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx2<const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    a_step: usize,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    m: usize,
    n: usize,
    alpha: f32,
    beta: f32,
    stream: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..kc {
        let mut bv = [_mm256_setzero_ps(); NV];
        for (v, bv) in bv.iter_mut().enumerate() {
            // SAFETY: p < kc, so b[p*NR .. p*NR + NR] is inside the panel.
            *bv = unsafe { _mm256_loadu_ps(bp.add(8 * v)) };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: a[p*a_step + i] is inside the panel for i < MR.
            let ai = _mm256_set1_ps(unsafe { *ap.add(i) });
            for (acc, &bv) in row.iter_mut().zip(&bv) {
                *acc = _mm256_fmadd_ps(ai, bv, *acc);
            }
        }
        // SAFETY: advancing within (or one step past the end of) the panels.
        (ap, bp) = unsafe { (ap.add(a_step), bp.add(8 * NV)) };
    }
    let (alpha_v, beta_v) = (_mm256_set1_ps(alpha), _mm256_set1_ps(beta));
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (i, row) in acc.iter().enumerate() {
        if i >= m {
            break;
        }
        for (v, &t) in row.iter().enumerate() {
            let cols = n.saturating_sub(8 * v).min(8);
            if cols == 0 {
                break;
            }
            // SAFETY: i < m and columns 8v..8v+cols are < n, which the caller
            // guarantees are valid and unshared; a partial vector is masked to them.
            unsafe {
                let dst = c.add(i * rsc + 8 * v);
                let t = if alpha == 1.0 { t } else { _mm256_mul_ps(t, alpha_v) };
                // A whole vector takes plain loads and stores: AMD's Zen cores microcode
                // vmaskmovps, several times slower than vmovups. Otherwise lane j is
                // moved where j < cols (the sign bit of the mask selects it).
                let whole = cols == 8;
                if stream && beta == 0.0 && n == 8 * NV && c.add(i * rsc).addr().is_multiple_of(64) {
                    // The row's vectors fill whole aligned lines (with NV = 2, one
                    // line of two halves), which are so written whole (vmovntps needs
                    // 32-byte alignment).
                    _mm256_stream_ps(dst, t);
                    continue;
                }
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols as i32), lanes);
                let t = if beta == 0.0 {
                    t
                } else {
                    let old = if whole { _mm256_loadu_ps(dst) } else { _mm256_maskload_ps(dst, mask) };
                    if beta == 1.0 { _mm256_add_ps(old, t) } else { _mm256_fmadd_ps(old, beta_v, t) }
                };
                if whole {
                    _mm256_storeu_ps(dst, t);
                } else {
                    _mm256_maskstore_ps(dst, mask, t);
                }
            }
        }
    }
}
