//! Parameter initialisation: PyTorch's layer defaults and the DCGAN-style normal
//! initialisation that the GAN models use.

use ndarray::{Array, IntoDimension};
use rand::{Rng, RngExt};

/// Uniform in `[-bound, bound)`.
pub fn uniform<Sh: IntoDimension>(shape: Sh, bound: f32, rng: &mut impl Rng) -> Array<f32, Sh::Dim> {
    Array::from_shape_simple_fn(shape, || rng.random_range(-bound..bound))
}

/// Normal with the given mean and standard deviation (Box-Muller on the run's RNG,
/// so that initialisation is reproducible from the seed alone).
pub fn normal<Sh: IntoDimension>(shape: Sh, mean: f32, std: f32, rng: &mut impl Rng) -> Array<f32, Sh::Dim> {
    Array::from_shape_simple_fn(shape, || mean + std * standard_normal(rng))
}

/// One draw from N(0, 1).
pub fn standard_normal(rng: &mut impl Rng) -> f32 {
    // u1 in (0, 1] so that ln(u1) is finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}
