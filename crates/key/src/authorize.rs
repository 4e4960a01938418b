//! Authorization: one call that turns a token and a request into a grant or a denial.
//!
//! Checks run cheapest-to-forge last: the form (`key_malformed`), the tag chain under a
//! keyring key (`key_invalid`), then the window, scope, operation and address against the
//! claims *and every caveat*. The grant carries the limits the store must still enforce while
//! bytes flow (size, content type) and what the ledger needs (key id, use cap).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::caveat::Caveat;
use crate::claims::{Claims, FileName, KeyId, UnixTime};
use crate::error::FormatError;
use crate::keyring::Keyring;
use crate::media_range::{MediaRange, MediaType};
use crate::name::Name;
use crate::op::{Op, Ops};
use crate::scope::Scope;
use crate::token::{decode_segment_into, segment_buffer, Token, TokenText, MAX_CAVEATS};

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
    /// The key names a signing key this keyring does not hold: on a node whose keyring is not
    /// the gate's (or lacks a key the gate staged and promoted). The same code as
    /// [`Denial::Invalid`], with the hint an operator needs; the id is in the key's text anyway.
    #[error(
        "the key was signed with signing key '{0}', which this server's keyring does not hold \
         (every node needs a copy of the gate's keyring: docs/DEPLOYMENT.md)"
    )]
    UnknownSigningKey(String),
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
            Denial::Invalid | Denial::UnknownSigningKey(_) => "key_invalid",
            Denial::Expired => "key_expired",
            Denial::NotYetValid => "key_not_yet_valid",
            Denial::OutOfScope => "out_of_scope",
            Denial::OpNotAllowed => "op_not_allowed",
            Denial::IpNotAllowed => "ip_not_allowed",
        }
    }
}

/// [`Denial::UnknownSigningKey`] for an id that reads as one (ids are short, plain text),
/// else [`Denial::Invalid`]: nothing a forger chose goes into a message unchecked.
fn unknown_signing_key(id: &[u8]) -> Denial {
    let plain = !id.is_empty()
        && id.len() <= 64
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    match std::str::from_utf8(id) {
        Ok(id) if plain => Denial::UnknownSigningKey(id.to_owned()),
        _ => Denial::Invalid,
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
    /// The signed expiry of the key itself (its claims'), whatever caveat the request came
    /// with: what the ledger must remember the key's uses and revocation until (with the skew),
    /// since the root key and every other narrowing of it stay valid that long. Never
    /// [`valid_until`](Grant::valid_until), which a holder can shorten at will: a use counted
    /// under a caveat's one-second expiry and forgotten a minute later would make the key new
    /// again.
    pub key_expires: UnixTime,
    /// The earliest expiry of the claims and every caveat: when this token (as presented)
    /// stops being valid. For display and for the request only, never for what the ledger
    /// keeps.
    pub valid_until: UnixTime,
    /// The signed not-before of the key itself (its claims', never a caveat's), when it was
    /// issued; with the subject, what bulk revocation compares.
    pub issued_at: UnixTime,
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
    /// Whether an upload with this `Content-Type` (or none) is allowed: never one that is not
    /// a media type ([`MediaType::parse`]) when the key has a limit.
    pub fn permits_content_type(&self, content_type: Option<&str>) -> bool {
        match content_type {
            Some(ct) => self.content_types.iter().all(|range| range.matches(ct)),
            None => self.content_types.is_empty(),
        }
    }

    /// Whether an upload of this parsed media type (or none) is allowed.
    pub fn permits_media_type(&self, media_type: Option<&MediaType>) -> bool {
        match media_type {
            Some(t) => self.content_types.iter().all(|range| range.contains(t)),
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
    ///
    /// This is the store's hot path, so it does not build a [`Token`]: each segment is decoded
    /// into a stack buffer, MACed and folded into `Bounds` in turn, and the grant is built
    /// from the claims directly. The checks and their order are those of
    /// [`authorize_token`](Verifier::authorize_token): every segment is read before the tag is
    /// checked, so a malformed token is `key_malformed` whatever its tag.
    pub fn authorize(&self, token: &str, access: &Access<'_>) -> Result<Grant, Denial> {
        let text = TokenText::split(token).map_err(Denial::Malformed)?;
        let mut buf = segment_buffer();
        let mut segments = text.segments();
        let first = segments.next().expect("a token has a claims segment");
        let bytes = decode_segment_into(first, &mut buf).map_err(Denial::Malformed)?;
        let (claims, signing_key) =
            Claims::decode_expecting(bytes, Some(access.resource)).map_err(Denial::Malformed)?;
        let mut tag = self.keyring.root_tag(&bytes[signing_key.clone()], bytes);
        // The claims' bytes are overwritten by the next segment: name an unknown signing key
        // now, on the failure path only (a genuine key costs nothing here).
        let unknown = tag
            .is_none()
            .then(|| unknown_signing_key(&bytes[signing_key]));
        let mut bounds = Bounds::of_claims(&claims, access);
        for (i, segment) in segments.enumerate() {
            if i == MAX_CAVEATS {
                return Err(Denial::Malformed(FormatError::Segments));
            }
            let bytes = decode_segment_into(segment, &mut buf).map_err(Denial::Malformed)?;
            let caveat = Caveat::decode(bytes).map_err(Denial::Malformed)?;
            tag = tag.map(|tag| tag.chain(bytes));
            bounds.narrow(&caveat, access);
        }
        match tag {
            Some(tag) if tag == text.tag => {}
            Some(_) => return Err(Denial::Invalid),
            None => return Err(unknown.expect("set when there is no tag")),
        }
        bounds.check(access, self.skew)?;
        Ok(bounds.into_grant(claims))
    }

    /// Checks that `token` is genuine and inside its validity window at `now` (the claims' and
    /// every caveat's, with the skew), whatever it grants: what a key presented as a credential
    /// rather than for an access must be. An expired narrowing of a key is expired, however
    /// long the key itself still lives.
    pub fn check_current(&self, token: &Token, now: UnixTime) -> Result<(), Denial> {
        self.check_signature(token)?;
        let (not_before, expires) = token.effective_window();
        if now >= expires.plus(self.skew) {
            return Err(Denial::Expired);
        }
        if now < not_before.minus(self.skew) {
            return Err(Denial::NotYetValid);
        }
        Ok(())
    }

    /// The token's tag checked with the keyring's copy of its signing key.
    fn check_signature(&self, token: &Token) -> Result<(), Denial> {
        if self.keyring.check_tag(token) {
            return Ok(());
        }
        // Why not, looked up only once it failed.
        Err(match self.keyring.find(token.signing_key()) {
            None => unknown_signing_key(token.signing_key().as_bytes()),
            Some(_) => Denial::Invalid,
        })
    }

    /// Authorizes `access` with an already parsed token.
    pub fn authorize_token(&self, token: &Token, access: &Access<'_>) -> Result<Grant, Denial> {
        self.check_signature(token)?;
        let mut bounds = Bounds::of_claims(token.claims(), access);
        for caveat in token.caveats() {
            bounds.narrow(caveat, access);
        }
        bounds.check(access, self.skew)?;
        Ok(bounds.into_grant(token.claims().clone()))
    }
}

/// The claims and the caveats read so far, folded into what a request must fall within and
/// what the grant carries. Folding as each segment is read means a verification never keeps
/// the caveats; whether the resource, the operation and the client pass is recorded rather
/// than reported at once, because denials come in a fixed order and only after the tag.
struct Bounds {
    /// The latest not-before.
    not_before: UnixTime,
    /// The earliest expiry.
    expires: UnixTime,
    /// The operations left.
    ops: Ops,
    /// Whether every scope so far covers the resource.
    in_scope: bool,
    /// Whether the client is in every non-empty address list so far.
    client_allowed: bool,
    /// The smallest upload cap.
    max_bytes: Option<u64>,
    /// The smallest use cap.
    max_uses: Option<u64>,
    /// The caveats' content-type ranges (the claims' own is added by [`Bounds::into_grant`]).
    content_types: Vec<MediaRange>,
}

impl Bounds {
    fn of_claims(claims: &Claims, access: &Access<'_>) -> Bounds {
        Bounds {
            not_before: claims.not_before,
            expires: claims.expires,
            ops: claims.ops.implied(),
            in_scope: claims.scope.covers(access.resource),
            client_allowed: client_allowed(&claims.limits.client_ips, access.client),
            max_bytes: claims.limits.max_bytes,
            max_uses: claims.limits.max_uses,
            content_types: Vec::new(),
        }
    }

    /// Intersects the bounds with one caveat's.
    fn narrow(&mut self, caveat: &Caveat, access: &Access<'_>) {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        if let Some(t) = caveat.not_before {
            self.not_before = self.not_before.max(t);
        }
        if let Some(t) = caveat.expires {
            self.expires = self.expires.min(t);
        }
        if let Some(ops) = caveat.ops {
            self.ops = self.ops.intersect(ops);
        }
        if let Some(scope) = &caveat.scope {
            self.in_scope &= scope.covers(access.resource);
        }
        self.client_allowed &= client_allowed(&caveat.client_ips, access.client);
        self.max_bytes = min(self.max_bytes, caveat.max_bytes);
        self.max_uses = min(self.max_uses, caveat.max_uses);
        self.content_types
            .extend(caveat.content_type.iter().cloned());
    }

    /// The denial for `access`, if any, in the documented order (after the tag's).
    fn check(&self, access: &Access<'_>, skew: u64) -> Result<(), Denial> {
        if access.now >= self.expires.plus(skew) {
            return Err(Denial::Expired);
        }
        if access.now < self.not_before.minus(skew) {
            return Err(Denial::NotYetValid);
        }
        if !self.in_scope {
            return Err(Denial::OutOfScope);
        }
        if !self.ops.permits(access.op) {
            return Err(Denial::OpNotAllowed);
        }
        if !self.client_allowed {
            return Err(Denial::IpNotAllowed);
        }
        Ok(())
    }

    /// The grant: the claims' own parts, moved rather than copied, and the folded limits.
    fn into_grant(self, claims: Claims) -> Grant {
        let Claims {
            key_id,
            subject,
            scope,
            not_before,
            expires,
            limits,
            ..
        } = claims;
        let mut content_types = self.content_types;
        if let Some(own) = limits.content_type {
            content_types.insert(0, own);
        }
        Grant {
            key_id,
            subject,
            scope,
            ops: self.ops,
            key_expires: expires,
            valid_until: self.expires,
            issued_at: not_before,
            max_bytes: self.max_bytes,
            max_uses: self.max_uses,
            content_types,
            filename: limits.filename,
            event_target: limits.event_target,
        }
    }
}

/// Whether `client` is in `list`; an empty list allows any client, known or not.
fn client_allowed(list: &[IpNet], client: Option<IpAddr>) -> bool {
    list.is_empty() || client.is_some_and(|ip| list.iter().any(|net| net.contains(&ip)))
}
