//! A real PostgreSQL server for tests: [`database`] gives each test a database of its own on
//! one server shared by the whole test binary.
//!
//! The server is the one named by `VALET_TEST_POSTGRES` (a `postgres://` URL whose user may
//! create databases), or else a private cluster that the first call starts with the machine's
//! own PostgreSQL binaries (Debian's `postgresql` package: `initdb` and `pg_ctl` under
//! `/usr/lib/postgresql/VERSION/bin`, or `VALET_TEST_PG_BIN`, or `PATH`): in a temporary
//! folder, on a free loopback port, with trust authentication, run as the `postgres` user when
//! the tests run as root (PostgreSQL refuses to run as root). It takes about 1.5 s to start,
//! once per test binary. A watcher process stops it (`pg_ctl stop -m immediate`) and removes
//! its folder as soon as the test binary exits, however it exits.
//!
//! Without the binaries and without `VALET_TEST_POSTGRES`, [`database`] panics, naming what to
//! install: a test never passes by skipping the engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The variable naming an existing server to use instead of a private one.
pub const SERVER_VAR: &str = "VALET_TEST_POSTGRES";
/// The variable naming the folder of `initdb` and `pg_ctl`, if not the usual one.
pub const BIN_VAR: &str = "VALET_TEST_PG_BIN";

/// A database of its own for one test, dropped (with any connection still open to it) when
/// this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Its `postgres://` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL for the same server's maintenance database, to act on the server as a whole
    /// (end the test database's connections, say).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Nothing to do if this fails: a private cluster goes away with its folder, and a
        // leftover database on a shared server has a name that says whose it was.
        let _ = run_sql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A new, empty database on the shared test server (starting the server on the first call).
pub fn database() -> TestDatabase {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let admin_url = server().admin_url.clone();
    let name = format!(
        "valet_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    run_sql(&admin_url, &format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
    TestDatabase {
        url: with_database(&admin_url, &name),
        name,
        admin_url,
    }
}

/// Runs `sql` (one or more statements) on the server at `url`, from a thread of its own so
/// that it works from synchronous and asynchronous tests alike.
pub fn run_sql(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| err.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|err| {
                format!("cannot connect to the test server: {}", describe(&err))
            })?;
            let driver = tokio::spawn(connection);
            let result = client.batch_execute(&sql).await.map_err(|e| describe(&e));
            drop(client);
            let _ = driver.await;
            result
        })
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_owned())?
}

/// The server's own words (tokio-postgres says only "db error" and keeps them in its source).
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => db.to_string(),
        None => err.to_string(),
    }
}

/// `url` with its database (the path) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The shared server.
struct Server {
    admin_url: String,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var(SERVER_VAR) {
        Ok(url) if !url.is_empty() => Server { admin_url: url },
        _ => start_private_cluster(),
    })
}

/// Where `initdb` and `pg_ctl` are: `VALET_TEST_PG_BIN`, the newest Debian install, or `PATH`.
fn find_binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_VAR) {
        return PathBuf::from(dir);
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()));
    on_path.unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: run \
             `apt-get install postgresql`, or set {BIN_VAR} to their folder, or set \
             {SERVER_VAR} to the URL of a server to use"
        )
    })
}

fn running_as_root() -> bool {
    uid_of(None) == Some(0)
}

/// The uid of `user`, or of this process.
fn uid_of(user: Option<&str>) -> Option<u32> {
    let output = Command::new("id").arg("-u").args(user).output().ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

fn tempfile_dir(parent: &Path, prefix: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = parent.join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
    dir
}

/// `program` from `bin`, as the `postgres` user if this process is root.
fn pg_command(bin: &Path, program: &str, as_postgres: bool) -> Command {
    let program = bin.join(program);
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {what}: {err}"));
    if !output.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn start_private_cluster() -> Server {
    let bin = find_binaries();
    let as_postgres = running_as_root();
    let dir = tempfile_dir(&std::env::temp_dir(), "valet-test-postgres");
    if as_postgres {
        std::os::unix::fs::chown(&dir, Some(postgres_uid()), None)
            .unwrap_or_else(|err| panic!("cannot give {} to postgres: {err}", dir.display()));
    }
    let data = dir.join("data");
    let mut initdb = pg_command(&bin, "initdb", as_postgres);
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
    run(initdb, "initdb");
    let mut last_error = String::new();
    for _ in 0..3 {
        let port = crate::process::free_port();
        let mut start = pg_command(&bin, "pg_ctl", as_postgres);
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args([
                "-w",
                "-t",
                "30",
                "-o",
                &format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c max_connections=300",
                    dir.display()
                ),
                "start",
            ]);
        let output = start
            .stdin(Stdio::null())
            .output()
            .expect("cannot run pg_ctl");
        if output.status.success() {
            watch_and_stop(&bin, &data, &dir, as_postgres);
            let admin_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
            wait_ready(&admin_url);
            return Server { admin_url };
        }
        // Most likely the port was taken meanwhile: try another.
        last_error = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
    }
    panic!("cannot start the test PostgreSQL server: {last_error}");
}

fn postgres_uid() -> u32 {
    uid_of(Some("postgres")).unwrap_or_else(|| {
        panic!(
            "running as root, and there is no `postgres` user to run PostgreSQL as: \
             `apt-get install postgresql` creates it"
        )
    })
}

/// Starts a watcher that stops the server and removes its folder once this process is gone.
fn watch_and_stop(bin: &Path, data: &Path, dir: &Path, as_postgres: bool) {
    let pg_ctl = bin.join("pg_ctl");
    let stop = if as_postgres {
        format!(
            "runuser -u postgres -- '{}' -D '{}' stop -m immediate",
            pg_ctl.display(),
            data.display()
        )
    } else {
        format!(
            "'{}' -D '{}' stop -m immediate",
            pg_ctl.display(),
            data.display()
        )
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; {stop}; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display()
    );
    // Never waited for: it outlives this process by design (it waits for this process to end).
    #[allow(clippy::zombie_processes)]
    let _watcher = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start the watcher of the test PostgreSQL server");
}

fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match run_sql(url, "SELECT 1") {
            Ok(()) => return,
            Err(err) if Instant::now() > deadline => {
                panic!("the test PostgreSQL server does not answer: {err}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@h:1/postgres", "x"),
            "postgres://u:p@h:1/x"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
