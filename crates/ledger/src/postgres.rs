//! The ledger on PostgreSQL, shared by store and gate nodes on many machines: [`PgLedger`].

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Config, NoTls};
use valet_key::{KeyId, UnixTime, DEFAULT_SKEW_SECONDS};

use crate::locks::{lock_key, LocalLocks, LockFuture, NameLock, NameLocks};
use crate::view::View;
use crate::{
    Admission, IssuedKey, KeyStatus, KeyUse, Ledger, LedgerError, Revocation, Unavailable,
};

/// The channel every revoking transaction notifies on commit.
const CHANNEL: &str = "valet_revocations";

/// The `application_name` of the revocation feed's connection.
pub const FEED_APPLICATION_NAME: &str = "valet-revocation-feed";

/// The key of the advisory lock that serializes migrations between nodes starting at once
/// ("VLDG", as the SQLite file's application id).
const MIGRATION_LOCK: i64 = 0x564c_4447;

/// The migrations, in order: version `n` is `MIGRATIONS[n - 1]`. Never change one that has
/// been released: add the next. Each runs in the transaction that records it in
/// `valet_schema_migrations`, under [`MIGRATION_LOCK`].
///
/// Times are Unix seconds (`BIGINT`, clamped at `i64::MAX`). Every revocation row carries
/// `seq`, the value of `valet_meta.seq` after the transaction that added or raised it. Every
/// revoking transaction takes the `valet_meta` row's lock first (it raises `seq`), so
/// revocations commit one at a time in `seq` order: a reader that has seen `seq = n` has
/// seen every revocation up to `n`, and catches up with the rows whose `seq` is greater.
/// `purges` counts deletions of revocation rows, after which readers reload everything.
const MIGRATIONS: &[&str] = &["
CREATE TABLE valet_meta (
    id     INT PRIMARY KEY CHECK (id = 1),
    seq    BIGINT NOT NULL,
    purges BIGINT NOT NULL
);
INSERT INTO valet_meta (id, seq, purges) VALUES (1, 0, 0);

CREATE TABLE valet_uses (
    key_id  BYTEA PRIMARY KEY CHECK (length(key_id) = 16),
    count   BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX valet_uses_expires ON valet_uses (expires);

CREATE TABLE valet_revoked_keys (
    key_id     BYTEA PRIMARY KEY CHECK (length(key_id) = 16),
    revoked_at BIGINT NOT NULL,
    expires    BIGINT,          -- NULL: kept forever
    seq        BIGINT NOT NULL
);
CREATE INDEX valet_revoked_keys_seq ON valet_revoked_keys (seq);
CREATE INDEX valet_revoked_keys_expires ON valet_revoked_keys (expires);

CREATE TABLE valet_revoked_subjects (
    subject    TEXT PRIMARY KEY,
    before     BIGINT NOT NULL, -- keys issued before this are revoked; only ever raised
    revoked_at BIGINT NOT NULL,
    seq        BIGINT NOT NULL
);
CREATE INDEX valet_revoked_subjects_seq ON valet_revoked_subjects (seq);

CREATE TABLE valet_revoked_all (
    id         INT PRIMARY KEY CHECK (id = 1),
    before     BIGINT NOT NULL, -- keys issued before this are revoked; only ever raised
    revoked_at BIGINT NOT NULL,
    seq        BIGINT NOT NULL
);

CREATE TABLE valet_issued (
    key_id    BYTEA PRIMARY KEY CHECK (length(key_id) = 16),
    subject   TEXT,             -- NULL: issued to no subject
    issued_by TEXT NOT NULL,
    resource  TEXT NOT NULL,
    ops       TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires   BIGINT NOT NULL,
    max_uses  BIGINT            -- NULL: uses not counted
);
CREATE INDEX valet_issued_expires ON valet_issued (expires);
"];

/// Rows of each table one pruning statement removes at most, so that pruning never holds
/// many row locks or one long transaction.
const PRUNE_BATCH: i64 = 2_000;

/// How to open a [`PgLedger`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgOptions {
    /// How long after a key's expiry [`Ledger::forget_expired`] still keeps its rows: at least
    /// the verifiers' clock-skew tolerance (see [`crate::SqliteOptions::forget_grace`]).
    /// Default: [`DEFAULT_SKEW_SECONDS`].
    pub forget_grace: Duration,
    /// How long this node may go without confirming that its revocations are current before
    /// it refuses every keyed request with [`LedgerError::Unavailable`]. Default: 3 s.
    pub staleness: Duration,
    /// How often the revocation feed asks the database for what it may have missed, which is
    /// also how it confirms that it is current. Default: 500 ms (a fraction of `staleness`,
    /// so that one slow answer does not make the node refuse requests).
    pub heartbeat: Duration,
    /// Connections in the pool (besides the revocation feed's own). Default: 16.
    pub pool_size: usize,
    /// The longest a connection, a wait for a pooled one, or one operation may take before
    /// the ledger reports [`LedgerError::Unavailable`]. Default: 5 s.
    pub timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            forget_grace: Duration::from_secs(DEFAULT_SKEW_SECONDS),
            staleness: Duration::from_secs(3),
            heartbeat: Duration::from_millis(500),
            pool_size: 16,
            timeout: Duration::from_secs(5),
        }
    }
}

impl PgOptions {
    /// These options with another grace period for [`Ledger::forget_expired`].
    pub fn with_forget_grace(mut self, grace: Duration) -> PgOptions {
        self.forget_grace = grace;
        self
    }

    /// These options with another staleness bound (and a heartbeat of a sixth of it, at most
    /// 500 ms).
    pub fn with_staleness(mut self, staleness: Duration) -> PgOptions {
        self.staleness = staleness;
        self.heartbeat = (staleness / 6).min(Duration::from_millis(500));
        self
    }

    /// These options with another pool size.
    pub fn with_pool_size(mut self, size: usize) -> PgOptions {
        self.pool_size = size.max(1);
        self
    }

    /// These options with another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> PgOptions {
        self.timeout = timeout;
        self
    }
}

/// The [`Ledger`] on a PostgreSQL database, shared by any number of store and gate nodes.
///
/// # Use counting
///
/// A counted admission is one statement (`INSERT … ON CONFLICT DO UPDATE SET count = count + 1
/// WHERE count < max_uses RETURNING count`, with the revocation check in the same statement):
/// PostgreSQL locks the row and re-checks the condition on its latest version, so however
/// many nodes admit the same key at once, exactly `max_uses` are admitted. Never read, then
/// write.
///
/// # Revocations without a round trip
///
/// Each `PgLedger` keeps every revocation in memory, fed by a connection of its own that
/// `LISTEN`s on `valet_revocations`: every revoking transaction `NOTIFY`s on commit, and the
/// feed then reads the rows whose sequence number is above the last one it has (see
/// [`MIGRATIONS`]). The same catch-up runs every [`PgOptions::heartbeat`] whatever happens, for
/// a notification lost with a connection, and after every reconnection. A key without a use
/// cap is admitted on this view alone: no database call on the hot path.
///
/// # Failing closed, with a bound
///
/// The view counts as current as of the moment the last successful catch-up started. If
/// that was longer ago than [`PgOptions::staleness`] (the database or the network is down,
/// or too slow), every [`Ledger::admit`] fails with [`LedgerError::Unavailable`], until a
/// catch-up succeeds again. The transition is logged once each way, not per request.
///
/// # Threads
///
/// The trait is synchronous, as for [`crate::SqliteLedger`]: callers that may wait (counted
/// admissions, revocations, records) call it from a blocking thread. The driver runs on a
/// runtime of the ledger's own (two worker threads), so the ledger works the same from any
/// thread, in a runtime or not; an uncounted admission touches only the in-memory view.
pub struct PgLedger {
    shared: Arc<Shared>,
    /// The ledger's own runtime: the driver's connections and the revocation feed.
    runtime: Option<tokio::runtime::Runtime>,
}

/// What the callers' threads and the ledger's tasks share.
struct Shared {
    pool: Pool,
    options: PgOptions,
    /// `host:port/database`: how the ledger is named in messages (never with a password).
    target: String,
    cache: Cache,
    /// Held across each catch-up's read and apply, and by a local revocation adding itself to
    /// the view: so that an older read is never applied over a newer one.
    catching_up: tokio::sync::Mutex<()>,
    /// This node's side of the name locks: a waiter first takes the name's local stripe, so
    /// that a node's own writers of one name queue here, not in sessions of the pool.
    local_locks: LocalLocks,
    /// Bounds the pooled sessions that hold or wait for an advisory lock to half the pool, so
    /// that contended names never starve admissions of connections.
    lock_sessions: Arc<tokio::sync::Semaphore>,
}

impl fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgLedger")
            .field("target", &self.shared.target)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

/// The revocation view and how current it is.
struct Cache {
    state: RwLock<CacheState>,
    /// Whether the node is refusing requests as stale (for logging the transition once).
    stale: AtomicBool,
}

#[derive(Default)]
struct CacheState {
    view: View,
    /// `valet_meta.seq` and `purges` the view reflects.
    seq: i64,
    purges: i64,
    /// When the last successful catch-up started: every revocation committed before this is
    /// in the view.
    current_as_of: Option<Instant>,
}

/// What one catch-up read: `valet_meta` and the revocation rows above a sequence number.
struct Changes {
    seq: i64,
    purges: i64,
    keys: Vec<KeyId>,
    subjects: Vec<(String, u64)>,
    all_before: u64,
}

impl Cache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, CacheState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, CacheState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `key` is revoked by the view, or an error if the view cannot be vouched for.
    fn check(&self, key: &KeyUse<'_>, staleness: Duration) -> Result<bool, LedgerError> {
        let state = self.read();
        let fresh = state
            .current_as_of
            .is_some_and(|at| at.elapsed() <= staleness);
        if !fresh {
            drop(state);
            if !self.stale.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    staleness = ?staleness,
                    "ledger: revocations not confirmed current; refusing keyed requests until \
                     the revocation feed catches up"
                );
            }
            return Err(LedgerError::Unavailable(Unavailable::because(format!(
                "this node has not confirmed its revocations for more than {staleness:?}"
            ))));
        }
        Ok(state.view.revocation(key).is_some())
    }

    /// Applies a catch-up that started at `started`.
    fn apply(&self, changes: Changes, started: Instant) {
        let mut state = self.write();
        state.view.keys.extend(changes.keys);
        for (subject, before) in changes.subjects {
            state.view.revoke_subject(&subject, before);
        }
        state.view.all_before = state.view.all_before.max(changes.all_before);
        state.seq = state.seq.max(changes.seq);
        state.purges = changes.purges;
        state.current_as_of = Some(match state.current_as_of {
            Some(at) => at.max(started),
            None => started,
        });
        drop(state);
        if self.stale.swap(false, Ordering::Relaxed) {
            tracing::info!("ledger: revocations caught up; serving keyed requests again");
        }
    }

    /// Replaces the view with a full load that started at `started`.
    fn replace(&self, changes: Changes, started: Instant) {
        {
            let mut state = self.write();
            state.view = View::default();
            state.seq = 0;
        }
        self.apply(changes, started);
    }
}

/// Clamps a time or count to PostgreSQL's `BIGINT`.
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `BIGINT` read back (never negative as written).
fn from_sql_int(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// `host:port/database` of `config`, without user or password.
fn describe_target(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db}")
}

/// An error of the driver or the pool, in the ledger's terms.
trait Fail<T> {
    fn fail(self, shared: &Shared, what: &str) -> Result<T, LedgerError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Fail<T> for Result<T, E> {
    fn fail(self, shared: &Shared, what: &str) -> Result<T, LedgerError> {
        self.map_err(|err| unavailable(&shared.target, what, err))
    }
}

fn unavailable(
    target: &str,
    what: &str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> LedgerError {
    LedgerError::Unavailable(Unavailable::new(format!("{what} in {target}"), err))
}

/// The error of an operation that took longer than [`PgOptions::timeout`].
#[derive(Debug, thiserror::Error)]
#[error("no answer within {0:?}")]
struct TimedOut(Duration);

impl PgLedger {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) with
    /// default [`PgOptions`], applies any pending migration, and loads the revocations.
    pub fn open(url: &str) -> Result<PgLedger, LedgerError> {
        PgLedger::open_with(url, PgOptions::default())
    }

    /// Connects to the database at `url`, applies any pending migration (safe when several
    /// nodes start at once: they take turns under an advisory lock), loads the revocations,
    /// and starts the revocation feed.
    pub fn open_with(url: &str, options: PgOptions) -> Result<PgLedger, LedgerError> {
        let mut config: Config = url.parse().map_err(|err| {
            // The driver's parse errors never repeat the URL; neither does this.
            LedgerError::Unavailable(Unavailable::new(
                "cannot read the PostgreSQL ledger URL",
                err,
            ))
        })?;
        config.connect_timeout(options.timeout);
        if config.get_application_name().is_none() {
            config.application_name("valet");
        }
        let target = describe_target(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("valet-ledger-pg")
            .enable_all()
            .build()
            .map_err(|err| {
                LedgerError::Unavailable(Unavailable::new(
                    "cannot start the PostgreSQL ledger's runtime",
                    err,
                ))
            })?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .build()
            .map_err(|err| {
                LedgerError::Unavailable(Unavailable::new(
                    format!("cannot set up connections to {target}"),
                    err,
                ))
            })?;
        let lock_sessions = Arc::new(tokio::sync::Semaphore::new((options.pool_size / 2).max(1)));
        let shared = Arc::new(Shared {
            pool,
            options,
            target,
            cache: Cache {
                state: RwLock::new(CacheState::default()),
                stale: AtomicBool::new(false),
            },
            catching_up: tokio::sync::Mutex::new(()),
            local_locks: LocalLocks::default(),
            lock_sessions,
        });
        let ledger = PgLedger {
            shared: shared.clone(),
            runtime: Some(runtime),
        };
        let setup = shared.clone();
        ledger.block(async move {
            setup.migrate().await?;
            setup.catch_up(None, true).await
        })?;
        // Named apart, so that an operator (or a test) can tell the feed's connections.
        let mut feed_config = config;
        feed_config.application_name(FEED_APPLICATION_NAME);
        ledger
            .runtime()
            .spawn(revocation_feed(shared.clone(), feed_config));
        Ok(ledger)
    }

    /// Brings the revocation view up to date now, without waiting for the feed: what every
    /// revocation committed before this call is seen by this ledger's next admission once it
    /// returns. The feed does the same on its own within [`PgOptions::heartbeat`].
    pub fn catch_up(&self) -> Result<(), LedgerError> {
        let shared = self.shared.clone();
        self.block(async move { shared.catch_up(None, false).await })
    }

    /// The database, as `postgres://host:port/database` (no user, no password).
    pub fn target(&self) -> &str {
        &self.shared.target
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the ledger")
    }

    /// Runs `work` on the ledger's runtime within the timeout and waits for it here. Works
    /// from any thread: the caller only waits on a channel.
    fn block<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, LedgerError>> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (timeout, target) = (self.shared.options.timeout, self.shared.target.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime().spawn(async move {
            let answer = match tokio::time::timeout(timeout, work).await {
                Ok(answer) => answer,
                Err(_) => Err(unavailable(
                    &target,
                    "no answer from the database",
                    TimedOut(timeout),
                )),
            };
            let _ = tx.send(answer);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(LedgerError::Unavailable(Unavailable::because(
                "the PostgreSQL ledger's runtime stopped",
            )))
        })
    }
}

impl Drop for PgLedger {
    fn drop(&mut self) {
        // Not `Runtime::drop`, which blocks and panics inside another runtime: the feed and
        // the pool's connections are simply abandoned, and the server closes them.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Shared {
    async fn client(&self) -> Result<deadpool_postgres::Object, LedgerError> {
        self.pool.get().await.fail(self, "cannot get a connection")
    }

    /// Applies pending migrations, one node at a time.
    async fn migrate(&self) -> Result<(), LedgerError> {
        let mut client = self.client().await?;
        let fail = |err: tokio_postgres::Error| {
            unavailable(&self.target, "cannot migrate the ledger", err)
        };
        let tx = client.transaction().await.map_err(fail)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(fail)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS valet_schema_migrations (
                 version    INT PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(fail)?;
        let applied: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM valet_schema_migrations",
                &[],
            )
            .await
            .map_err(fail)?
            .get(0);
        let known = MIGRATIONS.len() as i32;
        if applied > known {
            return Err(LedgerError::Unavailable(Unavailable::because(format!(
                "the ledger in {} has schema version {applied}, newer than this build's \
                 {known}: upgrade valet",
                self.target
            ))));
        }
        for (version, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            tx.batch_execute(migration).await.map_err(fail)?;
            tx.execute(
                "INSERT INTO valet_schema_migrations (version) VALUES ($1)",
                &[&(version as i32 + 1)],
            )
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    /// Reads what changed since the view's sequence number (everything if `full`, or if rows
    /// were purged meanwhile) and applies it. `client` is the feed's own connection, or
    /// `None` for a pooled one.
    async fn catch_up(
        &self,
        client: Option<&tokio_postgres::Client>,
        full: bool,
    ) -> Result<(), LedgerError> {
        let started = Instant::now();
        let _turn = self.catching_up.lock().await;
        let (since, purges) = {
            let state = self.cache.read();
            (state.seq, state.purges)
        };
        let pooled;
        let client = match client {
            Some(client) => client,
            None => {
                pooled = self.client().await?;
                &**pooled
            }
        };
        let since = if full { -1 } else { since };
        let mut changes = self.read_changes(client, since).await?;
        if !full && (changes.purges != purges || changes.seq < since) {
            // Rows were deleted (or the database was replaced): start over.
            changes = self.read_changes(client, -1).await?;
            self.cache.replace(changes, started);
        } else if full {
            self.cache.replace(changes, started);
        } else {
            self.cache.apply(changes, started);
        }
        Ok(())
    }

    /// One statement, so one snapshot: `valet_meta` and the rows agree.
    async fn read_changes(
        &self,
        client: &tokio_postgres::Client,
        since: i64,
    ) -> Result<Changes, LedgerError> {
        let rows = client
            .query(
                "SELECT 0 AS kind, NULL::BYTEA AS key_id, NULL::TEXT AS subject, seq AS n, purges
                     FROM valet_meta
                 UNION ALL SELECT 1, key_id, NULL, 0, 0 FROM valet_revoked_keys WHERE seq > $1
                 UNION ALL SELECT 2, NULL, subject, before, 0
                     FROM valet_revoked_subjects WHERE seq > $1
                 UNION ALL SELECT 3, NULL, NULL, before, 0 FROM valet_revoked_all WHERE seq > $1",
                &[&since],
            )
            .await
            .fail(self, "cannot read revocations")?;
        let mut changes = Changes {
            seq: 0,
            purges: 0,
            keys: Vec::new(),
            subjects: Vec::new(),
            all_before: 0,
        };
        for row in rows {
            let kind: i32 = row.get(0);
            match kind {
                0 => {
                    changes.seq = row.get(3);
                    changes.purges = row.get(4);
                }
                1 => {
                    let id: Vec<u8> = row.get(1);
                    if let Ok(id) = <[u8; 16]>::try_from(id.as_slice()) {
                        changes.keys.push(KeyId(id));
                    }
                }
                2 => changes
                    .subjects
                    .push((row.get(2), from_sql_int(row.get(3)))),
                _ => changes.all_before = from_sql_int(row.get(3)),
            }
        }
        Ok(changes)
    }

    /// The revocation of `key` as the database has it now.
    async fn revocation(&self, key: &OwnedKeyUse) -> Result<Option<Revocation>, LedgerError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM valet_revoked_keys WHERE key_id = $1),
                        (SELECT before FROM valet_revoked_subjects WHERE subject = $2),
                        (SELECT before FROM valet_revoked_all WHERE id = 1)",
            )
            .await
            .fail(self, "cannot read revocations")?;
        let row = client
            .query_one(&statement, &[&&key.key_id.0[..], &key.subject])
            .await
            .fail(self, "cannot read revocations")?;
        let mut view = View::default();
        if row.get::<_, bool>(0) {
            view.keys.insert(key.key_id);
        }
        if let (Some(subject), Some(before)) = (&key.subject, row.get::<_, Option<i64>>(1)) {
            view.revoke_subject(subject, from_sql_int(before));
        }
        view.all_before = row.get::<_, Option<i64>>(2).map_or(0, from_sql_int);
        Ok(view.revocation(&key.borrow()))
    }

    /// Consumes one use of `key` unless it is revoked or has `max_uses` already: one
    /// statement, the revocation check and the count together.
    async fn consume(&self, key: &OwnedKeyUse, max_uses: u64) -> Result<Admission, LedgerError> {
        let what = &format!("cannot count a use of key {}", key.key_id);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "WITH revoked AS (
                     SELECT EXISTS (SELECT 1 FROM valet_revoked_keys WHERE key_id = $1)
                         OR EXISTS (SELECT 1 FROM valet_revoked_subjects
                                    WHERE subject = $4 AND $5 < before)
                         OR EXISTS (SELECT 1 FROM valet_revoked_all WHERE $5 < before) AS yes
                 ), counted AS (
                     INSERT INTO valet_uses AS u (key_id, count, expires)
                     SELECT $1, 1, $2 WHERE NOT (SELECT yes FROM revoked)
                     ON CONFLICT (key_id) DO UPDATE SET count = u.count + 1,
                         expires = GREATEST(u.expires, excluded.expires)
                     WHERE u.count < $3
                     RETURNING count
                 )
                 SELECT (SELECT yes FROM revoked), (SELECT count FROM counted)",
            )
            .await
            .fail(self, what)?;
        let key_id = &key.key_id.0[..];
        let expires = sql_int(key.key_expires.0);
        let row = client
            .query_one(
                &statement,
                &[
                    &key_id,
                    &expires,
                    &sql_int(max_uses),
                    &key.subject,
                    &sql_int(key.issued_at.0),
                ],
            )
            .await
            .fail(self, what)?;
        if row.get::<_, bool>(0) {
            return Ok(Admission::Revoked);
        }
        match row.get::<_, Option<i64>>(1) {
            Some(uses) => Ok(Admission::Admitted {
                uses: from_sql_int(uses),
            }),
            None => {
                // Exhausted: the row stays, and must stay as long as this key is valid.
                client
                    .execute(
                        "UPDATE valet_uses SET expires = $2 WHERE key_id = $1 AND expires < $2",
                        &[&key_id, &expires],
                    )
                    .await
                    .fail(self, what)?;
                Ok(Admission::Exhausted)
            }
        }
    }

    /// Runs `revoke` in a transaction that first takes the next revocation sequence number
    /// (and with it the lock that orders revocations), and notifies the feeds on commit.
    async fn revoking<T>(
        &self,
        what: &str,
        revoke: impl for<'t> FnOnce(
            &'t tokio_postgres::Transaction<'t>,
            i64,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + 't>,
        >,
    ) -> Result<T, LedgerError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.fail(self, what)?;
        let seq: i64 = tx
            .query_one(
                "UPDATE valet_meta SET seq = seq + 1 WHERE id = 1 RETURNING seq",
                &[],
            )
            .await
            .fail(self, what)?
            .get(0);
        let out = revoke(&tx, seq).await.fail(self, what)?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &seq.to_string()])
            .await
            .fail(self, what)?;
        tx.commit().await.fail(self, what)?;
        Ok(out)
    }
}

/// A [`KeyUse`] that can move to the ledger's runtime.
#[derive(Debug, Clone)]
struct OwnedKeyUse {
    key_id: KeyId,
    subject: Option<String>,
    issued_at: UnixTime,
    key_expires: UnixTime,
    max_uses: Option<u64>,
}

impl OwnedKeyUse {
    fn of(key: &KeyUse<'_>) -> OwnedKeyUse {
        OwnedKeyUse {
            key_id: key.key_id,
            subject: key.subject.map(str::to_owned),
            issued_at: key.issued_at,
            key_expires: key.key_expires,
            max_uses: key.max_uses,
        }
    }

    fn borrow(&self) -> KeyUse<'_> {
        KeyUse {
            key_id: self.key_id,
            subject: self.subject.as_deref(),
            issued_at: self.issued_at,
            key_expires: self.key_expires,
            max_uses: self.max_uses,
        }
    }
}

/// The revocation feed: a connection of its own that listens for revocations, catches up on
/// each notification and every heartbeat, and reconnects (catching up in full) when it is
/// lost. Runs until the ledger's runtime stops.
async fn revocation_feed(shared: Arc<Shared>, config: Config) {
    let mut lost_logged = false;
    loop {
        match listen(&shared, &config, &mut lost_logged).await {
            Ok(()) => {}
            Err(err) => {
                if !lost_logged {
                    tracing::warn!(error = %err, "ledger: the revocation feed is down; reconnecting");
                    lost_logged = true;
                }
            }
        }
        tokio::time::sleep(shared.options.heartbeat.min(Duration::from_millis(200))).await;
    }
}

/// One life of the feed's connection: returns when it fails.
async fn listen(
    shared: &Shared,
    config: &Config,
    lost_logged: &mut bool,
) -> Result<(), LedgerError> {
    let (client, mut connection) =
        tokio::time::timeout(shared.options.timeout, config.connect(NoTls))
            .await
            .map_err(|_| {
                unavailable(
                    &shared.target,
                    "cannot connect the revocation feed",
                    TimedOut(shared.options.timeout),
                )
            })?
            .fail(shared, "cannot connect the revocation feed")?;
    let (notify, mut notified) = mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(_) = message {
                if notify.send(()).is_err() {
                    return;
                }
            }
        }
    });
    let result = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .fail(shared, "cannot listen for revocations")?;
        // Anything committed before the LISTEN took effect: in full, as after any gap.
        shared.catch_up(Some(&client), true).await?;
        if *lost_logged {
            tracing::info!("ledger: the revocation feed is back");
            *lost_logged = false;
        }
        let mut heartbeat = tokio::time::interval(shared.options.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                got = notified.recv() => {
                    if got.is_none() {
                        return Err(LedgerError::Unavailable(Unavailable::because(format!(
                            "the revocation feed's connection to {} closed",
                            shared.target
                        ))));
                    }
                    // One catch-up for every notification queued meanwhile.
                    while notified.try_recv().is_ok() {}
                }
                _ = heartbeat.tick() => {}
            }
            tokio::time::timeout(
                shared.options.timeout,
                shared.catch_up(Some(&client), false),
            )
            .await
            .map_err(|_| {
                unavailable(
                    &shared.target,
                    "cannot read revocations",
                    TimedOut(shared.options.timeout),
                )
            })??;
        }
    }
    .await;
    driver.abort();
    result
}

/// Name locks on the ledger's database: PostgreSQL session advisory locks, so that every node
/// of a deployment excludes every other, and a node that dies (or loses its connection)
/// releases what it held with its session. See [`crate::locks`].
pub struct PgNameLocks {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for PgNameLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgNameLocks")
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

impl NameLocks for PgNameLocks {
    fn lock(&self, name: &str) -> LockFuture {
        let (shared, runtime) = (self.shared.clone(), self.runtime.clone());
        let name = name.to_owned();
        // Run on the ledger's runtime, whose connections these are; the caller (on any
        // runtime) only awaits the join handle.
        let taking = self
            .runtime
            .spawn(async move { take_advisory_lock(shared, runtime, &name).await });
        Box::pin(async move {
            let held = taking.await.map_err(|err| {
                LedgerError::Unavailable(Unavailable::new("the name lock's task failed", err))
            })??;
            Ok(NameLock::new(held))
        })
    }

    fn across_nodes(&self) -> bool {
        true
    }
}

/// Takes this node's stripe of `name`, then a session from the pool (bounded by
/// `lock_sessions`), then the advisory lock, all within the ledger's timeout.
async fn take_advisory_lock(
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    name: &str,
) -> Result<PgHeldLock, LedgerError> {
    let what = "cannot take a name lock";
    let timeout = shared.options.timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || unavailable(&shared.target, what, TimedOut(timeout));
    let local = tokio::time::timeout_at(deadline, shared.local_locks.lock(name))
        .await
        .map_err(|_| timed_out())??;
    let permit = tokio::time::timeout_at(deadline, shared.lock_sessions.clone().acquire_owned())
        .await
        .map_err(|_| timed_out())?
        .map_err(|err| unavailable(&shared.target, what, err))?;
    let client = tokio::time::timeout_at(deadline, shared.client())
        .await
        .map_err(|_| timed_out())??;
    let key = lock_key(name);
    match tokio::time::timeout_at(
        deadline,
        client.execute("SELECT pg_advisory_lock($1)", &[&key]),
    )
    .await
    {
        Ok(Ok(_)) => Ok(PgHeldLock {
            client: Some(client),
            key,
            runtime,
            _permit: permit,
            _local: local,
        }),
        Ok(Err(err)) => Err(unavailable(&shared.target, what, err)),
        Err(_) => {
            // The statement may still take the lock later: close the session, which releases
            // whatever it holds, rather than pool it.
            drop(deadpool_postgres::Object::take(client));
            Err(timed_out())
        }
    }
}

/// A held advisory lock and the session that holds it.
struct PgHeldLock {
    client: Option<deadpool_postgres::Object>,
    key: i64,
    runtime: tokio::runtime::Handle,
    _permit: tokio::sync::OwnedSemaphorePermit,
    _local: NameLock,
}

impl Drop for PgHeldLock {
    /// Unlocks, then returns the connection to the pool; if the unlock fails the session is
    /// closed instead, which releases the lock all the same.
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let key = self.key;
        self.runtime.spawn(async move {
            let unlocked = client
                .query_one("SELECT pg_advisory_unlock($1)", &[&key])
                .await
                .map(|row| row.get::<_, bool>(0));
            if !matches!(unlocked, Ok(true)) {
                drop(deadpool_postgres::Object::take(client));
            }
        });
    }
}

impl Ledger for PgLedger {
    /// Locks on names shared by every node on this database (see [`crate::locks`]).
    fn name_locks(&self) -> Arc<dyn NameLocks> {
        Arc::new(PgNameLocks {
            shared: self.shared.clone(),
            runtime: self.runtime().handle().clone(),
        })
    }

    fn admit(&self, key: &KeyUse<'_>, _now: UnixTime) -> Result<Admission, LedgerError> {
        if self
            .shared
            .cache
            .check(key, self.shared.options.staleness)?
        {
            return Ok(Admission::Revoked);
        }
        match key.max_uses {
            None => Ok(Admission::Admitted { uses: 0 }),
            Some(0) => Ok(Admission::Exhausted),
            Some(max_uses) => {
                let (shared, key) = (self.shared.clone(), OwnedKeyUse::of(key));
                self.block(async move { shared.consume(&key, max_uses).await })
            }
        }
    }

    fn revoke_key(
        &self,
        key_id: KeyId,
        expires: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<bool, LedgerError> {
        let shared = self.shared.clone();
        let fresh = self.block(async move {
            let expires = expires.map(|t| sql_int(t.0));
            let fresh = shared
                .revoking(&format!("cannot revoke key {key_id}"), |tx, seq| {
                    Box::pin(async move {
                        let key = &key_id.0[..];
                        let inserted = tx
                            .execute(
                                "INSERT INTO valet_revoked_keys (key_id, revoked_at, expires, seq)
                                 VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING",
                                &[&key, &sql_int(now.0), &expires, &seq],
                            )
                            .await?;
                        if inserted == 0 {
                            // Revoked already: it lasts as long as the longer of the two says
                            // (NULL, forever, the longest), never shorter.
                            tx.execute(
                                "UPDATE valet_revoked_keys SET expires = CASE WHEN $2::BIGINT
                                     IS NULL THEN NULL ELSE GREATEST(expires, $2) END
                                 WHERE key_id = $1 AND expires IS NOT NULL",
                                &[&key, &expires],
                            )
                            .await?;
                        }
                        Ok(inserted == 1)
                    })
                })
                .await?;
            let _turn = shared.catching_up.lock().await;
            shared.cache.write().view.keys.insert(key_id);
            Ok(fresh)
        })?;
        Ok(fresh)
    }

    fn revoke_subject(
        &self,
        subject: &str,
        before: UnixTime,
        now: UnixTime,
    ) -> Result<(), LedgerError> {
        let (shared, owned) = (self.shared.clone(), subject.to_owned());
        self.block(async move {
            let what = format!("cannot revoke subject {owned:?}");
            let subject = owned.clone();
            shared
                .revoking(&what, |tx, seq| {
                    Box::pin(async move {
                        tx.execute(
                            "INSERT INTO valet_revoked_subjects (subject, before, revoked_at, seq)
                             VALUES ($1, $2, $3, $4)
                             ON CONFLICT (subject) DO UPDATE SET before = excluded.before,
                                 revoked_at = excluded.revoked_at, seq = excluded.seq
                             WHERE valet_revoked_subjects.before < excluded.before",
                            &[&owned, &sql_int(before.0), &sql_int(now.0), &seq],
                        )
                        .await
                        .map(drop)
                    })
                })
                .await?;
            let _turn = shared.catching_up.lock().await;
            shared.cache.write().view.revoke_subject(&subject, before.0);
            Ok(())
        })
    }

    fn revoke_all_before(&self, before: UnixTime, now: UnixTime) -> Result<(), LedgerError> {
        let shared = self.shared.clone();
        self.block(async move {
            shared
                .revoking("cannot revoke all keys", |tx, seq| {
                    Box::pin(async move {
                        tx.execute(
                            "INSERT INTO valet_revoked_all (id, before, revoked_at, seq)
                             VALUES (1, $1, $2, $3)
                             ON CONFLICT (id) DO UPDATE SET before = excluded.before,
                                 revoked_at = excluded.revoked_at, seq = excluded.seq
                             WHERE valet_revoked_all.before < excluded.before",
                            &[&sql_int(before.0), &sql_int(now.0), &seq],
                        )
                        .await
                        .map(drop)
                    })
                })
                .await?;
            let _turn = shared.catching_up.lock().await;
            let mut state = shared.cache.write();
            state.view.all_before = state.view.all_before.max(before.0);
            Ok(())
        })
    }

    fn status(&self, key_id: KeyId) -> Result<KeyStatus, LedgerError> {
        let shared = self.shared.clone();
        self.block(async move {
            let what = &format!("cannot read the status of key {key_id}");
            let client = shared.client().await?;
            let row = client
                .query_one(
                    "SELECT (SELECT count FROM valet_uses WHERE key_id = $1),
                            EXISTS (SELECT 1 FROM valet_revoked_keys WHERE key_id = $1)",
                    &[&&key_id.0[..]],
                )
                .await
                .fail(&shared, what)?;
            Ok(KeyStatus {
                uses: row.get::<_, Option<i64>>(0).map_or(0, from_sql_int),
                revoked: row.get(1),
            })
        })
    }

    fn record_issued(&self, key: &IssuedKey) -> Result<(), LedgerError> {
        let (shared, key) = (self.shared.clone(), key.clone());
        self.block(async move {
            let what = &format!("cannot record key {} as issued", key.key_id);
            let client = shared.client().await?;
            let key_id = &key.key_id.0[..];
            let (issued_at, expires) = (sql_int(key.issued_at.0), sql_int(key.expires.0));
            let max_uses = key.max_uses.map(sql_int);
            let values: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                &key_id,
                &key.subject,
                &key.issued_by,
                &key.resource,
                &key.ops,
                &issued_at,
                &expires,
                &max_uses,
            ];
            // Committed (PostgreSQL's commit is durable) before the gate hands the key out;
            // concurrent commits share WAL flushes on the server's side.
            let inserted = client
                .execute(
                    "INSERT INTO valet_issued
                         (key_id, subject, issued_by, resource, ops, issued_at, expires, max_uses)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (key_id) DO NOTHING",
                    &values,
                )
                .await
                .fail(&shared, what)?;
            if inserted == 1 {
                return Ok(());
            }
            let same = client
                .query_opt(
                    "SELECT 1 FROM valet_issued WHERE key_id = $1
                         AND subject IS NOT DISTINCT FROM $2 AND issued_by = $3
                         AND resource = $4 AND ops = $5 AND issued_at = $6 AND expires = $7
                         AND max_uses IS NOT DISTINCT FROM $8",
                    &values,
                )
                .await
                .fail(&shared, what)?;
            match same {
                Some(_) => Ok(()),
                None => Err(LedgerError::Conflict { key_id: key.key_id }),
            }
        })
    }

    fn issued(&self, key_id: KeyId) -> Result<Option<IssuedKey>, LedgerError> {
        let shared = self.shared.clone();
        self.block(async move {
            let what = &format!("cannot read the record of key {key_id}");
            let client = shared.client().await?;
            let row = client
                .query_opt(
                    "SELECT subject, issued_by, resource, ops, issued_at, expires, max_uses
                     FROM valet_issued WHERE key_id = $1",
                    &[&&key_id.0[..]],
                )
                .await
                .fail(&shared, what)?;
            Ok(row.map(|row| IssuedKey {
                key_id,
                subject: row.get(0),
                issued_by: row.get(1),
                resource: row.get(2),
                ops: row.get(3),
                issued_at: UnixTime(from_sql_int(row.get(4))),
                expires: UnixTime(from_sql_int(row.get(5))),
                max_uses: row.get::<_, Option<i64>>(6).map(from_sql_int),
            }))
        })
    }

    fn revocation(&self, key: &KeyUse<'_>) -> Result<Option<Revocation>, LedgerError> {
        let (shared, key) = (self.shared.clone(), OwnedKeyUse::of(key));
        self.block(async move { shared.revocation(&key).await })
    }

    fn forget_expired(&self, now: UnixTime) -> Result<u64, LedgerError> {
        let cutoff = sql_int(now.minus(self.shared.options.forget_grace.as_secs()).0);
        let (mut rows, mut revocations) = (0, 0);
        loop {
            let shared = self.shared.clone();
            let pruned = self.block(async move { shared.prune(cutoff).await })?;
            rows += pruned.rows;
            revocations += pruned.revocations;
            if !pruned.more {
                break;
            }
        }
        if revocations > 0 {
            // This node's view drops them now; the others' at their next catch-up.
            self.catch_up()?;
        }
        Ok(rows)
    }
}

impl Shared {
    /// One batch of [`Ledger::forget_expired`].
    async fn prune(&self, cutoff: i64) -> Result<Pruned, LedgerError> {
        let what = "cannot forget expired keys";
        let mut client = self.client().await?;
        let tx = client.transaction().await.fail(self, what)?;
        let mut removed = [0u64; 3];
        for (n, table) in ["valet_uses", "valet_revoked_keys", "valet_issued"]
            .iter()
            .enumerate()
        {
            // A NULL `expires` (kept forever) is never less than anything.
            removed[n] = tx
                .execute(
                    &format!(
                        "DELETE FROM {table} WHERE key_id IN
                             (SELECT key_id FROM {table} WHERE expires < $1 LIMIT $2)"
                    ),
                    &[&cutoff, &PRUNE_BATCH],
                )
                .await
                .fail(self, what)?;
        }
        if removed[1] > 0 {
            // Feeds cannot see deletions by sequence number: make them reload in full.
            tx.execute(
                "UPDATE valet_meta SET purges = purges + 1 WHERE id = 1",
                &[],
            )
            .await
            .fail(self, what)?;
        }
        tx.commit().await.fail(self, what)?;
        Ok(Pruned {
            rows: removed.iter().sum(),
            revocations: removed[1],
            more: removed.contains(&(PRUNE_BATCH as u64)),
        })
    }
}

/// What one pruning transaction did.
struct Pruned {
    /// Rows removed.
    rows: u64,
    /// Of which revocations by id.
    revocations: u64,
    /// Whether a table may have more expired rows (one hit the batch size).
    more: bool,
}
