//! Text in pictures: chart labels and the captions of sample grids. The font is
//! DejaVu Sans (an ASCII subset compiled into the binary, with its licence in
//! `assets/fonts/`), so no picture needs the system's fonts. Each glyph is placed
//! where the font puts it, bearings and kerning included.

use ab_glyph::{Font, FontRef, ScaleFont, point};

use super::png::Image;
use crate::error::{Error, Result};

/// The font's bytes.
pub const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");

/// The compiled-in font.
pub fn font() -> Result<FontRef<'static>> {
    FontRef::try_from_slice(FONT).map_err(|_| Error::Invalid("the built-in font does not load".into()))
}

/// A line of text laid out at `size` pixels: each covered pixel `(x, y, coverage)`
/// relative to the line's top left corner (the baseline one ascent below it), and the
/// pen's advance, the line's width.
pub fn layout(font: &FontRef<'_>, text: &str, size: f32) -> (Vec<(i32, i32, f32)>, f32) {
    let scaled = font.as_scaled(size);
    let mut coverage = Vec::new();
    let (mut pen, mut previous) = (0f32, None);
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            pen += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(scaled.scale(), point(pen, scaled.ascent()));
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|x, y, v| coverage.push((b.min.x as i32 + x as i32, b.min.y as i32 + y as i32, v)));
        }
        pen += scaled.h_advance(id);
        previous = Some(id);
    }
    (coverage, pen)
}

/// The width in pixels of `text` at `size`.
pub fn width(font: &FontRef<'_>, text: &str, size: f32) -> f32 {
    layout(font, text, size).1
}

/// Draws `text` into `img` with its top left corner at `(left, top)`, blending
/// `rgb` over what is there (a grey image takes the colour's mean); what falls
/// outside the image is clipped.
pub fn draw(img: &mut Image, font: &FontRef<'_>, (left, top): (i32, i32), text: &str, size: f32, rgb: [u8; 3]) {
    let (coverage, _) = layout(font, text, size);
    let c = img.channels;
    let gray = (rgb.iter().map(|&v| v as u32).sum::<u32>() / 3) as u8;
    for (x, y, v) in coverage {
        let (x, y) = (left + x, top + y);
        if v <= 0.0 || x < 0 || y < 0 || x as usize >= img.width || y as usize >= img.height {
            continue;
        }
        let at = (y as usize * img.width + x as usize) * c;
        let v = v.min(1.0);
        let targets: &[u8] = if c == 1 { std::slice::from_ref(&gray) } else { &rgb };
        for (px, &target) in img.pixels[at..at + c].iter_mut().zip(targets) {
            *px = (*px as f32 + (target as f32 - *px as f32) * v).round() as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_drawn_inside_its_width_and_clipped_at_the_edge() {
        let font = font().unwrap();
        let w = width(&font, "horse", 14.0);
        assert!(w > 20.0 && w < 60.0, "width of 'horse' at 14 px: {w}");
        let mut img = Image::filled(40, 20, 3, 255);
        draw(&mut img, &font, (2, 2), "horse", 14.0, [0, 0, 0]);
        let dark: Vec<usize> = (0..img.width * img.height).filter(|p| img.pixels[p * 3] < 128).collect();
        assert!(!dark.is_empty(), "nothing drawn");
        assert!(dark.iter().all(|p| p % img.width >= 2 && p % img.width < 2 + w.ceil() as usize + 1));
        // Off the image: nothing happens, nothing panics.
        draw(&mut img, &font, (-100, 50), "x", 14.0, [0, 0, 0]);
    }
}
