//! `valet serve --role store` as a user runs it: the real binary, real curl, real signals.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use valet_testkit::process::{free_port, Running};

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

/// A running `valet serve` whose stderr is collected; killed on drop.
struct Server {
    process: Running,
    port: u16,
    data: PathBuf,
}

impl Server {
    fn start(data: &Path, extra: &[&str]) -> Server {
        give_keyring(data);
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut args = vec![
            "serve",
            "--role",
            "store",
            "--data",
            data.to_str().unwrap(),
            "--store-addr",
            &addr,
        ];
        args.extend_from_slice(extra);
        let mut process = Running::spawn(
            Command::new(env!("CARGO_BIN_EXE_valet"))
                .args(&args)
                .env("RUST_LOG", "info")
                .stderr(Stdio::piped()),
        );
        process.wait_listening(&[&addr], Duration::from_secs(20));
        Server {
            process,
            port,
            data: data.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn key(&self, resource: &str, ops: &str, extra: &[&str]) -> String {
        let keyring = self.data.join("keyring");
        let mut args = vec![
            "key",
            "issue",
            "--keyring",
            keyring.to_str().unwrap(),
            "--resource",
            resource,
            "--ops",
            ops,
        ];
        args.extend_from_slice(extra);
        stdout(valet(&args))
    }

    fn log(&self) -> String {
        self.process.stderr()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.process.child.id().to_string()])
            .status()
            .unwrap();
        self.wait(Duration::from_secs(20))
    }

    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.process.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "valet serve did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A keyring in `data`, unless it has one: a store alone never makes its own (it would refuse
/// what the gate signs), so the user gives it one, as `valet key new-keyring` does.
fn give_keyring(data: &Path) {
    let keyring = data.join("keyring");
    if !keyring.exists() {
        std::fs::create_dir_all(data).unwrap();
        stdout(valet(&[
            "key",
            "new-keyring",
            "--out",
            keyring.to_str().unwrap(),
        ]));
    }
}

/// The stderr of a process that has exited, once the thread keeping it has read the last
/// line (the stop's).
fn settled_log(process: &Running) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !process.stderr().contains("stopped: ") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    process.stderr()
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_store_given_a_keyring_opens_its_data_folder_and_curl_round_trips_a_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let mode = std::fs::metadata(data.join("keyring"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(data.join("ledger.sqlite").exists());

    let (url, key) = upload_report(&server, dir.path(), "q3", "quarterly numbers\n");
    let (body, _) = curl(&[&url]);
    assert_eq!(body, "quarterly numbers\n");
    let (headers, _) = curl(&["-D", "-", "-o", "/dev/null", &url]);
    assert!(
        headers
            .to_lowercase()
            .contains("content-disposition: attachment; filename=\"report.txt\""),
        "{headers}"
    );

    let tag = key.rsplit_once('.').unwrap().1;
    let log = server.log();
    assert!(log.contains("valet::access"), "{log}");
    assert!(!log.contains(tag), "a key's tag reached the log:\n{log}");
    assert!(!log.contains(&key), "a key reached the log");
}

#[test]
fn revocation_from_another_process_reaches_the_running_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let key = server.key("blob:files", "read,write", &["--subject", "alice"]);
    let url = server.url(&format!("/blob/files/a?vk={key}"));
    let (code, _) = curl(&[
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        "-X",
        "PUT",
        "--data-binary",
        "x",
        &url,
    ]);
    assert_eq!(code, "201");
    let revoke = valet(&["key", "revoke", "--data", data.to_str().unwrap(), &key]);
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let (body, _) = curl(&[&url]);
    assert!(body.contains("key_revoked"), "{body}");
    let status = stdout(valet(&[
        "key",
        "status",
        "--data",
        data.to_str().unwrap(),
        &key,
    ]));
    assert!(status.contains("\"revoked\": true"), "{status}");

    let other = server.key("blob:files", "read", &["--subject", "bob"]);
    let url = server.url(&format!("/blob/files/a?vk={other}"));
    assert_eq!(curl(&[&url]).0, "x");
    // No wait before: `--before now` covers keys issued in the current second too, as the
    // gate's does; and the command exits once that second is over, so a key issued right
    // after it works.
    let revoke = valet(&[
        "key",
        "revoke",
        "--data",
        data.to_str().unwrap(),
        "--subject",
        "bob",
        "--before",
        "now",
    ]);
    assert!(revoke.status.success());
    assert!(curl(&[&url]).0.contains("key_revoked"));
    let after = server.key("blob:files", "read", &["--subject", "bob"]);
    let url = server.url(&format!("/blob/files/a?vk={after}"));
    assert_eq!(curl(&[&url]).0, "x", "a key issued after the revocation");
}

#[test]
fn sigterm_lets_transfers_finish_within_the_grace_and_leaves_no_partial_blob() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("tmp")).unwrap();
    std::fs::write(data.join("tmp/crashed-upload.part"), "left by a crash").unwrap();
    let mut server = Server::start(&data, &["--shutdown-grace", "1s"]);
    assert_eq!(
        std::fs::read_dir(data.join("tmp")).unwrap().count(),
        0,
        "crash leftovers are removed at start"
    );

    let key = server.key("blob:files", "write", &[]);
    let mut upload = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        upload,
        "PUT /blob/files/slow?vk={key} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
    )
    .unwrap();
    upload.write_all(&[b'x'; 10_000]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read_dir(data.join("tmp")).unwrap().count(), 1);

    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(
        std::fs::read_dir(data.join("tmp")).unwrap().count(),
        0,
        "the partial upload is removed"
    );
    assert!(!data.join("blobs/files/slow").exists());
    assert!(
        TcpStream::connect(("127.0.0.1", server.port)).is_err(),
        "no new connections after shutdown"
    );
    let mut rest = String::new();
    let _ = upload.read_to_string(&mut rest);
    // The signal, the drain and the stop, each on a line of its own.
    let log = settled_log(&server.process);
    for line in [
        "SIGTERM received: shutting down",
        "draining 1 connections (grace period 1s)",
        "stopped: the grace period ran out, 1 connections cut",
    ] {
        assert_eq!(log.matches(line).count(), 1, "{line:?} once in: {log}");
    }
}

#[test]
fn out_of_descriptors_the_store_logs_once_per_burst_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    give_keyring(&data);
    // 64 descriptors for the whole process: a few dozen silent connections exhaust them.
    let mut process = Running::spawn(
        Command::new("prlimit")
            .args(["--nofile=64:64", "--", env!("CARGO_BIN_EXE_valet")])
            .args(["serve", "--role", "store", "--workers", "1"])
            .args(["--data", data.to_str().unwrap(), "--store-addr", &addr])
            .env("VALET_FIRST_BYTE_TIMEOUT", "2s")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped()),
    );
    process.wait_listening(&[&addr], Duration::from_secs(20));
    let silent: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let failures = |log: &str| log.matches("accept failed").count();
    let log = process.stderr();
    assert_eq!(failures(&log), 1, "one line for the burst: {log}");
    // The first-byte deadline frees the descriptors; the rest of the backlog is served.
    drop(silent);
    let url = format!("http://{addr}/healthz");
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut served = false;
    // Each accept that works after the burst's gap may write the burst's count.
    while !(served
        && process
            .stderr()
            .contains("more failed accepts in that burst"))
    {
        assert!(
            Instant::now() < deadline,
            "not recovered: {}",
            process.stderr()
        );
        served |= curl(&["--max-time", "2", &url]).0 == "ok\n";
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = process.stderr();
    assert!(
        failures(&log) <= 3,
        "{} accept-failure lines: {log}",
        failures(&log)
    );
    // A stop with nothing in flight says so.
    Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(process.child.wait().unwrap().success());
    let log = settled_log(&process);
    for line in [
        "draining 0 connections",
        "stopped: every connection finished",
    ] {
        assert_eq!(log.matches(line).count(), 1, "{line:?} once in: {log}");
    }
}

#[test]
fn a_rotated_keyring_reaches_the_running_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let old = server.key("blob:files", "write", &[]);
    stdout(valet(&[
        "key",
        "rotate",
        "--keyring",
        data.join("keyring").to_str().unwrap(),
    ]));
    let new = server.key("blob:files", "write", &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = curl(&[
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            "-X",
            "PUT",
            "--data-binary",
            "x",
            &server.url(&format!("/blob/files/n?vk={new}")),
        ]);
        if code == "201" || code == "200" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new signing key never reached the store ({code})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, _) = curl(&[
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        "-X",
        "PUT",
        "--data-binary",
        "x",
        &server.url(&format!("/blob/files/o?vk={old}")),
    ]);
    assert_eq!(code, "201", "keys of the previous signing key still verify");
}

#[test]
fn tls_with_a_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    let key = server.key("blob:files", "read,write", &[]);
    let url = format!(
        "https://localhost:{}/blob/files/secure?vk={key}",
        server.port
    );
    let cacert = cert_path.to_str().unwrap();
    // `data` as curl's `--data-binary` takes it: the bytes, or `@FILE`.
    let put = |data: &str, url: &str| {
        curl(&[
            "--cacert",
            cacert,
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            "-X",
            "PUT",
            "--data-binary",
            data,
            url,
        ])
    };
    let (code, err) = put("over tls", &url);
    assert_eq!(code, "201", "{err}");
    let (body, err) = curl(&["--cacert", cacert, "--http2", &url]);
    assert_eq!(body, "over tls", "{err}");
    // A blob large enough to be streamed (plain HTTP/1 would send it with `sendfile`, which
    // TLS cannot): intact over both protocols.
    let large: String = (0..200_000).map(|i| format!("{i:07}\n")).collect();
    let large_path = dir.path().join("large.txt");
    std::fs::write(&large_path, &large).unwrap();
    let large_url = url.replace("/secure?", "/large?");
    let (code, err) = put(&format!("@{}", large_path.display()), &large_url);
    assert_eq!(code, "201", "{err}");
    for protocol in ["--http1.1", "--http2"] {
        let (body, err) = curl(&["--cacert", cacert, protocol, &large_url]);
        assert!(
            body == large,
            "{protocol}: {} of {} bytes; {err}",
            body.len(),
            large.len()
        );
    }
    let (plain, _) = curl(&[&url.replace("https://localhost", "http://localhost")]);
    assert_ne!(
        plain, "over tls",
        "plain HTTP must not be served on a TLS port"
    );
}

/// `valet serve --blobs s3://BUCKET/PREFIX` with the bucket reached through the standard AWS
/// environment variables: curl's upload lands as one object under the prefix in Garage (no
/// blob in the data folder), and comes back whole, with its download name.
#[test]
fn blobs_on_s3_through_the_aws_environment() {
    use valet_testkit::garage::Garage;
    let garage = Garage::shared();
    let bucket = garage.bucket();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let blobs = format!("s3://{bucket}/valet/blobs");
    // A store alone needs a keyring made for it (a gate would share its own).
    let made = Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(["key", "new-keyring", "--out"])
        .arg(data.join("keyring"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_valet"));
    command
        .args(["serve", "--role", "store", "--data"])
        .arg(&data)
        .args(["--store-addr", &addr, "--blobs", &blobs])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    for (name, value) in garage.env() {
        command.env(name, value);
    }
    let mut process = Running::spawn(&mut command);
    process.wait_listening(&[&addr], Duration::from_secs(20));
    let server = Server {
        process,
        port,
        data: data.clone(),
    };

    let (url, _) = upload_report(&server, dir.path(), "q4", "numbers in a bucket\n");
    let (body, _) = curl(&[&url]);
    assert_eq!(body, "numbers in a bucket\n");
    let (headers, _) = curl(&["-D", "-", "-o", "/dev/null", &url]);
    let headers = headers.to_lowercase();
    assert!(headers.contains("content-type: text/plain"), "{headers}");
    assert!(
        headers.contains("content-disposition: attachment; filename=\"report.txt\""),
        "{headers}"
    );
    let info = garage.run(&["bucket", "info", &bucket]);
    let objects = info
        .lines()
        .find_map(|l| l.strip_prefix("Objects:"))
        .map(str::trim);
    assert_eq!(objects, Some("1"), "{info}");
    assert!(!data.join("blobs").exists(), "no blob in the data folder");
}

/// A `--blobs` that is neither `folder` nor an `s3://` URL stops `valet serve` at once,
/// saying what it takes.
#[test]
fn a_bad_blobs_url_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(["serve", "--role", "store", "--data"])
        .arg(dir.path())
        .args(["--store-addr", "127.0.0.1:0", "--blobs", "gs://bucket"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s3://BUCKET[/PREFIX]"), "{err}");
}

/// Uploads `text` with `curl -T` as `files/reports/NAME.txt` (text/plain), under a key that
/// names downloads `report.txt`; the blob's URL with that key, and the key.
fn upload_report(server: &Server, dir: &Path, name: &str, text: &str) -> (String, String) {
    let file = dir.join("report.txt");
    std::fs::write(&file, text).unwrap();
    let key = server.key(
        "blob:files/reports/",
        "read,write",
        &["--filename", "report.txt"],
    );
    let url = server.url(&format!("/blob/files/reports/{name}.txt?vk={key}"));
    let (out, err) = curl(&[
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        "-T",
        file.to_str().unwrap(),
        "-H",
        "Content-Type: text/plain",
        &url,
    ]);
    assert_eq!(out, "201", "{err}\n{}", server.log());
    (url, key)
}
