//! Fixtures shared by the key crate's integration tests.

#![allow(dead_code)]

use valet_key::{Claims, KeyId, Keyring, Limits, Scope, Token, UnixTime};

pub const NOW: UnixTime = UnixTime(1_800_000_000);

pub fn keyring() -> Keyring {
    Keyring::from_secrets(Some("k1"), &[("k1", [7; 32])]).unwrap()
}

pub fn scope(text: &str) -> Scope {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

pub fn claims(scope_text: &str, ops: &str) -> Claims {
    Claims {
        key_id: KeyId([1; 16]),
        subject: Some("alice".into()),
        scope: scope(scope_text),
        ops: ops.parse().unwrap(),
        not_before: NOW,
        expires: NOW.plus(600),
        limits: Limits::default(),
    }
}

pub fn token(scope_text: &str, ops: &str) -> Token {
    keyring().issue(claims(scope_text, ops)).unwrap()
}
