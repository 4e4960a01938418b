//! Accepting connections: TCP with `TCP_NODELAY`, optional TLS (rustls, with HTTP/2 or HTTP/1.1
//! by ALPN), header and idle timeouts, and graceful shutdown.
//!
//! [`run`] serves with one single-threaded runtime per core, each accepting on its own
//! `SO_REUSEPORT` listener, as nginx runs one worker per core: a connection lives on one thread
//! from accept to close, so a request never wakes another thread or has its task stolen by one.
//! Requests run on the connection's task, except the few blocking steps (fsync, rename,
//! listing, a durable use count) that go to the blocking pool. [`serve`] is one such worker,
//! usable on any runtime.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;
use crate::service::handle;
use crate::state::Store;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Accepting failed fatally.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Serves the store on `listener` until `shutdown` completes, then lets in-flight requests run
/// for the configured grace period.
pub async fn serve(
    store: Arc<Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let tls = store.config.tls.as_ref().map(tls_acceptor).transpose()?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(store.config.header_timeout)
        .max_buf_size(256 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
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
        let store = store.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let store = store.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(store, req, client).await) }
            });
            let result = match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => match tls_handshake(&acceptor, stream, client).await {
                    Some(tls_stream) => {
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
    tracing::info!(grace = ?store.config.shutdown_grace, "shutting down: no new connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(store.config.shutdown_grace) => {
            tracing::warn!("grace period over: abandoning in-flight requests");
        }
    }
    Ok(())
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

/// Re-reads the keyring file every two seconds if it changed, so that a rotation by the gate
/// or `valet key rotate` reaches a running store.
pub async fn watch_keyring(store: Arc<Store>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let store = store.clone();
        let _ = tokio::task::spawn_blocking(move || store.reload_keyring_if_changed()).await;
    }
}

fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| ServeError::Tls(format!("{}: {e}", path.display())))
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", files.cert.display())))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", files.key.display())))?
        .ok_or_else(|| ServeError::Tls(format!("{}: no private key", files.key.display())))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
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

/// Serves the store on `listeners`, one thread with its own single-threaded runtime each,
/// until `shutdown` completes; then every worker stops accepting and gives its in-flight
/// requests the grace period. Blocks until all workers are done.
pub fn run(
    store: Arc<Store>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let store = store.clone();
        let mut stopped = stopped.clone();
        let worker = std::thread::Builder::new()
            .name(format!("valet-store-{i}"))
            .spawn(move || -> Result<(), ServeError> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    let stop = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    serve(store, listener, stop).await
                })
            })?;
        workers.push(worker);
    }
    let coordinator = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    coordinator.block_on(async {
        let watcher = tokio::spawn(watch_keyring(store.clone()));
        shutdown.await;
        watcher.abort();
    });
    let _ = stop.send(true);
    let mut result = Ok(());
    for worker in workers {
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(ServeError::Io(io::Error::other("a store worker panicked"))),
        }
    }
    result
}
