//! The SQLite ledger on real files: the conformance suite (exact counting under concurrency,
//! revocations seen across connections, persistence, forgetting), and what is SQLite's own:
//! revocations and counts across processes, file permissions, locks, migrations of the file,
//! and failing closed.

#[macro_use]
mod conformance;

use conformance::{admitted, id, issued, key, numbered, Backend, NOW};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use valet_key::{KeyId, UnixTime};
use valet_ledger::{
    Admission, KeyStatus, KeyUse, Ledger, LedgerError, Revocation, SqliteLedger, SqliteOptions,
};

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    (dir, path)
}

#[cfg(unix)]
#[test]
fn the_database_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    ledger.revoke_key(id(90), None, NOW).unwrap();
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    for file in [&path, &wal] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
}

#[test]
fn the_schema_version_is_recorded() {
    let (_dir, path) = temp_db();
    drop(strict(&path));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

// Failing closed.

fn unavailable_message(result: Result<impl std::fmt::Debug, LedgerError>) -> String {
    match result {
        Err(err @ LedgerError::Unavailable(_)) => err.to_string(),
        Err(other) => panic!("expected the ledger to be unavailable, got {other:?}"),
        Ok(answer) => panic!("expected an error, got {answer:?}"),
    }
}

#[test]
fn a_write_lock_held_elsewhere_makes_counted_admits_fail_not_pass() {
    let (_dir, path) = temp_db();
    let options = SqliteOptions::default().with_busy_timeout(Duration::from_millis(100));
    let ledger = SqliteLedger::open_with(&path, options).unwrap();
    let once = key(id(100), Some(1));

    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let started = Instant::now();
    let message = unavailable_message(ledger.admit(&once, NOW));
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "waited for the lock first"
    );
    assert!(message.contains("database is locked"), "{message}");
    assert!(message.contains("busy timeout"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    unavailable_message(ledger.revoke_key(id(101), None, NOW));
    unavailable_message(ledger.revoke_subject("alice", NOW, NOW));
    unavailable_message(ledger.revoke_all_before(NOW, NOW));
    unavailable_message(ledger.forget_expired(NOW));
    let message = unavailable_message(ledger.record_issued(&issued(id(104))));
    assert!(message.contains("database is locked"), "{message}");
    // Readers are not blocked in WAL mode: uncounted keys and status still work.
    assert!(admitted(&ledger, &key(id(102), None)));
    assert_eq!(ledger.status(id(100)).unwrap(), KeyStatus::default());
    assert_eq!(ledger.issued(id(104)).unwrap(), None);
    assert_eq!(ledger.revocation(&key(id(102), None)).unwrap(), None);

    other.execute_batch("COMMIT").unwrap();
    assert_eq!(
        ledger.admit(&once, NOW).unwrap(),
        Admission::Admitted { uses: 1 }
    );
    assert_eq!(ledger.admit(&once, NOW).unwrap(), Admission::Exhausted);
}

#[test]
fn a_lock_released_within_the_busy_timeout_is_waited_for() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let once = key(id(103), Some(1));
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    thread::scope(|scope| {
        let admit = scope.spawn(|| ledger.admit(&once, NOW));
        thread::sleep(Duration::from_millis(200));
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(
            admit.join().unwrap().unwrap(),
            Admission::Admitted { uses: 1 }
        );
    });
}

#[test]
fn a_garbage_file_is_refused_with_a_clear_message() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let message = unavailable_message(SqliteLedger::open(&path));
    assert!(message.contains("not a database"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn a_foreign_or_newer_database_is_refused() {
    let (_dir, path) = temp_db();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE photos (name TEXT)")
        .unwrap();
    let message = unavailable_message(SqliteLedger::open(&path));
    assert!(message.contains("not a valet ledger"), "{message}");

    let (_dir, path) = temp_db();
    drop(strict(&path));
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 4)
        .unwrap();
    let message = unavailable_message(SqliteLedger::open(&path));
    assert!(message.contains("schema version 4"), "{message}");
    assert!(message.contains("newer than this build's 3"), "{message}");
    assert!(message.contains("upgrade valet"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    // Refused without being touched.
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
}

#[test]
fn an_unopenable_path_is_refused() {
    let (dir, _) = temp_db();
    let message = unavailable_message(SqliteLedger::open(&dir.path().join("missing/ledger.db")));
    assert!(
        message.contains("cannot create ledger database"),
        "{message}"
    );
    let message = unavailable_message(SqliteLedger::open(dir.path()));
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

#[test]
fn a_database_corrupted_under_a_running_ledger_fails_closed() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let once = key(id(110), Some(1));
    assert!(admitted(&ledger, &key(id(111), Some(1))));
    ledger.revoke_key(id(112), None, NOW).unwrap();

    // Something overwrites the database and its log with garbage.
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        let len = std::fs::metadata(&file).unwrap().len();
        std::fs::write(&file, vec![0xa5; len as usize]).unwrap();
    }
    for _ in 0..3 {
        let result = ledger.admit(&once, NOW);
        assert!(
            !matches!(result, Ok(Admission::Admitted { .. })),
            "admitted on a corrupt ledger: {result:?}"
        );
    }
    let message = unavailable_message(ledger.admit(&once, NOW));
    println!("{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    unavailable_message(ledger.admit(&key(id(113), None), NOW));
    unavailable_message(ledger.revoke_key(id(114), None, NOW));
    unavailable_message(ledger.revocation(&key(id(113), None)));
    unavailable_message(ledger.record_issued(&issued(id(115))));
    unavailable_message(ledger.issued(id(111)));
}

// Two real processes: this test binary runs itself as the second one.

const CHILD_DB: &str = "VALET_LEDGER_TEST_CHILD_DB";
const CHILD_TASK: &str = "VALET_LEDGER_TEST_CHILD_TASK";

const CHILD_START: &str = "VALET_LEDGER_TEST_CHILD_START";

fn unix_millis() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    since.as_millis() as u64
}

/// Sleeps until `start` (Unix milliseconds), so that both processes begin together.
fn wait_until(start: u64) {
    thread::sleep(Duration::from_millis(start.saturating_sub(unix_millis())));
}

fn run_child(path: &Path, task: &str, start: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, path)
        .env(CHILD_TASK, task)
        .env(CHILD_START, start.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn child_admitted(child: std::process::Child) -> u64 {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "child failed: {output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout
        .lines()
        .find_map(|line| Some(line.split_once("CHILD admitted=")?.1))
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no count in {stdout:?}"))
}

/// The other process's side of the tests below; does nothing when run on its own.
#[test]
#[ignore = "run by the cross-process tests as a second process"]
fn child_process() {
    let (Ok(path), Ok(task)) = (std::env::var(CHILD_DB), std::env::var(CHILD_TASK)) else {
        return;
    };
    let ledger = strict(Path::new(&path));
    wait_until(std::env::var(CHILD_START).unwrap().parse().unwrap());
    let mut count = 0u64;
    match task.as_str() {
        "revoke" => {
            assert!(ledger.revoke_key(id(120), None, NOW).unwrap());
            ledger.revoke_subject("bob", NOW, NOW).unwrap();
        }
        "record" => {
            thread::scope(|scope| {
                for t in 0..8u8 {
                    let ledger = &ledger;
                    scope.spawn(move || {
                        for n in 0..25u8 {
                            ledger.record_issued(&numbered(t, n)).unwrap();
                        }
                    });
                }
            });
        }
        "count" => {
            let capped = key(id(121), Some(200));
            count = thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| scope.spawn(|| (0..50).filter(|_| admitted(&ledger, &capped)).count()))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap() as u64).sum()
            });
        }
        other => panic!("unknown task {other}"),
    }
    println!("CHILD admitted={count}");
}

#[test]
fn revocations_by_another_process_are_seen_at_once() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let k = key(id(120), None);
    let bob = KeyUse {
        subject: Some("bob"),
        ..key(id(122), None)
    };
    assert!(admitted(&ledger, &k));
    assert!(admitted(&ledger, &bob));
    assert_eq!(child_admitted(run_child(&path, "revoke", 0)), 0);
    assert_eq!(ledger.admit(&k, NOW).unwrap(), Admission::Revoked);
    assert_eq!(ledger.admit(&bob, NOW).unwrap(), Admission::Revoked);
}

#[test]
fn use_counting_is_exact_across_processes() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let capped = key(id(121), Some(200));
    let start = unix_millis() + 1000;
    let child = run_child(&path, "count", start);
    wait_until(start);
    let here: u64 = thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| (0..50).filter(|_| admitted(&ledger, &capped)).count()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap() as u64).sum()
    });
    let there = child_admitted(child);
    println!("admitted here {here}, in the other process {there}");
    assert_eq!(here + there, 200, "here {here}, there {there}");
    assert_eq!(ledger.status(id(121)).unwrap().uses, 200);
}

/// A ledger that looks for other connections' commits on every admission, so that tests can
/// assert what "the very next admit" sees.
fn strict(path: &Path) -> SqliteLedger {
    SqliteLedger::open_with(
        path,
        SqliteOptions::default().with_freshness(Duration::ZERO),
    )
    .unwrap()
}

#[test]
fn with_default_options_another_ledgers_revocation_bites_within_the_freshness_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let gate = SqliteLedger::open(&path).unwrap();
    let store = SqliteLedger::open(&path).unwrap();
    let key = KeyUse {
        key_id: KeyId([42; 16]),
        subject: None,
        issued_at: UnixTime(1000),
        key_expires: UnixTime(u64::MAX / 2),
        max_uses: None,
    };
    assert!(matches!(
        store.admit(&key, UnixTime(1000)).unwrap(),
        Admission::Admitted { .. }
    ));
    gate.revoke_key(key.key_id, None, UnixTime(1000)).unwrap();
    std::thread::sleep(SqliteOptions::default().freshness + Duration::from_millis(1));
    assert_eq!(
        store.admit(&key, UnixTime(1000)).unwrap(),
        Admission::Revoked
    );
    let counted = KeyUse {
        key_id: KeyId([43; 16]),
        max_uses: Some(5),
        ..key
    };
    gate.revoke_key(counted.key_id, None, UnixTime(1000))
        .unwrap();
    assert_eq!(
        store.admit(&counted, UnixTime(1000)).unwrap(),
        Admission::Revoked,
        "counted keys are never stale"
    );
}

// Issued keys.

#[test]
fn records_made_by_another_process_are_seen() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    assert_eq!(ledger.issued(numbered(0, 0).key_id).unwrap(), None);
    assert_eq!(child_admitted(run_child(&path, "record", 0)), 0);
    for t in 0..8 {
        for n in 0..25 {
            let key = numbered(t, n);
            assert_eq!(ledger.issued(key.key_id).unwrap(), Some(key));
        }
    }
}

// Migration.

/// Schema version 1 exactly as the builds before version 2 created it: a frozen copy, so that
/// this test keeps building genuine version 1 files whatever happens to the library's copy.
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

/// A version 1 ledger as a version 1 build left it: key 190 revoked, key 191 used twice,
/// bob's keys before `NOW` revoked, everything before `NOW - 1000` revoked.
fn write_v1_ledger(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch(SCHEMA_V1).unwrap();
    conn.pragma_update(None, "application_id", 0x564c_4447)
        .unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    let now = NOW.0 as i64;
    conn.execute_batch(&format!(
        "UPDATE meta SET seq = 3 WHERE id = 1;
         INSERT INTO revoked_keys (key_id, revoked_at, expires, seq)
             VALUES (x'{id190}', {now}, {expires}, 1);
         INSERT INTO uses (key_id, count, expires) VALUES (x'{id191}', 2, {expires});
         INSERT INTO revoked_subjects (subject, before, revoked_at, seq)
             VALUES ('bob', {now}, {now}, 2);
         INSERT INTO revoked_all (id, before, revoked_at, seq) VALUES (1, {old}, {now}, 3);",
        id190 = id(190),
        id191 = id(191),
        expires = now + 3600,
        old = now - 1000,
    ))
    .unwrap();
}

#[test]
fn a_version_1_ledger_is_migrated_and_keeps_its_rows() {
    let (_dir, path) = temp_db();
    write_v1_ledger(&path);
    let ledger = strict(&path);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);

    // The old rows still act.
    assert_eq!(
        ledger.admit(&key(id(190), None), NOW).unwrap(),
        Admission::Revoked
    );
    assert_eq!(
        ledger.status(id(190)).unwrap(),
        KeyStatus {
            uses: 0,
            revoked: true
        }
    );
    assert_eq!(
        ledger.status(id(191)).unwrap(),
        KeyStatus {
            uses: 2,
            revoked: false
        }
    );
    let three = key(id(191), Some(3));
    assert_eq!(
        ledger.admit(&three, NOW).unwrap(),
        Admission::Admitted { uses: 3 }
    );
    assert_eq!(ledger.admit(&three, NOW).unwrap(), Admission::Exhausted);
    let bob = KeyUse {
        subject: Some("bob"),
        ..key(id(192), None)
    };
    assert_eq!(
        ledger.revocation(&bob).unwrap(),
        Some(Revocation::Subject { before: NOW })
    );
    let ancient = KeyUse {
        subject: None,
        issued_at: NOW.minus(1001),
        ..key(id(193), None)
    };
    assert_eq!(
        ledger.revocation(&ancient).unwrap(),
        Some(Revocation::All {
            before: NOW.minus(1000)
        })
    );
    // New revocations continue the old sequence and reach another ledger.
    let other = strict(&path);
    ledger.revoke_key(id(194), None, NOW).unwrap();
    assert_eq!(
        other.revocation(&key(id(194), None)).unwrap(),
        Some(Revocation::Key)
    );

    // The new table works, and the file opens again as version 3.
    ledger.record_issued(&issued(id(195))).unwrap();
    drop((ledger, other));
    let ledger = strict(&path);
    assert_eq!(ledger.issued(id(195)).unwrap(), Some(issued(id(195))));
    assert_eq!(ledger.status(id(191)).unwrap().uses, 3);
    // The old use row's key was never recorded as issued, so its true expiry is unknown: it
    // is kept forever (see `a_version_2_ledger_keeps_old_counts_for_the_keys_lifetime`).
    assert_eq!(ledger.forget_expired(UnixTime(u64::MAX)).unwrap(), 2);
    assert_eq!(ledger.status(id(191)).unwrap().uses, 3);
}

#[test]
fn ledgers_opening_a_version_1_file_at_once_migrate_it_once() {
    let (_dir, path) = temp_db();
    write_v1_ledger(&path);
    let barrier = Barrier::new(4);
    let ledgers: Vec<SqliteLedger> = thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (barrier, path) = (&barrier, &path);
                scope.spawn(move || {
                    barrier.wait();
                    strict(path)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (n, ledger) in ledgers.iter().enumerate() {
        ledger.record_issued(&issued(id(200 + n as u8))).unwrap();
    }
    for ledger in &ledgers {
        assert_eq!(
            ledger.admit(&key(id(190), None), NOW).unwrap(),
            Admission::Revoked
        );
        for n in 0..4 {
            assert!(ledger.issued(id(200 + n)).unwrap().is_some());
        }
    }
}

// Use counts outlive every token of their key (a narrowed copy's short expiry included).

/// Rows that a version 2 build wrote with a narrowed copy's expiry are raised when the file
/// is opened by this build: to the key's issued record's expiry, or forever without one.
#[test]
fn a_version_2_ledger_keeps_old_counts_for_the_keys_lifetime() {
    let (_dir, path) = temp_db();
    {
        // Version 3 changed no table, only rows: a file made by this build and marked
        // version 2 is a version 2 file.
        let ledger = strict(&path);
        ledger.record_issued(&issued(id(220))).unwrap();
        ledger.record_issued(&issued(id(222))).unwrap();
        drop(ledger);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO uses (key_id, count, expires) VALUES
                 (x'{a}', 3, {early}), (x'{b}', 1, {early}), (x'{c}', 1, {late});
             PRAGMA user_version = 2;",
            a = id(220),
            b = id(221),
            c = id(222),
            early = NOW.plus(1).0,
            late = NOW.plus(7200).0,
        ))
        .unwrap();
    }
    let ledger = strict(&path);
    let expiry = |n: u8| -> i64 {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT expires FROM uses WHERE key_id = ?1",
                [&id(n).0[..]],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(
        expiry(220),
        NOW.plus(3600).0 as i64,
        "the issued record's expiry"
    );
    assert_eq!(expiry(221), i64::MAX, "unknown: forever");
    assert_eq!(expiry(222), NOW.plus(7200).0 as i64, "never lowered");
    assert_eq!(ledger.forget_expired(NOW.plus(600)).unwrap(), 0);
    assert!(!admitted(&ledger, &key(id(220), Some(3))));
    assert!(!admitted(&ledger, &key(id(221), Some(1))));
}

/// The SQLite backend of the conformance suite: a file in a temporary folder.
struct Sqlite {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Backend for Sqlite {
    type Ledger = SqliteLedger;

    fn new() -> Sqlite {
        let (dir, path) = temp_db();
        Sqlite { _dir: dir, path }
    }

    fn open(&self) -> SqliteLedger {
        strict(&self.path)
    }

    fn open_default(&self) -> SqliteLedger {
        SqliteLedger::open(&self.path).unwrap()
    }

    fn open_with_grace(&self, grace: Duration) -> SqliteLedger {
        let options = SqliteOptions::default()
            .with_forget_grace(grace)
            .with_freshness(Duration::ZERO);
        SqliteLedger::open_with(&self.path, options).unwrap()
    }

    fn settle(_: &SqliteLedger) {}

    fn issued_rows(&self) -> i64 {
        rusqlite::Connection::open(&self.path)
            .unwrap()
            .query_row("SELECT count(*) FROM issued", [], |r| r.get(0))
            .unwrap()
    }
}

conformance_tests!(Sqlite);
