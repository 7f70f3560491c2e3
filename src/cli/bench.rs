//! `infogan bench`: timed training steps on random data, one JSON line of results.

use std::time::Instant;

use ndarray::Array4;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use clap::Args;

use super::flags::ModelFlags;
use super::set_threads;
use crate::data::DatasetKind;
use crate::error::Result;
use crate::kernels::gemm::macs_done;
use crate::kernels::microkernel::{fma_peak_gflops, isa};
use crate::kernels::padding_macs_done;
use crate::models::ModelKind;
use crate::profile::{self, Phase};
use crate::train::{DEFAULT_BATCH_SIZE, Trainer};

#[derive(Args)]
pub struct BenchArgs {
    /// Architecture to time (random data of its image shape; no dataset files needed)
    #[arg(long, value_enum, default_value_t)]
    dataset: DatasetKind,
    /// Images per step
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE, value_name = "N")]
    batch_size: usize,
    /// Timed steps (after 3 untimed warm-up steps)
    #[arg(long, default_value_t = 20, value_name = "N")]
    steps: usize,
    /// Worker threads [default: all cores, or RAYON_NUM_THREADS]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// InfoGAN or the plain GAN
    #[arg(long, value_enum, default_value_t)]
    model: ModelKind,
    /// Also split each step's time into phases (GEMM, im2col/col2im, layout moves, batch norm, activations,
    /// losses, Adam, other) and the GEMM time into its products by shape and layout: tables on stderr,
    /// "profile_ms" and "gemm_products" in the JSON line
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    flags: ModelFlags,
}

/// Untimed steps before the timed ones: the first steps allocate and warm caches.
const WARMUP: usize = 3;

/// Runs `WARMUP` untimed steps, then `--steps` timed ones, and prints one JSON line:
/// `images_per_s` (from the median step time), the GEMM arithmetic of a step
/// (`gemm_gflop_per_step`, counted by the GEMM) and its rate at the median
/// (`gemm_gflops_at_median`), the part of that work the convolutions spent on zero
/// padding (`padding_gflop_per_step`, `ConvGeom::padding_reads`), the machine's FMA
/// peak on the instruction set in use (`fma_peak_gflops`, measured by an FMA loop on
/// every thread just before the steps) and the step's share of it
/// (`fraction_of_peak`).
///
/// Under `mpirun` the ranks share each step (one shard each, `--batch-size` the
/// global batch), rank 0 prints the line, and it adds the ranks and the time rank 0
/// spent in collectives per step (`allreduce_ms_per_step`: the sums over the ranks,
/// including any wait for a slower rank).
pub fn run(args: BenchArgs) -> Result<()> {
    let comm = crate::collective::connect(crate::collective::RANK_ZERO_PATIENCE)?;
    let (rank, ranks) = comm.as_ref().map_or((0, 1), |c| (c.rank(), c.size()));
    let threads = set_threads(args.threads)?;
    super::flags::in_range("steps", args.steps, 1..=100_000)?;
    let mut flags = args.flags.clone();
    // The step of ../shared/reference/torch_step.py, whatever the dataset's
    // training defaults add to it, unless asked for.
    flags.diffaug.get_or_insert_with(|| "none".into());
    flags.mode_seeking.get_or_insert(0.0);
    flags.q_consistency.get_or_insert(0.0);
    let mut config = super::flags::config(&flags, args.dataset, args.model, Some(args.batch_size), None)?;
    config.shards = ranks;
    config.validate()?;
    let (c, h, w) = config.arch.dataset.image_shape();
    let n = config.batch_size;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let real = Array4::from_shape_simple_fn((n / ranks, c, h, w), || rng.random_range(-1.0f32..1.0));
    let mut trainer = Trainer::new(config.clone());
    trainer.set_comm(comm.clone());
    crate::train::memory::check_fits(
        crate::train::memory::training_bytes(&mut trainer),
        &format!("a step at batch {}", config.batch_size),
    )?;
    // On a worker of the pool, as a training run steps (`train::on_worker`).
    let mut stats = crate::train::StepStats::default();
    crate::train::on_worker(|| {
        for _ in 0..WARMUP {
            trainer.train_step_into(real.clone(), &mut stats);
        }
    });
    let peak = fma_peak_gflops(isa(), 200);
    let spent = || comm.as_ref().map_or((0.0, 0), |c| (c.time_spent().0.as_secs_f64(), c.time_spent().1));
    if let Some(c) = &comm {
        c.wait_for_rank_zero("the bench's start");
    }
    let spent_before = spent();
    let mut times = Vec::with_capacity(args.steps);
    let (macs_before, padding_before) = (macs_done(), padding_macs_done());
    profile::enable(args.profile);
    let phases_before = profile::totals();
    crate::train::on_worker(|| {
        for _ in 0..args.steps {
            let batch = real.clone();
            let start = Instant::now();
            trainer.train_step_into(batch, &mut stats);
            times.push(start.elapsed().as_secs_f64());
        }
    });
    let phases_after = profile::totals();
    profile::enable(false);
    let spent_after = spent();
    let allreduce_ms = (spent_after.0 - spent_before.0) * 1e3 / args.steps as f64;
    let collectives = (spent_after.1 - spent_before.1) as f64 / args.steps as f64;
    if rank > 0 {
        return Ok(());
    }
    // Other threads of this process do no GEMMs, so the counter holds only the steps'.
    let gflop_per_step = 2.0 * (macs_done() - macs_before) as f64 / args.steps as f64 / 1e9;
    let padding_per_step = 2.0 * (padding_macs_done() - padding_before) as f64 / args.steps as f64 / 1e9;
    let total: f64 = times.iter().sum();
    let mean = total / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let round = |v: f64, digits: i32| (v * 10f64.powi(digits)).round() / 10f64.powi(digits);
    let gflops = gflop_per_step / median;
    let mut line = serde_json::json!({
        "dataset": config.arch.dataset.name(),
        "model": config.model.name(),
        "batch_size": n,
        "threads": threads,
        "ranks": ranks,
        "isa": isa().name(),
        "steps": args.steps,
        "images_per_s": round(n as f64 / median, 1),
        "images_per_s_mean": round(n as f64 / mean, 1),
        "ms_per_step_median": round(median * 1e3, 1),
        "ms_per_step_min": round(times[0] * 1e3, 1),
        "gemm_gflop_per_step": round(gflop_per_step, 2),
        "gemm_gflops_at_median": round(gflops, 1),
        "padding_gflop_per_step": round(padding_per_step, 2),
        "fma_peak_gflops": peak.map(|p| round(p, 1)),
        "fraction_of_peak": peak.map(|p| round(gflops / p, 3)),
    });
    if ranks > 1 {
        // Each rank's GEMMs are counted on its own: the step's work is `ranks` times it.
        line["gemm_gflop_per_step"] = serde_json::json!(round(gflop_per_step * ranks as f64, 2));
        line["gemm_gflops_at_median"] = serde_json::json!(round(gflops * ranks as f64, 1));
        line["padding_gflop_per_step"] = serde_json::json!(round(padding_per_step * ranks as f64, 2));
        line["fraction_of_peak"] = serde_json::json!(peak.map(|p| round(gflops * ranks as f64 / p, 3)));
        line["allreduce_ms_per_step"] = serde_json::json!(round(allreduce_ms, 2));
        line["collectives_per_step"] = serde_json::json!(round(collectives, 1));
        let params: usize = trainer.generator.net.params().iter().map(|p| p.param.value.len()).sum::<usize>()
            + trainer.discriminator.params().iter().map(|p| p.param.value.len()).sum::<usize>();
        line["parameter_bytes"] = serde_json::json!(params * 4);
    }
    if args.profile {
        let per_step: Vec<(&str, f64)> = Phase::ALL
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name(), (phases_after[i] - phases_before[i]) as f64 / 1e6 / args.steps as f64))
            .collect();
        let counted: f64 = per_step.iter().map(|(_, ms)| ms).sum();
        let mut table = serde_json::Map::new();
        eprintln!("phase            ms/step   share  (mean step {:.1} ms)", mean * 1e3);
        for (name, ms) in per_step.iter().copied().chain(std::iter::once(("other", mean * 1e3 - counted))) {
            eprintln!("{name:<16} {ms:>7.2}  {:>5.1}%", 100.0 * ms / (mean * 1e3));
            table.insert(name.to_string(), serde_json::json!(round(ms, 2)));
        }
        line["profile_ms"] = serde_json::Value::Object(table);
        line["gemm_products"] = products_table(args.steps, round);
    }
    println!("{line}");
    Ok(())
}

/// The products timed while profiling, slowest total first: a table of the largest
/// on stderr, and for the JSON line each product's calls and milliseconds per step
/// and its GFLOP/s.
fn products_table(steps: usize, round: impl Fn(f64, i32) -> f64) -> serde_json::Value {
    /// Rows of the stderr table; the JSON line has them all.
    const SHOWN: usize = 15;
    let mut products = profile::products();
    products.sort_by_key(|&(_, _, nanos)| std::cmp::Reverse(nanos));
    let per_step = |v: u64| v as f64 / steps as f64;
    eprintln!("\nproduct (C[M,N] = A[M,K] B[K,N])      calls/step  ms/step  GFLOP/s");
    let mut rows = Vec::with_capacity(products.len());
    for (i, (p, calls, nanos)) in products.iter().enumerate() {
        let gflops = 2.0 * (p.m * p.k * p.n) as f64 * *calls as f64 / (*nanos).max(1) as f64;
        if i < SHOWN {
            eprintln!("{:<38} {:>9.1} {:>8.2} {:>8.1}", p.label(), per_step(*calls), per_step(*nanos) / 1e6, gflops);
        }
        rows.push(serde_json::json!({
            "product": p.label(),
            "calls_per_step": round(per_step(*calls), 2),
            "ms_per_step": round(per_step(*nanos) / 1e6, 3),
            "gflops": round(gflops, 1),
        }));
    }
    if products.len() > SHOWN {
        let rest: u64 = products[SHOWN..].iter().map(|(_, _, nanos)| nanos).sum();
        eprintln!("{:<38} {:>9} {:>8.2}", format!("({} more)", products.len() - SHOWN), "", per_step(rest) / 1e6);
    }
    serde_json::Value::Array(rows)
}
