//! Zero-copy file bodies: file bytes that go from the page cache to the socket with
//! `sendfile(2)`, never through user space.
//!
//! hyper cannot hand a file region to a connection: a body yields `Bytes`, which hyper writes
//! with `writev`. Copying a large download through user space costs about a core per 4 GB/s on
//! the development machine (the kernel's copy out of the page cache, then its copy back into
//! the socket), where `sendfile`, as nginx uses it, costs a fifth of that. So a file body yields
//! *stand-ins*: each chunk is a slice of one private region of zeros that is never written or
//! read, and [`SendfileIo`], the connection's I/O under hyper, recognises a stand-in by its
//! address and sends the file region it stands for instead. Framing, keep-alive, pipelining,
//! timeouts and shutdown stay hyper's.
//!
//! This holds only where hyper passes body chunks to the I/O untouched: HTTP/1 with the queued
//! (vectored) write strategy, on a plain TCP socket. The server offers a [`FileSender`] only to
//! requests on such connections (and forces that strategy); TLS and HTTP/2 connections never
//! see one. A stand-in that reaches the I/O out of turn, or longer than what is left of its
//! region, fails the connection: nothing but the file's bytes is ever sent in its place. What
//! no check here can see is hyper copying a chunk instead of passing it down (its flattening
//! write strategy does): the zeros would go out. `tests/sendfile.rs` compares every byte
//! clients get with the file, over keep-alive and pipelined requests, and fails if that
//! happens (checked by turning `writev` off).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The longest stand-in: the most one body chunk may stand for. Large, because a chunk costs a
/// body frame and a bookkeeping entry and nothing else: no memory is behind it.
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// The zeros every stand-in points into. Allocated zeroed and never touched, so the pages are
/// never faulted in: it costs address space, not memory.
fn stand_in_area() -> &'static [u8] {
    static AREA: OnceLock<&'static [u8]> = OnceLock::new();
    AREA.get_or_init(|| Vec::leak(vec![0; MAX_CHUNK]))
}

/// Where `slice` starts in the stand-in area, if it points into it.
fn stand_in_offset(slice: &[u8]) -> Option<usize> {
    let area = stand_in_area().as_ptr_range();
    let at = slice.as_ptr();
    (!slice.is_empty() && area.contains(&at)).then(|| at as usize - area.start as usize)
}

/// A file region a stand-in was made for.
#[derive(Debug)]
struct Region {
    id: u64,
    file: Arc<File>,
    offset: u64,
    len: usize,
}

/// The regions of one connection whose stand-ins hyper still holds, oldest first: hyper writes
/// a connection's chunks in the order the bodies yielded them.
#[derive(Debug, Default)]
struct Regions {
    queue: VecDeque<Region>,
    next_id: u64,
}

type SharedRegions = Arc<Mutex<Regions>>;

fn lock(regions: &Mutex<Regions>) -> std::sync::MutexGuard<'_, Regions> {
    regions.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes body chunks that one plain HTTP/1 connection sends from a file with `sendfile`.
/// Handed to the handler with each request on such a connection ([`crate::Connection`]); a
/// body must use it only for the response to that request: the stand-ins of another
/// connection's sender would be matched against this connection's regions.
#[derive(Debug, Clone)]
pub struct FileSender {
    regions: SharedRegions,
}

impl FileSender {
    /// A body chunk standing for `len` bytes (1 to [`MAX_CHUNK`]) of `file` from `offset`.
    /// Its own bytes are zeros and must reach the connection untouched: the connection sends
    /// the file's bytes in their place.
    pub fn chunk(&self, file: &Arc<File>, offset: u64, len: usize) -> Bytes {
        assert!(
            (1..=MAX_CHUNK).contains(&len),
            "a stand-in covers 1 to {MAX_CHUNK} bytes, not {len}"
        );
        let id = {
            let mut regions = lock(&self.regions);
            let id = regions.next_id;
            regions.next_id += 1;
            regions.queue.push_back(Region {
                id,
                file: file.clone(),
                offset,
                len,
            });
            id
        };
        Bytes::from_owner(StandIn {
            id,
            len,
            regions: Arc::downgrade(&self.regions),
        })
    }
}

/// A chunk's owner: the zeros hyper is given, and the region's removal once hyper drops the
/// chunk, whether written (the usual case) or abandoned (a body cut short).
struct StandIn {
    id: u64,
    len: usize,
    regions: Weak<Mutex<Regions>>,
}

impl AsRef<[u8]> for StandIn {
    fn as_ref(&self) -> &[u8] {
        &stand_in_area()[..self.len]
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let Some(regions) = self.regions.upgrade() else {
            return;
        };
        let mut regions = lock(&regions);
        if let Some(at) = regions.queue.iter().position(|r| r.id == self.id) {
            regions.queue.remove(at);
        }
    }
}

/// What to do with the buffers hyper asks to write.
#[derive(Debug)]
enum Step {
    /// Write the first this many buffers as they are: they hold real bytes.
    Write(usize),
    /// Send this part of a file: the first buffer stands for it.
    Send {
        file: Arc<File>,
        offset: u64,
        len: usize,
    },
    /// The first buffer is a stand-in that matches no region: send nothing.
    OutOfTurn,
}

/// The next step for the buffers hyper asks to write. Most writes hold no stand-in (request
/// heads, small bodies) and take no lock.
///
/// A stand-in always stands for the oldest region: hyper drops a chunk once written, so a
/// stand-in it still writes is the oldest it holds, and where the stand-in starts in the zeros
/// is how much of its region hyper has written already.
fn step(bufs: &[IoSlice<'_>], regions: &Mutex<Regions>) -> Step {
    match bufs.iter().position(|b| stand_in_offset(b).is_some()) {
        None => Step::Write(bufs.len()),
        Some(first @ 1..) => Step::Write(first),
        Some(0) => {
            let slice: &[u8] = &bufs[0];
            let written = stand_in_offset(slice).unwrap_or_default();
            match lock(regions).queue.front() {
                Some(region) if written + slice.len() <= region.len => Step::Send {
                    file: region.file.clone(),
                    offset: region.offset + written as u64,
                    len: slice.len(),
                },
                _ => Step::OutOfTurn,
            }
        }
    }
}

/// For the tests: a step equals another that sends the same file (by identity) the same way.
#[cfg(test)]
impl PartialEq for Step {
    fn eq(&self, other: &Step) -> bool {
        match (self, other) {
            (Step::Write(a), Step::Write(b)) => a == b,
            (Step::OutOfTurn, Step::OutOfTurn) => true,
            (
                Step::Send { file, offset, len },
                Step::Send {
                    file: f,
                    offset: o,
                    len: l,
                },
            ) => Arc::ptr_eq(file, f) && offset == o && len == l,
            _ => false,
        }
    }
}

/// A plain TCP connection's I/O that sends stand-ins' file regions with `sendfile`.
#[derive(Debug)]
pub(crate) struct SendfileIo {
    io: TokioIo<TcpStream>,
    regions: SharedRegions,
}

impl SendfileIo {
    /// The connection's I/O, and the sender its requests' bodies may use.
    pub(crate) fn new(stream: TcpStream) -> (SendfileIo, FileSender) {
        let regions = SharedRegions::default();
        let sender = FileSender {
            regions: regions.clone(),
        };
        let io = SendfileIo {
            io: TokioIo::new(stream),
            regions,
        };
        (io, sender)
    }

    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        file: &File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let socket = self.io.inner();
        loop {
            ready!(socket.poll_write_ready(cx))?;
            let mut at = offset;
            match socket.try_io(Interest::WRITABLE, || send_file(socket, file, &mut at, len)) {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was being sent",
                    )))
                }
                Ok(sent) => return Poll::Ready(Ok(sent)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_file(socket: &TcpStream, file: &File, offset: &mut u64, len: usize) -> io::Result<usize> {
    Ok(rustix::fs::sendfile(socket, file, Some(offset), len)?)
}

/// Elsewhere the server never offers a [`FileSender`], so no stand-in is ever made.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_file(_: &TcpStream, _: &File, _: &mut u64, _: usize) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Whether this platform can send files without copying them.
pub(crate) const SUPPORTED: bool = cfg!(any(target_os = "linux", target_os = "android"));

impl hyper::rt::Read for SendfileIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for SendfileIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match step(bufs, &self.regions) {
            Step::Write(count) => Pin::new(&mut self.io).poll_write_vectored(cx, &bufs[..count]),
            Step::Send { file, offset, len } => self.poll_send(cx, &file, offset, len),
            Step::OutOfTurn => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a zero-copy chunk reached the connection out of turn",
            ))),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender() -> FileSender {
        FileSender {
            regions: SharedRegions::default(),
        }
    }

    fn file() -> Arc<File> {
        Arc::new(tempfile::tempfile().expect("a temporary file"))
    }

    fn send(file: &Arc<File>, offset: u64, len: usize) -> Step {
        Step::Send {
            file: file.clone(),
            offset,
            len,
        }
    }

    #[test]
    fn buffers_without_stand_ins_are_written_as_they_are() {
        let s = sender();
        let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        let body = vec![0u8; 64];
        let bufs = [IoSlice::new(&head), IoSlice::new(&body)];
        assert_eq!(step(&bufs, &s.regions), Step::Write(2));
        assert_eq!(step(&[], &s.regions), Step::Write(0));
    }

    #[test]
    fn real_bytes_before_a_stand_in_are_written_first() {
        let (s, f) = (sender(), file());
        let chunk = s.chunk(&f, 0, 1000);
        let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        let bufs = [IoSlice::new(&head), IoSlice::new(&chunk)];
        assert_eq!(step(&bufs, &s.regions), Step::Write(1));
    }

    #[test]
    fn a_stand_in_is_sent_from_its_region() {
        let (s, f) = (sender(), file());
        let chunk = s.chunk(&f, 4096, 1000);
        let bufs = [IoSlice::new(&chunk), IoSlice::new(b"next")];
        assert_eq!(step(&bufs, &s.regions), send(&f, 4096, 1000));
    }

    #[test]
    fn a_partly_written_stand_in_resumes_where_the_socket_stopped() {
        let (s, f) = (sender(), file());
        let mut chunk = s.chunk(&f, 4096, 1000);
        bytes::Buf::advance(&mut chunk, 300);
        assert_eq!(
            step(&[IoSlice::new(&chunk)], &s.regions),
            send(&f, 4396, 700)
        );
    }

    #[test]
    fn stand_ins_are_sent_in_the_order_they_were_made() {
        let (s, a, b) = (sender(), file(), file());
        let first = s.chunk(&a, 0, 10);
        let second = s.chunk(&b, 50, 20);
        let bufs = [IoSlice::new(&first), IoSlice::new(&second)];
        assert_eq!(step(&bufs, &s.regions), send(&a, 0, 10));
        drop(first);
        assert_eq!(step(&[IoSlice::new(&second)], &s.regions), send(&b, 50, 20));
        drop(second);
        assert!(lock(&s.regions).queue.is_empty());
    }

    #[test]
    fn a_chunk_dropped_unwritten_takes_its_region_with_it() {
        let (s, a, b) = (sender(), file(), file());
        let abandoned = s.chunk(&a, 0, 10);
        let kept = s.chunk(&b, 0, 20);
        drop(abandoned);
        assert_eq!(step(&[IoSlice::new(&kept)], &s.regions), send(&b, 0, 20));
    }

    #[test]
    fn a_stand_in_without_a_region_sends_nothing() {
        let (s, other, f) = (sender(), sender(), file());
        let foreign = other.chunk(&f, 0, 10);
        assert_eq!(step(&[IoSlice::new(&foreign)], &s.regions), Step::OutOfTurn);
    }

    #[test]
    fn a_stand_in_longer_than_its_region_sends_nothing() {
        let (s, f) = (sender(), file());
        let short = s.chunk(&f, 0, 10);
        let long = s.chunk(&f, 0, 20);
        // `long` presented while `short` is the oldest region: out of turn.
        assert_eq!(step(&[IoSlice::new(&long)], &s.regions), Step::OutOfTurn);
        drop(short);
        assert_eq!(step(&[IoSlice::new(&long)], &s.regions), send(&f, 0, 20));
    }

    #[test]
    #[should_panic(expected = "a stand-in covers")]
    fn an_empty_stand_in_is_refused() {
        sender().chunk(&file(), 0, 0);
    }

    #[test]
    fn a_slice_of_other_memory_is_never_a_stand_in() {
        assert_eq!(stand_in_offset(&[0u8; 16]), None);
        assert_eq!(stand_in_offset(&stand_in_area()[..0]), None);
        assert_eq!(stand_in_offset(&stand_in_area()[7..9]), Some(7));
    }
}
