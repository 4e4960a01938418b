//! Every way a store request can fail, and the one place that maps each to an HTTP status and
//! a stable error code.
//!
//! The JSON shape is the edge's (`valet_http::edge`, shared with the gate):
//! `{"error":{"code":"...","message":"..."}}`; codes are listed in
//! `docs/ERRORS.md` and a test asserts each one over HTTP.

use http::{header, HeaderMap, HeaderValue, StatusCode};
use valet_http::edge::{json_error, Alarm, ApiError, Internal};
use valet_key::Denial;

use crate::body::ResponseBody;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No key in the query (`vk`) or the `Authorization: Valet` header.
    #[error("this request needs a valet key: add ?vk=TOKEN or 'Authorization: Valet TOKEN'")]
    KeyMissing,
    /// The key was checked and refused.
    #[error("{0}")]
    Denied(#[from] Denial),
    /// The key was revoked.
    #[error("the key has been revoked")]
    Revoked,
    /// The key's uses are all spent.
    #[error("the key has been used as many times as it allows")]
    Exhausted,
    /// The ledger could not be consulted; the request is refused rather than let through.
    #[error("the ledger is unavailable, so the key cannot be checked: {0}")]
    LedgerUnavailable(String),
    /// The path is not a valid blob path.
    #[error("bad path: {0}")]
    BadPath(String),
    /// Anything else wrong with the request.
    #[error("{0}")]
    BadRequest(String),
    /// No such blob, or no such route.
    #[error("not found")]
    NotFound,
    /// The route exists but not with this method; the methods it takes, for `Allow`.
    #[error("method not allowed: this route takes {0}")]
    MethodNotAllowed(&'static str),
    /// The path collides with an existing blob or folder (`a` and `a/b` cannot both exist).
    #[error("{0}")]
    Conflict(String),
    /// `If-Match`, `If-None-Match` or create-only refused the write, or a GET precondition failed.
    #[error("precondition failed: {0}")]
    PreconditionFailed(&'static str),
    /// A write or delete with a condition on the blob's current version, by a key without
    /// `read`: its answer would tell the contents (see `Preconditions::compare_current`).
    #[error(
        "a conditional {0} compares with the blob's current version, which needs the key to allow \
         read: send it without If-Match, If-None-Match (other than '*'), If-Modified-Since and \
         If-Unmodified-Since, or with a key that may read"
    )]
    ConditionNeedsRead(&'static str),
    /// The body is larger than the key allows.
    #[error("the body is larger than the key allows ({limit} bytes)")]
    TooLarge {
        /// The key's cap.
        limit: u64,
    },
    /// The upload's `Content-Type` is not one media type by RFC 9110's grammar (a list, a
    /// malformed parameter, a control character), or it came in more than one header.
    #[error("bad Content-Type: {0}")]
    BadContentType(#[from] valet_key::MediaTypeError),
    /// The upload's content type is not the key's.
    #[error("content type {0:?} is not allowed by the key")]
    ContentTypeNotAllowed(String),
    /// The range lies outside the blob.
    #[error("the range is outside the blob ({size} bytes)")]
    RangeNotSatisfiable {
        /// The blob's size, for `Content-Range: bytes */SIZE`.
        size: u64,
    },
    /// The body's digest differs from `Content-MD5` or `x-valet-sha256`.
    #[error("the body does not match its {0}")]
    ChecksumMismatch(&'static str),
    /// The connection already has as many uploads in flight as it may
    /// (`ConnectionLimits::max_uploads`): each holds a temporary file.
    #[error(
        "this connection already has {0} uploads in flight; finish one or use another connection"
    )]
    TooManyUploads(usize),
    /// The disk is full.
    #[error("the store is out of space")]
    InsufficientStorage,
    /// The blob backend (the object storage) cannot be reached: nothing was read or written.
    #[error("{0}; nothing was stored, try again later")]
    StorageUnavailable(String),
    /// The client sent its body too slowly.
    #[error("the request body stalled")]
    RequestTimeout,
    /// A bug or an I/O failure not caused by the request (its cause kept for the log).
    #[error(transparent)]
    Internal(Internal),
}

impl StoreError {
    /// The HTTP status and stable code: the only mapping from error to wire.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            StoreError::KeyMissing => (StatusCode::UNAUTHORIZED, "key_missing"),
            StoreError::Denied(Denial::Malformed(_)) => (StatusCode::BAD_REQUEST, "key_malformed"),
            StoreError::Denied(d) => (StatusCode::FORBIDDEN, d.code()),
            StoreError::Revoked => (StatusCode::FORBIDDEN, "key_revoked"),
            StoreError::Exhausted => (StatusCode::FORBIDDEN, "key_exhausted"),
            StoreError::LedgerUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable")
            }
            StoreError::BadPath(_) => (StatusCode::BAD_REQUEST, "bad_path"),
            StoreError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            StoreError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            StoreError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            StoreError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            StoreError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            StoreError::ConditionNeedsRead(_) => (StatusCode::FORBIDDEN, "condition_needs_read"),
            StoreError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            StoreError::BadContentType(_) => (StatusCode::BAD_REQUEST, "bad_content_type"),
            StoreError::ContentTypeNotAllowed(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_type_not_allowed",
            ),
            StoreError::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            StoreError::ChecksumMismatch(_) => (StatusCode::BAD_REQUEST, "checksum_mismatch"),
            StoreError::TooManyUploads(_) => (StatusCode::SERVICE_UNAVAILABLE, "too_many_uploads"),
            StoreError::StorageUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
            StoreError::InsufficientStorage => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            StoreError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            StoreError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// Classifies an I/O error from the blob folder. A missing file or folder is *not*
    /// `not_found` here: where it means "no such blob" the caller says so (opening a blob,
    /// deleting one); anywhere else (the temporary folder gone, a folder removed under a
    /// commit) it is the data tier's failure, not the client's.
    pub fn from_io(err: std::io::Error) -> StoreError {
        match err.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => StoreError::InsufficientStorage,
            // A name the file system finds too long (some allow fewer than 255 bytes).
            Some(libc::ENAMETOOLONG) => StoreError::BadPath(
                "a path segment, or the path, is too long for the store's file system".into(),
            ),
            _ => StoreError::Internal(Internal::caused(
                "an I/O operation of the store failed",
                err,
            )),
        }
    }

    /// The error as a response with the JSON body (the edge's one responder, [`json_error`]).
    pub fn into_response(self) -> http::Response<ResponseBody> {
        json_error(&self)
    }
}

impl ApiError for StoreError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        StoreError::status_and_code(self)
    }

    fn add_headers(&self, headers: &mut HeaderMap) {
        // RFC 9110: a 401 names the scheme that would work.
        if self.status_and_code().0 == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Valet"));
        }
        match self {
            // RFC 9110: a 405 lists the methods the route takes.
            StoreError::MethodNotAllowed(allow) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            StoreError::TooManyUploads(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StoreError::RangeNotSatisfiable { size } => {
                let value = HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii");
                headers.insert(header::CONTENT_RANGE, value);
            }
            _ => {}
        }
    }

    /// Refusals for the key's sake only (`valet_store_denials`): a bad path or a full disk is
    /// not a denial.
    fn is_refusal(&self) -> bool {
        matches!(
            self.status_and_code(),
            (StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED, _) | (_, "key_malformed")
        )
    }

    fn alarm(&self) -> Option<Alarm<'_>> {
        match self {
            StoreError::Internal(_) => Some(Alarm::Internal(self)),
            // Every request that needs the ledger is being refused: an operator must know.
            StoreError::LedgerUnavailable(_) => Some(Alarm::Unavailable {
                what: "ledger unavailable",
                why: self,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified_by_cause() {
        let os = std::io::Error::from_raw_os_error;
        let code = |e: std::io::Error| StoreError::from_io(e).status_and_code().1;
        assert_eq!(code(os(libc::ENAMETOOLONG)), "bad_path");
        assert_eq!(code(os(libc::ENOSPC)), "insufficient_storage");
        assert_eq!(code(os(libc::EDQUOT)), "insufficient_storage");
        // Not found where the caller did not say "no such blob": the tier's failure.
        assert_eq!(code(os(libc::ENOENT)), "internal");
        assert_eq!(code(os(libc::EIO)), "internal");
    }
}
