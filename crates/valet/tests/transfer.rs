//! `valet get` and `valet put` as a user runs them: the real binary against a real store over
//! loopback, with a recording proxy in between where a test needs to see the requests, and a
//! stand-in gate that answers as the gate's contract says.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use valet_testkit::data::pseudo_random;
use valet_testkit::process::{free_port, Running};

fn valet(args: &[&str]) -> Output {
    valet_env(args, &[])
}

fn valet_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_valet"));
    cmd.args(args)
        .env_remove("VALET_GATE")
        .env_remove("VALET_API_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts success with nothing on stderr (stderr is a pipe here: no progress bar).
fn quiet_success(out: &Output) -> String {
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(out));
    assert_eq!(
        stderr(out),
        "",
        "nothing on stderr when it is not a terminal"
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json_field(json: &str, field: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    value[field].as_str().unwrap().to_owned()
}

const MIB: usize = 1024 * 1024;

/// A running `valet serve --role store`, its stderr kept; killed on drop.
struct Store {
    process: Running,
    port: u16,
    data: PathBuf,
}

impl Store {
    fn start(data: &Path) -> Store {
        // A store alone never makes a keyring: the user gives it one.
        let keyring = data.join("keyring");
        if !keyring.exists() {
            std::fs::create_dir_all(data).unwrap();
            let made = valet(&["key", "new-keyring", "--out", keyring.to_str().unwrap()]);
            assert!(made.status.success(), "{}", stderr(&made));
        }
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut process = Running::spawn(
            Command::new(env!("CARGO_BIN_EXE_valet"))
                .args(["serve", "--role", "store", "--data"])
                .arg(data)
                .args(["--store-addr", &addr])
                .env("RUST_LOG", "info")
                .stderr(Stdio::piped()),
        );
        process.wait_listening(&[&addr], Duration::from_secs(20));
        Store {
            process,
            port,
            data: data.to_owned(),
        }
    }

    fn key(&self, resource: &str, ops: &str) -> String {
        let out = valet(&[
            "key",
            "issue",
            "--keyring",
            self.data.join("keyring").to_str().unwrap(),
            "--resource",
            resource,
            "--ops",
            ops,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn url(&self, path: &str, key: &str) -> String {
        format!("http://127.0.0.1:{}{path}?vk={key}", self.port)
    }
}

/// A TCP proxy in front of the store that records the head of the first request of each
/// connection and counts the bytes the store sends back.
struct Proxy {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    down: Arc<AtomicU64>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        Proxy::cutting(upstream, u64::MAX)
    }

    /// A proxy that cuts each connection once it has passed `cut` bytes back to the client,
    /// as a failing network would.
    fn cutting(upstream: u16, cut: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicU64::new(0));
        let (h, d) = (heads.clone(), down.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (h, d) = (h.clone(), d.clone());
                std::thread::spawn(move || relay(client, upstream, cut, &h, d));
            }
        });
        Proxy { port, heads, down }
    }

    fn url(&self, path: &str, key: &str) -> String {
        format!("http://127.0.0.1:{}{path}?vk={key}", self.port)
    }

    /// Request heads seen so far, lower-cased.
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    fn bytes_down(&self) -> u64 {
        self.down.load(Ordering::SeqCst)
    }
}

fn relay(
    mut client: TcpStream,
    upstream: u16,
    cut: u64,
    heads: &Mutex<Vec<String>>,
    down: Arc<AtomicU64>,
) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (mut from_server, mut to_client) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    let back = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while let Ok(n @ 1..) = from_server.read(&mut buf) {
            let n = n.min(usize::try_from(cut - sent).unwrap_or(usize::MAX));
            // Counted before the client can see them: once the client has the bytes, the
            // test reading `bytes_down` sees them too.
            down.fetch_add(n as u64, Ordering::SeqCst);
            sent += n as u64;
            if to_client.write_all(&buf[..n]).is_err() || sent == cut {
                let _ = to_client.shutdown(Shutdown::Both);
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Write);
    });
    let mut head = Vec::new();
    let mut recorded = false;
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = client.read(&mut buf) {
        if !recorded {
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&head[..end]).to_lowercase();
                heads.lock().unwrap().push(text);
                recorded = true;
            }
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
    let _ = back.join();
}

/// A stand-in for the gate: answers each request (a head without a body) with whatever
/// `answer` returns for its method, path and head, and records the heads.
struct FakeGate {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

type Answer = dyn Fn(&str, &str, &str) -> String + Send + Sync;

impl FakeGate {
    fn start(answer: Box<Answer>) -> FakeGate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let answer: Arc<Answer> = answer.into();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().map_while(Result::ok) {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let mut first = head.split_whitespace();
                let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
                let response = answer(method, path, &head.to_lowercase());
                seen.lock().unwrap().push(head.to_lowercase());
                let _ = conn.write_all(response.as_bytes());
            }
        });
        FakeGate { port, heads }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn http_response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

/// The partial file and sidecar `valet get` leaves for `target`.
fn partial_of(target: &Path) -> (PathBuf, PathBuf) {
    let name = target.file_name().unwrap().to_str().unwrap();
    let dir = target.parent().unwrap();
    (
        dir.join(format!(".{name}.valet-part")),
        dir.join(format!(".{name}.valet-part.json")),
    )
}

/// Leaves what an interrupted `valet get` of the version `etag` would have left.
fn leave_partial(target: &Path, first_bytes: &[u8], etag: &str) {
    let (part, sidecar) = partial_of(target);
    std::fs::write(part, first_bytes).unwrap();
    std::fs::write(sidecar, serde_json::json!({ "etag": etag }).to_string()).unwrap();
}

fn put(store_url: &str, file: &Path) -> String {
    quiet_success(&valet(&["put", file.to_str().unwrap(), store_url]))
}

#[test]
fn put_then_get_round_trips_a_few_mebibytes_streamed_with_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("data"));
    let proxy = Proxy::start(store.port);
    let key = store.key("blob:files", "read,write");
    let content = pseudo_random(1, 3 * MIB + 123);
    let file = dir.path().join("photo.png");
    std::fs::write(&file, &content).unwrap();

    let described = put(&proxy.url("/blob/files/album/photo.png", &key), &file);
    assert_eq!(json_field(&described, "content_type"), "image/png");
    let sha = json_field(&described, "sha256");
    let head = proxy.heads().pop().unwrap();
    assert!(
        head.starts_with("put /blob/files/album/photo.png"),
        "{head}"
    );
    assert!(
        head.contains(&format!("content-length: {}", content.len())),
        "{head}"
    );
    assert!(head.contains(&format!("x-valet-sha256: {sha}")), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");

    let out = dir.path().join("copy.png");
    quiet_success(&valet(&[
        "get",
        &store.url("/blob/files/album/photo.png", &key),
        "-o",
        out.to_str().unwrap(),
    ]));
    assert!(std::fs::read(&out).unwrap() == content, "bytes differ");
    let (part, sidecar) = partial_of(&out);
    assert!(!part.exists() && !sidecar.exists(), "no leftovers");

    // A folder as -o, and a destination ending in / that takes the file's name.
    let into = dir.path().join("into");
    std::fs::create_dir(&into).unwrap();
    put(&store.url("/blob/files/dir/", &key), &file);
    quiet_success(&valet(&[
        "get",
        &store.url("/blob/files/dir/photo.png", &key),
        "-o",
        into.to_str().unwrap(),
    ]));
    assert!(std::fs::read(into.join("photo.png")).unwrap() == content);

    let again = valet(&[
        "put",
        "--if-absent",
        file.to_str().unwrap(),
        &store.url("/blob/files/dir/photo.png", &key),
    ]);
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    assert!(stderr(&again).starts_with("valet: precondition_failed: "));

    let tag = key.rsplit_once('.').unwrap().1;
    assert!(!store.process.stderr().contains(tag));
}

#[test]
fn get_with_dash_output_writes_the_blob_to_stdout_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("data"));
    let key = store.key("blob:files", "read,write");
    let content = pseudo_random(2, MIB + 7);
    let file = dir.path().join("log.txt");
    std::fs::write(&file, &content).unwrap();
    put(&store.url("/blob/files/log.txt", &key), &file);

    let out = valet(&["get", &store.url("/blob/files/log.txt", &key), "-o", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert!(out.stdout == content, "stdout is exactly the blob");
}

#[test]
fn an_interrupted_download_resumes_with_range_and_fetches_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("data"));
    let proxy = Proxy::start(store.port);
    let key = store.key("blob:files", "read,write");
    let content = pseudo_random(3, 4 * MIB);
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &content).unwrap();
    let etag = json_field(&put(&store.url("/blob/files/big.bin", &key), &file), "etag");

    let target = dir.path().join("big.copy");
    let half = content.len() / 2;
    leave_partial(&target, &content[..half], &etag);
    quiet_success(&valet(&[
        "get",
        &proxy.url("/blob/files/big.bin", &key),
        "-o",
        target.to_str().unwrap(),
    ]));
    assert!(std::fs::read(&target).unwrap() == content, "bytes differ");
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].contains(&format!("range: bytes={half}-")),
        "{heads:?}"
    );
    assert!(heads[0].contains(&format!("if-range: {etag}")), "{heads:?}");
    let down = proxy.bytes_down();
    assert!(
        down >= (content.len() - half) as u64 && down < (content.len() - half + 4096) as u64,
        "only the rest was transferred: {down} bytes"
    );
    let (part, sidecar) = partial_of(&target);
    assert!(!part.exists() && !sidecar.exists());

    // A partial file that is already whole (stopped before the rename) is finished at once.
    let again = dir.path().join("whole.copy");
    leave_partial(&again, &content, &etag);
    quiet_success(&valet(&[
        "get",
        &store.url("/blob/files/big.bin", &key),
        "-o",
        again.to_str().unwrap(),
    ]));
    assert!(std::fs::read(&again).unwrap() == content);
}

#[test]
fn a_download_cut_by_the_network_resumes_when_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("data"));
    let key = store.key("blob:files", "read,write");
    let content = pseudo_random(9, 3 * MIB);
    let file = dir.path().join("video.mp4");
    std::fs::write(&file, &content).unwrap();
    put(&store.url("/blob/files/video.mp4", &key), &file);

    let cutter = Proxy::cutting(store.port, MIB as u64);
    let target = dir.path().join("copy.mp4");
    let get = |url: &str| valet(&["get", url, "-o", target.to_str().unwrap()]);
    let cut = get(&cutter.url("/blob/files/video.mp4", &key));
    assert_eq!(cut.status.code(), Some(1), "{}", stderr(&cut));
    let said = stderr(&cut);
    assert!(
        said.starts_with("valet: the download stopped with "),
        "{said}"
    );
    assert!(
        said.contains("run the same command again to resume"),
        "{said}"
    );
    assert!(
        !target.exists(),
        "nothing in place before the whole file is checked"
    );
    let (part, sidecar) = partial_of(&target);
    let kept = std::fs::read(&part).unwrap();
    assert!(!kept.is_empty() && kept.len() < MIB, "{}", kept.len());
    assert!(content.starts_with(&kept));
    assert!(std::fs::read_to_string(&sidecar).unwrap().contains("etag"));

    let proxy = Proxy::start(store.port);
    quiet_success(&get(&proxy.url("/blob/files/video.mp4", &key)));
    assert!(std::fs::read(&target).unwrap() == content, "bytes differ");
    let heads = proxy.heads();
    assert!(
        heads[0].contains(&format!("range: bytes={}-", kept.len())),
        "{heads:?}"
    );
    assert!(proxy.bytes_down() < (content.len() - kept.len() + 4096) as u64);
    assert!(!part.exists() && !sidecar.exists());
}

#[test]
fn a_blob_changed_between_attempts_restarts_the_download_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("data"));
    let proxy = Proxy::start(store.port);
    let key = store.key("blob:files", "read,write");
    let url = store.url("/blob/files/doc.bin", &key);
    let old = pseudo_random(4, 2 * MIB);
    let file = dir.path().join("doc.bin");
    std::fs::write(&file, &old).unwrap();
    let old_etag = json_field(&put(&url, &file), "etag");
    let new = pseudo_random(5, 2 * MIB + 500);
    std::fs::write(&file, &new).unwrap();
    let new_etag = json_field(&put(&url, &file), "etag");
    assert_ne!(old_etag, new_etag);

    let target = dir.path().join("doc.copy");
    leave_partial(&target, &old[..MIB], &old_etag);
    quiet_success(&valet(&[
        "get",
        &proxy.url("/blob/files/doc.bin", &key),
        "-o",
        target.to_str().unwrap(),
    ]));
    assert!(
        std::fs::read(&target).unwrap() == new,
        "the new version, not a mix of two"
    );
    let heads = proxy.heads();
    assert!(
        heads[0].contains(&format!("if-range: {old_etag}")),
        "{heads:?}"
    );
    assert!(
        proxy.bytes_down() >= new.len() as u64,
        "the whole blob came"
    );
}

#[test]
fn an_upload_whose_declared_digest_does_not_match_is_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("data"));
    let key = store.key("blob:files", "read,write");
    let file = dir.path().join("report.csv");
    std::fs::write(&file, pseudo_random(6, MIB)).unwrap();
    let url = store.url("/blob/files/report.csv", &key);
    let wrong = "00".repeat(32);
    let out = valet(&["put", "--sha256", &wrong, file.to_str().unwrap(), &url]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("valet: checksum_mismatch: "), "{err}");
    assert!(err.trim_end().ends_with("(HTTP 400)"), "{err}");

    let got = valet(&["get", &url, "-o", dir.path().join("x").to_str().unwrap()]);
    assert_eq!(got.status.code(), Some(4));
    assert!(stderr(&got).contains("not_found"), "{}", stderr(&got));
    assert!(!dir.path().join("x").exists());

    let bad = valet(&["put", "--sha256", "xyz", file.to_str().unwrap(), &url]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

#[test]
fn a_denied_key_exits_3_and_prints_the_code_but_never_the_tag() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("data"));
    let reader = store.key("blob:files", "read");
    let file = dir.path().join("a.txt");
    std::fs::write(&file, "hello").unwrap();

    let out = valet(&[
        "put",
        file.to_str().unwrap(),
        &store.url("/blob/files/a.txt", &reader),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("valet: op_not_allowed: "),
        "{}",
        stderr(&out)
    );

    // A large body refused before the store reads it: the refusal arrives, not a broken pipe.
    let large = dir.path().join("large.bin");
    std::fs::File::create(&large)
        .unwrap()
        .set_len(64 * MIB as u64)
        .unwrap();
    for _ in 0..3 {
        let out = valet(&[
            "put",
            "--sha256",
            &"00".repeat(32),
            large.to_str().unwrap(),
            &store.url("/blob/files/large.bin", &reader),
        ]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(
            stderr(&out).starts_with("valet: op_not_allowed: "),
            "{}",
            stderr(&out)
        );
    }

    let elsewhere = store.key("blob:other", "read");
    let out = valet(&[
        "get",
        &store.url("/blob/files/a.txt", &elsewhere),
        "-o",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("out_of_scope") && err.contains("(HTTP 403)"),
        "{err}"
    );
    assert!(!err.contains(elsewhere.rsplit_once('.').unwrap().1));

    // No key at all: 401 key_missing is a denial too.
    let bare = format!("http://127.0.0.1:{}/blob/files/a.txt", store.port);
    let out = valet(&["get", &bare, "-o", "-"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("key_missing"));

    // Whatever fails to connect names the URL without the key's tag.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = valet(&[
        "get",
        &format!("http://127.0.0.1:{closed}/blob/files/a.txt?vk={reader}"),
        "-o",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("valet: "), "{err}");
    assert!(!err.contains(reader.rsplit_once('.').unwrap().1), "{err}");
}

#[test]
fn gate_mode_asks_the_gate_then_moves_the_bytes_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("data"));
    let key = store.key("blob:files", "read,write");
    let store_base = format!("http://127.0.0.1:{}", store.port);
    let gate = FakeGate::start(Box::new(move |method, path, head| {
        if !head.contains("authorization: bearer api-secret") {
            let body = r#"{"error":{"code":"unauthenticated","message":"bad API key"}}"#;
            return http_response(
                "401 Unauthorized",
                &[("Content-Type", "application/json")],
                body,
            );
        }
        let blob = path.strip_prefix("/files/").unwrap();
        // For uploads the URL carries no key, only the token field: the tool must send it in
        // Authorization: Valet (and only there).
        let url = if method == "PUT" {
            format!("{store_base}/blob/files/{blob}")
        } else {
            format!("{store_base}/blob/files/{blob}?vk={key}")
        };
        let body = serde_json::json!({
            "id": "0123456789abcdef0123456789abcdef",
            "token": key,
            "url": url,
            "method": method,
            "expires_at": "2099-01-01T00:00:00Z",
        });
        http_response(
            "201 Created",
            &[("Content-Type", "application/json")],
            &body.to_string(),
        )
    }));
    let content = pseudo_random(7, 2 * MIB);
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, &content).unwrap();
    let env = [
        ("VALET_GATE", gate.url()),
        ("VALET_API_KEY", "api-secret".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let described = quiet_success(&valet_env(
        &["put", file.to_str().unwrap(), "/files/report.pdf"],
        &env,
    ));
    assert_eq!(json_field(&described, "content_type"), "application/pdf");
    let target = dir.path().join("back.pdf");
    quiet_success(&valet_env(
        &["get", "/files/report.pdf", "-o", target.to_str().unwrap()],
        &env,
    ));
    assert!(std::fs::read(&target).unwrap() == content);

    let heads = gate.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads[0].starts_with("put /files/report.pdf "), "{heads:?}");
    assert!(heads[0].contains("accept: application/json"), "{heads:?}");
    assert!(
        heads[0].contains("content-length: 0"),
        "the gate never gets the bytes"
    );
    assert!(heads[0].contains("x-valet-sha256: "), "{heads:?}");
    assert!(heads[1].starts_with("get /files/report.pdf "), "{heads:?}");

    // The default output name is the gate path's last segment.
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_valet"))
        .args([
            "get",
            "--gate",
            &gate.url(),
            "--api-key",
            "api-secret",
            "/files/report.pdf",
        ])
        .current_dir(&cwd)
        .output()
        .unwrap();
    quiet_success(&out);
    assert!(std::fs::read(cwd.join("report.pdf")).unwrap() == content);

    let refused = valet_env(
        &["get", "/files/report.pdf", "-o", "-"],
        &[("VALET_GATE", &gate.url()), ("VALET_API_KEY", "wrong")],
    );
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(stderr(&refused).starts_with("valet: unauthenticated: bad API key (HTTP 401)"));

    let no_gate = valet(&["get", "/files/report.pdf"]);
    assert_eq!(no_gate.status.code(), Some(2), "{}", stderr(&no_gate));
    assert!(stderr(&no_gate).contains("--gate"));
}

#[test]
fn a_gate_redirect_is_followed_without_the_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("data"));
    let proxy = Proxy::start(store.port);
    let key = store.key("blob:files", "read,write");
    let content = pseudo_random(8, MIB);
    let file = dir.path().join("song.ogg");
    std::fs::write(&file, &content).unwrap();

    let proxy_base = format!("http://127.0.0.1:{}", proxy.port);
    let gate = FakeGate::start(Box::new(move |_method, path, _head| {
        let blob = path.strip_prefix("/media/").unwrap();
        let location = format!("{proxy_base}/blob/files/{blob}?vk={key}");
        http_response("307 Temporary Redirect", &[("Location", &location)], "")
    }));
    let gate_url = gate.url();
    let args = ["--gate", &gate_url, "--api-key", "api-secret"];

    let put = [
        &["put", file.to_str().unwrap(), "/media/song.ogg"][..],
        &args[..],
    ]
    .concat();
    quiet_success(&valet(&put));
    let target = dir.path().join("song.copy");
    let get = [
        &["get", "/media/song.ogg", "-o", target.to_str().unwrap()][..],
        &args[..],
    ]
    .concat();
    quiet_success(&valet(&get));
    assert!(std::fs::read(&target).unwrap() == content);

    let at_store = proxy.heads();
    assert_eq!(at_store.len(), 2, "{at_store:?}");
    assert!(
        at_store[0].starts_with("put /blob/files/song.ogg"),
        "{at_store:?}"
    );
    assert!(
        at_store[1].starts_with("get /blob/files/song.ogg"),
        "{at_store:?}"
    );
    for head in &at_store {
        assert!(
            !head.contains("api-secret"),
            "the API key reached the store: {head}"
        );
        assert!(!head.contains("bearer"), "{head}");
    }
    let at_gate = gate.heads.lock().unwrap().clone();
    assert!(at_gate
        .iter()
        .all(|h| h.contains("authorization: bearer api-secret")));
}
