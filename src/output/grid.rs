//! Image grids: a batch of generated images tiled into one picture.

use ndarray::Array4;

use super::png::Image;

/// Pixels between tiles (and around the edge).
const GAP: usize = 2;

/// Tiles `images: [rows*cols, C, H, W]` (values in [-1, 1]) row by row into one image,
/// with a light-grey gap between tiles.
pub fn tile(images: &Array4<f32>, rows: usize, cols: usize) -> Image {
    let (n, c, h, w) = images.dim();
    assert_eq!(n, rows * cols, "tile: {n} images for a {rows}x{cols} grid");
    let width = cols * (w + GAP) + GAP;
    let height = rows * (h + GAP) + GAP;
    let mut img = Image::filled(width, height, c, 200);
    for (i, sample) in images.outer_iter().enumerate() {
        let (top, left) = (GAP + (i / cols) * (h + GAP), GAP + (i % cols) * (w + GAP));
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    img.pixels[((top + y) * width + left + x) * c + ch] = to_byte(sample[[ch, y, x]]);
                }
            }
        }
    }
    img
}

/// [-1, 1] to 0..=255, clamped, rounded to nearest.
pub fn to_byte(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Each pixel as a `factor x factor` block (nearest neighbour), for small images.
pub fn upscale(img: &Image, factor: usize) -> Image {
    let factor = factor.max(1);
    let (w, h, c) = (img.width * factor, img.height * factor, img.channels);
    let mut out = Image::filled(w, h, c, 0);
    for y in 0..h {
        for x in 0..w {
            let src = ((y / factor) * img.width + x / factor) * c;
            out.pixels[(y * w + x) * c..][..c].copy_from_slice(&img.pixels[src..src + c]);
        }
    }
    out
}
