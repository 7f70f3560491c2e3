//! Fully connected layer, PyTorch's `nn.Linear`: `y = x W^T + b`.

use ndarray::{Array1, Array2, ArrayD, ArrayViewMut2, Axis, s};
use rand::Rng;

use super::export::weight_and_bias;
use super::{Layer, OnnxAttr, OnnxOp, check_shape, rank};
use crate::buffers;
use crate::collective::Shards;
use crate::init;
use crate::kernels::gemm::gemm;

#[derive(Clone)]
pub struct Linear {
    /// weight: [F_out, F_in], PyTorch's layout.
    pub weight: Array2<f32>,
    /// bias: `[F_out]`
    pub bias: Array1<f32>,
    /// dweight: [F_out, F_in]
    pub dweight: Array2<f32>,
    /// dbias: `[F_out]`
    pub dbias: Array1<f32>,
    /// When false, `backward` returns `dx` but leaves `dweight` and `dbias` alone
    /// (a frozen network that gradients only pass through).
    pub requires_grad: bool,
    /// The batch's shards: the parameter gradients are summed per shard, then over
    /// the shards (`Shards::accumulate`).
    pub shards: Shards,
    /// Set by `zero_grad`: `dweight` and `dbias` count as zeros that were not written,
    /// and the next `backward` writes them rather than adding to them (see
    /// `layer_tensors!`). Read the gradients through `Layer::params` after a
    /// `zero_grad` with no `backward` since.
    grads_zeroed: bool,
    /// Cache of the latest forward. x: [N, F_in]
    x: Array2<f32>,
}

impl Linear {
    /// PyTorch's default initialisation: weight and bias uniform in
    /// `[-1/sqrt(F_in), 1/sqrt(F_in)]`.
    pub fn new(f_in: usize, f_out: usize, rng: &mut impl Rng) -> Self {
        let bound = 1.0 / (f_in as f32).sqrt();
        Linear {
            weight: init::uniform([f_out, f_in], bound, rng),
            bias: init::uniform(f_out, bound, rng),
            dweight: Array2::zeros((f_out, f_in)),
            dbias: Array1::zeros(f_out),
            requires_grad: true,
            shards: Shards::single(),
            grads_zeroed: false,
            x: Array2::zeros((0, f_in)),
        }
    }

    pub fn f_in(&self) -> usize {
        self.weight.ncols()
    }

    pub fn f_out(&self) -> usize {
        self.weight.nrows()
    }

    /// x: [N, F_in] -> y: [N, F_out]
    pub fn forward(&mut self, x: Array2<f32>) -> Array2<f32> {
        check_shape("Linear", "input", &[None, Some(self.f_in())], x.shape());
        let mut y = buffers::take((x.nrows(), self.f_out()));
        y.assign(&self.bias);
        // As y^T = W x^T: matrixmultiply packs a transposed right-hand operand slowly,
        // and this way the transposed one is the small x rather than the large W. One
        // product per shard, so that a shard's rows get the bits they get in a batch
        // of their own (how a product is cut can depend on its size).
        for shard in 0..self.shards.local() {
            let rows = self.shards.rows(shard, x.nrows());
            let y = y.slice_mut(s![rows.clone(), ..]).reversed_axes();
            gemm(1.0, self.weight.view(), x.slice(s![rows, ..]).t(), 1.0, y);
        }
        buffers::give(std::mem::replace(&mut self.x, x));
        y
    }

    /// From `y = x W^T + b`:
    /// - `dx = dy W`                  ([N, F_out] x [F_out, F_in])
    /// - `dweight += dy^T x`          ([F_out, N] x [N, F_in])
    /// - `dbias += sum over n of dy`
    ///
    /// After `zero_grad`, `=` in place of `+=`: the product is written with beta 0
    /// rather than added to zeros that were written first.
    ///
    /// Both sums over n are made per shard of the batch, and `dx` a shard at a time (one shard unless the step
    /// is sharded), then added over the shards.
    ///
    /// dy: [N, F_out] -> dx: [N, F_in]
    pub fn backward(&mut self, dy: Array2<f32>) -> Array2<f32> {
        check_shape("Linear", "dy", &[Some(self.x.nrows()), Some(self.f_out())], dy.shape());
        if self.requires_grad {
            let fresh = std::mem::take(&mut self.grads_zeroed);
            if fresh {
                self.dbias.fill(0.0);
                if !self.shards.is_single() {
                    // The shards' sum is added into dweight.
                    self.dweight.fill(0.0);
                }
            }
            // A single shard's product is dweight itself; the shards' own start at zero.
            let beta = if fresh { 0.0 } else { 1.0 };
            let (shape, x, shards) = (self.weight.dim(), &self.x, &self.shards);
            let dweight = self.dweight.as_slice_mut().expect("contiguous");
            let dbias = self.dbias.as_slice_mut().expect("contiguous");
            shards.accumulate(&mut [dweight, dbias], |shard, grads| {
                let rows = shards.rows(shard, x.nrows());
                let (dy, x) = (dy.slice(s![rows.clone(), ..]), x.slice(s![rows, ..]));
                let dweight = ArrayViewMut2::from_shape(shape, &mut *grads[0]).expect("dweight is [F_out, F_in]");
                gemm(1.0, dy.t(), x, beta, dweight);
                // Rows are summed in order, so the result does not depend on threads.
                for row in dy.axis_iter(Axis(0)) {
                    grads[1].iter_mut().zip(row).for_each(|(b, &d)| *b += d);
                }
            });
        }
        let mut dx = buffers::take((dy.nrows(), self.f_in()));
        for shard in 0..self.shards.local() {
            let rows = self.shards.rows(shard, dy.nrows());
            gemm(1.0, dy.slice(s![rows.clone(), ..]), self.weight.view(), 0.0, dx.slice_mut(s![rows, ..]));
        }
        buffers::give(dy);
        dx
    }
}

impl Layer for Linear {
    layer_tensors!(params: [weight => dweight, bias => dbias], buffers: [], zeroed: grads_zeroed);

    fn forward(&mut self, x: ArrayD<f32>) -> ArrayD<f32> {
        Linear::forward(self, rank("Linear", "x", x)).into_dyn()
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        Linear::backward(self, rank("Linear", "dy", dy)).into_dyn()
    }

    fn set_requires_grad(&mut self, on: bool) {
        self.requires_grad = on;
    }

    fn set_shards(&mut self, shards: &Shards) {
        self.shards = shards.clone();
    }

    fn onnx(&self) -> Option<OnnxOp> {
        let constants = weight_and_bias(self.weight.view().into_dyn(), self.bias.view().into_dyn());
        // y = x W^T + b: Gemm with B transposed; the output units are W's rows.
        Some(OnnxOp { op: "Gemm", constants, attrs: vec![("transB", OnnxAttr::Int(1))], fold_axis: Some(0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::gemm_naive;
    use crate::testutil::{assert_close, random_array};
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn forward_matches_naive_matmul() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut layer = Linear::new(37, 11, &mut rng);
        let x = random_array([5, 37], 2);
        let y = layer.forward(x.clone());
        let mut expected = layer.bias.broadcast((5, 11)).unwrap().to_owned();
        gemm_naive(1.0, x.view(), layer.weight.t(), 1.0, expected.view_mut());
        assert_close(&y, &expected, 1e-5, 1e-6, "linear forward");
    }

    /// The gradients of one backward pass after `zero_grad`, from a layer whose
    /// gradients held `stale` values before it, on `shards` shards; then those of a
    /// second pass on top, which must add.
    fn gradients_after_zero_grad(stale: f32, shards: usize) -> [(Array2<f32>, Array1<f32>); 2] {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut layer = Linear::new(29, 13, &mut rng);
        layer.shards = Shards::new(shards, None);
        layer.dweight.fill(stale);
        layer.dbias.fill(stale);
        layer.zero_grad();
        let grads = |layer: &mut Linear, seed: u64| {
            layer.forward(random_array([8, 29], seed));
            layer.backward(random_array([8, 13], seed + 1));
            (layer.dweight.clone(), layer.dbias.clone())
        };
        [grads(&mut layer, 4), grads(&mut layer, 6)]
    }

    /// `zero_grad` writes nothing, yet the next backward pass gives the gradients of
    /// zeroed ones, whatever the gradients held before, with and without shards; and
    /// the pass after it adds to them.
    #[test]
    fn backward_after_zero_grad_writes_then_adds() {
        for shards in [1, 2] {
            let [first, second] = gradients_after_zero_grad(0.0, shards);
            let [stale_first, stale_second] = gradients_after_zero_grad(f32::NAN, shards);
            assert_eq!((&first, &second), (&stale_first, &stale_second), "{shards} shards: stale values leaked");
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
            let mut layer = Linear::new(29, 13, &mut rng);
            layer.shards = Shards::new(shards, None);
            layer.forward(random_array([8, 29], 6));
            layer.backward(random_array([8, 13], 7));
            assert_close(&second.0, &(&first.0 + &layer.dweight), 1e-6, 1e-6, "dweight adds after the first pass");
            assert_close(&second.1, &(&first.1 + &layer.dbias), 1e-6, 1e-6, "dbias adds after the first pass");
        }
    }

    /// Gradients read through `params` after `zero_grad`, with no backward pass since,
    /// are zeros (what the optimizer of a layer that took no part in a step sees).
    #[test]
    fn params_after_zero_grad_hand_out_zeros() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut layer = Linear::new(7, 5, &mut rng);
        layer.dweight.fill(1.5);
        layer.dbias.fill(-2.0);
        layer.zero_grad();
        let mut seen = 0;
        layer.visit_params(&mut |p| {
            assert!(p.grad.iter().all(|&g| g == 0.0), "{} still holds its old gradient", p.name);
            seen += 1;
        });
        assert_eq!(seen, 2);
        layer.dweight.fill(3.0);
        assert!(layer.params().iter().any(|p| p.grad.iter().any(|&g| g == 3.0)), "zeros written twice");
    }

    #[test]
    #[should_panic(expected = "Linear: input has shape [5, 36], expected [*, 37]")]
    fn wrong_input_width_names_layer_and_shapes() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        Linear::new(37, 11, &mut rng).forward(Array2::zeros((5, 36)));
    }
}
