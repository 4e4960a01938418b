//! The store's shared state: the blob folder, the verifier (re-read when the keyring file
//! changes), the ledger, CORS policy and metrics.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use valet_key::{Keyring, Verifier};
use valet_ledger::Ledger;

use crate::blobs::BlobFolder;
use crate::config::StoreConfig;
use crate::cors::AllowedOrigins;
use crate::metrics::Metrics;

/// Everything a request handler may need.
pub struct Store {
    pub(crate) config: StoreConfig,
    pub(crate) blobs: Arc<BlobFolder>,
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
        let blobs = Arc::new(BlobFolder::open(&config.data_dir)?);
        let keys = KeyringWatch::new(config.keyring_path.clone(), keyring, config.skew.as_secs());
        Ok(Arc::new(Store {
            cors: AllowedOrigins::from_list(&config.cors_origins),
            config,
            blobs,
            ledger,
            metrics: Metrics::new(),
            keys,
        }))
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
        self.keys.reload_if_changed();
    }
}

/// The verifier, swapped whole when the keyring file's modification time changes.
#[derive(Debug)]
struct KeyringWatch {
    path: PathBuf,
    skew: u64,
    seen: Mutex<Option<SystemTime>>,
    verifier: RwLock<Arc<Verifier>>,
}

impl KeyringWatch {
    fn new(path: PathBuf, keyring: Keyring, skew: u64) -> KeyringWatch {
        let seen = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        KeyringWatch {
            path,
            skew,
            seen: Mutex::new(seen),
            verifier: RwLock::new(Arc::new(Verifier::new(keyring).with_skew(skew))),
        }
    }

    fn current(&self) -> Arc<Verifier> {
        self.verifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn reload_if_changed(&self) {
        let Ok(modified) = std::fs::metadata(&self.path).and_then(|m| m.modified()) else {
            return;
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == Some(modified) {
            return;
        }
        match valet_keyring::load(&self.path) {
            Ok(ring) => {
                let ids: Vec<_> = ring.keys().iter().map(|k| k.id().to_owned()).collect();
                *self.verifier.write().unwrap_or_else(|p| p.into_inner()) =
                    Arc::new(Verifier::new(ring).with_skew(self.skew));
                *seen = Some(modified);
                tracing::info!(?ids, "keyring reloaded");
            }
            // Keep verifying with the keys we have: a half-written or broken file must not
            // lock every client out (the file is replaced atomically, so this is rare).
            Err(e) => tracing::warn!(error = %e, "keyring changed but could not be read"),
        }
    }
}
