//! The networks of the InfoGAN paper (Chen et al., 2016, appendix C), built from the
//! layers: the MNIST architecture (also used for Fashion-MNIST) and the SVHN/CelebA
//! architecture used for CIFAR-10.

pub mod classifier;
pub mod labels;
pub mod latent;
pub mod latent_paths;
pub mod sequential;
pub mod weights;

use ndarray::{Array2, Array4, ArrayD, Ix2, Ix4};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::data::DatasetKind;
use crate::init;
use crate::layers::{BatchNorm, Conv2d, ConvTranspose2d, LeakyRelu, Linear, Relu, Reshape, Tanh};
pub use latent::{LatentBatch, LatentSpec};
pub use sequential::Sequential;

/// LeakyReLU slope of the paper's discriminators.
pub const LEAKY_SLOPE: f32 = 0.1;

/// InfoGAN, or the plain GAN baseline (same networks, no information term).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// InfoGAN: the information term in both losses
    #[default]
    #[value(name = "infogan")]
    InfoGan,
    /// A plain GAN: no information term; Q is trained only as a probe
    Gan,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::InfoGan => "infogan",
            ModelKind::Gan => "gan",
        }
    }
}

/// Everything that fixes the networks' shapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Architecture {
    #[serde(with = "dataset_name")]
    pub dataset: DatasetKind,
    pub latent: LatentSpec,
}

/// The paper's default latent layout for a dataset: 62 noise values for MNIST-like
/// data, 100 for CIFAR-10, one 10-valued categorical code and two continuous codes.
pub fn default_latent(dataset: DatasetKind) -> LatentSpec {
    let noise = match dataset {
        DatasetKind::Mnist | DatasetKind::FashionMnist => 62,
        DatasetKind::Cifar10 => 100,
    };
    LatentSpec { noise, categorical: vec![10], continuous: 2 }
}

/// The discriminator: a shared trunk, the D head (one real/fake logit) and the Q head
/// (the code posteriors' parameters).
#[derive(Clone)]
pub struct Discriminator {
    pub trunk: Sequential,
    pub d_head: Sequential,
    pub q_head: Sequential,
}

impl Discriminator {
    /// The parts in their one fixed order (the optimizer's, the checkpoint's), under
    /// their checkpoint prefixes.
    pub fn parts(&self) -> [(&'static str, &Sequential); 3] {
        [("discriminator", &self.trunk), ("d_head", &self.d_head), ("q_head", &self.q_head)]
    }

    /// `parts`, mutably.
    pub fn parts_mut(&mut self) -> [(&'static str, &mut Sequential); 3] {
        [("discriminator", &mut self.trunk), ("d_head", &mut self.d_head), ("q_head", &mut self.q_head)]
    }

    /// Every parameter with its gradient, in the parts' order.
    pub fn params(&mut self) -> Vec<sequential::NamedParam<'_>> {
        self.parts_mut().into_iter().flat_map(|(_, s)| s.params()).collect()
    }

    /// `f` on every parameter in the order of `params` (trunk, D head, Q head).
    pub fn visit_params(&mut self, f: &mut dyn FnMut(crate::layers::Param<'_>)) {
        self.parts_mut().into_iter().for_each(|(_, s)| s.visit_params(f));
    }

    pub fn zero_grad(&mut self) {
        self.parts_mut().into_iter().for_each(|(_, s)| s.zero_grad());
    }

    pub fn set_requires_grad(&mut self, on: bool) {
        self.parts_mut().into_iter().for_each(|(_, s)| s.set_requires_grad(on));
    }

    pub fn set_training(&mut self, on: bool) {
        self.parts_mut().into_iter().for_each(|(_, s)| s.set_training(on));
    }

    /// Every batch norm's running statistics, in the parts' order.
    pub fn running_stats(&mut self) -> Vec<ndarray::ArrayD<f32>> {
        self.parts_mut().into_iter().flat_map(|(_, s)| s.buffers()).map(|b| b.buffer.value.to_owned()).collect()
    }

    /// Puts back statistics saved by `running_stats`.
    pub fn set_running_stats(&mut self, saved: &[ndarray::ArrayD<f32>]) {
        let mut buffers: Vec<_> = self.parts_mut().into_iter().flat_map(|(_, s)| s.buffers()).collect();
        assert_eq!(
            buffers.len(),
            saved.len(),
            "set_running_stats: {} saved for {} buffers",
            saved.len(),
            buffers.len()
        );
        for (b, s) in buffers.iter_mut().zip(saved) {
            b.buffer.value.assign(s);
        }
    }

    /// The trunk's features of a batch of images. x: [N, C, H, W] -> [N, F]
    pub fn features(&mut self, x: Array4<f32>) -> Array2<f32> {
        self.trunk.forward(x.into_dyn()).into_dimensionality::<Ix2>().expect("trunk ends in [N, F]")
    }

    /// The D head's logits of trunk features. h: [N, F] -> [N, 1]
    pub fn d_logits(&mut self, h: Array2<f32>) -> Array2<f32> {
        self.d_head.forward(h.into_dyn()).into_dimensionality::<Ix2>().expect("D head gives [N, 1]")
    }

    /// The Q head's outputs of trunk features. h: [N, F] -> [N, Q]
    pub fn q_outputs(&mut self, h: Array2<f32>) -> Array2<f32> {
        self.q_head.forward(h.into_dyn()).into_dimensionality::<Ix2>().expect("Q head gives [N, Q]")
    }
}

/// The generator: `[N, L]` latent vectors to `[N, C, H, W]` images in [-1, 1].
#[derive(Clone)]
pub struct Generator {
    pub net: Sequential,
}

impl Generator {
    /// The generator's checkpoint prefix.
    pub const PREFIX: &'static str = "generator";

    /// z: [N, L] -> images: [N, C, H, W]
    pub fn forward(&mut self, z: Array2<f32>) -> Array4<f32> {
        self.net.forward(z.into_dyn()).into_dimensionality::<Ix4>().expect("generator gives [N, C, H, W]")
    }

    /// Images in evaluation mode (batch norm's running statistics), as for pictures
    /// and exports: nothing of the training state changes.
    ///
    /// z: [N, L] -> images: [N, C, H, W]
    pub fn generate(&mut self, z: &Array2<f32>) -> Array4<f32> {
        self.net.set_training(false);
        let images = self.forward(z.clone());
        self.net.set_training(true);
        images
    }

    /// dimages: [N, C, H, W] -> dz: [N, L]
    pub fn backward(&mut self, dimages: Array4<f32>) -> ArrayD<f32> {
        self.net.backward(dimages.into_dyn())
    }
}

fn linear(f_in: usize, f_out: usize, rng: &mut impl Rng) -> Linear {
    let mut l = Linear::new(f_in, f_out, rng);
    l.weight = init::normal(l.weight.raw_dim(), 0.0, 0.02, rng);
    l.bias.fill(0.0);
    l
}

fn conv(c_in: usize, c_out: usize, rng: &mut impl Rng) -> Conv2d {
    let mut l = Conv2d::new(c_in, c_out, 4, 2, 1, rng);
    l.weight = init::normal(l.weight.raw_dim(), 0.0, 0.02, rng);
    l.bias.fill(0.0);
    l
}

fn deconv(c_in: usize, c_out: usize, rng: &mut impl Rng) -> ConvTranspose2d {
    let mut l = ConvTranspose2d::new(c_in, c_out, 4, 2, 1, rng);
    l.weight = init::normal(l.weight.raw_dim(), 0.0, 0.02, rng);
    l.bias.fill(0.0);
    l
}

fn bn(channels: usize, rng: &mut impl Rng) -> BatchNorm {
    let mut l = BatchNorm::new(channels);
    l.weight = init::normal(channels, 1.0, 0.02, rng);
    l
}

fn lrelu() -> LeakyRelu {
    LeakyRelu::new(LEAKY_SLOPE)
}

/// Builds both networks, initialised as in DCGAN (Radford et al., 2016): conv and
/// linear weights from N(0, 0.02), biases 0, batch-norm scales from N(1, 0.02).
pub fn build(arch: &Architecture, rng: &mut impl Rng) -> (Generator, Discriminator) {
    let l = arch.latent.size();
    let q = arch.latent.q_outputs();
    let mut g = Sequential::new();
    let mut trunk = Sequential::new();
    let features = match arch.dataset {
        DatasetKind::Mnist | DatasetKind::FashionMnist => {
            g.push("fc1", linear(l, 1024, rng)).push("bn1", bn(1024, rng)).push("relu1", Relu::new());
            g.push("fc2", linear(1024, 128 * 7 * 7, rng)).push("bn2", bn(128 * 7 * 7, rng)).push("relu2", Relu::new());
            g.push("reshape", Reshape::new(&[128, 7, 7]));
            g.push("deconv1", deconv(128, 64, rng)).push("bn3", bn(64, rng)).push("relu3", Relu::new());
            g.push("deconv2", deconv(64, 1, rng)).push("tanh", Tanh::new());

            trunk.push("conv1", conv(1, 64, rng)).push("lrelu1", lrelu());
            trunk.push("conv2", conv(64, 128, rng)).push("bn2", bn(128, rng)).push("lrelu2", lrelu());
            trunk.push("flatten", Reshape::new(&[128 * 7 * 7]));
            trunk.push("fc", linear(128 * 7 * 7, 1024, rng)).push("bn3", bn(1024, rng)).push("lrelu3", lrelu());
            1024
        }
        DatasetKind::Cifar10 => {
            g.push("fc", linear(l, 448 * 2 * 2, rng)).push("bn0", bn(448 * 2 * 2, rng)).push("relu0", Relu::new());
            g.push("reshape", Reshape::new(&[448, 2, 2]));
            g.push("deconv1", deconv(448, 256, rng)).push("bn1", bn(256, rng)).push("relu1", Relu::new());
            g.push("deconv2", deconv(256, 128, rng)).push("relu2", Relu::new());
            g.push("deconv3", deconv(128, 64, rng)).push("relu3", Relu::new());
            g.push("deconv4", deconv(64, 3, rng)).push("tanh", Tanh::new());

            trunk.push("conv1", conv(3, 64, rng)).push("lrelu1", lrelu());
            trunk.push("conv2", conv(64, 128, rng)).push("bn2", bn(128, rng)).push("lrelu2", lrelu());
            trunk.push("conv3", conv(128, 256, rng)).push("bn3", bn(256, rng)).push("lrelu3", lrelu());
            trunk.push("flatten", Reshape::new(&[256 * 4 * 4]));
            256 * 4 * 4
        }
    };
    let mut d_head = Sequential::new();
    d_head.push("fc", linear(features, 1, rng));
    let mut q_head = Sequential::new();
    q_head.push("fc1", linear(features, 128, rng)).push("bn1", bn(128, rng)).push("lrelu1", lrelu());
    q_head.push("fc2", linear(128, q, rng));
    (Generator { net: g }, Discriminator { trunk, d_head, q_head })
}

/// (De)serialises a dataset as its command-line name.
mod dataset_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::data::DatasetKind;

    pub fn serialize<S: Serializer>(kind: &DatasetKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DatasetKind, D::Error> {
        let name = String::deserialize(d)?;
        DatasetKind::parse(&name).map_err(serde::de::Error::custom)
    }
}
