//! How a URL path names a resource: percent-decoded exactly once, segment by segment.
//!
//! The gate decides which resource a delegated key covers from a request's path, and the
//! store decides which resource a key is checked against from its own request's path. If the
//! two decoded differently, a key minted for one blob could be checked against another; so
//! both call these functions, and what is authorized is byte for byte what is served.
//!
//! One decoding, never more: an encoded `/` inside a segment and text that is not UTF-8 once
//! decoded are refused here; a `%XX` left over from double encoding, `.`/`..` segments, NUL,
//! control characters and backslashes are refused by the path rules the result goes through
//! ([`BlobPath`], [`Name`]).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use thiserror::Error;

use crate::error::{NameError, PathError};
use crate::name::Name;
use crate::path::BlobPath;

/// Why a URL path names no resource.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlPathError {
    /// A segment's bytes, once decoded, are not UTF-8 (`%ff`, overlong `%c0%ae`).
    #[error("the path is not UTF-8 once decoded")]
    NotUtf8,
    /// A `%2f` inside a segment: one segment that would become two.
    #[error("the path contains an encoded '/'")]
    EncodedSlash,
    /// The first segment is not a container name.
    #[error("container {container:?}: {reason}")]
    Container {
        /// The decoded text.
        container: String,
        /// What the name rules say.
        reason: NameError,
    },
    /// `/blob/NAME/` with nothing after the slash.
    #[error("empty blob path; the container itself is /blob/{0}")]
    EmptyBlobPath(Name),
    /// The decoded path breaks the path rules.
    #[error(transparent)]
    Path(#[from] PathError),
}

/// Decodes a URL path once, segment by segment; borrowed when there is nothing to decode.
pub fn decode_url_path(raw: &str) -> Result<Cow<'_, str>, UrlPathError> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut path = String::with_capacity(raw.len());
    for (i, segment) in raw.split('/').enumerate() {
        if i > 0 {
            path.push('/');
        }
        path.push_str(&decode_segment(segment)?);
    }
    Ok(Cow::Owned(path))
}

/// The container and, unless the path names the container itself, the blob that the URL
/// path `CONTAINER[/PATH]` (the part after the store's `/blob/`) names.
pub fn blob_url_path(raw: &str) -> Result<(Name, Option<BlobPath>), UrlPathError> {
    let (raw_container, raw_path) = match raw.split_once('/') {
        Some((c, p)) => (c, Some(p)),
        None => (raw, None),
    };
    let container = decode_segment(raw_container)?;
    let container = Name::parse(&container).map_err(|reason| UrlPathError::Container {
        container: container.into_owned(),
        reason,
    })?;
    let path = match raw_path {
        None => None,
        Some("") => return Err(UrlPathError::EmptyBlobPath(container)),
        Some(p) => Some(match decode_url_path(p)? {
            Cow::Borrowed(text) => BlobPath::parse(text)?,
            Cow::Owned(text) => BlobPath::from_string(text)?,
        }),
    };
    Ok((container, path))
}

fn decode_segment(raw: &str) -> Result<Cow<'_, str>, UrlPathError> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| UrlPathError::NotUtf8)?;
    if decoded.contains('/') {
        return Err(UrlPathError::EncodedSlash);
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(raw: &str) -> Result<(String, Option<String>), UrlPathError> {
        blob_url_path(raw).map(|(c, p)| (c.to_string(), p.map(|p| p.as_str().to_owned())))
    }

    #[test]
    fn decodes_each_segment_once() {
        assert_eq!(decode_url_path("a/b c").unwrap(), "a/b c");
        assert!(matches!(decode_url_path("a/b").unwrap(), Cow::Borrowed(_)));
        assert_eq!(decode_url_path("a%20b/%C3%A9").unwrap(), "a b/é");
        // Twice encoded stays once decoded: the path rules then refuse the triplet.
        assert_eq!(decode_url_path("%252e%252e").unwrap(), "%2e%2e");
    }

    #[test]
    fn refuses_hidden_slashes_and_bytes_that_are_not_text() {
        assert_eq!(decode_url_path("a%2fb"), Err(UrlPathError::EncodedSlash));
        assert_eq!(decode_url_path("a%2Fb"), Err(UrlPathError::EncodedSlash));
        assert_eq!(decode_url_path("%ff"), Err(UrlPathError::NotUtf8));
        assert_eq!(decode_url_path("%c0%ae%c0%ae"), Err(UrlPathError::NotUtf8));
    }

    #[test]
    fn names_a_container_or_a_blob_in_it() {
        assert_eq!(blob("photos"), Ok(("photos".into(), None)));
        assert_eq!(
            blob("photos/2024/cat%20one.jpg"),
            Ok(("photos".into(), Some("2024/cat one.jpg".into())))
        );
        assert_eq!(blob("ph%6ftos/x"), Ok(("photos".into(), Some("x".into()))));
    }

    #[test]
    fn refuses_what_would_name_another_resource() {
        let path = |e: PathError| Err(UrlPathError::Path(e));
        assert_eq!(blob("photos/../x"), path(PathError::DotSegment));
        assert_eq!(blob("photos/%2e%2e/x"), path(PathError::DotSegment));
        assert_eq!(blob("photos/%2E/x"), path(PathError::DotSegment));
        assert_eq!(blob("photos/%252e%252e/x"), path(PathError::PercentEncoded));
        assert_eq!(blob("photos/a%5cb"), path(PathError::Backslash));
        assert_eq!(blob("photos/a%00b"), path(PathError::ControlCharacter));
        assert_eq!(blob("photos/a//b"), path(PathError::EmptySegment));
        assert_eq!(blob("photos/a%2f..%2fb"), Err(UrlPathError::EncodedSlash));
        assert!(matches!(
            blob("Photos/x"),
            Err(UrlPathError::Container { .. })
        ));
        assert!(matches!(
            blob("photos/"),
            Err(UrlPathError::EmptyBlobPath(_))
        ));
        assert_eq!(
            blob("photos/").unwrap_err().to_string(),
            "empty blob path; the container itself is /blob/photos"
        );
    }
}
