//! The register-blocked micro-kernels of the GEMM, one per instruction set, and the
//! choice between them at run time.
//!
//! A micro-kernel computes one `MR x NR` tile of `C = alpha * A B + beta * C` from
//! packed panels (see `pack.rs`): `a[p*MR + i] = A[i, p]` and `b[p*NR + j] = B[p, j]`
//! for `p < kc`. It keeps the tile in vector registers, one FMA per (row, vector of
//! columns) per `p`, and touches C once at the end. This is the design of BLIS and
//! OpenBLAS (Goto and van de Geijn, 2008); the shapes are the largest that leave room
//! for the B vectors and a broadcast: AVX-512 8x32 (16 of 32 zmm registers hold C)
//! and AVX2+FMA 6x16 (12 of 16 ymm registers).
//!
//! Both kernels do the same operations in the same order (a chain of FMAs over `p`
//! from zero, then `alpha *`, then `+ beta * C`), so they give the same bits: a run
//! on an AVX2 machine equals a run on an AVX-512 machine.

use std::sync::OnceLock;

use ndarray::ArrayView2;

/// The instruction set the GEMM runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F: the 8x32 kernel.
    Avx512,
    /// AVX2 with FMA: the 6x16 kernel.
    Avx2,
    /// Anything else (aarch64, old x86): `matrixmultiply`.
    Portable,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// The best instruction set this CPU has.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// The instruction sets this CPU can run, best first.
    pub fn available() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Portable].into_iter().filter(|&i| i <= Isa::detect()).collect()
    }
}

impl PartialOrd for Isa {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Isa {
    /// Avx512 > Avx2 > Portable: "at most" means "this one or a more portable one".
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let rank = |i: &Isa| match i {
            Isa::Portable => 0,
            Isa::Avx2 => 1,
            Isa::Avx512 => 2,
        };
        rank(self).cmp(&rank(other))
    }
}

/// The environment variable that caps the instruction set: `avx2` forces the AVX2
/// kernel on an AVX-512 machine, `portable` forces `matrixmultiply`.
pub const ISA_ENV: &str = "INFOGAN_ISA";

/// The instruction set in use: the best the CPU has, capped by `INFOGAN_ISA`. Read
/// once; an unknown value is reported once on stderr and ignored.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let best = Isa::detect();
        match std::env::var(ISA_ENV) {
            Err(_) => best,
            Ok(v) => match parse_isa(&v) {
                Some(cap) => cap.min(best),
                None => {
                    eprintln!(
                        "infogan: warning: {ISA_ENV}={v:?} is not one of avx512, avx2, portable; using {}",
                        best.name()
                    );
                    best
                }
            },
        }
    })
}

fn parse_isa(v: &str) -> Option<Isa> {
    match v.trim().to_ascii_lowercase().as_str() {
        "avx512" | "avx-512" => Some(Isa::Avx512),
        "avx2" => Some(Isa::Avx2),
        "portable" | "none" | "generic" => Some(Isa::Portable),
        _ => None,
    }
}

/// The f32 FMA peak of the machine in GFLOP/s on `isa`, measured: every thread of
/// the rayon pool runs a loop of independent FMAs (enough to cover the latency of
/// two FMA pipes) for about `millis` milliseconds. `None` for the portable path, whose
/// instructions are matrixmultiply's choice.
pub fn fma_peak_gflops(isa: Isa, millis: u64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let isa = isa.min(Isa::detect());
        if isa == Isa::Portable {
            return None;
        }
        // Calibrate the iteration count on one thread, then time all threads at once.
        let run = |iters: u64| -> f64 {
            // SAFETY: the instruction set is present (capped by `Isa::detect` above).
            unsafe { if isa == Isa::Avx512 { x86::fma_loop_avx512(iters) } else { x86::fma_loop_avx2(iters) } }
        };
        let flops_per_iter = if isa == Isa::Avx512 { 24.0 * 16.0 * 2.0 } else { 12.0 * 8.0 * 2.0 };
        let start = std::time::Instant::now();
        std::hint::black_box(run(1 << 20));
        let per_iter = start.elapsed().as_secs_f64() / (1u64 << 20) as f64;
        let iters = ((millis as f64 / 1e3) / per_iter.max(1e-12)) as u64;
        let start = std::time::Instant::now();
        let sums = rayon::broadcast(|_| std::hint::black_box(run(iters)));
        let seconds = start.elapsed().as_secs_f64();
        std::hint::black_box(sums);
        return Some(flops_per_iter * iters as f64 * rayon::current_num_threads() as f64 / seconds / 1e9);
    }
    #[allow(unreachable_code)]
    {
        let _ = (isa, millis);
        None
    }
}

/// One micro-kernel: its tile shape and the function that fills a tile.
pub(crate) trait MicroKernel {
    /// Rows of the tile (the broadcast operand A's panel height).
    const MR: usize;
    /// Columns of the tile (the vector operand B's panel width).
    const NR: usize;
    /// Whether A may be read in place (`a_step` its column stride) when its rows are
    /// adjacent, rather than always packed.
    const READS_A_IN_PLACE: bool;

    /// `C[i, j] = alpha * sum_p a[p*a_step + i] b[p*NR + j] + beta * C[i, j]` for `i < m`,
    /// `j < n`, where `C[i, j]` is `c[i*rsc + j]`. With `beta == 0`, C is not read.
    /// (`a_step` is MR for a packed panel, A's column stride for one read in place.)
    ///
    /// # Safety
    /// The CPU supports the kernel's instruction set; `a` holds `(kc - 1)*a_step + MR`
    /// and `b` `kc*NR` readable floats; `m <= MR`, `n <= NR`; `c[i*rsc + j]` is valid
    /// for reads and writes for every `i < m`, `j < n`, and no other thread accesses
    /// those elements during the call.
    #[allow(clippy::too_many_arguments)]
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
    );

    /// Packs an `[mc, kc]` block of A into panels of MR rows (`pack::pack_a`).
    fn pack_a(a: ArrayView2<f32>, out: &mut [f32]);

    /// Packs a `[kc, nc]` block of B into panels of NR columns (`pack::pack_b`).
    fn pack_b(b: ArrayView2<f32>, out: &mut [f32]);
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
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
        ) {
            // SAFETY: forwarded from the caller's contract, which includes AVX-512F.
            unsafe { tile_avx512::<8, 2>(kc, a, a_step, b, c, rsc, m, n, alpha, beta) }
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
        ) {
            // SAFETY: forwarded from the caller's contract, which includes AVX2 and FMA.
            unsafe { tile_avx2::<6, 2>(kc, a, a_step, b, c, rsc, m, n, alpha, beta) }
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
                // Lane j is stored where j < cols (the sign bit of the mask selects it).
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols as i32), lanes);
                // SAFETY: i < m and the mask selects only columns j < n, which the caller
                // guarantees are valid and unshared.
                unsafe {
                    let dst = c.add(i * rsc + 8 * v);
                    let t = if alpha == 1.0 { t } else { _mm256_mul_ps(t, alpha_v) };
                    let t = if beta == 0.0 {
                        t
                    } else if beta == 1.0 {
                        _mm256_add_ps(_mm256_maskload_ps(dst, mask), t)
                    } else {
                        _mm256_fmadd_ps(_mm256_maskload_ps(dst, mask), beta_v, t)
                    };
                    _mm256_maskstore_ps(dst, mask, t);
                }
            }
        }
    }
}
