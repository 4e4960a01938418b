//! The ledger: what must be remembered about keys after they are issued.
//!
//! A valet key is self-contained, so a store can check it without the gate, but two facts
//! cannot live in the key itself: how often it has been used, and whether it has been revoked.
//! The ledger holds both. It is shared by every store and gate node (one SQLite file for a
//! single machine; PostgreSQL later, behind the same [`Ledger`] trait).
//!
//! Guarantees:
//! - **Exact use counting.** [`Ledger::admit`] consumes one use atomically; with `max_uses = 1`
//!   and any number of concurrent requests, exactly one is admitted. A use is consumed when a
//!   request is admitted, before any byte moves: a transfer that fails later still used it.
//! - **Revocation is immediate.** A revocation written through any `Ledger` on the same database
//!   is seen by the next `admit` of every other, in this process or another.
//! - **Fail closed.** If the database cannot be read or written, `admit` returns an error and
//!   the caller must refuse the request.

mod sqlite;

pub use sqlite::{SqliteLedger, SqliteOptions};

use valet_key::{KeyId, UnixTime};

/// What the ledger needs to know about a key to admit a request made with it.
#[derive(Debug, Clone, Copy)]
pub struct KeyUse<'a> {
    /// The key's id.
    pub key_id: KeyId,
    /// Who it was issued to, for revocation by subject.
    pub subject: Option<&'a str>,
    /// When it was issued (its signed not-before), for revocation "issued before T".
    pub issued_at: UnixTime,
    /// When it expires, so the ledger can forget it afterwards.
    pub expires: UnixTime,
    /// The cap on uses, if any. Without one, admitting touches no disk.
    pub max_uses: Option<u64>,
}

/// The ledger's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; `uses` is the count including this request (0 when uses are not counted).
    Admitted {
        /// Uses of the key so far, this one included.
        uses: u64,
    },
    /// The key was revoked, by id, by subject or by time.
    Revoked,
    /// The key has been used `max_uses` times already.
    Exhausted,
}

/// A key's state in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyStatus {
    /// Counted uses so far.
    pub uses: u64,
    /// Whether the key id itself was revoked (revocations by subject or time need the key's
    /// claims to decide and are not reflected here).
    pub revoked: bool,
}

/// Why the ledger could not answer. Callers must fail closed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database failed: locked, unwritable, corrupt, gone.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
}

/// Uses and revocations of keys.
pub trait Ledger: Send + Sync + 'static {
    /// Checks whether `key` is revoked and, if it has a use cap, consumes one use.
    fn admit(&self, key: &KeyUse<'_>, now: UnixTime) -> Result<Admission, LedgerError>;

    /// Revokes one key. Returns whether it was not revoked before. `expires` is the key's
    /// expiry, after which [`Ledger::forget_expired`] may drop the revocation; `None` keeps it
    /// forever.
    fn revoke_key(
        &self,
        key_id: KeyId,
        expires: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<bool, LedgerError>;

    /// Revokes every key issued to `subject` before `before` (keys issued at or after it stay
    /// valid). Only the latest `before` per subject matters; an earlier one changes nothing.
    fn revoke_subject(
        &self,
        subject: &str,
        before: UnixTime,
        now: UnixTime,
    ) -> Result<(), LedgerError>;

    /// Revokes every key issued before `before`. Only the latest `before` matters.
    fn revoke_all_before(&self, before: UnixTime, now: UnixTime) -> Result<(), LedgerError>;

    /// The recorded state of one key.
    fn status(&self, key_id: KeyId) -> Result<KeyStatus, LedgerError>;

    /// Forgets uses and revocations of keys that expired before `now`: they can no longer be
    /// presented anyway. Returns how many rows were removed.
    ///
    /// Verifiers still accept a key for their clock-skew tolerance after it expires, so an
    /// implementation keeps rows at least that long past expiry ([`SqliteLedger`] keeps them
    /// for [`SqliteOptions::forget_grace`], 30 s by default). Revocations by subject or by time
    /// are never forgotten.
    fn forget_expired(&self, now: UnixTime) -> Result<u64, LedgerError>;
}
