//! Attacks on the token itself, with no server in the way: forged, tampered, truncated and
//! re-signed keys, keys of a retired signing key, caveats removed, replaced, reordered or
//! widening, the validity window at and around the skew bounds, and resources that try to
//! pass for others. Every case asserts the exact denial code. `docs/SECURITY.md` lists each
//! attack with the test that proves it.

mod common;

use std::net::IpAddr;

use base64_simd::URL_SAFE_NO_PAD;
use common::*;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use valet_key::{
    Access, Caveat, Claims, Denial, KeyId, Keyring, Limits, Op, Scope, Token, UnixTime, Verifier,
    DEFAULT_SKEW_SECONDS, MAX_TOKEN_LEN,
};

const CLIENT: &str = "10.1.2.3";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode_to_string(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode_to_vec(text).expect("base64url")
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The dot-separated parts of a token's text: `vk1`, the claims, the caveats, the tag.
fn parts(token: &Token) -> Vec<String> {
    token.to_string().split('.').map(str::to_owned).collect()
}

fn join(parts: &[&str]) -> String {
    parts.join(".")
}

/// What `verifier` answers for `text` asking `op` on `resource` at `now` from `CLIENT`.
fn answer(verifier: &Verifier, text: &str, op: Op, resource: &str, now: UnixTime) -> &'static str {
    let resource = scope(resource);
    let access = Access {
        op,
        resource: &resource,
        now,
        client: Some(CLIENT.parse::<IpAddr>().unwrap()),
    };
    match verifier.authorize(text, &access) {
        Ok(_) => "granted",
        Err(denial) => denial.code(),
    }
}

/// The answer of the test keyring's verifier, now.
fn code(text: &str, op: Op, resource: &str) -> &'static str {
    answer(&Verifier::new(keyring()), text, op, resource, NOW)
}

/// Claims far wider than any test key: the whole container, every blob operation, a year.
fn wide_claims() -> Claims {
    Claims {
        key_id: KeyId([1; 16]),
        subject: None,
        scope: scope("blob:photos"),
        ops: "read,write,delete,list".parse().unwrap(),
        not_before: NOW,
        expires: NOW.plus(365 * 86_400),
        limits: Limits::default(),
    }
}

#[test]
fn forged_tags_are_invalid() {
    let genuine = token("blob:photos/a.jpg", "read");
    let p = parts(&genuine);
    let claims = unb64(&p[1]);
    let other = token("blob:photos/b.jpg", "read");
    let forged_tags = [
        ("zeros", b64(&[0; 32])),
        ("ones", b64(&[0xff; 32])),
        ("plain SHA-256 of the claims", b64(&Sha256::digest(&claims))),
        ("HMAC under an empty key", b64(&hmac(b"", &claims))),
        ("HMAC under a guessed secret", b64(&hmac(&[0; 32], &claims))),
        ("another genuine key's tag", parts(&other)[2].clone()),
    ];
    assert_eq!(
        code(&genuine.to_string(), Op::Read, "blob:photos/a.jpg"),
        "granted"
    );
    for (what, tag) in forged_tags {
        let forged = join(&["vk1", &p[1], &tag]);
        assert_eq!(
            code(&forged, Op::Read, "blob:photos/a.jpg"),
            "key_invalid",
            "{what}"
        );
    }
}

#[test]
fn widened_claims_under_the_genuine_tag_are_invalid() {
    let genuine = token("blob:photos/a.jpg", "read");
    let p = parts(&genuine);
    // Wider claims, encoded by an issuer with another secret under the same key id `k1`.
    let impostor = Keyring::from_secrets(Some("k1"), &[("k1", [8; 32])]).unwrap();
    let wide = impostor.issue(wide_claims()).unwrap();
    let spliced = join(&["vk1", &parts(&wide)[1], &p[2]]);
    for (op, resource) in [
        (Op::Read, "blob:photos/a.jpg"),
        (Op::Write, "blob:photos/a.jpg"),
        (Op::Read, "blob:photos/other.jpg"),
        (Op::List, "blob:photos"),
    ] {
        assert_eq!(
            code(&spliced, op, resource),
            "key_invalid",
            "{op} {resource}"
        );
    }

    // Every bit-flip of every claims byte, re-encoded canonically, the tag kept: a text that
    // still parses is `key_invalid`, one that does not is `key_malformed`; none is granted.
    let claims = unb64(&p[1]);
    for i in 0..claims.len() {
        for bit in [0x01, 0x80] {
            let mut bytes = claims.clone();
            bytes[i] ^= bit;
            let text = join(&["vk1", &b64(&bytes), &p[2]]);
            let want = if text.parse::<Token>().is_ok() {
                "key_invalid"
            } else {
                "key_malformed"
            };
            assert_eq!(
                code(&text, Op::Read, "blob:photos/a.jpg"),
                want,
                "byte {i} ^ {bit:#x}"
            );
        }
    }

    // The signing-key id is under the tag too: claims naming `k2` with `k1`'s tag.
    let two = Keyring::from_secrets(Some("k2"), &[("k1", [7; 32]), ("k2", [9; 32])]).unwrap();
    let as_k2 = two.issue(claims_of(&genuine)).unwrap();
    assert_eq!(as_k2.signing_key(), "k2");
    let renamed = join(&["vk1", &parts(&as_k2)[1], &p[2]]);
    let verifier = Verifier::new(two);
    assert_eq!(
        answer(&verifier, &renamed, Op::Read, "blob:photos/a.jpg", NOW),
        "key_invalid"
    );
}

fn claims_of(token: &Token) -> Claims {
    token.claims().clone()
}

#[test]
fn truncated_and_extended_tokens_never_pass() {
    let root = token("blob:photos", "read,list");
    let narrowed = root
        .attenuate(Caveat {
            scope: Some(scope("blob:photos/2024/")),
            ..Caveat::default()
        })
        .unwrap()
        .attenuate(Caveat {
            ops: Some("read".parse().unwrap()),
            ..Caveat::default()
        })
        .unwrap();
    let text = narrowed.to_string();
    let resource = "blob:photos/2024/a.jpg";
    assert_eq!(code(&text, Op::Read, resource), "granted");
    // Every prefix: malformed if it no longer parses, invalid if it does.
    for cut in 0..text.len() {
        let short = &text[..cut];
        let want = if short.parse::<Token>().is_ok() {
            "key_invalid"
        } else {
            "key_malformed"
        };
        assert_eq!(code(short, Op::Read, resource), want, "cut at {cut}");
    }
    let p = parts(&narrowed);
    // Without its tag, the last caveat stands where the tag should be.
    assert_eq!(
        code(&join(&["vk1", &p[1], &p[2], &p[3]]), Op::Read, resource),
        "key_malformed"
    );
    // Extended: another segment after the tag, or a caveat inserted before it.
    for extended in [
        format!("{text}.AAAA"),
        format!("{text}A"),
        join(&["vk1", &p[1], &p[2], &p[3], &p[3], &p[4]]),
        join(&["vk1", &p[1], &p[2], &p[2], &p[3], &p[4]]),
    ] {
        let want = if extended.parse::<Token>().is_ok() {
            "key_invalid"
        } else {
            "key_malformed"
        };
        assert_eq!(code(&extended, Op::Read, resource), want, "{extended}");
    }
    // The longest text accepted is MAX_TOKEN_LEN; one character more is malformed unread.
    let long = format!("{text}{}", "A".repeat(MAX_TOKEN_LEN + 1 - text.len()));
    assert_eq!(long.len(), MAX_TOKEN_LEN + 1);
    assert_eq!(code(&long, Op::Read, resource), "key_malformed");
}

#[test]
fn re_signed_keys_are_invalid() {
    let genuine = token("blob:photos/a.jpg", "read");
    let p = parts(&genuine);
    let tag = unb64(&p[2]);
    let wide = Keyring::from_secrets(Some("k1"), &[("k1", [8; 32])])
        .unwrap()
        .issue(wide_claims())
        .unwrap();
    let wide_claims_bytes = unb64(&parts(&wide)[1]);

    // The holder knows its key's tag, HMAC(secret, claims). Used as a secret for new claims
    // it signs nothing the verifier accepts.
    let with_tag_as_secret = join(&[
        "vk1",
        &parts(&wide)[1],
        &b64(&hmac(&tag, &wide_claims_bytes)),
    ]);
    assert_eq!(
        code(&with_tag_as_secret, Op::Write, "blob:photos/x"),
        "key_invalid"
    );

    // Another key's claims appended as a caveat, with a correct tag chain: a claims segment
    // is not a caveat (kind byte 0x01), so the token does not even parse.
    let smuggled = join(&[
        "vk1",
        &p[1],
        &parts(&wide)[1],
        &b64(&hmac(&tag, &wide_claims_bytes)),
    ]);
    assert_eq!(
        code(&smuggled, Op::Read, "blob:photos/a.jpg"),
        "key_malformed"
    );

    // A caveat presented as the claims of a key.
    let narrowed = genuine
        .attenuate(Caveat {
            ops: Some("read".parse().unwrap()),
            ..Caveat::default()
        })
        .unwrap();
    let n = parts(&narrowed);
    let caveat_as_claims = join(&["vk1", &n[2], &n[3]]);
    assert_eq!(
        code(&caveat_as_claims, Op::Read, "blob:photos/a.jpg"),
        "key_malformed"
    );

    // The wide claims re-signed by an attacker's keyring under the genuine signing-key id.
    assert_eq!(
        code(&wide.to_string(), Op::Read, "blob:photos/a.jpg"),
        "key_invalid"
    );
}

#[test]
fn keys_of_a_retired_signing_key_stop_verifying_with_every_attenuation() {
    let old = Keyring::from_secrets(Some("k1"), &[("k1", [7; 32])]).unwrap();
    let issued = old.issue(claims("blob:photos/2024/", "read")).unwrap();
    let narrowed = issued
        .attenuate(Caveat {
            scope: Some(scope("blob:photos/2024/a.jpg")),
            ..Caveat::default()
        })
        .unwrap();
    let resource = "blob:photos/2024/a.jpg";

    // Rotated: k2 signs, k1 still verifies.
    let mut rotated =
        Keyring::from_secrets(Some("k2"), &[("k1", [7; 32]), ("k2", [9; 32])]).unwrap();
    let verifier = Verifier::new(rotated.clone());
    for text in [issued.to_string(), narrowed.to_string()] {
        assert_eq!(answer(&verifier, &text, Op::Read, resource, NOW), "granted");
    }

    // Retired: k1's keys and every attenuation of them, made before or after, are invalid.
    rotated.retire("k1").unwrap();
    let verifier = Verifier::new(rotated.clone());
    let made_after = issued
        .attenuate(Caveat {
            expires: Some(NOW.plus(60)),
            ..Caveat::default()
        })
        .unwrap();
    for text in [
        issued.to_string(),
        narrowed.to_string(),
        made_after.to_string(),
    ] {
        assert_eq!(
            answer(&verifier, &text, Op::Read, resource, NOW),
            "key_invalid"
        );
    }
    // The same claims with k1's name and a tag made with k2's secret: k1 is gone, so invalid.
    let k2_secret = Keyring::from_secrets(Some("k1"), &[("k1", [9; 32])]).unwrap();
    let renamed = k2_secret
        .issue(claims("blob:photos/2024/", "read"))
        .unwrap();
    assert_eq!(
        answer(&verifier, &renamed.to_string(), Op::Read, resource, NOW),
        "key_invalid"
    );
    // What k2 signs still works.
    let fresh = rotated.issue(claims("blob:photos/2024/", "read")).unwrap();
    assert_eq!(
        answer(&verifier, &fresh.to_string(), Op::Read, resource, NOW),
        "granted"
    );
}

#[test]
fn caveats_cannot_be_removed_replaced_reordered_or_grafted() {
    let root = token("blob:photos", "read,write,list");
    let a = root
        .attenuate(Caveat {
            scope: Some(scope("blob:photos/2024/")),
            ..Caveat::default()
        })
        .unwrap();
    let a2 = a
        .attenuate(Caveat {
            ops: Some("read".parse().unwrap()),
            ..Caveat::default()
        })
        .unwrap();
    let b = root
        .attenuate(Caveat {
            ops: Some("list".parse().unwrap()),
            ..Caveat::default()
        })
        .unwrap();
    let (pa, pa2, pb) = (parts(&a), parts(&a2), parts(&b));
    let outside = "blob:photos/2023/x";
    let forgeries = [
        (
            "a caveat removed, the tag kept",
            join(&["vk1", &pa2[1], &pa2[2], &pa2[4]]),
        ),
        (
            "the first caveat removed",
            join(&["vk1", &pa2[1], &pa2[3], &pa2[4]]),
        ),
        ("every caveat removed", join(&["vk1", &pa2[1], &pa2[4]])),
        (
            "caveats swapped",
            join(&["vk1", &pa2[1], &pa2[3], &pa2[2], &pa2[4]]),
        ),
        (
            "a sibling's caveat in place of one",
            join(&["vk1", &pa[1], &pb[2], &pa[3]]),
        ),
        ("a sibling's tag", join(&["vk1", &pa[1], &pa[2], &pb[3]])),
        (
            "the root's tag without caveats, guessed",
            join(&["vk1", &pa[1], &pa2[4]]),
        ),
    ];
    for (what, text) in forgeries {
        assert_eq!(code(&text, Op::Write, outside), "key_invalid", "{what}");
        assert_eq!(code(&text, Op::Read, outside), "key_invalid", "{what}");
    }
    // The genuine ones do what they say.
    assert_eq!(
        code(&a2.to_string(), Op::Read, "blob:photos/2024/x"),
        "granted"
    );
    assert_eq!(
        code(&a2.to_string(), Op::Write, "blob:photos/2024/x"),
        "op_not_allowed"
    );
    assert_eq!(code(&a2.to_string(), Op::Read, outside), "out_of_scope");
}

#[test]
fn widening_caveats_appended_anyway_grant_nothing_more_in_any_dimension() {
    let mut c = claims("blob:photos/2024/", "read,write");
    c.limits = Limits {
        max_bytes: Some(100),
        max_uses: Some(2),
        content_type: Some("image/png".parse().unwrap()),
        client_ips: vec!["10.0.0.0/8".parse().unwrap()],
        ..Limits::default()
    };
    let root = keyring().issue(c).unwrap();
    let wider = root
        .append(Caveat {
            scope: Some(scope("blob:photos")),
            ops: Some("read,write,delete,list".parse().unwrap()),
            not_before: Some(UnixTime(0)),
            expires: Some(UnixTime(u64::MAX)),
            max_bytes: Some(u64::MAX),
            max_uses: Some(u64::MAX),
            content_type: Some("text/*".parse().unwrap()),
            client_ips: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
        })
        .unwrap();
    let text = wider.to_string();
    let verifier = Verifier::new(keyring());
    let at = |op, resource, now| answer(&verifier, &text, op, resource, now);
    assert_eq!(at(Op::Read, "blob:photos/2024/a", NOW), "granted");
    assert_eq!(at(Op::Read, "blob:photos/2023/a", NOW), "out_of_scope");
    assert_eq!(at(Op::Delete, "blob:photos/2024/a", NOW), "op_not_allowed");
    assert_eq!(at(Op::List, "blob:photos/2024/", NOW), "op_not_allowed");
    let skew = DEFAULT_SKEW_SECONDS;
    assert_eq!(
        at(Op::Read, "blob:photos/2024/a", NOW.minus(skew + 1)),
        "key_not_yet_valid"
    );
    assert_eq!(
        at(Op::Read, "blob:photos/2024/a", NOW.plus(600 + skew)),
        "key_expired"
    );
    // The client range of the claims still applies.
    let resource = scope("blob:photos/2024/a");
    let from = |ip: &str| Access {
        op: Op::Read,
        resource: &resource,
        now: NOW,
        client: Some(ip.parse().unwrap()),
    };
    assert_eq!(
        verifier.authorize(&text, &from("192.0.2.1")).unwrap_err(),
        Denial::IpNotAllowed
    );
    // The caps stay the smallest, and an upload must satisfy every content type: image/png
    // and text/* together admit nothing.
    let grant = verifier.authorize(&text, &from(CLIENT)).unwrap();
    assert_eq!(grant.max_bytes, Some(100));
    assert_eq!(grant.max_uses, Some(2));
    assert!(!grant.permits_content_type(Some("image/png")));
    assert!(!grant.permits_content_type(Some("text/plain")));
    assert!(!grant.permits_content_type(None));
}

#[test]
fn caveat_windows_honour_the_skew_exactly_and_extremes_do_not_overflow() {
    let skew = DEFAULT_SKEW_SECONDS;
    let root = token("blob:photos/a", "read");
    let expiring = root
        .attenuate(Caveat {
            expires: Some(NOW.plus(100)),
            ..Caveat::default()
        })
        .unwrap()
        .to_string();
    let starting = root
        .attenuate(Caveat {
            not_before: Some(NOW.plus(300)),
            ..Caveat::default()
        })
        .unwrap()
        .to_string();
    let r = "blob:photos/a";
    let lenient = Verifier::new(keyring());
    let strict = Verifier::new(keyring()).with_skew(0);
    let (exp, nbf) = (NOW.plus(100), NOW.plus(300));
    let cases = [
        (&lenient, &expiring, exp.plus(skew - 1), "granted"),
        (&lenient, &expiring, exp.plus(skew), "key_expired"),
        (&lenient, &starting, nbf.minus(skew), "granted"),
        (
            &lenient,
            &starting,
            nbf.minus(skew + 1),
            "key_not_yet_valid",
        ),
        (&strict, &expiring, exp.minus(1), "granted"),
        (&strict, &expiring, exp, "key_expired"),
        (&strict, &starting, nbf, "granted"),
        (&strict, &starting, nbf.minus(1), "key_not_yet_valid"),
    ];
    for (verifier, text, now, want) in cases {
        assert_eq!(
            answer(verifier, text, Op::Read, r, now),
            want,
            "at {}",
            now.0
        );
    }

    // A caveat with the largest and smallest times, appended without the check.
    let never = root
        .append(Caveat {
            not_before: Some(UnixTime(u64::MAX)),
            ..Caveat::default()
        })
        .unwrap()
        .to_string();
    let dead = root
        .append(Caveat {
            expires: Some(UnixTime(0)),
            ..Caveat::default()
        })
        .unwrap()
        .to_string();
    for (now, never_says, dead_says) in [
        (UnixTime(0), "key_not_yet_valid", "key_not_yet_valid"),
        (NOW, "key_not_yet_valid", "key_expired"),
        (UnixTime(u64::MAX), "key_expired", "key_expired"),
    ] {
        assert_eq!(answer(&lenient, &never, Op::Read, r, now), never_says);
        assert_eq!(answer(&lenient, &dead, Op::Read, r, now), dead_says);
    }
    // Claims spanning all of time saturate instead of wrapping.
    let mut forever = claims(r, "read");
    forever.not_before = UnixTime(0);
    forever.expires = UnixTime(u64::MAX);
    let forever = keyring().issue(forever).unwrap().to_string();
    assert_eq!(
        answer(&lenient, &forever, Op::Read, r, UnixTime(0)),
        "granted"
    );
    assert_eq!(
        answer(&lenient, &forever, Op::Read, r, UnixTime(u64::MAX - 1)),
        "granted"
    );
    assert_eq!(
        answer(&lenient, &forever, Op::Read, r, UnixTime(u64::MAX)),
        "key_expired"
    );
}

#[test]
fn resources_are_compared_byte_for_byte() {
    let one = token("blob:photos/2024/café.jpg", "read").to_string();
    assert_eq!(code(&one, Op::Read, "blob:photos/2024/café.jpg"), "granted");
    for other in [
        "blob:photos/2024/Café.jpg",
        "blob:photos/2024/CAFÉ.JPG",
        "blob:photos/2024/cafe\u{301}.jpg",
        "blob:photos/2024/café.jpg.",
        "blob:photos/2024/café.jpg ",
        "blob:photos/2024/café.jpg~",
        "blob:photos/2024/café.jpg/x",
        "blob:photos/2024／café.jpg",
        "blob:photos/2024 /café.jpg",
        "blob:photos-2024/café.jpg",
    ] {
        assert_eq!(code(&one, Op::Read, other), "out_of_scope", "{other}");
    }
    // A prefix holds whole segments: not a longer name, not the folder's own name.
    let prefix = token("blob:photos/2024/", "read,list").to_string();
    for other in [
        "blob:photos/2024-private/x",
        "blob:photos/2024.bak/x",
        "blob:photos/2024",
        "blob:photos/20",
        "blob:photos",
        "blob:photos/2/",
        "blob:photos-private/2024/x",
    ] {
        assert_eq!(code(&prefix, Op::Read, other), "out_of_scope", "{other}");
    }
    // Text that could name another resource once normalised is not a resource at all.
    for bad in [
        "blob:Photos/2024/x",
        "blob:PHOTOS",
        "blob:photos/2024/../2025/x",
        "blob:photos/2024/./x",
        "blob:photos/2024//x",
        "blob:photos//2024/x",
        "blob:photos/2024/%2e%2e/x",
        "blob:photos/2024/%2E%2E/x",
        "blob:photos/2024%2fx",
        "blob:photos/2024/%252e%252e/x",
        "blob:photos/2024\\..\\x",
        "blob:photos/2024/x\0",
        "blob:photos/2024/x\n",
        "blob:photos/2024/\u{85}",
        "blob:photos/..",
        "blob:photos/.",
        "blob:photos//",
        "blob:../photos",
        "blob:photos/2024/x/../../y/",
    ] {
        assert!(bad.parse::<Scope>().is_err(), "{bad:?} parsed");
    }
}

/// `blob:NAME/` is how people write a container's contents: it is the container, signed in
/// its one canonical text, so the spelling can neither widen a key nor change its bytes.
#[test]
fn a_container_written_with_a_trailing_slash_is_exactly_the_container() {
    let slash = claims("blob:photos/", "read,list");
    let plain = claims("blob:photos", "read,list");
    assert_eq!(slash, plain);
    let signed = keyring().issue(slash).unwrap().to_string();
    assert_eq!(signed, keyring().issue(plain).unwrap().to_string());
    assert_eq!(code(&signed, Op::Read, "blob:photos/2024/a.jpg"), "granted");
    assert_eq!(code(&signed, Op::List, "blob:photos/"), "granted");
    for other in ["blob:photos-private/x", "blob:photo/x", "blob:photos2/"] {
        assert_eq!(code(&signed, Op::Read, other), "out_of_scope", "{other}");
    }
}

#[test]
fn token_text_has_exactly_one_form() {
    let genuine = token("blob:photos/a", "read");
    let text = genuine.to_string();
    let p = parts(&genuine);
    assert_eq!(code(&text, Op::Read, "blob:photos/a"), "granted");
    // The tag's last character carries 2 unused bits, the claims' may too: setting them
    // would give the same bytes from another text if decoding were lenient.
    assert_eq!(p[2].len(), 43);
    let mut variants = Vec::new();
    for alt in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".chars() {
        let mut tag = p[2].clone();
        tag.pop();
        tag.push(alt);
        if tag != p[2] {
            variants.push(join(&["vk1", &p[1], &tag]));
        }
    }
    // Of the 63 other last characters, the 15 whose unused bits are zero decode to another
    // tag (`key_invalid`); the 48 that set the unused bits are not canonical (`key_malformed`),
    // among them the 3 that a lenient decoder would read as the very same tag.
    let mut malformed = 0;
    for variant in &variants {
        let want = if variant.parse::<Token>().is_ok() {
            "key_invalid"
        } else {
            malformed += 1;
            "key_malformed"
        };
        assert_eq!(code(variant, Op::Read, "blob:photos/a"), want, "{variant}");
    }
    assert_eq!((variants.len(), malformed), (63, 48));
    for (what, bad) in [
        ("upper-case prefix", text.replacen("vk1.", "VK1.", 1)),
        ("another version", text.replacen("vk1.", "vk2.", 1)),
        ("padding", format!("{text}=")),
        (
            "padded claims",
            join(&["vk1", &format!("{}==", p[1]), &p[2]]),
        ),
        (
            "standard alphabet",
            text.replace('-', "+").replace('_', "/"),
        ),
        ("leading space", format!(" {text}")),
        ("trailing newline", format!("{text}\n")),
        ("percent-encoded dot", text.replacen('.', "%2E", 2)),
        ("empty tag", join(&["vk1", &p[1], ""])),
        ("no prefix", text["vk1.".len()..].to_owned()),
    ] {
        if bad == text {
            continue; // the token had no '-' or '_' to change
        }
        assert_eq!(
            code(&bad, Op::Read, "blob:photos/a"),
            "key_malformed",
            "{what}"
        );
    }
}
