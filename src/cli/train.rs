//! `infogan train`: the training loop, its progress display, and the files it leaves
//! at every epoch end.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::Args;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::flags::{self, ModelFlags, default_text, epochs_help};
use super::{default_out, set_threads};
use crate::data::{self, DatasetKind, Shuffler, Split};
use crate::error::{Error, Result};
use crate::eval::{categorical_accuracy, lower_bounds, mean_rows};
use crate::models::{LatentBatch, ModelKind};
use crate::output::csv::{CsvLog, LOSS_HEADER};
use crate::output::curves::losses_chart;
use crate::output::gif;
use crate::output::grid::tile;
use crate::output::png::Image;
use crate::score::{SCORE_HEADER, SCORE_IMAGES, SCORE_SEED, quality_of_generator, reference};
use crate::train::{StepStats, TrainConfig, Trainer, checkpoint, classifier, epoch_rng, run_dir};

#[derive(Args)]
#[command(after_help = "Ctrl-C, SIGTERM or SIGHUP finishes the current step, writes the checkpoint and exits with \
status 75 (EX_TEMPFAIL: stopped, continue with --resume); a finished run exits with 0, a failed one with 1.")]
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
    #[command(flatten)]
    flags: ModelFlags,
}

/// Set by Ctrl-C (SIGINT), SIGTERM or SIGHUP: the loop finishes its step, writes the
/// checkpoint and stops.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How a training run ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every step asked for is done (or was done already).
    Done,
    /// A signal stopped the run after a step; the checkpoint holds it, and `--resume`
    /// continues.
    Stopped,
}

pub fn run(args: TrainArgs) -> Result<Outcome> {
    if args.log_every == 0 {
        return Err(Error::Invalid("--log-every must be at least 1".into()));
    }
    let threads = set_threads(args.threads)?;
    let (mut trainer, out) = if args.resume { resume(&args)? } else { fresh(&args)? };
    let config = trainer.config.clone();
    let dataset = config.arch.dataset;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| dataset.default_dir());
    let train_set = data::load(dataset, &data_dir, Split::Train)?;
    if !args.resume && args.epochs.is_none() {
        trainer.config.epochs = crate::train::default_epochs(train_set.len(), config.batch_size);
    }
    let config = trainer.config.clone();
    let test_set = match data::load(dataset, &data_dir, Split::Test) {
        Ok(set) => Some(set),
        Err(e) => {
            eprintln!("infogan: warning: no test split ({e}); metrics.csv will not record categorical_accuracy");
            None
        }
    };
    let mut shuffler = Shuffler::new(train_set.len(), config.batch_size);
    let per_epoch = shuffler.batches_per_epoch() as u64;
    if per_epoch == 0 {
        return Err(Error::Invalid(format!(
            "--batch-size {} is larger than the {} training images in {}",
            config.batch_size,
            train_set.len(),
            data_dir.display()
        )));
    }
    let total_steps = (config.epochs as u64 * per_epoch).min(args.max_steps.unwrap_or(u64::MAX));
    if !args.resume && total_steps == 0 {
        return Err(Error::Invalid("--max-steps must be at least 1 for a new run".into()));
    }
    if trainer.step >= total_steps {
        eprintln!(
            "infogan: the checkpoint in {} is already at step {} of {total_steps}; raise --epochs or --max-steps to \
             train further",
            out.display(),
            trainer.step
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
    // The image scores of every epoch end; a scorer that cannot be trained or cached
    // costs the scores, not the run.
    let mut scoring = if args.no_score {
        None
    } else {
        match classifier::load_or_train(&data_dir, &train_set, test_set.as_ref(), &mut |m| eprintln!("{m}")) {
            Ok(mut scorer) => {
                let reference = reference(&mut scorer.classifier, &train_set);
                Some((scorer, reference))
            }
            Err(e) => {
                eprintln!("infogan: warning: no image scores in metrics.csv ({e})");
                None
            }
        }
    };
    let score_images = test_set.as_ref().map_or(SCORE_IMAGES, |t| t.len().min(SCORE_IMAGES));
    // Schedulers (Slurm, systemd, Kubernetes, `timeout`) stop a job with SIGTERM, and a
    // closed terminal sends SIGHUP: both stop the run as Ctrl-C does (ctrlc's
    // "termination" feature).
    let handler = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    if let Err(e) = handler {
        eprintln!("infogan: warning: Ctrl-C and SIGTERM will not save a checkpoint ({e})");
    }
    eprintln!(
        "infogan: training {} on {} ({} images, {per_epoch} steps per epoch) with {threads} threads; latent {}",
        config.model.name(),
        dataset,
        train_set.len(),
        config.arch.latent
    );
    eprintln!("infogan: writing to {}", out.display());

    let mut log = CsvLog::open(&out.join("losses.csv"), LOSS_HEADER, trainer.step)?;
    let names = config.arch.latent.code_names();
    let bound_cols: Vec<String> = names.iter().map(|n| format!("mi_bound_{n}")).collect();
    let mut info_log =
        CsvLog::open(&out.join("information.csv"), &format!("epoch,step,{}", bound_cols.join(",")), trainer.step)?;
    let mut metrics = CsvLog::open(
        &out.join("metrics.csv"),
        &format!("epoch,step,categorical_accuracy,{},{SCORE_HEADER}", bound_cols.join(",")),
        trainer.step,
    )?;
    let mut epoch_codes: Vec<Vec<f64>> = Vec::new();
    let mut progress = Progress::new(total_steps, trainer.step, per_epoch);
    let mut window = Window::default();
    let mut epoch = (trainer.step / per_epoch) as usize;
    shuffler.shuffle(&mut epoch_rng(config.seed, epoch));
    loop {
        let batch = (trainer.step % per_epoch) as usize;
        let real = train_set.batch(shuffler.batch(batch));
        let started = Instant::now();
        let stats = trainer.train_step(real);
        window.add(&stats, config.batch_size, started.elapsed().as_secs_f64());
        epoch_codes.push(stats.code_losses.clone());
        if ![stats.d_loss, stats.g_loss, stats.info_loss].iter().all(|v| v.is_finite()) {
            progress.finish();
            return Err(Error::Training(format!(
                "a loss became non-finite at step {} (d_loss {}, g_loss {}, info_loss {}); training stopped. The last \
                 good checkpoint, from the end of the last epoch, is still in {}. Try smaller learning rates \
                 (--lr-d, --lr-g) or another --seed.",
                trainer.step,
                stats.d_loss,
                stats.g_loss,
                stats.info_loss,
                out.display()
            )));
        }
        let epoch_done = trainer.step.is_multiple_of(per_epoch);
        let stop = trainer.step >= total_steps || INTERRUPTED.load(Ordering::SeqCst);
        if trainer.step.is_multiple_of(args.log_every) || epoch_done || stop {
            let row = window.row(epoch + 1, trainer.step);
            log.row(&row.iter().map(|v| format!("{v}")).collect::<Vec<_>>())?;
            let bounds = lower_bounds(&config.arch.latent, &mean_rows(&window.code_losses));
            info_log.row(&numbers(epoch + 1, trainer.step, None, &bounds))?;
            progress.update(trainer.step, epoch + 1, &window);
            window = Window::default();
        } else {
            progress.tick(trainer.step);
        }
        if epoch_done || stop {
            log.flush()?;
            info_log.flush()?;
            let accuracy = test_set
                .as_ref()
                .filter(|_| !config.arch.latent.categorical.is_empty())
                .map(|t| categorical_accuracy(&mut trainer.discriminator, &config.arch.latent, t, true).accuracy);
            let mut row = lower_bounds(&config.arch.latent, &mean_rows(&epoch_codes));
            let quality = scoring.as_mut().map(|(scorer, reference)| {
                let spec = &config.arch.latent;
                quality_of_generator(
                    &mut trainer.generator,
                    spec,
                    &mut scorer.classifier,
                    reference,
                    score_images,
                    SCORE_SEED,
                )
            });
            row.extend(quality.as_ref().map_or([f64::NAN; 3], |q| [q.frechet, q.inception, q.diversity]));
            metrics.row(&numbers(epoch + 1, trainer.step, Some(accuracy.unwrap_or(f64::NAN)), &row))?;
            metrics.flush()?;
            epoch_codes.clear();
            if let Some(a) = accuracy {
                progress.message(&format!("epoch {}: categorical accuracy on the test images {a:.4}", epoch + 1));
            }
            if let Some(q) = quality {
                progress.message(&format!(
                    "epoch {}: Frechet distance {:.2}, Inception-style score {:.2}, diversity {:.3} (infogan score)",
                    epoch + 1,
                    q.frechet,
                    q.inception,
                    q.diversity
                ));
            }
            write_epoch_outputs(&mut trainer, &out, epoch + 1)?;
            losses_chart(&out.join("losses.csv"), &out.join("losses.png"))?;
            progress.message(&format!(
                "epoch {} done at step {}: checkpoint and samples written",
                epoch + 1,
                trainer.step
            ));
        }
        if stop {
            break;
        }
        if epoch_done {
            epoch += 1;
            shuffler.shuffle(&mut epoch_rng(config.seed, epoch));
        }
    }
    progress.finish();
    if INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!(
            "infogan: interrupted at step {}; the checkpoint is saved: continue with `infogan train --resume --out {}`",
            trainer.step,
            out.display()
        );
        Ok(Outcome::Stopped)
    } else {
        eprintln!("infogan: done, {} steps; results in {}", trainer.step, out.display());
        Ok(Outcome::Done)
    }
}

fn fresh(args: &TrainArgs) -> Result<(Trainer, PathBuf)> {
    let dataset = args.dataset.unwrap_or_default();
    let model = args.model.unwrap_or_default();
    let mut config = flags::config(&args.flags, dataset, model, args.batch_size, args.seed)?;
    // Without --epochs, `run` sets the default for the training set's size once the
    // data is loaded.
    if let Some(e) = args.epochs {
        config.epochs = e;
        config.validate()?;
    }
    let out = args.out.clone().unwrap_or_else(|| default_out(dataset, model));
    prepare_out(&out)?;
    Ok((Trainer::new(config), out))
}

fn resume(args: &TrainArgs) -> Result<(Trainer, PathBuf)> {
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
    let mut trainer = checkpoint::load(&path)?.into_trainer(&path)?;
    let c: &TrainConfig = &trainer.config;
    let mut conflicts = args.flags.conflicts(c);
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
        trainer.config.validate()?;
    }
    eprintln!("infogan: resuming from {} at step {}", path.display(), trainer.step);
    Ok((trainer, out))
}

fn prepare_out(out: &Path) -> Result<()> {
    for dir in [out.to_path_buf(), out.join("samples"), out.join("traversals")] {
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
            action: "create the folder",
            path: dir.clone(),
            source: e,
            hint: Some("pass --out with a folder you can write to".into()),
        })?;
    }
    Ok(())
}

/// Rows of the sample grid and of the traversals: one per categorical value.
const GRID_ROWS: usize = 10;
/// Columns: noise vectors in the sample grid, code values in a traversal.
const GRID_COLS: usize = 10;

/// The fixed latents of the pictures, the same at every epoch: drawn from an RNG of
/// their own so that writing them never changes the training RNG.
fn picture_latents(trainer: &Trainer) -> (LatentBatch, Vec<LatentBatch>) {
    let spec = &trainer.config.arch.latent;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(trainer.config.seed ^ 0x5A4D_504C_4553);
    let grid = spec.grid(GRID_ROWS, GRID_COLS, &mut rng);
    let traversals =
        (0..spec.continuous).map(|j| spec.traversal(j, GRID_ROWS, GRID_COLS, -2.0, 2.0, &mut rng)).collect();
    (grid, traversals)
}

/// The sample grid, the traversals and the checkpoint of an epoch end.
fn write_epoch_outputs(trainer: &mut Trainer, out: &Path, epoch: usize) -> Result<()> {
    prepare_out(out)?;
    let (grid, traversals) = picture_latents(trainer);
    let images = trainer.generator.generate(&grid.z);
    tile(&images, GRID_ROWS, GRID_COLS).save(&out.join("samples").join(format!("epoch_{epoch:03}.png")))?;
    for (j, t) in traversals.iter().enumerate() {
        let images = trainer.generator.generate(&t.z);
        let path = out.join("traversals").join(format!("epoch_{epoch:03}_cont_{}.png", j + 1));
        tile(&images, GRID_ROWS, GRID_COLS).save(&path)?;
    }
    checkpoint::save(trainer, &out.join("checkpoint.safetensors"))?;
    progress_gif(out)
}

/// `progress.gif`: the sample grids of every epoch so far, in order.
fn progress_gif(out: &Path) -> Result<()> {
    let dir = out.join("samples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io("read the folder", &dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("epoch_") && n.ends_with(".png"))
        })
        .collect();
    paths.sort();
    let frames = paths.iter().map(|p| Image::load(p)).collect::<Result<Vec<_>>>()?;
    // Frames of another size (a sample grid from another run in the same folder) are skipped.
    let size = frames.last().map(|f| (f.width, f.height, f.channels));
    let frames: Vec<Image> = frames.into_iter().filter(|f| Some((f.width, f.height, f.channels)) == size).collect();
    if frames.is_empty() {
        return Ok(());
    }
    gif::save(&out.join("progress.gif"), &frames, 60)
}

/// A CSV row: epoch, step, an optional value, then more values.
fn numbers(epoch: usize, step: u64, first: Option<f64>, rest: &[f64]) -> Vec<String> {
    let mut row = vec![epoch.to_string(), step.to_string()];
    row.extend(first.iter().chain(rest).map(|v| format!("{v:.5}")));
    row
}

/// Sums of the step statistics since the last log row.
#[derive(Default)]
struct Window {
    steps: usize,
    d_loss: f64,
    g_loss: f64,
    info_loss: f64,
    d_real: f64,
    d_fake: f64,
    images: usize,
    seconds: f64,
    code_losses: Vec<Vec<f64>>,
}

impl Window {
    fn add(&mut self, s: &StepStats, images: usize, seconds: f64) {
        self.steps += 1;
        self.d_loss += s.d_loss;
        self.g_loss += s.g_loss;
        self.info_loss += s.info_loss;
        self.d_real += s.d_real;
        self.d_fake += s.d_fake;
        self.images += images;
        self.seconds += seconds;
        self.code_losses.push(s.code_losses.clone());
    }

    fn mean(&self, v: f64) -> f64 {
        v / self.steps.max(1) as f64
    }

    fn images_per_s(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }

    /// epoch, step, d_loss, g_loss, info_loss, d_real, d_fake, images_per_s
    fn row(&self, epoch: usize, step: u64) -> Vec<Rounded> {
        vec![
            Rounded::Int(epoch as u64),
            Rounded::Int(step),
            Rounded::Float(self.mean(self.d_loss)),
            Rounded::Float(self.mean(self.g_loss)),
            Rounded::Float(self.mean(self.info_loss)),
            Rounded::Float(self.mean(self.d_real)),
            Rounded::Float(self.mean(self.d_fake)),
            Rounded::Float(self.images_per_s()),
        ]
    }
}

enum Rounded {
    Int(u64),
    Float(f64),
}

impl std::fmt::Display for Rounded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rounded::Int(v) => write!(f, "{v}"),
            Rounded::Float(v) => write!(f, "{v:.5}"),
        }
    }
}

/// A progress bar on a terminal; plain lines every 30 seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
    per_epoch: u64,
    total: u64,
}

impl Progress {
    fn new(total: u64, done: u64, per_epoch: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} steps, {per_sec}, ETA {eta} | {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_position(done);
            bar
        });
        Progress { bar, last_line: Instant::now(), per_epoch, total }
    }

    fn tick(&mut self, step: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
        }
    }

    fn update(&mut self, step: u64, epoch: usize, w: &Window) {
        let msg = format!(
            "{:.0} img/s | d {:.3} g {:.3} info {:.3} | D(x) {:.2} D(G(z)) {:.2}",
            w.images_per_s(),
            w.mean(w.d_loss),
            w.mean(w.g_loss),
            w.mean(w.info_loss),
            w.mean(w.d_real),
            w.mean(w.d_fake)
        );
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(format!("epoch {epoch}"));
                bar.set_position(step);
                bar.set_message(msg);
            }
            None if self.last_line.elapsed().as_secs() >= 30 || step == self.total => {
                let left = self.total - step;
                let eta = left as f64 * w.seconds / w.steps.max(1) as f64;
                eprintln!(
                    "epoch {epoch} step {step}/{} ({}/{} in epoch) ETA {:.0}s | {msg}",
                    self.total,
                    (step - 1) % self.per_epoch + 1,
                    self.per_epoch,
                    eta
                );
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    fn message(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
