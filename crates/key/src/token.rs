//! The token: signed claims, appended caveats, and the chained tag, in a compact text form.
//!
//! ```text
//! vk1.<claims>[.<caveat>]*.<tag>
//! ```
//!
//! Each part is unpadded base64url, so the whole token travels unescaped in a query string or
//! an `Authorization: Valet …` header. The parts are the bytes the tag chain covers, kept as
//! received so that verification MACs exactly what was sent. See `docs/KEY-FORMAT.md`.

use std::fmt;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::str::FromStr;

use base64_simd::URL_SAFE_NO_PAD;
use ipnet::IpNet;

use crate::caveat::{AttenuateError, Caveat};
use crate::claims::{Claims, UnixTime};
use crate::error::FormatError;
use crate::mac::Tag;
use crate::media_range::MediaRange;
use crate::op::Ops;
use crate::wire::{field, field_range, CLAIMS_KIND};

/// The text form's version prefix.
pub const TOKEN_PREFIX: &str = "vk1.";
/// The longest token text accepted.
pub const MAX_TOKEN_LEN: usize = 4096;
/// The most caveats one token may carry.
pub const MAX_CAVEATS: usize = 16;

/// A parsed token. Parsing checks the form only; [`Keyring::check_tag`](crate::Keyring::check_tag)
/// and the [`Verifier`](crate::Verifier) decide whether it is genuine and what it grants.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// Where the signing key's id is in `raw` (inside the claims segment).
    signing_key: Range<usize>,
    claims: Claims,
    caveats: Vec<Caveat>,
    /// The claims segment, then one per caveat, back to back: the bytes the tag chain covers.
    /// One buffer rather than one per segment, because parsing is on the store's hot path.
    raw: Vec<u8>,
    /// Where each segment ends in `raw`, inline: a token has at most 17 segments of at most
    /// 4 KiB in all, and one allocation fewer per parse counts on the store's hot path.
    ends: SegmentEnds,
    tag: Tag,
}

/// The upload limits that hold after every caveat: the smallest caps, and every content-type
/// range an upload must fall in.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct EffectiveLimits {
    /// The smallest upload cap of the claims and caveats.
    pub max_bytes: Option<u64>,
    /// The smallest use cap of the claims and caveats.
    pub max_uses: Option<u64>,
    /// Every content-type range an upload must fall in.
    pub content_types: Vec<MediaRange>,
}

impl Token {
    pub(crate) fn signed(claims: Claims, bytes: Vec<u8>, tag: Tag) -> Token {
        let mut ends = SegmentEnds::default();
        ends.push(bytes.len());
        let signing_key = field_range(&bytes, CLAIMS_KIND, field::SIGNING_KEY)
            .expect("encoded claims name their signing key");
        Token {
            signing_key,
            claims,
            caveats: Vec::new(),
            raw: bytes,
            ends,
            tag,
        }
    }

    /// The id of the signing key that started the tag chain.
    pub fn signing_key(&self) -> &str {
        std::str::from_utf8(&self.raw[self.signing_key.clone()]).expect("checked when decoded")
    }

    /// What the issuer signed.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// What holders appended, in order.
    pub fn caveats(&self) -> &[Caveat] {
        &self.caveats
    }

    pub(crate) fn segments(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter());
        starts
            .zip(self.ends.iter())
            .map(|(start, end)| &self.raw[start..end])
    }

    pub(crate) fn tag(&self) -> &Tag {
        &self.tag
    }

    /// A narrower token: this one with `caveat` appended, after checking that the caveat
    /// really narrows it (see [`Caveat::check_narrows`]).
    pub fn attenuate(&self, caveat: Caveat) -> Result<Token, AttenuateError> {
        caveat.check_narrows(self)?;
        self.append(caveat)
    }

    /// Appends `caveat` without checking that it narrows. Still safe: verification enforces
    /// the intersection of every caveat, so a widening caveat is simply outvoted. Meant for
    /// tests that prove exactly that.
    pub fn append(&self, caveat: Caveat) -> Result<Token, AttenuateError> {
        if caveat.is_empty() {
            return Err(AttenuateError::Empty);
        }
        if self.caveats.len() >= MAX_CAVEATS {
            return Err(AttenuateError::TooManyCaveats(MAX_CAVEATS));
        }
        let bytes = caveat.encode();
        let mut token = self.clone();
        token.tag = self.tag.chain(&bytes);
        token.raw.extend_from_slice(&bytes);
        token.ends.push(token.raw.len());
        token.caveats.push(caveat);
        if token.to_text().len() > MAX_TOKEN_LEN {
            return Err(AttenuateError::TooLong(MAX_TOKEN_LEN));
        }
        Ok(token)
    }

    /// The operations left after every caveat.
    pub fn effective_ops(&self) -> Ops {
        self.caveats
            .iter()
            .filter_map(|c| c.ops)
            .fold(self.claims.ops.implied(), Ops::intersect)
    }

    /// The latest not-before and the earliest expiry of the claims and caveats.
    pub fn effective_window(&self) -> (UnixTime, UnixTime) {
        self.caveats.iter().fold(
            (self.claims.not_before, self.claims.expires),
            |(nbf, exp), c| {
                (
                    c.not_before.map_or(nbf, |t| t.max(nbf)),
                    c.expires.map_or(exp, |t| t.min(exp)),
                )
            },
        )
    }

    /// The upload limits left after every caveat.
    pub fn effective_limits(&self) -> EffectiveLimits {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        let limits = &self.claims.limits;
        let mut effective = EffectiveLimits {
            max_bytes: limits.max_bytes,
            max_uses: limits.max_uses,
            content_types: limits.content_type.iter().cloned().collect(),
        };
        for c in &self.caveats {
            effective.max_bytes = min(effective.max_bytes, c.max_bytes);
            effective.max_uses = min(effective.max_uses, c.max_uses);
            effective
                .content_types
                .extend(c.content_type.iter().cloned());
        }
        effective
    }
}

/// Segment end offsets, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct SegmentEnds {
    ends: [u16; MAX_CAVEATS + 1],
    len: u8,
}

impl SegmentEnds {
    fn push(&mut self, end: usize) {
        self.ends[usize::from(self.len)] = u16::try_from(end).expect("tokens are under 4 KiB");
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.ends[..usize::from(self.len)]
            .iter()
            .map(|&e| usize::from(e))
    }
}

/// The characters of a 32-byte tag in unpadded base64.
const TAG_TEXT_LEN: usize = 43;

/// The token's text before its last `.`, and the tag after it. A well-formed tag is the last
/// 43 characters, so that case needs no search backwards through the whole token.
fn split_tag(body: &str) -> Option<(&str, &str)> {
    let bytes = body.as_bytes();
    if let Some(dot) = bytes.len().checked_sub(TAG_TEXT_LEN + 1) {
        let tag = &bytes[dot + 1..];
        if bytes[dot] == b'.' && !tag.contains(&b'.') {
            return Some((&body[..dot], &body[dot + 1..]));
        }
    }
    body.rsplit_once('.')
}

/// Appends the bytes of one base64url segment to `raw`.
fn decode_segment(text: &[u8], raw: &mut Vec<u8>) -> Result<(), FormatError> {
    // base64-simd decodes strictly (no padding, no non-zero trailing bits), so one byte
    // string has exactly one text form; and it is several times faster than a scalar decoder,
    // which matters on the store's hot path.
    URL_SAFE_NO_PAD
        .decode_append(text, raw)
        .map_err(|_| FormatError::Base64)
}

/// The most bytes one segment can decode to: a whole token's worth of base64.
pub(crate) const MAX_SEGMENT_LEN: usize = MAX_TOKEN_LEN / 4 * 3;

/// Room for one decoded segment, on the stack: the verifier decodes each segment, reads and
/// MACs it, and moves on, so it needs neither an allocation nor the segments kept.
pub(crate) type SegmentBuffer = [MaybeUninit<u8>; MAX_SEGMENT_LEN];

/// A fresh [`SegmentBuffer`]. Uninitialised memory is safe here: the decoder only writes it,
/// and hands back the part it wrote.
pub(crate) const fn segment_buffer() -> SegmentBuffer {
    [const { MaybeUninit::uninit() }; MAX_SEGMENT_LEN]
}

/// Decodes one base64url segment into `buf`, returning its bytes. (A segment too long for
/// the buffer cannot come from a token of at most [`MAX_TOKEN_LEN`] characters.)
pub(crate) fn decode_segment_into<'b>(
    text: &[u8],
    buf: &'b mut SegmentBuffer,
) -> Result<&'b [u8], FormatError> {
    match URL_SAFE_NO_PAD.decoded_length(text) {
        Ok(len) if len <= buf.len() => {}
        Ok(_) => return Err(FormatError::TooLong),
        Err(_) => return Err(FormatError::Base64),
    }
    match URL_SAFE_NO_PAD.decode(text, base64_simd::Out::from_uninit_slice(buf)) {
        Ok(bytes) => Ok(bytes),
        Err(_) => Err(FormatError::Base64),
    }
}

/// A token's text taken apart without decoding its segments: what both [`Token`]'s parser
/// and the verifier's allocation-free path start from.
pub(crate) struct TokenText<'a> {
    /// The claims and caveat segments, still base64, separated by `.`.
    parts: &'a str,
    /// The decoded tag.
    pub(crate) tag: Tag,
}

impl<'a> TokenText<'a> {
    /// Checks the length and prefix, finds the tag and decodes it.
    pub(crate) fn split(text: &'a str) -> Result<TokenText<'a>, FormatError> {
        if text.len() > MAX_TOKEN_LEN {
            return Err(FormatError::TooLong);
        }
        let body = text
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(FormatError::Version)?;
        let (parts, tag_text) = split_tag(body).ok_or(FormatError::Segments)?;
        let mut tag = [0u8; 32];
        match URL_SAFE_NO_PAD.decoded_length(tag_text.as_bytes()) {
            Ok(32) => {}
            Ok(_) => return Err(FormatError::TagLength),
            Err(_) => return Err(FormatError::Base64),
        }
        URL_SAFE_NO_PAD
            .decode(tag_text.as_bytes(), base64_simd::Out::from_slice(&mut tag))
            .map_err(|_| FormatError::Base64)?;
        Ok(TokenText {
            parts,
            tag: Tag(tag),
        })
    }

    /// The base64 text of the claims segment, then of each caveat. There is always a first.
    pub(crate) fn segments(&self) -> impl Iterator<Item = &'a [u8]> {
        // `str::split` with a `char` searches with memchr; a byte-predicate split walks the
        // ~300 bytes one at a time, which was a tenth of a verification.
        self.parts.split('.').map(str::as_bytes)
    }
}

impl FromStr for Token {
    type Err = FormatError;

    fn from_str(text: &str) -> Result<Token, FormatError> {
        let text = TokenText::split(text)?;
        let mut raw = Vec::with_capacity(text.parts.len() * 3 / 4 + 3);
        let mut ends = SegmentEnds::default();
        let mut parts = text.segments();
        decode_segment(parts.next().expect("split yields one part"), &mut raw)?;
        ends.push(raw.len());
        let (claims, signing_key) = Claims::decode(&raw)?;
        let mut caveats = Vec::new();
        for part in parts {
            if caveats.len() == MAX_CAVEATS {
                return Err(FormatError::Segments);
            }
            let start = raw.len();
            decode_segment(part, &mut raw)?;
            caveats.push(Caveat::decode(&raw[start..])?);
            ends.push(raw.len());
        }
        Ok(Token {
            signing_key,
            claims,
            caveats,
            raw,
            ends,
            tag: text.tag,
        })
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl Token {
    /// The text form, built in one allocation of the right size.
    pub fn to_text(&self) -> String {
        let encoded = |n: usize| n.div_ceil(3) * 4 - (3 - n % 3) % 3;
        let len = TOKEN_PREFIX.len()
            + self.segments().map(|s| encoded(s.len()) + 1).sum::<usize>()
            + encoded(32);
        let mut out = String::with_capacity(len);
        out.push_str(TOKEN_PREFIX);
        for segment in self.segments() {
            URL_SAFE_NO_PAD.encode_append(segment, &mut out);
            out.push('.');
        }
        URL_SAFE_NO_PAD.encode_append(self.tag.0, &mut out);
        out
    }
}

impl fmt::Debug for Token {
    /// Shows the claims and caveats, never the tag: whoever holds it can use the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("signing_key", &self.signing_key())
            .field("claims", &self.claims)
            .field("caveats", &self.caveats)
            .finish_non_exhaustive()
    }
}

/// The token's text with its tag replaced by `…`: safe to log, still enough to tell which key
/// was used.
pub fn redact(token_text: &str) -> String {
    match token_text.rsplit_once('.') {
        Some((head, _tag)) => format!("{head}.…"),
        None => "…".to_owned(),
    }
}
/// What a caveat must be to narrow a token: here, beside [`Token::attenuate`], rather than in
/// `caveat`, so that a caveat (a part of a token) needs nothing of the token it narrows.
impl Caveat {
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
}
