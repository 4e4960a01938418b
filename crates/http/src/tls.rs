//! TLS with rustls: certificate files to an acceptor that offers HTTP/2 and HTTP/1.1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::ServeError;

/// Where a TLS certificate and its key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Loads the files into an acceptor; any problem names the file.
    pub fn acceptor(&self) -> Result<TlsAcceptor, ServeError> {
        let tls_error = |path: &Path, e: &dyn std::fmt::Display| {
            ServeError::Tls(format!("{}: {e}", path.display()))
        };
        let cert_pem = std::fs::read(&self.cert).map_err(|e| tls_error(&self.cert, &e))?;
        let key_pem = std::fs::read(&self.key).map_err(|e| tls_error(&self.key, &e))?;
        let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error(&self.cert, &e))?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .map_err(|e| tls_error(&self.key, &e))?
            .ok_or_else(|| tls_error(&self.key, &"no private key"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServeError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| ServeError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
