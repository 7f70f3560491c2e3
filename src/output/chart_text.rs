//! A plotters backend that draws text with each glyph at its proper place.
//!
//! plotters 0.3.7 draws an embedded font's glyphs (its `ab_glyph` feature) at the
//! pen position without their left side bearings, so letters sit unevenly ("1 .5",
//! "gen erated"); its other text path needs the system's fonts. This backend is
//! plotters' bitmap backend with `draw_text` replaced: the same layout box and
//! anchoring as plotters' default, and ab_glyph's outlines placed where the font
//! puts them.

use super::text::layout;
use ab_glyph::FontRef;
use plotters::prelude::BitMapBackend;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind};

/// `BitMapBackend`, with text drawn from `font`.
pub struct TextBackend<'a> {
    pub inner: BitMapBackend<'a>,
    pub font: FontRef<'static>,
}

type Failure<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> DrawingBackend for TextBackend<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), Failure<'a>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), Failure<'a>> {
        self.inner.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), Failure<'a>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), Failure<'a>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), Failure<'a>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), Failure<'a>> {
        self.inner.draw_path(path, style)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), Failure<'a>> {
        self.inner.fill_polygon(vert, style)
    }

    fn draw_text<S: BackendTextStyle>(&mut self, text: &str, style: &S, pos: BackendCoord) -> Result<(), Failure<'a>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        // Anchoring as in plotters' default `draw_text`, on its own layout box.
        let ((min_x, min_y), (max_x, max_y)) =
            style.layout_box(text).map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        // The glyphs: the pen advances (with kerning) as in plotters' layout box, and
        // each outline is drawn inside its own pixel bounds, bearings included, on a
        // baseline one ascent below the box's top.
        let (coverage, _) = layout(&self.font, text, style.size() as f32);
        let trans = style.transform();
        let (w, h) = self.get_size();
        for (x, y, v) in coverage {
            let (x, y) = trans.transform(x + dx - min_x, y + dy - min_y);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if v > 0.0 && x >= 0 && y >= 0 && x < w as i32 && y < h as i32 {
                self.inner
                    .draw_pixel((x, y), BackendColor { alpha: color.alpha * v.min(1.0) as f64, rgb: color.rgb })?;
            }
        }
        Ok(())
    }
}
