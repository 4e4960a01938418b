//! Connections to upstreams: one pool per worker thread, of plain HTTP/1.1 connections.
//!
//! The gate runs one single-threaded runtime per core, so a connection's task must live on
//! the thread that uses it: each worker keeps its own idle connections, with no lock and no
//! cross-thread wake-up on the way to the upstream. A connection goes back into the pool as
//! soon as the response head arrives and is handed out again once hyper reports it ready
//! (its previous response body finished); a request that could not be written on a pooled
//! connection the upstream had closed is retried once on a fresh one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::proxy::LimitedBody;

/// Idle connections kept per upstream and worker.
const MAX_IDLE: usize = 256;

/// How long connecting to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    static POOL: RefCell<HashMap<Authority, Vec<SendRequest<LimitedBody>>>> =
        RefCell::new(HashMap::new());
}

/// Why an exchange with the upstream failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// No connection could be made.
    #[error("cannot connect to {authority}: {reason}")]
    Connect {
        /// The upstream.
        authority: Authority,
        /// What went wrong.
        reason: String,
    },
    /// The exchange broke.
    #[error(transparent)]
    Exchange(#[from] hyper::Error),
}

/// Sends `request` (origin-form URI, `Host` set) to the upstream at `authority`.
pub(crate) async fn send(
    authority: &Authority,
    mut request: Request<LimitedBody>,
) -> Result<Response<Incoming>, UpstreamError> {
    for attempt in 0..2 {
        let (mut sender, pooled) = match checkout(authority) {
            Some(sender) => (sender, true),
            None => (connect(authority).await?, false),
        };
        match sender.try_send_request(request).await {
            Ok(response) => {
                checkin(authority, sender);
                return Ok(response);
            }
            Err(mut failed) => match failed.take_message() {
                // Never written: a pooled connection closed by the upstream meanwhile.
                Some(unsent) if pooled && attempt == 0 => request = unsent,
                _ => return Err(UpstreamError::Exchange(failed.into_error())),
            },
        }
    }
    unreachable!("the second attempt returns")
}

/// A ready idle connection to `authority`, if the pool has one. Closed ones are dropped.
fn checkout(authority: &Authority) -> Option<SendRequest<LimitedBody>> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(authority)?;
        idle.retain(|sender| !sender.is_closed());
        let ready = idle.iter().rposition(SendRequest::is_ready)?;
        Some(idle.swap_remove(ready))
    })
}

fn checkin(authority: &Authority, sender: SendRequest<LimitedBody>) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(authority.clone()).or_default();
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    });
}

async fn connect(authority: &Authority) -> Result<SendRequest<LimitedBody>, UpstreamError> {
    let failed = |reason: String| UpstreamError::Connect {
        authority: authority.clone(),
        reason,
    };
    // An IPv6 literal is written `[::1]` in an authority, bare in a socket address.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let target = (host, authority.port_u16().unwrap_or(80));
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| failed(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
