//! The gate's response bodies: small JSON documents it writes itself, or an upstream's body
//! streamed through a proxy route and counted on the way.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;

/// A gate response body.
#[derive(Debug)]
pub enum GateBody {
    /// The whole body, written by the gate (empty after it was sent).
    Full(Option<Bytes>),
    /// An upstream's body, passed through chunk by chunk.
    Upstream {
        /// The upstream response's body.
        body: Incoming,
        /// Where the bytes passed are counted.
        counter: Counter,
    },
}

impl GateBody {
    /// A body of `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> GateBody {
        let bytes = bytes.into();
        GateBody::Full((!bytes.is_empty()).then_some(bytes))
    }

    /// No body.
    pub fn empty() -> GateBody {
        GateBody::Full(None)
    }
}

impl Body for GateBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            GateBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            GateBody::Upstream { body, counter } => {
                let frame = ready!(Pin::new(body).poll_frame(cx));
                if let Some(Ok(data)) = &frame {
                    counter.inc_by(data.data_ref().map_or(0, |d| d.len() as u64));
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GateBody::Full(bytes) => bytes.is_none(),
            GateBody::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GateBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            GateBody::Upstream { body, .. } => body.size_hint(),
        }
    }
}
