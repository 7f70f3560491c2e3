//! sgemm throughput: square sizes and the GEMM shapes of the MNIST InfoGAN at batch
//! 64 (plus one long-K shape of the CIFAR-10 model), on one thread and on all cores.
//! Each result is checked against f64 dot products before it is timed. Besides
//! criterion's report, one line per measurement for scripts:
//!
//! `gemm 1024x1024x1024 threads=2 gflops=151.3`

mod common;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, ArrayView2};

use common::time_in_pool;
use infogan::kernels::gemm::gemm;
use infogan::testutil::random_array;

/// (M, K, N, where the product comes from). Ours: `C[M, N] = A[M, K] B[K, N]`.
const SHAPES: &[(usize, usize, usize, &str)] = &[
    (256, 256, 256, "square"),
    (512, 512, 512, "square"),
    (1024, 1024, 1024, "square"),
    (64, 1024, 6272, "G fc2 forward / D fc backward dx"),
    (64, 6272, 1024, "D fc forward / G fc2 backward dx"),
    (6272, 64, 1024, "G fc2 dweight"),
    (1024, 64, 6272, "D fc dweight"),
    (1024, 128, 3136, "G deconv1 forward / D conv2 dcols"),
    (128, 1024, 3136, "D conv2 forward / G deconv1 dx"),
    (128, 3136, 1024, "D conv2 dweight / G deconv1 dweight"),
    (64, 16, 12544, "D conv1 forward"),
    (16, 64, 12544, "G deconv2 forward"),
    (48, 32768, 64, "CIFAR-10 D conv1 dweight at batch 128, cut along K"),
];

/// Checks 64 entries of `c = a b` against f64 dot products.
fn validate(a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayView2<f32>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    for t in 0..64 {
        let (i, j) = ((t * 7919) % m, (t * 104_729) % n);
        let exact: f64 = (0..k).map(|p| a[[i, p]] as f64 * b[[p, j]] as f64).sum();
        let tol = 1e-5 * (k as f64).sqrt() * 4.0 + 1e-4 * exact.abs();
        assert!(
            (c[[i, j]] as f64 - exact).abs() <= tol,
            "gemm {m}x{k}x{n}: C[{i},{j}] = {} but exact {exact}",
            c[[i, j]]
        );
    }
}

fn bench_gemm(crit: &mut Criterion) {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut summary = Vec::new();
    for threads in [1, all] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for &(m, k, n, what) in SHAPES {
            let a: Array2<f32> = random_array([m, k], 1);
            let b: Array2<f32> = random_array([k, n], 2);
            let mut c = Array2::<f32>::zeros((m, n));
            pool.install(|| gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()));
            validate(a.view(), b.view(), c.view());

            let flops = 2.0 * (m * k * n) as f64;
            let mut group = crit.benchmark_group(format!("sgemm threads={threads}"));
            group.throughput(Throughput::Elements(flops as u64));
            let mut totals = (Duration::ZERO, 0u64);
            group.bench_function(format!("{m}x{k}x{n} ({what})"), |bench| {
                time_in_pool(bench, &pool, &mut totals, || gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()))
            });
            let (total, iters) = totals;
            group.finish();
            let gflops = flops * iters as f64 / total.as_secs_f64() / 1e9;
            summary.push(format!("gemm {m}x{k}x{n} threads={threads} gflops={gflops:.1}"));
        }
    }
    println!();
    for line in summary {
        println!("{line}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(20);
    targets = bench_gemm
}
criterion_main!(benches);
