//! `valet key issue|status|revoke --gate`: key administration on a running gate, driven as a
//! user would: the real binary against a real `valet serve` (gate and store), checked with
//! curl at the store.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use valet_testkit::process::{self, free_addr, Running};
use valet_testkit::raw_http::blocking::healthy;

const ADMIN_KEY: &str = "vak_key_remote_test_admin_0123456789abcdef";

/// The binary with none of the caller's `VALET_*` settings.
fn valet_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_valet"));
    process::without_env(&mut command, "VALET_");
    command
}

/// `valet serve` with gate and store on free ports and a known admin API key; killed on drop.
struct Serve {
    _process: Running,
    gate: String,
    store: String,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let (gate, store) = (free_addr(), free_addr());
        let mut process = Running::spawn(
            valet_command()
                .args(["serve", "--role", "all", "--data"])
                .arg(dir.path())
                .args(["--gate-addr", &gate, "--store-addr", &store])
                .env("VALET_ADMIN_API_KEY", ADMIN_KEY)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        );
        process.wait_until(
            "ready (gate and store healthy)",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || healthy(&gate) && healthy(&store),
        );
        Serve {
            _process: process,
            gate,
            store,
            _dir: dir,
        }
    }

    fn gate_url(&self) -> String {
        format!("http://{}", self.gate)
    }

    /// `valet key ARGS --gate GATE` with `api_key` in VALET_API_KEY.
    fn key(&self, api_key: &str, args: &[&str]) -> Output {
        valet_command()
            .arg("key")
            .args(args)
            .args(["--gate", &self.gate_url()])
            .env("VALET_API_KEY", api_key)
            .output()
            .unwrap()
    }

    fn key_ok(&self, args: &[&str]) -> String {
        let out = self.key(ADMIN_KEY, args);
        assert!(
            out.status.success(),
            "valet key {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn store_url(&self, path: &str, token: &str) -> String {
        format!("http://{}{path}?vk={token}", self.store)
    }
}

/// `curl` at the store: the status and the body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_owned())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_issued_key_works_at_the_store_and_its_status_counts_uses() {
    let s = Serve::start();
    let token = s.key_ok(&[
        "issue",
        "--resource",
        "blob:files/remote/a.txt",
        "--ops",
        "read,write",
        "--ttl",
        "10m",
        "--max-uses",
        "5",
    ]);
    assert!(token.starts_with("vk1.") && !token.contains(char::is_whitespace));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, "remote\n").unwrap();
    let url = s.store_url("/blob/files/remote/a.txt", &token);
    let (status, body) = curl(&["-T", file.to_str().unwrap(), &url]);
    assert_eq!(status, 201, "{body}");
    let (status, body) = curl(&[&url]);
    assert_eq!((status, body.as_str()), (200, "remote\n"));
    // Out of its scope, the store refuses it.
    let (status, body) = curl(&[&s.store_url("/blob/files/other.txt", &token)]);
    assert_eq!(status, 403);
    assert!(body.contains("out_of_scope"), "{body}");

    // The upload and the download used it; the refusal did not.
    let status: serde_json::Value = serde_json::from_str(&s.key_ok(&["status", &token])).unwrap();
    assert_eq!(status["uses"], 2, "{status}");
    assert_eq!(status["uses_left"], 3, "{status}");
    assert_eq!(status["max_uses"], 5, "{status}");
    assert_eq!(status["revoked"], false, "{status}");
    assert_eq!(status["resource"], "blob:files/remote/a.txt");
    assert_eq!(status["issued_by"], "admin");
    // By id, as well as by token.
    let id = status["id"].as_str().unwrap().to_owned();
    let by_id: serde_json::Value = serde_json::from_str(&s.key_ok(&["status", &id])).unwrap();
    assert_eq!(by_id["uses"], 2);

    // --json: the gate's whole answer, with the store URL that carries the key.
    let json: serde_json::Value = serde_json::from_str(&s.key_ok(&[
        "issue",
        "--resource",
        "blob:files/remote/a.txt",
        "--ops",
        "read",
        "--json",
    ]))
    .unwrap();
    assert_eq!(json["method"], "GET");
    let url = json["url"].as_str().unwrap();
    assert!(url.starts_with(&format!(
        "http://{}/blob/files/remote/a.txt?vk=vk1.",
        s.store
    )));
    assert!(json["id"].as_str().unwrap().len() == 32);
    assert!(json["expires_at"].as_str().unwrap().ends_with('Z'));
    let (status, body) = curl(&[url]);
    assert_eq!((status, body.as_str()), (200, "remote\n"));
}

#[test]
fn revoked_keys_are_refused_by_the_store() {
    let s = Serve::start();
    let issue = |path: &str| {
        s.key_ok(&[
            "issue",
            "--resource",
            &format!("blob:files/{path}"),
            "--ops",
            "read",
        ])
    };
    let first = issue("one.txt");
    let url = s.store_url("/blob/files/one.txt", &first);
    assert_eq!(curl(&[&url]).0, 404, "not uploaded: the key is admitted");

    let out = s.key(ADMIN_KEY, &["revoke", &first]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    let (status, body) = curl(&[&url]);
    assert_eq!(status, 403);
    assert!(body.contains("key_revoked"), "{body}");
    let status: serde_json::Value = serde_json::from_str(&s.key_ok(&["status", &first])).unwrap();
    assert_eq!(status["revoked"], true);
    assert_eq!(status["revoked_by"], "key");

    // By subject: the gate issues to the API key's principal, `admin`.
    let second = issue("two.txt");
    let url = s.store_url("/blob/files/two.txt", &second);
    assert_eq!(curl(&[&url]).0, 404);
    let out = s.key(
        ADMIN_KEY,
        &["revoke", "--subject", "admin", "--before", "now"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("revoked every key of \"admin\""),
        "{}",
        stderr(&out)
    );
    let (status, body) = curl(&[&url]);
    assert_eq!(status, 403);
    assert!(body.contains("key_revoked"), "{body}");
    let status: serde_json::Value = serde_json::from_str(&s.key_ok(&["status", &second])).unwrap();
    assert_eq!(status["revoked_by"], "subject");

    // Everything issued before a time. `now` includes the current second, and the gate
    // answers once it is over: a key issued right after the revocation above works.
    let third = issue("three.txt");
    let url = s.store_url("/blob/files/three.txt", &third);
    assert_eq!(
        curl(&[&url]).0,
        404,
        "issued after the revocation of every admin key"
    );
    let out = s.key(ADMIN_KEY, &["revoke", "--before", "now"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(curl(&[&url]).1.contains("key_revoked"));
    let fourth = issue("four.txt");
    let url = s.store_url("/blob/files/four.txt", &fourth);
    assert_eq!(
        curl(&[&url]).0,
        404,
        "issued after the revocation of every key"
    );
}

#[test]
fn server_errors_and_usage_errors_have_their_exit_codes() {
    let s = Serve::start();
    let args = ["issue", "--resource", "blob:files/a", "--ops", "read"];

    // A bad API key: the gate refuses the credentials.
    let out = s.key("vak_not_a_key_of_this_gate", &args);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).starts_with("valet: unauthenticated: ") && stderr(&out).contains("(HTTP 401)"),
        "{}",
        stderr(&out)
    );
    // More than the policy allows (the admin's max_ttl is 24h): denied, with the bound named.
    let mut long = args.to_vec();
    long.extend(["--ttl", "48h"]);
    let out = s.key(ADMIN_KEY, &long);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("policy_denied") && stderr(&out).contains("(HTTP 403)"),
        "{}",
        stderr(&out)
    );
    // A key the gate never recorded: the admin (may_revoke) is told what the ledger knows.
    let status: serde_json::Value =
        serde_json::from_str(&s.key_ok(&["status", &"ab".repeat(16)])).unwrap();
    assert_eq!(status["recorded"], false, "{status}");
    assert_eq!(status["revoked"], false, "{status}");
    // A resource the gate cannot parse: bad_request, exit 4.
    let out = s.key(
        ADMIN_KEY,
        &["issue", "--resource", "blob:Files/a", "--ops", "read"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad_request"), "{}", stderr(&out));
    // Operations that mean nothing on the resource: bad_request, naming both, whoever asks
    // (the admin's policy allows every operation).
    for (resource, ops, why) in [
        (
            "blob:files/x",
            "enqueue",
            "'enqueue' does not apply to one blob",
        ),
        (
            "blob:files/x",
            "read,list",
            "'list' does not apply to one blob",
        ),
        (
            "queue:jobs",
            "read,write",
            "'read' does not apply to a queue",
        ),
    ] {
        let out = s.key(ADMIN_KEY, &["issue", "--resource", resource, "--ops", ops]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(4), "{resource} {ops}: {text}");
        assert!(
            text.starts_with("valet: bad_request: ops: the operation ")
                && text.contains(why)
                && text.contains("(HTTP 400)"),
            "{resource} {ops}: {text}"
        );
    }

    // A delegate path that names no resource: bad_path, with the fault itself named once.
    for (path, why) in [
        ("/files/a%01b", "bad path: the path has a control character"),
        (
            "/files/%2e%2e/b",
            "bad path: the path has a '.' or '..' segment, in some encoding",
        ),
        ("/files/a%2fb", "bad path: the path has an encoded '/'"),
        ("/files/a%5cb", "bad path: the path has a backslash"),
        (
            "/files/a%252541",
            "bad path: the path contains a percent-encoded sequence (double encoding)",
        ),
    ] {
        let url = format!("{}{path}", s.gate_url());
        let auth = format!("Authorization: Bearer {ADMIN_KEY}");
        let (status, body) = curl(&["--path-as-is", "-H", &auth, &url]);
        let body: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: {status} {body:?}: {e}"));
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_path", "{path}: {body}");
        assert_eq!(body["error"]["message"], why, "{path}: {body}");
    }

    // No API key.
    let out = valet_command()
        .args(["key", "issue", "--gate", &s.gate_url()])
        .args(&args[1..])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("VALET_API_KEY"), "{}", stderr(&out));

    // A gate and a keyring (or a data folder, or an offline-only flag) at once.
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("keyring");
    for extra in [
        vec!["issue", "--keyring", ring.to_str().unwrap()],
        vec!["issue", "--subject", "alice"],
        vec!["status", "--data", dir.path().to_str().unwrap(), "x"],
        vec!["revoke", "--data", dir.path().to_str().unwrap(), "x"],
    ] {
        let mut argv = extra.clone();
        if extra[0] == "issue" {
            argv.extend(&args[1..]);
        }
        let out = s.key(ADMIN_KEY, &argv);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("cannot be used with"),
            "{argv:?}: {}",
            stderr(&out)
        );
    }
    // Without --gate, the offline form still needs its keyring.
    let out = valet_command()
        .args(["key", "issue"])
        .args(&args[1..])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--keyring"), "{}", stderr(&out));
}

#[test]
fn the_offline_forms_ignore_an_api_key_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("keyring");
    let ring = ring.to_str().unwrap();
    let out = valet_command()
        .args(["key", "new-keyring", "--out", ring])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = valet_command()
        .args([
            "key",
            "issue",
            "--keyring",
            ring,
            "--resource",
            "blob:files/a",
        ])
        .args(["--ops", "read", "--subject", "alice"])
        .env("VALET_API_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout).unwrap();
    let out = valet_command()
        .args(["key", "inspect", token.trim()])
        .output()
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["claims"]["subject"], "alice", "{claims}");
    assert!(Path::new(ring).exists());
}
