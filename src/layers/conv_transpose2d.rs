//! Transposed 2-D convolution, PyTorch's `nn.ConvTranspose2d` (groups 1, dilation 1,
//! no output padding): the adjoint of Conv2d's map from input to output, plus a bias.
//! `y[n, o, ih, iw] = b[o] + sum of W[c, o, i, j] x[n, c, oh, ow]` over every
//! `(c, i, j, oh, ow)` with `oh*s - p + i = ih` and `ow*s - p + j = iw`.
//! Output size `H_out = (H - 1)*s - 2p + KH`.
//!
//! Computed as a GEMM and a col2im, a few images at a time (`gemm_col2im`):
//! `cols = W2^T x_cm` with `W2 = W viewed as [C_in, C_out*KH*KW]` and
//! `x_cm: [C_in, N*H*W]`, then `y = col2im(cols)`. This is exactly Conv2d's
//! input-gradient path, and its backward pass is Conv2d's forward path (the
//! unfolding of `dy` made, and used by both products, a chunk of images at a time).

use ndarray::{Array1, Array4, ArrayD, ArrayView2, ArrayView4, ArrayViewMut4, s};
use rand::Rng;

use super::conv2d::{as3, flat, into_flat_mut, view3};
use super::export::{conv_attrs, weight_and_bias};
use super::{Layer, OnnxOp, check_shape, rank};
use crate::buffers;
use crate::collective::Shards;
use crate::init;
use crate::kernels::gemm::{gemm, with_packed_lhs};
use crate::kernels::im2col::{ConvGeom, channel_sums_into, from_channel_major, to_channel_major};
use crate::kernels::{Workspace, count_padding_macs, for_each_summed_unfolded, gemm_col2im, im2col_gemm, summed_span};

#[derive(Clone)]
pub struct ConvTranspose2d {
    /// weight: [C_in, C_out, KH, KW], PyTorch's layout.
    pub weight: Array4<f32>,
    /// bias: `[C_out]`
    pub bias: Array1<f32>,
    /// dweight: [C_in, C_out, KH, KW]
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
    /// Cache of the latest forward: the geometry of the adjoint convolution (whose
    /// input is our output), the batch size, and x_cm: [C_in, N*H*W], the input in
    /// channel-major order (what `dweight` needs).
    geom: ConvGeom,
    n: usize,
    x_cm: Workspace,
    /// Workspaces kept from step to step (forward's chunks, and a frozen backward's,
    /// use each thread's scratch: `kernels::gemm_col2im`, `kernels::im2col_gemm`).
    /// cols: backward's im2col of a span of dy; dx_cm: its images' dx, [C_in, images*H*W].
    cols: Workspace,
    dx_cm: Workspace,
}

impl ConvTranspose2d {
    /// PyTorch's default initialisation: uniform in `[-1/sqrt(fan_in), 1/sqrt(fan_in)]`,
    /// where PyTorch computes `fan_in` from weight dimension 1: `C_out*KH*KW`.
    pub fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: usize, rng: &mut impl Rng) -> Self {
        assert!(kernel > 0 && stride > 0, "ConvTranspose2d: kernel {kernel} and stride {stride} must be positive");
        let bound = 1.0 / ((c_out * kernel * kernel) as f32).sqrt();
        ConvTranspose2d {
            weight: init::uniform([c_in, c_out, kernel, kernel], bound, rng),
            bias: init::uniform(c_out, bound, rng),
            dweight: Array4::zeros((c_in, c_out, kernel, kernel)),
            dbias: Array1::zeros(c_out),
            stride,
            padding,
            requires_grad: true,
            shards: Shards::single(),
            geom: ConvGeom { c: c_out, h: 0, w: 0, kh: kernel, kw: kernel, stride, padding },
            n: 0,
            x_cm: Workspace::default(),
            cols: Workspace::default(),
            dx_cm: Workspace::default(),
        }
    }

    pub fn c_in(&self) -> usize {
        self.weight.dim().0
    }

    pub fn c_out(&self) -> usize {
        self.weight.dim().1
    }

    /// Output height and width for an input of `h` x `w`: `(h - 1)*s - 2p + KH`.
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let g = self.geometry(h, w);
        (g.h, g.w)
    }

    /// The adjoint convolution's geometry: its input is our `[C_out, H_out, W_out]`
    /// output, its output positions are our input pixels.
    fn geometry(&self, h: usize, w: usize) -> ConvGeom {
        let (_, c_out, kh, kw) = self.weight.dim();
        let (s, p) = (self.stride, self.padding);
        let span = |len: usize, k: usize| (len.max(1) - 1) * s + k;
        assert!(
            h > 0 && w > 0 && span(h, kh) > 2 * p && span(w, kw) > 2 * p,
            "ConvTranspose2d: a {h}x{w} input with kernel {kh}x{kw}, stride {s} and padding {p} gives an empty output"
        );
        ConvGeom { c: c_out, h: span(h, kh) - 2 * p, w: span(w, kw) - 2 * p, kh, kw, stride: s, padding: p }
    }

    /// x: [N, C_in, H, W] -> y: [N, C_out, H_out, W_out]
    pub fn forward(&mut self, x: Array4<f32>) -> Array4<f32> {
        check_shape("ConvTranspose2d", "input", &[None, Some(self.c_in()), None, None], x.shape());
        let (n, c_in, h, w) = x.dim();
        let g = self.geometry(h, w);
        self.x_cm.resize(c_in, n * h * w);
        to_channel_major(view3(&x), self.x_cm.view_mut());
        buffers::give(x);
        // Uninitialised: col2im overwrites every element.
        let mut y = buffers::take((n, g.c, g.h, g.w));
        let (bias, shard) = (self.bias.as_slice(), self.shards.shard_images(n));
        gemm_col2im(flat(&self.weight).t(), self.x_cm.view(), &g, bias, y.view_mut(), shard);
        count_padding_macs(&g, n, c_in);
        (self.geom, self.n) = (g, n);
        y
    }

    /// From `y = col2im(W2^T x_cm) + b`, with `dcols = im2col(dy)` (im2col is col2im's
    /// transpose), made a span of positions at a time and used by both products while
    /// in the cache (`summed_span` keeps dweight's sum in the order of one product):
    /// - `dx_cm = W2 dcols`              ([C_in, C_out*KH*KW] x [C_out*KH*KW, N*H*W]),
    ///   each image's columns once (a span may end inside an image, which the next
    ///   span unfolds again), moved into `dx` at once
    /// - `dweight += x_cm dcols^T`       ([C_in, N*H*W] x [N*H*W, C_out*KH*KW]), computed
    ///   as its transpose `dcols x_cm^T`
    /// - `dbias += sum over n, ih, iw of dy`
    /// - both sums over n made per shard of the batch (one unless the step is
    ///   sharded), then added over the shards
    ///
    /// dy: [N, C_out, H_out, W_out] -> dx: [N, C_in, H, W]
    pub fn backward(&mut self, dy: Array4<f32>) -> Array4<f32> {
        let g = self.geom;
        check_shape("ConvTranspose2d", "dy", &[Some(self.n), Some(g.c), Some(g.h), Some(g.w)], dy.shape());
        let c_in = self.c_in();
        let mut dx = buffers::take((self.n, c_in, g.h_out(), g.w_out()));
        let (dcols, dx_cm, x_cm, shards, p) =
            (&mut self.cols, &mut self.dx_cm, self.x_cm.view(), &self.shards, g.p_out());
        if !self.requires_grad {
            // Frozen: dx alone, Conv2d's forward pass of dy.
            im2col_gemm(flat(&self.weight), dy.view(), &g, None, dx.view_mut(), shards.shard_images(self.n));
        } else {
            let shape = self.weight.dim();
            let dweight = self.dweight.as_slice_mut().expect("contiguous");
            let dbias = self.dbias.as_slice_mut().expect("contiguous");
            with_packed_lhs(flat(&self.weight), |mul| {
                // The columns of the images `images` of dy, `[C_out*KH*KW, images*P]`:
                // dx_cm's product, moved into dx while it is still in the cache.
                let mut to_dx = |images: std::ops::Range<usize>, dcols: ArrayView2<f32>| {
                    dx_cm.resize(c_in, dcols.ncols());
                    mul(dcols, dx_cm.view_mut());
                    from_channel_major(dx_cm.view(), None, as3(&mut dx).slice_move(s![images, .., ..]));
                };
                shards.accumulate(&mut [dweight, dbias], |shard, grads| {
                    let images = shards.rows(shard, self.n);
                    let dweight = ArrayViewMut4::from_shape(shape, &mut *grads[0]).expect("dweight's shape");
                    // As dweight^T = dcols x_cm^T, so that the operand packed transposed
                    // is the small x_cm (see Conv2d::backward_params).
                    let mut dweight_t = into_flat_mut(dweight).reversed_axes();
                    let span = summed_span(&g, images.len(), c_in);
                    let (first_image, first) = (images.start, images.start * p);
                    let dy_shard = dy.slice(s![images.clone(), .., .., ..]);
                    for_each_summed_unfolded(dy_shard, &g, span, dcols, |positions, span_cols, fresh, fresh_cols| {
                        let positions = first + positions.start..first + positions.end;
                        gemm(1.0, span_cols, x_cm.slice(s![.., positions]).t(), 1.0, dweight_t.view_mut());
                        to_dx(first_image + fresh.start..first_image + fresh.end, fresh_cols);
                    });
                    channel_sums_into(view3(&dy).slice_move(s![images, .., ..]), grads[1]);
                });
            });
        }
        buffers::give(dy);
        // dx's product, and dweight's when it was made.
        count_padding_macs(&g, self.n, c_in * (1 + usize::from(self.requires_grad)));
        dx
    }
}

impl Layer for ConvTranspose2d {
    layer_tensors!(params: [weight => dweight, bias => dbias], buffers: []);

    fn forward(&mut self, x: ArrayD<f32>) -> ArrayD<f32> {
        ConvTranspose2d::forward(self, rank("ConvTranspose2d", "x", x)).into_dyn()
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        ConvTranspose2d::backward(self, rank("ConvTranspose2d", "dy", dy)).into_dyn()
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
        Some(OnnxOp { op: "ConvTranspose", constants, attrs, fold_axis: Some(1) })
    }
}

/// The reference: the definition as a direct scatter loop, accumulated in f64.
///
/// x: [N, C_in, H, W], weight: [C_in, C_out, KH, KW], bias: `[C_out]`
pub fn conv_transpose2d_naive(
    x: ArrayView4<f32>,
    weight: ArrayView4<f32>,
    bias: &[f32],
    stride: usize,
    padding: usize,
) -> Array4<f32> {
    let (n, c_in, h, w) = x.dim();
    let (_, c_out, kh, kw) = weight.dim();
    let (ho, wo) = ((h - 1) * stride + kh - 2 * padding, (w - 1) * stride + kw - 2 * padding);
    let mut acc = ndarray::Array4::<f64>::zeros((n, c_out, ho, wo));
    for img in 0..n {
        for c in 0..c_in {
            for ih in 0..h {
                for iw in 0..w {
                    for o in 0..c_out {
                        for i in 0..kh {
                            for j in 0..kw {
                                let oh = (ih * stride + i) as isize - padding as isize;
                                let ow = (iw * stride + j) as isize - padding as isize;
                                if oh >= 0 && ow >= 0 && (oh as usize) < ho && (ow as usize) < wo {
                                    acc[[img, o, oh as usize, ow as usize]] +=
                                        x[[img, c, ih, iw]] as f64 * weight[[c, o, i, j]] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Array4::from_shape_fn((n, c_out, ho, wo), |(img, o, oh, ow)| (acc[[img, o, oh, ow]] + bias[o] as f64) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::im2col::im2col;
    use crate::kernels::microkernel::{Isa, isa};
    use crate::layers::conv2d::flat_mut;
    use crate::testutil::{assert_close, random_array};
    use ndarray::Array2;
    use rand::SeedableRng;

    /// Backward's spans of unfolded `dy` (512 positions, 2 MiB, each) give the bits of
    /// one product over the whole batch, for `dx` and `dweight`: on the fast path
    /// exactly, and close on `matrixmultiply`'s, whose blocking differs. With 8x8
    /// inputs (64 positions an image) the spans end between images; with 7x7 (49) the
    /// first ends inside image 10.
    #[test]
    fn spans_give_the_bits_of_one_product() {
        for side in [8, 7] {
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(6);
            let (n, c_in) = (20, 16);
            let mut deconv = ConvTranspose2d::new(c_in, 64, 4, 2, 1, &mut rng);
            let x: Array4<f32> = random_array([n, c_in, side, side], 1);
            let dy: Array4<f32> = random_array([n, 64, 2 * side, 2 * side], 2);
            let g = deconv.geometry(side, side);
            let positions = n * g.p_out();
            assert!(summed_span(&g, n, c_in) < positions, "the batch must be cut");
            deconv.forward(x.clone());
            let dx = deconv.backward(dy.clone());

            let mut dcols = Array2::zeros((g.rows(), positions));
            im2col(dy.view(), &g, dcols.view_mut());
            let mut x_cm = Array2::zeros((c_in, positions));
            to_channel_major(view3(&x), x_cm.view_mut());
            let mut dweight_whole = Array4::zeros(deconv.dweight.dim());
            gemm(1.0, dcols.view(), x_cm.t(), 1.0, flat_mut(&mut dweight_whole).reversed_axes());
            let mut dx_cm = Array2::zeros((c_in, positions));
            gemm(1.0, flat(&deconv.weight), dcols.view(), 0.0, dx_cm.view_mut());
            let mut dx_whole = Array4::zeros(dx.dim());
            from_channel_major(dx_cm.view(), None, as3(&mut dx_whole));

            let tol = if isa() == Isa::Portable { 1e-5 } else { 0.0 };
            assert_close(&dx, &dx_whole, tol, tol, &format!("dx in spans, {side}x{side}"));
            assert_close(&deconv.dweight, &dweight_whole, tol, tol, &format!("dweight in spans, {side}x{side}"));
        }
    }
}
