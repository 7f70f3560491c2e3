//! How much memory a training run will take, estimated before it allocates, so that
//! a batch too large for the machine is a clear error rather than an abort of the
//! allocator (or the kernel's OOM killer) minutes later.
//!
//! The estimate: every parameter four times (value, gradient, Adam's two moments),
//! plus, per image of a batch, `ACTIVATION_FACTOR` times the floats that the layers
//! of G and D output for it (measured by running both networks on two latent
//! vectors). The factor covers what a step keeps beyond the outputs: the inputs
//! cached for backward, the gradients, im2col's column buffers, D's pass over the
//! real and the generated batch stacked, and the tensors a step has given back to
//! `buffers` for the next (a buffer there serves only its own length, where the C
//! allocator would have reused freed memory for any size: 12 to 16% more at batch
//! 1024). Measured with `infogan bench --steps 2 --threads 1` (peak RSS, batches 64
//! and 1024): 3.6 output-floats' worth of memory per image for MNIST, 4.9 for
//! CIFAR-10; 5 is the largest, rounded up.

use ndarray::{Array2, ArrayD};

use super::Trainer;
use crate::error::{Error, Result};
use crate::models::Sequential;

/// Bytes of memory per float that a layer outputs for one image, in a training step.
pub const ACTIVATION_FACTOR: f64 = 5.0 * 4.0;

/// The floats the layers of `net` output for the batch `x`, and the last output.
fn outputs(net: &mut Sequential, mut x: ArrayD<f32>) -> (usize, ArrayD<f32>) {
    let mut total = 0;
    for (_, layer) in &mut net.layers {
        x = layer.forward(x);
        total += x.len();
    }
    (total, x)
}

/// The estimated peak memory of a training step of `trainer`, in bytes (the data
/// set not included).
pub fn training_bytes(trainer: &mut Trainer) -> u64 {
    let params: usize = trainer.generator.net.params().iter().map(|p| p.param.value.len()).sum::<usize>()
        + trainer.discriminator.params().iter().map(|p| p.param.value.len()).sum::<usize>();
    // Two latent vectors through G and D in evaluation mode: the running statistics
    // do not move, and the weights are only read.
    let z = Array2::<f32>::zeros((2, trainer.config.arch.latent.size()));
    trainer.generator.net.set_training(false);
    trainer.discriminator.set_training(false);
    let (g_floats, images) = outputs(&mut trainer.generator.net, z.into_dyn());
    let (trunk_floats, h) = outputs(&mut trainer.discriminator.trunk, images);
    let (d_floats, _) = outputs(&mut trainer.discriminator.d_head, h.clone());
    let (q_floats, _) = outputs(&mut trainer.discriminator.q_head, h);
    trainer.generator.net.set_training(true);
    trainer.discriminator.set_training(true);
    let per_image = (g_floats + trunk_floats + d_floats + q_floats) as f64 / 2.0;
    let batch = trainer.config.batch_size as f64;
    (params as f64 * 16.0 + per_image * ACTIVATION_FACTOR * batch) as u64
}

/// The memory the system can give this process now (Linux's `MemAvailable`); `None`
/// where it cannot be read.
pub fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// An error when `needed` bytes (for `what`) exceed what the machine has available.
pub fn check_fits(needed: u64, what: &str) -> Result<()> {
    let Some(available) = available_bytes() else { return Ok(()) };
    if needed <= available {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    Err(Error::Invalid(format!(
        "{what} needs about {:.1} GiB of memory, and this machine has {:.1} GiB available: use a smaller \
         --batch-size",
        gib(needed),
        gib(available)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DatasetKind;
    use crate::train::TrainConfig;

    /// The estimate is within a factor of two of the peak memory measured (above) at
    /// batches 64 and 1024, and leaves the networks as they were.
    #[test]
    fn the_estimate_follows_the_measured_peaks_and_changes_nothing() {
        let tensors = |t: &Trainer| -> Vec<(String, Vec<f32>)> {
            let all = crate::models::weights::tensors(&t.generator, &t.discriminator);
            all.into_iter().map(|(n, v)| (n, v.iter().copied().collect())).collect()
        };
        // Peak RSS in MiB of `infogan bench --steps 2 --threads 1` at batch 64 and 1024.
        for (dataset, measured) in [(DatasetKind::Mnist, [332.0, 1939.0]), (DatasetKind::Cifar10, [198.0, 2852.0])] {
            let mut t = Trainer::new(TrainConfig::defaults(dataset));
            let before = tensors(&t);
            for (batch, measured) in [64, 1024].into_iter().zip(measured) {
                t.config.batch_size = batch;
                let estimate = training_bytes(&mut t) as f64 / (1u64 << 20) as f64;
                let ok = estimate > measured / 2.0 && estimate < measured * 2.0;
                assert!(ok, "{dataset} batch {batch}: {estimate:.0} MiB estimated, {measured} measured");
            }
            assert!(before == tensors(&t), "{dataset}: estimating changed the networks");
        }
    }

    #[test]
    fn a_request_beyond_the_machine_is_refused() {
        if available_bytes().is_some() {
            let e = check_fits(u64::MAX / 2, "training").unwrap_err().to_string();
            assert!(e.contains("use a smaller --batch-size"), "{e}");
            check_fits(1 << 20, "training").unwrap();
        }
    }
}
