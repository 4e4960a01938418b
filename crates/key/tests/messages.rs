//! The messages people read, pinned: each fault in its own words, said once, in sentences.
//! (The machine-readable denial codes are pinned by `authorize.rs` and `attacks.rs`.)

mod common;

use common::*;
use valet_key::{AttenuateError, Caveat, FormatError, PathError, Scope, Token, UrlPathError};

fn scope_error(text: &str) -> String {
    text.parse::<Scope>().unwrap_err().to_string()
}

#[test]
fn each_path_fault_has_its_own_message_said_once() {
    for (text, want) in [
        (
            "blob:photos/a\u{1}b",
            "the path contains a control character",
        ),
        (
            "blob:photos/a\u{7f}",
            "the path contains a control character",
        ),
        (
            "blob:photos/a\u{85}",
            "the path contains a control character",
        ),
        ("blob:photos/../x", "the path has a '.' or '..' segment"),
        ("blob:photos/a//b", "the path has an empty segment"),
        ("blob:photos/a\\b", "the path contains a backslash"),
        (
            "blob:photos/%2e%2e/x",
            "the path contains a percent-encoded sequence (double encoding)",
        ),
        (
            "blob:Photos/x",
            "a name uses only lowercase letters a-z, digits and '-'",
        ),
        ("table:orders/a#b", "the key contains '/', '#', '?' or '..'"),
        (
            "queue:jobs/x",
            "the scope has more parts than its kind allows",
        ),
    ] {
        assert_eq!(scope_error(text), want, "{text:?}");
    }
    for (raw, want) in [
        ("photos/a%01b", "the path contains a control character"),
        ("photos/a%00", "the path contains a control character"),
        ("photos/%2e%2e/x", "the path has a '.' or '..' segment"),
        ("photos/a%2fb", "the path contains an encoded '/'"),
        ("photos/a%5cb", "the path contains a backslash"),
        ("photos/%ff", "the path is not UTF-8 once decoded"),
    ] {
        let err: UrlPathError = valet_key::blob_url_path(raw).unwrap_err();
        assert_eq!(err.to_string(), want, "{raw}");
    }
    assert_eq!(
        UrlPathError::Path(PathError::ControlCharacter).to_string(),
        PathError::ControlCharacter.to_string()
    );
}

#[test]
fn a_malformed_token_names_the_field_at_fault() {
    assert_eq!(
        FormatError::Missing(1).to_string(),
        "the required field 1 (key id) is missing"
    );
    assert_eq!(
        FormatError::Field(42).to_string(),
        "field 42 is unknown, repeated or out of order"
    );
    assert_eq!(
        FormatError::Value {
            field: 4,
            reason: "the path has a '.' or '..' segment".into()
        }
        .to_string(),
        "field 4 (scope) is invalid: the path has a '.' or '..' segment"
    );
}

#[test]
fn refused_attenuations_read_as_sentences() {
    let root = token("blob:photos/2024/", "read");
    let refused = |caveat: Caveat| -> String {
        let err: AttenuateError = Token::attenuate(&root, caveat).unwrap_err();
        err.to_string()
    };
    assert_eq!(
        refused(Caveat {
            ops: Some("read,write".parse().unwrap()),
            ..Caveat::default()
        }),
        "the caveat would widen the key's operations"
    );
    assert_eq!(
        refused(Caveat {
            scope: Some(scope("blob:photos")),
            ..Caveat::default()
        }),
        "the caveat would widen the key's scope"
    );
    assert_eq!(
        refused(Caveat {
            expires: Some(NOW.plus(601)),
            ..Caveat::default()
        }),
        "the caveat would widen the key's expiry"
    );
}
