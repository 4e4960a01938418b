//! The edge every Valet server answers through: what happens to a request before and after the
//! server's own router, the same way in the gate and the store (Garage's `generic_server` is
//! the model). A server's `handle` reads as
//!
//! ```text
//! let exchange = Exchange::begin(&parts, client);        // the clock starts
//! let (route, result) = match exchange.own(server) {     // /healthz, /metrics, /openapi.json
//!     Some(own) => ...,
//!     None => router(...).await,                         // the server's routes
//! };
//! let mut response = result.unwrap_or_else(|e| exchange.refuse(e, route, metrics));
//! exchange.finish(&mut response, metrics, line);         // headers, metrics, access line
//! ```
//!
//! - [`ApiError`]: what an error type tells the edge (status, code, the headers its status
//!   calls for, whether it counts as a refusal, whether an operator must hear of it), and
//!   [`json_error`], the one place its JSON body `{"error":{"code":"...","message":"..."}}` is
//!   written.
//! - [`json`]: every other JSON answer, uncacheable like the errors.
//! - [`Exchange`]: one request from its first byte to its access line: the paths every server
//!   answers itself ([`OwnPaths`]), errors as answers, the headers every response carries
//!   ([`crate::hygiene::protect`]), the request metrics and the `valet::access` line.
//!
//! The tables, queues and resumable uploads to come are built on it: a new API is a router
//! and an error type, and gets all of the above without writing it again.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};

use crate::metrics::{ServerMetrics, METRICS_CONTENT_TYPE};

/// The content type of every JSON answer, errors included.
pub const JSON: &str = "application/json";

/// What an error type tells the edge so that one responder can answer for every server.
///
/// `status_and_code` is the one mapping from error to wire: tests check it against
/// `docs/ERRORS.md`, so every other method here is about headers and logs, never codes.
pub trait ApiError: std::error::Error {
    /// The HTTP status and the stable machine-readable code.
    fn status_and_code(&self) -> (StatusCode, &'static str);

    /// The headers this error's status calls for (RFC 9110: a `401` names its scheme, a `405`
    /// lists the methods, a `429` or `503` says when to retry, a `416` the size).
    fn add_headers(&self, _headers: &mut HeaderMap) {}

    /// Whether the server's refusal counter counts this error (the store counts only refusals
    /// for a key's sake; the gate every one).
    fn is_refusal(&self) -> bool {
        true
    }

    /// What an operator must hear of: a bug, or a part the server needs being down. `None`
    /// for the client's own mistakes, which the access line records well enough.
    fn alarm(&self) -> Option<Alarm<'_>> {
        None
    }
}

/// An error an operator must hear of, logged once by [`Exchange::refuse`].
#[derive(Debug)]
pub enum Alarm<'a> {
    /// A bug or an I/O failure of the server's own: logged as an error, with its causes.
    Internal(&'a (dyn std::error::Error + 'static)),
    /// A part every request of some kind needs is unavailable (`what`: "ledger unavailable"),
    /// so all of them are refused: logged as a warning.
    Unavailable {
        /// What is down, as the log line's message.
        what: &'static str,
        /// Why, as the part itself said.
        why: &'a (dyn std::error::Error + 'static),
    },
}

/// A failure of the server's own (a bug, an I/O error): what it was doing, told to the client,
/// and why, kept as the source for the log ([`Chain`]) and never shown to the client, whose
/// message must not carry the server's internals.
#[derive(Debug)]
pub struct Internal {
    doing: std::borrow::Cow<'static, str>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Internal {
    /// A failure with no cause to keep (a state that should not be).
    pub fn new(doing: impl Into<std::borrow::Cow<'static, str>>) -> Internal {
        Internal {
            doing: doing.into(),
            source: None,
        }
    }

    /// A failure while `doing`, caused by `source`.
    pub fn caused(
        doing: impl Into<std::borrow::Cow<'static, str>>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Internal {
        Internal {
            doing: doing.into(),
            source: Some(source.into()),
        }
    }
}

impl Display for Internal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "internal error: {}", self.doing)
    }
}

impl std::error::Error for Internal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// An error and its causes, `: `-separated, for a log line: the client's message says what
/// went wrong, the log also says why.
#[derive(Debug)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The error as a JSON response: its status, `{"error":{"code":"...","message":"..."}}`
/// (the message is the error's `Display`), never cached, with the headers its status calls for.
pub fn json_error<B: From<Bytes>>(err: &(impl ApiError + ?Sized)) -> Response<B> {
    let (status, code) = err.status_and_code();
    let body = serde_json::json!({"error": {"code": code, "message": err.to_string()}});
    let mut response = json_bytes(status, body.to_string().into());
    err.add_headers(response.headers_mut());
    response
}

/// `body` as a JSON response with `status`. Never cached: every JSON answer of a Valet server
/// is about one key or one principal.
pub fn json<B: From<Bytes>>(status: StatusCode, body: &impl serde::Serialize) -> Response<B> {
    let text = serde_json::to_vec(body).expect("serializing plain data cannot fail");
    json_bytes(status, text.into())
}

fn json_bytes<B: From<Bytes>>(status: StatusCode, body: Bytes) -> Response<B> {
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What only the server knows of the paths every server answers itself.
pub trait OwnPaths {
    /// The text of `GET /metrics` (the server may refresh gauges read only when scraped).
    fn metrics_text(&self) -> String;
    /// The server's OpenAPI document, served at `GET /openapi.json`.
    fn openapi(&self) -> Bytes;
}

/// The methods `/healthz` takes, as the edge answers it.
pub const HEALTHZ_METHODS: &str = "GET, HEAD";
/// The methods `/metrics` and `/openapi.json` take.
pub const GET_ONLY: &str = "GET";

/// The edge's answer on one of the paths every server answers itself.
#[derive(Debug)]
pub enum Own<B> {
    /// The answer, and the route name for metrics and the access line.
    Answer(&'static str, Response<B>),
    /// The path with a method it does not take: the methods it does (`HEALTHZ_METHODS` or
    /// `GET_ONLY`), for the server's `405` (which may add its own, as the store adds
    /// `OPTIONS`). Its route is `other`.
    WrongMethod(&'static str),
}

/// Whether `path` is one the edge answers itself, in any method: a server never routes it.
pub fn is_own_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/metrics" | "/openapi.json")
}

/// One request at the edge: begun when its head arrived, finished with its access line.
#[derive(Debug)]
pub struct Exchange {
    started: Instant,
    method: Method,
    // A cheap clone (shared bytes), for the log line after the head was handed on.
    uri: Uri,
    client: SocketAddr,
}

/// What the access line says beyond what the edge knows: who asked and how many body bytes
/// moved.
#[derive(Debug, Default)]
pub struct AccessLine<'a> {
    /// The body bytes to log; `None`: the response's length as its head declares it (none
    /// for a body of unknown length, such as a proxied chunked one).
    pub bytes: Option<u64>,
    /// The gate's authenticated principal.
    pub principal: Option<&'a str>,
    /// The store's admitted key.
    pub key_id: Option<String>,
}

impl Exchange {
    /// Starts the clock on a request whose head is `parts`, from `client`.
    pub fn begin(parts: &Parts, client: SocketAddr) -> Exchange {
        Exchange {
            started: Instant::now(),
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            client,
        }
    }

    /// The request's method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The answer on `/healthz`, `/metrics` and `/openapi.json`; `None` on every other path,
    /// which is the server's to route.
    pub fn own<B: From<Bytes>>(&self, server: &impl OwnPaths) -> Option<Own<B>> {
        let get = self.method == Method::GET;
        let answer = match self.uri.path() {
            "/healthz" if get || self.method == Method::HEAD => {
                Own::Answer("healthz", text(crate::hygiene::TEXT_PLAIN, "ok\n".into()))
            }
            "/metrics" if get => Own::Answer(
                "metrics",
                text(METRICS_CONTENT_TYPE, server.metrics_text().into()),
            ),
            "/openapi.json" if get => Own::Answer("openapi", text(JSON, server.openapi())),
            "/healthz" => Own::WrongMethod(HEALTHZ_METHODS),
            "/metrics" | "/openapi.json" => Own::WrongMethod(GET_ONLY),
            _ => return None,
        };
        Some(answer)
    }

    /// `err` as the answer on `route`: counted if it is a refusal, logged if an operator must
    /// hear of it, written by [`json_error`].
    pub fn refuse<B: From<Bytes>>(
        &self,
        err: impl ApiError,
        route: &'static str,
        metrics: &ServerMetrics,
    ) -> Response<B> {
        if err.is_refusal() {
            metrics.refused(err.status_and_code().1);
        }
        match err.alarm() {
            Some(Alarm::Internal(why)) => {
                tracing::error!(route, error = %Chain(why), "internal error")
            }
            Some(Alarm::Unavailable { what, why }) => {
                tracing::warn!(route, error = %Chain(why), "{what}")
            }
            None => {}
        }
        json_error(&err)
    }

    /// What every response gets once the server is done with it: the protective headers, the
    /// request metrics and one `valet::access` line. The path is logged without its query: a
    /// query may carry a key.
    pub fn finish<B: http_body::Body>(
        self,
        route: &'static str,
        response: &mut Response<B>,
        metrics: &ServerMetrics,
        line: AccessLine<'_>,
    ) {
        crate::hygiene::protect(response.headers_mut());
        let status = response.status().as_u16();
        let elapsed = self.started.elapsed();
        metrics.request(route, status, elapsed.as_secs_f64());
        // The length as the head declares it: the line is written now, before the body is.
        let bytes = line.bytes.or_else(|| response.body().size_hint().exact());
        tracing::info!(
            target: "valet::access",
            method = %self.method,
            path = self.uri.path(),
            route,
            status,
            bytes,
            micros = elapsed.as_micros() as u64,
            principal = line.principal,
            key_id = line.key_id,
            client = %self.client.ip(),
        );
    }
}

fn text<B: From<Bytes>>(content_type: &'static str, body: Bytes) -> Response<B> {
    let mut response = Response::new(B::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("no such thing")]
    struct Missing(#[source] std::io::Error);

    impl ApiError for Missing {
        fn status_and_code(&self) -> (StatusCode, &'static str) {
            (StatusCode::NOT_FOUND, "not_found")
        }

        fn add_headers(&self, headers: &mut HeaderMap) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
    }

    fn missing() -> Missing {
        Missing(std::io::Error::other("the disk said no"))
    }

    #[test]
    fn an_error_is_one_uncacheable_json_body_with_its_headers() {
        let response: Response<Bytes> = json_error(&missing());
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], JSON);
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(
            response.body().as_ref(),
            br#"{"error":{"code":"not_found","message":"no such thing"}}"#
        );
    }

    #[test]
    fn a_logged_error_names_its_causes() {
        let err = missing();
        assert_eq!(Chain(&err).to_string(), "no such thing: the disk said no");
    }

    #[test]
    fn the_own_paths_are_answered_by_the_edge_and_nothing_else() {
        struct Server;
        impl OwnPaths for Server {
            fn metrics_text(&self) -> String {
                "# EOF\n".into()
            }
            fn openapi(&self) -> Bytes {
                Bytes::from_static(b"{}")
            }
        }
        let exchange = |method: Method, path: &str| {
            let (parts, ()) = http::Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap()
                .into_parts();
            Exchange::begin(&parts, "127.0.0.1:1".parse().unwrap())
        };
        let answer = |method, path| match exchange(method, path).own::<Bytes>(&Server) {
            Some(Own::Answer(route, response)) => {
                let content_type = response.headers()[header::CONTENT_TYPE].clone();
                Some(Ok((route, content_type, response.into_body())))
            }
            Some(Own::WrongMethod(allow)) => Some(Err(allow)),
            None => None,
        };
        let ok = |route, content_type, body: &'static [u8]| {
            Some(Ok((
                route,
                HeaderValue::from_static(content_type),
                Bytes::from(body),
            )))
        };
        assert_eq!(
            answer(Method::HEAD, "/healthz"),
            ok("healthz", crate::hygiene::TEXT_PLAIN, b"ok\n")
        );
        assert_eq!(
            answer(Method::GET, "/metrics"),
            ok("metrics", METRICS_CONTENT_TYPE, b"# EOF\n")
        );
        assert_eq!(
            answer(Method::GET, "/openapi.json"),
            ok("openapi", JSON, b"{}")
        );
        assert_eq!(answer(Method::POST, "/healthz"), Some(Err(HEALTHZ_METHODS)));
        assert_eq!(answer(Method::PUT, "/metrics"), Some(Err(GET_ONLY)));
        assert_eq!(answer(Method::GET, "/healthz/"), None);
        assert_eq!(answer(Method::GET, "/v1/keys"), None);
    }
}
