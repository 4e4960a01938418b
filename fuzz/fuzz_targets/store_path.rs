//! The store's request-path handling: the text of a URL path after `/blob/`, decoded and
//! validated as the store's router does it (`valet_key::blob_url_path`, which the store
//! calls for every `/blob/…` request, and whose decoding the gate's delegate routes share).
//!
//! - It never panics.
//! - It accepts exactly what an independent reference accepts, with the same result: the
//!   first segment percent-decoded once is a container `Name`; every other segment is
//!   percent-decoded once (valid UTF-8, no encoded `/`) and the segments joined are what
//!   `BlobPath::parse` accepts.
//! - Whatever it accepts names no other resource: no empty, `.` or `..` segment, no
//!   backslash, NUL or other control character, no `%XX` triplet, at most `MAX_PATH_LEN`
//!   bytes; a lowercase container name.
//! - It is a fixed point of decoding: the accepted path sent again as it is (decoded once
//!   more, as a careless layer would) and sent again with every segment percent-encoded both
//!   give back exactly the same target. So no layer that decodes once more can see another
//!   path than the one the key was checked against.
//! - The scope built from it (`blob:C/PATH`) prints and parses back to itself and lies inside
//!   its container.
#![no_main]

use libfuzzer_sys::fuzz_target;
use valet_key::{blob_url_path as blob_target, BlobPath, BlobTarget, Name, Scope, MAX_PATH_LEN};

/// One percent-decoding pass, written here rather than borrowed from the key's library: a
/// `%` followed by two hex digits is that byte; anything else is itself.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// A segment decoded once: UTF-8, and no `/` that was hidden in it.
fn decode_segment(segment: &str) -> Option<String> {
    let text = String::from_utf8(percent_decode(segment)).ok()?;
    (!text.contains('/')).then_some(text)
}

/// What the store should make of `raw`, derived from the rules, not from its code.
fn reference(raw: &str) -> Option<(Name, Option<BlobPath>)> {
    let (container, rest) = match raw.split_once('/') {
        Some((c, r)) => (c, Some(r)),
        None => (raw, None),
    };
    let container = Name::parse(&decode_segment(container)?).ok()?;
    let path = match rest {
        None => None,
        Some(rest) => {
            let segments = rest
                .split('/')
                .map(decode_segment)
                .collect::<Option<Vec<String>>>()?;
            Some(BlobPath::parse(&segments.join("/")).ok()?)
        }
    };
    Some((container, path))
}

fn has_percent_triplet(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

fn assert_names_nothing_else(container: &Name, path: &BlobPath) {
    let c = container.as_str();
    assert!((3..=63).contains(&c.len()), "container {c:?}");
    assert!(
        c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "container {c:?}"
    );
    let p = path.as_str();
    assert!(!p.is_empty() && p.len() <= MAX_PATH_LEN, "length of {p:?}");
    for segment in p.split('/') {
        assert!(
            !matches!(segment, "" | "." | ".."),
            "segment {segment:?} accepted in {p:?}"
        );
    }
    assert!(!p.contains('\\'), "backslash accepted: {p:?}");
    assert!(!p.contains('\0'), "NUL accepted: {p:?}");
    assert!(!p.contains(char::is_control), "control accepted: {p:?}");
    assert!(!has_percent_triplet(p), "percent-encoding accepted: {p:?}");
}

/// Every byte but the unreserved ones percent-encoded, segment by segment.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() * 3);
    for &b in segment.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // The router sees the path as text (hyper's URI), so only UTF-8 reaches it.
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let got = blob_target(raw).ok();
    let want = reference(raw);
    assert_eq!(got, want, "the store and the reference disagree on {raw:?}");
    let Some((container, path)) = got else {
        return;
    };
    let Some(path) = path else {
        // The container itself (a listing): its scope is the container.
        let scope: Scope = format!("blob:{container}")
            .parse()
            .expect("a container scope");
        assert!(matches!(
            scope,
            Scope::Blob {
                target: BlobTarget::Container,
                ..
            }
        ));
        return;
    };
    assert_names_nothing_else(&container, &path);

    // Decoding once more changes nothing.
    let again = format!("{container}/{path}");
    assert_eq!(
        blob_target(&again).ok(),
        Some((container.clone(), Some(path.clone()))),
        "{raw:?} accepted as {again:?}, which decodes to something else"
    );
    // Fully encoded, it comes back the same.
    let encoded: Vec<String> = path.as_str().split('/').map(encode_segment).collect();
    let encoded = format!("{container}/{}", encoded.join("/"));
    assert_eq!(
        blob_target(&encoded).ok(),
        Some((container.clone(), Some(path.clone()))),
        "{raw:?} accepted as {path:?}, whose encoding {encoded:?} decodes to something else"
    );

    let scope = Scope::blob(container.clone(), path.clone());
    let text = scope.to_string();
    let back: Scope = text
        .parse()
        .unwrap_or_else(|e| panic!("{raw:?}: scope {text:?} does not parse: {e}"));
    assert_eq!(back, scope, "{raw:?}: scope {text:?}");
    let whole: Scope = format!("blob:{container}")
        .parse()
        .expect("a container scope");
    assert!(whole.covers(&scope) && scope.covers(&scope), "{text}");
});
