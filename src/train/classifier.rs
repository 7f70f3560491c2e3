//! Training the scorer's classifier (`models::classifier`) on a dataset's training
//! images, and keeping it in `data/<dataset>/scorer.safetensors` so that it is
//! trained once, on first use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{Array4, ArrayViewD};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::data::{Dataset, DatasetKind, Shuffler};
use crate::error::{Error, Result};
use crate::layers::{AugmentPolicy, DiffAugment};
use crate::loss::cross_entropy;
use crate::models::classifier::Classifier;
use crate::optim::Adam;
use crate::tensorfile::{TensorFile, write_tensors};

use crate::models::weights::restore;

/// The cache file's name in the dataset's folder.
pub const CACHE_FILE: &str = "scorer.safetensors";
/// The metadata value of `format` in the cache.
const FORMAT: &str = "infogan-scorer-1";
/// Optimizer steps the training aims at (1 epoch of MNIST, 15 of the CIFAR-10 subset).
const TARGET_STEPS: usize = 1200;
const BATCH: usize = 64;
/// Seed of the classifier's initialisation, data order and augmentation: fixed, so
/// that every user's scorer for the same data is the same network.
const SEED: u64 = 20_161_205;

/// A trained classifier and how well it does.
pub struct Scorer {
    pub classifier: Classifier,
    /// Accuracy on the test split (NaN when the test split was not available).
    pub test_accuracy: f64,
    /// Images it was trained on.
    pub train_images: usize,
    pub dataset: DatasetKind,
}

/// The scorer for `train`'s data: read from `dir/scorer.safetensors` when that file
/// holds a scorer for the same dataset and number of training images, otherwise
/// trained now (saying so through `log`) and written there.
pub fn load_or_train(dir: &Path, train: &Dataset, test: Option<&Dataset>, log: &mut dyn FnMut(&str)) -> Result<Scorer> {
    let path = cache_path(dir);
    if path.is_file() {
        match load(&path, train) {
            Ok(scorer) => return Ok(scorer),
            Err(e) => log(&format!("infogan: retraining the scorer: {e}")),
        }
    }
    let scorer = train_scorer(train, test, log);
    save(&scorer, &path)?;
    log(&format!("infogan: scorer saved to {}", path.display()));
    Ok(scorer)
}

pub fn cache_path(dir: &Path) -> PathBuf {
    dir.join(CACHE_FILE)
}

/// Trains a classifier on `train` with cross-entropy and Adam, the images randomly
/// translated by up to an eighth of their size (and, for CIFAR-10, mirrored), and
/// reports its accuracy on `test`.
pub fn train_scorer(train: &Dataset, test: Option<&Dataset>, log: &mut dyn FnMut(&str)) -> Scorer {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(SEED);
    let classes = train.class_names.len();
    let mut net = Classifier::new(train.kind, classes, &mut rng);
    let mut opt = Adam::new(1e-3, 0.9, 0.999);
    let mut shuffler = Shuffler::new(train.len(), BATCH.min(train.len()));
    let per_epoch = shuffler.batches_per_epoch().max(1);
    let epochs = (TARGET_STEPS as f64 / per_epoch as f64).round().max(1.0) as usize;
    let mut augment = DiffAugment::new(AugmentPolicy { translation: true, ..Default::default() });
    log(&format!(
        "infogan: training the scorer's classifier on {} {} images ({epochs} epochs; once, then cached)",
        train.len(),
        train.kind
    ));
    let started = std::time::Instant::now();
    for epoch in 0..epochs {
        shuffler.shuffle(&mut rng);
        for b in 0..shuffler.batches_per_epoch() {
            let indices = shuffler.batch(b);
            let mut x = augment.forward(train.batch(indices), &mut rng);
            if train.kind == DatasetKind::Cifar10 {
                mirror_half(&mut x, &mut rng);
            }
            let labels: Vec<usize> = indices.iter().map(|&i| train.labels[i] as usize).collect();
            net.body.zero_grad();
            net.head.zero_grad();
            let h = net.features(x);
            let logits = net.logits(h);
            let (_, dlogits) = cross_entropy(logits.view(), &labels);
            let dh = net.head.backward(dlogits.into_dyn());
            net.body.backward_params(dh);
            let params = net.body.params().into_iter().chain(net.head.params()).map(|p| p.param).collect();
            opt.update(params);
        }
        if epoch + 1 == epochs || started.elapsed().as_secs() >= 30 && epoch % 5 == 4 {
            log(&format!("infogan: scorer epoch {}/{epochs}", epoch + 1));
        }
    }
    let test_accuracy = test.map_or(f64::NAN, |t| accuracy(&mut net, t));
    log(&format!(
        "infogan: scorer trained in {:.0} s; test accuracy {test_accuracy:.4}",
        started.elapsed().as_secs_f64()
    ));
    Scorer { classifier: net, test_accuracy, train_images: train.len(), dataset: train.kind }
}

/// Mirrors a random half of the images left to right.
fn mirror_half(x: &mut Array4<f32>, rng: &mut impl rand::Rng) {
    use rand::RngExt;
    for mut img in x.outer_iter_mut() {
        if rng.random::<bool>() {
            let mirrored = img.slice(ndarray::s![.., .., ..;-1]).to_owned();
            img.assign(&mirrored);
        }
    }
}

/// The share of `data` the classifier labels right (in evaluation mode).
pub fn accuracy(net: &mut Classifier, data: &Dataset) -> f64 {
    net.set_training(false);
    let mut right = 0usize;
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(crate::eval::EVAL_BATCH) {
        let logits = {
            let h = net.features(data.batch(chunk));
            net.logits(h)
        };
        for (row, &i) in logits.outer_iter().zip(chunk) {
            let best =
                row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (k, &v)| if v > b.1 { (k, v) } else { b });
            right += usize::from(best.0 == data.labels[i] as usize);
        }
    }
    net.set_training(true);
    right as f64 / data.len().max(1) as f64
}

fn save(scorer: &Scorer, path: &Path) -> Result<()> {
    let net = &scorer.classifier;
    let mut tensors: Vec<(String, ArrayViewD<'_, f32>)> = Vec::new();
    for (prefix, part) in [("body", &net.body), ("head", &net.head)] {
        tensors.extend(part.tensors().into_iter().map(|(name, t)| (format!("{prefix}.{name}"), t)));
    }
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("dataset".to_string(), scorer.dataset.name().to_string()),
        ("train_images".to_string(), scorer.train_images.to_string()),
        ("test_accuracy".to_string(), format!("{}", scorer.test_accuracy)),
    ]);
    write_tensors(path, &tensors, &metadata)
}

/// Reads a cached scorer; an error (which `load_or_train` reports and answers by
/// retraining) when the file is damaged or belongs to other data.
fn load(path: &Path, train: &Dataset) -> Result<Scorer> {
    let file = TensorFile::read(path)?;
    let meta = |key: &str| file.meta(key, path).map(str::to_string);
    if meta("format")? != FORMAT {
        return Err(Error::bad_file(path, format!("is not a scorer (no metadata format = {FORMAT})")));
    }
    let (dataset, images) = (meta("dataset")?, meta("train_images")?);
    if dataset != train.kind.name() || images != train.len().to_string() {
        return Err(Error::bad_file(
            path,
            format!(
                "was trained on {images} {dataset} images, but the training set now holds {} {}",
                train.len(),
                train.kind
            ),
        ));
    }
    let test_accuracy = meta("test_accuracy")?.parse().unwrap_or(f64::NAN);
    let mut classifier =
        Classifier::new(train.kind, train.class_names.len(), &mut Xoshiro256PlusPlus::seed_from_u64(SEED));
    for (prefix, part) in [("body", &mut classifier.body), ("head", &mut classifier.head)] {
        for mut p in part.params() {
            restore(&file, path, &format!("{prefix}.{}", p.name), &mut p.param.value)?;
        }
        for mut b in part.buffers() {
            restore(&file, path, &format!("{prefix}.{}", b.name), &mut b.buffer.value)?;
        }
    }
    Ok(Scorer { classifier, test_accuracy, train_images: train.len(), dataset: train.kind })
}
