//! The OpenAPI document (`openapi.json`, served at `GET /openapi.json`) against the router:
//! every route in `valet_store::ROUTES` is documented and nothing else is; every documented
//! route answers a real store (something other than `404`/`405`), and every other method on a
//! documented path is `405`; the error codes are exactly those `src/error.rs` produces.

mod support;

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;
use support::*;
use valet_testkit::openapi;

fn document() -> Value {
    openapi::parse(valet_store::OPENAPI)
}

#[test]
fn the_document_describes_exactly_the_routes_of_the_router() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented = openapi::operations(&doc);
    openapi::check_same_operations(&documented, &openapi::routes(valet_store::ROUTES));
    openapi::check_refs(&doc);
    // Every operation says what success looks like, and every templated path names its
    // parameters.
    openapi::check_operations(&doc, &documented);
}

#[test]
fn the_documented_security_is_the_key_in_the_query_or_the_valet_header() {
    let doc = document();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["vk"]["in"], "query");
    assert_eq!(schemes["vk"]["name"], "vk");
    assert_eq!(schemes["valet"]["scheme"], "Valet");
    // The key travels one way or the other, never both: only the security schemes name it, so
    // no operation has a `vk` parameter of its own beside them.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (name, op) in item.as_object().unwrap() {
            let params = item["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(op["parameters"].as_array().into_iter().flatten());
            for param in params {
                assert_ne!(
                    param["name"], "vk",
                    "{name} {path}: vk is a security scheme"
                );
            }
        }
    }
    for public in ["/healthz", "/metrics", "/openapi.json"] {
        assert_eq!(
            doc["paths"][public]["get"]["security"],
            serde_json::json!([]),
            "{public}"
        );
    }
}

#[test]
fn the_error_codes_are_exactly_those_the_store_produces() {
    assert_eq!(openapi::error_codes(&document()), codes_in_source());
}

/// A concrete request path for a template.
fn concrete(template: &str) -> String {
    openapi::concrete(template, &[("container", "files"), ("path", "docs/a.txt")])
}

#[tokio::test]
async fn every_documented_route_answers_and_other_methods_do_not() {
    let s = TestStore::start().await;
    let doc = document();
    let documented = openapi::operations(&doc);
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    let answers = openapi::answers(&s.http, paths, |p| s.url(&concrete(p))).await;
    for (method, path, status) in answers {
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

/// The document says what the store checks: the path pattern is the key crate's own description
/// of a segment, so that the rules and the document cannot drift apart.
#[test]
fn the_path_parameter_is_described_by_the_key_crates_rules() {
    let doc = document();
    let schema = &doc["components"]["parameters"]["BlobPath"]["schema"];
    assert_eq!(schema["pattern"], valet_key::SEGMENT_PATTERN);
    assert_eq!(schema["maxLength"], valet_key::MAX_SEGMENT_LEN);
}
