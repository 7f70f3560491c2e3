//! What a run leaves behind: PNG images and grids, GIFs, line charts, CSV logs, and
//! (with the `onnx` feature) the generator as an ONNX model.

pub mod chart;
mod chart_text;
pub mod csv;
pub mod curves;
pub mod gif;
pub mod grid;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod png;
pub mod run_files;
pub mod text;
