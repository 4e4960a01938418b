//! `valet key …` driven as a user would: the real binary, real files, real exit codes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::io::Write;

fn valet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(args)
        .env_remove("VALET_KEYRING")
        .output()
        .expect("valet runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "valet failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

struct Fixture {
    _dir: tempfile::TempDir,
    ring: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ring = dir.path().join("keyring");
        stdout(&valet(&[
            "key",
            "new-keyring",
            "--out",
            ring.to_str().unwrap(),
        ]));
        Fixture { _dir: dir, ring }
    }

    fn ring(&self) -> &str {
        self.ring.to_str().unwrap()
    }

    fn issue(&self, extra: &[&str]) -> String {
        let mut args = vec!["key", "issue", "--keyring", self.ring()];
        args.extend_from_slice(extra);
        stdout(&valet(&args))
    }

    fn verify(&self, op: &str, resource: &str, token: &str, ip: Option<&str>) -> (i32, String) {
        let mut args = vec![
            "key",
            "verify",
            "--keyring",
            self.ring(),
            "--op",
            op,
            "--resource",
            resource,
        ];
        if let Some(ip) = ip {
            args.extend(["--ip", ip]);
        }
        args.push(token);
        let out = valet(&args);
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        )
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn new_keyring_is_owner_only_and_never_overwritten() {
    let f = Fixture::new();
    assert_eq!(mode(&f.ring), 0o600);
    let again = valet(&["key", "new-keyring", "--out", f.ring()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn issue_prints_a_compact_token_alone_that_verifies() {
    let f = Fixture::new();
    let token = f.issue(&[
        "--resource",
        "blob:photos/2024/cat.jpg",
        "--ops",
        "read",
        "--ttl",
        "10m",
    ]);
    assert!(token.starts_with("vk1.") && !token.contains(char::is_whitespace));
    assert!(token.len() < 400, "{} characters", token.len());
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    let (code, grant) = f.verify("read", "blob:photos/2024/cat.jpg", &token, None);
    assert_eq!(code, 0);
    let grant: serde_json::Value = serde_json::from_str(&grant).unwrap();
    assert_eq!(grant["scope"], "blob:photos/2024/cat.jpg");
    assert_eq!(grant["ops"], serde_json::json!(["read"]));
}

#[test]
fn a_container_may_be_written_with_a_trailing_slash() {
    let f = Fixture::new();
    let token = f.issue(&["--resource", "blob:files/", "--ops", "read,list"]);
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&valet(&["key", "inspect", &token]))).unwrap();
    assert_eq!(json["claims"]["scope"], "blob:files");
    assert_eq!(f.verify("read", "blob:files/docs/a.txt", &token, None).0, 0);
    assert_eq!(f.verify("list", "blob:files/", &token, None).0, 0);
    assert_eq!(
        f.verify("read", "blob:files-private/a.txt", &token, None).1,
        "out_of_scope"
    );
}

#[test]
fn verify_exits_3_with_the_denial_code() {
    let f = Fixture::new();
    let token = f.issue(&[
        "--resource",
        "blob:photos/2024/",
        "--ops",
        "read",
        "--ip",
        "10.0.0.0/8",
    ]);
    assert_eq!(
        f.verify("read", "blob:photos/2024/a", &token, Some("10.1.2.3"))
            .0,
        0
    );
    let cases = [
        (
            "write",
            "blob:photos/2024/a",
            Some("10.1.2.3"),
            "op_not_allowed",
        ),
        (
            "read",
            "blob:photos/2024-private/a",
            Some("10.1.2.3"),
            "out_of_scope",
        ),
        (
            "read",
            "blob:photos/2024/a",
            Some("192.0.2.1"),
            "ip_not_allowed",
        ),
        ("read", "blob:photos/2024/a", None, "ip_not_allowed"),
    ];
    for (op, resource, ip, want) in cases {
        assert_eq!(
            f.verify(op, resource, &token, ip),
            (3, want.to_owned()),
            "{op} {resource}"
        );
    }
    assert_eq!(
        f.verify("read", "blob:photos/2024/a", "vk1.garbage", None),
        (3, "key_malformed".into())
    );
    let other = Fixture::new();
    let foreign = other.issue(&["--resource", "blob:photos/2024/", "--ops", "read"]);
    assert_eq!(
        f.verify("read", "blob:photos/2024/a", &foreign, None),
        (3, "key_invalid".into())
    );
}

/// Two seconds, not one: times are whole seconds, and a one-second key issued just before a
/// second ends has expired before a busy machine can run the first check.
#[test]
fn a_two_second_key_expires() {
    let f = Fixture::new();
    let token = f.issue(&[
        "--resource",
        "queue:jobs",
        "--ops",
        "dequeue",
        "--ttl",
        "2s",
    ]);
    let out = valet(&[
        "key",
        "verify",
        "--keyring",
        f.ring(),
        "--op",
        "dequeue",
        "--resource",
        "queue:jobs",
        "--skew",
        "0s",
        &token,
    ]);
    assert_eq!(out.status.code(), Some(0));
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let out = valet(&[
        "key",
        "verify",
        "--keyring",
        f.ring(),
        "--op",
        "dequeue",
        "--resource",
        "queue:jobs",
        "--skew",
        "0s",
        &token,
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "key_expired");
}

#[test]
fn inspect_shows_claims_and_caveats_without_a_secret() {
    let f = Fixture::new();
    let token = f.issue(&[
        "--resource",
        "blob:photos",
        "--ops",
        "read,write",
        "--subject",
        "alice",
        "--max-bytes",
        "10MiB",
        "--max-uses",
        "3",
        "--content-type",
        "image/*",
        "--filename",
        "cat.jpg",
    ]);
    let narrowed = stdout(&valet(&[
        "key",
        "attenuate",
        &token,
        "--ops",
        "read",
        "--resource",
        "blob:photos/jan/",
    ]));
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&valet(&["key", "inspect", &narrowed]))).unwrap();
    assert_eq!(json["claims"]["subject"], "alice");
    assert_eq!(json["claims"]["max_bytes"], 10 * 1024 * 1024);
    assert_eq!(json["claims"]["max_uses"], 3);
    assert_eq!(json["claims"]["content_type"], "image/*");
    assert_eq!(json["claims"]["filename"], "cat.jpg");
    assert_eq!(json["caveats"][0]["scope"], "blob:photos/jan/");
    assert_eq!(json["effective"]["ops"], serde_json::json!(["read"]));
    let text = serde_json::to_string(&json).unwrap();
    let tag = narrowed.rsplit_once('.').unwrap().1;
    assert!(!text.contains(tag), "inspect must not print the tag");
}

#[test]
fn attenuated_keys_verify_narrower_and_refuse_to_widen() {
    let f = Fixture::new();
    let token = f.issue(&[
        "--resource",
        "blob:photos",
        "--ops",
        "read,list",
        "--ttl",
        "10m",
    ]);
    let narrowed = stdout(&valet(&[
        "key",
        "attenuate",
        &token,
        "--ttl",
        "1m",
        "--ops",
        "read",
        "--resource",
        "blob:photos/2024/",
    ]));
    assert_eq!(f.verify("read", "blob:photos/2024/a", &narrowed, None).0, 0);
    assert_eq!(
        f.verify("read", "blob:photos/2023/a", &narrowed, None).1,
        "out_of_scope"
    );
    assert_eq!(
        f.verify("list", "blob:photos/2024/", &narrowed, None).1,
        "op_not_allowed"
    );
    for widen in [
        vec!["--ttl", "1h"],
        vec!["--ops", "read,write"],
        vec!["--resource", "blob:photos"],
        vec!["--resource", "blob:photos-private/"],
    ] {
        let mut args = vec!["key", "attenuate", &narrowed];
        args.extend(widen.iter().copied());
        let out = valet(&args);
        assert_eq!(out.status.code(), Some(1), "{widen:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn tokens_can_come_from_stdin() {
    let f = Fixture::new();
    let token = f.issue(&["--resource", "blob:photos/a", "--ops", "read"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_valet"))
        .args([
            "key",
            "verify",
            "--keyring",
            f.ring(),
            "--op",
            "read",
            "--resource",
            "blob:photos/a",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{token}\n").as_bytes())
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
}

#[test]
fn rotation_and_retirement() {
    let f = Fixture::new();
    let old = f.issue(&["--resource", "blob:photos/a", "--ops", "read"]);
    stdout(&valet(&["key", "rotate", "--keyring", f.ring()]));
    assert_eq!(mode(&f.ring), 0o600);
    let new = f.issue(&["--resource", "blob:photos/a", "--ops", "read"]);
    let new_json: serde_json::Value =
        serde_json::from_str(&stdout(&valet(&["key", "inspect", &new]))).unwrap();
    assert_eq!(new_json["signing_key"], "k2");
    assert_eq!(f.verify("read", "blob:photos/a", &old, None).0, 0);
    let active_retire = valet(&["key", "retire", "--keyring", f.ring(), "k2"]);
    assert_eq!(active_retire.status.code(), Some(1));
    stdout(&valet(&["key", "retire", "--keyring", f.ring(), "k1"]));
    assert_eq!(
        f.verify("read", "blob:photos/a", &old, None),
        (3, "key_invalid".into())
    );
    assert_eq!(f.verify("read", "blob:photos/a", &new, None).0, 0);
    let listed = stdout(&valet(&["key", "list", "--keyring", f.ring()]));
    assert!(listed.contains("\"k2\"") && !listed.contains("secret"));
}

#[test]
fn a_staged_key_verifies_and_signs_once_promoted() {
    let f = Fixture::new();
    let staged = valet(&["key", "stage", "--keyring", f.ring()]);
    assert!(staged.status.success());
    assert_eq!(
        String::from_utf8(staged.stderr).unwrap(),
        format!(
            "staged k2: it verifies but does not sign; once every node has this file, promote \
             it: valet key promote --keyring {} k2\n",
            f.ring()
        )
    );
    assert_eq!(mode(&f.ring), 0o600);
    let signer = |token: &str| -> String {
        let json: serde_json::Value =
            serde_json::from_str(&stdout(&valet(&["key", "inspect", token]))).unwrap();
        json["signing_key"].as_str().unwrap().to_owned()
    };
    let old = f.issue(&["--resource", "blob:photos/a", "--ops", "read"]);
    assert_eq!(signer(&old), "k1", "a staged key signs nothing");
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&valet(&["key", "list", "--keyring", f.ring()]))).unwrap();
    let states: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["id"].as_str().unwrap(), k["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("k1", "active"), ("k2", "verify-only")]);
    assert_eq!(listed[1]["active"], false);
    let fingerprint = listed[1]["fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 16);
    assert_ne!(listed[0]["fingerprint"], listed[1]["fingerprint"]);

    let promoted = valet(&["key", "promote", "--keyring", f.ring(), "k2"]);
    assert_eq!(
        String::from_utf8(promoted.stderr).unwrap(),
        "k2 is now the active signing key; k1 verifies only\n"
    );
    let new = f.issue(&["--resource", "blob:photos/a", "--ops", "read"]);
    assert_eq!(signer(&new), "k2");
    for token in [&old, &new] {
        assert_eq!(f.verify("read", "blob:photos/a", token, None).0, 0);
    }
    let again = valet(&["key", "promote", "--keyring", f.ring(), "k2"]);
    assert_eq!(
        String::from_utf8(again.stderr).unwrap(),
        "k2 is the active signing key\n"
    );
    let unknown = valet(&["key", "promote", "--keyring", f.ring(), "k9"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(unknown.stderr).unwrap(),
        "valet: there is no signing key 'k9' in the keyring\n"
    );
    let active = valet(&["key", "retire", "--keyring", f.ring(), "k2"]);
    assert_eq!(
        String::from_utf8(active.stderr).unwrap(),
        "valet: 'k2' is the active key: promote another key (or rotate) before retiring it\n"
    );
    let relisted = stdout(&valet(&["key", "list", "--keyring", f.ring()]));
    assert!(
        relisted.contains(fingerprint),
        "fingerprints stay: {relisted}"
    );
}

#[test]
fn bad_input_is_refused_with_a_message() {
    let f = Fixture::new();
    let cases: [&[&str]; 7] = [
        &["--resource", "blob:photos/../etc", "--ops", "read"],
        &["--resource", "blob:Photos/a", "--ops", "read"],
        &["--resource", "blob:photos/a", "--ops", "read,admin"],
        &[
            "--resource",
            "blob:photos/a",
            "--ops",
            "read",
            "--ttl",
            "soon",
        ],
        &[
            "--resource",
            "blob:photos/a",
            "--ops",
            "read",
            "--max-bytes",
            "lots",
        ],
        &[
            "--resource",
            "blob:photos/a",
            "--ops",
            "read",
            "--ip",
            "10.0.0.1/8",
        ],
        &[
            "--resource",
            "blob:photos/a",
            "--ops",
            "read",
            "--filename",
            "a\"b",
        ],
    ];
    for extra in cases {
        let mut args = vec!["key", "issue", "--keyring", f.ring()];
        args.extend_from_slice(extra);
        let out = valet(&args);
        assert!(!out.status.success(), "{extra:?}");
        assert!(out.stdout.is_empty(), "{extra:?}");
        assert!(!out.stderr.is_empty(), "{extra:?}");
    }
}

/// A key whose operations mean nothing on its resource is refused, naming both.
#[test]
fn keys_with_operations_that_do_not_apply_to_the_resource_are_refused() {
    let f = Fixture::new();
    let cases = [
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
            "blob:files/",
            "peek",
            "'peek' does not apply to a blob container or prefix",
        ),
        (
            "queue:jobs",
            "read,write",
            "'read' does not apply to a queue",
        ),
        (
            "table:orders/p/r",
            "list",
            "'list' does not apply to one table row",
        ),
    ];
    for (resource, ops, why) in cases {
        let out = valet(&[
            "key",
            "issue",
            "--keyring",
            f.ring(),
            "--resource",
            resource,
            "--ops",
            ops,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{resource} {ops}: {stderr}");
        assert!(out.stdout.is_empty());
        assert!(stderr.contains(why), "{resource} {ops}: {stderr}");
    }
    let folder = f.issue(&["--resource", "blob:files/docs/", "--ops", "read,list"]);
    for (extra, why) in [
        (
            vec!["--resource", "blob:files/docs/a.txt"],
            "the key's operation 'list' does not apply to one blob",
        ),
        (
            vec!["--resource", "blob:files/docs/a.txt", "--ops", "list"],
            "'list' does not apply to one blob",
        ),
        (
            vec!["--resource", "queue:files"],
            "the caveat's scope is a queue scope and the key's a blob scope",
        ),
    ] {
        let mut args = vec!["key", "attenuate", &folder];
        args.extend(extra.iter().copied());
        let out = valet(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(why), "{extra:?}: {stderr}");
    }
    let one = stdout(&valet(&[
        "key",
        "attenuate",
        &folder,
        "--resource",
        "blob:files/docs/a.txt",
        "--ops",
        "read",
    ]));
    assert_eq!(f.verify("read", "blob:files/docs/a.txt", &one, None).0, 0);
}

/// The messages of the commonest mistakes, whole: the fault said once, control characters
/// escaped, sentences that parse.
#[test]
fn refusals_read_plainly() {
    let f = Fixture::new();
    let issue = |resource: &str, ops: &str| {
        let out = valet(&[
            "key",
            "issue",
            "--keyring",
            f.ring(),
            "--resource",
            resource,
            "--ops",
            ops,
        ]);
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    };
    assert_eq!(
        issue("blob:photos/a\u{1}b", "read"),
        "valet: 'blob:photos/a\\u{1}b' is not a resource: the path contains a control character\n"
    );
    assert_eq!(
        issue("blob:photos/../x", "read"),
        "valet: 'blob:photos/../x' is not a resource: the path has a '.' or '..' segment\n"
    );
    assert_eq!(
        issue("blob:files/x", "enqueue"),
        "valet: --ops: the operation 'enqueue' does not apply to one blob, which takes read, \
         write, create or delete\n"
    );
    let missing = f.ring.with_file_name("missing");
    let out = valet(&["key", "list", "--keyring", missing.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "valet: keyring file {}: No such file or directory (os error 2)\n",
            missing.display()
        )
    );
    let out = valet(&["key", "retire", "--keyring", f.ring(), "k9"]);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "valet: there is no signing key 'k9' in the keyring\n"
    );
    // A gate that is not running: the OS's reason, not the HTTP client's layers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gate = format!("http://{closed}");
    let out = Command::new(env!("CARGO_BIN_EXE_valet"))
        .args([
            "key",
            "issue",
            "--gate",
            &gate,
            "--resource",
            "blob:files/a",
            "--ops",
            "read",
        ])
        .env("VALET_API_KEY", "vak_some_key_0123456789")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("valet: requesting POST {gate}/v1/keys: cannot connect: Connection refused (os error 111)\n")
    );
    let token = f.issue(&["--resource", "blob:photos/2024/", "--ops", "read"]);
    let out = valet(&["key", "attenuate", &token, "--ops", "read,write"]);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "valet: cannot attenuate: the caveat would widen the key's operations\n"
    );
    let out = valet(&[
        "key",
        "issue",
        "--keyring",
        f.ring(),
        "--resource",
        "blob:a/b",
        "--ops",
        "read",
        "--ttl",
        "soon",
    ]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("'soon' is not a duration like 90s or 10m\n"),
        "{stderr}"
    );
}

#[test]
fn a_keyring_readable_by_others_is_refused() {
    let f = Fixture::new();
    std::fs::set_permissions(&f.ring, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = valet(&[
        "key",
        "issue",
        "--keyring",
        f.ring(),
        "--resource",
        "blob:photos/a",
        "--ops",
        "read",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

/// The subcommands listed under `Commands:` in a help text (without `help` itself).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A name is indented by two spaces; a wrapped description, by more.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// `valet --help` and the help of every subcommand, found by walking the `Commands:` lists
/// (clap's `Cli::command()` is not reachable from here), each carry an example.
#[test]
fn every_command_has_an_example_in_its_help() {
    let mut seen: Vec<String> = Vec::new();
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = stdout(&valet(&args));
        assert!(
            help.contains("Example"),
            "`valet {}` has no example",
            args.join(" ")
        );
        for sub in subcommands(&help) {
            let mut child = path.clone();
            child.push(sub);
            queue.push(child);
        }
        seen.push(path.join(" "));
    }
    // The walk found them all (a change of clap's help layout would make it find none).
    for expected in [
        "",
        "serve",
        "get",
        "put",
        "key",
        "key new-keyring",
        "key rotate",
        "key retire",
        "key list",
        "key issue",
        "key inspect",
        "key attenuate",
        "key revoke",
        "key status",
        "key verify",
    ] {
        assert!(
            seen.iter().any(|s| s == expected),
            "`valet {expected}` was not found in the help: {seen:?}"
        );
    }
}
