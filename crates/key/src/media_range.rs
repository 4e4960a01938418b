//! Content-type limits: an exact media type (`image/png`) or a range (`image/*`).
//!
//! A key's content-type limit is compared with the `Content-Type` of an upload; parameters
//! (`; charset=utf-8`) and letter case of the request header are ignored, as HTTP says they
//! are not part of the type.

use std::fmt;
use std::str::FromStr;

use crate::error::MediaRangeError;

/// `type/subtype` or `type/*`, lowercase.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MediaRange {
    text: String,
    slash: usize,
}

impl MediaRange {
    fn main_type(&self) -> &str {
        &self.text[..self.slash]
    }

    fn subtype(&self) -> Option<&str> {
        match &self.text[self.slash + 1..] {
            "*" => None,
            sub => Some(sub),
        }
    }

    /// The range as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether an upload's `Content-Type` header value falls in this range.
    pub fn matches(&self, content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        let Some((main, sub)) = essence.split_once('/') else {
            return false;
        };
        if !main.eq_ignore_ascii_case(self.main_type()) {
            return false;
        }
        match self.subtype() {
            None => is_token(sub),
            Some(want) => sub.eq_ignore_ascii_case(want),
        }
    }

    /// Whether every type in `self` is also in `outer`.
    pub fn within(&self, outer: &MediaRange) -> bool {
        if self.main_type() != outer.main_type() {
            return false;
        }
        match (self.subtype(), outer.subtype()) {
            (_, None) => true,
            (Some(a), Some(b)) => a == b,
            (None, Some(_)) => false,
        }
    }
}

/// RFC 9110 token characters.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl FromStr for MediaRange {
    type Err = MediaRangeError;

    fn from_str(text: &str) -> Result<Self, MediaRangeError> {
        let (main, sub) = text.split_once('/').ok_or(MediaRangeError)?;
        let lowercase = !text.bytes().any(|b| b.is_ascii_uppercase());
        let sub_ok = sub == "*" || (is_token(sub) && !sub.contains('*'));
        if !lowercase || !is_token(main) || main.contains('*') || !sub_ok || text.len() > 127 {
            return Err(MediaRangeError);
        }
        Ok(MediaRange {
            text: text.to_owned(),
            slash: main.len(),
        })
    }
}

impl fmt::Display for MediaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for MediaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl serde::Serialize for MediaRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> MediaRange {
        text.parse().unwrap()
    }

    #[test]
    fn parses_exact_types_and_ranges_only() {
        assert_eq!(m("image/png").to_string(), "image/png");
        assert_eq!(m("image/*").to_string(), "image/*");
        assert_eq!(
            m("application/vnd.api+json").as_str(),
            "application/vnd.api+json"
        );
        for bad in [
            "image",
            "*/*",
            "image/",
            "/png",
            "Image/png",
            "image/p*g",
            "a b/c",
            "image/png; q=1",
        ] {
            assert!(bad.parse::<MediaRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn matches_request_headers() {
        assert!(m("image/png").matches("image/png"));
        assert!(m("image/png").matches("IMAGE/PNG; foo=bar"));
        assert!(!m("image/png").matches("image/pngx"));
        assert!(!m("image/png").matches("image/jpeg"));
        assert!(m("image/*").matches("image/jpeg"));
        assert!(!m("image/*").matches("image/"));
        assert!(!m("image/*").matches("imagex/png"));
        assert!(!m("image/*").matches("text/html"));
        assert!(!m("text/plain").matches(""));
    }

    #[test]
    fn within_orders_ranges() {
        assert!(m("image/png").within(&m("image/*")));
        assert!(m("image/png").within(&m("image/png")));
        assert!(!m("image/*").within(&m("image/png")));
        assert!(!m("text/plain").within(&m("image/*")));
    }
}
