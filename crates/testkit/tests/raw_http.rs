//! Raw HTTP against a loopback listener that answers canned bytes.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use valet_testkit::raw_http;

#[tokio::test]
async fn a_raw_answer_gives_its_status_body_and_error_code() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = vec![0u8; 1024];
        let n = stream.read(&mut head).await.unwrap();
        assert!(head[..n].starts_with(b"GET /x%2fy HTTP/1.1\r\n"));
        let body = r#"{"error":{"code":"bad_path","message":"no"}}"#;
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
    });
    let answer = raw_http::send(addr, "GET /x%2fy HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(raw_http::status(&answer), Some(400));
    assert_eq!(raw_http::status_and_code(&answer), (400, "bad_path".into()));
    assert!(raw_http::body(&answer).starts_with("{\"error\""));
    let mut head = answer.as_bytes();
    let read = raw_http::blocking::read_head(&mut head).unwrap();
    assert!(read.ends_with("connection: close\r\n\r\n"), "{read}");
    assert_eq!(raw_http::status(""), None);
    assert_eq!(raw_http::error_code("not json"), None);
}
