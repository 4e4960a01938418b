//! Faults, with the real binary: `kill -9` of `valet serve` while uploads and downloads are in
//! flight, the ledger locked by another process while serving, and clients that trickle, stall
//! or abort.
//!
//! Every test runs `valet serve` (gate and store in one process) on free loopback ports with a
//! fresh data folder, and talks to it over real sockets: the key API with `reqwest`, the
//! in-flight transfers with raw HTTP/1.1 so that the test knows exactly which bytes were sent.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use valet_testkit::data::pseudo_random;
use valet_testkit::process::{free_addr, Running};
use valet_testkit::raw_http::blocking::read_head;
use valet_testkit::raw_http::{self, status_of};

/// The admin API key every test's `valet serve` gets through `VALET_ADMIN_API_KEY`.
const ADMIN: &str = "vak_faults-test-admin-key-0123456789";

/// A running `valet serve --role all`; killed on drop. Its stderr is kept for failure messages.
struct Serve {
    process: Running,
    gate: String,
    store: String,
    data: PathBuf,
}

impl Serve {
    fn start(data: &Path) -> Serve {
        let (gate, store) = (free_addr(), free_addr());
        let mut process = Running::spawn(
            Command::new(env!("CARGO_BIN_EXE_valet"))
                .arg("serve")
                .arg("--data")
                .arg(data)
                .args(["--gate-addr", &gate, "--store-addr", &store])
                .env("VALET_ADMIN_API_KEY", ADMIN)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        process.wait_listening(&[&gate, &store], Duration::from_secs(30));
        Serve {
            process,
            gate,
            store,
            data: data.to_owned(),
        }
    }

    fn pid(&self) -> u32 {
        self.process.child.id()
    }

    fn log(&self) -> String {
        self.process.stderr()
    }

    /// SIGKILL: no shutdown, no clean-up, no flush.
    fn kill9(&mut self) {
        self.process.child.kill().unwrap(); // SIGKILL on unix
        let status = self.process.child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }

    /// Files in the temporary upload folder.
    fn temp_files(&self) -> usize {
        std::fs::read_dir(self.data.join("tmp")).unwrap().count()
    }

    /// Open file descriptors of the process.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    fn blob_url(&self, name: &str, token: &str) -> String {
        format!("http://{}/blob/files/{name}?vk={token}", self.store)
    }

    /// `POST /v1/keys` with this body, as the admin.
    fn issue_raw(&self, http: &Http, body: &Value) -> reqwest::blocking::Response {
        http.post(format!("http://{}/v1/keys", self.gate))
            .bearer_auth(ADMIN)
            .json(body)
            .send()
            .unwrap()
    }

    /// A key's token for `resource` and `ops`, with a use cap if given.
    fn issue(&self, http: &Http, resource: &str, ops: &[&str], max_uses: Option<u64>) -> String {
        let mut body = json!({ "resource": resource, "ops": ops });
        if let Some(n) = max_uses {
            body["max_uses"] = n.into();
        }
        let response = self.issue_raw(http, &body);
        let status = response.status();
        let answer: Value = response.json().unwrap();
        assert_eq!(status, 201, "{answer}");
        answer["token"].as_str().unwrap().to_owned()
    }

    /// Uploads `body` as `files/NAME` with a fresh write key; panics unless it is stored.
    fn put(&self, http: &Http, name: &str, body: Vec<u8>) {
        let token = self.issue(http, &format!("blob:files/{name}"), &["write"], None);
        let response = http
            .put(self.blob_url(name, &token))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .unwrap();
        let status = response.status();
        assert!(
            status == 201 || status == 200,
            "PUT {name}: {status} {}",
            response.text().unwrap_or_default()
        );
    }

    /// `GET files/NAME` with a fresh read key (no use cap): the status and the body.
    fn get(&self, http: &Http, name: &str) -> (u16, Vec<u8>) {
        let token = self.issue(http, &format!("blob:files/{name}"), &["read"], None);
        let response = http.get(self.blob_url(name, &token)).send().unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().unwrap().to_vec())
    }
}

type Http = reqwest::blocking::Client;

/// A client that follows no redirect and keeps no idle connection (which would hold a file
/// descriptor in the server).
fn http() -> Http {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The status and error code of a JSON error answer.
fn status_and_code(response: reqwest::blocking::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    (status, raw_http::error_code(&text).unwrap_or(text))
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// What a client of an upload in flight at the kill saw.
struct Flight {
    name: String,
    token: String,
    body: Arc<Vec<u8>>,
    /// The final status, if the answer arrived before the kill.
    status: Option<u16>,
}

/// `PUT files/NAME` over a raw connection with `Expect: 100-continue`: the store sends `100
/// Continue` only once it admitted the request (the one-time key's use is then durable), and
/// `admitted` is told. Then the body goes in 1 KiB pieces, `pause` apart.
fn slow_upload(
    store: String,
    name: String,
    token: String,
    body: Arc<Vec<u8>>,
    pause: Duration,
    admitted: mpsc::Sender<String>,
) -> Option<u16> {
    let mut stream = TcpStream::connect(&store).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "PUT /blob/files/{name}?vk={token} HTTP/1.1\r\nHost: {store}\r\nContent-Length: {}\r\n\
         Content-Type: application/octet-stream\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let head = read_head(&mut stream).expect("an answer to the head");
    assert!(head.starts_with("HTTP/1.1 100"), "{name}: {head}");
    admitted.send(name).unwrap();
    for piece in body.chunks(1024) {
        if stream.write_all(piece).is_err() {
            return None;
        }
        thread::sleep(pause);
    }
    read_head(&mut stream).map(|head| status_of(&head))
}

/// (a) `kill -9` with 30 uploads and 4 one-time-key downloads in flight: after a restart on the
/// same data folder, committed blobs are intact, no partial blob is visible, the temporary
/// folder is empty, every use made before the kill is still counted, no other use is, and the
/// ledger passes SQLite's integrity check.
#[test]
fn kill_9_mid_flight_loses_no_committed_blob_shows_no_partial_one_and_keeps_every_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut serve = Serve::start(&data);
    let http = http();

    // 20 blobs committed before the fault (0 bytes to about 700 KiB), and a 16 MiB one that
    // the one-time downloads will be in the middle of.
    let committed: Vec<(String, [u8; 32], usize)> = (0..20u64)
        .map(|i| {
            let name = format!("committed/{i}.bin");
            let body = pseudo_random(i, i as usize * 37_000);
            let digest = sha256(&body);
            let len = body.len();
            serve.put(&http, &name, body);
            (name, digest, len)
        })
        .collect();
    let big = pseudo_random(1000, 16 << 20);
    let big_digest = sha256(&big);
    serve.put(&http, "big.bin", big);

    // One-time keys issued now and never presented before the fault.
    let unused_reads: Vec<(String, String)> = committed[..3]
        .iter()
        .map(|(name, ..)| {
            let token = serve.issue(&http, &format!("blob:files/{name}"), &["read"], Some(1));
            (name.clone(), token)
        })
        .collect();
    let unused_writes: Vec<(String, String)> = (0..2)
        .map(|i| {
            let name = format!("fresh/{i}.bin");
            let token = serve.issue(&http, &format!("blob:files/{name}"), &["write"], Some(1));
            (name, token)
        })
        .collect();

    // Four one-time-key downloads of the big blob, admitted (their 200 head arrived), then
    // left hanging: the client reads no further.
    let mut downloads = Vec::new();
    for _ in 0..4 {
        let token = serve.issue(&http, "blob:files/big.bin", &["read"], Some(1));
        let mut stream = TcpStream::connect(&serve.store).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET /blob/files/big.bin?vk={token} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        let head = read_head(&mut stream).expect("a download head");
        assert_eq!(status_of(&head), 200, "{head}");
        downloads.push((token, stream));
    }

    // 30 uploads with one-time keys: 32 KiB each, sent in 1 KiB pieces 0 to 145 ms apart, so
    // that they take from no time to 4.6 s. The kill comes 1.5 s after all were admitted:
    // some have finished, most are halfway, a few are about to commit.
    let (admitted_tx, admitted_rx) = mpsc::channel();
    let mut flights = Vec::new();
    for i in 0..30u64 {
        let name = format!("inflight/{i}.bin");
        let token = serve.issue(&http, &format!("blob:files/{name}"), &["write"], Some(1));
        let body = Arc::new(pseudo_random(100 + i, 32 * 1024));
        let handle = thread::spawn({
            let (store, name, token, body) = (
                serve.store.clone(),
                name.clone(),
                token.clone(),
                body.clone(),
            );
            let admitted = admitted_tx.clone();
            move || {
                slow_upload(
                    store,
                    name,
                    token,
                    body,
                    Duration::from_millis(5 * i),
                    admitted,
                )
            }
        });
        flights.push((name, token, body, handle));
    }
    for _ in 0..flights.len() {
        admitted_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("not every upload was admitted: {}", serve.log()));
    }
    thread::sleep(Duration::from_millis(1500));
    serve.kill9();
    let flights: Vec<Flight> = flights
        .into_iter()
        .map(|(name, token, body, handle)| Flight {
            name,
            token,
            body,
            status: handle.join().unwrap(),
        })
        .collect();
    // The hanging downloads end with the process; their keys were used.
    let download_tokens: Vec<String> = downloads.into_iter().map(|(token, _)| token).collect();
    let finished = flights.iter().filter(|f| f.status.is_some()).count();
    assert!(
        flights.iter().all(|f| matches!(f.status, None | Some(201))),
        "{:?}",
        flights
            .iter()
            .map(|f| (&f.name, f.status))
            .collect::<Vec<_>>()
    );
    assert!(
        finished < flights.len(),
        "every upload finished before the kill: the test proves nothing"
    );
    // The fault caught uploads halfway: their temporary files are still there...
    let left_behind = serve.temp_files();
    assert!(left_behind > 0, "no upload was in flight at the kill");
    // ...and no partial blob is in the blob folder, even before a restart.
    for f in &flights {
        let file = data.join("blobs/files").join(&f.name);
        if let Ok(bytes) = std::fs::read(&file) {
            assert_eq!(bytes.len(), f.body.len(), "{} is partial on disk", f.name);
            assert_eq!(sha256(&bytes), sha256(&f.body), "{}", f.name);
        }
    }

    let serve = Serve::start(&data);
    assert_eq!(serve.temp_files(), 0, "DATA/tmp not emptied at start");

    // Every blob committed before the fault is intact.
    for (name, digest, len) in &committed {
        let (status, bytes) = serve.get(&http, name);
        assert_eq!(status, 200, "{name}");
        assert_eq!(bytes.len(), *len, "{name}");
        assert_eq!(sha256(&bytes), *digest, "{name}");
    }
    let (status, bytes) = serve.get(&http, "big.bin");
    assert_eq!((status, sha256(&bytes)), (200, big_digest));

    // An upload in flight is either absent or whole; one the client saw succeed is whole.
    let mut visible = 0;
    for f in &flights {
        let (status, bytes) = serve.get(&http, &f.name);
        match status {
            404 => assert_eq!(
                f.status, None,
                "{}: answered 201 before the kill, gone after",
                f.name
            ),
            200 => {
                visible += 1;
                assert_eq!(
                    bytes.len(),
                    f.body.len(),
                    "{}: partial blob visible",
                    f.name
                );
                assert_eq!(sha256(&bytes), sha256(&f.body), "{}: wrong bytes", f.name);
            }
            other => panic!("{}: {other}", f.name),
        }
    }
    assert!(
        visible >= finished,
        "{visible} visible, {finished} finished"
    );
    eprintln!(
        "kill -9: {finished} of {} uploads answered before the kill, {visible} visible after, \
         {left_behind} temporary files left by the kill",
        flights.len()
    );

    // Every one-time key used before the kill stays used: no use was lost.
    for f in &flights {
        let response = http
            .put(serve.blob_url(&f.name, &f.token))
            .body(f.body.to_vec())
            .send()
            .unwrap();
        assert_eq!(
            status_and_code(response),
            (403, "key_exhausted".to_owned()),
            "{}",
            f.name
        );
    }
    for token in &download_tokens {
        let response = http.get(serve.blob_url("big.bin", token)).send().unwrap();
        assert_eq!(status_and_code(response), (403, "key_exhausted".to_owned()));
    }

    // One-time keys never presented work exactly once: no use was counted twice or invented.
    for (name, token) in &unused_reads {
        let url = serve.blob_url(name, token);
        let first = http.get(&url).send().unwrap();
        assert_eq!(first.status(), 200, "{name}");
        let digest = committed.iter().find(|(n, ..)| n == name).unwrap().1;
        assert_eq!(sha256(&first.bytes().unwrap()), digest);
        let second = http.get(&url).send().unwrap();
        assert_eq!(status_and_code(second), (403, "key_exhausted".to_owned()));
    }
    for (name, token) in &unused_writes {
        let url = serve.blob_url(name, token);
        let first = http.put(&url).body("fresh").send().unwrap();
        assert_eq!(first.status(), 201, "{name}");
        let second = http.put(&url).body("again").send().unwrap();
        assert_eq!(status_and_code(second), (403, "key_exhausted".to_owned()));
        assert_eq!(serve.get(&http, name), (200, b"fresh".to_vec()));
    }

    // The ledger file is sound, and holds exactly one use for each one-time key presented:
    // 30 uploads, 4 downloads, 5 keys used after the restart.
    let ledger = rusqlite::Connection::open(data.join("ledger.sqlite")).unwrap();
    let check: String = ledger
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let (rows, most): (i64, i64) = ledger
        .query_row("SELECT count(*), max(count) FROM uses", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    assert_eq!((rows, most), (30 + 4 + 5, 1));
}

/// (b) Another process holds the ledger's write lock (`BEGIN EXCLUSIVE`) for longer than the
/// ledger's busy timeout (5 s): every request that must write the ledger (a one-time key's
/// download, `POST /v1/keys`, a delegate route asked for JSON, whose key is recorded before it
/// is shown) fails closed with `503 ledger_unavailable` and none succeeds. What needs no write
/// keeps working: a key without a use cap (admitted from the ledger's memory), and a delegate
/// route's 307 (its short-lived key is not recorded; see GATE.md) followed to the store. Once
/// the lock goes, everything works again, and the refused attempt consumed nothing.
#[test]
fn a_locked_ledger_fails_closed_with_503_and_recovers_when_the_lock_goes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data);
    let http = http();
    serve.put(&http, "doc.txt", b"behind a locked ledger".to_vec());
    let once = serve.issue(&http, "blob:files/doc.txt", &["read"], Some(1));
    let plain = serve.issue(&http, "blob:files/doc.txt", &["read"], None);

    let mut other = rusqlite::Connection::open(data.join("ledger.sqlite")).unwrap();
    other.busy_timeout(Duration::from_secs(10)).unwrap();
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    let locked_at = Instant::now();

    let (gate, once_url) = (serve.gate.clone(), serve.blob_url("doc.txt", &once));
    type Attempt = Box<dyn FnOnce(&Http) -> reqwest::blocking::Response + Send>;
    let attempts: Vec<(&str, Attempt)> = vec![
        ("one-time download", {
            let url = once_url.clone();
            Box::new(move |http| http.get(url).send().unwrap())
        }),
        ("POST /v1/keys", {
            let url = format!("http://{gate}/v1/keys");
            Box::new(move |http| {
                http.post(url)
                    .bearer_auth(ADMIN)
                    .json(&json!({"resource": "blob:files/doc.txt", "ops": ["read"]}))
                    .send()
                    .unwrap()
            })
        }),
        ("delegate GET /files/doc.txt as JSON", {
            let url = format!("http://{gate}/files/doc.txt");
            Box::new(move |http| {
                http.get(url)
                    .bearer_auth(ADMIN)
                    .header("accept", "application/json")
                    .send()
                    .unwrap()
            })
        }),
    ];
    let running: Vec<_> = attempts
        .into_iter()
        .map(|(what, attempt)| {
            let http = http.clone();
            (what, thread::spawn(move || status_and_code(attempt(&http))))
        })
        .collect();

    // Meanwhile a key without a use cap needs no write: it is admitted from memory.
    let response = http.get(serve.blob_url("doc.txt", &plain)).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().unwrap(), &b"behind a locked ledger"[..]);
    // So does a delegate route's redirect, and the store admits its key.
    let delegated = http
        .get(format!("http://{}/files/doc.txt", serve.gate))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert_eq!(delegated.status(), 307);
    let location = delegated.headers()["location"].to_str().unwrap().to_owned();
    let followed = http.get(location).send().unwrap();
    assert_eq!(followed.status(), 200);
    assert_eq!(followed.bytes().unwrap(), &b"behind a locked ledger"[..]);

    for (what, handle) in running {
        assert_eq!(
            handle.join().unwrap(),
            (503, "ledger_unavailable".to_owned()),
            "{what}"
        );
    }
    let held = locked_at.elapsed();
    assert!(held >= Duration::from_secs(5), "{held:?}");
    lock.rollback().unwrap();

    // Recovered: the one-time key was not consumed by its refused attempt, and works once.
    let response = http.get(&once_url).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().unwrap(), &b"behind a locked ledger"[..]);
    let again = http.get(&once_url).send().unwrap();
    assert_eq!(status_and_code(again), (403, "key_exhausted".to_owned()));
    serve.issue(&http, "blob:files/doc.txt", &["read"], None);
    let delegated = http
        .get(format!("http://{}/files/doc.txt", serve.gate))
        .bearer_auth(ADMIN)
        .header("accept", "application/json")
        .send()
        .unwrap();
    assert_eq!(delegated.status(), 200);
}

/// Reads an answer whose body has a `Content-Length`: the status and the error code (or the
/// body, if it is not a JSON error).
fn read_answer(stream: &mut TcpStream) -> Option<(u16, String)> {
    let head = read_head(stream)?;
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    let body = String::from_utf8_lossy(&body).into_owned();
    Some((
        status_of(&head),
        raw_http::error_code(&body).unwrap_or(body),
    ))
}

/// An upload of 1000 bytes sent one byte a second: the answer, and when it came.
fn trickle(store: &str, name: &str, token: &str) -> (Option<(u16, String)>, Duration) {
    let mut stream = TcpStream::connect(store).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "PUT /blob/files/{name}?vk={token} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .unwrap();
    let started = Instant::now();
    let mut writer = stream.try_clone().unwrap();
    let dripping = thread::spawn(move || {
        for _ in 0..1000 {
            if writer.write_all(b"x").is_err() {
                return;
            }
            thread::sleep(Duration::from_secs(1));
        }
    });
    let answer = read_answer(&mut stream);
    let after = started.elapsed();
    let _ = stream.shutdown(Shutdown::Both);
    dripping.join().unwrap();
    (answer, after)
}

/// (c) With the store's default limits: 20 uploads trickling one byte a second are cut with
/// `408 request_timeout` once the grace period is over (the minimum average rate), 10 clients
/// stalled in their request head are cut at the head timeout, 10 uploads and 10 downloads hung
/// up halfway are cleaned up at once. Meanwhile the store serves others at full speed; after,
/// its open file descriptors are back to where they were, and nothing is left in `DATA/tmp`.
#[test]
fn trickling_stalled_and_aborted_clients_are_cut_off_and_leak_no_file_descriptor() {
    let defaults =
        valet_store::StoreConfig::new(PathBuf::from("unused"), "127.0.0.1:1".parse().unwrap());
    let (grace, head_timeout) = (defaults.upload_rate_grace, defaults.header_timeout);
    assert!(defaults.min_upload_rate > 1, "a byte a second is allowed");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data);
    let http = http();
    let download = pseudo_random(7, 4 << 20);
    serve.put(&http, "dl.bin", download.clone());
    // Warm up, so that whatever the store opens lazily is open before the baseline.
    for i in 0..5 {
        serve.put(&http, &format!("warm/{i}"), pseudo_random(i, 10_000));
        assert_eq!(serve.get(&http, &format!("warm/{i}")).0, 200);
    }
    thread::sleep(Duration::from_millis(500));
    let baseline = serve.fds();
    let write = serve.issue(&http, "blob:files/slow/", &["write"], None);
    let read = serve.issue(&http, "blob:files/dl.bin", &["read"], None);

    let trickles: Vec<_> = (0..20)
        .map(|i| {
            let (store, token) = (serve.store.clone(), write.clone());
            thread::spawn(move || trickle(&store, &format!("slow/trickle-{i}"), &token))
        })
        .collect();
    let stalled: Vec<_> = (0..10)
        .map(|i| {
            let store = serve.store.clone();
            thread::spawn(move || {
                let mut stream = TcpStream::connect(&store).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(120)))
                    .unwrap();
                write!(stream, "PUT /blob/files/slow/head-{i} HTTP/1.1\r\nX-Slow: ").unwrap();
                let started = Instant::now();
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink);
                started.elapsed()
            })
        })
        .collect();
    for i in 0..10 {
        let mut stream = TcpStream::connect(&serve.store).unwrap();
        write!(
            stream,
            "PUT /blob/files/slow/aborted-{i}?vk={write} HTTP/1.1\r\nHost: x\r\n\
             Content-Length: 100000\r\n\r\n"
        )
        .unwrap();
        stream.write_all(&pseudo_random(i, 5000)).unwrap();
        // Hang up halfway through the body.
    }
    for _ in 0..10 {
        let mut stream = TcpStream::connect(&serve.store).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET /blob/files/dl.bin?vk={read} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        let head = read_head(&mut stream).unwrap();
        assert_eq!(status_of(&head), 200, "{head}");
        let mut some = vec![0u8; 65536];
        stream.read_exact(&mut some).unwrap();
        assert_eq!(some, download[..65536]);
        // Hang up halfway through the download.
    }

    // While the trickles and stalled heads hang on, they hold descriptors (a socket each, and
    // a temporary file per upload), and the store serves everyone else at once.
    thread::sleep(Duration::from_secs(3));
    let during = serve.fds();
    assert!(
        during >= baseline + 30,
        "baseline {baseline}, during {during}: the slow clients are not being held?"
    );
    let quick = Instant::now();
    serve.put(&http, "meanwhile.bin", pseudo_random(9, 1 << 20));
    let (status, bytes) = serve.get(&http, "meanwhile.bin");
    assert_eq!((status, bytes.len()), (200, 1 << 20));
    assert!(
        quick.elapsed() < Duration::from_secs(5),
        "{:?}",
        quick.elapsed()
    );

    let slack = Duration::from_secs(15);
    for handle in trickles {
        let (answer, after) = handle.join().unwrap();
        assert_eq!(answer, Some((408, "request_timeout".to_owned())));
        assert!(
            after + Duration::from_secs(1) >= grace && after < grace + slack,
            "cut after {after:?}"
        );
    }
    for handle in stalled {
        let after = handle.join().unwrap();
        assert!(
            after + Duration::from_secs(1) >= head_timeout && after < head_timeout + slack,
            "stalled head cut after {after:?}"
        );
    }

    // Every descriptor is given back (allow a moment for the last closes).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = serve.fds();
    while after > baseline + 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        after = serve.fds();
    }
    eprintln!("file descriptors: baseline {baseline}, during {during}, after {after}");
    assert!(
        after <= baseline + 2,
        "file descriptors: baseline {baseline}, during {during}, after {after}"
    );
    assert_eq!(serve.temp_files(), 0);
    let slow = data.join("blobs/files/slow");
    let stored = std::fs::read_dir(&slow).map(|d| d.count()).unwrap_or(0);
    assert_eq!(stored, 0, "a cut upload left a blob in {}", slow.display());
    assert_eq!(serve.get(&http, "dl.bin").1.len(), download.len());
}
