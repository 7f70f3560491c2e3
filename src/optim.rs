//! The Adam optimizer (Kingma and Ba, 2015) with PyTorch's update rule, no weight
//! decay. For step `t`, gradient `g`:
//! - `m = m + (1 - beta1) (g - m)`, `v = beta2 v + (1 - beta2) g^2`
//! - `p = p - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)`
//!
//! (eps is added outside the square root, after the bias correction, as PyTorch does.)

use ndarray::{ArrayD, Zip};

use crate::layers::Param;

pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Steps taken so far (`t` of the last update).
    pub step: u64,
    /// First and second moment estimates, one per parameter in the order `update` is
    /// given them (PyTorch's `exp_avg` and `exp_avg_sq`). Empty before the first step.
    pub exp_avg: Vec<ArrayD<f32>>,
    pub exp_avg_sq: Vec<ArrayD<f32>>,
}

impl Adam {
    pub fn new(lr: f32, beta1: f32, beta2: f32) -> Self {
        Adam { lr, beta1, beta2, eps: 1e-8, step: 0, exp_avg: Vec::new(), exp_avg_sq: Vec::new() }
    }

    /// One update of every parameter from its accumulated gradient. The parameters
    /// must come in the same order, with the same shapes, at every step.
    pub fn update(&mut self, params: Vec<Param<'_>>) {
        let _time = crate::profile::scope(crate::profile::Phase::Adam);
        if self.exp_avg.is_empty() {
            self.exp_avg = params.iter().map(|p| ArrayD::zeros(p.value.shape())).collect();
            self.exp_avg_sq = self.exp_avg.clone();
        }
        assert_eq!(
            params.len(),
            self.exp_avg.len(),
            "Adam: {} parameters, but state for {}",
            params.len(),
            self.exp_avg.len()
        );
        self.step += 1;
        let t = self.step as i32;
        let bias_correction1 = 1.0 - (self.beta1 as f64).powi(t);
        let bias_correction2_sqrt = (1.0 - (self.beta2 as f64).powi(t)).sqrt() as f32;
        let step_size = (self.lr as f64 / bias_correction1) as f32;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        for ((p, m), v) in params.into_iter().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
            assert_eq!(p.value.shape(), m.shape(), "Adam: parameter {} changed shape", p.name);
            Zip::from(p.value).and(&p.grad).and(m).and(v).par_for_each(|p, &g, m, v| {
                *m += (1.0 - b1) * (g - *m);
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p -= step_size * *m / (v.sqrt() / bias_correction2_sqrt + eps);
            });
        }
    }
}
