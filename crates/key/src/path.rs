//! Blob paths and table keys, validated strictly.
//!
//! A valet key is only as narrow as the path it names, so a path is accepted exactly as written
//! or refused: never normalised into another resource. The store decodes a request's URL once and
//! hands the result here; whatever could be read as a different path by another layer (a `..`
//! segment, a backslash, a NUL, a `%2e` left over from double encoding) is an error.

use std::fmt;

use compact_str::CompactString;

use crate::error::PathError;

/// The longest blob path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// The longest segment of a blob path accepted, in bytes: what file systems allow for one
/// name (`NAME_MAX` on Linux), since every segment becomes a folder's or a file's name.
pub const MAX_SEGMENT_LEN: usize = 255;
/// One segment of a blob path as an ECMA-262 regular expression, for the OpenAPI documents
/// (the store's `{path}`, the gate's delegate captures): what [`BlobPath::parse`] accepts of a
/// segment, but for the length, which it counts in bytes and a pattern in characters. Kept here,
/// beside the rules it describes, so that the documents and the rules change together.
pub const SEGMENT_PATTERN: &str =
    r"^(?!\.\.?$)(?:[^/\\\u0000-\u001f\u007f-\u009f%]|%(?![0-9A-Fa-f]{2})){1,255}$";
/// The longest partition or row key accepted, in bytes.
pub const MAX_TABLE_KEY_LEN: usize = 256;

/// A validated blob path inside a container: `/`-separated segments, none empty, `.` or `..`,
/// with no backslash, control character or leftover percent-encoding. Never ends with `/`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobPath(CompactString);

impl BlobPath {
    /// Validates `text` as the path of one blob.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        validate_segments(text)?;
        Ok(BlobPath(CompactString::new(text)))
    }

    /// Validates an owned string as the path of one blob, keeping its allocation.
    pub fn from_string(text: String) -> Result<Self, PathError> {
        validate_segments(&text)?;
        Ok(BlobPath(CompactString::from(text)))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this path lies under `prefix`, a prefix that ends with `/`. Matching is on
    /// whole segments because the prefix carries its own trailing separator.
    pub fn is_under(&self, prefix: &BlobPrefix) -> bool {
        self.0.starts_with(prefix.as_str())
    }
}

/// A validated blob prefix: a path of whole segments followed by `/`, such as `photos/2024/`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobPrefix(CompactString);

impl BlobPrefix {
    /// Validates `text`, which must end with `/`, as a prefix.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let Some(inner) = text.strip_suffix('/') else {
            return Err(PathError::EmptySegment);
        };
        validate_segments(inner)?;
        Ok(BlobPrefix(CompactString::new(text)))
    }

    /// The prefix as text, with its trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` is this prefix or lies under it.
    pub fn contains_prefix(&self, other: &BlobPrefix) -> bool {
        other.0.starts_with(self.0.as_str())
    }
}

fn validate_segments(text: &str) -> Result<(), PathError> {
    if text.is_empty() {
        return Err(PathError::Empty);
    }
    if text.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    // The segments first, then every character in one pass over the whole text: this runs for
    // every request the store serves. Paths are short, so a plain byte split beats `str::split`,
    // whose memchr-based searcher costs more to set up than it saves.
    for segment in text.as_bytes().split(|&b| b == b'/') {
        match segment {
            b"" => return Err(PathError::EmptySegment),
            b"." | b".." => return Err(PathError::DotSegment),
            _ if segment.len() > MAX_SEGMENT_LEN => return Err(PathError::SegmentTooLong),
            _ => {}
        }
    }
    validate_characters(text.as_bytes())
}

/// The character rules shared by path segments and table keys, in one pass over the bytes of
/// a valid UTF-8 string: no backslash, no control character (C0, DEL, and C1, which UTF-8
/// writes as `C2 80`..`C2 9F`), and no `%XX` triplet.
fn validate_characters(bytes: &[u8]) -> Result<(), PathError> {
    // Almost every path is printable ASCII without `\\` or `%`: one check the compiler
    // vectorises, and the byte-by-byte rules below only for the rest.
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'\\' && b != b'%')
    {
        return Ok(());
    }
    let hex_at = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' => return Err(PathError::Backslash),
            0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            0xc2 if bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)) => {
                return Err(PathError::ControlCharacter)
            }
            // After the store's one decoding, a triplet can only come from double encoding
            // (`%252e`), which another layer might decode once more.
            b'%' if hex_at(i + 1) && hex_at(i + 2) => return Err(PathError::PercentEncoded),
            _ => {}
        }
    }
    Ok(())
}

/// A validated partition key or row key of a table: 1 to 256 bytes, the path character rules,
/// and none of `/`, `#`, `?`, nor `..` (which separates the ends of a row range).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableKey(CompactString);

impl TableKey {
    /// Validates `text` as a partition or row key.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        if text.len() > MAX_TABLE_KEY_LEN {
            return Err(PathError::TooLong);
        }
        if text == "." {
            return Err(PathError::DotSegment);
        }
        let bytes = text.as_bytes();
        if bytes.iter().any(|b| matches!(b, b'/' | b'#' | b'?'))
            || bytes.windows(2).any(|w| w == b"..")
        {
            return Err(PathError::ReservedCharacter);
        }
        validate_characters(text.as_bytes())?;
        Ok(TableKey(CompactString::new(text)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! text_formatting {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    )*};
}
text_formatting!(BlobPath, BlobPrefix, TableKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for ok in [
            "a",
            "2024/jan/cat.jpg",
            "with space/ünïcode ✓.txt",
            "...",
            ".hidden/..x/x..",
            "100% done",
            "50%off",
            "no\u{a0}break",
            "%zz%4",
        ] {
            assert!(BlobPath::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_traversal_and_ambiguity_in_every_form() {
        let cases = [
            ("", PathError::Empty),
            ("/a", PathError::EmptySegment),
            ("a/", PathError::EmptySegment),
            ("a//b", PathError::EmptySegment),
            (".", PathError::DotSegment),
            ("..", PathError::DotSegment),
            ("a/../b", PathError::DotSegment),
            ("a/./b", PathError::DotSegment),
            ("a/..", PathError::DotSegment),
            ("..\\x", PathError::Backslash),
            ("a\\b", PathError::Backslash),
            ("a\0b", PathError::ControlCharacter),
            ("a\nb", PathError::ControlCharacter),
            ("a\u{7f}b", PathError::ControlCharacter),
            ("a\u{85}b", PathError::ControlCharacter),
            ("%2e%2e/x", PathError::PercentEncoded),
            ("a/%2E%2e", PathError::PercentEncoded),
            ("a%2fb", PathError::PercentEncoded),
            ("a%00", PathError::PercentEncoded),
            ("%252e%252e", PathError::PercentEncoded),
        ];
        for (text, want) in cases {
            assert_eq!(BlobPath::parse(text), Err(want), "{text:?}");
        }
        assert_eq!(
            BlobPath::parse(&"a".repeat(MAX_PATH_LEN + 1)),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn prefixes_match_whole_segments_only() {
        let prefix = BlobPrefix::parse("photos/2024/").unwrap();
        assert!(BlobPath::parse("photos/2024/a.jpg")
            .unwrap()
            .is_under(&prefix));
        assert!(BlobPath::parse("photos/2024/x/y")
            .unwrap()
            .is_under(&prefix));
        assert!(!BlobPath::parse("photos/2024-private/x")
            .unwrap()
            .is_under(&prefix));
        assert!(!BlobPath::parse("photos/2024").unwrap().is_under(&prefix));
        assert!(!BlobPath::parse("photos/20").unwrap().is_under(&prefix));
        assert!(prefix.contains_prefix(&BlobPrefix::parse("photos/2024/jan/").unwrap()));
        assert!(!prefix.contains_prefix(&BlobPrefix::parse("photos/2024-x/").unwrap()));
        assert!(!prefix.contains_prefix(&BlobPrefix::parse("photos/").unwrap()));
    }

    #[test]
    fn prefixes_need_their_trailing_slash_and_valid_segments() {
        assert!(BlobPrefix::parse("photos").is_err());
        assert!(BlobPrefix::parse("/").is_err());
        assert!(BlobPrefix::parse("a//").is_err());
        assert!(BlobPrefix::parse("../").is_err());
    }

    #[test]
    fn table_keys_refuse_separators_and_range_marks() {
        assert!(TableKey::parse("customer-42").is_ok());
        assert!(TableKey::parse("a.b").is_ok());
        for bad in [
            "", ".", "a/b", "a#b", "a?b", "a..b", "..", "a\\b", "a\0", "%41",
        ] {
            assert!(TableKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
