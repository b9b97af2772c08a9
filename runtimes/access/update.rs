//! `broker passwd FILE USER`: a user's password set in a password file on disk.

use std::path::Path;

use super::{set_password, FileError, PasswordFile};

/// Sets `user`'s password in the password file at `path` (created if missing), keeping every
/// other line, and writes it back with [`write_private`](super::write_private) (never through a
/// planted file, readable by its owner only). A file that does not parse is not rewritten:
/// its other lines would be carried along unchecked. An empty password is refused.
pub fn set_password_in_file(path: &Path, user: &str, password: &str) -> Result<(), FileError> {
    if password.is_empty() {
        return Err(FileError::Entry("empty password".into()));
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(FileError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    PasswordFile::parse(&text).map_err(|e| e.in_file(path))?;
    let out = set_password(&text, user, password)?;
    super::write_private(path, &out).map_err(|source| FileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        crate::runtimes::scratch_dir(&format!("update-{name}"))
    }

    #[test]
    fn a_user_is_added_then_replaced_and_the_others_kept() {
        let dir = scratch("add");
        let file = dir.join("passwd");
        set_password_in_file(&file, "alice", "a").unwrap();
        set_password_in_file(&file, "bob", "b").unwrap();
        set_password_in_file(&file, "alice", "c").unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let pw = PasswordFile::parse(&text).unwrap();
        assert!(pw.verify("alice", b"c"));
        assert!(!pw.verify("alice", b"a"));
        assert!(pw.verify("bob", b"b"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bad_file_an_empty_password_or_a_bad_user_name_changes_nothing() {
        let dir = scratch("bad");
        let file = dir.join("passwd");
        std::fs::write(&file, "alice:plaintext\n").unwrap();
        match set_password_in_file(&file, "bob", "b") {
            Err(FileError::Line { path, line: 1, .. }) => assert_eq!(path, Some(file.clone())),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "alice:plaintext\n");
        let empty = dir.join("empty");
        assert!(matches!(
            set_password_in_file(&empty, "bob", ""),
            Err(FileError::Entry(_))
        ));
        assert!(matches!(
            set_password_in_file(&empty, "b:ob", "x"),
            Err(FileError::Entry(_))
        ));
        assert!(!empty.exists());
        // A folder where the file should be cannot be read.
        assert!(matches!(
            set_password_in_file(&dir, "bob", "b"),
            Err(FileError::Read { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
