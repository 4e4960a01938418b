//! The OpenAPI document (`openapi.json`, served at `GET /openapi.json`) against the router:
//! every route in `valet_gate::ROUTES` is documented and nothing else is, apart from the
//! configured routes the document describes (marked `x-valet-route: configured`: those of
//! `valet serve`'s default configuration); every documented route answers a real gate
//! (something other than `404`/`405`), and every other method on a documented path is `405`;
//! the error codes are exactly those `src/error.rs` produces.

mod support;

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::*;

const METHODS: [&str; 8] = [
    "GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE",
];

fn document() -> Value {
    serde_json::from_str(valet_gate::OPENAPI).expect("openapi.json is JSON")
}

fn is_configured(doc: &Value, path: &str) -> bool {
    doc["paths"][path]["x-valet-route"] == "configured"
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

fn routes() -> BTreeSet<(String, String)> {
    valet_gate::ROUTES
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
    let built_in: BTreeSet<_> = documented
        .iter()
        .filter(|(_, p)| !is_configured(&doc, p))
        .cloned()
        .collect();
    let routes = routes();
    let missing: Vec<_> = routes.difference(&built_in).collect();
    assert!(missing.is_empty(), "routes not documented: {missing:?}");
    let extra: Vec<_> = built_in.difference(&routes).collect();
    assert!(extra.is_empty(), "documented but not routes: {extra:?}");
    check_refs(&doc, &doc, "#");
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
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/error.rs")).unwrap();
    src.split("StatusCode::")
        .skip(1)
        .filter_map(|chunk| chunk.split('"').nth(1).map(str::to_owned))
        .filter(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
        .collect()
}

#[test]
fn the_error_codes_are_exactly_those_the_gate_produces() {
    let doc = document();
    let documented: BTreeSet<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
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
        .replace("{id}", &"0".repeat(32))
        .replace("{path}", "docs/a.txt")
}

#[tokio::test]
async fn every_documented_route_answers_and_other_methods_do_not() {
    let s = Stack::start().await;
    let doc = document();
    let documented = documented(&doc);
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let url = s.gate_url(&concrete(path));
        for method in METHODS {
            let response = s
                .http
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .send()
                .await
                .unwrap();
            let status = response.status();
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
