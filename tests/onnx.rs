//! The exported generators run in an independent runtime, tract, and reproduce this
//! implementation's forward pass within 1e-4, for batch sizes 1 and 7.
#![cfg(feature = "onnx")]

use ndarray::Array4;
use prost::Message;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use tract_onnx::prelude::*;

use infogan::data::DatasetKind;
use infogan::layers::{BatchNorm, ConvTranspose2d, LeakyRelu, Linear, Relu, Reshape, Tanh};
use infogan::models::{Architecture, Generator, LatentSpec, Sequential};
use infogan::output::onnx::generator_model;
use infogan::train::{TrainConfig, Trainer};

/// The dataset's defaults, at a small batch.
fn config(dataset: DatasetKind) -> TrainConfig {
    TrainConfig { batch_size: 8, seed: 5, ..TrainConfig::defaults(dataset) }
}

/// The largest difference between tract's run of `g`'s export and `g` itself, over
/// batches of 1 and 7.
fn tract_difference(g: &mut Generator, arch: &Architecture, rng: &mut Xoshiro256PlusPlus) -> f32 {
    let bytes = generator_model(g, arch, None).unwrap().encode_to_vec();
    let model = tract_onnx::onnx().model_for_read(&mut bytes.as_slice()).unwrap().into_optimized().unwrap();
    let model = model.into_runnable().unwrap();
    let mut worst = 0f32;
    for batch in [1, 7] {
        let latent = arch.latent.sample(batch, rng);
        let expected = g.generate(&latent.z);
        let input = Tensor::from_shape(&[batch, arch.latent.size()], latent.z.as_slice().unwrap()).unwrap();
        let out = model.run(tvec!(input.into())).unwrap();
        let image = out[0].to_plain_array_view::<f32>().unwrap();
        assert_eq!(image.shape(), expected.shape(), "{} batch {batch}: output shape", arch.dataset);
        worst = image.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).fold(worst, f32::max);
    }
    worst
}

#[test]
fn tract_reproduces_the_generator() {
    for dataset in [DatasetKind::Mnist, DatasetKind::Cifar10] {
        let mut trainer = Trainer::new(config(dataset));
        // A few steps, so that the running statistics and weights are not the
        // initial ones and the batch-norm folding is exercised.
        let (c, h, w) = dataset.image_shape();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for _ in 0..3 {
            let real = Array4::from_shape_simple_fn((8, c, h, w), || rng.random_range(-1.0f32..1.0));
            trainer.train_step(real);
        }
        let arch = trainer.config.arch.clone();
        let worst = tract_difference(&mut trainer.generator, &arch, &mut rng);
        assert!(worst <= 1e-4, "{dataset}: tract and Rust differ by up to {worst}");
    }
}

/// Any chain of the layers exports, each layer through its own operator: here a
/// batch norm after a ReLU (not foldable, so a BatchNormalization node) and one
/// after a transposed convolution (folded), with running statistics far from 0 and 1.
#[test]
fn tract_reproduces_a_chain_with_an_unfolded_batch_norm() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let arch = Architecture {
        dataset: DatasetKind::Mnist,
        latent: LatentSpec { noise: 5, categorical: vec![3], continuous: 1 },
    };
    let mut net = Sequential::new();
    let mut bn1 = BatchNorm::new(16 * 7 * 7);
    let mut bn2 = BatchNorm::new(8);
    for bn in [&mut bn1, &mut bn2] {
        bn.running_mean.mapv_inplace(|_| rng.random_range(-0.5f32..0.5));
        bn.running_var.mapv_inplace(|_| rng.random_range(0.2f32..3.0));
        bn.weight.mapv_inplace(|_| rng.random_range(0.5f32..1.5));
        bn.bias.mapv_inplace(|_| rng.random_range(-0.3f32..0.3));
    }
    net.push("fc", Linear::new(arch.latent.size(), 16 * 7 * 7, &mut rng)).push("relu1", Relu::new()).push("bn1", bn1);
    net.push("reshape", Reshape::new(&[16, 7, 7]));
    net.push("deconv1", ConvTranspose2d::new(16, 8, 4, 2, 1, &mut rng))
        .push("bn2", bn2)
        .push("lrelu", LeakyRelu::new(0.1));
    net.push("deconv2", ConvTranspose2d::new(8, 1, 4, 2, 1, &mut rng)).push("tanh", Tanh::new());
    let mut g = Generator { net };
    let model = generator_model(&g, &arch, None).unwrap();
    let ops: Vec<String> = model.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.clone().unwrap()).collect();
    assert_eq!(
        ops,
        ["Gemm", "Relu", "BatchNormalization", "Reshape", "ConvTranspose", "LeakyRelu", "ConvTranspose", "Tanh"]
    );
    let worst = tract_difference(&mut g, &arch, &mut rng);
    assert!(worst <= 1e-4, "tract and Rust differ by up to {worst}");
}
