//! `infogan plot`: the information curves of several runs overlaid in one chart, for
//! example InfoGAN against the plain GAN (the paper's figure 1), with the categorical
//! accuracy of each run per epoch and, where `metrics.csv` has them, the image scores.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::output::chart::{PALETTE, Panel, Series, render};
use crate::output::csv;
use crate::output::curves::column;

#[derive(Args)]
pub struct PlotArgs {
    /// Run folders written by `infogan train` (each with information.csv and metrics.csv)
    #[arg(required = true, value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,
    /// The PNG file to write
    #[arg(long, value_name = "FILE.png")]
    out: PathBuf,
}

pub fn run(args: PlotArgs) -> Result<()> {
    let mut cat = Panel {
        title: "Information lower bound of the categorical code, H(c) - L_I".into(),
        y_label: "nats".into(),
        ..Panel::default()
    };
    let mut cont = Panel {
        title: "Information lower bound of the continuous codes".into(),
        y_label: "nats".into(),
        ..Panel::default()
    };
    let mut acc = Panel {
        title: "Categorical accuracy on the test images".into(),
        y_label: "accuracy".into(),
        y_range: Some((0.0, 1.0)),
        ..Panel::default()
    };
    let mut frechet = Panel {
        title: "Frechet distance to the real images (lower is better)".into(),
        y_label: "distance".into(),
        ..Panel::default()
    };
    let mut diversity = Panel {
        title: "Diversity within a code value (infogan score)".into(),
        y_label: "ratio".into(),
        ..Panel::default()
    };
    for (i, dir) in args.runs.iter().enumerate() {
        let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        let color = PALETTE[i % PALETTE.len()];
        let info_path = dir.join("information.csv");
        if !info_path.is_file() {
            return Err(Error::Invalid(format!(
                "{} has no information.csv: pass folders written by `infogan train`",
                dir.display()
            )));
        }
        let (header, rows) = csv::read(&info_path)?;
        for col in header.iter().filter(|h| h.starts_with("mi_bound_")) {
            let code = col.trim_start_matches("mi_bound_");
            let series =
                Series { label: format!("{name} {code}"), points: column(&header, &rows, col, &info_path)?, color };
            if code.starts_with("cat") {
                cat.series.push(series);
            } else {
                let shade = if code.ends_with('1') { color } else { color.map(|c| c / 2 + 100) };
                cont.series.push(Series { color: shade, ..series });
            }
        }
        let metrics_path = dir.join("metrics.csv");
        if metrics_path.is_file() {
            let (header, rows) = csv::read(&metrics_path)?;
            let points: Vec<(f64, f64)> = column(&header, &rows, "categorical_accuracy", &metrics_path)?
                .into_iter()
                .filter(|p| p.1.is_finite())
                .collect();
            if !points.is_empty() {
                acc.series.push(Series { label: name.clone(), points, color });
            }
            // Runs written before the image scores existed have no such columns.
            for (col, panel) in [("frechet_distance", &mut frechet), ("diversity", &mut diversity)] {
                let Ok(points) = column(&header, &rows, col, &metrics_path) else { continue };
                let points: Vec<(f64, f64)> = points.into_iter().filter(|p| p.1.is_finite()).collect();
                if !points.is_empty() {
                    panel.series.push(Series { label: name.clone(), points, color });
                }
            }
        }
    }
    let panels: Vec<Panel> =
        [cat, cont, acc, frechet, diversity].into_iter().filter(|p| !p.series.is_empty()).collect();
    let height = 300 * panels.len() + 40;
    render(&panels, "step", 900, height)?.save(&args.out)?;
    eprintln!("infogan: wrote {}", args.out.display());
    Ok(())
}
