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
use crate::error::FormatError;
use crate::media_range::MediaRange;
use crate::op::Ops;
use crate::scope::OpScopeError;
use crate::scope::Scope;
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
