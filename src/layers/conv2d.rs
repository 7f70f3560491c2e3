//! 2-D convolution, PyTorch's `nn.Conv2d` (groups 1, dilation 1, zero padding):
//! `y[n, o, oh, ow] = b[o] + sum over c, i, j of W[o, c, i, j] x[n, c, oh*s - p + i, ow*s - p + j]`.
//!
//! Computed as one GEMM over the batch: `y_cm = W2 cols`, where
//! `W2 = W viewed as [C_out, C_in*KH*KW]` and `cols = im2col(x): [C_in*KH*KW, N*P_out]`.
//! The columns are made a few images at a time (`kernels::chunk_images`), each chunk
//! multiplied while it is still in the cache and its product moved into `y` (plus the
//! bias) while that is too, so neither the whole `cols` (four times the input for a
//! 4x4 kernel at stride 2) nor the whole `y_cm` ever exists: the backward pass
//! unfolds the cached input again.

use ndarray::{
    Array1, Array4, ArrayD, ArrayView2, ArrayView3, ArrayView4, ArrayViewMut2, ArrayViewMut3, ArrayViewMut4, s,
};
use rand::Rng;

use super::export::{conv_attrs, weight_and_bias};
use super::{Layer, OnnxOp, check_shape, rank};
use crate::buffers;
use crate::collective::Shards;
use crate::init;
use crate::kernels::im2col::{ConvGeom, row_sums_into, to_channel_major};
use crate::kernels::{Workspace, count_padding_macs, gemm_col2im, im2col_gemm, summed_rows_gemm, summed_span};

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
    /// The batch's shards: the parameter gradients are summed per shard, then over
    /// the shards (`Shards::accumulate`).
    pub shards: Shards,
    /// Cache of the latest forward: the input geometry, and
    /// x: [N, C_in, H, W], the input (what `dweight` needs, unfolded again).
    geom: ConvGeom,
    x: Array4<f32>,
    /// Workspaces kept from step to step (forward's chunks use each thread's scratch,
    /// `kernels::im2col_gemm`). cols: the rows of a span of positions for
    /// dweight, `[span, C_in*KH*KW]`; y_cm: the whole dy, [C_out, N*P_out].
    cols: Workspace,
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
            shards: Shards::single(),
            geom: ConvGeom { c: c_in, h: 0, w: 0, kh: kernel, kw: kernel, stride, padding },
            x: Array4::zeros((0, c_in, 0, 0)),
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
        let c_out = self.c_out();
        let mut y = buffers::take((n, c_out, g.h_out(), g.w_out()));
        let (bias, shard) = (self.bias.as_slice(), self.shards.shard_images(n));
        im2col_gemm(flat(&self.weight), x.view(), &g, bias, y.view_mut(), shard);
        count_padding_macs(&g, n, c_out);
        self.geom = g;
        buffers::give(std::mem::replace(&mut self.x, x));
        y
    }

    /// From `y_cm = W2 cols + b`, with `dy_cm` the channel-major `dy`:
    /// - `dweight += dy_cm cols^T`   ([C_out, N*P] x [N*P, C_in*KH*KW]), with `cols^T`
    ///   made as rows (`im2row`), a span of positions at a time (`summed_span` keeps
    ///   the sum's order that of one product), by blocks of input channels, one per
    ///   thread (`summed_rows_gemm`)
    /// - `dbias += sum over n, oh, ow of dy`
    /// - both sums over n made per shard of the batch (one unless the step is
    ///   sharded), then added over the shards
    /// - `dcols = W2^T dy_cm`, and `dx = col2im(dcols)`, since im2col is linear and
    ///   col2im is its transpose (a few images at a time, `gemm_col2im`).
    ///
    /// dy: [N, C_out, H_out, W_out] -> dx: [N, C_in, H, W]
    pub fn backward(&mut self, dy: Array4<f32>) -> Array4<f32> {
        self.backward_params(dy);
        let g = self.geom;
        // Uninitialised: col2im overwrites every element.
        let mut dx = buffers::take((self.x.dim().0, g.c, g.h, g.w));
        let shard = self.shards.shard_images(self.x.dim().0);
        gemm_col2im(flat(&self.weight).t(), self.y_cm.view(), &g, None, dx.view_mut(), shard);
        count_padding_macs(&g, self.x.dim().0, self.c_out());
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
        check_shape(
            "Conv2d",
            "dy",
            &[Some(self.x.dim().0), Some(self.c_out()), Some(g.h_out()), Some(g.w_out())],
            dy.shape(),
        );
        self.y_cm.resize(self.c_out(), self.x.dim().0 * g.p_out());
        let dy_cm = &mut self.y_cm;
        to_channel_major(view3(&dy), dy_cm.view_mut());
        buffers::give(dy);
        if self.requires_grad {
            let (shape, x, shards, cols, p) = (self.weight.dim(), &self.x, &self.shards, &mut self.cols, g.p_out());
            let dweight = self.dweight.as_slice_mut().expect("contiguous");
            let dbias = self.dbias.as_slice_mut().expect("contiguous");
            shards.accumulate(&mut [dweight, dbias], |shard, grads| {
                let images = shards.rows(shard, x.dim().0);
                let first = images.start * p;
                let dy_cm = dy_cm.view().slice_move(s![.., first..images.end * p]);
                let dweight = ArrayViewMut4::from_shape(shape, &mut *grads[0]).expect("dweight's shape");
                let mut dweight = into_flat_mut(dweight);
                let span = summed_span(&g, images.len(), shape.0);
                // With the input unfolded as rows (cols^T), both operands of this sum
                // along positions pack as plain copies (see `im2row`).
                summed_rows_gemm(dy_cm, x.slice(s![images, .., .., ..]), &g, span, cols, dweight.view_mut());
                row_sums_into(dy_cm, grads[1]);
            });
            count_padding_macs(&g, self.x.dim().0, self.c_out());
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

    fn set_shards(&mut self, shards: &Shards) {
        self.shards = shards.clone();
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
#[cfg(test)]
pub(crate) fn flat_mut(w: &mut Array4<f32>) -> ArrayViewMut2<'_, f32> {
    into_flat_mut(w.view_mut())
}

/// A weight view `[A, B, KH, KW]` as `[A, B*KH*KW]`.
pub(crate) fn into_flat_mut(w: ArrayViewMut4<'_, f32>) -> ArrayViewMut2<'_, f32> {
    let (a, b, kh, kw) = w.dim();
    w.into_shape_with_order((a, b * kh * kw)).expect("weight is contiguous")
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
    use crate::kernels::chunk_images;
    use crate::kernels::gemm::gemm;
    use crate::kernels::im2col::{from_channel_major, im2col};
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

    /// A batch cut into chunks (8, 8 and 4 images of 256 KiB of columns each) for `y`,
    /// and into spans of 512 positions for `dweight`, gives the bits of one product
    /// over the whole batch: on the fast path exactly, and close on
    /// `matrixmultiply`'s, whose blocking differs. With 16x16 inputs (64 output
    /// positions an image) the spans end between images; with 14x14 (49) the first
    /// ends inside image 10.
    #[test]
    fn chunks_give_the_bits_of_one_product() {
        use crate::kernels::microkernel::{Isa, isa};
        use ndarray::Array2;
        for side in [16, 14] {
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(5);
            let (n, c_out) = (20, 8);
            let mut conv = Conv2d::new(64, c_out, 4, 2, 1, &mut rng);
            let x: Array4<f32> = random_array([n, 64, side, side], 1);
            let dy: Array4<f32> = random_array([n, c_out, side / 2, side / 2], 2);
            let g = conv.geometry(side, side);
            let positions = n * g.p_out();
            assert!(chunk_images(&g) < n && summed_span(&g, n, c_out) < positions, "the batch must be cut");
            let y = conv.forward(x.clone());
            conv.backward(dy.clone());

            let mut cols = Array2::zeros((g.rows(), positions));
            im2col(x.view(), &g, cols.view_mut());
            let mut y_cm = Array2::zeros((c_out, positions));
            gemm(1.0, flat(&conv.weight), cols.view(), 0.0, y_cm.view_mut());
            let mut y_whole = Array4::zeros(y.dim());
            from_channel_major(y_cm.view(), conv.bias.as_slice(), as3(&mut y_whole));
            let mut dy_cm = Array2::zeros((c_out, positions));
            to_channel_major(view3(&dy), dy_cm.view_mut());
            let mut dweight_whole = Array4::zeros(conv.dweight.dim());
            gemm(1.0, cols.view(), dy_cm.t(), 1.0, flat_mut(&mut dweight_whole).reversed_axes());

            let tol = if isa() == Isa::Portable { 1e-5 } else { 0.0 };
            assert_close(&y, &y_whole, tol, tol, &format!("y in chunks, {side}x{side}"));
            assert_close(&conv.dweight, &dweight_whole, tol, tol, &format!("dweight in spans, {side}x{side}"));
        }
    }
}
