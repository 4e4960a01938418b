//! The gate's response bodies: small JSON documents it writes itself, or an upstream's body
//! streamed through a proxy route and counted on the way.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;

use crate::upstream::Conn;

/// A gate response body.
#[derive(Debug)]
pub struct GateBody(Kind);

#[derive(Debug)]
enum Kind {
    /// The whole body, written by the gate (empty after it was sent).
    Full(Option<Bytes>),
    /// An upstream's body, passed through chunk by chunk.
    Upstream {
        /// The upstream response's body.
        body: Incoming,
        /// Where the bytes passed are counted.
        counter: Counter,
        /// The connection the body arrives on, driven from here while it streams and
        /// released to the pool when the body has been read to its end.
        conn: Option<Box<Conn>>,
    },
}

impl Drop for Kind {
    fn drop(&mut self) {
        // A body that ended without being read to the end by `poll_frame` (a HEAD, a 204,
        // or an empty body hyper never polled) leaves its connection reusable; one dropped
        // half-way does not, and is closed.
        if let Kind::Upstream { body, conn, .. } = self {
            if body.is_end_stream() {
                if let Some(conn) = conn.take() {
                    conn.release();
                }
            }
        }
    }
}

impl GateBody {
    /// A body of `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> GateBody {
        let bytes = bytes.into();
        GateBody(Kind::Full((!bytes.is_empty()).then_some(bytes)))
    }

    /// No body.
    pub fn empty() -> GateBody {
        GateBody(Kind::Full(None))
    }

    /// An upstream's body, counted into `counter`, arriving on `conn`.
    pub(crate) fn upstream(body: Incoming, counter: Counter, conn: Box<Conn>) -> GateBody {
        GateBody(Kind::Upstream {
            body,
            counter,
            conn: Some(conn),
        })
    }
}

/// What the edge's responders write into (`valet_http::edge`).
impl From<Bytes> for GateBody {
    fn from(bytes: Bytes) -> GateBody {
        GateBody::full(bytes)
    }
}

impl Body for GateBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().0 {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream {
                body,
                counter,
                conn,
            } => {
                if let Some(c) = conn {
                    c.drive(cx);
                }
                let frame = ready!(Pin::new(&mut *body).poll_frame(cx));
                match &frame {
                    Some(Ok(data)) => {
                        counter.inc_by(data.data_ref().map_or(0, |d| d.len() as u64));
                        if body.is_end_stream() {
                            if let Some(c) = conn.take() {
                                c.release();
                            }
                        }
                    }
                    None => {
                        if let Some(c) = conn.take() {
                            c.release();
                        }
                    }
                    Some(Err(_)) => *conn = None,
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}
