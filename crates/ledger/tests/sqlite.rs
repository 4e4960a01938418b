//! The SQLite ledger on real files: exact counting under concurrency, revocations seen across
//! connections and processes, persistence, forgetting, and failing closed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use valet_key::{Access, Caveat, Claims, KeyId, Keyring, Limits, Op, UnixTime, Verifier};
use valet_ledger::{
    Admission, IssuedKey, KeyStatus, KeyUse, Ledger, LedgerError, Revocation, SqliteLedger,
    SqliteOptions,
};

const NOW: UnixTime = UnixTime(1_700_000_000);

fn id(n: u8) -> KeyId {
    KeyId([n; 16])
}

/// A key of "alice", issued a minute ago, expiring in an hour.
fn key(key_id: KeyId, max_uses: Option<u64>) -> KeyUse<'static> {
    KeyUse {
        key_id,
        subject: Some("alice"),
        issued_at: NOW.minus(60),
        key_expires: NOW.plus(3600),
        max_uses,
    }
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    (dir, path)
}

fn admitted(ledger: &impl Ledger, key: &KeyUse<'_>) -> bool {
    match ledger.admit(key, NOW).unwrap() {
        Admission::Admitted { .. } => true,
        Admission::Exhausted => false,
        Admission::Revoked => panic!("unexpected revocation"),
    }
}

/// `threads` threads per ledger call `admit` at once; returns the counts of the admitted ones.
fn race(ledgers: &[&SqliteLedger], threads: usize, key: &KeyUse<'_>) -> (Vec<u64>, usize) {
    let barrier = Barrier::new(ledgers.len() * threads);
    let results: Vec<Admission> = thread::scope(|scope| {
        let handles: Vec<_> = ledgers
            .iter()
            .flat_map(|&ledger| std::iter::repeat_n(ledger, threads))
            .map(|ledger| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    ledger.admit(key, NOW).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut uses = Vec::new();
    let mut exhausted = 0;
    for result in results {
        match result {
            Admission::Admitted { uses: n } => uses.push(n),
            Admission::Exhausted => exhausted += 1,
            Admission::Revoked => panic!("unexpected revocation"),
        }
    }
    uses.sort_unstable();
    (uses, exhausted)
}

#[test]
fn ledger_is_shareable_across_threads() {
    fn assert_ledger<T: Ledger>() {}
    assert_ledger::<SqliteLedger>();
    let (_dir, path) = temp_db();
    let _shared: Arc<dyn Ledger> = Arc::new(strict(&path));
}

#[test]
fn one_time_key_is_admitted_exactly_once_among_64_threads() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let once = key(id(1), Some(1));
    let (uses, exhausted) = race(&[&ledger], 64, &once);
    assert_eq!(uses, vec![1]);
    assert_eq!(exhausted, 63);
    assert_eq!(
        ledger.status(id(1)).unwrap(),
        KeyStatus {
            uses: 1,
            revoked: false
        }
    );
    assert_eq!(ledger.admit(&once, NOW).unwrap(), Admission::Exhausted);
}

#[test]
fn five_use_key_is_admitted_exactly_five_times_among_64_threads() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let five = key(id(2), Some(5));
    let (uses, exhausted) = race(&[&ledger], 64, &five);
    assert_eq!(
        uses,
        vec![1, 2, 3, 4, 5],
        "each admitted request sees its own count"
    );
    assert_eq!(exhausted, 59);
    assert_eq!(ledger.status(id(2)).unwrap().uses, 5);
}

#[test]
fn uses_are_counted_only_with_a_cap() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let free = key(id(3), None);
    for _ in 0..3 {
        assert_eq!(
            ledger.admit(&free, NOW).unwrap(),
            Admission::Admitted { uses: 0 }
        );
    }
    assert_eq!(ledger.status(id(3)).unwrap(), KeyStatus::default());

    let never = key(id(4), Some(0));
    assert_eq!(ledger.admit(&never, NOW).unwrap(), Admission::Exhausted);
    assert_eq!(ledger.status(id(4)).unwrap().uses, 0);

    let twice = key(id(5), Some(2));
    assert_eq!(
        ledger.admit(&twice, NOW).unwrap(),
        Admission::Admitted { uses: 1 }
    );
    assert_eq!(
        ledger.admit(&twice, NOW).unwrap(),
        Admission::Admitted { uses: 2 }
    );
    assert_eq!(ledger.admit(&twice, NOW).unwrap(), Admission::Exhausted);
    assert_eq!(ledger.status(id(5)).unwrap().uses, 2);
}

#[test]
fn a_revoked_key_consumes_no_use() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let capped = key(id(6), Some(3));
    assert_eq!(
        ledger.admit(&capped, NOW).unwrap(),
        Admission::Admitted { uses: 1 }
    );
    assert!(ledger
        .revoke_key(id(6), Some(capped.key_expires), NOW)
        .unwrap());
    assert!(
        !ledger
            .revoke_key(id(6), Some(capped.key_expires), NOW)
            .unwrap(),
        "already revoked"
    );
    assert_eq!(ledger.admit(&capped, NOW).unwrap(), Admission::Revoked);
    assert_eq!(
        ledger.status(id(6)).unwrap(),
        KeyStatus {
            uses: 1,
            revoked: true
        }
    );
}

#[test]
fn revocations_through_one_ledger_are_seen_by_the_next_admit_of_another() {
    let (_dir, path) = temp_db();
    let gate = strict(&path);
    let store = strict(&path);

    // By key id. The store has admitted before, so it must notice the change, not just load.
    let k = key(id(10), None);
    assert!(admitted(&store, &k));
    assert!(gate.revoke_key(id(10), Some(k.key_expires), NOW).unwrap());
    assert_eq!(store.admit(&k, NOW).unwrap(), Admission::Revoked);
    assert!(store.status(id(10)).unwrap().revoked);
    assert!(
        !store.revoke_key(id(10), None, NOW).unwrap(),
        "the store sees it revoked too"
    );

    // By subject.
    let alice = key(id(11), None);
    let bob = KeyUse {
        subject: Some("bob"),
        ..key(id(12), None)
    };
    assert!(admitted(&store, &alice));
    gate.revoke_subject("alice", NOW, NOW).unwrap();
    assert_eq!(store.admit(&alice, NOW).unwrap(), Admission::Revoked);
    assert!(admitted(&store, &bob));

    // Everything before a time.
    gate.revoke_all_before(NOW, NOW).unwrap();
    assert_eq!(store.admit(&bob, NOW).unwrap(), Admission::Revoked);

    // And the other way round.
    let carol = KeyUse {
        subject: Some("carol"),
        issued_at: NOW,
        ..key(id(13), None)
    };
    assert!(admitted(&gate, &carol));
    store.revoke_key(id(13), None, NOW).unwrap();
    assert_eq!(gate.admit(&carol, NOW).unwrap(), Admission::Revoked);
}

#[test]
fn a_revocation_is_seen_after_many_unrelated_commits() {
    // Use counts by another connection change `data_version` without touching revocations;
    // the view must follow those changes and still catch a later revocation.
    let (_dir, path) = temp_db();
    let gate = strict(&path);
    let store = strict(&path);
    let watched = key(id(20), None);
    for n in 0..50u8 {
        assert!(admitted(&gate, &key(KeyId([n; 16]), Some(10))));
        assert!(admitted(&store, &watched));
    }
    gate.revoke_subject("alice", NOW, NOW).unwrap();
    assert_eq!(store.admit(&watched, NOW).unwrap(), Admission::Revoked);
}

#[test]
fn use_counting_is_exact_across_two_ledgers_on_one_file() {
    let (_dir, path) = temp_db();
    let gate = strict(&path);
    let store = strict(&path);
    let ten = key(id(30), Some(10));
    let (uses, exhausted) = race(&[&gate, &store], 32, &ten);
    assert_eq!(uses, (1..=10).collect::<Vec<u64>>());
    assert_eq!(exhausted, 54);
    assert_eq!(gate.status(id(30)).unwrap().uses, 10);
    assert_eq!(store.status(id(30)).unwrap().uses, 10);
}

#[test]
fn subject_revocation_affects_only_that_subjects_older_keys() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let before = NOW.minus(100);
    let alice_old = KeyUse {
        issued_at: before.minus(1),
        ..key(id(40), Some(5))
    };
    let alice_at = KeyUse {
        issued_at: before,
        ..key(id(41), Some(5))
    };
    let alice_new = KeyUse {
        issued_at: before.plus(1),
        ..key(id(42), Some(5))
    };
    let bob_old = KeyUse {
        subject: Some("bob"),
        key_id: id(43),
        ..alice_old
    };
    let nobody_old = KeyUse {
        subject: None,
        key_id: id(44),
        ..alice_old
    };

    ledger.revoke_subject("alice", before, NOW).unwrap();
    assert_eq!(ledger.admit(&alice_old, NOW).unwrap(), Admission::Revoked);
    assert_eq!(
        ledger.admit(&alice_at, NOW).unwrap(),
        Admission::Admitted { uses: 1 }
    );
    assert_eq!(
        ledger.admit(&alice_new, NOW).unwrap(),
        Admission::Admitted { uses: 1 }
    );
    assert!(admitted(&ledger, &bob_old));
    assert!(admitted(&ledger, &nobody_old));
    assert_eq!(
        ledger.status(id(40)).unwrap(),
        KeyStatus::default(),
        "not revoked by id"
    );

    // An earlier time does not lift the later one; a later one extends it.
    ledger
        .revoke_subject("alice", before.minus(1000), NOW)
        .unwrap();
    assert_eq!(ledger.admit(&alice_old, NOW).unwrap(), Admission::Revoked);
    assert!(admitted(&ledger, &alice_at));
    ledger.revoke_subject("alice", before.plus(1), NOW).unwrap();
    assert_eq!(ledger.admit(&alice_at, NOW).unwrap(), Admission::Revoked);
    assert!(admitted(&ledger, &alice_new));

    // The same, as seen from a ledger that starts after the fact.
    let late = strict(&path);
    assert_eq!(late.admit(&alice_at, NOW).unwrap(), Admission::Revoked);
    assert!(admitted(&late, &alice_new));
    assert!(admitted(&late, &bob_old));
}

#[test]
fn global_revocation_affects_only_keys_issued_before() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let other = strict(&path);
    let before = NOW.minus(100);
    let old = KeyUse {
        subject: Some("bob"),
        issued_at: before.minus(1),
        ..key(id(50), None)
    };
    let at = KeyUse {
        subject: None,
        issued_at: before,
        ..key(id(51), None)
    };
    let new = KeyUse {
        issued_at: before.plus(1),
        ..key(id(52), None)
    };
    assert!(admitted(&other, &old));

    ledger.revoke_all_before(before, NOW).unwrap();
    for ledger in [&ledger, &other] {
        assert_eq!(ledger.admit(&old, NOW).unwrap(), Admission::Revoked);
        assert!(admitted(ledger, &at));
        assert!(admitted(ledger, &new));
    }
    other.revoke_all_before(UnixTime(0), NOW).unwrap();
    ledger.revoke_all_before(before.minus(50), NOW).unwrap();
    for ledger in [&ledger, &other] {
        assert_eq!(
            ledger.admit(&old, NOW).unwrap(),
            Admission::Revoked,
            "not lifted"
        );
        assert!(admitted(ledger, &at));
    }
    other.revoke_all_before(before.plus(1), NOW).unwrap();
    for ledger in [&ledger, &other] {
        assert_eq!(ledger.admit(&at, NOW).unwrap(), Admission::Revoked);
        assert!(admitted(ledger, &new));
    }
}

#[test]
fn counts_and_revocations_survive_reopening() {
    let (_dir, path) = temp_db();
    let capped = key(id(60), Some(5));
    let revoked = key(id(61), None);
    let bob = KeyUse {
        subject: Some("bob"),
        ..key(id(62), None)
    };
    let old = KeyUse {
        subject: None,
        issued_at: NOW.minus(1000),
        ..key(id(63), None)
    };
    {
        let ledger = strict(&path);
        for n in 1..=3 {
            assert_eq!(
                ledger.admit(&capped, NOW).unwrap(),
                Admission::Admitted { uses: n }
            );
        }
        ledger.revoke_key(id(61), None, NOW).unwrap();
        ledger.revoke_subject("bob", NOW, NOW).unwrap();
        ledger.revoke_all_before(NOW.minus(500), NOW).unwrap();
    }
    let ledger = strict(&path);
    assert_eq!(
        ledger.status(id(60)).unwrap(),
        KeyStatus {
            uses: 3,
            revoked: false
        }
    );
    assert_eq!(
        ledger.status(id(61)).unwrap(),
        KeyStatus {
            uses: 0,
            revoked: true
        }
    );
    assert_eq!(
        ledger.admit(&capped, NOW).unwrap(),
        Admission::Admitted { uses: 4 }
    );
    assert_eq!(ledger.admit(&revoked, NOW).unwrap(), Admission::Revoked);
    assert_eq!(ledger.admit(&bob, NOW).unwrap(), Admission::Revoked);
    assert_eq!(ledger.admit(&old, NOW).unwrap(), Admission::Revoked);
    assert!(admitted(&ledger, &key(id(64), None)));
}

#[test]
fn forget_expired_removes_only_expired_rows() {
    let (_dir, path) = temp_db();
    let no_grace = SqliteOptions::default().with_forget_grace(Duration::ZERO);
    let ledger =
        SqliteLedger::open_with(&path, no_grace.clone().with_freshness(Duration::ZERO)).unwrap();
    let other = SqliteLedger::open_with(&path, no_grace.with_freshness(Duration::ZERO)).unwrap();
    let soon = KeyUse {
        key_expires: NOW.plus(10),
        ..key(id(70), Some(1))
    };
    let later = KeyUse {
        key_expires: NOW.plus(1000),
        ..key(id(71), Some(1))
    };
    assert!(admitted(&ledger, &soon));
    assert!(admitted(&ledger, &later));
    ledger.revoke_key(id(72), Some(NOW.plus(10)), NOW).unwrap();
    ledger
        .revoke_key(id(73), Some(NOW.plus(1000)), NOW)
        .unwrap();
    ledger.revoke_key(id(74), None, NOW).unwrap();
    ledger.revoke_subject("alice", NOW.minus(10), NOW).unwrap();
    ledger.revoke_all_before(NOW.minus(10_000), NOW).unwrap();
    // The other ledger has all of them in its view.
    assert_eq!(
        other.admit(&key(id(72), None), NOW).unwrap(),
        Admission::Revoked
    );

    assert_eq!(
        ledger.forget_expired(NOW.plus(10)).unwrap(),
        0,
        "expires at, not before"
    );
    assert_eq!(ledger.forget_expired(NOW.plus(11)).unwrap(), 2);
    assert_eq!(ledger.forget_expired(NOW.plus(11)).unwrap(), 0);

    assert_eq!(ledger.status(id(70)).unwrap(), KeyStatus::default());
    assert_eq!(
        ledger.status(id(71)).unwrap(),
        KeyStatus {
            uses: 1,
            revoked: false
        }
    );
    assert_eq!(ledger.status(id(72)).unwrap(), KeyStatus::default());
    assert_eq!(
        ledger.status(id(73)).unwrap(),
        KeyStatus {
            uses: 0,
            revoked: true
        }
    );
    assert_eq!(
        ledger.status(id(74)).unwrap(),
        KeyStatus {
            uses: 0,
            revoked: true
        }
    );
    let fresh = KeyUse {
        issued_at: NOW,
        ..key(id(72), None)
    };
    for ledger in [&ledger, &other] {
        // Both views dropped the forgotten revocation and kept the others.
        assert!(admitted(ledger, &fresh));
        for kept in [73, 74] {
            let k = KeyUse {
                issued_at: NOW,
                ..key(id(kept), None)
            };
            assert_eq!(ledger.admit(&k, NOW).unwrap(), Admission::Revoked);
        }
        // Revocations by subject and time are never forgotten.
        assert_eq!(
            ledger.admit(&key(id(75), None), NOW).unwrap(),
            Admission::Revoked
        );
        let ancient = KeyUse {
            subject: None,
            issued_at: UnixTime(1),
            ..key(id(76), None)
        };
        assert_eq!(ledger.admit(&ancient, NOW).unwrap(), Admission::Revoked);
    }

    // Everything else expires in time.
    assert_eq!(ledger.forget_expired(UnixTime(u64::MAX)).unwrap(), 2);
    assert_eq!(
        ledger.status(id(74)).unwrap(),
        KeyStatus {
            uses: 0,
            revoked: true
        }
    );
}

#[test]
fn forget_expired_keeps_rows_for_the_clock_skew_by_default() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let once = key(id(80), Some(1));
    assert!(admitted(&ledger, &once));
    // A verifier still accepts the key 30 s after it expires: so must the ledger refuse it.
    assert_eq!(ledger.forget_expired(once.key_expires.plus(30)).unwrap(), 0);
    assert_eq!(ledger.admit(&once, NOW).unwrap(), Admission::Exhausted);
    assert_eq!(ledger.forget_expired(once.key_expires.plus(31)).unwrap(), 1);
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

/// The record of a key like [`key`]'s: alice's, issued a minute ago, expiring in an hour.
fn issued(key_id: KeyId) -> IssuedKey {
    IssuedKey {
        key_id,
        subject: Some("alice".to_owned()),
        issued_by: "app".to_owned(),
        resource: "blob:files/a.txt".to_owned(),
        ops: "read,write".to_owned(),
        issued_at: NOW.minus(60),
        expires: NOW.plus(3600),
        max_uses: Some(3),
    }
}

/// Record `n` of thread `t`, with an id of its own.
fn numbered(t: u8, n: u8) -> IssuedKey {
    let mut key_id = [0xee; 16];
    key_id[0] = t;
    key_id[1] = n;
    IssuedKey {
        resource: format!("blob:files/{t}/{n}.bin"),
        ..issued(KeyId(key_id))
    }
}

#[test]
fn an_issued_key_is_recorded_and_read_back() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let full = issued(id(130));
    let bare = IssuedKey {
        subject: None,
        max_uses: None,
        ops: "read".to_owned(),
        resource: "blob:files/".to_owned(),
        ..issued(id(131))
    };
    // Extremes survive the trip, including a subject with any characters.
    let odd = IssuedKey {
        subject: Some("ünïcode 'quoted' \"subject\"; DROP TABLE issued".to_owned()),
        issued_at: UnixTime(0),
        expires: UnixTime(i64::MAX as u64),
        max_uses: Some(0),
        ..issued(id(132))
    };
    for key in [&full, &bare, &odd] {
        ledger.record_issued(key).unwrap();
    }
    for key in [&full, &bare, &odd] {
        assert_eq!(ledger.issued(key.key_id).unwrap().as_ref(), Some(key));
    }
    assert_eq!(ledger.issued(id(133)).unwrap(), None, "unknown id");
    assert_eq!(
        ledger.status(id(130)).unwrap(),
        KeyStatus::default(),
        "recording uses nothing"
    );

    // A ledger opened later, and the same one after reopening, read the same.
    drop(ledger);
    let ledger = strict(&path);
    assert_eq!(ledger.issued(id(130)).unwrap(), Some(full.clone()));
    assert_eq!(ledger.issued(id(131)).unwrap(), Some(bare));

    // The key use derived from a record is the one a store would present.
    assert_eq!(
        ledger.admit(&full.key_use(), NOW).unwrap(),
        Admission::Admitted { uses: 1 }
    );
}

#[test]
fn recording_a_key_twice_is_a_no_op_only_if_identical() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let first = issued(id(135));
    ledger.record_issued(&first).unwrap();
    ledger.record_issued(&first).unwrap();
    let changes: [fn(&mut IssuedKey); 7] = [
        |k| k.subject = None,
        |k| k.issued_by = "mallory".to_owned(),
        |k| k.resource = "blob:files/b.txt".to_owned(),
        |k| k.ops = "read".to_owned(),
        |k| k.issued_at = k.issued_at.plus(1),
        |k| k.expires = k.expires.plus(1),
        |k| k.max_uses = None,
    ];
    for change in changes {
        let mut other = first.clone();
        change(&mut other);
        match ledger.record_issued(&other) {
            Err(err @ LedgerError::Conflict { key_id }) => {
                assert_eq!(key_id, id(135));
                assert!(err.to_string().contains(&id(135).to_string()), "{err}");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(ledger.issued(id(135)).unwrap(), Some(first), "first kept");
    // And without a subject or a cap, NULLs compare equal.
    let bare = IssuedKey {
        subject: None,
        max_uses: None,
        ..issued(id(136))
    };
    ledger.record_issued(&bare).unwrap();
    ledger.record_issued(&bare).unwrap();
}

#[test]
fn revocation_agrees_with_admit_for_every_kind_of_revocation() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    // The other ledger keeps the default freshness: `revocation` must look anyway.
    let other = SqliteLedger::open(&path).unwrap();
    let before = NOW.minus(100);
    let plain = key(id(140), Some(10));
    let by_id = key(id(141), Some(10));
    let alice_old = KeyUse {
        issued_at: before.minus(1),
        ..key(id(142), Some(10))
    };
    let alice_at = KeyUse {
        issued_at: before,
        ..key(id(143), Some(10))
    };
    let bob_old = KeyUse {
        subject: Some("bob"),
        issued_at: before.minus(1),
        ..key(id(144), Some(10))
    };
    let nobody_older = KeyUse {
        subject: None,
        issued_at: before.minus(51),
        ..key(id(145), None)
    };
    let all = [
        &plain,
        &by_id,
        &alice_old,
        &alice_at,
        &bob_old,
        &nobody_older,
    ];
    for k in all {
        assert_eq!(other.revocation(k).unwrap(), None);
    }

    ledger
        .revoke_key(id(141), Some(by_id.key_expires), NOW)
        .unwrap();
    ledger.revoke_subject("alice", before, NOW).unwrap();
    ledger.revoke_all_before(before.minus(50), NOW).unwrap();
    let expected = [
        None,
        Some(Revocation::Key),
        Some(Revocation::Subject { before }),
        None,
        None,
        Some(Revocation::All {
            before: before.minus(50),
        }),
    ];
    for l in [&ledger, &other] {
        for (k, want) in all.iter().zip(expected) {
            assert_eq!(l.revocation(k).unwrap(), want, "{:?}", k.key_id);
            // Exactly what admit decides at the same moment.
            let admission = l.admit(k, NOW).unwrap();
            assert_eq!(
                admission == Admission::Revoked,
                want.is_some(),
                "{:?}: {admission:?}",
                k.key_id
            );
        }
    }

    // Several at once: by id first, then by subject, then by time.
    ledger.revoke_key(id(142), None, NOW).unwrap();
    ledger.revoke_all_before(NOW, NOW).unwrap();
    assert_eq!(other.revocation(&alice_old).unwrap(), Some(Revocation::Key));
    let alice_older = KeyUse {
        key_id: id(146),
        ..alice_old
    };
    assert_eq!(
        other.revocation(&alice_older).unwrap(),
        Some(Revocation::Subject { before })
    );
    assert_eq!(
        other.revocation(&bob_old).unwrap(),
        Some(Revocation::All { before: NOW })
    );
    // The latest time is reported.
    assert_eq!(
        other.revocation(&nobody_older).unwrap(),
        Some(Revocation::All { before: NOW })
    );

    // Through a record, as the gate would ask.
    let record = IssuedKey {
        subject: Some("bob".to_owned()),
        issued_at: NOW,
        ..issued(id(147))
    };
    ledger.record_issued(&record).unwrap();
    let found = other.issued(id(147)).unwrap().unwrap();
    assert_eq!(other.revocation(&found.key_use()).unwrap(), None);
    ledger.revoke_subject("bob", NOW.plus(1), NOW).unwrap();
    assert_eq!(
        other.revocation(&found.key_use()).unwrap(),
        Some(Revocation::Subject {
            before: NOW.plus(1)
        })
    );
}

#[test]
fn revocation_consumes_no_use() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let once = key(id(150), Some(1));
    for _ in 0..5 {
        assert_eq!(ledger.revocation(&once).unwrap(), None);
    }
    assert_eq!(ledger.status(id(150)).unwrap(), KeyStatus::default());
    assert_eq!(
        ledger.admit(&once, NOW).unwrap(),
        Admission::Admitted { uses: 1 }
    );
    assert_eq!(
        ledger.revocation(&once).unwrap(),
        None,
        "exhausted, not revoked"
    );
    assert_eq!(ledger.status(id(150)).unwrap().uses, 1);
    assert_eq!(ledger.admit(&once, NOW).unwrap(), Admission::Exhausted);
}

#[test]
fn forget_expired_drops_issued_records_after_the_grace_only() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let soon = IssuedKey {
        expires: NOW.plus(10),
        ..issued(id(160))
    };
    let later = IssuedKey {
        expires: NOW.plus(1000),
        ..issued(id(161))
    };
    ledger.record_issued(&soon).unwrap();
    ledger.record_issued(&later).unwrap();
    // Its one use and its revocation expire with it: three rows in all.
    assert!(admitted(&ledger, &soon.key_use()));
    ledger.revoke_key(id(160), Some(soon.expires), NOW).unwrap();

    // Kept for the default 30 s grace after expiry.
    assert_eq!(ledger.forget_expired(soon.expires).unwrap(), 0);
    assert_eq!(ledger.forget_expired(soon.expires.plus(30)).unwrap(), 0);
    assert_eq!(ledger.issued(id(160)).unwrap(), Some(soon.clone()));
    assert_eq!(ledger.forget_expired(soon.expires.plus(31)).unwrap(), 3);
    assert_eq!(ledger.issued(id(160)).unwrap(), None);
    assert_eq!(ledger.issued(id(161)).unwrap(), Some(later.clone()));
    assert_eq!(ledger.forget_expired(later.expires.plus(31)).unwrap(), 1);
    assert_eq!(ledger.issued(id(161)).unwrap(), None);
}

#[test]
fn concurrent_records_from_32_threads_are_all_kept() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let barrier = Barrier::new(32);
    thread::scope(|scope| {
        for t in 0..32u8 {
            let (ledger, barrier) = (&ledger, &barrier);
            scope.spawn(move || {
                barrier.wait();
                for n in 0..20u8 {
                    ledger.record_issued(&numbered(t, n)).unwrap();
                    // Readable as soon as recorded, here and through another connection.
                    assert_eq!(
                        ledger.issued(numbered(t, n).key_id).unwrap(),
                        Some(numbered(t, n))
                    );
                }
                // A conflicting record among the others fails alone.
                let mut conflicting = numbered(t, 0);
                conflicting.ops = "delete".to_owned();
                assert!(matches!(
                    ledger.record_issued(&conflicting),
                    Err(LedgerError::Conflict { .. })
                ));
            });
        }
    });
    let other = strict(&path);
    for t in 0..32 {
        for n in 0..20 {
            let key = numbered(t, n);
            assert_eq!(ledger.issued(key.key_id).unwrap(), Some(key.clone()));
            assert_eq!(other.issued(key.key_id).unwrap(), Some(key));
        }
    }
    let rows: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM issued", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 32 * 20);
}

#[test]
fn another_ledger_on_the_file_sees_a_record_as_soon_as_it_is_made() {
    let (_dir, path) = temp_db();
    let gate = SqliteLedger::open(&path).unwrap();
    let other = SqliteLedger::open(&path).unwrap();
    assert_eq!(other.issued(id(170)).unwrap(), None);
    for n in 170..180 {
        gate.record_issued(&issued(id(n))).unwrap();
        assert_eq!(other.issued(id(n)).unwrap(), Some(issued(id(n))));
    }
    // And the other way round.
    other.record_issued(&issued(id(180))).unwrap();
    assert_eq!(gate.issued(id(180)).unwrap(), Some(issued(id(180))));
}

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

/// A key with `max_uses = 1` valid for an hour from `NOW`, and a copy narrowed to one second.
fn one_time_key_and_short_narrowing() -> (Verifier, String, String) {
    let keyring = Keyring::from_secrets(Some("k1"), &[("k1", [7; 32])]).unwrap();
    let root = keyring
        .issue(Claims {
            key_id: id(210),
            subject: Some("alice".to_owned()),
            scope: "blob:files/a".parse().unwrap(),
            ops: "read".parse().unwrap(),
            not_before: NOW,
            expires: NOW.plus(3600),
            limits: Limits {
                max_uses: Some(1),
                ..Limits::default()
            },
        })
        .unwrap();
    let narrowed = root
        .attenuate(Caveat {
            expires: Some(NOW.plus(1)),
            ..Caveat::default()
        })
        .unwrap();
    (
        Verifier::new(keyring),
        root.to_string(),
        narrowed.to_string(),
    )
}

/// What the store hands the ledger for a request made with `token` at `now`.
fn key_use_of(verifier: &Verifier, token: &str, now: UnixTime) -> (KeyUse<'static>, u64) {
    let resource = "blob:files/a".parse().unwrap();
    let access = Access {
        op: Op::Read,
        resource: &resource,
        now,
        client: None,
    };
    let grant = verifier.authorize(token, &access).unwrap();
    let key_use = KeyUse {
        key_id: grant.key_id,
        subject: Some("alice"),
        issued_at: grant.issued_at,
        key_expires: grant.key_expires,
        max_uses: grant.max_uses,
    };
    (key_use, grant.valid_until.0)
}

/// The `max_uses` bypass: the first use came through a copy narrowed to expire in a second;
/// the count used to be kept until then only, so the next pruning forgot it and the root key
/// (or a new narrowing) was as good as new. The count lives as long as the key itself.
#[test]
fn a_use_counted_through_a_short_narrowing_survives_pruning_past_it() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let (verifier, root, narrowed) = one_time_key_and_short_narrowing();
    let (first, valid_until) = key_use_of(&verifier, &narrowed, NOW);
    assert_eq!(
        valid_until,
        NOW.plus(1).0,
        "the narrowed copy lasts a second"
    );
    assert_eq!(first.key_expires, NOW.plus(3600), "but the key an hour");
    assert_eq!(
        ledger.admit(&first, NOW).unwrap(),
        Admission::Admitted { uses: 1 }
    );
    // Prunings at every minute from well past the copy's expiry to the key's own expiry
    // plus the grace forget nothing; the root and new narrowings stay refused throughout.
    for minute in 1..=60 {
        let later = NOW.plus(minute * 60);
        assert_eq!(ledger.forget_expired(later).unwrap(), 0, "minute {minute}");
        let (again, _) = key_use_of(&verifier, &root, later);
        assert_eq!(ledger.admit(&again, later).unwrap(), Admission::Exhausted);
    }
    assert_eq!(ledger.status(id(210)).unwrap().uses, 1);
    let last = NOW.plus(3600 + DEFAULT_GRACE);
    assert_eq!(ledger.forget_expired(last).unwrap(), 0, "kept for the skew");
    assert_eq!(
        ledger.forget_expired(last.plus(1)).unwrap(),
        1,
        "then forgotten"
    );
}

const DEFAULT_GRACE: u64 = valet_key::DEFAULT_SKEW_SECONDS;

/// A later admission never shortens a count's life, admitted or refused.
#[test]
fn a_use_rows_expiry_is_only_ever_raised() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    let long = KeyUse {
        key_expires: NOW.plus(1000),
        ..key(id(211), Some(2))
    };
    let short = KeyUse {
        key_expires: NOW.plus(10),
        ..long
    };
    assert!(admitted(&ledger, &long));
    assert!(admitted(&ledger, &short), "the second use");
    assert!(!admitted(&ledger, &short), "exhausted");
    assert_eq!(ledger.forget_expired(NOW.plus(500)).unwrap(), 0);
    assert!(!admitted(&ledger, &long));
    // And a refused admission with a later expiry raises a row that was too early.
    let first = KeyUse {
        key_expires: NOW.plus(10),
        ..key(id(212), Some(1))
    };
    assert!(admitted(&ledger, &first));
    let root = KeyUse {
        key_expires: NOW.plus(1000),
        ..first
    };
    assert!(!admitted(&ledger, &root));
    assert_eq!(ledger.forget_expired(NOW.plus(500)).unwrap(), 0);
    assert!(!admitted(&ledger, &root));
    assert_eq!(ledger.forget_expired(NOW.plus(1031)).unwrap(), 2);
}

/// A second revocation of a key never shortens the first: a later expiry, or none (forever),
/// wins.
#[test]
fn a_revocations_expiry_is_only_ever_raised() {
    let (_dir, path) = temp_db();
    let ledger = strict(&path);
    assert!(ledger.revoke_key(id(213), Some(NOW.plus(10)), NOW).unwrap());
    assert!(!ledger
        .revoke_key(id(213), Some(NOW.plus(1000)), NOW)
        .unwrap());
    assert!(!ledger.revoke_key(id(213), Some(NOW.plus(5)), NOW).unwrap());
    assert_eq!(ledger.forget_expired(NOW.plus(500)).unwrap(), 0);
    assert!(ledger.status(id(213)).unwrap().revoked);
    assert!(ledger.revoke_key(id(214), Some(NOW.plus(10)), NOW).unwrap());
    assert!(!ledger.revoke_key(id(214), None, NOW).unwrap());
    assert!(!ledger.revoke_key(id(214), Some(NOW.plus(20)), NOW).unwrap());
    assert_eq!(
        ledger.forget_expired(UnixTime(u64::MAX)).unwrap(),
        1,
        "213 only"
    );
    assert!(ledger.status(id(214)).unwrap().revoked, "kept forever");
}

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
