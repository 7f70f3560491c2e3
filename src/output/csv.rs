//! `losses.csv`: one row per logging interval, with a header row.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const LOSS_HEADER: &str = "epoch,step,d_loss,g_loss,info_loss,d_real,d_fake,images_per_s";

/// A CSV file that rows are appended to as training goes.
pub struct CsvLog {
    path: PathBuf,
    file: std::fs::File,
}

impl CsvLog {
    /// Opens `path` for appending. If it exists and has the same header, rows after
    /// `keep_through_step` (the checkpoint a run resumes from) are dropped, so that
    /// an interrupted run leaves no duplicate steps; otherwise it starts afresh.
    pub fn open(path: &Path, header: &str, keep_through_step: u64) -> Result<Self> {
        let mut kept = String::new();
        if keep_through_step > 0
            && let Ok(old) = std::fs::read_to_string(path)
            && old.lines().next() == Some(header)
        {
            for line in old.lines().skip(1) {
                let step = line.split(',').nth(1).and_then(|s| s.parse::<u64>().ok());
                if step.is_some_and(|s| s <= keep_through_step) {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
        }
        let mut file = std::fs::File::create(path).map_err(|e| Error::io("create", path, e))?;
        write!(file, "{header}\n{kept}").map_err(|e| Error::io("write", path, e))?;
        Ok(CsvLog { path: path.to_path_buf(), file })
    }

    /// Appends one row of values.
    pub fn row(&mut self, values: &[String]) -> Result<()> {
        writeln!(self.file, "{}", values.join(",")).map_err(|e| Error::io("write", &self.path, e))
    }

    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io("write", &self.path, e))
    }
}

/// Reads a CSV written by `CsvLog`: the header's column names and the rows as numbers
/// (a cell that does not parse becomes NaN).
pub fn read(path: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| Error::bad_file(path, "is empty, expected a header row"))?
        .split(',')
        .map(String::from)
        .collect();
    let rows = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(|c| c.trim().parse().unwrap_or(f64::NAN)).collect())
        .collect();
    Ok((header, rows))
}
