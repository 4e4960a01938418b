//! The store's shared state: the blob folder, the verifier (re-read when the keyring file
//! changes), the ledger, CORS policy and metrics.

use std::sync::Arc;

use valet_key::{Keyring, Verifier};
use valet_keyring::{KeyringWatch, Reload};
use valet_ledger::Ledger;

use crate::blobs::{BlobFolder, Blobs, S3Blobs};
use crate::config::{BlobStorage, StoreConfig};
use crate::cors::AllowedOrigins;
use crate::metrics::Metrics;

/// Everything a request handler may need.
pub struct Store {
    pub(crate) config: StoreConfig,
    pub(crate) blobs: Blobs,
    pub(crate) ledger: Arc<dyn Ledger>,
    pub(crate) cors: AllowedOrigins,
    pub(crate) metrics: Metrics,
    keys: KeyringWatch,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .field("blobs", &self.blobs)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the blob folder (cleaning up after a crash) and assembles the state.
    pub fn open(
        config: StoreConfig,
        keyring: Keyring,
        ledger: Arc<dyn Ledger>,
    ) -> std::io::Result<Arc<Store>> {
        let metrics = Metrics::new();
        config.check_blob_mode()?;
        let blobs = match &config.blobs {
            BlobStorage::Folder => Blobs::Folder(Arc::new(BlobFolder::open(
                &config.data_dir,
                config.blob_mode,
                config.blob_cache,
                metrics.blob_cache_counters(),
            )?)),
            BlobStorage::S3(s3) => Blobs::S3(Arc::new(
                S3Blobs::open(s3, &config.data_dir, config.blob_mode, ledger.name_locks())
                    .map_err(|e| std::io::Error::other(format!("blobs s3://{}: {e}", s3.bucket)))?,
            )),
        };
        let keys = KeyringWatch::new(config.keyring_path.clone(), keyring, config.skew.as_secs());
        Ok(Arc::new(Store {
            cors: AllowedOrigins::from_list(&config.cors_origins),
            config,
            blobs,
            ledger,
            metrics,
            keys,
        }))
    }

    /// Aborts the multipart uploads begun more than `older_than` ago and never finished (left by
    /// a store node that died mid-upload). Nothing to do for the local folder.
    pub async fn sweep_abandoned_uploads(
        &self,
        older_than: std::time::Duration,
    ) -> Result<crate::Swept, crate::SweepError> {
        match &self.blobs {
            Blobs::S3(bucket) => bucket.sweep_abandoned_uploads(older_than).await,
            Blobs::Folder(_) => Ok(crate::Swept::default()),
        }
    }

    /// Sweeps abandoned multipart uploads once an hour (S3 only), for as long as it is polled.
    pub(crate) async fn sweep_abandoned_uploads_forever(&self) {
        match &self.blobs {
            Blobs::S3(bucket) => bucket.sweep_abandoned_uploads_forever().await,
            Blobs::Folder(_) => std::future::pending().await,
        }
    }

    /// The verifier for the current keyring.
    pub fn verifier(&self) -> Arc<Verifier> {
        self.keys.current()
    }

    /// The metrics, for tests and embedding.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Re-reads the keyring file if it changed since the last look.
    pub fn reload_keyring_if_changed(&self) {
        match self.keys.reload_if_changed() {
            Ok(Reload::Unchanged) => {}
            Ok(Reload::Reloaded { ids, active }) => tracing::info!(
                ?ids,
                ?active,
                "keyring reloaded: keys {}; active {}",
                ids.join(", "),
                active.as_deref().unwrap_or("none")
            ),
            Err(e) => tracing::warn!(error = %e, "keyring changed but could not be read"),
        }
    }
}
