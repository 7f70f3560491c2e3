//! Outputs and gradients are bit-identical on 1 thread and on 2: every parallel loop
//! cuts its work by the shape alone and sums partial results in a fixed order.

use ndarray::{Array2, Array4, ArrayD};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use infogan::layers::{BatchNorm, Conv2d, ConvTranspose2d, Layer, LeakyRelu, Linear, Tanh};
use infogan::testutil::random_array;

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

/// Runs the MNIST discriminator's and generator's big layers forward and backward
/// (twice, so that gradients accumulate) at batch 64 and returns every output,
/// input gradient and parameter gradient.
fn run_layers() -> Vec<ArrayD<f32>> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let mut out = Vec::new();
    let mut conv = Conv2d::new(64, 128, 4, 2, 1, &mut rng);
    let mut bn2 = BatchNorm::new(128);
    let mut act = LeakyRelu::new(0.1);
    let mut fc = Linear::new(128 * 7 * 7, 1024, &mut rng);
    let mut bn1 = BatchNorm::new(1024);
    let mut deconv = ConvTranspose2d::new(64, 1, 4, 2, 1, &mut rng);
    let mut tanh = Tanh::new();
    for pass in 0..2 {
        let x: Array4<f32> = random_array([64, 64, 14, 14], pass);
        let h = act.forward(bn2.forward(conv.forward(x)));
        let h = h.into_shape_with_order((64, 128 * 7 * 7)).unwrap();
        let y = bn1.forward(fc.forward(h));
        out.push(y.clone().into_dyn());
        let dy: Array2<f32> = random_array(y.raw_dim(), 10 + pass);
        let dh = fc.backward(bn1.backward(dy)).into_shape_with_order((64, 128, 7, 7)).unwrap();
        out.push(conv.backward(bn2.backward(act.backward(dh))).into_dyn());

        let z: Array4<f32> = random_array([64, 64, 14, 14], 20 + pass);
        let img = tanh.forward(deconv.forward(z));
        out.push(img.clone().into_dyn());
        out.push(deconv.backward(tanh.backward(img)).into_dyn());
    }
    for module in [&mut conv as &mut dyn Layer, &mut bn2, &mut fc, &mut bn1, &mut deconv] {
        out.extend(module.params().into_iter().map(|p| p.grad.to_owned()));
        out.extend(module.buffers().into_iter().map(|b| b.value.to_owned()));
    }
    out
}

#[test]
fn layers_are_bit_identical_on_one_and_two_threads() {
    let one = in_pool(1, run_layers);
    let two = in_pool(2, run_layers);
    assert_eq!(one.len(), two.len());
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        let same = a.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits());
        let diff = a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(same, "tensor {i} {:?} differs between 1 and 2 threads (max diff {diff})", a.shape());
    }
}
