//! A server process under test (the real `valet` binary, started by the test): free loopback
//! addresses for it to listen on, an environment without the caller's settings, the process
//! killed when the test is done with it, its stderr kept as text for failure messages and
//! checks, and waiting until it is ready, or failing at once if it exits first.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `127.0.0.1:PORT` with a port free at the time of the call.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Removes from `command`'s environment every variable of this process whose name starts with
/// `prefix` (`VALET_`, say), so that the settings of whoever runs the tests do not reach the
/// program under test.
pub fn without_env<'a>(command: &'a mut Command, prefix: &str) -> &'a mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with(prefix) {
            command.env_remove(name);
        }
    }
    command
}

/// A process under test (a server, say): killed and reaped when dropped, its stderr kept as
/// text if it was piped.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    stderr: Option<Arc<Mutex<String>>>,
}

impl Running {
    /// Spawns `command`, panicking if it cannot start. If its stderr is piped
    /// (`Stdio::piped()`), every line of it is kept, for [`Running::stderr`] and for the
    /// messages of the waits.
    pub fn spawn(command: &mut Command) -> Running {
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{:?} does not start: {e}", command.get_program()));
        let stderr = child.stderr.take().map(keep_lines);
        Running { child, stderr }
    }

    /// What the process has written to stderr so far, if it is kept.
    pub fn stderr(&self) -> String {
        match &self.stderr {
            Some(kept) => kept.lock().unwrap().clone(),
            None => "(stderr not kept)".to_owned(),
        }
    }

    /// Waits, `every` apart, until `ready()`. Panics if the process exits first or if `limit`
    /// passes, saying which and `what` it waited for, with its stderr.
    pub fn wait_until(
        &mut self,
        what: &str,
        limit: Duration,
        every: Duration,
        mut ready: impl FnMut() -> bool,
    ) {
        let deadline = Instant::now() + limit;
        while !ready() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the process exited ({status}) before {what}: {}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not {what} after {limit:?}: {}",
                self.stderr()
            );
            std::thread::sleep(every);
        }
    }

    /// Waits until every one of `addrs` accepts a TCP connection; panics as
    /// [`Running::wait_until`] does.
    pub fn wait_listening(&mut self, addrs: &[&str], limit: Duration) {
        self.wait_until(
            &format!("listening on {}", addrs.join(" and ")),
            limit,
            Duration::from_millis(25),
            || addrs.iter().all(|addr| TcpStream::connect(addr).is_ok()),
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps every line `from` gives (a child's stderr, say), each followed by `\n`, from a thread
/// of its own until `from` ends.
fn keep_lines(from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let kept = Arc::new(Mutex::new(String::new()));
    let sink = kept.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let mut kept = sink.lock().unwrap();
            kept.push_str(&line);
            kept.push('\n');
        }
    });
    kept
}
