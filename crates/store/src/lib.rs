//! The store: the data tier of Valet.
//!
//! Clients reach it directly with a valet key; it validates every request's key itself (no call
//! to the gate), consults the ledger for revocations and use counts, and moves the bytes,
//! enforcing the key's limits while they flow. Blobs live in a local folder or an S3-compatible
//! bucket, behind one seam (see `blobs`).
//!
//! Layout: `server` accepts connections, `service` routes each request and decorates each
//! response, `handlers` hold one function per operation, `access` admits a request,
//! `error` maps every failure to a status and stable code in one place.

mod access;
mod blobs;
mod body;
mod config;
mod cors;
mod error;
mod handlers;
mod linger;
mod metrics;
mod range;
mod request;
mod server;
mod service;
mod state;

pub use blobs::{
    SweepError, Swept, DEFAULT_ABANDONED_AFTER, DEFAULT_BLOB_CACHE, MIN_ABANDONED_AFTER,
};
pub use config::{BlobStorage, S3Settings, StoreConfig, TlsFiles, DEFAULT_BLOB_MODE};
pub use error::StoreError;
pub use server::{run, serve, sweep_abandoned_uploads, watch_keyring};
pub use service::{OPENAPI, ROUTES};
pub use state::Store;
pub use valet_http::{bind_listeners, BindError, ServeError};
