//! The README's quickstart, run as a new user runs it, so that the README cannot drift from the
//! program.
//!
//! Every shell command in the `sh` blocks between `<!-- quickstart -->` and
//! `<!-- /quickstart -->` in README.md is run in order, each in its own `bash -euo pipefail`
//! (a failing command, or a failing part of a pipeline, fails it), against a real `valet serve`
//! started here. Comments and blank lines are skipped; a line ending in `\` continues on the
//! next. Shell variables carry from one command to the next (`bash -a` exports every
//! assignment, and the environment is saved after each command and restored before the next).
//!
//! What the test changes in the commands, because the README uses the defaults and the test
//! must not collide with a Valet already running or with other tests:
//! - `127.0.0.1:8080` becomes the test gate's address, `127.0.0.1:8081` the test store's;
//! - `valet-data` becomes the test's data folder;
//! - `valet` is the binary under test: its folder comes first on `PATH`, and `VALET_*`
//!   variables of the environment the tests run in are removed.
//!
//! The commands run in an empty working folder of their own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use valet_testkit::process::{self, free_addr, Running};
use valet_testkit::raw_http::blocking::healthy;

const README: &str = include_str!("../../../README.md");

/// How long one command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The quickstart's commands, as written in the README.
fn quickstart_commands(readme: &str) -> Vec<String> {
    let start = readme
        .find("<!-- quickstart -->")
        .expect("README.md has a <!-- quickstart --> marker");
    let end = readme[start..]
        .find("<!-- /quickstart -->")
        .expect("README.md has a <!-- /quickstart --> marker")
        + start;
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in readme[start..end].lines() {
        let trimmed = line.trim();
        if !in_block {
            if trimmed == "```sh" || trimmed == "```bash" || trimmed == "```console" {
                in_block = true;
            }
            continue;
        }
        if trimmed.starts_with("```") {
            assert!(pending.is_empty(), "a command continues past its block");
            in_block = false;
            continue;
        }
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

fn valet_env(command: &mut Command) -> &mut Command {
    process::without_env(command, "VALET_")
}

/// A running `valet serve`; killed on drop.
fn serve(data: &Path, gate: &str, store: &str) -> Running {
    let mut serve = Running::spawn(
        valet_env(&mut Command::new(env!("CARGO_BIN_EXE_valet")))
            .args(["serve", "--role", "all", "--data"])
            .arg(data)
            .args(["--gate-addr", gate, "--store-addr", store])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    serve.wait_until(
        "ready (gate and store healthy, the admin API key written)",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || healthy(gate) && healthy(store) && data.join("admin-api-key").exists(),
    );
    serve
}

/// The output of a finished command, for a failure message.
struct Ran {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs one command in `bash -a -euo pipefail` in `work`, with the variables saved in `state`.
fn run(command: &str, work: &Path, state: &Path, path: &str) -> Ran {
    // `|| true`: the saved environment may hold read-only variables of bash itself, which
    // cannot be set again; everything else is restored.
    let script = format!(
        "source {state} 2>/dev/null || true\n{command}\nexport -p > {state}\n",
        state = shell_quote(state)
    );
    let (out, err) = (work.join(".stdout"), work.join(".stderr"));
    let mut child = valet_env(&mut Command::new("bash"))
        .args(["-a", "-euo", "pipefail", "-c", &script])
        .current_dir(work)
        .env_remove("BASH_ENV")
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("bash runs");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        status,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn the_quickstart_is_extracted_with_every_step_a_new_user_takes() {
    let commands = quickstart_commands(README);
    let all = commands.join("\n");
    for step in [
        "valet-data/admin-api-key",
        "curl -fsS -L -T",
        "http://127.0.0.1:8080/files/",
        "valet put --gate",
        "valet get --gate",
        "valet key issue --gate",
        "valet key attenuate",
        "http://127.0.0.1:8081/blob/",
    ] {
        assert!(all.contains(step), "the quickstart lost `{step}`:\n{all}");
    }
    // The two setup commands stay exactly as they are.
    assert!(README.contains("```sh\ncargo run --release -p valet -- serve\n```"));
    assert!(README.contains("```sh\nbash scripts/test.sh\n```"));
    // CI runs exactly the README's test command.
    let ci = include_str!("../../../.ci/run");
    assert!(ci.contains("\nbash scripts/test.sh 2>&1"), "{ci}");
}

#[test]
fn every_quickstart_command_runs_against_a_real_valet_serve() {
    let commands = quickstart_commands(README);
    assert!(commands.len() >= 10, "{commands:?}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let state = dir.path().join("state.sh");
    std::fs::write(&state, "").unwrap();
    let (gate, store) = (free_addr(), free_addr());
    let _serve = serve(&data, &gate, &store);

    let bin_dir: PathBuf = Path::new(env!("CARGO_BIN_EXE_valet"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (i, written) in commands.iter().enumerate() {
        let command = written
            .replace("127.0.0.1:8080", &gate)
            .replace("127.0.0.1:8081", &store)
            .replace("valet-data", &data.display().to_string());
        let ran = run(&command, &work, &state, &path);
        assert!(
            ran.status == Some(0),
            "quickstart command {} failed ({}):\n  {written}\nran as:\n  {command}\n--- stdout:\n{}\n--- stderr:\n{}",
            i + 1,
            match ran.status {
                Some(code) => format!("exit {code}"),
                None => format!("killed after {:?} or by a signal", COMMAND_TIMEOUT),
            },
            ran.stdout,
            ran.stderr,
        );
    }
}
