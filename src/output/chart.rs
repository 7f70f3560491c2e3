//! Line charts as PNG: one or more stacked panels sharing an x axis, each with axes,
//! ticks, grid lines, a title and a legend, drawn by the plotters crate into an RGB
//! buffer. The text is `text`'s built-in font: plotters measures it, and
//! `chart_text` draws it.

use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::chart_text::TextBackend;
use super::png::Image;
use super::text::{self, FONT};
use crate::error::{Error, Result};

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

/// The family the font is registered under with plotters.
const FAMILY: &str = "sans-serif";
const GRID: RGBColor = RGBColor(225, 225, 225);
/// About how many ticks each axis gets.
const X_TICKS: usize = 8;
const Y_TICKS: usize = 6;

/// Registers the font with plotters, once per process.
fn font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    ok.then_some(()).ok_or_else(|| Error::Invalid("the charts' built-in font does not load".into()))
}

/// The data range of a panel's curves, padded a little; `(0, 1)` if there is no data.
fn data_range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo - pad * (hi - lo), hi + pad * (hi - lo))
}

/// A tick label with as few decimals as ticks about `(hi - lo) / ticks` apart need,
/// at the 1-2-5 steps plotters places them at.
fn tick_label(v: f64, lo: f64, hi: f64, ticks: usize) -> String {
    if v.abs() >= 1e5 || (v != 0.0 && v.abs() < 1e-3) {
        return format!("{v:.1e}");
    }
    let raw = (hi - lo) / ticks as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return format!("{v}");
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

fn draw_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::Invalid(format!("cannot draw the chart: {e}"))
}

/// Draws `panels` stacked top to bottom in a `width x height` RGB image, sharing the
/// x axis (labelled `x_label` under the last panel).
pub fn render(panels: &[Panel], x_label: &str, width: usize, height: usize) -> Result<Image> {
    font()?;
    let mut pixels = vec![255u8; width * height * 3];
    {
        let inner = BitMapBackend::with_buffer(&mut pixels, (width as u32, height as u32));
        let font = text::font()?;
        let root = TextBackend { inner, font }.into_drawing_area();
        // No padding on x: curves start at the left edge.
        let all_x = panels.iter().flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|pt| pt.0)));
        let (x_lo, x_hi) = data_range(all_x, 0.0);
        for (i, (panel, area)) in panels.iter().zip(root.split_evenly((panels.len().max(1), 1))).enumerate() {
            let last = i + 1 == panels.len();
            let ys = panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
            let (y_lo, y_hi) = panel.y_range.unwrap_or_else(|| data_range(ys, 0.05));
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.title, (FAMILY, 20))
                .margin(12)
                .margin_right(30)
                .x_label_area_size(if last { 50 } else { 30 })
                .y_label_area_size(70)
                .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
                .map_err(draw_error)?;
            let x_tick = |v: &f64| tick_label(*v, x_lo, x_hi, X_TICKS);
            let y_tick = |v: &f64| tick_label(*v, y_lo, y_hi, Y_TICKS);
            let mut mesh = chart.configure_mesh();
            mesh.bold_line_style(GRID)
                .light_line_style(WHITE)
                .x_labels(X_TICKS)
                .y_labels(Y_TICKS)
                .x_label_formatter(&x_tick)
                .y_label_formatter(&y_tick)
                .label_style((FAMILY, 15))
                .axis_desc_style((FAMILY, 16))
                .y_desc(&panel.y_label);
            if last {
                mesh.x_desc(x_label);
            }
            mesh.draw().map_err(draw_error)?;
            for s in &panel.series {
                let color = RGBColor(s.color[0], s.color[1], s.color[2]);
                let points = s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite());
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))
                    .map_err(draw_error)?
                    .label(&s.label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3)));
            }
            if !panel.series.is_empty() {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.9))
                    .border_style(BLACK)
                    .label_font((FAMILY, 15))
                    .draw()
                    .map_err(draw_error)?;
            }
        }
        root.present().map_err(draw_error)?;
    }
    Ok(Image { width, height, channels: 3, pixels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_have_the_decimals_of_the_step() {
        assert_eq!(tick_label(50.0, 10.0, 200.0, 8), "50");
        assert_eq!(tick_label(0.4, 0.35, 0.92, 6), "0.4");
        assert_eq!(tick_label(-0.35, -0.47, -0.33, 6), "-0.35");
        assert_eq!(tick_label(2e6, 0.0, 4e6, 8), "2.0e6");
    }

    #[test]
    fn a_chart_has_its_curves_and_its_text() {
        let series =
            |color| Series { label: "a curve".into(), points: vec![(0.0, 0.0), (1.0, 1.0), (2.0, 0.5)], color };
        let panels = [
            Panel { title: "First".into(), y_label: "y".into(), series: vec![series(PALETTE[0])], y_range: None },
            Panel {
                title: "Second".into(),
                y_label: "y".into(),
                series: vec![series(PALETTE[1])],
                y_range: Some((0.0, 1.0)),
            },
        ];
        let img = render(&panels, "step", 400, 500).unwrap();
        assert_eq!((img.width, img.height, img.channels, img.pixels.len()), (400, 500, 3, 400 * 500 * 3));
        let count = |rgb: [u8; 3], rows: std::ops::Range<usize>| {
            img.pixels[rows.start * 400 * 3..rows.end * 400 * 3].chunks(3).filter(|p| *p == rgb).count()
        };
        assert!(count(PALETTE[0], 0..250) > 100, "the first curve is missing from the top panel");
        assert!(count(PALETTE[1], 250..500) > 100, "the second curve is missing from the bottom panel");
        // The titles: dark pixels in the top rows.
        let dark = img.pixels[..30 * 400 * 3].chunks(3).filter(|p| p.iter().all(|&v| v < 100)).count();
        assert!(dark > 20, "no title text ({dark} dark pixels)");
    }
}
