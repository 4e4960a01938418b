//! `GET` and `HEAD /blob/CONTAINER/PATH`: a blob, whole or a single range, with validators.

use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use valet_key::{BlobPath, FileName, Name, Op, Scope};

use super::{blob_of, Ctx};
use crate::access::admit;
use crate::blobs::conditional::{if_range_holds, Preconditions, Verdict};
use crate::blobs::{BlobData, BlobMeta};
use crate::body::{ByteStream, ResponseBody, ZeroCopy};
use crate::error::StoreError;
use crate::range::{resolve, ByteRange};

/// The blob's SHA-256, hex: a client can check a download without a second request.
pub const X_VALET_SHA256: HeaderName = HeaderName::from_static("x-valet-sha256");

/// Serves a blob.
pub async fn get_blob(
    ctx: &mut Ctx,
    container: Name,
    path: BlobPath,
    head: bool,
) -> Result<Response<ResponseBody>, StoreError> {
    // A malformed condition is refused before the key spends a use.
    let preconditions = Preconditions::from_headers(&ctx.parts.headers)?;
    let resource = Scope::blob(container, path);
    let grant = admit(&ctx.store, &ctx.key()?, Op::Read, &resource, ctx.client).await?;
    ctx.key_id = Some(grant.key_id);
    let (container, path) = blob_of(&resource);
    let (data, meta) = ctx.store.blobs.open_blob(container, path).await?;
    let headers = &ctx.parts.headers;
    match preconditions.evaluate(Some(&meta), true) {
        Verdict::Proceed => {}
        Verdict::NotModified => return Ok(not_modified(&meta)),
        Verdict::Failed => {
            return Err(StoreError::PreconditionFailed(
                "If-Match or If-Unmodified-Since",
            ))
        }
    }
    let range = if if_range_holds(headers, &meta) {
        let value = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
        resolve(value, meta.size)
    } else {
        ByteRange::Whole
    };
    let (status, start, len) = match range {
        ByteRange::Whole => (StatusCode::OK, 0, meta.size),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
            return Err(StoreError::RangeNotSatisfiable { size: meta.size })
        }
    };
    let body = if head {
        ResponseBody::Empty
    } else {
        let sent = ctx.store.metrics.bytes_out.clone();
        match data {
            BlobData::File(file) => {
                let zero_copy = ctx.file_sender.as_ref().map(|sender| ZeroCopy {
                    sender,
                    sent: &ctx.store.metrics.bytes_out_zero_copy,
                });
                ResponseBody::file(file, start, len, sent, zero_copy)
                    .map_err(StoreError::from_io)?
            }
            BlobData::Remote(remote) => {
                let stream = remote.stream(start, len).await?;
                ResponseBody::Stream(ByteStream::new(stream, len, sent))
            }
            BlobData::Memory(bytes) => {
                sent.inc_by(len);
                // In memory means small: the offsets fit in usize.
                ResponseBody::full(bytes.slice(start as usize..(start + len) as usize))
            }
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = meta
        .headers
        .download
        .get_or_init(|| download_headers(&meta))
        .clone();
    let out = response.headers_mut();
    if status == StatusCode::PARTIAL_CONTENT {
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        let value = format!("bytes {start}-{}/{}", start + len - 1, meta.size);
        out.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).expect("ascii"),
        );
    }
    if let Some(name) = &grant.filename {
        out.insert(header::CONTENT_DISPOSITION, content_disposition(name));
    }
    Ok(response)
}

/// Every header of a whole-blob download, the router's included: made once per blob and
/// cloned for each download, which costs a fraction of inserting a dozen headers one by one
/// (about a tenth of a small download's instructions, measured with callgrind).
fn download_headers(meta: &BlobMeta) -> HeaderMap {
    // Ten headers: room for exactly those, as the map lives as long as the blob's metadata.
    let mut out = HeaderMap::with_capacity(10);
    validators(&mut out, meta);
    out.insert(header::CONTENT_TYPE, meta.headers.content_type.clone());
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(X_VALET_SHA256, meta.headers.sha256.clone());
    // The URL carries a key: no shared cache may keep the response.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    // Uploaded content is untrusted: never let it run as a page of the store's origin.
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    // The router adds these to every response; present already, they are replaced in place
    // instead of growing the map.
    valet_http::hygiene::protect(&mut out);
    out
}

fn validators(out: &mut HeaderMap, meta: &BlobMeta) {
    out.insert(header::ETAG, meta.headers.etag.clone());
    out.insert(header::LAST_MODIFIED, meta.headers.last_modified.clone());
}

fn not_modified(meta: &BlobMeta) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Empty);
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    validators(response.headers_mut(), meta);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    response
}

/// RFC 5987 `attr-char`s stay as they are; everything else is percent-encoded.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266). The key crate
/// already refused quotes, backslashes and control characters in the name.
fn content_disposition(name: &FileName) -> HeaderValue {
    let ascii: String = name
        .as_str()
        .chars()
        .map(|c| if c.is_ascii() && c != '%' { c } else { '_' })
        .collect();
    let exact = utf8_percent_encode(name.as_str(), ATTR_CHAR);
    let value = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{exact}");
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_has_both_forms() {
        let name = FileName::parse("résumé 2024.pdf").unwrap();
        assert_eq!(
            content_disposition(&name),
            "attachment; filename=\"r_sum_ 2024.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202024.pdf"
        );
    }
}
