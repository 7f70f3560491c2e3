//! What a run leaves behind: PNG images and grids, CSV logs.

pub mod csv;
pub mod grid;
pub mod png;
