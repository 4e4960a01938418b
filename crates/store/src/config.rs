//! The store's settings. The binary fills them from flags, a file and the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use valet_http::TlsFiles;

/// Everything the store needs to run.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The data folder: `blobs/`, `tmp/`, the ledger and (by default) the keyring.
    pub data_dir: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The keyring file, re-read when it changes so that rotations reach a running store.
    pub keyring_path: PathBuf,
    /// Clock-skew tolerance for key windows.
    pub skew: Duration,
    /// Origins allowed to call from a browser; empty for none, `*` for any.
    pub cors_origins: Vec<String>,
    /// Serve HTTPS with these files.
    pub tls: Option<TlsFiles>,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// How long a client may take to send its request head.
    pub header_timeout: Duration,
    /// How long an upload body may stall between two chunks.
    pub body_idle_timeout: Duration,
}

impl StoreConfig {
    /// How the store's connections are served.
    pub fn serve_options(&self) -> valet_http::ServeOptions {
        valet_http::ServeOptions {
            tls: self.tls.clone(),
            header_timeout: self.header_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

impl StoreConfig {
    /// Defaults for a data folder and an address.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> StoreConfig {
        StoreConfig {
            keyring_path: data_dir.join("keyring"),
            data_dir,
            listen,
            skew: Duration::from_secs(valet_key::DEFAULT_SKEW_SECONDS),
            cors_origins: Vec::new(),
            tls: None,
            shutdown_grace: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
        }
    }
}
