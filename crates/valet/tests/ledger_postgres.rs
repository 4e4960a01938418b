//! Two `valet serve --role store` nodes on one PostgreSQL ledger (`--ledger postgres://…`),
//! over real HTTP: a one-time key is served once across both, and a revocation made offline
//! with `valet key revoke --ledger` is refused by both within a second.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use valet_testkit::postgres::database;
use valet_testkit::process::{free_addr, Running};

fn valet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A store node with its own data folder, the shared keyring and the shared ledger.
fn store_node(data: &Path, keyring: &Path, ledger: &str) -> (Running, String) {
    let addr = free_addr();
    let mut process = Running::spawn(
        Command::new(env!("CARGO_BIN_EXE_valet"))
            .args(["serve", "--role", "store", "--store-addr", &addr])
            .arg("--data")
            .arg(data)
            .arg("--keyring")
            .arg(keyring)
            .args(["--ledger", ledger])
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped()),
    );
    process.wait_listening(&[&addr], Duration::from_secs(20));
    (process, format!("http://{addr}"))
}

fn issue(keyring: &Path, resource: &str, ops: &str, extra: &[&str]) -> String {
    let keyring = keyring.to_str().unwrap();
    let mut args = vec![
        "key",
        "issue",
        "--keyring",
        keyring,
        "--resource",
        resource,
        "--ops",
        ops,
    ];
    args.extend_from_slice(extra);
    stdout(valet(&args))
}

#[test]
fn two_store_nodes_share_use_counts_and_revocations_through_postgres() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring");
    // Store nodes never make a keyring of their own: they share the one made here.
    stdout(valet(&[
        "key",
        "new-keyring",
        "--out",
        keyring.to_str().unwrap(),
    ]));
    let (a, a_url) = store_node(&dir.path().join("a"), &keyring, db.url());
    let (b, b_url) = store_node(&dir.path().join("b"), &keyring, db.url());
    let client = reqwest::blocking::Client::new();

    // The same blob on both nodes (each has its own blob folder).
    let writer = issue(&keyring, "blob:files", "read,write", &[]);
    for base in [&a_url, &b_url] {
        let put = client
            .put(format!("{base}/blob/files/a?vk={writer}"))
            .body("x")
            .send()
            .unwrap();
        assert_eq!(put.status(), 201);
    }

    // A one-time key under 64 concurrent requests over both nodes: served once.
    let once = issue(&keyring, "blob:files/a", "read", &["--max-uses", "1"]);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..64)
            .map(|n| {
                let url = format!(
                    "{}/blob/files/a?vk={once}",
                    if n % 2 == 0 { &a_url } else { &b_url }
                );
                let client = client.clone();
                scope.spawn(move || client.get(url).send().unwrap().status().as_u16())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 403).count(),
        63,
        "{statuses:?}"
    );

    // Revoked offline through the same ledger: both nodes refuse it within a second.
    let reader = issue(&keyring, "blob:files", "read", &[]);
    for base in [&a_url, &b_url] {
        let get = client.get(format!("{base}/blob/files/a?vk={reader}"));
        assert_eq!(get.send().unwrap().status(), 200);
    }
    let revoke = valet(&["key", "revoke", "--ledger", db.url(), &reader]);
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let revoked = Instant::now();
    for base in [&a_url, &b_url] {
        loop {
            let answer = client
                .get(format!("{base}/blob/files/a?vk={reader}"))
                .send()
                .unwrap();
            if answer.status() == 403 {
                assert!(answer.text().unwrap().contains("key_revoked"));
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "{base} still serves a key revoked {:?} ago",
                revoked.elapsed()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let status = stdout(valet(&["key", "status", "--ledger", db.url(), &reader]));
    assert!(status.contains("\"revoked\": true"), "{status}");

    // The ledger is named in the log, never with a password.
    for node in [&a, &b] {
        let log = node.stderr();
        assert!(log.contains("ledger open"), "{log}");
        assert!(!log.contains("postgres@"), "{log}");
    }
}
