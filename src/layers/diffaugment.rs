//! Differentiable augmentation, DiffAugment (Zhao, Liu, Lin, Zhu and Han,
//! "Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS 2020): the
//! same random transformations applied to real and generated images before the
//! discriminator sees them, with gradients passing back through them to the
//! generator. On small training sets it keeps D from memorising the real images.
//!
//! The transformations and their ranges are those of the authors' code
//! (`DiffAugment_pytorch.py`, policy `color,translation,cutout`), each drawn
//! independently for every image, in this order:
//! - brightness: `x + b`, `b ~ U(-0.5, 0.5)`;
//! - saturation: `(x - mean_c x) s + mean_c x`, the mean over channels at each pixel,
//!   `s ~ U(0, 2)`;
//! - contrast: `(x - mean x) k + mean x`, the mean over the whole image, `k ~ U(0.5, 1.5)`;
//! - translation: `y[i, j] = x[i + ti, j + tj]`, zero where that falls outside, with
//!   `ti, tj` uniform integers in `[-r, r]`, `r = round(H / 8)` (`round(W / 8)`);
//! - cutout: a `round(H / 2) x round(W / 2)` square set to zero, centred at a uniform
//!   position (clipped at the border).

use ndarray::Array4;
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use super::check_shape;

/// Which transformations are on. The authors' policy for small datasets is all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AugmentPolicy {
    pub color: bool,
    pub translation: bool,
    pub cutout: bool,
}

impl AugmentPolicy {
    /// `color,translation,cutout` (any subset, in any order), or `none`.
    pub fn parse(list: &str) -> Option<Self> {
        let mut p = AugmentPolicy::default();
        let list = list.trim();
        if list == "none" || list.is_empty() {
            return Some(p);
        }
        for part in list.split(',') {
            match part.trim() {
                "color" => p.color = true,
                "translation" => p.translation = true,
                "cutout" => p.cutout = true,
                _ => return None,
            }
        }
        Some(p)
    }

    pub fn is_none(self) -> bool {
        !(self.color || self.translation || self.cutout)
    }

    /// The flag value, as `parse` reads it.
    pub fn name(self) -> String {
        let on: Vec<&str> = [(self.color, "color"), (self.translation, "translation"), (self.cutout, "cutout")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        if on.is_empty() { "none".into() } else { on.join(",") }
    }
}

/// One image's draw of the transformations' parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentParams {
    pub brightness: f32,
    pub saturation: f32,
    pub contrast: f32,
    /// Translation: output pixel `(i, j)` reads input pixel `(i + ti, j + tj)`.
    pub ti: isize,
    pub tj: isize,
    /// Rows `cut_i..cut_i + ch` and columns `cut_j..cut_j + cw` are zeroed (clipped).
    pub cut_i: isize,
    pub cut_j: isize,
}

impl AugmentParams {
    /// The identity: what a transformation that is off amounts to.
    const IDENTITY: AugmentParams =
        AugmentParams { brightness: 0.0, saturation: 1.0, contrast: 1.0, ti: 0, tj: 0, cut_i: 0, cut_j: 0 };
}

#[derive(Clone, Default)]
pub struct DiffAugment {
    pub policy: AugmentPolicy,
    /// Cache of the latest forward: each image's parameters and the input shape
    /// [N, C, H, W] (what backward needs: every transformation is linear in x).
    params: Vec<AugmentParams>,
    shape: (usize, usize, usize, usize),
    /// Workspaces kept from step to step: drawn: the parameters of the latest `draw`,
    /// which `forward_picked` picks from; grey: one image's grey, [H*W].
    drawn: Vec<AugmentParams>,
    grey: Vec<f32>,
}

/// Cutout's square: `round(H / 2) x round(W / 2)`, as the authors' `int(H * 0.5 + 0.5)`.
fn cutout_size(h: usize, w: usize) -> (usize, usize) {
    (h.div_ceil(2), w.div_ceil(2))
}

impl DiffAugment {
    pub fn new(policy: AugmentPolicy) -> Self {
        DiffAugment { policy, ..Default::default() }
    }

    /// Draws every image's parameters from `rng`, in image order.
    pub fn sample(&self, n: usize, h: usize, w: usize, rng: &mut impl Rng) -> Vec<AugmentParams> {
        let mut params = Vec::with_capacity(n);
        sample_into(self.policy, n, h, w, rng, &mut params);
        params
    }

    /// `sample` kept in the layer, for `forward_picked`: allocates nothing once the
    /// batch size has been seen.
    pub fn draw(&mut self, n: usize, h: usize, w: usize, rng: &mut impl Rng) {
        self.drawn.clear();
        sample_into(self.policy, n, h, w, rng, &mut self.drawn);
    }

    /// `forward_with` the parameters of the latest `draw` at `picks`, one per image.
    ///
    /// x: [N, C, H, W] -> y: [N, C, H, W]
    pub fn forward_picked(&mut self, x: Array4<f32>, picks: impl Iterator<Item = usize>) -> Array4<f32> {
        self.params.clear();
        let drawn = &self.drawn;
        self.params.extend(picks.map(|i| drawn[i]));
        self.apply(x)
    }
}

/// Every image's parameters from `rng` under `p`, in image order, appended to `out`.
fn sample_into(p: AugmentPolicy, n: usize, h: usize, w: usize, rng: &mut impl Rng, out: &mut Vec<AugmentParams>) {
    let (ri, rj) = (((h as f32) * 0.125 + 0.5) as i64, ((w as f32) * 0.125 + 0.5) as i64);
    let (ch, cw) = cutout_size(h, w);
    out.extend((0..n).map(|_| {
        let mut a = AugmentParams::IDENTITY;
        if p.color {
            a.brightness = rng.random_range(-0.5f32..0.5);
            a.saturation = rng.random_range(0.0f32..2.0);
            a.contrast = rng.random_range(0.5f32..1.5);
        }
        if p.translation {
            a.ti = rng.random_range(-ri..=ri) as isize;
            a.tj = rng.random_range(-rj..=rj) as isize;
        }
        if p.cutout {
            // The centre is uniform over the image (the authors' offset range
            // `0 .. H + (1 - size % 2)`), the square's corner size/2 before it.
            let ci = rng.random_range(0..h + 1 - ch % 2) as isize;
            let cj = rng.random_range(0..w + 1 - cw % 2) as isize;
            (a.cut_i, a.cut_j) = (ci - (ch / 2) as isize, cj - (cw / 2) as isize);
        }
        a
    }));
}

impl DiffAugment {
    /// Draws parameters for every image and augments the batch.
    ///
    /// x: [N, C, H, W] -> y: [N, C, H, W]
    pub fn forward(&mut self, x: Array4<f32>, rng: &mut impl Rng) -> Array4<f32> {
        let (n, _, h, w) = x.dim();
        let params = self.sample(n, h, w, rng);
        self.forward_with(x, params)
    }

    /// Augments with the given parameters, one per image.
    ///
    /// x: [N, C, H, W] -> y: [N, C, H, W]
    pub fn forward_with(&mut self, x: Array4<f32>, params: Vec<AugmentParams>) -> Array4<f32> {
        self.params = params;
        self.apply(x)
    }

    /// Augments with `self.params`, one per image, and keeps the shape for backward.
    ///
    /// x: [N, C, H, W] -> y: [N, C, H, W]
    fn apply(&mut self, x: Array4<f32>) -> Array4<f32> {
        let (n, c, h, w) = x.dim();
        let params = &self.params;
        assert_eq!(params.len(), n, "DiffAugment: {} parameter sets for {n} images", params.len());
        let mut x = super::standard(x);
        let p = self.policy;
        for (img, a) in x.outer_iter_mut().zip(params) {
            let mut img = img.into_shape_with_order((c, h * w)).expect("contiguous image");
            if p.color {
                img.mapv_inplace(|v| v + a.brightness);
                // Saturation: towards (s < 1) or away from the grey of each pixel.
                let grey = grey_into(img.view(), &mut self.grey);
                for mut ch in img.outer_iter_mut() {
                    ch.iter_mut().zip(grey).for_each(|(v, &m)| *v = (*v - m) * a.saturation + m);
                }
                let mean = img.mean().expect("non-empty image");
                img.mapv_inplace(|v| (v - mean) * a.contrast + mean);
            }
        }
        if p.translation {
            x = shift(x, params, 1);
        }
        if p.cutout {
            let (ch, cw) = cutout_size(h, w);
            for (mut img, a) in x.outer_iter_mut().zip(params) {
                for i in clip(a.cut_i, ch, h) {
                    for j in clip(a.cut_j, cw, w) {
                        img.slice_mut(ndarray::s![.., i, j]).fill(0.0);
                    }
                }
            }
        }
        self.shape = (n, c, h, w);
        x
    }

    /// The transpose of each step, in reverse order (every step is linear in x):
    /// - cutout: `dx = dy` outside the square, 0 inside;
    /// - translation: `dx[i, j] = dy[i - ti, j - tj]` (0 where that falls outside);
    /// - contrast: `y = k x + (1 - k) mean x`, so `dx = k dy + (1 - k) mean dy`;
    /// - saturation: likewise per pixel, `dx_c = s dy_c + (1 - s) mean_c dy`;
    /// - brightness: `dx = dy`.
    ///
    /// dy: [N, C, H, W] -> dx: [N, C, H, W]
    pub fn backward(&mut self, dy: Array4<f32>) -> Array4<f32> {
        let (n, c, h, w) = self.shape;
        check_shape("DiffAugment", "dy", &[Some(n), Some(c), Some(h), Some(w)], dy.shape());
        let mut d = super::standard(dy);
        let p = self.policy;
        if p.cutout {
            let (ch, cw) = cutout_size(h, w);
            for (mut img, a) in d.outer_iter_mut().zip(&self.params) {
                for i in clip(a.cut_i, ch, h) {
                    for j in clip(a.cut_j, cw, w) {
                        img.slice_mut(ndarray::s![.., i, j]).fill(0.0);
                    }
                }
            }
        }
        if p.translation {
            d = shift(d, &self.params, -1);
        }
        if p.color {
            for (img, a) in d.outer_iter_mut().zip(&self.params) {
                let mut img = img.into_shape_with_order((c, h * w)).expect("contiguous image");
                let mean = img.mean().expect("non-empty image");
                img.mapv_inplace(|v| a.contrast * v + (1.0 - a.contrast) * mean);
                let grey = grey_into(img.view(), &mut self.grey);
                for mut ch in img.outer_iter_mut() {
                    ch.iter_mut().zip(grey).for_each(|(v, &m)| *v = a.saturation * *v + (1.0 - a.saturation) * m);
                }
            }
        }
        d
    }
}

/// The mean over channels of each pixel of `img: [C, H*W]`, into `out`, with the bits
/// of ndarray's `mean_axis(Axis(0))`: `((0 + x_0) + x_1 + ...) / C`.
fn grey_into<'a>(img: ndarray::ArrayView2<f32>, out: &'a mut Vec<f32>) -> &'a [f32] {
    out.clear();
    out.resize(img.ncols(), 0.0);
    for ch in img.outer_iter() {
        out.iter_mut().zip(ch).for_each(|(g, &v)| *g += v);
    }
    let c = img.nrows() as f32;
    out.iter_mut().for_each(|g| *g /= c);
    out
}

/// Rows (or columns) `start .. start + len` clipped to `0 .. limit`.
fn clip(start: isize, len: usize, limit: usize) -> std::ops::Range<usize> {
    let lo = start.clamp(0, limit as isize) as usize;
    let hi = (start + len as isize).clamp(0, limit as isize) as usize;
    lo..hi
}

/// `out[n, c, i, j] = x[n, c, i + sign*ti, j + sign*tj]`, 0 outside: the translation
/// (`sign` 1) or its transpose (`sign` -1).
fn shift(x: Array4<f32>, params: &[AugmentParams], sign: isize) -> Array4<f32> {
    let (_, _, h, w) = x.dim();
    let mut out = crate::buffers::zeros(x.raw_dim());
    for ((src, mut dst), a) in x.outer_iter().zip(out.outer_iter_mut()).zip(params) {
        let (ti, tj) = (sign * a.ti, sign * a.tj);
        // Output rows i with 0 <= i + ti < h, columns likewise.
        let rows = clip(-ti, h, h);
        let cols = clip(-tj, w, w);
        if rows.is_empty() || cols.is_empty() {
            continue;
        }
        let (r0, c0) = ((rows.start as isize + ti) as usize, (cols.start as isize + tj) as usize);
        dst.slice_mut(ndarray::s![.., rows.clone(), cols.clone()]).assign(&src.slice(ndarray::s![
            ..,
            r0..r0 + rows.len(),
            c0..c0 + cols.len()
        ]));
    }
    crate::buffers::give(x);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_grad_close, dot, numeric_grad, random_array};
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn all() -> AugmentPolicy {
        AugmentPolicy { color: true, translation: true, cutout: true }
    }

    #[test]
    fn policy_names_round_trip() {
        for text in ["none", "color", "translation,cutout", "color,translation,cutout"] {
            assert_eq!(AugmentPolicy::parse(text).unwrap().name(), text);
        }
        assert_eq!(AugmentPolicy::parse("cutout,color").unwrap().name(), "color,cutout");
        assert!(AugmentPolicy::parse("colour").is_none());
    }

    /// Each step by its definition on a small image.
    #[test]
    fn translation_and_cutout_move_and_zero_pixels() {
        let x = Array4::from_shape_fn((1, 1, 4, 5), |(_, _, i, j)| (10 * i + j) as f32 + 1.0);
        let mut aug = DiffAugment::new(AugmentPolicy { translation: true, ..Default::default() });
        let a = AugmentParams { ti: 1, tj: -2, ..AugmentParams::IDENTITY };
        let y = aug.forward_with(x.clone(), vec![a]);
        assert_eq!(y[[0, 0, 0, 2]], x[[0, 0, 1, 0]]);
        assert_eq!(y[[0, 0, 2, 4]], x[[0, 0, 3, 2]]);
        assert_eq!(y[[0, 0, 3, 3]], 0.0, "row 3 + 1 is outside");
        assert_eq!(y[[0, 0, 1, 1]], 0.0, "column 1 - 2 is outside");

        let mut aug = DiffAugment::new(AugmentPolicy { cutout: true, ..Default::default() });
        let a = AugmentParams { cut_i: -1, cut_j: 3, ..AugmentParams::IDENTITY };
        let y = aug.forward_with(x.clone(), vec![a]);
        // A 2x3 square from (-1, 3): rows 0, columns 3 and 4.
        let zeroed: Vec<(usize, usize)> =
            y.indexed_iter().filter(|(_, v)| **v == 0.0).map(|(i, _)| (i.2, i.3)).collect();
        assert_eq!(zeroed, vec![(0, 3), (0, 4)]);
    }

    /// The draws stay in the authors' ranges, and a transformation that is off draws
    /// the identity.
    #[test]
    fn parameters_stay_in_range() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        for a in DiffAugment::new(all()).sample(500, 32, 32, &mut rng) {
            assert!((-0.5..0.5).contains(&a.brightness) && (0.0..2.0).contains(&a.saturation));
            assert!((0.5..1.5).contains(&a.contrast));
            assert!(a.ti.abs() <= 4 && a.tj.abs() <= 4, "{a:?}");
            assert!((-8..=24).contains(&a.cut_i) && (-8..=24).contains(&a.cut_j), "{a:?}");
        }
        let none = DiffAugment::new(AugmentPolicy::default()).sample(3, 32, 32, &mut rng);
        assert!(none.iter().all(|&a| a == AugmentParams::IDENTITY));
    }

    /// backward is the transpose of forward: the gradient of `sum(y * r)` by central
    /// differences, with each image's parameters fixed.
    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        for (c, h, w) in [(3, 8, 7), (1, 6, 6)] {
            let x: Array4<f32> = random_array([3, c, h, w], 1);
            let r: Array4<f32> = random_array([3, c, h, w], 2);
            let mut aug = DiffAugment::new(all());
            let params = aug.sample(3, h, w, &mut rng);
            let y = aug.forward_with(x.clone(), params.clone());
            let dx = aug.backward(r.clone());
            let numeric =
                numeric_grad(&x, 1e-2, |x| dot(&DiffAugment::new(all()).forward_with(x.clone(), params.clone()), &r));
            // A linear map: central differences are exact but for f32 rounding in the sums.
            assert_grad_close(&dx, &numeric, 1e-3, 0.05, &format!("DiffAugment dx, {c}x{h}x{w}"));
            assert_eq!(y.dim(), x.dim());
        }
    }
}
