//! What the issuer of a key says: who it is for, what it grants, for how long, with which limits.
//!
//! Claims are signed once, by the keyring's active key. Everything after that is a
//! [`Caveat`](crate::Caveat), which can only narrow them.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;
use serde::Serialize;

use crate::error::{FileNameError, FormatError};
use crate::media_range::MediaRange;
use crate::name::Name;
use crate::op::Ops;
use crate::scope::Scope;
use crate::wire::{field, uint_value, SegmentReader, SegmentWriter, CLAIMS_KIND};

/// Seconds since the Unix epoch, UTC. The key crate never reads a clock: callers pass the time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// This time plus `seconds`, saturating.
    pub fn plus(self, seconds: u64) -> UnixTime {
        UnixTime(self.0.saturating_add(seconds))
    }

    /// This time minus `seconds`, saturating at the epoch.
    pub fn minus(self, seconds: u64) -> UnixTime {
        UnixTime(self.0.saturating_sub(seconds))
    }
}

/// A key's random 128-bit identity: what the ledger counts uses of and revokes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    /// A fresh id from a cryptographic random source (the OS's, in every caller but tests).
    pub fn random(rng: &mut impl rand_core::CryptoRngCore) -> KeyId {
        let mut bytes = [0; 16];
        rng.fill_bytes(&mut bytes);
        KeyId(bytes)
    }

    /// Reads the 32-digit lowercase hex form.
    pub fn parse_hex(text: &str) -> Option<KeyId> {
        if text.len() != 32 {
            return None;
        }
        let mut bytes = [0; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        let id = KeyId(bytes);
        (id.to_string() == text).then_some(id)
    }
}

impl fmt::Display for KeyId {
    /// 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A download file name for `Content-Disposition`: 1 to 255 bytes, no path separators, quotes
/// or control characters, so the store can put it in a header without any chance of injection.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct FileName(String);

impl FileName {
    /// Validates a file name.
    pub fn parse(text: &str) -> Result<Self, FileNameError> {
        let bad = |c: char| c.is_control() || matches!(c, '/' | '\\' | '"');
        if text.is_empty() || text.len() > 255 || text.contains(bad) || text == "." || text == ".."
        {
            return Err(FileNameError::Invalid);
        }
        if let Some(c) = text.chars().find(|&c| is_bidi_control(c)) {
            return Err(FileNameError::Bidi(c));
        }
        Ok(FileName(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `c` is one of Unicode's bidirectional controls: the embeddings and overrides
/// (U+202A–U+202E), the isolates (U+2066–U+2069), the marks (U+200E, U+200F) and the Arabic
/// letter mark (U+061C). They reorder what follows them on screen, so that a download named
/// `invoice\u{202e}fdp.exe` shows as `invoiceexe.pdf`.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}')
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The longest subject accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 256;

/// Whether `text` is an acceptable subject: up to 256 bytes, no control characters.
pub fn valid_subject(text: &str) -> bool {
    // Printable ASCII, almost every subject, is checked a byte at a time without decoding
    // characters; only the rest pays for `char::is_control`.
    let printable = |b: &u8| (0x20..0x7f).contains(b);
    text.len() <= MAX_SUBJECT_LEN
        && (text.as_bytes().iter().all(printable) || !text.chars().any(char::is_control))
}

/// Limits that the store enforces while the bytes flow.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct Limits {
    /// The largest upload accepted, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// How many requests the key may be used for, in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
    /// The content type an upload must have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<MediaRange>,
    /// The client addresses allowed; empty means any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client_ips: Vec<IpNet>,
    /// The file name a download is saved under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<FileName>,
    /// Where the store sends events about this key's uses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_target: Option<Name>,
}

/// The signed part of a key.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Claims {
    /// The key's identity.
    pub key_id: KeyId,
    /// Who the key was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// What the key grants access to.
    pub scope: Scope,
    /// What the key allows doing there.
    pub ops: Ops,
    /// The first second the key is valid.
    pub not_before: UnixTime,
    /// The first second the key is no longer valid.
    pub expires: UnixTime,
    /// Limits enforced while bytes flow.
    #[serde(flatten)]
    pub limits: Limits,
}

pub(crate) fn encode_ips(ips: &[IpNet]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ips.len() * 18);
    for net in ips {
        match net.network() {
            IpAddr::V4(a) => {
                out.extend([4, net.prefix_len()]);
                out.extend(a.octets());
            }
            IpAddr::V6(a) => {
                out.extend([6, net.prefix_len()]);
                out.extend(a.octets());
            }
        }
    }
    out
}

pub(crate) fn decode_ips(mut bytes: &[u8]) -> Result<Vec<IpNet>, FormatError> {
    let bad = || FormatError::Value {
        field: field::CLIENT_IPS,
        reason: "not a list of networks with their host bits zero".into(),
    };
    let mut nets = Vec::new();
    while let [family, prefix, rest @ ..] = bytes {
        let (addr, rest): (IpAddr, &[u8]) = match family {
            4 if rest.len() >= 4 => {
                let octets: [u8; 4] = rest[..4].try_into().expect("length checked");
                (octets.into(), &rest[4..])
            }
            6 if rest.len() >= 16 => {
                let octets: [u8; 16] = rest[..16].try_into().expect("length checked");
                (octets.into(), &rest[16..])
            }
            _ => return Err(bad()),
        };
        let net = IpNet::new(addr, *prefix).map_err(|_| bad())?;
        if net.network() != addr {
            return Err(bad());
        }
        nets.push(net);
        bytes = rest;
    }
    if !bytes.is_empty() || nets.is_empty() {
        return Err(bad());
    }
    Ok(nets)
}

pub(crate) fn text_value(field: u8, value: &[u8]) -> Result<&str, FormatError> {
    std::str::from_utf8(value).map_err(|_| FormatError::Value {
        field,
        reason: "not UTF-8".into(),
    })
}

pub(crate) fn invalid(field: u8, reason: impl fmt::Display) -> FormatError {
    FormatError::Value {
        field,
        reason: reason.to_string(),
    }
}

impl Claims {
    /// The claims segment's bytes, naming `signing_key` as the key that signs them.
    pub(crate) fn encode(&self, signing_key: &str) -> Vec<u8> {
        let mut w = SegmentWriter::new(CLAIMS_KIND);
        w.bytes(field::KEY_ID, &self.key_id.0);
        w.bytes(field::SIGNING_KEY, signing_key.as_bytes());
        if let Some(subject) = &self.subject {
            w.bytes(field::SUBJECT, subject.as_bytes());
        }
        w.text(field::SCOPE, &self.scope);
        w.uint(field::OPS, u64::from(self.ops.bits()));
        w.uint(field::NOT_BEFORE, self.not_before.0);
        w.uint(field::EXPIRES, self.expires.0);
        let l = &self.limits;
        if let Some(n) = l.max_bytes {
            w.uint(field::MAX_BYTES, n);
        }
        if let Some(n) = l.max_uses {
            w.uint(field::MAX_USES, n);
        }
        if let Some(ct) = &l.content_type {
            w.bytes(field::CONTENT_TYPE, ct.as_str().as_bytes());
        }
        if !l.client_ips.is_empty() {
            w.bytes(field::CLIENT_IPS, &encode_ips(&l.client_ips));
        }
        if let Some(name) = &l.filename {
            w.bytes(field::FILENAME, name.as_str().as_bytes());
        }
        if let Some(target) = &l.event_target {
            w.bytes(field::EVENT_TARGET, target.as_str().as_bytes());
        }
        w.finish()
    }

    /// Reads a claims segment: the claims, and where in the segment the id of the key that
    /// signed them is (it stays there: the token keeps the segment's bytes anyway).
    pub(crate) fn decode(segment: &[u8]) -> Result<(Claims, Range<usize>), FormatError> {
        Claims::decode_expecting(segment, None)
    }

    /// [`Claims::decode`], for a verifier that expects the scope to be `resource`: when the
    /// scope field is exactly its text, the claims take a clone of it instead of parsing and
    /// validating the text again (see [`Scope::has_text`] for why that is the same scope).
    pub(crate) fn decode_expecting(
        segment: &[u8],
        resource: Option<&Scope>,
    ) -> Result<(Claims, Range<usize>), FormatError> {
        let mut r = SegmentReader::new(segment, CLAIMS_KIND)?;
        let mut key_id = None;
        let mut signing_key = None;
        let mut subject = None;
        let mut scope = None;
        let mut ops = None;
        let mut not_before = None;
        let mut expires = None;
        let mut limits = Limits::default();
        while let Some((f, v)) = r.next_field()? {
            match f {
                field::KEY_ID => {
                    key_id = Some(KeyId(v.try_into().map_err(|_| invalid(f, "not 16 bytes"))?))
                }
                field::SIGNING_KEY => {
                    // Only checked, never converted: ASCII, as every real id is, is UTF-8.
                    if !v.is_ascii() {
                        text_value(f, v)?;
                    }
                    let start = v.as_ptr() as usize - segment.as_ptr() as usize;
                    signing_key = Some(start..start + v.len());
                }
                field::SUBJECT => {
                    let text = text_value(f, v)?;
                    if !valid_subject(text) {
                        return Err(invalid(
                            f,
                            "longer than 256 bytes or has control characters",
                        ));
                    }
                    subject = Some(text.to_owned());
                }
                field::SCOPE => {
                    scope = Some(match resource {
                        Some(resource) if resource.has_text(v) => resource.clone(),
                        _ => decode_scope(v)?,
                    })
                }
                field::OPS => ops = Some(decode_ops(v)?),
                field::NOT_BEFORE => not_before = Some(UnixTime(uint_value(v)?)),
                field::EXPIRES => expires = Some(UnixTime(uint_value(v)?)),
                field::MAX_BYTES => limits.max_bytes = Some(uint_value(v)?),
                field::MAX_USES => limits.max_uses = Some(uint_value(v)?),
                field::CONTENT_TYPE => limits.content_type = Some(decode_media_range(v)?),
                field::CLIENT_IPS => limits.client_ips = decode_ips(v)?,
                field::FILENAME => {
                    let name = FileName::parse(text_value(f, v)?).map_err(|e| invalid(f, e))?;
                    limits.filename = Some(name);
                }
                field::EVENT_TARGET => {
                    let name = Name::parse(text_value(f, v)?).map_err(|e| invalid(f, e))?;
                    limits.event_target = Some(name);
                }
                other => return Err(FormatError::Field(other)),
            }
        }
        let claims = Claims {
            key_id: key_id.ok_or(FormatError::Missing(field::KEY_ID))?,
            subject,
            scope: scope.ok_or(FormatError::Missing(field::SCOPE))?,
            ops: ops.ok_or(FormatError::Missing(field::OPS))?,
            not_before: not_before.ok_or(FormatError::Missing(field::NOT_BEFORE))?,
            expires: expires.ok_or(FormatError::Missing(field::EXPIRES))?,
            limits,
        };
        Ok((
            claims,
            signing_key.ok_or(FormatError::Missing(field::SIGNING_KEY))?,
        ))
    }
}

pub(crate) fn decode_scope(value: &[u8]) -> Result<Scope, FormatError> {
    text_value(field::SCOPE, value)?
        .parse()
        .map_err(|e| invalid(field::SCOPE, e))
}

pub(crate) fn decode_ops(value: &[u8]) -> Result<Ops, FormatError> {
    let bits = uint_value(value)?;
    u16::try_from(bits)
        .ok()
        .and_then(Ops::from_bits)
        .ok_or_else(|| invalid(field::OPS, "unknown operation bits"))
}

pub(crate) fn decode_media_range(value: &[u8]) -> Result<MediaRange, FormatError> {
    text_value(field::CONTENT_TYPE, value)?
        .parse()
        .map_err(|e| invalid(field::CONTENT_TYPE, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_print_and_read_as_hex() {
        let id = KeyId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(KeyId::parse_hex(&id.to_string()), Some(id));
        assert_eq!(KeyId::parse_hex(&"AB".repeat(16)), None);
        assert_eq!(KeyId::parse_hex("abc"), None);
        assert_eq!(KeyId::parse_hex(&"zz".repeat(16)), None);
    }

    #[test]
    fn file_names_refuse_separators_quotes_and_controls() {
        assert!(FileName::parse("report 2024.pdf").is_ok());
        assert!(FileName::parse("résumé.pdf").is_ok());
        for bad in [
            "",
            "a/b",
            "a\\b",
            "a\"b",
            "a\r\nX-Evil: 1",
            ".",
            "..",
            &"x".repeat(256),
        ] {
            assert_eq!(FileName::parse(bad), Err(FileNameError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn file_names_refuse_every_bidirectional_control() {
        let controls = ('\u{202a}'..='\u{202e}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{200e}', '\u{200f}', '\u{61c}']);
        for c in controls {
            for name in [
                format!("invoice{c}fdp.exe"),
                format!("{c}a"),
                format!("a{c}"),
            ] {
                assert_eq!(
                    FileName::parse(&name),
                    Err(FileNameError::Bidi(c)),
                    "{name:?}"
                );
            }
        }
        let message = FileName::parse("invoice\u{202e}fdp.exe")
            .unwrap_err()
            .to_string();
        assert!(message.contains("U+202E"), "{message}");
        // Right-to-left text itself is a name like any other.
        assert!(FileName::parse("\u{5e9}\u{5dc}\u{5d5}\u{5dd}.pdf").is_ok());
        assert!(
            FileName::parse("\u{200d}\u{2060}.txt").is_ok(),
            "joiners are not bidi controls"
        );
    }

    /// A key signed with such a name (by a build before the check) is `key_malformed` where
    /// it is verified: the store never puts the name in a `Content-Disposition`.
    #[test]
    fn a_signed_key_with_a_bidi_control_in_its_file_name_is_malformed() {
        use crate::{Access, Denial, Keyring, Op, Verifier};
        let ring = Keyring::from_secrets(Some("k"), &[("k", [1; 32])]).unwrap();
        let resource: Scope = "blob:files/a".parse().unwrap();
        let claims = Claims {
            key_id: KeyId([3; 16]),
            subject: None,
            scope: resource.clone(),
            ops: "read".parse().unwrap(),
            not_before: UnixTime(100),
            expires: UnixTime(200),
            limits: Limits {
                filename: Some(FileName("invoice\u{202e}fdp.exe".to_owned())),
                ..Limits::default()
            },
        };
        let token = ring.issue(claims).unwrap().to_string();
        let access = Access {
            op: Op::Read,
            resource: &resource,
            now: UnixTime(150),
            client: None,
        };
        let denial = Verifier::new(ring).authorize(&token, &access).unwrap_err();
        assert!(matches!(denial, Denial::Malformed(_)), "{denial:?}");
        assert!(denial.to_string().contains("bidirectional"), "{denial}");
    }

    #[test]
    fn ip_lists_round_trip_and_refuse_host_bits() {
        let nets: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert_eq!(decode_ips(&encode_ips(&nets)).unwrap(), nets);
        assert!(decode_ips(&[4, 8, 10, 0, 0, 1]).is_err());
        assert!(decode_ips(&[4, 33, 10, 0, 0, 0]).is_err());
        assert!(decode_ips(&[5, 8, 10, 0, 0, 0]).is_err());
        assert!(decode_ips(&[]).is_err());
    }
}
