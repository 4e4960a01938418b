//! A real S3 cluster for tests: a single-node [Garage](https://garagehq.deuxfleurs.fr) on
//! loopback ports, started once per test binary ([`Garage::shared`]) or once per test that
//! needs to stop it ([`Garage::start`]), with a fresh bucket for each test ([`Garage::bucket`]).
//!
//! Garage must be installed; a test that needs it fails, naming how to install it, if it is
//! not (`VALET_GARAGE` may name the binary, otherwise `garage` on `PATH` or in
//! `~/.cargo/bin`). The server runs under a small shell that reads its standard input: when
//! the test process ends, for whatever reason, the pipe closes, and the shell stops Garage and
//! removes its folder, so no server outlives the tests.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::process::free_port;

/// How to install the Garage these tests run against.
pub const INSTALL: &str = "CARGO_PROFILE_DEV_DEBUG=0 cargo install garage --version 2.5.0 \
     --locked --debug --no-default-features --features bundled-libs,sqlite";

/// The region Garage signs and checks requests for.
pub const REGION: &str = "garage";
/// Fixed, test-only credentials imported into every test Garage ("GK" + 24 hex, 64 hex).
pub const ACCESS_KEY_ID: &str = "GK0123456789abcdef01234567";
/// The secret of [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

const KEY_NAME: &str = "valet-test";

static BUCKETS: AtomicU64 = AtomicU64::new(0);

/// A running single-node Garage.
#[derive(Debug)]
pub struct Garage {
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    binary: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    /// The shell's standard input: closing it (dropping) stops Garage.
    guard: Mutex<Option<(Child, ChildStdin)>>,
}

impl Garage {
    /// The Garage of this test binary, started by the first test that asks.
    pub fn shared() -> &'static Garage {
        static SHARED: OnceLock<Garage> = OnceLock::new();
        SHARED.get_or_init(Garage::start)
    }

    /// A Garage of its own (for a test that stops it), stopped when dropped.
    pub fn start() -> Garage {
        let binary = binary();
        let dir = std::env::temp_dir().join(format!(
            "valet-garage-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("meta")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let (s3, rpc, admin) = (free_port(), free_port(), free_port());
        let config = dir.join("garage.toml");
        std::fs::write(&config, config_text(&dir, s3, rpc, admin)).unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$1" -c "$2" server >"$3/server.log" 2>&1 & g=$!; read _; kill $g; wait $g; rm -rf "$3""#)
            .args(["sh".as_ref(), binary.as_os_str(), config.as_os_str(), dir.as_os_str()])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh starts");
        let stdin = child.stdin.take().expect("piped");
        let garage = Garage {
            endpoint: format!("http://127.0.0.1:{s3}"),
            binary,
            config,
            dir,
            guard: Mutex::new(Some((child, stdin))),
        };
        garage.set_up();
        garage
    }

    /// Lays out the one node and imports the test key, waiting for the server first.
    fn set_up(&self) {
        self.wait_for("the Garage server to answer", || {
            self.cli(&["status"]).is_ok()
        });
        let node = self.cli(&["node", "id", "-q"]).unwrap();
        let node = node.trim().split('@').next().unwrap_or_default().to_owned();
        self.run(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        self.run(&["layout", "apply", "--version", "1"]);
        self.run(&[
            "key",
            "import",
            "--yes",
            "-n",
            KEY_NAME,
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
        ]);
        let s3 = self.endpoint.trim_start_matches("http://").to_owned();
        self.wait_for("Garage's S3 port", || {
            std::net::TcpStream::connect(&s3).is_ok()
        });
    }

    /// A new, empty bucket that the test key owns: one per test, so tests do not see each
    /// other's objects.
    pub fn bucket(&self) -> String {
        let name = format!(
            "valet-test-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        );
        self.run(&["bucket", "create", &name]);
        self.run(&[
            "bucket", "allow", "--read", "--write", "--owner", &name, "--key", KEY_NAME,
        ]);
        name
    }

    /// Multipart uploads begun in `bucket` and neither completed nor aborted, as Garage
    /// counts them (`garage bucket info`).
    pub fn unfinished_uploads(&self, bucket: &str) -> u64 {
        let info = self.run(&["bucket", "info", bucket]);
        info.lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                // `Unfinished uploads:  N multipart uploads` (absent when there are none).
                let multipart = value.contains("multipart");
                (name.trim() == "Unfinished uploads" && multipart)
                    .then(|| value.split_whitespace().next()?.parse().ok())?
            })
            .unwrap_or(0)
    }

    /// The environment that points an S3 client (the store's `--blobs s3://…`) at this Garage.
    pub fn env(&self) -> [(&'static str, String); 4] {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
        ]
    }

    /// Runs a `garage` command against this server, panicking with its output if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        self.cli(args)
            .unwrap_or_else(|e| panic!("garage {}: {e}\n{}", args.join(" "), self.log()))
    }

    /// Stops the server (for a test of what the store does without its storage).
    pub fn stop(&self) {
        if let Some((mut child, stdin)) = self.guard.lock().unwrap().take() {
            drop(stdin);
            let _ = child.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn wait_for(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "no {what} after 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `garage` binary, or a panic that says how to install it.
fn binary() -> PathBuf {
    let candidates = std::env::var_os("VALET_GARAGE")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var_os("PATH").into_iter().flat_map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("garage"))
                .collect::<Vec<_>>()
        }))
        .chain(std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo/bin/garage")));
    for candidate in candidates {
        let version = Command::new(&candidate).arg("--version").output();
        if version.is_ok_and(|out| out.status.success()) {
            return candidate;
        }
    }
    panic!(
        "these tests need Garage (an S3-compatible object store) and found no `garage` \
         (set VALET_GARAGE, or put it on PATH); install it with:\n  {INSTALL}"
    )
}

fn config_text(dir: &Path, s3: u16, rpc: u16, admin: u16) -> String {
    let dir = dir.display();
    format!(
        r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{token}"
"#,
        secret = random_hex(32),
        token = random_hex(16),
    )
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garage_starts_and_makes_buckets() {
        let garage = Garage::start();
        let a = garage.bucket();
        let b = garage.bucket();
        assert_ne!(a, b);
        let listed = garage.run(&["bucket", "list"]);
        assert!(listed.contains(&a) && listed.contains(&b), "{listed}");
        let dir = garage.dir.clone();
        garage.stop();
        assert!(!dir.exists(), "stopping removes the server's folder");
    }
}
