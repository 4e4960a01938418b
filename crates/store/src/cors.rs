//! CORS, so that a browser page can use a valet key directly against the store.
//!
//! Preflights are answered without a key (a browser cannot attach one to them). Responses name
//! the caller's origin only if it is allowed, and expose the headers a download or resumable
//! upload needs to read.

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::body::ResponseBody;

/// Which origins may call the store from a browser.
#[derive(Debug, Clone, Default)]
pub enum AllowedOrigins {
    /// None: no CORS headers at all.
    #[default]
    None,
    /// Any origin (`*`).
    Any,
    /// These exact origins (`https://app.example.com`).
    List(Vec<String>),
}

impl AllowedOrigins {
    /// From a configuration list: empty is none, `*` is any.
    pub fn from_list(origins: &[String]) -> AllowedOrigins {
        if origins.is_empty() {
            AllowedOrigins::None
        } else if origins.iter().any(|o| o == "*") {
            AllowedOrigins::Any
        } else {
            AllowedOrigins::List(
                origins
                    .iter()
                    .map(|o| o.trim_end_matches('/').to_owned())
                    .collect(),
            )
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if it is allowed.
    fn allow(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        match self {
            AllowedOrigins::None => None,
            AllowedOrigins::Any => Some(HeaderValue::from_static("*")),
            AllowedOrigins::List(list) => {
                let text = origin.to_str().ok()?;
                list.iter().any(|o| o == text).then(|| origin.clone())
            }
        }
    }

    /// Adds CORS headers to an actual (non-preflight) response.
    pub fn decorate(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        if matches!(self, AllowedOrigins::List(_)) {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(allowed) = self.allow(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(
                    "ETag, Content-Range, Content-Length, Content-Disposition, Last-Modified, x-valet-sha256",
                ),
            );
        }
    }

    /// Answers a preflight `OPTIONS` request. Allowed or not, the answer is 204; without the
    /// allow headers the browser refuses the real request itself.
    pub fn preflight(&self, headers: &HeaderMap) -> Response<ResponseBody> {
        let mut response = Response::new(ResponseBody::Empty);
        *response.status_mut() = StatusCode::NO_CONTENT;
        let out = response.headers_mut();
        if matches!(self, AllowedOrigins::List(_)) {
            out.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        let requested = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        let method_ok = requested
            .is_some_and(|m| [Method::GET, Method::HEAD, Method::PUT, Method::DELETE].contains(&m));
        if let (Some(allowed), true) = (self.allow(headers.get(header::ORIGIN)), method_ok) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
            out.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD, PUT, DELETE"),
            );
            out.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "Authorization, Content-Type, Content-MD5, x-valet-sha256, Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since",
                ),
            );
            out.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        response
    }
}
