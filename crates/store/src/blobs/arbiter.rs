//! Who may make an object visible: the lock a writer holds while it compares the current
//! version with its conditions and then commits or deletes.
//!
//! S3's own conditional writes cannot be the arbiter: Garage 2.5 ignores `If-None-Match: *`
//! and `If-Match` on `PUT` (it answers 200 and overwrites), and so `object_store`'s
//! `PutMode::Create`/`Update`, which rely on them, would not hold either. So every writer of a
//! bucket takes a lock on the object's name from an arbiter they all share, reads the current
//! version (`HEAD`), and only then completes its multipart upload, `PUT`s or deletes.
//!
//! [`LocalLocks`] is that arbiter for one store node (the writers are its own tasks). Several
//! store nodes writing one bucket need an arbiter across machines: a PostgreSQL advisory lock
//! (`pg_advisory_xact_lock(hash(name))`), added with the PostgreSQL ledger; until then, run one
//! store node per bucket (or per prefix) when clients rely on create-only or `If-Match`.

use std::fmt::Debug;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;

use super::BlobError;

/// A held lock; released when dropped.
pub struct ArbiterGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl Debug for ArbiterGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArbiterGuard")
    }
}

/// The future of [`CommitArbiter::lock`].
pub type LockFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ArbiterGuard, BlobError>> + Send + 'a>>;

/// Serialises the check-and-commit of writers of the same object name.
pub trait CommitArbiter: Send + Sync + Debug + 'static {
    /// Waits for, and takes, the lock on `name`. Two names that must not change at once (a
    /// path and the folder it is in) are given the same `name` by the caller.
    fn lock<'a>(&'a self, name: &'a str) -> LockFuture<'a>;
}

/// Locks held in this process: striped async mutexes, enough for one store node.
#[derive(Debug)]
pub struct LocalLocks {
    stripes: Vec<Arc<tokio::sync::Mutex<()>>>,
}

impl Default for LocalLocks {
    fn default() -> LocalLocks {
        LocalLocks {
            stripes: (0..64).map(|_| Arc::default()).collect(),
        }
    }
}

impl CommitArbiter for LocalLocks {
    fn lock<'a>(&'a self, name: &'a str) -> LockFuture<'a> {
        Box::pin(async move {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            name.hash(&mut hasher);
            let stripe = &self.stripes[(hasher.finish() % self.stripes.len() as u64) as usize];
            let guard = stripe.clone().lock_owned().await;
            Ok(ArbiterGuard(Box::new(guard)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time() {
        let locks = LocalLocks::default();
        let held = locks.lock("files/a").await.unwrap();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("files/a"));
        assert!(waiting.await.is_err(), "a second writer waits");
        drop(held);
        locks.lock("files/a").await.unwrap();
    }
}
