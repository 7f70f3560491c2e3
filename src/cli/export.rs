//! `infogan export`: the trained generator as an ONNX model, and optionally a check
//! vector (a latent batch and this implementation's images for it) so that any
//! runtime can be compared against it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use clap::Args;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::Result;
use crate::models::weights;
use crate::output::onnx;
use crate::tensorfile::TensorFile;

/// Latent vectors in a check vector.
const CHECK_BATCH: usize = 8;

#[derive(Args)]
pub struct ExportArgs {
    /// A checkpoint.safetensors written by `infogan train`
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// The ONNX file to write (replaced atomically if it exists)
    #[arg(long, value_name = "FILE.onnx", default_value = "generator.onnx")]
    out: PathBuf,
    /// Also write a safetensors file with a random `latent` batch and the generator's `image` output for it
    #[arg(long, value_name = "FILE.safetensors")]
    check_vector: Option<PathBuf>,
    /// Seed of the check vector's latent batch
    #[arg(long, default_value_t = 0, value_name = "N")]
    seed: u64,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let mut loaded = weights::load(&args.checkpoint)?;
    let arch = loaded.arch.clone();
    let model = onnx::generator_model(&loaded.generator, &arch, loaded.labels.as_ref())?;
    onnx::save(&model, &args.out)?;
    eprintln!("infogan: wrote {} (opset {}, latent [batch, {}])", args.out.display(), onnx::OPSET, arch.latent.size());
    if let Some(path) = &args.check_vector {
        let latent = arch.latent.sample(CHECK_BATCH, &mut Xoshiro256PlusPlus::seed_from_u64(args.seed));
        let image = loaded.generator.generate(&latent.z);
        let file = TensorFile {
            tensors: BTreeMap::from([
                ("latent".to_string(), latent.z.into_dyn()),
                ("image".to_string(), image.into_dyn()),
            ]),
            metadata: HashMap::from_iter(onnx::metadata(&arch, loaded.labels.as_ref())),
        };
        file.write(path)?;
        eprintln!("infogan: wrote {} ({CHECK_BATCH} latent vectors and their images)", path.display());
    }
    Ok(())
}
