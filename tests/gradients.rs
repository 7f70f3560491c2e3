//! Property tests: for random shapes, strides, paddings and values, every layer's and
//! every loss's backward pass agrees with central finite differences of its forward
//! pass. Each layer is made scalar by the loss `sum(y * r)` for a random `r`, whose
//! gradient with respect to `y` is `r`.

mod common;

use ndarray::{Array, Array1, Array2, Array4, Dimension};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use infogan::layers::{BatchNorm, Conv2d, ConvTranspose2d, LeakyRelu, Linear, Relu, Sigmoid, Tanh};
use infogan::loss::{bce_with_logits, cross_entropy, gaussian_nll, mode_seeking, soft_cross_entropy, softmax};
use infogan::testutil::{assert_grad_close, dot, numeric_grad, random_array};

/// Finite-difference step. Linear layers are exact for any step, up to round-off; for
/// the smooth non-linear ones the truncation error is O(H^2).
const H: f32 = 1e-2;
const BN_H: f32 = 4e-3;
const TOL: f32 = 1e-2;
const FLOOR: f32 = 2e-2;

fn config() -> ProptestConfig {
    common::proptest_config(64, 2016)
}

fn check<D: Dimension>(what: &str, analytic: &Array<f32, D>, at: &Array<f32, D>, f: impl FnMut(&Array<f32, D>) -> f64) {
    check_with_step(what, H, analytic, at, f);
}

fn check_with_step<D: Dimension>(
    what: &str,
    h: f32,
    analytic: &Array<f32, D>,
    at: &Array<f32, D>,
    f: impl FnMut(&Array<f32, D>) -> f64,
) {
    let numeric = numeric_grad(at, h, f);
    // Round-off in the finite differences grows with the size of the whole gradient,
    // so the floor scales with its largest element.
    let scale = numeric.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    assert_grad_close(analytic, &numeric, TOL, FLOOR * scale, what);
}

/// Values in [-1, 1] kept at least `margin` away from 0, so that a finite difference
/// never straddles the kink of ReLU or LeakyReLU.
fn away_from_zero<D: Dimension>(mut x: Array<f32, D>, margin: f32) -> Array<f32, D> {
    x.mapv_inplace(|v| v.signum() * v.abs().max(margin));
    x
}

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn linear(n in 1usize..5, f_in in 1usize..9, f_out in 1usize..7, seed in any::<u64>()) {
        let base = Linear::new(f_in, f_out, &mut rng(seed));
        let x: Array2<f32> = random_array([n, f_in], seed ^ 1);
        let r: Array2<f32> = random_array([n, f_out], seed ^ 2);
        let mut layer = base.clone();
        layer.forward(x.clone());
        let dx = layer.backward(r.clone());
        check("Linear dx", &dx, &x, |x| dot(&base.clone().forward(x.clone()), &r));
        check("Linear dweight", &layer.dweight, &base.weight, |w| {
            let mut l = base.clone();
            l.weight = w.clone();
            dot(&l.forward(x.clone()), &r)
        });
        check("Linear dbias", &layer.dbias, &base.bias, |b| {
            let mut l = base.clone();
            l.bias = b.clone();
            dot(&l.forward(x.clone()), &r)
        });
    }

    #[test]
    fn conv2d(
        n in 1usize..3, c_in in 1usize..4, c_out in 1usize..4, k in 1usize..5,
        stride in 1usize..4, padding in 0usize..3, h in 1usize..8, w in 1usize..8, seed in any::<u64>(),
    ) {
        // The smallest input a window fits into.
        let (h, w) = ((h + 2 * padding).max(k) - 2 * padding, (w + 2 * padding).max(k) - 2 * padding);
        let base = Conv2d::new(c_in, c_out, k, stride, padding, &mut rng(seed));
        let x: Array4<f32> = random_array([n, c_in, h, w], seed ^ 1);
        let mut layer = base.clone();
        let y = layer.forward(x.clone());
        let r: Array4<f32> = random_array(y.raw_dim(), seed ^ 2);
        let dx = layer.backward(r.clone());
        check("Conv2d dx", &dx, &x, |x| dot(&base.clone().forward(x.clone()), &r));
        check("Conv2d dweight", &layer.dweight, &base.weight, |wt| {
            let mut l = base.clone();
            l.weight = wt.clone();
            dot(&l.forward(x.clone()), &r)
        });
        check("Conv2d dbias", &layer.dbias, &base.bias, |b| {
            let mut l = base.clone();
            l.bias = b.clone();
            dot(&l.forward(x.clone()), &r)
        });
    }

    #[test]
    fn conv_transpose2d(
        n in 1usize..3, c_in in 1usize..4, c_out in 1usize..4, k in 1usize..5,
        stride in 1usize..4, padding in 0usize..3, h in 1usize..6, w in 1usize..6, seed in any::<u64>(),
    ) {
        // Padding that leaves a non-empty output.
        let padding = padding.min(((h.min(w) - 1) * stride + k - 1) / 2);
        let base = ConvTranspose2d::new(c_in, c_out, k, stride, padding, &mut rng(seed));
        let x: Array4<f32> = random_array([n, c_in, h, w], seed ^ 1);
        let mut layer = base.clone();
        let y = layer.forward(x.clone());
        let r: Array4<f32> = random_array(y.raw_dim(), seed ^ 2);
        let dx = layer.backward(r.clone());
        check("ConvTranspose2d dx", &dx, &x, |x| dot(&base.clone().forward(x.clone()), &r));
        check("ConvTranspose2d dweight", &layer.dweight, &base.weight, |wt| {
            let mut l = base.clone();
            l.weight = wt.clone();
            dot(&l.forward(x.clone()), &r)
        });
        check("ConvTranspose2d dbias", &layer.dbias, &base.bias, |b| {
            let mut l = base.clone();
            l.bias = b.clone();
            dot(&l.forward(x.clone()), &r)
        });
    }

    #[test]
    fn batchnorm(
        n in 3usize..7, c in 1usize..4, hw in prop::option::of((1usize..4, 1usize..4)),
        training in any::<bool>(), seed in any::<u64>(),
    ) {
        let mut base = BatchNorm::new(c);
        base.training = training;
        base.weight = random_array(c, seed ^ 3) + 1.5;
        base.bias = random_array(c, seed ^ 4);
        base.running_mean = random_array(c, seed ^ 5);
        base.running_var = random_array(c, seed ^ 6).mapv(|v| v + 1.5);
        let shape: Vec<usize> = match hw { Some((h, w)) => vec![n, c, h, w], None => vec![n, c] };
        // Finite differences are only accurate for a step well below each channel's
        // spread, where the normalisation is close to linear: a ramp along the batch
        // keeps every channel spread out.
        let mut x = random_array(shape.clone(), seed ^ 1);
        for (i, mut sample) in x.axis_iter_mut(ndarray::Axis(0)).enumerate() {
            sample += 2.0 * i as f32 / (n - 1) as f32 - 1.0;
        }
        let r = random_array(shape, seed ^ 2);
        let mut layer = base.clone();
        layer.forward(x.clone());
        let dx = layer.backward(r.clone());
        let what = if training { "BatchNorm (training)" } else { "BatchNorm (eval)" };
        // Normalisation is strongly curved for small batches: a smaller step keeps the
        // O(h^2) truncation error of the differences below the tolerance.
        check_with_step(&format!("{what} dx"), BN_H, &dx, &x, |x| dot(&base.clone().forward(x.clone()), &r));
        check(&format!("{what} dweight"), &layer.dweight, &base.weight, |g| {
            let mut l = base.clone();
            l.weight = g.clone();
            dot(&l.forward(x.clone()), &r)
        });
        check(&format!("{what} dbias"), &layer.dbias, &base.bias, |b| {
            let mut l = base.clone();
            l.bias = b.clone();
            dot(&l.forward(x.clone()), &r)
        });
    }

    #[test]
    fn activations(shape in prop::collection::vec(1usize..5, 1..4), slope in 0.0f32..0.5, seed in any::<u64>()) {
        let x = away_from_zero(random_array(shape.clone(), seed ^ 1), 2.0 * H);
        let r = random_array(shape, seed ^ 2);

        let dx = { let mut l = Relu::new(); l.forward(x.clone()); l.backward(r.clone()) };
        check("ReLU dx", &dx, &x, |x| dot(&Relu::new().forward(x.clone()), &r));

        let dx = { let mut l = LeakyRelu::new(slope); l.forward(x.clone()); l.backward(r.clone()) };
        check("LeakyReLU dx", &dx, &x, |x| dot(&LeakyRelu::new(slope).forward(x.clone()), &r));

        let x = random_array(x.raw_dim(), seed ^ 3) * 3.0;
        let dx = { let mut l = Tanh::new(); l.forward(x.clone()); l.backward(r.clone()) };
        check("Tanh dx", &dx, &x, |x| dot(&Tanh::new().forward(x.clone()), &r));

        let dx = { let mut l = Sigmoid::new(); l.forward(x.clone()); l.backward(r.clone()) };
        check("Sigmoid dx", &dx, &x, |x| dot(&Sigmoid::new().forward(x.clone()), &r));
    }

    #[test]
    fn bce_with_logits_gradient(n in 1usize..9, scale in 0.1f32..8.0, seed in any::<u64>()) {
        let logits: Array1<f32> = random_array(n, seed ^ 1) * scale;
        let targets: Array1<f32> = random_array(n, seed ^ 2).mapv(|v| (v + 1.0) / 2.0);
        let (_, dlogits) = bce_with_logits(logits.view(), targets.view());
        check("bce_with_logits dlogits", &dlogits, &logits, |z| bce_with_logits(z.view(), targets.view()).0 as f64);
    }

    #[test]
    fn cross_entropy_gradient(n in 1usize..6, k in 2usize..8, scale in 0.1f32..5.0, seed in any::<u64>()) {
        let logits: Array2<f32> = random_array([n, k], seed ^ 1) * scale;
        let targets: Vec<usize> = (0..n).map(|i| (seed as usize).wrapping_add(i * 7) % k).collect();
        let (_, dlogits) = cross_entropy(logits.view(), &targets);
        check("cross_entropy dlogits", &dlogits, &logits, |z| cross_entropy(z.view(), &targets).0 as f64);
    }

    #[test]
    fn soft_cross_entropy_gradient(n in 1usize..6, k in 2usize..8, scale in 0.1f32..5.0, seed in any::<u64>()) {
        let logits: Array2<f32> = random_array([n, k], seed) * scale;
        let spread: Array2<f32> = random_array([n, k], seed ^ 1) * 3.0;
        let probs = softmax(spread.view());
        let sums = probs.sum_axis(ndarray::Axis(1));
        prop_assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "softmax rows sum to 1: {sums}");
        let (_, dlogits) = soft_cross_entropy(logits.view(), probs.view());
        check("soft_cross_entropy dlogits", &dlogits, &logits, |z| soft_cross_entropy(z.view(), probs.view()).0 as f64);
    }

    #[test]
    fn gaussian_nll_gradient(n in 1usize..6, d in 1usize..4, seed in any::<u64>()) {
        let x: Array2<f32> = random_array([n, d], seed ^ 1) * 2.0;
        let mean: Array2<f32> = random_array([n, d], seed ^ 2);
        let logstd: Array2<f32> = random_array([n, d], seed ^ 3) * 0.5;
        let (_, dmean, dlogstd) = gaussian_nll(x.view(), mean.view(), logstd.view());
        check("gaussian_nll dmean", &dmean, &mean, |m| gaussian_nll(x.view(), m.view(), logstd.view()).0 as f64);
        check("gaussian_nll dlogstd", &dlogstd, &logstd, |s| gaussian_nll(x.view(), mean.view(), s.view()).0 as f64);
    }

    #[test]
    fn mode_seeking_gradient(pairs in 1usize..4, c in 1usize..3, seed in any::<u64>()) {
        // Images of a pair well apart, so that no |x1 - x2| crosses 0 within the step.
        let x1: Array4<f32> = random_array([pairs, c, 3, 3], seed ^ 1);
        let x2 = away_from_zero(random_array(x1.raw_dim(), seed ^ 2), 0.3) + &x1;
        let images = ndarray::concatenate(ndarray::Axis(0), &[x1.view(), x2.view()]).unwrap();
        let noise: Array2<f32> = random_array([2 * pairs, 5], seed ^ 3);
        let (_, dimages) = mode_seeking(images.view(), noise.view());
        check("mode_seeking dimages", &dimages, &images, |x| mode_seeking(x.view(), noise.view()).0 as f64);
    }
}

#[test]
fn large_logits_give_finite_losses_and_gradients() {
    let logits = Array1::from(vec![-1e4f32, -100.0, 0.0, 100.0, 1e4]);
    let targets = Array1::from(vec![1.0f32, 0.0, 0.5, 1.0, 0.0]);
    let (loss, d) = bce_with_logits(logits.view(), targets.view());
    assert!(loss.is_finite() && d.iter().all(|v| v.is_finite()), "bce: loss {loss}, grads {d}");
    // 1e4 against target 0 costs 1e4 / 5 elements alone.
    assert!((loss - (1e4 + 1e4) / 5.0).abs() < 1.0, "bce loss {loss}");

    let logits = Array2::from_shape_vec((2, 3), vec![1e4f32, -1e4, 0.0, -50.0, 50.0, 80.0]).unwrap();
    let (loss, d) = cross_entropy(logits.view(), &[1, 2]);
    assert!(loss.is_finite() && d.iter().all(|v| v.is_finite()), "cross_entropy: loss {loss}, grads {d}");
    assert!((loss - (2e4 + 0.0) / 2.0).abs() < 1.0, "cross_entropy loss {loss}");
}
