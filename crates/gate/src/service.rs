//! The router: one function from a request to a response, inside the edge every server shares
//! (`valet_http::edge`: `/healthz`, `/metrics`, `/openapi.json`, security headers, metrics, one
//! access-log line).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use valet_http::edge::{AccessLine, Exchange, Own, OwnPaths};
use valet_http::{Connection, Handler, ServeOptions, Site};

use crate::auth::Principal;
use crate::body::GateBody;
use crate::error::GateError;
use crate::request_path;
use crate::routes::{Action, NoRoute};
use crate::state::Gate;

/// Every route the router answers by itself, as `(method, path template)`: what `openapi.json`
/// must describe. The configured delegate and proxy routes come on top: the document served at
/// `GET /openapi.json` adds them from the route table (`crate::openapi`). `tests/openapi.rs`
/// checks the document against this list both ways, and the list against a running gate.
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

/// Handles one request. Never fails: errors become JSON responses. The edge
/// (`valet_http::edge`) answers the paths every server has and does what every response gets;
/// [`route`] is the gate's own.
pub async fn handle(
    gate: Arc<Gate>,
    request: Request<Incoming>,
    client: SocketAddr,
) -> Response<GateBody> {
    let (parts, body) = request.into_parts();
    let exchange = Exchange::begin(&parts, client);
    let mut principal = None;
    let (route, result) = match exchange.own(&*gate) {
        Some(Own::Answer(route, response)) => (route, Ok(response)),
        Some(Own::WrongMethod(allow)) => ("other", Err(GateError::MethodNotAllowed(allow.into()))),
        None => route(&gate, parts, body, client, &mut principal).await,
    };
    let mut response = result.unwrap_or_else(|err| exchange.refuse(err, route, &gate.metrics));
    let line = AccessLine {
        principal: principal.as_ref().map(|p| p.name.as_str()),
        ..AccessLine::default()
    };
    exchange.finish(route, &mut response, &gate.metrics, line);
    response
}

impl OwnPaths for Gate {
    fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    /// The fixed document with the configured routes added.
    fn openapi(&self) -> Bytes {
        crate::openapi::served(&self.routes)
    }
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
    if path.starts_with("/v1/") {
        return (
            "api",
            crate::api::handle(gate, &parts, body, principal_slot).await,
        );
    }
    // One reading of the path for the route table, the delegate's captures and the upstream.
    let normal = match request_path::normalize(path) {
        Ok(normal) => normal,
        Err(why) => return ("other", Err(GateError::BadPath(why.to_string()))),
    };
    if is_reserved(&normal) {
        // `/%761/keys`: the gate's own paths are answered only as spelled above.
        let why = "another spelling of one of the gate's own paths";
        return ("other", Err(GateError::BadPath(why.into())));
    }
    let matched = match gate.routes.find(&parts.method, &normal) {
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
        Err(NoRoute::Ambiguous(earlier)) => {
            let why = format!(
                "the path reads as {earlier}'s when case, a trailing '/', '.' or space, or an \
                 encoded ';' are ignored; spell it exactly as that route does"
            );
            return ("other", Err(GateError::BadPath(why)));
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
            let target = crate::proxy::Target {
                route: route.name,
                path: &normal,
                captures: &matched.captures,
            };
            crate::proxy::proxy(gate, p, target, &principal, parts, body, client).await
        }
    };
    (route.name, result)
}

/// Whether a normal-form path is one the gate answers itself (never a route's).
fn is_reserved(normal: &str) -> bool {
    normal.starts_with("/v1/") || valet_http::edge::is_own_path(normal)
}
