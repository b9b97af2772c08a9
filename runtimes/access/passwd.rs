//! Mosquitto's `password_file`: `user:$7$ITERATIONS$SALT$HASH` lines (PBKDF2-SHA512, as
//! `mosquitto_passwd` writes them) and the older `user:$6$SALT$HASH` (salted SHA-512).

use std::collections::HashMap;
use std::path::Path;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::{meaningful_lines, read, FileError};
use crate::broker::Authenticator;
use crate::{ByteStr, ReasonCode};

/// PBKDF2 iterations of the entries this module writes (`mosquitto_passwd` writes 101; a
/// verification costs about a millisecond at this count).
const DEFAULT_ITERATIONS: u32 = 1_000;
/// The highest iteration count accepted in a file, so that one line cannot make every CONNECT
/// spin for minutes.
const MAX_ITERATIONS: u32 = 10_000_000;
/// Salt bytes of the entries this module writes (as `mosquitto_passwd`).
const SALT_LEN: usize = 12;
/// Hash bytes: SHA-512's output, what both formats store.
const HASH_LEN: usize = 64;

/// Standard base64 that reads padded and unpadded text alike and writes padding.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One user's stored hash.
#[derive(Clone, PartialEq, Eq)]
enum Hash {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// `$6$`: SHA-512 over the password then the salt.
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
}

impl Hash {
    /// The hash of `password` with this entry's parameters.
    fn derive(&self, password: &[u8]) -> Vec<u8> {
        match self {
            Hash::Pbkdf2 {
                iterations, salt, ..
            } => pbkdf2_sha512(password, salt, *iterations),
            Hash::Sha512 { salt, .. } => {
                let mut h = Sha512::new();
                h.update(password);
                h.update(salt);
                h.finalize().to_vec()
            }
        }
    }

    /// The stored hash.
    fn stored(&self) -> &[u8] {
        match self {
            Hash::Pbkdf2 { hash, .. } | Hash::Sha512 { hash, .. } => hash,
        }
    }

    /// Whether `password` hashes to the stored hash, compared in constant time.
    fn verify(&self, password: &[u8]) -> bool {
        bool::from(self.derive(password).ct_eq(self.stored()))
    }
}

fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    out
}

/// A Mosquitto password file: user names and their password hashes.
///
/// As an [`Authenticator`], it lets in a client whose user name is in the file and whose
/// password matches, refuses any other client that sends a user name with 0x86 (bad user name
/// or password; 3.1.x return code 4), and leaves clients without a user name to the
/// anonymous-access setting.
///
/// Checking a password costs what the user's entry asks (PBKDF2 iterations), so it is
/// [deferred](Authenticator::defers) to the runtime's check threads; a user name that is not
/// in the file costs what the file's most common kind of entry costs, so that timing does not
/// tell which users exist.
#[derive(Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, Hash>,
    /// Hashed for a user name that is not in the file: the parameters of the file's most
    /// common kind of entry, with a fixed salt and hash.
    decoy: Option<Hash>,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users: Vec<&String> = self.users.keys().collect();
        users.sort();
        f.debug_struct("PasswordFile")
            .field("users", &users)
            .finish()
    }
}

impl PasswordFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<PasswordFile, FileError> {
        let path = path.as_ref();
        PasswordFile::parse(&read(path)?).map_err(|e| e.in_file(path))
    }

    /// Parses the text of a password file; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<PasswordFile, FileError> {
        let mut users = HashMap::new();
        for (n, line) in meaningful_lines(text) {
            let (user, hash) = parse_line(line).map_err(|r| FileError::line(n, r))?;
            if users.insert(user.to_owned(), hash).is_some() {
                return Err(FileError::line(n, format!("user {user:?} appears twice")));
            }
        }
        let decoy = decoy(&users);
        Ok(PasswordFile { users, decoy })
    }

    /// How many users the file names.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file names no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `user` is in the file and `password` is theirs.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => hash.verify(password),
            None => {
                // As long as a typical user's check, so that timing does not tell who exists.
                if let Some(d) = &self.decoy {
                    let _ = d.verify(password);
                }
                false
            }
        }
    }
}

impl Authenticator for PasswordFile {
    fn defers(&self) -> bool {
        true
    }

    fn authenticate(
        &self,
        _client_id: &ByteStr,
        username: Option<&ByteStr>,
        password: Option<&Bytes>,
    ) -> Result<(), ReasonCode> {
        let Some(user) = username else {
            return Ok(()); // anonymous: BrokerConfig::allow_anonymous decides
        };
        let password = password.map_or(&[][..], |p| &p[..]);
        if self.verify(user.as_str(), password) {
            Ok(())
        } else {
            Err(ReasonCode::BadUserNameOrPassword)
        }
    }
}

/// A hash shaped like the most common kind of entry in `users` (the scheme, and for PBKDF2
/// the iteration count; ties go to the costlier), with a fixed salt and hash; `None` for an
/// empty file.
fn decoy(users: &HashMap<String, Hash>) -> Option<Hash> {
    let mut counts: HashMap<Option<u32>, usize> = HashMap::new();
    for h in users.values() {
        let kind = match h {
            Hash::Pbkdf2 { iterations, .. } => Some(*iterations),
            Hash::Sha512 { .. } => None,
        };
        *counts.entry(kind).or_default() += 1;
    }
    let (kind, _) = counts.into_iter().max_by_key(|&(k, n)| (n, k))?;
    let (salt, hash) = (vec![0; SALT_LEN], vec![0; HASH_LEN]);
    Some(match kind {
        Some(iterations) => Hash::Pbkdf2 {
            iterations,
            salt,
            hash,
        },
        None => Hash::Sha512 { salt, hash },
    })
}

/// One `user:hash` line.
fn parse_line(line: &str) -> Result<(&str, Hash), String> {
    let (user, hash) = line
        .split_once(':')
        .ok_or("expected user:$7$iterations$salt$hash")?;
    if user.is_empty() {
        return Err("empty user name".into());
    }
    let parts: Vec<&str> = hash.split('$').collect();
    let decode = |what: &str, s: &str| {
        B64.decode(s)
            .map_err(|e| format!("{what} of user {user:?} is not base64: {e}"))
    };
    let hash = match parts.as_slice() {
        ["", "7", iterations, salt, hash] => {
            let iterations: u32 = iterations
                .parse()
                .ok()
                .filter(|i| (1..=MAX_ITERATIONS).contains(i))
                .ok_or_else(|| {
                    format!("iteration count of user {user:?} is not in 1..={MAX_ITERATIONS}")
                })?;
            Hash::Pbkdf2 {
                iterations,
                salt: decode("salt", salt)?,
                hash: decode("hash", hash)?,
            }
        }
        ["", "6", salt, hash] => Hash::Sha512 {
            salt: decode("salt", salt)?,
            hash: decode("hash", hash)?,
        },
        _ => {
            return Err(format!(
                "the password of user {user:?} is not a $7$ (PBKDF2-SHA512) or $6$ (SHA-512) hash; hash plain-text files with `mosquitto_passwd -U` or `broker passwd`"
            ))
        }
    };
    if hash.stored().len() != HASH_LEN {
        return Err(format!(
            "hash of user {user:?} is {} bytes, not {HASH_LEN}",
            hash.stored().len()
        ));
    }
    Ok((user, hash))
}

/// A password file line for `user` with `password`: PBKDF2-SHA512 with a random salt, in the
/// `$7$` format `mosquitto_passwd` writes and Mosquitto reads.
pub fn password_entry(user: &str, password: &str) -> Result<String, FileError> {
    if user.is_empty() || user.contains(':') || user.contains(['\n', '\r']) {
        return Err(FileError::Entry(format!(
            "user name {user:?} is empty or has ':' or a line break"
        )));
    }
    let mut salt = [0; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| FileError::Entry(format!("no random salt: {e}")))?;
    Ok(entry_with_salt(user, password, &salt, DEFAULT_ITERATIONS))
}

fn entry_with_salt(user: &str, password: &str, salt: &[u8], iterations: u32) -> String {
    let hash = pbkdf2_sha512(password.as_bytes(), salt, iterations);
    format!(
        "{user}:$7${iterations}${}${}",
        B64.encode(salt),
        B64.encode(hash)
    )
}

/// The password file `text` with `user`'s entry set to `password`: their line replaced where
/// it was, or appended; every other line is kept as it was.
pub fn set_password(text: &str, user: &str, password: &str) -> Result<String, FileError> {
    let entry = password_entry(user, password)?;
    let mut out = String::with_capacity(text.len() + entry.len() + 1);
    let mut replaced = false;
    for line in text.lines() {
        let same_user = line.trim_start().split_once(':').map(|(u, _)| u) == Some(user);
        if same_user && !line.trim_start().starts_with('#') {
            if !replaced {
                out.push_str(&entry);
                out.push('\n');
                replaced = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&entry);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `mosquitto_passwd -c -b FILE alice secret` (mosquitto 2.0.11).
    const ALICE_7: &str = "alice:$7$101$KwVRY7XK8hd1rpH/$PxBLSlElUk6VznjPJrrc8b8WwS8b1Q37dgtDPuSpFKCReF0/GoCuUH6xK93Br1TfWeGzz1K81Q5It6Gkw4X5RQ==";
    /// Written by `mosquitto_passwd -H sha512 -b FILE bob pw2` (mosquitto 2.0.11).
    const BOB_6: &str = "bob:$6$fqSupJlGpfDCk3EG$+IVGnPQN0jQGqwIxLtEYjstSKszy3hVMJcBswsJh7AWo68yyRn3u07Mukem7L4C20sCFIXV3JQmEsMWt+FJIAg==";

    fn auth(f: &PasswordFile, user: Option<&str>, pw: Option<&str>) -> Result<(), ReasonCode> {
        let user = user.map(|u| ByteStr::try_from(u.to_owned()).unwrap());
        let pw = pw.map(|p| Bytes::copy_from_slice(p.as_bytes()));
        f.authenticate(
            &ByteStr::try_from("c".to_owned()).unwrap(),
            user.as_ref(),
            pw.as_ref(),
        )
    }

    #[test]
    fn mosquitto_passwd_pbkdf2_and_sha512_lines_verify() {
        let f = PasswordFile::parse(&format!("# users\n\n{ALICE_7}\n  {BOB_6}  \n")).unwrap();
        assert_eq!(f.len(), 2);
        assert!(f.verify("alice", b"secret"));
        assert!(!f.verify("alice", b"secreT"));
        assert!(!f.verify("alice", b""));
        assert!(f.verify("bob", b"pw2"));
        assert!(!f.verify("bob", b"secret"));
        assert!(!f.verify("carol", b"secret"));
    }

    #[test]
    fn authenticator_refuses_bad_credentials_with_0x86_and_leaves_anonymous_alone() {
        let f = PasswordFile::parse(ALICE_7).unwrap();
        assert_eq!(auth(&f, Some("alice"), Some("secret")), Ok(()));
        let bad = Err(ReasonCode::BadUserNameOrPassword);
        assert_eq!(auth(&f, Some("alice"), Some("nope")), bad);
        assert_eq!(auth(&f, Some("alice"), None), bad);
        assert_eq!(auth(&f, Some("mallory"), Some("secret")), bad);
        assert_eq!(auth(&f, None, None), Ok(()));
    }

    /// The work a check of `user` does: the iteration count of the entry it hashes against
    /// (`Some(0)` for a single SHA-512, `None` for no hashing at all).
    fn cost(f: &PasswordFile, user: &str) -> Option<u32> {
        let hash = f.users.get(user).or(f.decoy.as_ref())?;
        Some(match hash {
            Hash::Pbkdf2 { iterations, .. } => *iterations,
            Hash::Sha512 { .. } => 0,
        })
    }

    #[test]
    fn an_unknown_user_costs_what_the_files_typical_entry_costs() {
        let carol = entry_with_salt("carol", "c", &[1; SALT_LEN], 101);
        let f = PasswordFile::parse(&format!("{ALICE_7}\n{BOB_6}\n{carol}\n")).unwrap();
        assert_eq!(cost(&f, "alice"), Some(101));
        assert_eq!(cost(&f, "mallory"), Some(101));
        assert!(!f.verify("mallory", b"secret"));
        let f = PasswordFile::parse(BOB_6).unwrap();
        assert_eq!(cost(&f, "mallory"), Some(0));
        let dave = entry_with_salt("dave", "d", &[1; SALT_LEN], 2000);
        let f = PasswordFile::parse(&dave).unwrap();
        assert_eq!(cost(&f, "mallory"), Some(2000));
        // Checks are deferred to the runtime's threads.
        assert!(f.defers());
    }

    #[test]
    fn entries_written_here_parse_and_verify() {
        let line = password_entry("dave", "p:a$s w").unwrap();
        assert!(line.starts_with("dave:$7$1000$"), "{line}");
        let f = PasswordFile::parse(&line).unwrap();
        assert!(f.verify("dave", b"p:a$s w"));
        assert!(!f.verify("dave", b"p:a$s"));
        // A known salt gives a known layout: 16 base64 characters of salt, 88 of hash.
        let fixed = entry_with_salt("e", "x", &[7; SALT_LEN], 101);
        let parts: Vec<&str> = fixed.split('$').collect();
        assert_eq!((parts[3].len(), parts[4].len()), (16, 88));
        assert!(password_entry("a:b", "x").is_err());
        assert!(password_entry("", "x").is_err());
    }

    #[test]
    fn set_password_replaces_the_users_line_and_keeps_the_others() {
        let text = format!("# keep me\n{ALICE_7}\n{BOB_6}\n");
        let out = set_password(&text, "alice", "new").unwrap();
        let f = PasswordFile::parse(&out).unwrap();
        assert!(f.verify("alice", b"new") && !f.verify("alice", b"secret"));
        assert!(f.verify("bob", b"pw2"));
        assert!(out.starts_with("# keep me\nalice:$7$"));
        let out = set_password(&out, "carol", "c").unwrap();
        assert_eq!(PasswordFile::parse(&out).unwrap().len(), 3);
    }

    #[test]
    fn bad_lines_are_refused_with_their_line_number() {
        let cases = [
            "alice",                                  // no colon
            ":$7$101$KwVRY7XK8hd1rpH/$PxBL",          // no user
            "alice:secret",                           // plain text
            "alice:$7$x$KwVRY7XK8hd1rpH/$PxBL",       // iterations not a number
            "alice:$7$0$KwVRY7XK8hd1rpH/$PxBL",       // zero iterations
            "alice:$7$101$Kw!!$PxBL",                 // salt not base64
            "alice:$7$101$KwVRY7XK8hd1rpH/$PxBLSlEl", // hash too short
            "alice:$5$abc$def",                       // unknown scheme
        ];
        for bad in cases {
            let text = format!("# comment\n{BOB_6}\n{bad}\n");
            match PasswordFile::parse(&text) {
                Err(FileError::Line { line: 3, .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let twice = format!("{BOB_6}\n{BOB_6}\n");
        assert!(matches!(
            PasswordFile::parse(&twice),
            Err(FileError::Line { line: 2, .. })
        ));
        let e = PasswordFile::parse("x")
            .unwrap_err()
            .in_file(Path::new("pw"));
        assert!(e.to_string().starts_with("pw:1: "), "{e}");
    }
}
