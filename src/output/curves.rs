//! The charts of a run: `losses.png` from `losses.csv`.

use std::path::Path;

use super::chart::{PALETTE, Panel, Series, render};
use super::csv;
use crate::error::{Error, Result};

/// The column `name` of a CSV against its `step` column.
pub fn column(header: &[String], rows: &[Vec<f64>], name: &str, path: &Path) -> Result<Vec<(f64, f64)>> {
    let find =
        |n: &str| header.iter().position(|h| h == n).ok_or_else(|| Error::bad_file(path, format!("has no column {n}")));
    let (x, y) = (find("step")?, find(name)?);
    Ok(rows.iter().filter(|r| r.len() > x.max(y)).map(|r| (r[x], r[y])).collect())
}

/// `losses.png`: the three losses, and D's mean outputs on real and generated images.
pub fn losses_chart(csv_path: &Path, png_path: &Path) -> Result<()> {
    let (header, rows) = csv::read(csv_path)?;
    let series = |names: &[(&str, &str)]| -> Result<Vec<Series>> {
        names
            .iter()
            .enumerate()
            .map(|(i, (col, label))| {
                Ok(Series {
                    label: label.to_string(),
                    points: column(&header, &rows, col, csv_path)?,
                    color: PALETTE[i],
                })
            })
            .collect()
    };
    let losses = Panel {
        title: "Losses".into(),
        y_label: "loss".into(),
        series: series(&[("d_loss", "D loss"), ("g_loss", "G loss"), ("info_loss", "info loss")])?,
        y_range: None,
    };
    let outputs = Panel {
        title: "Discriminator's mean output".into(),
        y_label: "probability".into(),
        series: series(&[("d_real", "D(x) real"), ("d_fake", "D(G(z)) generated")])?,
        y_range: Some((0.0, 1.0)),
    };
    render(&[losses, outputs], "step", 900, 700).save(png_path)
}
