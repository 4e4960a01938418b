//! The SQLite ledger on real files: exact counting under concurrency, revocations seen across
//! connections and processes, persistence, forgetting, and failing closed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use valet_key::{KeyId, UnixTime};
use valet_ledger::{
    Admission, KeyStatus, KeyUse, Ledger, LedgerError, SqliteLedger, SqliteOptions,
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
        expires: NOW.plus(3600),
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
    assert!(ledger.revoke_key(id(6), Some(capped.expires), NOW).unwrap());
    assert!(
        !ledger.revoke_key(id(6), Some(capped.expires), NOW).unwrap(),
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
    assert!(gate.revoke_key(id(10), Some(k.expires), NOW).unwrap());
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
        expires: NOW.plus(10),
        ..key(id(70), Some(1))
    };
    let later = KeyUse {
        expires: NOW.plus(1000),
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
    assert_eq!(ledger.forget_expired(once.expires.plus(30)).unwrap(), 0);
    assert_eq!(ledger.admit(&once, NOW).unwrap(), Admission::Exhausted);
    assert_eq!(ledger.forget_expired(once.expires.plus(31)).unwrap(), 1);
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
    assert_eq!(version, 1);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

// Failing closed.

fn unavailable_message(result: Result<impl std::fmt::Debug, LedgerError>) -> String {
    match result {
        Err(err @ LedgerError::Unavailable(_)) => err.to_string(),
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
    // Readers are not blocked in WAL mode: uncounted keys and status still work.
    assert!(admitted(&ledger, &key(id(102), None)));
    assert_eq!(ledger.status(id(100)).unwrap(), KeyStatus::default());

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
        .pragma_update(None, "user_version", 2)
        .unwrap();
    let message = unavailable_message(SqliteLedger::open(&path));
    assert!(message.contains("schema version 2"), "{message}");
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
        expires: UnixTime(u64::MAX / 2),
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
