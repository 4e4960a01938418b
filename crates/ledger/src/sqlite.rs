//! The ledger in one SQLite file: [`SqliteLedger`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use valet_key::{KeyId, UnixTime, DEFAULT_SKEW_SECONDS};

use crate::group::GroupCommit;
use crate::locks::{LocalLocks, NameLocks};
use crate::view::View;
use crate::{
    Admission, IssuedKey, KeyStatus, KeyUse, Ledger, LedgerError, Revocation, Unavailable,
};

/// The schema this build writes, kept in `PRAGMA user_version`. A migration from an older
/// version goes in [`migrate`]; a newer version is refused.
const SCHEMA_VERSION: i64 = 3;

/// `PRAGMA application_id` of a ledger file ("VLDG"), so that `valet` refuses to use some
/// other SQLite database as its ledger.
const APPLICATION_ID: i64 = 0x564c_4447;

/// Schema version 1, as every build up to the one that introduced version 2 created it. Never
/// change it: a new file is made by running it and then every migration in turn.
///
/// Times are Unix seconds. Every revocation row carries `seq`, the value of `meta.seq` after
/// the write that added or raised it, so that readers load only what changed; `meta.purges`
/// counts deletions of revocation rows, after which readers reload everything.
const SCHEMA_V1: &str = "
CREATE TABLE meta (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    seq    INTEGER NOT NULL,
    purges INTEGER NOT NULL
);
INSERT INTO meta (id, seq, purges) VALUES (1, 0, 0);

CREATE TABLE uses (
    key_id  BLOB PRIMARY KEY NOT NULL CHECK (length(key_id) = 16),
    count   INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE INDEX uses_expires ON uses (expires);

CREATE TABLE revoked_keys (
    key_id     BLOB PRIMARY KEY NOT NULL CHECK (length(key_id) = 16),
    revoked_at INTEGER NOT NULL,
    expires    INTEGER,          -- NULL: kept forever
    seq        INTEGER NOT NULL
);
CREATE INDEX revoked_keys_seq ON revoked_keys (seq);
CREATE INDEX revoked_keys_expires ON revoked_keys (expires);

CREATE TABLE revoked_subjects (
    subject    TEXT PRIMARY KEY NOT NULL,
    before     INTEGER NOT NULL, -- keys issued before this are revoked; only ever raised
    revoked_at INTEGER NOT NULL,
    seq        INTEGER NOT NULL
);
CREATE INDEX revoked_subjects_seq ON revoked_subjects (seq);

CREATE TABLE revoked_all (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    before     INTEGER NOT NULL, -- keys issued before this are revoked; only ever raised
    revoked_at INTEGER NOT NULL,
    seq        INTEGER NOT NULL
);
";

/// From schema version 1 to 2: the keys the gate issued, for its status API and for revoking
/// a key by id alone. Not part of the revocation view, so rows carry no `seq`.
const MIGRATE_V1_TO_V2: &str = "
CREATE TABLE issued (
    key_id    BLOB PRIMARY KEY NOT NULL CHECK (length(key_id) = 16),
    subject   TEXT,             -- NULL: issued to no subject
    issued_by TEXT NOT NULL,    -- the gate principal that obtained the key
    resource  TEXT NOT NULL,    -- the scope, as text
    ops       TEXT NOT NULL,    -- operation names, comma-separated
    issued_at INTEGER NOT NULL, -- the signed not-before
    expires   INTEGER NOT NULL,
    max_uses  INTEGER           -- NULL: uses not counted
);
CREATE INDEX issued_expires ON issued (expires);
";

/// From schema version 2 to 3: builds before version 3 kept a use count until the expiry of
/// the token it was first counted with, a caveat's if the first use came through an
/// attenuated copy, so that pruning could forget the count while the key itself was still
/// valid (and the key was then as good as new). Version 3 keeps it until the key's own expiry.
/// Rows written before cannot tell which expiry they carry: each is raised to its key's
/// issued record's expiry where the gate recorded one, and kept forever otherwise (a key
/// issued offline, whose expiry the ledger never learnt; a few rows, once).
const MIGRATE_V2_TO_V3: &str = "
UPDATE uses SET expires = max(expires,
    coalesce((SELECT issued.expires FROM issued WHERE issued.key_id = uses.key_id),
             9223372036854775807));
";

/// Rows of each table one pruning transaction removes at most. Pruning holds the writer, which
/// every issue record, counted use and revocation needs: a minute's expired keys under heavy
/// load (about 100,000 issued records) in one transaction held it for up to 2 s. In batches of
/// 2,000, each transaction takes tens of milliseconds and the waiting writers go in between.
/// Smaller batches would cost more: the `key_id` index is random, so every batch rewrites most
/// of the index pages it touches, and each transaction is an fsync.
const PRUNE_BATCH: usize = 2_000;
/// The pause between two pruning transactions, for the writers that queued behind the first.
const PRUNE_PAUSE: Duration = Duration::from_millis(2);

/// `PRAGMA cache_size` of the reader connection: 256 KiB (negative: KiB, not pages). The
/// reader only looks at `meta` and at the revocation rows added since its last look, and in
/// WAL mode SQLite empties a connection's page cache whenever another connection committed
/// since its previous transaction, which under load is nearly every time. With SQLite's
/// default (2,000 KiB) this cache of no use grew at each large `forget_expired` deletion
/// (measured with heaptrack under `bench/load.sh`: 20 KiB, then 725 KiB after the first
/// one; RSS rose again at the next ones), allocated on the connections' worker threads, whose
/// glibc arenas then kept the high-water mark. The writer keeps the default: its cache is hit.
const READER_CACHE_SIZE: i64 = -256;

/// The most records [`Ledger::record_issued`] commits in one transaction; more waiting
/// callers are served by the next one. It bounds how long the writer connection is held
/// (and so how long a counted admission may wait behind a batch), not throughput: a batch of
/// this size is a few milliseconds of inserts against one fsync.
const MAX_ISSUE_BATCH: usize = 256;

/// How to open a [`SqliteLedger`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// How long a connection waits for another one's lock before the ledger reports
    /// [`LedgerError::Unavailable`]. Default: 5 s.
    pub busy_timeout: Duration,
    /// How long after a key's expiry [`Ledger::forget_expired`] still keeps its uses and its
    /// revocation. It must be at least the clock-skew tolerance of every verifier that checks
    /// keys against this ledger: a key is still accepted that long after it expires, and
    /// forgetting its uses earlier would let a one-time key be used again. Default:
    /// [`DEFAULT_SKEW_SECONDS`].
    pub forget_grace: Duration,
    /// How stale the revocation view may be for a key without a use cap: another connection's
    /// commits are looked for at most this often. Asking SQLite costs two file-lock system
    /// calls, the larger part of admitting such a key; at one look per millisecond, a store
    /// serving tens of thousands of requests a second asks a few dozen times fewer, and a
    /// revocation from another process still bites within a millisecond. Revocations through
    /// this same ledger, and every admission of a key with a use cap, are never stale.
    /// Default: 1 ms; zero looks on every admission.
    pub freshness: Duration,
}

impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            forget_grace: Duration::from_secs(DEFAULT_SKEW_SECONDS),
            freshness: Duration::from_millis(1),
        }
    }
}

impl SqliteOptions {
    /// These options with another busy timeout.
    pub fn with_busy_timeout(mut self, timeout: Duration) -> SqliteOptions {
        self.busy_timeout = timeout;
        self
    }

    /// These options with another bound on the revocation view's staleness.
    pub fn with_freshness(mut self, freshness: Duration) -> SqliteOptions {
        self.freshness = freshness;
        self
    }

    /// These options with another grace period for [`Ledger::forget_expired`].
    pub fn with_forget_grace(mut self, grace: Duration) -> SqliteOptions {
        self.forget_grace = grace;
        self
    }
}

/// The [`Ledger`] in one SQLite file, shared by every store and gate process on a machine.
///
/// # Durability
///
/// The database runs in WAL mode with `synchronous = FULL`: every commit is fsynced to the
/// write-ahead log before [`Ledger::admit`] returns. With `NORMAL` (the usual WAL setting) a
/// commit survives a crash of the process but not a power loss: the last transactions can roll
/// back. For this ledger that would mean a one-time key that was admitted, whose bytes were
/// served, becomes unused again after a reboot and can be presented a second time. A revocation
/// could likewise vanish. So every counted use and every revocation costs one fsync; admitting a
/// key without a use cap costs none.
///
/// # Connections and locks
///
/// A [`SqliteLedger`] holds two connections, each behind its own mutex, and never holds both
/// mutexes at once:
///
/// - the *reader*, with the in-memory view of all revocations. Every `admit` asks it for
///   `PRAGMA data_version`, which changes when another connection (in this process or another)
///   has committed; only then does it read the revocation tables, and only the rows added since
///   the last look (each revocation carries a sequence number). A key without a use cap is thus
///   admitted without reading the database file in the common case: the check reads SQLite's
///   shared-memory WAL index and takes and drops a shared lock (about 2.5 µs in all, measured
///   with `examples/admit_timing.rs`).
/// - the *writer*, which counts uses and writes revocations. It is held across the commit's
///   fsync, so keeping it apart lets uncounted admits go on while a counted one waits for the disk.
///
/// Several processes share the file through SQLite's own locking: a writer waits for another
/// process's write for up to the busy timeout (5 s by default), then fails, and the ledger
/// reports [`LedgerError::Unavailable`]: the caller refuses the request. It polls the write lock
/// at most 1 ms apart: SQLite's own busy handler backs off to 100 ms sleeps and, against a
/// process that commits use after use, almost never finds the lock free. Any other SQLite error
/// is reported the same way; no error ever admits a request.
///
/// # Recording issued keys: group commit
///
/// The gate mints a key, and records it with [`Ledger::record_issued`], for every request on a
/// delegate route, and may answer only once the record is durable. One fsync'd transaction per
/// record caps the gate at one key per fsync whatever the number of callers: measured with
/// `examples/issue_timing.rs`, 300 to 7,000 records a second with 16 callers depending on how
/// long the disk takes to flush, and a worst wait near a second, as the writer mutex is not
/// fair. So concurrent records share transactions: a caller queues its record; if no batch is
/// being written it leads, and writes every queued record (up to 256) in one transaction on the
/// writer connection; callers that arrive meanwhile wait, and the next of them leads the next
/// batch with everything queued during the previous commit. Every caller returns only after the
/// transaction holding its record committed, with its own answer (a [`LedgerError::Conflict`]
/// for one record does not fail the others; a failed transaction fails all its records). A
/// caller alone commits at once, as before; under load one fsync carries as many records as
/// arrived while the previous one ran (6,000 to 20,000 a second with 16 callers on the same
/// disk, worst wait tens of milliseconds). Leader and followers, rather than a writer thread,
/// because it needs no thread to start and stop with the ledger and adds no hand-off when there
/// is no contention. Uses and revocations are still committed one by one.
pub struct SqliteLedger {
    path: PathBuf,
    options: SqliteOptions,
    /// Counts uses and writes revocations and issued keys; held across fsyncs.
    writer: Mutex<Connection>,
    /// Batches concurrent [`Ledger::record_issued`] calls into shared transactions.
    issuing: GroupCommit<IssuedKey, Result<(), LedgerError>>,
    /// Checks for other connections' commits and keeps the revocation view; never held across
    /// a commit.
    reader: Mutex<ReadSide>,
    /// Name locks for this process: a SQLite deployment is one machine (see [`crate::locks`]).
    locks: Arc<LocalLocks>,
}

impl fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteLedger")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The reader connection and the revocation view it keeps current.
struct ReadSide {
    conn: Connection,
    view: View,
    /// `PRAGMA data_version` when the view was last brought up to date; `None` forces a full
    /// reload.
    data_version: Option<i64>,
    /// `meta.seq` and `meta.purges` at that time.
    seq: i64,
    purges: i64,
    /// When other connections' commits were last looked for.
    checked_at: Option<Instant>,
}

impl ReadSide {
    /// Brings the view up to date with every committed revocation. On error the view is left
    /// as it was and the next call tries again.
    fn refresh(&mut self) -> rusqlite::Result<()> {
        let data_version: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        if self.data_version == Some(data_version) {
            return Ok(());
        }
        // One read transaction, so that `meta` and the rows agree.
        let tx = self.conn.transaction()?;
        let (seq, purges): (i64, i64) = tx
            .prepare_cached("SELECT seq, purges FROM meta WHERE id = 1")?
            .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        // After deletions, or if the sequence went back (the file was replaced), start over.
        let full = self.data_version.is_none() || purges != self.purges || seq < self.seq;
        if full || seq != self.seq {
            let since = if full { i64::MIN } else { self.seq };
            let keys = tx
                .prepare_cached("SELECT key_id FROM revoked_keys WHERE seq > ?1")?
                .query_map([since], |row| row.get::<_, [u8; 16]>(0).map(KeyId))?
                .collect::<rusqlite::Result<Vec<KeyId>>>()?;
            let subjects = tx
                .prepare_cached("SELECT subject, before FROM revoked_subjects WHERE seq > ?1")?
                .query_map([since], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<(String, u64)>>>()?;
            let all_before: Option<u64> = tx
                .prepare_cached("SELECT before FROM revoked_all WHERE id = 1")?
                .query_row([], |row| row.get(0))
                .optional()?;
            tx.commit()?;
            if full {
                self.view = View::default();
            }
            self.view.keys.extend(keys);
            for (subject, before) in subjects {
                self.view.revoke_subject(&subject, before);
            }
            self.view.all_before = self.view.all_before.max(all_before.unwrap_or(0));
        } else {
            tx.commit()?;
        }
        self.data_version = Some(data_version);
        self.seq = seq;
        self.purges = purges;
        Ok(())
    }
}

/// SQLite integers are signed: times and counts beyond `i64::MAX` (292 billion years) are
/// stored as `i64::MAX`.
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A hint where SQLite's own words are terse.
fn hint(err: &rusqlite::Error, options: &SqliteOptions) -> Option<String> {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Some(format!(
            "another connection held the lock longer than the {:?} busy timeout",
            options.busy_timeout
        )),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            Some("the file is damaged or is not a valet ledger".to_owned())
        }
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
            Some("check that the file and its directory are writable".to_owned())
        }
        Some(ErrorCode::DiskFull) => Some("the disk is full".to_owned()),
        _ => None,
    }
}

/// `context` failed with `err`, kept as the cause, with a hint where one helps.
fn sql_unavailable(context: String, err: rusqlite::Error, options: &SqliteOptions) -> LedgerError {
    let hint = hint(&err, options);
    let unavailable = Unavailable::new(context, err);
    LedgerError::Unavailable(match hint {
        Some(hint) => unavailable.with_hint(hint),
        None => unavailable,
    })
}

impl SqliteLedger {
    /// Opens the ledger at `path` with default [`SqliteOptions`], creating the file (owner-only
    /// on unix) and its schema if absent.
    pub fn open(path: &Path) -> Result<SqliteLedger, LedgerError> {
        SqliteLedger::open_with(path, SqliteOptions::default())
    }

    /// Opens the ledger at `path`, creating the file (owner-only on unix) and its schema if
    /// absent.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteLedger, LedgerError> {
        let context = |what: &str| format!("{what} {}", path.display());
        let fail = |what: &str, err: rusqlite::Error| sql_unavailable(context(what), err, &options);
        create_owner_only(path).map_err(|err| {
            LedgerError::Unavailable(Unavailable::new(
                context("cannot create ledger database"),
                err,
            ))
        })?;
        let mut writer =
            connect(path, &options).map_err(|err| fail("cannot open ledger database", err))?;
        init_schema(&mut writer).map_err(|err| match err {
            SchemaError::Sql(err) => fail("cannot open ledger database", err),
            SchemaError::Foreign(why) => LedgerError::Unavailable(Unavailable::because(format!(
                "{}: {why}",
                context("cannot open ledger database")
            ))),
        })?;
        let reader = connect(path, &options)
            .and_then(|conn| {
                conn.pragma_update(None, "cache_size", READER_CACHE_SIZE)?;
                Ok(conn)
            })
            .map_err(|err| fail("cannot open ledger database", err))?;
        let mut read = ReadSide {
            conn: reader,
            view: View::default(),
            data_version: None,
            seq: 0,
            purges: 0,
            checked_at: None,
        };
        read.refresh()
            .map_err(|err| fail("cannot read revocations from", err))?;
        Ok(SqliteLedger {
            path: path.to_owned(),
            options,
            writer: Mutex::new(writer),
            reader: Mutex::new(read),
            locks: Arc::default(),
            issuing: GroupCommit::new(MAX_ISSUE_BATCH, || {
                Err(LedgerError::Unavailable(Unavailable::because(
                    "the transaction recording this key panicked",
                )))
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn unavailable(&self, what: fmt::Arguments<'_>, err: rusqlite::Error) -> LedgerError {
        sql_unavailable(
            format!("{what} in {}", self.path.display()),
            err,
            &self.options,
        )
    }

    /// The writer connection. A panic while it was held left no transaction open ([`WriteTx`]
    /// rolls back on drop), so a poisoned lock is taken over.
    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The reader side. After a panic while it was held the view may be half-updated, so it
    /// is reloaded in full before being trusted again.
    fn reader(&self) -> MutexGuard<'_, ReadSide> {
        self.reader.lock().unwrap_or_else(|poisoned| {
            self.reader.clear_poison();
            let mut read = poisoned.into_inner();
            read.data_version = None;
            read.checked_at = None;
            read
        })
    }

    /// Runs `f` in an IMMEDIATE transaction on the writer connection and commits it.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let conn = self.writer();
        let tx = WriteTx::begin(&conn, self.options.busy_timeout)?;
        let out = f(tx.conn)?;
        tx.commit()?;
        Ok(out)
    }

    /// Records a batch of issued keys in one transaction; one answer per key, in order, each
    /// given only after the transaction committed (or failed).
    fn write_issued(&self, batch: &[IssuedKey]) -> Vec<Result<(), LedgerError>> {
        let recorded = self.write(|tx| {
            batch
                .iter()
                .map(|key| insert_issued(tx, key))
                .collect::<rusqlite::Result<Vec<bool>>>()
        });
        match recorded {
            Ok(recorded) => batch
                .iter()
                .zip(recorded)
                .map(|(key, recorded)| match recorded {
                    true => Ok(()),
                    false => Err(LedgerError::Conflict { key_id: key.key_id }),
                })
                .collect(),
            Err(err) => {
                // One error for every record of the batch: shared, not copied.
                let hint = hint(&err, &self.options);
                let err = std::sync::Arc::new(err);
                batch
                    .iter()
                    .map(|key| {
                        let context = format!(
                            "cannot record key {} as issued in {}",
                            key.key_id,
                            self.path.display()
                        );
                        let unavailable = Unavailable::new(context, err.clone());
                        Err(LedgerError::Unavailable(match &hint {
                            Some(hint) => unavailable.with_hint(hint.clone()),
                            None => unavailable,
                        }))
                    })
                    .collect()
            }
        }
    }

    /// Consumes one use of `key` if fewer than `max_uses` (at least 1) were consumed.
    ///
    /// The count is kept until the key's own expiry, and a row's expiry is only ever raised,
    /// whether the use is admitted or refused: whichever token (the root or a narrowing of it)
    /// comes first, the count outlives every token of the key.
    fn consume(&self, key: &KeyUse<'_>, max_uses: u64) -> rusqlite::Result<Admission> {
        let (key_id, expires) = (&key.key_id.0[..], sql_int(key.key_expires.0));
        // Committed (and fsynced) by `write` before the caller may act on the answer.
        let count = self.write(|tx| {
            let counted = tx
                .prepare_cached(
                    "INSERT INTO uses (key_id, count, expires) VALUES (?1, 1, ?2)
                     ON CONFLICT (key_id) DO UPDATE SET count = count + 1,
                         expires = max(expires, excluded.expires)
                     WHERE count < ?3
                     RETURNING count",
                )?
                .query_row(params![key_id, expires, sql_int(max_uses)], |row| {
                    row.get::<_, u64>(0)
                })
                .optional()?;
            if counted.is_none() {
                // Exhausted: the row stays, and must stay as long as this key is valid.
                tx.prepare_cached(
                    "UPDATE uses SET expires = ?2 WHERE key_id = ?1 AND expires < ?2",
                )?
                .execute(params![key_id, expires])?;
            }
            Ok(counted)
        })?;
        Ok(match count {
            Some(uses) => Admission::Admitted { uses },
            None => Admission::Exhausted,
        })
    }
}

/// Creates the database file readable and writable by its owner only, unless it exists.
/// SQLite gives its `-wal` and `-shm` files the same permissions.
fn create_owner_only(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

fn connect(path: &Path, options: &SqliteOptions) -> rusqlite::Result<Connection> {
    // Not SQLITE_OPEN_CREATE: `create_owner_only` made the file.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(options.busy_timeout)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("cannot switch to WAL journal mode (still {mode})")),
        ));
    }
    // See the module docs: a counted use must survive a power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "trusted_schema", "OFF")?;
    Ok(conn)
}

enum SchemaError {
    Sql(rusqlite::Error),
    Foreign(String),
}

impl From<rusqlite::Error> for SchemaError {
    fn from(err: rusqlite::Error) -> SchemaError {
        SchemaError::Sql(err)
    }
}

/// Creates the schema in a new file, or checks (and one day migrates) an existing one.
fn init_schema(conn: &mut Connection) -> Result<(), SchemaError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let application_id: i64 = tx.query_row("PRAGMA application_id", [], |row| row.get(0))?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    match (application_id, version) {
        (0, 0) => {
            let objects: i64 =
                tx.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
            if objects != 0 {
                return Err(SchemaError::Foreign(
                    "the file is a SQLite database but not a valet ledger".to_owned(),
                ));
            }
            tx.execute_batch(SCHEMA_V1)?;
            tx.execute_batch(MIGRATE_V1_TO_V2)?;
            tx.execute_batch(MIGRATE_V2_TO_V3)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        (APPLICATION_ID, SCHEMA_VERSION) => {}
        (APPLICATION_ID, version) if version > SCHEMA_VERSION => {
            return Err(SchemaError::Foreign(format!(
                "the ledger has schema version {version}, newer than this build's \
                 {SCHEMA_VERSION}: upgrade valet"
            )));
        }
        (APPLICATION_ID, version) => migrate(&tx, version)?,
        (other, _) => {
            return Err(SchemaError::Foreign(format!(
                "the file is a SQLite database but not a valet ledger (application_id {other:#x})"
            )));
        }
    }
    tx.commit()?;
    Ok(())
}

/// Upgrades the schema from `version` to [`SCHEMA_VERSION`], inside the opening transaction:
/// either the whole upgrade commits with the version bump, or nothing changes. Other
/// connections wait for the transaction (it holds the write lock from its start), and an older
/// build that opens the file afterwards refuses it as newer than itself.
fn migrate(tx: &rusqlite::Transaction<'_>, version: i64) -> Result<(), SchemaError> {
    let steps: &[&str] = match version {
        1 => &[MIGRATE_V1_TO_V2, MIGRATE_V2_TO_V3],
        2 => &[MIGRATE_V2_TO_V3],
        _ => {
            return Err(SchemaError::Foreign(format!(
                "the ledger has unknown schema version {version}"
            )))
        }
    };
    for step in steps {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

impl Ledger for SqliteLedger {
    fn name_locks(&self) -> Arc<dyn NameLocks> {
        self.locks.clone()
    }

    fn admit(&self, key: &KeyUse<'_>, _now: UnixTime) -> Result<Admission, LedgerError> {
        {
            let mut read = self.reader();
            let stale = read
                .checked_at
                .is_none_or(|at| at.elapsed() >= self.options.freshness);
            if stale || key.max_uses.is_some() {
                read.refresh().map_err(|err| {
                    self.unavailable(format_args!("cannot read revocations"), err)
                })?;
                read.checked_at = Some(Instant::now());
            }
            if read.view.revocation(key).is_some() {
                return Ok(Admission::Revoked);
            }
        }
        match key.max_uses {
            None => Ok(Admission::Admitted { uses: 0 }),
            Some(0) => Ok(Admission::Exhausted),
            Some(max_uses) => self.consume(key, max_uses).map_err(|err| {
                self.unavailable(
                    format_args!("cannot count a use of key {}", key.key_id),
                    err,
                )
            }),
        }
    }

    fn revoke_key(
        &self,
        key_id: KeyId,
        expires: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<bool, LedgerError> {
        let fresh = self
            .write(|tx| write_revoked_key(tx, key_id, expires, now))
            .map_err(|err| self.unavailable(format_args!("cannot revoke key {key_id}"), err))?;
        self.reader().view.keys.insert(key_id);
        Ok(fresh)
    }

    fn revoke_subject(
        &self,
        subject: &str,
        before: UnixTime,
        now: UnixTime,
    ) -> Result<(), LedgerError> {
        self.write(|tx| write_revoked_subject(tx, subject, before, now))
            .map_err(|err| {
                self.unavailable(format_args!("cannot revoke subject {subject:?}"), err)
            })?;
        self.reader().view.revoke_subject(subject, before.0);
        Ok(())
    }

    fn revoke_all_before(&self, before: UnixTime, now: UnixTime) -> Result<(), LedgerError> {
        self.write(|tx| write_revoked_all(tx, before, now))
            .map_err(|err| self.unavailable(format_args!("cannot revoke all keys"), err))?;
        let mut read = self.reader();
        read.view.all_before = read.view.all_before.max(before.0);
        Ok(())
    }

    fn status(&self, key_id: KeyId) -> Result<KeyStatus, LedgerError> {
        read_status(&self.reader().conn, key_id).map_err(|err| {
            self.unavailable(format_args!("cannot read the status of key {key_id}"), err)
        })
    }

    fn record_issued(&self, key: &IssuedKey) -> Result<(), LedgerError> {
        // See "group commit" in the type's docs.
        self.issuing
            .submit(key.clone(), |batch| self.write_issued(batch))
    }

    fn issued(&self, key_id: KeyId) -> Result<Option<IssuedKey>, LedgerError> {
        read_issued(&self.reader().conn, key_id).map_err(|err| {
            self.unavailable(format_args!("cannot read the record of key {key_id}"), err)
        })
    }

    fn revocation(&self, key: &KeyUse<'_>) -> Result<Option<Revocation>, LedgerError> {
        let mut read = self.reader();
        read.refresh()
            .map_err(|err| self.unavailable(format_args!("cannot read revocations"), err))?;
        read.checked_at = Some(Instant::now());
        Ok(read.view.revocation(key))
    }

    fn forget_expired(&self, now: UnixTime) -> Result<u64, LedgerError> {
        let cutoff = now.minus(self.options.forget_grace.as_secs());
        let mut rows = 0;
        loop {
            let pruned = self
                .write(|tx| delete_expired(tx, cutoff, PRUNE_BATCH))
                .map_err(|err| self.unavailable(format_args!("cannot forget expired keys"), err))?;
            rows += pruned.rows;
            if !pruned.more {
                return Ok(rows);
            }
            // Let the issues, counted uses and revocations waiting for the writer go first.
            thread::sleep(PRUNE_PAUSE);
        }
    }
}

/// Records the revocation of `key_id`; whether it was not recorded before.
fn write_revoked_key(
    tx: &Connection,
    key_id: KeyId,
    expires: Option<UnixTime>,
    now: UnixTime,
) -> rusqlite::Result<bool> {
    let known = tx
        .prepare_cached("SELECT 1 FROM revoked_keys WHERE key_id = ?1")?
        .exists([&key_id.0[..]])?;
    if known {
        // Revoked already: the revocation must last as long as the longer of the two says
        // (`NULL`, forever, the longest), never shorter. Not part of the view: no `seq`.
        tx.prepare_cached(
            "UPDATE revoked_keys SET expires = CASE WHEN ?2 IS NULL THEN NULL
                 ELSE max(expires, ?2) END
             WHERE key_id = ?1 AND expires IS NOT NULL",
        )?
        .execute(params![&key_id.0[..], expires.map(|t| sql_int(t.0))])?;
        return Ok(false);
    }
    let seq = next_seq(tx)?;
    tx.prepare_cached(
        "INSERT INTO revoked_keys (key_id, revoked_at, expires, seq) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        &key_id.0[..],
        sql_int(now.0),
        expires.map(|t| sql_int(t.0)),
        seq
    ])?;
    Ok(true)
}

/// Records that keys of `subject` issued before `before` are revoked, unless a later time is
/// recorded already.
fn write_revoked_subject(
    tx: &Connection,
    subject: &str,
    before: UnixTime,
    now: UnixTime,
) -> rusqlite::Result<()> {
    let known: Option<u64> = tx
        .prepare_cached("SELECT before FROM revoked_subjects WHERE subject = ?1")?
        .query_row([subject], |row| row.get(0))
        .optional()?;
    if known.is_some_and(|known| known >= before.0) {
        return Ok(());
    }
    let seq = next_seq(tx)?;
    tx.prepare_cached(
        "INSERT INTO revoked_subjects (subject, before, revoked_at, seq) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (subject) DO UPDATE SET before = excluded.before,
             revoked_at = excluded.revoked_at, seq = excluded.seq",
    )?
    .execute(params![subject, sql_int(before.0), sql_int(now.0), seq])?;
    Ok(())
}

/// Records that all keys issued before `before` are revoked, unless a later time is recorded
/// already.
fn write_revoked_all(tx: &Connection, before: UnixTime, now: UnixTime) -> rusqlite::Result<()> {
    let known: Option<u64> = tx
        .prepare_cached("SELECT before FROM revoked_all WHERE id = 1")?
        .query_row([], |row| row.get(0))
        .optional()?;
    if known.unwrap_or(0) >= before.0 {
        return Ok(());
    }
    let seq = next_seq(tx)?;
    tx.prepare_cached(
        "INSERT INTO revoked_all (id, before, revoked_at, seq) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET before = excluded.before,
             revoked_at = excluded.revoked_at, seq = excluded.seq",
    )?
    .execute(params![sql_int(before.0), sql_int(now.0), seq])?;
    Ok(())
}

fn read_status(conn: &Connection, key_id: KeyId) -> rusqlite::Result<KeyStatus> {
    conn.prepare_cached(
        "SELECT (SELECT count FROM uses WHERE key_id = ?1),
                EXISTS (SELECT 1 FROM revoked_keys WHERE key_id = ?1)",
    )?
    .query_row([&key_id.0[..]], |row| {
        Ok(KeyStatus {
            uses: row.get::<_, Option<u64>>(0)?.unwrap_or(0),
            revoked: row.get(1)?,
        })
    })
}

/// Inserts the record of an issued key. Whether it is now recorded as given: `false` if the
/// key id was recorded already with other details (that record is kept).
fn insert_issued(tx: &Connection, key: &IssuedKey) -> rusqlite::Result<bool> {
    let values = params![
        &key.key_id.0[..],
        key.subject.as_deref(),
        key.issued_by,
        key.resource,
        key.ops,
        sql_int(key.issued_at.0),
        sql_int(key.expires.0),
        key.max_uses.map(sql_int),
    ];
    let inserted = tx
        .prepare_cached(
            "INSERT INTO issued
                 (key_id, subject, issued_by, resource, ops, issued_at, expires, max_uses)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (key_id) DO NOTHING",
        )?
        .execute(values)?;
    if inserted == 1 {
        return Ok(true);
    }
    // Recorded before: a no-op if the same in every field (`IS` compares NULLs as equal).
    tx.prepare_cached(
        "SELECT 1 FROM issued WHERE key_id = ?1 AND subject IS ?2 AND issued_by = ?3
             AND resource = ?4 AND ops = ?5 AND issued_at = ?6 AND expires = ?7
             AND max_uses IS ?8",
    )?
    .exists(values)
}

fn read_issued(conn: &Connection, key_id: KeyId) -> rusqlite::Result<Option<IssuedKey>> {
    conn.prepare_cached(
        "SELECT subject, issued_by, resource, ops, issued_at, expires, max_uses
         FROM issued WHERE key_id = ?1",
    )?
    .query_row([&key_id.0[..]], |row| {
        Ok(IssuedKey {
            key_id,
            subject: row.get(0)?,
            issued_by: row.get(1)?,
            resource: row.get(2)?,
            ops: row.get(3)?,
            issued_at: UnixTime(row.get(4)?),
            expires: UnixTime(row.get(5)?),
            max_uses: row.get(6)?,
        })
    })
    .optional()
}

/// Deletes uses, key revocations and issued records of keys that expired before `cutoff`.
fn delete_expired(tx: &Connection, cutoff: UnixTime, batch: usize) -> rusqlite::Result<Pruned> {
    let (cutoff, limit) = (sql_int(cutoff.0), sql_int(batch as u64));
    let uses = tx
        .prepare_cached(
            "DELETE FROM uses WHERE rowid IN \
             (SELECT rowid FROM uses WHERE expires < ?1 LIMIT ?2)",
        )?
        .execute([cutoff, limit])?;
    // A NULL `expires` (kept forever) is never less than anything.
    let revoked = tx
        .prepare_cached(
            "DELETE FROM revoked_keys WHERE rowid IN \
             (SELECT rowid FROM revoked_keys WHERE expires < ?1 LIMIT ?2)",
        )?
        .execute([cutoff, limit])?;
    if revoked > 0 {
        // Readers cannot see deletions by sequence number: make them reload in full.
        tx.prepare_cached("UPDATE meta SET purges = purges + 1 WHERE id = 1")?
            .execute([])?;
    }
    // Not part of the revocation view: readers need not reload.
    let issued = tx
        .prepare_cached(
            "DELETE FROM issued WHERE rowid IN \
             (SELECT rowid FROM issued WHERE expires < ?1 LIMIT ?2)",
        )?
        .execute([cutoff, limit])?;
    Ok(Pruned {
        rows: (uses + revoked + issued) as u64,
        more: uses == batch || revoked == batch || issued == batch,
    })
}

/// What one pruning transaction did.
struct Pruned {
    /// Rows removed.
    rows: u64,
    /// Whether a table may have more expired rows (one hit the batch size).
    more: bool,
}

/// Takes the next revocation sequence number, inside the revoking transaction.
fn next_seq(tx: &Connection) -> rusqlite::Result<i64> {
    tx.prepare_cached("UPDATE meta SET seq = seq + 1 WHERE id = 1 RETURNING seq")?
        .query_row([], |row| row.get(0))
}

/// An IMMEDIATE transaction on the writer connection, rolled back unless committed.
///
/// SQLite's own busy handler sleeps 1, 2, 5, 10 … 100 ms between attempts at a lock. Against
/// another process that commits use after use, each holding the lock for one fsync and
/// releasing it for a few microseconds, such a waiter almost never finds it free and times
/// out. So the write lock is polled here, at most 1 ms apart, until the busy timeout.
struct WriteTx<'c> {
    conn: &'c Connection,
}

impl<'c> WriteTx<'c> {
    fn begin(conn: &'c Connection, timeout: Duration) -> rusqlite::Result<WriteTx<'c>> {
        let deadline = Instant::now() + timeout;
        conn.busy_timeout(Duration::ZERO)?;
        let mut attempt = 0u32;
        let begun = loop {
            match conn.execute_batch("BEGIN IMMEDIATE") {
                Err(err) if err.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break Err(err);
                    }
                    let pause =
                        Duration::from_micros(50 << attempt.min(5)).min(Duration::from_millis(1));
                    thread::sleep(pause.min(deadline - now));
                    attempt += 1;
                }
                other => break other,
            }
        };
        // Within the transaction, let SQLite wait for anything else (checkpoints, recovery).
        let restored = conn.busy_timeout(timeout);
        let tx = WriteTx { conn };
        begun?;
        restored?;
        Ok(tx)
    }

    fn commit(self) -> rusqlite::Result<()> {
        // If COMMIT fails and leaves the transaction open, `drop` rolls it back.
        self.conn.execute_batch("COMMIT")
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if !self.conn.is_autocommit() {
            // Nothing more to do if even this fails: the next BEGIN will report the trouble.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader's page cache is capped (it is emptied at nearly every look, so a big one
    /// only holds memory); the writer's, which is hit, keeps SQLite's default.
    #[test]
    fn only_the_reader_has_a_small_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(&dir.path().join("ledger.sqlite")).unwrap();
        let cache_size = |conn: &Connection| -> i64 {
            conn.query_row("PRAGMA cache_size", [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(cache_size(&ledger.reader().conn), READER_CACHE_SIZE);
        assert_eq!(cache_size(&ledger.writer()), -2000);
    }

    /// Pruning goes in transactions of at most `PRUNE_BATCH` rows per table, until every
    /// expired row of every table is gone, and leaves the others.
    #[test]
    fn pruning_removes_every_expired_row_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(&dir.path().join("ledger.sqlite")).unwrap();
        let expired = 2 * PRUNE_BATCH + 7;
        let key = |i: usize, expires: u64| IssuedKey {
            key_id: KeyId(
                (i as u128)
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .to_le_bytes(),
            ),
            subject: None,
            issued_by: "test".into(),
            resource: "blob:files/a".into(),
            ops: "read".into(),
            issued_at: UnixTime(100),
            expires: UnixTime(expires),
            max_uses: Some(1),
        };
        ledger
            .write(|tx| {
                for i in 0..expired + 3 {
                    let k = key(i, if i < expired { 200 } else { 10_000 });
                    insert_issued(tx, &k)?;
                    tx.execute(
                        "INSERT INTO uses (key_id, count, expires) VALUES (?1, 1, ?2)",
                        rusqlite::params![&k.key_id.0[..], sql_int(k.expires.0)],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        let grace = DEFAULT_SKEW_SECONDS;
        let cutoff = UnixTime(300);
        let first = ledger
            .write(|tx| delete_expired(tx, cutoff, PRUNE_BATCH))
            .unwrap();
        assert_eq!(first.rows, 2 * PRUNE_BATCH as u64, "one batch per table");
        assert!(first.more);
        let removed = ledger.forget_expired(cutoff.plus(grace)).unwrap();
        assert_eq!(
            removed,
            2 * (expired - PRUNE_BATCH) as u64,
            "the rest, in batches"
        );
        let count = |table: &str| -> i64 {
            ledger
                .writer()
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get(0)
                })
                .unwrap()
        };
        assert_eq!(
            (count("issued"), count("uses")),
            (3, 3),
            "the unexpired stay"
        );
        assert_eq!(ledger.forget_expired(UnixTime(300 + grace)).unwrap(), 0);
    }
}
