//! Where a client program connects, with mosquitto_pub/mosquitto_sub's flags: `--host` (a name
//! or an address), `--port`, `-L mqtts://[user[:password]@]host[:port]/topic`, `--url` (any of
//! `mqtt://`, `mqtts://`, `ws://`, `wss://`), and the TLS flags `--cafile`, `--cert`, `--key`,
//! `--insecure`, `--tls-use-os-certs`.

use std::path::PathBuf;

use tinymqtt::runtimes::driver::transport::{Endpoint, Roots, TlsOptions};

/// Where and how to connect.
#[derive(Debug, clap::Args)]
pub(crate) struct Connection {
    /// The broker's host name or address (resolved again on every reconnect).
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    host: String,
    /// The broker's port (default 1883, or 8883 with TLS).
    #[arg(short = 'p', long)]
    port: Option<u16>,
    /// mosquitto_pub's URL: `mqtt(s)://[user[:password]@]host[:port]/topic`.
    #[arg(short = 'L', value_name = "URL", conflicts_with_all = ["url", "host", "port"])]
    url_topic: Option<String>,
    /// The broker's URL: `mqtt://host:1883`, `mqtts://host:8883`, `ws://host:80/mqtt`,
    /// `wss://host:443/mqtt`.
    #[arg(long, conflicts_with_all = ["host", "port"])]
    url: Option<String>,
    /// Trust the CA certificates of this PEM file (turns TLS on).
    #[arg(long, value_name = "FILE")]
    cafile: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS (with --key).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Do not check the server's certificate AT ALL (tests only: anyone on the path can read
    /// and change the traffic).
    #[arg(long)]
    insecure: bool,
    /// Trust the platform's CA certificates (turns TLS on).
    #[arg(long)]
    tls_use_os_certs: bool,
}

/// What `-L` gives besides the endpoint.
#[derive(Debug, Default)]
pub(crate) struct FromUrl {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) topic: Option<String>,
}

impl Connection {
    /// The endpoint these flags name, and what `-L` said about credentials and the topic.
    pub(crate) fn endpoint(&self) -> Result<(Endpoint, FromUrl), String> {
        let tls_flags =
            self.cafile.is_some() || self.cert.is_some() || self.insecure || self.tls_use_os_certs;
        let mut extra = FromUrl::default();
        let url = if let Some(l) = &self.url_topic {
            let (scheme, rest) = l
                .split_once("://")
                .ok_or_else(|| format!("-L {l:?}: not mqtt(s)://host[:port]/topic"))?;
            if scheme != "mqtt" && scheme != "mqtts" {
                return Err(format!("-L {l:?}: the scheme is mqtt or mqtts"));
            }
            let (authority, topic) = rest.split_once('/').unwrap_or((rest, ""));
            let hostport = match authority.rsplit_once('@') {
                Some((cred, hostport)) => {
                    let (user, pass) = match cred.split_once(':') {
                        Some((u, p)) => (u, Some(p.to_owned())),
                        None => (cred, None),
                    };
                    extra.username = Some(user.to_owned());
                    extra.password = pass;
                    hostport
                }
                None => authority,
            };
            extra.topic = (!topic.is_empty()).then(|| topic.to_owned());
            format!("{scheme}://{hostport}")
        } else if let Some(u) = &self.url {
            u.clone()
        } else {
            let scheme = if tls_flags { "mqtts" } else { "mqtt" };
            let host = match self.host.contains(':') {
                true => format!("[{}]", self.host),
                false => self.host.clone(),
            };
            let port = self.port.unwrap_or(if tls_flags { 8883 } else { 1883 });
            format!("{scheme}://{host}:{port}")
        };
        let endpoint = Endpoint::parse(&url).map_err(|e| e.to_string())?;
        if tls_flags && !endpoint.scheme().is_tls() {
            return Err(format!("{url}: the TLS flags need mqtts:// or wss://"));
        }
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.cafile {
            // Like mosquitto's tools: the file replaces the built-in roots.
            tls = tls.roots(Roots::None).ca_file(ca);
        }
        if self.tls_use_os_certs {
            tls = tls.roots(Roots::Native);
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls = tls.client_auth(cert, key);
        }
        if self.insecure {
            tls = tls.dangerous_skip_verification();
        }
        Ok((endpoint.tls(tls), extra))
    }
}
