//! The files a training run leaves in its folder, written by an observer of the run
//! (`train::run::Observer`): `losses.csv` every few steps; at each epoch end
//! `information.csv` and `metrics.csv` rows (with the categorical code's accuracy on
//! the test images and the image scores), the sample grid and the traversals, the
//! checkpoint (with the code-to-label map), `progress.gif` and `losses.png`.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval::{categorical_accuracy, lower_bounds, mean_rows};
use crate::models::classifier::Classifier;
use crate::models::{LatentBatch, ModelKind};
use crate::output::csv::{CsvLog, LossRow, header_of};
use crate::output::curves::losses_chart;
use crate::output::gif;
use crate::output::grid::{default_scale, tile};
use crate::output::png::Image;
use crate::score::{Quality, Reference, SCORE_COLUMNS, SCORE_IMAGES, SCORE_SEED, quality_of_generator};
use crate::train::run::{Observer, StepEnd};
use crate::train::{StepStats, Trainer, checkpoint};

/// The classifier behind the image scores and the real images' statistics.
pub struct Scoring {
    pub classifier: Classifier,
    pub reference: Reference,
}

/// What an epoch end measured.
pub struct EpochReport {
    pub epoch: usize,
    pub step: u64,
    /// The categorical code's accuracy on the test images (with a test split and a
    /// categorical code).
    pub accuracy: Option<f64>,
    /// The image scores (with `Scoring`).
    pub quality: Option<Quality>,
}

/// The writer of a run folder.
pub struct RunFiles<'a> {
    out: PathBuf,
    log_every: u64,
    losses: CsvLog,
    information: CsvLog,
    metrics: CsvLog,
    window: LogWindow,
    /// The per-code losses of every step of the epoch so far.
    epoch_codes: Vec<Vec<f64>>,
    test_set: Option<&'a Dataset>,
    scoring: Option<Scoring>,
}

impl<'a> RunFiles<'a> {
    /// Creates the folder's subfolders and opens its CSV files, keeping the rows up
    /// to `trainer.step` of a run being resumed. A `losses.csv` row is written every
    /// `log_every` steps.
    pub fn create(
        out: &Path,
        trainer: &Trainer,
        log_every: u64,
        test_set: Option<&'a Dataset>,
        scoring: Option<Scoring>,
    ) -> Result<Self> {
        prepare_out(out)?;
        let step = trainer.step;
        let names = trainer.config.arch.latent.code_names();
        let bounds = names.iter().map(|n| format!("mi_bound_{n}"));
        let columns = |first: &[&str], rest: &[&str]| -> Vec<String> {
            let (first, rest) = (first.iter().map(|c| c.to_string()), rest.iter().map(|c| c.to_string()));
            first.chain(bounds.clone()).chain(rest).collect()
        };
        Ok(RunFiles {
            out: out.to_path_buf(),
            log_every: log_every.max(1),
            losses: CsvLog::open(&out.join("losses.csv"), &header_of::<LossRow>(), step)?,
            information: CsvLog::open(&out.join("information.csv"), &columns(&["epoch", "step"], &[]), step)?,
            metrics: CsvLog::open(
                &out.join("metrics.csv"),
                &columns(&["epoch", "step", "categorical_accuracy"], &SCORE_COLUMNS),
                step,
            )?,
            window: LogWindow::default(),
            epoch_codes: Vec::new(),
            test_set,
            scoring,
        })
    }

    /// Records a step; every `log_every` steps and before an epoch end, writes the
    /// `losses.csv` and `information.csv` rows and returns the interval they average.
    pub fn step_end(&mut self, trainer: &Trainer, s: &StepEnd) -> Result<Option<LogWindow>> {
        self.window.add(s.stats, trainer.config.batch_size, s.seconds);
        self.epoch_codes.push(s.stats.code_losses.clone());
        if !(s.step.is_multiple_of(self.log_every) || s.ends_epoch) {
            return Ok(None);
        }
        let window = std::mem::take(&mut self.window);
        self.losses.serialize(&window.row(s.epoch, s.step))?;
        let bounds = lower_bounds(&trainer.config.arch.latent, &mean_rows(&window.code_losses));
        self.information.row(&numbers(s.epoch, s.step, None, &bounds))?;
        Ok(Some(window))
    }

    /// The epoch end's evaluation, its `metrics.csv` row, pictures, checkpoint, GIF
    /// and chart.
    pub fn epoch_end(&mut self, trainer: &mut Trainer, epoch: usize) -> Result<EpochReport> {
        self.losses.flush()?;
        self.information.flush()?;
        let spec = trainer.config.arch.latent.clone();
        let evaluation = self
            .test_set
            .filter(|_| !spec.categorical.is_empty())
            .map(|t| (categorical_accuracy(&mut trainer.discriminator, &spec, t, true), t));
        let accuracy = evaluation.as_ref().map(|(e, _)| e.accuracy);
        // A plain GAN's generator ignores the code: its probe's map names nothing.
        let labels = evaluation
            .filter(|_| trainer.config.model == ModelKind::InfoGan)
            .map(|(e, t)| e.code_labels(&t.class_names, trainer.step));
        let mut row = lower_bounds(&spec, &mean_rows(&self.epoch_codes));
        self.epoch_codes.clear();
        let score_images = self.test_set.map_or(SCORE_IMAGES, |t| t.len().min(SCORE_IMAGES));
        let quality = self.scoring.as_mut().map(|s| {
            quality_of_generator(
                &mut trainer.generator,
                &spec,
                &mut s.classifier,
                &s.reference,
                score_images,
                SCORE_SEED,
            )
        });
        row.extend(quality.as_ref().map_or([f64::NAN; 3], |q| [q.frechet, q.inception, q.diversity]));
        self.metrics.row(&numbers(epoch, trainer.step, Some(accuracy.unwrap_or(f64::NAN)), &row))?;
        self.metrics.flush()?;
        write_pictures(trainer, &self.out, epoch)?;
        checkpoint::save(trainer, &self.out.join("checkpoint.safetensors"), labels.as_ref())?;
        progress_gif(&self.out)?;
        losses_chart(&self.out.join("losses.csv"), &self.out.join("losses.png"))?;
        Ok(EpochReport { epoch, step: trainer.step, accuracy, quality })
    }
}

impl Observer for RunFiles<'_> {
    fn step_end(&mut self, trainer: &Trainer, step: &StepEnd) -> Result<()> {
        RunFiles::step_end(self, trainer, step).map(drop)
    }

    fn epoch_end(&mut self, trainer: &mut Trainer, epoch: usize) -> Result<()> {
        RunFiles::epoch_end(self, trainer, epoch).map(drop)
    }
}

/// Creates the run folder and its picture subfolders.
pub fn prepare_out(out: &Path) -> Result<()> {
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
        (0..spec.continuous).map(|j| spec.traversal(j, GRID_ROWS, GRID_COLS, (-2.0, 2.0), &mut rng)).collect();
    (grid, traversals)
}

/// `samples/epoch_NNN.png` and `traversals/epoch_NNN_cont_J.png`.
fn write_pictures(trainer: &mut Trainer, out: &Path, epoch: usize) -> Result<()> {
    prepare_out(out)?;
    let (grid, traversals) = picture_latents(trainer);
    let images = trainer.generator.generate(&grid.z);
    let scale = default_scale(images.dim().2);
    tile(&images, GRID_ROWS, GRID_COLS, scale).save(&out.join("samples").join(format!("epoch_{epoch:03}.png")))?;
    for (j, t) in traversals.iter().enumerate() {
        let images = trainer.generator.generate(&t.z);
        let path = out.join("traversals").join(format!("epoch_{epoch:03}_cont_{}.png", j + 1));
        tile(&images, GRID_ROWS, GRID_COLS, scale).save(&path)?;
    }
    Ok(())
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

/// Sums of the step statistics of one logging interval.
#[derive(Default)]
pub struct LogWindow {
    pub steps: usize,
    pub d_loss: f64,
    pub g_loss: f64,
    pub info_loss: f64,
    pub d_real: f64,
    pub d_fake: f64,
    pub images: usize,
    pub seconds: f64,
    pub code_losses: Vec<Vec<f64>>,
}

impl LogWindow {
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

    /// The mean over the interval's steps of a sum.
    pub fn mean(&self, v: f64) -> f64 {
        v / self.steps.max(1) as f64
    }

    pub fn images_per_s(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }

    /// The interval's `losses.csv` row.
    fn row(&self, epoch: usize, step: u64) -> LossRow {
        LossRow {
            epoch,
            step,
            d_loss: self.mean(self.d_loss),
            g_loss: self.mean(self.g_loss),
            info_loss: self.mean(self.info_loss),
            d_real: self.mean(self.d_real),
            d_fake: self.mean(self.d_fake),
            images_per_s: self.images_per_s(),
        }
    }
}
