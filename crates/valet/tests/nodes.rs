//! Valet on many machines, as a user runs it: the gate and the stores in separate data folders
//! (as on separate hosts), sharing nothing but the keyring file's contents; a store without a
//! keyring; a port another process holds; a key rotation that reaches the stores at different
//! moments.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use valet_testkit::process::{free_addr, without_env, Running};

/// The binary with none of the caller's `VALET_*` settings.
fn valet_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_valet"));
    without_env(&mut command, "VALET_");
    command
}

fn valet(args: &[&str]) -> Output {
    valet_command().args(args).output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `valet serve ARGS` with `env`, its stderr kept; killed on drop.
fn spawn_serve_with(args: &[&str], env: &[(&str, &str)]) -> Running {
    Running::spawn(
        valet_command()
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
}

/// `valet serve ARGS`, its stderr kept; killed on drop.
fn spawn_serve(args: &[&str]) -> Running {
    spawn_serve_with(args, &[])
}

/// Waits for `process` to exit on its own; its status and its stderr.
fn exit_of(mut process: Running) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running: {}",
            process.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // The thread keeping stderr reads the last line after the exit.
    std::thread::sleep(Duration::from_millis(200));
    (status, process.stderr())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_store_without_a_keyring_refuses_to_start_and_says_where_it_comes_from() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let store = free_addr();
    let process = spawn_serve(&[
        "--role",
        "store",
        "--data",
        path(&data),
        "--store-addr",
        &store,
    ]);
    let (status, log) = exit_of(process);
    assert!(!status.success(), "{log}");
    let keyring = data.join("keyring");
    assert!(
        log.contains(&format!("no keyring at {}", keyring.display())),
        "{log}"
    );
    assert!(log.contains("Copy the gate's keyring file"), "{log}");
    assert!(log.contains("--keyring"), "{log}");
    assert!(
        log.contains(&format!(
            "valet key new-keyring --out {}",
            keyring.display()
        )),
        "{log}"
    );
    assert!(
        !keyring.exists(),
        "a store never makes a keyring of its own"
    );

    // With --keyring pointing at a missing file, that file is named.
    let elsewhere = dir.path().join("gate-keyring");
    let process = spawn_serve(&[
        "--role",
        "store",
        "--data",
        path(&data),
        "--keyring",
        path(&elsewhere),
        "--store-addr",
        &store,
    ]);
    let (status, log) = exit_of(process);
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!("no keyring at {}", elsewhere.display())),
        "{log}"
    );
}

#[test]
fn a_second_serve_on_a_held_port_fails_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, store) = (free_addr(), free_addr());
    let first_data = dir.path().join("first");
    let mut first = spawn_serve(&[
        "--data",
        path(&first_data),
        "--gate-addr",
        &gate,
        "--store-addr",
        &store,
        "--workers",
        "2",
    ]);
    first.wait_listening(&[&gate, &store], Duration::from_secs(20));

    // Same ports, both roles, the store's tried first.
    let second_data = dir.path().join("second");
    let (status, log) = exit_of(spawn_serve(&[
        "--data",
        path(&second_data),
        "--gate-addr",
        &gate,
        "--store-addr",
        &store,
    ]));
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "{store} is already in use: another process listens there"
        )),
        "{log}"
    );

    // The gate's port alone, on a store that would otherwise start.
    let other_store = free_addr();
    let (status, log) = exit_of(spawn_serve(&[
        "--data",
        path(&second_data),
        "--gate-addr",
        &gate,
        "--store-addr",
        &other_store,
    ]));
    assert!(!status.success(), "{log}");
    assert!(log.contains(&format!("{gate} is already in use")), "{log}");

    // A store of its own on the held store port.
    let keyring = first_data.join("keyring");
    let (status, log) = exit_of(spawn_serve(&[
        "--role",
        "store",
        "--data",
        path(&second_data),
        "--keyring",
        path(&keyring),
        "--store-addr",
        &store,
    ]));
    assert!(!status.success(), "{log}");
    assert!(log.contains(&format!("{store} is already in use")), "{log}");

    // The first still answers on both.
    for addr in [&gate, &store] {
        assert!(
            valet_testkit::raw_http::blocking::healthy(addr),
            "{}",
            first.stderr()
        );
    }
    assert!(first.child.try_wait().unwrap().is_none());
}

const ADMIN_KEY: &str = "vak_nodes_rollout_0123456789";
/// Every node's clock tolerance: a key is honoured this long past its expiry.
const SKEW: &str = "1s";
/// How long the gate's keys live here, so that retiring the old signing key comes soon.
const TTL: Duration = Duration::from_secs(12);

/// One node: a `valet serve` process with a data folder of its own, as on a host of its own.
struct Node {
    name: &'static str,
    process: Running,
    addr: String,
    keyring: PathBuf,
}

impl Node {
    fn start(name: &'static str, dir: &Path, role: &str, extra: &[&str]) -> Node {
        let data = dir.join(name);
        let addr = free_addr();
        let flag = if role == "gate" {
            "--gate-addr"
        } else {
            "--store-addr"
        };
        let mut args = vec!["--role", role, "--data", path(&data), flag, &addr];
        args.extend_from_slice(extra);
        let env = [("VALET_ADMIN_API_KEY", ADMIN_KEY), ("VALET_SKEW", SKEW)];
        let mut process = spawn_serve_with(&args, &env);
        process.wait_listening(&[&addr], Duration::from_secs(20));
        Node {
            name,
            process,
            addr,
            keyring: data.join("keyring"),
        }
    }

    /// Places `master` on the node as an operator would (copied beside the node's keyring,
    /// then renamed over it: the node never sees half a file), and waits until the node has
    /// read it: its log says `reloaded` (the watch looks every 2 s).
    fn receive(&mut self, master: &Path, reloaded: &str) {
        let seen = self.process.stderr().matches(reloaded).count();
        let tmp = self.keyring.with_extension("new");
        std::fs::copy(master, &tmp).unwrap();
        std::fs::rename(&tmp, &self.keyring).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.process.stderr().matches(reloaded).count() == seen {
            assert!(
                self.process.child.try_wait().unwrap().is_none(),
                "{} exited: {}",
                self.name,
                self.process.stderr()
            );
            assert!(
                Instant::now() < deadline,
                "{} did not log '{reloaded}': {}",
                self.name,
                self.process.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A key the gate issued.
#[derive(Debug)]
struct Issued {
    token: String,
    /// The id of the signing key that signed it.
    signer: String,
    at: Instant,
}

impl Issued {
    /// Whether the key is valid for a while yet (a second's margin before its expiry).
    fn valid(&self) -> bool {
        self.at.elapsed() + Duration::from_secs(1) < TTL
    }
}

/// A key for `ops` on `blob:files/x`, signed by the gate at `gate`.
fn issue(gate: &Node, ops: &str) -> Issued {
    let at = Instant::now();
    let token = ok(valet_command()
        .args(["key", "issue", "--resource", "blob:files/x", "--ops", ops])
        .args(["--ttl", &format!("{}s", TTL.as_secs())])
        .args(["--gate", &format!("http://{}", gate.addr)])
        .env("VALET_API_KEY", ADMIN_KEY)
        .output()
        .unwrap());
    let inspected: serde_json::Value =
        serde_json::from_str(&ok(valet(&["key", "inspect", &token]))).unwrap();
    let signer = inspected["signing_key"].as_str().unwrap().to_owned();
    Issued { token, signer, at }
}

/// `curl ARGS` against `store`'s blob `files/x` with `key`: the status and the body.
fn blob(store: &Node, key: &str, args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("http://{}/blob/files/x?vk={key}", store.addr))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.to_owned(), body.to_owned())
}

/// Every one of `keys` still valid reads the blob from every one of `stores`: none is refused.
fn all_accepted(stores: &[&Node], keys: &[Issued], when: &str) {
    let valid: Vec<&Issued> = keys.iter().filter(|k| k.valid()).collect();
    assert!(!valid.is_empty(), "{when}: no key to check");
    for store in stores {
        for Issued { token, signer, .. } in valid.iter().copied() {
            let (status, body) = blob(store, token, &[]);
            assert_eq!(
                (status.as_str(), body.as_str()),
                ("200", "the blob\n"),
                "{when}: {} refused a key signed by {signer}\n{}",
                store.name,
                store.process.stderr()
            );
        }
    }
}

/// The keyring at `master` changed with `valet key ARGS --keyring MASTER`.
fn admin(master: &Path, args: &[&str]) {
    ok(valet_command()
        .arg("key")
        .args(args)
        .args(["--keyring", path(master)])
        .output()
        .unwrap());
}

#[test]
fn a_rotation_staged_everywhere_first_never_refuses_a_valid_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut gate = Node::start("gate", dir.path(), "gate", &[]);
    // The operator's copy of the keyring, from which every node gets its own.
    let master = dir.path().join("master-keyring");
    std::fs::copy(&gate.keyring, &master).unwrap();
    for store in ["store-a", "store-b"] {
        std::fs::create_dir_all(dir.path().join(store)).unwrap();
        std::fs::copy(&master, dir.path().join(store).join("keyring")).unwrap();
    }
    let mut a = Node::start("store-a", dir.path(), "store", &[]);
    let mut b = Node::start("store-b", dir.path(), "store", &[]);
    std::fs::write(dir.path().join("x"), "the blob\n").unwrap();
    let put = issue(&gate, "create");
    for store in [&a, &b] {
        let (status, _) = blob(store, &put.token, &["-T", path(&dir.path().join("x"))]);
        assert_eq!(status, "201", "{}", store.process.stderr());
    }
    let mut keys = vec![issue(&gate, "read")];
    assert_eq!(keys[0].signer, "k1");
    all_accepted(&[&a, &b], &keys, "before the rotation");

    // 1. Stage k2 on every node, one after the other; the gate signs with k1 throughout.
    admin(&master, &["stage"]);
    a.receive(&master, "keys k1, k2; active k1");
    keys.push(issue(&gate, "read"));
    all_accepted(&[&a, &b], &keys, "k2 staged on store A only");
    gate.receive(&master, "keys k1, k2; active k1");
    keys.push(issue(&gate, "read"));
    assert!(keys.iter().all(|k| k.signer == "k1"), "{keys:?}");
    all_accepted(&[&a, &b], &keys, "k2 staged on store A and the gate");
    b.receive(&master, "keys k1, k2; active k1");
    all_accepted(&[&a, &b], &keys, "k2 staged everywhere");

    // 2. Promote k2: the gate first, the stores later, B last; k1's keys still verify.
    admin(&master, &["promote", "k2"]);
    gate.receive(&master, "keys k1, k2; active k2");
    let last_k1_key = Instant::now();
    keys.push(issue(&gate, "read"));
    assert_eq!(keys.last().unwrap().signer, "k2");
    all_accepted(&[&a, &b], &keys, "k2 promoted on the gate only");
    a.receive(&master, "keys k1, k2; active k2");
    keys.push(issue(&gate, "read"));
    all_accepted(&[&a, &b], &keys, "k2 promoted on the gate and store A");
    b.receive(&master, "keys k1, k2; active k2");
    all_accepted(&[&a, &b], &keys, "k2 promoted everywhere");

    // 3. Retire k1 once the last key it signed is past its expiry and the skew: B first.
    std::thread::sleep(
        (last_k1_key + TTL + Duration::from_secs(2)).saturating_duration_since(Instant::now()),
    );
    let current = vec![issue(&gate, "read")];
    admin(&master, &["retire", "k1"]);
    b.receive(&master, "keys k2; active k2");
    all_accepted(&[&a, &b], &current, "k1 retired on store B only");
    gate.receive(&master, "keys k2; active k2");
    a.receive(&master, "keys k2; active k2");
    let current = vec![issue(&gate, "read")];
    all_accepted(&[&a, &b], &current, "k1 retired everywhere");

    // What the staging prevents: a rotation straight on the gate signs with a key that a
    // store which has not yet seen it refuses.
    admin(&master, &["rotate"]);
    gate.receive(&master, "keys k2, k3; active k3");
    let k3_key = issue(&gate, "read");
    assert_eq!(k3_key.signer, "k3");
    let (status, body) = blob(&a, &k3_key.token, &[]);
    assert_eq!(status, "403", "{body}");
    assert!(body.contains("key_invalid"), "{body}");
    a.receive(&master, "keys k2, k3; active k3");
    all_accepted(&[&a], &[k3_key], "k3 on store A");
}
