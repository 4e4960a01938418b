//! The ledger: what must be remembered about keys after they are issued.
//!
//! A valet key is self-contained, so a store can check it without the gate, but some facts
//! cannot live in the key itself: how often it has been used, whether it has been revoked, and
//! (for the gate's status API) which keys were issued at all. The ledger holds them. It is
//! shared by every store and gate node: one SQLite file for a single machine
//! ([`SqliteLedger`]), or a PostgreSQL database for many ([`PgLedger`]), behind the same
//! [`Ledger`] trait; [`open`] picks one from a location.
//!
//! Guarantees:
//! - **Exact use counting.** [`Ledger::admit`] consumes one use atomically; with `max_uses = 1`
//!   and any number of concurrent requests, exactly one is admitted. A use is consumed when a
//!   request is admitted, before any byte moves: a transfer that fails later still used it.
//! - **Revocation is immediate, or bounded.** A revocation written through any `Ledger` on the
//!   same database is seen by the next `admit` of every other, in this process or another
//!   ([`SqliteLedger`]: within [`SqliteOptions::freshness`] for a key without a use cap;
//!   [`PgLedger`]: by notification, typically within milliseconds, for a key without a use cap,
//!   and at once for one with a cap).
//!   [`Ledger::revocation`] answers the same question without consuming a use, by the same
//!   rule as `admit`, always on the latest committed revocations.
//! - **Issued keys are durable.** [`Ledger::record_issued`] returns only once the record is
//!   committed to stable storage (so the gate may hand out the key afterwards), and the record
//!   is then visible to [`Ledger::issued`] through every `Ledger` on the same database.
//!   Concurrent records share commits (see [`SqliteLedger`]), so minting one key per request
//!   does not cost one disk flush per request.
//! - **Bounded growth.** [`Ledger::forget_expired`] drops uses, revocations by id and issued
//!   records of keys past their expiry (plus a grace period for clock skew).
//! - **Fail closed.** If the database cannot be read or written, `admit` returns an error and
//!   the caller must refuse the request. A [`PgLedger`] that cannot confirm its revocations are
//!   current for longer than [`PgOptions::staleness`] fails every `admit` the same way.

mod group;
pub mod locks;
mod postgres;
mod sqlite;
mod view;

pub use locks::{LocalLocks, NameLock, NameLocks};
pub use postgres::{PgLedger, PgNameLocks, PgOptions, FEED_APPLICATION_NAME};
pub use sqlite::{SqliteLedger, SqliteOptions};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use valet_key::{KeyId, UnixTime, DEFAULT_SKEW_SECONDS};

/// What [`open`] needs besides the location: the options both backends share.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenOptions {
    /// How long rows are kept past a key's expiry (see [`SqliteOptions::forget_grace`]).
    pub forget_grace: Duration,
    /// PostgreSQL: how long a node may go without confirming its revocations before it
    /// refuses keyed requests (see [`PgOptions::staleness`]). SQLite reads the file itself.
    pub staleness: Duration,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            forget_grace: Duration::from_secs(DEFAULT_SKEW_SECONDS),
            staleness: PgOptions::default().staleness,
        }
    }
}

impl OpenOptions {
    /// These options with another grace period.
    pub fn with_forget_grace(mut self, grace: Duration) -> OpenOptions {
        self.forget_grace = grace;
        self
    }

    /// These options with another staleness bound.
    pub fn with_staleness(mut self, staleness: Duration) -> OpenOptions {
        self.staleness = staleness;
        self
    }
}

/// Which backend a ledger location names: `postgres://…` or `postgresql://…` a PostgreSQL
/// database, `sqlite:PATH` (or `sqlite://PATH`) or a bare path a SQLite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend<'a> {
    /// A PostgreSQL URL, as given.
    Postgres(&'a str),
    /// A SQLite file.
    Sqlite(&'a Path),
}

impl Backend<'_> {
    /// The backend `location` names.
    pub fn of(location: &str) -> Backend<'_> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            return Backend::Postgres(location);
        }
        let path = location
            .strip_prefix("sqlite://")
            .or_else(|| location.strip_prefix("sqlite:"))
            .unwrap_or(location);
        Backend::Sqlite(Path::new(path))
    }
}

/// Opens the ledger at `location` (see [`Backend::of`]): the one place that chooses a
/// backend, for the binary's `--ledger` and its offline admin commands.
pub fn open(location: &str, options: &OpenOptions) -> Result<Arc<dyn Ledger>, LedgerError> {
    Ok(match Backend::of(location) {
        Backend::Postgres(url) => Arc::new(PgLedger::open_with(
            url,
            PgOptions::default()
                .with_forget_grace(options.forget_grace)
                .with_staleness(options.staleness),
        )?),
        Backend::Sqlite(path) => Arc::new(SqliteLedger::open_with(
            path,
            SqliteOptions::default().with_forget_grace(options.forget_grace),
        )?),
    })
}

/// What the ledger needs to know about a key to admit a request made with it.
#[derive(Debug, Clone, Copy)]
pub struct KeyUse<'a> {
    /// The key's id.
    pub key_id: KeyId,
    /// Who it was issued to, for revocation by subject.
    pub subject: Option<&'a str>,
    /// When it was issued (its signed not-before), for revocation "issued before T".
    pub issued_at: UnixTime,
    /// When the key itself expires: its signed claims' expiry, never a caveat's. The ledger
    /// keeps the key's use count (and may forget it) by this time plus the grace for clock
    /// skew; a caveat's earlier expiry would let the count be forgotten while the root key,
    /// or another narrowing of it, is still valid, and the key would be as good as new.
    pub key_expires: UnixTime,
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

/// A key as the gate issued it: what [`Ledger::record_issued`] keeps so that the gate can
/// report a key's status and revoke it given only its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedKey {
    /// The key's id.
    pub key_id: KeyId,
    /// Who it was issued to.
    pub subject: Option<String>,
    /// The gate principal that obtained it.
    pub issued_by: String,
    /// Its scope, as text (for example `blob:files/a.txt`).
    pub resource: String,
    /// Its operations, comma-separated (for example `read,list`).
    pub ops: String,
    /// Its signed not-before: the time that revocations "issued before T" compare against,
    /// the same value a store passes as [`KeyUse::issued_at`].
    pub issued_at: UnixTime,
    /// Its expiry (the first second it is no longer valid).
    pub expires: UnixTime,
    /// Its cap on uses, if any.
    pub max_uses: Option<u64>,
}

impl IssuedKey {
    /// What [`Ledger::admit`] and [`Ledger::revocation`] need to know about this key.
    pub fn key_use(&self) -> KeyUse<'_> {
        KeyUse {
            key_id: self.key_id,
            subject: self.subject.as_deref(),
            issued_at: self.issued_at,
            key_expires: self.expires,
            max_uses: self.max_uses,
        }
    }
}

/// Why a key is revoked: the answer of [`Ledger::revocation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The key id itself was revoked.
    Key,
    /// Every key of the key's subject issued before `before` was revoked.
    Subject {
        /// Keys of the subject issued before this are revoked (the latest such time).
        before: UnixTime,
    },
    /// Every key issued before `before` was revoked.
    All {
        /// Keys issued before this are revoked (the latest such time).
        before: UnixTime,
    },
}

/// Why the ledger could not do what was asked. Callers must fail closed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database failed: locked, unwritable, corrupt, gone, unreachable, or (PostgreSQL)
    /// the node cannot vouch that its revocations are current.
    #[error("ledger unavailable: {0}")]
    Unavailable(Unavailable),
    /// [`Ledger::record_issued`] was given a key id that is already recorded with other
    /// details. Key ids are random 128-bit values, so this means a bug or a replayed request,
    /// never a coincidence.
    #[error("key {key_id} is already recorded as issued, with other details")]
    Conflict {
        /// The key id recorded twice.
        key_id: KeyId,
    },
}

/// The error a driver reported, kept whole for whoever wants to look into it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the ledger is unavailable: what it was doing, and the driver's error that stopped it.
///
/// Its text is the whole story on one line (what, the driver's error and each error under it,
/// and a hint where the driver's words are terse), because that is what reaches an operator's
/// log or a CLI's message: `cannot count a use of key … in /var/lib/valet/ledger.sqlite:
/// database is locked (another connection held the lock …)`. The driver's error itself is
/// kept, for code that needs to tell causes apart, by [`Unavailable::cause`], not by
/// [`std::error::Error::source`]: a reporter that walks the source chain would print it twice.
/// Nothing in it names a password: a PostgreSQL ledger is named by host, port and database only.
#[derive(Debug)]
pub struct Unavailable {
    context: String,
    cause: Option<BoxError>,
    hint: Option<String>,
}

impl Unavailable {
    /// `context` (what the ledger was doing) failed because of `cause`.
    pub fn new(context: impl Into<String>, cause: impl Into<BoxError>) -> Unavailable {
        Unavailable {
            context: context.into(),
            cause: Some(cause.into()),
            hint: None,
        }
    }

    /// `context` failed, for a reason of the ledger's own (no driver error behind it).
    pub fn because(context: impl Into<String>) -> Unavailable {
        Unavailable {
            context: context.into(),
            cause: None,
            hint: None,
        }
    }

    /// The same, with a hint for the operator appended to the message.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Unavailable {
        self.hint = Some(hint.into());
        self
    }

    /// The driver's error, if one caused this.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.context)?;
        let mut next: Option<&(dyn std::error::Error + 'static)> = match &self.cause {
            Some(cause) => Some(cause.as_ref()),
            None => None,
        };
        let mut last = String::new();
        while let Some(err) = next {
            let text = err.to_string();
            // Some drivers repeat their source's text in their own: say it once.
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            next = err.source();
        }
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// A message alone, for callers (and tests) that have no driver error to keep.
impl From<&str> for Unavailable {
    fn from(context: &str) -> Unavailable {
        Unavailable::because(context)
    }
}

/// See `From<&str>`.
impl From<String> for Unavailable {
    fn from(context: String) -> Unavailable {
        Unavailable::because(context)
    }
}

/// Uses and revocations of keys, and the record of issued ones.
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

    /// Records that `key` was issued, durably: when this returns `Ok`, the record survives a
    /// crash or a power loss, and [`Ledger::issued`] finds it through every `Ledger` on the
    /// same database.
    ///
    /// Recording the same key id again is an error-free no-op if every field is the same (so
    /// a retried call is harmless); with any field different it fails with
    /// [`LedgerError::Conflict`] and the first record stays.
    fn record_issued(&self, key: &IssuedKey) -> Result<(), LedgerError>;

    /// The record of an issued key, if there is one (it may have been forgotten after expiry
    /// by [`Ledger::forget_expired`], or issued elsewhere than through the gate).
    fn issued(&self, key_id: KeyId) -> Result<Option<IssuedKey>, LedgerError>;

    /// Whether `key` is revoked, and how, without consuming a use: `Some` exactly when
    /// [`Ledger::admit`] would answer [`Admission::Revoked`]. It always looks at the latest
    /// committed revocations, as `admit` does for a key with a use cap ([`SqliteLedger`] may
    /// admit a key without one on a view up to [`SqliteOptions::freshness`] old). When several
    /// revocations apply, the one by id is reported, else the one by subject, else the one by
    /// time.
    fn revocation(&self, key: &KeyUse<'_>) -> Result<Option<Revocation>, LedgerError>;

    /// Forgets uses, revocations and issued records of keys that expired before `now`: they
    /// can no longer be presented anyway. Returns how many rows were removed.
    ///
    /// Verifiers still accept a key for their clock-skew tolerance after it expires, so an
    /// implementation keeps rows at least that long past expiry ([`SqliteLedger`] keeps them
    /// for [`SqliteOptions::forget_grace`], 30 s by default). Revocations by subject or by time,
    /// and revocations by id recorded without an expiry, are never forgotten.
    fn forget_expired(&self, now: UnixTime) -> Result<u64, LedgerError>;

    /// Locks on names, shared by every user of this ledger (see [`locks`]): across nodes for
    /// [`PgLedger`], within this process for [`SqliteLedger`].
    fn name_locks(&self) -> std::sync::Arc<dyn NameLocks>;
}
