//! What every response carries and what operators see: security headers, CORS, health,
//! metrics, and the documented error-code table.

mod support;

use std::collections::BTreeSet;

use reqwest::StatusCode;
use support::*;
use valet_testkit::raw_http;

#[tokio::test]
async fn every_response_keeps_tokens_out_of_referrers_and_types_unsniffed() {
    let s = TestStore::start().await;
    s.put("files", "a", "<script>alert(1)</script>", "text/html")
        .await;
    let key = s.key("blob:files/a", "read");
    for url in [
        s.url(&format!("/blob/files/a?vk={key}")),
        s.url("/blob/files/a"),
        s.url("/healthz"),
    ] {
        let r = s.http.get(&url).send().await.unwrap();
        assert_eq!(r.headers()["referrer-policy"], "no-referrer", "{url}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{url}");
    }
    let r = s
        .http
        .get(s.url(&format!("/blob/files/a?vk={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-security-policy"],
        "sandbox; default-src 'none'"
    );
    assert_eq!(r.headers()["cache-control"], "private");
}

#[tokio::test]
async fn cors_preflight_needs_no_key_and_exposes_what_downloads_need() {
    let s = TestStore::start_with(|c| c.cors_origins = vec!["https://app.example".into()]).await;
    s.put("files", "a", "x", "text/plain").await;
    let preflight = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/blob/files/a"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("PUT"));
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Authorization"));

    let key = s.key("blob:files/a", "read");
    let r = s
        .http
        .get(s.url(&format!("/blob/files/a?vk={key}")))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    let expose = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for header in ["ETag", "Content-Range", "Content-Length"] {
        assert!(expose.contains(header), "{expose}");
    }
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}

#[tokio::test]
async fn cors_from_an_origin_not_allowed_gets_no_allowance() {
    let s = TestStore::start_with(|c| c.cors_origins = vec!["https://app.example".into()]).await;
    for origin in ["https://evil.example", "https://app.example.evil", "null"] {
        let preflight = s
            .http
            .request(reqwest::Method::OPTIONS, s.url("/blob/files/a"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert!(
            !preflight
                .headers()
                .contains_key("access-control-allow-origin"),
            "{origin}"
        );
        let r = s
            .http
            .get(s.url("/blob/files/a"))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert!(
            !r.headers().contains_key("access-control-allow-origin"),
            "{origin}"
        );
    }
    let none = TestStore::start().await;
    let r = none
        .http
        .request(reqwest::Method::OPTIONS, none.url("/blob/files/a"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn health_and_metrics() {
    let s = TestStore::start().await;
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let r = s.http.head(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    s.put("files", "a", "hello", "text/plain").await;
    let key = s.key("blob:files/a", "read");
    s.http
        .get(s.url(&format!("/blob/files/a?vk={key}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    s.http
        .get(s.url("/blob/files/a?vk=vk1.x"))
        .send()
        .await
        .unwrap();
    s.http
        .get(s.url(&format!("/blob/files/b?vk={key}")))
        .send()
        .await
        .unwrap();
    let text = s.metrics_text().await;
    for line in [
        "valet_store_requests_total{route=\"blob_get\",status=\"200\"} 1",
        "valet_store_requests_total{route=\"blob_put\",status=\"201\"} 1",
        "valet_store_denials_total{code=\"key_malformed\"} 1",
        "valet_store_denials_total{code=\"out_of_scope\"} 1",
        "valet_store_bytes_in_total 5",
        "valet_store_bytes_out_total 5",
        "valet_store_blob_cache_entries 1",
        "valet_store_blob_cache_misses_total 1",
        "valet_store_blob_cache_bytes 2053",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(text.contains("valet_store_request_duration_seconds_bucket"));
}

fn documented_codes() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ERRORS.md"))
        .unwrap();
    // The store's section only: the gate's table follows under its own heading.
    let store = doc.split("## The gate").next().unwrap_or(&doc);
    store
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains('`'))
        .filter_map(|l| l.split('`').nth(1).map(str::to_owned))
        .collect()
}

#[test]
fn the_error_table_documents_exactly_the_codes_the_store_produces() {
    assert_eq!(documented_codes(), codes_in_source());
}

#[tokio::test]
async fn the_codes_that_other_tests_do_not_reach_are_produced_here() {
    let s = TestStore::start().await;
    let r = s.http.get(s.url("/nowhere")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), error_code(r).await),
        (404, "not_found".into())
    );
    let r = s.http.post(s.url("/healthz")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), error_code(r).await),
        (405, "method_not_allowed".into())
    );
    let r = s.http.get(s.url("/blob/Bad/x")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), error_code(r).await),
        (400, "bad_path".into())
    );
}

#[tokio::test]
async fn a_stalled_upload_times_out_and_leaves_nothing() {
    let s = TestStore::start_with(|c| c.body_idle_timeout = std::time::Duration::from_millis(300))
        .await;
    let key = s.key("blob:files", "write");
    let response = s
        .raw(&format!(
            "PUT /blob/files/slow?vk={key} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly a little"
        ))
        .await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("request_timeout"));
    assert_eq!(s.temp_files(), 0);
    assert!(!s.blob_file("files", "slow").exists());
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[tokio::test]
async fn a_full_disk_gives_insufficient_storage_stores_nothing_and_keeps_serving() {
    if !running_as_root() {
        eprintln!("SKIPPED: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let disk = SmallDisk::mount("1m").expect("root can mount a tmpfs");
    let data = disk.dir.path().to_owned();
    let s = TestStore::start_with(|c| c.data_dir = data.clone()).await;
    let key = s.key("blob:files", "read,write");
    let r = s
        .http
        .put(s.url(&format!("/blob/files/huge?vk={key}")))
        .body(vec![1u8; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 507);
    assert_eq!(error_code(r).await, "insufficient_storage");
    assert_eq!(std::fs::read_dir(data.join("tmp")).unwrap().count(), 0);
    assert!(!data.join("blobs/files/huge").exists());
    let r = s
        .http
        .put(s.url(&format!("/blob/files/small?vk={key}")))
        .body("still serving")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body = s
        .http
        .get(s.url(&format!("/blob/files/small?vk={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(body.text().await.unwrap(), "still serving");
    s.stop().await;
    drop(disk);
}

#[tokio::test]
async fn oversized_heads_are_refused_and_the_store_keeps_serving() {
    let s = TestStore::start().await;
    s.put("files", "a", "x", "text/plain").await;
    let huge_header = format!(
        "GET /blob/files/a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(300_000)
    );
    let response = s.raw(&huge_header).await;
    assert!(
        response.starts_with("HTTP/1.1 431"),
        "{}",
        &response[..response.len().min(200)]
    );
    let huge_url = format!(
        "GET /blob/files/{}?vk=x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(300_000)
    );
    let response = s.raw(&huge_url).await;
    let status = raw_http::status(&response).unwrap_or(0);
    assert!(status == 414 || status == 431 || status == 400, "{status}");
    let key = s.key("blob:files/a", "read");
    assert_eq!(
        s.raw_get_status(&format!("/blob/files/a?vk={key}"), "")
            .await,
        200
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let s =
        TestStore::start_with(|c| c.header_timeout = std::time::Duration::from_millis(300)).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(b"GET /blob/files/a HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the store kept a stalled connection open");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// The modes of `path` (permission bits only).
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Blobs used to be readable by every local user (files `0644`, folders `0755`): by default
/// every file and folder of the data tier is now its owner's alone.
#[tokio::test]
async fn blobs_and_their_folders_are_owner_only_by_default() {
    let s = TestStore::start().await;
    s.put("files", "a/b/c.txt", "secret", "text/plain").await;
    s.put("files", "top", "secret", "text/plain").await;
    let data = s.data();
    for dir in [
        data.clone(),
        data.join("blobs"),
        data.join("tmp"),
        data.join("blobs/files"),
        data.join("blobs/files/a"),
        data.join("blobs/files/a/b"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for file in [
        s.blob_file("files", "a/b/c.txt"),
        s.blob_file("files", "top"),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    // An overwrite, and a create-only upload (a hard link), keep it so.
    s.put("files", "top", "again", "text/plain").await;
    assert_eq!(mode(&s.blob_file("files", "top")), 0o600);
    let create = s.key("blob:files/new/x", "create");
    let r = s
        .put_with(&s.url(&format!("/blob/files/new/x?vk={create}")), None, "x")
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(mode(&s.blob_file("files", "new/x")), 0o600);
    assert_eq!(mode(&data.join("blobs/files/new")), 0o700);
}

/// `blob_mode` widens files to group or world read, folders to match; a mode that lets
/// anyone but the owner write or execute is refused at start.
#[tokio::test]
async fn blob_mode_widens_reading_only() {
    // Whatever the umask would take away is not asked of the test.
    let s = TestStore::start_with(|c| c.blob_mode = 0o640).await;
    s.put("files", "a/b", "shared", "text/plain").await;
    assert_eq!(mode(&s.blob_file("files", "a/b")), 0o640);
    for dir in [
        s.data(),
        s.data().join("blobs"),
        s.data().join("blobs/files/a"),
    ] {
        assert_eq!(mode(&dir), 0o750, "{}", dir.display());
    }
    for refused in [0o666, 0o644 | 0o002, 0o700, 0o400, 0o660, 0o1600, 0o4600] {
        let dir = tempfile::tempdir().unwrap();
        let keyring = valet_keyring::create(&dir.path().join("keyring")).unwrap();
        let ledger = valet_ledger::SqliteLedger::open(&dir.path().join("ledger")).unwrap();
        let mut config = valet_store::StoreConfig::new(dir.path().join("data"), s.addr);
        config.blob_mode = refused;
        let err = valet_store::Store::open(config, keyring, std::sync::Arc::new(ledger))
            .expect_err("a mode others may write is refused");
        assert!(err.to_string().contains("blob_mode"), "{err}");
    }
}

/// A data folder an older version made (`DATA`, `blobs/`, `tmp/` at `0755`, blobs `0644`) is
/// narrowed when the store opens it: the folders become `0700`, which keeps other users out
/// of every file below them whatever its own mode.
#[tokio::test]
async fn folders_an_older_version_left_open_are_narrowed_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let old = data.join("blobs/files/a");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::create_dir_all(data.join("tmp")).unwrap();
    std::fs::write(old.join("b"), "old").unwrap();
    for path in [data.clone(), data.join("blobs"), data.join("tmp")] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(old.join("b"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let keyring = valet_keyring::create(&dir.path().join("keyring")).unwrap();
    let ledger = valet_ledger::SqliteLedger::open(&dir.path().join("ledger")).unwrap();
    let config = valet_store::StoreConfig::new(data.clone(), "127.0.0.1:0".parse().unwrap());
    valet_store::Store::open(config, keyring, std::sync::Arc::new(ledger)).unwrap();
    for path in [data.clone(), data.join("blobs"), data.join("tmp")] {
        assert_eq!(mode(&path), 0o700, "{}", path.display());
    }
}

/// The access line's `bytes` is the body actually sent (a listing's page said `bytes=0`), or
/// for an upload the body received.
#[tokio::test]
async fn the_access_line_gives_the_bytes_of_every_body() {
    let capture = valet_testkit::logs::capture();
    let s = TestStore::start().await;
    let writer = s.key("blob:logbytes", "write");
    let r = s
        .put_with(
            &s.url(&format!("/blob/logbytes/a/one?vk={writer}")),
            None,
            "12345",
        )
        .await;
    assert_eq!(r.status(), 201);
    s.put("logbytes", "a/two", "x".repeat(70_000), "text/plain")
        .await;
    let list = s.key("blob:logbytes", "list,read");
    let mut sent = Vec::new();
    for (what, target) in [
        ("listing", format!("/blob/logbytes?vk={list}")),
        ("small", format!("/blob/logbytes/a/one?vk={list}")),
        ("large", format!("/blob/logbytes/a/two?vk={list}")),
        ("error", "/blob/logbytes/a/one".to_owned()),
    ] {
        let body = s.get_bytes(&s.url(&target)).await.unwrap();
        assert!(!body.is_empty(), "{what}");
        sent.push((what, target, body.len()));
    }
    let text = capture.text();
    let line_of = |path: &str, route: &str, status: u16| -> String {
        let wanted = [
            "valet::access".to_owned(),
            format!(" path=\"{path}\" "),
            format!(" route=\"{route}\" "),
            format!(" status={status} "),
        ];
        text.lines()
            .find(|l| wanted.iter().all(|w| l.contains(w.as_str())))
            .unwrap_or_else(|| panic!("no access line for {path} {route} {status} in\n{text}"))
            .to_owned()
    };
    for (what, target, len) in sent {
        let path = target.split('?').next().unwrap();
        let (route, status) = match what {
            "listing" => ("blob_list", 200),
            "error" => ("blob_get", 401),
            _ => ("blob_get", 200),
        };
        let line = line_of(path, route, status);
        assert!(
            line.contains(&format!(" bytes={len} ")),
            "{what}: {len} in {line}"
        );
    }
    let put = line_of("/blob/logbytes/a/one", "blob_put", 201);
    assert!(
        put.contains(" bytes=5 "),
        "the upload's bytes received: {put}"
    );
}
/// Every route of the store, with methods it does not take: `405 method_not_allowed` with an
/// `Allow` header (RFC 9110) naming exactly the methods the route takes, before any key is
/// looked at; and every method `Allow` names is one the route table serves.
#[tokio::test]
async fn every_405_names_the_methods_its_route_takes() {
    let s = TestStore::start().await;
    let blob = "GET, HEAD, PUT, DELETE, OPTIONS";
    let cases: [(&str, &str, &str, &[&str]); 5] = [
        (
            "/healthz",
            "/healthz",
            "GET, HEAD, OPTIONS",
            &["POST", "PUT", "DELETE", "PATCH"],
        ),
        (
            "/metrics",
            "/metrics",
            "GET, OPTIONS",
            &["POST", "PUT", "DELETE", "HEAD"],
        ),
        (
            "/openapi.json",
            "/openapi.json",
            "GET, OPTIONS",
            &["POST", "PUT", "DELETE", "HEAD"],
        ),
        (
            "/blob/files/a.txt",
            "/blob/{container}/{path}",
            blob,
            &["POST", "PATCH", "PROPFIND", "MKCOL"],
        ),
        (
            "/blob/files",
            "/blob/{container}",
            "GET, OPTIONS",
            &["POST", "PUT", "DELETE", "HEAD", "PATCH"],
        ),
    ];
    for (path, template, allow, wrong) in cases {
        for method in wrong {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = s
                .http
                .request(method.clone(), s.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 405, "{method} {path}");
            assert_eq!(r.headers()["allow"], allow, "{method} {path}");
            if method != reqwest::Method::HEAD {
                assert_eq!(error_code(r).await, "method_not_allowed", "{method} {path}");
            }
        }
        for taken in allow.split(", ").filter(|m| *m != "OPTIONS") {
            assert!(
                valet_store::ROUTES.contains(&(taken, template)),
                "{taken} {template} is in Allow but not served"
            );
        }
    }
}
