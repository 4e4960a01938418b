//! The PostgreSQL ledger on a real server (see `valet_testkit::postgres`): the conformance
//! suite, and what is PostgreSQL's own: exact counting across nodes, revocations pushed to
//! every node by notification and caught up after a lost connection, failing closed when a
//! node cannot vouch for its revocations, concurrent migrations.

#[macro_use]
mod conformance;

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use conformance::{admitted, id, key, Backend, NOW};
use valet_ledger::{Admission, Ledger, LedgerError, PgLedger, PgOptions, FEED_APPLICATION_NAME};
use valet_testkit::postgres::{database, run_sql, TestDatabase};

/// The PostgreSQL backend of the conformance suite: a database of its own on the test server.
struct Postgres {
    db: TestDatabase,
}

impl Backend for Postgres {
    type Ledger = PgLedger;

    fn new() -> Postgres {
        Postgres { db: database() }
    }

    fn open(&self) -> PgLedger {
        PgLedger::open(self.db.url()).unwrap()
    }

    fn open_default(&self) -> PgLedger {
        self.open()
    }

    fn open_with_grace(&self, grace: Duration) -> PgLedger {
        PgLedger::open_with(self.db.url(), PgOptions::default().with_forget_grace(grace)).unwrap()
    }

    fn settle(ledger: &PgLedger) {
        ledger.catch_up().unwrap();
    }

    fn issued_rows(&self) -> i64 {
        count(&self.db, "valet_issued")
    }
}

conformance_tests!(Postgres);

/// Rows in `table`, read with a connection of the test's own.
fn count(db: &TestDatabase, table: &str) -> i64 {
    let marker = format!("valet_count_{table}");
    // `run_sql` returns no rows: the count comes back as the text of a deliberate error.
    let err = run_sql(
        db.url(),
        &format!(
            "DO $$ BEGIN RAISE EXCEPTION '{marker}=%', (SELECT count(*) FROM {table}); END $$"
        ),
    )
    .unwrap_err();
    err.rsplit('=').next().unwrap().trim().parse().unwrap()
}

/// A one-time key under 64 concurrent requests spread over two nodes is admitted once.
#[test]
fn a_one_time_key_is_admitted_once_across_two_nodes() {
    let db = database();
    let nodes = [
        PgLedger::open(db.url()).unwrap(),
        PgLedger::open(db.url()).unwrap(),
    ];
    for round in 0..5u8 {
        let once = key(id(200 + round), Some(1));
        let barrier = Barrier::new(64);
        let results: Vec<Admission> = thread::scope(|scope| {
            let handles: Vec<_> = (0..64)
                .map(|n| {
                    let (node, barrier, once) = (&nodes[n % 2], &barrier, &once);
                    scope.spawn(move || {
                        barrier.wait();
                        node.admit(once, NOW).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let admitted = results
            .iter()
            .filter(|a| matches!(a, Admission::Admitted { uses: 1 }))
            .count();
        let exhausted = results
            .iter()
            .filter(|a| **a == Admission::Exhausted)
            .count();
        assert_eq!((admitted, exhausted), (1, 63), "round {round}: {results:?}");
    }
}

/// A revocation through one node reaches another's in-memory view by notification, well
/// within the bound, without any call that would make it look.
#[test]
fn a_revocation_reaches_another_node_by_notification() {
    let db = database();
    let gate = PgLedger::open(db.url()).unwrap();
    let store = PgLedger::open(db.url()).unwrap();
    for n in 0..10u8 {
        let k = key(id(220 + n), None);
        assert!(admitted(&store, &k));
        let committed = Instant::now();
        gate.revoke_key(k.key_id, None, NOW).unwrap();
        while store.admit(&k, NOW).unwrap() != Admission::Revoked {
            assert!(
                committed.elapsed() < Duration::from_secs(1),
                "not refused within 1 s"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A node whose feed lost its connection misses the notifications sent meanwhile, and still
/// refuses the key once it is back: the catch-up by sequence number.
#[test]
fn revocations_missed_while_the_feed_was_down_are_caught_up() {
    let db = database();
    let gate = PgLedger::open(db.url()).unwrap();
    let store = PgLedger::open(db.url()).unwrap();
    let k = key(id(230), None);
    assert!(admitted(&store, &k));
    // End the revocation feeds' connections.
    terminate_feeds(&db);
    gate.revoke_key(k.key_id, None, NOW).unwrap();
    let committed = Instant::now();
    while !matches!(store.admit(&k, NOW), Ok(Admission::Revoked)) {
        assert!(
            committed.elapsed() < Duration::from_secs(5),
            "not refused after the feed reconnected"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

fn terminate_feeds(db: &TestDatabase) {
    terminate_sessions(db, FEED_APPLICATION_NAME);
}

/// Ends every session on `db` whose `application_name` is `name`, as a lost connection would.
fn terminate_sessions(db: &TestDatabase, name: &str) {
    run_sql(
        db.admin_url(),
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND application_name = '{name}'",
            db.name()
        ),
    )
    .unwrap();
}

/// A node that cannot confirm its revocations for longer than the staleness refuses keyed
/// requests (uncounted ones too) as unavailable, and serves again once it caught up.
#[test]
fn a_node_that_cannot_confirm_its_revocations_fails_closed_then_recovers() {
    let db = database();
    let staleness = Duration::from_millis(600);
    let options = PgOptions::default()
        .with_staleness(staleness)
        .with_timeout(Duration::from_millis(500));
    let store = PgLedger::open_with(db.url(), options).unwrap();
    let free = key(id(240), None);
    assert!(admitted(&store, &free));
    // Lock the table the feed reads, so that its catch-ups hang, and keep it locked.
    let locker = db.url().to_owned();
    let held = thread::spawn(move || {
        run_sql(
            &locker,
            "BEGIN; LOCK TABLE valet_revoked_keys IN ACCESS EXCLUSIVE MODE; \
             SELECT pg_sleep(2); COMMIT;",
        )
    });
    let started = Instant::now();
    let refused = loop {
        match store.admit(&free, NOW) {
            Err(LedgerError::Unavailable(why)) => break why.to_string(),
            Ok(_) => {
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "still serving on a view it cannot vouch for"
                );
                thread::sleep(Duration::from_millis(10));
            }
            Err(other) => panic!("{other}"),
        }
    };
    assert!(
        started.elapsed() >= staleness - Duration::from_millis(100),
        "refused only after the staleness bound ({:?})",
        started.elapsed()
    );
    assert!(refused.contains("not confirmed"), "{refused}");
    held.join().unwrap().unwrap();
    let unlocked = Instant::now();
    while store.admit(&free, NOW).is_err() {
        assert!(
            unlocked.elapsed() < Duration::from_secs(5),
            "never recovered"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Nodes starting at once on an empty database migrate it once between them.
#[test]
fn nodes_starting_at_once_migrate_once() {
    let db = database();
    let barrier = Barrier::new(8);
    thread::scope(|scope| {
        for _ in 0..8 {
            let (url, barrier) = (db.url(), &barrier);
            scope.spawn(move || {
                barrier.wait();
                PgLedger::open(url).unwrap()
            });
        }
    });
    assert_eq!(count(&db, "valet_schema_migrations"), 1);
}

/// The URL's password appears in no message and no debug output.
#[test]
fn a_password_never_appears_in_messages() {
    let db = database();
    // Trust authentication takes any password.
    let url = db.url().replace("postgres@", "postgres:sekrit-pass@");
    let ledger = PgLedger::open(&url).unwrap();
    let text = format!("{ledger:?} {}", ledger.target());
    assert!(!text.contains("sekrit-pass"), "{text}");
    let port = valet_testkit::process::free_port();
    let nowhere = format!("postgres://postgres:sekrit-pass@127.0.0.1:{port}/valet");
    let options = PgOptions::default().with_timeout(Duration::from_millis(500));
    let err = PgLedger::open_with(&nowhere, options).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("sekrit-pass"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}/valet")), "{text}");
}

/// A node that dies holding a name lock (its session ends) releases it: another node takes
/// it at once, without waiting for any timeout.
#[test]
fn a_name_lock_is_released_when_its_holders_session_ends() {
    let db = database();
    let separator = if db.url().contains('?') { '&' } else { '?' };
    let holder_url = format!("{}{separator}application_name=valet-lock-holder", db.url());
    let holder = PgLedger::open(&holder_url).unwrap();
    let other = PgLedger::open(db.url()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let held = holder.name_locks().lock("files/a").await.unwrap();
        let waiting = tokio::time::timeout(
            Duration::from_millis(300),
            Ledger::name_locks(&other).lock("files/a"),
        );
        assert!(waiting.await.is_err(), "held by the other node");
        terminate_sessions(&db, "valet-lock-holder");
        let started = Instant::now();
        let taken = tokio::time::timeout(
            Duration::from_secs(3),
            Ledger::name_locks(&other).lock("files/a"),
        )
        .await;
        assert!(taken.expect("released with the session").is_ok());
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(held);
    });
}
