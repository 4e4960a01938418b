//! What issuing and checking a valet key costs, next to presigning an S3 URL with SigV4.
//!
//! ```text
//! cargo bench -p valet-key --bench key
//! ```
//!
//! Four Criterion benchmarks, then plain timing loops over the same four closures (best of
//! seven interleaved rounds, which shrugs off load elsewhere on the machine better than a
//! mean) that print one `ratio:` line per valet operation against SigV4 presigning. About 35 s
//! in all. The comparison is as fair to SigV4 as it can be: the presigned URL is built by hand
//! from the signing output (no `http::Request` round trip), and the identity is made once.
//!
//! `cargo bench -p valet-key --bench key -- verify` runs only the benchmarks matching `verify`
//! and skips the ratios; `-- ratio` runs only the ratios; `cargo test --benches` runs each
//! benchmark once as a smoke test.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use criterion::Criterion;
use valet_key::{
    Access, Caveat, Claims, KeyId, Keyring, Limits, Op, Ops, Scope, Token, UnixTime, Verifier,
};

/// A fixed "now": 2025-06-15T15:06:40Z.
const NOW: u64 = 1_750_000_000;
/// Ten minutes, the typical lifetime of a handed-out key or presigned URL.
const TTL: u64 = 600;
const KEY_ID: KeyId = KeyId([
    0x3f, 0x9a, 0x61, 0xc2, 0x07, 0xd4, 0x8e, 0x15, 0xb0, 0x5c, 0xe9, 0x72, 0x2b, 0xa8, 0x46, 0xdd,
]);
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

fn keyring() -> Keyring {
    Keyring::from_secrets(
        Some("k1"),
        &[(
            "k1",
            *b"\x8c\x1d\x55\xe0\x4a\x93\x27\xbf\x61\x0e\xd8\x3c\x9f\x72\x14\xa6\
               \x5b\xc3\x08\xe7\x91\x2d\x4f\xb8\x36\xaa\x70\x1c\xf5\x89\x63\x0b",
        )],
    )
    .expect("a valid keyring")
}

fn scope(text: &str) -> Scope {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn read_only() -> Ops {
    Ops::NONE.with(Op::Read)
}

/// What a gate does to hand out a read key for one blob: build the claims (scope parsed from
/// the request's text, as a gate receives it), sign them, and render the token text.
fn issue(keyring: &Keyring) -> String {
    let claims = Claims {
        key_id: KEY_ID,
        subject: Some("alice".to_owned()),
        scope: scope("blob:photos/2024/cat.jpg"),
        ops: read_only(),
        not_before: UnixTime(NOW),
        expires: UnixTime(NOW + TTL),
        limits: Limits::default(),
    };
    keyring.issue(claims).expect("claims are valid").to_string()
}

/// A prefix key for `blob:photos/2024/` (read and list, an hour) narrowed by three caveats:
/// a deeper prefix with a shorter expiry; read only; a still deeper prefix with a smaller
/// upload cap and a CIDR.
fn three_caveat_token(keyring: &Keyring) -> String {
    let root = keyring
        .issue(Claims {
            key_id: KEY_ID,
            subject: Some("alice".to_owned()),
            scope: scope("blob:photos/2024/"),
            ops: read_only().with(Op::List),
            not_before: UnixTime(NOW),
            expires: UnixTime(NOW + 3600),
            limits: Limits {
                max_bytes: Some(10 << 20),
                ..Limits::default()
            },
        })
        .expect("claims are valid");
    let token = root
        .attenuate(Caveat {
            scope: Some(scope("blob:photos/2024/jan/")),
            expires: Some(UnixTime(NOW + TTL)),
            ..Caveat::default()
        })
        .and_then(|t| {
            t.attenuate(Caveat {
                ops: Some(read_only()),
                ..Caveat::default()
            })
        })
        .and_then(|t| {
            t.attenuate(Caveat {
                scope: Some(scope("blob:photos/2024/jan/cats/")),
                max_bytes: Some(1 << 20),
                client_ips: vec!["10.0.0.0/8".parse().expect("a CIDR")],
                ..Caveat::default()
            })
        })
        .expect("every caveat narrows");
    assert_eq!(token.caveats().len(), 3);
    token.to_string()
}

/// Everything the valet benchmarks need, built once.
struct Valet {
    verifier: Verifier,
    token: String,
    resource: Scope,
    token3: String,
    resource3: Scope,
}

impl Valet {
    fn new() -> Valet {
        let ring = keyring();
        let token = issue(&ring);
        let token3 = three_caveat_token(&ring);
        let valet = Valet {
            verifier: Verifier::new(ring),
            token,
            resource: scope("blob:photos/2024/cat.jpg"),
            token3,
            resource3: scope("blob:photos/2024/jan/cats/tabby.jpg"),
        };
        // The benchmarks measure the success path: make sure it is the one taken.
        assert!(valet.verify().is_ok() && valet.verify3().is_ok());
        let _: Token = valet.token.parse().expect("the issued token parses");
        valet
    }

    fn access<'a>(resource: &'a Scope) -> Access<'a> {
        Access {
            op: Op::Read,
            resource,
            now: UnixTime(NOW + 5),
            client: Some(CLIENT),
        }
    }

    fn verify(&self) -> Result<valet_key::Grant, valet_key::Denial> {
        self.verifier
            .authorize(black_box(&self.token), &Self::access(&self.resource))
    }

    fn verify3(&self) -> Result<valet_key::Grant, valet_key::Denial> {
        self.verifier
            .authorize(black_box(&self.token3), &Self::access(&self.resource3))
    }
}

/// SigV4 query-string presigning of an S3 GET, as the SDK's presigner configures it.
struct SigV4 {
    identity: Identity,
    time: SystemTime,
}

impl SigV4 {
    const URL: &'static str = "https://photos.s3.us-east-1.amazonaws.com/2024/cat.jpg";

    fn new() -> SigV4 {
        SigV4 {
            identity: Credentials::new(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "valet-bench",
            )
            .into(),
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(NOW),
        }
    }

    /// The presigned URL a server would hand out.
    fn presign(&self) -> String {
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(TTL));
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region("us-east-1")
            .name("s3")
            .time(self.time)
            .settings(settings)
            .build()
            .expect("complete signing parameters")
            .into();
        let request = SignableRequest::new(
            "GET",
            black_box(Self::URL),
            std::iter::empty(),
            SignableBody::UnsignedPayload,
        )
        .expect("a valid URL");
        let (instructions, _signature) = sign(request, &params)
            .expect("signing succeeds")
            .into_parts();
        let mut url = String::with_capacity(512);
        url.push_str(Self::URL);
        for (i, (name, value)) in instructions.params().iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(name);
            url.push('=');
            percent_encode(value, &mut url);
        }
        url
    }
}

/// RFC 3986 query-value encoding: everything but the unreserved characters.
fn percent_encode(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

fn benches(c: &mut Criterion) {
    let ring = keyring();
    let valet = Valet::new();
    let sigv4 = SigV4::new();
    assert!(sigv4.presign().contains("X-Amz-Signature="));

    c.bench_function("issue", |b| b.iter(|| issue(black_box(&ring))));
    c.bench_function("verify", |b| b.iter(|| valet.verify()));
    c.bench_function("verify_3_caveats", |b| b.iter(|| valet.verify3()));
    c.bench_function("sigv4_presign", |b| b.iter(|| sigv4.presign()));
}

/// How many calls of `f` take about `target`, at least 1000.
fn calibrate<T>(f: &mut impl FnMut() -> T, target: Duration) -> u64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < Duration::from_millis(20) {
        black_box(f());
        calls += 1;
    }
    let per_call = start.elapsed().as_secs_f64() / calls as f64;
    ((target.as_secs_f64() / per_call) as u64).clamp(1_000, 2_000_000)
}

/// The mean time per call of `f` over `iterations` calls, in nanoseconds.
fn mean_ns<T>(f: &mut impl FnMut() -> T, iterations: u64) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(f());
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

/// Plain timing loops, independent of Criterion: each closure is timed in turn, round after
/// round (so that a burst of load elsewhere on the machine hits one round, not one closure),
/// and each keeps its best round.
fn ratios() {
    const ROUNDS: usize = 7;
    const TARGET: Duration = Duration::from_millis(100);
    let ring = keyring();
    let valet = Valet::new();
    let sigv4 = SigV4::new();
    let mut issue_fn = || issue(black_box(&ring));
    let mut verify_fn = || valet.verify();
    let mut verify3_fn = || valet.verify3();
    let mut presign_fn = || sigv4.presign();
    let iterations = [
        calibrate(&mut issue_fn, TARGET),
        calibrate(&mut verify_fn, TARGET),
        calibrate(&mut verify3_fn, TARGET),
        calibrate(&mut presign_fn, TARGET),
    ];
    let mut best = [f64::INFINITY; 4];
    for _ in 0..ROUNDS {
        let round = [
            mean_ns(&mut issue_fn, iterations[0]),
            mean_ns(&mut verify_fn, iterations[1]),
            mean_ns(&mut verify3_fn, iterations[2]),
            mean_ns(&mut presign_fn, iterations[3]),
        ];
        for (b, r) in best.iter_mut().zip(round) {
            *b = b.min(r);
        }
    }
    let [issue_ns, verify, verify3, presign] = best;
    println!();
    println!("plain timing loops, best of {ROUNDS} interleaved rounds, ns per call:");
    println!("  issue            {issue_ns:8.0} ns");
    println!("  verify           {verify:8.0} ns");
    println!("  verify_3_caveats {verify3:8.0} ns");
    println!("  sigv4_presign    {presign:8.0} ns");
    for (name, ns) in [
        ("issue", issue_ns),
        ("verify", verify),
        ("verify_3_caveats", verify3),
    ] {
        println!(
            "ratio: {name} is {:.1}x faster than SigV4 presign",
            presign / ns
        );
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();

    // Only under `cargo bench` (which passes --bench), and only for an unfiltered run or one
    // filtered on "ratio": `cargo test --benches` stays quick.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benching = args.iter().any(|a| a == "--bench");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if benching && (filters.is_empty() || filters.iter().any(|f| f.as_str() == "ratio")) {
        ratios();
    }
}
