//! Accepting connections and running workers.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

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
}

/// One site's request handling: the gate's router or the store's. Errors are the handler's
/// business: it always answers.
pub trait Handler: Send + Sync + 'static {
    /// The response body.
    type Body: http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static;

    /// Answers one request that came on `connection`.
    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        connection: Connection,
    ) -> impl Future<Output = Response<Self::Body>> + Send + 'static;
}

/// How a site treats its connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Serve HTTPS with these files.
    pub tls: Option<TlsFiles>,
    /// How long a client may take to send a request head: bounds slowloris-style clients.
    pub header_timeout: Duration,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            tls: None,
            header_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
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
    let tls = options.tls.as_ref().map(TlsFiles::acceptor).transpose()?;
    let builder = Arc::new(connection_builder(options));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let result = match tls {
                None if sendfile::SUPPORTED => {
                    let (io, sender) = SendfileIo::new(stream);
                    let service = service(handler, client, Some(sender));
                    let conn = builder.serve_connection(io, service);
                    watcher.watch(conn.into_owned()).await
                }
                None => {
                    let service = service(handler, client, None);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => match tls_handshake(&acceptor, stream, client).await {
                    Some(tls_stream) => {
                        let service = service(handler, client, None);
                        let conn = builder.serve_connection(TokioIo::new(tls_stream), service);
                        watcher.watch(conn.into_owned()).await
                    }
                    None => return,
                },
            };
            if let Err(e) = result {
                tracing::debug!(%client, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::debug!(grace = ?options.shutdown_grace, "shutting down: no new connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!("all connections closed"),
        () = tokio::time::sleep(options.shutdown_grace) => {
            tracing::warn!("grace period over: abandoning in-flight requests");
        }
    }
    Ok(())
}

/// The handler as one connection's hyper service. With a `sender`, each HTTP/1 request is
/// handed it, so that the response may send file bytes without copying them; an HTTP/2
/// connection writes through frames, where a stand-in would be sent as it is. (Not a request
/// extension: inserting one costs three allocations per request.)
fn service<H: Handler>(
    handler: Arc<H>,
    client: SocketAddr,
    sender: Option<FileSender>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<H::Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<H::Body>, Infallible>> + Send,
> + Clone {
    service_fn(move |request: Request<Incoming>| {
        let connection = Connection {
            client,
            file_sender: sender
                .as_ref()
                .filter(|_| request.version() <= Version::HTTP_11)
                .cloned(),
        };
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(request, connection).await) }
    })
}

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
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    client: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// Binds `count` listeners to `addr` with `SO_REUSEPORT`, so that the kernel spreads incoming
/// connections across them. With port 0, all share the port the first one got.
pub fn bind_listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;
type Worker = Pin<Box<dyn Future<Output = Result<(), ServeError>> + Send>>;

/// One thing [`run`] serves: a handler on its listeners, one listener per worker.
pub struct Site {
    name: &'static str,
    listeners: Vec<std::net::TcpListener>,
    start: Arc<dyn Fn(TcpListener, Shutdown) -> Worker + Send + Sync>,
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
        let options = Arc::new(options);
        Site {
            name,
            listeners,
            start: Arc::new(move |listener, shutdown| {
                let handler = handler.clone();
                let options = options.clone();
                Box::pin(async move { serve(handler, &options, listener, shutdown).await })
            }),
        }
    }
}

/// Serves every site until `shutdown` completes, with one thread and single-threaded runtime
/// per worker (worker `i` serves each site's listener `i`); `background` runs on a separate
/// thread meanwhile. After `shutdown`, every worker stops accepting and gives its in-flight
/// requests the grace period. Blocks until all workers are done.
pub fn run(
    sites: Vec<Site>,
    background: impl Future<Output = ()> + Send + 'static,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
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
        let worker = std::thread::Builder::new()
            .name(format!("valet-worker-{i}"))
            .spawn(move || run_worker(jobs, stopped))?;
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
    let _ = stop.send(true);
    let mut result = Ok(());
    for worker in workers {
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(ServeError::Io(io::Error::other("a worker panicked"))),
        }
    }
    result
}

type Job = (
    &'static str,
    std::net::TcpListener,
    Arc<dyn Fn(TcpListener, Shutdown) -> Worker + Send + Sync>,
);

fn run_worker(
    jobs: Vec<Job>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServeError> {
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
            tasks.push((name, tokio::spawn(start(listener, stop))));
        }
        let mut result = Ok(());
        for (name, task) in tasks {
            match task.await {
                Ok(Ok(())) => {}
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
