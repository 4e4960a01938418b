//! The store's settings. The binary fills them from flags, a file and the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::blobs::{BlobStorage, S3Settings};

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
    /// The lowest average rate, in bytes per second since the body started, that an upload
    /// may keep once [`upload_rate_grace`](Self::upload_rate_grace) has passed; a slower
    /// upload is cut with `408 request_timeout` and leaves nothing. Zero turns the check off.
    ///
    /// Why: [`body_idle_timeout`](Self::body_idle_timeout) only bounds the silence between
    /// two chunks, so a client sending one byte every minute would hold a connection, a file
    /// descriptor and a temporary file forever (a slow-loris upload). Default: 1 KiB/s, far
    /// below any real link (a poor mobile connection still moves tens of KiB/s), so a
    /// legitimate upload is never cut, while a trickle is cut after the grace period. The
    /// rate is the average since the body started, so pauses in an otherwise honest upload
    /// are tolerated as long as the bytes before them make up for them.
    pub min_upload_rate: u64,
    /// How long an upload may run before [`min_upload_rate`](Self::min_upload_rate) is
    /// enforced: time for a connection to ramp up (TCP slow start, a phone waking its radio),
    /// and for small bodies, which finish within it whatever their rate. Default: 30 s, the
    /// same as the time allowed for a request head.
    pub upload_rate_grace: Duration,
    /// Bytes of small blobs (up to 64 KiB each) kept in memory and served without touching
    /// their files; zero turns it off. Default: 8 MiB. See `docs/STORE.md`.
    pub blob_cache: u64,
    /// The permission bits of blob files: [`DEFAULT_BLOB_MODE`] (owner only) unless widened
    /// to let the group or others read them (`0o640`, `0o644`, for a backup user or a web
    /// server reading the folder). The folders of the data tier get the same with search
    /// permission wherever there is read (`0o700`, `0o750`, `0o755`). The owner always reads
    /// and writes; nobody else may ever write or execute ([`StoreConfig::check_blob_mode`]).
    pub blob_mode: u32,
    /// What each connection may hold and for how long: first bytes, idleness, stalled
    /// responses, connections per worker, HTTP/2 streams and uploads per connection.
    pub limits: valet_http::ConnectionLimits,
    /// Where blobs live: the local folder `DATA/blobs` (the default) or an S3 bucket.
    pub blobs: BlobStorage,
}

/// Blob files readable and writable by their owner only, folders `0o700`: another local user
/// reads nothing of the data tier unless the operator says so.
pub const DEFAULT_BLOB_MODE: u32 = 0o600;

impl StoreConfig {
    /// Refuses a [`blob_mode`](StoreConfig::blob_mode) other than `0o600` plus read for the
    /// group or others: write or execute for anyone but the owner would let them change or run
    /// what clients uploaded.
    pub fn check_blob_mode(&self) -> std::io::Result<()> {
        if self.blob_mode & !0o644 == 0 && self.blob_mode & 0o600 == 0o600 {
            return Ok(());
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "blob_mode {:#o}: must be 600, 640, 604 or 644 (owner read and write; read for \
                 the group or others at most)",
                self.blob_mode
            ),
        ))
    }
}

impl StoreConfig {
    /// How the store's connections are served.
    pub fn serve_options(&self) -> valet_http::ServeOptions {
        valet_http::ServeOptions {
            tls: self.tls.clone(),
            header_timeout: self.header_timeout,
            shutdown_grace: self.shutdown_grace,
            limits: self.limits,
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
            min_upload_rate: 1024,
            upload_rate_grace: Duration::from_secs(30),
            blob_cache: crate::blobs::DEFAULT_BLOB_CACHE,
            blob_mode: DEFAULT_BLOB_MODE,
            limits: valet_http::ConnectionLimits::default(),
            blobs: BlobStorage::Folder,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_storage_is_a_folder_or_an_s3_url() {
        assert_eq!(BlobStorage::parse("").unwrap(), BlobStorage::Folder);
        assert_eq!(BlobStorage::parse("folder").unwrap(), BlobStorage::Folder);
        let BlobStorage::S3(s3) = BlobStorage::parse("s3://my-bucket/valet/blobs/").unwrap() else {
            panic!("an s3 URL");
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("my-bucket", "valet/blobs")
        );
        let BlobStorage::S3(s3) = BlobStorage::parse("s3://my-bucket").unwrap() else {
            panic!("an s3 URL");
        };
        assert_eq!(s3.prefix, "");
        for bad in [
            "gs://b",
            "s3://",
            "s3://UPPER",
            "s3://b/../x",
            "s3://ok-bucket/a//b",
        ] {
            assert!(BlobStorage::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_secret_is_not_shown() {
        let s3 = S3Settings {
            secret_access_key: Some("very-secret".into()),
            ..S3Settings::default()
        };
        assert!(!format!("{s3:?}").contains("very-secret"));
    }
}
