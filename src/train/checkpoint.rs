//! Checkpoints: one safetensors file holding everything a run needs to continue or to
//! be used: the weights under PyTorch-style names and layouts, batch norm's running
//! statistics, both Adam states, the RNG state, the step counter, and the run's
//! configuration (JSON in the metadata).
//!
//! Tensor names: `generator.<layer>.<tensor>`, `discriminator.<layer>.<tensor>`,
//! `d_head.<layer>.<tensor>`, `q_head.<layer>.<tensor>`, and for the optimizers
//! `optim.{generator,discriminator}.{exp_avg,exp_avg_sq}.<parameter>`.

use std::collections::HashMap;
use std::path::Path;

use ndarray::ArrayViewD;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{TrainConfig, Trainer};
use crate::error::{Error, Result};
use crate::models::{self, Discriminator, Generator, Sequential};
use crate::optim::Adam;
use crate::tensorfile::{TensorFile, write_tensors};

/// The metadata value of `format`; a file without it is not one of our checkpoints.
pub const FORMAT: &str = "infogan-checkpoint-1";

/// The networks' parts under their checkpoint prefixes, mutably (for loading).
fn parts<'a>(g: &'a mut Generator, d: &'a mut Discriminator) -> [(&'static str, &'a mut Sequential); 4] {
    [("generator", &mut g.net), ("discriminator", &mut d.trunk), ("d_head", &mut d.d_head), ("q_head", &mut d.q_head)]
}

/// Writes the whole training state to `path`, atomically, streaming the tensors
/// from the networks and optimizers to the file without copying them.
pub fn save(trainer: &mut Trainer, path: &Path) -> Result<()> {
    let g_names = param_names(&mut trainer.generator.net, "generator");
    let d_names = d_param_names(&mut trainer.discriminator);
    let d = &trainer.discriminator;
    let nets = [
        ("generator", &trainer.generator.net),
        ("discriminator", &d.trunk),
        ("d_head", &d.d_head),
        ("q_head", &d.q_head),
    ];
    let mut tensors: Vec<(String, ArrayViewD<'_, f32>)> = Vec::new();
    for (prefix, net) in nets {
        tensors.extend(net.tensors().into_iter().map(|(name, t)| (format!("{prefix}.{name}"), t)));
    }
    for (which, opt, names) in [("generator", &trainer.opt_g, g_names), ("discriminator", &trainer.opt_d, d_names)] {
        for ((name, m), v) in names.iter().zip(&opt.exp_avg).zip(&opt.exp_avg_sq) {
            tensors.push((format!("optim.{which}.exp_avg.{name}"), m.view()));
            tensors.push((format!("optim.{which}.exp_avg_sq.{name}"), v.view()));
        }
    }
    let config = serde_json::to_string(&trainer.config).expect("config serialises");
    let rng: String = trainer.rng.state().iter().map(|b| format!("{b:02x}")).collect();
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("producer".to_string(), format!("infogan {}", env!("CARGO_PKG_VERSION"))),
        ("config".to_string(), config),
        ("step".to_string(), trainer.step.to_string()),
        ("optim.generator.step".to_string(), trainer.opt_g.step.to_string()),
        ("optim.discriminator.step".to_string(), trainer.opt_d.step.to_string()),
        ("rng".to_string(), rng),
    ]);
    write_tensors(path, &tensors, &metadata)
}

/// A checkpoint read back: the configuration, the networks with their weights and
/// statistics, and the raw file for what only resuming needs.
pub struct Loaded {
    pub config: TrainConfig,
    pub generator: Generator,
    pub discriminator: Discriminator,
    file: TensorFile,
}

/// Reads a checkpoint and rebuilds the networks it describes.
pub fn load(path: &Path) -> Result<Loaded> {
    let file = TensorFile::read(path).map_err(|e| match e {
        Error::Io { action, path, source, .. } => Error::Io {
            action,
            path,
            source,
            hint: Some("pass --checkpoint with a checkpoint.safetensors written by `infogan train`".into()),
        },
        other => other,
    })?;
    if file.metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(Error::bad_file(path, format!("is not an infogan checkpoint (no metadata format = {FORMAT})")));
    }
    let config: TrainConfig = serde_json::from_str(file.meta("config", path)?)
        .map_err(|e| Error::bad_file(path, format!("has an unreadable configuration ({e})")))?;
    // The configuration sizes the networks built next: an edited or damaged one must
    // be an error here, not an allocation failure or a panic later.
    config.validate().map_err(|e| Error::bad_file(path, format!("has an invalid configuration: {e}")))?;
    // The weights are overwritten below; the initialisation RNG does not matter.
    let (mut generator, mut discriminator) = models::build(&config.arch, &mut Xoshiro256PlusPlus::seed_from_u64(0));
    for (prefix, net) in parts(&mut generator, &mut discriminator) {
        for mut p in net.params() {
            restore(&file, path, &format!("{prefix}.{}", p.name), &mut p.param.value)?;
        }
        for mut b in net.buffers() {
            restore(&file, path, &format!("{prefix}.{}", b.name), &mut b.buffer.value)?;
        }
    }
    Ok(Loaded { config, generator, discriminator, file })
}

/// Copies tensor `name` of the file into `into`, checking its shape.
pub(crate) fn restore(
    file: &TensorFile,
    path: &Path,
    name: &str,
    into: &mut ndarray::ArrayViewMutD<f32>,
) -> Result<()> {
    let t = file.tensors.get(name).ok_or_else(|| {
        Error::bad_file(
            path,
            format!(
                "has no tensor {name}, which the architecture in its configuration needs: the weights belong to \
                 another architecture, or the file is damaged"
            ),
        )
    })?;
    if t.shape() != into.shape() {
        return Err(Error::bad_file(
            path,
            format!(
                "tensor {name} has shape {:?}, but this architecture needs {:?}: the checkpoint belongs to another \
                 architecture",
                t.shape(),
                into.shape()
            ),
        ));
    }
    into.assign(t);
    Ok(())
}

impl Loaded {
    /// The full training state, to continue where the checkpoint left off.
    pub fn into_trainer(self, path: &Path) -> Result<Trainer> {
        let Loaded { config, mut generator, mut discriminator, file } = self;
        let parse_u64 = |key: &str| -> Result<u64> {
            file.meta(key, path)?
                .parse()
                .map_err(|_| Error::bad_file(path, format!("metadata {key} is not a whole number")))
        };
        let rng = parse_rng(file.meta("rng", path)?).ok_or_else(|| Error::bad_file(path, "metadata rng is corrupt"))?;
        let mut opt_g = Adam::new(config.lr_g, config.beta1, config.beta2);
        let mut opt_d = Adam::new(config.lr_d, config.beta1, config.beta2);
        opt_g.step = parse_u64("optim.generator.step")?;
        opt_d.step = parse_u64("optim.discriminator.step")?;
        let g_names = param_names(&mut generator.net, "generator");
        let d_names = d_param_names(&mut discriminator);
        let g_shapes: Vec<Vec<usize>> = generator.net.params().iter().map(|p| p.param.value.shape().to_vec()).collect();
        let d_shapes: Vec<Vec<usize>> =
            crate::train::d_params(&mut discriminator).iter().map(|p| p.value.shape().to_vec()).collect();
        // Each moment must have its parameter's shape: the optimizer trusts it.
        let moment = |key: String, shape: &[usize]| -> Result<ndarray::ArrayD<f32>> {
            let t = file.get(&key, path)?;
            if t.shape() != shape {
                return Err(Error::bad_file(
                    path,
                    format!("tensor {key} has shape {:?}, expected {shape:?}", t.shape()),
                ));
            }
            Ok(t.clone())
        };
        for (which, opt, names, shapes) in
            [("generator", &mut opt_g, g_names, g_shapes), ("discriminator", &mut opt_d, d_names, d_shapes)]
        {
            if opt.step == 0 {
                continue;
            }
            for (name, shape) in names.iter().zip(&shapes) {
                opt.exp_avg.push(moment(format!("optim.{which}.exp_avg.{name}"), shape)?);
                opt.exp_avg_sq.push(moment(format!("optim.{which}.exp_avg_sq.{name}"), shape)?);
            }
        }
        let step = parse_u64("step")?;
        let augment = crate::layers::DiffAugment::new(config.diffaug);
        Ok(Trainer { config, generator, discriminator, opt_g, opt_d, rng, augment, step })
    }
}

fn param_names(net: &mut Sequential, prefix: &str) -> Vec<String> {
    net.params().into_iter().map(|p| format!("{prefix}.{}", p.name)).collect()
}

/// The discriminator's parameter names in the optimizer's order (see `d_params`).
fn d_param_names(d: &mut Discriminator) -> Vec<String> {
    let mut names = param_names(&mut d.trunk, "discriminator");
    names.extend(param_names(&mut d.d_head, "d_head"));
    names.extend(param_names(&mut d.q_head, "q_head"));
    names
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
