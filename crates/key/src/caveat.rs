//! Caveats: restrictions any holder of a key can add without the secret.
//!
//! A caveat is appended to a token and folded into its tag (`tag_i = HMAC(tag_{i-1}, caveat_i)`),
//! so it cannot be removed or reordered by a later holder. The verifier enforces the
//! intersection of the claims and every caveat, so even a caveat that tries to widen a key (a
//! longer expiry, more operations) has no effect but to be ignored in favour of the narrower
//! bound; [`Caveat::check_narrows`] refuses such caveats when a token is attenuated, so that a
//! user is told instead of handed a key that does less than they think.

use ipnet::IpNet;
use serde::Serialize;

use crate::claims::{
    decode_ips, decode_media_range, decode_ops, decode_scope, encode_ips, UnixTime,
};
use crate::error::{FormatError, OpScopeError};
use crate::media_range::MediaRange;
use crate::op::Ops;
use crate::scope::Scope;
use crate::token::Token;
use crate::wire::{field, uint_value, SegmentReader, SegmentWriter, CAVEAT_KIND};

/// One appended restriction set. Every present field narrows the key.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct Caveat {
    /// A narrower scope: requests must fall in it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// Fewer operations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops: Option<Ops>,
    /// A later start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<UnixTime>,
    /// An earlier expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<UnixTime>,
    /// A smaller upload cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// A smaller cap on the key's total uses (counted per key id, across every attenuation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
    /// A content type uploads must have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<MediaRange>,
    /// Client addresses allowed; empty means no restriction from this caveat.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client_ips: Vec<IpNet>,
}

/// Why an attenuation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttenuateError {
    /// The caveat has no restriction in it.
    #[error("the caveat restricts nothing")]
    Empty,
    /// The token already carries the most caveats allowed.
    #[error("the token already has {0} caveats, the most allowed")]
    TooManyCaveats(usize),
    /// The token would grow past the longest text a verifier accepts.
    #[error("the token would be longer than {0} characters")]
    TooLong(usize),
    /// The caveat would not narrow the key in the named respect.
    #[error("the caveat would widen the key's {0}")]
    Widens(&'static str),
    /// The caveat's scope is of another family than the key's (a queue for a blob key).
    #[error(
        "the caveat's scope is a {caveat} scope and the key's a {key} scope: a caveat narrows \
         within the key's kind of resource"
    )]
    OtherKind {
        /// The family of the key's scope.
        key: &'static str,
        /// The family of the caveat's scope.
        caveat: &'static str,
    },
    /// The caveat's operations do not all apply to the scope it leaves the key with.
    #[error(transparent)]
    OpsDoNotFit(#[from] OpScopeError),
    /// The caveat narrows the scope to a kind of resource that the key's operations do not all
    /// apply to (one blob, for a key that lists): the caveat must narrow the operations too.
    #[error(
        "the key's operation '{}' does not apply to {}, the caveat's scope: narrow the \
         operations in the same caveat", .0.op, .0.kind.describe()
    )]
    KeyOpsDoNotFit(OpScopeError),
    /// The caveat's not-before is at or after the key's expiry.
    #[error("the caveat would leave the key no time to be valid")]
    NoValidity,
}

impl Caveat {
    /// Whether the caveat restricts nothing.
    pub fn is_empty(&self) -> bool {
        *self == Caveat::default()
    }

    /// Checks that this caveat only narrows `token` as it stands (claims and earlier caveats).
    pub fn check_narrows(&self, token: &Token) -> Result<(), AttenuateError> {
        if self.is_empty() {
            return Err(AttenuateError::Empty);
        }
        let claims = token.claims();
        let caveats = token.caveats();
        if let Some(scope) = &self.scope {
            let (key, caveat) = (claims.scope.kind().family(), scope.kind().family());
            if key != caveat {
                return Err(AttenuateError::OtherKind { key, caveat });
            }
            let covered = claims.scope.covers(scope)
                && caveats
                    .iter()
                    .filter_map(|c| c.scope.as_ref())
                    .all(|s| s.covers(scope));
            if !covered {
                return Err(AttenuateError::Widens("scope"));
            }
        }
        if let Some(ops) = self.ops {
            if ops.is_empty() || !ops.within(token.effective_ops()) {
                return Err(AttenuateError::Widens("operations"));
            }
        }
        self.check_ops_fit(token)?;
        let (not_before, expires) = token.effective_window();
        if self.expires.is_some_and(|e| e > expires) {
            return Err(AttenuateError::Widens("expiry"));
        }
        let new_expires = self.expires.unwrap_or(expires);
        let new_not_before = self.not_before.unwrap_or(not_before).max(not_before);
        if new_not_before >= new_expires {
            return Err(AttenuateError::NoValidity);
        }
        let narrower = |new: Option<u64>, old: Option<u64>| match (new, old) {
            (Some(n), Some(o)) => n <= o,
            _ => true,
        };
        let effective = token.effective_limits();
        if !narrower(self.max_bytes, effective.max_bytes) {
            return Err(AttenuateError::Widens("max bytes"));
        }
        if !narrower(self.max_uses, effective.max_uses) {
            return Err(AttenuateError::Widens("max uses"));
        }
        if let Some(ct) = &self.content_type {
            if !effective.content_types.iter().all(|outer| ct.within(outer)) {
                return Err(AttenuateError::Widens("content type"));
            }
        }
        if !self.client_ips.is_empty() {
            let inside = |list: &[IpNet]| {
                list.is_empty()
                    || self
                        .client_ips
                        .iter()
                        .all(|n| list.iter().any(|o| o.contains(n)))
            };
            let all_lists = std::iter::once(&claims.limits.client_ips)
                .chain(caveats.iter().map(|c| &c.client_ips));
            if !all_lists.into_iter().all(|l| inside(l)) {
                return Err(AttenuateError::Widens("client addresses"));
            }
        }
        Ok(())
    }

    /// Checks that the operations the key is left with apply to the scope it is left with:
    /// the caveat's own operations to every scope of the chain (the narrowest decides), or,
    /// when the caveat narrows only the scope, the key's operations to that scope.
    fn check_ops_fit(&self, token: &Token) -> Result<(), AttenuateError> {
        let scopes = std::iter::once(&token.claims().scope)
            .chain(token.caveats().iter().filter_map(|c| c.scope.as_ref()))
            .chain(self.scope.as_ref());
        match (self.ops, &self.scope) {
            (Some(ops), _) => scopes
                .into_iter()
                .try_for_each(|scope| scope.check_ops(ops))
                .map_err(AttenuateError::OpsDoNotFit),
            (None, Some(scope)) => {
                let named: Ops = token.effective_ops().iter().collect();
                scope
                    .check_ops(named)
                    .map_err(AttenuateError::KeyOpsDoNotFit)
            }
            (None, None) => Ok(()),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = SegmentWriter::new(CAVEAT_KIND);
        if let Some(scope) = &self.scope {
            w.text(field::SCOPE, scope);
        }
        if let Some(ops) = self.ops {
            w.uint(field::OPS, u64::from(ops.bits()));
        }
        if let Some(t) = self.not_before {
            w.uint(field::NOT_BEFORE, t.0);
        }
        if let Some(t) = self.expires {
            w.uint(field::EXPIRES, t.0);
        }
        if let Some(n) = self.max_bytes {
            w.uint(field::MAX_BYTES, n);
        }
        if let Some(n) = self.max_uses {
            w.uint(field::MAX_USES, n);
        }
        if let Some(ct) = &self.content_type {
            w.bytes(field::CONTENT_TYPE, ct.as_str().as_bytes());
        }
        if !self.client_ips.is_empty() {
            w.bytes(field::CLIENT_IPS, &encode_ips(&self.client_ips));
        }
        w.finish()
    }

    pub(crate) fn decode(segment: &[u8]) -> Result<Caveat, FormatError> {
        let mut r = SegmentReader::new(segment, CAVEAT_KIND)?;
        let mut c = Caveat::default();
        while let Some((f, v)) = r.next_field()? {
            match f {
                field::SCOPE => c.scope = Some(decode_scope(v)?),
                field::OPS => c.ops = Some(decode_ops(v)?),
                field::NOT_BEFORE => c.not_before = Some(UnixTime(uint_value(v)?)),
                field::EXPIRES => c.expires = Some(UnixTime(uint_value(v)?)),
                field::MAX_BYTES => c.max_bytes = Some(uint_value(v)?),
                field::MAX_USES => c.max_uses = Some(uint_value(v)?),
                field::CONTENT_TYPE => c.content_type = Some(decode_media_range(v)?),
                field::CLIENT_IPS => c.client_ips = decode_ips(v)?,
                other => return Err(FormatError::Field(other)),
            }
        }
        if c.is_empty() {
            return Err(FormatError::EmptyCaveat);
        }
        Ok(c)
    }
}
