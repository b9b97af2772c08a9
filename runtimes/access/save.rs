//! Writing a password file safely: a new temporary file beside it, created exclusively (never
//! through a symlink or over a file someone placed there) and readable by its owner only,
//! synced, then renamed over the file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Attempts at a free temporary name before giving up.
const ATTEMPTS: usize = 8;

/// Replaces the file at `path` with `text`, through a temporary file in the same folder
/// created exclusively with mode 0600 (on Unix) and renamed over it, so that a reader sees
/// the old file or the new one, never half of one, and a symlink or file planted at a
/// temporary name is never written through.
pub fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let (tmp, mut file) = create_temp(path)?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A new file beside `path` with a random name, created exclusively.
fn create_temp(path: &Path) -> io::Result<(PathBuf, File)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).map_err(|e| io::Error::other(e.to_string()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{:016x}.tmp", u64::from_le_bytes(r)));
        let tmp = dir.join(tmp_name);
        let mut open = OpenOptions::new();
        // create_new: O_CREAT | O_EXCL, which fails on anything already there, symlinks too.
        open.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        match open.open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        crate::runtimes::scratch_dir(&format!("save-{name}"))
    }

    #[test]
    fn the_file_is_replaced_whole_and_private_and_no_temporary_is_left() {
        let dir = scratch("replace");
        let file = dir.join("passwd");
        std::fs::write(&file, "old\n").unwrap();
        write_private(&file, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["passwd"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_planted_at_the_old_temporary_name_is_not_written_through() {
        let dir = scratch("symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let file = dir.join("passwd");
        std::os::unix::fs::symlink(&victim, dir.join("passwd.tmp")).unwrap();
        write_private(&file, "alice:x\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "alice:x\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
