//! The networks' weights in a checkpoint file (safetensors): every parameter and
//! batch-norm buffer under `<part>.<layer>.<tensor>`, where the parts are
//! `generator` and the discriminator's `discriminator` (its trunk), `d_head` and
//! `q_head`, with PyTorch's layouts; the run's configuration is JSON in the
//! metadata. `train::checkpoint` adds the optimizer and RNG state to the same file.
//!
//! `load` reads only what using a trained model needs (`sample`, `eval`, `export`,
//! `interpolate`, `score`, `serve`): the architecture, the weights and the map of
//! the code's values to labels.

use std::path::Path;

use ndarray::{ArrayViewD, ArrayViewMutD};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Deserialize;

use super::labels::{CodeLabels, METADATA_KEY};
use super::{Architecture, Discriminator, Generator, ModelKind, build};
use crate::error::{Error, Result};
use crate::tensorfile::TensorFile;

/// The metadata value of `format`; a file without it is not one of our checkpoints.
pub const FORMAT: &str = "infogan-checkpoint-1";

/// A trained model: its architecture and both networks with their weights.
pub struct Networks {
    pub arch: Architecture,
    pub model: ModelKind,
    pub generator: Generator,
    pub discriminator: Discriminator,
    /// What the first categorical code's values stand for, when the checkpoint holds
    /// the map (see `labels`); always None for a plain GAN.
    pub labels: Option<CodeLabels>,
}

/// The part of the configuration that fixes the networks (the rest belongs to
/// training and is read by `train::checkpoint`).
#[derive(Deserialize)]
struct Described {
    arch: Architecture,
    model: ModelKind,
}

/// Every parameter and buffer of both networks under its checkpoint name, read-only
/// (for writing without copying).
pub fn tensors<'a>(g: &'a Generator, d: &'a Discriminator) -> Vec<(String, ArrayViewD<'a, f32>)> {
    let parts = std::iter::once((Generator::PREFIX, &g.net)).chain(d.parts());
    parts.flat_map(|(prefix, net)| net.tensors().into_iter().map(move |(n, t)| (format!("{prefix}.{n}"), t))).collect()
}

/// Reads a checkpoint's networks.
pub fn load(path: &Path) -> Result<Networks> {
    read(path).map(|(networks, _)| networks)
}

/// Reads a checkpoint's networks, and returns the file for what else it holds.
pub fn read(path: &Path) -> Result<(Networks, TensorFile)> {
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
    let Described { arch, model } = serde_json::from_str(file.meta("config", path)?)
        .map_err(|e| Error::bad_file(path, format!("has an unreadable configuration ({e})")))?;
    // The layout sizes the networks built next: an edited or damaged one must be an
    // error here, not an allocation failure or a panic later.
    arch.latent.validate().map_err(|e| Error::bad_file(path, format!("has an invalid configuration: {e}")))?;
    // The weights are overwritten below; the initialisation RNG does not matter.
    let (mut generator, mut discriminator) = build(&arch, &mut Xoshiro256PlusPlus::seed_from_u64(0));
    let parts = std::iter::once((Generator::PREFIX, &mut generator.net)).chain(discriminator.parts_mut());
    for (prefix, net) in parts {
        for mut p in net.params() {
            restore(&file, path, &format!("{prefix}.{}", p.name), &mut p.param.value)?;
        }
        for mut b in net.buffers() {
            restore(&file, path, &format!("{prefix}.{}", b.name), &mut b.buffer.value)?;
        }
    }
    // A plain GAN's generator ignores the code: no map names what its values draw.
    let labels = match (file.metadata.get(METADATA_KEY), arch.latent.categorical.first()) {
        (Some(json), Some(&values)) if model == ModelKind::InfoGan => {
            Some(CodeLabels::parse(json, values).map_err(|e| Error::bad_file(path, format!("has {e}")))?)
        }
        _ => None,
    };
    Ok((Networks { arch, model, generator, discriminator, labels }, file))
}

/// Copies tensor `name` of the file into `into`, checking its shape.
pub(crate) fn restore(file: &TensorFile, path: &Path, name: &str, into: &mut ArrayViewMutD<f32>) -> Result<()> {
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
    let bad = t.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(non_finite(path, name, bad, t.len()));
    }
    into.assign(t);
    Ok(())
}

/// The error of a tensor with NaN or infinite values.
fn non_finite(path: &Path, name: &str, bad: usize, len: usize) -> Error {
    Error::bad_file(
        path,
        format!(
            "tensor {name} holds {bad} of {len} values that are NaN or infinite: the file was written after \
             training diverged, or it is damaged"
        ),
    )
}
