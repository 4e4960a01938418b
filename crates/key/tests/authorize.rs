//! Every rule of authorization, one test each, with the denial code it must give.

mod common;

use std::net::IpAddr;

use common::*;
use valet_key::{
    Access, AttenuateError, Caveat, Denial, FormatError, Keyring, Limits, Op, Scope, Token,
    UnixTime, Verifier,
};

fn access<'a>(op: Op, resource: &'a Scope, now: UnixTime) -> Access<'a> {
    Access {
        op,
        resource,
        now,
        client: Some("192.0.2.10".parse().unwrap()),
    }
}

fn check(token: &Token, op: Op, resource: &str) -> Result<valet_key::Grant, Denial> {
    check_at(token, op, resource, NOW)
}

fn check_at(
    token: &Token,
    op: Op,
    resource: &str,
    now: UnixTime,
) -> Result<valet_key::Grant, Denial> {
    let resource = scope(resource);
    Verifier::new(keyring()).authorize(&token.to_string(), &access(op, &resource, now))
}

fn code(result: Result<valet_key::Grant, Denial>) -> &'static str {
    match result {
        Ok(_) => "granted",
        Err(d) => d.code(),
    }
}

#[test]
fn a_genuine_key_grants_its_resource_and_operation() {
    let t = token("blob:photos/2024/cat.jpg", "read");
    let grant = check(&t, Op::Read, "blob:photos/2024/cat.jpg").unwrap();
    assert_eq!(grant.subject.as_deref(), Some("alice"));
    assert_eq!(grant.valid_until, NOW.plus(600));
    assert_eq!(grant.key_id, t.claims().key_id);
}

#[test]
fn garbage_is_malformed() {
    let verifier = Verifier::new(keyring());
    let resource = scope("blob:photos/a");
    for text in [
        "",
        "vk1.",
        "vk1..",
        "vk2.AAAA.AAAA",
        "hello",
        "vk1.!!!.AAAA",
        &"vk1.".repeat(2000),
    ] {
        let denial = verifier
            .authorize(text, &access(Op::Read, &resource, NOW))
            .unwrap_err();
        assert_eq!(denial.code(), "key_malformed", "{text:?}");
    }
}

#[test]
fn a_key_signed_by_another_secret_is_invalid() {
    let other = Keyring::from_secrets(Some("k1"), &[("k1", [8; 32])]).unwrap();
    let forged = other.issue(claims("blob:photos/a", "read")).unwrap();
    assert_eq!(
        code(check(&forged, Op::Read, "blob:photos/a")),
        "key_invalid"
    );
}

#[test]
fn a_key_naming_an_unknown_signing_key_is_invalid() {
    let other = Keyring::from_secrets(Some("k9"), &[("k9", [7; 32])]).unwrap();
    let t = other.issue(claims("blob:photos/a", "read")).unwrap();
    assert_eq!(code(check(&t, Op::Read, "blob:photos/a")), "key_invalid");
}

#[test]
fn verify_only_keys_verify_and_retired_keys_do_not() {
    let old = Keyring::from_secrets(Some("k1"), &[("k1", [7; 32])]).unwrap();
    let t = old.issue(claims("blob:photos/a", "read")).unwrap();
    let mut ring = Keyring::from_secrets(Some("k2"), &[("k1", [7; 32]), ("k2", [9; 32])]).unwrap();
    let resource = scope("blob:photos/a");
    let a = access(Op::Read, &resource, NOW);
    assert!(Verifier::new(ring.clone())
        .authorize(&t.to_string(), &a)
        .is_ok());
    let new = ring.issue(claims("blob:photos/a", "read")).unwrap();
    assert_eq!(new.signing_key(), "k2");
    ring.retire("k1").unwrap();
    let denial = Verifier::new(ring.clone())
        .authorize(&t.to_string(), &a)
        .unwrap_err();
    assert_eq!(denial, Denial::UnknownSigningKey("k1".into()));
    assert_eq!(denial.code(), "key_invalid");
    assert!(Verifier::new(ring).authorize(&new.to_string(), &a).is_ok());
}

/// A counter as the random source: the rings it makes are the same from run to run.
struct Counter(u8);

impl rand_core::RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for Counter {}

#[test]
fn a_staged_key_verifies_at_once_and_signs_only_once_promoted() {
    let mut rng = Counter(0);
    let mut gate = Keyring::generate(&mut rng, NOW);
    let before = gate.issue(claims("blob:photos/a", "read")).unwrap();
    let staged = gate.stage(&mut rng, NOW);
    assert_eq!(staged, "k2");
    assert!(!gate.is_active("k2") && gate.is_active("k1"));
    assert_eq!(
        gate.active().unwrap().id(),
        "k1",
        "staging changes no signer"
    );
    assert_eq!(
        gate.issue(claims("blob:photos/a", "read"))
            .unwrap()
            .signing_key(),
        "k1"
    );
    // A store with the staged ring (through its file: the format is unchanged) verifies
    // both what k1 signed and what k2 will sign.
    let store = Keyring::from_json(&gate.to_json()).unwrap();
    assert_eq!(store.active().unwrap().id(), "k1");
    assert_eq!(gate.promote("k2").unwrap().as_deref(), Some("k1"));
    assert_eq!(
        gate.promote("k2").unwrap(),
        None,
        "promoting the signer again"
    );
    let after = gate.issue(claims("blob:photos/a", "read")).unwrap();
    assert_eq!(after.signing_key(), "k2");
    let resource = scope("blob:photos/a");
    let a = access(Op::Read, &resource, NOW);
    for token in [&before, &after] {
        assert!(Verifier::new(store.clone())
            .authorize(&token.to_string(), &a)
            .is_ok());
        assert!(Verifier::new(gate.clone())
            .authorize(&token.to_string(), &a)
            .is_ok());
    }
    assert_eq!(
        gate.promote("k9").unwrap_err().to_string(),
        "there is no signing key 'k9' in the keyring"
    );
    // Retired once k1's keys have expired; a staged key never promoted can be withdrawn.
    gate.retire("k1").unwrap();
    let withdrawn = gate.stage(&mut rng, NOW);
    assert_eq!(withdrawn, "k3");
    gate.retire("k3").unwrap();
    assert_eq!(
        gate.stage(&mut rng, NOW),
        "k3",
        "ids count from the keys there are"
    );
    let denial = Verifier::new(gate.clone())
        .authorize(&before.to_string(), &a)
        .unwrap_err();
    assert_eq!(denial, Denial::UnknownSigningKey("k1".into()));
    assert_eq!(denial.code(), "key_invalid");
    assert!(
        denial.to_string().contains("keyring does not hold"),
        "{denial}"
    );
}

#[test]
fn fingerprints_tell_copies_from_keyrings_made_apart() {
    let copy = Keyring::from_secrets(Some("k1"), &[("k1", [7; 32])]).unwrap();
    let same = Keyring::from_json(&copy.to_json()).unwrap();
    let apart = Keyring::from_secrets(Some("k1"), &[("k1", [8; 32])]).unwrap();
    let print = |ring: &Keyring| ring.find("k1").unwrap().fingerprint();
    assert_eq!(print(&copy), print(&same));
    assert_ne!(print(&copy), print(&apart));
    assert_eq!(print(&copy).len(), 16);
    assert!(print(&copy).bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn expiry_and_not_before_honour_the_skew_exactly() {
    let t = token("blob:photos/a", "read");
    let exp = NOW.plus(600);
    let r = "blob:photos/a";
    assert_eq!(code(check_at(&t, Op::Read, r, exp)), "granted");
    assert_eq!(code(check_at(&t, Op::Read, r, exp.plus(29))), "granted");
    assert_eq!(code(check_at(&t, Op::Read, r, exp.plus(30))), "key_expired");
    assert_eq!(
        code(check_at(&t, Op::Read, r, exp.plus(3600))),
        "key_expired"
    );
    assert_eq!(code(check_at(&t, Op::Read, r, NOW.minus(30))), "granted");
    assert_eq!(
        code(check_at(&t, Op::Read, r, NOW.minus(31))),
        "key_not_yet_valid"
    );
    let resource = scope(r);
    let strict = Verifier::new(keyring()).with_skew(0);
    let at = |now| strict.authorize(&t.to_string(), &access(Op::Read, &resource, now));
    assert_eq!(code(at(exp.minus(1))), "granted");
    assert_eq!(code(at(exp)), "key_expired");
    assert_eq!(code(at(NOW.minus(1))), "key_not_yet_valid");
}

#[test]
fn a_key_is_current_only_inside_its_own_and_every_caveats_window() {
    let verifier = Verifier::new(keyring());
    let t = token("blob:photos/a", "read");
    let exp = NOW.plus(600);
    assert_eq!(verifier.check_current(&t, NOW), Ok(()));
    assert_eq!(verifier.check_current(&t, exp.plus(29)), Ok(()));
    assert_eq!(
        verifier.check_current(&t, exp.plus(30)),
        Err(Denial::Expired)
    );
    assert_eq!(
        verifier.check_current(&t, NOW.minus(31)),
        Err(Denial::NotYetValid)
    );
    // A narrowing that ended, or has not begun, is not current while its key still is.
    let ended = t
        .append(Caveat {
            expires: Some(NOW.minus(60)),
            ..Caveat::default()
        })
        .unwrap();
    assert_eq!(verifier.check_current(&ended, NOW), Err(Denial::Expired));
    let later = t
        .attenuate(Caveat {
            not_before: Some(NOW.plus(120)),
            ..Caveat::default()
        })
        .unwrap();
    assert_eq!(
        verifier.check_current(&later, NOW),
        Err(Denial::NotYetValid)
    );
    assert_eq!(verifier.check_current(&later, NOW.plus(90)), Ok(()));
    // A changed tag, or another keyring, is not genuine.
    let text = t.to_string();
    let last = if text.ends_with('A') { 'Q' } else { 'A' };
    let forged: Token = format!("{}{last}", &text[..text.len() - 1])
        .parse()
        .unwrap();
    assert_eq!(verifier.check_current(&forged, NOW), Err(Denial::Invalid));
    let stranger = Verifier::new(Keyring::from_secrets(Some("k1"), &[("k1", [8; 32])]).unwrap());
    assert_eq!(stranger.check_current(&t, NOW), Err(Denial::Invalid));
    // A keyring without the signing key says so (same code), on both paths.
    let other = Verifier::new(Keyring::from_secrets(Some("k7"), &[("k7", [8; 32])]).unwrap());
    let unknown = Denial::UnknownSigningKey(t.signing_key().to_owned());
    assert_eq!(other.check_current(&t, NOW), Err(unknown.clone()));
    let resource = t.claims().scope.clone();
    let op = t.claims().ops.iter().next().unwrap();
    assert_eq!(
        other.authorize(&text, &access(op, &resource, NOW)),
        Err(unknown)
    );
}

#[test]
fn scope_never_crosses_a_segment_or_a_container() {
    let t = token("blob:photos/2024/", "read");
    assert_eq!(
        code(check(&t, Op::Read, "blob:photos/2024/a.jpg")),
        "granted"
    );
    assert_eq!(
        code(check(&t, Op::Read, "blob:photos/2024/deep/a.jpg")),
        "granted"
    );
    for outside in [
        "blob:photos/2024-private/a.jpg",
        "blob:photos/2024",
        "blob:photos/20",
        "blob:photos/other/2024/a",
        "blob:photos-private/2024/a.jpg",
        "blob:photos",
        "table:photos",
        "queue:photos",
    ] {
        assert_eq!(
            code(check(&t, Op::Read, outside)),
            "out_of_scope",
            "{outside}"
        );
    }
    let one = token("blob:photos/a.jpg", "read");
    assert_eq!(
        code(check(&one, Op::Read, "blob:photos/a.jpg.exe")),
        "out_of_scope"
    );
    assert_eq!(
        code(check(&one, Op::Read, "blob:photos/a.jpg/x")),
        "out_of_scope"
    );
}

#[test]
fn operations_are_exact_except_that_write_implies_create() {
    let read = token("blob:photos/a", "read");
    for op in [Op::Write, Op::Create, Op::Delete, Op::List] {
        assert_eq!(
            code(check(&read, op, "blob:photos/a")),
            "op_not_allowed",
            "{op}"
        );
    }
    let write = token("blob:photos/a", "write");
    assert_eq!(code(check(&write, Op::Create, "blob:photos/a")), "granted");
    assert_eq!(
        code(check(&write, Op::Read, "blob:photos/a")),
        "op_not_allowed"
    );
    let create = token("blob:photos/a", "create");
    assert_eq!(
        code(check(&create, Op::Write, "blob:photos/a")),
        "op_not_allowed"
    );
    let list = token("blob:photos", "list");
    assert_eq!(
        code(check(&list, Op::Read, "blob:photos/a")),
        "op_not_allowed"
    );
}

#[test]
fn client_addresses_are_checked_and_unknown_addresses_denied() {
    let mut c = claims("blob:photos/a", "read");
    c.limits = Limits {
        client_ips: vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        ..Limits::default()
    };
    let t = keyring().issue(c).unwrap();
    let verifier = Verifier::new(keyring());
    let resource = scope("blob:photos/a");
    let from = |ip: Option<&str>| {
        let client = ip.map(|i| i.parse::<IpAddr>().unwrap());
        let a = Access {
            client,
            ..access(Op::Read, &resource, NOW)
        };
        code(verifier.authorize(&t.to_string(), &a))
    };
    assert_eq!(from(Some("192.0.2.200")), "granted");
    assert_eq!(from(Some("2001:db8::1")), "granted");
    assert_eq!(from(Some("192.0.3.1")), "ip_not_allowed");
    assert_eq!(from(Some("::ffff:192.0.2.1")), "ip_not_allowed");
    assert_eq!(from(None), "ip_not_allowed");
}

#[test]
fn caveats_narrow_every_dimension() {
    let root = token("blob:photos", "read,write,list");
    let narrowed = root
        .attenuate(Caveat {
            scope: Some(scope("blob:photos/2024/")),
            ops: Some("read".parse().unwrap()),
            expires: Some(NOW.plus(60)),
            max_bytes: Some(10),
            client_ips: vec!["192.0.2.0/28".parse().unwrap()],
            ..Caveat::default()
        })
        .unwrap();
    assert_eq!(
        code(check(&narrowed, Op::Read, "blob:photos/2024/a")),
        "granted"
    );
    assert_eq!(
        code(check(&narrowed, Op::Read, "blob:photos/2023/a")),
        "out_of_scope"
    );
    assert_eq!(
        code(check(&narrowed, Op::Write, "blob:photos/2024/a")),
        "op_not_allowed"
    );
    assert_eq!(
        code(check_at(
            &narrowed,
            Op::Read,
            "blob:photos/2024/a",
            NOW.plus(90)
        )),
        "key_expired"
    );
    assert_eq!(
        code(check(&root, Op::Read, "blob:photos/2023/a")),
        "granted"
    );
    let grant = check(&narrowed, Op::Read, "blob:photos/2024/a").unwrap();
    assert_eq!(grant.max_bytes, Some(10));
    assert_eq!(
        grant.valid_until,
        NOW.plus(60),
        "the caveat's expiry bounds the token"
    );
    assert_eq!(
        grant.key_expires,
        root.claims().expires,
        "the key's own expiry is the claims', whatever the caveat"
    );
    assert_eq!(grant.issued_at, root.claims().not_before);
    let resource = scope("blob:photos/2024/a");
    let outside = Access {
        client: Some("192.0.2.100".parse().unwrap()),
        ..access(Op::Read, &resource, NOW)
    };
    let denial = Verifier::new(keyring())
        .authorize(&narrowed.to_string(), &outside)
        .unwrap_err();
    assert_eq!(denial.code(), "ip_not_allowed");
}

#[test]
fn a_later_not_before_caveat_delays_the_key() {
    let t = token("blob:photos/a", "read")
        .attenuate(Caveat {
            not_before: Some(NOW.plus(300)),
            ..Caveat::default()
        })
        .unwrap();
    assert_eq!(
        code(check_at(&t, Op::Read, "blob:photos/a", NOW.plus(100))),
        "key_not_yet_valid"
    );
    assert_eq!(
        code(check_at(&t, Op::Read, "blob:photos/a", NOW.plus(300))),
        "granted"
    );
}

#[test]
fn widening_caveats_are_refused_when_attenuating() {
    let root = token("blob:photos/2024/", "read");
    let cases = [
        (
            Caveat {
                scope: Some(scope("blob:photos")),
                ..Caveat::default()
            },
            AttenuateError::Widens("scope"),
        ),
        (
            Caveat {
                scope: Some(scope("blob:photos/2024-x/")),
                ..Caveat::default()
            },
            AttenuateError::Widens("scope"),
        ),
        (
            Caveat {
                ops: Some("read,write".parse().unwrap()),
                ..Caveat::default()
            },
            AttenuateError::Widens("operations"),
        ),
        (
            Caveat {
                expires: Some(NOW.plus(601)),
                ..Caveat::default()
            },
            AttenuateError::Widens("expiry"),
        ),
        (
            Caveat {
                not_before: Some(NOW.plus(600)),
                ..Caveat::default()
            },
            AttenuateError::NoValidity,
        ),
        (Caveat::default(), AttenuateError::Empty),
    ];
    for (caveat, want) in cases {
        assert_eq!(root.attenuate(caveat.clone()), Err(want), "{caveat:?}");
    }
    let capped = root
        .attenuate(Caveat {
            max_bytes: Some(100),
            ..Caveat::default()
        })
        .unwrap();
    assert_eq!(
        capped.attenuate(Caveat {
            max_bytes: Some(101),
            ..Caveat::default()
        }),
        Err(AttenuateError::Widens("max bytes"))
    );
    let typed = root
        .attenuate(Caveat {
            content_type: Some("image/*".parse().unwrap()),
            ..Caveat::default()
        })
        .unwrap();
    assert!(typed
        .attenuate(Caveat {
            content_type: Some("image/png".parse().unwrap()),
            ..Caveat::default()
        })
        .is_ok());
    assert_eq!(
        typed.attenuate(Caveat {
            content_type: Some("text/plain".parse().unwrap()),
            ..Caveat::default()
        }),
        Err(AttenuateError::Widens("content type"))
    );
}

#[test]
fn a_widening_caveat_appended_anyway_is_outvoted() {
    let root = token("blob:photos/2024/", "read");
    let sneaky = root
        .append(Caveat {
            scope: Some(scope("blob:photos")),
            ops: Some("read,write,delete".parse().unwrap()),
            expires: Some(NOW.plus(100_000)),
            ..Caveat::default()
        })
        .unwrap();
    assert_eq!(
        code(check(&sneaky, Op::Read, "blob:photos/2024/a")),
        "granted"
    );
    assert_eq!(
        code(check(&sneaky, Op::Read, "blob:photos/2025/a")),
        "out_of_scope"
    );
    assert_eq!(
        code(check(&sneaky, Op::Delete, "blob:photos/2024/a")),
        "op_not_allowed"
    );
    assert_eq!(
        code(check_at(
            &sneaky,
            Op::Read,
            "blob:photos/2024/a",
            NOW.plus(1000)
        )),
        "key_expired"
    );
}

#[test]
fn removing_or_reordering_caveats_breaks_the_tag() {
    let root = token("blob:photos", "read,list");
    let one = root
        .attenuate(Caveat {
            scope: Some(scope("blob:photos/a/")),
            ..Caveat::default()
        })
        .unwrap();
    let two = one
        .attenuate(Caveat {
            ops: Some("read".parse().unwrap()),
            ..Caveat::default()
        })
        .unwrap();
    let text = two.to_string();
    let parts: Vec<&str> = text.split('.').collect();
    assert_eq!(parts.len(), 5);
    let without_last = format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[4]);
    let without_first = format!("{}.{}.{}.{}", parts[0], parts[1], parts[3], parts[4]);
    let swapped = format!(
        "{}.{}.{}.{}.{}",
        parts[0], parts[1], parts[3], parts[2], parts[4]
    );
    let bare = format!("{}.{}.{}", parts[0], parts[1], parts[4]);
    let verifier = Verifier::new(keyring());
    let resource = scope("blob:photos/a/x");
    for forged in [without_last, without_first, swapped, bare] {
        let denial = verifier
            .authorize(&forged, &access(Op::List, &resource, NOW))
            .unwrap_err();
        assert_eq!(denial, Denial::Invalid, "{forged}");
    }
}

#[test]
fn content_type_limits_reach_the_grant() {
    let mut c = claims("blob:photos", "write");
    c.limits.content_type = Some("image/*".parse().unwrap());
    let t = keyring()
        .issue(c)
        .unwrap()
        .attenuate(Caveat {
            content_type: Some("image/png".parse().unwrap()),
            ..Caveat::default()
        })
        .unwrap();
    let grant = check(&t, Op::Write, "blob:photos/a.png").unwrap();
    assert!(grant.permits_content_type(Some("image/png")));
    assert!(grant.permits_content_type(Some("image/PNG; x=y")));
    assert!(!grant.permits_content_type(Some("image/jpeg")));
    assert!(!grant.permits_content_type(Some("text/html")));
    assert!(!grant.permits_content_type(None));
    let free = check(&token("blob:photos", "write"), Op::Write, "blob:photos/a").unwrap();
    assert!(free.permits_content_type(None) && free.permits_content_type(Some("x/y")));
    let ranges: Vec<&str> = grant.content_types.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        ranges,
        ["image/*", "image/png"],
        "the claims' range first, then the caveats'"
    );
    let resource = scope("blob:photos/a.png");
    let from_token = Verifier::new(keyring())
        .authorize_token(&t, &access(Op::Write, &resource, NOW))
        .unwrap();
    assert_eq!(from_token, grant, "text and parsed token grant the same");
}

#[test]
fn max_uses_take_the_smallest_cap() {
    let mut c = claims("blob:photos/a", "read");
    c.limits.max_uses = Some(10);
    let t = keyring().issue(c).unwrap();
    let t = t
        .attenuate(Caveat {
            max_uses: Some(1),
            ..Caveat::default()
        })
        .unwrap();
    assert_eq!(
        check(&t, Op::Read, "blob:photos/a").unwrap().max_uses,
        Some(1)
    );
}

#[test]
fn too_many_caveats_are_refused_both_ways() {
    let mut t = token("blob:photos", "read");
    for i in 0..valet_key::MAX_CAVEATS {
        t = t
            .attenuate(Caveat {
                expires: Some(NOW.plus(500 - i as u64)),
                ..Caveat::default()
            })
            .unwrap();
    }
    let more = Caveat {
        expires: Some(NOW.plus(1)),
        ..Caveat::default()
    };
    assert_eq!(
        t.attenuate(more.clone()),
        Err(AttenuateError::TooManyCaveats(16))
    );
    assert_eq!(code(check(&t, Op::Read, "blob:photos/a")), "granted");
    let text = t.to_string();
    let (head, tag) = text.rsplit_once('.').unwrap();
    let (_, last_caveat) = head.rsplit_once('.').unwrap();
    let seventeen = format!("{head}.{last_caveat}.{tag}");
    assert_eq!(seventeen.parse::<Token>(), Err(FormatError::Segments));
}

#[test]
fn issuing_refuses_nonsense() {
    let ring = keyring();
    let mut c = claims("blob:photos/a", "read");
    c.expires = c.not_before;
    assert!(ring.issue(c).is_err());
    let mut c = claims("blob:photos/a", "read");
    c.subject = Some("bad\nsubject".into());
    assert!(ring.issue(c).is_err());
    let verify_only = Keyring::from_secrets(None, &[("k1", [7; 32])]).unwrap();
    assert!(verify_only.issue(claims("blob:photos/a", "read")).is_err());
}

#[test]
fn debug_output_never_shows_secrets_or_tags() {
    let t = token("blob:photos/a", "read");
    let text = t.to_string();
    let tag = text.rsplit_once('.').unwrap().1;
    assert!(!format!("{t:?}").contains(tag));
    assert!(!valet_key::redact(&text).contains(tag));
    assert!(valet_key::redact(&text).starts_with("vk1."));
    let ring_debug = format!("{:?}", keyring());
    assert!(ring_debug.contains("redacted") && !ring_debug.contains("7, 7, 7"));
}

#[test]
fn keyrings_round_trip_through_json_and_refuse_bad_documents() {
    let ring = Keyring::from_secrets(Some("k2"), &[("k1", [1; 32]), ("k2", [2; 32])]).unwrap();
    let back = Keyring::from_json(&ring.to_json()).unwrap();
    assert_eq!(back.to_json(), ring.to_json());
    assert_eq!(back.active().unwrap().id(), "k2");
    for bad in [
        "{}",
        r#"{"format":"valet-keyring/9","active":null,"keys":[]}"#,
        r#"{"format":"valet-keyring/1","active":"k1","keys":[]}"#,
        r#"{"format":"valet-keyring/1","active":null,"keys":[{"id":"k1","secret":"short","created":0}]}"#,
        r#"{"format":"valet-keyring/1","active":null,"keys":[{"id":"k 1","secret":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","created":0}]}"#,
    ] {
        assert!(Keyring::from_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn attenuation_never_produces_a_token_too_long_to_verify() {
    let mut deeper = "blob:photos/".to_owned();
    let mut t = token("blob:photos", "read");
    let mut refused = false;
    for _ in 0..valet_key::MAX_CAVEATS {
        deeper.push_str(&format!("{}/", "d".repeat(200)));
        match t.attenuate(Caveat {
            scope: Some(scope(&deeper)),
            ..Caveat::default()
        }) {
            Ok(next) => t = next,
            Err(AttenuateError::TooLong(_)) => {
                refused = true;
                break;
            }
            Err(other) => panic!("{other}"),
        }
        assert!(t.to_string().parse::<Token>().is_ok());
    }
    assert!(
        refused,
        "caveats of 200+ byte scopes must hit the length limit"
    );
}
