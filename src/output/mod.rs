//! What a run leaves behind: PNG images and grids.

pub mod png;
