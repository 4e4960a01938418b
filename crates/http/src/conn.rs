//! One connection's watch: what it is doing, and when it has done nothing long enough.
//!
//! hyper bounds a request head (the header timeout) and answers HTTP/2 PINGs, but it keeps a
//! connection open for as long as the peer does: a connection that never sends a request, an
//! HTTP/1 keep-alive or HTTP/2 connection with no request in flight, and a response whose peer
//! reads nothing (an HTTP/2 client that never sends WINDOW_UPDATE, an HTTP/1 client that never
//! drains its socket) each pin a descriptor and buffers forever. [`Activity`] counts the
//! requests in flight on one connection and notes, for each response, since when it has handed
//! hyper a chunk that hyper could not yet send; [`Activity::expired`] completes when the
//! connection is over one of its limits, and the server then closes it. Only requests and
//! response bytes are activity: PINGs, SETTINGS and WINDOW_UPDATE frames are not.
//!
//! Why "handed a chunk and not asked for the next": hyper polls a response body only once the
//! previous chunk went out (HTTP/2: the stream had send window; HTTP/1: the write buffer had
//! room). A body that is itself waiting (an upstream, the disk) returns `Pending` and is not
//! stalled; a body whose chunk is waiting on the peer's window is, and only that case is cut.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// The limits a connection is held to; see [`crate::ConnectionLimits`] for their meaning.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// From the start until its first request arrives.
    pub first_request: Duration,
    /// Between requests.
    pub idle: Duration,
    /// A response chunk waiting on the peer.
    pub send: Duration,
}

/// Why a connection's watch expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// No request came within the first-request deadline.
    NoRequest,
    /// No request in flight for the idle limit.
    Idle,
    /// A response could not send for the send timeout: the peer reads nothing.
    Stalled,
}

/// One connection's requests in flight and their responses' progress.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    deadlines: Deadlines,
    max_uploads: usize,
    /// When the connection started: the origin of `last_write`.
    started: Instant,
    /// When bytes last went out, in milliseconds since `started` ([`Metered`]).
    last_write: AtomicU64,
    /// Whether writes count as activity: on HTTP/1 only, where every byte out is a
    /// response's (hyper drops a response body once it yielded its last chunk, possibly
    /// megabytes still to be written to a slow reader). HTTP/2 writes PINGs of its own.
    writes_count: AtomicBool,
}

#[derive(Debug)]
struct State {
    /// Requests in flight: from their head to the end (or drop) of their response body.
    open: usize,
    /// Whether any request came yet.
    served: bool,
    /// When `open` last fell to zero (or the connection started).
    idle_since: Instant,
    /// Per request in flight, since when its response waits on the peer; `None` while it is
    /// not waiting. Indexed by [`StreamGuard::slot`]; freed slots are reused.
    waiting: Vec<Slot>,
    /// Uploads in flight ([`UploadSlot`]).
    uploads: usize,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Free,
    Open(Option<Instant>),
}

impl Activity {
    /// The watch of a connection starting now.
    pub(crate) fn new(deadlines: Deadlines, max_uploads: usize) -> Activity {
        Activity {
            state: Mutex::new(State {
                open: 0,
                served: false,
                idle_since: Instant::now(),
                waiting: Vec::new(),
                uploads: 0,
            }),
            deadlines,
            max_uploads,
            started: Instant::now(),
            last_write: AtomicU64::new(0),
            writes_count: AtomicBool::new(false),
        }
    }

    /// Bytes went out.
    fn wrote(&self) {
        let millis = self.started.elapsed().as_millis() as u64;
        self.last_write.store(millis, Ordering::Relaxed);
    }

    /// The connection speaks HTTP/1: its writes are response bytes.
    pub(crate) fn count_writes(&self) {
        if !self.writes_count.load(Ordering::Relaxed) {
            self.writes_count.store(true, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request has arrived; it stays in flight until the guard is dropped (with its
    /// response body, or with the handler if the request was abandoned).
    pub(crate) fn open_stream(self: &Arc<Self>) -> StreamGuard {
        let mut state = self.lock();
        state.open += 1;
        state.served = true;
        let slot = match state.waiting.iter().position(|s| matches!(s, Slot::Free)) {
            Some(free) => free,
            None => {
                state.waiting.push(Slot::Free);
                state.waiting.len() - 1
            }
        };
        state.waiting[slot] = Slot::Open(None);
        StreamGuard {
            activity: self.clone(),
            slot,
        }
    }

    /// Claims one of the connection's upload slots, if one is free.
    pub(crate) fn begin_upload(self: &Arc<Self>) -> Option<UploadSlot> {
        let mut state = self.lock();
        (state.uploads < self.max_uploads).then(|| {
            state.uploads += 1;
            UploadSlot {
                activity: self.clone(),
            }
        })
    }

    /// Completes when the connection is over a limit. Rechecks at least every shortest limit,
    /// so that a deadline appearing meanwhile (never sooner than that after it appears) is
    /// met on time.
    pub(crate) async fn expired(&self) -> Expiry {
        let d = self.deadlines;
        let period = d.first_request.min(d.idle).min(d.send);
        loop {
            let now = Instant::now();
            match self.check(now) {
                Ok(next) => tokio::time::sleep_until(next.min(now + period)).await,
                Err(expiry) => return expiry,
            }
        }
    }

    /// The connection's next deadline, or why it is over one.
    fn check(&self, now: Instant) -> Result<Instant, Expiry> {
        let state = self.lock();
        let d = self.deadlines;
        if state.open == 0 {
            let (limit, expiry) = if state.served {
                (d.idle, Expiry::Idle)
            } else {
                (d.first_request, Expiry::NoRequest)
            };
            let mut since = state.idle_since;
            if self.writes_count.load(Ordering::Relaxed) {
                let wrote = Duration::from_millis(self.last_write.load(Ordering::Relaxed));
                since = since.max(self.started + wrote);
            }
            let deadline = since + limit;
            return if now >= deadline {
                Err(expiry)
            } else {
                Ok(deadline)
            };
        }
        let oldest = state
            .waiting
            .iter()
            .filter_map(|s| match s {
                Slot::Open(since) => *since,
                Slot::Free => None,
            })
            .min();
        match oldest {
            Some(since) if now >= since + d.send => Err(Expiry::Stalled),
            Some(since) => Ok(since + d.send),
            None => Ok(now + d.send),
        }
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    activity: Arc<Activity>,
    slot: usize,
}

impl StreamGuard {
    fn set_waiting(&self, since: Option<Instant>) {
        self.activity.lock().waiting[self.slot] = Slot::Open(since);
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut state = self.activity.lock();
        state.waiting[self.slot] = Slot::Free;
        state.open -= 1;
        if state.open == 0 {
            state.idle_since = Instant::now();
        }
    }
}

/// One of a connection's bounded upload slots ([`crate::Connection::begin_upload`]): held
/// for as long as the upload's temporary file exists.
#[derive(Debug)]
pub struct UploadSlot {
    activity: Arc<Activity>,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        self.activity.lock().uploads -= 1;
    }
}

/// A connection's I/O that notes when bytes go out ([`Activity::count_writes`]); reads and
/// writes pass through untouched (what `SendfileIo` below it relies on).
#[derive(Debug)]
pub(crate) struct Metered<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I> Metered<I> {
    pub(crate) fn new(inner: I, activity: &Arc<Activity>) -> Metered<I> {
        Metered {
            inner,
            activity: activity.clone(),
        }
    }

    fn note(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(1..))) {
            self.activity.wrote();
        }
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for Metered<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for Metered<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A response body that keeps its request in flight until it is done, and tells the watch
/// when a chunk it handed hyper has not been taken further.
#[derive(Debug)]
pub struct Watched<B> {
    inner: B,
    guard: StreamGuard,
    waiting: bool,
}

impl<B> Watched<B> {
    pub(crate) fn new(inner: B, guard: StreamGuard) -> Watched<B> {
        Watched {
            inner,
            guard,
            waiting: false,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if this.waiting {
            // hyper asks for more: the last chunk went out.
            this.guard.set_waiting(None);
            this.waiting = false;
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if frame.data_ref().is_some_and(|d| !d.is_empty()) {
                this.guard.set_waiting(Some(Instant::now()));
                this.waiting = true;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(first: u64, idle: u64, send: u64) -> Arc<Activity> {
        Arc::new(Activity::new(
            Deadlines {
                first_request: Duration::from_secs(first),
                idle: Duration::from_secs(idle),
                send: Duration::from_secs(send),
            },
            2,
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_expires_after_the_first_request_deadline() {
        let a = activity(5, 60, 30);
        let start = Instant::now();
        assert_eq!(a.expired().await, Expiry::NoRequest);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn idleness_counts_from_the_end_of_the_last_response() {
        let a = activity(5, 10, 30);
        let guard = a.open_stream();
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(
            a.check(Instant::now()).is_ok(),
            "a request in flight is not idle"
        );
        drop(guard);
        let start = Instant::now();
        assert_eq!(a.expired().await, Expiry::Idle);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_waiting_on_the_peer_expires_after_the_send_timeout() {
        let a = activity(5, 10, 30);
        let start = Instant::now();
        let quiet = a.open_stream();
        let stalled = a.open_stream();
        tokio::time::sleep(Duration::from_secs(7)).await;
        stalled.set_waiting(Some(Instant::now()));
        assert_eq!(a.expired().await, Expiry::Stalled);
        assert_eq!(start.elapsed(), Duration::from_secs(37));
        drop((quiet, stalled));
    }

    #[tokio::test(start_paused = true)]
    async fn uploads_are_bounded_and_slots_come_back() {
        let a = activity(5, 10, 30);
        let (one, _two) = (a.begin_upload().unwrap(), a.begin_upload().unwrap());
        assert!(a.begin_upload().is_none());
        drop(one);
        assert!(a.begin_upload().is_some());
    }
}
