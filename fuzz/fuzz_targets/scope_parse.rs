//! Arbitrary text as a scope, a blob path, a blob prefix and a table key.
//!
//! - Parsing never panics.
//! - A parsed scope prints to text that parses to the same scope, and covers itself.
//! - Whatever is accepted as a path or key obeys the rules that keep it from naming another
//!   resource: no empty, `.` or `..` segment, no backslash, no control character, no
//!   leftover percent-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use valet_key::{
    BlobPath, BlobPrefix, BlobTarget, Scope, TableKey, MAX_PATH_LEN, MAX_TABLE_KEY_LEN,
};

fn has_percent_triplet(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

fn assert_safe_text(text: &str) {
    assert!(!text.contains('\\'), "backslash accepted: {text:?}");
    assert!(
        !text.contains(char::is_control),
        "control character accepted: {text:?}"
    );
    assert!(
        !has_percent_triplet(text),
        "percent-encoding accepted: {text:?}"
    );
}

/// What every accepted blob path (or a prefix without its final `/`) must be.
fn assert_safe_path(path: &str) {
    assert!(!path.is_empty() && path.len() <= MAX_PATH_LEN);
    for segment in path.split('/') {
        assert!(
            !matches!(segment, "" | "." | ".."),
            "bad segment {segment:?} accepted in {path:?}"
        );
    }
    assert_safe_text(path);
}

fn assert_safe_key(key: &str) {
    assert!(!key.is_empty() && key.len() <= MAX_TABLE_KEY_LEN);
    assert!(key != "." && !key.contains(['/', '#', '?']) && !key.contains(".."));
    assert_safe_text(key);
}

fuzz_target!(|text: &str| {
    if let Ok(scope) = text.parse::<Scope>() {
        let shown = scope.to_string();
        let again: Scope = shown
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} printed as {shown:?}, which fails: {e}"));
        assert_eq!(again, scope, "{text:?} printed as {shown:?}");
        assert_eq!(again.to_string(), shown);
        assert!(scope.covers(&scope), "{shown} does not cover itself");
        match &scope {
            Scope::Blob { target, .. } => match target {
                BlobTarget::Container => {}
                BlobTarget::Prefix(p) => {
                    assert_safe_path(p.as_str().strip_suffix('/').expect("a prefix ends in /"))
                }
                BlobTarget::Blob(b) => assert_safe_path(b.as_str()),
            },
            Scope::Table {
                partition, rows, ..
            } => {
                assert!(partition.is_some() || rows.is_none());
                partition.iter().for_each(|k| assert_safe_key(k.as_str()));
                if let Some(rows) = rows {
                    assert!(rows.from.is_some() || rows.to.is_some());
                    if let (Some(from), Some(to)) = (&rows.from, &rows.to) {
                        assert!(from <= to);
                    }
                    rows.from.iter().for_each(|k| assert_safe_key(k.as_str()));
                    rows.to.iter().for_each(|k| assert_safe_key(k.as_str()));
                }
            }
            Scope::Queue { .. } => {}
        }
    }
    if let Ok(path) = BlobPath::parse(text) {
        assert_eq!(path.as_str(), text);
        assert_safe_path(text);
    }
    if let Ok(prefix) = BlobPrefix::parse(text) {
        assert_eq!(prefix.as_str(), text);
        assert_safe_path(text.strip_suffix('/').expect("a prefix ends in /"));
    }
    if let Ok(key) = TableKey::parse(text) {
        assert_eq!(key.as_str(), text);
        assert_safe_key(text);
    }
});
