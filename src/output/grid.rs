//! Image grids: a batch of generated images tiled into one picture, each pixel
//! drawn as a `scale x scale` block (nearest neighbour: 28x28 digits are small at
//! 1x), with a thin light-grey line between cells and, optionally, a caption to the
//! left of each row.

use ndarray::Array4;

use super::png::Image;
use super::text;
use crate::error::Result;

/// Pixels of the line between cells (and around the edge), at any scale.
const GAP: usize = 2;
/// The grey of the lines and of the caption column.
const BACKGROUND: u8 = 200;

/// The magnification pictures get unless told otherwise: 2 for images of 32 pixels
/// a side or less (MNIST's 28, CIFAR-10's 32), else 1.
pub fn default_scale(side: usize) -> usize {
    if side <= 32 { 2 } else { 1 }
}

/// Tiles `images: [rows*cols, C, H, W]` (values in [-1, 1]) row by row into one
/// image, each pixel `scale x scale`, with a light-grey line between cells.
pub fn tile(images: &Array4<f32>, rows: usize, cols: usize, scale: usize) -> Image {
    let (n, c, h, w) = images.dim();
    assert_eq!(n, rows * cols, "tile: {n} images for a {rows}x{cols} grid");
    assert!(scale >= 1, "tile: scale {scale}, expected 1 or more");
    let (h, w) = (h * scale, w * scale);
    let width = cols * (w + GAP) + GAP;
    let height = rows * (h + GAP) + GAP;
    let mut img = Image::filled(width, height, c, BACKGROUND);
    for (i, sample) in images.outer_iter().enumerate() {
        let (top, left) = (GAP + (i / cols) * (h + GAP), GAP + (i % cols) * (w + GAP));
        for y in 0..h {
            let row = &mut img.pixels[((top + y) * width + left) * c..][..w * c];
            for (x, px) in row.chunks_exact_mut(c).enumerate() {
                for (ch, v) in px.iter_mut().enumerate() {
                    *v = to_byte(sample[[ch, y / scale, x / scale]]);
                }
            }
        }
    }
    img
}

/// One caption of a row: a first line, and an optional second line in grey.
pub struct Caption {
    pub title: String,
    pub detail: Option<String>,
}

/// `grid` (made by `tile` with `rows` rows) with a column of captions on its left,
/// one per row, vertically centred on it.
pub fn with_captions(grid: &Image, captions: &[Caption]) -> Result<Image> {
    let rows = captions.len().max(1);
    let row_height = (grid.height - GAP) / rows;
    let font = text::font()?;
    // A title fits a row of 28 pixels (MNIST at 1x); larger rows take larger text.
    let size = (row_height as f32 * 0.3).clamp(10.0, 18.0);
    let small = (size * 0.8).round();
    let text_width = captions
        .iter()
        .flat_map(|c| {
            std::iter::once(text::width(&font, &c.title, size))
                .chain(c.detail.iter().map(|d| text::width(&font, d, small)))
        })
        .fold(0f32, f32::max)
        .ceil() as usize;
    let margin = GAP + 6;
    let left = text_width + 2 * margin;
    let mut img = Image::filled(grid.width + left, grid.height, grid.channels, BACKGROUND);
    let c = grid.channels;
    for y in 0..grid.height {
        img.pixels[(y * img.width + left) * c..][..grid.width * c]
            .copy_from_slice(&grid.pixels[y * grid.width * c..][..grid.width * c]);
    }
    for (r, caption) in captions.iter().enumerate() {
        let lines = if caption.detail.is_some() { size + small + 2.0 } else { size };
        let top = GAP + r * row_height + ((row_height as f32 - lines) / 2.0).max(0.0) as usize;
        text::draw(&mut img, &font, (margin as i32, top as i32 - 1), &caption.title, size, [0, 0, 0]);
        if let Some(detail) = &caption.detail {
            let y = top as i32 + (size + 2.0) as i32;
            text::draw(&mut img, &font, (margin as i32, y), detail, small, [90, 90, 90]);
        }
    }
    Ok(img)
}

/// [-1, 1] to 0..=255, clamped, rounded to nearest.
pub fn to_byte(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pixel_becomes_a_block_and_the_lines_stay_thin() {
        // Two 2x3 images, one row: values -1 (0), 0 (128), 1 (255).
        let images = Array4::from_shape_fn((2, 1, 2, 3), |(i, _, y, x)| (i as f32 + y as f32 + x as f32) / 2.0 - 1.0);
        for scale in [1, 3] {
            let img = tile(&images, 1, 2, scale);
            assert_eq!((img.width, img.height), (2 * (3 * scale + GAP) + GAP, 2 * scale + 2 * GAP));
            for i in 0..2 {
                for y in 0..2 * scale {
                    for x in 0..3 * scale {
                        let at = (GAP + y) * img.width + GAP + i * (3 * scale + GAP) + x;
                        let expected = to_byte(images[[i, 0, y / scale, x / scale]]);
                        assert_eq!(img.pixels[at], expected, "scale {scale}, image {i}, pixel ({y}, {x})");
                    }
                }
            }
            assert!(img.pixels[..img.width * GAP].iter().all(|&v| v == BACKGROUND), "the top line");
        }
    }

    #[test]
    fn captions_sit_left_of_their_rows() {
        let images = Array4::from_elem((2, 3, 4, 4), 1.0);
        let grid = tile(&images, 2, 1, 7);
        let captions = [
            Caption { title: "horse".into(), detail: Some("value 0".into()) },
            Caption { title: "ship".into(), detail: None },
        ];
        let img = with_captions(&grid, &captions).unwrap();
        let left = img.width - grid.width;
        assert!(left > 20, "caption column of {left} pixels");
        assert_eq!(img.height, grid.height);
        // The grid is unchanged on the right, and something dark is written in each
        // row's caption.
        for y in 0..grid.height {
            assert_eq!(
                img.pixels[(y * img.width + left) * 3..][..grid.width * 3],
                grid.pixels[y * grid.width * 3..][..grid.width * 3]
            );
        }
        let row_height = (grid.height - GAP) / 2;
        for r in 0..2 {
            let dark = (GAP + r * row_height..GAP + (r + 1) * row_height)
                .flat_map(|y| (0..left).map(move |x| (y, x)))
                .filter(|&(y, x)| img.pixels[(y * img.width + x) * 3] < 100)
                .count();
            assert!(dark > 10, "row {r}: {dark} dark caption pixels");
        }
    }
}
