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

/// A TLS stream to an upstream, as [`TlsClient::connect`] makes it.
pub type ClientTlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Why a TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("TLS to upstreams: {0}")]
pub struct TlsClientError(String);

/// TLS to upstreams (the gate's proxy routes to `https://` URLs): the certificate must chain
/// to one of the system's trusted roots, or to one of the extra roots given, and name the
/// host. HTTP/1.1 only, as the gate speaks to upstreams.
#[derive(Clone)]
pub struct TlsClient {
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").finish_non_exhaustive()
    }
}

impl TlsClient {
    /// A client trusting the system's roots and the certificates in the PEM file `extra_roots`
    /// (a private CA's, typically), if given.
    pub fn new(extra_roots: Option<&Path>) -> Result<TlsClient, TlsClientError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "a system root certificate could not be loaded");
        }
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        if let Some(path) = extra_roots {
            let failed =
                |e: &dyn std::fmt::Display| TlsClientError(format!("{}: {e}", path.display()));
            let pem = std::fs::read(path).map_err(|e| failed(&e))?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| failed(&e))?;
            if certs.is_empty() {
                return Err(failed(&"no certificate in the file"));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| failed(&e))?;
            }
        } else if added == 0 {
            return Err(TlsClientError(
                "no trusted root certificate: the system has none, and no extra roots are configured"
                    .into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsClientError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsClient {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Runs the TLS handshake on `stream` with the server `host` (a DNS name or an IP
    /// address), checking its certificate.
    pub async fn connect(
        &self,
        host: &str,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<ClientTlsStream> {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.connector.connect(name, stream).await
    }
}
