//! Certificates for the transport tests, made by rcgen: a CA, server certificates for
//! `localhost`/127.0.0.1 (valid, expired, for another name), a client certificate, written as
//! PEM files into a fresh directory that is removed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// Numbers the directories of one process.
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// PEM files in a directory of their own.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
}

impl Pki {
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    (cert, Issuer::new(p, key))
}

fn leaf(
    names: &[&str],
    cn: &str,
    issuer: &Issuer<'_, KeyPair>,
    expired: bool,
) -> (rcgen::Certificate, KeyPair) {
    let names = names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut p = CertificateParams::new(names).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    (p.signed_by(&key, issuer).unwrap(), key)
}

fn write(dir: &Path, name: &str, pem: String) {
    std::fs::write(dir.join(name), pem).unwrap();
}

/// `ca.pem`; `server.pem`/`server.key` for localhost and 127.0.0.1; `client.pem`/
/// `client.key` (CN `device-7`); `expired.pem`/`expired.key` (localhost, 2020);
/// `other-ca.pem` (a CA that signed nothing here); `wrong-name.pem`/`wrong-name.key`
/// (for `elsewhere.example`).
pub(crate) fn make(tag: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!(
        "tinymqtt-pki-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca_cert, issuer) = ca("tinymqtt test CA");
    write(&dir, "ca.pem", ca_cert.pem());
    let (other, _) = ca("another CA");
    write(&dir, "other-ca.pem", other.pem());
    for (name, names, cn, expired) in [
        (
            "server",
            &["localhost", "127.0.0.1"][..],
            "localhost",
            false,
        ),
        ("client", &[][..], "device-7", false),
        (
            "expired",
            &["localhost", "127.0.0.1"][..],
            "localhost",
            true,
        ),
        ("wrong-name", &["elsewhere.example"][..], "elsewhere", false),
    ] {
        let (cert, key) = leaf(names, cn, &issuer, expired);
        write(&dir, &format!("{name}.pem"), cert.pem());
        write(&dir, &format!("{name}.key"), key.serialize_pem());
    }
    Pki { dir }
}
