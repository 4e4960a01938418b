//! The key API over real HTTP: authentication, every policy bound, issuing, status,
//! revocation and `complete`, with the keys checked by a real store.

mod support;

use serde_json::json;
use support::*;

async fn store_get(stack: &Stack, url: &str) -> (u16, String) {
    let response = stack.http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let code = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or(text);
    (status, code)
}

async fn put_blob(stack: &Stack, path: &str, body: &'static str) {
    let key = stack
        .issue_ok(
            ADMIN,
            json!({"resource": format!("blob:{path}"), "ops": ["write"]}),
        )
        .await;
    let response = stack
        .http
        .put(key["url"].as_str().unwrap())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn authentication_failures_are_unauthenticated() {
    let stack = Stack::start().await;
    let body = json!({"resource": "blob:files/a", "ops": ["read"]});
    let url = stack.gate_url("/v1/keys");
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("wrong scheme", Some(format!("Basic {ADMIN}"))),
        ("empty bearer", Some("Bearer ".into())),
        ("unknown key", Some("Bearer vak_nope".into())),
        ("valet key as bearer", Some("Bearer vk1.AAAA.BBBB".into())),
        (
            "key with a changed char",
            Some(format!("Bearer {}x", &ADMIN[..ADMIN.len() - 1])),
        ),
    ];
    for (what, header) in cases {
        let mut request = stack.http.post(&url).json(&body);
        if let Some(h) = header {
            request = request.header("authorization", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{what}"
        );
        assert_eq!(
            code(response).await,
            (401, "unauthenticated".into()),
            "{what}"
        );
    }
}

#[tokio::test]
async fn an_issued_key_works_at_the_store_and_says_what_it_is() {
    let stack = Stack::start().await;
    put_blob(&stack, "files/report.txt", "quarterly").await;
    let key = stack
        .issue_ok(
            ADMIN,
            json!({"resource": "blob:files/report.txt", "ops": ["read"], "ttl": "2m", "filename": "r.txt"}),
        )
        .await;
    assert_eq!(key["method"], "GET");
    assert_eq!(key["id"].as_str().unwrap().len(), 32);
    assert!(key["token"].as_str().unwrap().starts_with("vk1."));
    let url = key["url"].as_str().unwrap();
    assert!(url.starts_with(&format!(
        "http://{}/blob/files/report.txt?vk=vk1.",
        stack.store_addr
    )));
    let response = stack.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"r.txt\""),
        "{disposition}"
    );
    assert_eq!(response.text().await.unwrap(), "quarterly");
    // Read only: the same key cannot write.
    let put = stack.http.put(url).body("x").send().await.unwrap();
    assert_eq!(code(put).await, (403, "op_not_allowed".into()));
    // Expiry is two minutes away.
    let expires = humantime::parse_rfc3339(key["expires_at"].as_str().unwrap()).unwrap();
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left.as_secs() > 100 && left.as_secs() <= 120, "{left:?}");
}

#[tokio::test]
async fn names_in_urls_are_encoded_and_prefix_keys_list() {
    let stack = Stack::start().await;
    let key = stack
        .issue_ok(
            ADMIN,
            json!({"resource": "blob:files/dir/café au lait+1.txt", "ops": "write"}),
        )
        .await;
    let url = key["url"].as_str().unwrap();
    assert!(
        url.contains("/blob/files/dir/caf%C3%A9%20au%20lait%2B1.txt?vk="),
        "{url}"
    );
    assert_eq!(key["method"], "PUT");
    let put = stack.http.put(url).body("ok").send().await.unwrap();
    assert_eq!(put.status(), 201);
    let list = stack
        .issue_ok(
            ADMIN,
            json!({"resource": "blob:files/dir/", "ops": ["list"]}),
        )
        .await;
    let listing: serde_json::Value = stack
        .http
        .get(list["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list["url"]
            .as_str()
            .unwrap()
            .contains("/blob/files?prefix=dir%2F&vk="),
        "{list}"
    );
    assert_eq!(
        listing["items"][0]["path"], "dir/café au lait+1.txt",
        "{listing}"
    );
}

#[tokio::test]
async fn policy_bounds_are_refused_with_the_bound_named() {
    let stack = Stack::start().await;
    let cases = [
        (
            json!({"resource": "blob:users/bob/x", "ops": ["read"]}),
            "outside role 'user'",
        ),
        // Prefix confusion: `alice-private` is not under `alice/`.
        (
            json!({"resource": "blob:users/alice-private/x", "ops": ["read"]}),
            "outside role 'user'",
        ),
        (
            json!({"resource": "blob:users", "ops": ["list"]}),
            "outside role 'user'",
        ),
        (
            json!({"resource": "blob:users/alice/x", "ops": ["delete"]}),
            "ops delete exceed role 'user'",
        ),
        (
            json!({"resource": "blob:users/alice/x", "ops": ["read"], "ttl": "2h"}),
            "ttl 2h exceeds role 'user''s max_ttl 1h",
        ),
        (
            json!({"resource": "blob:users/alice/x", "ops": ["write"], "max_bytes": "2MiB"}),
            "max_bytes 2097152 exceeds role 'user''s max_bytes 1048576",
        ),
        (
            json!({"resource": "blob:users/alice/x", "ops": ["read"], "max_uses": 6}),
            "max_uses 6 exceeds role 'user''s max_uses 5",
        ),
        (
            json!({"resource": "queue:jobs", "ops": ["enqueue"]}),
            "outside role 'user'",
        ),
    ];
    for (body, why) in cases {
        let response = stack.issue(ALICE, body.clone()).await;
        let status = response.status();
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, 403, "{body}: {json}");
        assert_eq!(json["error"]["code"], "policy_denied", "{body}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{body}: {message}");
    }
}

#[tokio::test]
async fn open_bounds_are_filled_from_the_policy() {
    let stack = Stack::start().await;
    let key = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/notes.txt", "ops": ["write", "read"]}),
        )
        .await;
    let token: valet_key::Token = key["token"].as_str().unwrap().parse().unwrap();
    let claims = token.claims();
    assert_eq!(claims.limits.max_bytes, Some(1 << 20));
    assert_eq!(claims.limits.max_uses, Some(5));
    assert_eq!(claims.subject.as_deref(), Some("alice"));
    assert_eq!(
        claims.expires.0 - claims.not_before.0,
        600,
        "default ttl 10m"
    );
    // A cap the client asks for below the policy's is kept.
    let key = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/", "ops": ["read"], "max_uses": 2, "ttl": 30}),
        )
        .await;
    let token: valet_key::Token = key["token"].as_str().unwrap().parse().unwrap();
    assert_eq!(token.claims().limits.max_uses, Some(2));
    assert_eq!(token.claims().expires.0 - token.claims().not_before.0, 30);
    // The store enforces the size cap the policy put in.
    let big = vec![0u8; (1 << 20) + 1];
    let response = stack
        .http
        .put(
            stack
                .issue_ok(
                    ALICE,
                    json!({"resource": "blob:users/alice/big", "ops": ["write"]}),
                )
                .await["url"]
                .as_str()
                .unwrap(),
        )
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (413, "too_large".into()));
}

#[tokio::test]
async fn a_principal_that_cannot_be_one_segment_gets_nothing_from_sub_patterns() {
    let stack = Stack::start().await;
    for resource in [
        "blob:users/eve/../alice/x",
        "blob:users/alice/x",
        "blob:users/eve/x",
    ] {
        let response = stack
            .issue(SLASHY, json!({"resource": resource, "ops": ["read"]}))
            .await;
        let (status, code) = code(response).await;
        assert!(
            status == 400 || (status, code.as_str()) == (403, "policy_denied"),
            "{resource}: {status} {code}"
        );
    }
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let stack = Stack::start().await;
    let cases = [
        (
            json!({"resource": "blob:files/../x", "ops": ["read"]}),
            "resource",
        ),
        (json!({"resource": "blob:files/x", "ops": ["fly"]}), "ops"),
        (json!({"resource": "blob:files/x", "ops": []}), "ops"),
        (
            json!({"resource": "blob:files/x", "ops": ["read"], "ttl": "soon"}),
            "ttl",
        ),
        (
            json!({"resource": "blob:files/x", "ops": ["read"], "ip": "10.0.0.1/8"}),
            "ip",
        ),
        (
            json!({"resource": "blob:files/x", "ops": ["read"], "content_type": "image"}),
            "content_type",
        ),
        (
            json!({"resource": "blob:files/x", "ops": ["read"], "max_uses": 0}),
            "max_uses",
        ),
        (
            json!({"resource": "blob:files/x", "ops": ["read"], "colour": "red"}),
            "colour",
        ),
        (json!({"ops": ["read"]}), "resource"),
    ];
    for (body, field) in cases {
        let response = stack.issue(ADMIN, body.clone()).await;
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["error"]["code"], "bad_request", "{body}: {json}");
        assert!(
            json["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {json}"
        );
    }
    let response = stack
        .http
        .post(stack.gate_url("/v1/keys"))
        .bearer_auth(ADMIN)
        .body(vec![b' '; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await.0, 400);
}

#[tokio::test]
async fn status_counts_uses_and_shows_revocation() {
    let stack = Stack::start().await;
    put_blob(&stack, "users/alice/a.txt", "A").await;
    let key = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/a.txt", "ops": ["read"], "max_uses": 2}),
        )
        .await;
    let id = key["id"].as_str().unwrap();
    let url = key["url"].as_str().unwrap();
    assert_eq!(store_get(&stack, url).await, (200, "A".into()));
    let status_url = stack.gate_url(&format!("/v1/keys/{id}"));
    let status: serde_json::Value = stack
        .http
        .get(&status_url)
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["issued_to"], "alice");
    assert_eq!(status["issued_by"], "alice");
    assert_eq!(status["resource"], "blob:users/alice/a.txt");
    assert_eq!(status["ops"], json!(["read"]));
    assert_eq!(status["uses"], 1);
    assert_eq!(status["uses_left"], 1);
    assert_eq!(status["revoked"], false);
    assert_eq!(status["expired"], false);
    // Bob may not see Alice's key, nor revoke it: not found.
    let response = stack
        .http
        .get(&status_url)
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (404, "not_found".into()));
    let response = stack
        .http
        .delete(&status_url)
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (404, "not_found".into()));
    assert_eq!(store_get(&stack, url).await, (200, "A".into()));
    // Alice revokes it: the store refuses it at once.
    let response = stack
        .http
        .delete(&status_url)
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(store_get(&stack, url).await, (403, "key_revoked".into()));
    let status: serde_json::Value = stack
        .http
        .get(&status_url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["revoked"], true);
    assert_eq!(status["revoked_by"], "key");
    // Unknown and malformed ids: not found for Alice; a malformed one for the admin too.
    for (who, id) in [
        (ALICE, "00000000000000000000000000000000"),
        (ALICE, "xyz"),
        (ADMIN, "xyz"),
        (ADMIN, &"AB".repeat(16)),
    ] {
        let response = stack
            .http
            .get(stack.gate_url(&format!("/v1/keys/{id}")))
            .bearer_auth(who)
            .send()
            .await
            .unwrap();
        assert_eq!(code(response).await, (404, "not_found".into()), "{id}");
    }
}

#[tokio::test]
async fn exhausted_keys_show_no_uses_left() {
    let stack = Stack::start().await;
    put_blob(&stack, "users/alice/once", "1").await;
    let key = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/once", "ops": ["read"], "max_uses": 1}),
        )
        .await;
    let url = key["url"].as_str().unwrap();
    assert_eq!(store_get(&stack, url).await.0, 200);
    assert_eq!(store_get(&stack, url).await, (403, "key_exhausted".into()));
    let status: serde_json::Value = stack
        .http
        .get(stack.gate_url(&format!("/v1/keys/{}", key["id"].as_str().unwrap())))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["uses_left"], 0);
}

#[tokio::test]
async fn complete_invalidates_the_key_for_its_owner_or_its_holder() {
    let stack = Stack::start().await;
    put_blob(&stack, "users/alice/up", "u").await;
    // The holder presents the key itself.
    let key = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/up", "ops": ["read"]}),
        )
        .await;
    let (id, token, url) = (
        key["id"].as_str().unwrap(),
        key["token"].as_str().unwrap(),
        key["url"].as_str().unwrap(),
    );
    let complete = stack.gate_url(&format!("/v1/keys/{id}/complete"));
    // Someone else's key does not complete this one.
    let other = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/up", "ops": ["read"]}),
        )
        .await;
    let response = stack
        .http
        .post(&complete)
        .header(
            "authorization",
            format!("Valet {}", other["token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (403, "forbidden".into()));
    // A forged key neither.
    // Another last character (both `A` and `Q` are canonical there), so the tag really differs.
    let last = if token.ends_with('A') { 'Q' } else { 'A' };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    let response = stack
        .http
        .post(&complete)
        .header("authorization", format!("Valet {forged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await.0, 401);
    assert_eq!(store_get(&stack, url).await.0, 200);
    let response = stack
        .http
        .post(&complete)
        .header("authorization", format!("Valet {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(store_get(&stack, url).await, (403, "key_revoked".into()));
    // The owner completes by id; Bob may not.
    let key = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/up", "ops": ["read"]}),
        )
        .await;
    let complete = stack.gate_url(&format!(
        "/v1/keys/{}/complete",
        key["id"].as_str().unwrap()
    ));
    let response = stack
        .http
        .post(&complete)
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (404, "not_found".into()));
    let response = stack.http.post(&complete).send().await.unwrap();
    assert_eq!(code(response).await, (401, "unauthenticated".into()));
    let response = stack
        .http
        .post(&complete)
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        store_get(&stack, key["url"].as_str().unwrap()).await,
        (403, "key_revoked".into())
    );
}

#[tokio::test]
async fn revocations_by_subject_and_time() {
    let stack = Stack::start().await;
    put_blob(&stack, "users/alice/r", "r").await;
    put_blob(&stack, "users/bob/r", "r").await;
    let alice = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/r", "ops": ["read"]}),
        )
        .await;
    let bob = stack
        .issue_ok(
            BOB,
            json!({"resource": "blob:users/bob/r", "ops": ["read"]}),
        )
        .await;
    let revoke = |who: &'static str, body: serde_json::Value| {
        let stack = &stack;
        async move { stack.revoke_many(who, &body).await }
    };
    // Alice may revoke her own keys, not Bob's, and not everyone's.
    assert_eq!(
        code(revoke(ALICE, json!({"subject": "bob", "before": "now"})).await).await,
        (403, "forbidden".into())
    );
    assert_eq!(
        code(revoke(ALICE, json!({"before": "now"})).await).await,
        (403, "forbidden".into())
    );
    assert_eq!(
        code(revoke(ALICE, json!({"subject": "alice", "before": "yesterday"})).await)
            .await
            .0,
        400
    );
    assert_eq!(
        revoke(ALICE, json!({"subject": "alice", "before": "now"}))
            .await
            .status(),
        204
    );
    assert_eq!(
        store_get(&stack, alice["url"].as_str().unwrap()).await,
        (403, "key_revoked".into())
    );
    assert_eq!(store_get(&stack, bob["url"].as_str().unwrap()).await.0, 200);
    let status: serde_json::Value = stack
        .http
        .get(stack.gate_url(&format!("/v1/keys/{}", alice["id"].as_str().unwrap())))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["revoked_by"], "subject");
    // The admin revokes everything issued before a time in the past: nothing changes.
    assert_eq!(
        revoke(ADMIN, json!({"before": "2020-01-01T00:00:00Z"}))
            .await
            .status(),
        204
    );
    assert_eq!(store_get(&stack, bob["url"].as_str().unwrap()).await.0, 200);
    // A revocation of keys not yet issued would be irreversible: refused.
    let future = revoke(ADMIN, json!({"before": "2100-01-01T00:00:00Z"})).await;
    assert_eq!(code(future).await, (400, "bad_request".into()));
    assert_eq!(revoke(ADMIN, json!({"before": "now"})).await.status(), 204);
    assert_eq!(
        store_get(&stack, bob["url"].as_str().unwrap()).await,
        (403, "key_revoked".into())
    );
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let stack = Stack::start_with(|c| {
        *c = c.replace(
            "[rate_limit]\nper_second = 0",
            "[rate_limit]\nper_second = 1\nburst = 3",
        );
    })
    .await;
    let body = json!({"resource": "blob:users/alice/x", "ops": ["read"]});
    for _ in 0..3 {
        assert_eq!(stack.issue(ALICE, body.clone()).await.status(), 201);
    }
    let response = stack.issue(ALICE, body.clone()).await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(code(response).await, (429, "rate_limited".into()));
    // Per principal: Bob is not slowed by Alice.
    let response = stack
        .issue(
            BOB,
            json!({"resource": "blob:users/bob/x", "ops": ["read"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn jwt_bearers_are_checked() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let secret = "0123456789abcdef0123456789abcdef";
    let stack = Stack::start_with(|c| {
        c.push_str(&format!(
            "\n[jwt]\nalgorithm = \"HS256\"\nsecret = \"{secret}\"\nissuer = \"https://id.example\"\naudience = \"valet\"\nroles_claim = \"roles\"\n"
        ));
    })
    .await;
    let now = valet_keyring::now().0;
    let token = |claims: serde_json::Value, key: &str| {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };
    let good = json!({"sub": "carol", "roles": ["user"], "iss": "https://id.example", "aud": "valet", "exp": now + 60});
    let body = json!({"resource": "blob:users/carol/x", "ops": ["read"]});
    let key = stack
        .issue_ok(&token(good.clone(), secret), body.clone())
        .await;
    let parsed: valet_key::Token = key["token"].as_str().unwrap().parse().unwrap();
    assert_eq!(parsed.claims().subject.as_deref(), Some("carol"));
    let with = |field: &str, value: serde_json::Value| {
        let mut claims = good.clone();
        claims[field] = value;
        claims
    };
    let refused = [
        ("expired", token(with("exp", json!(now - 120)), secret)),
        (
            "not yet valid",
            token(with("nbf", json!(now + 120)), secret),
        ),
        (
            "wrong issuer",
            token(with("iss", json!("https://evil.example")), secret),
        ),
        ("wrong audience", token(with("aud", json!("other")), secret)),
        (
            "wrong secret",
            token(good.clone(), "another-secret-another-secret-xx"),
        ),
        (
            "no exp",
            token(
                json!({"sub": "carol", "iss": "https://id.example", "aud": "valet"}),
                secret,
            ),
        ),
        (
            "no sub",
            token(
                json!({"iss": "https://id.example", "aud": "valet", "exp": now + 60}),
                secret,
            ),
        ),
        ("alg none", {
            let t = token(good.clone(), secret);
            let mut parts: Vec<&str> = t.split('.').collect();
            parts[0] = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
            format!("{}.{}.", parts[0], parts[1])
        }),
    ];
    for (what, jwt) in refused {
        let (status, code) = code(stack.issue(&jwt, body.clone()).await).await;
        assert_eq!((status, code.as_str()), (401, "unauthenticated"), "{what}");
    }
    // A JWT may not take the name of an API key's principal.
    let admin = json!({"sub": "admin", "roles": ["admin"], "iss": "https://id.example", "aud": "valet", "exp": now + 60});
    let (status, code_) = code(stack.issue(&token(admin, secret), body.clone()).await).await;
    assert_eq!((status, code_.as_str()), (401, "unauthenticated"));
    // Roles the gate does not know are dropped, whatever they contain.
    let odd = json!({"sub": "dave", "roles": ["user", "nope", "bad\u{7}role"], "iss": "https://id.example", "aud": "valet", "exp": now + 60});
    let echo: serde_json::Value = stack
        .http
        .get(stack.gate_url("/api/who"))
        .bearer_auth(token(odd, secret))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["x-valet-roles"], "user");
    // A JWT principal gets only its roles' policy.
    let response = stack
        .issue(
            &token(good, secret),
            json!({"resource": "blob:users/alice/x", "ops": ["read"]}),
        )
        .await;
    assert_eq!(code(response).await, (403, "policy_denied".into()));
}

#[tokio::test]
async fn ledger_outage_fails_closed() {
    let stack = Stack::start().await;
    // Another connection holds the write lock: issuing must wait, then refuse, not issue.
    let conn = rusqlite_lock(&stack);
    let response = stack
        .issue(ADMIN, json!({"resource": "blob:files/x", "ops": ["read"]}))
        .await;
    assert_eq!(code(response).await, (503, "ledger_unavailable".into()));
    drop(conn);
    assert_eq!(
        stack
            .issue(ADMIN, json!({"resource": "blob:files/x", "ops": ["read"]}))
            .await
            .status(),
        201
    );
}

/// Another connection holding the ledger's write lock for as long as it lives.
fn rusqlite_lock(stack: &Stack) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(stack.dir.path().join("ledger.sqlite")).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    conn
}

/// The ledger's count of revocation writes (`meta.seq`) and its revocation rows, read from
/// another connection.
fn revocation_writes(stack: &Stack) -> (i64, i64) {
    let conn = rusqlite::Connection::open(stack.dir.path().join("ledger.sqlite")).unwrap();
    conn.query_row(
        "SELECT (SELECT seq FROM meta),
                (SELECT count(*) FROM revoked_keys) + (SELECT count(*) FROM revoked_subjects)
                    + (SELECT count(*) FROM revoked_all)",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .unwrap()
}

#[tokio::test]
async fn revocations_have_their_own_rate_limit_and_refused_ones_write_nothing() {
    let stack = Stack::start_with(|c| {
        *c = c.replace(
            "[rate_limit]\nper_second = 0",
            "[rate_limit]\nper_second = 0\nrevocations_per_second = 1\nrevocations_burst = 3",
        );
    })
    .await;
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(
            stack
                .issue_ok(
                    ALICE,
                    json!({"resource": "blob:users/alice/k", "ops": ["read"]}),
                )
                .await,
        );
    }
    let delete = |key: &serde_json::Value, who: &'static str| {
        let request = stack
            .http
            .delete(stack.gate_url(&format!("/v1/keys/{}", key["id"].as_str().unwrap())))
            .bearer_auth(who);
        async move { request.send().await.unwrap() }
    };
    // The burst: three revocations by id.
    for key in &keys[..3] {
        assert_eq!(delete(key, ALICE).await.status(), 204);
    }
    let before = revocation_writes(&stack);
    // Over it, every revoking endpoint is refused, with Retry-After, and writes nothing.
    let response = delete(&keys[3], ALICE).await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(code(response).await, (429, "rate_limited".into()));
    let many = stack
        .revoke_many(ALICE, &json!({"subject": "alice", "before": "now"}))
        .await;
    assert_eq!(code(many).await, (429, "rate_limited".into()));
    let complete = |key: &serde_json::Value| {
        stack.gate_url(&format!(
            "/v1/keys/{}/complete",
            key["id"].as_str().unwrap()
        ))
    };
    let by_owner = stack
        .http
        .post(complete(&keys[3]))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(code(by_owner).await, (429, "rate_limited".into()));
    // The holder of one of Alice's keys counts against Alice: a flood of completions through
    // keys she handed out is still hers.
    let by_holder = stack
        .http
        .post(complete(&keys[4]))
        .header(
            "authorization",
            format!("Valet {}", keys[4]["token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(code(by_holder).await, (429, "rate_limited".into()));
    assert_eq!(revocation_writes(&stack), before, "a refused call wrote");
    for key in &keys[3..] {
        let status: serde_json::Value = stack
            .get_as(&format!("/v1/keys/{}", key["id"].as_str().unwrap()), ALICE)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(status["revoked"], false, "{status}");
    }
    // Issuing is not a revocation: it still works, and Bob has a bucket of his own.
    let bobs = stack
        .issue_ok(
            BOB,
            json!({"resource": "blob:users/bob/k", "ops": ["read"]}),
        )
        .await;
    assert_eq!(delete(&bobs, BOB).await.status(), 204);
    // The bucket refills: one more a second later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(delete(&keys[3], ALICE).await.status(), 204);
}

#[test]
fn revocations_are_limited_by_default() {
    let config: valet_gate::config::GateConfig =
        toml::from_str("store_url = \"http://127.0.0.1:1\"").unwrap();
    assert_eq!(config.rate_limit.revocations_per_second, 10);
    assert_eq!(config.rate_limit.revocations_burst, 100);
}

/// `null` is not "absent": every optional field of both request bodies refuses it (and values
/// of other types), naming the field, and nothing is issued or revoked.
#[tokio::test]
async fn null_and_wrong_types_are_refused_in_every_optional_field() {
    let stack = Stack::start().await;
    put_blob(&stack, "users/bob/k", "k").await;
    let bobs = stack
        .issue_ok(
            BOB,
            json!({"resource": "blob:users/bob/k", "ops": ["read"]}),
        )
        .await;
    let base = json!({"resource": "blob:files/x", "ops": ["read"]});
    let fields = [
        "ttl",
        "max_bytes",
        "max_uses",
        "content_type",
        "ip",
        "filename",
    ];
    let odd = [json!(null), json!(true), json!({"a": 1}), json!([[1]])];
    for field in fields {
        for value in &odd {
            let mut body = base.clone();
            body[field] = value.clone();
            let response = stack.issue(ADMIN, body.clone()).await;
            let status = response.status();
            let json: serde_json::Value = response.json().await.unwrap();
            assert_eq!(status, 400, "{body}: {json}");
            assert_eq!(json["error"]["code"], "bad_request", "{body}");
            let message = json["error"]["message"].as_str().unwrap();
            assert!(message.contains(field), "{body}: {message}");
        }
    }
    for (field, value) in [("resource", json!(null)), ("ops", json!(null))] {
        let mut body = base.clone();
        body[field] = value;
        let (status, code) = code(stack.issue(ADMIN, body.clone()).await).await;
        assert_eq!((status, code.as_str()), (400, "bad_request"), "{body}");
    }
    // The revocation body: `subject: null` is not "every subject", for anyone.
    let writes = revocation_writes(&stack);
    let bodies = [
        json!({"subject": null, "before": "now"}),
        json!({"subject": 7, "before": "now"}),
        json!({"subject": ["bob"], "before": "now"}),
        json!({"subject": "bob", "before": null}),
        json!({"before": 1}),
        json!({"subject": "bob"}),
        json!({"subject": "bob", "before": "now", "everyone": true}),
    ];
    for who in [ADMIN, ALICE] {
        for body in &bodies {
            let response = stack.revoke_many(who, body).await;
            let status = response.status();
            let json: serde_json::Value = response.json().await.unwrap();
            assert_eq!(status, 400, "{body}: {json}");
            let message = json["error"]["message"].as_str().unwrap();
            let named = ["subject", "before", "everyone"]
                .iter()
                .any(|f| message.contains(f));
            assert!(named, "{body}: {message}");
        }
    }
    assert_eq!(revocation_writes(&stack), writes, "a refused body wrote");
    assert_eq!(
        store_get(&stack, bobs["url"].as_str().unwrap()).await.0,
        200
    );
}

/// Without `may_revoke`, only one's own subject: not another's, not one spelled like one's
/// own, not everyone's. Refused `forbidden`, nothing written.
#[tokio::test]
async fn wide_revocations_need_may_revoke() {
    let stack = Stack::start().await;
    put_blob(&stack, "users/bob/k", "k").await;
    let bobs = stack
        .issue_ok(
            BOB,
            json!({"resource": "blob:users/bob/k", "ops": ["read"]}),
        )
        .await;
    let writes = revocation_writes(&stack);
    let bodies = [
        json!({"subject": "bob", "before": "now"}),
        json!({"subject": "Alice", "before": "now"}),
        json!({"subject": "alice ", "before": "now"}),
        json!({"subject": "", "before": "now"}),
        json!({"subject": "admin", "before": "2020-01-01T00:00:00Z"}),
        json!({"before": "now"}),
        json!({"before": "2020-01-01T00:00:00Z"}),
    ];
    for who in [ALICE, ROBOT] {
        for body in &bodies {
            let response = stack.revoke_many(who, body).await;
            assert_eq!(code(response).await, (403, "forbidden".into()), "{body}");
        }
    }
    assert_eq!(
        revocation_writes(&stack),
        writes,
        "a refused revocation wrote"
    );
    assert_eq!(
        store_get(&stack, bobs["url"].as_str().unwrap()).await.0,
        200
    );
}

/// The key id inside the `Location` of a delegate route's 307 for `path`, and that URL.
async fn delegated(stack: &Stack, path: &str, api_key: &str) -> (String, String) {
    let response = stack.get_as(path, api_key).await;
    assert_eq!(response.status(), 307, "{path}");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let token: valet_key::Token = location.split("vk=").nth(1).unwrap().parse().unwrap();
    (token.claims().key_id.to_string(), location)
}

/// `GET /v1/keys/ID` as the admin: the 200 body.
async fn admin_status(stack: &Stack, id: &str) -> serde_json::Value {
    let response = stack.get_as(&format!("/v1/keys/{id}"), ADMIN).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The `expires` the ledger keeps a revocation of `id` until.
fn revocation_kept_until(stack: &Stack, id: &str) -> Option<u64> {
    let conn = rusqlite::Connection::open(stack.dir.path().join("ledger.sqlite")).unwrap();
    let id = valet_key::KeyId::parse_hex(id).unwrap();
    conn.query_row(
        "SELECT expires FROM revoked_keys WHERE key_id = ?1",
        [&id.0[..]],
        |row| row.get(0),
    )
    .unwrap()
}

/// A key the gate handed out in a redirect has no record, yet an admin revokes it by id, and
/// sees what the ledger knows of it; its own principal, without `may_revoke`, learns nothing.
#[tokio::test]
async fn an_admin_revokes_and_inspects_keys_the_gate_never_recorded() {
    let stack = Stack::start().await;
    put_blob(&stack, "files/d.txt", "delegated").await;
    put_blob(&stack, "users/alice/m.txt", "mine").await;
    let (admin_key, admin_url) = delegated(&stack, "/files/d.txt", ADMIN).await;
    let (alice_key, alice_url) = delegated(&stack, "/me/m.txt", ALICE).await;
    assert_eq!(store_get(&stack, &alice_url).await, (200, "mine".into()));
    let never_recorded = valet_ledger::Ledger::issued(
        stack.ledger.as_ref(),
        valet_key::KeyId::parse_hex(&alice_key).unwrap(),
    );
    assert!(never_recorded.unwrap().is_none());

    // Without `may_revoke`, an unrecorded id is not found, even one's own delegated key.
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/keys/{alice_key}")),
        (reqwest::Method::DELETE, format!("/v1/keys/{alice_key}")),
        (
            reqwest::Method::POST,
            format!("/v1/keys/{alice_key}/complete"),
        ),
        (reqwest::Method::DELETE, format!("/v1/keys/{admin_key}")),
    ] {
        let response = stack
            .http
            .request(method.clone(), stack.gate_url(&path))
            .bearer_auth(ALICE)
            .send()
            .await
            .unwrap();
        assert_eq!(
            code(response).await,
            (404, "not_found".into()),
            "{method} {path}"
        );
    }
    assert_eq!(store_get(&stack, &alice_url).await.0, 200);

    // The admin sees what is known: Alice's key was used twice (the role counts uses).
    let status = admin_status(&stack, &alice_key).await;
    assert_eq!(
        status,
        json!({"id": alice_key, "recorded": false, "uses": 2, "revoked": false, "revoked_by": null})
    );
    // The admin revokes both by id: by DELETE and by completing.
    let now = valet_keyring::now().0;
    let response = stack
        .http
        .delete(stack.gate_url(&format!("/v1/keys/{alice_key}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = stack
        .http
        .post(stack.gate_url(&format!("/v1/keys/{admin_key}/complete")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        store_get(&stack, &alice_url).await,
        (403, "key_revoked".into())
    );
    assert_eq!(
        store_get(&stack, &admin_url).await,
        (403, "key_revoked".into())
    );
    let status = admin_status(&stack, &alice_key).await;
    assert_eq!(status["revoked"], true);
    assert_eq!(status["revoked_by"], "key");
    assert_eq!(status["recorded"], false);
    // Kept as long as any key from this gate can live (the admin role's 24 h), not forever.
    for id in [&alice_key, &admin_key] {
        let until = revocation_kept_until(&stack, id).unwrap();
        assert!(
            (now + 86_400..=now + 86_402).contains(&until),
            "{until} vs {now}"
        );
    }
    // A recorded key's revocation is kept until its own expiry, and says it is recorded.
    let recorded = stack
        .issue_ok(
            ADMIN,
            json!({"resource": "blob:files/d.txt", "ops": ["read"], "ttl": "2m"}),
        )
        .await;
    let id = recorded["id"].as_str().unwrap();
    assert_eq!(admin_status(&stack, id).await["recorded"], true);
    let response = stack
        .http
        .delete(stack.gate_url(&format!("/v1/keys/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let until = revocation_kept_until(&stack, id).unwrap();
    assert!((now + 120..=now + 122).contains(&until), "{until} vs {now}");
}

/// `before: "now"` covers the current second (key times are whole seconds), and answers only
/// once that second is over: a key issued before the call is revoked, and a key issued after
/// the answer, through the API or a delegate route, works, every time.
#[tokio::test]
async fn a_key_issued_after_a_revocation_before_now_works() {
    let stack = Stack::start().await;
    put_blob(&stack, "users/alice/r", "r").await;
    let body = json!({"resource": "blob:users/alice/r", "ops": ["read"]});
    let revoke = |who: &'static str, body: serde_json::Value| {
        let stack = &stack;
        async move { stack.revoke_many(who, &body).await.status() }
    };
    for round in 0..3 {
        let earlier = stack.issue_ok(ALICE, body.clone()).await;
        let (who, revocation) = if round == 2 {
            (ADMIN, json!({"before": "now"}))
        } else {
            (ALICE, json!({"subject": "alice", "before": "now"}))
        };
        assert_eq!(revoke(who, revocation).await, 204);
        let later = stack.issue_ok(ALICE, body.clone()).await;
        assert_eq!(
            store_get(&stack, later["url"].as_str().unwrap()).await,
            (200, "r".into()),
            "round {round}: a key issued after the answer"
        );
        let redirect = stack.get_as("/me/r", ALICE).await;
        assert_eq!(redirect.status(), 307);
        let location = redirect.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(
            store_get(&stack, &location).await,
            (200, "r".into()),
            "round {round}: a delegated key minted after the answer"
        );
        assert_eq!(
            store_get(&stack, earlier["url"].as_str().unwrap()).await,
            (403, "key_revoked".into()),
            "round {round}: a key issued before the call"
        );
    }
}
