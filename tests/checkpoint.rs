//! The checkpoint loader against damaged files (a bounded fuzz run in `make test`):
//! a real checkpoint with arbitrary bytes written into its header (the JSON of
//! tensor shapes, offsets and the configuration, which the checksum does not cover),
//! or into its data, or cut short, is read or refused with an error; never a panic
//! or an abort.

mod common;

use std::sync::OnceLock;

use proptest::prelude::*;

use infogan::data::DatasetKind;
use infogan::models::weights;
use infogan::train::{TrainConfig, Trainer, checkpoint};

/// The bytes of a fresh MNIST checkpoint, and the length of its header.
fn good() -> &'static (Vec<u8>, usize) {
    static GOOD: OnceLock<(Vec<u8>, usize)> = OnceLock::new();
    GOOD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("good.safetensors");
        checkpoint::save(&Trainer::new(TrainConfig::defaults(DatasetKind::Mnist)), &path, None).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        (bytes, header)
    })
}

proptest! {
    #![proptest_config(common::proptest_config(32, 15000))]

    #[test]
    fn damaged_checkpoints_are_errors_not_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        in_data in any::<bool>(),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (bytes, header) = good();
        let mut damaged = bytes.clone();
        for (at, value) in &edits {
            let i = if in_data { 8 + header + at.index(bytes.len() - 8 - header) } else { at.index(8 + header) };
            damaged[i] = *value;
        }
        if let Some(cut) = cut {
            damaged.truncate(cut.index(damaged.len()));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.safetensors");
        std::fs::write(&path, &damaged).unwrap();
        let weights_only = weights::load(&path);
        let full = checkpoint::load(&path);
        // A change inside the data is always caught, by the checksum.
        if in_data && cut.is_none() && damaged != *bytes {
            prop_assert!(weights_only.is_err() && full.is_err());
        }
    }
}
