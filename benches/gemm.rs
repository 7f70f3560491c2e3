//! sgemm throughput: square sizes and the largest GEMMs of a training step of both
//! models at batch 64 (the discriminator sees 128 images in D's step), each with the
//! operand layouts the layers pass, on one thread and on all cores. Each result is
//! checked against f64 dot products before it is timed. Besides criterion's report,
//! one line per measurement for scripts (`tools/openblas_gemm.py` prints the same for
//! OpenBLAS, through numpy, on the same list):
//!
//! `gemm 1024x1024x1024 ta=0 tb=0 tc=0 threads=2 gflops=151.3`

mod common;

/// As in the binary: large blocks start on a cache line, so a large C is streamed
/// the way training streams it.
#[global_allocator]
static ALLOCATOR: infogan::kernels::LineAligned = infogan::kernels::LineAligned;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use common::time_in_pool;
use infogan::kernels::gemm::gemm;
use infogan::testutil::random_array;

/// `C[M, N] = A[M, K] B[K, N]`: (M, K, N, A transposed, B transposed, C transposed,
/// where the product comes from). A transposed operand is stored as its transpose and
/// passed as a `.t()` view, as the layers do.
const SHAPES: &[(usize, usize, usize, bool, bool, bool, &str)] = &[
    (256, 256, 256, false, false, false, "square"),
    (512, 512, 512, false, false, false, "square"),
    (1024, 1024, 1024, false, false, false, "square"),
    (1024, 6272, 128, false, true, true, "MNIST D fc forward, y^T = W x^T"),
    (128, 1024, 6272, false, false, false, "MNIST D fc dx = dy W; D conv2 forward"),
    (1024, 128, 6272, true, false, false, "MNIST D fc dweight = dy^T x"),
    (6272, 1024, 64, false, true, true, "MNIST G fc2 forward"),
    (6272, 64, 1024, true, false, false, "MNIST G fc2 dweight"),
    (1024, 3136, 128, false, true, true, "MNIST D conv2 dweight^T = cols dy^T (G step batch)"),
    (1024, 128, 490, true, false, false, "MNIST D conv2 dx, W^T dy for 10 images"),
    (64, 16, 12544, false, false, false, "MNIST D conv1 forward"),
    (256, 2048, 2048, false, false, false, "CIFAR-10 D conv3 forward"),
    (128, 1024, 8192, false, false, false, "CIFAR-10 D conv2 forward"),
    (2048, 2048, 256, false, true, true, "CIFAR-10 D conv3 dweight^T = cols dy^T"),
    (1024, 8192, 128, false, true, true, "CIFAR-10 D conv2 dweight^T"),
    (2048, 256, 256, true, false, false, "CIFAR-10 D conv3 dx, W^T dy for 16 images"),
    (1024, 128, 512, true, false, false, "CIFAR-10 D conv2 dx, W^T dy for 8 images"),
    (4096, 448, 128, true, false, false, "CIFAR-10 G deconv1 forward, W^T x for 32 images"),
    (448, 4096, 256, false, false, false, "CIFAR-10 G deconv1 dx = W dcols"),
    (64, 48, 32768, false, false, false, "CIFAR-10 D conv1 forward"),
    (48, 32768, 64, false, true, true, "CIFAR-10 D conv1 dweight^T, cut along K"),
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
        for &(m, k, n, ta, tb, tc, what) in SHAPES {
            let a_store: Array2<f32> = random_array(if ta { [k, m] } else { [m, k] }, 1);
            let b_store: Array2<f32> = random_array(if tb { [n, k] } else { [k, n] }, 2);
            let (a, b) = (if ta { a_store.t() } else { a_store.view() }, if tb { b_store.t() } else { b_store.view() });
            let mut c_store = Array2::<f32>::zeros(if tc { (n, m) } else { (m, n) });
            fn view(c: &mut Array2<f32>, tc: bool) -> ArrayViewMut2<'_, f32> {
                if tc { c.view_mut().reversed_axes() } else { c.view_mut() }
            }
            pool.install(|| gemm(1.0, a, b, 0.0, view(&mut c_store, tc)));
            validate(a, b, if tc { c_store.t() } else { c_store.view() });

            let flops = 2.0 * (m * k * n) as f64;
            let mut group = crit.benchmark_group(format!("sgemm threads={threads}"));
            group.throughput(Throughput::Elements(flops as u64));
            let mut totals = (Duration::ZERO, 0u64);
            let flags = format!("ta={} tb={} tc={}", u8::from(ta), u8::from(tb), u8::from(tc));
            group.bench_function(format!("{m}x{k}x{n} {flags} ({what})"), |bench| {
                time_in_pool(bench, &pool, &mut totals, || gemm(1.0, a, b, 0.0, view(&mut c_store, tc)))
            });
            let (total, iters) = totals;
            group.finish();
            let gflops = flops * iters as f64 / total.as_secs_f64() / 1e9;
            summary.push(format!("gemm {m}x{k}x{n} {flags} threads={threads} gflops={gflops:.1}"));
        }
    }
    println!();
    for line in summary {
        println!("{line}");
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_gemm
}
criterion_main!(benches);
