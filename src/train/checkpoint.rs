//! Checkpoints: one safetensors file holding everything a run needs to continue: the
//! networks' weights and statistics (`models::weights`, which also reads them back
//! for using a trained model), both Adam states, the RNG state, the step counter,
//! the run's configuration (JSON in the metadata) and, once a run has been evaluated,
//! the map of the categorical code's values to labels (`models::labels`).
//!
//! Optimizer tensors are named `optim.{generator,discriminator}.{exp_avg,exp_avg_sq}.<parameter>`,
//! where `<parameter>` is the parameter's name in the weights.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{ArrayD, ArrayViewD};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{TrainConfig, Trainer};
use crate::error::{Error, Result};
use crate::models::labels::{CodeLabels, METADATA_KEY};
use crate::models::sequential::NamedParam;
use crate::models::weights::{self, FORMAT, Networks};
use crate::models::{Discriminator, Generator, Sequential};
use crate::optim::Adam;
use crate::tensorfile::write_tensors;

/// The checkpoint names of the parameters each optimizer updates, in the optimizer's
/// order: the generator's, then the discriminator's parts in their fixed order.
fn optimized_names(g: &Generator, d: &Discriminator) -> [(&'static str, Vec<String>); 2] {
    let names = |prefix: &str, net: &Sequential| -> Vec<String> {
        net.param_names().into_iter().map(|n| format!("{prefix}.{n}")).collect()
    };
    let d_names = d.parts().into_iter().flat_map(|(prefix, net)| names(prefix, net)).collect();
    [("generator", names(Generator::PREFIX, &g.net)), ("discriminator", d_names)]
}

/// Writes the whole training state to `path`, atomically, streaming the tensors
/// from the networks and optimizers to the file without copying them, with the map
/// of the code's values to labels when there is one. A state with a NaN or infinite
/// weight is refused, so that the last good checkpoint stays.
pub fn save(trainer: &Trainer, path: &Path, labels: Option<&CodeLabels>) -> Result<()> {
    let [(_, g_names), (_, d_names)] = optimized_names(&trainer.generator, &trainer.discriminator);
    let mut tensors: Vec<(String, ArrayViewD<'_, f32>)> = weights::tensors(&trainer.generator, &trainer.discriminator);
    if let Some((name, t)) = tensors.iter().find(|(_, t)| t.iter().any(|v| !v.is_finite())) {
        let bad = t.iter().filter(|v| !v.is_finite()).count();
        return Err(Error::Training(format!(
            "tensor {name} holds {bad} NaN or infinite values at step {}; the checkpoint in {} was not replaced. Try \
             smaller learning rates (--lr-d, --lr-g) or another --seed.",
            trainer.step,
            path.display()
        )));
    }
    for (which, opt, names) in [("generator", &trainer.opt_g, g_names), ("discriminator", &trainer.opt_d, d_names)] {
        for ((name, m), v) in names.iter().zip(&opt.exp_avg).zip(&opt.exp_avg_sq) {
            tensors.push((format!("optim.{which}.exp_avg.{name}"), m.view()));
            tensors.push((format!("optim.{which}.exp_avg_sq.{name}"), v.view()));
        }
    }
    let config = serde_json::to_string(&trainer.config).expect("config serialises");
    let rng: String = trainer.rng.state().iter().map(|b| format!("{b:02x}")).collect();
    let mut metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("producer".to_string(), format!("infogan {}", env!("CARGO_PKG_VERSION"))),
        ("config".to_string(), config),
        ("step".to_string(), trainer.step.to_string()),
        ("optim.generator.step".to_string(), trainer.opt_g.step.to_string()),
        ("optim.discriminator.step".to_string(), trainer.opt_d.step.to_string()),
        ("rng".to_string(), rng),
    ]);
    if let Some(labels) = labels {
        metadata.insert(METADATA_KEY.to_string(), labels.to_json());
    }
    write_tensors(path, &tensors, &metadata)
}

/// Reads a checkpoint back into the full training state, to continue where it left
/// off. Its configuration passes `TrainConfig::validate` like flags do.
pub fn load(path: &Path) -> Result<Trainer> {
    let (networks, file) = weights::read(path)?;
    let Networks { generator, discriminator, .. } = networks;
    let config: TrainConfig = serde_json::from_str(file.meta("config", path)?)
        .map_err(|e| Error::bad_file(path, format!("has an unreadable configuration ({e})")))?;
    config.validate().map_err(|e| Error::bad_file(path, format!("has an invalid configuration: {e}")))?;
    let parse_u64 = |key: &str| -> Result<u64> {
        file.meta(key, path)?
            .parse()
            .map_err(|_| Error::bad_file(path, format!("metadata {key} is not a whole number")))
    };
    let rng = parse_rng(file.meta("rng", path)?).ok_or_else(|| Error::bad_file(path, "metadata rng is corrupt"))?;
    let opt_g = Adam::new(config.lr_g, config.beta1, config.beta2);
    let opt_d = Adam::new(config.lr_d, config.beta1, config.beta2);
    let augment = crate::layers::DiffAugment::new(config.diffaug);
    let step = parse_u64("step")?;
    let shards = crate::collective::Shards::single();
    let scratch = super::StepScratch::default();
    let mut trainer = Trainer { config, generator, discriminator, opt_g, opt_d, rng, augment, step, shards, scratch };
    trainer.set_comm(None);
    let g_shapes = shapes(trainer.generator.net.params());
    let d_shapes = shapes(trainer.discriminator.params());
    let [(_, g_names), (_, d_names)] = optimized_names(&trainer.generator, &trainer.discriminator);
    let optimizers = [("generator", &mut trainer.opt_g, g_names), ("discriminator", &mut trainer.opt_d, d_names)];
    for ((which, opt, names), shapes) in optimizers.into_iter().zip([g_shapes, d_shapes]) {
        opt.step = parse_u64(&format!("optim.{which}.step"))?;
        if opt.step == 0 {
            continue;
        }
        // Each moment must have its parameter's shape (the optimizer trusts it) and be
        // finite: the same checks as the weights'.
        let moment = |key: String, shape: &[usize]| -> Result<ArrayD<f32>> {
            let mut m = ArrayD::zeros(shape);
            weights::restore(&file, path, &key, &mut m.view_mut())?;
            Ok(m)
        };
        for (name, shape) in names.iter().zip(&shapes) {
            opt.exp_avg.push(moment(format!("optim.{which}.exp_avg.{name}"), shape)?);
            opt.exp_avg_sq.push(moment(format!("optim.{which}.exp_avg_sq.{name}"), shape)?);
        }
    }
    Ok(trainer)
}

fn shapes(params: Vec<NamedParam>) -> Vec<Vec<usize>> {
    params.iter().map(|p| p.param.value.shape().to_vec()).collect()
}

fn parse_rng(hex: &str) -> Option<Xoshiro256PlusPlus> {
    if hex.len() != 64 {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Xoshiro256PlusPlus::from_seed(seed))
}
