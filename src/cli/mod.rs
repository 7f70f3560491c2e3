//! The `infogan` command line: argument parsing, and one module per subcommand.

pub mod bench;
pub mod eval;
#[cfg(feature = "onnx")]
pub mod export;
pub mod interpolate;
pub mod plot;
pub mod sample;
pub mod score;
pub mod train;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::data::DatasetKind;
use crate::error::{Error, Result};
use crate::layers::AugmentPolicy;
use crate::models::{Architecture, LatentSpec, ModelKind, default_latent};
use crate::train::{ContStd, Defaults, TrainConfig};

#[derive(Parser)]
#[command(
    name = "infogan",
    version,
    about = "InfoGAN and plain GANs on a CPU, with every layer written by hand",
    long_about = "InfoGAN and plain GANs on a CPU, with every layer written by hand.\n\n\
                  Start with `infogan train --dataset mnist` (or `make train DATASET=mnist`, which also fetches the \
                  data). Each subcommand's --help explains its flags."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an InfoGAN (or a plain GAN) and write samples, curves and a checkpoint
    Train(train::TrainArgs),
    /// Generate images for chosen codes from a checkpoint
    Sample(sample::SampleArgs),
    /// Time training steps on random data and print one JSON line (the step of the PyTorch reference,
    /// without DiffAugment or mode seeking unless asked for)
    Bench(BenchArgs),
    /// Score the categorical code as an unsupervised classifier of the real test images
    Eval(eval::EvalArgs),
    /// Image quality of a generator (or of the real test images): Frechet distance, Inception-style score, diversity
    Score(score::ScoreArgs),
    /// Interpolate between latent points (linear and slerp) and sweep codes, as PNG strips and GIFs
    Interpolate(interpolate::InterpolateArgs),
    /// Overlay the information curves and accuracies of several runs in one PNG
    Plot(plot::PlotArgs),
    /// Export the trained generator as an ONNX model
    #[cfg(feature = "onnx")]
    Export(export::ExportArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatasetArg {
    Mnist,
    FashionMnist,
    Cifar10,
}

impl From<DatasetArg> for DatasetKind {
    fn from(d: DatasetArg) -> Self {
        match d {
            DatasetArg::Mnist => DatasetKind::Mnist,
            DatasetArg::FashionMnist => DatasetKind::FashionMnist,
            DatasetArg::Cifar10 => DatasetKind::Cifar10,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// InfoGAN: the information term in both losses
    Infogan,
    /// A plain GAN: no information term; Q is trained only as a probe
    Gan,
}

impl From<ModelArg> for ModelKind {
    fn from(m: ModelArg) -> Self {
        match m {
            ModelArg::Infogan => ModelKind::InfoGan,
            ModelArg::Gan => ModelKind::Gan,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ContStdArg {
    /// Standard deviation 1, as in the InfoGAN authors' code; Q's log-std outputs are unused
    Fixed,
    /// Standard deviation predicted by Q's log-std outputs
    Learned,
}

impl From<ContStdArg> for ContStd {
    fn from(c: ContStdArg) -> Self {
        match c {
            ContStdArg::Fixed => ContStd::Fixed,
            ContStdArg::Learned => ContStd::Learned,
        }
    }
}

/// The model and optimisation flags shared by `train` and `bench`. Each is optional
/// so that `--resume` can tell a flag the user gave from a default.
#[derive(Args, Clone, Debug, Default)]
pub struct ModelFlags {
    /// Noise values in the latent vector, uniform in [-1, 1] [default: 62 for MNIST and Fashion-MNIST, 100 for
    /// CIFAR-10]
    #[arg(long, value_name = "N")]
    pub noise: Option<usize>,
    /// Categorical codes, as a comma-separated list of their sizes ("none" for no code) [default: 10]
    #[arg(long, value_name = "K[,K...]")]
    pub categorical: Option<String>,
    /// Continuous codes, uniform in [-1, 1] [default: 2]
    #[arg(long, value_name = "N")]
    pub continuous: Option<usize>,
    /// Weight of the categorical codes' information loss [default: 0.5; 1 for CIFAR-10. On MNIST the paper's 1
    /// split two similar digits over two code values by style in 5 of 5 seeds, 0.5 in 3 of 10 (README, Results)]
    #[arg(long, value_name = "W")]
    pub lambda_cat: Option<f32>,
    /// Weight of the continuous codes' information loss [default: 0.1]
    #[arg(long, value_name = "W")]
    pub lambda_cont: Option<f32>,
    /// How Q's Gaussian scores a continuous code: with its standard deviation fixed at 1, or learned [default:
    /// fixed]
    #[arg(long, value_enum, value_name = "STD")]
    pub cont_std: Option<ContStdArg>,
    /// DiffAugment in front of the discriminator (Zhao et al., 2020): "color", "translation", "cutout", a
    /// comma-separated mix, or "none". The same random transformation, drawn per image, is applied to real and
    /// generated images before D, and G learns through it [default: none; color,translation,cutout for
    /// CIFAR-10, whose 5,085-image subset D otherwise memorises]
    #[arg(long, value_name = "POLICY")]
    pub diffaug: Option<String>,
    /// Weight of MSGAN's mode-seeking term in G's loss (Mao et al., 2019): latent vectors come in pairs with the
    /// same codes and different noise, and G is pushed to make the two images differ. 0 turns it off
    /// [default: 0; 1 for CIFAR-10, where each categorical value otherwise ends up drawing one picture]
    #[arg(long, value_name = "W")]
    pub mode_seeking: Option<f32>,
    /// Adam learning rate of the discriminator and its Q head [default: 1e-3; 2e-4 for CIFAR-10. On MNIST the
    /// InfoGAN authors' 2e-4 gave a wider spread of categorical accuracy over seeds]
    #[arg(long, value_name = "LR")]
    pub lr_d: Option<f32>,
    /// Adam learning rate of the generator [default: 1e-3; 2e-4 for CIFAR-10, as in DCGAN]
    #[arg(long, value_name = "LR")]
    pub lr_g: Option<f32>,
    /// Adam beta1 [default: 0.5]
    #[arg(long)]
    pub beta1: Option<f32>,
    /// Adam beta2 [default: 0.999]
    #[arg(long)]
    pub beta2: Option<f32>,
}

/// Optimizer steps that the default number of epochs aims at: about what the
/// InfoGAN authors' code runs (5,000 updates), and about 15 minutes of MNIST on 2
/// cores (README, Results).
pub const DEFAULT_STEPS: usize = 5000;

/// The default epochs for a training set: the whole number of epochs closest to
/// `DEFAULT_STEPS` (5 for MNIST at batch 64; for CIFAR-10, 63 on the 5,085-image
/// subset, 6 on the full 50,000).
pub fn default_epochs(train_images: usize, batch_size: usize) -> usize {
    let per_epoch = (train_images / batch_size.max(1)).max(1);
    (DEFAULT_STEPS as f64 / per_epoch as f64).round().max(1.0) as usize
}

impl ModelFlags {
    /// The full configuration: the flags given, the defaults for the rest.
    pub fn config(
        &self,
        dataset: DatasetKind,
        model: ModelKind,
        batch_size: usize,
        epochs: usize,
        seed: u64,
    ) -> Result<TrainConfig> {
        let mut latent = default_latent(dataset);
        if let Some(n) = self.noise {
            latent.noise = n;
        }
        if let Some(list) = &self.categorical {
            latent.categorical = parse_categorical(list)?;
        }
        if let Some(n) = self.continuous {
            latent.continuous = n;
        }
        let d = Defaults::for_dataset(dataset);
        let config = TrainConfig {
            arch: Architecture { dataset, latent },
            model,
            lambda_cat: self.lambda_cat.unwrap_or(d.lambda_cat),
            lambda_cont: self.lambda_cont.unwrap_or(d.lambda_cont),
            cont_std: self.cont_std.map_or(ContStd::Fixed, ContStd::from),
            diffaug: match &self.diffaug {
                Some(p) => parse_diffaug(p)?,
                None => d.diffaug,
            },
            mode_seeking: self.mode_seeking.unwrap_or(d.mode_seeking),
            lr_d: self.lr_d.unwrap_or(d.lr_d),
            lr_g: self.lr_g.unwrap_or(d.lr_g),
            beta1: self.beta1.unwrap_or(0.5),
            beta2: self.beta2.unwrap_or(0.999),
            batch_size,
            epochs,
            seed,
        };
        validate(&config)?;
        Ok(config)
    }

    /// The flags that were given and differ from `config` (for `--resume`).
    pub fn conflicts(&self, config: &TrainConfig) -> Vec<String> {
        let mut out = Vec::new();
        let mut differ = |flag: &str, given: Option<String>, stored: String| {
            if let Some(g) = given
                && g != stored
            {
                out.push(format!("--{flag} {g} (the checkpoint has {stored})"));
            }
        };
        let l = &config.arch.latent;
        differ("noise", self.noise.map(|v| v.to_string()), l.noise.to_string());
        differ(
            "categorical",
            self.categorical.as_ref().and_then(|c| parse_categorical(c).ok()).map(|v| format!("{v:?}")),
            format!("{:?}", l.categorical),
        );
        differ("continuous", self.continuous.map(|v| v.to_string()), l.continuous.to_string());
        differ("lambda-cat", self.lambda_cat.map(|v| v.to_string()), config.lambda_cat.to_string());
        differ("lambda-cont", self.lambda_cont.map(|v| v.to_string()), config.lambda_cont.to_string());
        differ("cont-std", self.cont_std.map(|v| ContStd::from(v).name().into()), config.cont_std.name().into());
        differ(
            "diffaug",
            self.diffaug.as_ref().and_then(|p| parse_diffaug(p).ok()).map(|p| p.name()),
            config.diffaug.name(),
        );
        differ("mode-seeking", self.mode_seeking.map(|v| v.to_string()), config.mode_seeking.to_string());
        differ("lr-d", self.lr_d.map(|v| v.to_string()), config.lr_d.to_string());
        differ("lr-g", self.lr_g.map(|v| v.to_string()), config.lr_g.to_string());
        differ("beta1", self.beta1.map(|v| v.to_string()), config.beta1.to_string());
        differ("beta2", self.beta2.map(|v| v.to_string()), config.beta2.to_string());
        out
    }
}

fn parse_diffaug(list: &str) -> Result<AugmentPolicy> {
    AugmentPolicy::parse(list).ok_or_else(|| {
        Error::Invalid(format!(
            "--diffaug {list:?}: give \"none\" or a comma-separated list of color, translation and cutout, as in \
             --diffaug color,translation,cutout"
        ))
    })
}

fn parse_categorical(list: &str) -> Result<Vec<usize>> {
    if list.trim() == "none" || list.trim().is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|k| match k.trim().parse::<usize>() {
            Ok(k) if k >= 2 => Ok(k),
            _ => Err(Error::Invalid(format!(
                "--categorical {list:?}: each code size must be a whole number of at least 2, as in --categorical 10 \
                 or --categorical 10,4"
            ))),
        })
        .collect()
}

/// Checks the values a user can set; the message names the flag.
pub fn validate(config: &TrainConfig) -> Result<()> {
    let bad = |msg: String| Err(Error::Invalid(msg));
    let positive = |v: f32| v.is_finite() && v > 0.0;
    if config.batch_size < 2 {
        return bad(format!(
            "--batch-size {} is too small: batch norm needs at least 2 images per batch",
            config.batch_size
        ));
    }
    if !positive(config.lr_d) || !positive(config.lr_g) {
        return bad(format!(
            "learning rates must be positive numbers, got --lr-d {} --lr-g {}",
            config.lr_d, config.lr_g
        ));
    }
    for (flag, b) in [("beta1", config.beta1), ("beta2", config.beta2)] {
        if !(0.0..1.0).contains(&b) {
            return bad(format!("--{flag} {b} must be in [0, 1)"));
        }
    }
    if config.mode_seeking > 0.0 && !config.batch_size.is_multiple_of(2) {
        return bad(format!(
            "--mode-seeking pairs the images of a batch: --batch-size {} must be even",
            config.batch_size
        ));
    }
    for (flag, l) in
        [("lambda-cat", config.lambda_cat), ("lambda-cont", config.lambda_cont), ("mode-seeking", config.mode_seeking)]
    {
        if !(l.is_finite() && l >= 0.0) {
            return bad(format!("--{flag} {l} must be a number >= 0"));
        }
    }
    let latent: &LatentSpec = &config.arch.latent;
    if latent.size() == 0 {
        return bad("the latent vector is empty: give --noise, --categorical or --continuous".into());
    }
    if config.epochs == 0 {
        return bad("--epochs must be at least 1".into());
    }
    Ok(())
}

#[derive(Args)]
struct BenchArgs {
    /// Architecture to time (random data of its image shape; no dataset files needed)
    #[arg(long, value_enum, default_value_t = DatasetArg::Mnist)]
    dataset: DatasetArg,
    /// Images per step
    #[arg(long, default_value_t = 64, value_name = "N")]
    batch_size: usize,
    /// Timed steps (after 3 untimed warm-up steps)
    #[arg(long, default_value_t = 20, value_name = "N")]
    steps: usize,
    /// Worker threads [default: all cores, or RAYON_NUM_THREADS]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// InfoGAN or the plain GAN
    #[arg(long, value_enum, default_value_t = ModelArg::Infogan)]
    model: ModelArg,
    /// Also split each step's time into phases (GEMM, im2col/col2im, layout moves, batch norm, activations,
    /// losses, Adam, other): a table on stderr and "profile_ms" in the JSON line
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    flags: ModelFlags,
}

/// Sets the size of the global thread pool (`None`: rayon's default, all cores or
/// RAYON_NUM_THREADS). Returns the number of threads in use.
pub fn set_threads(threads: Option<usize>) -> Result<usize> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(Error::Invalid("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Invalid(format!("cannot start {n} threads: {e}")))?;
    }
    Ok(rayon::current_num_threads())
}

/// Exit status of a training run stopped by a signal, its checkpoint saved:
/// sysexits.h's EX_TEMPFAIL ("try again later"), so that a scheduler can tell a run to
/// resume from one that is done (0) or failed (1).
pub const EXIT_STOPPED: u8 = 75;

/// Parses the command line and runs the subcommand.
pub fn run(cli: Cli) -> Result<train::Outcome> {
    let done = |r: Result<()>| r.map(|()| train::Outcome::Done);
    match cli.command {
        Command::Train(args) => train::run(args),
        Command::Sample(args) => done(sample::run(args)),
        Command::Eval(args) => done(eval::run(args)),
        Command::Score(args) => done(score::run(args)),
        Command::Interpolate(args) => done(interpolate::run(args)),
        Command::Plot(args) => done(plot::run(args)),
        #[cfg(feature = "onnx")]
        Command::Export(args) => done(export::run(args)),
        Command::Bench(args) => {
            let threads = set_threads(args.threads)?;
            if args.steps == 0 {
                return Err(Error::Invalid("--steps must be at least 1".into()));
            }
            let dataset = args.dataset.into();
            let mut flags = args.flags.clone();
            // The step of ../shared/reference/torch_step.py, whatever the dataset's
            // training defaults add to it, unless asked for.
            flags.diffaug.get_or_insert_with(|| "none".into());
            flags.mode_seeking.get_or_insert(0.0);
            let config = flags.config(dataset, args.model.into(), args.batch_size, 1, 1)?;
            done(bench::run(bench::BenchArgs { config, steps: args.steps, warmup: 3, threads, profile: args.profile }))
        }
    }
}

/// Tells the C allocator to serve every allocation from its heap and to keep freed
/// memory for reuse. By default glibc maps large blocks fresh from the kernel and
/// returns them on free, so every training step would pay page faults for the same
/// few megabytes of activations, allocated and freed again at each step.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; it is called before
    // any other thread exists. The values are within glibc's documented ranges
    // (M_MMAP_THRESHOLD at most 32 MiB on 64-bit systems).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// The entry point of the binary: runs the command and turns an error into a message
/// on stderr and exit status 1.
pub fn main() -> std::process::ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "infogan: internal error, this is a bug: {info}\n  please report it with the command that caused it \
             (set RUST_BACKTRACE=1 for a backtrace)"
        );
    }));
    let cli = Cli::parse();
    match run(cli) {
        Ok(train::Outcome::Done) => std::process::ExitCode::SUCCESS,
        Ok(train::Outcome::Stopped) => std::process::ExitCode::from(EXIT_STOPPED),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `runs/<dataset>-<model>`, the default output folder.
pub fn default_out(dataset: DatasetKind, model: ModelKind) -> PathBuf {
    PathBuf::from("runs").join(format!("{}-{}", dataset.name(), model.name()))
}
