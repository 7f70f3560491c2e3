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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ndarray::{Array2, Array4, ArrayView2, Axis, ShapeBuilder, s};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::buffers;
use crate::collective::Shards;
use crate::data::affine::{Warp, warp_into};
use crate::layers::DiffAugment;
use crate::loss::{
    bce_with_logits_part, cross_entropy_part, gaussian_nll_part, gaussian_nll_sum, mode_seeking_sharded,
    soft_cross_entropy_part, softmax,
};
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
    /// How each step's batch is split into shards, on this process and across the
    /// ranks of a job (`collective`): `config.shards` on this process alone unless
    /// `set_comm` spreads them.
    pub shards: Shards,
    /// What a step keeps for the next so as not to allocate it again.
    pub(crate) scratch: StepScratch,
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
        let shards = Shards::new(config.shards, None);
        Trainer {
            config,
            generator,
            discriminator,
            opt_g,
            opt_d,
            rng,
            augment,
            step: 0,
            shards,
            scratch: StepScratch::default(),
        }
    }

    /// Spreads the step's shards over the ranks of `comm` (or keeps them here with
    /// `None`): `train_step` then takes this rank's part of each batch.
    pub fn set_comm(&mut self, comm: Option<std::sync::Arc<dyn crate::collective::Comm>>) {
        self.shards = Shards::new(self.config.shards, comm);
    }

    /// Gives every layer `shards`. The layers see the step's shards only within
    /// `train_step`: whatever else runs the networks (evaluation, pictures, on rank 0
    /// alone) sums over its own batch.
    fn layers_see(&mut self, shards: &Shards) {
        self.generator.net.set_shards(shards);
        self.discriminator.parts_mut().into_iter().for_each(|(_, part)| part.set_shards(shards));
    }

    /// One update of D (with its Q head), then one of G, on a batch of real images:
    /// the whole batch, or on a rank of a job this rank's rows of it
    /// (`local_rows(&trainer.shards, batch_size, false)`).
    ///
    /// Every random draw (latent vectors, augmentations) is made for the whole batch,
    /// so every rank draws the same numbers and keeps its own rows. Each shard's part
    /// of the batch stays together: D's stacked batch is, per local shard, its real
    /// then its generated images, batch norm's two groups within each.
    ///
    /// real: [N, C, H, W] in [-1, 1]
    pub fn train_step(&mut self, real: Array4<f32>) -> StepStats {
        let mut stats = StepStats::default();
        self.train_step_into(real, &mut stats);
        stats
    }

    /// `train_step`, writing what it measured into `stats`. Once a few steps have run,
    /// a step on a single shard allocates nothing (`tests/allocations.rs`): the
    /// tensors' storage comes back from `buffers`, the rest is kept in `StepScratch`.
    pub fn train_step_into(&mut self, real: Array4<f32>, stats: &mut StepStats) {
        let shards = self.shards.clone();
        self.layers_see(&shards);
        let mut scratch = std::mem::take(&mut self.scratch);
        self.step_on_shards(real, &shards, &mut scratch, stats);
        self.scratch = scratch;
        self.layers_see(&Shards::single());
    }

    fn step_on_shards(&mut self, real: Array4<f32>, shards: &Shards, scratch: &mut StepScratch, stats: &mut StepStats) {
        let (n, _, height, width) = real.dim();
        let batch = n * shards.ranks();
        let seeking = self.config.mode_seeking > 0.0;
        local_rows_into(shards, batch, false, &mut scratch.real_rows);
        local_rows_into(shards, batch, seeking, &mut scratch.g_rows);
        self.draw_latent(batch, &mut scratch.drawn);
        scratch.drawn.rows_into(&scratch.g_rows, &mut scratch.latent);
        let mut fake = self.generator.forward(buffers::copy(&scratch.latent.z));
        let info_gan = self.config.model == ModelKind::InfoGan;
        let (one, zero) = (1f32, 0f32);
        let d = &mut self.discriminator;

        // D step on the real and the generated batch (G is not updated here). Both go
        // through the trunk in one pass, stacked along N, with batch norm told that
        // they are two groups: each is normalised with its own statistics, exactly as
        // in two separate passes, but every weight is read once instead of twice.
        d.zero_grad();
        d.set_requires_grad(true);
        // With Q's consistency on real images, a third group: the real batch warped
        // (one warp per image of the whole batch, drawn on every rank alike).
        let consistent = self.config.q_consistency > 0.0;
        let groups = if consistent { 3 } else { 2 };
        d.trunk.set_groups(groups);
        let both = if consistent {
            scratch.warps.clear();
            scratch.warps.extend((0..batch).map(|_| Warp::draw(&mut self.rng)));
            scratch.local_warps.clear();
            scratch.local_warps.extend(scratch.real_rows.iter().map(|&r| scratch.warps[r]));
            let mut warped = buffers::take(real.raw_dim());
            warp_into(real.view(), &scratch.local_warps, -1.0, warped.view_mut());
            let both = stack_groups(shards, &[real.view(), fake.view(), warped.view()]);
            buffers::give(warped);
            both
        } else {
            stack_groups(shards, &[real.view(), fake.view()])
        };
        // The caller's batch is not given to the pool, which would keep one more for
        // every step of a loop that makes each batch afresh.
        drop(real);
        let augmented = !self.config.diffaug.is_none();
        // DiffAugment: every image its own draw, the whole real batch's then the whole
        // generated batch's; D only ever sees augmented images.
        let both = if augmented {
            self.augment.draw(2 * batch, height, width, &mut self.rng);
            let (real_rows, g_rows) = (&scratch.real_rows, &scratch.g_rows);
            let own = move |s: usize| {
                let rows = shards.rows(s, n);
                let real = real_rows[rows.clone()].iter().copied();
                real.chain(g_rows[rows].iter().map(move |&r| batch + r))
            };
            self.augment.forward_picked(both, (0..shards.local()).flat_map(own))
        } else {
            both
        };
        let h = d.features(both);
        d.trunk.set_groups(1);
        let logits = d.d_logits(if consistent { take_groups(shards, h.view(), &[0, 1], 3) } else { buffers::copy(&h) });
        let (real_logits, fake_logits) =
            (take_groups(shards, logits.view(), &[0], 2), take_groups(shards, logits.view(), &[1], 2));
        buffers::give(logits);
        let (loss_real, dlogits_real) = bce_with_logits_part(real_logits.view(), filled(&real_logits, &one), batch);
        let (loss_fake, dlogits_fake) = bce_with_logits_part(fake_logits.view(), filled(&fake_logits, &zero), batch);
        // Q reads the generated group; with consistency also the real and the warped
        // ones, in that order ([fake, real, warped]), each normalised on its own.
        let q_groups: &[usize] = if consistent { &[1, 0, 2] } else { &[1] };
        d.q_head.set_groups(q_groups.len());
        let q = d.q_outputs(take_groups(shards, h.view(), q_groups, groups));
        d.q_head.set_groups(1);
        buffers::give(h);
        scratch.info_sums.clear();
        let dq = if consistent {
            let q_fake = take_groups(shards, q.view(), &[0], 3);
            let dq_fake =
                info_loss_part(&self.config, self.step, &q_fake, &scratch.latent, batch, &mut scratch.info_sums);
            let dq_warped = consistency_part(&self.config, shards, q.view(), batch);
            let none = buffers::zeros(dq_fake.raw_dim());
            let dq = stack_groups(shards, &[dq_fake.view(), none.view(), dq_warped.view()]);
            [q_fake, dq_fake, dq_warped, none].into_iter().for_each(buffers::give);
            dq
        } else {
            info_loss_part(&self.config, self.step, &q, &scratch.latent, batch, &mut scratch.info_sums)
        };
        buffers::give(q);
        let dlogits = stack_groups(shards, &[dlogits_real.view(), dlogits_fake.view()]);
        buffers::give(dlogits_real);
        buffers::give(dlogits_fake);
        let mut dh = d.d_head.backward(dlogits.into_dyn());
        if consistent {
            // D's head saw the real and generated groups; the warped one gets Q's
            // gradient alone.
            let mut all = buffers::zeros(ndarray::IxDyn(&[groups * dh.shape()[0] / 2, dh.shape()[1]]));
            add_to_groups(
                shards,
                &mut all,
                dh.view().into_dimensionality().expect("D's head input is [N, F]"),
                &[0, 1],
                3,
            );
            buffers::give(std::mem::replace(&mut dh, all));
        }
        let dh_q = d.q_head.backward(dq.into_dyn()).into_dimensionality().expect("Q head's input is [N, F]");
        if info_gan {
            add_to_groups(shards, &mut dh, dh_q.view(), q_groups, groups);
        }
        buffers::give(dh_q);
        d.trunk.backward_params(dh);
        self.opt_d.update_each(|f| d.visit_params(f));

        // G step: the same generated batch (or, with `fresh_g_latent`, one from a new
        // latent batch) through the updated D, whose parameters are frozen: gradients
        // only pass through to G.
        if self.config.fresh_g_latent {
            buffers::give(fake);
            self.draw_latent(batch, &mut scratch.drawn);
            scratch.drawn.rows_into(&scratch.g_rows, &mut scratch.latent);
            fake = self.generator.forward(buffers::copy(&scratch.latent.z));
        }
        let latent = &scratch.latent;
        let d = &mut self.discriminator;
        self.generator.net.zero_grad();
        d.set_requires_grad(false);
        // The mode-seeking term acts on the images themselves, before any augmentation.
        let dseek = seeking.then(|| {
            let noise = latent.z.slice(s![.., ..self.config.arch.latent.noise]);
            let (_, d) = mode_seeking_sharded(fake.view(), noise, shards);
            d * self.config.mode_seeking
        });
        let fake = if augmented {
            self.augment.draw(batch, height, width, &mut self.rng);
            self.augment.forward_picked(fake, scratch.g_rows.iter().copied())
        } else {
            fake
        };
        let h = d.features(fake);
        let logits = d.d_logits(buffers::copy(&h));
        let (g_loss, dlogits) = bce_with_logits_part(logits.view(), filled(&logits, &one), batch);
        buffers::give(logits);
        let mut dh = d.d_head.backward(dlogits.into_dyn());
        if info_gan {
            let q = d.q_outputs(h);
            scratch.g_info_sums.clear();
            let dq = info_loss_part(&self.config, self.step, &q, latent, batch, &mut scratch.g_info_sums);
            buffers::give(q);
            let dh_q = d.q_head.backward(dq.into_dyn());
            dh += &dh_q;
            buffers::give(dh_q);
        } else {
            buffers::give(h);
        }
        let dfake = d.trunk.backward(dh).into_dimensionality().expect("trunk input is [N, C, H, W]");
        let mut dfake = if augmented { self.augment.backward(dfake) } else { dfake };
        if let Some(d) = dseek {
            dfake += &d;
            buffers::give(d);
        }
        d.set_requires_grad(true);
        buffers::give(self.generator.backward(dfake));
        self.opt_g.update_each(|f| self.generator.net.visit_params(f));

        self.step += 1;
        // The losses' sums over the batch, added over the ranks (in the ranks' order:
        // these figures are reported, they change no weight).
        let probability_sum = |l: &Array2<f32>| l.iter().map(|&z| crate::layers::activation::sigmoid(z) as f64).sum();
        let sums = &mut scratch.sums;
        sums.clear();
        sums.extend([loss_real, loss_fake, g_loss, probability_sum(&real_logits), probability_sum(&fake_logits)]);
        sums.extend(&scratch.info_sums);
        buffers::give(real_logits);
        buffers::give(fake_logits);
        if let Some(c) = shards.comm() {
            c.sum_f64(sums);
        }
        let mean = |sum: f64| (sum / batch.max(1) as f64) as f32;
        stats.info_loss =
            InfoLoss::from_sums_into(&self.config, self.step - 1, &sums[5..], batch, &mut stats.code_losses);
        stats.d_loss = (mean(sums[0]) + mean(sums[1])) as f64;
        stats.g_loss = mean(sums[2]) as f64;
        stats.d_real = sums[3] / batch.max(1) as f64;
        stats.d_fake = sums[4] / batch.max(1) as f64;
    }
}

/// What a step keeps from one to the next so as not to allocate it again: the rows
/// of the batch this process holds, the latent batch drawn and its local rows, and
/// the sums of the losses.
#[derive(Default)]
pub struct StepScratch {
    real_rows: Vec<usize>,
    g_rows: Vec<usize>,
    drawn: LatentBatch,
    latent: LatentBatch,
    info_sums: Vec<f64>,
    g_info_sums: Vec<f64>,
    /// The warps of the whole batch's real images (`q_consistency`), and of this
    /// process's rows.
    warps: Vec<Warp>,
    local_warps: Vec<Warp>,
    sums: Vec<f64>,
}

/// A view of `like`'s shape whose every element is `value`, without storage.
fn filled<'a, S: ndarray::Data<Elem = f32>>(
    like: &ndarray::ArrayBase<S, ndarray::Ix2>,
    value: &'a f32,
) -> ArrayView2<'a, f32> {
    ArrayView2::from_shape(like.raw_dim().strides(ndarray::Ix2(0, 0)), std::slice::from_ref(value))
        .expect("zero strides fit one element")
}

/// Runs `f` on a thread of rayon's global pool (at once if this is one) and waits
/// for it. Parallel loops started from outside the pool are each injected into a
/// shared queue, which allocates a block for every 63 of them; started from a
/// worker, they go on that worker's own deque, which keeps its storage. A training
/// loop run this way allocates nothing in a step (`tests/allocations.rs`).
///
/// Meanwhile every other worker of the pool runs a keeper: a job that looks for work
/// without pause (`rayon::yield_now`) until `f` returns, so that the worker does not
/// fall asleep a few microseconds after each parallel loop and need waking by the
/// next one, a wake-up on the step's critical path, hundreds of times a step. OpenMP
/// runtimes spin the same way between parallel regions (`OMP_WAIT_POLICY=active`).
/// The price is that those cores stay busy while `f` runs, in its serial parts too.
/// Measured on 2 threads of a Zen 5 (`infogan bench`, 40 CIFAR-10 steps): 11,372
/// context switches without keepers, 3,555 with; six alternated runs of each, median
/// img/s: MNIST 516 -> 587 (AVX-512), 375 -> 396 (AVX2); CIFAR-10 464 -> 459 and
/// 283 -> 299.
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let others = rayon::current_num_threads().saturating_sub(1);
    let (awake, done) = (AtomicUsize::new(0), AtomicBool::new(false));
    rayon::scope(|scope| {
        for _ in 0..others {
            scope.spawn(|_| {
                awake.fetch_add(1, Ordering::AcqRel);
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        // Until every keeper has been taken by another worker: one still in this
        // worker's own queue could be run by it while it waits on a parallel loop,
        // and would then wait for `done` forever.
        while awake.load(Ordering::Acquire) < others {
            std::hint::spin_loop();
        }
        // Set however `f` ends: if it panics, the scope waits for the keepers before
        // passing the panic on.
        let _done = SetOnDrop(&done);
        f()
    })
}

/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The rows of a global batch of `n` that the local shards of `shards` hold, in their
/// local order. Shard `t` of `S` holds rows `t n/S .. (t+1) n/S`; with `paired` (the
/// mode-seeking pairs `i` and `i + n/2`) it holds its part of each half instead,
/// `t n/2S ..` and `n/2 + t n/2S ..`, so that every pair is in one shard. On a single
/// shard: every row in order.
pub fn local_rows(shards: &Shards, n: usize, paired: bool) -> Vec<usize> {
    let mut rows = Vec::new();
    local_rows_into(shards, n, paired, &mut rows);
    rows
}

/// `local_rows` into `rows`, reusing its storage.
fn local_rows_into(shards: &Shards, n: usize, paired: bool, rows: &mut Vec<usize>) {
    let total = shards.total();
    let first = shards.rank() * shards.local();
    let (per, half) = (n / total, n / (2 * total));
    rows.clear();
    for t in first..first + shards.local() {
        if paired {
            rows.extend((t * half..(t + 1) * half).chain(n / 2 + t * half..n / 2 + (t + 1) * half));
        } else {
            rows.extend(t * per..(t + 1) * per);
        }
    }
}

/// The batches `parts` (each `[N, ...]`, the same shape) stacked along N shard by
/// shard: for each local shard, its rows of every part in turn. On a single shard,
/// the parts one after the other.
fn stack_groups<D: ndarray::Dimension + ndarray::RemoveAxis>(
    shards: &Shards,
    parts: &[ndarray::ArrayView<f32, D>],
) -> ndarray::Array<f32, D> {
    let n = parts[0].shape()[0];
    let mut shape = parts[0].raw_dim();
    shape[0] = n * parts.len();
    let rows_out = shape[0];
    let mut out = buffers::take(shape);
    let pieces =
        (0..shards.local()).flat_map(|s| parts.iter().map(move |p| p.slice_axis(Axis(0), shards.rows(s, n).into())));
    let mut at = 0;
    for piece in pieces {
        let rows = piece.shape()[0];
        out.slice_axis_mut(Axis(0), (at..at + rows).into()).assign(&piece);
        at += rows;
    }
    assert_eq!(at, rows_out, "stack_groups: parts of one shape");
    out
}

/// The parts `picks` (in that order) of `groups` stacked by `stack_groups`, stacked
/// the same way. x: [groups N, F] -> [picks.len() N, F]
fn take_groups(shards: &Shards, x: ArrayView2<f32>, picks: &[usize], groups: usize) -> Array2<f32> {
    let per = x.nrows() / (groups * shards.local());
    let mut out = buffers::take((per * shards.local() * picks.len(), x.ncols()));
    for s in 0..shards.local() {
        for (i, &g) in picks.iter().enumerate() {
            let at = (s * picks.len() + i) * per;
            out.slice_mut(s![at..at + per, ..])
                .assign(&x.slice(s![(groups * s + g) * per..(groups * s + g + 1) * per, ..]));
        }
    }
    out
}

/// Adds part `i` of `dparts: [picks.len() N, F]` into part `picks[i]` of `dx:
/// [groups N, F]`, both stacked by `stack_groups`.
fn add_to_groups(
    shards: &Shards,
    dx: &mut ndarray::ArrayD<f32>,
    dparts: ArrayView2<f32>,
    picks: &[usize],
    groups: usize,
) {
    let per = dparts.nrows() / (picks.len() * shards.local());
    for s in 0..shards.local() {
        for (i, &g) in picks.iter().enumerate() {
            let at = (s * picks.len() + i) * per;
            let mut rows = dx.slice_mut(s![(groups * s + g) * per..(groups * s + g + 1) * per, ..]);
            rows += &dparts.slice(s![at..at + per, ..]);
        }
    }
}

/// The gradient of Q's consistency loss, `q_consistency` times the mean over the
/// batch of `CE(softmax(Q_cat(x)), Q_cat(warp(x)))` for each categorical code, on the
/// warped group of Q's outputs `q: [3N, Q]` (groups [generated, real, warped]). The
/// real reading is the target, held fixed (no gradient), as in consistency training
/// (Xie et al., 2020, UDA): the warp must not change what Q reads. -> [N, Q]
fn consistency_part(config: &TrainConfig, shards: &Shards, q: ArrayView2<f32>, batch: usize) -> Array2<f32> {
    let (real, warped) = (take_groups(shards, q, &[1], 3), take_groups(shards, q, &[2], 3));
    let mut dq = buffers::zeros(warped.raw_dim());
    let mut col = 0;
    for &values in &config.arch.latent.categorical {
        let cols = s![.., col..col + values];
        let target = softmax(real.slice(cols));
        let (_, mut dlogits) = soft_cross_entropy_part(warped.slice(cols), target.view(), batch);
        dlogits *= config.q_consistency;
        dq.slice_mut(cols).assign(&dlogits);
        [target, dlogits].into_iter().for_each(buffers::give);
        col += values;
    }
    [real, warped].into_iter().for_each(buffers::give);
    dq
}

impl Trainer {
    /// A latent batch of `n` from the prior into `out`: in pairs sharing their codes
    /// when mode seeking is on.
    fn draw_latent(&mut self, n: usize, out: &mut LatentBatch) {
        if self.config.mode_seeking > 0.0 {
            self.config.arch.latent.sample_pairs_into(n, &mut self.rng, out)
        } else {
            self.config.arch.latent.sample_into(n, &mut self.rng, out)
        }
    }
}

/// The RNG that orders the data of `epoch` (0-based) of a run with `seed`: derived
/// from the two alone, so that a resumed run sees the same order.
pub fn epoch_rng(seed: u64, epoch: usize) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(epoch as u64 + 1))
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
    let mut sums = Vec::new();
    let dq = info_loss_part(config, step, q, latent, q.nrows(), &mut sums);
    InfoLoss { dq, ..InfoLoss::from_sums(config, step, &sums, q.nrows()) }
}

/// `info_loss` of the rows `q: [rows, Q]` of a batch of `batch` rows in all: the
/// gradient dq: [rows, Q] of the whole batch's loss, and, appended to `sums`, the sums
/// over those rows from which `InfoLoss::from_sums` makes the losses once they are
/// added over every shard (the CE sum of each categorical code; then, with continuous
/// codes, the NLL sum over all of them and that of each).
pub fn info_loss_part(
    config: &TrainConfig,
    step: u64,
    q: &Array2<f32>,
    latent: &LatentBatch,
    batch: usize,
    sums: &mut Vec<f64>,
) -> Array2<f32> {
    let spec = &config.arch.latent;
    let lambda_cat = config.lambda_cat_at(step);
    let mut dq = buffers::zeros(q.raw_dim());
    let mut col = 0;
    let scaled_into = |mut to: ndarray::ArrayViewMut2<f32>, mut grad: Array2<f32>, weight: f32| {
        grad *= weight;
        to.assign(&grad);
        buffers::give(grad);
    };
    for (k, &values) in spec.categorical.iter().enumerate() {
        let (ce, dlogits) = cross_entropy_part(q.slice(s![.., col..col + values]), &latent.cat[k], batch);
        sums.push(ce);
        scaled_into(dq.slice_mut(s![.., col..col + values]), dlogits, lambda_cat);
        col += values;
    }
    let c = spec.continuous;
    if c > 0 {
        let mean = q.slice(s![.., col..col + c]);
        // With the std fixed at 1 the log-std is 0, a constant instead of Q's outputs.
        let logstd = match config.cont_std {
            ContStd::Fixed => filled(&mean, &0.0),
            ContStd::Learned => q.slice(s![.., col + c..col + 2 * c]),
        };
        let (nll, dmean, dlogstd) = gaussian_nll_part(latent.cont.view(), mean, logstd, batch * c);
        sums.push(nll);
        scaled_into(dq.slice_mut(s![.., col..col + c]), dmean, config.lambda_cont);
        if config.cont_std == ContStd::Learned {
            scaled_into(dq.slice_mut(s![.., col + c..col + 2 * c]), dlogstd, config.lambda_cont);
        } else {
            buffers::give(dlogstd);
        }
        for j in 0..c {
            let cols = s![.., j..j + 1];
            sums.push(gaussian_nll_sum(latent.cont.slice(cols), mean.slice(cols), logstd.slice(cols)));
        }
    }
    dq
}

impl InfoLoss {
    /// The losses of a batch of `batch` rows from the sums of `info_loss_part` over
    /// all of it (`dq` left empty).
    pub fn from_sums(config: &TrainConfig, step: u64, sums: &[f64], batch: usize) -> InfoLoss {
        let mut code_losses = Vec::new();
        let loss = InfoLoss::from_sums_into(config, step, sums, batch, &mut code_losses);
        InfoLoss { loss, dq: Array2::zeros((0, 0)), code_losses }
    }

    /// `from_sums` writing the per-code losses into `code_losses`; returns the
    /// weighted loss.
    pub fn from_sums_into(
        config: &TrainConfig,
        step: u64,
        sums: &[f64],
        batch: usize,
        code_losses: &mut Vec<f64>,
    ) -> f64 {
        let spec = &config.arch.latent;
        let lambda_cat = config.lambda_cat_at(step);
        let cats = spec.categorical.len();
        let mean = |sum: f64, count: usize| (sum / count.max(1) as f64) as f32;
        let mut loss = 0f64;
        code_losses.clear();
        for &ce in &sums[..cats] {
            let ce = mean(ce, batch);
            loss += lambda_cat as f64 * ce as f64;
            code_losses.push(ce as f64);
        }
        if spec.continuous > 0 {
            loss += config.lambda_cont as f64 * mean(sums[cats], batch * spec.continuous) as f64;
            code_losses.extend(sums[cats + 1..].iter().map(|&s| mean(s, batch) as f64));
        }
        loss
    }
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

    /// The consistency gradient is zero where Q reads a warped image as it reads the
    /// original, and otherwise `q_consistency (softmax(warped) - softmax(real)) / N`
    /// on the categorical columns alone, whatever the generated group holds.
    #[test]
    fn the_consistency_gradient_pulls_the_warped_reading_to_the_real_one() {
        let c = TrainConfig { q_consistency: 0.5, ..TrainConfig::defaults(DatasetKind::Mnist) };
        let shards = Shards::single();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let (n, width) = (4, 14);
        let mut q = Array2::from_shape_fn((3 * n, width), |_| rng.random_range(-2.0f32..2.0));
        let copy = q.slice(s![n..2 * n, ..]).to_owned();
        q.slice_mut(s![2 * n..3 * n, ..]).assign(&copy);
        let same = consistency_part(&c, &shards, q.view(), n);
        assert!(same.iter().all(|&g| g.abs() < 1e-8), "a warp Q reads alike gave a gradient: {same}");

        q.slice_mut(s![2 * n..3 * n, ..]).mapv_inplace(|v| v * 1.5 + 0.1);
        let dq = consistency_part(&c, &shards, q.view(), n);
        let (real, warped) = (softmax(q.slice(s![n..2 * n, ..10])), softmax(q.slice(s![2 * n.., ..10])));
        for ((i, j), &g) in dq.indexed_iter() {
            let want = if j < 10 { 0.5 * (warped[[i, j]] - real[[i, j]]) / n as f32 } else { 0.0 };
            assert!((g - want).abs() < 1e-6, "dq[{i}, {j}] = {g}, expected {want}");
        }
    }

    /// A vanishing consistency weight routes every group as the two-group step does:
    /// one step (whose latent batch is drawn before the warps) gives the same losses,
    /// and networks that compute the same to rounding. Their weights are not
    /// compared: Adam's first step moves each weight by about the learning rate in
    /// the direction of its gradient's sign, and for a bias in front of batch norm,
    /// whose gradient is rounding noise, that sign is a coin toss (and the noise
    /// differs, since the weight gradients also sum over the third group, of zeros).
    /// A misplaced group would change D's losses and what both networks compute.
    #[test]
    fn a_vanishing_consistency_weight_leaves_the_step_as_it_is() {
        let base = TrainConfig { batch_size: 4, ..TrainConfig::defaults(DatasetKind::Mnist) };
        let real = Array4::from_shape_fn((4, 1, 28, 28), |(n, _, y, x)| ((n * 7 + y * 3 + x) % 11) as f32 / 5.5 - 1.0);
        let z = base.arch.latent.sample(4, &mut Xoshiro256PlusPlus::seed_from_u64(5)).z;
        type Outputs = (StepStats, Array4<f32>, Array2<f32>, Array2<f32>);
        let outputs: Vec<Outputs> = [0.0, 1e-30]
            .into_iter()
            .map(|w| {
                let mut t = Trainer::new(TrainConfig { q_consistency: w, ..base.clone() });
                let stats = t.train_step(real.clone());
                let images = t.generator.forward(z.clone());
                let h = t.discriminator.features(images.clone());
                (stats, images, t.discriminator.d_logits(h.clone()), t.discriminator.q_outputs(h))
            })
            .collect();
        let [(plain, images, logits, q), (with, images_w, logits_w, q_w)] = &outputs[..] else { unreachable!() };
        assert_eq!((plain.d_loss, plain.info_loss), (with.d_loss, with.info_loss));
        let close = |what: &str, a: &[f32], b: &[f32]| {
            let (at, worst) = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .enumerate()
                .fold((0, 0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
            assert!(worst < 1e-3, "{what}: largest difference {worst} at {at} ({} vs {})", a[at], b[at]);
        };
        close("G's images", images.as_slice().unwrap(), images_w.as_slice().unwrap());
        close("D's logits", logits.as_slice().unwrap(), logits_w.as_slice().unwrap());
        close("Q's outputs", q.as_slice().unwrap(), q_w.as_slice().unwrap());
    }
}
