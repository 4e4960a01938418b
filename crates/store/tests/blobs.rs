//! Blobs over real HTTP: downloads with ranges and validators, atomic uploads with limits
//! enforced while the bytes flow, deletes and listings.
//!
//! The conformance suite of the blob backends: every case taking a [`Backend`] runs once on
//! the local folder (`folder::CASE`) and once on Garage (`garage::CASE`, a bucket of its own
//! per case), with the same assertions; what only the folder does (its small-blob cache,
//! `sendfile`) is tested on the folder alone, and what only S3 needs (multipart uploads, an
//! unreachable bucket) in `tests/s3.rs`.

mod support;

use std::time::Duration;

use futures_util::stream;
use reqwest::StatusCode;
use support::*;
use valet_key::{Limits, MediaRange};

async fn get_and_head_serve_the_blob_with_validators(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    s.put("photos", "2024/cat.jpg", "meow meow", "image/jpeg")
        .await;
    let key = s.key("blob:photos/2024/cat.jpg", "read");
    let url = s.url(&format!("/blob/photos/2024/cat.jpg?vk={key}"));
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "image/jpeg");
    assert_eq!(h["content-length"], "9");
    assert_eq!(h["accept-ranges"], "bytes");
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    assert!(h.contains_key("last-modified"));
    assert_eq!(r.text().await.unwrap(), "meow meow");
    let head = s.http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "9");
    assert_eq!(head.headers()["etag"], etag.as_str());
    assert!(head.bytes().await.unwrap().is_empty());
}

async fn ranges_give_206_and_416(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    s.put("files", "digits", "0123456789", "text/plain").await;
    let key = s.key("blob:files/digits", "read");
    let url = s.url(&format!("/blob/files/digits?vk={key}"));
    let get = |range: &'static str| s.http.get(&url).header("range", range).send();
    let r = get("bytes=2-5").await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 2-5/10");
    assert_eq!(r.text().await.unwrap(), "2345");
    let r = get("bytes=-3").await.unwrap();
    assert_eq!(r.text().await.unwrap(), "789");
    let r = get("bytes=7-").await.unwrap();
    assert_eq!(r.text().await.unwrap(), "789");
    let r = get("bytes=10-").await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */10");
    assert_eq!(error_code(r).await, "range_not_satisfiable");
    let r = get("bytes=0-1,4-5").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "multi-range falls back to the whole blob"
    );
}

/// Small blobs are served from memory once read (`blob_cache`); whatever changes the file
/// (an upload, another program writing in place or renaming over it, a delete), the next
/// download has the new bytes and validators, and ranges of a cached blob are exact. The same
/// downloads with the cache off give the same answers.
#[tokio::test]
async fn small_blobs_from_memory_are_never_stale() {
    for cache in [valet_store::DEFAULT_BLOB_CACHE, 0] {
        let s = TestStore::start_with(|c| c.blob_cache = cache).await;
        s.put("files", "note", "version one", "text/plain").await;
        let key = s.key("blob:files/note", "read");
        let url = s.url(&format!("/blob/files/note?vk={key}"));
        let fetch = || async {
            let r = s.http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "cache {cache}");
            let etag = r.headers()["etag"].to_str().unwrap().to_owned();
            (r.text().await.unwrap(), etag)
        };
        let (first, etag_one) = fetch().await;
        assert_eq!(first, "version one");
        assert_eq!(fetch().await, (first, etag_one.clone()));
        let r = s.http.get(&url).header("range", "bytes=8-10").send().await;
        assert_eq!(r.unwrap().text().await.unwrap(), "one");

        s.put("files", "note", "version two", "text/plain").await;
        let (second, etag_two) = fetch().await;
        assert_eq!(second, "version two");
        assert_ne!(etag_two, etag_one);

        let file = s.blob_file("files", "note");
        std::fs::write(&file, "version 3!!").unwrap();
        let (third, etag_three) = fetch().await;
        assert_eq!(third, "version 3!!", "an edit in place, same size");
        assert_ne!(etag_three, etag_two);

        let other = s.data().join("replacement");
        std::fs::write(&other, "version four").unwrap();
        std::fs::rename(&other, &file).unwrap();
        assert_eq!(fetch().await.0, "version four", "a rename over the blob");

        std::fs::remove_file(&file).unwrap();
        let r = s.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "cache {cache}");
        s.stop().await;
    }
}

async fn conditional_gets(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    s.put("files", "a.txt", "abc", "text/plain").await;
    let key = s.key("blob:files/a.txt", "read");
    let url = s.url(&format!("/blob/files/a.txt?vk={key}"));
    let get_with = |name: &'static str, value: &str| {
        let request = s.http.get(&url).header(name, value);
        async move { request.send().await.unwrap() }
    };
    let first = s.http.get(&url).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let modified = first.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = get_with("if-none-match", &etag).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"], etag.as_str());
    let r = get_with("if-modified-since", &modified).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = get_with("if-none-match", "\"other\"").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = get_with("if-match", "\"other\"").await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(error_code(r).await, "precondition_failed");
    // If-Range with a stale validator sends the whole blob instead of the range.
    let r = s
        .http
        .get(&url)
        .header("range", "bytes=0-0")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .get(&url)
        .header("range", "bytes=0-0")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
}

async fn the_key_file_name_becomes_content_disposition(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    s.put("files", "x/report", "pdf", "application/pdf").await;
    let key = s.key_with(
        "blob:files/x/report",
        "read",
        KeySpec {
            limits: Limits {
                filename: Some(valet_key::FileName::parse("Q3 résumé.pdf").unwrap()),
                ..Limits::default()
            },
            ..KeySpec::default()
        },
    );
    let r = s
        .http
        .get(s.url(&format!("/blob/files/x/report?vk={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"Q3 r_sum_.pdf\"; filename*=UTF-8''Q3%20r%C3%A9sum%C3%A9.pdf"
    );
}

async fn missing_blobs_are_404_only_for_a_valid_key(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    let key = s.key("blob:files", "read");
    let r = s
        .http
        .get(s.url(&format!("/blob/files/nope?vk={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "not_found");
    let other = s.key("blob:other", "read");
    let r = s
        .http
        .get(s.url(&format!("/blob/files/nope?vk={other}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "existence is not revealed to a key without scope"
    );
}

async fn uploads_replace_atomically_and_report_created_or_replaced(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    let key = s.key("blob:files", "read,write");
    let url = s.url(&format!("/blob/files/doc.txt?vk={key}"));
    let r = s.http.put(&url).body("v1").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let etag1 = r.headers()["etag"].to_str().unwrap().to_owned();
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["size"], 2);
    assert_eq!(json["content_type"], "application/octet-stream");
    let r = s.http.put(&url).body("version 2").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag1);
    assert_eq!(
        s.http.get(&url).send().await.unwrap().text().await.unwrap(),
        "version 2"
    );
    assert_eq!(s.temp_files(), 0);
}

async fn create_only_refuses_to_overwrite(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    let write = s.key("blob:files", "write");
    let create = s.key("blob:files", "create");
    let r = s
        .http
        .put(s.url(&format!("/blob/files/a?vk={create}")))
        .body("first")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .http
        .put(s.url(&format!("/blob/files/a?vk={create}")))
        .body("second")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(error_code(r).await, "precondition_failed");
    let r = s
        .http
        .put(s.url(&format!("/blob/files/a?vk={write}")))
        .header("if-none-match", "*")
        .body("third")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(s.stored("files", "a").await.unwrap(), b"first");
    assert_eq!(s.temp_files(), 0);
}

async fn concurrent_create_only_uploads_have_one_winner(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    let key = s.key("blob:files", "create");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let req = s
                .http
                .put(s.url(&format!("/blob/files/race?vk={key}")))
                .body(format!("writer {i}"));
            tokio::spawn(async move { req.send().await.unwrap().status() })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::PRECONDITION_FAILED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(s.temp_files(), 0);
}

async fn if_match_makes_overwrite_conditional(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    let key = s.key("blob:files", "read,write");
    let url = s.url(&format!("/blob/files/cas?vk={key}"));
    let etag = s.put_with(&url, None, "one").await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let stale = s
        .put_with(&url, Some(("if-match", "\"nope\"")), "two")
        .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let fresh = s.put_with(&url, Some(("if-match", &etag)), "two").await;
    assert_eq!(fresh.status(), StatusCode::OK);
    let again = s.put_with(&url, Some(("if-match", &etag)), "three").await;
    assert_eq!(again.status(), StatusCode::PRECONDITION_FAILED);
    let body = s.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "two");
}

fn capped(s: &TestStore, bytes: u64) -> String {
    let limits = Limits {
        max_bytes: Some(bytes),
        ..Limits::default()
    };
    s.key_with("blob:files", "write", KeySpec::limited(limits))
}

async fn an_upload_over_the_cap_by_content_length_is_refused_unread(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    let key = capped(&s, 100);
    let r = s
        .http
        .put(s.url(&format!("/blob/files/big?vk={key}")))
        .body(vec![0u8; 101])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "too_large");
    let r = s
        .http
        .put(s.url(&format!("/blob/files/ok?vk={key}")))
        .body(vec![0u8; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(s.stored("files", "big").await.is_none());
    assert_eq!(s.temp_files(), 0);
}

/// A client that sends its whole body before reading the answer, as simple clients do, reads
/// the refusal rather than a reset: the store reads what it refused (a lingering close), and the
/// connection then serves the next request. With `Expect: 100-continue` nothing is read: the
/// client has sent no body, and gets the refusal instead of a `100`.
async fn a_refused_upload_is_answered_to_a_client_still_sending_it(backend: Backend) {
    use std::io::{Read, Write};
    use valet_testkit::raw_http::blocking::read_head;

    let s = TestStore::start_on(backend).await;
    s.put("files", "ok", "fine", "text/plain").await;
    let (cap, read) = (capped(&s, 1024), s.key("blob:files/ok", "read"));
    let addr = s.addr;
    let (refusal, next, expect) = tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let len = 32 << 20;
        write!(c, "PUT /blob/files/big?vk={cap} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n").unwrap();
        let chunk = vec![7u8; 1 << 20];
        for i in 0..32 {
            c.write_all(&chunk)
                .unwrap_or_else(|e| panic!("sending MiB {i} of the refused body: {e}"));
        }
        let refusal = read_head(&mut c).expect("the refusal");
        let length: usize = refusal
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("a content-length");
        let mut error = vec![0; length];
        c.read_exact(&mut error).unwrap();
        write!(c, "GET /blob/files/ok?vk={read} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let next = read_head(&mut c).expect("the connection stays open");

        let mut e = std::net::TcpStream::connect(addr).unwrap();
        e.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(e, "PUT /blob/files/big?vk={cap} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n").unwrap();
        let expect = read_head(&mut e).expect("the refusal, not 100 Continue");
        (refusal, next, expect)
    })
    .await
    .unwrap();
    assert!(refusal.starts_with("HTTP/1.1 413"), "{refusal}");
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
    assert!(expect.starts_with("HTTP/1.1 413"), "{expect}");
    assert!(s.stored("files", "big").await.is_none());
    assert_eq!(s.temp_files(), 0);
}

async fn a_chunked_upload_is_cut_at_the_first_byte_over_the_cap(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    let key = capped(&s, 1000);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![7u8; 100])).collect();
    let body = reqwest::Body::wrap_stream(stream::iter(chunks));
    let r = s
        .http
        .put(s.url(&format!("/blob/files/chunked?vk={key}")))
        .body(body)
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error_code(r).await, "too_large");
    }
    assert!(s.stored("files", "chunked").await.is_none());
    assert_eq!(s.temp_files(), 0);
    let fits: Vec<Result<Vec<u8>, std::io::Error>> = (0..10).map(|_| Ok(vec![7u8; 100])).collect();
    let r = s
        .http
        .put(s.url(&format!("/blob/files/fits?vk={key}")))
        .body(reqwest::Body::wrap_stream(stream::iter(fits)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(s.stored("files", "fits").await.unwrap().len(), 1000);
}

async fn a_client_that_disconnects_mid_upload_leaves_nothing(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    let key = s.key("blob:files", "write");
    let request = format!(
        "PUT /blob/files/partial?vk={key} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{}",
        "x".repeat(50_000)
    );
    {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            s.temp_files(),
            1,
            "the upload is in progress in a temporary file"
        );
    }
    for _ in 0..50 {
        if s.temp_files() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.temp_files(), 0);
    assert!(s.stored("files", "partial").await.is_none());
}

async fn checksums_are_verified_before_commit(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    let key = s.key("blob:files", "write");
    let put = |name: &str, header: &'static str, value: &str, body: &'static str| {
        s.http
            .put(s.url(&format!("/blob/files/{name}?vk={key}")))
            .header(header, value)
            .body(body)
            .send()
    };
    // md5("hello") = 5d41402abc4b2a76b9719d911017c592
    let md5 = "XUFAKrxLKna5cZ2REBfFkg==";
    let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    let r = put("m1", "content-md5", md5, "hello").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = put("m2", "content-md5", md5, "hellO").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "checksum_mismatch");
    let r = put("s1", "x-valet-sha256", sha, "hello").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = put("s2", "x-valet-sha256", sha, "jello").await.unwrap();
    assert_eq!(error_code(r).await, "checksum_mismatch");
    let r = put("s3", "x-valet-sha256", "zz", "hello").await.unwrap();
    assert_eq!(error_code(r).await, "bad_request");
    assert!(s.stored("files", "m2").await.is_none() && s.stored("files", "s2").await.is_none());
    assert_eq!(s.temp_files(), 0);
}

async fn content_type_limits_are_enforced(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    let key = s.key_with(
        "blob:files",
        "write",
        KeySpec {
            limits: Limits {
                content_type: Some("image/*".parse::<MediaRange>().unwrap()),
                ..Limits::default()
            },
            ..KeySpec::default()
        },
    );
    let put = |ct: Option<&'static str>, name: &'static str| {
        let mut req = s
            .http
            .put(s.url(&format!("/blob/files/{name}?vk={key}")))
            .body("data");
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    assert_eq!(
        put(Some("image/png"), "ok").await.unwrap().status(),
        StatusCode::CREATED
    );
    let r = put(Some("text/html"), "bad").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(r).await, "content_type_not_allowed");
    assert_eq!(
        put(None, "none").await.unwrap().status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert!(s.stored("files", "bad").await.is_none());
}

async fn a_path_cannot_be_both_a_blob_and_a_folder(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    let key = s.key("blob:files", "write");
    s.put("files", "a/b", "x", "text/plain").await;
    let r = s
        .http
        .put(s.url(&format!("/blob/files/a?vk={key}")))
        .body("y")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "conflict");
    let r = s
        .http
        .put(s.url(&format!("/blob/files/a/b/c?vk={key}")))
        .body("y")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(s.temp_files(), 0);
}

async fn deletes_remove_the_blob_and_honour_if_match(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    s.put("files", "d/e/f", "x", "text/plain").await;
    let key = s.key("blob:files/d/", "read,delete");
    let url = s.url(&format!("/blob/files/d/e/f?vk={key}"));
    let r = s
        .http
        .delete(&url)
        .header("if-match", "\"wrong\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = s.http.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        s.http.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.http.delete(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert!(
        s.folder_gone("files", "d").await,
        "emptied folders are pruned"
    );
}

async fn listings_are_paginated_in_path_order(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    for path in ["a-b", "a/1", "a/2", "a/sub/3", "b", "c/4"] {
        s.put("files", path, path.to_owned(), "text/plain").await;
    }
    let key = s.key("blob:files", "list");
    let page = |query: &str| {
        let url = s.url(&format!("/blob/files?vk={key}&{query}"));
        let http = s.http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let paths = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["path"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = page("").await;
    assert_eq!(paths(&all), ["a-b", "a/1", "a/2", "a/sub/3", "b", "c/4"]);
    assert!(all["next_cursor"].is_null());
    assert_eq!(all["items"][0]["size"], 3);
    let first = page("limit=2").await;
    assert_eq!(paths(&first), ["a-b", "a/1"]);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = page(&format!("limit=2&cursor={cursor}")).await;
    assert_eq!(paths(&second), ["a/2", "a/sub/3"]);
    let third = page(&format!(
        "limit=2&cursor={}",
        second["next_cursor"].as_str().unwrap()
    ))
    .await;
    assert_eq!(paths(&third), ["b", "c/4"]);
    assert!(third["next_cursor"].is_null());
    assert_eq!(paths(&page("prefix=a/").await), ["a/1", "a/2", "a/sub/3"]);
    assert_eq!(
        paths(&page("prefix=a").await),
        ["a-b", "a/1", "a/2", "a/sub/3"]
    );
    let r = s
        .http
        .get(s.url(&format!("/blob/files?vk={key}&limit=0")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "bad_request");
    let empty = s.key("blob:nothing", "list");
    let r = s
        .http
        .get(s.url(&format!("/blob/nothing?vk={empty}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["items"],
        serde_json::json!([])
    );
}

async fn listing_needs_list_on_a_scope_covering_the_prefix(backend: Backend) {
    let s = TestStore::start_on(backend).await;
    s.put("files", "2024/jan/a", "x", "text/plain").await;
    s.put("files", "2024-private/b", "x", "text/plain").await;
    let key = s.key("blob:files/2024/", "list");
    let get = |query: &str| {
        s.http
            .get(s.url(&format!("/blob/files?vk={key}&{query}")))
            .send()
    };
    assert_eq!(get("prefix=2024/").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        get("prefix=2024/ja").await.unwrap().status(),
        StatusCode::OK
    );
    // The folder's own name lists the folder, never `2024-private/`.
    let r = get("prefix=2024").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let listing: serde_json::Value = r.json().await.unwrap();
    assert_eq!(listing["items"][0]["path"], "2024/jan/a");
    assert_eq!(listing["items"].as_array().unwrap().len(), 1);
    for outside in ["", "prefix=2024-", "prefix=2024-private/", "prefix=20"] {
        let r = get(outside).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{outside}");
        assert_eq!(error_code(r).await, "out_of_scope");
    }
    let read_only = s.key("blob:files", "read");
    let r = s
        .http
        .get(s.url(&format!("/blob/files?vk={read_only}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "op_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_downloads_are_sent_without_copying_on_http1_and_copied_on_http2() {
    let s = TestStore::start().await;
    let data: Vec<u8> = (0..9_000_000u32).map(|i| (i % 251) as u8).collect();
    s.put("files", "big.bin", data.clone(), "application/octet-stream")
        .await;
    let key = s.key("blob:files/big.bin", "read");
    let url = s.url(&format!("/blob/files/big.bin?vk={key}"));
    let zero_copy = "valet_store_bytes_out_zero_copy_total";

    let whole = s.get_bytes(&url).await.unwrap();
    assert_eq!(whole.len(), data.len());
    assert!(whole == data, "HTTP/1.1 download intact");
    for (first, last) in [(1_000_000, 3_999_999), (4_194_000, 8_500_000)] {
        let part = s
            .http
            .get(&url)
            .header("range", format!("bytes={first}-{last}"));
        let part = part.send().await.unwrap().bytes().await.unwrap();
        assert!(
            part[..] == data[first..=last],
            "HTTP/1.1 range {first}-{last}"
        );
    }
    let sent = counter(&s.metrics_text().await, zero_copy);
    assert_eq!(
        sent,
        9_000_000 + 3_000_000 + 4_306_001,
        "all sent from the file"
    );

    let h2 = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail", "--http2-prior-knowledge", &url])
            .output()
            .expect("curl runs");
        out.stdout
    });
    assert!(h2.await.unwrap() == data, "HTTP/2 download intact");
    assert_eq!(counter(&s.metrics_text().await, zero_copy), sent);
}

/// Runs each case on every backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod folder {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Backend::Folder).await
                }
            )*
        }
        mod garage {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Backend::Garage).await
                }
            )*
        }
    };
}

conformance!(
    get_and_head_serve_the_blob_with_validators,
    ranges_give_206_and_416,
    conditional_gets,
    the_key_file_name_becomes_content_disposition,
    missing_blobs_are_404_only_for_a_valid_key,
    uploads_replace_atomically_and_report_created_or_replaced,
    create_only_refuses_to_overwrite,
    concurrent_create_only_uploads_have_one_winner,
    if_match_makes_overwrite_conditional,
    an_upload_over_the_cap_by_content_length_is_refused_unread,
    a_refused_upload_is_answered_to_a_client_still_sending_it,
    a_chunked_upload_is_cut_at_the_first_byte_over_the_cap,
    a_client_that_disconnects_mid_upload_leaves_nothing,
    checksums_are_verified_before_commit,
    content_type_limits_are_enforced,
    a_path_cannot_be_both_a_blob_and_a_folder,
    deletes_remove_the_blob_and_honour_if_match,
    listings_are_paginated_in_path_order,
    listing_needs_list_on_a_scope_covering_the_prefix,
);
