//! The CSV files of a run, through the csv crate: `losses.csv`, whose columns are
//! the fields of `LossRow` (written and read through serde, so that the names live
//! there alone), and the per-epoch `information.csv` and `metrics.csv`, whose
//! columns depend on the latent codes.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result};

/// One row of `losses.csv`: the means over a logging interval.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LossRow {
    pub epoch: usize,
    pub step: u64,
    #[serde(serialize_with = "five_places")]
    pub d_loss: f64,
    #[serde(serialize_with = "five_places")]
    pub g_loss: f64,
    #[serde(serialize_with = "five_places")]
    pub info_loss: f64,
    #[serde(serialize_with = "five_places")]
    pub d_real: f64,
    #[serde(serialize_with = "five_places")]
    pub d_fake: f64,
    #[serde(serialize_with = "five_places")]
    pub images_per_s: f64,
}

/// Five decimals: as precise as a training curve needs, and short.
pub fn five_places<S: Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:.5}"))
}

/// The column names of a row type: its field names, as serde gives them.
pub fn header_of<T: Serialize + Default>() -> Vec<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(T::default()).expect("a row serialises");
    let bytes = w.into_inner().expect("in memory");
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    r.headers().expect("a header row").iter().map(String::from).collect()
}

/// A CSV file that rows are appended to as training goes.
pub struct CsvLog {
    path: PathBuf,
    writer: csv::Writer<File>,
}

fn csv_error(action: &'static str, path: &Path, e: csv::Error) -> Error {
    let message = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(e) => Error::io(action, path, e),
        _ => Error::bad_file(path, format!("is not a readable CSV file of this run ({message})")),
    }
}

impl CsvLog {
    /// Opens `path` for appending. If it exists and has the same header, rows after
    /// `keep_through_step` (the checkpoint a run resumes from) are dropped, so that
    /// an interrupted run leaves no duplicate steps; otherwise it starts afresh.
    pub fn open(path: &Path, header: &[String], keep_through_step: u64) -> Result<Self> {
        let kept = if keep_through_step > 0 { rows_through(path, header, keep_through_step) } else { Vec::new() };
        // The header is written here, not by `serialize`.
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(path)
            .map_err(|e| csv_error("create", path, e))?;
        writer.write_record(header).map_err(|e| csv_error("write", path, e))?;
        for row in kept {
            writer.write_record(&row).map_err(|e| csv_error("write", path, e))?;
        }
        Ok(CsvLog { path: path.to_path_buf(), writer })
    }

    /// Appends one row of values.
    pub fn row(&mut self, values: &[String]) -> Result<()> {
        self.writer.write_record(values).map_err(|e| csv_error("write", &self.path, e))
    }

    /// Appends one row of a serde row type (`LossRow`).
    pub fn serialize(&mut self, row: &impl Serialize) -> Result<()> {
        self.writer.serialize(row).map_err(|e| csv_error("write", &self.path, e))
    }

    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush().map_err(|e| Error::io("write", &self.path, e))
    }
}

/// The rows of an existing log with this header whose step (the second column) is
/// at most `step`; none if the file is missing or has another header.
fn rows_through(path: &Path, header: &[String], step: u64) -> Vec<csv::StringRecord> {
    let Ok(mut reader) = csv::ReaderBuilder::new().flexible(true).from_path(path) else { return Vec::new() };
    if reader.headers().ok().is_none_or(|h| h.iter().ne(header.iter().map(String::as_str))) {
        return Vec::new();
    }
    reader
        .records()
        .map_while(std::result::Result::ok)
        .filter(|r| r.get(1).and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s <= step))
        .collect()
}

/// Reads a CSV written by `CsvLog`: the header's column names and the rows as numbers
/// (a cell that does not parse becomes NaN).
pub fn read(path: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    let mut reader =
        csv::ReaderBuilder::new().flexible(true).from_path(path).map_err(|e| csv_error("read", path, e))?;
    let header: Vec<String> =
        reader.headers().map_err(|e| csv_error("read", path, e))?.iter().map(String::from).collect();
    if header.is_empty() {
        return Err(Error::bad_file(path, "is empty, expected a header row"));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error("read", path, e))?;
        rows.push(record.iter().map(|c| c.trim().parse().unwrap_or(f64::NAN)).collect());
    }
    Ok((header, rows))
}

/// Reads the rows of a CSV of serde rows (`LossRow`).
pub fn read_rows<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| csv_error("read", path, e))?;
    reader.deserialize().map(|r| r.map_err(|e| csv_error("read", path, e))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_keeps_the_rows_of_a_resumed_run_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("losses.csv");
        let header = header_of::<LossRow>();
        assert_eq!(header.join(","), "epoch,step,d_loss,g_loss,info_loss,d_real,d_fake,images_per_s");
        let mut log = CsvLog::open(&path, &header, 0).unwrap();
        for step in 1..=4 {
            log.serialize(&LossRow { epoch: 1, step, d_loss: 0.5 + step as f64, ..Default::default() }).unwrap();
        }
        log.flush().unwrap();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("epoch,step,d_loss,g_loss,info_loss,d_real,d_fake,images_per_s\n1,1,1.50000,"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 5, "{text}");
        let log = CsvLog::open(&path, &header, 2).unwrap();
        drop(log);
        let rows: Vec<LossRow> = read_rows(&path).unwrap();
        assert_eq!(rows.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 2]);
        let (h, numbers) = read(&path).unwrap();
        assert_eq!((h, numbers[1][2]), (header, 2.5));
    }
}
