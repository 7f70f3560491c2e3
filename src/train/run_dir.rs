//! A run folder belongs to one training at a time, and a new run does not silently
//! replace an old one.
//!
//! - [`RunLock`]: an advisory lock on `<out>/.lock`, holding the owner's pid, taken
//!   for the whole training. The operating system drops it when the process ends,
//!   however it ends, so a killed run never leaves the folder locked.
//! - [`holds_a_run`] and [`clear_run`]: a fresh run into a folder that already has a
//!   checkpoint or a loss log is refused unless asked to start over (`--overwrite`).
//! - Under the lock, temporary files that dead processes left behind while writing
//!   atomically (`.<name>.tmp<pid>`, see `tensorfile::write_atomically`) are removed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The files whose presence means the folder holds a run: what a fresh run would
/// overwrite or truncate.
const RUN_FILES: &[&str] = &["checkpoint.safetensors", "losses.csv"];

/// Everything a run writes at the top of its folder (besides the two subfolders of
/// epoch pictures), removed by [`clear_run`].
const OUTPUT_FILES: &[&str] =
    &["checkpoint.safetensors", "losses.csv", "information.csv", "metrics.csv", "losses.png", "progress.gif"];

/// The lock on a run folder, released when dropped or when the process ends.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Locks `dir` (which must exist) for this process, or says which process holds
    /// it. Then removes the temporary files of processes that no longer run.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open the lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() { "another process".to_string() } else { format!("process {holder}") };
                return Err(Error::Invalid(format!(
                    "{} is in use: {who} is training into it. Wait for it to finish or stop it (Ctrl-C or SIGTERM \
                     saves its checkpoint), or pass another --out",
                    dir.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        let pid = std::process::id();
        let record = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{pid}"));
        record.map_err(|e| Error::io("write", &path, e))?;
        remove_stale_temporaries(dir);
        Ok(RunLock { _file: file })
    }
}

/// Whether `dir` holds the checkpoint or the loss log of a run.
pub fn holds_a_run(dir: &Path) -> bool {
    RUN_FILES.iter().any(|f| dir.join(f).exists())
}

/// Removes what an earlier run wrote into `dir`: its checkpoint, CSV files, charts,
/// GIF and epoch pictures (other files are left alone), so that a new run starts
/// from an empty folder and its GIF shows only its own epochs.
pub fn clear_run(dir: &Path) -> Result<()> {
    let remove = |p: PathBuf| match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", &p, e)),
        _ => Ok(()),
    };
    for f in OUTPUT_FILES {
        remove(dir.join(f))?;
    }
    for sub in ["samples", "traversals"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("epoch_") && name.ends_with(".png") {
                remove(entry.path())?;
            }
        }
    }
    Ok(())
}

/// The pid in a temporary file's name `.<name>.tmp<pid>`, if it is one.
fn temporary_owner(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?;
    let (_, pid) = rest.rsplit_once(".tmp")?;
    pid.parse().ok()
}

/// Whether process `pid` still runs. Where there is no `/proc` to ask, every process
/// counts as running, so that nothing is removed that might be in use.
fn process_runs(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes `dir`'s temporary files whose writer has died (a kill -9 during a
/// checkpoint write leaves one behind). Failures are not errors: the files are
/// only litter.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if let Some(pid) = temporary_owner(&name.to_string_lossy())
            && pid != me
            && !process_runs(pid)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_give_their_owner() {
        assert_eq!(temporary_owner(".checkpoint.safetensors.tmp4242"), Some(4242));
        assert_eq!(temporary_owner(".a.tmp.b.tmp7"), Some(7));
        assert_eq!(temporary_owner("checkpoint.safetensors.tmp7"), None);
        assert_eq!(temporary_owner(".checkpoint.safetensors"), None);
        assert_eq!(temporary_owner(".x.tmpabc"), None);
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holder_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("process {}", std::process::id())) && e.contains("--out"), "{e}");
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn stale_temporaries_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        // Linux pids stay below 2^22; this one cannot run.
        let dead = dir.path().join(".checkpoint.safetensors.tmp999999999");
        let live = dir.path().join(format!(".checkpoint.safetensors.tmp{}", std::process::id()));
        let other = dir.path().join("notes.tmp1");
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        let _lock = RunLock::acquire(dir.path()).unwrap();
        assert!(!dead.exists() || !Path::new("/proc/self").exists(), "a dead process's temporary file stayed");
        assert!(live.exists() && other.exists());
    }

    #[test]
    fn clear_run_removes_a_runs_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("samples")).unwrap();
        for f in ["checkpoint.safetensors", "losses.csv", "samples/epoch_001.png", "generator.onnx"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        assert!(holds_a_run(dir.path()));
        clear_run(dir.path()).unwrap();
        assert!(!holds_a_run(dir.path()));
        assert!(!dir.path().join("samples/epoch_001.png").exists());
        assert!(dir.path().join("generator.onnx").exists());
    }
}
