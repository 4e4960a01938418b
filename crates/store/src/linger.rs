//! Reading, and throwing away, what a client still sends of a body the store refused unread.
//!
//! A store refuses many uploads before reading a byte: a bad key, a `Content-Length` over the
//! key's cap, a content type it does not allow. If it then closed the connection with the body
//! still arriving, the kernel would answer the client's next bytes with a reset, and a reset
//! can destroy the refusal in the client's receive buffer before the client reads it: a client
//! that sends its whole body before reading (most simple ones) would see "connection reset" or
//! "broken pipe" instead of `413 too_large`. nginx solves this with its "lingering close"; so
//! does this: the refused body is read in the background for a bounded time, so the answer
//! arrives intact, and a connection whose body ends in time stays open for the next request.
//!
//! Not for a client that asked `Expect: 100-continue`: it sends nothing until told to, and
//! reading would tell it to. Not for HTTP/2 either, where refusing a stream resets only that
//! stream. And never for long: a client trickling a body gets [`LINGER_IDLE`] between two
//! chunks and [`LINGER_TIME`] in all, as a slow client in a request head does.

use std::time::Duration;

use http::request::Parts;
use http::{header, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

/// The longest a refused body is read for.
pub const LINGER_TIME: Duration = Duration::from_secs(10);
/// The longest wait for its next chunk.
pub const LINGER_IDLE: Duration = Duration::from_secs(2);

/// Reads the rest of `body` in the background if the request's client may still be sending it.
pub fn drain_unread(body: Incoming, request: &Parts) {
    if body.is_end_stream() || !lingers(request) {
        return;
    }
    tokio::spawn(drain(body));
}

fn lingers(request: &Parts) -> bool {
    let http1 = request.version <= Version::HTTP_11;
    let waits_for_continue = request
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    http1 && !waits_for_continue
}

/// Reads and drops frames until the body ends, fails, stalls or runs out of time; dropping it
/// then closes the connection, unless it ended.
async fn drain(mut body: Incoming) {
    let deadline = Instant::now() + LINGER_TIME;
    loop {
        let wait = deadline.min(Instant::now() + LINGER_IDLE);
        match tokio::time::timeout_at(wait, body.frame()).await {
            Ok(Some(Ok(_))) => {}
            Ok(None) | Ok(Some(Err(_))) | Err(_) => return,
        }
    }
}
