//! Reading and writing f32 tensors in the safetensors format (checkpoints, ONNX check
//! vectors, the PyTorch reference cases), with the string metadata map beside them.
//! Writes are atomic: a temporary file in the same directory, then a rename. Every
//! file written here carries a CRC-32 of its tensor data in its metadata
//! (`CHECKSUM_KEY`), which reading checks, so that a damaged file is an error rather
//! than noise in the weights; files without one (PyTorch's) are read as they are.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;

use ndarray::{ArrayD, ArrayViewD};
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// The metadata key of the checksum: `crc32:` and 8 hex digits, the CRC-32 (IEEE) of
/// the data section (every tensor's little-endian bytes, in name order).
pub const CHECKSUM_KEY: &str = "checksum";

/// The checksum's metadata value for a data section's CRC-32.
fn checksum_text(crc: u32) -> String {
    format!("crc32:{crc:08x}")
}

/// The tensors of one file by name, and its metadata.
#[derive(Debug, Default, Clone)]
pub struct TensorFile {
    pub tensors: BTreeMap<String, ArrayD<f32>>,
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    /// Reads every tensor of `path`; all must be F32. The header's length (the first
    /// 8 bytes) is checked against the file's before the rest is read, so that a file
    /// of zeros or of noise fails at once, however large.
    pub fn read(path: &Path) -> Result<Self> {
        let (mut file, len) = crate::files::open_regular(path)?;
        let mut prefix = [0u8; 8];
        let header_fits = file.read_exact(&mut prefix).is_ok() && {
            let header = u64::from_le_bytes(prefix);
            header >= 2 && header <= len - 8
        };
        if !header_fits {
            return Err(Error::bad_file(path, "is not a valid safetensors file (its header length does not fit)"));
        }
        let mut bytes = prefix.to_vec();
        bytes.reserve(usize::try_from(len - 8).unwrap_or(0));
        file.read_to_end(&mut bytes).map_err(|e| Error::io("read", path, e))?;
        Self::parse(&bytes).map_err(|message| Error::bad_file(path, message))
    }

    fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let (header_len, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| format!("not a valid safetensors file ({e})"))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        if let Some(expected) = metadata.get(CHECKSUM_KEY) {
            let actual = checksum_text(crc32fast::hash(&bytes[(8 + header_len).min(bytes.len())..]));
            if *expected != actual {
                return Err(format!(
                    "is damaged: its tensor data do not match the checksum written with them ({actual}, expected \
                     {expected})"
                ));
            }
        }
        let file = SafeTensors::deserialize(bytes).map_err(|e| format!("not a valid safetensors file ({e})"))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in file.iter() {
            if view.dtype() != Dtype::F32 {
                return Err(format!("tensor {name} is {:?}, expected F32", view.dtype()));
            }
            let values: Vec<f32> =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            let array = ArrayD::from_shape_vec(view.shape().to_vec(), values)
                .map_err(|e| format!("tensor {name} has an inconsistent shape ({e})"))?;
            tensors.insert(name.to_string(), array);
        }
        Ok(TensorFile { tensors, metadata })
    }

    /// The tensor `name`, or an error naming the file and the tensor.
    pub fn get(&self, name: &str, path: &Path) -> Result<&ArrayD<f32>> {
        self.tensors.get(name).ok_or_else(|| Error::bad_file(path, format!("has no tensor named {name}")))
    }

    /// The metadata value `key`, or an error naming the file and the key.
    pub fn meta(&self, key: &str, path: &Path) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::bad_file(path, format!("has no metadata entry {key}")))
    }

    /// Writes the file atomically: readers see the old file or the new one, never a
    /// half-written one, even if the process dies midway.
    pub fn write(&self, path: &Path) -> Result<()> {
        let views: Vec<(String, ArrayViewD<'_, f32>)> =
            self.tensors.iter().map(|(k, v)| (k.clone(), v.view())).collect();
        write_tensors(path, &views, &self.metadata)
    }
}

/// Writes f32 tensors and metadata as a safetensors file, atomically, streaming each
/// tensor's bytes to the file (no copy of the whole content in memory).
///
/// The layout: an 8-byte little-endian header length, a JSON header (padded with
/// spaces to a multiple of 8 bytes), then each tensor's little-endian data, in name
/// order. Written here rather than by the `safetensors` crate, whose metadata is a
/// `HashMap`: its random iteration order would make two identical checkpoints differ
/// byte for byte. Here every key is sorted, so the same state always gives the same
/// file. (Reading goes through the crate, which validates.)
pub fn write_tensors(
    path: &Path,
    tensors: &[(String, ArrayViewD<'_, f32>)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let mut order: Vec<&(String, ArrayViewD<'_, f32>)> = tensors.iter().collect();
    order.sort_by(|a, b| a.0.cmp(&b.0));
    // The data section's bytes, a block at a time: once for the checksum, which the
    // header holds, then again to the file.
    let stream = |out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>| -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(1 << 16);
        for (_, t) in &order {
            for v in t.iter() {
                buf.extend_from_slice(&v.to_le_bytes());
                if buf.len() >= 1 << 16 {
                    out(&buf)?;
                    buf.clear();
                }
            }
        }
        out(&buf)
    };
    let mut crc = crc32fast::Hasher::new();
    stream(&mut |b| {
        crc.update(b);
        Ok(())
    })
    .expect("hashing does not fail");
    let mut meta: serde_json::Map<String, serde_json::Value> =
        metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect();
    meta.insert(CHECKSUM_KEY.into(), checksum_text(crc.finalize()).into());
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), meta.into());
    let mut offset = 0usize;
    for (name, t) in &order {
        let len = 4 * t.len();
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": t.shape(), "data_offsets": [offset, offset + len] }),
        );
        offset += len;
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    json.resize(json.len().next_multiple_of(8), b' ');
    write_atomically_with(path, |w| {
        w.write_all(&(json.len() as u64).to_le_bytes())?;
        w.write_all(&json)?;
        stream(&mut |b| w.write_all(b))
    })
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over
/// `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, |w| w.write_all(bytes))
}

/// Runs `fill` on a buffered temporary file beside `path`, syncs it, and renames it
/// over `path`; on any failure the temporary file is removed and `path` untouched.
pub fn write_atomically_with(path: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::Invalid(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        fill(&mut f)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Io {
            action: "write",
            path: path.to_path_buf(),
            source: e,
            hint: Some(format!("check that {} exists and is writable, and that the disk has space", dir.display())),
        });
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("replace", path, e)
    })
}
