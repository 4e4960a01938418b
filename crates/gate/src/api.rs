//! The key API: `POST /v1/keys`, `GET` and `DELETE /v1/keys/ID`,
//! `POST /v1/keys/ID/complete`, `POST /v1/revocations`.

use std::sync::Arc;
use std::time::Duration;
use valet_http::edge::Internal;

use bytes::Bytes;
use http::{header, request::Parts, Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::json;
use valet_http::edge;
use valet_key::{Denial, KeyId, Ops, Scope, Token, UnixTime};
use valet_ledger::{IssuedKey, KeyUse, Revocation};

use crate::auth::Principal;
use crate::body::GateBody;
use crate::config::units;
use crate::error::GateError;
use crate::issue::{mint, rfc3339, Handover};
use crate::policy::{KeyRequest, RequestedLimits};
use crate::state::Gate;

/// The largest JSON request body the API reads.
const MAX_JSON_BODY: usize = 64 * 1024;

/// `POST /v1/keys`. Optional fields are absent or of their type: `null` is refused (see
/// [`present`]), as are unknown fields (the schema has `additionalProperties: false`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRequestBody {
    resource: String,
    ops: OneOrMany,
    #[serde(default, deserialize_with = "present_duration")]
    ttl: Option<Duration>,
    #[serde(default, deserialize_with = "present_size")]
    max_bytes: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    max_uses: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    content_type: Option<String>,
    #[serde(default, deserialize_with = "present")]
    ip: Option<OneOrMany>,
    #[serde(default, deserialize_with = "present")]
    filename: Option<String>,
}

/// `["read", "write"]` or `"read,write"`.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected a string or an array of strings")]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => s.split(',').map(str::trim).collect(),
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `POST /v1/revocations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationBody {
    #[serde(default, deserialize_with = "present")]
    subject: Option<String>,
    before: String,
}

/// An optional field that, when present, holds a `T`: absent is `None` (with
/// `#[serde(default)]`), and `null` is refused like any other value that is not a `T`. Plain
/// `Option` would read `null` as absent, and `{"subject": null, "before": "now"}` would
/// revoke every key instead of being refused.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// [`present`] for a duration (`90s`, `10m` or a number of seconds).
fn present_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    units::duration::deserialize(d).map(Some)
}

/// [`present`] for a size (`10MiB` or a number of bytes).
fn present_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    units::size::deserialize(d).map(Some)
}

/// Routes a `/v1/...` request.
pub(crate) async fn handle(
    gate: &Arc<Gate>,
    parts: &Parts,
    body: Incoming,
    principal_slot: &mut Option<Arc<Principal>>,
) -> Result<Response<GateBody>, GateError> {
    let path = parts.uri.path();
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    match (&parts.method, segments.as_slice()) {
        (&Method::POST, ["keys"]) => {
            let principal = authenticate(gate, parts, principal_slot)?;
            gate.check_rate(&principal)?;
            let request: KeyRequestBody = read_json(body).await?;
            issue(gate, &principal, request).await
        }
        (&Method::GET, ["keys", id]) => {
            let principal = authenticate(gate, parts, principal_slot)?;
            match visible_key(gate, &principal, id).await? {
                Known::Recorded(record) => status(gate, record).await,
                Known::Unrecorded(key_id) => unrecorded_status(gate, key_id).await,
            }
        }
        (&Method::DELETE, ["keys", id]) => {
            let principal = authenticate(gate, parts, principal_slot)?;
            gate.check_revocation_rate(&principal.name)?;
            let key = visible_key(gate, &principal, id).await?;
            revoke_key(gate, key).await
        }
        (&Method::POST, ["keys", id, "complete"]) => {
            complete(gate, parts, id, principal_slot).await
        }
        (&Method::POST, ["revocations"]) => {
            let principal = authenticate(gate, parts, principal_slot)?;
            gate.check_revocation_rate(&principal.name)?;
            let request: RevocationBody = read_json(body).await?;
            revoke_many(gate, &principal, request).await
        }
        (_, ["keys"] | ["keys", _, "complete"] | ["revocations"]) => {
            Err(GateError::MethodNotAllowed("POST".into()))
        }
        (_, ["keys", _]) => Err(GateError::MethodNotAllowed("GET, DELETE".into())),
        _ => Err(GateError::NotFound(format!("no API endpoint {path}"))),
    }
}

fn authenticate(
    gate: &Gate,
    parts: &Parts,
    slot: &mut Option<Arc<Principal>>,
) -> Result<Arc<Principal>, GateError> {
    let principal = gate.auth.authenticate(&parts.headers)?;
    *slot = Some(principal.clone());
    Ok(principal)
}

async fn read_json<T: DeserializeOwned>(body: Incoming) -> Result<T, GateError> {
    let bytes: Bytes = Limited::new(body, MAX_JSON_BODY)
        .collect()
        .await
        .map_err(|e| GateError::BadRequest(format!("cannot read the body: {e}")))?
        .to_bytes();
    // The path names the field at fault: `ttl: 'soon' is not a duration`.
    let mut json = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = e.path().to_string();
        let why = e.into_inner();
        match field.as_str() {
            "." => GateError::BadRequest(format!("bad JSON body: {why}")),
            _ => GateError::BadRequest(format!("bad JSON body: {field}: {why}")),
        }
    })
}

async fn issue(
    gate: &Arc<Gate>,
    principal: &Principal,
    body: KeyRequestBody,
) -> Result<Response<GateBody>, GateError> {
    let scope: Scope = body
        .resource
        .parse()
        .map_err(|e| GateError::BadRequest(format!("resource '{}': {e}", body.resource)))?;
    let ops: Ops = body
        .ops
        .items()
        .join(",")
        .parse()
        .map_err(|e| GateError::BadRequest(format!("ops: {e}")))?;
    // Before the policy: a key that could do nothing it says is a bad request whoever asks.
    scope
        .check_ops(ops)
        .map_err(|e| GateError::BadRequest(format!("ops: {e}")))?;
    let ips = body.ip.as_ref().map(OneOrMany::items).unwrap_or_default();
    let limits = RequestedLimits {
        max_bytes: body.max_bytes,
        max_uses: body.max_uses,
        content_type: body.content_type.as_deref(),
        ips,
        filename: body.filename.as_deref(),
    }
    .parse()?;
    let request = KeyRequest {
        scope,
        ops,
        ttl: match body.ttl {
            Some(ttl) if ttl.is_zero() => {
                return Err(GateError::BadRequest("ttl: must be positive".into()))
            }
            ttl => ttl,
        },
        limits,
    };
    let approved = gate.policies.approve(principal, &request)?;
    let minted = mint(gate, principal, approved, Handover::Shown("api")).await?;
    Ok(edge::json(StatusCode::CREATED, &minted))
}

/// What the gate knows of a key a principal may see.
enum Known {
    /// The record the gate made when it issued the key.
    Recorded(IssuedKey),
    /// No record: a key handed out in a delegate route's redirect, issued offline or by
    /// another gate, never issued, or whose record was forgotten after it expired. Only the
    /// ledger's own facts about the id (uses, revocation by id) are known.
    Unrecorded(KeyId),
}

/// Key `id`, if the principal obtained it or may revoke others' keys: a principal with
/// `may_revoke` may see and revoke any id, recorded or not. For anyone else a key that is not
/// theirs, or not recorded, is not found: its existence is not theirs to learn, and the ids
/// of keys they do not hold are no oracle.
async fn visible_key(
    gate: &Arc<Gate>,
    principal: &Principal,
    id: &str,
) -> Result<Known, GateError> {
    let not_found = || GateError::NotFound(format!("no key {id}"));
    let key_id = KeyId::parse_hex(id).ok_or_else(not_found)?;
    let record = ledger_call(gate, move |l| l.issued(key_id)).await?;
    let may_revoke = gate.policies.may_revoke(principal);
    match record {
        Some(record) if may_revoke || record.issued_by == principal.name => {
            Ok(Known::Recorded(record))
        }
        None if may_revoke => Ok(Known::Unrecorded(key_id)),
        _ => Err(not_found()),
    }
}

async fn ledger_call<T: Send + 'static>(
    gate: &Arc<Gate>,
    f: impl FnOnce(&dyn valet_ledger::Ledger) -> Result<T, valet_ledger::LedgerError> + Send + 'static,
) -> Result<T, GateError> {
    let ledger = gate.ledger.clone();
    tokio::task::spawn_blocking(move || f(ledger.as_ref()))
        .await
        .map_err(|e| GateError::Internal(Internal::caused("the ledger task failed", e)))?
        .map_err(GateError::from)
}

async fn status(gate: &Arc<Gate>, record: IssuedKey) -> Result<Response<GateBody>, GateError> {
    let key_id = record.key_id;
    let probe = record.clone();
    let (state, revocation) = ledger_call(gate, move |l| {
        Ok((l.status(key_id)?, l.revocation(&probe.key_use())?))
    })
    .await?;
    let now = valet_keyring::now();
    let revoked_by = revocation.map(|r| match r {
        Revocation::Key => "key",
        Revocation::Subject { .. } => "subject",
        Revocation::All { .. } => "all",
    });
    let body = json!({
        "id": key_id.to_string(),
        "recorded": true,
        "issued_to": record.subject,
        "issued_by": record.issued_by,
        "resource": record.resource,
        "ops": record.ops.split(',').collect::<Vec<_>>(),
        "issued_at": rfc3339(record.issued_at),
        "expires_at": rfc3339(record.expires),
        "expired": now >= record.expires,
        "max_uses": record.max_uses,
        "uses": state.uses,
        "uses_left": record.max_uses.map(|m| m.saturating_sub(state.uses)),
        "revoked": revoked_by.is_some(),
        "revoked_by": revoked_by,
    });
    Ok(edge::json(StatusCode::OK, &body))
}

/// What is known of a key the gate has no record of: its counted uses, and whether its id was
/// revoked (a revocation by subject or time needs the key's claims to decide).
async fn unrecorded_status(
    gate: &Arc<Gate>,
    key_id: KeyId,
) -> Result<Response<GateBody>, GateError> {
    let state = ledger_call(gate, move |l| l.status(key_id)).await?;
    let body = json!({
        "id": key_id.to_string(),
        "recorded": false,
        "uses": state.uses,
        "revoked": state.revoked,
        "revoked_by": state.revoked.then_some("key"),
    });
    Ok(edge::json(StatusCode::OK, &body))
}

/// Revokes a key by id. A revocation by id needs no record: the ledger refuses the id however
/// the key was handed out. It is kept until the key's recorded expiry, or for a key without a
/// record, for the longest lifetime a key from this gate can have (it was issued no later
/// than now, so it expires before then).
async fn revoke_key(gate: &Arc<Gate>, key: Known) -> Result<Response<GateBody>, GateError> {
    let now = valet_keyring::now();
    let (key_id, expires) = match key {
        Known::Recorded(record) => (record.key_id, record.expires),
        Known::Unrecorded(key_id) => (key_id, now.plus(gate.policies.longest_ttl().as_secs())),
    };
    ledger_call(gate, move |l| l.revoke_key(key_id, Some(expires), now)).await?;
    tracing::info!(target: "valet::revoke", key_id = %key_id, "key revoked");
    Ok(no_content())
}

/// The client reports its transfer done: the key stops working. Allowed to the principal that
/// obtained it (or one that may revoke), and to whoever presents the key itself.
async fn complete(
    gate: &Arc<Gate>,
    parts: &Parts,
    id: &str,
    principal_slot: &mut Option<Arc<Principal>>,
) -> Result<Response<GateBody>, GateError> {
    if let Some(text) = valet_token(parts) {
        let token = current_key(gate, text, id).await?;
        // The holder is no principal: the write counts against the key's subject, the
        // principal that obtained it (a key without one, issued offline, against `""`, which
        // no principal is named). Only a genuine, current key gets this far.
        let subject = token.claims().subject.clone().unwrap_or_default();
        gate.check_revocation_rate(&subject)?;
        let (key_id, expires) = (token.claims().key_id, token.claims().expires);
        ledger_call(gate, move |l| {
            l.revoke_key(key_id, Some(expires), valet_keyring::now())
        })
        .await?;
        tracing::info!(target: "valet::revoke", key_id = %key_id, "transfer complete: key invalidated");
        return Ok(no_content());
    }
    let principal = authenticate(gate, parts, principal_slot)?;
    gate.check_revocation_rate(&principal.name)?;
    let key = visible_key(gate, &principal, id).await?;
    revoke_key(gate, key).await
}

/// The valet key presented to `complete`, if it is a credential that works now: genuine, key
/// `id`, inside its own window and every caveat's (with the skew), and not revoked. Completing
/// revokes the key id, so the root key and every narrowing of it: a copy that has expired,
/// has not begun, or was cut off must not be able to end the copies that still work.
async fn current_key(gate: &Arc<Gate>, text: &str, id: &str) -> Result<Token, GateError> {
    let token: Token = text
        .parse()
        .map_err(|_| GateError::Unauthenticated("the valet key is malformed".into()))?;
    gate.verifier()
        .check_current(&token, valet_keyring::now())
        .map_err(|denial| match denial {
            Denial::Expired => GateError::KeyExpired,
            Denial::NotYetValid => GateError::KeyNotYetValid,
            _ => GateError::Unauthenticated("the valet key does not verify".into()),
        })?;
    if token.claims().key_id.to_string() != id.to_ascii_lowercase() {
        return Err(GateError::Forbidden(format!(
            "the valet key presented is not key {id}"
        )));
    }
    let claims = token.claims();
    let (key_id, subject, issued_at, expires, max_uses) = (
        claims.key_id,
        claims.subject.clone(),
        claims.not_before,
        claims.expires,
        claims.limits.max_uses,
    );
    let revocation = ledger_call(gate, move |l| {
        l.revocation(&KeyUse {
            key_id,
            subject: subject.as_deref(),
            issued_at,
            key_expires: expires,
            max_uses,
        })
    })
    .await?;
    match revocation {
        Some(_) => Err(GateError::KeyRevoked),
        None => Ok(token),
    }
}

fn valet_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("valet").then(|| token.trim())
}

async fn revoke_many(
    gate: &Arc<Gate>,
    principal: &Principal,
    body: RevocationBody,
) -> Result<Response<GateBody>, GateError> {
    let own = body.subject.as_deref() == Some(principal.name.as_str());
    if !own && !gate.policies.may_revoke(principal) {
        return Err(GateError::Forbidden(format!(
            "principal '{}' may only revoke its own keys (no role with may_revoke)",
            principal.name
        )));
    }
    let now = valet_keyring::now();
    let before = parse_time(&body.before, now)?;
    match body.subject {
        Some(subject) => {
            ledger_call(gate, move |l| l.revoke_subject(&subject, before, now)).await?;
        }
        None => ledger_call(gate, move |l| l.revoke_all_before(before, now)).await?,
    }
    until_reached(before).await;
    Ok(no_content())
}

/// Returns once the clock has reached `before` (at most a second away). Key times are whole
/// seconds, so `now` must cover the current second (keys issued earlier in it are revoked
/// too); but a key minted later in that second gets the same not-before and would be born
/// revoked. Answering only once that second is over makes the cut exact from the client's
/// side: every key issued before the call is revoked, and every key issued after the answer
/// (by any gate on this clock) works.
async fn until_reached(before: UnixTime) {
    let target = std::time::UNIX_EPOCH + Duration::from_secs(before.0);
    while let Ok(left) = target.duration_since(std::time::SystemTime::now()) {
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(left).await;
    }
}

/// `now` or an RFC 3339 time.
fn parse_time(text: &str, now: UnixTime) -> Result<UnixTime, GateError> {
    if text.eq_ignore_ascii_case("now") {
        // Keys issued in the current second are revoked too; the answer waits for its end
        // (`until_reached`).
        return Ok(now.plus(1));
    }
    let at = humantime::parse_rfc3339_weak(text).map_err(|e| {
        GateError::BadRequest(format!(
            "before: '{text}' is not `now` or an RFC 3339 time: {e}"
        ))
    })?;
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| GateError::BadRequest("before: the time is before 1970".into()))?
        .as_secs();
    // A time in the future would also revoke keys not issued yet, with no way back.
    if secs > now.0 + 1 {
        return Err(GateError::BadRequest(format!(
            "before: {text} is in the future; revocations apply to keys already issued"
        )));
    }
    Ok(UnixTime(secs))
}

fn no_content() -> Response<GateBody> {
    let mut response = Response::new(GateBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
