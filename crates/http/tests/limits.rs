//! Connection limits over real loopback connections: silent connections, stalled sniffs, idle
//! HTTP/1 keep-alive and HTTP/2 connections (PINGs are no activity) are closed; streams per
//! HTTP/2 connection, uploads per connection and connections per worker are bounded; honest
//! clients, slow ones included, still get every byte.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{byte_at, start};

/// Reads until the server closes the connection; panics if it has not within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) {
    let mut sink = vec![0; 64 * 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
}

/// One HTTP/1.1 keep-alive request on `stream`; returns the status line.
async fn get_keep_alive(stream: &mut TcpStream, addr: SocketAddr) -> String {
    let request = format!("GET /small HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.contains("content-length: 0"), "{head}");
    head.lines().next().unwrap().to_owned()
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_first_byte_deadline() {
    let server = start(|o| o.limits.first_byte_timeout = Duration::from_millis(300)).await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    for stream in &mut silent {
        closed_within(stream, Duration::from_secs(5)).await;
    }
    // The server still serves.
    let mut fresh = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        get_keep_alive(&mut fresh, server.addr).await,
        "HTTP/1.1 200 OK"
    );
}

#[tokio::test]
async fn a_connection_that_stalls_before_its_first_request_head_is_closed() {
    let server = start(|o| o.header_timeout = Duration::from_millis(400)).await;
    // Part of the HTTP/2 preface (the sniff waits for the rest), a lone byte, half an HTTP/1
    // request line.
    for start in [&b"PRI * HTTP/2.0\r\n"[..], b"P", b"GET / HT"] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(start).await.unwrap();
        closed_within(&mut stream, Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_and_busy_ones_are_not() {
    let server = start(|o| o.limits.idle_timeout = Duration::from_millis(1000)).await;
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..8 {
        assert_eq!(
            get_keep_alive(&mut busy, server.addr).await,
            "HTTP/1.1 200 OK"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    closed_within(&mut busy, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn idle_h2_connections_are_closed_even_while_they_ping() {
    let server = start(|o| o.limits.idle_timeout = Duration::from_millis(500)).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut ping_pong = connection.ping_pong().unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get("/small").body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let pinging = tokio::spawn(async move {
        while ping_pong.ping(h2::Ping::opaque()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .expect("an idle HTTP/2 connection is closed although it answers and sends PINGs")
        .unwrap();
    pinging.await.unwrap();
}

#[tokio::test]
async fn connections_over_the_worker_cap_are_refused_until_some_close() {
    let server = start(|o| o.limits.max_connections = 4).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        assert_eq!(
            get_keep_alive(&mut stream, server.addr).await,
            "HTTP/1.1 200 OK"
        );
        held.push(stream);
    }
    for _ in 0..3 {
        let mut refused = TcpStream::connect(server.addr).await.unwrap();
        closed_within(&mut refused, Duration::from_secs(5)).await;
    }
    drop(held);
    // The server notices the closes as it serves; a new connection gets through soon.
    let mut served = false;
    for _ in 0..50 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let _ = stream
            .write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).as_bytes())
            .await;
        let mut first = [0; 12];
        if stream.read_exact(&mut first).await.is_ok() {
            assert_eq!(&first, b"HTTP/1.1 200");
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "connections are accepted again once others closed");
}

#[tokio::test]
async fn one_h2_connection_holds_a_bounded_number_of_uploads() {
    let server = start(|o| o.limits.max_uploads = 3).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // Bodies started and never finished: each upload stays in flight.
    let mut open = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        client = client.ready().await.unwrap();
        let request = http::Request::put("/upload").body(()).unwrap();
        let (response, mut body) = client.send_request(request, false).unwrap();
        body.send_data(Bytes::from_static(b"x"), false).unwrap();
        open.push(body);
        statuses.push(response);
    }
    let mut refused = 0;
    let mut waiting = Vec::new();
    for response in statuses {
        match tokio::time::timeout(Duration::from_millis(500), response).await {
            Ok(Ok(r)) => {
                assert_eq!(r.status(), 503);
                refused += 1;
            }
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => waiting.push(()),
        }
    }
    assert_eq!((waiting.len(), refused), (3, 17));
    // A finished upload gives its slot back.
    let mut first = open.remove(0);
    first.send_data(Bytes::new(), true).unwrap();
    let mut accepted = false;
    for _ in 0..20 {
        client = client.ready().await.unwrap();
        let request = http::Request::put("/upload").body(()).unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        if response.await.unwrap().status() == 200 {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted, "the slot came back");
}

/// Reads a whole h2 response body, giving the window back `step` bytes at a time with
/// `pause` between.
async fn read_h2(mut body: h2::RecvStream, pause: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        got.extend_from_slice(&chunk);
        body.flow_control().release_capacity(chunk.len()).unwrap();
        tokio::time::sleep(pause).await;
    }
    got
}

#[tokio::test]
async fn a_slow_but_steady_h2_reader_gets_every_byte() {
    let server = start(|o| o.limits.send_timeout = Duration::from_millis(500)).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(16 * 1024)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let len = 256 * 1024;
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get(format!("/big?len={len}"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let body = response.await.unwrap().into_body();
    // Sixteen windows of 16 KiB, 100 ms apart: far longer in all than the send timeout, and
    // never stalled that long.
    let got = read_h2(body, Duration::from_millis(100)).await;
    assert_eq!(got.len(), len);
    assert!(got.iter().enumerate().all(|(i, b)| *b == byte_at(i)));
}

#[tokio::test]
async fn curl_over_h2_prior_knowledge_downloads_a_large_body_intact() {
    let server = start(|_| {}).await;
    let len = 24 << 20;
    let url = format!("http://{}/big?len={len}", server.addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--fail", "--http2-prior-knowledge", &url])
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), len);
    assert!(out.stdout.iter().enumerate().all(|(i, b)| *b == byte_at(i)));
}

#[tokio::test]
async fn a_slow_http1_reader_gets_the_bytes_still_queued_after_the_body_ended() {
    // hyper drops a body once it yielded its last chunk; what is still queued for a slow
    // reader (socket and hyper buffers, megabytes) keeps the connection busy, not idle.
    let server = start(|o| o.limits.idle_timeout = Duration::from_millis(300)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let len = 16 << 20;
    let request = format!("GET /big?len={len} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n");
        if head_end.is_some_and(|at| got.len() - at - 4 >= len) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = &got[at..];
    assert_eq!(body.len(), len, "the whole body, not cut as idle");
    assert!(body.iter().enumerate().all(|(i, b)| *b == byte_at(i)));
}
