//! The store's request handlers, one per operation, as plain async functions of a request
//! context. Each admits the request with its key first, so that nothing (not even whether a
//! blob exists) is revealed to a request without a valid key.

mod delete;
mod get;
mod list;
mod put;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;
use valet_http::sendfile::FileSender;
use valet_http::Connection;
use valet_key::{BlobPath, BlobTarget, KeyId, Name, Scope};

pub use delete::delete_blob;
pub use get::get_blob;
pub use list::list_blobs;
pub use put::put_blob;

use crate::state::Store;

/// What a handler gets, and what it reports back for the access log.
#[derive(Debug)]
pub struct Ctx {
    /// Shared state.
    pub store: Arc<Store>,
    /// The request head.
    pub parts: Parts,
    /// The client's address.
    pub client: IpAddr,
    /// Sends file bytes without copying, where the connection can.
    pub file_sender: Option<FileSender>,
    /// The connection the request came on: its upload slots.
    pub connection: Connection,
    /// The key used, once admitted.
    pub key_id: Option<KeyId>,
    /// Body bytes moved, for the access log: an upload's received (set by its handler);
    /// for every other request the router sets it from the response body's length.
    pub bytes: u64,
}

/// The container and path of a scope made by `Scope::blob`, borrowed back from it, so that a
/// handler builds the resource it authorizes once and serves exactly that.
pub fn blob_of(scope: &Scope) -> (&Name, &BlobPath) {
    match scope {
        Scope::Blob {
            container,
            target: BlobTarget::Blob(path),
        } => (container, path),
        _ => unreachable!("handlers build one-blob scopes with Scope::blob"),
    }
}

impl Ctx {
    /// The request's key text, borrowed from the request when it needs no decoding.
    pub fn key(&self) -> Result<Cow<'_, str>, crate::error::StoreError> {
        crate::request::key(self.parts.uri.query(), &self.parts.headers)
    }
}
