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
    /// With `stream` (only with `beta == 0`), the vectors that fill a whole aligned
    /// cache line of C are written with non-temporal stores, which bypass the caches;
    /// the caller ends its run of tiles with `simd::store_fence`.
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
        stream: bool,
    );

    /// Packs an `[mc, kc]` block of A into panels of MR rows (`pack::pack_a`).
    fn pack_a(a: ArrayView2<f32>, out: &mut [f32]);

    /// Packs a `[kc, nc]` block of B into panels of NR columns (`pack::pack_b`).
    fn pack_b(b: ArrayView2<f32>, out: &mut [f32]);
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86;
