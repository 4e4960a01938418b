//! The gate's error table in `docs/ERRORS.md` against the one function that maps errors to the
//! wire (`GateError::status_and_code`), and every code the gate can produce, produced over real
//! HTTP with the JSON shape and headers that go with it.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::json;
use support::*;
use valet_gate::GateError;
use valet_key::KeyId;
use valet_ledger::LedgerError;

/// The `(status, code)` rows of the gate's table: the lines under `## The gate` up to the next
/// heading whose first cell is a status.
fn gate_table() -> Vec<(u16, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ERRORS.md"))
        .unwrap();
    let section: Vec<&str> = doc
        .lines()
        .skip_while(|l| !l.starts_with("## The gate"))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    assert!(
        !section.is_empty(),
        "docs/ERRORS.md has no `## The gate` section"
    );
    section
        .iter()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_start_matches('|').split('|').collect();
            let status = cells.first()?.trim().parse::<u16>().ok()?;
            let code = cells.get(1)?.trim().trim_matches('`').to_owned();
            Some((status, code))
        })
        .collect()
}

/// One instance of every variant of `GateError` (and of the `LedgerError` it wraps).
fn every_variant() -> Vec<GateError> {
    let all = vec![
        GateError::Unauthenticated("no credentials".into()),
        GateError::PolicyDenied("ops delete exceed role 'user'".into()),
        GateError::Forbidden("not this route".into()),
        GateError::KeyExpired,
        GateError::KeyNotYetValid,
        GateError::KeyRevoked,
        GateError::RateLimited { retry_after: 2 },
        GateError::BadRequest("ttl: not a duration".into()),
        GateError::BadPath("the path contains an encoded '/'".into()),
        GateError::NotFound("no route for /x".into()),
        GateError::MethodNotAllowed("GET".into()),
        GateError::TooLarge { limit: 10 },
        GateError::UpstreamTimeout(Duration::from_secs(1)),
        GateError::UpstreamUnavailable,
        GateError::Ledger(LedgerError::Unavailable("locked".into())),
        GateError::Ledger(LedgerError::Conflict {
            key_id: KeyId([7; 16]),
        }),
        GateError::Internal(valet_http::edge::Internal::new("a bug")),
    ];
    // A variant added to either enum stops this match from compiling: add an instance above.
    for error in &all {
        match error {
            GateError::Unauthenticated(_)
            | GateError::PolicyDenied(_)
            | GateError::Forbidden(_)
            | GateError::KeyExpired
            | GateError::KeyNotYetValid
            | GateError::KeyRevoked
            | GateError::RateLimited { .. }
            | GateError::BadRequest(_)
            | GateError::BadPath(_)
            | GateError::NotFound(_)
            | GateError::MethodNotAllowed(_)
            | GateError::TooLarge { .. }
            | GateError::UpstreamTimeout(_)
            | GateError::UpstreamUnavailable
            | GateError::Ledger(LedgerError::Unavailable(_))
            | GateError::Ledger(LedgerError::Conflict { .. })
            | GateError::Internal(_) => {}
        }
    }
    all
}

fn mapped(error: &GateError) -> (u16, String) {
    let (status, code) = error.status_and_code();
    (status.as_u16(), code.to_owned())
}

#[test]
fn the_gate_table_documents_exactly_what_the_gate_produces() {
    let table = gate_table();
    let documented: BTreeSet<(u16, String)> = table.iter().cloned().collect();
    assert_eq!(
        documented.len(),
        table.len(),
        "a row is listed twice: {table:?}"
    );
    let produced: BTreeSet<(u16, String)> = every_variant().iter().map(mapped).collect();
    for error in every_variant() {
        let row = mapped(&error);
        assert!(
            documented.contains(&row),
            "{error:?} gives {row:?}, not in docs/ERRORS.md"
        );
    }
    for row in &documented {
        assert!(
            produced.contains(row),
            "docs/ERRORS.md lists {row:?}, which no error gives"
        );
    }
}

#[tokio::test]
async fn every_variant_becomes_a_json_error_with_its_status_and_code() {
    for error in every_variant() {
        let (status, code) = mapped(&error);
        let message = error.to_string();
        let response = error.into_response();
        assert_eq!(response.status().as_u16(), status);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "application/json", "{code}");
        assert_eq!(headers["cache-control"], "no-store", "{code}");
        assert_eq!(
            headers.get("www-authenticate").map(|v| v.to_str().unwrap()),
            (code == "unauthenticated").then_some("Bearer"),
            "{code}"
        );
        assert_eq!(
            headers.get("retry-after").map(|v| v.to_str().unwrap()),
            (code == "rate_limited").then_some("2"),
            "{code}"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": code, "message": message}}),
            "{code}"
        );
    }
}

/// Sends `request`, checks the JSON error's shape and returns `(status, code)`.
async fn refused(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").cloned();
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(content_type.unwrap(), "application/json", "{json}");
    assert!(json["error"]["message"].is_string(), "{json}");
    (status, json["error"]["code"].as_str().unwrap().to_owned())
}

/// Every code but `internal` (a bug), each from a real request to a real gate.
#[tokio::test]
async fn every_code_but_internal_is_produced_over_http() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let stack = Stack::start_with(|c| {
        *c = c.replace(
            "[rate_limit]\nper_second = 0",
            "[rate_limit]\nper_second = 1\nburst = 50",
        );
        c.push_str(&format!(
            "\n[[routes]]\npath = \"/down/{{*rest}}\"\nproxy = \"http://{closed}\"\n"
        ));
    })
    .await;
    let http = &stack.http;
    let keys = stack.gate_url("/v1/keys");
    let mut seen = BTreeSet::new();
    let mut check = |got: (u16, String), want: (u16, &str), what: &str| {
        assert_eq!((got.0, got.1.as_str()), want, "{what}");
        seen.insert(got);
    };

    check(
        refused(
            http.post(&keys)
                .json(&json!({"resource": "blob:files/a", "ops": "read"})),
        )
        .await,
        (401, "unauthenticated"),
        "no credentials",
    );
    check(
        refused(
            http.post(&keys)
                .bearer_auth(ALICE)
                .json(&json!({"resource": "blob:users/bob/a", "ops": "read"})),
        )
        .await,
        (403, "policy_denied"),
        "another user's folder",
    );
    check(
        refused(
            http.post(stack.gate_url("/v1/revocations"))
                .bearer_auth(ALICE)
                .json(&json!({"before": "now"})),
        )
        .await,
        (403, "forbidden"),
        "revoking everyone's keys without may_revoke",
    );
    // A valet key presented to `complete`: narrowed to have ended, or not to have begun; then
    // the key itself, completed once and presented again.
    let key = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/a", "ops": "read"}),
        )
        .await;
    let token: valet_key::Token = key["token"].as_str().unwrap().parse().unwrap();
    let complete = stack.gate_url(&format!(
        "/v1/keys/{}/complete",
        key["id"].as_str().unwrap()
    ));
    let now = valet_keyring::now();
    let narrowed = |caveat: valet_key::Caveat| format!("Valet {}", token.append(caveat).unwrap());
    let ended = narrowed(valet_key::Caveat {
        expires: Some(now.minus(600)),
        ..valet_key::Caveat::default()
    });
    let later = narrowed(valet_key::Caveat {
        not_before: Some(now.plus(600)),
        ..valet_key::Caveat::default()
    });
    check(
        refused(http.post(&complete).header("authorization", ended)).await,
        (403, "key_expired"),
        "completing with an expired narrowing",
    );
    check(
        refused(http.post(&complete).header("authorization", later)).await,
        (403, "key_not_yet_valid"),
        "completing with a narrowing not valid yet",
    );
    let holder = format!("Valet {token}");
    let done = http.post(&complete).header("authorization", &holder);
    assert_eq!(done.send().await.unwrap().status(), 204);
    check(
        refused(http.post(&complete).header("authorization", &holder)).await,
        (403, "key_revoked"),
        "completing a revoked key",
    );
    check(
        refused(http.get(stack.gate_url("/files/a")).bearer_auth(ALICE)).await,
        (403, "forbidden"),
        "a route for other roles",
    );
    check(
        refused(http.post(&keys).bearer_auth(ADMIN).body("{not json")).await,
        (400, "bad_request"),
        "a body that is not JSON",
    );
    check(
        refused(http.delete(stack.gate_url("/files/a/")).bearer_auth(ADMIN)).await,
        (400, "bad_path"),
        "DELETE on a folder",
    );
    check(
        refused(http.get(stack.gate_url("/files/a%2Fb")).bearer_auth(ADMIN)).await,
        (400, "bad_path"),
        "an encoded slash",
    );
    check(
        refused(http.get(stack.gate_url("/nowhere")).bearer_auth(ADMIN)).await,
        (404, "not_found"),
        "no route",
    );
    check(
        refused(
            http.get(stack.gate_url("/v1/keys/00000000000000000000000000000000"))
                .bearer_auth(ALICE),
        )
        .await,
        (404, "not_found"),
        "no such key of hers",
    );
    check(
        refused(http.post(stack.gate_url("/healthz"))).await,
        (405, "method_not_allowed"),
        "POST /healthz",
    );
    check(
        refused(http.put(&keys).bearer_auth(ADMIN)).await,
        (405, "method_not_allowed"),
        "PUT /v1/keys",
    );
    check(
        refused(
            http.post(stack.gate_url("/api/x"))
                .bearer_auth(ALICE)
                .body(vec![0u8; 64 * 1024 + 1]),
        )
        .await,
        (413, "too_large"),
        "a proxied body over max_body",
    );
    check(
        refused(http.get(stack.gate_url("/api/slow")).bearer_auth(ALICE)).await,
        (504, "upstream_timeout"),
        "an upstream slower than the route's timeout",
    );
    check(
        refused(http.get(stack.gate_url("/down/x")).bearer_auth(ALICE)).await,
        (502, "upstream_unavailable"),
        "an upstream nobody listens for",
    );

    // The robot has made no request yet: a burst of 50, then 429 with Retry-After.
    let shared = json!({"resource": "blob:shared", "ops": "read"});
    for _ in 0..50 {
        assert_eq!(stack.issue(ROBOT, shared.clone()).await.status(), 201);
    }
    let response = stack.issue(ROBOT, shared.clone()).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    check(
        code(response).await,
        (429, "rate_limited"),
        "over the burst",
    );

    // Another connection holds the ledger's write lock past the busy timeout: nothing issued.
    let lock = rusqlite::Connection::open(stack.dir.path().join("ledger.sqlite")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    check(
        refused(
            http.post(&keys)
                .bearer_auth(ADMIN)
                .json(&json!({"resource": "blob:files/a", "ops": "read"})),
        )
        .await,
        (503, "ledger_unavailable"),
        "the ledger is locked",
    );
    drop(lock);

    let expected: BTreeSet<(u16, String)> = gate_table()
        .into_iter()
        .filter(|(_, code)| code != "internal")
        .collect();
    assert_eq!(seen, expected);
    // Every refusal was counted under its code.
    let metrics = stack.gate.metrics().render();
    for (_, code) in &expected {
        let line = format!("valet_gate_refusals_total{{code=\"{code}\"}}");
        assert!(
            metric(&metrics, &line) >= 1.0,
            "{line} missing in\n{metrics}"
        );
    }
}

/// Every route of the gate (its own and configured ones, delegate and proxy), with methods
/// it does not take: `405 method_not_allowed` with an `Allow` header (RFC 9110) naming
/// exactly the methods the route takes; the gate's own routes' `Allow` matches `ROUTES`.
#[tokio::test]
async fn every_405_names_the_methods_its_route_takes() {
    let stack = Stack::start().await;
    let id = "00000000000000000000000000000000";
    let own: [(&str, &str, &str, &[&str]); 7] = [
        (
            "/healthz",
            "/healthz",
            "GET, HEAD",
            &["POST", "PUT", "DELETE", "PATCH"],
        ),
        ("/metrics", "/metrics", "GET", &["POST", "PUT", "HEAD"]),
        (
            "/openapi.json",
            "/openapi.json",
            "GET",
            &["POST", "DELETE", "HEAD"],
        ),
        (
            "/v1/keys",
            "/v1/keys",
            "POST",
            &["GET", "PUT", "DELETE", "PATCH"],
        ),
        (
            &format!("/v1/keys/{id}"),
            "/v1/keys/{id}",
            "GET, DELETE",
            &["POST", "PUT", "PATCH"],
        ),
        (
            &format!("/v1/keys/{id}/complete"),
            "/v1/keys/{id}/complete",
            "POST",
            &["GET", "PUT"],
        ),
        (
            "/v1/revocations",
            "/v1/revocations",
            "POST",
            &["GET", "DELETE"],
        ),
    ];
    // Configured: a delegate route (GET, HEAD, PUT, DELETE by default) and a proxy route
    // limited to GET.
    let configured: [(&str, &str, &[&str]); 2] = [
        (
            "/files/a.txt",
            "GET, HEAD, PUT, DELETE",
            &["POST", "PATCH", "OPTIONS"],
        ),
        ("/v2/thing", "GET", &["POST", "PUT", "DELETE", "HEAD"]),
    ];
    let all = own
        .iter()
        .map(|(path, _, allow, wrong)| (path.to_string(), *allow, *wrong))
        .chain(configured.iter().map(|(p, a, w)| (p.to_string(), *a, *w)));
    for (path, allow, wrong) in all {
        for method in wrong {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let request = stack
                .http
                .request(method.clone(), stack.gate_url(&path))
                .bearer_auth(ADMIN);
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
            assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        }
    }
    for (_, template, allow, _) in own {
        for taken in allow.split(", ") {
            assert!(
                valet_gate::ROUTES.contains(&(taken, template)),
                "{taken} {template} is in Allow but not served"
            );
        }
    }
}
