//! The router: one function from a request to a response, plus what every response gets
//! (security headers, metrics, one access-log line).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use percent_encoding::{percent_decode, percent_decode_str};
use valet_http::metrics::METRICS_CONTENT_TYPE;
use valet_http::{Connection, Handler, ServeOptions, Site};

use crate::auth::Principal;
use crate::body::GateBody;
use crate::error::GateError;
use crate::routes::{Action, NoRoute};
use crate::state::Gate;

/// Every route the router answers by itself, as `(method, path template)`: what `openapi.json`
/// (served at `GET /openapi.json`) must describe. The configured delegate and proxy routes
/// come on top; the document describes the default configuration's `/files/{path}`.
/// `tests/openapi.rs` checks the document against this list both ways, and the list against a
/// running gate.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("HEAD", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys/{id}"),
    ("DELETE", "/v1/keys/{id}"),
    ("POST", "/v1/keys/{id}/complete"),
    ("POST", "/v1/revocations"),
];

/// The OpenAPI 3.1 description of the gate, served at `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

impl Handler for Gate {
    type Body = GateBody;

    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        connection: Connection,
    ) -> impl Future<Output = Response<GateBody>> + Send + 'static {
        handle(self, request, connection.client)
    }
}

impl Gate {
    /// The gate as a site for [`valet_http::run`], on `listeners`.
    pub fn site(
        self: &Arc<Self>,
        options: ServeOptions,
        listeners: Vec<std::net::TcpListener>,
    ) -> Site {
        Site::new("gate", self.clone(), options, listeners)
    }
}

/// Handles one request. Never fails: errors become JSON responses.
pub async fn handle(
    gate: Arc<Gate>,
    request: Request<Incoming>,
    client: SocketAddr,
) -> Response<GateBody> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    // A cheap clone (shared bytes), for the log line after `parts` was handed on.
    let uri = parts.uri.clone();
    let mut principal = None;
    let (route, result) = route(&gate, parts, body, client, &mut principal).await;
    let mut response = result.unwrap_or_else(|err| {
        let (_, code) = err.status_and_code();
        gate.metrics.refusal(code);
        match &err {
            GateError::Internal(why) => tracing::error!(route, error = %why, "internal error"),
            // Every request that needs the ledger is being refused: an operator must know.
            GateError::Ledger(why) => tracing::warn!(route, error = %why, "ledger unavailable"),
            _ => {}
        }
        err.into_response()
    });
    valet_http::hygiene::protect(response.headers_mut());
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    gate.metrics.request(route, status, elapsed.as_secs_f64());
    // The body's length as the response head declares it: the line is written now, and a
    // proxied body of unknown length (chunked) has none.
    let bytes = response.body().size_hint().exact();
    // The path without the query: a query may carry secrets.
    tracing::info!(
        target: "valet::access",
        %method,
        path = uri.path(),
        route,
        status,
        bytes,
        micros = elapsed.as_micros() as u64,
        principal = principal.as_ref().map(|p| p.name.as_str()),
        client = %client.ip(),
    );
    response
}

async fn route(
    gate: &Arc<Gate>,
    parts: http::request::Parts,
    body: Incoming,
    client: SocketAddr,
    principal_slot: &mut Option<Arc<Principal>>,
) -> (&'static str, Result<Response<GateBody>, GateError>) {
    // The captures borrow this (cheap) copy of the URI: the proxy takes `parts` by value.
    let uri = parts.uri.clone();
    let path = uri.path();
    match path {
        "/healthz" if parts.method == Method::GET || parts.method == Method::HEAD => {
            return ("healthz", Ok(healthz()))
        }
        "/metrics" if parts.method == Method::GET => return ("metrics", Ok(metrics(gate))),
        "/openapi.json" if parts.method == Method::GET => return ("openapi", Ok(openapi())),
        "/healthz" => {
            return (
                "other",
                Err(GateError::MethodNotAllowed("GET, HEAD".into())),
            )
        }
        "/metrics" | "/openapi.json" => {
            return ("other", Err(GateError::MethodNotAllowed("GET".into())))
        }
        _ => {}
    }
    if path.starts_with("/v1/") {
        return (
            "api",
            crate::api::handle(gate, &parts, body, principal_slot).await,
        );
    }
    if hides_another_path(path) {
        let why = "a '.' or '..' segment, or an encoded '/' or '\\', in any encoding";
        return ("other", Err(GateError::BadPath(why.into())));
    }
    let matched = match gate.routes.find(&parts.method, path) {
        Ok(m) => m,
        Err(NoRoute::NotFound) => {
            return (
                "other",
                Err(GateError::NotFound(format!("no route for {path}"))),
            )
        }
        Err(NoRoute::MethodNotAllowed(allow)) => {
            return ("other", Err(GateError::MethodNotAllowed(allow)))
        }
    };
    let route = matched.route;
    let principal = match gate.auth.authenticate(&parts.headers) {
        Ok(p) => p,
        Err(e) => return (route.name, Err(e)),
    };
    *principal_slot = Some(principal.clone());
    if !route.roles.is_empty() && !principal.roles.iter().any(|r| route.roles.contains(r)) {
        let why = format!(
            "principal '{}' has none of the roles this route allows ({})",
            principal.name,
            route.roles.join(", ")
        );
        return (route.name, Err(GateError::Forbidden(why)));
    }
    if let Err(e) = gate.check_rate(&principal) {
        return (route.name, Err(e));
    }
    let result = match &route.action {
        Action::Delegate(d) => {
            crate::delegate::delegate(gate, d, &matched.captures, &principal, &parts).await
        }
        Action::Proxy(p) => {
            crate::proxy::proxy(gate, p, &matched.captures, &principal, parts, body, client).await
        }
    };
    (route.name, result)
}

/// `ok`, as plain text: what a load balancer's health check reads.
fn healthz() -> Response<GateBody> {
    let mut response = Response::new(GateBody::full("ok\n"));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(valet_http::hygiene::TEXT_PLAIN),
    );
    response
}

fn openapi() -> Response<GateBody> {
    let mut response = Response::new(GateBody::full(OPENAPI));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Whether a raw request path could name another resource to a server that normalises or
/// decodes it again: a segment that is `.` or `..` once percent-decoded (once or twice),
/// also with path parameters (`..;x`, as Tomcat and Jetty read it); one that hides a `/`, `\`,
/// NUL or control character in an encoding; an encoding that is not UTF-8 (overlong `%c0%ae`);
/// or IIS's `%u002e`. Refused before any route sees the path, so that `/api/../admin` never
/// reaches an upstream that would resolve it.
fn hides_another_path(path: &str) -> bool {
    path.split('/').any(|segment| {
        if !segment.contains(['%', ';', '.', '\\']) {
            return false;
        }
        if !segment.contains('%') {
            // Nothing to decode: the segment is what an upstream reads, once or twice over.
            return suspicious_segment(segment.as_bytes());
        }
        if segment.to_ascii_lowercase().contains("%u") {
            return true;
        }
        let once: Vec<u8> = percent_decode_str(segment).collect();
        let twice: Vec<u8> = percent_decode(&once).collect();
        [once, twice]
            .iter()
            .any(|decoded| suspicious_segment(decoded))
    })
}

fn suspicious_segment(decoded: &[u8]) -> bool {
    if std::str::from_utf8(decoded).is_err() {
        return true;
    }
    if decoded
        .iter()
        .any(|&b| b < 0x20 || b == 0x7f || b == b'/' || b == b'\\')
    {
        return true;
    }
    // `..;jsessionid=x` is `..` to a server that strips path parameters.
    let name = decoded.split(|&b| b == b';').next().unwrap_or_default();
    name == b"." || name == b".."
}

fn metrics(gate: &Gate) -> Response<GateBody> {
    let mut response = Response::new(GateBody::full(gate.metrics.render()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::hides_another_path;

    #[test]
    fn paths_that_could_be_read_as_others_are_caught() {
        for bad in [
            "/api/../admin",
            "/api/./x",
            "/api/%2e%2e/admin",
            "/api/%2E%2e/admin",
            "/api/.%2e/admin",
            "/api/%252e%252e/admin",
            "/api/a%2fb",
            "/api/a%2Fb",
            "/api/a%5cb",
            "/api/a%255cb",
            "/api/a\\b",
            "/..",
        ] {
            assert!(hides_another_path(bad), "{bad}");
        }
        for good in [
            "/api/x",
            "/api/a.b",
            "/api/...",
            "/api/%20x",
            "/api/a%2520b",
            "/",
        ] {
            assert!(!hides_another_path(good), "{good}");
        }
    }
}
