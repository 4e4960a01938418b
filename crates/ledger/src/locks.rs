//! Name locks: mutual exclusion between every writer of a deployment, on the ledger's database.
//!
//! Some decisions must be taken by one writer at a time across all nodes, and the storage
//! under them cannot arbitrate: Garage, for one, ignores S3's conditional writes
//! (`If-None-Match: *` and `If-Match` on `PUT` overwrite), so a store that offers create-only
//! and compare-and-swap over a bucket must compare the current version and commit while no
//! other node can. The ledger is the one database every node already shares, so it lends the
//! lock: an advisory lock on PostgreSQL ([`crate::PgLedger`]), held by a session, so that a
//! node that dies releases it with its connection; striped in-process mutexes for the SQLite
//! ledger, whose deployment is one machine and one process ([`LocalLocks`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::LedgerError;

/// A held lock; released when dropped.
pub struct NameLock {
    _held: Box<dyn Send + Sync>,
}

impl NameLock {
    /// A lock that is released when `held` is dropped.
    pub fn new(held: impl Send + Sync + 'static) -> NameLock {
        NameLock {
            _held: Box::new(held),
        }
    }
}

impl fmt::Debug for NameLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NameLock")
    }
}

/// The future of [`NameLocks::lock`].
/// It borrows nothing, so that it can be awaited after the locks it came from are dropped.
pub type LockFuture = Pin<Box<dyn Future<Output = Result<NameLock, LedgerError>> + Send>>;

/// Locks on names, one holder per name at a time.
pub trait NameLocks: Send + Sync + fmt::Debug + 'static {
    /// Waits for the lock on `name` and takes it. Fails with [`LedgerError::Unavailable`]
    /// when the lock cannot be had in the ledger's timeout (the database is down, or another
    /// holder keeps it that long): the caller must then not do what the lock guards.
    fn lock(&self, name: &str) -> LockFuture;

    /// Whether holders on other machines are excluded too (`false`: only this process's).
    fn across_nodes(&self) -> bool;
}

/// Locks held in this process: 256 striped async mutexes (two names may share a stripe and
/// then wait for each other, which costs only a little concurrency).
#[derive(Debug)]
pub struct LocalLocks {
    stripes: Vec<Arc<tokio::sync::Mutex<()>>>,
}

impl Default for LocalLocks {
    fn default() -> LocalLocks {
        LocalLocks {
            stripes: (0..256).map(|_| Arc::default()).collect(),
        }
    }
}

impl NameLocks for LocalLocks {
    fn lock(&self, name: &str) -> LockFuture {
        let stripe = lock_key(name).unsigned_abs() as usize % self.stripes.len();
        let stripe = self.stripes[stripe].clone();
        Box::pin(async move { Ok(NameLock::new(stripe.lock_owned().await)) })
    }

    fn across_nodes(&self) -> bool {
        false
    }
}

/// The 64-bit key of `name`'s lock: the same on every node and in every version of Valet
/// (the first eight bytes of a labelled SHA-256, never a `Hasher`, whose output may change
/// between Rust releases and would let two versions in one rollout lock different keys).
pub(crate) fn lock_key(name: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(b"valet/name-lock\0")
        .chain_update(name.as_bytes())
        .finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn lock_keys_are_stable_and_tell_names_apart() {
        assert_ne!(lock_key("files/a"), lock_key("files/b"));
        // Pinned: every node and every version must compute the same key for a name.
        assert_eq!(lock_key("files/a"), 0x214f_80ad_61e7_9a05);
        assert_eq!(lock_key(""), 0xe069_12c7_e2a5_e568_u64 as i64);
    }

    #[tokio::test]
    async fn local_locks_admit_one_holder_per_name() {
        let locks = LocalLocks::default();
        let held = locks.lock("files/a").await.unwrap();
        let second = tokio::time::timeout(Duration::from_millis(50), locks.lock("files/a"));
        assert!(second.await.is_err(), "a second holder waits");
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(5), locks.lock("files/a"));
        assert!(again.await.is_ok(), "released when dropped");
        assert!(!locks.across_nodes());
    }
}
