//! Response bodies without boxing: empty, a buffer in memory, or a file streamed in large
//! chunks.
//!
//! File chunks are read synchronously on the connection's task. The blob folder is local and
//! reads are mostly served from the page cache, where a 256 KiB read costs tens of
//! microseconds; handing each chunk to a blocking thread pool would cost more than the read
//! itself (a lesson from slower stores that do exactly that).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;

/// How much of a file one body frame carries.
pub const FILE_CHUNK: usize = 256 * 1024;

/// A response body.
#[derive(Debug)]
pub enum ResponseBody {
    /// Nothing.
    Empty,
    /// One buffer.
    Full(Option<Bytes>),
    /// A byte range of a file.
    File(FileStream),
}

impl ResponseBody {
    /// A body of one buffer.
    pub fn full(data: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::Full(Some(data.into()))
    }
}

/// `remaining` bytes of a file from its current position.
#[derive(Debug)]
pub struct FileStream {
    file: File,
    remaining: u64,
    sent: Counter,
}

impl FileStream {
    /// Streams `len` bytes of `file` starting at `offset`.
    /// Each chunk sent is added to `sent`.
    pub fn new(mut file: File, offset: u64, len: u64, sent: Counter) -> io::Result<FileStream> {
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))?;
        }
        Ok(FileStream {
            file,
            remaining: len,
            sent,
        })
    }

    fn next_chunk(&mut self) -> io::Result<Bytes> {
        let want = self.remaining.min(FILE_CHUNK as u64);
        // `read_to_end` into spare capacity: no zeroing of a buffer about to be overwritten.
        let mut buf = Vec::with_capacity(want as usize);
        (&mut self.file).take(want).read_to_end(&mut buf)?;
        if (buf.len() as u64) < want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the blob shrank while it was being read",
            ));
        }
        self.remaining -= want;
        self.sent.inc_by(want);
        Ok(Bytes::from(buf))
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let frame = match self.get_mut() {
            ResponseBody::Empty => None,
            ResponseBody::Full(data) => data.take().map(|d| Ok(Frame::data(d))),
            ResponseBody::File(stream) if stream.remaining == 0 => None,
            ResponseBody::File(stream) => Some(stream.next_chunk().map(Frame::data)),
        };
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Full(data) => data.is_none(),
            ResponseBody::File(stream) => stream.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty => SizeHint::with_exact(0),
            ResponseBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ResponseBody::File(stream) => SizeHint::with_exact(stream.remaining),
        }
    }
}
