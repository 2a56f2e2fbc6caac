//! TLS to a `tcp://` engine, as the Docker CLI sets it up: the material of the Docker context
//! in use (`~/.docker/contexts/tls/<sha256 of the name>/docker/{ca,cert,key}.pem`), else
//! `DOCKER_TLS_VERIFY` with the files in `DOCKER_CERT_PATH` (default `~/.docker`). The engine's
//! certificate is verified against that CA, and wsm shows its own client certificate. A plain
//! `tcp://` address that is not loopback gets a warning: anyone on that network can run
//! anything as root on the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The three files of a TLS client: the CA the engine's certificate must chain to, and wsm's
/// own certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Where the files came from, for messages: `DOCKER_CERT_PATH`, a context's name.
    pub source: String,
}

impl Material {
    /// The files `ca.pem`, `cert.pem` and `key.pem` in `dir`; an error naming a missing one.
    pub fn in_dir(dir: &Path, source: &str) -> Result<Self, String> {
        let m = Material {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            source: source.to_string(),
        };
        for f in [&m.ca, &m.cert, &m.key] {
            if !f.is_file() {
                return Err(format!(
                    "TLS is asked for ({source}) but {} is missing",
                    f.display()
                ));
            }
        }
        Ok(m)
    }

    /// The material the environment asks for: `DOCKER_TLS_VERIFY` set (to anything but "" or
    /// 0) or `DOCKER_CERT_PATH` set, with the files in `DOCKER_CERT_PATH` (else `~/.docker`).
    pub fn from_env() -> Result<Option<Self>, String> {
        let verify = std::env::var("DOCKER_TLS_VERIFY")
            .ok()
            .filter(|v| !v.is_empty() && v != "0");
        let cert_path = std::env::var_os("DOCKER_CERT_PATH").filter(|p| !p.is_empty());
        if verify.is_none() && cert_path.is_none() {
            return Ok(None);
        }
        let dir = match cert_path {
            Some(p) => PathBuf::from(p),
            None => dirs::home_dir()
                .ok_or("DOCKER_TLS_VERIFY is set and there is no home folder to find ~/.docker in")?
                .join(".docker"),
        };
        let source = if verify.is_some() {
            "DOCKER_TLS_VERIFY"
        } else {
            "DOCKER_CERT_PATH"
        };
        Material::in_dir(&dir, source).map(Some)
    }

    /// A rustls client configuration from the files: roots from the CA, client auth from the
    /// certificate and key.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let read_err = |f: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", f.display());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).map_err(|e| read_err(&self.ca, &e))? {
            roots
                .add(cert.map_err(|e| read_err(&self.ca, &e))?)
                .map_err(|e| read_err(&self.ca, &e))?;
        }
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| read_err(&self.cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read_err(&self.cert, &e))?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| read_err(&self.key, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("{} and {}: {e}", self.cert.display(), self.key.display()))?;
        Ok(Arc::new(config))
    }
}

/// The host part of a `tcp://host:port` address, without brackets.
pub fn host_of(addr: &str) -> &str {
    let rest = addr
        .trim_start_matches("tcp://")
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let host = match rest.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => rest,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether a `tcp://` address stays on this machine (plain text is then nobody else's to read).
pub fn is_loopback(addr: &str) -> bool {
    let host = host_of(addr);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Opens a TLS connection to `addr` (`tcp://host:port`) with `config`.
pub async fn dial(
    addr: &str,
    config: &Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let host = host_of(addr).to_string();
    let target = addr
        .trim_start_matches("tcp://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let name = ServerName::try_from(host.clone())
        .map_err(|e| format!("{host} is not a name TLS can verify: {e}"))?;
    let tcp = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {target}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_loopback_are_read_from_addresses() {
        assert_eq!(host_of("tcp://10.0.0.2:2376"), "10.0.0.2");
        assert_eq!(host_of("tcp://[::1]:2375"), "::1");
        assert_eq!(host_of("tcp://docker.example"), "docker.example");
        assert!(is_loopback("tcp://127.0.0.1:2375"));
        assert!(is_loopback("tcp://[::1]:2375"));
        assert!(is_loopback("tcp://localhost:2375"));
        assert!(!is_loopback("tcp://10.0.0.2:2375"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
        let err = Material::in_dir(dir.path(), "DOCKER_TLS_VERIFY").unwrap_err();
        assert!(err.contains("cert.pem is missing"), "{err}");
    }
}
