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

mod abandoned;
pub(crate) mod conditional;
mod error;
mod folder;
mod hot;
mod listing;
mod meta;
mod s3;
mod storage;
mod upload;

use std::fs::File;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use valet_key::{BlobPath, Name};

pub use abandoned::{SweepError, Swept};
pub use error::BlobError;
pub use folder::BlobFolder;
pub use hot::{CacheCounters, DEFAULT_BLOB_CACHE};
pub use listing::Listing;
pub use meta::{parse_sha256_hex, BlobMeta};
pub use s3::{RemoteBlob, S3Blobs, S3Upload};
pub use storage::{BlobStorage, S3Settings, DEFAULT_ABANDONED_AFTER, MIN_ABANDONED_AFTER};
pub use upload::Upload;

use conditional::Preconditions;

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
    /// An object in a bucket, streamed from it.
    Remote(RemoteBlob),
}

/// What an upload is, as far as the request says before its body.
#[derive(Debug, Clone)]
pub struct UploadSpec {
    /// The content type to store.
    pub content_type: String,
    /// Whether `Content-MD5` is to be checked (the MD5 is taken as the bytes flow).
    pub check_md5: bool,
    /// The SHA-256 the client declared (`x-valet-sha256`), checked before the blob is visible.
    pub sha256: Option<[u8; 32]>,
    /// The declared `Content-Length`, if any.
    pub length: Option<u64>,
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
        spec: UploadSpec,
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
    /// An S3-compatible bucket.
    S3(Arc<S3Blobs>),
}

/// An upload on its way, to whichever backend.
// One per upload in flight, moved a few times: its size does not matter, a box per upload would.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum BlobUpload {
    /// A temporary file of the folder.
    Folder(Upload),
    /// Bound for the bucket.
    S3(S3Upload),
}

impl BlobUpload {
    /// Takes in the next chunk of the body.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), BlobError> {
        match self {
            BlobUpload::Folder(upload) => upload.write(&chunk),
            BlobUpload::S3(upload) => upload.write(chunk).await,
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        match self {
            BlobUpload::Folder(upload) => upload.received(),
            BlobUpload::S3(upload) => upload.received(),
        }
    }

    /// The SHA-256 of what was received.
    pub fn sha256(&self) -> [u8; 32] {
        match self {
            BlobUpload::Folder(upload) => upload.sha256(),
            BlobUpload::S3(upload) => upload.sha256(),
        }
    }

    /// The MD5 of what was received, if it was asked for.
    pub fn md5(&self) -> Option<[u8; 16]> {
        match self {
            BlobUpload::Folder(upload) => upload.md5(),
            BlobUpload::S3(upload) => upload.md5(),
        }
    }
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
            Blobs::S3(bucket) => bucket.open_blob(container, path).await,
        }
    }

    /// See [`BlobBackend::begin_upload`].
    pub async fn begin_upload(
        &self,
        container: &Name,
        path: &BlobPath,
        spec: UploadSpec,
    ) -> Result<BlobUpload, BlobError> {
        match self {
            Blobs::Folder(folder) => folder
                .begin_upload(container, path, spec)
                .await
                .map(BlobUpload::Folder),
            Blobs::S3(bucket) => bucket
                .begin_upload(container, path, spec)
                .await
                .map(BlobUpload::S3),
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
            (Blobs::S3(bucket), BlobUpload::S3(upload)) => {
                bucket.commit(upload, container, path, mode).await
            }
            _ => Err(BlobError::Internal(
                "an upload committed to another backend than it began in".into(),
            )),
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
            Blobs::S3(bucket) => bucket.delete(container, path, pre).await,
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
            Blobs::S3(bucket) => bucket.list(container, prefix, cursor, limit).await,
        }
    }

    /// How many small blobs are held in memory, and the bytes they count for (the folder's
    /// cache; zero for a backend without one).
    pub fn hot_usage(&self) -> (u64, u64) {
        match self {
            Blobs::Folder(folder) => folder.hot_usage(),
            Blobs::S3(_) => (0, 0),
        }
    }
}
