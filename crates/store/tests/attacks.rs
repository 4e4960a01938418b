//! Attacks on the store over real HTTP on loopback: scope escapes in every encoding (sent as
//! raw bytes, so that no client library normalises them), operation confusion, two keys at
//! once, oversize requests, replayed exhausted and revoked keys (also across a restart), the
//! validity window at the skew bounds, forged client addresses, CORS from origins not allowed,
//! and keys leaking into logs. Each asserts the exact status and error code.
//! `docs/SECURITY.md` lists each attack with the test that proves it.

mod support;

use std::sync::Arc;

use reqwest::Method;
use support::*;
use valet_key::{Caveat, Limits, UnixTime};
use valet_ledger::Ledger;
use valet_testkit::{logs, raw_http};

/// Status and error code of a reqwest response (code empty for a success).
async fn answer(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, raw_http::error_code(&text).unwrap_or_default())
}

/// Status and error code of a raw request, sent byte for byte.
async fn raw_answer(s: &TestStore, request: &str) -> (u16, String) {
    raw_http::status_and_code(&s.raw(request).await)
}

/// `GET target` as raw bytes, with `Connection: close` and `extra` header lines: status and
/// error code.
async fn raw_get(s: &TestStore, target: &str, extra: &str) -> (u16, String) {
    raw_answer(s, &support::raw_get(target, extra)).await
}

fn bad_path() -> (u16, String) {
    (400, "bad_path".to_owned())
}

fn limited(s: &TestStore, scope: &str, ops: &str, limits: Limits) -> valet_key::Token {
    s.token(scope, ops, KeySpec::limited(limits))
}

fn uses(n: u64) -> Limits {
    Limits {
        max_uses: Some(n),
        ..Limits::default()
    }
}

#[tokio::test]
async fn every_traversal_and_ambiguous_encoding_is_bad_path() {
    let s = TestStore::start().await;
    s.put("files", "public/ok", "fine", "text/plain").await;
    s.put("files", "secret/s", "secret", "text/plain").await;
    s.put("secret", "s", "secret", "text/plain").await;
    std::fs::write(s.data().join("outside"), "outside").unwrap();
    let key = s.key("blob:files/public/", "read");
    assert_eq!(
        raw_get(&s, &format!("/blob/files/public/ok?vk={key}"), "").await,
        (200, String::new())
    );
    let long_segment = "a".repeat(valet_key::MAX_PATH_LEN);
    let long_container = "c".repeat(valet_key::MAX_NAME_LEN + 1);
    for path in [
        // Dot segments, raw and in every encoding, once and twice.
        "/blob/files/public/../secret/s",
        "/blob/files/public/../../secret/s",
        "/blob/files/public/./ok",
        "/blob/files/public/%2e%2e/secret/s",
        "/blob/files/public/%2E%2E/secret/s",
        "/blob/files/public/%2e./secret/s",
        "/blob/files/public/.%2E/secret/s",
        "/blob/files/public/%2e/ok",
        "/blob/files/public/%252e%252e/secret/s",
        "/blob/files/public/%25%32%65%25%32%65/secret/s",
        "/blob/files/public/%%32%65%%32%65/secret/s",
        "/blob/files/public/%2e%2e%2f%2e%2e%2f%2e%2e%2foutside",
        // Encoded separators.
        "/blob/files/public/..%2fsecret%2fs",
        "/blob/files/public/..%2Fsecret/s",
        "/blob/files/public/%252fsecret",
        "/blob/files%2fpublic/ok",
        "/blob/files/public/..%5csecret%5cs",
        "/blob/files/public/..\\secret\\s",
        "/blob/files/public/%255c",
        // Overlong and invalid UTF-8 (`%c0%ae` is an overlong '.', `%c0%af` an overlong '/').
        "/blob/files/public/%c0%ae%c0%ae/secret/s",
        "/blob/files/public/%e0%80%ae%e0%80%ae/secret/s",
        "/blob/files/public/%f0%80%80%ae/x",
        "/blob/files/public/..%c0%afsecret",
        "/blob/files/public/%ff%fe",
        "/blob/files/public/%80",
        "/blob/files/public/%ed%a0%80",
        // NUL and other control characters, C0, DEL and C1.
        "/blob/files/public/ok%00.txt",
        "/blob/files/public/ok%00",
        "/blob/files/public/ok%0a",
        "/blob/files/public/ok%0d%0aX-Injected:%201",
        "/blob/files/public/ok%09",
        "/blob/files/public/ok%7f",
        "/blob/files/public/ok%c2%85",
        "/blob/files/public/ok%c2%9f",
        // Empty segments and trailing slashes.
        "/blob/files/public/ok/",
        "/blob/files/public//ok",
        "/blob/files//public/ok",
        "/blob/files/",
        "/blob//files/public/ok",
        "/blob/",
        // Names are lowercase only, never folded.
        "/blob/Files/public/ok",
        "/blob/FILES/public/ok",
        "/blob/fi_les/public/ok",
        "/blob/%2e%2e/files/public/ok",
    ] {
        let target = format!("{path}?vk={key}");
        assert_eq!(raw_get(&s, &target, "").await, bad_path(), "{path}");
    }
    // Lengths: one byte over the path limit, a container name over its limit.
    let too_long = format!("/blob/files/public/{long_segment}?vk={key}");
    assert_eq!(raw_get(&s, &too_long, "").await, bad_path());
    let container = format!("/blob/{long_container}/x?vk={key}");
    assert_eq!(raw_get(&s, &container, "").await, bad_path());
    // A raw `#` ends the target: the fragment and everything after it, the key included, are
    // dropped before the store sees the path.
    let target = format!("/blob/files/public/../ok#x?vk={key}");
    assert_eq!(raw_get(&s, &target, "").await, bad_path());
    let target = format!("/blob/files/public/ok#x?vk={key}");
    assert_eq!(raw_get(&s, &target, "").await, (401, "key_missing".into()));
    // A raw space or a raw control byte in the request line is refused by the HTTP parser
    // before the store sees it (400, no JSON); so is invalid UTF-8 (`http` checks it).
    for path in ["/blob/files/public/o k", "/blob/files/public/ok\u{1}"] {
        let (status, _) = raw_get(&s, &format!("{path}?vk={key}"), "").await;
        assert_eq!(status, 400, "{path:?}");
    }
    // Names that only look like traversal elsewhere are ordinary names here, served (or not
    // found) byte for byte: none of them reaches `secret/s` or the file outside.
    for path in [
        "/blob/files/public/%u002e%u002e/secret/s",
        "/blob/files/public/%ef%bc%8e%ef%bc%8e/secret/s",
        "/blob/files/public/.../secret/s",
        "/blob/files/public/..%20/secret/s",
        "/blob/files/public/..;/secret/s",
    ] {
        let target = format!("{path}?vk={key}");
        assert_eq!(
            raw_get(&s, &target, "").await,
            (404, "not_found".to_owned()),
            "{path}"
        );
    }
    // Percent-encoding of ordinary characters is decoded once: the same blob, the same key.
    let exact = s.key("blob:files/public/ok", "read");
    let target = format!("/blob/%66iles/public/%6F%6b?vk={exact}");
    assert_eq!(raw_get(&s, &target, "").await, (200, String::new()));
}

#[tokio::test]
async fn case_and_prefix_confusions_are_out_of_scope() {
    let s = TestStore::start().await;
    for path in [
        "public/ok",
        "public/OK",
        "public-x/ok",
        "publicx/ok",
        "public.bak/ok",
    ] {
        s.put("files", path, "x", "text/plain").await;
    }
    s.put("files-private", "public/ok", "x", "text/plain").await;
    let exact = s.key("blob:files/public/ok", "read");
    let prefix = s.key("blob:files/public/", "read,list");
    let get = |path: &str, key: &str| {
        let url = s.url(&format!("/blob/{path}?vk={key}"));
        let http = s.http.clone();
        async move { answer(http.get(url).send().await.unwrap()).await }
    };
    assert_eq!(get("files/public/ok", &exact).await.0, 200);
    for path in ["files/public/OK", "files/public/ok/x", "files/public"] {
        assert_eq!(
            get(path, &exact).await,
            (403, "out_of_scope".into()),
            "{path}"
        );
    }
    assert_eq!(get("files/public/OK", &prefix).await.0, 200);
    for path in [
        "files/public-x/ok",
        "files/publicx/ok",
        "files/public.bak/ok",
        "files/public",
        "files-private/public/ok",
    ] {
        assert_eq!(
            get(path, &prefix).await,
            (403, "out_of_scope".into()),
            "{path}"
        );
    }
    // Listings: the prefix's whole segments must lie inside the key's scope.
    let list = |query: &str, key: &str| {
        let url = s.url(&format!("/blob/files?{query}&vk={key}"));
        let http = s.http.clone();
        async move { answer(http.get(url).send().await.unwrap()).await }
    };
    assert_eq!(list("prefix=public/", &prefix).await.0, 200);
    assert_eq!(list("prefix=public/O", &prefix).await.0, 200);
    // The folder's own name is within it, clipped to the folder (see
    // `a_folder_keys_listing_by_its_folders_name_is_clipped_to_the_folder`).
    assert_eq!(list("prefix=public", &prefix).await.0, 200);
    for query in ["prefix=publicx/", "prefix=publicx", "prefix=", "prefix=p"] {
        assert_eq!(
            list(query, &prefix).await,
            (403, "out_of_scope".into()),
            "{query}"
        );
    }
    for query in [
        "prefix=public/../",
        "prefix=public/./",
        "prefix=public//",
        "prefix=%2e%2e/",
        "prefix=public/%252e%252e/",
        "prefix=public%5c..%5c",
        "prefix=public/%00",
    ] {
        assert_eq!(list(query, &prefix).await, bad_path(), "{query}");
    }
    // What a prefix listing shows stays under the prefix.
    let url = s.url(&format!("/blob/files?prefix=public/&vk={prefix}"));
    let listing: serde_json::Value = s.http.get(url).send().await.unwrap().json().await.unwrap();
    let paths: Vec<&str> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["public/OK", "public/ok"]);
}

#[tokio::test]
async fn operations_are_never_confused() {
    let s = TestStore::start().await;
    s.put("files", "a", "original", "text/plain").await;
    let send = |method: Method, path: &str, key: &str, headers: &[(&str, &str)]| {
        let put = method == Method::PUT;
        let mut request = s
            .http
            .request(method, s.url(&format!("/blob/files{path}?vk={key}")));
        if put {
            request = request.body("changed");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move { answer(request.send().await.unwrap()).await }
    };
    let denied = (403, "op_not_allowed".to_owned());
    // HEAD is a read: no other operation allows it.
    for op in ["write", "create", "delete", "list"] {
        let key = s.key("blob:files", op);
        assert_eq!(send(Method::HEAD, "/a", &key, &[]).await.0, 403, "{op}");
        assert_eq!(send(Method::GET, "/a", &key, &[]).await, denied, "{op}");
    }
    // HEAD spends a use like GET: a one-time key is gone after a HEAD.
    let once = limited(&s, "blob:files/a", "read", uses(1)).to_string();
    assert_eq!(send(Method::HEAD, "/a", &once, &[]).await.0, 200);
    assert_eq!(
        send(Method::GET, "/a", &once, &[]).await,
        (403, "key_exhausted".into())
    );
    // Create-only never overwrites, whatever the preconditions say: a `create` key may not
    // send a condition at all (it cannot read), and one that also reads still gets 412.
    let create_only = s.key("blob:files/a", "create");
    assert_eq!(
        send(Method::PUT, "/a", &create_only, &[]).await,
        (412, "precondition_failed".into())
    );
    let create = s.key("blob:files/a", "create,read");
    let etag = s
        .http
        .head(s.url(&format!(
            "/blob/files/a?vk={}",
            s.key("blob:files/a", "read")
        )))
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    for headers in [
        vec![],
        vec![("if-match", etag.as_str())],
        vec![("if-match", "*")],
    ] {
        assert_eq!(
            send(Method::PUT, "/a", &create, &headers).await,
            (412, "precondition_failed".into()),
            "{headers:?}"
        );
    }
    let read = s.key("blob:files/a", "read");
    let body = s
        .http
        .get(s.url(&format!("/blob/files/a?vk={read}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "original");
    // Write implies create and nothing else; list and read are distinct.
    let write = s.key("blob:files", "write");
    assert_eq!(send(Method::DELETE, "/a", &write, &[]).await, denied);
    assert_eq!(send(Method::GET, "", &write, &[]).await, denied);
    let list = s.key("blob:files", "list");
    assert_eq!(send(Method::GET, "/a", &list, &[]).await, denied);
    assert_eq!(
        send(Method::GET, "", &read, &[]).await,
        (403, "out_of_scope".into())
    );
    let read_all = s.key("blob:files", "read");
    assert_eq!(send(Method::GET, "", &read_all, &[]).await, denied);
    let delete = s.key("blob:files", "delete");
    assert_eq!(send(Method::PUT, "/a", &delete, &[]).await, denied);
    // Methods the store does not serve are refused before any key is looked at.
    for method in ["POST", "PATCH", "PROPFIND", "TRACE"] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let full = s.key("blob:files", "read,write,delete,list");
        let got = send(m, "/a", &full, &[]).await;
        assert_eq!(got, (405, "method_not_allowed".into()), "{method}");
    }
    // Whether a blob exists is not told to a request without a valid key for it.
    for path in ["/a", "/missing"] {
        let r = s
            .http
            .head(s.url(&format!("/blob/files{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let other = s.key("blob:files/b", "read");
        assert_eq!(
            send(Method::GET, path, &other, &[]).await,
            (403, "out_of_scope".into()),
            "{path}"
        );
    }
}

/// What a request is, its query, its extra header lines, and the answer it must get.
type Case<'a> = (&'a str, String, Vec<String>, (u16, String));

#[tokio::test]
async fn a_request_carries_exactly_one_key_wherever_it_travels() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let good = s.key("blob:files/a", "read");
    let other = s.key("blob:files/b", "read");
    let two = (400, "bad_request".to_owned());
    let cases: Vec<Case> = vec![
        (
            "query only",
            format!("vk={good}"),
            vec![],
            (200, String::new()),
        ),
        (
            "header only, scheme in any case",
            String::new(),
            vec![format!("Authorization: vALeT {good}")],
            (200, String::new()),
        ),
        (
            "good header, bad query",
            format!("vk={other}"),
            vec![format!("Authorization: Valet {good}")],
            two.clone(),
        ),
        (
            "good query, bad header",
            format!("vk={good}"),
            vec![format!("Authorization: Valet {other}")],
            two.clone(),
        ),
        (
            "two headers",
            String::new(),
            vec![
                format!("Authorization: Valet {good}"),
                format!("Authorization: Valet {good}"),
            ],
            two.clone(),
        ),
        (
            "two query keys",
            format!("vk={good}&vk={good}"),
            vec![],
            two.clone(),
        ),
        (
            "an empty query key beside a header",
            "vk=".to_owned(),
            vec![format!("Authorization: Valet {good}")],
            two.clone(),
        ),
        (
            "the name percent-encoded",
            format!("%76k={other}"),
            vec![format!("Authorization: Valet {good}")],
            two.clone(),
        ),
        (
            "a differently cased name is no key",
            format!("VK={good}"),
            vec![],
            (401, "key_missing".into()),
        ),
        (
            "a ';' is no separator",
            format!("x=1;vk={good}"),
            vec![],
            (401, "key_missing".into()),
        ),
        (
            "other headers are no key",
            String::new(),
            vec![
                format!("Cookie: vk={good}"),
                format!("X-Valet-Key: {good}"),
                format!("Authorization: Bearer {good}"),
            ],
            (401, "key_missing".into()),
        ),
        (
            "an encoded '#' stays in the key",
            format!("vk={good}%23x"),
            vec![],
            (400, "key_malformed".into()),
        ),
    ];
    for (what, query, headers, want) in cases {
        let target = if query.is_empty() {
            "/blob/files/a".to_owned()
        } else {
            format!("/blob/files/a?{query}")
        };
        let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        assert_eq!(raw_get(&s, &target, &extra).await, want, "{what}");
    }
}

#[tokio::test]
async fn oversize_heads_urls_and_tokens_are_refused_exactly() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let key = s.key("blob:files/a", "read");
    // A 300 KiB header, and more headers than the parser keeps: 431, nothing else read.
    let big_header = format!("X-Big: {}\r\n", "a".repeat(300 * 1024));
    assert_eq!(raw_get(&s, "/blob/files/a", &big_header).await.0, 431);
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(raw_get(&s, "/blob/files/a", &many).await.0, 431);
    // A 300 KiB URL: the whole head is over the limit.
    let big_url = format!("/blob/files/{}?vk={key}", "a".repeat(300 * 1024));
    assert_eq!(raw_get(&s, &big_url, "").await.0, 431);
    // A URL the parser takes but whose path is over the key crate's limit: bad_path.
    let long_path = format!("/blob/files/{}a?vk={key}", "a/".repeat(600));
    assert_eq!(raw_get(&s, &long_path, "").await, bad_path());
    // A token over 4096 characters is malformed, read no further.
    let long_token = format!("{key}{}", "A".repeat(5000));
    let target = format!("/blob/files/a?vk={long_token}");
    assert_eq!(
        raw_get(&s, &target, "").await,
        (400, "key_malformed".into())
    );
    // The store still serves.
    let target = format!("/blob/files/a?vk={key}");
    assert_eq!(raw_get(&s, &target, "").await.0, 200);
}

#[tokio::test]
async fn exhausted_keys_stay_exhausted_however_they_are_replayed_or_narrowed() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let get = |key: String| {
        let url = s.url(&format!("/blob/files/a?vk={key}"));
        let http = s.http.clone();
        async move { answer(http.get(url).send().await.unwrap()).await }
    };
    let exhausted = (403, "key_exhausted".to_owned());
    let once = limited(&s, "blob:files/a", "read", uses(1));
    assert_eq!(get(once.to_string()).await.0, 200);
    for _ in 0..5 {
        assert_eq!(get(once.to_string()).await, exhausted);
    }
    // A caveat raising the cap is outvoted; a narrowing shares the key id and its count.
    let raised = once
        .append(Caveat {
            max_uses: Some(1000),
            ..Caveat::default()
        })
        .unwrap();
    assert_eq!(get(raised.to_string()).await, exhausted);
    let narrowed = s.attenuated(
        &once,
        Caveat {
            expires: Some(now().plus(60)),
            ..Caveat::default()
        },
    );
    assert_eq!(get(narrowed).await, exhausted);

    // Uses are counted per key id across every attenuation; a smaller cap in a caveat is
    // checked against that shared count.
    let three = limited(&s, "blob:files/a", "read", uses(3));
    let one_of_them = s.attenuated(
        &three,
        Caveat {
            max_uses: Some(1),
            ..Caveat::default()
        },
    );
    assert_eq!(get(one_of_them.clone()).await.0, 200);
    assert_eq!(get(three.to_string()).await.0, 200);
    assert_eq!(get(one_of_them).await, exhausted);
    assert_eq!(get(three.to_string()).await.0, 200);
    assert_eq!(get(three.to_string()).await, exhausted);
    // Denied requests spend nothing: a key used out of scope keeps its use.
    let spare = limited(&s, "blob:files/a", "read", uses(1));
    let r = s
        .http
        .get(s.url(&format!("/blob/files/b?vk={spare}")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(r).await, (403, "out_of_scope".into()));
    assert_eq!(get(spare.to_string()).await.0, 200);
}

/// The `max_uses` bypass through a short-lived narrowing: a one-time key valid for an hour,
/// first used through a copy narrowed to one second. The count used to be kept only until
/// the copy's expiry, so the next minute's pruning forgot it and the key was new again (200
/// at +0, +40, +100, +160 s). Pruning is `Ledger::forget_expired(now)`, what `valet serve`
/// runs once a minute; it is called here with the times those prunings would run at.
#[tokio::test]
async fn a_use_spent_through_a_short_narrowing_is_never_forgotten_while_the_key_lives() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let exhausted = (403, "key_exhausted".to_owned());
    let short = |token: &valet_key::Token| {
        s.attenuated(
            token,
            Caveat {
                expires: Some(now().plus(1)),
                ..Caveat::default()
            },
        )
    };
    let get = |key: String| {
        let url = s.url(&format!("/blob/files/a?vk={key}"));
        let http = s.http.clone();
        async move { answer(http.get(url).send().await.unwrap()).await }
    };
    let put = |key: String| {
        let url = s.url(&format!("/blob/files/a?vk={key}"));
        let http = s.http.clone();
        async move { answer(http.put(url).body("y").send().await.unwrap()).await }
    };
    let reader = s.token(
        "blob:files/a",
        "read",
        KeySpec {
            expires: Some(now().plus(3600)),
            limits: uses(1),
            ..KeySpec::default()
        },
    );
    let writer = s.token(
        "blob:files/a",
        "write",
        KeySpec {
            expires: Some(now().plus(3600)),
            limits: uses(1),
            ..KeySpec::default()
        },
    );
    assert_eq!(get(short(&reader)).await, (200, String::new()));
    assert_eq!(put(short(&writer)).await, (201, String::new()));
    let start = now();
    // The first pruning is well past the narrowing's expiry and grace, before anything else is
    // presented (a refused admission raises a count's expiry too, which would hide the bug).
    for later in [100, 160, 600, 3000] {
        // A pruning at `start + later` forgets nothing of these keys.
        s.ledger.forget_expired(start.plus(later)).unwrap();
        for (token, what) in [(&reader, "reader"), (&writer, "writer")] {
            assert_eq!(
                s.ledger.status(token.claims().key_id).unwrap().uses,
                1,
                "{what} +{later}"
            );
        }
        assert_eq!(get(reader.to_string()).await, exhausted, "root +{later}");
        assert_eq!(get(short(&reader)).await, exhausted, "narrowing +{later}");
        assert_eq!(put(writer.to_string()).await, exhausted, "root +{later}");
        assert_eq!(put(short(&writer)).await, exhausted, "narrowing +{later}");
    }
}

/// A raw `PUT target` of `body` with `Connection: close` and `extra` header lines, byte for
/// byte (so that no client library refuses or rewrites an odd header first).
fn raw_put(target: &str, extra: &[u8], body: &str) -> Vec<u8> {
    let mut request = format!(
        "PUT {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(extra);
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body.as_bytes());
    request
}

/// The content-type limit sidestepped by a list: a key limited to `image/png` took
/// `image/png;,text/html`, kept it and served it back, and browsers read the last type of a
/// list. Every `Content-Type` is now one media type by RFC 9110's grammar, or refused
/// (whatever the key's limit), and what is stored and served back is its canonical form.
#[tokio::test]
async fn a_content_type_limit_cannot_be_sidestepped_by_a_list_or_a_malformed_type() {
    let s = TestStore::start().await;
    let png = limited(
        &s,
        "blob:files",
        "write",
        Limits {
            content_type: Some("image/png".parse().unwrap()),
            ..Limits::default()
        },
    )
    .to_string();
    let open = s.key("blob:files", "write");
    let bad = (400, "bad_content_type".to_owned());
    let mut n = 0;
    for value in [
        &b"image/png;,text/html"[..],
        b"image/png, text/html",
        b"image/png,text/html",
        b"text/html, image/png",
        b"image/png;charset",
        b"image/png;charset=",
        b"image/png;=utf-8",
        b"image/png;a=b;a=c",
        b"image/png;a=b;A=c",
        b"image/png; a=\"x,text/html\"",
        b"image/png; a=\"unterminated",
        b"image/png; a=b c",
        b"image/png text/html",
        b"image/png\ttext/html",
        b"image/png\xc3\xa9",
        b"image/png; a=\"\xe2\x80\xae\"",
        b"image/png; a=\xff",
        b"image",
        b"image/",
        b"/png",
        b"image/png/html",
    ] {
        for key in [&png, &open] {
            n += 1;
            let mut header = b"Content-Type: ".to_vec();
            header.extend_from_slice(value);
            header.extend_from_slice(b"\r\n");
            let request = raw_put(&format!("/blob/files/t{n}?vk={key}"), &header, "data");
            let answer = raw_http::send(s.addr, &request).await;
            let got = raw_http::status_and_code(&answer);
            let shown = String::from_utf8_lossy(value);
            assert_eq!(got, bad, "{shown:?}");
            assert!(
                !s.blob_file("files", &format!("t{n}")).exists(),
                "{shown:?}"
            );
        }
    }
    // Two headers are a list too.
    let two = raw_put(
        &format!("/blob/files/two?vk={png}"),
        b"Content-Type: image/png\r\nContent-Type: text/html\r\n",
        "data",
    );
    assert_eq!(
        raw_http::status_and_code(&raw_http::send(s.addr, &two).await),
        bad
    );
    // Control characters other than a tab are refused by the HTTP parser, before the store.
    for (i, control) in [&b"\x01"[..], b"\x1b", b"\x7f", b"\x00"]
        .into_iter()
        .enumerate()
    {
        let mut header = b"Content-Type: image/png; a=\"".to_vec();
        header.extend_from_slice(control);
        header.extend_from_slice(b"\"\r\n");
        let request = raw_put(&format!("/blob/files/c{i}?vk={png}"), &header, "d");
        assert_eq!(
            raw_http::status_of(&raw_http::send(s.addr, &request).await),
            400
        );
        assert!(!s.blob_file("files", &format!("c{i}")).exists());
    }

    // Good types in odd spellings are stored, answered and served back canonical.
    for (i, (sent, key, stored)) in [
        ("IMAGE/PNG", &png, "image/png"),
        ("image/png ;  Q=\"1\"", &png, "image/png; q=1"),
        ("Image/Png; A=\"b c\"", &png, "image/png; a=\"b c\""),
        ("image/png;", &png, "image/png"),
        (
            "TEXT/HTML; Charset=UTF-8",
            &open,
            "text/html; charset=UTF-8",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let url = s.url(&format!("/blob/files/ok{i}?vk={key}"));
        let r = s
            .http
            .put(&url)
            .header("content-type", sent)
            .body("data")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{sent}");
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json["content_type"], stored, "{sent}");
        let read = s.key(&format!("blob:files/ok{i}"), "read");
        let r = s
            .http
            .get(s.url(&format!("/blob/files/ok{i}?vk={read}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], stored, "{sent}");
    }
    // And a type outside the limit, well formed, is still `content_type_not_allowed`.
    let r = s
        .http
        .put(s.url(&format!("/blob/files/html?vk={png}")))
        .header("content-type", "text/html")
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(answer(r).await, (415, "content_type_not_allowed".into()));
}

/// A 300-byte segment answered `500 internal: File name too long` (with an ERROR log line):
/// segments are at most 255 bytes (`NAME_MAX`) when the path is parsed, so every method, the
/// listing prefix and the scope of a key refuse longer ones with `400 bad_path`, and a path
/// too long as a whole (many segments, past `PATH_MAX`) too.
#[tokio::test]
async fn segments_longer_than_a_file_name_are_bad_path_never_internal() {
    let s = TestStore::start().await;
    let key = s.key("blob:files", "read,write,delete,list");
    let longest = "a".repeat(valet_key::MAX_SEGMENT_LEN);
    let multi = "é".repeat(127); // 254 bytes of two-byte characters
                                 // Four segments of 255 bytes: 1023 bytes, deep folders, all fine.
    let wide = "e".repeat(valet_key::MAX_SEGMENT_LEN);
    let deep = [wide.as_str(); 4].join("/");
    for path in [
        longest.clone(),
        format!("d/{longest}"),
        format!("{multi}x"),
        deep,
    ] {
        let url = s.url(&format!("/blob/files/{path}?vk={key}"));
        let put = s.http.put(&url).body("ok").send().await.unwrap();
        assert_eq!(put.status(), 201, "{} bytes", path.len());
        assert_eq!(s.get_bytes(&url).await.unwrap(), "ok");
    }
    let too_long = "b".repeat(valet_key::MAX_SEGMENT_LEN + 1);
    let many = ["c"; 2100].join("/"); // 4199 bytes: past PATH_MAX as well
    for path in [
        too_long.clone(),
        format!("d/{too_long}"),
        format!("{too_long}/x"),
        "é".repeat(128),
        "x".repeat(300),
        many,
    ] {
        for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            let url = s.url(&format!("/blob/files/{path}?vk={key}"));
            let r = s
                .http
                .request(method.clone(), &url)
                .body("x")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{method} {} bytes", path.len());
            if method != Method::HEAD {
                assert_eq!(error_code(r).await, "bad_path", "{method}");
            }
        }
    }
    let prefix = format!("{too_long}/");
    let r = s
        .http
        .get(s.url(&format!("/blob/files?prefix={prefix}&vk={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(r).await, bad_path());
    assert!(format!("blob:files/{too_long}")
        .parse::<valet_key::Scope>()
        .is_err());
}

/// A folder of the data tier that vanished (an operator's mistake) is the store's failure,
/// `500 internal`, never a `404` telling clients their blob does not exist.
#[tokio::test]
async fn a_missing_data_folder_is_internal_not_not_found() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let key = s.key("blob:files", "read,write");
    let url = s.url(&format!("/blob/files/a?vk={key}"));
    std::fs::remove_dir(s.data().join("tmp")).unwrap();
    let r = s.http.put(&url).body("y").send().await.unwrap();
    assert_eq!(answer(r).await, (500, "internal".into()));
    let r = s
        .http
        .get(s.url(&format!("/blob/files/none?vk={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(r).await, (500, "internal".into()), "tmp/ gone");
    std::fs::create_dir(s.data().join("tmp")).unwrap();
    let r = s
        .http
        .get(s.url(&format!("/blob/files/none?vk={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(r).await, (404, "not_found".into()), "a missing blob");
    std::fs::rename(s.data().join("blobs"), s.data().join("moved")).unwrap();
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(answer(r).await, (500, "internal".into()), "blobs/ gone");
}

/// A folder key `blob:files/photos/` refused `?prefix=photos` (no slash), a prefix naming
/// exactly its folder. It is now admitted, and the listing clipped to the folder: never
/// `photos-private/…`, `photos.txt` or `photo/…`, which the prefix (or a near one) matches and
/// the key does not cover.
#[tokio::test]
async fn a_folder_keys_listing_by_its_folders_name_is_clipped_to_the_folder() {
    let s = TestStore::start().await;
    for path in [
        "photos/a",
        "photos/b/c",
        "photos-private/x",
        "photos.txt",
        "photo/y",
        "other/z",
    ] {
        s.put("files", path, "x", "text/plain").await;
    }
    let folder = s.key("blob:files/photos/", "list");
    let container = s.key("blob:files", "list");
    let list = |key: &str, query: &str| {
        let url = s.url(&format!("/blob/files?{query}&vk={key}"));
        let http = s.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let json: serde_json::Value = r.json().await.unwrap();
            let paths: Vec<String> = json["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| i["path"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            (
                status,
                paths,
                json["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    let in_folder = vec!["photos/a".to_owned(), "photos/b/c".to_owned()];
    for query in [
        "prefix=photos",
        "prefix=photos/",
        "prefix=photos%2F",
        "prefix=photos%2f",
    ] {
        assert_eq!(
            list(&folder, query).await,
            (200, in_folder.clone(), String::new()),
            "{query}"
        );
    }
    assert_eq!(list(&folder, "prefix=photos/b").await.1, ["photos/b/c"]);
    for query in [
        "prefix=photo",
        "prefix=photos-private",
        "prefix=photos-private/",
        "prefix=photos.txt",
        "prefix=photos-",
        "prefix=",
        "limit=5",
        "prefix=other",
        "prefix=Photos",
    ] {
        let (status, paths, code) = list(&folder, query).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "out_of_scope"),
            "{query}: {paths:?}"
        );
    }
    // A prefix is matched as text, never walked as a path: `photos/..` matches nothing.
    assert_eq!(
        list(&folder, "prefix=photos%2F..").await,
        (200, vec![], String::new())
    );
    // Pages stay clipped.
    let (_, first, _) = list(&folder, "prefix=photos&limit=1").await;
    assert_eq!(first, ["photos/a"]);
    let (_, second, _) = list(&folder, "prefix=photos&limit=1&cursor=photos%2Fa").await;
    assert_eq!(second, ["photos/b/c"]);
    let (_, third, _) = list(&folder, "prefix=photos&limit=5&cursor=photos%2Fb%2Fc").await;
    assert!(third.is_empty(), "{third:?}");
    // A container key still lists everything the prefix matches.
    let (status, all, _) = list(&container, "prefix=photos").await;
    assert_eq!(status, 200);
    assert_eq!(
        all,
        ["photos-private/x", "photos.txt", "photos/a", "photos/b/c"]
    );
    // A narrower caveat is not widened by the second scope.
    let narrowed = s.attenuated(
        &s.token("blob:files/photos/", "list", KeySpec::default()),
        Caveat {
            scope: Some(scope("blob:files/photos/b/")),
            ..Caveat::default()
        },
    );
    let (status, _, code) = list(&narrowed, "prefix=photos").await;
    assert_eq!((status, code.as_str()), (403, "out_of_scope"));
    assert_eq!(list(&narrowed, "prefix=photos/b").await.1, ["photos/b/c"]);
}

/// A write-only key was an oracle: `PUT` with `If-Match: "<sha256 of a guess>"` answered 412
/// when wrong and 200 when right, and 201 against 200 told whether the blob existed. A key
/// without `read` now may send no condition on the current version, and gets the same answer
/// whether the blob existed or not; a `read` key keeps both. Only create-only's refusal to
/// overwrite (412) tells a `create` key that something is there, which is what create-only is.
#[tokio::test]
async fn a_key_that_cannot_read_learns_nothing_of_what_is_stored() {
    use sha2::Digest;
    let s = TestStore::start().await;
    s.put("files", "secret", "the secret", "text/plain").await;
    let right = format!("\"{}\"", hex(&sha2::Sha256::digest(b"the secret")));
    let wrong = format!("\"{}\"", hex(&sha2::Sha256::digest(b"a guess")));
    let needs_read = (403, "condition_needs_read".to_owned());
    let date = "Thu, 01 Jan 2026 00:00:00 GMT";
    let conditions = [
        ("if-match", right.as_str()),
        ("if-match", wrong.as_str()),
        ("if-match", "*"),
        ("if-none-match", right.as_str()),
        ("if-none-match", wrong.as_str()),
        ("if-none-match", "W/\"x\", \"y\""),
        ("if-unmodified-since", date),
        ("if-modified-since", date),
        ("if-unmodified-since", "not a date"),
    ];
    for ops in ["write", "create", "write,list"] {
        let key = s.key("blob:files", ops);
        for (name, value) in conditions {
            let url = s.url(&format!("/blob/files/secret?vk={key}"));
            let r = s.put_with(&url, Some((name, value)), "overwritten?").await;
            assert_eq!(answer(r).await, needs_read, "{ops} {name}: {value}");
        }
    }
    let deleter = s.key("blob:files", "delete");
    for (name, value) in conditions {
        let url = s.url(&format!("/blob/files/secret?vk={deleter}"));
        let r = s
            .http
            .delete(&url)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(answer(r).await, needs_read, "delete {name}: {value}");
    }
    let reader = s.key("blob:files/secret", "read");
    let body = s
        .get_bytes(&s.url(&format!("/blob/files/secret?vk={reader}")))
        .await
        .unwrap();
    assert_eq!(body, "the secret", "nothing was written or deleted");

    // The same status, ETag and body for a new blob and a replaced one.
    let writer = s.key("blob:files", "write");
    let mut answers = Vec::new();
    for path in ["secret", "fresh"] {
        let url = s.url(&format!("/blob/files/{path}?vk={writer}"));
        let r = s.put_with(&url, None, "same bytes").await;
        let status = r.status().as_u16();
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        let mut json: serde_json::Value = r.json().await.unwrap();
        json.as_object_mut().unwrap().remove("path");
        answers.push((status, etag, json));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 201);
    // `If-None-Match: *` stays allowed: create-only, whose refusal is what create means.
    let url = s.url(&format!("/blob/files/fresh?vk={writer}"));
    let r = s.put_with(&url, Some(("if-none-match", "*")), "x").await;
    assert_eq!(answer(r).await, (412, "precondition_failed".into()));
    // A key that may read keeps conditions and `200` for a replacement.
    let both = s.key("blob:files", "read,write");
    let url = s.url(&format!("/blob/files/fresh?vk={both}"));
    let same = format!("\"{}\"", hex(&sha2::Sha256::digest(b"same bytes")));
    let r = s
        .put_with(&url, Some(("if-match", wrong.as_str())), "x")
        .await;
    assert_eq!(answer(r).await, (412, "precondition_failed".into()));
    let r = s
        .put_with(&url, Some(("if-match", same.as_str())), "y")
        .await;
    assert_eq!(r.status(), 200);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A store on a data folder the test owns, so that it can be stopped and started again.
struct Restartable {
    dir: tempfile::TempDir,
    keyring: valet_key::Keyring,
}

struct Running {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Restartable {
    fn new() -> Restartable {
        let dir = tempfile::tempdir().unwrap();
        let keyring = valet_keyring::create(&dir.path().join("keyring")).unwrap();
        Restartable { dir, keyring }
    }

    fn ledger(&self) -> Arc<valet_ledger::SqliteLedger> {
        Arc::new(valet_ledger::SqliteLedger::open(&self.dir.path().join("ledger.sqlite")).unwrap())
    }

    async fn start(&self) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = valet_store::StoreConfig::new(self.dir.path().to_owned(), addr);
        config.keyring_path = self.dir.path().join("keyring");
        let store = valet_store::Store::open(
            config,
            self.keyring.clone(),
            self.ledger() as Arc<dyn Ledger>,
        )
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            valet_store::serve(store, listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Running { addr, stop, task }
    }
}

impl Running {
    async fn get(&self, path_and_query: &str) -> (u16, String) {
        let url = format!("http://{}{path_and_query}", self.addr);
        answer(reqwest::get(url).await.unwrap()).await
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

#[tokio::test]
async fn revoked_and_exhausted_keys_stay_refused_after_a_restart() {
    let r = Restartable::new();
    let issue = |limits: Limits, subject: &str| {
        let t = now();
        r.keyring
            .issue(valet_key::Claims {
                key_id: valet_key::KeyId::random(&mut rand_core::OsRng),
                subject: Some(subject.into()),
                scope: scope("blob:files/a"),
                ops: "read,write".parse().unwrap(),
                not_before: t,
                expires: t.plus(600),
                limits,
            })
            .unwrap()
    };
    let writer = issue(Limits::default(), "w");
    let revoked = issue(Limits::default(), "r");
    let once = issue(uses(1), "o");
    let by_subject = issue(Limits::default(), "mallory");
    let first = r.start().await;
    let put = reqwest::Client::new()
        .put(format!("http://{}/blob/files/a?vk={writer}", first.addr))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    for key in [&revoked, &once, &by_subject] {
        assert_eq!(first.get(&format!("/blob/files/a?vk={key}")).await.0, 200);
    }
    let ledger = r.ledger();
    let t = now();
    ledger
        .revoke_key(revoked.claims().key_id, Some(revoked.claims().expires), t)
        .unwrap();
    ledger.revoke_subject("mallory", t.plus(1), t).unwrap();
    first.stop().await;

    let second = r.start().await;
    let cases = [
        (&revoked, "key_revoked"),
        (&by_subject, "key_revoked"),
        (&once, "key_exhausted"),
    ];
    for _ in 0..3 {
        for (key, code) in cases {
            assert_eq!(
                second.get(&format!("/blob/files/a?vk={key}")).await,
                (403, code.to_owned())
            );
        }
    }
    let reader = issue(Limits::default(), "w");
    assert_eq!(
        second.get(&format!("/blob/files/a?vk={reader}")).await.0,
        200
    );
    second.stop().await;
}

#[tokio::test]
async fn the_validity_window_holds_at_and_around_the_skew_bounds() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let get = |spec: KeySpec| {
        let key = s.key_with("blob:files/a", "read", spec);
        let url = s.url(&format!("/blob/files/a?vk={key}"));
        let http = s.http.clone();
        async move { answer(http.get(url).send().await.unwrap()).await }
    };
    let window = |not_before: UnixTime, expires: UnixTime| KeySpec {
        not_before: Some(not_before),
        expires: Some(expires),
        ..KeySpec::default()
    };
    // The default skew is 30 s; 5 s of margin either side for a slow test machine.
    let t = now();
    let ok = (200, String::new());
    assert_eq!(get(window(t.minus(600), t.minus(25))).await, ok);
    assert_eq!(
        get(window(t.minus(600), t.minus(35))).await,
        (403, "key_expired".into())
    );
    assert_eq!(get(window(t.plus(25), t.plus(600))).await, ok);
    assert_eq!(
        get(window(t.plus(35), t.plus(600))).await,
        (403, "key_not_yet_valid".into())
    );
    // A caveat's window gets the same tolerance, no more.
    let root = s.token("blob:files/a", "read", KeySpec::default());
    let cut = |expires: UnixTime| {
        root.append(Caveat {
            expires: Some(expires),
            ..Caveat::default()
        })
        .unwrap()
        .to_string()
    };
    let url = |key: String| s.url(&format!("/blob/files/a?vk={key}"));
    let r = s.http.get(url(cut(t.minus(25)))).send().await.unwrap();
    assert_eq!(answer(r).await, ok);
    let r = s.http.get(url(cut(t.minus(35)))).send().await.unwrap();
    assert_eq!(answer(r).await, (403, "key_expired".into()));

    // With no tolerance, the bounds are exact to the second.
    let strict = TestStore::start_with(|c| c.skew = std::time::Duration::ZERO).await;
    strict.put("files", "a", "x", "text/plain").await;
    let at = |not_before: UnixTime, expires: UnixTime| {
        let key = strict.key_with("blob:files/a", "read", window(not_before, expires));
        let url = strict.url(&format!("/blob/files/a?vk={key}"));
        let http = strict.http.clone();
        async move { answer(http.get(url).send().await.unwrap()).await }
    };
    let t = now();
    assert_eq!(at(t.minus(60), t.plus(5)).await, ok);
    assert_eq!(at(t.minus(60), t).await, (403, "key_expired".into()));
    assert_eq!(
        at(t.plus(3), t.plus(60)).await,
        (403, "key_not_yet_valid".into())
    );
}

#[tokio::test]
async fn client_address_limits_use_the_socket_never_forwarding_headers() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let elsewhere = limited(
        &s,
        "blob:files/a",
        "read",
        Limits {
            client_ips: vec!["203.0.113.0/24".parse().unwrap()],
            ..Limits::default()
        },
    );
    for header in [
        "X-Forwarded-For: 203.0.113.7",
        "X-Real-IP: 203.0.113.7",
        "Forwarded: for=203.0.113.7",
        "True-Client-IP: 203.0.113.7",
        "CF-Connecting-IP: 203.0.113.7",
    ] {
        let target = format!("/blob/files/a?vk={elsewhere}");
        assert_eq!(
            raw_get(&s, &target, &format!("{header}\r\n")).await,
            (403, "ip_not_allowed".into()),
            "{header}"
        );
    }
    // A caveat cannot add the loopback back.
    let widened = elsewhere
        .append(Caveat {
            client_ips: vec!["127.0.0.0/8".parse().unwrap()],
            ..Caveat::default()
        })
        .unwrap();
    let target = format!("/blob/files/a?vk={widened}");
    assert_eq!(
        raw_get(&s, &target, "").await,
        (403, "ip_not_allowed".into())
    );
}

#[tokio::test]
async fn cors_never_allows_an_origin_not_configured() {
    let s = TestStore::start_with(|c| c.cors_origins = vec!["https://app.example".into()]).await;
    s.put("files", "a", "x", "text/plain").await;
    let key = s.key("blob:files/a", "read");
    for origin in [
        "https://evil.example",
        "https://app.example.evil",
        "https://evil-app.example",
        "https://app.example:8443",
        "http://app.example",
        "HTTPS://APP.EXAMPLE",
        "https://app.example/",
        "https://app.example%00.evil",
        "null",
        "*",
        "",
    ] {
        let preflight = s
            .http
            .request(Method::OPTIONS, s.url("/blob/files/a"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), 204, "{origin}");
        let h = preflight.headers();
        for name in [
            "access-control-allow-origin",
            "access-control-allow-methods",
            "access-control-allow-headers",
            "access-control-allow-credentials",
        ] {
            assert!(!h.contains_key(name), "{origin}: {name}");
        }
        let r = s
            .http
            .get(s.url(&format!("/blob/files/a?vk={key}")))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{origin}");
        assert!(
            !r.headers().contains_key("access-control-allow-origin"),
            "{origin}"
        );
        assert_eq!(r.headers()["vary"], "Origin", "{origin}");
    }
    // The allowed origin, asking for a method the store does not serve, gets no allowance.
    for method in ["POST", "PATCH"] {
        let preflight = s
            .http
            .request(Method::OPTIONS, s.url("/blob/files/a"))
            .header("origin", "https://app.example")
            .header("access-control-request-method", method)
            .send()
            .await
            .unwrap();
        assert!(
            !preflight
                .headers()
                .contains_key("access-control-allow-origin"),
            "{method}"
        );
    }
    // Credentials (cookies) are never allowed, even for the allowed origin, and a wildcard
    // configuration answers `*`, never the caller's origin.
    let r = s
        .http
        .get(s.url(&format!("/blob/files/a?vk={key}")))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(!r.headers().contains_key("access-control-allow-credentials"));
    let any = TestStore::start_with(|c| c.cors_origins = vec!["*".into()]).await;
    let preflight = any
        .http
        .request(Method::OPTIONS, any.url("/blob/files/a"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(!preflight
        .headers()
        .contains_key("access-control-allow-credentials"));
}

#[tokio::test]
async fn keys_never_reach_the_logs_or_the_metrics() {
    let capture = logs::capture();
    let s = TestStore::start().await;
    let writer = s.key("blob:files/logged", "write");
    let reader = s.token("blob:files/logged", "read", KeySpec::default());
    let narrowed = s.attenuated(
        &reader,
        Caveat {
            ops: Some("read".parse().unwrap()),
            ..Caveat::default()
        },
    );
    let r = s
        .http
        .put(s.url(&format!("/blob/files/logged?vk={writer}")))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let reader = reader.to_string();
    for (path, key) in [
        ("/blob/files/logged", &reader),
        ("/blob/files/logged", &narrowed),
        ("/blob/files/other", &reader),
        ("/blob/files/../x", &reader),
    ] {
        let _ = s
            .http
            .get(s.url(&format!("{path}?vk={key}")))
            .send()
            .await
            .unwrap();
        let _ = s
            .http
            .get(s.url(path))
            .header("authorization", format!("Valet {key}"))
            .send()
            .await
            .unwrap();
    }
    let metrics = s.metrics_text().await;
    let logs = capture.text();
    assert!(logs.contains("valet::access"), "no access log captured");
    for key in [&writer, &reader, &narrowed] {
        let tag = key.rsplit_once('.').unwrap().1;
        assert!(!logs.contains(tag), "a key's tag reached the logs:\n{logs}");
        assert!(!metrics.contains(tag), "a key's tag reached the metrics");
    }
    assert!(
        !logs.contains("vk="),
        "a query string reached the logs:\n{logs}"
    );
}

/// An `If-Match` or `If-None-Match` that is not `*` or a list of entity tags used to be read as
/// a list of none, so a mistyped condition silently became "no tag matches". It is refused with
/// `400 bad_request`, on every method that reads conditions, before a counted key spends a use.
#[tokio::test]
async fn a_malformed_entity_tag_condition_is_refused_before_a_use_is_spent() {
    let s = TestStore::start().await;
    s.put("files", "tagged", "contents", "text/plain").await;
    let once = |ops: &str| {
        s.key_with(
            "blob:files",
            ops,
            KeySpec::limited(Limits {
                max_uses: Some(1),
                ..Limits::default()
            }),
        )
    };
    for header in ["if-match", "if-none-match"] {
        for bad in ["0", "tag", "\"open", "W/x", "*, \"a\"", "\"a b\""] {
            for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
                let key = once("read,write,delete");
                let url = s.url(&format!("/blob/files/tagged?vk={key}"));
                let r = s
                    .http
                    .request(method.clone(), &url)
                    .header(header, bad)
                    .body("x")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 400, "{method} {header}: {bad}");
                if method != Method::HEAD {
                    assert_eq!(
                        error_code(r).await,
                        "bad_request",
                        "{method} {header}: {bad}"
                    );
                }
                // The key's one use is still there.
                let r = s.http.get(&url).send().await.unwrap();
                assert_eq!(
                    r.status(),
                    200,
                    "{method} {header}: {bad}, then a plain GET"
                );
            }
        }
    }
}
