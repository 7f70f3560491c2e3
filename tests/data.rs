//! The dataset loaders: the real files when they are present, every kind of bad file
//! (an error naming the file, never a panic or a partial dataset), arbitrary bytes and
//! truncations fed to every parser, and a PNG round trip.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use infogan::data::idx::{IdxImages, decompress, encode_images, encode_labels, parse_images, parse_labels};
use infogan::data::{DatasetKind, Shuffler, Split, cifar, load};
use infogan::output::png::Image;

fn mirror() -> PathBuf {
    match std::env::var_os("DATA_MIRROR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"),
    }
}

/// The mirror's folder for `sub`, or None (with a note) when it is absent.
fn mirror_dir(sub: &str) -> Option<PathBuf> {
    let dir = mirror().join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("note: {} is absent; skipping the checks of the real files", dir.display());
        None
    }
}

#[test]
fn real_mnist_loads_with_known_counts_and_labels() {
    let Some(dir) = mirror_dir("mnist") else { return };
    let train = load(DatasetKind::Mnist, &dir, Split::Train).unwrap();
    let test = load(DatasetKind::Mnist, &dir, Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(&train.labels[..5], &[5, 0, 4, 1, 9]);
    assert_eq!(train.pixels.len(), 60_000 * 28 * 28);
    // The batch conversion maps bytes 0 and 255 to -1 and 1.
    let batch = train.batch(&[0, 1]);
    assert_eq!(batch.dim(), (2, 1, 28, 28));
    assert!(batch.iter().all(|&v| (-1.0..=1.0).contains(&v)));
    assert_eq!(batch[[0, 0, 0, 0]], -1.0);
    assert!(batch.iter().any(|&v| v == 1.0));
}

#[test]
fn real_cifar10_loads_any_record_count() {
    let Some(dir) = mirror_dir("cifar-10-batches-bin") else { return };
    let train = load(DatasetKind::Cifar10, &dir, Split::Train).unwrap();
    let test = load(DatasetKind::Cifar10, &dir, Split::Test).unwrap();
    let per_file = std::fs::metadata(dir.join("data_batch_1.bin")).unwrap().len() as usize / cifar::RECORD;
    assert_eq!(train.len(), 5 * per_file);
    if per_file == 1017 {
        assert_eq!((train.len(), test.len()), (5085, 1017));
    }
    assert_eq!(&train.labels[..5], &[6, 9, 9, 4, 1]);
    assert_eq!(train.class_names[0], "airplane");
    assert_eq!(train.class_names[9], "truck");
}

#[test]
fn real_images_round_trip_through_png() {
    let Some(dir) = mirror_dir("mnist") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut sets = vec![load(DatasetKind::Mnist, &dir, Split::Test).unwrap()];
    if let Some(dir) = mirror_dir("cifar-10-batches-bin") {
        sets.push(load(DatasetKind::Cifar10, &dir, Split::Test).unwrap());
    }
    for set in sets {
        let (c, h, w) = set.kind.image_shape();
        for i in [0, 1, set.len() - 1] {
            let img = Image::from_planar(c, h, w, set.image(i));
            let path = tmp.path().join(format!("{}-{i}.png", set.kind));
            img.save(&path).unwrap();
            let back = Image::load(&path).unwrap();
            assert_eq!(back, img, "{} image {i} changed in a PNG round trip", set.kind);
        }
    }
}

fn small_images(count: usize) -> IdxImages {
    IdxImages { count, rows: 28, cols: 28, pixels: (0..count * 784).map(|i| (i % 251) as u8).collect() }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A folder with an MNIST-style training split whose files are the given bytes.
fn idx_dir(images: &[u8], labels: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), gzip(images)).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), labels).unwrap();
    dir
}

fn load_err(dir: &Path, kind: DatasetKind) -> String {
    match load(kind, dir, Split::Train) {
        Ok(d) => panic!("expected an error, loaded {} images", d.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn small_valid_idx_files_load_compressed_or_raw() {
    let images = small_images(3);
    let dir = idx_dir(&encode_images(&images), &encode_labels(&[1, 2, 3]));
    let set = load(DatasetKind::FashionMnist, dir.path(), Split::Train).unwrap();
    assert_eq!(set.labels, vec![1, 2, 3]);
    assert_eq!(set.pixels, images.pixels);
}

/// A small gzip file whose header claims a billion images fails on its header alone.
#[test]
fn a_header_that_claims_more_than_a_gzip_file_can_hold_fails_at_once() {
    let mut header = encode_images(&small_images(1))[..16].to_vec();
    header[4..8].copy_from_slice(&1_000_000_000u32.to_be_bytes());
    let e = decompress(&gzip(&[header, vec![0; 1 << 20]].concat())).unwrap_err();
    assert!(e.contains("784000000016 bytes") && e.contains("can hold"), "{e}");
}

/// A gzip file of two members, as `cat a.gz b.gz` makes and `zcat` reads whole.
#[test]
fn multi_member_gzip_files_load_whole() {
    let images = small_images(3);
    let encoded = encode_images(&images);
    let (head, tail) = encoded.split_at(500);
    let dir = idx_dir(&[], &encode_labels(&[1, 2, 3]));
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), [gzip(head), gzip(tail)].concat()).unwrap();
    let set = load(DatasetKind::Mnist, dir.path(), Split::Train).unwrap();
    assert_eq!(set.pixels, images.pixels);
}

#[test]
fn bad_idx_files_are_clear_errors() {
    let images = encode_images(&small_images(3));
    let labels = encode_labels(&[1, 2, 3]);

    let missing = tempfile::tempdir().unwrap();
    let e = load_err(missing.path(), DatasetKind::Mnist);
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("make data DATASET=mnist"), "{e}");

    let dir = idx_dir(&labels, &labels);
    let e = load_err(dir.path(), DatasetKind::Mnist);
    assert!(e.contains("train-images-idx3-ubyte.gz") && e.contains("magic number 0x00000801"), "{e}");

    let dir = idx_dir(&images[..images.len() - 100], &labels);
    let e = load_err(dir.path(), DatasetKind::Mnist);
    assert!(e.contains("truncated"), "{e}");

    let dir = idx_dir(&images, &encode_labels(&[1, 2]));
    let e = load_err(dir.path(), DatasetKind::Mnist);
    assert!(e.contains("2 labels") && e.contains("3 images"), "{e}");

    let dir = idx_dir(&images, &encode_labels(&[1, 12, 3]));
    let e = load_err(dir.path(), DatasetKind::Mnist);
    assert!(e.contains("label 1 is 12"), "{e}");

    let other = encode_images(&IdxImages { count: 1, rows: 32, cols: 28, pixels: vec![0; 32 * 28] });
    let dir = idx_dir(&other, &encode_labels(&[0]));
    let e = load_err(dir.path(), DatasetKind::Mnist);
    assert!(e.contains("32x28 images, expected 28x28"), "{e}");

    let dir = idx_dir(&images, &labels);
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), [0x1f, 0x8b, 1, 2, 3]).unwrap();
    let e = load_err(dir.path(), DatasetKind::Mnist);
    assert!(e.contains("not a valid gzip file"), "{e}");
}

fn cifar_dir(records: usize, train_len: Option<usize>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for r in 0..records {
        bytes.push((r % 10) as u8);
        bytes.extend((0..3072).map(|i| (i % 256) as u8));
    }
    for name in cifar::TRAIN_FILES {
        let len = train_len.unwrap_or(bytes.len());
        std::fs::write(dir.path().join(name), &bytes[..len]).unwrap();
    }
    std::fs::write(dir.path().join(cifar::TEST_FILE), &bytes).unwrap();
    dir
}

#[test]
fn bad_cifar_files_are_clear_errors() {
    let ok = cifar_dir(2, None);
    assert_eq!(load(DatasetKind::Cifar10, ok.path(), Split::Train).unwrap().len(), 10);

    let dir = cifar_dir(2, Some(2 * cifar::RECORD - 5));
    let e = load_err(dir.path(), DatasetKind::Cifar10);
    assert!(e.contains("data_batch_1.bin") && e.contains("not a positive multiple of the 3073-byte"), "{e}");

    let dir = cifar_dir(2, None);
    let mut bytes = std::fs::read(dir.path().join("data_batch_3.bin")).unwrap();
    bytes[cifar::RECORD] = 10;
    std::fs::write(dir.path().join("data_batch_3.bin"), bytes).unwrap();
    let e = load_err(dir.path(), DatasetKind::Cifar10);
    assert!(e.contains("data_batch_3.bin") && e.contains("record 1 has label 10"), "{e}");

    let dir = cifar_dir(1, None);
    std::fs::remove_file(dir.path().join("data_batch_5.bin")).unwrap();
    let e = load_err(dir.path(), DatasetKind::Cifar10);
    assert!(e.contains("data_batch_5.bin") && e.contains("make data DATASET=cifar10"), "{e}");
}

#[test]
fn shuffling_follows_the_seed() {
    let order = |seed| {
        let mut s = Shuffler::new(100, 7);
        s.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
        (0..s.batches_per_epoch()).flat_map(|b| s.batch(b).to_vec()).collect::<Vec<_>>()
    };
    assert_eq!(order(1), order(1));
    assert_ne!(order(1), order(2));
    let mut seen = order(3);
    assert_eq!(seen.len(), 98, "14 full batches of 7");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 98, "no index twice");
}

fn config() -> ProptestConfig {
    common::proptest_config(256, 60000)
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes, with or without a plausible header in front: every parser
    /// returns, never panics.
    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000), header in 0usize..4) {
        let mut input = match header {
            0 => vec![],
            1 => vec![0, 0, 8, 3],
            2 => vec![0, 0, 8, 1],
            _ => vec![0x1f, 0x8b],
        };
        input.extend(&bytes);
        let _ = parse_images(&input);
        let _ = parse_labels(&input, 10);
        let _ = decompress(&input);
        let _ = cifar::parse_records(&input, &mut Vec::new(), &mut Vec::new());
        let _ = cifar::parse_meta(&String::from_utf8_lossy(&input));
    }

    /// Every strict prefix of a valid file is an error.
    #[test]
    fn truncated_files_are_errors(count in 1usize..4, cut in any::<prop::sample::Index>()) {
        let images = encode_images(&small_images(count));
        let labels = encode_labels(&vec![3; count]);
        let cifar_bytes = vec![1u8; cifar::RECORD * count];
        prop_assert!(cifar::parse_records(&cifar_bytes, &mut Vec::new(), &mut Vec::new()).is_ok());
        prop_assert!(parse_images(&images[..cut.index(images.len())]).is_err());
        prop_assert!(parse_labels(&labels[..cut.index(labels.len())], 10).is_err());
        let cut_cifar = cut.index(cifar_bytes.len());
        prop_assert!(cifar::parse_records(&cifar_bytes[..cut_cifar], &mut Vec::new(), &mut Vec::new()).is_err());
        let gz = gzip(&images);
        let cut_gz = cut.index(gz.len());
        prop_assert!(decompress(&gz[..cut_gz]).map(|b| parse_images(&b)).map_or(true, |r| r.is_err()));
    }
}
