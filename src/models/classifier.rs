//! The classifier behind `infogan score`: a small convolutional network trained on
//! the dataset's own training set with our own layers. Its penultimate features give
//! the Frechet distance and the within-code diversity, its class probabilities the
//! Inception-style score.
//!
//! It plays the role the Inception network plays in FID (Heusel et al., 2017) and
//! the Inception score (Salimans et al., 2016), but it is a different, much smaller
//! network trained on other data, so its figures are not comparable to published
//! FID or IS values: they compare runs of this tool with each other and with the
//! real images.

use ndarray::{Array2, Array4, Ix2};
use rand::Rng;

use super::sequential::Sequential;
use crate::data::DatasetKind;
use crate::init;
use crate::layers::{BatchNorm, Conv2d, LeakyRelu, Linear, Reshape};

/// Width of the feature layer.
pub const FEATURES: usize = 128;

/// The feature extractor and the class head.
#[derive(Clone)]
pub struct Classifier {
    /// Images to features: three stride-2 convolutions (64, 128, 256 channels, batch
    /// norm on the last two), then a linear layer to `FEATURES` with batch norm,
    /// LeakyReLU(0.2) after each.
    pub body: Sequential,
    /// Features to class logits: one linear layer.
    pub head: Sequential,
}

impl Classifier {
    /// A fresh network for `dataset`'s image shape and `classes` labels, initialised
    /// as the GAN's networks are (DCGAN: normal(0, 0.02) weights, zero biases).
    pub fn new(dataset: DatasetKind, classes: usize, rng: &mut impl Rng) -> Self {
        let (c, h, w) = dataset.image_shape();
        let mut body = Sequential::new();
        let (mut size_h, mut size_w) = (h, w);
        for (i, (c_in, c_out)) in [(c, 64), (64, 128), (128, 256)].into_iter().enumerate() {
            let mut conv = Conv2d::new(c_in, c_out, 4, 2, 1, rng);
            conv.weight = init::normal(conv.weight.raw_dim(), 0.0, 0.02, rng);
            conv.bias.fill(0.0);
            (size_h, size_w) = conv.output_size(size_h, size_w);
            body.push(format!("conv{}", i + 1), conv);
            if i > 0 {
                body.push(format!("bn{}", i + 1), BatchNorm::new(c_out));
            }
            body.push(format!("lrelu{}", i + 1), LeakyRelu::new(0.2));
        }
        let flat = 256 * size_h * size_w;
        body.push("flatten", Reshape::new(&[flat]));
        body.push("fc1", linear(flat, FEATURES, rng));
        body.push("bn4", BatchNorm::new(FEATURES));
        body.push("lrelu4", LeakyRelu::new(0.2));
        let mut head = Sequential::new();
        head.push("fc2", linear(FEATURES, classes, rng));
        Classifier { body, head }
    }

    /// x: [N, C, H, W] -> features: [N, FEATURES]
    pub fn features(&mut self, x: Array4<f32>) -> Array2<f32> {
        self.body.forward(x.into_dyn()).into_dimensionality::<Ix2>().expect("the body ends in [N, F]")
    }

    /// features: [N, FEATURES] -> logits: [N, classes]
    pub fn logits(&mut self, h: Array2<f32>) -> Array2<f32> {
        self.head.forward(h.into_dyn()).into_dimensionality::<Ix2>().expect("the head gives [N, K]")
    }

    /// Training mode (batch statistics) or evaluation mode (running statistics).
    pub fn set_training(&mut self, on: bool) {
        self.body.set_training(on);
        self.head.set_training(on);
    }
}

fn linear(f_in: usize, f_out: usize, rng: &mut impl Rng) -> Linear {
    let mut l = Linear::new(f_in, f_out, rng);
    l.weight = init::normal(l.weight.raw_dim(), 0.0, 0.02, rng);
    l.bias.fill(0.0);
    l
}
