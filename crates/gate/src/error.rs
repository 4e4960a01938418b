//! Every way a gate request can fail, and the one place that maps each to an HTTP status and
//! a stable code. The JSON body and the logging are the edge's (`valet_http::edge`), shared
//! with the store: `{"error":{"code":"...","message":"..."}}`.

use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use valet_http::edge::{json_error, Alarm, ApiError, Internal};
use valet_ledger::LedgerError;

use crate::body::GateBody;

/// A failed gate request.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// No credentials, or credentials that do not check out.
    #[error("{0}")]
    Unauthenticated(String),
    /// The policy of the principal's roles does not allow what was asked; says which bound.
    #[error("{0}")]
    PolicyDenied(String),
    /// The principal may not act on this key or route.
    #[error("{0}")]
    Forbidden(String),
    /// The valet key presented as a credential is genuine but past its expiry or a caveat's,
    /// beyond the clock-skew tolerance.
    #[error("the valet key has expired")]
    KeyExpired,
    /// The valet key presented as a credential is genuine but before its not-before or a
    /// caveat's, beyond the clock-skew tolerance.
    #[error("the valet key is not valid yet")]
    KeyNotYetValid,
    /// The valet key presented as a credential was revoked (by id, subject or time).
    #[error("the valet key is revoked")]
    KeyRevoked,
    /// Too many requests from this principal.
    #[error("rate limit exceeded; retry in {retry_after} s")]
    RateLimited {
        /// Seconds until a request would be allowed.
        retry_after: u64,
    },
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The path names no valid resource (`..`, an encoded `/`, ...).
    #[error("bad path: {0}")]
    BadPath(String),
    /// No such route or key.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method; the methods it takes, for `Allow`.
    #[error("method not allowed: this route takes {0}")]
    MethodNotAllowed(String),
    /// A proxied body is larger than the route allows.
    #[error("the request body is larger than this route allows ({limit} bytes)")]
    TooLarge {
        /// The route's limit.
        limit: u64,
    },
    /// The upstream did not answer in time.
    #[error("the upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    /// The upstream could not be reached or broke the exchange. Why is logged for the operator
    /// (`proxy`), never told to the client: the upstream's address and the HTTP library's words
    /// are the gate's internals.
    #[error("the upstream is unavailable; try again later")]
    UpstreamUnavailable,
    /// The ledger could not be read or written; nothing was issued or revoked.
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    /// A bug or an I/O failure not caused by the request (its cause kept for the log).
    #[error(transparent)]
    Internal(Internal),
}

impl GateError {
    /// The HTTP status and stable code: the only mapping from error to wire.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            GateError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            GateError::PolicyDenied(_) => (StatusCode::FORBIDDEN, "policy_denied"),
            GateError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            // The store's codes for the same failures of the same key.
            GateError::KeyExpired => (StatusCode::FORBIDDEN, "key_expired"),
            GateError::KeyNotYetValid => (StatusCode::FORBIDDEN, "key_not_yet_valid"),
            GateError::KeyRevoked => (StatusCode::FORBIDDEN, "key_revoked"),
            GateError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            GateError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            GateError::BadPath(_) => (StatusCode::BAD_REQUEST, "bad_path"),
            GateError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            GateError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            GateError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            GateError::UpstreamTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
            GateError::UpstreamUnavailable => (StatusCode::BAD_GATEWAY, "upstream_unavailable"),
            GateError::Ledger(LedgerError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable")
            }
            // A fresh random 128-bit id already recorded with other claims: a bug, not load.
            GateError::Ledger(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            GateError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The error as a JSON response (the edge's one responder, [`json_error`]).
    pub fn into_response(self) -> Response<GateBody> {
        json_error(&self)
    }
}

impl ApiError for GateError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        GateError::status_and_code(self)
    }

    fn add_headers(&self, headers: &mut HeaderMap) {
        match self {
            // RFC 9110: a 401 names the scheme that would work.
            GateError::Unauthenticated(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            GateError::RateLimited { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            // RFC 9110: a 405 lists the methods the route takes.
            GateError::MethodNotAllowed(allow) => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, value);
                }
            }
            _ => {}
        }
    }

    fn alarm(&self) -> Option<Alarm<'_>> {
        match self {
            GateError::Internal(_) => Some(Alarm::Internal(self)),
            // Every request that needs the ledger is being refused: an operator must know.
            GateError::Ledger(why) => Some(Alarm::Unavailable {
                what: "ledger unavailable",
                why,
            }),
            _ => None,
        }
    }
}
