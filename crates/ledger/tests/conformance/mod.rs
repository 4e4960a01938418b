//! The conformance suite: what every [`Ledger`] must do, whatever it stores in. Each test
//! file of a backend implements [`Backend`] for it and runs every test here with
//! `conformance_tests!(ItsBackend)`. Tests of one backend's own parts (files, locks,
//! migrations of its schema, processes) stay in that backend's file.

#![allow(dead_code)]

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use valet_key::{Access, Caveat, Claims, KeyId, Keyring, Limits, Op, UnixTime, Verifier};
use valet_ledger::{Admission, IssuedKey, KeyStatus, KeyUse, Ledger, LedgerError, Revocation};

/// A database for one test, and how to open ledgers on it.
pub trait Backend {
    /// The ledger type.
    type Ledger: Ledger;
    /// A new, empty database.
    fn new() -> Self;
    /// A ledger on this database whose next admission sees every revocation committed
    /// through any other once [`Backend::settle`] returned for it (SQLite: one that looks at
    /// every admission).
    fn open(&self) -> Self::Ledger;
    /// A ledger with the backend's default options.
    fn open_default(&self) -> Self::Ledger;
    /// A ledger that forgets rows `grace` after expiry.
    fn open_with_grace(&self, grace: Duration) -> Self::Ledger;
    /// Waits until `ledger`'s view of revocations has every revocation committed so far,
    /// through any ledger: what a backend that propagates revocations (PostgreSQL, by
    /// notification) does within its bound. Nothing to do where the next admission looks.
    fn settle(ledger: &Self::Ledger);
    /// How many issued records the database holds.
    fn issued_rows(&self) -> i64;
}

/// One `#[test]` per conformance test, for `$backend`.
macro_rules! conformance_tests {
    ($backend:ty) => {
        #[test]
        fn ledger_is_shareable_across_threads() {
            conformance::ledger_is_shareable_across_threads::<$backend>();
        }
        #[test]
        fn one_time_key_is_admitted_exactly_once_among_64_threads() {
            conformance::one_time_key_is_admitted_exactly_once_among_64_threads::<$backend>();
        }
        #[test]
        fn five_use_key_is_admitted_exactly_five_times_among_64_threads() {
            conformance::five_use_key_is_admitted_exactly_five_times_among_64_threads::<$backend>();
        }
        #[test]
        fn uses_are_counted_only_with_a_cap() {
            conformance::uses_are_counted_only_with_a_cap::<$backend>();
        }
        #[test]
        fn a_revoked_key_consumes_no_use() {
            conformance::a_revoked_key_consumes_no_use::<$backend>();
        }
        #[test]
        fn revocations_through_one_ledger_are_seen_by_the_next_admit_of_another() {
            conformance::revocations_through_one_ledger_are_seen_by_the_next_admit_of_another::<$backend>();
        }
        #[test]
        fn a_revocation_is_seen_after_many_unrelated_commits() {
            conformance::a_revocation_is_seen_after_many_unrelated_commits::<$backend>();
        }
        #[test]
        fn use_counting_is_exact_across_two_ledgers_on_one_file() {
            conformance::use_counting_is_exact_across_two_ledgers_on_one_file::<$backend>();
        }
        #[test]
        fn subject_revocation_affects_only_that_subjects_older_keys() {
            conformance::subject_revocation_affects_only_that_subjects_older_keys::<$backend>();
        }
        #[test]
        fn global_revocation_affects_only_keys_issued_before() {
            conformance::global_revocation_affects_only_keys_issued_before::<$backend>();
        }
        #[test]
        fn counts_and_revocations_survive_reopening() {
            conformance::counts_and_revocations_survive_reopening::<$backend>();
        }
        #[test]
        fn forget_expired_removes_only_expired_rows() {
            conformance::forget_expired_removes_only_expired_rows::<$backend>();
        }
        #[test]
        fn forget_expired_keeps_rows_for_the_clock_skew_by_default() {
            conformance::forget_expired_keeps_rows_for_the_clock_skew_by_default::<$backend>();
        }
        #[test]
        fn an_issued_key_is_recorded_and_read_back() {
            conformance::an_issued_key_is_recorded_and_read_back::<$backend>();
        }
        #[test]
        fn recording_a_key_twice_is_a_no_op_only_if_identical() {
            conformance::recording_a_key_twice_is_a_no_op_only_if_identical::<$backend>();
        }
        #[test]
        fn revocation_agrees_with_admit_for_every_kind_of_revocation() {
            conformance::revocation_agrees_with_admit_for_every_kind_of_revocation::<$backend>();
        }
        #[test]
        fn revocation_consumes_no_use() {
            conformance::revocation_consumes_no_use::<$backend>();
        }
        #[test]
        fn forget_expired_drops_issued_records_after_the_grace_only() {
            conformance::forget_expired_drops_issued_records_after_the_grace_only::<$backend>();
        }
        #[test]
        fn concurrent_records_from_32_threads_are_all_kept() {
            conformance::concurrent_records_from_32_threads_are_all_kept::<$backend>();
        }
        #[test]
        fn another_ledger_on_the_file_sees_a_record_as_soon_as_it_is_made() {
            conformance::another_ledger_on_the_file_sees_a_record_as_soon_as_it_is_made::<$backend>();
        }
        #[test]
        fn a_use_counted_through_a_short_narrowing_survives_pruning_past_it() {
            conformance::a_use_counted_through_a_short_narrowing_survives_pruning_past_it::<$backend>();
        }
        #[test]
        fn a_use_rows_expiry_is_only_ever_raised() {
            conformance::a_use_rows_expiry_is_only_ever_raised::<$backend>();
        }
        #[test]
        fn a_revocations_expiry_is_only_ever_raised() {
            conformance::a_revocations_expiry_is_only_ever_raised::<$backend>();
        }
        #[test]
        fn a_name_lock_has_one_holder_and_is_released_when_dropped() {
            conformance::a_name_lock_has_one_holder_and_is_released_when_dropped::<$backend>();
        }
        #[test]
        fn name_locks_exclude_concurrent_holders_of_one_name() {
            conformance::name_locks_exclude_concurrent_holders_of_one_name::<$backend>();
        }
    };
}

pub const NOW: UnixTime = UnixTime(1_700_000_000);

pub fn id(n: u8) -> KeyId {
    KeyId([n; 16])
}

/// A key of "alice", issued a minute ago, expiring in an hour.
pub fn key(key_id: KeyId, max_uses: Option<u64>) -> KeyUse<'static> {
    KeyUse {
        key_id,
        subject: Some("alice"),
        issued_at: NOW.minus(60),
        key_expires: NOW.plus(3600),
        max_uses,
    }
}

pub fn admitted(ledger: &impl Ledger, key: &KeyUse<'_>) -> bool {
    match ledger.admit(key, NOW).unwrap() {
        Admission::Admitted { .. } => true,
        Admission::Exhausted => false,
        Admission::Revoked => panic!("unexpected revocation"),
    }
}

/// `threads` threads per ledger call `admit` at once; returns the counts of the admitted ones.
fn race<L: Ledger>(ledgers: &[&L], threads: usize, key: &KeyUse<'_>) -> (Vec<u64>, usize) {
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

#[cfg(unix)]
/// The record of a key like [`key`]'s: alice's, issued a minute ago, expiring in an hour.
pub fn issued(key_id: KeyId) -> IssuedKey {
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

/// Record/// Record `n` of thread `t`, with an id of its own.
pub fn numbered(t: u8, n: u8) -> IssuedKey {
    let mut key_id = [0xee; 16];
    key_id[0] = t;
    key_id[1] = n;
    IssuedKey {
        resource: format!("blob:files/{t}/{n}.bin"),
        ..issued(KeyId(key_id))
    }
}

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

const DEFAULT_GRACE: u64 = valet_key::DEFAULT_SKEW_SECONDS;

pub fn ledger_is_shareable_across_threads<B: Backend>() {
    fn assert_ledger<T: Ledger>() {}
    assert_ledger::<B::Ledger>();
    let db = B::new();
    let _shared: Arc<dyn Ledger> = Arc::new(db.open());
}

pub fn one_time_key_is_admitted_exactly_once_among_64_threads<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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

pub fn five_use_key_is_admitted_exactly_five_times_among_64_threads<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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

pub fn uses_are_counted_only_with_a_cap<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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

pub fn a_revoked_key_consumes_no_use<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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

pub fn revocations_through_one_ledger_are_seen_by_the_next_admit_of_another<B: Backend>() {
    let db = B::new();
    let gate = db.open();
    let store = db.open();

    // By key id. The store has admitted before, so it must notice the change, not just load.
    let k = key(id(10), None);
    assert!(admitted(&store, &k));
    assert!(gate.revoke_key(id(10), Some(k.key_expires), NOW).unwrap());
    B::settle(&store);
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
    B::settle(&store);
    assert_eq!(store.admit(&alice, NOW).unwrap(), Admission::Revoked);
    assert!(admitted(&store, &bob));

    // Everything before a time.
    gate.revoke_all_before(NOW, NOW).unwrap();
    B::settle(&store);
    assert_eq!(store.admit(&bob, NOW).unwrap(), Admission::Revoked);

    // And the other way round.
    let carol = KeyUse {
        subject: Some("carol"),
        issued_at: NOW,
        ..key(id(13), None)
    };
    assert!(admitted(&gate, &carol));
    store.revoke_key(id(13), None, NOW).unwrap();
    B::settle(&gate);
    assert_eq!(gate.admit(&carol, NOW).unwrap(), Admission::Revoked);
}

pub fn a_revocation_is_seen_after_many_unrelated_commits<B: Backend>() {
    // Use counts by another connection change `data_version` without touching revocations;
    // the view must follow those changes and still catch a later revocation.
    let db = B::new();
    let gate = db.open();
    let store = db.open();
    let watched = key(id(20), None);
    for n in 0..50u8 {
        assert!(admitted(&gate, &key(KeyId([n; 16]), Some(10))));
        assert!(admitted(&store, &watched));
    }
    gate.revoke_subject("alice", NOW, NOW).unwrap();
    B::settle(&store);
    assert_eq!(store.admit(&watched, NOW).unwrap(), Admission::Revoked);
}

pub fn use_counting_is_exact_across_two_ledgers_on_one_file<B: Backend>() {
    let db = B::new();
    let gate = db.open();
    let store = db.open();
    let ten = key(id(30), Some(10));
    let (uses, exhausted) = race(&[&gate, &store], 32, &ten);
    assert_eq!(uses, (1..=10).collect::<Vec<u64>>());
    assert_eq!(exhausted, 54);
    assert_eq!(gate.status(id(30)).unwrap().uses, 10);
    assert_eq!(store.status(id(30)).unwrap().uses, 10);
}

pub fn subject_revocation_affects_only_that_subjects_older_keys<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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
    let late = db.open();
    assert_eq!(late.admit(&alice_at, NOW).unwrap(), Admission::Revoked);
    assert!(admitted(&late, &alice_new));
    assert!(admitted(&late, &bob_old));
}

pub fn global_revocation_affects_only_keys_issued_before<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
    let other = db.open();
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
    B::settle(&other);
    for ledger in [&ledger, &other] {
        assert_eq!(ledger.admit(&old, NOW).unwrap(), Admission::Revoked);
        assert!(admitted(ledger, &at));
        assert!(admitted(ledger, &new));
    }
    other.revoke_all_before(UnixTime(0), NOW).unwrap();
    ledger.revoke_all_before(before.minus(50), NOW).unwrap();
    B::settle(&ledger);
    B::settle(&other);
    for ledger in [&ledger, &other] {
        assert_eq!(
            ledger.admit(&old, NOW).unwrap(),
            Admission::Revoked,
            "not lifted"
        );
        assert!(admitted(ledger, &at));
    }
    other.revoke_all_before(before.plus(1), NOW).unwrap();
    B::settle(&ledger);
    for ledger in [&ledger, &other] {
        assert_eq!(ledger.admit(&at, NOW).unwrap(), Admission::Revoked);
        assert!(admitted(ledger, &new));
    }
}

pub fn counts_and_revocations_survive_reopening<B: Backend>() {
    let db = B::new();
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
        let ledger = db.open();
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
    let ledger = db.open();
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

pub fn forget_expired_removes_only_expired_rows<B: Backend>() {
    let db = B::new();
    let ledger = db.open_with_grace(Duration::ZERO);
    let other = db.open_with_grace(Duration::ZERO);
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
    B::settle(&other);
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
    B::settle(&other);
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

pub fn forget_expired_keeps_rows_for_the_clock_skew_by_default<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
    let once = key(id(80), Some(1));
    assert!(admitted(&ledger, &once));
    // A verifier still accepts the key 30 s after it expires: so must the ledger refuse it.
    assert_eq!(ledger.forget_expired(once.key_expires.plus(30)).unwrap(), 0);
    assert_eq!(ledger.admit(&once, NOW).unwrap(), Admission::Exhausted);
    assert_eq!(ledger.forget_expired(once.key_expires.plus(31)).unwrap(), 1);
}

pub fn an_issued_key_is_recorded_and_read_back<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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
    let ledger = db.open();
    assert_eq!(ledger.issued(id(130)).unwrap(), Some(full.clone()));
    assert_eq!(ledger.issued(id(131)).unwrap(), Some(bare));

    // The key use derived from a record is the one a store would present.
    assert_eq!(
        ledger.admit(&full.key_use(), NOW).unwrap(),
        Admission::Admitted { uses: 1 }
    );
}

pub fn recording_a_key_twice_is_a_no_op_only_if_identical<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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

pub fn revocation_agrees_with_admit_for_every_kind_of_revocation<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
    // The other ledger keeps the default freshness: `revocation` must look anyway.
    let other = db.open_default();
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
    B::settle(&other);
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

pub fn revocation_consumes_no_use<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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

pub fn forget_expired_drops_issued_records_after_the_grace_only<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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

pub fn concurrent_records_from_32_threads_are_all_kept<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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
    let other = db.open();
    for t in 0..32 {
        for n in 0..20 {
            let key = numbered(t, n);
            assert_eq!(ledger.issued(key.key_id).unwrap(), Some(key.clone()));
            assert_eq!(other.issued(key.key_id).unwrap(), Some(key));
        }
    }
    assert_eq!(db.issued_rows(), 32 * 20);
}

pub fn another_ledger_on_the_file_sees_a_record_as_soon_as_it_is_made<B: Backend>() {
    let db = B::new();
    let gate = db.open_default();
    let other = db.open_default();
    assert_eq!(other.issued(id(170)).unwrap(), None);
    for n in 170..180 {
        gate.record_issued(&issued(id(n))).unwrap();
        assert_eq!(other.issued(id(n)).unwrap(), Some(issued(id(n))));
    }
    // And the other way round.
    other.record_issued(&issued(id(180))).unwrap();
    assert_eq!(gate.issued(id(180)).unwrap(), Some(issued(id(180))));
}

/// The `max_uses` bypass: the first use came through a copy narrowed to expire in a second;
/// the count used to be kept until then only, so the next pruning forgot it and the root key
/// (or a new narrowing) was as good as new. The count lives as long as the key itself.
pub fn a_use_counted_through_a_short_narrowing_survives_pruning_past_it<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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

/// A later admission never shortens a count's life, admitted or refused.
pub fn a_use_rows_expiry_is_only_ever_raised<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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
pub fn a_revocations_expiry_is_only_ever_raised<B: Backend>() {
    let db = B::new();
    let ledger = db.open();
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

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// One holder per name; other names are free; a lock through another ledger on the same
/// database waits exactly when the locks hold across nodes; dropping a lock releases it.
pub fn a_name_lock_has_one_holder_and_is_released_when_dropped<B: Backend>() {
    use tokio::time::timeout;
    let backend = B::new();
    let (a, b) = (backend.open(), backend.open());
    block_on(async {
        let (locks_a, locks_b) = (a.name_locks(), b.name_locks());
        let held = locks_a.lock("files/a").await.unwrap();
        let second = timeout(Duration::from_millis(200), locks_a.lock("files/a")).await;
        assert!(
            second.is_err(),
            "a second holder through the same ledger waits"
        );
        let other = timeout(Duration::from_secs(5), locks_a.lock("files/b")).await;
        let other = other.expect("another name is free").unwrap();
        let elsewhere = timeout(Duration::from_millis(300), locks_b.lock("files/a")).await;
        assert_eq!(
            elsewhere.is_err(),
            locks_a.across_nodes(),
            "another ledger waits exactly when the locks hold across nodes"
        );
        drop((elsewhere, other, held));
        let again = timeout(Duration::from_secs(5), locks_b.lock("files/a")).await;
        assert!(again.expect("released when dropped").is_ok());
    });
}

/// 32 tasks (over two ledgers where the locks hold across nodes) each take one name's lock
/// and check that nobody else is inside: never two at once.
pub fn name_locks_exclude_concurrent_holders_of_one_name<B: Backend>() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let backend = B::new();
    let (a, b) = (backend.open(), backend.open());
    let locks = [a.name_locks(), b.name_locks()];
    let ledgers = if locks[0].across_nodes() { 2 } else { 1 };
    let inside = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|n| {
                let locks = locks[n % ledgers].clone();
                let (inside, entered) = (inside.clone(), entered.clone());
                tokio::spawn(async move {
                    let _held = locks.lock("files/contended").await.unwrap();
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two holders at once"
                    );
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    entered.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    assert_eq!(entered.load(std::sync::atomic::Ordering::SeqCst), 32);
}
