//! The exported generators run in an independent runtime, tract, and reproduce this
//! implementation's forward pass within 1e-4, for batch sizes 1 and 7.
#![cfg(feature = "onnx")]

use ndarray::Array4;
use prost::Message;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use tract_onnx::prelude::*;

use infogan::data::DatasetKind;
use infogan::output::onnx::generator_model;
use infogan::train::{TrainConfig, Trainer};

/// The dataset's defaults, at a small batch.
fn config(dataset: DatasetKind) -> TrainConfig {
    TrainConfig { batch_size: 8, seed: 5, ..TrainConfig::defaults(dataset) }
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
        let bytes = generator_model(&trainer.generator, &arch).unwrap().encode_to_vec();
        let model = tract_onnx::onnx().model_for_read(&mut bytes.as_slice()).unwrap().into_optimized().unwrap();
        let model = model.into_runnable().unwrap();
        for batch in [1, 7] {
            let latent = arch.latent.sample(batch, &mut rng);
            let expected = trainer.generator.generate(&latent.z);
            let input = Tensor::from_shape(&[batch, arch.latent.size()], latent.z.as_slice().unwrap()).unwrap();
            let out = model.run(tvec!(input.into())).unwrap();
            let image = out[0].to_plain_array_view::<f32>().unwrap();
            assert_eq!(image.shape(), expected.shape(), "{dataset} batch {batch}: output shape");
            let worst = image.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-4, "{dataset} batch {batch}: tract and Rust differ by up to {worst}");
        }
    }
}
