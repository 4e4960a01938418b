//! What only the S3 backend needs, over real HTTP against a real Garage: multipart uploads
//! (large bodies) that leave nothing behind when refused, objects other S3 tools can read,
//! bounded memory both ways, and an unreachable bucket refused with a clear 503.
//! The promises both backends keep are in the conformance suite, `tests/blobs.rs`.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use object_store::{Attribute, ObjectStoreExt, PutPayload};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use support::*;
use valet_key::Limits;
use valet_store::BlobStorage;
use valet_testkit::data::pseudo_random;
use valet_testkit::garage::Garage;

/// Large enough for a multipart upload of three parts.
const LARGE: usize = 20 * 1024 * 1024;

/// One test at a time: the memory test measures the process's peak.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bucket(s: &TestStore) -> &TestBucket {
    s.bucket.as_ref().expect("a Garage-backed store")
}

#[tokio::test]
async fn a_large_upload_is_one_object_that_s3_tools_can_read() {
    let _serial = SERIAL.lock().await;
    let s = TestStore::start_on(Backend::Garage).await;
    let data = pseudo_random(1, LARGE);
    s.put("files", "big.bin", data.clone(), "application/x-test")
        .await;
    assert_eq!(
        s.unfinished_uploads().await,
        0,
        "the multipart upload was completed"
    );
    let key = s.key("blob:files/big.bin", "read");
    let url = s.url(&format!("/blob/files/big.bin?vk={key}"));
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let sha = hex::encode(Sha256::digest(&data));
    assert_eq!(r.headers()["etag"], format!("\"{sha}\"").as_str());
    assert_eq!(r.headers()["x-valet-sha256"], sha.as_str());
    assert_eq!(r.headers()["content-type"], "application/x-test");
    assert!(r.bytes().await.unwrap() == data, "the download is intact");
    let (first, last) = (7_000_000, 16_000_000);
    let r = s
        .http
        .get(&url)
        .header("range", format!("bytes={first}-{last}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert!(
        r.bytes().await.unwrap() == data[first..=last],
        "a range across parts"
    );

    // The object, as any S3 client sees it.
    let object = object_store::path::Path::from(format!("{S3_PREFIX}/files/big.bin"));
    let got = bucket(&s).client.get(&object).await.unwrap();
    assert_eq!(
        got.attributes
            .get(&Attribute::ContentType)
            .map(|v| v.as_ref()),
        Some("application/x-test")
    );
    assert_eq!(
        got.attributes
            .get(&Attribute::Metadata("valet-sha256".into()))
            .map(|v| v.as_ref()),
        Some(sha.as_str())
    );
    assert!(got.bytes().await.unwrap() == data);
}

#[tokio::test]
async fn a_refused_large_upload_leaves_no_object_and_no_parts() {
    let _serial = SERIAL.lock().await;
    let s = TestStore::start_on(Backend::Garage).await;
    let key = s.key("blob:files", "read,write");
    let data = pseudo_random(2, LARGE);
    let url = |name: &str| s.url(&format!("/blob/files/{name}?vk={key}"));
    let wrong = hex::encode(Sha256::digest(b"something else"));
    let r = s
        .http
        .put(url("checked"))
        .header("x-valet-sha256", wrong)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "checksum_mismatch");
    assert!(s.stored("files", "checked").await.is_none());

    // Refused at the commit, after its parts were sent: the multipart upload is aborted.
    s.put("files", "cas", "first", "text/plain").await;
    let r = s
        .http
        .put(url("cas"))
        .header(
            "if-match",
            "\"0000000000000000000000000000000000000000000000000000000000000000\"",
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = s
        .http
        .put(url("cas"))
        .header("if-none-match", "*")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(s.stored("files", "cas").await.unwrap(), b"first");
    s.put("files", "a/b", "x", "text/plain").await;
    let r = s.http.put(url("a")).body(data).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(
        s.unfinished_uploads().await,
        0,
        "every refused upload was aborted"
    );
    assert_eq!(s.temp_files(), 0);
}

/// A streamed-through upload (digest declared) refused for its digest, its size or a
/// condition leaves no object and, once its abort has run, no parts.
#[tokio::test]
async fn a_refused_streamed_upload_leaves_no_object_and_no_parts() {
    let _serial = SERIAL.lock().await;
    let s = TestStore::start_on(Backend::Garage).await;
    let data = pseudo_random(3, LARGE);
    let sha = hex::encode(Sha256::digest(&data));
    let key = s.key("blob:files", "read,write");
    let capped = s.key_with(
        "blob:files",
        "write",
        KeySpec::limited(Limits {
            max_bytes: Some(12 * 1024 * 1024),
            ..Limits::default()
        }),
    );
    let put = |name: &str, key: &str, sha: &str, body: Vec<u8>| {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(1024 * 1024).map(|c| Ok(c.to_vec())).collect();
        s.http
            .put(s.url(&format!("/blob/files/{name}?vk={key}")))
            .header("x-valet-sha256", sha)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
    };
    let mut tampered = data.clone();
    tampered[LARGE - 1] ^= 1;
    let r = put("tampered", &key, &sha, tampered).await.unwrap();
    assert_eq!(error_code(r).await, "checksum_mismatch");
    let r = put("capped", &capped, &sha, data.clone()).await.unwrap();
    assert_eq!(error_code(r).await, "too_large");
    s.put("files", "taken", "first", "text/plain").await;
    let r = s
        .http
        .put(s.url(&format!("/blob/files/taken?vk={key}")))
        .header("x-valet-sha256", &sha)
        .header("if-none-match", "*")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert!(s.stored("files", "tampered").await.is_none());
    assert!(s.stored("files", "capped").await.is_none());
    assert_eq!(s.stored("files", "taken").await.unwrap(), b"first");
    let mut left = s.unfinished_uploads().await;
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = s.unfinished_uploads().await;
    }
    assert_eq!(left, 0, "every refused multipart upload was aborted");
    let r = put("whole", &key, &sha, data.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(s.stored("files", "whole").await.unwrap() == data);
}

/// The count the test above relies on sees an upload left unfinished (it is not always zero).
#[tokio::test]
async fn an_unfinished_multipart_upload_is_counted() {
    let _serial = SERIAL.lock().await;
    let s = TestStore::start_on(Backend::Garage).await;
    let client = &bucket(&s).client;
    let object = object_store::path::Path::from("orphan");
    let mut upload = client.put_multipart(&object).await.unwrap();
    upload
        .put_part(PutPayload::from(vec![1u8; 5 * 1024 * 1024]))
        .await
        .unwrap();
    assert_eq!(s.unfinished_uploads().await, 1);
    upload.abort().await.unwrap();
    assert_eq!(s.unfinished_uploads().await, 0);
}

/// A 192 MiB upload and download through the store raise the process's peak memory by far
/// less than the body (a buffering store would add all of it, twice): received into a
/// temporary file first, as the client declared no digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_and_download_stream_in_bounded_memory() {
    streams_in_bounded_memory(192, false).await;
}

/// The same, streamed through to the bucket as it arrives (the client declared the
/// SHA-256): no temporary file on the node either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_with_its_digest_streams_through_in_bounded_memory() {
    streams_in_bounded_memory(128, true).await;
}

async fn streams_in_bounded_memory(mebibytes: usize, declare_digest: bool) {
    let _serial = SERIAL.lock().await;
    const CHUNK: usize = 1024 * 1024;
    let chunks = mebibytes;
    let s = TestStore::start_on(Backend::Garage).await;
    let key = s.key("blob:files/huge", "read,write");
    let url = s.url(&format!("/blob/files/huge?vk={key}"));
    // The body is made as it is sent, one chunk at a time.
    let body = futures_util::stream::iter(0..chunks)
        .map(|i| Ok::<_, std::io::Error>(pseudo_random(i as u64, CHUNK)));
    let mut expected = Sha256::new();
    for i in 0..chunks {
        expected.update(pseudo_random(i as u64, CHUNK));
    }
    let expected = hex::encode(expected.finalize());
    let before = reset_peak_memory();
    let mut put = s.http.put(&url).body(reqwest::Body::wrap_stream(body));
    if declare_digest {
        put = put.header("x-valet-sha256", &expected);
    }
    let upload = tokio::spawn(put.send());
    let mut most_temp_files = 0;
    while !upload.is_finished() {
        most_temp_files = most_temp_files.max(s.temp_files());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = upload.await.unwrap().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    if declare_digest {
        assert_eq!(most_temp_files, 0, "streamed through, no temporary file");
    } else {
        assert_eq!(most_temp_files, 1, "received into a temporary file first");
    }
    assert_eq!(s.unfinished_uploads().await, 0);
    let mut download = s.http.get(&url).send().await.unwrap().bytes_stream();
    let (mut got, mut len) = (Sha256::new(), 0);
    while let Some(chunk) = download.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len();
        got.update(&chunk);
    }
    assert_eq!(len, CHUNK * chunks);
    assert_eq!(hex::encode(got.finalize()), expected);
    let grown = peak_memory() - before;
    assert!(
        grown < 64 * 1024 * 1024,
        "peak memory grew by {} MiB for a {chunks} MiB body",
        grown / (1024 * 1024)
    );
}

/// Resets the process's peak resident memory (Linux: `clear_refs` 5) and returns its current.
fn reset_peak_memory() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs");
    status_kib("VmRSS") * 1024
}

fn peak_memory() -> u64 {
    status_kib("VmHWM") * 1024
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// With its bucket gone (Garage stopped), the store refuses uploads and downloads with
/// `503 storage_unavailable` within seconds, and keeps nothing of them.
#[tokio::test]
async fn an_unreachable_bucket_is_a_clear_503_and_nothing_is_kept() {
    let _serial = SERIAL.lock().await;
    let (garage, name) = tokio::task::spawn_blocking(|| {
        let garage = Garage::start();
        let name = garage.bucket();
        (garage, name)
    })
    .await
    .unwrap();
    let settings = s3_settings(&garage, &name);
    let s = TestStore::start_with(move |c| c.blobs = BlobStorage::S3(settings)).await;
    s.put("files", "kept", "before", "text/plain").await;
    garage.stop();
    let key = s.key("blob:files", "read,write");
    let started = std::time::Instant::now();
    let r = s
        .http
        .put(s.url(&format!("/blob/files/new?vk={key}")))
        .body("after")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let message = r.text().await.unwrap();
    assert!(message.contains("storage_unavailable"), "{message}");
    assert!(message.contains("nothing was stored"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "refused in {:?}",
        started.elapsed()
    );
    let r = s
        .http
        .get(s.url(&format!("/blob/files/kept?vk={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.temp_files(), 0, "nothing half written on the node");
}

/// Multipart uploads left by a node that died mid-upload are aborted by the sweep once they
/// are old enough; younger ones, and uploads outside the store's prefix, are left alone.
#[tokio::test]
async fn abandoned_multipart_uploads_are_aborted_once_old_enough() {
    use object_store::multipart::MultipartStore as _;
    let _serial = SERIAL.lock().await;
    let s = TestStore::start_on(Backend::Garage).await;
    let client = &bucket(&s).client;
    let names = [
        format!("{S3_PREFIX}/files/a.bin"),
        format!("{S3_PREFIX}/files/deep/b c+d.bin"),
        "elsewhere/c.bin".to_owned(),
    ];
    for name in &names {
        // What a node that died after sending one part leaves behind.
        let path = object_store::path::Path::from(name.as_str());
        let id = client.create_multipart(&path).await.unwrap();
        client
            .put_part(&path, &id, 0, PutPayload::from(vec![7u8; 5 * 1024 * 1024]))
            .await
            .unwrap();
    }
    assert_eq!(s.unfinished_uploads().await, 3);
    tokio::time::sleep(Duration::from_millis(20)).await;

    let young = s
        .store
        .sweep_abandoned_uploads(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        (young.pending, young.aborted),
        (2, 0),
        "an hour old: none yet"
    );
    assert_eq!(s.unfinished_uploads().await, 3);

    let old = s
        .store
        .sweep_abandoned_uploads(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((old.pending, old.aborted), (2, 2));
    assert_eq!(
        s.unfinished_uploads().await,
        1,
        "the upload outside the store's prefix is not the store's to abort"
    );
    let again = s
        .store
        .sweep_abandoned_uploads(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((again.pending, again.aborted), (0, 0));
    assert!(
        s.stored("files", "a.bin").await.is_none(),
        "nothing became visible"
    );
}
