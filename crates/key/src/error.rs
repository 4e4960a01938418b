//! The errors of building and reading keys.
//!
//! Denials of an authorization live beside the verifier (`authorize.rs`); these are the errors
//! of parsing text (names, paths, scopes, operations, content types) and of the token's wire
//! form. Each variant says what was wrong so that a CLI or an HTTP error message can repeat it.

use std::fmt;

use thiserror::Error;

/// Why a container, table, queue or event-target name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NameError {
    /// Shorter than 3 or longer than 63 bytes.
    #[error("a name has 3 to 63 characters")]
    Length,
    /// A character other than `a-z`, `0-9` or `-`.
    #[error("a name uses only lowercase letters a-z, digits and '-'")]
    Charset,
    /// A hyphen at either end, or two in a row.
    #[error("a name may not start or end with '-' or contain '--'")]
    Hyphens,
}

/// Why a blob path, partition key or row key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PathError {
    /// Nothing at all.
    #[error("the path is empty")]
    Empty,
    /// Longer than the documented maximum.
    #[error("the path is longer than 1024 bytes")]
    TooLong,
    /// A segment longer than 255 bytes, more than a file system takes for one name.
    #[error("a path segment is longer than 255 bytes")]
    SegmentTooLong,
    /// `a//b`, a leading `/`, or (for an exact blob) a trailing one in the wrong place.
    #[error("the path has an empty segment")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("the path has a '.' or '..' segment")]
    DotSegment,
    /// A backslash, which some systems read as a separator.
    #[error("the path contains a backslash")]
    Backslash,
    /// NUL or another control character.
    #[error("the path contains a control character")]
    ControlCharacter,
    /// A `%XX` triplet left after decoding: the path was encoded twice.
    #[error("the path contains a percent-encoded sequence (double encoding)")]
    PercentEncoded,
    /// A character not allowed in a partition or row key (`/`, `#`, `?`), or `..` inside one.
    #[error("the key contains '/', '#', '?' or '..'")]
    ReservedCharacter,
}

/// Why a scope's text form was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScopeError {
    /// The text does not start with `blob:`, `table:` or `queue:`.
    #[error("a scope starts with 'blob:', 'table:' or 'queue:'")]
    UnknownKind,
    /// The container, table or queue name is not valid.
    // The inner messages say what they are about ("a name has 3 to 63 characters", "the path
    // has a '.' or '..' segment"): a prefix here would be doubled by every caller that says
    // "bad path:" itself, as the gate and the store do.
    #[error("{0}")]
    Name(NameError),
    /// The blob path, partition or row key is not valid.
    #[error("{0}")]
    Path(PathError),
    /// A queue scope with a path, or a table scope with too many parts.
    #[error("the scope has more parts than its kind allows")]
    TrailingParts,
    /// A row range whose start is after its end, or `..` with neither end.
    #[error("a row range is FROM..TO with FROM <= TO, FROM.. or ..TO")]
    BadRowRange,
}

/// Why an operation name or list was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpError {
    /// A name that is not one of the operations.
    #[error("unknown operation '{0}' (expected read, write, create, delete, list, enqueue, dequeue, peek or update)")]
    Unknown(String),
    /// An empty list.
    #[error("no operation given")]
    Empty,
}

/// Why a content-type limit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a content type is 'type/subtype' or 'type/*' in lowercase token characters")]
pub struct MediaRangeError;

/// Why a download file name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FileNameError {
    /// Empty, too long, `.`/`..`, or with a separator, a quote or a control character.
    #[error("a file name has 1 to 255 bytes and no '/', '\\', '\"' or control characters")]
    Invalid,
    /// A bidirectional control character, which makes a name display as another
    /// (`invoice\u{202e}fdp.exe` shows as `invoiceexe.pdf`).
    #[error(
        "a file name may not hold bidirectional control characters (here U+{:04X}): they make \
         it display as another name",
        u32::from(*.0)
    )]
    Bidi(char),
}

/// Why a token's text or bytes could not be read. All of these are `key_malformed`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    /// The text does not start with `vk1.`.
    #[error("the token does not start with 'vk1.'")]
    Version,
    /// Longer than the documented maximum.
    #[error("the token is longer than 4096 characters")]
    TooLong,
    /// Not enough segments, or more caveats than allowed.
    #[error("the token has the wrong number of segments")]
    Segments,
    /// A segment is not canonical unpadded base64url.
    #[error("a segment is not base64url")]
    Base64,
    /// The tag is not 32 bytes.
    #[error("the tag has the wrong length")]
    TagLength,
    /// A segment has the wrong kind byte.
    #[error("a segment has the wrong kind")]
    SegmentKind,
    /// A field's bytes ran out early, a varint was overlong, or bytes were left over.
    #[error("a segment is truncated or has trailing bytes")]
    Truncated,
    /// Fields out of order, repeated, or unknown: unknown restrictions fail closed.
    #[error("{} is unknown, repeated or out of order", FieldName(*.0))]
    Field(u8),
    /// A required field is absent.
    #[error("the required {} is missing", FieldName(*.0))]
    Missing(u8),
    /// A caveat with no restriction in it.
    #[error("a caveat restricts nothing")]
    EmptyCaveat,
    /// A text field is not UTF-8 or not valid for its kind.
    #[error("{} is invalid: {reason}", FieldName(*.field))]
    Value {
        /// The field's type byte.
        field: u8,
        /// What was wrong with it.
        reason: String,
    },
}

/// A field type as messages show it: `field 4 (scope)`, or `field 42` for a type this version
/// does not know.
struct FieldName(u8);

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::field::name(self.0) {
            Some(name) => write!(f, "field {} ({name})", self.0),
            None => write!(f, "field {}", self.0),
        }
    }
}

// Written by hand rather than with `#[from]`, which would also make the inner error the
// `source()` and print its message twice in an error chain.
impl From<NameError> for ScopeError {
    fn from(e: NameError) -> Self {
        ScopeError::Name(e)
    }
}

impl From<PathError> for ScopeError {
    fn from(e: PathError) -> Self {
        ScopeError::Path(e)
    }
}
