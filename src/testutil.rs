//! Helpers shared by the unit tests, the integration tests and the benches: seeded
//! random arrays, a closeness check that explains its failures, and central
//! finite differences.

use ndarray::{Array, ArrayBase, Data, Dimension, IntoDimension};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// An array of the given shape, uniform in [-1, 1), the same for the same seed.
pub fn random_array<Sh: IntoDimension>(shape: Sh, seed: u64) -> Array<f32, Sh::Dim> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    Array::from_shape_simple_fn(shape, || rng.random_range(-1.0f32..1.0))
}

/// Panics unless `|actual - expected| <= atol + rtol * |expected|` everywhere. The
/// message gives the worst element, its index and a few value pairs.
pub fn assert_close<S1, S2, D>(actual: &ArrayBase<S1, D>, expected: &ArrayBase<S2, D>, rtol: f32, atol: f32, what: &str)
where
    S1: Data<Elem = f32>,
    S2: Data<Elem = f32>,
    D: Dimension,
{
    assert_eq!(actual.shape(), expected.shape(), "{what}: shapes differ");
    let mut worst: Option<(f32, D::Pattern, f32, f32)> = None;
    let mut failures = 0usize;
    for ((idx, &a), &e) in actual.indexed_iter().zip(expected.iter()) {
        let excess = (a - e).abs() - (atol + rtol * e.abs());
        if excess > 0.0 || a.is_nan() != e.is_nan() {
            failures += 1;
            let excess = if excess.is_nan() { f32::INFINITY } else { excess };
            if worst.as_ref().is_none_or(|w| excess > w.0) {
                worst = Some((excess, idx, a, e));
            }
        }
    }
    if let Some((_, idx, a, e)) = worst {
        let pairs: Vec<String> =
            actual.iter().zip(expected.iter()).take(4).map(|(a, e)| format!("{a:.6}/{e:.6}")).collect();
        panic!(
            "{what}: {failures} of {} elements differ (rtol {rtol}, atol {atol}); worst at {idx:?}: \
             actual {a} expected {e} (diff {}); first actual/expected pairs: {}",
            actual.len(),
            (a - e).abs(),
            pairs.join(", ")
        );
    }
}

/// Central differences of the scalar function `f` with respect to every element of
/// `x`: `(f(x + h e_i) - f(x - h e_i)) / 2h`, evaluated in f64 by the caller.
pub fn numeric_grad<D: Dimension>(
    x: &Array<f32, D>,
    h: f32,
    mut f: impl FnMut(&Array<f32, D>) -> f64,
) -> Array<f32, D> {
    let mut probe = x.clone();
    let mut grad = Array::zeros(x.raw_dim());
    for (i, g) in grad.iter_mut().enumerate() {
        let orig = x.as_slice_memory_order().expect("contiguous")[i];
        probe.as_slice_memory_order_mut().expect("contiguous")[i] = orig + h;
        let up = f(&probe);
        probe.as_slice_memory_order_mut().expect("contiguous")[i] = orig - h;
        let down = f(&probe);
        probe.as_slice_memory_order_mut().expect("contiguous")[i] = orig;
        *g = ((up - down) / (2.0 * h as f64)) as f32;
    }
    grad
}

/// `sum(y * r)` in f64: the scalar whose gradient with respect to `y` is `r`. A
/// gradient check uses it to turn any layer into a scalar function.
pub fn dot<S1, S2, D>(y: &ArrayBase<S1, D>, r: &ArrayBase<S2, D>) -> f64
where
    S1: Data<Elem = f32>,
    S2: Data<Elem = f32>,
    D: Dimension,
{
    assert_eq!(y.shape(), r.shape(), "dot: shapes differ");
    y.iter().zip(r.iter()).map(|(a, b)| *a as f64 * *b as f64).sum()
}

/// Panics unless every analytic gradient element is within `tol` of the numeric one in
/// relative error with a floor: `|a - n| / max(|a|, |n|, floor) <= tol`. The floor keeps
/// round-off in near-zero gradients from counting as a failure. The message gives the
/// worst element, its index and a few value pairs.
pub fn assert_grad_close<D: Dimension>(
    analytic: &Array<f32, D>,
    numeric: &Array<f32, D>,
    tol: f32,
    floor: f32,
    what: &str,
) {
    assert_eq!(analytic.shape(), numeric.shape(), "{what}: shapes differ");
    let mut worst: Option<(f32, D::Pattern, f32, f32)> = None;
    for ((idx, &a), &n) in analytic.indexed_iter().zip(numeric.iter()) {
        let rel = (a - n).abs() / a.abs().max(n.abs()).max(floor);
        let rel = if rel.is_nan() { f32::INFINITY } else { rel };
        if worst.as_ref().is_none_or(|w| rel > w.0) {
            worst = Some((rel, idx, a, n));
        }
    }
    if let Some((rel, idx, a, n)) = worst
        && rel > tol
    {
        let pairs: Vec<String> =
            analytic.iter().zip(numeric.iter()).take(4).map(|(a, n)| format!("{a:.5}/{n:.5}")).collect();
        panic!(
            "{what}: analytic and numeric gradients differ: worst relative error {rel:.3e} (tolerance {tol}) at \
             {idx:?}: analytic {a} numeric {n}; first analytic/numeric pairs: {}",
            pairs.join(", ")
        );
    }
}
