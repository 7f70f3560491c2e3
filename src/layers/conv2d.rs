//! 2-D convolution, PyTorch's `nn.Conv2d` (groups 1, dilation 1, zero padding):
//! `y[n, o, oh, ow] = b[o] + sum over c, i, j of W[o, c, i, j] x[n, c, oh*s - p + i, ow*s - p + j]`.
//!
//! Computed for the whole batch as one GEMM: `y_cm = W2 cols`, where
//! `W2 = W viewed as [C_out, C_in*KH*KW]` and `cols = im2col(x): [C_in*KH*KW, N*P_out]`.

use ndarray::{Array1, Array4, ArrayD, ArrayView2, ArrayView3, ArrayView4, ArrayViewMut2, ArrayViewMut3};
use rand::Rng;

use super::export::{conv_attrs, weight_and_bias};
use super::{Layer, OnnxOp, check_shape, rank};
use crate::init;
use crate::kernels::gemm::gemm;
use crate::kernels::im2col::{ConvGeom, from_channel_major, im2col, row_sums_into, to_channel_major};
use crate::kernels::{Workspace, gemm_col2im};

#[derive(Clone)]
pub struct Conv2d {
    /// weight: [C_out, C_in, KH, KW], PyTorch's layout.
    pub weight: Array4<f32>,
    /// bias: `[C_out]`
    pub bias: Array1<f32>,
    /// dweight: [C_out, C_in, KH, KW]
    pub dweight: Array4<f32>,
    /// dbias: `[C_out]`
    pub dbias: Array1<f32>,
    pub stride: usize,
    pub padding: usize,
    /// When false, `backward` returns `dx` but leaves `dweight` and `dbias` alone.
    pub requires_grad: bool,
    /// Cache of the latest forward: the input geometry and batch size, and
    /// cols: [C_in*KH*KW, N*P_out], the unfolded input (what `dweight` needs).
    geom: ConvGeom,
    n: usize,
    cols: Workspace,
    /// Workspace kept from step to step. y_cm: [C_out, N*P_out], also used for dy.
    /// (Backward computes dcols, a few images at a time, into `cols` once dweight no
    /// longer needs it.)
    y_cm: Workspace,
}

impl Conv2d {
    /// PyTorch's default initialisation: uniform in `[-1/sqrt(fan_in), 1/sqrt(fan_in)]`,
    /// `fan_in = C_in*KH*KW`.
    pub fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: usize, rng: &mut impl Rng) -> Self {
        assert!(kernel > 0 && stride > 0, "Conv2d: kernel {kernel} and stride {stride} must be positive");
        let bound = 1.0 / ((c_in * kernel * kernel) as f32).sqrt();
        Conv2d {
            weight: init::uniform([c_out, c_in, kernel, kernel], bound, rng),
            bias: init::uniform(c_out, bound, rng),
            dweight: Array4::zeros((c_out, c_in, kernel, kernel)),
            dbias: Array1::zeros(c_out),
            stride,
            padding,
            requires_grad: true,
            geom: ConvGeom { c: c_in, h: 0, w: 0, kh: kernel, kw: kernel, stride, padding },
            n: 0,
            cols: Workspace::default(),
            y_cm: Workspace::default(),
        }
    }

    pub fn c_in(&self) -> usize {
        self.weight.dim().1
    }

    pub fn c_out(&self) -> usize {
        self.weight.dim().0
    }

    /// Output height and width for an input of `h` x `w`.
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let g = self.geometry(h, w);
        (g.h_out(), g.w_out())
    }

    fn geometry(&self, h: usize, w: usize) -> ConvGeom {
        let (_, c_in, kh, kw) = self.weight.dim();
        let g = ConvGeom { c: c_in, h, w, kh, kw, stride: self.stride, padding: self.padding };
        assert!(
            g.is_valid(),
            "Conv2d: a {h}x{w} input is smaller than the {kh}x{kw} kernel with padding {}",
            self.padding
        );
        g
    }

    /// x: [N, C_in, H, W] -> y: [N, C_out, H_out, W_out]
    pub fn forward(&mut self, x: Array4<f32>) -> Array4<f32> {
        check_shape("Conv2d", "input", &[None, Some(self.c_in()), None, None], x.shape());
        let (n, _, h, w) = x.dim();
        let g = self.geometry(h, w);
        let p_out = g.p_out();
        self.cols.resize(g.rows(), n * p_out);
        im2col(x.view(), &g, self.cols.view_mut());
        self.y_cm.resize(self.weight.dim().0, n * p_out);
        gemm(1.0, flat(&self.weight), self.cols.view(), 0.0, self.y_cm.view_mut());
        let mut y = Array4::zeros((n, self.c_out(), g.h_out(), g.w_out()));
        from_channel_major(self.y_cm.view(), self.bias.as_slice(), as3(&mut y));
        (self.geom, self.n) = (g, n);
        y
    }

    /// From `y_cm = W2 cols + b`, with `dy_cm` the channel-major `dy`:
    /// - `dweight += dy_cm cols^T`   ([C_out, N*P] x [N*P, C_in*KH*KW]), computed as its
    ///   transpose `cols dy_cm^T`
    /// - `dbias += sum over n, oh, ow of dy`
    /// - `dcols = W2^T dy_cm`, and `dx = col2im(dcols)`, since im2col is linear and
    ///   col2im is its transpose (a few images at a time, `gemm_col2im`).
    ///
    /// dy: [N, C_out, H_out, W_out] -> dx: [N, C_in, H, W]
    pub fn backward(&mut self, dy: Array4<f32>) -> Array4<f32> {
        self.backward_params(dy);
        let g = self.geom;
        let mut dx = Array4::zeros((self.n, g.c, g.h, g.w));
        // cols is dead once dweight has it, so it holds the chunks of dcols.
        gemm_col2im(flat(&self.weight).t(), self.y_cm.view(), &g, None, &mut self.cols, dx.view_mut());
        dx
    }
}

impl Conv2d {
    /// The parameter gradients alone, without `dx`: for a first layer, whose input is
    /// data that needs no gradient. Leaves `dy_cm` in its workspace for `backward`.
    ///
    /// dy: [N, C_out, H_out, W_out]
    pub fn backward_params(&mut self, dy: Array4<f32>) {
        let g = self.geom;
        check_shape("Conv2d", "dy", &[Some(self.n), Some(self.c_out()), Some(g.h_out()), Some(g.w_out())], dy.shape());
        let dy_cm = &mut self.y_cm;
        to_channel_major(view3(&dy), dy_cm.view_mut());
        if self.requires_grad {
            // As dweight^T = cols dy_cm^T: matrixmultiply packs a transposed right-hand
            // operand slowly, and this way the transposed one is the small dy_cm
            // rather than the large cols (measured: 72 against 56 GFLOP/s per core).
            gemm(1.0, self.cols.view(), dy_cm.view().t(), 1.0, flat_mut(&mut self.dweight).reversed_axes());
            row_sums_into(dy_cm.view(), &mut self.dbias);
        }
    }
}

impl Layer for Conv2d {
    layer_tensors!(params: [weight => dweight, bias => dbias], buffers: []);

    fn forward(&mut self, x: ArrayD<f32>) -> ArrayD<f32> {
        Conv2d::forward(self, rank("Conv2d", "x", x)).into_dyn()
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        Conv2d::backward(self, rank("Conv2d", "dy", dy)).into_dyn()
    }

    fn backward_params(&mut self, dy: ArrayD<f32>) {
        Conv2d::backward_params(self, rank("Conv2d", "dy", dy));
    }

    fn set_requires_grad(&mut self, on: bool) {
        self.requires_grad = on;
    }

    fn onnx(&self) -> Option<OnnxOp> {
        let constants = weight_and_bias(self.weight.view().into_dyn(), self.bias.view().into_dyn());
        let attrs = conv_attrs(self.weight.dim().2, self.stride, self.padding);
        Some(OnnxOp { op: "Conv", constants, attrs, fold_axis: Some(0) })
    }
}

/// A weight `[A, B, KH, KW]` seen as the GEMM operand `[A, B*KH*KW]`.
pub(crate) fn flat(w: &Array4<f32>) -> ArrayView2<'_, f32> {
    let (a, b, kh, kw) = w.dim();
    w.view().into_shape_with_order((a, b * kh * kw)).expect("weight is contiguous")
}

/// A weight gradient `[A, B, KH, KW]` seen mutably as `[A, B*KH*KW]`.
pub(crate) fn flat_mut(w: &mut Array4<f32>) -> ArrayViewMut2<'_, f32> {
    let (a, b, kh, kw) = w.dim();
    w.view_mut().into_shape_with_order((a, b * kh * kw)).expect("weight is contiguous")
}

/// `[N, C, H, W]` seen as `[N, C, H*W]`.
pub(crate) fn view3(x: &Array4<f32>) -> ArrayView3<'_, f32> {
    let (n, c, h, w) = x.dim();
    x.view().into_shape_with_order((n, c, h * w)).expect("contiguous")
}

/// `[N, C, H, W]` seen mutably as `[N, C, H*W]`.
pub(crate) fn as3(x: &mut Array4<f32>) -> ArrayViewMut3<'_, f32> {
    let (n, c, h, w) = x.dim();
    x.view_mut().into_shape_with_order((n, c, h * w)).expect("contiguous")
}

/// The reference: the definition as a direct loop, accumulated in f64.
///
/// x: [N, C_in, H, W], weight: [C_out, C_in, KH, KW], bias: `[C_out]`
pub fn conv2d_naive(
    x: ArrayView4<f32>,
    weight: ArrayView4<f32>,
    bias: &[f32],
    stride: usize,
    padding: usize,
) -> Array4<f32> {
    let (n, c_in, h, w) = x.dim();
    let (c_out, _, kh, kw) = weight.dim();
    let g = ConvGeom { c: c_in, h, w, kh, kw, stride, padding };
    let (ho, wo) = (g.h_out(), g.w_out());
    Array4::from_shape_fn((n, c_out, ho, wo), |(img, o, oh, ow)| {
        let mut acc = bias[o] as f64;
        for c in 0..c_in {
            for i in 0..kh {
                for j in 0..kw {
                    let ih = (oh * stride + i) as isize - padding as isize;
                    let iw = (ow * stride + j) as isize - padding as isize;
                    if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < w {
                        acc += weight[[o, c, i, j]] as f64 * x[[img, c, ih as usize, iw as usize]] as f64;
                    }
                }
            }
        }
        acc as f32
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, random_array};
    use rand::SeedableRng;

    #[test]
    fn backward_params_gives_backwards_parameter_gradients() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(4);
        let mut full = Conv2d::new(3, 5, 4, 2, 1, &mut rng);
        let mut params_only = full.clone();
        let x: Array4<f32> = random_array([2, 3, 9, 9], 1);
        let dy: Array4<f32> = random_array([2, 5, 4, 4], 2);
        full.forward(x.clone());
        full.backward(dy.clone());
        params_only.forward(x);
        params_only.backward_params(dy);
        assert_close(&params_only.dweight, &full.dweight, 0.0, 0.0, "dweight");
        assert_close(&params_only.dbias, &full.dbias, 0.0, 0.0, "dbias");
    }
}
