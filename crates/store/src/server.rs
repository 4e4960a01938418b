//! The store as a [`valet_http::Handler`], and the store-only ways to run it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use valet_http::{Connection, Handler, ServeError, Site};

use crate::body::ResponseBody;
use crate::state::Store;

impl Handler for Store {
    type Body = ResponseBody;

    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        connection: Connection,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static {
        crate::service::handle(self, request, connection)
    }
}

impl Store {
    /// The store as a site for [`valet_http::run`], on `listeners`.
    pub fn site(self: &Arc<Self>, listeners: Vec<std::net::TcpListener>) -> Site {
        Site::new(
            "store",
            self.clone(),
            self.config.serve_options(),
            listeners,
        )
    }
}

/// Serves the store on one listener until `shutdown` completes: one worker, on any runtime.
pub async fn serve(
    store: Arc<Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let options = store.config.serve_options();
    valet_http::serve(store, &options, listener, shutdown).await
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

/// Aborts, once an hour, the multipart uploads that store nodes left unfinished when they died
/// (blobs on S3; never returns on either backend).
pub async fn sweep_abandoned_uploads(store: Arc<Store>) {
    store.sweep_abandoned_uploads_forever().await
}

/// Serves the store alone on `listeners`, one worker thread each, until `shutdown`.
pub fn run(
    store: Arc<Store>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let site = store.site(listeners);
    let background = async move {
        tokio::join!(watch_keyring(store.clone()), sweep_abandoned_uploads(store));
    };
    valet_http::run(vec![site], background, shutdown)
}
