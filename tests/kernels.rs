//! The fast kernels against their naive references: the parallel GEMM against a
//! triple loop, and Conv2d / ConvTranspose2d against direct loops, on odd sizes,
//! transposed and strided operands, strides and paddings.

mod common;

use ndarray::{Array2, Array4, s};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use infogan::kernels::gemm::{KC, Split, block_plan, gemm, gemm_naive, gemm_on, macs_done, with_packed_lhs};
use infogan::kernels::microkernel::Isa;
use infogan::layers::conv_transpose2d::conv_transpose2d_naive;
use infogan::layers::conv2d::conv2d_naive;
use infogan::layers::{Conv2d, ConvTranspose2d};
use infogan::testutil::{assert_close, random_array};

fn config() -> ProptestConfig {
    common::proptest_config(48, 1024)
}

/// f32 products of length K against an f64 reference: a few ulps per term.
fn gemm_tol(k: usize) -> f32 {
    2e-6 * (k as f32).sqrt().max(1.0) * 4.0
}

proptest! {
    #![proptest_config(config())]

    /// Odd sizes, either operand transposed, C a strided window into a larger matrix,
    /// and alpha / beta other than 1 / 0.
    #[test]
    fn gemm_matches_triple_loop(
        m in 1usize..80, k in 1usize..80, n in 1usize..80,
        ta in any::<bool>(), tb in any::<bool>(), alpha in -2.0f32..2.0, beta in prop::sample::select(vec![0.0f32, 1.0, -0.5]),
        seed in any::<u64>(),
    ) {
        let a_store: Array2<f32> = random_array(if ta { [k, m] } else { [m, k] }, seed);
        let b_store: Array2<f32> = random_array(if tb { [n, k] } else { [k, n] }, seed ^ 1);
        let a = if ta { a_store.t() } else { a_store.view() };
        let b = if tb { b_store.t() } else { b_store.view() };
        // C lives in every other column of a wider matrix.
        let mut c_fast: Array2<f32> = random_array([m, 2 * n], seed ^ 2);
        let mut c_naive = c_fast.clone();
        gemm(alpha, a, b, beta, c_fast.slice_mut(s![.., ..;2]));
        gemm_naive(alpha, a, b, beta, c_naive.slice_mut(s![.., ..;2]));
        assert_close(&c_fast, &c_naive, 1e-4, gemm_tol(k), &format!("gemm {m}x{k}x{n} ta={ta} tb={tb}"));
    }

    #[test]
    fn conv2d_matches_direct_loop(
        n in 1usize..4, c_in in 1usize..6, c_out in 1usize..6, k in 1usize..6,
        stride in 1usize..4, padding in 0usize..3, h in 1usize..12, w in 1usize..12, seed in any::<u64>(),
    ) {
        let (h, w) = ((h + 2 * padding).max(k) - 2 * padding, (w + 2 * padding).max(k) - 2 * padding);
        let mut layer = Conv2d::new(c_in, c_out, k, stride, padding, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
        let x: Array4<f32> = random_array([n, c_in, h, w], seed ^ 1);
        let expected = conv2d_naive(x.view(), layer.weight.view(), layer.bias.as_slice().unwrap(), stride, padding);
        let y = layer.forward(x);
        assert_close(&y, &expected, 1e-4, 1e-5, "conv2d");
    }

    #[test]
    fn conv_transpose2d_matches_direct_loop(
        n in 1usize..4, c_in in 1usize..6, c_out in 1usize..6, k in 1usize..6,
        stride in 1usize..4, padding in 0usize..3, h in 1usize..9, w in 1usize..9, seed in any::<u64>(),
    ) {
        let padding = padding.min(((h.min(w) - 1) * stride + k - 1) / 2);
        let mut layer = ConvTranspose2d::new(c_in, c_out, k, stride, padding, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
        let x: Array4<f32> = random_array([n, c_in, h, w], seed ^ 1);
        let expected = conv_transpose2d_naive(x.view(), layer.weight.view(), layer.bias.as_slice().unwrap(), stride, padding);
        let y = layer.forward(x);
        assert_close(&y, &expected, 1e-4, 1e-5, "conv_transpose2d");
    }
}

/// Every instruction set this CPU has (the fast kernels and the portable path)
/// against the triple loop, on sizes at every edge of both micro-kernels' tiles
/// (1, MR - 1, MR, MR + 1, ... for rows; the same with NR for columns), on depths on
/// either side of the packing block KC, with both operands in either layout.
#[test]
fn every_isa_matches_triple_loop_at_every_tile_edge() {
    let rows = [1, 5, 6, 7, 8, 9, 12, 13, 16, 17];
    let cols = [1, 15, 16, 17, 31, 32, 33, 48, 65];
    let depths = [1, 3, KC - 1, KC, KC + 1, 2 * KC + 3];
    for isa in Isa::available() {
        for (t, (&m, &n)) in rows.iter().flat_map(|m| cols.iter().map(move |n| (m, n))).enumerate() {
            let k = depths[t % depths.len()];
            let (ta, tb) = (t % 2 == 1, t % 3 == 1);
            let a_store: Array2<f32> = random_array(if ta { [k, m] } else { [m, k] }, t as u64);
            let b_store: Array2<f32> = random_array(if tb { [n, k] } else { [k, n] }, t as u64 + 99);
            let a = if ta { a_store.t() } else { a_store.view() };
            let b = if tb { b_store.t() } else { b_store.view() };
            let c0: Array2<f32> = random_array([m, n], 5);
            for (alpha, beta) in [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)] {
                let (mut fast, mut naive) = (c0.clone(), c0.clone());
                gemm_on(isa, alpha, a, b, beta, fast.view_mut());
                gemm_naive(alpha, a, b, beta, naive.view_mut());
                let what = format!("{} gemm {m}x{k}x{n} ta={ta} tb={tb} alpha={alpha} beta={beta}", isa.name());
                assert_close(&fast, &naive, 1e-4, gemm_tol(k), &what);
            }
        }
    }
}

/// The AVX2 and AVX-512 kernels do the same operations in the same order, so they
/// give the same bits; a run does not depend on which of the two the machine has.
#[test]
fn fast_kernels_give_the_same_bits() {
    let isas: Vec<Isa> = Isa::available().into_iter().filter(|&i| i != Isa::Portable).collect();
    if isas.len() < 2 {
        eprintln!("only {:?} here: nothing to compare", isas);
        return;
    }
    for &(m, k, n) in &[(37, 700, 53), (128, 1024, 512), (64, 6000, 48), (300, 70, 1000)] {
        let a: Array2<f32> = random_array([m, k], 1);
        let b: Array2<f32> = random_array([k, n], 2);
        let results: Vec<Array2<f32>> = isas
            .iter()
            .map(|&isa| {
                let mut c = Array2::from_elem((m, n), 1.0);
                gemm_on(isa, 1.0, a.view(), b.view(), 1.0, c.view_mut());
                c
            })
            .collect();
        let same = results[0].iter().zip(results[1].iter()).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{m}x{k}x{n}: {} and {} differ", isas[0].name(), isas[1].name());
    }
}

/// A transposed A is read in place, or packed when its rows are a multiple of 4 KiB
/// apart (they would share one L1 set); either way the bits are those of the same
/// A stored row-major, which is always packed.
#[test]
fn transposed_lhs_in_place_or_packed_equals_row_major() {
    for &(m, k, n) in &[(1024, 128, 96), (1000, 130, 70), (2048, 300, 40)] {
        let a_t: Array2<f32> = random_array([k, m], 1);
        let a_rows = a_t.t().as_standard_layout().into_owned();
        let b: Array2<f32> = random_array([k, n], 2);
        for isa in Isa::available() {
            let (mut c_t, mut c_rows) = (Array2::zeros((m, n)), Array2::zeros((m, n)));
            gemm_on(isa, 1.0, a_t.t(), b.view(), 0.0, c_t.view_mut());
            gemm_on(isa, 1.0, a_rows.view(), b.view(), 0.0, c_rows.view_mut());
            let same = c_t.iter().zip(c_rows.iter()).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{} {m}x{k}x{n}: A^T and A row-major differ", isa.name());
        }
    }
}

/// A C of 8 MiB or more, written once, is streamed past the caches (non-temporal
/// stores of its whole aligned lines); the bits are those of the same product cut
/// into column blocks small enough to be cached, and close to the triple loop's.
#[test]
fn streamed_c_equals_cached_c() {
    // Rows of 2080 floats (a whole number of lines) on a line-aligned start: every
    // full vector of a row is a whole aligned line. 1027 rows: a ragged last panel.
    let (m, k, n) = (1027, 70, 2080);
    assert!(m * n * 4 >= 8 << 20, "the product must be large enough to stream");
    let a_t: Array2<f32> = random_array([k, m], 1);
    let b: Array2<f32> = random_array([k, n], 2);
    let mut naive = Array2::zeros((m, n));
    gemm_naive(1.0, a_t.t(), b.view(), 0.0, naive.view_mut());
    for isa in Isa::available() {
        let mut store = vec![f32::NAN; m * n + 16];
        let start = store.as_ptr().align_offset(64);
        let mut streamed = ndarray::ArrayViewMut2::from_shape((m, n), &mut store[start..start + m * n]).unwrap();
        gemm_on(isa, 1.0, a_t.t(), b.view(), 0.0, streamed.view_mut());
        let mut cached = Array2::from_elem((m, n), f32::NAN);
        for c0 in (0..n).step_by(512) {
            let cols = c0..(c0 + 512).min(n);
            gemm_on(isa, 1.0, a_t.t(), b.slice(s![.., cols.clone()]), 0.0, cached.slice_mut(s![.., cols]));
        }
        let same = streamed.iter().zip(cached.iter()).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{}: streamed and cached C differ", isa.name());
        assert_close(&cached, &naive, 1e-4, gemm_tol(k), &format!("{} streamed {m}x{k}x{n}", isa.name()));
    }
}

/// The products of one packed left operand equal separate GEMMs, bit for bit.
#[test]
fn packed_lhs_products_equal_gemm() {
    let a: Array2<f32> = random_array([70, 300], 1);
    let bs: Vec<Array2<f32>> = (0..3).map(|i| random_array([300, 40 + 37 * i], 10 + i as u64)).collect();
    let mut packed: Vec<Array2<f32>> = bs.iter().map(|b| Array2::from_elem((70, b.ncols()), f32::NAN)).collect();
    with_packed_lhs(a.view(), |mul| {
        for (b, c) in bs.iter().zip(&mut packed) {
            mul(b.view(), c.view_mut());
        }
    });
    for (b, c) in bs.iter().zip(&packed) {
        let mut expected = Array2::zeros(c.raw_dim());
        gemm(1.0, a.view(), b.view(), 0.0, expected.view_mut());
        assert!(c.iter().zip(expected.iter()).all(|(x, y)| x.to_bits() == y.to_bits()), "70x300x{}", b.ncols());
    }
}

/// An empty inner dimension leaves `beta C`.
#[test]
fn empty_depth_scales_c() {
    for isa in Isa::available() {
        let a = Array2::<f32>::zeros((3, 0));
        let b = Array2::<f32>::zeros((0, 4));
        let mut c = Array2::from_elem((3, 4), 2.0);
        gemm_on(isa, 1.0, a.view(), b.view(), 0.5, c.view_mut());
        assert!(c.iter().all(|&v| v == 1.0), "{}: {c}", isa.name());
        c.fill(f32::NAN);
        gemm_on(isa, 1.0, a.view(), b.view(), 0.0, c.view_mut());
        assert!(c.iter().all(|&v| v == 0.0), "{}: {c}", isa.name());
    }
}

/// The result does not depend on the number of threads, for shapes that the fast
/// path cuts into many tasks, into rows, and along K.
#[test]
fn gemm_is_bit_identical_on_one_and_two_threads() {
    for &(m, k, n) in &[(128, 1024, 4096), (2048, 256, 256), (64, 32768, 48), (1024, 64, 300), (5, 2000, 7000)] {
        let a: Array2<f32> = random_array([m, k], 3);
        let b: Array2<f32> = random_array([k, n], 4);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut c = Array2::zeros((m, n));
            pool.install(|| gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()));
            c
        };
        let (one, two) = (run(1), run(2));
        assert!(one.iter().zip(two.iter()).all(|(x, y)| x.to_bits() == y.to_bits()), "{m}x{k}x{n}");
    }
}

/// Sizes large enough that `gemm` cuts the work into blocks (of rows, of columns, and
/// of K), with a ragged last block, and with beta both 0 and not.
#[test]
fn blocked_gemm_matches_triple_loop() {
    for &(m, k, n) in &[(300, 70, 50), (50, 70, 333), (129, 200, 131), (64, 6272 / 8, 1024), (17, 5000, 20)] {
        let plan = block_plan(m, k, n);
        assert!(plan.count > 1, "{m}x{k}x{n} should be split, plan {plan:?}");
        let a: Array2<f32> = random_array([m, k], 1);
        let b: Array2<f32> = random_array([k, n], 2);
        let mut c_fast = Array2::from_elem((m, n), f32::NAN);
        let mut c_naive = Array2::zeros((m, n));
        gemm(1.0, a.view(), b.view(), 0.0, c_fast.view_mut());
        gemm_naive(1.0, a.view(), b.view(), 0.0, c_naive.view_mut());
        assert_close(&c_fast, &c_naive, 1e-4, gemm_tol(k), &format!("gemm {m}x{k}x{n} plan {plan:?}"));
        let c0: Array2<f32> = random_array([m, n], 3);
        let (mut c_fast, mut c_naive) = (c0.clone(), c0);
        gemm(0.5, a.view(), b.view(), 2.0, c_fast.view_mut());
        gemm_naive(0.5, a.view(), b.view(), 2.0, c_naive.view_mut());
        assert_close(&c_fast, &c_naive, 1e-4, gemm_tol(k), &format!("gemm beta 2 {m}x{k}x{n} plan {plan:?}"));
    }
}

/// The work counter behind `infogan bench`'s GFLOP/s counts every call's `M K N`
/// multiply-adds once, whether or not the call is cut into blocks. Other tests run
/// at the same time and add their own, hence "at least".
#[test]
fn gemm_counts_its_multiply_adds() {
    for &(m, k, n) in &[(3, 4, 5), (300, 70, 50)] {
        let a: Array2<f32> = random_array([m, k], 1);
        let b: Array2<f32> = random_array([k, n], 2);
        let mut c = Array2::zeros((m, n));
        let before = macs_done();
        gemm(1.0, a.view(), b.view(), 0.0, c.view_mut());
        let counted = macs_done() - before;
        assert!(counted >= (m * k * n) as u64, "gemm {m}x{k}x{n} counted {counted} multiply-adds");
    }
}

#[test]
fn block_plan_depends_on_shape_alone_and_covers_c() {
    for &(m, k, n) in
        &[(1024, 1024, 1024), (128, 1024, 3136), (64, 6272, 1024), (3, 3, 3), (1, 100000, 1), (48, 32768, 64)]
    {
        let plan = block_plan(m, k, n);
        let len = match plan.split {
            Split::Rows => m,
            Split::Cols => n,
            Split::Depth => k,
        };
        assert!(plan.size * plan.count >= len && plan.size * (plan.count - 1) < len, "{plan:?} for {m}x{k}x{n}");
    }
}
