//! How long a revocation committed through one node takes to be refused by another's
//! in-memory view, on PostgreSQL: p50 and p99 over many revocations. Nothing is asserted (the
//! test `a_revocation_reaches_another_node_by_notification` checks a generous bound).
//!
//! `bash bench/revocation-propagation.sh [COUNT]`, or
//! `cargo run --release -p valet-ledger --example revocation_propagation [COUNT]`: on the
//! server named by `VALET_TEST_POSTGRES`, or on a private one started from the machine's
//! PostgreSQL binaries (see `valet_testkit::postgres`).

use std::time::{Duration, Instant};

use valet_key::{KeyId, UnixTime};
use valet_ledger::{Admission, KeyUse, Ledger, PgLedger};

const NOW: UnixTime = UnixTime(1_700_000_000);

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map_or(200, |n| n.parse().expect("COUNT is a number"));
    let db = valet_testkit::postgres::database();
    let gate = PgLedger::open(db.url()).expect("opening the revoking node");
    let store = PgLedger::open(db.url()).expect("opening the refusing node");
    let mut delays = Vec::with_capacity(count);
    for n in 0..count {
        let mut id = [0x5a; 16];
        id[..8].copy_from_slice(&(n as u64).to_le_bytes());
        let key = KeyUse {
            key_id: KeyId(id),
            subject: None,
            issued_at: NOW,
            key_expires: NOW.plus(3600),
            max_uses: None,
        };
        // From the moment the revoking transaction has committed (`revoke_key` returned).
        gate.revoke_key(key.key_id, None, NOW).expect("revoking");
        let committed = Instant::now();
        loop {
            match store.admit(&key, NOW) {
                Ok(Admission::Revoked) => break,
                Ok(_) if committed.elapsed() < Duration::from_secs(10) => std::hint::spin_loop(),
                other => panic!("not refused after 10 s: {other:?}"),
            }
        }
        delays.push(committed.elapsed());
    }
    delays.sort_unstable();
    let at = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)];
    println!(
        "revocation propagation over {count} revocations: p50 {:?}, p99 {:?}, max {:?}",
        at(0.50),
        at(0.99),
        delays[delays.len() - 1]
    );
}
