//! What one connection may hold at the store: an HTTP/2 connection opening many body-less
//! uploads holds at most `max_uploads` temporary files; the others are refused with
//! `503 too_many_uploads` and `Retry-After` before their key is spent, and a finished upload
//! gives its slot back.

mod support;

use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;

use support::TestStore;

const MAX_UPLOADS: usize = 4;

#[tokio::test]
async fn one_h2_connection_holds_a_bounded_number_of_temporary_files() {
    let s = TestStore::start_with(|c| c.limits.max_uploads = MAX_UPLOADS).await;
    let key = s.key("blob:uploads", "write,create");
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut bodies = Vec::new();
    let mut responses = Vec::new();
    for i in 0..90 {
        client = client.ready().await.unwrap();
        let request = http::Request::put(format!("http://{}/blob/uploads/f{i}?vk={key}", s.addr))
            .body(())
            .unwrap();
        // Headers only: the body never comes, as in the attack.
        let (response, body) = client.send_request(request, false).unwrap();
        bodies.push(body);
        responses.push(response);
    }
    let mut waiting = Vec::new();
    let mut refused = 0;
    for (i, response) in responses.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_millis(500), response).await {
            Err(_) => waiting.push(i),
            Ok(response) => {
                let response = response.unwrap();
                assert_eq!(response.status(), 503);
                assert_eq!(response.headers()["retry-after"], "1");
                let mut body = response.into_body();
                let mut text = Vec::new();
                while let Some(chunk) = body.data().await {
                    text.extend_from_slice(&chunk.unwrap());
                }
                let text = String::from_utf8(text).unwrap();
                assert!(text.contains("\"too_many_uploads\""), "{text}");
                refused += 1;
            }
        }
    }
    assert_eq!((waiting.len(), refused), (MAX_UPLOADS, 90 - MAX_UPLOADS));
    assert!(
        s.temp_files() <= MAX_UPLOADS,
        "{} temporary files",
        s.temp_files()
    );

    // One finished upload commits, and its slot serves the next.
    let first = waiting[0];
    bodies[first]
        .send_data(Bytes::from_static(b"done"), true)
        .unwrap();
    let mut stored = false;
    for attempt in 0..40 {
        client = client.ready().await.unwrap();
        let request = http::Request::put(format!(
            "http://{}/blob/uploads/again{attempt}?vk={key}",
            s.addr
        ))
        .body(())
        .unwrap();
        let (response, mut body) = client.send_request(request, false).unwrap();
        body.send_data(Bytes::from_static(b"next"), true).unwrap();
        if response.await.unwrap().status() == 201 {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stored, "a slot came back");
    assert_eq!(
        std::fs::read(s.blob_file("uploads", &format!("f{first}"))).unwrap(),
        b"done"
    );
}
