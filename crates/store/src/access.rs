//! Admission of a request: the key checked by the verifier, then the ledger consulted for
//! revocation and, if the key counts uses, one use consumed. Runs on every request; nothing is
//! cached per connection, so a revocation bites at the next request.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};
use valet_http::edge::Internal;

use valet_key::{Access, Denial, Grant, Op, Scope, UnixTime};
use valet_ledger::{Admission, KeyUse};

use crate::error::StoreError;
use crate::state::Store;

/// The current time for key windows.
pub fn now() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// Authorizes `op` on `resource` with `token`, then admits it through the ledger.
pub async fn admit(
    store: &Store,
    token: &str,
    op: Op,
    resource: &Scope,
    client: IpAddr,
) -> Result<Grant, StoreError> {
    let now = now();
    let access = Access {
        op,
        resource,
        now,
        client: Some(client),
    };
    let grant = store.verifier().authorize(token, &access)?;
    count(store, grant, now).await
}

/// Authorizes `op` with `token` on the first of `resources` the key covers, then admits it
/// through the ledger: the grant, and which resource it was. Only the verifier (pure, no
/// ledger, no use spent) sees the resources the key does not cover; if it covers none, the
/// denial is the first resource's.
pub async fn admit_first(
    store: &Store,
    token: &str,
    op: Op,
    resources: &[Scope],
    client: IpAddr,
) -> Result<(Grant, usize), StoreError> {
    let now = now();
    let verifier = store.verifier();
    let mut first_denial = None;
    for (i, resource) in resources.iter().enumerate() {
        let access = Access {
            op,
            resource,
            now,
            client: Some(client),
        };
        match verifier.authorize(token, &access) {
            Ok(grant) => return Ok((count(store, grant, now).await?, i)),
            Err(Denial::OutOfScope) => {
                first_denial.get_or_insert(Denial::OutOfScope);
            }
            Err(other) => return Err(first_denial.unwrap_or(other).into()),
        }
    }
    Err(first_denial.unwrap_or(Denial::OutOfScope).into())
}

/// The ledger's part of an admission: revocation and, if the key counts uses, one use.
async fn count(store: &Store, grant: Grant, now: UnixTime) -> Result<Grant, StoreError> {
    let admission = if grant.max_uses.is_some() {
        // Counting a use is a durable write: keep it off the connection's thread.
        let ledger = store.ledger.clone();
        let counted = grant.clone();
        tokio::task::spawn_blocking(move || ledger.admit(&key_use(&counted), now))
            .await
            .map_err(|e| StoreError::Internal(Internal::caused("the ledger task failed", e)))?
    } else {
        store.ledger.admit(&key_use(&grant), now)
    };
    match admission {
        Ok(Admission::Admitted { .. }) => Ok(grant),
        Ok(Admission::Revoked) => Err(StoreError::Revoked),
        Ok(Admission::Exhausted) => Err(StoreError::Exhausted),
        Err(e) => Err(StoreError::LedgerUnavailable(e.to_string())),
    }
}

/// What the ledger needs to know of a grant: the key's own signed times, never the window a
/// caveat narrowed (a use counted under a caveat's short expiry must outlive it).
fn key_use(grant: &Grant) -> KeyUse<'_> {
    KeyUse {
        key_id: grant.key_id,
        subject: grant.subject.as_deref(),
        issued_at: grant.issued_at,
        key_expires: grant.key_expires,
        max_uses: grant.max_uses,
    }
}
