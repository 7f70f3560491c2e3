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

impl Default for LatentBatch {
    /// No vectors (and no allocation): what `sample_into` and `rows_into` fill.
    fn default() -> Self {
        LatentBatch { z: Array2::zeros((0, 0)), cat: Vec::new(), cont: Array2::zeros((0, 0)) }
    }
}

impl LatentBatch {
    /// The vectors at `rows`, in that order.
    pub fn rows(&self, rows: &[usize]) -> LatentBatch {
        let mut out = LatentBatch::default();
        self.rows_into(rows, &mut out);
        out
    }

    /// `rows` into `out`, reusing its storage.
    pub fn rows_into(&self, rows: &[usize], out: &mut LatentBatch) {
        out.resize(rows.len(), self.z.ncols(), self.cat.len(), self.cont.ncols());
        for (i, &r) in rows.iter().enumerate() {
            out.z.row_mut(i).assign(&self.z.row(r));
            out.cont.row_mut(i).assign(&self.cont.row(r));
            for (to, from) in out.cat.iter_mut().zip(&self.cat) {
                to[i] = from[r];
            }
        }
    }

    /// `n` vectors of `width` entries with `cats` categorical and `cont` continuous
    /// codes, all zero, in the storage already held where the sizes allow.
    fn resize(&mut self, n: usize, width: usize, cats: usize, cont: usize) {
        let zeroed = |a: &mut Array2<f32>, shape: (usize, usize)| {
            if a.dim() == shape {
                a.fill(0.0);
            } else {
                *a = Array2::zeros(shape);
            }
        };
        zeroed(&mut self.z, (n, width));
        zeroed(&mut self.cont, (n, cont));
        self.cat.resize_with(cats, Vec::new);
        self.cat.iter_mut().for_each(|code| code.resize(n, 0));
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
        let mut out = LatentBatch::default();
        self.sample_into(n, rng, &mut out);
        out
    }

    /// `sample` into `out`, reusing its storage. The draws, in order: the noise
    /// (row by row), each categorical code's `n` values, the continuous codes (row by
    /// row).
    pub fn sample_into(&self, n: usize, rng: &mut impl Rng, out: &mut LatentBatch) {
        out.resize(n, self.size(), self.categorical.len(), self.continuous);
        self.draw_noise(rng, out);
        self.draw_codes(n, rng, out);
    }

    /// Draws `n` latent vectors (`n` even) in pairs for the mode-seeking term
    /// (`loss::mode_seeking`): vector `i + n/2` has the codes of vector `i` and noise of
    /// its own. Each vector is still a draw from the prior.
    pub fn sample_pairs(&self, n: usize, rng: &mut impl Rng) -> LatentBatch {
        let mut out = LatentBatch::default();
        self.sample_pairs_into(n, rng, &mut out);
        out
    }

    /// `sample_pairs` into `out`, reusing its storage. The draws: those of `sample`
    /// for the first `n/2` vectors, whose noise is then drawn again for all `n`.
    pub fn sample_pairs_into(&self, n: usize, rng: &mut impl Rng, out: &mut LatentBatch) {
        assert!(n.is_multiple_of(2), "sample_pairs: {n} latent vectors do not pair up");
        let half = n / 2;
        out.resize(n, self.size(), self.categorical.len(), self.continuous);
        draw_uniform(rng, out.z.slice_mut(s![..half, ..self.noise]));
        self.draw_codes(half, rng, out);
        self.draw_noise(rng, out);
        let codes = self.noise..self.size();
        let (first, mut second) = out.z.view_mut().split_at(ndarray::Axis(0), half);
        second.slice_mut(s![.., codes.clone()]).assign(&first.slice(s![.., codes]));
        let (first, mut second) = out.cont.view_mut().split_at(ndarray::Axis(0), half);
        second.assign(&first);
        for code in &mut out.cat {
            code.copy_within(..half, half);
        }
    }

    /// Every row's noise entries of `out.z`, drawn from `U[-1, 1]` row by row.
    fn draw_noise(&self, rng: &mut impl Rng, out: &mut LatentBatch) {
        draw_uniform(rng, out.z.slice_mut(s![.., ..self.noise]));
    }

    /// The codes of the first `n` rows of `out` (whose z is zero there): each
    /// categorical code's values, set one-hot in z, then the continuous codes.
    fn draw_codes(&self, n: usize, rng: &mut impl Rng, out: &mut LatentBatch) {
        for (k, &values) in self.categorical.iter().enumerate() {
            let offset = self.cat_offset(k);
            for row in 0..n {
                let v = rng.random_range(0..values);
                out.cat[k][row] = v;
                out.z[[row, offset + v]] = 1.0;
            }
        }
        draw_uniform(rng, out.cont.slice_mut(s![..n, ..]));
        let c0 = self.cont_offset();
        let cont = out.cont.slice(s![..n, ..]);
        out.z.slice_mut(s![..n, c0..c0 + self.continuous]).assign(&cont);
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

/// Each entry of `a` from `U[-1, 1]`, in row-major order.
fn draw_uniform(rng: &mut impl Rng, mut a: ndarray::ArrayViewMut2<f32>) {
    a.iter_mut().for_each(|v| *v = rng.random_range(-1.0f32..=1.0));
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
