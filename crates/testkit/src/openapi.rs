//! An OpenAPI 3.1 document (as `serde_json::Value`) against a server's router.
//!
//! A server crate exports its route list (`ROUTES`: `(METHOD, path template)` pairs) and its
//! document (`OPENAPI`); its `tests/openapi.rs` checks with these that the two agree, that
//! every `$ref` resolves, that every operation documents a success and names the parameters of
//! its templated path, and that a real server answers every documented operation and refuses
//! every other method on a documented path.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// `(METHOD, path template)`: an operation of the document, or a route of the router.
pub type Operation = (String, String);

/// The methods an OpenAPI path item can describe (as its lower-case keys) and that a server
/// is tried with.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE",
];

/// The document in `text`; panics unless it is JSON.
pub fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("openapi.json is JSON")
}

/// `(METHOD, path template)` of every operation in the document.
pub fn operations(doc: &Value) -> BTreeSet<Operation> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (key, _) in item.as_object().expect("a path item") {
            if METHODS.iter().any(|m| m.eq_ignore_ascii_case(key)) {
                out.insert((key.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// A router's route list as a set of operations.
pub fn routes(routes: &[(&str, &str)]) -> BTreeSet<Operation> {
    routes
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect()
}

/// Asserts that `documented` and `routes` are the same operations, naming those missing on
/// either side.
pub fn check_same_operations(documented: &BTreeSet<Operation>, routes: &BTreeSet<Operation>) {
    let missing: Vec<_> = routes.difference(documented).collect();
    assert!(missing.is_empty(), "routes not documented: {missing:?}");
    let extra: Vec<_> = documented.difference(routes).collect();
    assert!(extra.is_empty(), "documented but not routes: {extra:?}");
}

/// Asserts that every `$ref` in the document points at something in it.
pub fn check_refs(doc: &Value) {
    check_refs_in(doc, doc, "#");
}

/// Every `$ref` in `value` (found at `at`) points at something in `doc`.
fn check_refs_in(doc: &Value, value: &Value, at: &str) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    let target = v.as_str().expect("a $ref is a string");
                    let pointer = target.strip_prefix('#').expect("local $ref");
                    assert!(
                        doc.pointer(pointer).is_some(),
                        "{at}: $ref {target} points nowhere"
                    );
                } else {
                    check_refs_in(doc, v, &format!("{at}/{k}"));
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_refs_in(doc, v, &format!("{at}/{i}"));
            }
        }
        _ => {}
    }
}

/// Asserts that every one of `operations` says what success looks like (a `2XX` response),
/// and that every `{name}` in its path template is a path parameter of the operation or of its
/// path item (directly or through a `$ref`).
pub fn check_operations<'a>(doc: &Value, operations: impl IntoIterator<Item = &'a Operation>) {
    for (method, path) in operations {
        let item = &doc["paths"][path];
        let op = &item[method.to_ascii_lowercase()];
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} documents no success"
        );
        for name in path.split('/').filter_map(|s| s.strip_prefix('{')) {
            let name = name.trim_end_matches('}');
            let params: Vec<&Value> = item["parameters"]
                .as_array()
                .into_iter()
                .chain(op["parameters"].as_array())
                .flatten()
                .map(|p| match p["$ref"].as_str() {
                    Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
                    None => p,
                })
                .collect();
            assert!(
                params
                    .iter()
                    .any(|p| p["in"] == "path" && p["name"] == name),
                "{method} {path}: no path parameter {name}"
            );
        }
    }
}

/// The values of the document's `ErrorCode` enum (`components.schemas.ErrorCode.enum`).
pub fn error_codes(doc: &Value) -> BTreeSet<String> {
    doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

/// The error codes a server's error mapping names, read from its source at `path`: the first
/// string after each `StatusCode::` (as in `(StatusCode::NOT_FOUND, "not_found")`) that is a
/// code (lower case and `_` only).
pub fn codes_in_source(path: &str) -> BTreeSet<String> {
    let src = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    src.split("StatusCode::")
        .skip(1)
        .filter_map(|chunk| chunk.split('"').nth(1).map(str::to_owned))
        .filter(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
        .collect()
}

/// A concrete request path for a path template: each `{name}` of `values` replaced by its
/// value.
pub fn concrete(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_owned(), |path, (name, value)| {
            path.replace(&format!("{{{name}}}"), value)
        })
}

/// What a real server answers, without credentials, to each of [`METHODS`] on each of
/// `paths` (templates): `(METHOD, template, status)`, in order. `url` makes the request URL of
/// a template.
pub async fn answers<'a>(
    http: &reqwest::Client,
    paths: impl IntoIterator<Item = &'a String>,
    url: impl Fn(&str) -> String,
) -> Vec<(&'static str, String, StatusCode)> {
    let mut out = Vec::new();
    for path in paths {
        let url = url(path);
        for method in METHODS {
            let response = http
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .send()
                .await
                .unwrap();
            out.push((method, path.clone(), response.status()));
        }
    }
    out
}
