//! Proxy routes: compute requests streamed to an upstream and its answer streamed back.
//!
//! Neither body is buffered. The gate strips hop-by-hop headers and the client's credential,
//! names the authenticated principal in its own header (removing any such header the client
//! sent, so it cannot be forged), sets `X-Forwarded-For`/`-Proto`/`-Host`, cuts a request body
//! at the route's limit (413), and answers 504 when the upstream is slow and 502 when it is
//! down, with the JSON error shape. Why an upstream is down goes to the log, not to the
//! client: its address and the HTTP library's words are the gate's internals.
//!
//! Each worker thread keeps its own connection pool: the gate runs one single-threaded
//! runtime per core, and a pooled connection's task must live on the thread that uses it.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use valet_http::edge::Internal;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;

use crate::auth::Principal;
use crate::body::GateBody;
use crate::error::GateError;
use crate::routes::{fill, ProxyRoute};
use crate::state::Gate;
use crate::upstream::{self, BodyTooLarge, LimitedBody, UpstreamError};

/// Where a request goes upstream: the normal-form path the route matched
/// (`crate::request_path`) and the captures taken from it.
pub(crate) struct Target<'a> {
    /// The route's name, for the operator's log.
    pub route: &'static str,
    pub path: &'a str,
    pub captures: &'a [(&'a str, &'a str)],
}

/// Forwards a request on a proxy route.
pub(crate) async fn proxy(
    gate: &Arc<Gate>,
    route: &ProxyRoute,
    target: Target<'_>,
    principal: &Principal,
    parts: Parts,
    body: Incoming,
    client: SocketAddr,
) -> Result<Response<GateBody>, GateError> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_body) {
        return Err(GateError::TooLarge {
            limit: route.max_body,
        });
    }
    let uri = upstream_uri(route, &target, &parts.uri)?;
    let mut headers = parts.headers;
    let host = headers.remove(header::HOST).or_else(|| {
        let authority = parts.uri.authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    });
    strip_hop_by_hop(&mut headers);
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::EXPECT);
    set_identity(gate, &mut headers, principal)?;
    set_forwarded(&mut headers, client, gate.https, host);
    headers.insert(header::HOST, route.host.clone());
    let body = LimitedBody::new(body, route.max_body, gate.metrics.bytes_in.clone());
    let mut request = Request::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    let answer = tokio::time::timeout(
        route.timeout,
        upstream::send(&route.authority, route.tls.as_ref(), request),
    )
    .await;
    let upstream = match answer {
        Err(_) => return Err(GateError::UpstreamTimeout(route.timeout)),
        Ok(Err(e)) if caused_by_limit(&e) => {
            return Err(GateError::TooLarge {
                limit: route.max_body,
            })
        }
        Ok(Err(e)) => {
            // The operator learns which upstream failed and why; the client only that it did.
            tracing::warn!(
                route = target.route,
                upstream = %route.authority,
                error = %describe(&e),
                "upstream unavailable"
            );
            return Err(GateError::UpstreamUnavailable);
        }
        Ok(Ok(exchange)) => exchange,
    };
    let (response, conn) = upstream;
    let (mut head, body) = response.into_parts();
    strip_hop_by_hop(&mut head.headers);
    let counter = gate.metrics.bytes_out.clone();
    Ok(Response::from_parts(
        head,
        GateBody::upstream(body, counter, conn),
    ))
}

/// The upstream request target in origin form: the route's path template filled with the
/// captures, or the normal-form path the route matched; the query as it came. The upstream
/// reads exactly the path the gate matched, never another spelling of it.
fn upstream_uri(route: &ProxyRoute, target: &Target<'_>, uri: &Uri) -> Result<Uri, GateError> {
    let path = match &route.path {
        // Already in normal form, as almost every path is: forwarded without a copy.
        None if target.path == uri.path() => {
            let target = uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            return Ok(Uri::from(target));
        }
        None => target.path.to_owned(),
        Some(template) => fill(template, target.captures).ok_or_else(|| {
            GateError::Internal(Internal::new("a proxy template checked at start failed"))
        })?,
    };
    let text = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    text.parse()
        .map_err(|e| GateError::BadRequest(format!("cannot forward this path: {e}")))
}

/// Whether the exchange failed because the client's body went over the route's limit.
fn caused_by_limit(err: &UpstreamError) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.is::<BodyTooLarge>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Removes the headers that belong to one connection (RFC 9110 §7.6.1), including any that
/// `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // Removed below anyway; and the usual `Connection: keep-alive` then costs no
        // allocation for the name and the list.
        .filter(|name| !name.eq_ignore_ascii_case("keep-alive"))
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Replaces whatever the client claimed with who the gate authenticated.
fn set_identity(
    gate: &Gate,
    headers: &mut HeaderMap,
    principal: &Principal,
) -> Result<(), GateError> {
    // Also every spelling an upstream may read as the same header: CGI, WSGI, Rack and PHP
    // turn `-` and `_` alike into `_`.
    let conflated = |name: &HeaderName| {
        let same = |ours: &HeaderName| {
            name.as_str().len() == ours.as_str().len()
                && name
                    .as_str()
                    .bytes()
                    .zip(ours.as_str().bytes())
                    .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
        };
        same(&gate.principal_header) || same(&gate.roles_header)
    };
    let spoofed: Vec<HeaderName> = headers.keys().filter(|n| conflated(n)).cloned().collect();
    for name in spoofed {
        headers.remove(name);
    }
    let (name, roles) = principal.header_values().ok_or_else(|| {
        GateError::Forbidden("the principal's name cannot be passed in a header".into())
    })?;
    headers.insert(gate.principal_header.clone(), name.clone());
    headers.insert(gate.roles_header.clone(), roles.clone());
    Ok(())
}

fn set_forwarded(
    headers: &mut HeaderMap,
    client: SocketAddr,
    https: bool,
    host: Option<HeaderValue>,
) {
    // Named once: a `&str` name is copied into a new `HeaderName` on every insert.
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    let mut chain = String::with_capacity(64);
    if let Some(earlier) = headers.get(&XFF).and_then(|v| v.to_str().ok()) {
        chain.push_str(earlier);
        chain.push_str(", ");
    }
    let _ = write!(chain, "{}", client.ip());
    if let Ok(value) = HeaderValue::try_from(chain) {
        headers.insert(XFF, value);
    }
    // The client's own claims about where it is: the gate says it with X-Forwarded-*.
    headers.remove(header::FORWARDED);
    headers.remove("x-real-ip");
    let proto = if https { "https" } else { "http" };
    headers.insert(XFP, HeaderValue::from_static(proto));
    match host {
        Some(host) => headers.insert(XFH, host),
        None => headers.remove(XFH),
    };
}

fn describe(err: &UpstreamError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
