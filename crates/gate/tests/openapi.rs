//! The OpenAPI document against the router: the fixed part (`openapi.json`) documents every
//! route in `valet_gate::ROUTES` and nothing else; the document a gate serves at
//! `GET /openapi.json` adds exactly its configured routes (marked `x-valet-route: configured`),
//! generated from its route table; every documented route answers a real gate (something other
//! than `404`/`405`), and every other method on a documented path is `405`; the error codes are
//! exactly those `src/error.rs` produces.

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

/// A route table unlike the default one: methods restricted and not, a placeholder inside the
/// path, a create-only route, a literal-only path, and two routes on one path template (the
/// first answers `GET`, the second `POST`; its own `GET` is shadowed).
const ROUTE_TABLE: &str = r#"
[[routes]]
path = "/docs/{*path}"
delegate = "blob:files/docs/{path}"
methods = ["GET", "HEAD"]

[[routes]]
path = "/drop/{*path}"
delegate = "blob:files/drop/{path}"
roles = ["admin"]
create_only = true
methods = ["PUT"]

[[routes]]
path = "/users/{id}/avatar"
delegate = "blob:users/{id}/avatar"

[[routes]]
path = "/compute/{*rest}"
proxy = "http://{UPSTREAM}"
roles = ["user"]

[[routes]]
path = "/shared/{name}"
delegate = "blob:shared/{name}"
methods = ["GET"]

[[routes]]
path = "/shared/{name}"
proxy = "http://{UPSTREAM}/echo/{name}"
methods = ["POST", "GET"]

[[routes]]
path = "/status"
proxy = "http://{UPSTREAM}"
methods = ["GET"]
"#;

/// A gate with [`ROUTE_TABLE`] instead of the test configuration's routes.
async fn gate_with_route_table() -> Stack {
    Stack::start_with(|c| {
        let first = c.find("[[routes]]").unwrap();
        c.truncate(first);
        c.push_str(ROUTE_TABLE);
    })
    .await
}

/// The document a running gate serves.
async fn served(s: &Stack) -> Value {
    let r = s
        .http
        .get(s.gate_url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

fn configured(doc: &Value) -> BTreeSet<(String, String)> {
    openapi::operations(doc)
        .into_iter()
        .filter(|(_, p)| is_configured(doc, p))
        .collect()
}

#[tokio::test]
async fn the_served_document_lists_exactly_the_configured_routes() {
    let s = gate_with_route_table().await;
    let doc = served(&s).await;
    let all = [
        "GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE",
    ];
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    let mut add = |methods: &[&str], path: &str| {
        for m in methods {
            expected.insert(((*m).to_owned(), path.to_owned()));
        }
    };
    add(&["GET", "HEAD"], "/docs/{path}");
    add(&["PUT"], "/drop/{path}");
    add(&["GET", "HEAD", "PUT", "DELETE"], "/users/{id}/avatar");
    add(&all, "/compute/{rest}");
    add(&["GET", "POST"], "/shared/{name}");
    add(&["GET"], "/status");
    openapi::check_same_operations(&configured(&doc), &expected);
    // Every operation is the route that answers it, with its kind's responses.
    let op = |method: &str, path: &str| doc["paths"][path][method].clone();
    assert_eq!(
        op("get", "/shared/{name}")["x-valet-route-name"],
        "routes[4]"
    );
    assert!(op("get", "/shared/{name}")["responses"]["307"].is_object());
    assert_eq!(
        op("post", "/shared/{name}")["x-valet-route-name"],
        "routes[5]"
    );
    assert!(op("post", "/shared/{name}")["responses"]["502"].is_object());
    assert!(op("post", "/shared/{name}")["responses"]["504"].is_object());
    assert!(op("put", "/drop/{path}")["summary"]
        .as_str()
        .unwrap()
        .starts_with("Create"));
    let rest = &op("get", "/docs/{path}")["parameters"][0];
    assert_eq!(
        (&rest["name"], &rest["in"]),
        (&"path".into(), &"path".into())
    );
    assert_eq!(rest["x-valet-rest"], true);
    for (method, path) in &expected {
        let op = op(&method.to_ascii_lowercase(), path);
        assert_eq!(
            op["security"],
            serde_json::json!([{"bearer": []}]),
            "{method} {path}"
        );
    }
    // No upstream address: that is the gate's internals.
    assert!(!doc.to_string().contains(&s.upstream_addr.to_string()));
    // The rest is the fixed part, unchanged; and the whole is sound.
    let mut fixed = doc.clone();
    let paths = fixed["paths"].as_object_mut().unwrap();
    paths.retain(|_, item| item["x-valet-route"] != "configured");
    assert_eq!(fixed, document());
    openapi::check_refs(&doc);
    openapi::check_operations(&doc, &openapi::operations(&doc));
}

#[tokio::test]
async fn the_served_document_of_the_test_configuration_lists_its_routes() {
    let s = Stack::start().await;
    let doc = served(&s).await;
    let paths: BTreeSet<String> = configured(&doc).into_iter().map(|(_, p)| p).collect();
    let expected: BTreeSet<String> = ["/files/{path}", "/me/{path}", "/api/{rest}", "/v2/{name}"]
        .map(str::to_owned)
        .into();
    assert_eq!(paths, expected);
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
    openapi::concrete(
        template,
        &[
            ("id", &"0".repeat(32)),
            ("path", "docs/a.txt"),
            ("rest", "x"),
            ("name", "thing"),
        ],
    )
}

/// Every documented operation, the configured routes' included, answers a real gate; every
/// other method on a documented path is `405`. Both for the test configuration and for
/// [`ROUTE_TABLE`].
#[tokio::test]
async fn every_documented_route_answers_and_other_methods_do_not() {
    for s in [Stack::start().await, gate_with_route_table().await] {
        let doc = served(&s).await;
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
}

#[tokio::test]
async fn the_document_is_served_without_credentials() {
    let s = Stack::start().await;
    let served = served(&s).await;
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(served["components"], document()["components"]);
    for path in document()["paths"].as_object().unwrap().keys() {
        assert_eq!(served["paths"][path], document()["paths"][path], "{path}");
    }
}
