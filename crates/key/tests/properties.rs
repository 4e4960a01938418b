//! Property tests: tampering is always caught, attenuation never widens, scopes never cross a
//! segment boundary, and every text form round-trips.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{keyring, NOW};
use ipnet::{IpNet, Ipv4Net};
use proptest::prelude::*;
use valet_key::{Access, Caveat, Claims, KeyId, Limits, Op, Ops, Scope, Token, UnixTime, Verifier};

fn segment() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,6}".prop_filter("dot segments are invalid", |s| s != "." && s != "..")
}

fn segments() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(segment(), 1..5)
}

fn container() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "photos".to_owned(),
        "photos-private".to_owned(),
        "docs".to_owned(),
    ])
}

/// Blob scopes of every shape over a small alphabet, so that overlaps are common.
fn blob_scope() -> impl Strategy<Value = Scope> {
    (container(), prop::option::of(segments()), any::<bool>()).prop_map(|(c, segs, prefix)| {
        let text = match segs {
            None => format!("blob:{c}"),
            Some(s) if prefix => format!("blob:{c}/{}/", s.join("/")),
            Some(s) => format!("blob:{c}/{}", s.join("/")),
        };
        text.parse().unwrap()
    })
}

fn ops() -> impl Strategy<Value = Ops> {
    (1u16..512).prop_map(|bits| Ops::from_bits(bits).unwrap())
}

fn op() -> impl Strategy<Value = Op> {
    prop::sample::select(Op::ALL.to_vec())
}

fn small_net() -> impl Strategy<Value = IpNet> {
    (0u8..4, 24u8..=32).prop_map(|(third, len)| {
        IpNet::V4(
            Ipv4Net::new(Ipv4Addr::new(10, 0, third, 0), len)
                .unwrap()
                .trunc(),
        )
    })
}

fn claims() -> impl Strategy<Value = Claims> {
    (
        any::<[u8; 16]>(),
        prop::option::of("[a-z]{0,12}"),
        blob_scope(),
        ops(),
        0u64..1000,
        1u64..5000,
        prop::option::of(any::<u64>()),
        prop::option::of(0u64..100),
        prop::collection::vec(small_net(), 0..3),
    )
        .prop_map(
            |(id, subject, scope, ops, nbf, ttl, max_bytes, max_uses, ips)| Claims {
                key_id: KeyId(id),
                subject,
                // Only what applies to the scope can be issued; caveats (appended unchecked)
                // still name any operations.
                ops: match ops.intersect(scope.kind().ops()) {
                    none if none.is_empty() => Ops::NONE.with(Op::Read),
                    fitting => fitting,
                },
                scope,
                not_before: NOW.plus(nbf),
                expires: NOW.plus(nbf + ttl),
                limits: Limits {
                    max_bytes,
                    max_uses,
                    client_ips: ips,
                    ..Limits::default()
                },
            },
        )
}

fn caveat() -> impl Strategy<Value = Caveat> {
    (
        prop::option::of(blob_scope()),
        prop::option::of(ops()),
        prop::option::of(0u64..3000),
        prop::option::of(0u64..8000),
        prop::option::of(any::<u64>()),
        prop::option::of(0u64..100),
        prop::collection::vec(small_net(), 0..2),
    )
        .prop_map(|(scope, ops, nbf, exp, max_bytes, max_uses, ips)| Caveat {
            scope,
            ops,
            not_before: nbf.map(|n| NOW.plus(n)),
            expires: exp.map(|e| NOW.plus(e)),
            max_bytes,
            max_uses,
            client_ips: ips,
            ..Caveat::default()
        })
        .prop_filter("a caveat restricts something", |c| !c.is_empty())
}

fn token_with_caveats() -> impl Strategy<Value = Token> {
    (claims(), prop::collection::vec(caveat(), 0..4)).prop_map(|(claims, caveats)| {
        let root = keyring().issue(claims).unwrap();
        caveats.into_iter().fold(root, |t, c| t.append(c).unwrap())
    })
}

fn genuine(text: &str) -> bool {
    text.parse::<Token>().is_ok_and(|t| keyring().check_tag(&t))
}

const TOKEN_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+/=%~ ";

fn token_character() -> impl Strategy<Value = u8> {
    prop::sample::select(TOKEN_ALPHABET.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tokens_round_trip_through_text(token in token_with_caveats()) {
        let text = token.to_string();
        let back: Token = text.parse().unwrap();
        prop_assert_eq!(&back, &token);
        prop_assert_eq!(back.to_string(), text.clone());
        prop_assert!(genuine(&text));
    }

    #[test]
    fn any_changed_character_is_rejected(
        token in token_with_caveats(),
        position in any::<prop::sample::Index>(),
        replacement in prop::sample::select(TOKEN_ALPHABET.to_vec()),
    ) {
        let mut bytes = token.to_string().into_bytes();
        let i = position.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        prop_assert!(!genuine(&String::from_utf8(bytes).unwrap()));
    }

    #[test]
    fn any_truncation_is_rejected(token in token_with_caveats(), cut in any::<prop::sample::Index>()) {
        let text = token.to_string();
        let keep = cut.index(text.len());
        prop_assert!(!genuine(&text[..keep]));
    }

    #[test]
    fn any_extension_is_rejected(token in token_with_caveats(), tail in "[A-Za-z0-9_.-]{1,60}") {
        let extended = format!("{}{}", token, tail);
        prop_assert!(!genuine(&extended));
    }

    #[test]
    fn removing_or_reordering_caveats_is_rejected(
        token in token_with_caveats(),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let text = token.to_string();
        let parts: Vec<&str> = text.split('.').collect();
        let caveats = parts.len() - 3;
        prop_assume!(caveats > 0);
        let (i, j) = (2 + a.index(caveats), 2 + b.index(caveats));
        let mut removed = parts.clone();
        removed.remove(i);
        prop_assert!(!genuine(&removed.join(".")));
        if parts[i] != parts[j] {
            let mut swapped = parts.clone();
            swapped.swap(i, j);
            prop_assert!(!genuine(&swapped.join(".")));
        }
    }

    #[test]
    fn authorizing_text_answers_as_authorizing_the_parsed_token(
        token in token_with_caveats(),
        tamper in prop::option::weighted(0.3, (any::<prop::sample::Index>(), token_character())),
        foreign_ring in prop::bool::weighted(0.1),
        op in prop::option::of(op()),
        resource in prop::option::weighted(0.3, blob_scope()),
        offset in 0u64..1000,
        host in 0u8..=255,
        third in 0u8..4,
    ) {
        // Mostly genuine tokens and requests inside the claims, so that grants are common too.
        let mut text = token.to_string().into_bytes();
        if let Some((position, replacement)) = tamper {
            let i = position.index(text.len());
            text[i] = replacement;
        }
        let text = String::from_utf8(text).unwrap();
        let claims = token.claims();
        let resource = resource.unwrap_or_else(|| claims.scope.clone());
        let (not_before, expires) = token.effective_window();
        let window = expires.0.saturating_sub(not_before.0).max(1);
        let access = Access {
            op: op.unwrap_or_else(|| claims.ops.iter().next().unwrap()),
            resource: &resource,
            now: not_before.plus(offset % window),
            client: Some(IpAddr::V4(Ipv4Addr::new(10, 0, third, host))),
        };
        let ring = if foreign_ring {
            valet_key::Keyring::from_secrets(Some("k1"), &[("k1", [8; 32])]).unwrap()
        } else {
            keyring()
        };
        let verifier = Verifier::new(ring);
        let parsed = text
            .parse::<Token>()
            .map_err(valet_key::Denial::Malformed)
            .and_then(|t| verifier.authorize_token(&t, &access));
        prop_assert_eq!(verifier.authorize(&text, &access), parsed);
    }

    #[test]
    fn attenuation_never_widens(
        claims in claims(),
        caveats in prop::collection::vec(caveat(), 1..5),
        op in op(),
        resource in blob_scope(),
        offset in 0u64..10_000,
        host in 0u8..=255,
        third in 0u8..4,
    ) {
        let root = keyring().issue(claims).unwrap();
        let narrowed = caveats.into_iter().fold(root.clone(), |t, c| t.append(c).unwrap());
        let access = Access {
            op,
            resource: &resource,
            now: UnixTime(NOW.0 - 100 + offset),
            client: Some(IpAddr::V4(Ipv4Addr::new(10, 0, third, host))),
        };
        let verifier = Verifier::new(keyring());
        if let Ok(narrow) = verifier.authorize_token(&narrowed, &access) {
            let wide = verifier.authorize_token(&root, &access);
            prop_assert!(wide.is_ok(), "the attenuated key granted what the root denied");
            let wide = wide.unwrap();
            prop_assert!(narrow.valid_until <= wide.valid_until);
            // What the ledger keeps counts and revocations by is the key's, whatever the caveats.
            prop_assert_eq!(narrow.key_expires, wide.key_expires);
            prop_assert_eq!(narrow.issued_at, wide.issued_at);
            prop_assert!(narrow.ops.within(wide.ops));
            if let Some(cap) = wide.max_bytes { prop_assert!(narrow.max_bytes.is_some_and(|n| n <= cap)); }
            if let Some(cap) = wide.max_uses { prop_assert!(narrow.max_uses.is_some_and(|n| n <= cap)); }
        }
    }

    #[test]
    fn checked_attenuation_only_produces_narrower_keys(
        claims in claims(),
        caveat in caveat(),
    ) {
        let root = keyring().issue(claims).unwrap();
        if let Ok(narrowed) = root.attenuate(caveat.clone()) {
            if let Some(scope) = &caveat.scope { prop_assert!(root.claims().scope.covers(scope)); }
            prop_assert!(narrowed.effective_ops().within(root.effective_ops()));
            let (nbf, exp) = narrowed.effective_window();
            prop_assert!(nbf < exp);
            prop_assert!(exp <= root.claims().expires);
        }
    }

    #[test]
    fn prefixes_match_whole_segments_only(
        c in container(),
        prefix in segments(),
        path in segments(),
    ) {
        let key: Scope = format!("blob:{c}/{}/", prefix.join("/")).parse().unwrap();
        let blob: Scope = format!("blob:{c}/{}", path.join("/")).parse().unwrap();
        let by_segments = path.len() > prefix.len() && path[..prefix.len()] == prefix[..];
        prop_assert_eq!(key.covers(&blob), by_segments);
    }

    #[test]
    fn coverage_is_transitive(a in blob_scope(), b in blob_scope(), c in blob_scope()) {
        if a.covers(&b) && b.covers(&c) {
            prop_assert!(a.covers(&c));
        }
    }

    #[test]
    fn scopes_round_trip_through_text(scope in blob_scope()) {
        prop_assert_eq!(scope.to_string().parse::<Scope>().unwrap(), scope);
    }

    #[test]
    fn scope_parsing_never_panics_and_accepts_no_traversal(text in "(blob|table|queue):[a-z./%\\\\0-9-]{0,20}") {
        if let Ok(scope) = text.parse::<Scope>() {
            let shown = scope.to_string();
            // Text is canonical but for one alias people type: `blob:NAME/` is the
            // whole container and is shown as `blob:NAME`.
            let container_alias = text.starts_with("blob:")
                && text.ends_with('/')
                && text.matches('/').count() == 1
                && shown == text[..text.len() - 1];
            prop_assert!(shown == text || container_alias, "{text:?} shown as {shown:?}");
            prop_assert_eq!(shown.parse::<Scope>().unwrap(), scope.clone());
            let path = shown.split_once('/').map_or("", |(_, p)| p);
            prop_assert!(path.split('/').all(|s| s != "." && s != ".."));
            prop_assert!(!path.contains('\\') && !path.contains("//"));
        }
    }
}
