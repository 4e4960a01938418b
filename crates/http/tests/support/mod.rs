//! A site for the connection-limit tests: `GET /big?len=N` answers `N` bytes (`i % 251` at
//! offset `i`) in freshly allocated 64 KiB chunks, so that a chunk held for a peer that reads
//! nothing costs real memory; `PUT /upload` holds an upload slot while it reads the body and
//! answers 503 when none is free; anything else answers `ok`.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use valet_http::{serve, Connection, Handler, ServeOptions};

pub const CHUNK: usize = 64 * 1024;

/// The byte at offset `i` of every `/big` body.
pub fn byte_at(i: usize) -> u8 {
    (i % 251) as u8
}

pub struct Big {
    next: usize,
    len: usize,
}

impl http_body::Body for Big {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.next >= this.len {
            return Poll::Ready(None);
        }
        let end = (this.next + CHUNK).min(this.len);
        let chunk: Vec<u8> = (this.next..end).map(byte_at).collect();
        this.next = end;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.len - self.next) as u64)
    }
}

pub struct Site;

impl Handler for Site {
    type Body = Big;

    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        connection: Connection,
    ) -> Response<Big> {
        let len = request
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("len="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if request.uri().path() == "/upload" {
            let Some(_slot) = connection.begin_upload() else {
                let mut busy = Response::new(Big { next: 0, len: 0 });
                *busy.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                return busy;
            };
            // Holds the slot until the body ends, as the store holds its temporary file.
            let mut body = request.into_body();
            while let Some(frame) = http_body_util_next(&mut body).await {
                if frame.is_err() {
                    break;
                }
            }
            return Response::new(Big { next: 0, len: 0 });
        }
        Response::new(Big { next: 0, len })
    }
}

async fn http_body_util_next(body: &mut Incoming) -> Option<Result<Frame<Bytes>, hyper::Error>> {
    std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut *body), cx)).await
}

/// A running test site; dropping it stops the server.
pub struct Server {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves [`Site`] on a loopback port with `tune`'s changes to short test limits.
pub async fn start(tune: impl FnOnce(&mut ServeOptions)) -> Server {
    let mut options = ServeOptions {
        shutdown_grace: Duration::from_millis(100),
        ..ServeOptions::default()
    };
    tune(&mut options);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = serve(Arc::new(Site), &options, listener, async {
            let _ = stopped.await;
        })
        .await;
    });
    Server { addr, _stop: stop }
}

/// This process's resident set, in bytes.
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}
