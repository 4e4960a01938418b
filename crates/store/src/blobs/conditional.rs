//! Conditional requests (RFC 9110 §13): `If-Match`, `If-None-Match`, `If-Modified-Since`,
//! `If-Unmodified-Since` and `If-Range`, evaluated against a blob's ETag and modification time.
//!
//! The same evaluation serves reads (where a match of `If-None-Match` means 304) and writes
//! (where it means 412), and a write evaluates it under the commit lock, against the blob as
//! it is at that moment, so that `If-Match` is a real compare-and-swap.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, HeaderMap, HeaderValue};

use super::BlobMeta;
use crate::error::StoreError;

/// `*` or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityTags {
    /// `*`: any current representation.
    Any,
    /// The tags, each with its quotes and any `W/` prefix.
    List(Vec<String>),
}

/// The preconditions of a request.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    if_match: Option<EntityTags>,
    if_none_match: Option<EntityTags>,
    if_modified_since: Option<SystemTime>,
    if_unmodified_since: Option<SystemTime>,
}

/// What the preconditions say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Carry on.
    Proceed,
    /// 304 Not Modified (reads only).
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

impl Preconditions {
    /// Reads the precondition headers. Invalid dates are ignored, as RFC 9110 requires; an
    /// `If-Match` or `If-None-Match` that is neither `*` nor a list of entity tags is refused
    /// (`bad_request`) rather than read as a list of none, which would quietly turn a
    /// client's mistyped condition into "no tag matches".
    pub fn from_headers(headers: &HeaderMap) -> Result<Preconditions, StoreError> {
        let tags = |name: header::HeaderName| {
            headers
                .get(&name)
                .map(|value| {
                    parse_tags(value).ok_or_else(|| {
                        StoreError::BadRequest(format!(
                            "{name} is not `*` or a list of entity tags (\"tag\" or W/\"tag\")"
                        ))
                    })
                })
                .transpose()
        };
        Ok(Preconditions {
            if_match: tags(header::IF_MATCH)?,
            if_none_match: tags(header::IF_NONE_MATCH)?,
            if_modified_since: headers.get(header::IF_MODIFIED_SINCE).and_then(parse_date),
            if_unmodified_since: headers
                .get(header::IF_UNMODIFIED_SINCE)
                .and_then(parse_date),
        })
    }

    /// Whether the request sends a condition on the blob's current version: `If-Match` (even
    /// `*`), `If-None-Match` other than `*`, `If-Modified-Since`, `If-Unmodified-Since`, valid
    /// or not. Its answer (412 or not) tells whether that version is the one named, so a write
    /// by a key that may not read must not send one: `If-Match: "<sha256 of a guess>"` would
    /// confirm a guess of the contents. `If-None-Match: *` alone is a create-only write.
    pub fn compare_current(headers: &HeaderMap) -> bool {
        let create_only = |v: &HeaderValue| v.as_bytes().trim_ascii() == b"*";
        headers.contains_key(header::IF_MATCH)
            || headers.contains_key(header::IF_MODIFIED_SINCE)
            || headers.contains_key(header::IF_UNMODIFIED_SINCE)
            || headers
                .get_all(header::IF_NONE_MATCH)
                .iter()
                .any(|v| !create_only(v))
    }

    /// Whether the request is `If-None-Match: *`, a create-only write.
    pub fn is_create_only(&self) -> bool {
        self.if_none_match == Some(EntityTags::Any)
    }

    /// Evaluates against the current blob (`None` if absent), in the order of RFC 9110 §13.2.2.
    /// `read` is true for GET and HEAD.
    pub fn evaluate(&self, current: Option<&BlobMeta>, read: bool) -> Verdict {
        if let Some(tags) = &self.if_match {
            if !current.is_some_and(|m| matches(tags, m.etag(), true)) {
                return Verdict::Failed;
            }
        } else if let (Some(since), Some(m)) = (self.if_unmodified_since, current) {
            if seconds(m.modified) > since {
                return Verdict::Failed;
            }
        }
        if let Some(tags) = &self.if_none_match {
            if current.is_some_and(|m| matches(tags, m.etag(), false)) {
                return if read {
                    Verdict::NotModified
                } else {
                    Verdict::Failed
                };
            }
        } else if let (true, Some(since), Some(m)) = (read, self.if_modified_since, current) {
            if seconds(m.modified) <= since {
                return Verdict::NotModified;
            }
        }
        Verdict::Proceed
    }
}

/// Whether a `Range` may be honoured given `If-Range`: only if the validator still matches.
pub fn if_range_holds(headers: &HeaderMap, meta: &BlobMeta) -> bool {
    let Some(value) = headers.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    let text = text.trim();
    if text.starts_with('"') {
        return text == meta.etag();
    }
    parse_date(value).is_some_and(|date| seconds(meta.modified) == date)
}

fn matches(tags: &EntityTags, etag: &str, strong: bool) -> bool {
    match tags {
        EntityTags::Any => true,
        EntityTags::List(list) => list.iter().any(|tag| {
            if strong {
                tag == etag
            } else {
                tag.strip_prefix("W/").unwrap_or(tag) == etag
            }
        }),
    }
}

/// Parses `*` or a comma-separated list of (possibly weak) quoted entity tags (RFC 9110
/// §8.8.3: `etagc` is `!`, `#`-`~` or obs-text), empty list elements allowed; `None` for
/// anything else.
fn parse_tags(value: &HeaderValue) -> Option<EntityTags> {
    let is_ows = |b: u8| b == b' ' || b == b'\t';
    let etagc = |b: u8| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80;
    let text = value.as_bytes().trim_ascii();
    if text == b"*" {
        return Some(EntityTags::Any);
    }
    let mut tags = Vec::new();
    let mut rest = text;
    loop {
        // Empty list elements (`, ,`) are allowed and skipped.
        while let [b, tail @ ..] = rest {
            if !is_ows(*b) && *b != b',' {
                break;
            }
            rest = tail;
        }
        if rest.is_empty() {
            return Some(EntityTags::List(tags));
        }
        let (weak, quoted) = match rest.strip_prefix(b"W/") {
            Some(tail) => ("W/", tail),
            None => ("", rest),
        };
        let inner = quoted.strip_prefix(b"\"")?;
        // A tag may hold a `,`; it ends at the next `"`.
        let end = inner.iter().position(|&b| b == b'"')?;
        if !inner[..end].iter().all(|&b| etagc(b)) {
            return None;
        }
        // obs-text is kept byte for byte; an ETag of ours is always ASCII.
        tags.push(format!(
            "{weak}\"{}\"",
            String::from_utf8_lossy(&inner[..end])
        ));
        rest = &inner[end + 1..];
        while let [b, tail @ ..] = rest {
            if !is_ows(*b) {
                break;
            }
            rest = tail;
        }
        match rest {
            [] => return Some(EntityTags::List(tags)),
            [b',', ..] => {}
            _ => return None,
        }
    }
}

fn parse_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

/// HTTP dates have whole seconds; compare at that precision.
fn seconds(time: SystemTime) -> SystemTime {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> BlobMeta {
        BlobMeta::new(
            3,
            [0xab; 32],
            "text/plain".into(),
            UNIX_EPOCH + Duration::from_secs(1_000_000),
        )
    }

    fn pre(pairs: &[(header::HeaderName, &str)]) -> Preconditions {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        Preconditions::from_headers(&h).unwrap()
    }

    #[test]
    fn entity_tag_lists_parse() {
        let v = HeaderValue::from_static(r#""a", W/"b",  "c,d", ,"#);
        let want = vec!["\"a\"".to_owned(), "W/\"b\"".into(), "\"c,d\"".into()];
        assert_eq!(parse_tags(&v), Some(EntityTags::List(want)));
        assert_eq!(
            parse_tags(&HeaderValue::from_static("*")),
            Some(EntityTags::Any)
        );
        assert_eq!(
            parse_tags(&HeaderValue::from_static("")),
            Some(EntityTags::List(vec![]))
        );
    }

    #[test]
    fn what_is_not_an_entity_tag_list_is_refused() {
        for bad in [
            "0", "abc", "\"a", "a\"", "W/a", "\"a b\"", "*, \"a\"", "\"a\"x", "w/\"a\"",
        ] {
            assert_eq!(parse_tags(&HeaderValue::from_static(bad)), None, "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("nope"));
        let err = Preconditions::from_headers(&h).unwrap_err();
        assert_eq!(err.status_and_code().1, "bad_request");
        assert!(err.to_string().contains("if-none-match"), "{err}");
    }

    #[test]
    fn reads_get_304_and_writes_get_412() {
        let m = meta();
        let etag = m.etag().to_owned();
        let inm = pre(&[(header::IF_NONE_MATCH, &etag)]);
        assert_eq!(inm.evaluate(Some(&m), true), Verdict::NotModified);
        assert_eq!(inm.evaluate(Some(&m), false), Verdict::Failed);
        let weak = pre(&[(header::IF_NONE_MATCH, &format!("W/{etag}"))]);
        assert_eq!(weak.evaluate(Some(&m), true), Verdict::NotModified);
        let other = pre(&[(header::IF_NONE_MATCH, "\"zz\"")]);
        assert_eq!(other.evaluate(Some(&m), true), Verdict::Proceed);
        let ims = pre(&[(
            header::IF_MODIFIED_SINCE,
            &httpdate::fmt_http_date(m.modified),
        )]);
        assert_eq!(ims.evaluate(Some(&m), true), Verdict::NotModified);
        let older = httpdate::fmt_http_date(m.modified - Duration::from_secs(1));
        assert_eq!(
            pre(&[(header::IF_MODIFIED_SINCE, &older)]).evaluate(Some(&m), true),
            Verdict::Proceed
        );
    }

    #[test]
    fn if_match_is_strong_and_needs_a_blob() {
        let m = meta();
        let etag = m.etag().to_owned();
        assert_eq!(
            pre(&[(header::IF_MATCH, &etag)]).evaluate(Some(&m), false),
            Verdict::Proceed
        );
        assert_eq!(
            pre(&[(header::IF_MATCH, &format!("W/{etag}"))]).evaluate(Some(&m), false),
            Verdict::Failed
        );
        assert_eq!(
            pre(&[(header::IF_MATCH, "*")]).evaluate(None, false),
            Verdict::Failed
        );
        assert_eq!(
            pre(&[(header::IF_MATCH, "*")]).evaluate(Some(&m), false),
            Verdict::Proceed
        );
        let create = pre(&[(header::IF_NONE_MATCH, "*")]);
        assert!(create.is_create_only());
        assert_eq!(create.evaluate(Some(&m), false), Verdict::Failed);
        assert_eq!(create.evaluate(None, false), Verdict::Proceed);
    }
}
