//! Zero-copy file bodies over real loopback connections: the bytes a client gets are the file's,
//! whatever the chunking, across keep-alive and pipelined requests; a file that shrinks cuts the
//! response short instead of padding it; HTTP/2 requests are never offered a sender.

use std::convert::Infallible;
use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use valet_http::sendfile::{FileSender, MAX_CHUNK};
use valet_http::{serve, Connection, Handler, ServeOptions};

/// Serves `GET /?offset=O&len=L&chunk=C`: `L` bytes of the file from `O`, as stand-ins of `C`
/// bytes where the connection offers a sender (header `x-zero-copy: yes`), read into memory
/// otherwise (`no`). `L` may run past the end of the file.
struct FileSite {
    path: PathBuf,
}

enum TestBody {
    StandIns {
        sender: FileSender,
        file: Arc<File>,
        offset: u64,
        remaining: u64,
        chunk: u64,
    },
    Full(Option<Bytes>),
}

impl http_body::Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(match self.get_mut() {
            TestBody::Full(data) => data.take().map(|d| Ok(Frame::data(d))),
            TestBody::StandIns { remaining: 0, .. } => None,
            TestBody::StandIns {
                sender,
                file,
                offset,
                remaining,
                chunk,
            } => {
                let len = (*remaining).min(*chunk);
                let data = sender.chunk(file, *offset, len as usize);
                *offset += len;
                *remaining -= len;
                Some(Ok(Frame::data(data)))
            }
        })
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            TestBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            TestBody::StandIns { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

fn query(request: &Request<Incoming>, name: &str) -> u64 {
    let query = request.uri().query().unwrap_or_default();
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .map_or(0, |v| v.parse().expect("a number"))
}

impl Handler for FileSite {
    type Body = TestBody;

    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        connection: Connection,
    ) -> impl Future<Output = Response<TestBody>> + Send + 'static {
        let (offset, len, chunk) = (
            query(&request, "offset"),
            query(&request, "len"),
            query(&request, "chunk"),
        );
        let sender = connection.file_sender;
        async move {
            let mut file = File::open(&self.path).expect("the test file");
            let zero_copy = if sender.is_some() { "yes" } else { "no" };
            let body = match sender {
                Some(sender) => TestBody::StandIns {
                    sender,
                    file: Arc::new(file),
                    offset,
                    remaining: len,
                    chunk,
                },
                None => {
                    file.seek(SeekFrom::Start(offset)).unwrap();
                    let mut data = Vec::new();
                    file.take(len).read_to_end(&mut data).unwrap();
                    TestBody::Full(Some(data.into()))
                }
            };
            Response::builder()
                .header("x-zero-copy", zero_copy)
                .body(body)
                .unwrap()
        }
    }
}

/// A server on a loopback port serving `content` as its file; the folder lives as long as the
/// returned guard.
async fn start(content: &[u8]) -> (SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, content).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let site = Arc::new(FileSite { path });
    tokio::spawn(async move {
        serve(
            site,
            &ServeOptions::default(),
            listener,
            std::future::pending(),
        )
        .await
    });
    (addr, dir)
}

/// Deterministic bytes that differ at every position a short period would hide.
fn content(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn get(offset: usize, len: usize, chunk: usize) -> String {
    format!("GET /?offset={offset}&len={len}&chunk={chunk} HTTP/1.1\r\nHost: t\r\n\r\n")
}

/// Reads one response: its head, and as many body bytes as it declares or the connection
/// gives before it closes.
async fn response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (String, Vec<u8>) {
    let end = loop {
        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut buf = [0; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed before a response head");
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(pending.drain(..end).collect()).unwrap();
    let declared: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content length")
        .trim()
        .parse()
        .unwrap();
    let mut body: Vec<u8> = pending.drain(..declared.min(pending.len())).collect();
    while body.len() < declared {
        let mut buf = vec![0; 1 << 16];
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    pending.extend(body.drain(declared.min(body.len())..));
    (head, body)
}

#[tokio::test]
async fn keep_alive_responses_carry_exactly_the_files_bytes_in_any_chunking() {
    let file = content(9 * 1024 * 1024 + 3);
    let (addr, _dir) = start(&file).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut pending = Vec::new();
    let cases = [
        (0, 1, 1),
        (0, file.len(), MAX_CHUNK),
        (12_345, 5 * 1024 * 1024, 1024 * 1024),
        (7, 100, 7),
        (file.len() - 10, 10, 3),
        (1, file.len() - 1, 65_537),
    ];
    for (offset, len, chunk) in cases {
        stream
            .write_all(get(offset, len, chunk).as_bytes())
            .await
            .unwrap();
        let (head, body) = response(&mut stream, &mut pending).await;
        assert!(head.contains("x-zero-copy: yes"), "{head}");
        assert_eq!(body.len(), len, "offset {offset}, chunk {chunk}");
        assert!(
            body == file[offset..offset + len],
            "wrong bytes at offset {offset}, chunk {chunk}"
        );
    }
}

#[tokio::test]
async fn pipelined_requests_get_their_own_bytes_in_order() {
    let file = content(3 * 1024 * 1024);
    let (addr, _dir) = start(&file).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let requests = [
        (0, 2 * 1024 * 1024),
        (5, 1000),
        (1024 * 1024, 2 * 1024 * 1024),
    ];
    let all: String = requests
        .iter()
        .map(|&(offset, len)| get(offset, len, 300_000))
        .collect();
    stream.write_all(all.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    for (offset, len) in requests {
        let (_, body) = response(&mut stream, &mut pending).await;
        assert!(body == file[offset..offset + len], "request at {offset}");
    }
}

#[tokio::test]
async fn a_file_shorter_than_declared_cuts_the_response_instead_of_padding_it() {
    let file = content(1024 * 1024);
    let (addr, _dir) = start(&file).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(get(0, 2 * 1024 * 1024, 256 * 1024).as_bytes())
        .await
        .unwrap();
    let (head, body) = response(&mut stream, &mut Vec::new()).await;
    assert!(head.contains("content-length: 2097152"), "{head}");
    assert!(body.len() <= file.len(), "{} bytes sent", body.len());
    assert!(body == file[..body.len()], "only the file's bytes are sent");
    let mut rest = Vec::new();
    let closed = stream.read_to_end(&mut rest).await;
    assert!(
        closed.is_err() || rest.is_empty(),
        "the connection ends after the cut response"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_are_not_offered_a_sender() {
    let file = content(300_000);
    let (addr, _dir) = start(&file).await;
    let url = format!("http://{addr}/?offset=10&len=200000&chunk=65536");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--http2-prior-knowledge", "-D", "/dev/stderr", &url])
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    let head = String::from_utf8_lossy(&output.stderr);
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(head.contains("x-zero-copy: no"), "{head}");
    assert!(output.stdout == file[10..200_010], "HTTP/2 body bytes");
}
