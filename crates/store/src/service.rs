//! The router: one function from a request to a response, plus what every response gets
//! (security headers, CORS, metrics, one access-log line).

use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use valet_http::metrics::METRICS_CONTENT_TYPE;
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

/// Handles one request. Never fails: errors become JSON responses.
pub async fn handle(
    store: Arc<Store>,
    request: Request<Incoming>,
    connection: Connection,
) -> Response<ResponseBody> {
    let client = connection.client;
    let started = Instant::now();
    let (parts, mut body) = request.into_parts();
    let method = parts.method.clone();
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
    let (route, result) = route(&mut ctx, &mut body).await;
    let mut response = result.unwrap_or_else(|err| {
        if let (StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED, code)
        | (_, code @ "key_malformed") = err.status_and_code()
        {
            store.metrics.denial(code);
        }
        match &err {
            StoreError::Internal(why) => tracing::error!(route, error = %why, "internal error"),
            // Every request that needs the ledger is being refused: an operator must know.
            StoreError::LedgerUnavailable(why) => {
                tracing::warn!(route, error = %why, "ledger unavailable")
            }
            _ => {}
        }
        err.into_response()
    });
    let headers = response.headers_mut();
    valet_http::hygiene::protect(headers);
    if route != "preflight" {
        store.cors.decorate(origin.as_ref(), headers);
    }
    // A client too slow to send its body in time is not given more.
    if response.status() != StatusCode::REQUEST_TIMEOUT {
        linger::drain_unread(body, &ctx.parts);
    }
    // What the log's `bytes` says: an upload's bytes received, else the body sent (an error's
    // JSON, a listing's page, a download's range), from the one place that knows its length.
    if method != Method::PUT {
        ctx.bytes = http_body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(ctx.bytes);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    store.metrics.request(route, status, elapsed.as_secs_f64());
    // The path is logged without the query: the query may hold a key.
    tracing::info!(
        target: "valet::access",
        %method,
        path = ctx.parts.uri.path(),
        route,
        status,
        bytes = ctx.bytes,
        micros = elapsed.as_micros() as u64,
        key_id = ctx.key_id.map(|k| k.to_string()),
        client = %client.ip(),
    );
    response
}

async fn route(
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
    match path {
        "/healthz" if method == Method::GET || method == Method::HEAD => {
            return ("healthz", Ok(healthz()))
        }
        "/metrics" if method == Method::GET => return ("metrics", Ok(metrics(&ctx.store))),
        "/openapi.json" if method == Method::GET => return ("openapi", Ok(openapi())),
        "/healthz" => return ("other", Err(StoreError::MethodNotAllowed(ALLOW_HEALTHZ))),
        "/metrics" | "/openapi.json" => {
            return ("other", Err(StoreError::MethodNotAllowed(ALLOW_GET)))
        }
        _ => {}
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

/// `ok`, as plain text: what a load balancer's health check reads.
fn healthz() -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full("ok\n"));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(valet_http::hygiene::TEXT_PLAIN),
    );
    response
}

fn openapi() -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(OPENAPI));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn metrics(store: &Store) -> Response<ResponseBody> {
    let (entries, bytes) = store.blobs.hot_usage();
    store.metrics.blob_cache(entries, bytes);
    let mut response = Response::new(ResponseBody::full(store.metrics.render()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    response
}
