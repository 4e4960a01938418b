//! What every response of every Valet server carries, whatever answered it.

use http::{header, HeaderMap, HeaderValue};

/// Adds the headers every response gets: no key in a URL leaks to another site through
/// `Referer`, and no content is sniffed into a type that runs.
pub fn protect(headers: &mut HeaderMap) {
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// The content type of plain-text answers (`/healthz`).
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
