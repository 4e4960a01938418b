//! Reading a store request: which blob or container it names, and which key it carries.
//!
//! The URL path is decoded exactly once, segment by segment, and the result validated by the
//! key crate's strict path rules; an encoded `/` inside a segment, invalid UTF-8, a `.` or `..`
//! in any encoding, or a `%XX` left over from double encoding are all `bad_path`. What is
//! authorized is therefore byte for byte what is served.

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

/// The query parameters the store understands.
#[derive(Debug, Default)]
pub struct Query {
    /// `vk`: the key, if given in the URL.
    pub key: Option<String>,
    /// `prefix` of a listing.
    pub prefix: Option<String>,
    /// `cursor` of a listing.
    pub cursor: Option<String>,
    /// `limit` of a listing.
    pub limit: Option<String>,
    keys_seen: usize,
}

impl Query {
    /// Parses a query string; unknown parameters are ignored.
    pub fn parse(query: Option<&str>) -> Query {
        let mut q = Query::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*name {
                "vk" => {
                    q.keys_seen += 1;
                    q.key = Some(value.into_owned());
                }
                "prefix" => q.prefix = Some(value.into_owned()),
                "cursor" => q.cursor = Some(value.into_owned()),
                "limit" => q.limit = Some(value.into_owned()),
                _ => {}
            }
        }
        q
    }
}

/// The request's key: from `?vk=` or `Authorization: Valet …`, and never both, so that no
/// proxy or client library can make the store see a different key than the client meant.
pub fn key<'a>(query: &'a Query, headers: &'a HeaderMap) -> Result<&'a str, StoreError> {
    let mut header_keys = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("valet").then(|| rest.trim())
        });
    let header_key = header_keys.next();
    let total = query.keys_seen + usize::from(header_key.is_some()) + header_keys.count();
    if total > 1 {
        return Err(StoreError::BadRequest(
            "the request carries more than one key; send exactly one, in ?vk= or in Authorization"
                .into(),
        ));
    }
    query
        .key
        .as_deref()
        .or(header_key)
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
        let q = Query::parse(Some("vk=abc"));
        assert_eq!(key(&q, &headers).unwrap(), "abc");
        headers.insert(header::AUTHORIZATION, "Valet def".parse().unwrap());
        assert!(matches!(key(&q, &headers), Err(StoreError::BadRequest(_))));
        assert_eq!(key(&Query::parse(None), &headers).unwrap(), "def");
        assert!(matches!(
            key(&Query::parse(Some("vk=a&vk=b")), &HeaderMap::new()),
            Err(StoreError::BadRequest(_))
        ));
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert!(matches!(
            key(&Query::parse(None), &bearer),
            Err(StoreError::KeyMissing)
        ));
    }
}
