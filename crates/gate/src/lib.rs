//! The gate: the Gatekeeper of the Valet Key pattern, and the only part that knows who the
//! client is.
//!
//! It authenticates clients (API keys, JWTs), checks what they ask for against their roles'
//! policies, and issues valet keys so that data requests go straight to the store: a delegate
//! route answers with a redirect carrying a key for exactly one resource, and never carries a
//! delegated byte. Compute requests on proxy routes are streamed to the API tier. Revocations
//! go to the ledger the stores read, so they bite at the next request.
//!
//! Layout: `service` routes each request, on the one reading of its path that `request_path`
//! makes; `api` is the key API; `delegate` and `proxy` are the two kinds of route in `routes`;
//! `auth` says who is asking, `policy` what they may have, `issue` signs and records keys;
//! `error` maps every failure to a status and code in one place; `openapi` describes the routes
//! the gate runs.

mod api;
mod auth;
mod body;
pub mod config;
mod delegate;
mod error;
mod issue;
mod metrics;
mod openapi;
mod policy;
mod proxy;
mod request_path;
mod routes;
mod service;
mod state;
mod upstream;

pub use auth::{api_key_hash, new_api_key, Principal, API_KEY_PREFIX};
pub use body::GateBody;
pub use config::{ConfigError, GateConfig};
pub use error::GateError;
pub use metrics::Metrics;
pub use openapi::OPENAPI;
pub use policy::DEFAULT_TTL;
pub use routes::DEFAULT_DELEGATE_TTL;
pub use service::{handle, ROUTES};
pub use state::{housekeeping, Gate};
