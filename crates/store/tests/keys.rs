//! The store's key checks over real HTTP: every denial, every operation against every method,
//! traversal in every encoding, prefix confusion, revocation and exact use counting.

mod support;

use reqwest::{Method, StatusCode};
use support::*;
use valet_key::{Caveat, Limits, UnixTime};
use valet_ledger::Ledger;

async fn status_and_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    (
        status,
        if status >= 400 {
            error_code(r).await
        } else {
            String::new()
        },
    )
}

#[tokio::test]
async fn every_key_failure_has_its_code() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let url = |key: &str| s.url(&format!("/blob/files/a?vk={key}"));
    let get = |key: String| {
        let http = s.http.clone();
        let u = url(&key);
        async move { status_and_code(http.get(u).send().await.unwrap()).await }
    };
    let good = s.token("blob:files/a", "read", KeySpec::default());
    assert_eq!(get(good.to_string()).await.0, 200);

    let r = s.http.get(s.url("/blob/files/a")).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Valet");
    assert_eq!(status_and_code(r).await, (401, "key_missing".into()));
    assert_eq!(
        get("vk1.nonsense".into()).await,
        (400, "key_malformed".into())
    );

    let text = good.to_string();
    let (head, tag) = text.rsplit_once('.').unwrap();
    let flipped = if tag.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &tag[1..]);
    assert_eq!(get(tampered).await, (403, "key_invalid".into()));

    let foreign = valet_key::Keyring::generate(&mut rand_core::OsRng, now())
        .issue(good.claims().clone())
        .unwrap();
    assert_eq!(get(foreign.to_string()).await, (403, "key_invalid".into()));

    let window = |from: UnixTime| {
        let spec = KeySpec {
            not_before: Some(from),
            expires: Some(from.plus(60)),
            ..KeySpec::default()
        };
        s.key_with("blob:files/a", "read", spec)
    };
    let past = now().minus(3600);
    let expired = window(past);
    assert_eq!(get(expired).await, (403, "key_expired".into()));
    let future = now().plus(3600);
    let early = window(future);
    assert_eq!(get(early).await, (403, "key_not_yet_valid".into()));

    assert_eq!(
        get(s.key("blob:files/b", "read")).await,
        (403, "out_of_scope".into())
    );
    assert_eq!(
        get(s.key("blob:files/a", "write")).await,
        (403, "op_not_allowed".into())
    );
    let elsewhere = s.key_with(
        "blob:files/a",
        "read",
        KeySpec {
            limits: Limits {
                client_ips: vec!["10.0.0.0/8".parse().unwrap()],
                ..Limits::default()
            },
            ..KeySpec::default()
        },
    );
    assert_eq!(get(elsewhere).await, (403, "ip_not_allowed".into()));
    let here = s.key_with(
        "blob:files/a",
        "read",
        KeySpec {
            limits: Limits {
                client_ips: vec!["127.0.0.0/8".parse().unwrap()],
                ..Limits::default()
            },
            ..KeySpec::default()
        },
    );
    assert_eq!(get(here).await.0, 200);
}

#[tokio::test]
async fn keys_travel_in_the_header_but_never_twice() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let key = s.key("blob:files/a", "read");
    let r = s
        .http
        .get(s.url("/blob/files/a"))
        .header("authorization", format!("Valet {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .get(s.url(&format!("/blob/files/a?vk={key}")))
        .header("authorization", format!("Valet {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(r).await, (400, "bad_request".into()));
    let r = s
        .http
        .get(s.url(&format!("/blob/files/a?vk={key}&vk={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(r).await, (400, "bad_request".into()));
    // Another scheme (a browser's Basic credentials, a bearer token) is not a valet key.
    let r = s
        .http
        .get(s.url(&format!("/blob/files/a?vk={key}")))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_operation_against_every_method() {
    let s = TestStore::start().await;
    let methods = [Method::GET, Method::HEAD, Method::PUT, Method::DELETE];
    // What each method needs on a blob; listing is GET on the container.
    let needs = |m: &Method| match *m {
        Method::GET | Method::HEAD => "read",
        Method::PUT => "create",
        Method::DELETE => "delete",
        _ => unreachable!(),
    };
    for op in [
        "read", "write", "create", "delete", "list", "enqueue", "dequeue", "peek", "update",
    ] {
        let key = s.key("blob:files", op);
        for m in &methods {
            s.put("files", "m", "x", "text/plain").await;
            let r = s
                .http
                .request(m.clone(), s.url(&format!("/blob/files/m?vk={key}")))
                .body("y")
                .send()
                .await
                .unwrap();
            let allowed = op == needs(m) || (op == "write" && needs(m) == "create");
            let status = r.status();
            if allowed {
                // A create-only PUT over an existing blob is a precondition failure, not a denial.
                assert!(
                    status.is_success() || (op == "create" && status == 412),
                    "{op} {m}: {status}"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{op} {m}");
            }
        }
        let r = s
            .http
            .get(s.url(&format!("/blob/files?vk={key}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().is_success(), op == "list", "{op} list");
    }
    let key = s.key("blob:files", "read,write,delete,list");
    let r = s
        .http
        .post(s.url(&format!("/blob/files/m?vk={key}")))
        .body("y")
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(r).await, (405, "method_not_allowed".into()));
}

#[tokio::test]
async fn traversal_is_refused_in_every_encoding() {
    let s = TestStore::start().await;
    s.put("files", "public/ok", "fine", "text/plain").await;
    s.put("secret", "s", "secret", "text/plain").await;
    std::fs::write(s.data().join("outside"), "outside").unwrap();
    let key = s.key("blob:files/public/", "read");
    let ok = s
        .raw_get_status(&format!("/blob/files/public/ok?vk={key}"), "")
        .await;
    assert_eq!(ok, 200);
    for path in [
        "/blob/files/public/../../secret/s",
        "/blob/files/public/..%2f..%2fsecret/s",
        "/blob/files/public/%2e%2e/%2e%2e/secret/s",
        "/blob/files/public/%2E%2E/%2E%2E/secret/s",
        "/blob/files/public/.%2e/.%2e/secret/s",
        "/blob/files/public/%252e%252e/%252e%252e/secret/s",
        "/blob/files/public/%c0%ae%c0%ae/secret/s",
        "/blob/files/public/%e0%80%ae%e0%80%ae/secret/s",
        "/blob/files/public/..%5c..%5csecret/s",
        "/blob/files/public/..\\..\\secret\\s",
        "/blob/files/public/./ok",
        "/blob/files/public//ok",
        "/blob/files/public/ok%00.txt",
        "/blob/files/public/%2e%2e%2f%2e%2e%2f%2e%2e%2foutside",
        "/blob/files/public/ok/",
        "/blob/files%2fpublic/ok",
        "/blob/Files/public/ok",
        "/blob/files/public/%ff%fe",
    ] {
        let status = s.raw_get_status(&format!("{path}?vk={key}"), "").await;
        assert!(status == 400 || status == 403, "{path}: {status}");
    }
}

#[tokio::test]
async fn prefixes_never_cross_a_segment() {
    let s = TestStore::start().await;
    s.put("photos", "2024/a.jpg", "a", "image/jpeg").await;
    s.put("photos", "2024-private/b.jpg", "b", "image/jpeg")
        .await;
    s.put("photos-private", "2024/c.jpg", "c", "image/jpeg")
        .await;
    let key = s.key("blob:photos/2024/", "read");
    let get = |p: &str| s.http.get(s.url(&format!("/blob/{p}?vk={key}"))).send();
    assert_eq!(get("photos/2024/a.jpg").await.unwrap().status(), 200);
    for outside in ["photos/2024-private/b.jpg", "photos-private/2024/c.jpg"] {
        let r = get(outside).await.unwrap();
        assert_eq!(
            status_and_code(r).await,
            (403, "out_of_scope".into()),
            "{outside}"
        );
    }
}

#[tokio::test]
async fn attenuated_keys_work_narrower_against_the_store() {
    let s = TestStore::start().await;
    s.put("files", "2024/jan/a", "a", "text/plain").await;
    s.put("files", "2024/feb/b", "b", "text/plain").await;
    let root = s.token("blob:files/2024/", "read,delete", KeySpec::default());
    let narrowed = s.attenuated(
        &root,
        Caveat {
            scope: Some(scope("blob:files/2024/jan/")),
            ops: Some("read".parse().unwrap()),
            ..Caveat::default()
        },
    );
    let get = |p: &str| {
        s.http
            .get(s.url(&format!("/blob/files/{p}?vk={narrowed}")))
            .send()
    };
    assert_eq!(get("2024/jan/a").await.unwrap().status(), 200);
    assert_eq!(
        status_and_code(get("2024/feb/b").await.unwrap()).await.1,
        "out_of_scope"
    );
    let r = s
        .http
        .delete(s.url(&format!("/blob/files/2024/jan/a?vk={narrowed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(r).await.1, "op_not_allowed");
}

#[tokio::test]
async fn revocation_by_id_subject_and_time_bites_at_the_next_request() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let t = now();
    let get = |key: String| {
        let http = s.http.clone();
        let url = s.url(&format!("/blob/files/a?vk={key}"));
        async move { status_and_code(http.get(url).send().await.unwrap()).await }
    };
    let by_id = s.token("blob:files/a", "read", KeySpec::default());
    assert_eq!(get(by_id.to_string()).await.0, 200);
    s.ledger
        .revoke_key(by_id.claims().key_id, Some(by_id.claims().expires), t)
        .unwrap();
    assert_eq!(get(by_id.to_string()).await, (403, "key_revoked".into()));
    let attenuated = s.attenuated(
        &by_id,
        Caveat {
            ops: Some("read".parse().unwrap()),
            ..Caveat::default()
        },
    );
    assert_eq!(
        get(attenuated).await.1,
        "key_revoked",
        "attenuations share the key id"
    );

    let issued = |subject: &str, at: UnixTime| {
        let spec = KeySpec {
            subject: Some(subject.into()),
            not_before: Some(at),
            ..KeySpec::default()
        };
        s.key_with("blob:files/a", "read", spec)
    };
    let alice_old = issued("alice", t.minus(100));
    let alice_new = issued("alice", t.plus(1));
    let bob_old = issued("bob", t.minus(100));
    s.ledger.revoke_subject("alice", t, t).unwrap();
    assert_eq!(get(alice_old).await.1, "key_revoked");
    assert_eq!(get(alice_new.clone()).await.0, 200);
    assert_eq!(get(bob_old.clone()).await.0, 200);
    s.ledger.revoke_all_before(t, t).unwrap();
    assert_eq!(get(bob_old).await.1, "key_revoked");
    assert_eq!(get(alice_new).await.0, 200);
}

fn counted(s: &TestStore, uses: u64) -> String {
    s.key_with(
        "blob:files/a",
        "read",
        KeySpec {
            limits: Limits {
                max_uses: Some(uses),
                ..Limits::default()
            },
            ..KeySpec::default()
        },
    )
}

#[tokio::test]
async fn uses_are_counted_and_exhausted() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let key = counted(&s, 2);
    let url = s.url(&format!("/blob/files/a?vk={key}"));
    assert_eq!(s.http.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(s.http.head(&url).send().await.unwrap().status(), 200);
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(status_and_code(r).await, (403, "key_exhausted".into()));
}

#[tokio::test]
async fn a_one_time_key_under_64_concurrent_requests_succeeds_exactly_once() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let key = counted(&s, 1);
    let url = s.url(&format!("/blob/files/a?vk={key}"));
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            // A fresh client per task: 64 separate connections, truly concurrent.
            let http = reqwest::Client::new();
            let url = url.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                http.get(url).send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|&&c| c == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|&&c| c == 403).count(), 63);
}

#[tokio::test]
async fn a_broken_ledger_fails_closed() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let key = counted(&s, 5);
    // Another connection holds an exclusive lock: the ledger cannot record the use.
    let blocker = rusqlite::Connection::open(s.data().join("ledger.sqlite")).unwrap();
    blocker
        .execute_batch("PRAGMA busy_timeout = 0; BEGIN EXCLUSIVE;")
        .unwrap();
    let started = std::time::Instant::now();
    let r = s
        .http
        .get(s.url(&format!("/blob/files/a?vk={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(r).await, (503, "ledger_unavailable".into()));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    blocker.execute_batch("ROLLBACK;").unwrap();
    let r = s
        .http
        .get(s.url(&format!("/blob/files/a?vk={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
