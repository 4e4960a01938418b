//! What every Valet server shares: the gate and the store differ in what they answer, not in
//! how they accept connections.
//!
//! - [`bind_listeners`]: one listening socket, a handle of it per worker; a port another
//!   process holds is refused ([`BindError::InUse`]).
//! - [`serve`]: one worker's accept loop: `TCP_NODELAY`, optional TLS (rustls, HTTP/2 or
//!   HTTP/1.1 by ALPN), a header timeout, graceful shutdown with a grace period, and the
//!   bounds of [`ConnectionLimits`] (first bytes, idleness, stalled responses, connections,
//!   streams and uploads per connection), kept by each connection's watch (`conn`).
//! - [`run`]: one single-threaded runtime per core, each serving every [`Site`] (gate, store or
//!   both) on its own listeners, as nginx runs one worker per core: a connection lives on one
//!   thread from accept to close, so a request never wakes another thread.
//! - [`Handler`]: what a site plugs in: one function from a request to a response.
//! - [`sendfile`]: zero-copy file bodies on plain HTTP/1 connections.
//! - [`edge`]: what a request meets before and after a server's router: its own paths
//!   (`/healthz`, `/metrics`, `/openapi.json`), errors as JSON ([`edge::ApiError`]), the
//!   headers every response carries ([`hygiene`]), the request metrics and the access line.
//! - [`hygiene`]: the headers every response carries.

mod conn;
pub mod edge;
pub mod hygiene;
pub mod metrics;
pub mod sendfile;
mod server;
mod tls;

pub use conn::{UploadSlot, Watched};
pub use server::{
    bind_listeners, run, serve, BindError, Connection, ConnectionLimits, Handler, ServeError,
    ServeOptions, Site,
};
pub use tls::{ClientTlsStream, TlsClient, TlsClientError, TlsFiles};
