//! Animated GIFs through the `gif` crate: training progress, latent interpolations
//! and code sweeps. Grayscale frames use one global palette of 256 greys, so they
//! are exact; RGB frames are quantised to 256 colours each (NeuQuant).

use std::path::Path;

use super::png::Image;
use crate::error::{Error, Result};
use crate::tensorfile::write_atomically;

/// Encodes `frames` (all the same size and channel count) as a GIF that loops
/// forever, showing each frame for `delay_cs` hundredths of a second.
pub fn encode(frames: &[Image], delay_cs: u16) -> Result<Vec<u8>> {
    let first = frames.first().ok_or_else(|| Error::Invalid("a GIF needs at least one frame".into()))?;
    let (w, h) = (first.width, first.height);
    let too_big = || Error::Invalid(format!("a {w}x{h} frame is larger than a GIF allows (65535 pixels a side)"));
    let (gw, gh) = (u16::try_from(w).map_err(|_| too_big())?, u16::try_from(h).map_err(|_| too_big())?);
    let gray = first.channels == 1;
    let palette: Vec<u8> = if gray { (0..=255u8).flat_map(|v| [v, v, v]).collect() } else { Vec::new() };
    let mut bytes = Vec::new();
    {
        let fail = |e: gif::EncodingError| Error::Invalid(format!("GIF encoding failed: {e}"));
        let mut encoder = gif::Encoder::new(&mut bytes, gw, gh, &palette).map_err(fail)?;
        encoder.set_repeat(gif::Repeat::Infinite).map_err(fail)?;
        for img in frames {
            assert!(
                (img.width, img.height, img.channels) == (w, h, first.channels),
                "gif::encode: frames differ in size or channels"
            );
            let mut frame = if gray {
                gif::Frame::from_indexed_pixels(gw, gh, img.pixels.clone(), None)
            } else {
                gif::Frame::from_rgb_speed(gw, gh, &img.pixels, 10)
            };
            frame.delay = delay_cs;
            encoder.write_frame(&frame).map_err(fail)?;
        }
    }
    Ok(bytes)
}

/// Writes `frames` as a looping GIF file, atomically.
pub fn save(path: &Path, frames: &[Image], delay_cs: u16) -> Result<()> {
    write_atomically(path, &encode(frames, delay_cs)?)
}
