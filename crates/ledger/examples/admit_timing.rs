//! Rough timings of `SqliteLedger::admit`; not a benchmark, and nothing is asserted.
//!
//! `cargo run --release -p valet-ledger --example admit_timing [DIR]` (default: a temporary
//! directory; pass a directory on the disk the ledger will live on, as fsync speed varies).

use std::time::{Duration, Instant};

use valet_key::{KeyId, UnixTime};
use valet_ledger::{KeyUse, Ledger, SqliteLedger};

const NOW: UnixTime = UnixTime(1_700_000_000);

fn key(n: u64, max_uses: Option<u64>) -> KeyUse<'static> {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    KeyUse {
        key_id: KeyId(id),
        subject: Some("alice"),
        issued_at: NOW,
        key_expires: NOW.plus(3600),
        max_uses,
    }
}

fn per_call(label: &str, calls: u64, elapsed: Duration) {
    let each = elapsed / u32::try_from(calls).unwrap();
    println!("{label:<58} {each:>10.2?} per call ({calls} calls)");
}

fn main() {
    let temp = match std::env::args().nth(1) {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let path = temp.path().join("ledger.db");
    let ledger = SqliteLedger::open(&path).unwrap();
    let other = SqliteLedger::open(&path).unwrap();
    println!("ledger at {}", path.display());

    // Some revocations in the view, as in real use.
    for n in 0..1000 {
        ledger
            .revoke_key(key(1_000_000 + n, None).key_id, None, NOW)
            .unwrap();
    }
    for n in 0..100 {
        ledger
            .revoke_subject(&format!("user{n}"), NOW, NOW)
            .unwrap();
    }
    ledger.revoke_all_before(NOW.minus(86_400), NOW).unwrap();

    let free = key(1, None);
    for _ in 0..10_000 {
        ledger.admit(&free, NOW).unwrap();
    }
    let calls = 1_000_000;
    let start = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(ledger.admit(std::hint::black_box(&free), NOW).unwrap());
    }
    per_call(
        "admit, no max_uses, nothing changed",
        calls,
        start.elapsed(),
    );

    let threads = 2;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..calls / threads {
                    std::hint::black_box(ledger.admit(&free, NOW).unwrap());
                }
            });
        }
    });
    per_call(
        "admit, no max_uses, 2 threads (wall time / calls)",
        calls,
        start.elapsed(),
    );

    // Another connection commits before each admit: the view is checked against `meta`.
    let calls = 1000;
    let mut spent = Duration::ZERO;
    for n in 0..calls {
        other.admit(&key(2_000_000 + n, Some(1)), NOW).unwrap();
        let start = Instant::now();
        ledger.admit(&free, NOW).unwrap();
        spent += start.elapsed();
    }
    per_call(
        "admit, no max_uses, after another's use commit",
        calls,
        spent,
    );

    // ... and after another's revocation: an incremental reload of one row.
    let mut spent = Duration::ZERO;
    for n in 0..calls {
        other
            .revoke_key(key(3_000_000 + n, None).key_id, None, NOW)
            .unwrap();
        let start = Instant::now();
        ledger.admit(&free, NOW).unwrap();
        spent += start.elapsed();
    }
    per_call(
        "admit, no max_uses, after another's revocation",
        calls,
        spent,
    );

    let start = Instant::now();
    for n in 0..calls {
        ledger.admit(&key(4_000_000 + n, Some(1)), NOW).unwrap();
    }
    per_call(
        "admit, max_uses = 1, new key (insert + fsync)",
        calls,
        start.elapsed(),
    );

    let counted = key(5, Some(u64::MAX));
    let start = Instant::now();
    for _ in 0..calls {
        ledger.admit(&counted, NOW).unwrap();
    }
    per_call(
        "admit, max_uses, same key (update + fsync)",
        calls,
        start.elapsed(),
    );

    let start = Instant::now();
    std::thread::scope(|scope| {
        for ledger in [&ledger, &other] {
            scope.spawn(move || {
                for _ in 0..calls / 2 {
                    ledger.admit(&counted, NOW).unwrap();
                }
            });
        }
    });
    per_call(
        "admit, max_uses, same key, two ledgers at once (wall/calls)",
        calls,
        start.elapsed(),
    );
    println!(
        "uses counted: {}",
        ledger.status(counted.key_id).unwrap().uses
    );
}
