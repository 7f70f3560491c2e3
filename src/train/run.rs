//! The training run: epochs of steps over a training set, with a stop flag, a stop
//! on a non-finite loss, and hooks after every step and at every epoch end through
//! which a caller writes its files (see `output::run_files`) or does anything else.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::{StepStats, Trainer, epoch_rng};
use crate::data::{Dataset, Shuffler};
use crate::error::{Error, Result};

/// How a training run ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every step asked for is done (or was done already).
    Done,
    /// The stop flag ended the run after a step, and the epoch-end hook ran for it.
    Stopped,
}

/// What a run is asked to do beyond its configuration.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Stop after this many optimizer steps in total (counting those of a checkpoint
    /// the trainer was loaded from), before `config.epochs` are done.
    pub max_steps: Option<u64>,
    /// Checked after every step: once set, the run ends as at an epoch end.
    pub stop: Option<&'a AtomicBool>,
}

/// The length of a run: steps per epoch and in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub steps_per_epoch: u64,
    pub total_steps: u64,
}

impl Plan {
    /// The plan of `trainer`'s configuration over `train_images` images. A batch
    /// larger than the training set is an error.
    pub fn new(trainer: &Trainer, train_images: usize, options: &RunOptions) -> Result<Plan> {
        let batch_size = trainer.config.batch_size;
        let steps_per_epoch = Shuffler::new(train_images, batch_size).batches_per_epoch() as u64;
        if steps_per_epoch == 0 {
            return Err(Error::Invalid(format!(
                "--batch-size {batch_size} is larger than the {train_images} training images"
            )));
        }
        let total_steps = (trainer.config.epochs as u64 * steps_per_epoch).min(options.max_steps.unwrap_or(u64::MAX));
        Ok(Plan { steps_per_epoch, total_steps })
    }
}

/// What the run tells its observer after each step.
pub struct StepEnd<'a> {
    /// The epoch the step belongs to, from 1.
    pub epoch: usize,
    /// Steps done, this one included.
    pub step: u64,
    pub stats: &'a StepStats,
    /// Wall time of the step.
    pub seconds: f64,
    /// Whether an epoch end (or the end of the run) follows this step.
    pub ends_epoch: bool,
}

/// Hooks of a training run. Both may fail, which ends the run with that error.
pub trait Observer: Send {
    /// After every step.
    fn step_end(&mut self, trainer: &Trainer, step: &StepEnd) -> Result<()>;

    /// At the end of every epoch, and after the last step when the run ends within
    /// an epoch (`--max-steps`, the stop flag): the place to evaluate and to write a
    /// checkpoint. `epoch` counts from 1.
    fn epoch_end(&mut self, trainer: &mut Trainer, epoch: usize) -> Result<()>;
}

/// An observer that does nothing.
impl Observer for () {
    fn step_end(&mut self, _: &Trainer, _: &StepEnd) -> Result<()> {
        Ok(())
    }

    fn epoch_end(&mut self, _: &mut Trainer, _: usize) -> Result<()> {
        Ok(())
    }
}

/// Trains from `trainer.step` to the plan's last step over `train_set`, in a data
/// order that depends on the seed and the epoch alone (`epoch_rng`), so that a run
/// resumed from a checkpoint takes the same steps as one that never stopped.
///
/// A non-finite loss stops the run with `Error::Training` before the epoch-end
/// hook, so that the last checkpoint written there stays good.
pub fn run(
    trainer: &mut Trainer,
    train_set: &Dataset,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    super::on_worker(|| run_here(trainer, train_set, options, observer))
}

/// `run` on the calling thread.
fn run_here(
    trainer: &mut Trainer,
    train_set: &Dataset,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let plan = Plan::new(trainer, train_set.len(), options)?;
    let per_epoch = plan.steps_per_epoch;
    // On a job every rank stops after the same step: when any rank was asked to.
    let stop_asked = |trainer: &Trainer| trainer.shards.any(options.stop.is_some_and(|s| s.load(Ordering::SeqCst)));
    if trainer.step >= plan.total_steps {
        return Ok(Outcome::Done);
    }
    // The ranks of a job start together, once rank 0 has made its preparations.
    let wait_for_rank_zero = |trainer: &Trainer, what: &str| {
        if let Some(c) = trainer.shards.comm() {
            c.wait_for_rank_zero(what);
        }
    };
    wait_for_rank_zero(trainer, "the start (rank 0 loads the data and the scorer)");
    let seed = trainer.config.seed;
    let mut shuffler = Shuffler::new(train_set.len(), trainer.config.batch_size);
    let mut epoch = (trainer.step / per_epoch) as usize;
    // Each epoch reshuffles the order the one before left, so a run that starts in
    // epoch `e` (resumed) replays the shuffles of epochs 0..=e to get the order an
    // uninterrupted run has there.
    for e in 0..=epoch {
        shuffler.shuffle(&mut epoch_rng(seed, e));
    }
    let mut stats = StepStats::default();
    loop {
        let batch = (trainer.step % per_epoch) as usize;
        // This process's rows of the batch (all of them without a job).
        let rows = shuffler.batch(batch);
        let local = super::local_rows(&trainer.shards, rows.len(), false);
        let real = train_set.batch(&local.iter().map(|&r| rows[r]).collect::<Vec<_>>());
        let started = Instant::now();
        trainer.train_step_into(real, &mut stats);
        let seconds = started.elapsed().as_secs_f64();
        if ![stats.d_loss, stats.g_loss, stats.info_loss].iter().all(|v| v.is_finite()) {
            return Err(Error::Training(format!(
                "a loss became non-finite at step {} (d_loss {}, g_loss {}, info_loss {}); training stopped. Try \
                 smaller learning rates (--lr-d, --lr-g) or another --seed.",
                trainer.step, stats.d_loss, stats.g_loss, stats.info_loss,
            )));
        }
        let epoch_done = trainer.step.is_multiple_of(per_epoch);
        let stopped = stop_asked(trainer);
        let stop = trainer.step >= plan.total_steps || stopped;
        let end =
            StepEnd { epoch: epoch + 1, step: trainer.step, stats: &stats, seconds, ends_epoch: epoch_done || stop };
        observer.step_end(trainer, &end)?;
        if epoch_done || stop {
            observer.epoch_end(trainer, epoch + 1)?;
            wait_for_rank_zero(trainer, "an epoch end (rank 0 evaluates and writes the checkpoint)");
        }
        if stop {
            return Ok(if stopped { Outcome::Stopped } else { Outcome::Done });
        }
        if epoch_done {
            epoch += 1;
            shuffler.shuffle(&mut epoch_rng(seed, epoch));
        }
    }
}
