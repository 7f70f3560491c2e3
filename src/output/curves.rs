//! The charts of a run: `losses.png` from `losses.csv`, and the columns of a CSV as
//! chart points (`infogan plot`).

use std::path::Path;

use super::chart::{PALETTE, Panel, Series, render};
use super::csv::{self, LossRow};
use crate::error::{Error, Result};

/// The column `name` of a CSV against its `step` column.
pub fn column(header: &[String], rows: &[Vec<f64>], name: &str, path: &Path) -> Result<Vec<(f64, f64)>> {
    let find =
        |n: &str| header.iter().position(|h| h == n).ok_or_else(|| Error::bad_file(path, format!("has no column {n}")));
    let (x, y) = (find("step")?, find(name)?);
    Ok(rows.iter().filter(|r| r.len() > x.max(y)).map(|r| (r[x], r[y])).collect())
}

/// A value of a `losses.csv` row.
type Column = fn(&LossRow) -> f64;

/// `losses.png`: the three losses, and D's mean outputs on real and generated images.
pub fn losses_chart(csv_path: &Path, png_path: &Path) -> Result<()> {
    let rows: Vec<LossRow> = csv::read_rows(csv_path)?;
    let series = |columns: &[(Column, &str)]| -> Vec<Series> {
        let series = columns.iter().enumerate().map(|(i, (value, label))| Series {
            label: label.to_string(),
            points: rows.iter().map(|r| (r.step as f64, value(r))).collect(),
            color: PALETTE[i],
        });
        series.collect()
    };
    let losses = Panel {
        title: "Losses".into(),
        y_label: "loss".into(),
        series: series(&[(|r| r.d_loss, "D loss"), (|r| r.g_loss, "G loss"), (|r| r.info_loss, "info loss")]),
        y_range: None,
    };
    let outputs = Panel {
        title: "Discriminator's mean output".into(),
        y_label: "probability".into(),
        series: series(&[(|r| r.d_real, "D(x) real"), (|r| r.d_fake, "D(G(z)) generated")]),
        y_range: Some((0.0, 1.0)),
    };
    render(&[losses, outputs], "step", 900, 700)?.save(png_path)
}
