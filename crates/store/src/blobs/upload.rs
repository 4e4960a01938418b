//! An upload in progress: a temporary file that is hashed as it is written and removed if it
//! is dropped before being committed (a client that disconnects, a body over the cap, a
//! checksum mismatch, a shutdown that cancels the request).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use md5::Md5;
use sha2::{Digest, Sha256};

use super::meta::BlobMeta;
use super::BlobError;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The digests of an upload's bytes, taken as they arrive.
#[derive(Debug, Clone)]
pub struct Digests {
    sha256: Sha256,
    md5: Option<Md5>,
    len: u64,
}

impl Digests {
    /// SHA-256 always, MD5 if `check_md5`.
    pub fn new(check_md5: bool) -> Digests {
        Digests {
            sha256: Sha256::new(),
            md5: check_md5.then(Md5::new),
            len: 0,
        }
    }

    /// Takes in the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.sha256.update(chunk);
        if let Some(md5) = &mut self.md5 {
            md5.update(chunk);
        }
        self.len += chunk.len() as u64;
    }

    /// Bytes taken in.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The SHA-256 so far.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256.clone().finalize().into()
    }

    /// The MD5 so far, if it was asked for.
    pub fn md5(&self) -> Option<[u8; 16]> {
        self.md5.as_ref().map(|m| m.clone().finalize().into())
    }
}

/// A temporary file receiving an upload's bytes.
#[derive(Debug)]
pub struct Upload {
    file: File,
    path: PathBuf,
    digests: Digests,
    content_type: String,
}

impl Upload {
    pub(super) fn create(
        tmp_dir: &Path,
        mode: u32,
        content_type: String,
        check_md5: bool,
    ) -> io::Result<Upload> {
        let mut nonce = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let name = format!(
            "{}-{}-{}.part",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed),
            u64::from_le_bytes(nonce)
        );
        let path = tmp_dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        Ok(Upload {
            file,
            path,
            digests: Digests::new(check_md5),
            content_type,
        })
    }

    /// Appends a chunk of the body.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.file.write_all(chunk).map_err(BlobError::from_io)?;
        self.digests.update(chunk);
        Ok(())
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.digests.len()
    }

    /// The SHA-256 of what was received.
    pub fn sha256(&self) -> [u8; 32] {
        self.digests.sha256()
    }

    /// The MD5 of what was received, if it was asked for.
    pub fn md5(&self) -> Option<[u8; 16]> {
        self.digests.md5()
    }

    /// Makes the data durable and writes its metadata. Blocking.
    pub(super) fn seal(&self) -> Result<BlobMeta, BlobError> {
        self.file.sync_data().map_err(BlobError::from_io)?;
        let stat = self.file.metadata().map_err(BlobError::from_io)?;
        let modified = stat.modified().map_err(BlobError::from_io)?;
        let meta = BlobMeta::new(
            self.received(),
            self.sha256(),
            self.content_type.clone(),
            modified,
        );
        meta.write_to(&self.file, &stat)
            .map_err(BlobError::from_io)?;
        self.file.sync_all().map_err(BlobError::from_io)?;
        Ok(meta)
    }

    /// The file, to read the upload back from (the S3 backend sends it on from here).
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// The metadata of what was received, without making it durable or writing the
    /// attribute: for a backend that keeps the blob elsewhere.
    pub(super) fn meta_now(&self) -> BlobMeta {
        let modified = std::time::SystemTime::now();
        BlobMeta::new(
            self.received(),
            self.sha256(),
            self.content_type.clone(),
            modified,
        )
    }

    pub(super) fn rename_to(&self, target: &Path) -> io::Result<()> {
        fs::rename(&self.path, target)
    }

    pub(super) fn link_to(&self, target: &Path) -> io::Result<()> {
        fs::hard_link(&self.path, target)
    }
}

impl Drop for Upload {
    /// The temporary name is always removed: after a rename it no longer exists, after a link
    /// it is the second name, and otherwise the upload was abandoned.
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
