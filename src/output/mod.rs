//! What a run leaves behind: PNG images and grids, line charts, CSV logs.

pub mod chart;
pub mod csv;
pub mod curves;
pub mod font;
pub mod grid;
pub mod png;
