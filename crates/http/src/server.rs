//! Accepting connections and running workers.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::conn::{Activity, Deadlines, Expiry, Metered, UploadSlot, Watched};
use crate::sendfile::{self, FileSender, SendfileIo};
use crate::TlsFiles;

/// Why a server could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Binding, accepting or starting a worker failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What a handler knows of the connection a request came on.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client's address: the TCP peer.
    pub client: SocketAddr,
    /// On plain HTTP/1 connections, the way for the response to send file bytes without
    /// copying them ([`crate::sendfile`]); `None` over TLS and HTTP/2.
    pub file_sender: Option<FileSender>,
    activity: Arc<Activity>,
}

impl Connection {
    /// Claims one of the connection's upload slots ([`ConnectionLimits::max_uploads`]), to
    /// hold for as long as the upload keeps a temporary file; `None` when all are taken.
    /// Why: one HTTP/2 connection carries many requests at once, and each upload holds a
    /// file and a descriptor, so a client could otherwise open one per stream.
    pub fn begin_upload(&self) -> Option<UploadSlot> {
        self.activity.begin_upload()
    }
}

/// One site's request handling: the gate's router or the store's. Errors are the handler's
/// business: it always answers.
pub trait Handler: Send + Sync + 'static {
    /// The response body.
    type Body: http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Unpin
        + 'static;

    /// Answers one request that came on `connection`.
    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        connection: Connection,
    ) -> impl Future<Output = Response<Self::Body>> + Send + 'static;
}

/// What a connection may hold and for how long: the bounds on what a client that connects
/// and then does little or nothing can pin (descriptors, buffers, temporary files).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a new connection may stay silent before its first bytes; with TLS, how long
    /// the handshake may then take. Default 10 s.
    pub first_byte_timeout: Duration,
    /// How long a connection may stay open with no request in flight: HTTP/1 keep-alive
    /// between requests, HTTP/2 with no open stream (PINGs are no activity). Default 60 s.
    pub idle_timeout: Duration,
    /// How long a response may wait for the peer to take its next bytes (an HTTP/2 stream
    /// whose window stays closed, an HTTP/1 socket the peer does not drain) before the
    /// connection is closed. Default 30 s.
    pub send_timeout: Duration,
    /// Connections one worker keeps open at most; more are accepted and closed at once.
    /// Default 1024.
    pub max_connections: usize,
    /// HTTP/2 streams one connection may have open at once. Default 100.
    pub max_streams: u32,
    /// Uploads one connection may have in flight at once ([`Connection::begin_upload`]).
    /// Default 16.
    pub max_uploads: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            first_byte_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_streams: 100,
            max_uploads: 16,
        }
    }
}

/// How a site treats its connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Serve HTTPS with these files.
    pub tls: Option<TlsFiles>,
    /// How long a client may take to send a request head: bounds slowloris-style clients. The
    /// first request's head is due this long after the connection started (which also bounds
    /// the HTTP/1-or-2 sniff).
    pub header_timeout: Duration,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// What each connection may hold, and for how long.
    pub limits: ConnectionLimits,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            tls: None,
            header_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            limits: ConnectionLimits::default(),
        }
    }
}

/// Serves `handler` on `listener` until `shutdown` completes, then lets in-flight requests run
/// for the grace period. One worker; usable on any runtime.
pub async fn serve<H: Handler>(
    handler: Arc<H>,
    options: &ServeOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let open = Arc::new(AtomicUsize::new(0));
    serve_counted(handler, options, listener, shutdown, open).await?;
    Ok(())
}

/// [`serve`], keeping `open` at the number of connections open (shared by the workers of
/// [`run`]); returns how many connections the end of the grace period cut.
async fn serve_counted<H: Handler>(
    handler: Arc<H>,
    options: &ServeOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    open: Arc<AtomicUsize>,
) -> Result<usize, ServeError> {
    let tls = options.tls.as_ref().map(TlsFiles::acceptor).transpose()?;
    let site = Arc::new(SiteConn {
        handler,
        builder: connection_builder(options),
        tls,
        limits: options.limits,
        deadlines: Deadlines {
            first_request: options.header_timeout,
            idle: options.limits.idle_timeout,
            send: options.limits.send_timeout,
        },
    });
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    let mut refusing = false;
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    backoff.succeeded();
                    pair
                }
                Err(e) => {
                    backoff.failed(&e).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        if connections.len() >= options.limits.max_connections {
            if !refusing {
                tracing::warn!(
                    max_connections = options.limits.max_connections,
                    "connection limit reached: refusing new connections"
                );
            }
            refusing = true;
            drop(stream);
            continue;
        }
        refusing = false;
        let site = site.clone();
        let stopping = stopping.clone();
        let open = OpenGuard::new(open.clone());
        connections.spawn(async move {
            site.connection(stream, client, stopping).await;
            drop(open);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    tracing::debug!(connections = connections.len(), grace = ?options.shutdown_grace, "shutting down: no new connections");
    let drained = tokio::time::timeout(options.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    let cut = connections.len();
    if drained.is_err() {
        tracing::debug!(cut, "grace period over: abandoning in-flight requests");
        connections.shutdown().await;
    }
    Ok(cut)
}

/// Counts one open connection in the shared tally for as long as it lives.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(open: Arc<AtomicUsize>) -> OpenGuard {
        open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(open)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Failed accepts (out of descriptors, mostly): each waits longer, doubling up to a second
/// (back to the shortest wait once an accept works), and a burst of them (failures less than
/// [`AcceptBackoff::BURST_GAP`] apart, whatever worked between them) is logged once, then once
/// more with the count of the others when accepting has worked for that long. Without it the
/// loop would spin and write a line per failure.
#[derive(Debug, Default)]
struct AcceptBackoff {
    delay: Duration,
    last_failure: Option<Instant>,
    suppressed: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MOST: Duration = Duration::from_secs(1);
    const BURST_GAP: Duration = Duration::from_secs(5);

    async fn failed(&mut self, error: &io::Error) {
        let now = Instant::now();
        match self.last_failure {
            Some(last) if now - last < Self::BURST_GAP => self.suppressed += 1,
            _ => {
                self.report();
                tracing::warn!(%error, "accept failed: backing off until it works again");
            }
        }
        self.last_failure = Some(now);
        self.delay = if self.delay.is_zero() {
            Self::FIRST
        } else {
            (self.delay * 2).min(Self::MOST)
        };
        tokio::time::sleep(self.delay).await;
    }

    fn succeeded(&mut self) {
        let Some(last) = self.last_failure else {
            return;
        };
        self.delay = Duration::ZERO;
        if last.elapsed() >= Self::BURST_GAP {
            self.report();
            self.last_failure = None;
        }
    }

    /// The end of a burst: how many failures were not logged.
    fn report(&mut self) {
        if self.suppressed > 0 {
            tracing::warn!(
                suppressed = self.suppressed,
                "accepting again; {} more failed accepts in that burst",
                self.suppressed
            );
            self.suppressed = 0;
        }
    }
}

/// What every connection of one site shares.
struct SiteConn<H> {
    handler: Arc<H>,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    deadlines: Deadlines,
}

impl<H: Handler> SiteConn<H> {
    /// Serves one connection to its end: its first bytes within the deadline, the TLS
    /// handshake, then HTTP under the connection's watch until it closes, expires or the
    /// server stops.
    async fn connection(
        &self,
        stream: TcpStream,
        client: SocketAddr,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        if !first_bytes(&stream, self.limits.first_byte_timeout).await {
            tracing::debug!(%client, "closed: nothing sent within the first-byte deadline");
            return;
        }
        let activity = Arc::new(Activity::new(self.deadlines, self.limits.max_uploads));
        let result = match &self.tls {
            None if sendfile::SUPPORTED => {
                let (io, sender) = SendfileIo::new(stream);
                let service = service(self.handler.clone(), client, Some(sender), &activity);
                let io = Metered::new(io, &activity);
                let conn = self.builder.serve_connection(io, service);
                watch(conn, &activity, stopping, client).await
            }
            None => {
                let service = service(self.handler.clone(), client, None, &activity);
                let io = Metered::new(TokioIo::new(stream), &activity);
                let conn = self.builder.serve_connection(io, service);
                watch(conn, &activity, stopping, client).await
            }
            Some(acceptor) => {
                let within = self.limits.first_byte_timeout;
                let Some(tls_stream) = tls_handshake(acceptor, stream, client, within).await else {
                    return;
                };
                let service = service(self.handler.clone(), client, None, &activity);
                let io = Metered::new(TokioIo::new(tls_stream), &activity);
                let conn = self.builder.serve_connection(io, service);
                watch(conn, &activity, stopping, client).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%client, error = %e, "connection ended with an error");
        }
    }
}

/// Whether the peer sent a byte within `within` (without taking it).
async fn first_bytes(stream: &TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.peek(&mut byte)).await,
        Ok(Ok(1..))
    )
}

/// How long a connection closed for idleness or a stall gets to take its GOAWAY (HTTP/2) or
/// close (HTTP/1) before it is dropped: a peer that reads nothing would never take it.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Drives `conn` until it ends, the server stops (then it finishes its requests, and the
/// server's grace period bounds that), or its watch expires (then it is closed).
async fn watch<C: GracefulConnection>(
    conn: C,
    activity: &Activity,
    stopping: tokio::sync::watch::Receiver<bool>,
    client: SocketAddr,
) -> Result<(), C::Error> {
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(stopping) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        expiry = activity.expired() => {
            tracing::debug!(%client, ?expiry, "closing the connection");
            if expiry != Expiry::Stalled {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
            }
            Ok(())
        }
    }
}

/// A handler's response, watched to its end.
type WatchedResponse<H> = Response<Watched<<H as Handler>::Body>>;

/// Completes once the server stops (or is gone).
async fn stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// The handler as one connection's hyper service. With a `sender`, each HTTP/1 request is
/// handed it, so that the response may send file bytes without copying them; an HTTP/2
/// connection writes through frames, where a stand-in would be sent as it is. (Not a request
/// extension: inserting one costs three allocations per request.) Each request is in flight
/// on the connection's watch from its head to the end of its response.
fn service<H: Handler>(
    handler: Arc<H>,
    client: SocketAddr,
    sender: Option<FileSender>,
    activity: &Arc<Activity>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = WatchedResponse<H>,
    Error = Infallible,
    Future = impl Future<Output = Result<WatchedResponse<H>, Infallible>> + Send,
> + Clone {
    let activity = activity.clone();
    service_fn(move |request: Request<Incoming>| {
        let guard = activity.open_stream();
        if request.version() <= Version::HTTP_11 {
            activity.count_writes();
        }
        let connection = Connection {
            client,
            file_sender: sender
                .as_ref()
                .filter(|_| request.version() <= Version::HTTP_11)
                .cloned(),
            activity: activity.clone(),
        };
        let handler = handler.clone();
        async move {
            let response = handler.handle(request, connection).await;
            Ok::<_, Infallible>(response.map(|body| Watched::new(body, guard)))
        }
    })
}

/// HTTP/2's own bounds on what one connection holds: streams, the bytes queued per stream
/// for a peer that does not read (a chunk at a time), the bytes a peer may send before the
/// handler reads them (the connection window covers all its streams), header lists, and
/// streams reset before they were accepted.
const H2_MAX_SEND_BUF: usize = 64 * 1024;
const H2_STREAM_WINDOW: u32 = 1024 * 1024;
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;
const H2_MAX_PENDING_RESETS: usize = 20;
const H2_MAX_LOCAL_RESETS: usize = 256;

fn connection_builder(options: &ServeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Body chunks queued and written as they are (never copied into one buffer): what lets
        // `SendfileIo` recognise a stand-in. Pipeline flushing would copy them; it stays off.
        .writev(true)
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_buf_size(256 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.limits.max_streams)
        .max_send_buf_size(H2_MAX_SEND_BUF)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    client: SocketAddr,
    within: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(within, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%client, "TLS handshake took too long");
            None
        }
    }
}

/// Why [`bind_listeners`] could not listen.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another socket, of any process, is bound to the address.
    #[error(
        "{addr} is already in use: another process listens there (another `valet serve`?); \
         stop it or choose another address"
    )]
    InUse {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// Any other failure to create, bind or share the socket.
    #[error("cannot listen on {addr}")]
    Io {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
}

/// `count` listeners for `addr`, one per worker, all handles of one listening socket: its
/// descriptor duplicated, so that every worker's runtime accepts from the same kernel queue
/// and a connection stays on the worker that accepted it. With port 0, the port the OS
/// chose. Fails with [`BindError::InUse`] if any socket is bound to the address.
///
/// Why one socket and not one `SO_REUSEPORT` socket per worker: a reuse-port group is open
/// to every later socket of the same user that sets the option too, and Linux has no way to
/// close it, so a second `valet serve` on the same port started without an error and took
/// its share of the connections. A probe bind before joining would be racy (two processes
/// can both pass it) and would still let any other reuse-port process in. One socket bound
/// without the option is race-free: the bind fails if anyone holds the port, and once it
/// is bound nobody can join. The cost is at accept only: a new connection makes every idle
/// worker's epoll ready, one `accept` wins and the others see `WouldBlock` (a few
/// microseconds per connection, nothing per request on a kept-alive one); the idle worker
/// tends to win, which spreads the load at least as well as reuse-port's hashing.
pub fn bind_listeners(
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<std::net::TcpListener>, BindError> {
    let failed = |source: io::Error| match source.kind() {
        io::ErrorKind::AddrInUse => BindError::InUse { addr, source },
        _ => BindError::Io { addr, source },
    };
    let listener = bind_one(addr).map_err(failed)?;
    let mut listeners = Vec::with_capacity(count.max(1));
    for _ in 1..count.max(1) {
        listeners.push(listener.try_clone().map_err(failed)?);
    }
    listeners.push(listener);
    Ok(listeners)
}

/// A non-blocking listening socket on `addr`. `SO_REUSEADDR` lets a restart bind while the
/// previous run's connections are in `TIME_WAIT`; it never lets two sockets listen on one
/// address.
fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;
/// One site's worker: serves until its shutdown, then returns how many connections the end of
/// the grace period cut.
type Worker = Pin<Box<dyn Future<Output = Result<usize, ServeError>> + Send>>;
/// Starts a site's worker on a listener, counting its open connections in the shared tally.
type Start = Arc<dyn Fn(TcpListener, Shutdown, Arc<AtomicUsize>) -> Worker + Send + Sync>;

/// One thing [`run`] serves: a handler on its listeners, one listener per worker.
pub struct Site {
    name: &'static str,
    listeners: Vec<std::net::TcpListener>,
    grace: Duration,
    start: Start,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("name", &self.name)
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

impl Site {
    /// `handler` served on `listeners` (from [`bind_listeners`]) with `options`.
    pub fn new<H: Handler>(
        name: &'static str,
        handler: Arc<H>,
        options: ServeOptions,
        listeners: Vec<std::net::TcpListener>,
    ) -> Site {
        let grace = options.shutdown_grace;
        let options = Arc::new(options);
        Site {
            name,
            listeners,
            grace,
            start: Arc::new(move |listener, shutdown, open| {
                let handler = handler.clone();
                let options = options.clone();
                Box::pin(
                    async move { serve_counted(handler, &options, listener, shutdown, open).await },
                )
            }),
        }
    }
}

/// Serves every site until `shutdown` completes, with one thread and single-threaded runtime
/// per worker (worker `i` serves each site's listener `i`); `background` runs on a separate
/// thread meanwhile. After `shutdown`, every worker stops accepting and gives its in-flight
/// requests the grace period. Blocks until all workers are done. Logs the drain (how many
/// connections, for how long at most) and the stop (how many connections the grace cut).
pub fn run(
    sites: Vec<Site>,
    background: impl Future<Output = ()> + Send + 'static,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let grace = sites.iter().map(|s| s.grace).max().unwrap_or_default();
    let worker_count = sites.iter().map(|s| s.listeners.len()).max().unwrap_or(0);
    let mut per_worker: Vec<Vec<_>> = (0..worker_count).map(|_| Vec::new()).collect();
    for site in sites {
        for (i, listener) in site.listeners.into_iter().enumerate() {
            per_worker[i].push((site.name, listener, site.start.clone()));
        }
    }
    let mut workers = Vec::with_capacity(worker_count);
    for (i, jobs) in per_worker.into_iter().enumerate() {
        let stopped = stopped.clone();
        let open = open.clone();
        let worker = std::thread::Builder::new()
            .name(format!("valet-worker-{i}"))
            .spawn(move || run_worker(jobs, stopped, open))?;
        workers.push(worker);
    }
    let coordinator = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    coordinator.block_on(async {
        let background = tokio::spawn(background);
        shutdown.await;
        background.abort();
    });
    let connections = open.load(Ordering::Relaxed);
    tracing::info!(
        connections,
        grace = ?grace,
        "draining {connections} connections (grace period {grace:?})"
    );
    let _ = stop.send(true);
    let mut result = Ok(());
    let mut cut = 0;
    for worker in workers {
        match worker.join() {
            Ok(Ok(n)) => cut += n,
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(ServeError::Io(io::Error::other("a worker panicked"))),
        }
    }
    if cut == 0 {
        tracing::info!(cut, "stopped: every connection finished");
    } else {
        tracing::info!(
            cut,
            "stopped: the grace period ran out, {cut} connections cut"
        );
    }
    result
}

type Job = (&'static str, std::net::TcpListener, Start);

fn run_worker(
    jobs: Vec<Job>,
    stopped: tokio::sync::watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
) -> Result<usize, ServeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut tasks = Vec::with_capacity(jobs.len());
        for (name, listener, start) in jobs {
            let listener = TcpListener::from_std(listener)?;
            let mut stopped = stopped.clone();
            let stop: Shutdown = Box::pin(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            });
            tasks.push((name, tokio::spawn(start(listener, stop, open.clone()))));
        }
        let mut result = Ok(0);
        for (name, task) in tasks {
            match task.await {
                Ok(Ok(cut)) => {
                    if let Ok(total) = &mut result {
                        *total += cut;
                    }
                }
                Ok(Err(e)) => result = Err(e),
                Err(_) => {
                    let why = format!("the {name} worker panicked");
                    result = Err(ServeError::Io(io::Error::other(why)));
                }
            }
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_port_is_refused_naming_the_address() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let err = bind_listeners(addr, 2).unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn nobody_can_join_the_workers_listeners() {
        let ours = bind_listeners("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_eq!(ours.len(), 3);
        let addr = ours[0].local_addr().unwrap();
        assert!(ours.iter().all(|l| l.local_addr().unwrap() == addr));
        let err = bind_listeners(addr, 1).unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err:?}");
        // Not even a socket that asks to share the port.
        let intruder =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        intruder.set_reuse_address(true).unwrap();
        intruder.set_reuse_port(true).unwrap();
        assert_eq!(
            intruder.bind(&addr.into()).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        // Every handle accepts from the one queue.
        for listener in &ours {
            let _client = std::net::TcpStream::connect(addr).unwrap();
            listener.set_nonblocking(false).unwrap();
            listener.accept().unwrap();
        }
    }
}
