//! Response bodies without boxing: empty, a buffer in memory, or a file streamed in large
//! chunks, copied or (on plain HTTP/1 connections) sent with `sendfile`.
//!
//! File chunks are read synchronously on the connection's task. The blob folder is local and
//! reads are mostly served from the page cache, where a 256 KiB read costs tens of
//! microseconds; handing each chunk to a blocking thread pool would cost more than the read
//! itself (a lesson from slower stores that do exactly that).
//!
//! Chunk size follows a memory budget: each download reserves room for two chunks from
//! [`CHUNK_BUDGET`] when it starts, taking 1 MiB chunks while the budget allows (fewer system
//! calls and frames per byte), then 256 KiB, and 64 KiB past the budget. A download keeps its
//! size for its whole life and cycles through the same two or three buffers, so memory stays
//! flat however many downloads run: many at once simply get smaller chunks.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use valet_http::metrics::Counter;
use valet_http::sendfile::{self, FileSender};

/// The bytes all file downloads together may reserve for their chunks.
pub const CHUNK_BUDGET: usize = 16 * 1024 * 1024;
/// Chunk sizes, largest first; the last is used once the budget is spent.
const CHUNK_SIZES: [usize; 3] = [1024 * 1024, 256 * 1024, 64 * 1024];

/// Bytes reserved by the downloads streaming right now, across all workers.
static RESERVED: AtomicUsize = AtomicUsize::new(0);

/// Reserves two chunks' worth for a download of `len` bytes; returns the chunk size and the
/// bytes reserved (zero past the budget).
fn reserve_chunks(len: u64) -> (usize, usize) {
    for size in CHUNK_SIZES {
        let chunk = size.min(usize::try_from(len).unwrap_or(usize::MAX)).max(1);
        let need = 2 * chunk;
        let fits = RESERVED.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            (used + need <= CHUNK_BUDGET).then_some(used + need)
        });
        if fits.is_ok() {
            return (chunk, need);
        }
    }
    (CHUNK_SIZES[CHUNK_SIZES.len() - 1], 0)
}

/// A response body.
#[derive(Debug)]
pub enum ResponseBody {
    /// Nothing.
    Empty,
    /// One buffer.
    Full(Option<Bytes>),
    /// A byte range of a file, read into buffers.
    File(FileStream),
    /// A byte range of a file, sent by the connection without copying.
    Sendfile(FileRegions),
    /// Bytes from elsewhere (an object in a bucket), passed on as they arrive.
    Stream(ByteStream),
}

/// A stream of `remaining` bytes, passed on chunk by chunk: memory holds what the source has
/// sent and the connection not yet written, bounded by hyper's backpressure.
pub struct ByteStream {
    inner: futures_util::stream::BoxStream<'static, io::Result<Bytes>>,
    remaining: u64,
    sent: Counter,
}

impl std::fmt::Debug for ByteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteStream")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl ByteStream {
    /// `len` bytes from `inner`, each chunk added to `sent`.
    pub fn new(
        inner: impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static,
        len: u64,
        sent: Counter,
    ) -> ByteStream {
        ByteStream {
            inner: Box::pin(inner),
            remaining: len,
            sent,
        }
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        use futures_util::StreamExt as _;
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let len = chunk.len() as u64;
                if len > self.remaining {
                    return Poll::Ready(Some(Err(io::Error::other(
                        "the blob storage sent more than the blob's size",
                    ))));
                }
                self.remaining -= len;
                self.sent.inc_by(len);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) if self.remaining > 0 => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the blob storage ended the blob early",
            )))),
            other => other,
        }
    }
}

/// Ranges up to this size are read whole, with one system call into one buffer, instead of
/// being streamed: most small-blob downloads then cost a single allocation.
pub const SMALL_READ: u64 = 64 * 1024;

impl ResponseBody {
    /// A body of one buffer.
    pub fn full(data: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::Full(Some(data.into()))
    }

    /// `len` bytes of `file` from `offset`: read now if small, streamed otherwise, without
    /// copying where the connection can. The bytes are added to `sent`.
    pub fn file(
        mut file: File,
        offset: u64,
        len: u64,
        sent: Counter,
        zero_copy: Option<ZeroCopy<'_>>,
    ) -> io::Result<ResponseBody> {
        if len > SMALL_READ {
            if let Some(zero_copy) = zero_copy {
                return Ok(ResponseBody::Sendfile(FileRegions {
                    sender: zero_copy.sender.clone(),
                    file: Arc::new(file),
                    offset,
                    remaining: len,
                    sent,
                    sent_zero_copy: zero_copy.sent.clone(),
                }));
            }
            return FileStream::new(file, offset, len, sent).map(ResponseBody::File);
        }
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))?;
        }
        let mut buf = vec![0; len as usize];
        read_fully(&mut file, &mut buf)?;
        sent.inc_by(len);
        Ok(ResponseBody::full(buf))
    }
}

/// Fills `buf` from `file`. Into initialised memory, `read_exact` takes one `read` for what the
/// page cache holds, where `read_to_end` into spare capacity grows its reads from 8 KiB (eight
/// system calls per MiB, measured with strace).
fn read_fully(file: &mut File, buf: &mut [u8]) -> io::Result<()> {
    file.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the blob shrank while it was being read",
        ),
        _ => e,
    })
}

/// `remaining` bytes of a file from its current position.
#[derive(Debug)]
pub struct FileStream {
    file: File,
    remaining: u64,
    sent: Counter,
    /// Chunk buffers hyper has finished writing, ready to be filled again: a download cycles
    /// through two or three buffers instead of allocating one per chunk, which keeps the
    /// allocator from piling up freed chunk memory when many downloads run at once.
    spares: Arc<Mutex<Vec<Vec<u8>>>>,
    chunk: usize,
    reserved: usize,
}

/// The most spare buffers one download keeps.
const MAX_SPARES: usize = 2;

/// A chunk on its way to the socket; its buffer goes back to the download's spares when hyper
/// drops it.
struct Chunk {
    buf: Vec<u8>,
    spares: Weak<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(spares) = self.spares.upgrade() {
            let mut spares = spares.lock().unwrap_or_else(|p| p.into_inner());
            if spares.len() < MAX_SPARES {
                spares.push(std::mem::take(&mut self.buf));
            }
        }
    }
}

impl FileStream {
    /// Streams `len` bytes of `file` starting at `offset`.
    /// Each chunk sent is added to `sent`.
    pub fn new(mut file: File, offset: u64, len: u64, sent: Counter) -> io::Result<FileStream> {
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))?;
        }
        let (chunk, reserved) = reserve_chunks(len);
        Ok(FileStream {
            file,
            remaining: len,
            sent,
            spares: Arc::default(),
            chunk,
            reserved,
        })
    }

    fn next_chunk(&mut self) -> io::Result<Bytes> {
        let want = self.remaining.min(self.chunk as u64);
        let spare = self.spares.lock().unwrap_or_else(|p| p.into_inner()).pop();
        // A buffer is zeroed once, when made, and reused (see `read_fully`).
        let mut buf = spare.unwrap_or_else(|| vec![0; self.chunk]);
        buf.resize(want as usize, 0);
        read_fully(&mut self.file, &mut buf)?;
        self.remaining -= want;
        self.sent.inc_by(want);
        Ok(Bytes::from_owner(Chunk {
            buf,
            spares: Arc::downgrade(&self.spares),
        }))
    }
}

impl Drop for FileStream {
    fn drop(&mut self) {
        RESERVED.fetch_sub(self.reserved, Ordering::AcqRel);
    }
}

/// A connection's way to send file bytes without copying them, and where to count them.
#[derive(Debug, Clone, Copy)]
pub struct ZeroCopy<'a> {
    /// The connection's, as the server handed it to the store ([`valet_http::Connection`]).
    pub sender: &'a FileSender,
    /// Bytes sent this way.
    pub sent: &'a Counter,
}

/// `remaining` bytes of a file from `offset`, yielded as stand-ins that the connection replaces
/// with the file's bytes (see [`valet_http::sendfile`]): no buffers, so no chunk budget.
#[derive(Debug)]
pub struct FileRegions {
    sender: FileSender,
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    sent: Counter,
    sent_zero_copy: Counter,
}

impl FileRegions {
    fn next_chunk(&mut self) -> Bytes {
        let len = self.remaining.min(sendfile::MAX_CHUNK as u64);
        let chunk = self.sender.chunk(&self.file, self.offset, len as usize);
        self.offset += len;
        self.remaining -= len;
        self.sent.inc_by(len);
        self.sent_zero_copy.inc_by(len);
        chunk
    }
}

/// What the edge's responders write into (`valet_http::edge`).
impl From<Bytes> for ResponseBody {
    fn from(bytes: Bytes) -> ResponseBody {
        ResponseBody::full(bytes)
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let frame = match self.get_mut() {
            ResponseBody::Stream(stream) if stream.remaining == 0 => None,
            ResponseBody::Stream(stream) => {
                return stream.poll_chunk(cx).map(|c| c.map(|c| c.map(Frame::data)))
            }
            ResponseBody::Empty => None,
            ResponseBody::Full(data) => data.take().map(|d| Ok(Frame::data(d))),
            ResponseBody::File(stream) if stream.remaining == 0 => None,
            ResponseBody::File(stream) => Some(stream.next_chunk().map(Frame::data)),
            ResponseBody::Sendfile(regions) if regions.remaining == 0 => None,
            ResponseBody::Sendfile(regions) => Some(Ok(Frame::data(regions.next_chunk()))),
        };
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Full(data) => data.is_none(),
            ResponseBody::File(stream) => stream.remaining == 0,
            ResponseBody::Sendfile(regions) => regions.remaining == 0,
            ResponseBody::Stream(stream) => stream.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty => SizeHint::with_exact(0),
            ResponseBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ResponseBody::File(stream) => SizeHint::with_exact(stream.remaining),
            ResponseBody::Sendfile(regions) => SizeHint::with_exact(regions.remaining),
            ResponseBody::Stream(stream) => SizeHint::with_exact(stream.remaining),
        }
    }
}
