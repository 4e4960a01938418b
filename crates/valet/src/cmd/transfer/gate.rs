//! Asking the gate for a store request.
//!
//! The tool sends the gate the request it means to make (same method and path; an upload's
//! `Content-Type` and `x-valet-sha256` as hints, never its body), with `Authorization: Bearer`
//! and `Accept: application/json`. The gate answers either `200`/`201` with the description of
//! a key (`{"id", "token", "url", "method", "expires_at"}`, as `POST /v1/keys`), or a `307` to
//! the store. Redirects are followed here, by hand, because the API key is the gate's alone: it
//! must never travel on to the store, whatever host the answer names.

use anyhow::Context;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, LOCATION};
use reqwest::{Method, StatusCode, Url};

use super::{read_capped, redact_url, send, ServerError, Target};

/// The largest delegation body read from a gate.
const MAX_DELEGATION: usize = 64 * 1024;

/// The gate's JSON description of a store request.
#[derive(Debug, serde::Deserialize)]
struct Delegation {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// Asks the gate at `url` for the store request that performs `method` on its resource.
pub(super) async fn delegate(
    client: &reqwest::Client,
    url: Url,
    api_key: &str,
    method: Method,
    hints: HeaderMap,
) -> anyhow::Result<Target> {
    let shown = redact_url(&url);
    let mut request = client
        .request(method.clone(), url.clone())
        .headers(hints)
        .header(AUTHORIZATION, format!("Bearer {api_key}"))
        .header(ACCEPT, "application/json");
    if method == Method::PUT || method == Method::POST {
        // The bytes go to the store, not here.
        request = request.header(CONTENT_LENGTH, 0);
    }
    let response = send(request, &shown, true)
        .await
        .context("asking the gate for a key")?;
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow::anyhow!("the gate answered {status} without a Location"))?;
        let target = url
            .join(location)
            .with_context(|| format!("the gate's Location is not a URL ({status})"))?;
        // 301, 302 and 303 may turn a request into a GET: only 307 and 308 keep an upload.
        let keeps_method = matches!(
            status,
            StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
        );
        if !keeps_method && method != Method::GET {
            anyhow::bail!("the gate answered {status} to a {method}; only 307 or 308 can carry it");
        }
        return Ok(Target {
            url: target,
            method,
            token: None,
        });
    }
    if !status.is_success() {
        return Err(ServerError::from_response(response).await.into());
    }
    let body = read_capped(response, MAX_DELEGATION).await;
    let delegation: Delegation = serde_json::from_slice(&body)
        .context("the gate's answer is not a key description ({\"url\", \"method\", …})")?;
    let target = url
        .join(&delegation.url)
        .context("the gate's answer has no usable store URL")?;
    let method = match delegation.method.as_deref() {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .with_context(|| format!("the gate's answer has a bad method {m:?}"))?,
        None => method,
    };
    // A URL that carries its key already must not get a second one: the store refuses two.
    let token = delegation
        .token
        .filter(|_| !target.query_pairs().any(|(k, _)| k == "vk"));
    Ok(Target {
        url: target,
        method,
        token,
    })
}
