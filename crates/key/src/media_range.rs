//! Content-type limits: an exact media type (`image/png`) or a range (`image/*`), and the
//! media type of an upload ([`MediaType`]) they are compared with.
//!
//! An upload's `Content-Type` is parsed by the grammar of RFC 9110 §8.3.1, strictly, and kept
//! in one canonical form: that form is what the store stores and serves back, so what a key's
//! limit was checked against is exactly what a browser later reads. Anything the grammar does
//! not produce is refused rather than guessed at, because browsers and servers guess
//! differently: `image/png;,text/html` passed a check of the text before the first `;` and was
//! read by browsers as `text/html` (they take the last type of a list). Parameters
//! (`; charset=utf-8`) and letter case are not part of the type a limit compares.

use std::fmt;
use std::str::FromStr;

use crate::error::MediaRangeError;

/// The longest `Content-Type` value accepted, in bytes (before and after canonicalisation).
pub const MAX_MEDIA_TYPE_LEN: usize = 512;

/// Why an upload's `Content-Type` is not a media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaTypeError {
    /// Not `type/subtype` in token characters.
    #[error("the type is not 'type/subtype' in token characters")]
    Essence,
    /// A comma, even inside a quoted string: a list of types, which clients read differently.
    #[error("a content type is one media type, not a list: no ','")]
    List,
    /// A parameter that is not `name=token` or `name="quoted string"`.
    #[error("a parameter is not name=token or name=\"quoted string\"")]
    Parameter,
    /// The same parameter name twice, in any letter case.
    #[error("a parameter is given twice")]
    DuplicateParameter,
    /// A control character (other than a tab in a quoted string or between parts) or a
    /// character outside ASCII.
    #[error("the content type has a control or non-ASCII character")]
    Character,
    /// Longer than [`MAX_MEDIA_TYPE_LEN`].
    #[error("the content type is longer than 512 bytes")]
    TooLong,
}

/// An upload's media type (`type/subtype` and parameters), in canonical form: type and
/// subtype lowercase, parameter names lowercase, each parameter as `; name=value`, a value
/// bare if it is a token and quoted (with `"` and `\` escaped) otherwise, empty parameters
/// (`;;`) dropped. The grammar is RFC 9110 §8.3.1, with two refusals it allows: a `,`
/// anywhere (a list of types to a client that splits the value without regard to quotes) and
/// bytes outside ASCII (`obs-text`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MediaType {
    text: String,
    /// Where `type/subtype` ends.
    essence: usize,
    slash: usize,
}

impl MediaType {
    /// Parses a `Content-Type` header value.
    pub fn parse(value: &str) -> Result<MediaType, MediaTypeError> {
        if value.len() > MAX_MEDIA_TYPE_LEN {
            return Err(MediaTypeError::TooLong);
        }
        if value.contains(',') {
            return Err(MediaTypeError::List);
        }
        if value
            .bytes()
            .any(|b| !b.is_ascii() || (b.is_ascii_control() && b != b'\t'))
        {
            return Err(MediaTypeError::Character);
        }
        let mut rest = value.trim_matches(is_ows);
        let end = rest
            .find(|c: char| c == ';' || is_ows(c))
            .unwrap_or(rest.len());
        let (main, sub) = rest[..end].split_once('/').ok_or(MediaTypeError::Essence)?;
        if !is_token(main) || !is_token(sub) {
            return Err(MediaTypeError::Essence);
        }
        let mut text = rest[..end].to_ascii_lowercase();
        let (slash, essence) = (main.len(), text.len());
        rest = &rest[end..];
        let mut names: Vec<String> = Vec::new();
        loop {
            rest = rest.trim_start_matches(is_ows);
            if rest.is_empty() {
                break;
            }
            rest = rest.strip_prefix(';').ok_or(MediaTypeError::Parameter)?;
            rest = rest.trim_start_matches(is_ows);
            if rest.is_empty() || rest.starts_with(';') {
                continue; // an empty parameter, which the grammar allows
            }
            let (name, value, after) = parameter(rest)?;
            let name = name.to_ascii_lowercase();
            if names.contains(&name) {
                return Err(MediaTypeError::DuplicateParameter);
            }
            text.push_str("; ");
            text.push_str(&name);
            text.push('=');
            push_value(&mut text, &value);
            names.push(name);
            rest = after;
        }
        if text.len() > MAX_MEDIA_TYPE_LEN {
            return Err(MediaTypeError::TooLong);
        }
        Ok(MediaType {
            text,
            essence,
            slash,
        })
    }

    /// The canonical form: what is stored and served back.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `type/subtype`, lowercase, without parameters.
    pub fn essence(&self) -> &str {
        &self.text[..self.essence]
    }

    fn main_type(&self) -> &str {
        &self.text[..self.slash]
    }

    fn subtype(&self) -> &str {
        &self.text[self.slash + 1..self.essence]
    }
}

/// One `name=value` at the start of `text`: the name, the value unquoted, and what follows.
fn parameter(text: &str) -> Result<(&str, String, &str), MediaTypeError> {
    let eq = text.find('=').ok_or(MediaTypeError::Parameter)?;
    let name = &text[..eq];
    if !is_token(name) {
        return Err(MediaTypeError::Parameter);
    }
    let rest = &text[eq + 1..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((name, value, &quoted[i + 1..])),
                '\\' => value.push(chars.next().ok_or(MediaTypeError::Parameter)?.1),
                c => value.push(c),
            }
        }
        return Err(MediaTypeError::Parameter); // no closing quote
    }
    let end = rest
        .find(|c: char| c == ';' || is_ows(c))
        .unwrap_or(rest.len());
    if !is_token(&rest[..end]) {
        return Err(MediaTypeError::Parameter);
    }
    Ok((name, rest[..end].to_owned(), &rest[end..]))
}

/// Appends a parameter value: bare if it is a token, else as a quoted string.
fn push_value(text: &mut String, value: &str) {
    if is_token(value) {
        text.push_str(value);
        return;
    }
    text.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            text.push('\\');
        }
        text.push(c);
    }
    text.push('"');
}

/// RFC 9110 optional whitespace.
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

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

    /// Whether an upload's `Content-Type` header value falls in this range: never when it is
    /// not a media type ([`MediaType::parse`]).
    pub fn matches(&self, content_type: &str) -> bool {
        MediaType::parse(content_type).is_ok_and(|media_type| self.contains(&media_type))
    }

    /// Whether a parsed media type falls in this range.
    pub fn contains(&self, media_type: &MediaType) -> bool {
        media_type.main_type() == self.main_type()
            && self
                .subtype()
                .is_none_or(|want| media_type.subtype() == want)
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
        assert!(!m("image/png").matches("image/png;,text/html"));
        assert!(!m("image/png").matches("image/png, text/html"));
        assert!(!m("image/*").matches("image/png;charset"));
    }

    #[test]
    fn media_types_are_canonical_or_refused() {
        let canonical = |text: &str| MediaType::parse(text).map(|t| t.to_string());
        for (given, want) in [
            ("image/png", "image/png"),
            ("IMAGE/PNG", "image/png"),
            ("  image/png\t ", "image/png"),
            ("text/plain;charset=utf-8", "text/plain; charset=utf-8"),
            ("text/plain ; CharSet=UTF-8 ", "text/plain; charset=UTF-8"),
            ("text/plain; a=\"b c\"", "text/plain; a=\"b c\""),
            ("text/plain; a=\"token\"", "text/plain; a=token"),
            (
                "text/plain; a=\"q\\\"s\\\\\"",
                "text/plain; a=\"q\\\"s\\\\\"",
            ),
            ("text/plain; a=\"\"", "text/plain; a=\"\""),
            ("image/png;", "image/png"),
            ("image/png; ;a=b;", "image/png; a=b"),
        ] {
            assert_eq!(canonical(given).as_deref(), Ok(want), "{given:?}");
        }
        use MediaTypeError::*;
        for (given, why) in [
            ("image/png;,text/html", List),
            ("image/png, text/html", List),
            ("image/png; a=\"x,text/html\"", List),
            ("image/png;charset", Parameter),
            ("image/png;=b", Parameter),
            ("image/png;a=", Parameter),
            ("image/png;a=b c", Parameter),
            ("image/png;a=\"b", Parameter),
            ("image/png;a=\"b\\", Parameter),
            ("image/png;a=b;a=c", DuplicateParameter),
            ("image/png;a=b;A=c", DuplicateParameter),
            ("image/png text/html", Parameter),
            ("image/png\0", Character),
            ("image/png\r\nx: y", Character),
            ("image/pn\u{e9}", Character),
            ("image/png; a=\"\u{202e}\"", Character),
            ("image", Essence),
            ("image/", Essence),
            ("/png", Essence),
            ("image/png/x", Essence),
            ("ima ge/png", Essence),
            ("", Essence),
        ] {
            assert_eq!(MediaType::parse(given), Err(why), "{given:?}");
        }
        assert_eq!(
            MediaType::parse(&format!("a/{}", "b".repeat(MAX_MEDIA_TYPE_LEN))),
            Err(TooLong)
        );
    }

    #[test]
    fn within_orders_ranges() {
        assert!(m("image/png").within(&m("image/*")));
        assert!(m("image/png").within(&m("image/png")));
        assert!(!m("image/*").within(&m("image/png")));
        assert!(!m("text/plain").within(&m("image/*")));
    }
}
