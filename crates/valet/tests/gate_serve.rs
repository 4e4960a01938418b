//! `valet serve` with the gate, as a user runs it: the real binary, zero configuration, real
//! curl; the roles in separate processes sharing a data folder; configuration errors.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use valet_testkit::process::{free_addr, Running};

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap()
}

/// A running `valet serve`; killed on drop.
struct Serve {
    _process: Running,
    stdout: String,
}

impl Serve {
    /// Starts `valet serve ARGS` and waits until every address in `wait_for` accepts.
    fn start(args: &[&str], env: &[(&str, &str)], wait_for: &[&str]) -> Serve {
        let mut process = Running::spawn(
            Command::new(env!("CARGO_BIN_EXE_valet"))
                .arg("serve")
                .args(args)
                .envs(env.iter().copied())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        process.wait_listening(wait_for, Duration::from_secs(20));
        // The welcome text, if any, is printed before the listeners accept.
        let mut stdout = String::new();
        let pipe = process.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            stdout.push_str(&line);
            stdout.push('\n');
        }
        Serve {
            _process: process,
            stdout,
        }
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn zero_configuration_serves_gate_and_store_and_prints_the_admin_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("valet-data");
    let (gate, store) = (free_addr(), free_addr());
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--gate-addr",
        &gate,
        "--store-addr",
        &store,
    ];
    let serve = Serve::start(&args, &[], &[&gate, &store]);
    let key_file = data.join("admin-api-key");
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(key.starts_with("vak_"), "{key}");
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&data.join("keyring")), 0o600);
    assert!(data.join("ledger.sqlite").exists());
    assert!(serve.stdout.contains(&key), "{}", serve.stdout);
    let example = format!(
        "curl -L -T README.md -H \"Authorization: Bearer {key}\" http://{gate}/files/README.md"
    );
    assert!(serve.stdout.contains(&example), "{}", serve.stdout);

    // The quickstart: curl -L -T up, curl -L down, through the default /files route.
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello, valet\n").unwrap();
    let auth = format!("Authorization: Bearer {key}");
    let up = curl(&[
        "-L",
        "-f",
        "-T",
        file.to_str().unwrap(),
        "-H",
        &auth,
        &format!("http://{gate}/files/hello.txt"),
    ]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let down = curl(&[
        "-L",
        "-f",
        "-H",
        &auth,
        &format!("http://{gate}/files/hello.txt"),
    ]);
    assert_eq!(String::from_utf8_lossy(&down.stdout), "hello, valet\n");
    // The issued URL points at the store.
    let body = r#"{"resource":"blob:files/hello.txt","ops":["read"],"ttl":"10m"}"#;
    let issued = curl(&[
        "-f",
        "-H",
        &auth,
        "-d",
        body,
        &format!("http://{gate}/v1/keys"),
    ]);
    let issued: serde_json::Value = serde_json::from_slice(&issued.stdout).unwrap();
    let url = issued["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("http://{store}/blob/files/hello.txt?vk=vk1.")),
        "{url}"
    );
    assert_eq!(
        String::from_utf8_lossy(&curl(&["-f", url]).stdout),
        "hello, valet\n"
    );
    drop(serve);

    // A second start reuses the key and does not print it.
    let serve = Serve::start(&args, &[], &[&gate, &store]);
    assert!(!serve.stdout.contains(&key), "{}", serve.stdout);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);
}

#[test]
fn the_admin_key_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (gate, store) = (free_addr(), free_addr());
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--gate-addr",
        &gate,
        "--store-addr",
        &store,
    ];
    let key = "vak_from_the_environment_0123456789";
    let _serve = Serve::start(&args, &[("VALET_ADMIN_API_KEY", key)], &[&gate, &store]);
    assert!(!data.join("admin-api-key").exists());
    let ok = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("Authorization: Bearer {key}"),
        &format!("http://{gate}/files/x"),
    ]);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "307");
}

#[test]
fn gate_and_store_in_separate_processes_share_keyring_and_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shared");
    let (gate, store) = (free_addr(), free_addr());
    let d = data.to_str().unwrap();
    // The gate first: it makes the keyring, which a store alone never does.
    let _gate = Serve::start(
        &[
            "--role",
            "gate",
            "--data",
            d,
            "--gate-addr",
            &gate,
            "--store-addr",
            &store,
        ],
        &[("VALET_ADMIN_API_KEY", "vak_separate_processes_0123456789")],
        &[&gate],
    );
    let _store = Serve::start(
        &["--role", "store", "--data", d, "--store-addr", &store],
        &[],
        &[&store],
    );
    let auth = "Authorization: Bearer vak_separate_processes_0123456789";
    let file = dir.path().join("f");
    std::fs::write(&file, "shared").unwrap();
    let up = curl(&[
        "-L",
        "-f",
        "-T",
        file.to_str().unwrap(),
        "-H",
        auth,
        &format!("http://{gate}/files/f"),
    ]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let body = r#"{"resource":"blob:files/f","ops":["read"]}"#;
    let issued: serde_json::Value = serde_json::from_slice(
        &curl(&[
            "-f",
            "-H",
            auth,
            "-d",
            body,
            &format!("http://{gate}/v1/keys"),
        ])
        .stdout,
    )
    .unwrap();
    let url = issued["url"].as_str().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&curl(&["-f", url]).stdout),
        "shared"
    );
    // Revoked at the gate, refused by the other process at its next request.
    let id = issued["id"].as_str().unwrap();
    let revoked = curl(&[
        "-X",
        "DELETE",
        "-w",
        "%{http_code}",
        "-H",
        auth,
        &format!("http://{gate}/v1/keys/{id}"),
    ]);
    assert_eq!(String::from_utf8_lossy(&revoked.stdout), "204");
    let refused = curl(&[url]);
    assert!(String::from_utf8_lossy(&refused.stdout).contains("key_revoked"));
}

/// Runs `valet serve` expecting it to refuse to start; never waits more than 20 s.
fn serve_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_valet"))
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("valet serve {args:?} {env:?} started instead of failing");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "valet serve {args:?}: {stderr}");
    stderr
}

#[test]
fn a_bad_configuration_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let d = data.to_str().unwrap();
    let config = dir.path().join("valet.toml");
    let cases = [
        ("gate_adr = \"127.0.0.1:1\"\n", "gate_adr"),
        ("[[routes]]\npath = \"files/{*p}\"\ndelegate = \"blob:files/{p}\"\n", "routes[0].path"),
        ("[roles.user]\nresources = [\"blob:users/{sub}/\"]\nops = [\"read\"]\nmax_ttl = \"forever\"\n", "roles.user.max_ttl"),
        ("[rate_limit]\nper_second = -1\n", "rate_limit.per_second"),
        ("store_url = \"ftp://x\"\n", "store_url"),
    ];
    for (text, setting) in cases {
        std::fs::write(&config, text).unwrap();
        let stderr = serve_fails(
            &[
                "--config",
                config.to_str().unwrap(),
                "--data",
                d,
                "--gate-addr",
                "127.0.0.1:0",
                "--store-addr",
                "127.0.0.1:0",
            ],
            &[],
        );
        assert!(stderr.contains(setting), "{text}: {stderr}");
    }
    let stderr = serve_fails(&["--data", d], &[("VALET_SKEW", "a while")]);
    assert!(stderr.contains("skew"), "{stderr}");
    let stderr = serve_fails(&["--data", d], &[("VALET_GATE_ADDR", "nowhere")]);
    assert!(stderr.contains("gate_addr"), "{stderr}");
    // Not octal; a mode that lets others write blobs.
    for mode in ["9", "rw-r--r--", "1777"] {
        let stderr = serve_fails(&["--data", d], &[("VALET_BLOB_MODE", mode)]);
        assert!(stderr.contains("blob_mode"), "{mode}: {stderr}");
    }
    let stderr = serve_fails(
        &[
            "--data",
            d,
            "--gate-addr",
            "127.0.0.1:0",
            "--store-addr",
            "127.0.0.1:0",
        ],
        &[("VALET_BLOB_MODE", "666")],
    );
    assert!(stderr.contains("blob_mode"), "666: {stderr}");
    let stderr = serve_fails(&["--config", "/nonexistent/valet.toml"], &[]);
    assert!(stderr.contains("/nonexistent/valet.toml"), "{stderr}");
}

/// The messages read as sentences: no library's nested backquotes, no name said twice.
#[test]
fn configuration_errors_read_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    let d = d.to_str().unwrap();
    let config = dir.path().join("valet.toml");
    for (text, want) in [
        (
            "role = \"x\"\n",
            "valet: bad configuration: setting `role`: 'x' is not one of all, gate, store (from TOML file)",
        ),
        (
            "gate_adr = \"127.0.0.1:1\"\n",
            "valet: bad configuration: setting `gate_adr`: no such setting (the settings here are role, data, gate_addr,",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let stderr = serve_fails(&["--config", config.to_str().unwrap(), "--data", d], &[]);
        assert!(stderr.starts_with(want), "{text}: {stderr}");
        assert!(!stderr.contains("``"), "{stderr}");
    }
    let stderr = serve_fails(&["--data", d], &[("VALET_ROLE", "both")]);
    assert!(
        stderr.contains("setting `role`: 'both' is not one of all, gate, store (from `VALET_` environment variable(s))"),
        "{stderr}"
    );
}

#[test]
fn environment_variables_reach_nested_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, store) = (free_addr(), free_addr());
    let d = dir.path().join("d");
    let key = "vak_environment_nested_0123456789";
    let _serve = Serve::start(
        &["--data", d.to_str().unwrap()],
        &[
            ("VALET_GATE_ADDR", gate.as_str()),
            ("VALET_STORE_ADDR", store.as_str()),
            ("VALET_ADMIN_API_KEY", key),
            ("VALET_RATE_LIMIT__PER_SECOND", "1"),
            ("VALET_RATE_LIMIT__BURST", "2"),
            // A client's variable in the same environment is not a server setting.
            ("VALET_API_KEY", "ignored-by-the-server"),
        ],
        &[&gate, &store],
    );
    let auth = format!("Authorization: Bearer {key}");
    let codes: Vec<String> = (0..4)
        .map(|_| {
            let out = curl(&[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                &auth,
                &format!("http://{gate}/files/x"),
            ]);
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    assert_eq!(&codes[..2], ["307", "307"]);
    assert!(codes[2..].contains(&"429".to_owned()), "{codes:?}");
}

#[test]
fn the_printed_defaults_are_the_configuration() {
    let out = Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(["serve", "--print-defaults"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[[routes]]") && text.contains("delegate = \"blob:files/{path}\""));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("valet.toml");
    std::fs::write(&config, &text).unwrap();
    let (gate, store) = (free_addr(), free_addr());
    let d = dir.path().join("d");
    let _serve = Serve::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--data",
            d.to_str().unwrap(),
            "--gate-addr",
            &gate,
            "--store-addr",
            &store,
        ],
        &[],
        &[&gate, &store],
    );
}
