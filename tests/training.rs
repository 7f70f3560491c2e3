//! The training run as a library function (`train::run`), without the binary: a run
//! stopped and resumed through a checkpoint takes the same steps as one that never
//! stopped, the stop flag ends a run after a step, and the observer sees every step
//! and every epoch end.

use std::sync::atomic::AtomicBool;

use infogan::data::{Dataset, DatasetKind};
use infogan::error::Result;
use infogan::models::weights;
use infogan::train::run::{Observer, Outcome, RunOptions, StepEnd, run};
use infogan::train::{TrainConfig, Trainer, checkpoint};

/// `n` pseudo-random 28x28 images, labelled 0..9 in turn.
fn tiny_mnist(n: usize) -> Dataset {
    Dataset {
        kind: DatasetKind::Mnist,
        pixels: (0..n * 784).map(|i| ((i * 7919 + i / 784 * 31) % 256) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        class_names: (0..10).map(|i| i.to_string()).collect(),
    }
}

fn config() -> TrainConfig {
    TrainConfig { batch_size: 8, epochs: 3, seed: 4, ..TrainConfig::defaults(DatasetKind::Mnist) }
}

/// Every weight and statistic of both networks, as bits.
fn bits(t: &Trainer) -> Vec<(String, Vec<u32>)> {
    let tensors = weights::tensors(&t.generator, &t.discriminator);
    tensors.into_iter().map(|(n, v)| (n, v.iter().map(|x| x.to_bits()).collect())).collect()
}

#[derive(Default)]
struct Record {
    steps: Vec<u64>,
    epoch_ends: Vec<(usize, u64)>,
}

impl Observer for Record {
    fn step_end(&mut self, _: &Trainer, s: &StepEnd) -> Result<()> {
        self.steps.push(s.step);
        Ok(())
    }

    fn epoch_end(&mut self, t: &mut Trainer, epoch: usize) -> Result<()> {
        self.epoch_ends.push((epoch, t.step));
        Ok(())
    }
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    // 5 steps per epoch at batch 8: the first part stops in the second epoch, so the
    // resumed run must rebuild that epoch's data order.
    let data = tiny_mnist(40);
    let mut straight = Trainer::new(config());
    let mut seen = Record::default();
    assert_eq!(run(&mut straight, &data, &RunOptions::default(), &mut seen).unwrap(), Outcome::Done);
    assert_eq!(seen.steps, (1..=15).collect::<Vec<_>>());
    assert_eq!(seen.epoch_ends, vec![(1, 5), (2, 10), (3, 15)]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let mut first = Trainer::new(config());
    let mut seen = Record::default();
    run(&mut first, &data, &RunOptions { max_steps: Some(7), ..Default::default() }, &mut seen).unwrap();
    assert_eq!(seen.epoch_ends, vec![(1, 5), (2, 7)], "a run cut within an epoch ends it there");
    checkpoint::save(&first, &path, None).unwrap();
    let mut resumed = checkpoint::load(&path).unwrap();
    assert_eq!(resumed.step, 7);
    run(&mut resumed, &data, &RunOptions::default(), &mut ()).unwrap();
    assert_eq!(resumed.step, 15);
    assert!(bits(&resumed) == bits(&straight), "the resumed run's weights differ from the uninterrupted run's");
}

#[test]
fn the_stop_flag_ends_a_run_after_one_step() {
    let data = tiny_mnist(40);
    let stop = AtomicBool::new(true);
    let mut trainer = Trainer::new(config());
    let mut seen = Record::default();
    let outcome = run(&mut trainer, &data, &RunOptions { stop: Some(&stop), ..Default::default() }, &mut seen).unwrap();
    assert_eq!(outcome, Outcome::Stopped);
    assert_eq!((seen.steps, seen.epoch_ends), (vec![1], vec![(1, 1)]));
}

#[test]
fn a_batch_larger_than_the_training_set_is_an_error() {
    let mut trainer = Trainer::new(TrainConfig { batch_size: 64, ..config() });
    let err = run(&mut trainer, &tiny_mnist(40), &RunOptions::default(), &mut ()).unwrap_err().to_string();
    assert!(err.contains("--batch-size 64 is larger than the 40 training images"), "{err}");
}

/// The read-only parameter names (checkpoints) are those of the mutable parameters
/// (the optimizer), in the same order, for every part of both architectures.
#[test]
fn parameter_names_agree_between_views() {
    for dataset in [DatasetKind::Mnist, DatasetKind::Cifar10] {
        let mut t = Trainer::new(TrainConfig::defaults(dataset));
        let mut nets: Vec<&mut infogan::models::Sequential> = vec![&mut t.generator.net];
        nets.extend(t.discriminator.parts_mut().into_iter().map(|(_, s)| s));
        for net in nets {
            let read_only = net.param_names();
            let mutable: Vec<String> = net.params().into_iter().map(|p| p.name).collect();
            assert_eq!(read_only, mutable, "{dataset}");
            assert!(!read_only.is_empty());
        }
    }
}

#[test]
fn a_state_with_nan_weights_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let mut t = Trainer::new(config());
    checkpoint::save(&t, &path, None).unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut params = t.generator.net.params();
    params[0].param.value[[0, 0]] = f32::NAN;
    drop(params);
    let err = checkpoint::save(&t, &path, None).unwrap_err().to_string();
    assert!(err.contains("generator.fc1.weight holds 1 NaN") && err.contains("not replaced"), "{err}");
    assert!(std::fs::read(&path).unwrap() == before, "the good checkpoint was replaced");
}
