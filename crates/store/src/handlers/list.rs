//! `GET /blob/CONTAINER?prefix=P&cursor=C&limit=N`: a JSON page of blob paths.
//!
//! The key must grant `list` on a scope that covers everything the prefix could match: the
//! prefix's whole segments (`2024/ja` needs `blob:C/2024/` or wider), or the whole container
//! when the prefix has no `/`.

use http::{header, HeaderValue, Response};
use valet_key::{BlobPrefix, BlobTarget, Name, Op, Scope};

use super::Ctx;
use crate::access::admit;
use crate::body::ResponseBody;
use crate::error::StoreError;
use crate::request::ListingQuery;

/// The most items one page may have.
pub const MAX_PAGE: usize = 1000;

/// Lists blobs.
pub async fn list_blobs(
    ctx: &mut Ctx,
    container: Name,
) -> Result<Response<ResponseBody>, StoreError> {
    let query = ListingQuery::parse(ctx.parts.uri.query());
    let prefix = query.prefix.unwrap_or_default();
    let resource = listing_scope(&container, &prefix)?;
    let limit = match query.limit.as_deref() {
        None => MAX_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                StoreError::BadRequest(format!("limit is a number from 1 to {MAX_PAGE}"))
            })?,
    };
    let grant = admit(&ctx.store, &ctx.key()?, Op::List, &resource, ctx.client).await?;
    ctx.key_id = Some(grant.key_id);
    let cursor = query.cursor;
    let blobs = ctx.store.blobs.clone();
    let listing = tokio::task::spawn_blocking(move || {
        blobs.list(&container, &prefix, cursor.as_deref(), limit)
    })
    .await
    .map_err(|e| StoreError::Internal(e.to_string()))??;
    let body = serde_json::to_string(&listing).expect("a listing serialises");
    let mut response = Response::new(ResponseBody::full(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The scope a listing with `prefix` reads: its whole segments.
fn listing_scope(container: &Name, prefix: &str) -> Result<Scope, StoreError> {
    if prefix.contains(['\\', '\0']) || prefix.contains(char::is_control) {
        return Err(StoreError::BadPath(
            "the prefix has a backslash or control character".into(),
        ));
    }
    let target = match prefix.rfind('/') {
        None => BlobTarget::Container,
        Some(i) => BlobTarget::Prefix(
            BlobPrefix::parse(&prefix[..=i])
                .map_err(|e| StoreError::BadPath(format!("prefix: {e}")))?,
        ),
    };
    Ok(Scope::Blob {
        container: container.clone(),
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_scopes_use_whole_segments() {
        let c = Name::parse("photos").unwrap();
        assert_eq!(listing_scope(&c, "").unwrap().to_string(), "blob:photos");
        assert_eq!(listing_scope(&c, "20").unwrap().to_string(), "blob:photos");
        assert_eq!(
            listing_scope(&c, "2024/ja").unwrap().to_string(),
            "blob:photos/2024/"
        );
        assert_eq!(
            listing_scope(&c, "2024/jan/").unwrap().to_string(),
            "blob:photos/2024/jan/"
        );
        assert!(listing_scope(&c, "../").is_err());
        assert!(listing_scope(&c, "/x").is_err());
        assert!(listing_scope(&c, "a//b").is_err());
    }
}
