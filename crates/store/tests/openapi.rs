//! The OpenAPI document (`openapi.json`, served at `GET /openapi.json`) against the router:
//! every route in `valet_store::ROUTES` is documented and nothing else is; every documented
//! route answers a real store (something other than `404`/`405`), and every other method on a
//! documented path is `405`; the error codes are exactly those `src/error.rs` produces.

mod support;

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::*;

fn document() -> Value {
    serde_json::from_str(valet_store::OPENAPI).expect("openapi.json is JSON")
}

/// `(METHOD, path template)` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
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

const METHODS: [&str; 8] = [
    "GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE",
];

fn routes() -> BTreeSet<(String, String)> {
    valet_store::ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect()
}

/// Every `$ref` in `value` points at something in `doc`.
fn check_refs(doc: &Value, value: &Value, at: &str) {
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
                    check_refs(doc, v, &format!("{at}/{k}"));
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_refs(doc, v, &format!("{at}/{i}"));
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_describes_exactly_the_routes_of_the_router() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented = documented(&doc);
    let routes = routes();
    let missing: Vec<_> = routes.difference(&documented).collect();
    assert!(missing.is_empty(), "routes not documented: {missing:?}");
    let extra: Vec<_> = documented.difference(&routes).collect();
    assert!(extra.is_empty(), "documented but not routes: {extra:?}");
    check_refs(&doc, &doc, "#");
    // Every operation says what success looks like, and every templated path names its
    // parameters.
    for (method, path) in &documented {
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

#[test]
fn the_documented_security_is_the_key_in_the_query_or_the_valet_header() {
    let doc = document();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["vk"]["in"], "query");
    assert_eq!(schemes["vk"]["name"], "vk");
    assert_eq!(schemes["valet"]["scheme"], "Valet");
    for public in ["/healthz", "/metrics", "/openapi.json"] {
        assert_eq!(
            doc["paths"][public]["get"]["security"],
            serde_json::json!([]),
            "{public}"
        );
    }
}

/// Codes the store can produce, read from the one mapping function's source (as
/// `tests/hygiene.rs` does for `docs/ERRORS.md`).
fn codes_in_source() -> BTreeSet<String> {
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/error.rs")).unwrap();
    let mut codes: BTreeSet<String> = src
        .split("StatusCode::")
        .skip(1)
        .filter_map(|chunk| chunk.split('"').nth(1).map(str::to_owned))
        .filter(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
        .collect();
    // `Denial::code()`: the key crate's denials.
    for denial in [
        "key_invalid",
        "key_expired",
        "key_not_yet_valid",
        "out_of_scope",
        "op_not_allowed",
        "ip_not_allowed",
    ] {
        codes.insert(denial.into());
    }
    codes
}

#[test]
fn the_error_codes_are_exactly_those_the_store_produces() {
    let doc = document();
    let schema = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    let documented: BTreeSet<String> = schema
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(documented, codes_in_source());
}

/// A concrete request path for a template.
fn concrete(template: &str) -> String {
    template
        .replace("{container}", "files")
        .replace("{path}", "docs/a.txt")
}

#[tokio::test]
async fn every_documented_route_answers_and_other_methods_do_not() {
    let s = TestStore::start().await;
    let doc = document();
    let documented = documented(&doc);
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let url = s.url(&concrete(path));
        for method in METHODS {
            let response = s
                .http
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .send()
                .await
                .unwrap();
            let status = response.status();
            if documented.contains(&(method.to_owned(), path.clone())) {
                // No key: a blob route refuses with 401, the others answer.
                assert!(
                    status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but answers {status}"
                );
            } else if method == "OPTIONS" {
                // CORS preflight is answered on any path.
                assert_eq!(status, StatusCode::NO_CONTENT, "{method} {path}");
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not documented but answers {status}"
                );
            }
        }
    }
    // And a path that is not documented is not there.
    for path in ["/", "/nowhere", "/v1/keys", "/blob"] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn the_document_is_served_without_a_key() {
    let s = TestStore::start().await;
    let r = s.http.get(s.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served: Value = r.json().await.unwrap();
    assert_eq!(served, document());
}
