//! HTTP/2 clients that open many streams for a large body and never read (no WINDOW_UPDATE,
//! while their connection answers PINGs and SETTINGS) pin at most the streams one connection
//! may open, and only until the send timeout closes them; the process's resident memory stays
//! within that bound. Alone in its test binary: it measures the whole process.

mod support;

use std::time::Duration;

use tokio::net::TcpStream;

use support::{rss, start, CHUNK};

const MAX_STREAMS: u32 = 16;
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// One connection opening up to `streams` streams for a 4 MiB body and reading none of them.
/// Returns how many got their response head, and the task driving the connection, which
/// ends when the server closes it.
async fn never_reading(
    addr: std::net::SocketAddr,
    streams: usize,
) -> (usize, tokio::task::JoinHandle<()>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut responses = Vec::new();
    for _ in 0..streams {
        // The client queues a stream over the server's limit, and is not ready again until
        // the server lets it open: the limit shows as a wait here.
        match tokio::time::timeout(Duration::from_millis(300), client.clone().ready()).await {
            Ok(Ok(ready)) => client = ready,
            _ => break,
        }
        let request = http::Request::get(format!("http://{addr}/big?len={}", 4 << 20))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        responses.push(response);
    }
    let mut heads = 0;
    for response in responses {
        // Kept, never read: the stream stays open with its window closed.
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_millis(500), response).await {
            std::mem::forget(response);
            heads += 1;
        }
    }
    std::mem::forget(client);
    (heads, driver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_clients_that_never_read_are_cut_and_memory_stays_bounded() {
    let server = start(|o| {
        o.limits.max_streams = MAX_STREAMS;
        o.limits.send_timeout = SEND_TIMEOUT;
    })
    .await;
    // Warm up the allocator and the runtime with one honest request.
    let (heads, driver) = never_reading(server.addr, 1).await;
    assert_eq!(heads, 1);
    driver.await.unwrap();
    let before = rss();
    for round in 0..2 {
        let mut drivers = Vec::new();
        for _ in 0..10 {
            let (heads, driver) = never_reading(server.addr, 256).await;
            assert!(
                heads <= MAX_STREAMS as usize,
                "round {round}: {heads} streams open on one connection"
            );
            drivers.push(driver);
        }
        let pinned = rss().saturating_sub(before);
        // Each open stream holds at most a chunk queued in h2 and one hyper waits to send.
        let bound = 10 * MAX_STREAMS as u64 * 3 * CHUNK as u64 + (16 << 20);
        assert!(
            pinned < bound,
            "round {round}: {} MiB pinned, bound {} MiB",
            pinned >> 20,
            bound >> 20
        );
        for driver in drivers {
            tokio::time::timeout(SEND_TIMEOUT + Duration::from_secs(10), driver)
                .await
                .expect("the server closes a connection whose streams cannot send")
                .unwrap();
        }
    }
}
