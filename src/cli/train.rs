//! `infogan train`: the training loop, its progress display, and the files it leaves
//! at every epoch end.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

use super::flags::{self, ModelFlags, default_text, epochs_help};
use super::progress::Progress;
use super::{default_out, set_threads};
use crate::data::{self, Dataset, DatasetKind, Split};
use crate::error::{Error, Result};
use crate::models::ModelKind;
use crate::output::run_files::{RunFiles, Scoring, prepare_out};
use crate::score::reference;
use crate::train::run::{Observer, Outcome, Plan, RunOptions, StepEnd};
use crate::train::{self, TrainConfig, Trainer, checkpoint, classifier, default_epochs, memory, run_dir};

#[derive(Args)]
#[command(after_help = format!(
    "Ctrl-C, SIGTERM or SIGHUP finishes the current step, writes the checkpoint and exits with status {} \
     (EX_TEMPFAIL: stopped, continue with --resume); a finished run exits with 0, a failed one with 1.",
    super::EXIT_STOPPED
))]
pub struct TrainArgs {
    #[arg(long, value_enum, help = format!("Dataset to train on [default: {}]", DatasetKind::default().name()))]
    dataset: Option<DatasetKind>,
    /// Folder holding the dataset's official files [default: data/<dataset>]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Folder for samples, curves, logs and the checkpoint [default: runs/<dataset>-<model>]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[arg(long, value_name = "N", help = epochs_help())]
    epochs: Option<usize>,
    /// Stop after N optimizer steps in total, counting those before a --resume, and write the checkpoint and
    /// outputs as at an epoch end
    #[arg(long, value_name = "N")]
    max_steps: Option<u64>,
    #[arg(long, value_name = "N", help = format!("Images per mini-batch {}", default_text(|c| c.batch_size.to_string())))]
    batch_size: Option<usize>,
    #[arg(long, value_name = "N", help = format!(
        "Seed of every random choice: initial weights, data order, latent vectors {}",
        default_text(|c| c.seed.to_string())))]
    seed: Option<u64>,
    /// Worker threads [default: all cores, or RAYON_NUM_THREADS]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    #[arg(long, value_enum, help = format!("InfoGAN, or the plain GAN baseline [default: {}]", ModelKind::default().name()))]
    model: Option<ModelKind>,
    /// Continue from <out>/checkpoint.safetensors; the checkpoint's configuration is used, and --epochs or
    /// --max-steps may extend the run
    #[arg(long)]
    resume: bool,
    /// Start a new run in --out even though it holds one: first remove that run's checkpoint, CSV files, charts
    /// and epoch pictures (without this, a fresh run into a folder with a checkpoint or losses.csv is refused)
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Write a losses.csv row every N steps (averaged over them)
    #[arg(long, default_value_t = 10, value_name = "N")]
    log_every: u64,
    /// Leave the image scores (Frechet distance, Inception-style score, diversity; see `infogan score`) out of
    /// metrics.csv, and with them the scorer's training on first use (about a minute, once per dataset)
    #[arg(long)]
    no_score: bool,
    /// Split each batch into N equal shards whose sums (gradients, batch statistics) are added in one fixed
    /// order: runs with the same N train the same bits on any number of MPI ranks that gets a power of two of the
    /// shards each [default: 1, or one per rank under mpirun]
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Under MPI: how long a step waits for another rank before taking it for dead or hung and stopping the job
    /// (rank 0's epoch ends may take up to an hour)
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    rank_timeout: u64,
    #[command(flatten)]
    flags: ModelFlags,
}

/// Set by Ctrl-C (SIGINT), SIGTERM or SIGHUP: the run finishes its step, writes the
/// checkpoint and stops.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn run(args: TrainArgs) -> Result<Outcome> {
    if args.log_every == 0 {
        return Err(Error::Invalid("--log-every must be at least 1".into()));
    }
    if args.rank_timeout == 0 {
        return Err(Error::Invalid("--rank-timeout must be at least 1 second".into()));
    }
    let comm = crate::collective::connect(std::time::Duration::from_secs(args.rank_timeout))?;
    let (rank, ranks) = comm.as_ref().map_or((0, 1), |c| (c.rank(), c.size()));
    let threads = set_threads(args.threads)?;
    let (mut trainer, out) = if args.resume { resume(&args, rank, ranks)? } else { fresh(&args, rank, ranks)? };
    trainer.set_comm(comm);
    let dataset = trainer.config.arch.dataset;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| dataset.default_dir());
    let train_set = data::load(dataset, &data_dir, Split::Train)?;
    if !args.resume && args.epochs.is_none() {
        trainer.config.epochs = default_epochs(train_set.len(), trainer.config.batch_size);
    }
    if rank > 0 {
        return follow(trainer, &train_set, &args);
    }
    let test_set = match data::load(dataset, &data_dir, Split::Test) {
        Ok(set) => Some(set),
        Err(e) => {
            eprintln!("infogan: warning: no test split ({e}); metrics.csv will not record categorical_accuracy");
            None
        }
    };
    let data_bytes = (train_set.pixels.len() + test_set.as_ref().map_or(0, |t| t.pixels.len())) as u64;
    let batch = trainer.config.batch_size;
    memory::check_fits(memory::training_bytes(&mut trainer) + data_bytes, &format!("training at batch {batch}"))?;
    let options = RunOptions { max_steps: args.max_steps, stop: Some(&INTERRUPTED) };
    let plan = Plan::new(&trainer, train_set.len(), &options)
        .map_err(|e| Error::Invalid(format!("{e} in {}", data_dir.display())))?;
    if !args.resume && plan.total_steps == 0 {
        return Err(Error::Invalid("--max-steps must be at least 1 for a new run".into()));
    }
    if trainer.step >= plan.total_steps {
        eprintln!(
            "infogan: the checkpoint in {} is already at step {} of {}; raise --epochs or --max-steps to train \
             further",
            out.display(),
            trainer.step,
            plan.total_steps
        );
        return Ok(Outcome::Done);
    }
    // From here on the run writes into `out`, which it holds until it ends.
    let _lock = run_dir::RunLock::acquire(&out)?;
    if !args.resume && run_dir::holds_a_run(&out) {
        if !args.overwrite {
            return Err(Error::Invalid(format!(
                "{} already holds a run (a checkpoint or losses.csv): continue it with --resume, start over with \
                 --overwrite (which removes its checkpoint, CSV files and pictures), or pass another --out",
                out.display()
            )));
        }
        run_dir::clear_run(&out)?;
    }
    let scoring = if args.no_score { None } else { scoring(&data_dir, &train_set, test_set.as_ref()) };
    // Schedulers (Slurm, systemd, Kubernetes, `timeout`) stop a job with SIGTERM, and a
    // closed terminal sends SIGHUP: both stop the run as Ctrl-C does (ctrlc's
    // "termination" feature).
    let handler = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    if let Err(e) = handler {
        eprintln!("infogan: warning: Ctrl-C and SIGTERM will not save a checkpoint ({e})");
    }
    let config = &trainer.config;
    let processes =
        if ranks > 1 { format!("{ranks} ranks of {threads} threads") } else { format!("{threads} threads") };
    eprintln!(
        "infogan: training {} on {} ({} images, {} steps per epoch) with {processes}; latent {}{}",
        config.model.name(),
        dataset,
        train_set.len(),
        plan.steps_per_epoch,
        config.arch.latent,
        if config.shards > 1 { format!("; each batch in {} shards", config.shards) } else { String::new() }
    );
    eprintln!("infogan: writing to {}", out.display());
    let files = RunFiles::create(&out, &trainer, args.log_every, test_set.as_ref(), scoring)?;
    let mut shown = Shown { files, progress: Progress::new(plan.total_steps, trainer.step, plan.steps_per_epoch) };
    let outcome = train::run::run(&mut trainer, &train_set, &options, &mut shown);
    shown.progress.finish();
    match outcome {
        Err(Error::Training(msg)) if out.join("checkpoint.safetensors").is_file() => Err(Error::Training(format!(
            "{msg} The last good checkpoint, from the end of the last epoch, is still in {}.",
            out.display()
        ))),
        Err(Error::Training(msg)) => {
            Err(Error::Training(format!("{msg} No checkpoint was written: the run diverged in its first epoch.")))
        }
        Err(e) => Err(e),
        Ok(Outcome::Stopped) => {
            eprintln!(
                "infogan: interrupted at step {}; the checkpoint is saved: continue with `infogan train --resume --out \
                 {}`",
                trainer.step,
                out.display()
            );
            Ok(Outcome::Stopped)
        }
        Ok(Outcome::Done) => {
            eprintln!("infogan: done, {} steps; results in {}", trainer.step, out.display());
            Ok(Outcome::Done)
        }
    }
}

/// A rank other than 0 of an MPI job: the same steps on its part of every batch, and
/// nothing written (rank 0 writes every file and prints every message).
fn follow(mut trainer: Trainer, train_set: &Dataset, args: &TrainArgs) -> Result<Outcome> {
    let batch = trainer.config.batch_size;
    memory::check_fits(memory::training_bytes(&mut trainer), &format!("training at batch {batch}"))?;
    let options = RunOptions { max_steps: args.max_steps, stop: Some(&INTERRUPTED) };
    // mpirun passes Ctrl-C and SIGTERM on to every rank as SIGTERM.
    if let Err(e) = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)) {
        eprintln!("infogan: rank {}: warning: SIGTERM will not stop this rank cleanly ({e})", trainer.shards.rank());
    }
    train::run::run(&mut trainer, train_set, &options, &mut ())
}

/// The image scores of every epoch end. A scorer that cannot be trained or cached
/// costs the scores, not the run.
fn scoring(data_dir: &Path, train_set: &Dataset, test_set: Option<&Dataset>) -> Option<Scoring> {
    match classifier::load_or_train(data_dir, train_set, test_set, &mut |m| eprintln!("{m}")) {
        Ok(mut scorer) => {
            let reference = reference(&mut scorer.classifier, train_set);
            Some(Scoring { classifier: scorer.classifier, reference })
        }
        Err(e) => {
            eprintln!("infogan: warning: no image scores in metrics.csv ({e})");
            None
        }
    }
}

/// The run folder's files, and their news on the terminal.
struct Shown<'a> {
    files: RunFiles<'a>,
    progress: Progress,
}

impl Observer for Shown<'_> {
    fn step_end(&mut self, trainer: &Trainer, step: &StepEnd) -> Result<()> {
        match self.files.step_end(trainer, step)? {
            Some(window) => self.progress.update(step.step, step.epoch, &window),
            None => self.progress.tick(step.step),
        }
        Ok(())
    }

    fn epoch_end(&mut self, trainer: &mut Trainer, epoch: usize) -> Result<()> {
        let report = self.files.epoch_end(trainer, epoch)?;
        if let Some(a) = report.accuracy {
            self.progress.message(&format!("epoch {epoch}: categorical accuracy on the test images {a:.4}"));
        }
        if let Some(q) = report.quality {
            self.progress.message(&format!(
                "epoch {epoch}: Frechet distance {:.2}, Inception-style score {:.2}, diversity {:.3} (infogan score)",
                q.frechet, q.inception, q.diversity
            ));
        }
        self.progress.message(&format!("epoch {epoch} done at step {}: checkpoint and samples written", report.step));
        Ok(())
    }
}

fn fresh(args: &TrainArgs, rank: usize, ranks: usize) -> Result<(Trainer, PathBuf)> {
    let dataset = args.dataset.unwrap_or_default();
    let model = args.model.unwrap_or_default();
    let mut config = flags::config(&args.flags, dataset, model, args.batch_size, args.seed)?;
    // Without --epochs, `run` sets the default for the training set's size once the
    // data is loaded.
    if let Some(e) = args.epochs {
        config.epochs = e;
    }
    config.shards = args.shards.unwrap_or(ranks);
    config.validate().map_err(|e| match (args.shards, e) {
        (None, Error::Invalid(msg)) if ranks > 1 => {
            Error::Invalid(format!("{msg} (one shard for each of the {ranks} ranks)"))
        }
        (_, e) => e,
    })?;
    config.check_shards(ranks)?;
    let out = args.out.clone().unwrap_or_else(|| default_out(dataset, model));
    if rank == 0 {
        prepare_out(&out)?;
    }
    Ok((Trainer::new(config), out))
}

/// The shards of a resumed run on `ranks` ranks: `--shards` if given, else the
/// checkpoint's if the ranks can share them, else one per rank (the same model, summed
/// in another order than an uninterrupted run).
fn resumed_shards(args: &TrainArgs, config: &mut TrainConfig, rank: usize, ranks: usize) -> Result<()> {
    if let Some(s) = args.shards {
        config.shards = s;
    } else if config.check_shards(ranks).is_err() {
        if rank == 0 {
            eprintln!(
                "infogan: the checkpoint's {} shards cannot be shared by {ranks} ranks; continuing with {ranks} \
                 shards (the same training, its sums added in another order)",
                config.shards
            );
        }
        config.shards = ranks;
    }
    config.validate()?;
    config.check_shards(ranks)
}

fn resume(args: &TrainArgs, rank: usize, ranks: usize) -> Result<(Trainer, PathBuf)> {
    let dataset: Option<DatasetKind> = args.dataset;
    let out = match &args.out {
        Some(out) => out.clone(),
        None => default_out(dataset.unwrap_or_default(), args.model.unwrap_or_default()),
    };
    let path = out.join("checkpoint.safetensors");
    if !path.is_file() {
        return Err(Error::Invalid(format!(
            "--resume: there is no checkpoint at {}; start a run without --resume, or pass --out with the folder of \
             the run to continue",
            path.display()
        )));
    }
    let mut trainer = checkpoint::load(&path)?;
    let c: &TrainConfig = &trainer.config;
    let mut conflicts = args.flags.conflicts(c)?;
    if let Some(d) = dataset
        && d != c.arch.dataset
    {
        conflicts.push(format!("--dataset {d} (the checkpoint has {})", c.arch.dataset));
    }
    if let Some(m) = args.model
        && m != c.model
    {
        conflicts.push(format!("--model {} (the checkpoint has {})", m.name(), c.model.name()));
    }
    if let Some(b) = args.batch_size
        && b != c.batch_size
    {
        conflicts.push(format!("--batch-size {b} (the checkpoint has {})", c.batch_size));
    }
    if let Some(s) = args.seed
        && s != c.seed
    {
        conflicts.push(format!("--seed {s} (the checkpoint has {})", c.seed));
    }
    // A recipe given on resuming must be the one the run started from (with the
    // flags given beside it).
    if let Some(r) = args.flags.recipe {
        let mut expected = flags::config(&args.flags, c.arch.dataset, c.model, args.batch_size, Some(c.seed))?;
        expected.epochs = c.epochs;
        if expected != *c {
            conflicts.push(format!("--recipe {} (the checkpoint's settings are not that recipe's)", r.name()));
        }
    }
    if !conflicts.is_empty() {
        return Err(Error::Invalid(format!(
            "--resume continues the run in {} with its own settings, but these flags differ: {}. Drop them, or start a \
             new run with another --out",
            out.display(),
            conflicts.join(", ")
        )));
    }
    if let Some(e) = args.epochs {
        trainer.config.epochs = e;
    }
    resumed_shards(args, &mut trainer.config, rank, ranks)?;
    if rank == 0 {
        eprintln!("infogan: resuming from {} at step {}", path.display(), trainer.step);
    }
    Ok((trainer, out))
}
