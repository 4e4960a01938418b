//! Accepting connections: TCP with `TCP_NODELAY`, optional TLS (rustls), HTTP/1.1 and HTTP/2,
//! header and idle timeouts, and graceful shutdown.
//!
//! Each connection is served on its own task by hyper; requests run on that task with no
//! hand-off to another thread, except the few blocking steps (fsync, rename, listing, a durable
//! use count) that go to the blocking pool.

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
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let keyring_task = tokio::spawn(watch_keyring(store.clone()));
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
    keyring_task.abort();
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

async fn watch_keyring(store: Arc<Store>) {
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
