//! Reading a store request: which blob or container it names, and which key it carries.
//!
//! The URL path is decoded exactly once, segment by segment, and the result validated by the
//! key crate's strict path rules; an encoded `/` inside a segment, invalid UTF-8, a `.` or `..`
//! in any encoding, or a `%XX` left over from double encoding are all `bad_path`. What is
//! authorized is therefore byte for byte what is served.

use std::borrow::Cow;

use http::{header, HeaderMap};
use valet_key::{blob_url_path, BlobPath, Name};

use crate::error::StoreError;

/// The blob (or container) a `/blob/…` request names.
#[derive(Debug, Clone)]
pub struct BlobTarget {
    /// The container.
    pub container: Name,
    /// The blob, or `None` for the container itself (listing).
    pub path: Option<BlobPath>,
}

/// Parses the part of the URL path after `/blob/`, with the decoding the gate uses too.
pub fn blob_target(raw: &str) -> Result<BlobTarget, StoreError> {
    let (container, path) = blob_url_path(raw).map_err(|e| StoreError::BadPath(e.to_string()))?;
    Ok(BlobTarget { container, path })
}

/// The query parameters of a listing.
#[derive(Debug, Default)]
pub struct ListingQuery {
    /// `prefix` of a listing.
    pub prefix: Option<String>,
    /// `cursor` of a listing.
    pub cursor: Option<String>,
    /// `limit` of a listing.
    pub limit: Option<String>,
}

impl ListingQuery {
    /// Parses a query string; unknown parameters (the key among them) are ignored.
    pub fn parse(query: Option<&str>) -> ListingQuery {
        let mut q = ListingQuery::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*name {
                "prefix" => q.prefix = Some(value.into_owned()),
                "cursor" => q.cursor = Some(value.into_owned()),
                "limit" => q.limit = Some(value.into_owned()),
                _ => {}
            }
        }
        q
    }
}

/// The values of every `vk` parameter of a query string, decoded as `form_urlencoded` would.
///
/// A token is base64url, which never needs decoding, so the common case borrows the value
/// straight from the URI: this runs on every request, and decoding and copying a 200-byte
/// token was a visible share of a small download's cost. Anything with a `%` or `+` in it
/// (a name spelled `v%6B`, an escaped value) goes through the full decoder, so the store sees
/// exactly the parameters any other `form_urlencoded` reader of the URL would.
fn query_keys(query: &str) -> impl Iterator<Item = Cow<'_, str>> {
    let escaped = |text: &str| memchr::memchr2(b'%', b'+', text.as_bytes()).is_some();
    query.split('&').filter_map(move |pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if escaped(name) || (name == "vk" && escaped(value)) {
            let (name, value) = form_urlencoded::parse(pair.as_bytes()).next()?;
            return (name == "vk").then_some(value);
        }
        (name == "vk").then_some(Cow::Borrowed(value))
    })
}

/// The request's key: from `?vk=` or `Authorization: Valet …`, and never both, so that no
/// proxy or client library can make the store see a different key than the client meant.
pub fn key<'a>(query: Option<&'a str>, headers: &'a HeaderMap) -> Result<Cow<'a, str>, StoreError> {
    let mut query_keys = query_keys(query.unwrap_or_default());
    let mut header_keys = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("valet").then(|| rest.trim())
        });
    let query_key = query_keys.next();
    let header_key = header_keys.next();
    let total = usize::from(query_key.is_some())
        + usize::from(header_key.is_some())
        + query_keys.count()
        + header_keys.count();
    if total > 1 {
        return Err(StoreError::BadRequest(
            "the request carries more than one key; send exactly one, in ?vk= or in Authorization"
                .into(),
        ));
    }
    query_key
        .or(header_key.map(Cow::Borrowed))
        .ok_or(StoreError::KeyMissing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_once_and_validates() {
        let t = blob_target("photos/2024/caf%C3%A9%20au%20lait.jpg").unwrap();
        assert_eq!(t.container.as_str(), "photos");
        assert_eq!(t.path.unwrap().as_str(), "2024/café au lait.jpg");
        assert!(blob_target("photos").unwrap().path.is_none());
    }

    #[test]
    fn refuses_every_traversal_encoding() {
        for bad in [
            "photos/../x",
            "photos/%2e%2e/x",
            "photos/%2E%2E/x",
            "photos/.%2e/x",
            "photos/a%2f..%2fb",
            "photos/a%2Fb",
            "photos/%252e%252e/x",
            "photos/a%5c..%5cb",
            "photos/a%00b",
            "photos/%c0%ae%c0%ae/x",
            "photos/%ff",
            "photos/",
            "photos//x",
            "photos/./x",
            "Photos/x",
            "%70hotos/../x",
            "..%2fphotos/x",
        ] {
            assert!(blob_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_key_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(key(Some("vk=abc"), &headers).unwrap(), "abc");
        headers.insert(header::AUTHORIZATION, "Valet def".parse().unwrap());
        assert!(matches!(
            key(Some("vk=abc"), &headers),
            Err(StoreError::BadRequest(_))
        ));
        assert_eq!(key(None, &headers).unwrap(), "def");
        assert!(matches!(
            key(Some("vk=a&vk=b"), &HeaderMap::new()),
            Err(StoreError::BadRequest(_))
        ));
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert!(matches!(key(None, &bearer), Err(StoreError::KeyMissing)));
    }

    /// The fast path must find exactly the `vk` parameters a `form_urlencoded` reader finds,
    /// with the same values: otherwise a proxy and the store could disagree on the key.
    #[test]
    fn query_keys_match_form_urlencoded() {
        for query in [
            "",
            "vk",
            "vk=",
            "vk=abc",
            "x=1&vk=abc&y=2",
            "vk=a&vk=b",
            "v%6B=abc",
            "%76%6b=abc&vk=def",
            "vk=a%2Bb",
            "vk=a+b",
            "vk+=a",
            "vkx=a&xvk=b&VK=c",
            "vk=a=b",
            "&&vk=a&&",
            "vk=%zz",
            "prefix=2024%2F&vk=tok.en-_",
        ] {
            let fast: Vec<String> = query_keys(query).map(Cow::into_owned).collect();
            let reference: Vec<String> = form_urlencoded::parse(query.as_bytes())
                .filter(|(name, _)| name == "vk")
                .map(|(_, value)| value.into_owned())
                .collect();
            assert_eq!(fast, reference, "{query}");
        }
        assert!(matches!(
            query_keys("vk=abc").next(),
            Some(Cow::Borrowed("abc"))
        ));
    }

    #[test]
    fn listing_query_ignores_the_key() {
        let q = ListingQuery::parse(Some("vk=abc&prefix=2024%2F&cursor=c&limit=5"));
        assert_eq!(q.prefix.as_deref(), Some("2024/"));
        assert_eq!(q.cursor.as_deref(), Some("c"));
        assert_eq!(q.limit.as_deref(), Some("5"));
    }
}
