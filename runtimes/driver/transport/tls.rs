//! TLS through rustls's own sans-IO connection API: socket bytes go in with `read_tls`, are
//! decrypted by `process_new_packets`, and leave with `write_tls`, all on the caller's buffers,
//! so every runtime shares this one code path. The ring provider does the cryptography.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, Connection, DigitallySignedStruct, RootCertStore, ServerConfig};

use super::TransportError;

/// Which trust roots a TLS client checks the server's certificate against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Roots {
    /// Mozilla's root certificates, built in (`webpki-roots`).
    #[default]
    Mozilla,
    /// The platform's trust store (`rustls-native-certs`: `/etc/ssl/certs` and the like).
    Native,
    /// None: only [`TlsOptions::ca_file`] (a private CA).
    None,
}

/// A TLS client's settings: trust roots, an extra CA, a client certificate, ALPN.
///
/// The server's certificate is checked against the roots and the host name of the URL (which
/// is also sent as SNI). [`TlsOptions::dangerous_skip_verification`] turns the check off, for
/// tests only.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    roots: Roots,
    ca_file: Option<PathBuf>,
    client_auth: Option<(PathBuf, PathBuf)>,
    alpn: Vec<Vec<u8>>,
    skip_verification: bool,
    config: Option<Arc<ClientConfig>>,
}

impl TlsOptions {
    /// Mozilla's roots, no client certificate, no ALPN.
    pub fn new() -> TlsOptions {
        TlsOptions::default()
    }

    /// Which trust roots to use (besides [`TlsOptions::ca_file`]).
    pub fn roots(mut self, roots: Roots) -> TlsOptions {
        self.roots = roots;
        self
    }

    /// Also trusts the CA certificates of this PEM file.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> TlsOptions {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents this client certificate (PEM, with its chain) and key (PEM) for mutual TLS.
    pub fn client_auth(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsOptions {
        self.client_auth = Some((cert.into(), key.into()));
        self
    }

    /// Offers these ALPN protocols (AWS IoT on port 443 wants `x-amzn-mqtt-ca`).
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> TlsOptions {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// Accepts ANY server certificate, for any name: anyone on the path can read and change
    /// the traffic. For tests against self-signed brokers only.
    pub fn dangerous_skip_verification(mut self) -> TlsOptions {
        self.skip_verification = true;
        self
    }

    /// Uses this rustls configuration as it is (every other setting is then ignored).
    pub fn with_config(mut self, config: Arc<ClientConfig>) -> TlsOptions {
        self.config = Some(config);
        self
    }

    /// The rustls configuration these options make; files are read now.
    pub fn build(&self) -> Result<Arc<ClientConfig>, TransportError> {
        if let Some(c) = &self.config {
            return Ok(c.clone());
        }
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Config(format!("tls: {e}")))?;
        let builder = if self.skip_verification {
            let verifier = SkipVerification(provider.signature_verification_algorithms);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        } else {
            let mut roots = RootCertStore::empty();
            match self.roots {
                Roots::Mozilla => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                Roots::Native => {
                    let found = rustls_native_certs::load_native_certs();
                    let (added, _) = roots.add_parsable_certificates(found.certs);
                    if added == 0 {
                        return Err(TransportError::Config(
                            "tls: no usable certificate in the platform's trust store".into(),
                        ));
                    }
                }
                Roots::None => {}
            }
            if let Some(path) = &self.ca_file {
                add_cas(&mut roots, path)?;
            }
            if roots.is_empty() {
                return Err(TransportError::Config(
                    "tls: no trust roots (Roots::None without a CA file)".into(),
                ));
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &self.client_auth {
            Some((cert, key)) => {
                let (chain, key) = (certs(cert)?, private_key(key)?);
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TransportError::Config(format!("tls: client certificate: {e}")))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }
}

/// A TLS listener's certificate files, with Mosquitto's names for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The server's certificate chain (PEM).
    pub certfile: PathBuf,
    /// The server's private key (PEM).
    pub keyfile: PathBuf,
    /// CA certificates (PEM) that client certificates are checked against; without it no
    /// client certificate is asked for.
    pub cafile: Option<PathBuf>,
    /// Refuses clients without a valid certificate (needs `cafile`).
    pub require_certificate: bool,
}

impl ServerTls {
    /// The rustls configuration of these files, read now: an unreadable file, a file without
    /// a certificate or key, or a key that does not match the certificate is an error naming
    /// the file and the reason.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TransportError> {
        let provider = provider();
        let chain = certs(&self.certfile)?;
        let key = private_key(&self.keyfile)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Config(format!("tls: {e}")))?;
        let builder = match &self.cafile {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                add_cas(&mut roots, ca)?;
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let v = if self.require_certificate {
                    v.build()
                } else {
                    v.allow_unauthenticated().build()
                };
                let v = v.map_err(|e| TransportError::Config(format!("{}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(v)
            }
            None if self.require_certificate => {
                return Err(TransportError::Config(
                    "tls: require_certificate needs a cafile".into(),
                ))
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| {
            TransportError::Config(format!(
                "{} and {} do not go together: {e}",
                self.certfile.display(),
                self.keyfile.display()
            ))
        })?;
        Ok(Arc::new(config))
    }
}

/// The ring provider (rustls 0.23.48 deprecates it because ring has no post-quantum key
/// exchange; aws-lc-rs, which has one, needs a much heavier build).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TransportError {
    TransportError::Config(format!("{}: {reason}", path.display()))
}

/// Every certificate of a PEM file (at least one).
fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            file_error(path, "no private key in the file")
        }
        e => file_error(path, e),
    })
}

/// Adds the CA certificates of a PEM file to `roots`.
fn add_cas(roots: &mut RootCertStore, path: &Path) -> Result<(), TransportError> {
    for c in certs(path)? {
        roots.add(c).map_err(|e| file_error(path, e))?;
    }
    Ok(())
}

/// Accepts every server certificate ([`TlsOptions::dangerous_skip_verification`]); the
/// handshake's signatures are still checked, so the session keys are the server's.
#[derive(Debug)]
struct SkipVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for SkipVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// One TLS connection, client or server, as a byte-in/byte-out machine.
pub(crate) struct TlsLayer {
    conn: Connection,
}

impl std::fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsLayer")
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

impl TlsLayer {
    /// A client connection to `host` (SNI and the certificate's name).
    pub(crate) fn client(config: Arc<ClientConfig>, host: &str) -> Result<Self, TransportError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| TransportError::Config(format!("tls: invalid server name {host:?}")))?;
        let mut conn = rustls::ClientConnection::new(config, name)?;
        // What the client sends before the handshake ends (its CONNECT) waits inside rustls;
        // the session bounds what it encodes, so rustls need not.
        conn.set_buffer_limit(None);
        Ok(TlsLayer { conn: conn.into() })
    }

    /// A server connection.
    pub(crate) fn server(config: Arc<ServerConfig>) -> Result<Self, TransportError> {
        let mut conn = rustls::ServerConnection::new(config)?;
        conn.set_buffer_limit(None);
        Ok(TlsLayer { conn: conn.into() })
    }

    /// Bytes from the socket: the plaintext goes to `up`, what rustls answers (handshake,
    /// alerts) to `down`. `Ok(false)`: the peer closed (close_notify).
    pub(crate) fn input(
        &mut self,
        mut data: &[u8],
        up: &mut Vec<u8>,
        down: &mut Vec<u8>,
    ) -> Result<bool, TransportError> {
        let mut open = true;
        while !data.is_empty() {
            self.conn.read_tls(&mut data)?;
            let state = match self.conn.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    // The alert that tells the peer why.
                    self.output(down);
                    return Err(e.into());
                }
            };
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let at = up.len();
                up.resize(at + n, 0);
                let read = self.conn.reader().read(&mut up[at..]).unwrap_or(0);
                up.truncate(at + read);
            }
            if state.peer_has_closed() {
                open = false;
            }
        }
        self.output(down);
        Ok(open)
    }

    /// Plaintext to send (held inside rustls until the handshake completes).
    pub(crate) fn send(&mut self, data: &[u8], down: &mut Vec<u8>) -> Result<(), TransportError> {
        self.conn.writer().write_all(data)?;
        self.output(down);
        Ok(())
    }

    /// What rustls has to send now (a client's hello, after [`TlsLayer::client`]).
    pub(crate) fn output(&mut self, down: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing to a Vec cannot fail.
            if self.conn.write_tls(down).is_err() {
                break;
            }
        }
    }

    /// Sends close_notify.
    pub(crate) fn close(&mut self, down: &mut Vec<u8>) {
        self.conn.send_close_notify();
        self.output(down);
    }

    /// Whether the handshake is still running.
    #[cfg(test)]
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The common name of the peer's certificate (a client's, on a server).
    pub(crate) fn peer_name(&self) -> Option<String> {
        let cert = self.conn.peer_certificates()?.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let cn = parsed.subject().iter_common_name().next()?;
        cn.as_str().ok().map(str::to_owned)
    }
}
