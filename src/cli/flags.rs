//! The model and optimisation flags shared by `train` and `bench`, and the help text
//! of their defaults, written from the library's `TrainConfig::defaults` so that each
//! default is declared once.

use clap::Args;

use crate::data::DatasetKind;
use crate::error::{Error, Result};
use crate::layers::AugmentPolicy;
use crate::models::ModelKind;
use crate::train::{ContStd, DEFAULT_STEPS, Recipe, TrainConfig, default_epochs};

/// An error unless `--flag`'s `value` lies in `range`: the limits of flags that size
/// a picture or a batch, so that a mistyped number is an error, not an allocation
/// the machine cannot serve.
pub fn in_range(flag: &str, value: usize, range: std::ops::RangeInclusive<usize>) -> Result<()> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(Error::Invalid(format!("--{flag} {value} must be from {} to {}", range.start(), range.end())))
}

/// `[default: V]` when every dataset has the same default, otherwise
/// `[default: V1 for MNIST and Fashion-MNIST, V2 for CIFAR-10]`.
pub fn default_text(value: impl Fn(&TrainConfig) -> String) -> String {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for d in DatasetKind::ALL {
        let v = value(&TrainConfig::defaults(d));
        match groups.iter_mut().find(|(g, _)| *g == v) {
            Some((_, names)) => names.push(d.display_name()),
            None => groups.push((v, vec![d.display_name()])),
        }
    }
    if groups.len() == 1 {
        return format!("[default: {}]", groups[0].0);
    }
    let parts: Vec<String> = groups.iter().map(|(v, names)| format!("{v} for {}", names.join(" and "))).collect();
    format!("[default: {}]", parts.join(", "))
}

/// A flag's help: its description, then its defaults.
fn help(description: &str, value: impl Fn(&TrainConfig) -> String) -> String {
    format!("{description} {}", default_text(value))
}

/// The help of `--epochs`, from `DEFAULT_STEPS`.
pub fn epochs_help() -> String {
    let b = TrainConfig::defaults(DatasetKind::Mnist).batch_size;
    format!(
        "Passes over the training set [default: the whole number closest to {DEFAULT_STEPS} steps: {} for MNIST and \
         Fashion-MNIST, {} for the 5,085-image CIFAR-10 subset, {} for the full CIFAR-10]",
        default_epochs(DatasetKind::Mnist.train_images(), b),
        default_epochs(5085, b),
        default_epochs(DatasetKind::Cifar10.train_images(), b),
    )
}

/// The model and optimisation flags shared by `train` and `bench`. Each is optional
/// so that `--resume` can tell a flag the user gave from a default.
#[derive(Args, Clone, Debug, Default)]
pub struct ModelFlags {
    /// Where the settings start; any flag given beside it overrides its value [default: default]
    #[arg(long, value_enum)]
    pub recipe: Option<Recipe>,
    #[arg(long, value_name = "N", help = help("Noise values in the latent vector, uniform in [-1, 1]", |c| c.arch.latent.noise.to_string()))]
    pub noise: Option<usize>,
    #[arg(long, value_name = "K[,K...]", help = help(
        "Categorical codes, as a comma-separated list of their sizes (\"none\" for no code)",
        |c| categorical_text(&c.arch.latent.categorical)))]
    pub categorical: Option<String>,
    #[arg(long, value_name = "N", help = help("Continuous codes, uniform in [-1, 1]", |c| c.arch.latent.continuous.to_string()))]
    pub continuous: Option<usize>,
    #[arg(long, value_name = "W", help = help(
        "Weight of the categorical codes' information loss. On MNIST the paper's 1 split two similar digits over two \
         code values by style in 5 of 5 seeds, 0.5 in 3 of 10 (README, Results)",
        |c| c.lambda_cat.to_string()))]
    pub lambda_cat: Option<f32>,
    #[arg(long, value_name = "STEPS", help = help(
        "Steps over which the categorical weight rises linearly from 0 to --lambda-cat, so that G learns the digits' \
         shapes before the code's partition sets (0: none)",
        |c| c.lambda_cat_warmup.to_string()))]
    pub lambda_cat_warmup: Option<u64>,
    #[arg(long, value_name = "W", help = help("Weight of the continuous codes' information loss", |c| c.lambda_cont.to_string()))]
    pub lambda_cont: Option<f32>,
    #[arg(long, value_enum, value_name = "STD", help = help(
        "How Q's Gaussian scores a continuous code: with its standard deviation fixed at 1, or learned",
        |c| c.cont_std.name().to_string()))]
    pub cont_std: Option<ContStd>,
    #[arg(long, value_name = "POLICY", help = help(
        "DiffAugment in front of the discriminator (Zhao et al., 2020): \"color\", \"translation\", \"cutout\", a \
         comma-separated mix, or \"none\". The same random transformation, drawn per image, is applied to real and \
         generated images before D, and G learns through it; CIFAR-10's 5,085-image subset D otherwise memorises",
        |c| c.diffaug.name()))]
    pub diffaug: Option<String>,
    #[arg(long, value_name = "W", help = help(
        "Weight of MSGAN's mode-seeking term in G's loss (Mao et al., 2019): latent vectors come in pairs with the \
         same codes and different noise, and G is pushed to make the two images differ. 0 turns it off; on CIFAR-10 \
         each categorical value otherwise ends up drawing one picture",
        |c| c.mode_seeking.to_string()))]
    pub mode_seeking: Option<f32>,
    #[arg(long, value_name = "W", help = help(
        "Weight of Q's consistency on real images (after Elastic-InfoGAN, Ojha et al., 2020): Q's categorical reading \
         of each real image, held fixed, is the target of its reading of a copy turned (up to 20 degrees), zoomed \
         (0.9-1.1) and slanted, so that a code that follows slant or size costs Q accuracy. One more pass of D over \
         the real batch per step; not with --diffaug. 0 turns it off; the default is 0 with --model gan, \
         --categorical none or --diffaug",
        |c| c.q_consistency.to_string()))]
    pub q_consistency: Option<f32>,
    /// Give G's step a latent batch of its own, generated afresh, instead of the batch D's step was shown (one more
    /// forward pass of G per step)
    #[arg(long)]
    pub fresh_g_latent: bool,
    #[arg(long, value_name = "LR", help = help(
        "Adam learning rate of the discriminator and its Q head. On MNIST the InfoGAN authors' 2e-4 gave a wider \
         spread of categorical accuracy over seeds",
        |c| c.lr_d.to_string()))]
    pub lr_d: Option<f32>,
    #[arg(long, value_name = "LR", help = help("Adam learning rate of the generator; CIFAR-10's is DCGAN's", |c| c.lr_g.to_string()))]
    pub lr_g: Option<f32>,
    #[arg(long, help = help("Adam beta1", |c| c.beta1.to_string()))]
    pub beta1: Option<f32>,
    #[arg(long, help = help("Adam beta2", |c| c.beta2.to_string()))]
    pub beta2: Option<f32>,
}

fn categorical_text(codes: &[usize]) -> String {
    if codes.is_empty() {
        return "none".into();
    }
    codes.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",")
}

impl ModelFlags {
    /// `base` (a dataset's defaults) with the flags given applied, validated.
    pub fn apply(&self, mut c: TrainConfig) -> Result<TrainConfig> {
        let latent = &mut c.arch.latent;
        if let Some(n) = self.noise {
            latent.noise = n;
        }
        if let Some(list) = &self.categorical {
            latent.categorical = parse_categorical(list)?;
        }
        if let Some(n) = self.continuous {
            latent.continuous = n;
        }
        let set = |v: &mut f32, flag: Option<f32>| {
            if let Some(f) = flag {
                *v = f;
            }
        };
        set(&mut c.lambda_cat, self.lambda_cat);
        set(&mut c.lambda_cont, self.lambda_cont);
        if let Some(w) = self.lambda_cat_warmup {
            c.lambda_cat_warmup = w;
        }
        set(&mut c.mode_seeking, self.mode_seeking);
        set(&mut c.q_consistency, self.q_consistency);
        c.fresh_g_latent |= self.fresh_g_latent;
        set(&mut c.lr_d, self.lr_d);
        set(&mut c.lr_g, self.lr_g);
        set(&mut c.beta1, self.beta1);
        set(&mut c.beta2, self.beta2);
        if let Some(s) = self.cont_std {
            c.cont_std = s;
        }
        if let Some(p) = &self.diffaug {
            c.diffaug = parse_diffaug(p)?;
        }
        // A default of Q consistency that another flag takes the ground from (a plain
        // GAN, no categorical code, DiffAugment) lapses; only a weight the user gave
        // is an error there.
        if self.q_consistency.is_none() && !c.q_consistency_applies() {
            c.q_consistency = 0.0;
        }
        c.validate()?;
        Ok(c)
    }

    /// The flags that were given and differ from `config` (for `--resume`). A given
    /// flag whose value does not parse is an error, not a flag to ignore.
    pub fn conflicts(&self, config: &TrainConfig) -> Result<Vec<String>> {
        let categorical = self.categorical.as_deref().map(parse_categorical).transpose()?;
        let diffaug = self.diffaug.as_deref().map(parse_diffaug).transpose()?;
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
        differ("categorical", categorical.map(|v| format!("{v:?}")), format!("{:?}", l.categorical));
        differ("continuous", self.continuous.map(|v| v.to_string()), l.continuous.to_string());
        differ("lambda-cat", self.lambda_cat.map(|v| v.to_string()), config.lambda_cat.to_string());
        differ(
            "lambda-cat-warmup",
            self.lambda_cat_warmup.map(|v| v.to_string()),
            config.lambda_cat_warmup.to_string(),
        );
        differ("lambda-cont", self.lambda_cont.map(|v| v.to_string()), config.lambda_cont.to_string());
        differ("cont-std", self.cont_std.map(|v| v.name().into()), config.cont_std.name().into());
        differ("diffaug", diffaug.map(|p| p.name()), config.diffaug.name());
        differ("mode-seeking", self.mode_seeking.map(|v| v.to_string()), config.mode_seeking.to_string());
        differ("q-consistency", self.q_consistency.map(|v| v.to_string()), config.q_consistency.to_string());
        differ("fresh-g-latent", self.fresh_g_latent.then(|| "true".into()), config.fresh_g_latent.to_string());
        differ("lr-d", self.lr_d.map(|v| v.to_string()), config.lr_d.to_string());
        differ("lr-g", self.lr_g.map(|v| v.to_string()), config.lr_g.to_string());
        differ("beta1", self.beta1.map(|v| v.to_string()), config.beta1.to_string());
        differ("beta2", self.beta2.map(|v| v.to_string()), config.beta2.to_string());
        Ok(out)
    }
}

/// The configuration of a new run of `model` on `dataset`: the recipe's settings for
/// the dataset (its defaults unless `--recipe` says otherwise), then the flags.
pub fn config(
    flags: &ModelFlags,
    dataset: DatasetKind,
    model: ModelKind,
    batch_size: Option<usize>,
    seed: Option<u64>,
) -> Result<TrainConfig> {
    let mut c = TrainConfig::recipe(dataset, flags.recipe.unwrap_or_default());
    c.model = model;
    c.batch_size = batch_size.unwrap_or(c.batch_size);
    c.seed = seed.unwrap_or(c.seed);
    flags.apply(c)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_texts_group_the_datasets() {
        assert_eq!(default_text(|c| c.beta1.to_string()), "[default: 0.5]");
        assert_eq!(
            default_text(|c| c.lambda_cat.to_string()),
            "[default: 0.5 for MNIST and Fashion-MNIST, 1 for CIFAR-10]"
        );
        assert!(epochs_help().contains("5 for MNIST and Fashion-MNIST, 63 for the 5,085-image CIFAR-10 subset, 6"));
    }

    #[test]
    fn the_q_consistency_default_lapses_where_it_cannot_apply() {
        let q = |flags: &ModelFlags, dataset, model| config(flags, dataset, model, None, None).map(|c| c.q_consistency);
        let none = ModelFlags::default();
        assert_eq!(q(&none, DatasetKind::Mnist, ModelKind::InfoGan).unwrap(), 1.0);
        assert_eq!(q(&none, DatasetKind::FashionMnist, ModelKind::InfoGan).unwrap(), 0.0);
        assert_eq!(q(&none, DatasetKind::Mnist, ModelKind::Gan).unwrap(), 0.0);
        let diffaug = ModelFlags { diffaug: Some("color".into()), ..ModelFlags::default() };
        assert_eq!(q(&diffaug, DatasetKind::Mnist, ModelKind::InfoGan).unwrap(), 0.0);
        let no_code = ModelFlags { categorical: Some("none".into()), ..ModelFlags::default() };
        assert_eq!(q(&no_code, DatasetKind::Mnist, ModelKind::InfoGan).unwrap(), 0.0);
        // A weight the user gave is kept, and an error where it cannot apply.
        let given = ModelFlags { q_consistency: Some(0.5), ..ModelFlags::default() };
        assert_eq!(q(&given, DatasetKind::FashionMnist, ModelKind::InfoGan).unwrap(), 0.5);
        let e = q(&given, DatasetKind::Mnist, ModelKind::Gan).unwrap_err().to_string();
        assert!(e.contains("needs an InfoGAN"), "{e}");
    }
}
