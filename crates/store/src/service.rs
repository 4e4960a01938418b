//! The router: one function from a request to a response, inside the edge every server shares
//! (`valet_http::edge`: `/healthz`, `/metrics`, `/openapi.json`, security headers, metrics, one
//! access-log line), plus CORS.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use valet_http::edge::{AccessLine, Exchange, Own, OwnPaths, HEALTHZ_METHODS};
use valet_http::Connection;

use crate::body::ResponseBody;
use crate::error::StoreError;
use crate::handlers::{self, Ctx};
use crate::linger;
use crate::request::blob_target;
use crate::state::Store;

/// Every route the router answers, as `(method, path template)`: what `openapi.json` (served at
/// `GET /openapi.json`) must describe. `tests/openapi.rs` checks the document against this list
/// both ways, and the list against a running store. `OPTIONS` (CORS preflight) is answered on
/// any path; it is listed where it matters, on the blob paths.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("HEAD", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/blob/{container}/{path}"),
    ("HEAD", "/blob/{container}/{path}"),
    ("PUT", "/blob/{container}/{path}"),
    ("DELETE", "/blob/{container}/{path}"),
    ("OPTIONS", "/blob/{container}/{path}"),
    ("GET", "/blob/{container}"),
    ("OPTIONS", "/blob/{container}"),
];

/// What each route takes, for the `Allow` header of a `405` (RFC 9110). `OPTIONS` (CORS
/// preflight) is answered on every path.
const ALLOW_HEALTHZ: &str = "GET, HEAD, OPTIONS";
const ALLOW_GET: &str = "GET, OPTIONS";
const ALLOW_BLOB: &str = "GET, HEAD, PUT, DELETE, OPTIONS";

/// The OpenAPI 3.1 description of the store, served at `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Handles one request. Never fails: errors become JSON responses. The edge
/// (`valet_http::edge`) answers the paths every server has and does what every response gets;
/// [`route`] is the store's own, and CORS and the unread body are seen to here.
pub async fn handle(
    store: Arc<Store>,
    request: Request<Incoming>,
    connection: Connection,
) -> Response<ResponseBody> {
    let client = connection.client;
    let (parts, mut body) = request.into_parts();
    let exchange = Exchange::begin(&parts, client);
    let origin = parts.headers.get(header::ORIGIN).cloned();
    let mut ctx = Ctx {
        store: store.clone(),
        parts,
        client: client.ip(),
        file_sender: connection.file_sender.clone(),
        connection,
        key_id: None,
        bytes: 0,
    };
    let (route, result) = route(&exchange, &mut ctx, &mut body).await;
    let mut response = result.unwrap_or_else(|err| exchange.refuse(err, route, &store.metrics));
    if route != "preflight" {
        store.cors.decorate(origin.as_ref(), response.headers_mut());
    }
    // A client too slow to send its body in time is not given more.
    if response.status() != StatusCode::REQUEST_TIMEOUT {
        linger::drain_unread(body, &ctx.parts);
    }
    // What the log's `bytes` says: an upload's bytes received, else the body sent (an error's
    // JSON, a listing's page, a download's range), from the one place that knows its length.
    if exchange.method() != Method::PUT {
        ctx.bytes = http_body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(ctx.bytes);
    }
    let line = AccessLine {
        bytes: Some(ctx.bytes),
        key_id: ctx.key_id.map(|k| k.to_string()),
        ..AccessLine::default()
    };
    exchange.finish(route, &mut response, &store.metrics, line);
    response
}

impl OwnPaths for Store {
    /// With what the small-blob cache holds, read now so that serving a blob pays nothing.
    fn metrics_text(&self) -> String {
        let (entries, bytes) = self.blobs.hot_usage();
        self.metrics.blob_cache(entries, bytes);
        self.metrics.render()
    }

    fn openapi(&self) -> Bytes {
        Bytes::from_static(OPENAPI.as_bytes())
    }
}

async fn route(
    exchange: &Exchange,
    ctx: &mut Ctx,
    body: &mut Incoming,
) -> (&'static str, Result<Response<ResponseBody>, StoreError>) {
    let method = ctx.parts.method.clone();
    let path = ctx.parts.uri.path();
    if method == Method::OPTIONS {
        return (
            "preflight",
            Ok(ctx.store.cors.preflight(&ctx.parts.headers)),
        );
    }
    match exchange.own(&*ctx.store) {
        Some(Own::Answer(route, response)) => return (route, Ok(response)),
        // `OPTIONS` is answered on every path.
        Some(Own::WrongMethod(HEALTHZ_METHODS)) => {
            return ("other", Err(StoreError::MethodNotAllowed(ALLOW_HEALTHZ)))
        }
        Some(Own::WrongMethod(_)) => {
            return ("other", Err(StoreError::MethodNotAllowed(ALLOW_GET)))
        }
        None => {}
    }
    let Some(raw) = path.strip_prefix("/blob/") else {
        return ("other", Err(StoreError::NotFound));
    };
    let target = match blob_target(raw) {
        Ok(t) => t,
        Err(e) => return ("blob", Err(e)),
    };
    match (method, target.path) {
        (Method::GET, Some(p)) => (
            "blob_get",
            handlers::get_blob(ctx, target.container, p, false).await,
        ),
        (Method::HEAD, Some(p)) => (
            "blob_head",
            handlers::get_blob(ctx, target.container, p, true).await,
        ),
        (Method::PUT, Some(p)) => (
            "blob_put",
            handlers::put_blob(ctx, target.container, p, body).await,
        ),
        (Method::DELETE, Some(p)) => (
            "blob_delete",
            handlers::delete_blob(ctx, target.container, p).await,
        ),
        (Method::GET, None) => (
            "blob_list",
            handlers::list_blobs(ctx, target.container).await,
        ),
        (_, Some(_)) => ("blob", Err(StoreError::MethodNotAllowed(ALLOW_BLOB))),
        (_, None) => ("blob", Err(StoreError::MethodNotAllowed(ALLOW_GET))),
    }
}
