//! Errors a user can cause: a file, a flag, a checkpoint. Each message says what went
//! wrong, where, and how to fix it. (Bugs inside the numeric code are assertions,
//! not errors: see `layers`.)

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused a file operation.
    #[error("cannot {action} {}: {source}{}", path.display(), hint_suffix(.hint))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
        hint: Option<String>,
    },
    /// A file exists but its contents are not what they should be.
    #[error("{}: {message}", path.display())]
    BadFile { path: PathBuf, message: String },
    /// A flag or a combination of flags that cannot work.
    #[error("{0}")]
    Invalid(String),
    /// Training stopped because it can no longer make progress (a NaN loss, say).
    #[error("{0}")]
    Training(String),
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map_or(String::new(), |h| format!("\n  hint: {h}"))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O failure on `path`, without a hint.
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io { action, path: path.to_path_buf(), source, hint: None }
    }

    /// A file whose contents are wrong.
    pub fn bad_file(path: &Path, message: impl Into<String>) -> Self {
        Error::BadFile { path: path.to_path_buf(), message: message.into() }
    }
}
