//! HTTP/1.1 by hand: requests sent byte for byte over a `TcpStream`, so that no client library
//! normalises the path, merges headers or fixes the framing first, and the answer read back as
//! text: its status, its body, its JSON error code.
//!
//! The top level is async (tokio), for tests that run a server in-process; [`blocking`] is the
//! same over `std::net`, for tests that drive a server process.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long [`send`] waits for the server to end its answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `request` byte for byte on a new connection to `addr` and returns all that the server
/// answered until it closed the connection (or until [`ANSWER_TIMEOUT`], or a read error: what
/// came before is kept).
pub async fn send(addr: SocketAddr, request: impl AsRef<[u8]>) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_ref()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of an answer (or of its head): the second word of its status line.
pub fn status(answer: &str) -> Option<u16> {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
}

/// The status code of an answer; panics, showing the answer, if it has none.
pub fn status_of(answer: &str) -> u16 {
    status(answer).unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// The body of an answer: all after the blank line that ends the head (empty without one).
pub fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The error code of a JSON error body (`{"error": {"code": …}}`), if it is one.
pub fn error_code(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
}

/// The status and the JSON error code of an answer (the code empty if the body is not a JSON
/// error); panics if it has no status.
pub fn status_and_code(answer: &str) -> (u16, String) {
    (
        status_of(answer),
        error_code(body(answer)).unwrap_or_default(),
    )
}

/// The same over blocking `std::net` sockets.
pub mod blocking {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// Reads an answer's head (up to and with the blank line), one byte at a time so that
    /// nothing after it is consumed. `None` if the connection ends (or a read fails) first.
    pub fn read_head(stream: &mut impl Read) -> Option<String> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return None,
            }
        }
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    /// True if `GET /healthz` at `addr` answers `200` (false if nothing listens there yet).
    pub fn healthy(addr: &str) -> bool {
        let Ok(mut stream) = TcpStream::connect(addr) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    }
}
