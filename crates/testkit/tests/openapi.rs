//! The OpenAPI checks fail where a document is wrong.

use serde_json::json;
use valet_testkit::openapi;

fn doc() -> serde_json::Value {
    json!({
        "openapi": "3.1.0",
        "paths": {
            "/blob/{container}/{path}": {
                "parameters": [{"$ref": "#/components/parameters/container"}],
                "get": {
                    "parameters": [{"in": "path", "name": "path"}],
                    "responses": {"200": {"$ref": "#/components/responses/Blob"}}
                },
                "x-valet-route": "configured"
            }
        },
        "components": {
            "parameters": {"container": {"in": "path", "name": "container"}},
            "responses": {"Blob": {"description": "the bytes"}},
            "schemas": {"ErrorCode": {"enum": ["bad_path", "not_found"]}}
        }
    })
}

#[test]
fn a_good_document_passes_every_check() {
    let doc = doc();
    let ops = openapi::operations(&doc);
    assert_eq!(ops, openapi::routes(&[("GET", "/blob/{container}/{path}")]));
    openapi::check_same_operations(&ops, &ops);
    openapi::check_refs(&doc);
    openapi::check_operations(&doc, &ops);
    assert_eq!(
        openapi::error_codes(&doc),
        ["bad_path".to_owned(), "not_found".to_owned()].into()
    );
    assert_eq!(
        openapi::concrete(
            "/blob/{container}/{path}",
            &[("container", "files"), ("path", "a/b")]
        ),
        "/blob/files/a/b"
    );
}

#[test]
#[should_panic(expected = "points nowhere")]
fn a_dangling_ref_fails() {
    let mut doc = doc();
    doc["components"]["responses"] = json!({});
    openapi::check_refs(&doc);
}

#[test]
#[should_panic(expected = "no path parameter container")]
fn an_unnamed_path_parameter_fails() {
    let mut doc = doc();
    doc["paths"]["/blob/{container}/{path}"]["parameters"] = json!([]);
    openapi::check_operations(&doc, &openapi::operations(&doc));
}

#[test]
#[should_panic(expected = "documents no success")]
fn an_operation_without_a_success_fails() {
    let mut doc = doc();
    doc["paths"]["/blob/{container}/{path}"]["get"]["responses"] = json!({"404": {}});
    openapi::check_operations(&doc, &openapi::operations(&doc));
}

#[test]
#[should_panic(expected = "routes not documented")]
fn a_route_not_documented_fails() {
    let doc = doc();
    let routes = openapi::routes(&[("GET", "/blob/{container}/{path}"), ("GET", "/healthz")]);
    openapi::check_same_operations(&openapi::operations(&doc), &routes);
}

#[test]
fn the_codes_in_a_source_are_read_from_its_status_mappings() {
    let dir = std::env::temp_dir().join(format!("valet-testkit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("error.rs");
    std::fs::write(
        &file,
        "(StatusCode::NOT_FOUND, \"not_found\"),\n(StatusCode::BAD_REQUEST, \"Bad Request\"),\n",
    )
    .unwrap();
    let codes = openapi::codes_in_source(file.to_str().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(codes, ["not_found".to_owned()].into());
}
