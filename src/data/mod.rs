//! Datasets: MNIST, Fashion-MNIST and CIFAR-10 from their official files, checked
//! whole before use (a bad file is an error, never a partly loaded dataset), kept as
//! u8 and converted to f32 one mini-batch at a time.

pub mod affine;
pub mod cifar;
pub mod idx;

use std::path::{Path, PathBuf};

use ndarray::{Array4, ArrayViewMut4};
use rand::{Rng, RngExt};

use crate::error::{Error, Result};

/// The datasets the tool knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DatasetKind {
    /// The default of every command that takes a dataset.
    #[default]
    Mnist,
    FashionMnist,
    Cifar10,
}

impl DatasetKind {
    pub const ALL: [DatasetKind; 3] = [DatasetKind::Mnist, DatasetKind::FashionMnist, DatasetKind::Cifar10];

    /// The name used on the command line, in `data/<name>/` and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
        }
    }

    /// The name in prose: "MNIST", "Fashion-MNIST", "CIFAR-10".
    pub fn display_name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "MNIST",
            DatasetKind::FashionMnist => "Fashion-MNIST",
            DatasetKind::Cifar10 => "CIFAR-10",
        }
    }

    /// Parses a dataset name, with an error that lists the known ones.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            let known: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
            Error::Invalid(format!("unknown dataset {name:?}; expected one of: {}", known.join(", ")))
        })
    }

    /// Image shape `(C, H, W)`.
    pub fn image_shape(self) -> (usize, usize, usize) {
        match self {
            DatasetKind::Mnist | DatasetKind::FashionMnist => (1, 28, 28),
            DatasetKind::Cifar10 => (3, cifar::SIDE, cifar::SIDE),
        }
    }

    /// Images in the full official training split (the shared CIFAR-10 subset has
    /// fewer; `Dataset::len` tells).
    pub fn train_images(self) -> usize {
        match self {
            DatasetKind::Mnist | DatasetKind::FashionMnist => 60_000,
            DatasetKind::Cifar10 => 50_000,
        }
    }

    /// The default data folder, `data/<name>`.
    pub fn default_dir(self) -> PathBuf {
        Path::new("data").join(self.name())
    }

    fn builtin_class_names(self) -> Vec<String> {
        let names: Vec<&str> = match self {
            DatasetKind::Mnist => vec!["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            DatasetKind::FashionMnist => vec![
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
            DatasetKind::Cifar10 => cifar::DEFAULT_CLASSES.to_vec(),
        };
        names.into_iter().map(String::from).collect()
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// A loaded split: `N` images of `C x H x W` bytes and their labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub kind: DatasetKind,
    /// pixels: [N, C, H, W], row-major bytes.
    pub pixels: Vec<u8>,
    /// labels: `[N]`, each in 0..10.
    pub labels: Vec<u8>,
    pub class_names: Vec<String>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image, `C*H*W`.
    pub fn image_len(&self) -> usize {
        let (c, h, w) = self.kind.image_shape();
        c * h * w
    }

    /// Image `i` as `C*H*W` bytes.
    pub fn image(&self, i: usize) -> &[u8] {
        let len = self.image_len();
        &self.pixels[i * len..(i + 1) * len]
    }

    /// The images at `indices` as f32 in [-1, 1]: `x = byte / 127.5 - 1`.
    ///
    /// -> [len(indices), C, H, W]
    pub fn batch(&self, indices: &[usize]) -> Array4<f32> {
        let (c, h, w) = self.kind.image_shape();
        let mut out = Array4::zeros((indices.len(), c, h, w));
        self.batch_into(indices, out.view_mut());
        out
    }

    /// `batch`, written into `out: [len(indices), C, H, W]`.
    pub fn batch_into(&self, indices: &[usize], mut out: ArrayViewMut4<f32>) {
        let len = self.image_len();
        let out = out.as_slice_mut().expect("batch buffer is contiguous");
        assert_eq!(out.len(), indices.len() * len, "batch_into: buffer size");
        for (dst, &i) in out.chunks_exact_mut(len).zip(indices) {
            for (d, &p) in dst.iter_mut().zip(self.image(i)) {
                *d = p as f32 / 127.5 - 1.0;
            }
        }
    }
}

/// Loads one split of `kind` from the official files in `dir`.
pub fn load(kind: DatasetKind, dir: &Path, split: Split) -> Result<Dataset> {
    match kind {
        DatasetKind::Mnist | DatasetKind::FashionMnist => load_idx(kind, dir, split),
        DatasetKind::Cifar10 => load_cifar(dir, split),
    }
}

/// The path of an official file in `dir`, compressed (`.gz`) or not.
fn find_file(kind: DatasetKind, dir: &Path, names: &[String]) -> Result<PathBuf> {
    for name in names {
        let path = dir.join(name);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => return Ok(path),
            // A file that exists but cannot be read is not a missing one: say so.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Io {
                    action: "read",
                    path,
                    source: e,
                    hint: Some(format!("check the permissions of {} and of the files in it", dir.display())),
                });
            }
            _ => {}
        }
    }
    Err(Error::Io {
        action: "find",
        path: dir.join(&names[0]),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        hint: Some(format!(
            "run `make data DATASET={kind}` to fetch {kind} into {}, or pass --data-dir with a folder that holds its \
             official files",
            kind.default_dir().display()
        )),
    })
}

fn load_idx(kind: DatasetKind, dir: &Path, split: Split) -> Result<Dataset> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let candidates = |stem: &str| vec![format!("{prefix}-{stem}.gz"), format!("{prefix}-{stem}")];
    let images_path = find_file(kind, dir, &candidates("images-idx3-ubyte"))?;
    let labels_path = find_file(kind, dir, &candidates("labels-idx1-ubyte"))?;
    let images =
        idx::parse_images(&idx::read_maybe_gzip(&images_path)?).map_err(|m| Error::bad_file(&images_path, m))?;
    let labels =
        idx::parse_labels(&idx::read_maybe_gzip(&labels_path)?, 10).map_err(|m| Error::bad_file(&labels_path, m))?;
    let (_, h, w) = kind.image_shape();
    if (images.rows, images.cols) != (h, w) {
        return Err(Error::bad_file(
            &images_path,
            format!("holds {}x{} images, expected {h}x{w} for {kind}", images.rows, images.cols),
        ));
    }
    if images.count != labels.len() {
        return Err(Error::bad_file(
            &labels_path,
            format!(
                "has {} labels but {} has {} images: the two files do not belong together",
                labels.len(),
                images_path.display(),
                images.count
            ),
        ));
    }
    if images.count == 0 {
        return Err(Error::bad_file(&images_path, "holds no images"));
    }
    Ok(Dataset { kind, pixels: images.pixels, labels, class_names: kind.builtin_class_names() })
}

fn load_cifar(dir: &Path, split: Split) -> Result<Dataset> {
    let kind = DatasetKind::Cifar10;
    // The official tarball unpacks into cifar-10-batches-bin/; accept either layout.
    let nested = dir.join("cifar-10-batches-bin");
    let dir = if !dir.join(cifar::TEST_FILE).is_file() && nested.is_dir() { nested } else { dir.to_path_buf() };
    let files: Vec<&str> = match split {
        Split::Train => cifar::TRAIN_FILES.to_vec(),
        Split::Test => vec![cifar::TEST_FILE],
    };
    let (mut labels, mut pixels) = (Vec::new(), Vec::new());
    for name in files {
        let path = find_file(kind, &dir, &[name.to_string()])?;
        let bytes = crate::files::read_regular(&path)?;
        cifar::parse_records(&bytes, &mut labels, &mut pixels).map_err(|m| Error::bad_file(&path, m))?;
    }
    let meta = dir.join(cifar::META_FILE);
    let class_names = if meta.is_file() {
        let text = std::fs::read_to_string(&meta).map_err(|e| Error::io("read", &meta, e))?;
        cifar::parse_meta(&text).map_err(|m| Error::bad_file(&meta, m))?
    } else {
        kind.builtin_class_names()
    };
    Ok(Dataset { kind, pixels, labels, class_names })
}

/// Mini-batches of a dataset in an order reshuffled every epoch by the run's RNG, so
/// that the order of every epoch follows from the seed. The last incomplete batch
/// of an epoch is dropped (batch norm needs full, equal batches).
pub struct Shuffler {
    order: Vec<usize>,
    batch_size: usize,
}

impl Shuffler {
    pub fn new(len: usize, batch_size: usize) -> Self {
        assert!(batch_size > 0, "Shuffler: batch size must be positive");
        Shuffler { order: (0..len).collect(), batch_size }
    }

    /// Full batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.order.len() / self.batch_size
    }

    /// Reshuffles (Fisher-Yates) for a new epoch.
    pub fn shuffle(&mut self, rng: &mut impl Rng) {
        for i in (1..self.order.len()).rev() {
            let j = rng.random_range(0..=i);
            self.order.swap(i, j);
        }
    }

    /// The dataset indices of batch `b` of the current epoch.
    pub fn batch(&self, b: usize) -> &[usize] {
        &self.order[b * self.batch_size..(b + 1) * self.batch_size]
    }
}
