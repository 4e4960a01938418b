//! What a blob backend can fail with, and its one mapping to the store's HTTP errors.

use std::io;
use valet_http::edge::Internal;

use crate::error::StoreError;

/// A failed blob operation, whichever backend ran it. The handlers turn it into a
/// [`StoreError`] with `?` (the `From` below is the only place that decides which HTTP error
/// a backend failure becomes).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No such blob.
    #[error("not found")]
    NotFound,
    /// A condition (`If-Match`, `If-None-Match`, create-only) refused the write or delete.
    #[error("{0}")]
    PreconditionFailed(&'static str),
    /// The path collides with an existing blob or folder (`a` and `a/b` cannot both exist).
    #[error("{0}")]
    Conflict(String),
    /// The path cannot be stored by this backend (a segment too long for its file system).
    #[error("{0}")]
    BadPath(String),
    /// The disk is full.
    #[error("the store is out of space")]
    InsufficientStorage,
    /// The object storage could not be reached or refused to work (down, overloaded, bad
    /// credentials): the request is refused and nothing was written.
    #[error("the blob storage is unavailable: {0}")]
    Unavailable(#[source] object_store::Error),
    /// The object changed between reading its metadata and its bytes.
    #[error("the blob changed while it was being read")]
    Changed,
    /// The object storage answered something the store cannot use.
    #[error("object storage: {0}")]
    Remote(#[source] object_store::Error),
    /// The lock that serialises commits of one name could not be had (the ledger that lends
    /// it is down): nothing was made visible.
    #[error("cannot take the commit lock: {0}")]
    Lock(#[source] valet_ledger::LedgerError),
    /// An I/O failure of the local folder.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// A bug, or a state of the data tier that needs an operator.
    #[error("{0}")]
    Internal(String),
}

impl BlobError {
    /// Classifies an I/O error from the blob folder. A missing file or folder is *not*
    /// `NotFound` here: where it means "no such blob" the caller says so (opening a blob,
    /// deleting one); anywhere else (the temporary folder gone, a folder removed under a
    /// commit) it is the data tier's failure, not the client's.
    pub fn from_io(err: io::Error) -> BlobError {
        match err.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => BlobError::InsufficientStorage,
            // A name the file system finds too long (some allow fewer than 255 bytes).
            Some(libc::ENAMETOOLONG) => BlobError::BadPath(
                "a path segment, or the path, is too long for the store's file system".into(),
            ),
            _ => BlobError::Io(err),
        }
    }
}

impl From<BlobError> for StoreError {
    fn from(err: BlobError) -> StoreError {
        match err {
            BlobError::NotFound => StoreError::NotFound,
            BlobError::PreconditionFailed(what) => StoreError::PreconditionFailed(what),
            BlobError::Conflict(what) => StoreError::Conflict(what),
            BlobError::BadPath(what) => StoreError::BadPath(what),
            BlobError::InsufficientStorage => StoreError::InsufficientStorage,
            BlobError::Unavailable(_) | BlobError::Changed => {
                tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "blob storage unavailable");
                StoreError::StorageUnavailable(err.to_string())
            }
            BlobError::Lock(_) => {
                tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "commit lock unavailable");
                StoreError::LedgerUnavailable(err.to_string())
            }
            BlobError::Remote(_) | BlobError::Io(_) | BlobError::Internal(_) => {
                tracing::error!(error = %err, source = ?std::error::Error::source(&err), "blob backend failed");
                StoreError::Internal(Internal::caused("the blob backend failed", err))
            }
        }
    }
}
