//! Rough throughput of `SqliteLedger::record_issued` with 1 to 32 concurrent callers; not a
//! benchmark, and nothing is asserted.
//!
//! `cargo run -p valet-ledger --example issue_timing [DIR] [SECONDS]` (default: a temporary
//! directory and 2 s per run; pass a directory on the disk the ledger will live on, as fsync
//! speed varies). Every record is one fsync'd commit or shares one with concurrent records, so
//! the disk, not the build profile, sets these figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use valet_key::{KeyId, UnixTime};
use valet_ledger::{IssuedKey, Ledger, SqliteLedger};

const NOW: UnixTime = UnixTime(1_700_000_000);

fn issued(n: u64) -> IssuedKey {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    IssuedKey {
        key_id: KeyId(id),
        subject: Some(format!("user{}", n % 100)),
        issued_by: "app".to_owned(),
        resource: format!("blob:files/upload-{n}.bin"),
        ops: "read,write".to_owned(),
        issued_at: NOW,
        expires: NOW.plus(900),
        max_uses: Some(1),
    }
}

/// `threads` callers record keys for `run`; prints records per second and latency.
fn measure(ledger: &SqliteLedger, threads: u64, run: Duration, next: &AtomicU64) {
    let barrier = Barrier::new(threads as usize);
    let (count, worst) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let deadline = Instant::now() + run;
                    let (mut count, mut worst) = (0u64, Duration::ZERO);
                    while Instant::now() < deadline {
                        let key = issued(next.fetch_add(1, Ordering::Relaxed));
                        let start = Instant::now();
                        ledger.record_issued(&key).unwrap();
                        worst = worst.max(start.elapsed());
                        count += 1;
                    }
                    (count, worst)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, Duration::ZERO), |(c, w), (count, worst)| {
                (c + count, w.max(worst))
            })
    });
    let per_second = count as f64 / run.as_secs_f64();
    let mean = run.as_secs_f64() * threads as f64 / count.max(1) as f64;
    println!(
        "record_issued, {threads:>2} threads: {per_second:>8.0} records/s, \
         mean {:>7.2} ms, worst {:>7.2?} per call ({count} records)",
        mean * 1e3,
        worst
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let temp = match args.next() {
        Some(dir) if !dir.is_empty() => tempfile::tempdir_in(dir),
        _ => tempfile::tempdir(),
    }
    .unwrap();
    let run = Duration::from_secs_f64(args.next().map_or(2.0, |s| s.parse().unwrap()));
    let path = temp.path().join("ledger.db");
    let ledger = SqliteLedger::open(&path).unwrap();
    println!("ledger at {}", path.display());
    let next = AtomicU64::new(0);
    // Warm up: the first commits grow the file and the log.
    for _ in 0..100 {
        ledger
            .record_issued(&issued(next.fetch_add(1, Ordering::Relaxed)))
            .unwrap();
    }
    for threads in [1, 2, 8, 16, 32] {
        measure(&ledger, threads, run, &next);
    }
    let last = next.load(Ordering::Relaxed) - 1;
    assert_eq!(
        ledger.issued(issued(last).key_id).unwrap(),
        Some(issued(last))
    );
}
