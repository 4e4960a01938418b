//! Where blobs live, behind one seam: [`Blobs`], which the handlers call without knowing which
//! backend answers.
//!
//! Two backends implement [`BlobBackend`]:
//! - the local folder ([`BlobFolder`], the default): plain files with their metadata in an
//!   extended attribute, served with `sendfile` and a small-blob memory cache;
//! - S3-compatible object storage ([`S3Blobs`], `--blobs s3://BUCKET[/PREFIX]`).
//!
//! [`Blobs`] dispatches statically (an enum, not a boxed trait object), so the folder's
//! download path costs no allocation or indirection more than it did before the seam.
//! Both are held to the same promises by one conformance suite (`tests/blobs.rs`, run once
//! per backend).

mod error;
mod folder;
mod hot;
mod listing;
mod meta;
mod upload;

use std::fs::File;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use valet_key::{BlobPath, Name};

pub use error::BlobError;
pub use folder::BlobFolder;
pub use hot::{CacheCounters, DEFAULT_BLOB_CACHE};
pub use listing::Listing;
pub use meta::{parse_sha256_hex, BlobMeta};

use crate::conditional::Preconditions;

/// How a finished upload may replace what is there.
#[derive(Debug, Clone)]
pub enum CommitMode {
    /// Create or overwrite, subject to the request's preconditions.
    Overwrite(Preconditions),
    /// Only if no blob exists at the path (the `create` operation, or `If-None-Match: *`).
    CreateOnly,
}

/// What a commit did.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The new blob's metadata.
    pub meta: BlobMeta,
    /// Whether a blob was replaced (rather than created).
    pub replaced: bool,
}

/// Where a download's bytes come from.
#[derive(Debug)]
pub enum BlobData {
    /// The blob's file, open for reading.
    File(File),
    /// All of a small blob, from memory.
    Memory(Bytes),
}

/// What every blob backend does. Each promise (atomic commits that make nothing partial
/// visible, create-only and `If-Match` exact against concurrent writers, checksums checked
/// before the blob is visible) is the backend's to keep; the handlers only stream.
pub trait BlobBackend: Send + Sync + 'static {
    /// An upload in progress.
    type Upload: Send + 'static;

    /// Opens a blob for reading, with its metadata.
    fn open_blob(
        &self,
        container: &Name,
        path: &BlobPath,
    ) -> impl Future<Output = Result<(BlobData, Arc<BlobMeta>), BlobError>> + Send;

    /// Starts an upload that [`BlobBackend::commit`] may later make visible at `path`.
    fn begin_upload(
        &self,
        container: &Name,
        path: &BlobPath,
        content_type: String,
        check_md5: bool,
    ) -> impl Future<Output = Result<Self::Upload, BlobError>> + Send;

    /// Makes a finished upload visible at `path`, atomically, if `mode` allows.
    fn commit(
        self: &Arc<Self>,
        upload: Self::Upload,
        container: &Name,
        path: &BlobPath,
        mode: CommitMode,
    ) -> impl Future<Output = Result<Committed, BlobError>> + Send;

    /// Deletes a blob, subject to preconditions.
    fn delete(
        self: &Arc<Self>,
        container: &Name,
        path: &BlobPath,
        pre: &Preconditions,
    ) -> impl Future<Output = Result<(), BlobError>> + Send;

    /// Lists blobs of a container whose paths start with `prefix`, after `cursor`.
    fn list(
        self: &Arc<Self>,
        container: &Name,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Listing, BlobError>> + Send;
}

/// The store's blobs, in whichever backend was chosen.
#[derive(Debug, Clone)]
pub enum Blobs {
    /// The local folder.
    Folder(Arc<BlobFolder>),
}

/// An upload in progress, in whichever backend it goes to.
#[derive(Debug)]
pub enum BlobUpload {
    /// A temporary file of the local folder.
    Folder(upload::Upload),
}

impl Blobs {
    /// See [`BlobBackend::open_blob`].
    pub async fn open_blob(
        &self,
        container: &Name,
        path: &BlobPath,
    ) -> Result<(BlobData, Arc<BlobMeta>), BlobError> {
        match self {
            Blobs::Folder(folder) => folder.open_blob(container, path).await,
        }
    }

    /// See [`BlobBackend::begin_upload`].
    pub async fn begin_upload(
        &self,
        container: &Name,
        path: &BlobPath,
        content_type: String,
        check_md5: bool,
    ) -> Result<BlobUpload, BlobError> {
        match self {
            Blobs::Folder(folder) => folder
                .begin_upload(container, path, content_type, check_md5)
                .await
                .map(BlobUpload::Folder),
        }
    }

    /// See [`BlobBackend::commit`].
    pub async fn commit(
        &self,
        upload: BlobUpload,
        container: &Name,
        path: &BlobPath,
        mode: CommitMode,
    ) -> Result<Committed, BlobError> {
        match (self, upload) {
            (Blobs::Folder(folder), BlobUpload::Folder(upload)) => {
                folder.commit(upload, container, path, mode).await
            }
        }
    }

    /// See [`BlobBackend::delete`].
    pub async fn delete(
        &self,
        container: &Name,
        path: &BlobPath,
        pre: &Preconditions,
    ) -> Result<(), BlobError> {
        match self {
            Blobs::Folder(folder) => folder.delete(container, path, pre).await,
        }
    }

    /// See [`BlobBackend::list`].
    pub async fn list(
        &self,
        container: &Name,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Listing, BlobError> {
        match self {
            Blobs::Folder(folder) => folder.list(container, prefix, cursor, limit).await,
        }
    }

    /// How many small blobs are held in memory, and the bytes they count for (the folder's
    /// cache; zero for a backend without one).
    pub fn hot_usage(&self) -> (u64, u64) {
        match self {
            Blobs::Folder(folder) => folder.hot_usage(),
        }
    }
}

impl BlobUpload {
    /// Appends a chunk of the body.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), BlobError> {
        match self {
            BlobUpload::Folder(upload) => upload.write(&chunk),
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        match self {
            BlobUpload::Folder(upload) => upload.received(),
        }
    }

    /// The SHA-256 of what was received.
    pub fn sha256(&self) -> [u8; 32] {
        match self {
            BlobUpload::Folder(upload) => upload.sha256(),
        }
    }

    /// The MD5 of what was received, if it was asked for.
    pub fn md5(&self) -> Option<[u8; 16]> {
        match self {
            BlobUpload::Folder(upload) => upload.md5(),
        }
    }
}
