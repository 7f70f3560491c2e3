//! Shared by the benches.

use std::time::{Duration, Instant};

use criterion::{Bencher, Criterion};

/// The benches' criterion settings: short runs, and no plots. Criterion draws its
/// plots with gnuplot, or else with plotters, which needs a system font and panics
/// without one (a fresh Debian machine has none); the benches' figures are the
/// numbers they print.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .without_plots()
}

/// Times `work` in `pool` for criterion and also keeps the totals, so that the bench
/// can print its own summary line from the same measurements.
pub fn time_in_pool(
    bench: &mut Bencher<'_>,
    pool: &rayon::ThreadPool,
    totals: &mut (Duration, u64),
    mut work: impl FnMut() + Send,
) {
    bench.iter_custom(|reps| {
        let start = Instant::now();
        pool.install(|| {
            for _ in 0..reps {
                work();
            }
        });
        let elapsed = start.elapsed();
        *totals = (totals.0 + elapsed, totals.1 + reps);
        elapsed
    })
}
