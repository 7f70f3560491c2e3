//! Random affine warps of images (rotation, zoom and shear about the centre, bilinear
//! sampling), the augmentation behind `--q-consistency`: Q reads the categorical code
//! of a real image and of a warped copy, and is asked to read the same (Elastic-
//! InfoGAN, Ojha et al., 2020, section 3.2; their ranges: rotation up to 20 degrees,
//! zoom 0.9 to 1.1). A code that follows slant or size then costs Q its accuracy on
//! real images, so the partition G settles on is pushed towards identity.
//!
//! No gradient flows through a warp: it is applied to real images only.

use ndarray::{ArrayView4, ArrayViewMut4};
use rand::{Rng, RngExt};

/// The largest rotation, in degrees, either way.
pub const MAX_ROTATION_DEG: f32 = 20.0;
/// Zoom factors are drawn from `1 +- MAX_ZOOM`.
pub const MAX_ZOOM: f32 = 0.1;
/// The largest horizontal shear (pixels of shift per pixel of height), either way:
/// the slant of handwriting.
pub const MAX_SHEAR: f32 = 0.2;

/// One warp: the output pixel at `p` (row, column) samples the input at
/// `centre + m (p - centre)`, `m = [[m[0], m[1]], [m[2], m[3]]]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warp {
    pub m: [f32; 4],
}

impl Warp {
    pub const IDENTITY: Warp = Warp { m: [1.0, 0.0, 0.0, 1.0] };

    /// The warp that rotates the content by `degrees` (counter-clockwise as seen),
    /// scales it by `zoom` and slants it by `shear`: the inverse of that map, which
    /// is what sampling needs.
    pub fn new(degrees: f32, zoom: f32, shear: f32) -> Warp {
        let (sin, cos) = degrees.to_radians().sin_cos();
        // The forward map on (row, col) offsets from the centre, rows growing
        // downwards: shear S = [[1, 0], [-shear, 1]] (the top leans right), then the
        // turn R = [[cos, -sin], [sin, cos]] (counter-clockwise as seen), then the
        // zoom. Sampling needs its inverse, S^-1 R^-1 / zoom, with R^-1 = R^T.
        let inv_rot = [cos, sin, -sin, cos];
        // S^-1 = [[1, 0], [shear, 1]].
        let inv = [inv_rot[0], inv_rot[1], shear * inv_rot[0] + inv_rot[2], shear * inv_rot[1] + inv_rot[3]];
        Warp { m: inv.map(|v| v / zoom) }
    }

    /// A warp drawn uniformly from the module's ranges.
    pub fn draw(rng: &mut impl Rng) -> Warp {
        let degrees = rng.random_range(-MAX_ROTATION_DEG..MAX_ROTATION_DEG);
        let zoom = rng.random_range(1.0 - MAX_ZOOM..1.0 + MAX_ZOOM);
        let shear = rng.random_range(-MAX_SHEAR..MAX_SHEAR);
        Warp::new(degrees, zoom, shear)
    }
}

/// Writes image `i` of `x`, warped by `warps[i]`, into image `i` of `out`; every
/// channel takes the same warp, and points that fall outside the image take `fill`
/// (the background: -1, black, for images scaled to tanh's range).
///
/// x, out: [N, C, H, W]
pub fn warp_into(x: ArrayView4<f32>, warps: &[Warp], fill: f32, mut out: ArrayViewMut4<f32>) {
    let (n, c, h, w) = x.dim();
    assert_eq!(out.dim(), x.dim(), "warp_into: output shape");
    assert_eq!(warps.len(), n, "warp_into: one warp per image");
    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    for ((src, warp), mut dst) in x.outer_iter().zip(warps).zip(out.outer_iter_mut()) {
        let m = warp.m;
        for i in 0..h {
            for j in 0..w {
                let (dy, dx) = (i as f32 - cy, j as f32 - cx);
                let (sy, sx) = (cy + m[0] * dy + m[1] * dx, cx + m[2] * dy + m[3] * dx);
                let (y0, x0) = (sy.floor(), sx.floor());
                let (fy, fx) = (sy - y0, sx - x0);
                let (y0, x0) = (y0 as isize, x0 as isize);
                // The four neighbours, each `fill` outside the image.
                let at = |ch: usize, y: isize, xx: isize| {
                    if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                        fill
                    } else {
                        src[[ch, y as usize, xx as usize]]
                    }
                };
                for ch in 0..c {
                    let top = at(ch, y0, x0) * (1.0 - fx) + at(ch, y0, x0 + 1) * fx;
                    let bottom = at(ch, y0 + 1, x0) * (1.0 - fx) + at(ch, y0 + 1, x0 + 1) * fx;
                    dst[[ch, i, j]] = top * (1.0 - fy) + bottom * fy;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_array;
    use ndarray::{Array4, s};
    use rand::SeedableRng;

    #[test]
    fn the_identity_warp_copies_the_images() {
        let x: Array4<f32> = random_array([3, 2, 5, 6], 1);
        let mut out = Array4::zeros((3, 2, 5, 6));
        warp_into(x.view(), &[Warp::IDENTITY; 3], -1.0, out.view_mut());
        assert_eq!(out, x);
        assert_eq!(Warp::new(0.0, 1.0, 0.0), Warp::IDENTITY);
    }

    /// A quarter turn of an odd-sized image moves every pixel onto another exactly.
    #[test]
    fn a_quarter_turn_permutes_pixels() {
        let x: Array4<f32> = random_array([1, 1, 5, 5], 2);
        let mut out = Array4::zeros((1, 1, 5, 5));
        warp_into(x.view(), &[Warp::new(90.0, 1.0, 0.0)], -1.0, out.view_mut());
        for i in 0..5 {
            for j in 0..5 {
                // Counter-clockwise as seen: the top-right corner goes to the top left.
                let want = x[[0, 0, j, 4 - i]];
                assert!((out[[0, 0, i, j]] - want).abs() < 1e-5, "({i}, {j}): {} vs {want}", out[[0, 0, i, j]]);
            }
        }
    }

    /// Zooming in by 2 about the centre of a 5x5 image puts input pixel (1, 1) at the
    /// corner (0, 0) and keeps the centre; zooming out brings in the fill.
    #[test]
    fn zoom_scales_about_the_centre() {
        let x: Array4<f32> = random_array([1, 1, 5, 5], 3);
        let mut out = Array4::zeros((1, 1, 5, 5));
        warp_into(x.view(), &[Warp::new(0.0, 2.0, 0.0)], -1.0, out.view_mut());
        assert!((out[[0, 0, 0, 0]] - x[[0, 0, 1, 1]]).abs() < 1e-6);
        assert!((out[[0, 0, 2, 2]] - x[[0, 0, 2, 2]]).abs() < 1e-6);
        let mean = (x[[0, 0, 1, 1]] + x[[0, 0, 1, 2]]) / 2.0;
        assert!((out[[0, 0, 0, 1]] - mean).abs() < 1e-6, "half-way samples average their neighbours");
        warp_into(x.view(), &[Warp::new(0.0, 0.5, 0.0)], -1.0, out.view_mut());
        assert_eq!(out[[0, 0, 0, 0]], -1.0);
        assert!((out[[0, 0, 1, 1]] - x[[0, 0, 0, 0]]).abs() < 1e-6);
    }

    /// A positive shear leans the top of the content to the right.
    #[test]
    fn shear_slants_the_rows() {
        let mut x = Array4::from_elem((1, 1, 5, 5), -1.0f32);
        x.slice_mut(s![0, 0, .., 2]).fill(1.0);
        let mut out = Array4::zeros((1, 1, 5, 5));
        warp_into(x.view(), &[Warp::new(0.0, 1.0, 0.5)], -1.0, out.view_mut());
        assert_eq!(out[[0, 0, 2, 2]], 1.0, "the centre row stays");
        assert_eq!(out[[0, 0, 0, 3]], 1.0, "two rows up, one column right");
        assert_eq!(out[[0, 0, 4, 1]], 1.0, "two rows down, one column left");
    }

    #[test]
    fn drawn_warps_stay_in_their_ranges() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(4);
        for _ in 0..200 {
            let m = Warp::draw(&mut rng).m;
            let det = m[0] * m[3] - m[1] * m[2];
            // det = 1 / zoom^2 (rotation and shear keep area).
            let zoom = (1.0 / det).sqrt();
            assert!((1.0 - MAX_ZOOM - 1e-4..=1.0 + MAX_ZOOM + 1e-4).contains(&zoom), "zoom {zoom}");
        }
    }
}
