//! Arbitrary bytes as token text.
//!
//! Input that is UTF-8 is the text itself. Input that starts with the byte `0xff` (never
//! UTF-8) is read as raw segments instead, so that the fuzzer works on the binary claims and
//! caveats directly rather than through base64: after the marker, each segment is one length
//! byte and that many bytes, and the last 32 bytes of the input are the tag; the text is then
//! `vk1.` and the segments and tag in base64url.
//!
//! - Parsing never panics, and whatever parses prints back to exactly the input: the text form
//!   has one spelling per token, so the bytes the tag covers are the bytes that were sent.
//! - Authorizing it never panics.
//! - Re-signed under a known key (same claims, same caveats), it authorizes without panicking,
//!   and only within what its claims grant.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use valet_key::{redact, Access, Keyring, Op, Token, Verifier};

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let ring = Keyring::from_secrets(Some("k1"), &[("k1", [7; 32]), ("k0", [9; 32])])
            .expect("a valid keyring");
        Verifier::new(ring)
    })
}

/// The token text of raw segments framed as the module docs say.
fn text_from_segments(data: &[u8]) -> String {
    let split = data.len().saturating_sub(32);
    let (mut framed, tag) = data.split_at(split);
    let mut text = String::from(valet_key::TOKEN_PREFIX);
    while let [len, rest @ ..] = framed {
        let (segment, rest) = rest.split_at(usize::from(*len).min(rest.len()));
        URL_SAFE_NO_PAD.encode_string(segment, &mut text);
        text.push('.');
        framed = rest;
    }
    let mut full_tag = [0; 32];
    full_tag[..tag.len()].copy_from_slice(tag);
    URL_SAFE_NO_PAD.encode_string(full_tag, &mut text);
    text
}

fuzz_target!(|data: &[u8]| {
    match data {
        [0xff, framed @ ..] => check(&text_from_segments(framed)),
        _ => {
            if let Ok(text) = std::str::from_utf8(data) {
                check(text);
            }
        }
    }
});

fn check(text: &str) {
    let _ = redact(text);
    let Ok(token) = text.parse::<Token>() else {
        return;
    };
    assert_eq!(token.to_string(), text, "the text form must round-trip");

    let verifier = verifier();
    let claims = token.claims();
    let client = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    for op in Op::ALL {
        let access = Access {
            op,
            resource: &claims.scope,
            now: claims.not_before,
            client,
        };
        let _ = verifier.authorize(text, &access);
        let _ = verifier.authorize_token(&token, &access);
    }

    // The same claims and caveats under a key the verifier holds: the checks past the tag.
    // Unchecked: a parsed token's claims may name operations an issuer would now refuse.
    let Ok(mut signed) = verifier.keyring().issue_unchecked(claims.clone()) else {
        return;
    };
    for caveat in token.caveats() {
        signed = signed
            .append(caveat.clone())
            .expect("a parsed caveat appends");
    }
    let signed_text = signed.to_string();
    let reparsed: Token = signed_text.parse().expect("a signed token parses");
    assert_eq!(reparsed, signed);
    for op in Op::ALL {
        for now in [claims.not_before, claims.expires.minus(1), claims.expires] {
            let access = Access {
                op,
                resource: &claims.scope,
                now,
                client,
            };
            let by_text = verifier.authorize(&signed_text, &access);
            let by_token = verifier.authorize_token(&signed, &access);
            assert_eq!(by_text, by_token);
            if let Ok(grant) = by_text {
                assert!(claims.ops.permits(op), "granted {op} beyond the claims");
                assert!(grant.valid_until <= claims.expires);
                assert_eq!(grant.key_expires, claims.expires);
                assert_eq!(grant.issued_at, claims.not_before);
                assert!(grant.ops.within(claims.ops));
            }
        }
    }
}
