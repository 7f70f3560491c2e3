//! Shared by the benches.

use std::time::{Duration, Instant};

use criterion::Bencher;

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
