//! `PUT /blob/CONTAINER/PATH`: an upload streamed to a temporary file and committed atomically.
//!
//! Limits are enforced while the bytes flow: a `Content-Length` over the key's cap is refused
//! before a byte is read, and a chunked body is cut at the first byte over it. Anything short
//! of a successful commit (a cap, a checksum, a disconnect, a stall, a trickle, a shutdown)
//! drops the temporary file, so no partial blob is ever visible.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;
use valet_key::{BlobPath, MediaType, MediaTypeError, Name, Op, Scope};

use super::get::X_VALET_SHA256;
use super::Ctx;
use crate::access::admit;
use crate::blobs::conditional::Preconditions;
use crate::blobs::{parse_sha256_hex, BlobUpload, CommitMode, UploadSpec};
use crate::body::ResponseBody;
use crate::error::StoreError;

/// The digests a client asked the store to check.
struct Expected {
    md5: Option<[u8; 16]>,
    sha256: Option<[u8; 32]>,
}

fn expected_digests(headers: &HeaderMap) -> Result<Expected, StoreError> {
    let md5 = headers
        .get("content-md5")
        .map(|v| {
            STANDARD
                .decode(v.as_bytes())
                .ok()
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .ok_or_else(|| {
                    StoreError::BadRequest("Content-MD5 is not base64 of 16 bytes".into())
                })
        })
        .transpose()?;
    let sha256 = headers
        .get(&X_VALET_SHA256)
        .map(|v| {
            parse_sha256_hex(v.to_str().unwrap_or_default())
                .ok_or_else(|| StoreError::BadRequest("x-valet-sha256 is not 64 hex digits".into()))
        })
        .transpose()?;
    Ok(Expected { md5, sha256 })
}

/// The upload's media type, if it names one: exactly one `Content-Type` header, one media
/// type by RFC 9110's grammar (see [`MediaType`]), never guessed at.
fn media_type(headers: &HeaderMap) -> Result<Option<MediaType>, StoreError> {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        // Two headers are one list (RFC 9110 §5.3): a client may read either type.
        return Err(MediaTypeError::List.into());
    }
    let text = value.to_str().map_err(|_| MediaTypeError::Character)?;
    Ok(Some(MediaType::parse(text)?))
}

fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, StoreError> {
    headers
        .get(header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| StoreError::BadRequest("bad Content-Length".into()))
        })
        .transpose()
}

/// Receives a blob.
pub async fn put_blob(
    ctx: &mut Ctx,
    container: Name,
    path: BlobPath,
    body: &mut Incoming,
) -> Result<Response<ResponseBody>, StoreError> {
    // Claimed before the key is admitted (a refusal spends no use) and held until the
    // temporary file is gone: one HTTP/2 connection cannot hold a file per stream.
    let _slot = ctx
        .connection
        .begin_upload()
        .ok_or(StoreError::TooManyUploads(
            ctx.store.config.limits.max_uploads,
        ))?;
    // A malformed condition is refused before the key spends a use.
    let pre = Preconditions::from_headers(&ctx.parts.headers)?;
    let resource = Scope::blob(container.clone(), path.clone());
    // `create` is the weaker right: every writer has it, and a key with only `create` makes
    // this upload create-only.
    let grant = admit(&ctx.store, &ctx.key()?, Op::Create, &resource, ctx.client).await?;
    ctx.key_id = Some(grant.key_id);
    let headers = &ctx.parts.headers;
    // A key that may not read learns nothing of what is there: no condition on the current
    // version, and the same answer whether it existed or not (below). Only create-only's
    // refusal to overwrite says that something exists, which is what `create` means.
    let may_read = grant.ops.permits(Op::Read);
    if !may_read && Preconditions::compare_current(headers) {
        return Err(StoreError::ConditionNeedsRead("upload"));
    }
    let mode = if pre.is_create_only() || !grant.ops.permits(Op::Write) {
        CommitMode::CreateOnly
    } else {
        CommitMode::Overwrite(pre)
    };
    let content_type = media_type(headers)?;
    if !grant.permits_media_type(content_type.as_ref()) {
        return Err(StoreError::ContentTypeNotAllowed(
            content_type
                .as_ref()
                .map_or("(none)", MediaType::as_str)
                .to_owned(),
        ));
    }
    let limit = grant.max_bytes.unwrap_or(u64::MAX);
    let declared = declared_length(headers)?;
    if declared.is_some_and(|n| n > limit) {
        return Err(StoreError::TooLarge { limit });
    }
    let expected = expected_digests(headers)?;
    // The canonical form is what is stored and served back: exactly what the limit checked.
    let content_type = content_type.map_or_else(
        || "application/octet-stream".to_owned(),
        |t| t.as_str().to_owned(),
    );
    let spec = UploadSpec {
        content_type,
        check_md5: expected.md5.is_some(),
        sha256: expected.sha256,
        length: declared,
    };
    let mut upload = ctx
        .store
        .blobs
        .begin_upload(&container, &path, spec)
        .await?;
    let received = receive(ctx, body, &mut upload, limit).await;
    ctx.bytes = upload.received();
    received?;
    if expected.md5.is_some_and(|want| upload.md5() != Some(want)) {
        return Err(StoreError::ChecksumMismatch("Content-MD5"));
    }
    if expected.sha256.is_some_and(|want| upload.sha256() != want) {
        return Err(StoreError::ChecksumMismatch("x-valet-sha256"));
    }
    let committed = ctx
        .store
        .blobs
        .commit(upload, &container, &path, mode)
        .await?;
    let meta = committed.meta;
    let body = serde_json::json!({
        "container": container.as_str(),
        "path": path.as_str(),
        "size": meta.size,
        "sha256": meta.sha256_hex(),
        "etag": meta.etag(),
        "content_type": meta.content_type,
    });
    let mut response = Response::new(ResponseBody::full(body.to_string()));
    // `200` for a replacement only to a key that may read what it replaced: to any other,
    // `201` either way, or the status would tell whether the blob existed.
    *response.status_mut() = if committed.replaced && may_read {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let out = response.headers_mut();
    out.insert(
        header::ETAG,
        HeaderValue::from_str(meta.etag()).expect("hex"),
    );
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Streams the body into the upload, cutting it at the first byte over `limit` and giving up
/// if it stalls (no chunk for `body_idle_timeout`) or trickles (below `min_upload_rate` on
/// average once `upload_rate_grace` has passed).
async fn receive(
    ctx: &Ctx,
    body: &mut Incoming,
    upload: &mut BlobUpload,
    limit: u64,
) -> Result<(), StoreError> {
    let config = &ctx.store.config;
    let idle = config.body_idle_timeout;
    let pace = Pace {
        start: Instant::now(),
        min_rate: config.min_upload_rate,
        grace: config.upload_rate_grace,
    };
    loop {
        let stalled = Instant::now() + idle;
        let deadline = pace
            .deadline(upload.received())
            .map_or(stalled, |slow| slow.min(stalled));
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(StoreError::RequestTimeout),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => {
                return Err(StoreError::BadRequest(format!(
                    "the body was cut short: {e}"
                )))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if upload.received() + data.len() as u64 > limit {
            return Err(StoreError::TooLarge { limit });
        }
        let len = data.len() as u64;
        upload.write(data).await?;
        ctx.store.metrics.bytes_in.inc_by(len);
    }
}

/// The minimum average upload rate: an upload that started at `start` and has received
/// `received` bytes falls below `min_rate` at `start + received / min_rate`, and is cut then
/// (but never within `grace` of its start) unless more bytes arrived meanwhile. Waiting for
/// that one instant, rather than checking on a timer, costs nothing while the bytes flow.
struct Pace {
    start: Instant,
    /// Bytes per second; 0: no minimum.
    min_rate: u64,
    grace: Duration,
}

impl Pace {
    /// When an upload that has received `received` bytes becomes too slow, if ever.
    fn deadline(&self, received: u64) -> Option<Instant> {
        if self.min_rate == 0 {
            return None;
        }
        let secs = received / self.min_rate;
        let nanos =
            u128::from(received % self.min_rate) * 1_000_000_000 / u128::from(self.min_rate);
        let earned = Duration::new(secs, u32::try_from(nanos).unwrap_or(999_999_999));
        self.start.checked_add(earned.max(self.grace))
    }
}
