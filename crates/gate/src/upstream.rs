//! Connections to upstreams: one pool per worker thread, of HTTP/1.1 connections (plain, or
//! TLS for `https://` upstreams), each driven by the task that uses it.
//!
//! The gate runs one single-threaded runtime per core. Instead of a task per upstream
//! connection that the request task talks to through channels (what hyper's pooled client
//! does), the request task itself polls the connection while it waits for the response head,
//! and the response body polls it while the body streams: one task, no wake-up hand-offs, no
//! lock. A connection goes back into its worker's pool when its response body has been read
//! to the end, and is handed out again if one poll shows it idle and open; a request that
//! could not be written on a pooled connection the upstream had closed meanwhile is retried
//! once on a fresh one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use valet_http::{ClientTlsStream, TlsClient};

/// Idle connections kept per upstream and worker.
const MAX_IDLE: usize = 256;

/// How long connecting to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    // Boxed so that a connection moves between the pool and a response body by pointer,
    // allocated once when connected rather than on every request.
    #[allow(clippy::vec_box)]
    static POOL: RefCell<HashMap<PoolKey, Vec<Box<Conn>>>> = RefCell::new(HashMap::new());
}

/// Connections are shared by upstream and by whether they are TLS: `http://` and `https://`
/// on the same host and port are different servers as far as the pool is concerned.
type PoolKey = (Authority, bool);

/// Why an exchange with the upstream failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// No connection could be made.
    #[error("cannot connect to {authority}")]
    Connect {
        /// The upstream.
        authority: Authority,
        /// What went wrong: the socket's, the TLS handshake's or HTTP's error, or a timeout.
        #[source]
        source: ConnectFailure,
    },
    /// The exchange broke.
    #[error(transparent)]
    Exchange(#[from] hyper::Error),
    /// The upstream closed the connection before answering.
    #[error("the upstream closed the connection before answering")]
    Closed,
}

/// Why a connection to an upstream could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectFailure {
    /// Nothing answered in time (the TLS handshake included).
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The socket or the TLS handshake failed.
    #[error(transparent)]
    Io(io::Error),
    /// The HTTP/1.1 handshake failed.
    #[error(transparent)]
    Handshake(hyper::Error),
}

/// One connection to an upstream: the handle that sends requests, and the state machine that
/// moves its bytes, polled by whoever is using the connection.
pub(crate) struct Conn {
    key: PoolKey,
    sender: SendRequest<LimitedBody>,
    driver: Connection<TokioIo<Stream>, LimitedBody>,
    ended: bool,
}

/// The bytes to an upstream: plain TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("authority", &self.key.0)
            .field("tls", &self.key.1)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Moves the connection's bytes as far as they go now; `false` once it has ended.
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if self.ended {
            return false;
        }
        match Pin::new(&mut self.driver).poll(cx) {
            Poll::Pending => true,
            Poll::Ready(result) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
                self.ended = true;
                false
            }
        }
    }

    /// Puts the connection back into its worker's pool, unless it has ended.
    pub(crate) fn release(self: Box<Self>) {
        if self.ended {
            return;
        }
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let idle = pool.entry(self.key.clone()).or_default();
            if idle.len() < MAX_IDLE {
                idle.push(self);
            }
        });
    }
}

/// Sends `request` (origin-form URI, `Host` set) to the upstream at `authority`, over TLS if
/// `tls` is given; returns the response and the connection, which the response body must
/// drive.
pub(crate) async fn send(
    authority: &Authority,
    tls: Option<&TlsClient>,
    mut request: Request<LimitedBody>,
) -> Result<(Response<Incoming>, Box<Conn>), UpstreamError> {
    let key = (authority.clone(), tls.is_some());
    for attempt in 0..2 {
        let (mut conn, pooled) = match checkout(&key).await {
            Some(conn) => (conn, true),
            None => (connect(authority, tls).await?, false),
        };
        let mut exchange = std::pin::pin!(conn.sender.try_send_request(request));
        let outcome = poll_fn(|cx| {
            if let Poll::Ready(outcome) = exchange.as_mut().poll(cx) {
                return Poll::Ready(Some(outcome));
            }
            if conn.drive(cx) {
                return Poll::Pending;
            }
            // The connection ended: hyper answers the exchange with its error, if it has not
            // already.
            match exchange.as_mut().poll(cx) {
                Poll::Ready(outcome) => Poll::Ready(Some(outcome)),
                Poll::Pending => Poll::Ready(None),
            }
        })
        .await;
        match outcome {
            Some(Ok(response)) => return Ok((response, conn)),
            Some(Err(mut failed)) => match failed.take_message() {
                // Never written: a pooled connection closed by the upstream meanwhile.
                Some(unsent) if pooled && attempt == 0 => request = unsent,
                _ => return Err(UpstreamError::Exchange(failed.into_error())),
            },
            None => return Err(UpstreamError::Closed),
        }
    }
    unreachable!("the second attempt returns")
}

/// An idle, open connection to the upstream `key` names from this worker's pool, if there is
/// one.
async fn checkout(key: &PoolKey) -> Option<Box<Conn>> {
    loop {
        let mut conn = POOL.with(|pool| pool.borrow_mut().get_mut(key)?.pop())?;
        // One poll lets the connection finish its previous exchange or notice a close.
        let usable = poll_fn(|cx| Poll::Ready(conn.drive(cx) && conn.sender.is_ready())).await;
        if usable {
            return Some(conn);
        }
    }
}

/// A new connection, boxed once: it moves between the pool and response bodies by pointer.
/// The TLS handshake, if any, counts in the connect timeout.
async fn connect(
    authority: &Authority,
    tls: Option<&TlsClient>,
) -> Result<Box<Conn>, UpstreamError> {
    let failed = |source: ConnectFailure| UpstreamError::Connect {
        authority: authority.clone(),
        source,
    };
    // An IPv6 literal is written `[::1]` in an authority, bare in a socket address.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let open = async {
        let tcp = TcpStream::connect((host, port)).await?;
        let _ = tcp.set_nodelay(true);
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(tls) => Ok(Stream::Tls(Box::new(tls.connect(host, tcp).await?))),
        }
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, open)
        .await
        .map_err(|_| failed(ConnectFailure::TimedOut(CONNECT_TIMEOUT)))?
        .map_err(|e: io::Error| failed(ConnectFailure::Io(e)))?;
    let (sender, driver) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(ConnectFailure::Handshake(e)))?;
    Ok(Box::new(Conn {
        key: (authority.clone(), tls.is_some()),
        sender,
        driver,
        ended: false,
    }))
}

/// The client's body on its way upstream: counted, and cut at the route's limit.
#[derive(Debug)]
pub(crate) struct LimitedBody {
    inner: Incoming,
    limit: u64,
    seen: u64,
    counter: Counter,
}

impl LimitedBody {
    /// `inner`, counted into `counter` and cut after `limit` bytes.
    pub(crate) fn new(inner: Incoming, limit: u64, counter: Counter) -> LimitedBody {
        LimitedBody {
            inner,
            limit,
            seen: 0,
            counter,
        }
    }
}

/// Why a [`LimitedBody`] stopped: the proxy answers `too_large` for it.
#[derive(Debug, thiserror::Error)]
#[error("the request body exceeds {0} bytes")]
pub(crate) struct BodyTooLarge(u64);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let Some(Ok(frame)) = frame else {
            return Poll::Ready(frame.map(|r| r.map_err(BoxError::from)));
        };
        if let Some(data) = frame.data_ref() {
            self.seen += data.len() as u64;
            self.counter.inc_by(data.len() as u64);
            if self.seen > self.limit {
                return Poll::Ready(Some(Err(Box::new(BodyTooLarge(self.limit)))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
