//! Valet on many machines, as DEPLOYMENT.md describes it: two gates and two stores, each a
//! `valet serve` process with a data folder of its own, sharing only the keyring file, one
//! PostgreSQL ledger and one S3 bucket (Garage). Real HTTP throughout.
//!
//! What holds across nodes: a key issued by either gate works on either store; a revocation
//! through one gate reaches every store within a second; a one-time key is served once among
//! concurrent requests on both stores; create-only uploads of one name from both stores make
//! exactly one object (the ledger's name lock, since Garage ignores S3's conditional writes);
//! a store killed mid-upload leaves nothing visible; a store that loses its ledger refuses
//! keyed requests (`503 ledger_unavailable`) and serves again once the ledger is back.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use valet_testkit::garage::Garage;
use valet_testkit::postgres::{database, TestDatabase};
use valet_testkit::process::{free_addr, Running};

const ADMIN: &str = "vak_cluster-test-admin-key-0123456789";

/// One `valet serve` node.
struct Node {
    process: Running,
    url: String,
}

/// The shared parts (keyring, ledger, bucket) and the nodes on them.
struct Cluster {
    dir: tempfile::TempDir,
    keyring: PathBuf,
    bucket: String,
    db: TestDatabase,
    client: Client,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("keyring");
        let out = valet(&["key", "new-keyring", "--out", keyring.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        Cluster {
            keyring,
            bucket: Garage::shared().bucket(),
            db: database(),
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            dir,
        }
    }

    /// A store node with a data folder of its own, on the shared ledger (`ledger`: the
    /// database's URL, or another way to it) and bucket.
    fn store(&self, name: &str, ledger: &str) -> Node {
        let addr = free_addr();
        let mut command = self.serve(name, "store", ledger);
        command
            .args(["--store-addr", &addr])
            .args(["--blobs", &format!("s3://{}/valet", self.bucket)])
            .args(["--ledger-staleness", "2s"]);
        for (key, value) in Garage::shared().env() {
            command.env(key, value);
        }
        let mut process = Running::spawn(&mut command);
        process.wait_listening(&[&addr], Duration::from_secs(30));
        Node {
            process,
            url: format!("http://{addr}"),
        }
    }

    /// A gate node whose issued URLs point at `store`.
    fn gate(&self, name: &str, store: &Node) -> Node {
        let addr = free_addr();
        let mut command = self.serve(name, "gate", self.db.url());
        command
            .args(["--gate-addr", &addr, "--store-url", &store.url])
            .env("VALET_ADMIN_API_KEY", ADMIN);
        let mut process = Running::spawn(&mut command);
        process.wait_listening(&[&addr], Duration::from_secs(30));
        Node {
            process,
            url: format!("http://{addr}"),
        }
    }

    fn serve(&self, name: &str, role: &str, ledger: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_valet"));
        command
            .args(["serve", "--role", role, "--data"])
            .arg(self.dir.path().join(name))
            .arg("--keyring")
            .arg(&self.keyring)
            .args(["--ledger", ledger])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Issues a key through `gate`: its id and token.
    fn issue(&self, gate: &Node, request: Value) -> (String, String) {
        let r = self
            .client
            .post(format!("{}/v1/keys", gate.url))
            .bearer_auth(ADMIN)
            .json(&request)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
        let issued: Value = r.json().unwrap();
        (
            issued["id"].as_str().unwrap().to_owned(),
            issued["token"].as_str().unwrap().to_owned(),
        )
    }

    fn blob_url(&self, store: &Node, path: &str, key: &str) -> String {
        format!("{}/blob/files/{path}?vk={key}", store.url)
    }
}

fn valet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(args)
        .output()
        .unwrap()
}

/// The `code` of a JSON error answer.
fn code(response: reqwest::blocking::Response) -> String {
    let body: Value = response.json().unwrap_or(Value::Null);
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `request(n)` for each n in 0..count, on a thread each, all released at once; the answers
/// in order of n.
fn at_once<T: Send>(count: usize, request: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(count);
    thread::scope(|scope| {
        let tasks: Vec<_> = (0..count)
            .map(|n| {
                let (barrier, request) = (&barrier, &request);
                scope.spawn(move || {
                    barrier.wait();
                    request(n)
                })
            })
            .collect();
        tasks.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// Polls `check` every 20 ms until it holds or `within` passed; returns how long it took.
fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn keys_from_either_gate_work_on_either_store_and_revocations_reach_every_store() {
    let cluster = Cluster::new();
    let stores = [
        cluster.store("store-a", cluster.db.url()),
        cluster.store("store-b", cluster.db.url()),
    ];
    let gates = [
        cluster.gate("gate-a", &stores[0]),
        cluster.gate("gate-b", &stores[1]),
    ];
    let request = json!({"resource": "blob:files/", "ops": ["read", "write"], "ttl": "10m"});
    let (id, key) = cluster.issue(&gates[0], request);

    // Written through store B with gate A's key, read back through store A: one bucket.
    let r = cluster
        .client
        .put(cluster.blob_url(&stores[1], "shared.txt", &key))
        .body("one bucket for every node")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = cluster
        .client
        .get(cluster.blob_url(&stores[0], "shared.txt", &key))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().unwrap(), "one bucket for every node");

    // Revoked through the other gate: refused by both stores within a second.
    let r = cluster
        .client
        .delete(format!("{}/v1/keys/{id}", gates[1].url))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    for store in &stores {
        let url = cluster.blob_url(store, "shared.txt", &key);
        let took = eventually(
            Duration::from_secs(1),
            "the revocation reaches a store",
            || cluster.client.get(&url).send().unwrap().status() == StatusCode::FORBIDDEN,
        );
        eprintln!("revocation seen by {} after {took:?}", store.url);
        assert_eq!(
            code(cluster.client.get(&url).send().unwrap()),
            "key_revoked"
        );
    }
    // Its status, asked of either gate, says so.
    let status: Value = cluster
        .client
        .get(format!("{}/v1/keys/{id}", gates[0].url))
        .bearer_auth(ADMIN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["revoked"], true, "{status}");
    drop(gates);
}

#[test]
fn a_one_time_key_is_served_once_among_concurrent_requests_on_two_stores() {
    let cluster = Cluster::new();
    let stores = [
        cluster.store("store-a", cluster.db.url()),
        cluster.store("store-b", cluster.db.url()),
    ];
    let gate = cluster.gate("gate", &stores[0]);
    let (_, writer) = cluster.issue(
        &gate,
        json!({"resource": "blob:files/once.txt", "ops": ["write"], "ttl": "10m"}),
    );
    let r = cluster
        .client
        .put(cluster.blob_url(&stores[0], "once.txt", &writer))
        .body("read me once")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    for round in 0..3 {
        let (_, once) = cluster.issue(
            &gate,
            json!({"resource": "blob:files/once.txt", "ops": ["read"], "ttl": "10m", "max_uses": 1}),
        );
        let statuses: Vec<(StatusCode, String)> = at_once(16, |n| {
            let url = cluster.blob_url(&stores[n % 2], "once.txt", &once);
            let r = cluster.client.get(url).send().unwrap();
            let status = r.status();
            let body = if status == StatusCode::OK {
                r.text().unwrap()
            } else {
                code(r)
            };
            (status, body)
        });
        let served: Vec<_> = statuses
            .iter()
            .filter(|(s, _)| *s == StatusCode::OK)
            .collect();
        assert_eq!(served.len(), 1, "round {round}: {statuses:?}");
        assert_eq!(served[0].1, "read me once");
        assert!(
            statuses
                .iter()
                .filter(|(s, _)| *s != StatusCode::OK)
                .all(|(s, c)| *s == StatusCode::FORBIDDEN && c == "key_exhausted"),
            "round {round}: {statuses:?}"
        );
    }
}

#[test]
fn create_only_uploads_of_one_name_on_two_stores_make_exactly_one_object() {
    let cluster = Cluster::new();
    let stores = [
        cluster.store("store-a", cluster.db.url()),
        cluster.store("store-b", cluster.db.url()),
    ];
    let gate = cluster.gate("gate", &stores[0]);
    let (_, key) = cluster.issue(
        &gate,
        json!({"resource": "blob:files/", "ops": ["read", "create"], "ttl": "10m"}),
    );
    for round in 0..3 {
        let path = format!("race-{round}.txt");
        let outcomes: Vec<(usize, StatusCode)> = at_once(12, |n| {
            let url = cluster.blob_url(&stores[n % 2], &path, &key);
            let r = cluster
                .client
                .put(url)
                .header("if-none-match", "*")
                .body(format!("written by writer {n}"))
                .send()
                .unwrap();
            (n, r.status())
        });
        let winners: Vec<usize> = outcomes
            .iter()
            .filter(|(_, s)| *s == StatusCode::CREATED)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|(_, s)| *s == StatusCode::CREATED || *s == StatusCode::PRECONDITION_FAILED),
            "round {round}: {outcomes:?}"
        );
        // Both stores serve the one winner's bytes.
        for store in &stores {
            let r = cluster
                .client
                .get(cluster.blob_url(store, &path, &key))
                .send()
                .unwrap();
            assert_eq!(
                r.text().unwrap(),
                format!("written by writer {}", winners[0])
            );
        }
    }
}

#[test]
fn a_store_killed_mid_upload_leaves_nothing_visible_and_the_other_store_serves_on() {
    let cluster = Cluster::new();
    let mut victim = cluster.store("store-a", cluster.db.url());
    let survivor = cluster.store("store-b", cluster.db.url());
    let gate = cluster.gate("gate", &survivor);
    let (_, key) = cluster.issue(
        &gate,
        json!({"resource": "blob:files/", "ops": ["read", "write"], "ttl": "10m"}),
    );
    // 24 MiB declared with its SHA-256 (so it streams through as a multipart upload), of
    // which 12 MiB are sent before the node dies: at least one part is in the bucket.
    let body: Vec<u8> = (0..24 * 1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let sha = hex::encode(Sha256::digest(&body));
    let addr = victim.url.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "PUT /blob/files/big.bin?vk={key} HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Length: {}\r\nx-valet-sha256: {sha}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..12 * 1024 * 1024]).unwrap();
    thread::sleep(Duration::from_millis(500));
    victim.process.child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    victim.process.child.wait().unwrap();
    drop(stream);

    let r = cluster
        .client
        .get(cluster.blob_url(&survivor, "big.bin", &key))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "nothing partial is visible"
    );
    let r = cluster
        .client
        .put(cluster.blob_url(&survivor, "after.txt", &key))
        .body("still here")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = cluster
        .client
        .get(cluster.blob_url(&survivor, "after.txt", &key))
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "still here");
    // The whole upload, sent again to the survivor, lands.
    let r = cluster
        .client
        .put(cluster.blob_url(&survivor, "big.bin", &key))
        .header("x-valet-sha256", &sha)
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = cluster
        .client
        .get(cluster.blob_url(&survivor, "big.bin", &key))
        .send()
        .unwrap();
    assert!(r.bytes().unwrap() == body);
}

#[test]
fn a_store_that_loses_its_ledger_fails_closed_and_recovers_when_it_is_back() {
    let cluster = Cluster::new();
    let link = Link::to(&cluster.db);
    let store = cluster.store("store", &link.url);
    let gate = cluster.gate("gate", &store);
    let (_, key) = cluster.issue(
        &gate,
        json!({"resource": "blob:files/", "ops": ["read", "write"], "ttl": "10m"}),
    );
    let (_, counted) = cluster.issue(
        &gate,
        json!({"resource": "blob:files/", "ops": ["read"], "ttl": "10m", "max_uses": 100}),
    );
    let url = cluster.blob_url(&store, "f.txt", &key);
    let r = cluster.client.put(&url).body("kept").send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    link.cut();
    for key in [&key, &counted] {
        let url = cluster.blob_url(&store, "f.txt", key);
        eventually(
            Duration::from_secs(15),
            "the store refuses keyed requests",
            || {
                let r = cluster.client.get(&url).send().unwrap();
                r.status() == StatusCode::SERVICE_UNAVAILABLE && code(r) == "ledger_unavailable"
            },
        );
    }
    // Health stays up: the node is alive, it only cannot vouch for keys.
    let r = cluster
        .client
        .get(format!("{}/healthz", store.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    link.restore();
    for key in [&key, &counted] {
        let url = cluster.blob_url(&store, "f.txt", key);
        eventually(Duration::from_secs(15), "the store serves again", || {
            cluster.client.get(&url).send().unwrap().status() == StatusCode::OK
        });
    }
    assert_eq!(
        cluster.client.get(&url).send().unwrap().text().unwrap(),
        "kept"
    );
}

/// A TCP link between the store and PostgreSQL that the test can cut (every connection
/// closed, new ones closed at once) and restore: the network partition a node may suffer.
struct Link {
    url: String,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Link {
    fn to(db: &TestDatabase) -> Link {
        let target = db
            .url()
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("postgres://user@host:port/db")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let url = db.url().replacen(&target, &local.to_string(), 1);
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (cut_flag, streams) = (cut.clone(), open.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut_flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                streams
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Link { url, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}
