//! Trains an InfoGAN on MNIST for a few steps with the library, printing the losses,
//! and saves a checkpoint that `infogan sample` (or the `sample_grid` example) reads.
//!
//! cargo run --release --example train_steps -- [DATA_DIR] [CHECKPOINT] [STEPS]
//! (defaults: data/mnist, runs/example/checkpoint.safetensors, 20)

use std::path::PathBuf;

use infogan::data::{self, DatasetKind, Split};
use infogan::error::Result;
use infogan::train::run::{Observer, RunOptions, StepEnd};
use infogan::train::{TrainConfig, Trainer, checkpoint};

/// Prints the losses of every fifth step.
struct PrintLosses;

impl Observer for PrintLosses {
    fn step_end(&mut self, _: &Trainer, s: &StepEnd) -> Result<()> {
        if s.step.is_multiple_of(5) {
            let st = s.stats;
            println!(
                "step {:>3}: d_loss {:.3} g_loss {:.3} info_loss {:.3}",
                s.step, st.d_loss, st.g_loss, st.info_loss
            );
        }
        Ok(())
    }

    fn epoch_end(&mut self, _: &mut Trainer, _: usize) -> Result<()> {
        Ok(())
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let data_dir = args.next().map_or_else(|| DatasetKind::Mnist.default_dir(), PathBuf::from);
    let out = args.next().map_or_else(|| PathBuf::from("runs/example/checkpoint.safetensors"), PathBuf::from);
    let steps: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(20);

    let train_set = data::load(DatasetKind::Mnist, &data_dir, Split::Train)?;
    // MNIST's defaults, with a smaller batch; every field can be changed like this.
    let config = TrainConfig { batch_size: 16, ..TrainConfig::defaults(DatasetKind::Mnist) };
    config.validate()?;
    let mut trainer = Trainer::new(config);
    let options = RunOptions { max_steps: Some(steps), ..Default::default() };
    infogan::train::run::run(&mut trainer, &train_set, &options, &mut PrintLosses)?;

    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| infogan::error::Error::io("create the folder", dir, e))?;
    }
    checkpoint::save(&trainer, &out, None)?;
    println!("{} steps; checkpoint written to {}", trainer.step, out.display());
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
