//! Every example in every `--help` runs, as a new user would type it, so that no help text
//! shows a command that fails.
//!
//! The help pages are found by walking the `Commands:` lists from `valet --help` (clap's
//! `Cli::command()` is not reachable from a test of a binary). The examples of a page are the
//! indented lines under its `Example:` or `Examples:` heading, up to the first blank line; a
//! trailing comment set off by two or more spaces, `   (like this)`, is not part of the command.
//!
//! Each example runs in `bash -a -euo pipefail`, in a fresh working folder per help page, with
//! the variables of the page's earlier examples (as the README's quickstart test does), against
//! a real `valet serve` started here. What the test changes in the commands, because examples
//! use placeholders, fixed ports and system paths:
//! - `VALET_API_KEY=…` gets the running gate's admin API key, `vk1.…` a store key for
//!   `blob:files` (read, write, list), `5f0c…e1` the id of a key that gate issued, `$TOKEN` a
//!   key signed by the page's `keyring` for `blob:photos` (read, list);
//! - `http://127.0.0.1:8080` and `https://gate.example.com` become the running gate's URL,
//!   `127.0.0.1:8081` its store's address, `valet-data` its data folder;
//! - `/etc/valet/` and `/srv/valet` become folders in the working folder, `0.0.0.0:8081` a free
//!   loopback address, and `| less` (a pager wants a terminal) `| cat`.
//!
//! The working folder holds `report.pdf` and `data.csv` to upload, a `valet.toml` for
//! `--config`, and, once an example names `--keyring keyring` or `$TOKEN` without having
//! created it, a `keyring` with a verify-only `k1` and an active `k2`. A `valet serve` example
//! is started with free addresses (`VALET_GATE_ADDR`, `VALET_STORE_ADDR`), must become healthy,
//! and is then stopped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use valet_testkit::process::{self, free_addr, Running};
use valet_testkit::raw_http::blocking::healthy;

/// How long one example may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn valet_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_valet"));
    process::without_env(&mut command, "VALET_");
    command
}

fn run_ok(command: &mut Command) -> String {
    let out: Output = command.output().expect("valet runs");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The subcommands listed under `Commands:` in a help text (without `help` itself).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every help page, as the subcommand path that shows it and its text, in the order a walk
/// from `valet --help` finds them.
fn help_pages() -> Vec<(String, String)> {
    let mut pages = Vec::new();
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = queue.pop() {
        let mut args = path.clone();
        args.push("--help".into());
        let help = run_ok(valet_command().args(&args));
        for sub in subcommands(&help).into_iter().rev() {
            let mut child = path.clone();
            child.push(sub);
            queue.push(child);
        }
        pages.push((path.join(" "), help));
    }
    pages
}

/// The example command lines of one help page, without their trailing comments.
fn examples(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !(l.starts_with("Example:") || l.starts_with("Examples:")))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let line = l.trim();
            // `valet serve     (gate on :8080, …)`: a comment, set off by two or more spaces.
            match line.find("  ") {
                Some(at) if line[at..].trim_start().starts_with('(') => line[..at].to_owned(),
                _ => line.to_owned(),
            }
        })
        .collect()
}

#[test]
fn examples_are_found_on_every_page() {
    let pages = help_pages();
    assert!(pages.len() >= 15, "{:?}", pages.iter().map(|p| &p.0));
    for (page, help) in &pages {
        let found = examples(help);
        assert!(!found.is_empty(), "`valet {page} --help` shows no example");
        assert!(
            found.iter().any(|e| e.contains("valet ")),
            "`valet {page} --help`: no example runs valet: {found:?}"
        );
        for example in &found {
            assert!(!example.contains("  ("), "a comment was kept: {example:?}");
        }
    }
    let serve = examples(&pages.iter().find(|p| p.0 == "serve").unwrap().1);
    assert_eq!(serve[0], "valet serve");
}

/// The shared `valet serve` the examples that name a gate or a store talk to, and what they
/// need from it.
struct World {
    _serve: Running,
    gate: String,
    store: String,
    data: PathBuf,
    /// A store key for `blob:files`, read, write and list, for `vk1.…`.
    store_token: String,
    /// The id of a key the gate issued, for `5f0c…e1`.
    gate_key_id: String,
    /// The admin's API key, for `VALET_API_KEY=…`.
    admin_key: String,
    /// `PATH` with the binary under test first.
    path: String,
    _dir: tempfile::TempDir,
}

impl World {
    fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (gate, store) = (free_addr(), free_addr());
        let mut serve = Running::spawn(
            valet_command()
                .args(["serve", "--role", "all", "--data"])
                .arg(&data)
                .args([
                    "--gate-addr",
                    &gate,
                    "--store-addr",
                    &store,
                    "--workers",
                    "1",
                ])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        // The admin API key as a first start writes it, for `$(cat valet-data/admin-api-key)`.
        let admin_key_file = data.join("admin-api-key");
        serve.wait_until(
            "ready (gate and store healthy, the admin API key written)",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || healthy(&gate) && healthy(&store) && admin_key_file.exists(),
        );
        let admin_key = std::fs::read_to_string(&admin_key_file)
            .unwrap()
            .trim()
            .to_owned();
        let keyring = data.join("keyring");
        let store_token = run_ok(
            valet_command()
                .args(["key", "issue", "--keyring"])
                .arg(&keyring)
                .args(["--resource", "blob:files", "--ops", "read,write,list"])
                .args(["--ttl", "1h"]),
        );
        // The blobs the download examples fetch.
        for name in ["report.pdf", "log.txt"] {
            let file = dir.path().join(name);
            std::fs::write(&file, format!("the contents of {name}\n")).unwrap();
            let url = format!("http://{store}/blob/files/{name}?vk={store_token}");
            run_ok(valet_command().args(["put", "--quiet"]).arg(&file).arg(url));
        }
        let issued = run_ok(
            valet_command()
                .args(["key", "issue", "--gate", &format!("http://{gate}")])
                .args([
                    "--resource",
                    "blob:files/report.pdf",
                    "--ops",
                    "read",
                    "--json",
                ])
                .env("VALET_API_KEY", &admin_key),
        );
        let issued: serde_json::Value = serde_json::from_str(&issued).unwrap();
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_valet")).parent().unwrap();
        World {
            _serve: serve,
            gate,
            store,
            data,
            store_token,
            gate_key_id: issued["id"].as_str().unwrap().to_owned(),
            admin_key,
            path: format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
            _dir: dir,
        }
    }

    /// The example as it runs here (see the module docs for each change).
    fn concrete(&self, example: &str, free_store: &str) -> String {
        let gate_url = format!("http://{}", self.gate);
        let data = self.data.display().to_string();
        example
            .replace(
                "VALET_API_KEY=…",
                &format!("VALET_API_KEY={}", self.admin_key),
            )
            .replace("vk1.…", &self.store_token)
            .replace("5f0c…e1", &self.gate_key_id)
            .replace("http://127.0.0.1:8080", &gate_url)
            .replace("https://gate.example.com", &gate_url)
            .replace("127.0.0.1:8081", &self.store)
            .replace("./valet-data", &data)
            .replace("valet-data", &data)
            .replace("/etc/valet/", "etc/valet/")
            .replace("/srv/valet", "srv/valet")
            .replace("0.0.0.0:8081", free_store)
            .replace("| less", "| cat")
    }
}

/// A fresh working folder for one help page.
fn working_folder(root: &Path, page: &str) -> PathBuf {
    let work = root.join(if page.is_empty() { "valet" } else { page }.replace(' ', "-"));
    std::fs::create_dir_all(work.join("etc/valet")).unwrap();
    std::fs::write(work.join("report.pdf"), "%PDF-1.4 a report\n").unwrap();
    std::fs::write(work.join("data.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(work.join("valet.toml"), "workers = 1\n").unwrap();
    std::fs::write(work.join(".state.sh"), "").unwrap();
    work
}

/// The page's `keyring` (a verify-only `k1`, an active `k2`) and a `$TOKEN` it signed.
fn page_keyring(work: &Path) -> String {
    let keyring = work.join("keyring");
    if !keyring.exists() {
        run_ok(
            valet_command()
                .args(["key", "new-keyring", "--out"])
                .arg(&keyring),
        );
        run_ok(
            valet_command()
                .args(["key", "rotate", "--keyring"])
                .arg(&keyring),
        );
    }
    run_ok(
        valet_command()
            .args(["key", "issue", "--keyring"])
            .arg(&keyring)
            .args([
                "--resource",
                "blob:photos",
                "--ops",
                "read,list",
                "--ttl",
                "1h",
            ]),
    )
}

/// What went wrong with one example, for the failure message.
fn failure(page: &str, written: &str, ran: &str, outcome: &str) -> String {
    format!("`valet {page} --help`:\n  {written}\nran as:\n  {ran}\n{outcome}")
}

/// Runs one ordinary example in `work`, with the page's variables; `None` if it succeeded.
fn run_example(world: &World, work: &Path, command: &str, token: Option<&str>) -> Option<String> {
    let script =
        format!("source .state.sh 2>/dev/null || true\n{command}\nexport -p > .state.sh\n");
    let mut bash = Command::new("bash");
    process::without_env(&mut bash, "VALET_")
        .args(["-a", "-euo", "pipefail", "-c", &script])
        .current_dir(work)
        .env_remove("BASH_ENV")
        .env("PATH", &world.path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        bash.env("TOKEN", token);
    }
    let child = bash.spawn().expect("bash runs");
    let out = wait_with_timeout(child);
    match out {
        Some(out) if out.status.success() => None,
        Some(out) => Some(format!(
            "exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        None => Some(format!("still running after {COMMAND_TIMEOUT:?}")),
    }
}

fn wait_with_timeout(mut child: std::process::Child) -> Option<Output> {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `command` with `exec` before the program (after any `NAME=value` assignments), so that
/// stopping the shell stops the server.
fn exec(command: &str) -> String {
    let words: Vec<&str> = command.split(' ').collect();
    let program = words.iter().position(|w| !w.contains('=')).unwrap_or(0);
    let (assignments, rest) = words.split_at(program);
    format!("{} exec {}", assignments.join(" "), rest.join(" "))
}

/// Starts a `valet serve` example on free addresses and waits until what it runs is healthy;
/// `None` if it was.
fn run_serve_example(
    world: &World,
    work: &Path,
    command: &str,
    gate: &str,
    store: &str,
) -> Option<String> {
    let mut bash = Command::new("bash");
    process::without_env(&mut bash, "VALET_")
        .args(["-euo", "pipefail", "-c", &exec(command)])
        .current_dir(work)
        .env("PATH", &world.path)
        .env("VALET_GATE_ADDR", gate)
        .env("VALET_STORE_ADDR", store)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if command.contains("--role store") {
        give_store_keyring(work, command);
    }
    let mut serving = Running::spawn(&mut bash);
    let wanted: Vec<&str> = if command.contains("--role store") {
        vec![store]
    } else if command.contains("--role gate") {
        vec![gate]
    } else {
        vec![gate, store]
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if wanted.iter().all(|addr| healthy(addr)) {
            return None;
        }
        if let Some(status) = serving.child.try_wait().unwrap() {
            return Some(format!(
                "exited ({status}) before it was healthy:\n{}",
                serving.stderr()
            ));
        }
        if Instant::now() > deadline {
            return Some(format!("not healthy after 30s:\n{}", serving.stderr()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A keyring in the data folder of a `--role store` example (`--data DIR`), as the user would
/// have copied it from the gate: a store alone never makes one.
fn give_store_keyring(work: &Path, command: &str) {
    let words: Vec<&str> = command.split(' ').collect();
    let data = words
        .windows(2)
        .find(|pair| pair[0] == "--data")
        .map_or("valet-data", |pair| pair[1]);
    let data = work.join(data);
    if !data.join("keyring").exists() {
        std::fs::create_dir_all(&data).unwrap();
        run_ok(
            valet_command()
                .args(["key", "new-keyring", "--out"])
                .arg(data.join("keyring")),
        );
    }
}

#[test]
fn every_example_in_every_help_runs() {
    let world = World::start();
    let root = tempfile::tempdir().unwrap();
    let mut pages = help_pages();
    // Revocation last: the other pages' examples use the keys it revokes.
    pages.sort_by_key(|(page, _)| page.ends_with("revoke"));
    let mut failures = Vec::new();
    let mut ran = 0;
    for (page, help) in &pages {
        let work = working_folder(root.path(), page);
        for written in examples(help) {
            let (gate, store) = (free_addr(), free_addr());
            let command = world.concrete(&written, &store);
            let outcome = if command.contains("valet serve") {
                run_serve_example(&world, &work, &command, &gate, &store)
            } else {
                let needs_keyring = (command.contains("--keyring keyring")
                    && !command.contains("new-keyring"))
                    || command.contains("$TOKEN");
                let token = needs_keyring.then(|| page_keyring(&work));
                run_example(&world, &work, &command, token.as_deref())
            };
            ran += 1;
            if let Some(outcome) = outcome {
                failures.push(failure(page, &written, &command, &outcome));
            }
        }
    }
    assert!(ran >= 30, "only {ran} examples found");
    assert!(
        failures.is_empty(),
        "{} of {ran} help examples fail:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
