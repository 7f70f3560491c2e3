//! Reading the files a user names (datasets, checkpoints): only regular files, so
//! that a FIFO cannot hang a command and a device cannot feed it endless bytes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Opens `path` for reading if it is a regular file (symbolic links followed), and
/// gives its length. The check comes before the open: opening a FIFO blocks until
/// something writes to it.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("read", path, e))?;
    if !meta.is_file() {
        return Err(Error::bad_file(
            path,
            "is not a regular file (a folder, device, FIFO or socket); pass the path of a file",
        ));
    }
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    Ok((file, meta.len()))
}

/// The whole of the regular file `path`.
pub fn read_regular(path: &Path) -> Result<Vec<u8>> {
    let (mut file, len) = open_regular(path)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(|e| Error::io("read", path, e))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_folders_and_fifos_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
        let mut paths = vec![dir.path().to_path_buf()];
        if Path::new("/dev/zero").exists() {
            paths.push("/dev/zero".into());
        }
        if made {
            paths.push(fifo);
        }
        for p in paths {
            let e = read_regular(&p).unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{}: {e}", p.display());
        }
        let file = dir.path().join("f");
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(read_regular(&file).unwrap(), b"abc");
    }
}
