//! Which keyring `valet serve` uses, and who may make one.

use std::path::Path;

use anyhow::bail;
use valet_key::Keyring;
use valet_keyring::KeyringFileError;

use crate::settings::Settings;

/// The keyring of the roles served. A gate (alone or with the store) creates one on its first
/// start: it is the node that signs. A store alone never does: a keyring of its own would
/// refuse every key the gate signs as `key_invalid`, with nothing to say why, so it refuses to
/// start instead and says where the keyring comes from.
pub fn open(settings: &Settings) -> anyhow::Result<Keyring> {
    let path = settings.keyring_path();
    if settings.role.runs_gate() {
        return match valet_keyring::create(&path) {
            Ok(ring) => {
                tracing::info!(
                    path = %path.display(),
                    "created a new keyring at {}: every store and every other gate must use a copy of this file",
                    path.display()
                );
                Ok(ring)
            }
            Err(KeyringFileError::Exists(_)) => Ok(valet_keyring::load(&path)?),
            Err(e) => Err(e.into()),
        };
    }
    match valet_keyring::load(&path) {
        Err(KeyringFileError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            bail!(missing(&path))
        }
        loaded => Ok(loaded?),
    }
}

/// What a store without a keyring says.
fn missing(path: &Path) -> String {
    let path = path.display();
    format!(
        "no keyring at {path}: a store never makes its own, since it would refuse every key the \
         gate signs. Copy the gate's keyring file (its DATA/keyring, or its --keyring) to {path} \
         with owner-only permissions (chmod 600), or point --keyring (VALET_KEYRING) at it; for \
         a store with no gate, create one with: valet key new-keyring --out {path}"
    )
}
