//! Delegate routes: the gate decides, the store serves. The request is mapped to one resource
//! and one operation, checked against the policy, and answered with a short-lived key for
//! exactly that: a `307` to the store URL, or the key as JSON.
//!
//! A path that ends in `/` names a folder: `GET` on it is delegated as a listing.
//!
//! The request body is never read. A `PUT` sent with `Expect: 100-continue` gets its `307`
//! before the client sends a byte of it (hyper sends `100 Continue` only when a handler reads
//! the body), so `curl -L -T file` uploads straight to the store.

use std::borrow::Cow;
use std::sync::Arc;
use valet_http::edge::Internal;

use http::{header, request::Parts, HeaderValue, Method, Response, StatusCode};
use valet_key::{decode_url_path, BlobTarget, Limits, Op, Ops, Scope};

use crate::auth::Principal;
use crate::body::GateBody;
use crate::error::GateError;
use crate::issue::{mint, Handover};
use crate::policy::{principal_segment, KeyRequest};
use crate::routes::{fill, op_for, DelegateRoute};
use crate::state::Gate;
use valet_http::edge;

/// Answers a request on a delegate route.
pub(crate) async fn delegate(
    gate: &Arc<Gate>,
    route: &DelegateRoute,
    captures: &[(&str, &str)],
    principal: &Principal,
    parts: &Parts,
) -> Result<Response<GateBody>, GateError> {
    let mut op = op_for(&parts.method, route.create_only)
        .ok_or_else(|| GateError::MethodNotAllowed("GET, HEAD, PUT, DELETE".into()))?;
    let scope = resource(route, captures, principal)?;
    if !matches!(
        scope,
        Scope::Blob {
            target: BlobTarget::Blob(_),
            ..
        }
    ) {
        // A path ending in `/` names a folder: GET lists it; nothing else applies to one.
        if parts.method != Method::GET {
            return Err(GateError::BadPath(format!(
                "{scope} is a folder: only GET (a listing) applies to it"
            )));
        }
        op = Op::List;
    }
    let request = KeyRequest {
        scope,
        ops: Ops::NONE.with(op),
        ttl: Some(route.ttl),
        limits: Limits::default(),
    };
    let approved = gate.policies.approve(principal, &request)?;
    if wants_json(parts) {
        let minted = mint(gate, principal, approved, Handover::Shown("delegate")).await?;
        return Ok(edge::json(StatusCode::OK, &minted));
    }
    let minted = mint(gate, principal, approved, Handover::Redirect).await?;
    let url = minted.url.ok_or_else(|| {
        GateError::Internal(Internal::new("a delegated resource has no store URL"))
    })?;
    let location = HeaderValue::try_from(url).map_err(|e| {
        GateError::Internal(Internal::caused("the store URL is not a header value", e))
    })?;
    let mut response = Response::new(GateBody::empty());
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The route's resource template filled from the request's path and the principal.
///
/// Each capture is percent-decoded once, segment by segment, exactly as the store decodes its
/// own paths, and the result is parsed by the key crate's strict rules: `..`, `.`, an encoded
/// `/`, a backslash or a `%XX` left from double encoding is `bad_path`, never normalised.
fn resource(
    route: &DelegateRoute,
    captures: &[(&str, &str)],
    principal: &Principal,
) -> Result<Scope, GateError> {
    if let Some((name, _)) = captures.iter().find(|(_, raw)| raw.is_empty()) {
        // `/files/` or `/files` on `/files/{*path}`: the route claims it, but it names nothing.
        return Err(GateError::BadPath(format!(
            "{{{name}}} is empty: the path names no resource"
        )));
    }
    let decoded: Vec<(&str, String)> = captures
        .iter()
        .map(|(name, raw)| decode(raw).map(|value| (*name, value)))
        .collect::<Result<_, _>>()?;
    let mut values: Vec<(&str, &str)> = decoded.iter().map(|(n, v)| (*n, v.as_str())).collect();
    if route.resource.contains("{sub}") {
        let sub = principal_segment(&principal.name).ok_or_else(|| {
            GateError::PolicyDenied(format!(
                "principal '{}' cannot stand as one path segment of {}",
                principal.name, route.resource
            ))
        })?;
        values.push(("sub", sub));
    }
    // One pass over the template: a captured value that reads `{sub}` stays literal text.
    let text = fill(&route.resource, &values).ok_or_else(|| {
        GateError::Internal(Internal::new("a route template checked at start failed"))
    })?;
    text.parse::<Scope>()
        .map_err(|e| GateError::BadPath(format!("{e}")))
}

/// The store's decoding, so that the resource a key is minted for is byte for byte the one
/// the store will check it against.
fn decode(raw: &str) -> Result<String, GateError> {
    decode_url_path(raw)
        .map(Cow::into_owned)
        .map_err(|e| GateError::BadPath(e.to_string()))
}

fn wants_json(parts: &Parts) -> bool {
    parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|m| m.trim().starts_with("application/json"))
        })
}
