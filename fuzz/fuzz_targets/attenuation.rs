//! Attenuation only ever narrows.
//!
//! A fixed root key gets a fuzzed chain of caveats, appended with `Token::append`, which does
//! not check that they narrow (so a caveat may try to widen the scope, the operations, the
//! window, the caps or the addresses). For fuzzed requests:
//!
//! - if the attenuated token authorizes a request, the root token authorizes it too;
//! - the attenuated grant is no wider than the root's: fewer or equal operations, an expiry
//!   and caps no later or larger, every content-type range of the root's still required;
//! - a caveat that `check_narrows` accepts is appended by `attenuate` to the same token;
//! - the attenuated token's text parses back to the same token and authorizes the same way.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use valet_key::{
    Access, Caveat, Claims, Grant, KeyId, Keyring, Limits, MediaRange, Op, Ops, Scope, Token,
    UnixTime, Verifier,
};

/// The root key's start; everything else is an offset from it.
const T0: u64 = 1_750_000_000;
const ROOT_TTL: u64 = 3600;

const CONTAINERS: [&str; 3] = ["photos", "photos-2", "docs"];
const SEGMENTS: [&str; 6] = ["2024", "jan", "cat.jpg", "a", "2024-private", "x..y"];
const TABLES: [&str; 2] = ["orders", "users"];
const ROW_KEYS: [&str; 6] = ["a", "b", "m", "p1", "p2", "zz"];
const QUEUES: [&str; 2] = ["jobs", "jobs-2"];
/// Scopes and resources that the roots' scopes cover, or only just fail to.
const SCOPES: [&str; 16] = [
    "blob:photos",
    "blob:photos/2024/",
    "blob:photos/2024/cat.jpg",
    "blob:photos/2024/jan/",
    "blob:photos/2024/jan/cat.jpg",
    "blob:photos/2024-private/x",
    "blob:photos/2024",
    "blob:photos-2/2024/cat.jpg",
    "table:orders",
    "table:orders/p1",
    "table:orders/p1/b..m",
    "table:orders/p1/c",
    "table:orders/p1/c..",
    "table:orders/p2/c",
    "queue:jobs",
    "queue:jobs-2",
];
const MEDIA: [&str; 5] = ["image/*", "image/png", "image/jpeg", "text/plain", "text/*"];

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let ring = Keyring::from_secrets(Some("k1"), &[("k1", [7; 32])]).expect("a valid keyring");
        Verifier::new(ring)
    })
}

/// A scope, mostly built from small pieces so that coverage relations are common, sometimes
/// raw text.
#[derive(Arbitrary, Debug)]
enum ScopeIn {
    Blob {
        container: u8,
        segments: Vec<u8>,
        /// 0: the container; 1: a prefix of the segments; otherwise one blob.
        kind: u8,
    },
    Table {
        table: u8,
        partition: Option<u8>,
        from: Option<u8>,
        to: Option<u8>,
        single: bool,
    },
    Queue {
        queue: u8,
    },
    /// One of `SCOPES`.
    Fixed(u8),
    Text(String),
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

impl ScopeIn {
    fn text(&self) -> String {
        match self {
            ScopeIn::Blob {
                container,
                segments,
                kind,
            } => {
                let mut text = format!("blob:{}", pick(&CONTAINERS, *container));
                if *kind == 0 || segments.is_empty() {
                    return text;
                }
                let path: Vec<&str> = segments
                    .iter()
                    .take(4)
                    .map(|&s| pick(&SEGMENTS, s))
                    .collect();
                text.push('/');
                text.push_str(&path.join("/"));
                if *kind == 1 {
                    text.push('/');
                }
                text
            }
            ScopeIn::Table {
                table,
                partition,
                from,
                to,
                single,
            } => {
                let mut text = format!("table:{}", pick(&TABLES, *table));
                let Some(p) = partition else { return text };
                text.push('/');
                text.push_str(pick(&ROW_KEYS, *p));
                if *single {
                    if let Some(f) = from {
                        text.push('/');
                        text.push_str(pick(&ROW_KEYS, *f));
                    }
                } else if from.is_some() || to.is_some() {
                    text.push('/');
                    text.push_str(from.map_or("", |f| pick(&ROW_KEYS, f)));
                    text.push_str("..");
                    text.push_str(to.map_or("", |t| pick(&ROW_KEYS, t)));
                }
                text
            }
            ScopeIn::Queue { queue } => format!("queue:{}", pick(&QUEUES, *queue)),
            ScopeIn::Fixed(i) => pick(&SCOPES, *i).to_owned(),
            ScopeIn::Text(text) => text.clone(),
        }
    }

    fn scope(&self) -> Option<Scope> {
        self.text().parse().ok()
    }
}

/// A time: mostly inside the root's window (give or take the verifier's skew), sometimes near
/// it, sometimes anywhere.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct TimeIn {
    kind: u8,
    value: u64,
}

impl TimeIn {
    fn time(self) -> UnixTime {
        match self.kind % 8 {
            6 => UnixTime(self.value),
            7 => UnixTime(T0.saturating_add_signed(i64::from(self.value as i16))),
            _ => UnixTime(T0 - 64 + self.value % (ROOT_TTL + 128)),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum AddrIn {
    V4([u8; 3]),
    V6([u8; 2]),
}

impl AddrIn {
    fn addr(self) -> IpAddr {
        match self {
            AddrIn::V4([a, b, c]) => IpAddr::V4(Ipv4Addr::new(10, a % 4, b % 4, c)),
            AddrIn::V6([a, b]) => IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                u16::from(a % 4),
                0,
                0,
                0,
                0,
                u16::from(b),
            )),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct NetIn {
    addr: AddrIn,
    prefix: u8,
}

impl NetIn {
    fn net(&self) -> IpNet {
        let addr = self.addr.addr();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        IpNet::new(addr, self.prefix % (max + 1))
            .expect("prefix in range")
            .trunc()
    }
}

#[derive(Arbitrary, Debug)]
struct CaveatIn {
    scope: Option<ResourceIn>,
    ops: Option<u16>,
    not_before: Option<TimeIn>,
    expires: Option<TimeIn>,
    max_bytes: Option<u64>,
    max_uses: Option<u64>,
    content_type: Option<u8>,
    /// Addresses are used one time in four: a random range seldom holds the client, and a
    /// caveat that denies everything tests little.
    client_ips_on: u8,
    client_ips: Vec<NetIn>,
}

impl CaveatIn {
    fn caveat(&self, root: &Scope) -> Caveat {
        let client_ips = if self.client_ips_on % 4 == 3 {
            self.client_ips.iter().take(4).map(NetIn::net).collect()
        } else {
            Vec::new()
        };
        Caveat {
            scope: self.scope.as_ref().and_then(|s| s.scope(root)),
            ops: self.ops.and_then(|bits| Ops::from_bits(bits & 0x1ff)),
            not_before: self.not_before.map(TimeIn::time),
            expires: self.expires.map(TimeIn::time),
            max_bytes: self.max_bytes,
            max_uses: self.max_uses,
            content_type: self.content_type.map(media),
            client_ips,
        }
    }
}

fn media(i: u8) -> MediaRange {
    pick(&MEDIA, i).parse().expect("a valid media range")
}

#[derive(Arbitrary, Debug)]
struct RequestIn {
    op: OpIn,
    resource: ResourceIn,
    now: TimeIn,
    client: ClientIn,
}

/// A request's resource or a caveat's scope: mostly one of `SCOPES` that the root's scope
/// covers.
#[derive(Arbitrary, Debug)]
enum ResourceIn {
    Covered(u8),
    Any(ScopeIn),
}

impl ResourceIn {
    fn scope(&self, root: &Scope) -> Option<Scope> {
        match self {
            ResourceIn::Covered(i) => {
                let covered: Vec<Scope> = SCOPES
                    .iter()
                    .map(|s| s.parse().expect("a valid scope"))
                    .filter(|s| root.covers(s))
                    .collect();
                covered.get(usize::from(*i) % covered.len().max(1)).cloned()
            }
            ResourceIn::Any(scope) => scope.scope(),
        }
    }
}

/// A request's operation: mostly one the root grants, since only requests the attenuated key
/// may allow test anything.
#[derive(Arbitrary, Debug)]
enum OpIn {
    Granted(u8),
    Any(u8),
}

impl OpIn {
    fn op(&self, root: Ops) -> Op {
        let granted: Vec<Op> = Op::ALL.into_iter().filter(|&op| root.permits(op)).collect();
        match *self {
            OpIn::Granted(i) if !granted.is_empty() => granted[usize::from(i) % granted.len()],
            OpIn::Granted(i) | OpIn::Any(i) => Op::ALL[usize::from(i) % Op::ALL.len()],
        }
    }
}

/// A request's client: mostly one inside the root's first address range, if it has one.
#[derive(Arbitrary, Debug)]
enum ClientIn {
    InRoot(u128),
    Addr(AddrIn),
    Unknown,
}

impl ClientIn {
    fn addr(&self, root: &[IpNet]) -> Option<IpAddr> {
        match self {
            ClientIn::InRoot(bits) => Some(match root.first() {
                Some(IpNet::V4(net)) => {
                    let host = (*bits as u32) & u32::from(net.hostmask());
                    IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) | host))
                }
                Some(IpNet::V6(net)) => {
                    let host = bits & u128::from(net.hostmask());
                    IpAddr::V6(Ipv6Addr::from(u128::from(net.network()) | host))
                }
                None => {
                    let [_, a, b, c] = (*bits as u32).to_be_bytes();
                    AddrIn::V4([a, b, c]).addr()
                }
            }),
            ClientIn::Addr(a) => Some(a.addr()),
            ClientIn::Unknown => None,
        }
    }
}

/// The root key's shape.
#[derive(Arbitrary, Debug)]
struct RootIn {
    scope: u8,
    ops: u16,
    max_bytes: Option<u64>,
    max_uses: Option<u64>,
    content_type: Option<u8>,
    client_ips: Option<NetIn>,
}

const ROOT_SCOPES: [&str; 6] = [
    "blob:photos",
    "blob:photos/2024/",
    "blob:photos/2024/cat.jpg",
    "table:orders",
    "table:orders/p1/b..m",
    "queue:jobs",
];

impl RootIn {
    fn token(&self) -> Option<Token> {
        let claims = Claims {
            key_id: KeyId([0x5a; 16]),
            subject: Some("alice".to_owned()),
            scope: pick(&ROOT_SCOPES, self.scope)
                .parse()
                .expect("a valid scope"),
            ops: Ops::from_bits(self.ops & 0x1ff)?,
            not_before: UnixTime(T0),
            expires: UnixTime(T0 + ROOT_TTL),
            limits: Limits {
                max_bytes: self.max_bytes,
                max_uses: self.max_uses,
                content_type: self.content_type.map(media),
                client_ips: self.client_ips.iter().map(NetIn::net).collect(),
                ..Limits::default()
            },
        };
        // Unchecked: the verifier must hold for any signed key, also one whose operations an
        // issuer would now refuse for its scope.
        verifier().keyring().issue_unchecked(claims).ok()
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    root: RootIn,
    caveats: Vec<CaveatIn>,
    requests: Vec<RequestIn>,
}

/// `a` is no larger than `b`, where `None` is unlimited.
fn cap_within(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a <= b,
    }
}

fn assert_narrower(narrow: &Grant, root: &Grant) {
    assert_eq!(narrow.key_id, root.key_id);
    assert_eq!(narrow.scope, root.scope);
    assert!(
        narrow.ops.within(root.ops),
        "{:?} wider than {:?}",
        narrow.ops,
        root.ops
    );
    assert!(narrow.valid_until <= root.valid_until);
    // What the ledger keeps (use counts, revocations by time) is the root's, whatever caveat
    // the request came with.
    assert_eq!(narrow.key_expires, root.key_expires);
    assert_eq!(narrow.issued_at, root.issued_at);
    assert!(
        cap_within(narrow.max_bytes, root.max_bytes),
        "max_bytes widened"
    );
    assert!(
        cap_within(narrow.max_uses, root.max_uses),
        "max_uses widened"
    );
    for range in &root.content_types {
        assert!(
            narrow.content_types.contains(range),
            "content type {range:?} dropped"
        );
    }
}

fuzz_target!(|input: Input| {
    let Some(root) = input.root.token() else {
        return;
    };
    let root_text = root.to_string();
    let mut token = root.clone();
    for c in input.caveats.iter().take(valet_key::MAX_CAVEATS + 1) {
        let caveat = c.caveat(&root.claims().scope);
        let narrows = caveat.check_narrows(&token).is_ok();
        let Ok(next) = token.append(caveat.clone()) else {
            continue;
        };
        if narrows {
            assert_eq!(
                token.attenuate(caveat).expect("check_narrows said yes"),
                next
            );
        } else {
            assert!(token.attenuate(caveat).is_err());
        }
        token = next;
    }
    let text = token.to_string();
    let reparsed: Token = text.parse().expect("an appended token parses");
    assert_eq!(reparsed, token);

    let verifier = verifier();
    for request in input.requests.iter().take(16) {
        let Some(resource) = request.resource.scope(&root.claims().scope) else {
            continue;
        };
        let access = Access {
            op: request.op.op(root.claims().ops),
            resource: &resource,
            now: request.now.time(),
            client: request.client.addr(&root.claims().limits.client_ips),
        };
        let narrow = verifier.authorize(&text, &access);
        assert_eq!(narrow, verifier.authorize_token(&token, &access));
        let Ok(narrow) = narrow else {
            continue;
        };
        let wide = verifier.authorize(&root_text, &access).unwrap_or_else(|d| {
            panic!("the attenuated key allows {access:?} but the root denies it: {d}")
        });
        assert_narrower(&narrow, &wide);
    }
});
