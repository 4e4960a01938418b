//! `DELETE /blob/CONTAINER/PATH`.

use http::{Response, StatusCode};
use valet_key::{BlobPath, Name, Op, Scope};

use super::Ctx;
use crate::access::admit;
use crate::blobs::conditional::Preconditions;
use crate::body::ResponseBody;
use crate::error::StoreError;

/// Deletes a blob (honouring `If-Match`).
pub async fn delete_blob(
    ctx: &mut Ctx,
    container: Name,
    path: BlobPath,
) -> Result<Response<ResponseBody>, StoreError> {
    // A malformed condition is refused before the key spends a use.
    let pre = Preconditions::from_headers(&ctx.parts.headers)?;
    let resource = Scope::blob(container.clone(), path.clone());
    let grant = admit(&ctx.store, &ctx.key()?, Op::Delete, &resource, ctx.client).await?;
    ctx.key_id = Some(grant.key_id);
    if !grant.ops.permits(Op::Read) && Preconditions::compare_current(&ctx.parts.headers) {
        return Err(StoreError::ConditionNeedsRead("delete"));
    }
    ctx.store.blobs.delete(&container, &path, &pre).await?;
    let mut response = Response::new(ResponseBody::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}
