//! One InfoGAN (or plain GAN) training step, and the state that training carries
//! from step to step.
//!
//! The step follows the paper (Chen et al., 2016) and the authors' code:
//! - D minimises BCE on real images (target 1) and generated ones (target 0).
//! - G minimises the non-saturating loss, BCE of D on its images against target 1.
//! - The information loss `L_info = lambda_cat * CE(Q_cat, c_cat) + lambda_cont *
//!   NLL(c_cont | Q_mean, std)` is added to D's loss on the generated batch (so the
//!   shared trunk and the Q head both learn from it) and to G's loss. The std is 1
//!   or Q's prediction (`ContStd`).
//! - `ModelKind::Gan` drops the information term from both losses; its Q head is
//!   still trained, on features that do not pass gradients back into the trunk, as a
//!   probe of how much of the codes a plain GAN keeps.

pub mod checkpoint;
pub mod classifier;
pub mod config;
pub mod memory;
pub mod run;
pub mod run_dir;

pub use config::{ContStd, DEFAULT_BATCH_SIZE, DEFAULT_SEED, DEFAULT_STEPS, Recipe, TrainConfig, default_epochs};

use ndarray::{Array2, Array4, Axis, s};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::layers::DiffAugment;
use crate::loss::{bce_with_logits, cross_entropy, gaussian_nll, mode_seeking};
use crate::models::{self, Discriminator, Generator, LatentBatch, ModelKind};
use crate::optim::Adam;

/// What one step measured.
#[derive(Debug, Clone, Default)]
pub struct StepStats {
    /// D's loss: BCE on the real batch plus BCE on the generated batch.
    pub d_loss: f64,
    /// G's adversarial loss (the non-saturating BCE).
    pub g_loss: f64,
    /// The weighted information loss on the generated batch of D's step (for the
    /// plain GAN, the probe's loss).
    pub info_loss: f64,
    /// Mean D(x) (a probability) on the real batch.
    pub d_real: f64,
    /// Mean D(G(z)) on the generated batch, before D's update.
    pub d_fake: f64,
    /// The unweighted loss of each code: cross-entropy for each categorical code,
    /// then the Gaussian NLL of each continuous code. `H(c)` minus this is the
    /// variational lower bound of the code's mutual information with the image.
    pub code_losses: Vec<f64>,
}

/// The networks, their optimizers, the RNG and the step counter.
pub struct Trainer {
    pub config: TrainConfig,
    pub generator: Generator,
    pub discriminator: Discriminator,
    pub opt_g: Adam,
    /// Adam for the discriminator: the trunk, the D head and the Q head.
    pub opt_d: Adam,
    /// Draws the latent vectors (and the augmentations) of every step.
    pub rng: Xoshiro256PlusPlus,
    /// The augmentation in front of D, when `config.diffaug` is on.
    pub augment: DiffAugment,
    /// Optimizer steps done so far.
    pub step: u64,
}

impl Trainer {
    /// Fresh networks, initialised from `config.seed`. The networks are built only
    /// from a configuration that passes `TrainConfig::validate` (the command line
    /// validates every one it makes); another is a bug in the caller.
    pub fn new(config: TrainConfig) -> Self {
        if let Err(e) = config.validate() {
            panic!("Trainer::new: the configuration does not pass TrainConfig::validate: {e}");
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let (generator, discriminator) = models::build(&config.arch, &mut rng);
        let opt_g = Adam::new(config.lr_g, config.beta1, config.beta2);
        let opt_d = Adam::new(config.lr_d, config.beta1, config.beta2);
        let augment = DiffAugment::new(config.diffaug);
        Trainer { config, generator, discriminator, opt_g, opt_d, rng, augment, step: 0 }
    }

    /// One update of D (with its Q head), then one of G, on a batch of real images.
    ///
    /// real: [N, C, H, W] in [-1, 1]
    pub fn train_step(&mut self, real: Array4<f32>) -> StepStats {
        let n = real.dim().0;
        let seeking = self.config.mode_seeking > 0.0;
        let latent = self.draw_latent(n);
        let fake = self.generator.forward(latent.z.clone());
        let info_gan = self.config.model == ModelKind::InfoGan;
        let d = &mut self.discriminator;

        // D step on the real and the generated batch (G is not updated here). Both go
        // through the trunk in one pass, stacked along N, with batch norm told that
        // they are two groups: each is normalised with its own statistics, exactly as
        // in two separate passes, but every weight is read once instead of twice.
        d.zero_grad();
        d.set_requires_grad(true);
        d.trunk.set_groups(2);
        let both = ndarray::concatenate(Axis(0), &[real.view(), fake.view()]).expect("same image shape");
        let augmented = !self.config.diffaug.is_none();
        // DiffAugment: every image its own draw; D only ever sees augmented images.
        let both = if augmented { self.augment.forward(both, &mut self.rng) } else { both };
        let h = d.features(both);
        d.trunk.set_groups(1);
        let logits = d.d_logits(h.clone());
        let (real_logits, fake_logits) = logits.view().split_at(Axis(0), n);
        let (loss_real, dlogits_real) = bce_with_logits(real_logits, Array2::ones(real_logits.raw_dim()).view());
        let (loss_fake, dlogits_fake) = bce_with_logits(fake_logits, Array2::zeros(fake_logits.raw_dim()).view());
        let (d_real, d_fake) = (mean_probability(real_logits), mean_probability(fake_logits));
        let q = d.q_outputs(h.slice(s![n.., ..]).to_owned());
        let info = info_loss(&self.config, self.step, &q, &latent);
        let dlogits = ndarray::concatenate(Axis(0), &[dlogits_real.view(), dlogits_fake.view()]).expect("same width");
        let mut dh = d.d_head.backward(dlogits.into_dyn());
        let dh_q = d.q_head.backward(info.dq.into_dyn());
        if info_gan {
            let mut dh_fake = dh.slice_mut(s![n.., ..]);
            dh_fake += &dh_q;
        }
        d.trunk.backward_params(dh);
        self.opt_d.update(d.params().into_iter().map(|p| p.param).collect());

        // G step: the same generated batch (or, with `fresh_g_latent`, one from a new
        // latent batch) through the updated D, whose parameters are frozen: gradients
        // only pass through to G.
        let (latent, fake) = if self.config.fresh_g_latent {
            let fresh = self.draw_latent(n);
            let images = self.generator.forward(fresh.z.clone());
            (fresh, images)
        } else {
            (latent, fake)
        };
        let d = &mut self.discriminator;
        self.generator.net.zero_grad();
        d.set_requires_grad(false);
        // The mode-seeking term acts on the images themselves, before any augmentation.
        let dseek = seeking.then(|| {
            let noise = latent.z.slice(s![.., ..self.config.arch.latent.noise]);
            let (_, d) = mode_seeking(fake.view(), noise);
            d * self.config.mode_seeking
        });
        let fake = if augmented { self.augment.forward(fake, &mut self.rng) } else { fake };
        let h = d.features(fake);
        let logits = d.d_logits(h.clone());
        let (g_loss, dlogits) = bce_with_logits(logits.view(), Array2::ones(logits.raw_dim()).view());
        let mut dh = d.d_head.backward(dlogits.into_dyn());
        if info_gan {
            let q = d.q_outputs(h);
            let info_g = info_loss(&self.config, self.step, &q, &latent);
            dh += &d.q_head.backward(info_g.dq.into_dyn());
        }
        let dfake = d.trunk.backward(dh).into_dimensionality().expect("trunk input is [N, C, H, W]");
        let mut dfake = if augmented { self.augment.backward(dfake) } else { dfake };
        if let Some(d) = dseek {
            dfake += &d;
        }
        d.set_requires_grad(true);
        self.generator.backward(dfake);
        self.opt_g.update(self.generator.net.params().into_iter().map(|p| p.param).collect());

        self.step += 1;
        StepStats {
            d_loss: (loss_real + loss_fake) as f64,
            g_loss: g_loss as f64,
            info_loss: info.loss,
            d_real,
            d_fake,
            code_losses: info.code_losses,
        }
    }
}

impl Trainer {
    /// A latent batch of `n` from the prior: in pairs sharing their codes when mode
    /// seeking is on.
    fn draw_latent(&mut self, n: usize) -> LatentBatch {
        if self.config.mode_seeking > 0.0 {
            self.config.arch.latent.sample_pairs(n, &mut self.rng)
        } else {
            self.config.arch.latent.sample(n, &mut self.rng)
        }
    }
}

/// The RNG that orders the data of `epoch` (0-based) of a run with `seed`: derived
/// from the two alone, so that a resumed run sees the same order.
pub fn epoch_rng(seed: u64, epoch: usize) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(epoch as u64 + 1))
}

fn mean_probability(logits: ndarray::ArrayView2<f32>) -> f64 {
    logits.iter().map(|&z| crate::layers::activation::sigmoid(z) as f64).sum::<f64>() / logits.len().max(1) as f64
}

/// The information loss of Q's outputs for the codes in `latent`, and its gradient.
pub struct InfoLoss {
    /// `lambda_cat * sum of CE + lambda_cont * NLL`
    pub loss: f64,
    /// dq: [N, Q]
    pub dq: Array2<f32>,
    /// Unweighted per-code losses: CE of each categorical code, then the NLL (mean
    /// over the batch) of each continuous code.
    pub code_losses: Vec<f64>,
}

/// Splits Q's outputs `q: [N, Q]` into each categorical code's logits, the continuous
/// codes' means and log standard deviations, and scores them against the sampled
/// codes: cross-entropy for categorical codes (weighted as at optimizer step `step`),
/// the Gaussian NLL for continuous ones.
pub fn info_loss(config: &TrainConfig, step: u64, q: &Array2<f32>, latent: &LatentBatch) -> InfoLoss {
    let spec = &config.arch.latent;
    let lambda_cat = config.lambda_cat_at(step);
    let mut dq = Array2::zeros(q.raw_dim());
    let mut loss = 0f64;
    let mut code_losses = Vec::new();
    let mut col = 0;
    for (k, &values) in spec.categorical.iter().enumerate() {
        let (ce, dlogits) = cross_entropy(q.slice(s![.., col..col + values]), &latent.cat[k]);
        loss += lambda_cat as f64 * ce as f64;
        code_losses.push(ce as f64);
        dq.slice_mut(s![.., col..col + values]).assign(&(dlogits * lambda_cat));
        col += values;
    }
    let c = spec.continuous;
    if c > 0 {
        let mean = q.slice(s![.., col..col + c]);
        // With the std fixed at 1 the log-std is 0, a constant instead of Q's outputs.
        let unit_std: Option<Array2<f32>> = (config.cont_std == ContStd::Fixed).then(|| Array2::zeros(mean.raw_dim()));
        let logstd = unit_std.as_ref().map_or_else(|| q.slice(s![.., col + c..col + 2 * c]), |z| z.view());
        let (nll, dmean, dlogstd) = gaussian_nll(latent.cont.view(), mean, logstd);
        loss += config.lambda_cont as f64 * nll as f64;
        dq.slice_mut(s![.., col..col + c]).assign(&(dmean * config.lambda_cont));
        if config.cont_std == ContStd::Learned {
            dq.slice_mut(s![.., col + c..col + 2 * c]).assign(&(dlogstd * config.lambda_cont));
        }
        for j in 0..c {
            let pick = |a: ndarray::ArrayView2<f32>| a.slice(s![.., j..j + 1]).to_owned();
            let (nll_j, _, _) = gaussian_nll(pick(latent.cont.view()).view(), pick(mean).view(), pick(logstd).view());
            code_losses.push(nll_j as f64);
        }
    }
    InfoLoss { loss, dq, code_losses }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DatasetKind;
    use rand::RngExt;

    fn config(cont_std: ContStd) -> TrainConfig {
        TrainConfig { lambda_cat: 1.0, lambda_cont: 0.5, cont_std, ..TrainConfig::defaults(DatasetKind::Mnist) }
    }

    /// With the std fixed at 1 the continuous codes' loss is `0.5 (c - mean)^2 +
    /// 0.5 ln(2 pi)`, whatever Q's log-std outputs hold, and those outputs get no
    /// gradient; the learned-std loss agrees with it where the log-std is 0.
    #[test]
    fn fixed_std_ignores_the_logstd_outputs() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let fixed = config(ContStd::Fixed);
        let latent = fixed.arch.latent.sample(4, &mut rng);
        let mut q = Array2::from_shape_fn((4, 14), |_| rng.random_range(-2.0f32..2.0));
        let out = info_loss(&fixed, 0, &q, &latent);
        assert!(out.dq.slice(s![.., 12..14]).iter().all(|&g| g == 0.0), "log-std outputs got gradients: {}", out.dq);
        let mut sq = 0f64;
        for ((n, j), &c) in latent.cont.indexed_iter() {
            sq += (c as f64 - q[[n, 10 + j]] as f64).powi(2);
        }
        let nll = 0.5 * sq / 8.0 + 0.5 * std::f64::consts::TAU.ln();
        let ce = out.code_losses[0];
        assert!((out.loss - (ce + 0.5 * nll)).abs() < 1e-5, "loss {} != CE {ce} + 0.5 NLL {nll}", out.loss);

        q.slice_mut(s![.., 12..14]).fill(0.0);
        let learned = info_loss(&config(ContStd::Learned), 0, &q, &latent);
        let fixed = info_loss(&fixed, 0, &q, &latent);
        assert!((learned.loss - fixed.loss).abs() < 1e-9);
        assert_eq!(learned.dq.slice(s![.., ..12]), fixed.dq.slice(s![.., ..12]));
    }

    /// `fresh_g_latent` leaves D's step as it is (its latent batch is drawn first)
    /// and changes only what G's step sees. (D's batch-norm running statistics also
    /// follow G's batch, so only D's parameters are compared.)
    #[test]
    fn a_fresh_latent_changes_only_the_generators_step() {
        let base = TrainConfig { batch_size: 4, ..TrainConfig::defaults(DatasetKind::Mnist) };
        let real = Array4::from_shape_fn((4, 1, 28, 28), |(n, _, y, x)| ((n * 7 + y * 3 + x) % 11) as f32 / 5.5 - 1.0);
        let mut trainers: Vec<Trainer> = [false, true]
            .into_iter()
            .map(|fresh| Trainer::new(TrainConfig { fresh_g_latent: fresh, ..base.clone() }))
            .collect();
        for t in &mut trainers {
            t.train_step(real.clone());
        }
        let [shared, fresh] =
            [&trainers[0], &trainers[1]].map(|t| models::weights::tensors(&t.generator, &t.discriminator));
        let differs = |part: &str| {
            shared
                .iter()
                .zip(&fresh)
                .filter(|((name, _), _)| name.starts_with(part) && !name.contains(".running_"))
                .any(|((_, a), (_, b))| a != b)
        };
        assert!(!differs("discriminator") && !differs("d_head") && !differs("q_head"), "D's step changed");
        assert!(differs("generator"), "G's step did not change");
    }
}
