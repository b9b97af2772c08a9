//! A password file and an ACL file read from disk, that can be read again while the broker
//! runs ([`AccessFiles::reload`]): connected clients keep their sessions, and the new rules
//! apply from their next CONNECT, publish, subscription or delivery.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::{AclFile, FileError, PasswordFile};
use crate::broker::{Authenticator, Authorizer};
use crate::{ByteStr, ReasonCode, TopicFilter, TopicName};

/// What was loaded: each file's content, if the broker has that file.
#[derive(Debug, Default)]
struct Loaded {
    passwords: Option<Arc<PasswordFile>>,
    acl: Option<Arc<AclFile>>,
}

/// A broker's password and ACL files, as one [`Authenticator`] and [`Authorizer`] that
/// [`AccessFiles::reload`] re-reads.
///
/// Without a password file every user name is let in (anonymous clients are left to
/// `allow_anonymous`); without an ACL file everything is allowed.
#[derive(Debug)]
pub struct AccessFiles {
    password_file: Option<PathBuf>,
    acl_file: Option<PathBuf>,
    loaded: RwLock<Loaded>,
}

impl AccessFiles {
    /// Reads the files at these paths (either may be absent).
    pub fn load(
        password_file: Option<&Path>,
        acl_file: Option<&Path>,
    ) -> Result<AccessFiles, FileError> {
        let files = AccessFiles {
            password_file: password_file.map(Path::to_path_buf),
            acl_file: acl_file.map(Path::to_path_buf),
            loaded: RwLock::new(Loaded::default()),
        };
        files.reload()?;
        Ok(files)
    }

    /// Reads both files again and, if both parse, uses them from now on; on an error the
    /// rules in use stay as they were (a half-written file never locks everyone out).
    pub fn reload(&self) -> Result<(), FileError> {
        let passwords = match &self.password_file {
            Some(p) => Some(Arc::new(PasswordFile::load(p)?)),
            None => None,
        };
        let acl = match &self.acl_file {
            Some(p) => Some(Arc::new(AclFile::load(p)?)),
            None => None,
        };
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Loaded { passwords, acl };
        Ok(())
    }

    /// How many users the password file names (0 without one).
    pub fn users(&self) -> usize {
        self.passwords().map_or(0, |p| p.len())
    }

    fn passwords(&self) -> Option<Arc<PasswordFile>> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .passwords
            .clone()
    }

    /// Runs `f` on the ACL in use; `None` without an ACL file.
    fn with_acl<T>(&self, f: impl FnOnce(&AclFile) -> T) -> Option<T> {
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded.acl.as_deref().map(f)
    }
}

impl Authenticator for AccessFiles {
    fn authenticate(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        password: Option<&Bytes>,
    ) -> Result<(), ReasonCode> {
        match self.passwords() {
            Some(p) => p.authenticate(client_id, username, password),
            None => Ok(()),
        }
    }

    fn defers(&self) -> bool {
        self.password_file.is_some()
    }
}

impl Authorizer for AccessFiles {
    fn can_publish(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        topic: &TopicName,
    ) -> bool {
        self.with_acl(|a| a.can_publish(client_id, username, topic))
            .unwrap_or(true)
    }

    fn can_subscribe(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        filter: &TopicFilter,
    ) -> bool {
        self.with_acl(|a| a.can_subscribe(client_id, username, filter))
            .unwrap_or(true)
    }

    fn can_receive(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        topic: &TopicName,
    ) -> bool {
        self.with_acl(|a| a.can_receive(client_id, username, topic))
            .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> ByteStr {
        ByteStr::try_from(v.to_owned()).unwrap()
    }

    #[test]
    fn reload_takes_the_new_rules_and_keeps_the_old_ones_on_a_bad_file() {
        let dir = std::env::temp_dir().join(format!("tinymqtt-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (pw, acl) = (dir.join("passwd"), dir.join("acl"));
        std::fs::write(
            &pw,
            crate::runtimes::access::password_entry("alice", "one").unwrap(),
        )
        .unwrap();
        std::fs::write(&acl, "user alice\ntopic readwrite a/#\n").unwrap();
        let f = AccessFiles::load(Some(&pw), Some(&acl)).unwrap();
        let (c, alice) = (s("c"), s("alice"));
        let pass = |p: &'static str| Some(Bytes::from_static(p.as_bytes()));
        let topic = |t: &str| TopicName::new(t).unwrap();
        assert_eq!(
            f.authenticate(&c, Some(&alice), pass("one").as_ref()),
            Ok(())
        );
        assert!(f.can_publish(&c, Some(&alice), &topic("a/x")));
        assert!(!f.can_publish(&c, Some(&alice), &topic("b/x")));

        std::fs::write(
            &pw,
            crate::runtimes::access::password_entry("alice", "two").unwrap(),
        )
        .unwrap();
        std::fs::write(&acl, "user alice\ntopic readwrite b/#\n").unwrap();
        f.reload().unwrap();
        assert_eq!(
            f.authenticate(&c, Some(&alice), pass("one").as_ref()),
            Err(ReasonCode::BadUserNameOrPassword)
        );
        assert_eq!(
            f.authenticate(&c, Some(&alice), pass("two").as_ref()),
            Ok(())
        );
        assert!(!f.can_publish(&c, Some(&alice), &topic("a/x")));
        assert!(f.can_publish(&c, Some(&alice), &topic("b/x")));

        // A broken file is refused whole: the rules in use stay.
        std::fs::write(&acl, "usr alice\n").unwrap();
        assert!(f.reload().is_err());
        assert!(f.can_publish(&c, Some(&alice), &topic("b/x")));
        assert_eq!(
            f.authenticate(&c, Some(&alice), pass("two").as_ref()),
            Ok(())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
