//! The generator's input: unstructured noise `z` and the latent codes `c` of InfoGAN
//! (Chen et al., 2016). Laid out as `[noise | categorical 1 (one-hot) | ... |
//! continuous]`, in that order, in one `[N, L]` matrix.

use ndarray::{Array2, s};
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the latent vector is made up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatentSpec {
    /// Noise values, uniform in [-1, 1].
    pub noise: usize,
    /// One entry per categorical code: its number of values (one-hot, uniform).
    pub categorical: Vec<usize>,
    /// Continuous codes, uniform in [-1, 1].
    pub continuous: usize,
}

/// A sampled batch: the generator input and the codes it holds.
#[derive(Debug, Clone)]
pub struct LatentBatch {
    /// z: [N, L], the generator input.
    pub z: Array2<f32>,
    /// `cat[k][n]`: the value of categorical code k for sample n.
    pub cat: Vec<Vec<usize>>,
    /// cont: [N, continuous codes]
    pub cont: Array2<f32>,
}

impl LatentBatch {
    /// The vectors at `rows`, in that order.
    pub fn rows(&self, rows: &[usize]) -> LatentBatch {
        LatentBatch {
            z: self.z.select(ndarray::Axis(0), rows),
            cat: self.cat.iter().map(|code| rows.iter().map(|&r| code[r]).collect()).collect(),
            cont: self.cont.select(ndarray::Axis(0), rows),
        }
    }
}

/// Largest latent layouts: far beyond any sensible model, they keep the networks'
/// sizes within what a computer has, so that a mistyped flag or an edited checkpoint
/// is an error, not an allocation failure.
pub mod limits {
    /// Entries of the latent vector (noise and codes together) and of Q's outputs.
    pub const LATENT: usize = 10_000;
    /// Values of one categorical code.
    pub const CATEGORICAL_VALUES: usize = 1000;
}

impl LatentSpec {
    /// Checks the layout against `limits`; the message names the flags that set it.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid(msg));
        if let Some(&k) = self.categorical.iter().find(|&&k| !(2..=limits::CATEGORICAL_VALUES).contains(&k)) {
            return bad(format!(
                "--categorical: a code of {k} values; each code needs from 2 to {} values",
                limits::CATEGORICAL_VALUES
            ));
        }
        // Summed with checks, so that absurd sizes cannot overflow; the continuous
        // codes count twice, for Q's means and log-stds.
        let size = [self.noise, self.continuous.saturating_mul(2)]
            .into_iter()
            .chain(self.categorical.iter().copied())
            .fold(0usize, usize::saturating_add);
        if size == 0 {
            return bad("the latent vector is empty: give --noise, --categorical or --continuous".into());
        }
        if size > limits::LATENT {
            return bad(format!(
                "the latent vector (--noise {}, --categorical {:?}, --continuous {}) is larger than the limit of {} \
                 entries",
                self.noise,
                self.categorical,
                self.continuous,
                limits::LATENT
            ));
        }
        Ok(())
    }

    /// `L`, the generator's input size.
    pub fn size(&self) -> usize {
        self.noise + self.categorical.iter().sum::<usize>() + self.continuous
    }

    /// Column of the first one-hot entry of categorical code `k`.
    pub fn cat_offset(&self, k: usize) -> usize {
        self.noise + self.categorical[..k].iter().sum::<usize>()
    }

    /// Column of the first continuous code.
    pub fn cont_offset(&self) -> usize {
        self.noise + self.categorical.iter().sum::<usize>()
    }

    /// Outputs of the Q head: the logits of every categorical code, then a mean for
    /// each continuous code, then a log standard deviation for each.
    pub fn q_outputs(&self) -> usize {
        self.categorical.iter().sum::<usize>() + 2 * self.continuous
    }

    /// The entropy `H(c)` of each code's prior, in nats: `ln K` for a uniform
    /// categorical code of K values, `ln 2` for the uniform density on [-1, 1].
    /// Categorical codes first, then continuous ones.
    pub fn code_entropies(&self) -> Vec<f64> {
        let cat = self.categorical.iter().map(|&k| (k as f64).ln());
        cat.chain(std::iter::repeat_n(2f64.ln(), self.continuous)).collect()
    }

    /// Names of the codes, as in column headers and flags: `cat1`, `cat2`, ... then
    /// `cont1`, `cont2`, ...
    pub fn code_names(&self) -> Vec<String> {
        let cat = (1..=self.categorical.len()).map(|k| format!("cat{k}"));
        cat.chain((1..=self.continuous).map(|j| format!("cont{j}"))).collect()
    }

    /// Draws `n` latent vectors from the prior.
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> LatentBatch {
        let noise = Array2::from_shape_simple_fn((n, self.noise), || rng.random_range(-1.0f32..=1.0));
        let cat: Vec<Vec<usize>> =
            self.categorical.iter().map(|&k| (0..n).map(|_| rng.random_range(0..k)).collect()).collect();
        let cont = Array2::from_shape_simple_fn((n, self.continuous), || rng.random_range(-1.0f32..=1.0));
        self.compose(&noise, &cat, &cont)
    }

    /// Draws `n` latent vectors (`n` even) in pairs for the mode-seeking term
    /// (`loss::mode_seeking`): vector `i + n/2` has the codes of vector `i` and noise of
    /// its own. Each vector is still a draw from the prior.
    pub fn sample_pairs(&self, n: usize, rng: &mut impl Rng) -> LatentBatch {
        assert!(n.is_multiple_of(2), "sample_pairs: {n} latent vectors do not pair up");
        let first = self.sample(n / 2, rng);
        let noise = Array2::from_shape_simple_fn((n, self.noise), || rng.random_range(-1.0f32..=1.0));
        let cat: Vec<Vec<usize>> = first.cat.iter().map(|v| v.iter().chain(v).copied().collect()).collect();
        let cont = ndarray::concatenate(ndarray::Axis(0), &[first.cont.view(), first.cont.view()]).expect("same width");
        self.compose(&noise, &cat, &cont)
    }

    /// Puts chosen noise and codes together into generator inputs.
    ///
    /// noise: [N, noise], `cat[k]`: N values of code k, cont: [N, continuous]
    pub fn compose(&self, noise: &Array2<f32>, cat: &[Vec<usize>], cont: &Array2<f32>) -> LatentBatch {
        let n = noise.nrows();
        assert_eq!(noise.ncols(), self.noise, "compose: noise width");
        assert_eq!(cat.len(), self.categorical.len(), "compose: number of categorical codes");
        assert_eq!(cont.dim(), (n, self.continuous), "compose: continuous codes shape");
        let mut z = Array2::zeros((n, self.size()));
        z.slice_mut(s![.., ..self.noise]).assign(noise);
        for (k, values) in cat.iter().enumerate() {
            assert_eq!(values.len(), n, "compose: code {k} has {} values for {n} samples", values.len());
            let offset = self.cat_offset(k);
            for (row, &v) in values.iter().enumerate() {
                assert!(v < self.categorical[k], "compose: code {k} value {v} out of range");
                z[[row, offset + v]] = 1.0;
            }
        }
        let c0 = self.cont_offset();
        z.slice_mut(s![.., c0..c0 + self.continuous]).assign(cont);
        LatentBatch { z, cat: cat.to_vec(), cont: cont.clone() }
    }
}

impl std::fmt::Display for LatentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cats: Vec<String> = self.categorical.iter().map(|k| k.to_string()).collect();
        write!(
            f,
            "{} noise + categorical [{}] + {} continuous = {}",
            self.noise,
            cats.join(", "),
            self.continuous,
            self.size()
        )
    }
}
