//! Minting a key the policy approved: sign it, record it in the ledger, and build the store
//! URL that carries it.

use std::sync::Arc;
use valet_http::edge::Internal;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use valet_key::{BlobTarget, Claims, KeyId, Op, Ops, Scope, UnixTime};
use valet_ledger::IssuedKey;

use crate::auth::Principal;
use crate::error::GateError;
use crate::policy::Approved;
use crate::state::Gate;

/// Bytes of a path segment left as they are in a URL: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A freshly issued key, as `POST /v1/keys` returns it.
#[derive(Debug, Serialize)]
pub struct Minted {
    /// The key id (hex), for status and revocation.
    pub id: String,
    /// The token.
    pub token: String,
    /// The store URL with the token in it, when the resource is on the store's HTTP surface.
    pub url: Option<String>,
    /// The HTTP method the URL is for.
    pub method: Option<&'static str>,
    /// When the key expires (RFC 3339).
    pub expires_at: String,
}

/// How a minted key leaves the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handover {
    /// As JSON, id included: the key is recorded (durably, before it is returned) so that its
    /// status, revocation by id and `complete` work from the first moment.
    Shown(&'static str),
    /// Only inside the URL of a redirect, for one transfer within a minute: its id is never
    /// shown, so nothing could look it up, and it is not recorded (a delegated request then
    /// costs no disk write). Revocation by subject or time still reaches it.
    Redirect,
}

/// Signs the approved key for `principal`, recording it unless it is handed over in a
/// redirect.
pub(crate) async fn mint(
    gate: &Arc<Gate>,
    principal: &Principal,
    approved: Approved,
    handover: Handover,
) -> Result<Minted, GateError> {
    let via = match handover {
        Handover::Shown(via) => via,
        Handover::Redirect => "redirect",
    };
    let now = valet_keyring::now();
    let claims = Claims {
        key_id: KeyId::random(&mut rand_core::OsRng),
        subject: Some(principal.name.clone()),
        scope: approved.scope,
        ops: approved.ops,
        not_before: now,
        expires: now.plus(approved.ttl.as_secs().max(1)),
        limits: approved.limits,
    };
    let record = IssuedKey {
        key_id: claims.key_id,
        subject: claims.subject.clone(),
        issued_by: principal.name.clone(),
        resource: claims.scope.to_string(),
        ops: claims.ops.to_string(),
        issued_at: claims.not_before,
        expires: claims.expires,
        max_uses: claims.limits.max_uses,
    };
    let url = store_url(&gate.store_url, &claims.scope, claims.ops);
    let method = primary_method(&claims.scope, claims.ops);
    let (key_id, expires) = (claims.key_id, claims.expires);
    let token = gate
        .verifier()
        .keyring()
        .issue(claims)
        .map_err(|e| GateError::Internal(Internal::caused("cannot sign the key", e)))?
        .to_text();
    if let Handover::Shown(_) = handover {
        let ledger = gate.ledger.clone();
        tokio::task::spawn_blocking(move || ledger.record_issued(&record))
            .await
            .map_err(|e| GateError::Internal(Internal::caused("the ledger task failed", e)))??;
    }
    gate.metrics.issued(via);
    tracing::info!(target: "valet::issue", key_id = %key_id, principal = %principal.name, via, "key issued");
    Ok(Minted {
        id: key_id.to_string(),
        url: url.map(|u| format!("{u}{}vk={token}", if u.contains('?') { '&' } else { '?' })),
        token,
        method,
        expires_at: rfc3339(expires),
    })
}

/// Seconds since the epoch as RFC 3339, in UTC.
pub(crate) fn rfc3339(time: UnixTime) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(time.0);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The store URL of a scope, without the key: the blob itself, or for a prefix or container
/// the listing of it (when the key lists) or its base.
fn store_url(base: &str, scope: &Scope, ops: Ops) -> Option<String> {
    let Scope::Blob { container, target } = scope else {
        return None;
    };
    let container = utf8_percent_encode(container.as_str(), SEGMENT);
    let encode_path = |path: &str| -> String {
        path.split('/')
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect::<Vec<_>>()
            .join("/")
    };
    Some(match target {
        BlobTarget::Blob(path) => format!("{base}/blob/{container}/{}", encode_path(path.as_str())),
        BlobTarget::Prefix(prefix) if ops.permits(Op::List) => {
            let prefix: String = form_encode(prefix.as_str());
            format!("{base}/blob/{container}?prefix={prefix}")
        }
        BlobTarget::Prefix(prefix) => {
            format!("{base}/blob/{container}/{}", encode_path(prefix.as_str()))
        }
        BlobTarget::Container => format!("{base}/blob/{container}"),
    })
}

fn form_encode(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// The method a holder would most likely use first.
fn primary_method(scope: &Scope, ops: Ops) -> Option<&'static str> {
    let Scope::Blob { target, .. } = scope else {
        return None;
    };
    let one_blob = matches!(target, BlobTarget::Blob(_));
    Some(if ops.permits(Op::Read) && one_blob {
        "GET"
    } else if ops.permits(Op::Create) && one_blob {
        "PUT"
    } else if ops.permits(Op::Delete) && one_blob {
        "DELETE"
    } else {
        "GET"
    })
}
