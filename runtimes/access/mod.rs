//! Mosquitto's password and ACL files, as an [`Authenticator`](crate::broker::Authenticator)
//! ([`PasswordFile`]) and an [`Authorizer`](crate::broker::Authorizer) ([`AclFile`]).
//!
//! Both parse the files `mosquitto_passwd` and Mosquitto's `acl_file` use, so existing files
//! work unchanged; [`set_password`] writes entries `mosquitto_passwd` and Mosquitto read back.
//! [`AccessFiles`] holds both, re-read on demand while the broker runs.

mod acl;
mod files;
mod passwd;
mod save;
mod update;

use std::fmt;
use std::path::{Path, PathBuf};

pub use acl::AclFile;
pub use files::AccessFiles;
pub use passwd::{password_entry, set_password, PasswordFile};
pub use save::write_private;
pub use update::set_password_in_file;

/// A password or ACL file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not in the file's format.
    #[error("{}", LineDisplay(path.as_deref(), *line, reason))]
    Line {
        /// The file, when it was read from one.
        path: Option<PathBuf>,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An entry could not be made (a user name with `:`, an empty password, no random salt).
    #[error("{0}")]
    Entry(String),
}

/// Shows a bad line as `path:line: reason` (or `line N: reason` without a path).
struct LineDisplay<'a>(Option<&'a Path>, usize, &'a str);

impl fmt::Display for LineDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, "{}:{}: {}", p.display(), self.1, self.2),
            None => write!(f, "line {}: {}", self.1, self.2),
        }
    }
}

impl FileError {
    /// A bad line (numbered from 1) of a text without a path.
    fn line(line: usize, reason: impl Into<String>) -> FileError {
        FileError::Line {
            path: None,
            line,
            reason: reason.into(),
        }
    }

    /// This error, naming `path` when it is about a line.
    fn in_file(self, file: &Path) -> FileError {
        match self {
            FileError::Line { line, reason, .. } => FileError::Line {
                path: Some(file.to_path_buf()),
                line,
                reason,
            },
            other => other,
        }
    }
}

/// Reads `path` as text.
fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The lines that say something, numbered from 1: without blank lines and `#` comments, and
/// with surrounding whitespace trimmed.
fn meaningful_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}
