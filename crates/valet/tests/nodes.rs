//! Valet on many machines, as a user runs it: the gate and the stores in separate data folders
//! (as on separate hosts), sharing nothing but the keyring file's contents; a store without a
//! keyring; a port another process holds; a key rotation that reaches the stores at different
//! moments.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use valet_testkit::process::{free_addr, Running};

/// `valet serve ARGS` with its stderr kept; killed on drop.
fn spawn_serve(args: &[&str]) -> Running {
    Running::spawn(
        Command::new(env!("CARGO_BIN_EXE_valet"))
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
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
