//! The OpenAPI document (`openapi.json`, served at `GET /openapi.json`) against the router:
//! every route in `valet_gate::ROUTES` is documented and nothing else is, apart from the
//! configured routes the document describes (marked `x-valet-route: configured`: those of
//! `valet serve`'s default configuration); every documented route answers a real gate
//! (something other than `404`/`405`), and every other method on a documented path is `405`;
//! the error codes are exactly those `src/error.rs` produces.

mod support;

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;
use support::*;
use valet_testkit::openapi;

fn document() -> Value {
    openapi::parse(valet_gate::OPENAPI)
}

fn is_configured(doc: &Value, path: &str) -> bool {
    doc["paths"][path]["x-valet-route"] == "configured"
}

#[test]
fn the_document_describes_exactly_the_routes_of_the_router() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented = openapi::operations(&doc);
    let built_in: BTreeSet<_> = documented
        .iter()
        .filter(|(_, p)| !is_configured(&doc, p))
        .cloned()
        .collect();
    openapi::check_same_operations(&built_in, &openapi::routes(valet_gate::ROUTES));
    openapi::check_refs(&doc);
    openapi::check_operations(&doc, &documented);
}

#[test]
fn configured_routes_in_the_document_are_those_of_the_default_configuration() {
    let doc = document();
    let defaults = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../valet/src/defaults.toml"
    ))
    .unwrap();
    let configured: Vec<&String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|p| is_configured(&doc, p))
        .collect();
    assert!(!configured.is_empty());
    for path in configured {
        // `/files/{path}` in OpenAPI is `/files/{*path}` in a route.
        let (head, last) = path.rsplit_once('/').unwrap();
        let route = format!("path = \"{head}/{}\"", last.replacen('{', "{*", 1));
        assert!(defaults.contains(&route), "{route} not in defaults.toml");
    }
}

#[test]
fn the_documented_security_is_bearer_and_none_for_operations() {
    let doc = document();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
    for public in ["/healthz", "/metrics", "/openapi.json"] {
        assert_eq!(
            doc["paths"][public]["get"]["security"],
            serde_json::json!([]),
            "{public}"
        );
    }
}

/// Codes the gate can produce, read from the one mapping function's source.
fn codes_in_source() -> BTreeSet<String> {
    openapi::codes_in_source(concat!(env!("CARGO_MANIFEST_DIR"), "/src/error.rs"))
}

#[test]
fn the_error_codes_are_exactly_those_the_gate_produces() {
    assert_eq!(openapi::error_codes(&document()), codes_in_source());
}

/// A concrete request path for a template.
fn concrete(template: &str) -> String {
    openapi::concrete(template, &[("id", &"0".repeat(32)), ("path", "docs/a.txt")])
}

#[tokio::test]
async fn every_documented_route_answers_and_other_methods_do_not() {
    let s = Stack::start().await;
    let doc = document();
    let documented = openapi::operations(&doc);
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    let answers = openapi::answers(&s.http, paths, |p| s.gate_url(&concrete(p))).await;
    for (method, path, status) in answers {
        if documented.contains(&(method.to_owned(), path.clone())) {
            // Without credentials: the key API and routes refuse with 401, the rest answer.
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but answers {status}"
            );
        } else {
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is not documented but answers {status}"
            );
        }
    }
    for path in ["/", "/nowhere", "/v1/nowhere", "/v1/keys/x/y/z"] {
        let r = s.http.get(s.gate_url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn the_document_is_served_without_credentials() {
    let s = Stack::start().await;
    let r = s
        .http
        .get(s.gate_url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served: Value = r.json().await.unwrap();
    assert_eq!(served, document());
}
