//! `infogan bench`: timed training steps on random data, one JSON line of results.

use std::time::Instant;

use ndarray::Array4;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::Result;
use crate::kernels::gemm::macs_done;
use crate::train::Trainer;

pub struct BenchArgs {
    pub config: crate::train::TrainConfig,
    pub steps: usize,
    pub warmup: usize,
    pub threads: usize,
}

/// Runs `warmup` untimed steps, then `steps` timed ones, and prints
/// `{"dataset":..,"model":..,"batch_size":..,"threads":..,"steps":..,"images_per_s":..,"ms_per_step_median":..}`,
/// with the GEMM arithmetic of a step (`gemm_gflop_per_step`, counted by the kernel)
/// and its rate at the median step time (`gemm_gflops_at_median`), to compare with the
/// machine's peak.
pub fn run(args: BenchArgs) -> Result<()> {
    let config = args.config;
    let (c, h, w) = config.arch.dataset.image_shape();
    let n = config.batch_size;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let real = Array4::from_shape_simple_fn((n, c, h, w), || rng.random_range(-1.0f32..1.0));
    let mut trainer = Trainer::new(config.clone());
    for _ in 0..args.warmup {
        trainer.train_step(real.clone());
    }
    let mut times = Vec::with_capacity(args.steps);
    let macs_before = macs_done();
    for _ in 0..args.steps {
        let start = Instant::now();
        trainer.train_step(real.clone());
        times.push(start.elapsed().as_secs_f64());
    }
    // Other threads of this process do no GEMMs, so the counter holds only the steps'.
    let gflop_per_step = 2.0 * (macs_done() - macs_before) as f64 / args.steps as f64 / 1e9;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let total: f64 = times.iter().sum();
    let line = serde_json::json!({
        "dataset": config.arch.dataset.name(),
        "model": config.model.name(),
        "batch_size": n,
        "threads": args.threads,
        "steps": args.steps,
        "images_per_s": (n as f64 / median * 10.0).round() / 10.0,
        "images_per_s_mean": (n as f64 * times.len() as f64 / total * 10.0).round() / 10.0,
        "ms_per_step_median": (median * 1e4).round() / 10.0,
        "ms_per_step_min": (times[0] * 1e4).round() / 10.0,
        "gemm_gflop_per_step": (gflop_per_step * 100.0).round() / 100.0,
        "gemm_gflops_at_median": (gflop_per_step / median * 10.0).round() / 10.0,
    });
    println!("{line}");
    Ok(())
}
