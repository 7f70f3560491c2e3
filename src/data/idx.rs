//! The IDX format of MNIST and Fashion-MNIST (<http://yann.lecun.com/exdb/mnist/>):
//! a big-endian header (two zero bytes, a type byte 0x08 for unsigned bytes, the
//! number of dimensions, then each dimension as a u32) followed by the data.
//! Images are `idx3` (`[N, H, W]`, magic 0x00000803), labels `idx1` (`[N]`, magic
//! 0x00000801). Files may be gzip-compressed, as distributed, or raw.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

pub const IMAGES_MAGIC: u32 = 0x0000_0803;
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Pixels of an idx3 file: `count` images of `rows x cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

/// Reads a file whole, undoing gzip compression if the file starts with gzip's magic
/// bytes (whatever its name).
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = crate::files::read_regular(path)?;
    decompress(&raw).map_err(|m| Error::bad_file(path, m))
}

/// Deflate's best compression ratio: a 258-byte match costs at least 2 bits, so no
/// gzip file holds more than about 1032 times its own size.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// `bytes`, gunzipped if they start with gzip's magic bytes `1f 8b`. A gzip file may
/// hold several members one after another (`cat a.gz b.gz`, or `pigz`), which `gzip
/// -d` and `zcat` decode as one stream; so does this.
///
/// The IDX header is inflated first, and the rest only if the size it promises could
/// fit in the compressed file, and then at most one byte past it: a small file whose
/// header claims a billion images fails at once, instead of after inflating all it
/// holds.
pub fn decompress(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes.to_vec());
    }
    let bad = |e: std::io::Error| format!("is not a valid gzip file ({e}); delete it and run the data step again");
    let mut stream = flate2::read::MultiGzDecoder::new(bytes);
    let mut out = Vec::new();
    // The magic number, whose last byte is the number of dimensions, then the dimensions.
    (&mut stream).take(4).read_to_end(&mut out).map_err(bad)?;
    if let [_, _, _, ndim] = out[..] {
        let header_len = 4 + 4 * ndim as u64;
        (&mut stream).take(header_len - 4).read_to_end(&mut out).map_err(bad)?;
        if out.len() as u64 == header_len {
            let claimed = out[4..]
                .chunks_exact(4)
                .map(|d| u32::from_be_bytes(d.try_into().expect("4 bytes")) as u64)
                .try_fold(1u64, |acc, d| acc.checked_mul(d))
                .and_then(|n| n.checked_add(header_len));
            let most = MAX_DEFLATE_RATIO.saturating_mul(bytes.len() as u64).saturating_add(4096);
            match claimed {
                Some(total) if total <= most => {
                    (&mut stream).take(total - header_len + 1).read_to_end(&mut out).map_err(bad)?;
                    return Ok(out);
                }
                _ => {
                    return Err(format!(
                        "is truncated: its header promises {} bytes, more than a {}-byte gzip file can hold; delete it \
                         and run the data step again",
                        claimed.map_or("more than 2^64".to_string(), |n| n.to_string()),
                        bytes.len()
                    ));
                }
            }
        }
    }
    stream.read_to_end(&mut out).map_err(bad)?;
    Ok(out)
}

/// The header's dimensions, after checking the magic number and that the data that
/// follows has exactly the size the dimensions give.
fn parse_header(bytes: &[u8], magic: u32, what: &str) -> std::result::Result<(Vec<usize>, usize), String> {
    let ndim = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndim;
    if bytes.len() < 4 {
        return Err(format!("is {} bytes long, too short for an IDX {what} file", bytes.len()));
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        return Err(format!(
            "has magic number 0x{found:08x}, expected 0x{magic:08x} for IDX {what}: is this the right file?"
        ));
    }
    if bytes.len() < header_len {
        return Err(format!("is truncated: {} bytes, shorter than its {header_len}-byte header", bytes.len()));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).and_then(|n| n.checked_add(header_len));
    match expected {
        Some(len) if len == bytes.len() => Ok((dims, header_len)),
        Some(len) if len > bytes.len() => Err(format!(
            "is truncated: its header promises {dims:?} = {len} bytes, but it has {}; delete it and run the data step again",
            bytes.len()
        )),
        Some(len) => Err(format!("has {} bytes, more than the {len} its header {dims:?} describes", bytes.len())),
        None => Err(format!("has an impossible header {dims:?}")),
    }
}

/// Parses an idx3 image file's (decompressed) bytes.
pub fn parse_images(bytes: &[u8]) -> std::result::Result<IdxImages, String> {
    let (dims, start) = parse_header(bytes, IMAGES_MAGIC, "images")?;
    Ok(IdxImages { count: dims[0], rows: dims[1], cols: dims[2], pixels: bytes[start..].to_vec() })
}

/// Parses an idx1 label file's (decompressed) bytes; every label must be a class
/// index below `classes`.
pub fn parse_labels(bytes: &[u8], classes: usize) -> std::result::Result<Vec<u8>, String> {
    let (_, start) = parse_header(bytes, LABELS_MAGIC, "labels")?;
    let labels = bytes[start..].to_vec();
    if let Some((i, &bad)) = labels.iter().enumerate().find(|&(_, &l)| l as usize >= classes) {
        return Err(format!("label {i} is {bad}, expected a class index in 0..{}", classes - 1));
    }
    Ok(labels)
}

/// Serialises images as an idx3 file (for tests, and for tools that want one).
pub fn encode_images(images: &IdxImages) -> Vec<u8> {
    let mut out = IMAGES_MAGIC.to_be_bytes().to_vec();
    for d in [images.count, images.rows, images.cols] {
        out.extend((d as u32).to_be_bytes());
    }
    out.extend(&images.pixels);
    out
}

/// Serialises labels as an idx1 file.
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = LABELS_MAGIC.to_be_bytes().to_vec();
    out.extend((labels.len() as u32).to_be_bytes());
    out.extend(labels);
    out
}
