//! Forward + backward throughput of the MNIST InfoGAN's convolution layers at batch
//! 64, on one thread and on all cores. The fast layers are first checked against
//! the direct-loop references. One summary line per measurement:
//!
//! `layer conv2d 64->128 14x14 batch=64 threads=2 images_per_s=... gflops=...`

mod common;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array4;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use common::time_in_pool;
use infogan::layers::conv_transpose2d::conv_transpose2d_naive;
use infogan::layers::conv2d::conv2d_naive;
use infogan::layers::{Conv2d, ConvTranspose2d};
use infogan::testutil::{assert_close, random_array};

const BATCH: usize = 64;

enum Layer {
    Conv(Conv2d),
    Deconv(ConvTranspose2d),
}

impl Layer {
    fn forward(&mut self, x: Array4<f32>) -> Array4<f32> {
        match self {
            Layer::Conv(l) => l.forward(x),
            Layer::Deconv(l) => l.forward(x),
        }
    }
    fn backward(&mut self, dy: Array4<f32>) -> Array4<f32> {
        match self {
            Layer::Conv(l) => l.backward(dy),
            Layer::Deconv(l) => l.backward(dy),
        }
    }
    fn reference(&self, x: &Array4<f32>) -> Array4<f32> {
        match self {
            Layer::Conv(l) => conv2d_naive(x.view(), l.weight.view(), l.bias.as_slice().unwrap(), l.stride, l.padding),
            Layer::Deconv(l) => {
                conv_transpose2d_naive(x.view(), l.weight.view(), l.bias.as_slice().unwrap(), l.stride, l.padding)
            }
        }
    }
}

fn bench_layers(crit: &mut Criterion) {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    // (name, layer, input [C, H, W]); the model's k4 s2 p1 layers.
    let mut layers = vec![
        ("conv2d 1->64 28x28", Layer::Conv(Conv2d::new(1, 64, 4, 2, 1, &mut rng)), (1, 28, 28)),
        ("conv2d 64->128 14x14", Layer::Conv(Conv2d::new(64, 128, 4, 2, 1, &mut rng)), (64, 14, 14)),
        ("conv_transpose2d 128->64 7x7", Layer::Deconv(ConvTranspose2d::new(128, 64, 4, 2, 1, &mut rng)), (128, 7, 7)),
        ("conv_transpose2d 64->1 14x14", Layer::Deconv(ConvTranspose2d::new(64, 1, 4, 2, 1, &mut rng)), (64, 14, 14)),
    ];
    let mut summary = Vec::new();
    for (name, layer, (c, h, w)) in &mut layers {
        let x: Array4<f32> = random_array([BATCH, *c, *h, *w], 4);
        let y = layer.forward(x.clone());
        assert_close(&y, &layer.reference(&x), 1e-4, 1e-5, name);
        let dy: Array4<f32> = random_array(y.raw_dim(), 5);
        // Multiply-adds of forward, dweight and dx: 3 GEMMs of the same size.
        let (c_out, p_out) = (y.dim().1, y.dim().2 * y.dim().3);
        let macs = match layer {
            Layer::Conv(_) => c_out * *c * 16 * p_out,
            Layer::Deconv(_) => c_out * *c * 16 * *h * *w,
        };
        let flops = 3.0 * 2.0 * (BATCH * macs) as f64;
        for threads in [1, all] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut totals = (Duration::ZERO, 0u64);
            crit.bench_function(&format!("{name} batch={BATCH} threads={threads} forward+backward"), |bench| {
                time_in_pool(bench, &pool, &mut totals, || {
                    layer.forward(x.clone());
                    layer.backward(dy.clone());
                })
            });
            let (total, iters) = totals;
            let per_step = total.as_secs_f64() / iters as f64;
            summary.push(format!(
                "layer {name} batch={BATCH} threads={threads} images_per_s={:.0} gflops={:.1}",
                BATCH as f64 / per_step,
                flops / per_step / 1e9
            ));
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
    targets = bench_layers
}
criterion_main!(benches);
