//! A keyring that follows its file, so that `valet key rotate` or `retire` reaches running
//! gates and stores without a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use valet_key::{Keyring, Verifier};

use crate::{load, KeyringFileError};

/// The verifier (and through it the signing keyring) of a keyring file, swapped whole when the
/// file's modification time changes. Readers never wait for a reload.
#[derive(Debug)]
pub struct KeyringWatch {
    path: PathBuf,
    skew: u64,
    seen: Mutex<Option<SystemTime>>,
    verifier: RwLock<Arc<Verifier>>,
}

/// What [`KeyringWatch::reload_if_changed`] did.
#[derive(Debug)]
pub enum Reload {
    /// The file has not changed.
    Unchanged,
    /// The file changed and was read.
    Reloaded {
        /// Its signing key ids, in the order they were added.
        ids: Vec<String>,
        /// The one that signs, if any.
        active: Option<String>,
    },
}

impl KeyringWatch {
    /// Watches `path`, starting from `keyring` (already loaded from it), checking keys with
    /// `skew` seconds of clock tolerance.
    pub fn new(path: PathBuf, keyring: Keyring, skew: u64) -> KeyringWatch {
        let seen = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        KeyringWatch {
            path,
            skew,
            seen: Mutex::new(seen),
            verifier: RwLock::new(Arc::new(Verifier::new(keyring).with_skew(skew))),
        }
    }

    /// The verifier for the keyring as last read; `.keyring()` on it signs.
    pub fn current(&self) -> Arc<Verifier> {
        self.verifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the file if its modification time changed since the last look. On error the
    /// old keyring stays in use: a broken file must not lock every client out (and the file
    /// is replaced atomically, so a half-written one is never seen).
    pub fn reload_if_changed(&self) -> Result<Reload, KeyringFileError> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(|source| KeyringFileError::Io {
                path: self.path.clone(),
                source,
            })?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == Some(modified) {
            return Ok(Reload::Unchanged);
        }
        let ring = load(&self.path)?;
        let ids = ring.keys().iter().map(|k| k.id().to_owned()).collect();
        let active = ring.active().ok().map(|k| k.id().to_owned());
        *self.verifier.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Verifier::new(ring).with_skew(self.skew));
        *seen = Some(modified);
        Ok(Reload::Reloaded { ids, active })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_rotation_and_survives_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        let ring = crate::create(&path).unwrap();
        let watch = KeyringWatch::new(path.clone(), ring, 30);
        assert!(matches!(watch.reload_if_changed(), Ok(Reload::Unchanged)));
        // Make sure the modification time moves even on coarse-grained file systems.
        std::thread::sleep(std::time::Duration::from_millis(20));
        crate::rotate(&path).unwrap();
        let touched = SystemTime::now() + std::time::Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(touched)
            .unwrap();
        match watch.reload_if_changed().unwrap() {
            Reload::Reloaded { ids, active } => {
                assert_eq!(ids, ["k1", "k2"]);
                assert_eq!(active.as_deref(), Some("k2"));
            }
            Reload::Unchanged => panic!("the rotation was not seen"),
        }
        assert_eq!(watch.current().keyring().active().unwrap().id(), "k2");

        std::fs::write(&path, "not a keyring").unwrap();
        let later = touched + std::time::Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(watch.reload_if_changed().is_err());
        assert_eq!(watch.current().keyring().active().unwrap().id(), "k2");
    }
}
