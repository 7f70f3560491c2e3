//! Line charts as PNG: one or more stacked panels sharing an x axis, each with axes,
//! "nice" ticks, grid lines, a title and a legend. Drawn pixel by pixel with the
//! built-in 5x7 font, so charts need no plotting library.

use super::font;
use super::png::Image;

/// One curve: its label in the legend, its points, its colour.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: [u8; 3],
}

/// One panel: a title, a y-axis label and its curves. `y_range` fixes the y axis
/// (otherwise it fits the data).
#[derive(Debug, Clone, Default)]
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub y_range: Option<(f64, f64)>,
}

/// Distinct colours for curves, in order (Tableau 10).
pub const PALETTE: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

/// Text scale: font pixels are drawn as 2x2 blocks.
const SCALE: usize = 2;
const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];
const GRID: [u8; 3] = [225, 225, 225];
const LEFT: usize = 90;
const RIGHT: usize = 40;
const TOP: usize = 34;
const BOTTOM: usize = 50;

struct Canvas {
    img: Image,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.img.width && (y as usize) < self.img.height {
            let i = (y as usize * self.img.width + x as usize) * 3;
            self.img.pixels[i..i + 3].copy_from_slice(&color);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3]) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, color);
            }
        }
    }

    /// A line two pixels wide (Bresenham).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, color);
            self.set(x, y + 1, color);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn text(&mut self, x: i64, y: i64, s: &str, color: [u8; 3]) {
        for (i, ch) in s.chars().enumerate() {
            let left = x + (i * font::ADVANCE * SCALE) as i64;
            for fy in 0..font::HEIGHT {
                for fx in 0..font::WIDTH {
                    if font::pixel(ch, fx, fy) {
                        let (px, py) = (left + (fx * SCALE) as i64, y + (fy * SCALE) as i64);
                        self.rect(px, py, px + SCALE as i64 - 1, py + SCALE as i64 - 1, color);
                    }
                }
            }
        }
    }

    /// Text rotated a quarter turn counter-clockwise (for the y-axis label).
    fn text_vertical(&mut self, x: i64, y_bottom: i64, s: &str, color: [u8; 3]) {
        for (i, ch) in s.chars().enumerate() {
            let base = y_bottom - (i * font::ADVANCE * SCALE) as i64;
            for fy in 0..font::HEIGHT {
                for fx in 0..font::WIDTH {
                    if font::pixel(ch, fx, fy) {
                        let (px, py) = (x + (fy * SCALE) as i64, base - (fx * SCALE) as i64);
                        self.rect(px, py - SCALE as i64 + 1, px + SCALE as i64 - 1, py, color);
                    }
                }
            }
        }
    }
}

fn text_width(s: &str) -> usize {
    s.chars().count() * font::ADVANCE * SCALE
}

/// Tick positions at 1, 2 or 5 times a power of ten, about `target` of them.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A tick label: as few digits as the tick step needs.
fn format_tick(v: f64, step: f64) -> String {
    if v.abs() >= 1e5 || (v != 0.0 && v.abs() < 1e-3) {
        return format!("{v:.1e}");
    }
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    format!("{v:.decimals$}")
}

/// The data range of a panel's curves, padded a little; `(0, 1)` if there is no data.
fn data_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// Draws `panels` stacked top to bottom in a `width x height` RGB image, sharing the
/// x axis (labelled `x_label` under the last panel).
pub fn render(panels: &[Panel], x_label: &str, width: usize, height: usize) -> Image {
    let mut c = Canvas { img: Image::filled(width, height, 3, 255) };
    let all_x = panels.iter().flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|pt| pt.0)));
    let (x_lo, x_hi) = {
        let (lo, hi) = data_range(all_x);
        // No padding on x: curves start at the left edge.
        let pad = (hi - lo) / 1.1 * 0.05;
        (lo + pad, hi - pad)
    };
    let panel_h = height / panels.len().max(1);
    for (pi, panel) in panels.iter().enumerate() {
        let top = pi * panel_h + TOP;
        let bottom = if pi + 1 == panels.len() { height - 60 } else { (pi + 1) * panel_h - BOTTOM };
        let (left, right) = (LEFT, width - RIGHT);
        let (y_lo, y_hi) =
            panel.y_range.unwrap_or_else(|| data_range(panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.1))));
        let to_px = |x: f64, y: f64| -> (i64, i64) {
            let fx = (x - x_lo) / (x_hi - x_lo).max(1e-12);
            let fy = (y - y_lo) / (y_hi - y_lo).max(1e-12);
            (
                left as i64 + (fx * (right - left) as f64).round() as i64,
                bottom as i64 - (fy * (bottom - top) as f64).round() as i64,
            )
        };
        // Grid and y ticks.
        let y_ticks = nice_ticks(y_lo, y_hi, 5);
        let y_step = if y_ticks.len() > 1 { y_ticks[1] - y_ticks[0] } else { 1.0 };
        for &t in &y_ticks {
            let (_, py) = to_px(x_lo, t);
            c.rect(left as i64, py, right as i64, py, GRID);
            c.rect(left as i64 - 5, py, left as i64 - 1, py, BLACK);
            let label = format_tick(t, y_step);
            c.text(left as i64 - 8 - text_width(&label) as i64, py - 7, &label, BLACK);
        }
        let x_ticks = nice_ticks(x_lo, x_hi, 6);
        let x_step = if x_ticks.len() > 1 { x_ticks[1] - x_ticks[0] } else { 1.0 };
        for &t in &x_ticks {
            let (px, _) = to_px(t, y_lo);
            c.rect(px, top as i64, px, bottom as i64, GRID);
            c.rect(px, bottom as i64 + 1, px, bottom as i64 + 5, BLACK);
            let label = format_tick(t, x_step);
            c.text(px - text_width(&label) as i64 / 2, bottom as i64 + 9, &label, BLACK);
        }
        // Curves, clipped to the plot area by skipping points outside it.
        for s in &panel.series {
            let pts: Vec<(i64, i64)> =
                s.points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()).map(|&(x, y)| to_px(x, y)).collect();
            let inside = |p: &(i64, i64)| p.1 >= top as i64 - 1 && p.1 <= bottom as i64 + 1;
            for w in pts.windows(2) {
                if inside(&w[0]) && inside(&w[1]) {
                    c.line(w[0], w[1], s.color);
                }
            }
        }
        // Axes box.
        c.rect(left as i64, top as i64, right as i64, top as i64, BLACK);
        c.rect(left as i64, bottom as i64, right as i64, bottom as i64, BLACK);
        c.rect(left as i64, top as i64, left as i64, bottom as i64, BLACK);
        c.rect(right as i64, top as i64, right as i64, bottom as i64, BLACK);
        // Title and y label.
        c.text(left as i64, top as i64 - 24, &panel.title, BLACK);
        let label_len = text_width(&panel.y_label) as i64;
        c.text_vertical(6, (top + bottom) as i64 / 2 + label_len / 2, &panel.y_label, BLACK);
        // Legend, top right inside the plot.
        let legend_w = panel.series.iter().map(|s| text_width(&s.label)).max().unwrap_or(0) + 40;
        let (lx, ly) = (right as i64 - legend_w as i64 - 8, top as i64 + 8);
        let lh = (panel.series.len() * 20 + 8) as i64;
        c.rect(lx, ly, lx + legend_w as i64, ly + lh, WHITE);
        for (i, s) in panel.series.iter().enumerate() {
            let y = ly + 6 + 20 * i as i64;
            c.rect(lx + 6, y + 5, lx + 26, y + 8, s.color);
            c.text(lx + 32, y, &s.label, BLACK);
        }
        c.rect(lx, ly, lx + legend_w as i64, ly, BLACK);
        c.rect(lx, ly + lh, lx + legend_w as i64, ly + lh, BLACK);
        c.rect(lx, ly, lx, ly + lh, BLACK);
        c.rect(lx + legend_w as i64, ly, lx + legend_w as i64, ly + lh, BLACK);
    }
    let xl = x_label;
    c.text((width - text_width(xl)) as i64 / 2, height as i64 - 22, xl, BLACK);
    c.img
}
