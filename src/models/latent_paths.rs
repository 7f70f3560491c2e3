//! Paths through the latent space, for pictures: sample grids, traversals of a
//! continuous code (the paper's figures), interpolations between two latent points
//! and sweeps of one code.

use ndarray::{Array1, Array2, Axis, s};
use rand::{Rng, RngExt};

use super::latent::{LatentBatch, LatentSpec};
use crate::error::{Error, Result};

impl LatentSpec {
    /// The latent of a sample grid: row `r` sets the first categorical code to
    /// `values[r]` (when there is one), column `c` uses noise vector `c` of `cols`
    /// drawn from `rng`; the continuous codes are `cont`, any other categorical code
    /// value 0.
    pub fn grid_of(&self, values: &[usize], cols: usize, cont: &[f32], rng: &mut impl Rng) -> LatentBatch {
        assert_eq!(cont.len(), self.continuous, "grid_of: {} continuous values for {}", cont.len(), self.continuous);
        let count = values.len() * cols;
        let noise_cols = Array2::from_shape_simple_fn((cols, self.noise), || rng.random_range(-1.0f32..=1.0));
        let noise = Array2::from_shape_fn((count, self.noise), |(i, j)| noise_cols[[i % cols, j]]);
        let cat: Vec<Vec<usize>> = (0..self.categorical.len())
            .map(|k| (0..count).map(|i| if k == 0 { values[i / cols] } else { 0 }).collect())
            .collect();
        let cont = Array2::from_shape_fn((count, self.continuous), |(_, j)| cont[j]);
        self.compose(&noise, &cat, &cont)
    }

    /// The latent of a `rows x cols` sample grid: row `r` sets the first categorical
    /// code to `r` (modulo its values), column `c` uses noise vector `c`; the other
    /// codes are 0 (the middle of their range) or value 0.
    pub fn grid(&self, rows: usize, cols: usize, rng: &mut impl Rng) -> LatentBatch {
        let values: Vec<usize> = (0..rows).map(|r| self.categorical.first().map_or(0, |&k| r % k)).collect();
        self.grid_of(&values, cols, &vec![0.0; self.continuous], rng)
    }

    /// The latent of a traversal of continuous code `code`: row `r` sets the first
    /// categorical code to `r`, column `c` sweeps the code evenly from `from` to `to`;
    /// one noise vector and every other code stay fixed, the continuous ones at 0 (the
    /// paper's figures).
    pub fn traversal(
        &self,
        code: usize,
        rows: usize,
        cols: usize,
        (from, to): (f32, f32),
        rng: &mut impl Rng,
    ) -> LatentBatch {
        self.traversal_around(code, rows, cols, (from, to), &vec![0.0; self.continuous], rng)
    }

    /// `traversal`, with the other continuous codes at `cont` instead of 0. The noise
    /// vector is the one `grid_of` draws first from the same `rng`, so that a
    /// traversal shows the style of the sample drawn from the same seed.
    pub fn traversal_around(
        &self,
        code: usize,
        rows: usize,
        cols: usize,
        (from, to): (f32, f32),
        cont: &[f32],
        rng: &mut impl Rng,
    ) -> LatentBatch {
        assert!(code < self.continuous, "traversal: no continuous code {code}");
        assert_eq!(cont.len(), self.continuous, "traversal: {} continuous values for {}", cont.len(), self.continuous);
        let one = Array2::from_shape_simple_fn((1, self.noise), || rng.random_range(-1.0f32..=1.0));
        let noise = Array2::from_shape_fn((rows * cols, self.noise), |(_, j)| one[[0, j]]);
        let cat: Vec<Vec<usize>> = (0..self.categorical.len())
            .map(|k| (0..rows * cols).map(|i| if k == 0 { (i / cols) % self.categorical[0] } else { 0 }).collect())
            .collect();
        let step = if cols > 1 { (to - from) / (cols - 1) as f32 } else { 0.0 };
        let cont = Array2::from_shape_fn((rows * cols, self.continuous), |(i, j)| {
            if j == code { from + step * (i % cols) as f32 } else { cont[j] }
        });
        self.compose(&noise, &cat, &cont)
    }

    /// `steps` latent vectors from `a` to `b`. The noise part moves along a straight line
    /// or, with `spherical`, along the great circle between the two noise vectors
    /// (slerp, Shoemake 1985); the codes always move in a straight line.
    ///
    /// -> [steps, L]
    pub fn interpolate(&self, a: &Array1<f32>, b: &Array1<f32>, steps: usize, spherical: bool) -> Array2<f32> {
        let noise = self.noise;
        let (na, nb) = (a.slice(s![..noise]), b.slice(s![..noise]));
        let cos = na.dot(&nb) / (na.dot(&na).sqrt() * nb.dot(&nb).sqrt()).max(1e-12);
        let omega = cos.clamp(-1.0, 1.0).acos();
        let mut z = Array2::zeros((steps, a.len()));
        for (i, mut row) in z.axis_iter_mut(Axis(0)).enumerate() {
            let t = i as f32 / (steps - 1) as f32;
            row.assign(&(a * (1.0 - t) + b * t));
            if spherical && omega.sin().abs() > 1e-6 {
                let (wa, wb) = (((1.0 - t) * omega).sin() / omega.sin(), (t * omega).sin() / omega.sin());
                row.slice_mut(s![..noise]).assign(&(&na * wa + &nb * wb));
            }
        }
        z
    }

    /// The frames of a sweep of `code` (`catK` through its values, or `contJ` from -2 to 2)
    /// for `n` noise vectors drawn from `rng`, every other code at its middle value.
    pub fn sweep(&self, code: &str, n: usize, steps: usize, rng: &mut impl Rng) -> Result<Vec<Array2<f32>>> {
        let parse = |prefix: &str, count: usize| {
            code.strip_prefix(prefix)
                .and_then(|k| k.parse::<usize>().ok())
                .filter(|&k| k >= 1 && k <= count)
                .map(|k| k - 1)
        };
        let base = self.sample(n, rng);
        let zero_cont = Array2::zeros((n, self.continuous));
        let fixed_cat: Vec<Vec<usize>> = self.categorical.iter().map(|_| vec![0; n]).collect();
        let noise = base.z.slice(s![.., ..self.noise]).to_owned();
        if let Some(k) = parse("cat", self.categorical.len()) {
            return Ok((0..self.categorical[k])
                .map(|v| {
                    let mut cat = fixed_cat.clone();
                    cat[k] = vec![v; n];
                    self.compose(&noise, &cat, &zero_cont).z
                })
                .collect());
        }
        if let Some(j) = parse("cont", self.continuous) {
            return Ok((0..steps)
                .map(|i| {
                    let mut cont = zero_cont.clone();
                    cont.column_mut(j).fill(-2.0 + 4.0 * i as f32 / (steps - 1) as f32);
                    self.compose(&noise, &fixed_cat, &cont).z
                })
                .collect());
        }
        Err(Error::Invalid(format!("--sweep {code:?}: this model's codes are {}", self.code_names().join(", "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn spec() -> LatentSpec {
        LatentSpec { noise: 6, categorical: vec![3], continuous: 2 }
    }

    #[test]
    fn interpolations_run_from_one_point_to_the_other() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let (a, b) = (spec().sample(1, &mut rng).z.row(0).to_owned(), spec().sample(1, &mut rng).z.row(0).to_owned());
        for spherical in [false, true] {
            let z = spec().interpolate(&a, &b, 5, spherical);
            let close =
                |x: ndarray::ArrayView1<f32>, y: &Array1<f32>| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-5);
            assert!(close(z.row(0), &a) && close(z.row(4), &b), "spherical {spherical}: endpoints {z}");
        }
        // Along the great circle the noise keeps more of its length than along the
        // chord, which cuts towards the origin.
        let norm = |v: ndarray::ArrayView1<f32>| v.slice(s![..6]).dot(&v.slice(s![..6])).sqrt();
        let (line, arc) = (spec().interpolate(&a, &b, 3, false), spec().interpolate(&a, &b, 3, true));
        assert!(norm(arc.row(1)) > norm(line.row(1)), "slerp midpoint {} vs linear {}", arc.row(1), line.row(1));
    }

    #[test]
    fn sweeps_cover_a_code_and_name_the_codes_otherwise() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        assert_eq!(spec().sweep("cat1", 4, 7, &mut rng).unwrap().len(), 3);
        let cont = spec().sweep("cont2", 4, 7, &mut rng).unwrap();
        assert_eq!((cont.len(), cont[0].dim()), (7, (4, 11)));
        assert_eq!((cont[0][[0, 10]], cont[6][[0, 10]], cont[3][[0, 9]]), (-2.0, 2.0, 0.0));
        let e = spec().sweep("cont3", 4, 7, &mut rng).unwrap_err().to_string();
        assert!(e.contains("cat1, cont1, cont2"), "{e}");
    }

    #[test]
    fn a_traversal_sweeps_one_code_around_the_others_with_the_grids_noise() {
        let cont = [0.5, -1.0];
        let t = spec().traversal_around(1, 3, 4, (-2.0, 2.0), &cont, &mut Xoshiro256PlusPlus::seed_from_u64(4));
        assert_eq!(t.cat[0], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
        assert!(t.cont.rows().into_iter().all(|r| r[0] == 0.5));
        assert_eq!(t.cont.column(1).to_vec()[..4], [-2.0, -2.0 + 4.0 / 3.0, -2.0 + 8.0 / 3.0, 2.0]);
        let g = spec().grid_of(&[0], 1, &cont, &mut Xoshiro256PlusPlus::seed_from_u64(4));
        assert_eq!(t.z.row(7).slice(s![..6]), g.z.row(0).slice(s![..6]), "the same noise as the seed's sample");
    }

    #[test]
    fn a_grid_of_chosen_values_sets_the_codes() {
        let g = spec().grid_of(&[2, 0], 3, &[0.5, -1.0], &mut Xoshiro256PlusPlus::seed_from_u64(3));
        assert_eq!(g.cat[0], [2, 2, 2, 0, 0, 0]);
        assert_eq!(g.z.row(4).slice(s![..6]), g.z.row(1).slice(s![..6]), "column 1 shares its noise");
        assert!(g.cont.rows().into_iter().all(|r| r[0] == 0.5 && r[1] == -1.0));
    }
}
