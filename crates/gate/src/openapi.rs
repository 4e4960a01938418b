//! The OpenAPI document a gate serves at `GET /openapi.json`: the fixed part (the key API,
//! health, metrics, components) from `openapi.json`, and one path per configured route,
//! generated from the route table the gate runs, so that the document never lists a route the
//! gate does not have, nor misses one it has.
//!
//! Routes are tried in order, so where two routes give the same path template the first one's
//! operation for a method is the one documented, as it is the one that answers. An upstream's
//! address is not in the document: it is the gate's internals.

use http::Method;
use serde_json::{json, Map, Value};

use crate::routes::{Action, Route, RouteTable};

/// The methods an OpenAPI path item can describe, and those a proxy route without `methods`
/// documents.
const METHODS: [Method; 8] = [
    Method::GET,
    Method::HEAD,
    Method::PUT,
    Method::POST,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::TRACE,
];

/// The fixed part of the gate's OpenAPI 3.1 description: everything but the configured routes,
/// which `GET /openapi.json` adds from the route table the gate runs. Here, with what completes
/// it, so that the router needs this module and not the other way round.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The document served for `routes`: made once, at the first request, then shared bytes.
pub(crate) fn served(routes: &RouteTable) -> bytes::Bytes {
    routes
        .document
        .get_or_init(|| document(routes).into())
        .clone()
}

/// The whole document, as JSON text.
pub(crate) fn document(routes: &RouteTable) -> String {
    let mut doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON (tests check)");
    let paths = doc["paths"]
        .as_object_mut()
        .expect("openapi.json has paths (tests check)");
    for route in routes.iter() {
        let (template, names) = route.template();
        let item = paths
            .entry(template)
            .or_insert_with(|| path_item(route))
            .as_object_mut()
            .expect("a path item is an object");
        let methods = route.methods().unwrap_or(&METHODS);
        for method in methods.iter().filter(|m| METHODS.contains(m)) {
            let key = method.as_str().to_ascii_lowercase();
            if !item.contains_key(&key) {
                item.insert(key, operation(route, method, &names));
            }
        }
    }
    serde_json::to_string_pretty(&doc).expect("a JSON value serialises")
}

fn path_item(route: &Route) -> Value {
    let what = match &route.action {
        Action::Delegate(d) => format!(
            "A delegate route: `path = \"{}\"`, `delegate = \"{}\"`{}. The request body is never \
             read: an upload sent with `Expect: 100-continue` (as `curl -L -T` sends it) gets its \
             `307` before a byte of it, and goes to the store.",
            route.pattern(),
            d.resource,
            if d.create_only {
                ", `create_only = true`"
            } else {
                ""
            }
        ),
        Action::Proxy(_) => format!(
            "A proxy route: `path = \"{}\"`. The request is streamed to the route's upstream \
             (without the client's credential and hop-by-hop headers, with the principal and its \
             roles in headers) and its answer streamed back.",
            route.pattern()
        ),
    };
    json!({
        "x-valet-route": "configured",
        "description": format!("{what} {}", roles_text(route)),
    })
}

fn roles_text(route: &Route) -> String {
    if route.roles.is_empty() {
        return "Any authenticated principal.".into();
    }
    let roles: Vec<String> = route.roles.iter().map(|r| format!("`{r}`")).collect();
    format!("Roles allowed: {}.", roles.join(", "))
}

fn operation(route: &Route, method: &Method, names: &[(&str, bool)]) -> Value {
    let mut parameters: Vec<Value> = names
        .iter()
        .map(|(name, rest)| path_parameter(route, name, *rest))
        .collect();
    let id = route.name.replace(['[', ']'], "");
    let verb = method.as_str();
    let operation_id = format!("{id}{}{}", &verb[..1], verb[1..].to_ascii_lowercase());
    let mut op = match &route.action {
        Action::Delegate(d) => {
            parameters.push(json!({"$ref": "#/components/parameters/Accept"}));
            delegate_operation(method, d.create_only)
        }
        Action::Proxy(_) => proxy_operation(method),
    };
    let fields = op.as_object_mut().expect("an operation is an object");
    fields.insert("tags".into(), json!(["routes"]));
    fields.insert("operationId".into(), json!(operation_id));
    fields.insert("x-valet-route-name".into(), json!(route.name));
    fields.insert("security".into(), json!([{"bearer": []}]));
    fields.insert("parameters".into(), Value::Array(parameters));
    op
}

fn path_parameter(route: &Route, name: &str, rest: bool) -> Value {
    let decoded = match route.action {
        Action::Delegate(_) => " Percent-decoded once for the resource; `.`, `..`, an encoded `/`, a backslash or double encoding is `bad_path`.",
        Action::Proxy(_) => "",
    };
    let mut parameter = json!({
        "name": name,
        "in": "path",
        "required": true,
        "schema": capture_schema(route, rest),
    });
    let text = if rest {
        parameter["x-valet-rest"] = json!(true);
        format!(
            "The rest of the request path, `/` included (`{{*{name}}}` in the route); may be empty.{decoded}"
        )
    } else {
        format!("One path segment (`{{{name}}}` in the route).{decoded}")
    };
    parameter["description"] = json!(text);
    parameter
}

/// What a capture may hold, as the OpenAPI serialisation of a path parameter sends it (one
/// segment: a `/` in a value is sent encoded, which the gate refuses). A delegate's capture
/// becomes part of a blob path, so it follows the key crate's rules for a segment; a proxy's
/// is refused only for what could name another path (`GATE.md`, "One reading of the path").
fn capture_schema(route: &Route, rest: bool) -> Value {
    match route.action {
        Action::Delegate(_) => json!({
            "type": "string",
            "minLength": 1,
            "maxLength": valet_key::MAX_SEGMENT_LEN,
            "pattern": DELEGATE_SEGMENT_PATTERN,
        }),
        Action::Proxy(_) => {
            let repeat = if rest { "*" } else { "+" };
            json!({
                "type": "string",
                "pattern": format!("{PROXY_SEGMENT_START}{repeat}$"),
            })
        }
    }
}

/// A delegate's capture: [`valet_key::SEGMENT_PATTERN`] (what a blob path's segment may be),
/// less `%u` and `%U`, which the gate refuses in any path since IIS reads `%u002e` as `.`
/// (`request_path`). `the_delegate_pattern_is_the_key_crates_less_percent_u` keeps the two in step.
const DELEGATE_SEGMENT_PATTERN: &str =
    r"^(?!\.\.?$)(?:[^/\\\u0000-\u001f\u007f-\u009f%]|%(?![0-9A-Fa-f]{2}|[uU])){1,255}$";

/// A proxied segment: not `.` or `..` (also before a `;`), with no `/`, backslash or control
/// character; the `*` or `+` and the end are added per capture.
const PROXY_SEGMENT_START: &str = r"^(?!\.\.?(?:;|$))(?:[^/\\\u0000-\u001f\u007f%]|%(?![uU]))";

fn response(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

fn delegate_operation(method: &Method, create_only: bool) -> Value {
    let (summary, description) = match *method {
        Method::GET => (
            "Download (or list) through the gate",
            "A key with `read` (`list` for a folder) on exactly this resource.",
        ),
        Method::HEAD => (
            "Blob headers through the gate",
            "A key with `read` on exactly this resource.",
        ),
        Method::PUT if create_only => (
            "Create through the gate",
            "A key with `create` (never overwrites) on exactly this resource. Send the body with `Expect: 100-continue`; the client follows the `307` with the same method and body.",
        ),
        Method::PUT => (
            "Upload through the gate",
            "A key with `write` on exactly this resource. Send the body with `Expect: 100-continue`; the client follows the `307` with the same method and body.",
        ),
        _ => (
            "Delete through the gate",
            "A key with `delete` on exactly this resource.",
        ),
    };
    let responses = if *method == Method::HEAD {
        json!({
            "200": {"description": "With `Accept: application/json`: the key (the body of a `GET`, which `HEAD` omits)."},
            "307": response("Redirect"),
            "400": {"description": "`bad_path` (no body: a `HEAD`)."},
            "401": {"description": "`unauthenticated` (no body: a `HEAD`)."},
            "403": {"description": "`forbidden` or `policy_denied` (no body: a `HEAD`)."},
            "429": {"description": "`rate_limited` (no body: a `HEAD`)."},
            "503": {"description": "`ledger_unavailable` (no body: a `HEAD`)."},
        })
    } else {
        json!({
            "200": response("Delegation"),
            "307": response("Redirect"),
            "400": response("BadPath"),
            "401": response("Unauthenticated"),
            "403": response("RouteForbidden"),
            "429": response("RateLimited"),
            "503": response("LedgerUnavailable"),
        })
    };
    json!({"summary": summary, "description": description, "responses": responses})
}

fn proxy_operation(method: &Method) -> Value {
    let mut responses = Map::new();
    responses.insert(
        "2XX".into(),
        json!({"description": "The upstream's answer: its status, headers (without hop-by-hop headers) and body, streamed."}),
    );
    responses.insert("400".into(), response("BadPath"));
    responses.insert("401".into(), response("Unauthenticated"));
    responses.insert(
        "403".into(),
        json!({
            "description": "`forbidden`: the principal has none of the route's roles, or its name or roles cannot be sent as header values.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }),
    );
    responses.insert("413".into(), response("TooLarge"));
    responses.insert("429".into(), response("RateLimited"));
    responses.insert("502".into(), response("UpstreamUnavailable"));
    responses.insert("504".into(), response("UpstreamTimeout"));
    responses.insert(
        "default".into(),
        json!({"description": "Any other answer of the upstream, passed through unchanged."}),
    );
    let mut op = json!({
        "summary": format!("{method} at the route's upstream"),
        "description": "Forwarded with the path in its normal form and the query as it came; the body (if any) is streamed, up to the route's `max_body`.",
        "responses": Value::Object(responses),
    });
    if matches!(
        *method,
        Method::PUT | Method::POST | Method::PATCH | Method::DELETE
    ) {
        op["requestBody"] = json!({
            "required": false,
            "description": "Streamed to the upstream as it comes, up to the route's `max_body`.",
            "content": {"*/*": {"schema": {}}},
        });
    }
    op
}

#[cfg(test)]
mod pattern_tests {
    use super::DELEGATE_SEGMENT_PATTERN;

    #[test]
    fn the_delegate_pattern_is_the_key_crates_less_percent_u() {
        let key =
            valet_key::SEGMENT_PATTERN.replace("%(?![0-9A-Fa-f]{2})", "%(?![0-9A-Fa-f]{2}|[uU])");
        assert_eq!(DELEGATE_SEGMENT_PATTERN, key);
    }
}
