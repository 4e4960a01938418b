//! The keyring file: where the signing secrets live between runs.
//!
//! The secrets are the whole of Valet's security, so the file is created readable by its owner
//! only, replaced atomically (a crash mid-write never leaves half a keyring), and refused at
//! load time if anyone else could read it, as ssh refuses a private key with loose permissions.
//! Everything about the ring's contents is in the pure `valet-key` crate.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

mod watch;

pub use watch::{KeyringWatch, Reload};

use rand_core::OsRng;
use valet_key::{Keyring, KeyringError, UnixTime};

/// Why a keyring file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyringFileError {
    /// The file could not be read, created or replaced.
    #[error("keyring file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file exists where a new keyring was to be created.
    #[error("keyring file {0} already exists")]
    Exists(PathBuf),
    /// Group or others may read or write the file.
    #[error("keyring file {path} is accessible by others (mode {mode:o}); run: chmod 600 {path}")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The change asked for does not apply to the ring: no such key, or retiring the active one.
    #[error(transparent)]
    Refused(KeyringError),
    /// The file's contents are not a valid keyring.
    #[error("keyring file {path}: {source}")]
    Contents {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: KeyringError,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyringFileError + '_ {
    move |source| KeyringFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The current time, for stamping new signing keys.
pub fn now() -> UnixTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    UnixTime(secs)
}

/// Reads a keyring, refusing a file that others can access.
pub fn load(path: &Path) -> Result<Keyring, KeyringFileError> {
    let file = File::open(path).map_err(io_error(path))?;
    check_owner_only(path, &file)?;
    let text = io::read_to_string(file).map_err(io_error(path))?;
    Keyring::from_json(&text).map_err(|source| KeyringFileError::Contents {
        path: path.to_owned(),
        source,
    })
}

/// Creates a new keyring with one active key from the OS random source. Refuses to overwrite.
pub fn create(path: &Path) -> Result<Keyring, KeyringFileError> {
    let ring = Keyring::generate(&mut OsRng, now());
    let mut file = owner_only_options()
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => KeyringFileError::Exists(path.to_owned()),
            _ => io_error(path)(e),
        })?;
    file.write_all(ring.to_json().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(path))?;
    sync_parent(path)?;
    Ok(ring)
}

/// Loads the keyring at `path`, creating it first if there is none.
pub fn load_or_create(path: &Path) -> Result<Keyring, KeyringFileError> {
    match create(path) {
        Err(KeyringFileError::Exists(_)) => load(path),
        other => other,
    }
}

/// Replaces the keyring at `path` atomically: a temporary file beside it, fsynced, renamed.
pub fn save(path: &Path, ring: &Keyring) -> Result<(), KeyringFileError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = owner_only_options()
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(ring.to_json().as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_error(path))?;
    sync_parent(path)
}

/// Adds a fresh active key to the ring at `path`; the old one becomes verify-only. For one
/// node: with several, [`stage`] everywhere, then [`promote`].
pub fn rotate(path: &Path) -> Result<(Keyring, String), KeyringFileError> {
    change(path, |ring| Ok(ring.rotate(&mut OsRng, now())))
}

/// Adds a fresh verify-only key to the ring at `path` (see [`Keyring::stage`]); its id.
pub fn stage(path: &Path) -> Result<(Keyring, String), KeyringFileError> {
    change(path, |ring| Ok(ring.stage(&mut OsRng, now())))
}

/// Makes `id` the signing key of the ring at `path`; the id of the one it replaces.
pub fn promote(path: &Path, id: &str) -> Result<(Keyring, Option<String>), KeyringFileError> {
    change(path, |ring| ring.promote(id))
}

/// Removes the verify-only key `id` from the ring at `path`.
pub fn retire(path: &Path, id: &str) -> Result<Keyring, KeyringFileError> {
    change(path, |ring| ring.retire(id)).map(|(ring, ())| ring)
}

/// Loads the ring at `path`, applies `edit`, and replaces the file atomically with the result
/// (nothing is written if `edit` fails).
fn change<T>(
    path: &Path,
    edit: impl FnOnce(&mut Keyring) -> Result<T, KeyringError>,
) -> Result<(Keyring, T), KeyringFileError> {
    let mut ring = load(path)?;
    let out = edit(&mut ring).map_err(KeyringFileError::Refused)?;
    save(path, &ring)?;
    Ok((ring, out))
}

fn owner_only_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

#[cfg(unix)]
fn check_owner_only(path: &Path, file: &File) -> Result<(), KeyringFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(io_error(path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyringFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path, _file: &File) -> Result<(), KeyringFileError> {
    Ok(())
}

/// Makes a rename or creation durable: the directory entry must reach the disk too.
fn sync_parent(path: &Path) -> Result<(), KeyringFileError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    #[cfg(unix)]
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(parent))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_files_are_owner_only_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        let ring = create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.to_json(), ring.to_json());
        assert!(matches!(create(&path), Err(KeyringFileError::Exists(_))));
    }

    #[test]
    fn loose_permissions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err();
        assert!(
            matches!(err, KeyringFileError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
    }

    #[test]
    fn rotation_keeps_old_keys_for_verification() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        create(&path).unwrap();
        let (ring, id) = rotate(&path).unwrap();
        assert_eq!(id, "k2");
        assert_eq!(ring.active().unwrap().id(), "k2");
        let loaded = load(&path).unwrap();
        assert!(loaded.find("k1").is_some() && loaded.find("k2").is_some());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }

    #[test]
    fn staging_promoting_and_retiring_each_replace_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        create(&path).unwrap();
        let (_, id) = stage(&path).unwrap();
        assert_eq!(id, "k2");
        let staged = load(&path).unwrap();
        assert!(staged.is_active("k1") && staged.find("k2").is_some());
        let (_, previous) = promote(&path, "k2").unwrap();
        assert_eq!(previous.as_deref(), Some("k1"));
        assert!(load(&path).unwrap().is_active("k2"));
        let refused = retire(&path, "k2").unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("'k2' is the active key: promote another"),
            "{refused}"
        );
        retire(&path, "k1").unwrap();
        let left = load(&path).unwrap();
        assert_eq!(left.keys().len(), 1);
        assert!(left.is_active("k2"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }

    #[test]
    fn secrets_differ_between_keyrings() {
        let dir = tempfile::tempdir().unwrap();
        let a = create(&dir.path().join("a")).unwrap().to_json();
        let b = create(&dir.path().join("b")).unwrap().to_json();
        assert_ne!(a, b);
    }
}
