//! Authorization: one call that turns a token and a request into a grant or a denial.
//!
//! Checks run cheapest-to-forge last: the form (`key_malformed`), the tag chain under a
//! keyring key (`key_invalid`), then the window, scope, operation and address against the
//! claims *and every caveat*. The grant carries the limits the store must still enforce while
//! bytes flow (size, content type) and what the ledger needs (key id, use cap).

use std::net::IpAddr;

use serde::Serialize;

use crate::claims::{Claims, FileName, KeyId, UnixTime};
use crate::error::FormatError;
use crate::keyring::Keyring;
use crate::media_range::MediaRange;
use crate::name::Name;
use crate::op::{Op, Ops};
use crate::scope::Scope;
use crate::token::{EffectiveLimits, Token};

/// The default tolerance for clocks that disagree, in seconds.
pub const DEFAULT_SKEW_SECONDS: u64 = 30;

/// What a request asks to do.
#[derive(Clone, Copy, Debug)]
pub struct Access<'a> {
    /// The operation.
    pub op: Op,
    /// The resource, in the scope grammar (`blob:photos/2024/cat.jpg`).
    pub resource: &'a Scope,
    /// The verifier's current time.
    pub now: UnixTime,
    /// The client's address, when known. A key limited to addresses denies when it is unknown.
    pub client: Option<IpAddr>,
}

/// Why a request was refused. Each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The token's text or bytes are not a token.
    #[error("the key is malformed: {0}")]
    Malformed(FormatError),
    /// The tag is wrong or the signing key is unknown or retired.
    #[error("the key's signature is not valid")]
    Invalid,
    /// The key, or a caveat, has expired.
    #[error("the key has expired")]
    Expired,
    /// The key, or a caveat, is not valid yet.
    #[error("the key is not valid yet")]
    NotYetValid,
    /// The resource is outside the key's scope or a caveat's.
    #[error("the resource is outside the key's scope")]
    OutOfScope,
    /// The operation is not among the key's, or a caveat removed it.
    #[error("the key does not allow this operation")]
    OpNotAllowed,
    /// The client's address is not in the key's list, or a caveat's.
    #[error("the key does not allow this client address")]
    IpNotAllowed,
}

impl Denial {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::Malformed(_) => "key_malformed",
            Denial::Invalid => "key_invalid",
            Denial::Expired => "key_expired",
            Denial::NotYetValid => "key_not_yet_valid",
            Denial::OutOfScope => "out_of_scope",
            Denial::OpNotAllowed => "op_not_allowed",
            Denial::IpNotAllowed => "ip_not_allowed",
        }
    }
}

/// What an authorized request may do, with the limits still to enforce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// The key's id, for the ledger (uses, revocation) and audit.
    pub key_id: KeyId,
    /// Who the key was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The signed scope (caveats may narrow it further; the request was inside all of them).
    pub scope: Scope,
    /// The operations left after every caveat.
    pub ops: Ops,
    /// The earliest expiry of the claims and caveats.
    pub expires: UnixTime,
    /// When the key was issued valid from; with the subject, what bulk revocation compares.
    pub not_before: UnixTime,
    /// The largest upload to accept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// How many uses the key id may have in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
    /// Every range an upload's content type must fall in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub content_types: Vec<MediaRange>,
    /// The download file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<FileName>,
    /// Where to send events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_target: Option<Name>,
}

impl Grant {
    /// Whether an upload with this `Content-Type` (or none) is allowed.
    pub fn permits_content_type(&self, content_type: Option<&str>) -> bool {
        match content_type {
            Some(ct) => self.content_types.iter().all(|range| range.matches(ct)),
            None => self.content_types.is_empty(),
        }
    }
}

/// Checks tokens against a keyring.
#[derive(Debug, Clone)]
pub struct Verifier {
    keyring: Keyring,
    skew: u64,
}

impl Verifier {
    /// A verifier with the default clock-skew tolerance.
    pub fn new(keyring: Keyring) -> Verifier {
        Verifier {
            keyring,
            skew: DEFAULT_SKEW_SECONDS,
        }
    }

    /// Sets how many seconds a key is honoured before its not-before and after its expiry,
    /// for clocks that disagree.
    pub fn with_skew(mut self, seconds: u64) -> Verifier {
        self.skew = seconds;
        self
    }

    /// The keyring in use.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Parses `token` and authorizes `access` with it.
    pub fn authorize(&self, token: &str, access: &Access<'_>) -> Result<Grant, Denial> {
        let token: Token = match token.parse() {
            Ok(token) => token,
            Err(e) => return Err(Denial::Malformed(e)),
        };
        let checked = self.check(&token, access)?;
        // The token is ours: the grant takes its strings rather than copies of them.
        Ok(checked.into_grant(token.into_claims()))
    }

    /// Authorizes `access` with an already parsed token.
    pub fn authorize_token(&self, token: &Token, access: &Access<'_>) -> Result<Grant, Denial> {
        let checked = self.check(token, access)?;
        Ok(checked.into_grant(token.claims().clone()))
    }

    /// Every check, in order; what they found that the grant needs.
    fn check(&self, token: &Token, access: &Access<'_>) -> Result<Checked, Denial> {
        if !self.keyring.check_tag(token) {
            return Err(Denial::Invalid);
        }
        let (not_before, expires) = token.effective_window();
        if access.now >= expires.plus(self.skew) {
            return Err(Denial::Expired);
        }
        if access.now < not_before.minus(self.skew) {
            return Err(Denial::NotYetValid);
        }
        let claims = token.claims();
        let caveats = token.caveats();
        let in_scope = claims.scope.covers(access.resource)
            && caveats
                .iter()
                .filter_map(|c| c.scope.as_ref())
                .all(|s| s.covers(access.resource));
        if !in_scope {
            return Err(Denial::OutOfScope);
        }
        let ops = token.effective_ops();
        if !ops.permits(access.op) {
            return Err(Denial::OpNotAllowed);
        }
        let address_lists = std::iter::once(claims.limits.client_ips.as_slice())
            .chain(caveats.iter().map(|c| c.client_ips.as_slice()));
        for list in address_lists.filter(|l| !l.is_empty()) {
            let allowed = access
                .client
                .is_some_and(|ip| list.iter().any(|net| net.contains(&ip)));
            if !allowed {
                return Err(Denial::IpNotAllowed);
            }
        }
        Ok(Checked {
            ops,
            expires,
            limits: token.effective_limits(),
        })
    }
}

/// What the checks established, waiting for the claims' owned parts.
struct Checked {
    ops: Ops,
    expires: UnixTime,
    limits: EffectiveLimits,
}

impl Checked {
    fn into_grant(self, claims: Claims) -> Grant {
        let Claims {
            key_id,
            subject,
            scope,
            not_before,
            limits,
            ..
        } = claims;
        Grant {
            key_id,
            subject,
            scope,
            ops: self.ops,
            expires: self.expires,
            not_before,
            max_bytes: self.limits.max_bytes,
            max_uses: self.limits.max_uses,
            content_types: self.limits.content_types,
            filename: limits.filename,
            event_target: limits.event_target,
        }
    }
}
