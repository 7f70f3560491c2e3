//! Shared by the tests of the `infogan` binary: running it, a tiny synthetic
//! dataset, a short training.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use infogan::data::idx::{IdxImages, encode_images, encode_labels};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_infogan"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A folder with `count` pseudo-random 28x28 training images and labels in IDX format.
pub fn tiny_mnist(dir: &Path, count: usize) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let pixels = (0..count * 784).map(|i| ((i * 7919 + i / 784 * 31) % 256) as u8).collect();
    let images = IdxImages { count, rows: 28, cols: 28, pixels };
    std::fs::write(data.join("train-images-idx3-ubyte"), encode_images(&images)).unwrap();
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    std::fs::write(data.join("train-labels-idx1-ubyte"), encode_labels(&labels)).unwrap();
    data
}

/// The training files of `data` copied as its test split.
pub fn add_test_split(data: &Path) {
    for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        std::fs::copy(data.join(name.replace("t10k", "train")), data.join(name)).unwrap();
    }
}

/// `infogan train` on the tiny dataset with small batches; extra flags appended.
pub fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--dataset", "mnist", "--batch-size", "8", "--seed", "3", "--no-score"];
    let (d, o) = (data.to_str().unwrap().to_string(), out.to_str().unwrap().to_string());
    args.extend(["--data-dir", &d, "--out", &o]);
    args.extend(extra);
    run(&args)
}

pub fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed: {}", stderr(out));
}
