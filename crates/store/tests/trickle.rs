//! The minimum upload rate: a body that trickles in (a slow-loris upload) is cut once the grace
//! period has passed, leaves nothing, and the store keeps serving; honest uploads are not cut.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `head`, then `body` in pieces of `piece` bytes every `every`, while reading the
/// answer. Returns the raw answer and how long after the head it arrived. The writer stops at
/// the first error (the store closed the connection) or at the end of the body.
async fn paced(
    s: &TestStore,
    head: String,
    body: Vec<u8>,
    piece: usize,
    every: Duration,
) -> (String, Duration) {
    let stream = TcpStream::connect(s.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for chunk in body.chunks(piece) {
            tokio::time::sleep(every).await;
            if write.write_all(chunk).await.is_err() {
                return;
            }
        }
        // Keep the write side open: the answer decides when the exchange ends.
        std::future::pending::<()>().await;
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut answered = None;
    loop {
        match tokio::time::timeout_at(deadline, read.read(&mut buf)).await {
            Err(_) => panic!(
                "no complete answer within 30 s: {:?}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answered.get_or_insert_with(|| started.elapsed());
                out.extend_from_slice(&buf[..n]);
                // One JSON answer: stop at its end rather than wait for the close.
                let text = String::from_utf8_lossy(&out);
                if let Some((_, json)) = text.split_once("\r\n\r\n") {
                    if json.trim_end().ends_with('}') {
                        break;
                    }
                }
            }
        }
    }
    writer.abort();
    let answer = String::from_utf8_lossy(&out).into_owned();
    (answer, answered.unwrap_or_else(|| started.elapsed()))
}

fn put_head(key: &str, path: &str, length: Option<usize>) -> String {
    let framing = match length {
        Some(n) => format!("Content-Length: {n}"),
        None => "Transfer-Encoding: chunked".to_owned(),
    };
    format!(
        "PUT /blob/files/{path}?vk={key} HTTP/1.1\r\nHost: x\r\n{framing}\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
}

/// A short grace and a rate no trickle reaches.
fn strict(config: &mut valet_store::StoreConfig) {
    config.upload_rate_grace = Duration::from_secs(2);
    config.min_upload_rate = 1000;
}

#[test]
fn the_defaults_cut_a_trickle_after_30_s_below_1_kib_per_second() {
    let config =
        valet_store::StoreConfig::new("/nonexistent".into(), "127.0.0.1:1".parse().unwrap());
    assert_eq!(config.min_upload_rate, 1024);
    assert_eq!(config.upload_rate_grace, Duration::from_secs(30));
    assert!(config.body_idle_timeout > config.upload_rate_grace);
}

#[tokio::test]
async fn a_body_trickling_at_one_byte_per_second_is_cut_after_the_grace_and_leaves_nothing() {
    let s = TestStore::start_with(strict).await;
    let key = s.key("blob:files", "write");
    let (answer, after) = paced(
        &s,
        put_head(&key, "trickle", Some(100)),
        vec![b'x'; 100],
        1,
        Duration::from_secs(1),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    // Cut at the grace (2 s: 2 bytes received, far below 1000 B/s), not at the idle timeout
    // (60 s), which a byte every second never reaches.
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_secs(6),
        "{after:?}"
    );
    assert_eq!(s.temp_files(), 0);
    assert!(!s.blob_file("files", "trickle").exists());

    // The store keeps serving, uploads included.
    s.put("files", "after", "still here", "text/plain").await;
    let read = s.key("blob:files/after", "read");
    let r = s
        .http
        .get(s.url(&format!("/blob/files/after?vk={read}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "still here");
}

#[tokio::test]
async fn a_chunked_trickle_is_cut_too() {
    let s = TestStore::start_with(strict).await;
    let key = s.key("blob:files", "write");
    // One-byte chunks: "1\r\nx\r\n", one every second.
    let body = b"1\r\nx\r\n".repeat(60);
    let (answer, after) = paced(
        &s,
        put_head(&key, "chunked", None),
        body,
        6,
        Duration::from_secs(1),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(after < Duration::from_secs(6), "{after:?}");
    assert_eq!(s.temp_files(), 0);
    assert!(!s.blob_file("files", "chunked").exists());
}

#[tokio::test]
async fn an_upload_with_pauses_but_above_the_minimum_on_average_is_not_cut() {
    let s = TestStore::start_with(|c| {
        c.upload_rate_grace = Duration::from_secs(1);
        c.min_upload_rate = 1000;
    })
    .await;
    let key = s.key("blob:files", "write");
    // 2000 bytes every 0.5 s (4000 B/s) for 3 s: the rate is checked many times after the
    // grace, and each check finds the upload ahead of its minimum.
    let body: Vec<u8> = (0..12_000u32).map(|i| (i % 251) as u8).collect();
    let (answer, _) = paced(
        &s,
        put_head(&key, "steady", Some(body.len())),
        body.clone(),
        2000,
        Duration::from_millis(500),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(std::fs::read(s.blob_file("files", "steady")).unwrap(), body);
}

#[tokio::test]
async fn a_zero_minimum_turns_the_check_off() {
    let s = TestStore::start_with(|c| {
        c.upload_rate_grace = Duration::from_millis(500);
        c.min_upload_rate = 0;
    })
    .await;
    let key = s.key("blob:files", "write");
    let (answer, _) = paced(
        &s,
        put_head(&key, "slow", Some(4)),
        b"slow".to_vec(),
        1,
        Duration::from_millis(700),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(
        std::fs::read(s.blob_file("files", "slow")).unwrap(),
        b"slow"
    );
}

#[tokio::test]
async fn bytes_sent_early_buy_time_but_a_trickle_is_cut_once_the_average_falls_below() {
    let s = TestStore::start_with(|c| {
        c.upload_rate_grace = Duration::from_secs(1);
        c.min_upload_rate = 1000;
    })
    .await;
    let key = s.key("blob:files", "write");
    // 3000 bytes at once, then a byte a second: the average falls below 1000 B/s at 3 s,
    // well after the 1 s grace.
    let mut body = vec![b'x'; 3000];
    body.extend_from_slice(&[b'y'; 30]);
    let stream = TcpStream::connect(s.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(put_head(&key, "burst", Some(body.len())).as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    write.write_all(&body[..3000]).await.unwrap();
    let writer = tokio::spawn(async move {
        for byte in &body[3000..] {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), read.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let after = started.elapsed();
    writer.abort();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        after >= Duration::from_millis(2900) && after < Duration::from_secs(5),
        "{after:?}"
    );
    assert_eq!(s.temp_files(), 0);
    assert!(!s.blob_file("files", "burst").exists());
}
