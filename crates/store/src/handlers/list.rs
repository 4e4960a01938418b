//! `GET /blob/CONTAINER?prefix=P&cursor=C&limit=N`: a JSON page of blob paths.
//!
//! The key must grant `list` on a scope that covers everything the prefix could match: the
//! prefix's whole segments (`2024/ja` needs `blob:C/2024/` or wider), or the whole container
//! when the prefix has no `/`. A prefix that names a folder without its trailing `/`
//! (`photos`) is also within a key for exactly that folder (`blob:C/photos/`): the listing is
//! then clipped to the folder (`photos/…`), never `photos-private/…` or a blob `photos.txt`,
//! which the prefix matches but the key does not cover.

use http::{header, HeaderValue, Response};
use valet_key::{BlobPrefix, BlobTarget, Name, Op, Scope};

use super::Ctx;
use crate::access::admit_first;
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
    let mut prefix = query.prefix.unwrap_or_default();
    let resources = listing_scopes(&container, &prefix)?;
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
    let (grant, chosen) =
        admit_first(&ctx.store, &ctx.key()?, Op::List, &resources, ctx.client).await?;
    ctx.key_id = Some(grant.key_id);
    if chosen == 1 {
        // Admitted for the folder the prefix names: list that folder only.
        prefix.push('/');
    }
    let cursor = query.cursor;
    let listing = ctx
        .store
        .blobs
        .list(&container, &prefix, cursor.as_deref(), limit)
        .await?;
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

/// The scopes a listing with `prefix` may be admitted for, widest first: what the prefix's
/// whole segments read, and (for a prefix not ending in `/`, if it is a valid folder) the
/// folder it names, to which the listing is then clipped.
fn listing_scopes(container: &Name, prefix: &str) -> Result<Vec<Scope>, StoreError> {
    let mut scopes = vec![listing_scope(container, prefix)?];
    if !prefix.is_empty() && !prefix.ends_with('/') {
        if let Ok(folder) = BlobPrefix::parse(&format!("{prefix}/")) {
            scopes.push(Scope::Blob {
                container: container.clone(),
                target: BlobTarget::Prefix(folder),
            });
        }
    }
    Ok(scopes)
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

    #[test]
    fn a_prefix_naming_a_folder_may_be_admitted_for_that_folder() {
        let c = Name::parse("files").unwrap();
        let texts = |prefix: &str| -> Vec<String> {
            let scopes = listing_scopes(&c, prefix).unwrap();
            scopes.iter().map(ToString::to_string).collect()
        };
        assert_eq!(texts("photos"), ["blob:files", "blob:files/photos/"]);
        assert_eq!(texts("a/photos"), ["blob:files/a/", "blob:files/a/photos/"]);
        assert_eq!(texts("photos/"), ["blob:files/photos/"]);
        assert_eq!(texts(""), ["blob:files"]);
        assert_eq!(texts(".."), ["blob:files"], "not a folder: no second scope");
    }
}
