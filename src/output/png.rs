//! PNG files through the `png` crate: 8-bit grayscale or RGB, written atomically.

use std::path::Path;

use crate::error::{Error, Result};
use crate::tensorfile::write_atomically;

/// An 8-bit image: `channels` is 1 (gray) or 3 (RGB), pixels interleaved, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    /// pixels: [H, W, channels]
    pub pixels: Vec<u8>,
}

impl Image {
    /// A blank image filled with `value`.
    pub fn filled(width: usize, height: usize, channels: usize, value: u8) -> Self {
        assert!(channels == 1 || channels == 3, "Image: {channels} channels, expected 1 or 3");
        Image { width, height, channels, pixels: vec![value; width * height * channels] }
    }

    /// An image from planar `[C, H, W]` bytes (the dataset layout).
    pub fn from_planar(channels: usize, height: usize, width: usize, planar: &[u8]) -> Self {
        assert_eq!(planar.len(), channels * height * width, "Image::from_planar: byte count");
        let mut img = Image::filled(width, height, channels, 0);
        for c in 0..channels {
            for (p, &v) in planar[c * height * width..(c + 1) * height * width].iter().enumerate() {
                img.pixels[p * channels + c] = v;
            }
        }
        img
    }

    /// The PNG encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(png::Compression::default())
    }

    /// The PNG encoding with fdeflate's fast compression: a few times faster and a
    /// little larger, for pictures shown once (the explorer's).
    pub fn encode_fast(&self) -> Vec<u8> {
        self.encode_with(png::Compression::Fast)
    }

    fn encode_with(&self, compression: png::Compression) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, self.width as u32, self.height as u32);
        encoder.set_compression(compression);
        encoder.set_color(if self.channels == 1 { png::ColorType::Grayscale } else { png::ColorType::Rgb });
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("writing to memory cannot fail");
        writer.write_image_data(&self.pixels).expect("pixel count matches the header");
        writer.finish().expect("writing to memory cannot fail");
        bytes
    }

    /// Writes the image as a PNG file, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomically(path, &self.encode())
    }

    /// Reads an 8-bit grayscale or RGB PNG file.
    pub fn load(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let bad = |e: String| Error::bad_file(path, format!("is not a readable PNG image ({e})"));
        let decoder = png::Decoder::new(std::io::BufReader::new(file));
        let mut reader = decoder.read_info().map_err(|e| bad(e.to_string()))?;
        let mut pixels = vec![0; reader.output_buffer_size().ok_or_else(|| bad("image too large".into()))?];
        let info = reader.next_frame(&mut pixels).map_err(|e| bad(e.to_string()))?;
        let channels = match (info.color_type, info.bit_depth) {
            (png::ColorType::Grayscale, png::BitDepth::Eight) => 1,
            (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
            (c, d) => return Err(bad(format!("{c:?} at {d:?}, expected 8-bit grayscale or RGB"))),
        };
        pixels.truncate(info.buffer_size());
        Ok(Image { width: info.width as usize, height: info.height as usize, channels, pixels })
    }
}
