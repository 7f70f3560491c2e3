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
        self.update_each(|f| params.into_iter().for_each(f));
    }

    /// `update` of the parameters that `visit` hands to the function it is given, one
    /// at a time: a training step's form, which allocates nothing after the first.
    pub fn update_each(&mut self, visit: impl FnOnce(&mut dyn FnMut(Param<'_>))) {
        let _time = crate::profile::scope(crate::profile::Phase::Adam);
        let first = self.exp_avg.is_empty();
        self.step += 1;
        let t = self.step as i32;
        let bias_correction1 = 1.0 - (self.beta1 as f64).powi(t);
        let bias_correction2_sqrt = (1.0 - (self.beta2 as f64).powi(t)).sqrt() as f32;
        let step_size = (self.lr as f64 / bias_correction1) as f32;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        let (exp_avg, exp_avg_sq) = (&mut self.exp_avg, &mut self.exp_avg_sq);
        let mut count = 0;
        visit(&mut |p: Param<'_>| {
            if first {
                exp_avg.push(ArrayD::zeros(p.value.shape()));
                exp_avg_sq.push(ArrayD::zeros(p.value.shape()));
            }
            assert!(count < exp_avg.len(), "Adam: more than the {} parameters it has state for", exp_avg.len());
            let (m, v) = (&mut exp_avg[count], &mut exp_avg_sq[count]);
            assert_eq!(p.value.shape(), m.shape(), "Adam: parameter {} changed shape", p.name);
            Zip::from(p.value).and(&p.grad).and(m).and(v).par_for_each(|p, &g, m, v| {
                *m += (1.0 - b1) * (g - *m);
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p -= step_size * *m / (v.sqrt() / bias_correction2_sqrt + eps);
            });
            count += 1;
        });
        assert_eq!(count, exp_avg.len(), "Adam: {count} parameters, but state for {}", exp_avg.len());
    }
}
