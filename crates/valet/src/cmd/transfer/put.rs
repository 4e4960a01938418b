//! `valet put`: a file streamed to the store with its length, type and SHA-256 declared.
//!
//! The digest is computed in a first streaming pass (or declared with `--sha256`) and sent as
//! `x-valet-sha256`: the store hashes what it receives and commits only a match, so a file
//! changed while it was read, or bytes damaged on the way, are never stored.

use std::time::Duration;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{
    HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, IF_NONE_MATCH,
};
use reqwest::Method;
use sha2::{Digest, Sha256};
use tokio_util::io::ReaderStream;

use super::{
    client, hash_file, header_value, parse_hex32, progress, read_capped, send, usage, Location,
    PutArgs, ServerError, CHUNK,
};

/// The largest success body printed.
const MAX_DESCRIPTION: usize = 64 * 1024;
/// Bodies from this size on wait for an early refusal before their first byte.
const EXPECT_THRESHOLD: u64 = 1024 * 1024;
/// How long they wait.
const EXPECT_WAIT: Duration = Duration::from_millis(300);

pub(super) async fn run(args: PutArgs) -> anyhow::Result<()> {
    let path = &args.file;
    let shown = path.display();
    let meta = tokio::fs::metadata(path)
        .await
        .with_context(|| format!("reading {shown}"))?;
    if !meta.is_file() {
        return Err(usage(format!("{shown} is not a file")));
    }
    let client = client(&args.endpoint)?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let location = Location::parse(&args.destination, &args.endpoint, file_name.as_deref())?;
    let quiet = args.endpoint.quiet;

    let sha256 = match &args.sha256 {
        Some(declared) => {
            parse_hex32(declared).ok_or_else(|| usage("--sha256 takes 64 hex digits"))?;
            declared.trim().to_ascii_lowercase()
        }
        None => {
            let bar = progress(quiet, Some(meta.len()), "hashing");
            let mut hasher = Sha256::new();
            hash_file(path, &mut hasher, &bar).await?;
            bar.finish_and_clear();
            hex::encode(hasher.finalize())
        }
    };
    let content_type = match &args.content_type {
        Some(t) => header_value(t, "--content-type")?,
        None => HeaderValue::from_str(mime_guess::from_path(path).first_or_octet_stream().as_ref())
            .expect("a media type is a header value"),
    };

    // What the gate may want to know (its policy may limit types); the bytes never go there.
    let mut hints = HeaderMap::new();
    hints.insert(CONTENT_TYPE, content_type);
    hints.insert("x-valet-sha256", header_value(&sha256, "the digest")?);
    let mut headers = hints.clone();
    if args.if_absent {
        headers.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
    }
    let target = location.resolve(&client, Method::PUT, hints).await?;

    // Opened again (not reused from the hash pass) so the body starts at byte 0; its length
    // is the one measured now, and a file that grows or shrinks meanwhile fails the upload.
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {shown}"))?;
    let len = file.metadata().await?.len();
    let bar = progress(quiet, Some(len), "uploading");
    let counter = bar.clone();
    // A store refuses a bad key, a size over the cap or a wrong content type before reading
    // the body, and closes the connection. A client still writing a large body then gets a
    // broken pipe instead of the refusal, so a large body waits a moment first, with
    // `Expect: 100-continue` (as curl does): an early refusal arrives cleanly, and a store
    // that reads the body just sends `100 Continue`, which the client skips.
    let wait = if len >= EXPECT_THRESHOLD {
        EXPECT_WAIT
    } else {
        Duration::ZERO
    };
    let pause = futures_util::stream::once(async move {
        tokio::time::sleep(wait).await;
        Ok(bytes::Bytes::new())
    });
    let body = pause
        .chain(ReaderStream::with_capacity(file, CHUNK))
        .inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
    let mut request = target
        .request(&client)
        .headers(headers)
        .header(CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(body));
    if len >= EXPECT_THRESHOLD {
        request = request.header(EXPECT, "100-continue");
    }
    let response = send(request, &target.shown(), false).await;
    bar.finish_and_clear();
    let response = response.context("uploading")?;
    if !response.status().is_success() {
        return Err(ServerError::from_response(response).await.into());
    }
    let description = read_capped(response, MAX_DESCRIPTION).await;
    let text = String::from_utf8_lossy(&description);
    if !text.trim().is_empty() {
        println!("{}", text.trim());
    }
    Ok(())
}
