//! The one reading of a request path: what routes are matched on, what delegate captures are
//! decoded from, and what a proxy route forwards upstream.
//!
//! If the gate matched a path in one spelling and the upstream read another, `/api/%61dmin`
//! could pass the `user` route's check and reach the admin area. So the raw path is first
//! brought to one normal form (RFC 3986 §6.2.2: percent-encoded unreserved characters decoded,
//! every other percent-encoding in upper-case hex, every byte that may not stand raw encoded),
//! and that form, and only that form, is matched and forwarded. What has no safe normal form is
//! refused (`bad_path`) rather than guessed at: `.` and `..` segments (resolving them would
//! let a path climb out of the prefix a route checked), empty segments (`//`, which servers
//! collapse), an encoded `/` (one segment that a server would read as two), a backslash raw or
//! encoded (a separator to Windows servers), control characters, text that is not UTF-8
//! (overlong `%c0%ae`), a malformed `%` escape (IIS's `%u002e` among them), anything that turns
//! into one of those when decoded a second time (`%252e%252e`), and a raw `;` (path parameters,
//! which Tomcat, Jetty and Spring strip: `admin;x` is `admin` to them; a `;` that is data is
//! sent as `%3B`).
//!
//! A trailing `/` is kept: it names a folder on delegate routes.
//!
//! Case, a trailing `/`, a trailing `.`, an encoded `;` and the like are not normalised away
//! (they may be meaningful); `routes` instead refuses a path that reads as an earlier route's
//! when they are ignored ([`loose_fold`]).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Why a request path has no safe normal form. Each is a `bad_path`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathRefusal {
    /// Not an absolute path (`*`, or no leading `/`).
    #[error("the path does not start with '/'")]
    NotAbsolute,
    /// `//`: servers collapse it, so it would be read as another path.
    #[error("the path has an empty segment ('//')")]
    EmptySegment,
    /// `.` or `..`, raw or encoded, also with path parameters (`..;x`).
    #[error("the path has a '.' or '..' segment, in some encoding")]
    DotSegment,
    /// `%2F`: one segment that a server decoding first would read as two.
    #[error("the path has an encoded '/'")]
    EncodedSlash,
    /// `\` raw or encoded: a separator to Windows servers.
    #[error("the path has a backslash")]
    Backslash,
    /// NUL or another control character, encoded.
    #[error("the path has a control character")]
    Control,
    /// A `%` not followed by two hex digits (IIS's `%u002e` among them).
    #[error("the path has a '%' that is not followed by two hex digits")]
    BadEscape,
    /// The decoded bytes are not UTF-8 (`%ff`, overlong `%c0%ae`).
    #[error("the path is not UTF-8 once decoded")]
    NotUtf8,
    /// Decoded twice, the segment hides one of the above (`%252e%252e`, `%255c`, `%2500`).
    #[error("the path hides a '.' or '..' segment, a separator or a control character under double encoding")]
    DoubleEncoded,
    /// A raw `;`: path parameters, which some servers strip before routing.
    #[error("the path has a ';' (path parameters are not passed; send a ';' that is data as %3B)")]
    Semicolon,
}

/// The normal form of the raw request path `raw`; borrowed when `raw` is already in it (the
/// common case costs no allocation).
pub(crate) fn normalize(raw: &str) -> Result<Cow<'_, str>, PathRefusal> {
    let body = raw.strip_prefix('/').ok_or(PathRefusal::NotAbsolute)?;
    let mut out: Option<String> = None;
    let count = body.split('/').count();
    let mut at = 1;
    for (i, segment) in body.split('/').enumerate() {
        // A trailing empty segment is a trailing `/`: kept, it names a folder.
        if segment.is_empty() && i + 1 != count {
            return Err(PathRefusal::EmptySegment);
        }
        let normal = normalize_segment(segment)?;
        check_segment(&normal)?;
        match (&mut out, normal) {
            (None, Cow::Borrowed(_)) => {}
            (None, Cow::Owned(changed)) => {
                let mut text = String::with_capacity(raw.len() + 8);
                text.push_str(&raw[..at]);
                text.push_str(&changed);
                out = Some(text);
            }
            (Some(text), normal) => text.push_str(&normal),
        }
        at += segment.len() + 1;
        if i + 1 != count {
            if let Some(text) = &mut out {
                text.push('/');
            }
        }
    }
    Ok(out.map_or(Cow::Borrowed(raw), Cow::Owned))
}

/// Whether `raw` is its own normal form.
#[cfg(test)]
pub(crate) fn is_normal(raw: &str) -> bool {
    matches!(normalize(raw), Ok(Cow::Borrowed(_)))
}

/// RFC 3986 unreserved: never needs encoding, and means the same encoded or not.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// What may stand raw in a segment: unreserved, the sub-delimiters except `;`, `:` and `@`.
fn raw_allowed(b: u8) -> bool {
    unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

fn normalize_segment(segment: &str) -> Result<Cow<'_, str>, PathRefusal> {
    let bytes = segment.as_bytes();
    if bytes.iter().all(|&b| raw_allowed(b)) {
        return Ok(Cow::Borrowed(segment));
    }
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let value = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .filter(|hex| hex.bytes().all(|h| h.is_ascii_hexdigit()))
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or(PathRefusal::BadEscape)?;
                push_byte(&mut out, value);
                i += 3;
                continue;
            }
            b';' => return Err(PathRefusal::Semicolon),
            b'\\' => return Err(PathRefusal::Backslash),
            b if b < 0x20 || b == 0x7f => return Err(PathRefusal::Control),
            b if raw_allowed(b) => out.push(b as char),
            b => push_encoded(&mut out, b),
        }
        i += 1;
    }
    // Nothing changed (`%20` stays `%20`): keep the borrow.
    if out == segment {
        return Ok(Cow::Borrowed(segment));
    }
    Ok(Cow::Owned(out))
}

/// A decoded byte in normal form: raw if unreserved, else `%XX` in upper case.
fn push_byte(out: &mut String, b: u8) {
    if unreserved(b) {
        out.push(b as char);
    } else {
        push_encoded(out, b);
    }
}

fn push_encoded(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// Refuses a normal-form segment that names, or could be read by a server decoding it once or
/// twice as naming, another path.
fn check_segment(normal: &str) -> Result<(), PathRefusal> {
    if normal == "." || normal == ".." {
        return Err(PathRefusal::DotSegment);
    }
    if !normal.contains('%') {
        return Ok(());
    }
    let once: Vec<u8> = percent_decode_str(normal).collect();
    let once = String::from_utf8(once).map_err(|_| PathRefusal::NotUtf8)?;
    suspicious(once.as_bytes())?;
    if once.contains('%') {
        let twice: Vec<u8> = percent_decode_str(&once).collect();
        let hidden = std::str::from_utf8(&twice).is_err()
            || suspicious(&twice).is_err()
            || once.to_ascii_lowercase().contains("%u");
        if hidden {
            return Err(PathRefusal::DoubleEncoded);
        }
    }
    Ok(())
}

/// Decoded segment bytes that another server would read as more than one plain segment.
fn suspicious(decoded: &[u8]) -> Result<(), PathRefusal> {
    for &b in decoded {
        match b {
            b'/' => return Err(PathRefusal::EncodedSlash),
            b'\\' => return Err(PathRefusal::Backslash),
            b if b < 0x20 || b == 0x7f => return Err(PathRefusal::Control),
            _ => {}
        }
    }
    // `..;jsessionid=x` is `..` to a server that strips path parameters after decoding.
    let name = decoded.split(|&b| b == b';').next().unwrap_or_default();
    if name == b"." || name == b".." {
        return Err(PathRefusal::DotSegment);
    }
    Ok(())
}

/// A normal-form segment as the most lenient server might read it, for comparing with a route's
/// literal: decoded twice (as a server behind another that decodes would), cut at a path
/// parameter (`admin%3Bx`), without trailing dots and spaces
/// (Windows and IIS drop them), fullwidth forms as ASCII, combining marks dropped, and case
/// folded both ways (Java's `equalsIgnoreCase` finds `admın` and `admin` equal through `I`).
/// Only ever used to refuse a path, so reading too much into it costs a refusal, never a
/// bypass.
pub(crate) fn loose_fold(segment: &str) -> String {
    let once = percent_decode_str(segment).decode_utf8_lossy();
    let twice = percent_decode_str(&once).decode_utf8_lossy();
    let name = twice.split(';').next().unwrap_or_default();
    name.trim_end_matches(['.', ' '])
        .chars()
        .map(|c| match c {
            // Fullwidth ASCII (NFKC reads `ａｄｍｉｎ` as `admin`).
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            c => c,
        })
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether the normal-form `segment` reads loosely as the literal whose [`loose_fold`] is
/// `folded`. A plain ASCII segment (the usual miss while routes are tried) costs no
/// allocation.
pub(crate) fn loosely_equal(folded: &str, segment: &str) -> bool {
    if segment.is_ascii() && !segment.contains('%') {
        return segment
            .trim_end_matches(['.', ' '])
            .eq_ignore_ascii_case(folded);
    }
    loose_fold(segment) == folded
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unreserved_characters_are_decoded_and_other_escapes_upper_cased() {
        for (raw, normal) in [
            ("/api/%61dmin/users", "/api/admin/users"),
            ("/api/adm%69n/users", "/api/admin/users"),
            ("/api/%41%44%4d%49%4E", "/api/ADMIN"),
            ("/a/%7e%2D%2e%5F", "/a/~-._"),
            ("/a/%c3%a9", "/a/%C3%A9"),
            ("/a/%3b", "/a/%3B"),
            ("/a/b%20c", "/a/b%20c"),
            ("/a/%2520", "/a/%2520"),
            ("/a/é", "/a/%C3%A9"),
            ("/a/x|y", "/a/x%7Cy"),
            ("/a/b/", "/a/b/"),
            ("/", "/"),
            ("/a.b/...", "/a.b/..."),
        ] {
            assert_eq!(normalize(raw).unwrap(), normal, "{raw}");
        }
        assert!(is_normal("/api/admin/users"));
        assert!(is_normal("/a/b%20c/"));
        assert!(!is_normal("/a/%7e"));
    }

    #[test]
    fn paths_without_a_safe_normal_form_are_refused() {
        use PathRefusal::*;
        for (raw, why) in [
            ("api", NotAbsolute),
            ("*", NotAbsolute),
            ("/api//admin", EmptySegment),
            ("//admin", EmptySegment),
            ("/api/admin//", EmptySegment),
            ("/api/../admin", DotSegment),
            ("/api/./x", DotSegment),
            ("/api/x/..", DotSegment),
            ("/..", DotSegment),
            ("/api/%2e%2e/admin", DotSegment),
            ("/api/%2E%2e/admin", DotSegment),
            ("/api/.%2e/admin", DotSegment),
            ("/api/%2e/x", DotSegment),
            ("/api/%2e%2e%3b/admin", DotSegment),
            ("/api/a%2fb", EncodedSlash),
            ("/api/a%2Fb", EncodedSlash),
            ("/api/a%5cb", Backslash),
            ("/api/a\\b", Backslash),
            ("/api/a%00b", Control),
            ("/api/a%0ab", Control),
            ("/api/a%7f", Control),
            ("/api/a%", BadEscape),
            ("/api/a%4", BadEscape),
            ("/api/a%zz", BadEscape),
            ("/api/%u002e%u002e", BadEscape),
            ("/api/%ff", NotUtf8),
            ("/api/%c0%ae%c0%ae", NotUtf8),
            ("/api/%252e%252e/admin", DoubleEncoded),
            ("/api/%25%32%65%25%32%65/admin", DoubleEncoded),
            ("/api/a%252fb", DoubleEncoded),
            ("/api/a%255cb", DoubleEncoded),
            ("/api/..%2500", DoubleEncoded),
            ("/api/%25ff", DoubleEncoded),
            ("/api/%25u002e", DoubleEncoded),
            ("/api/admin;x/users", Semicolon),
            ("/api/..;/admin", Semicolon),
            ("/api/admin;", Semicolon),
        ] {
            assert_eq!(normalize(raw), Err(why.clone()), "{raw}");
        }
        for good in [
            "/api/x",
            "/api/a.b",
            "/api/...",
            "/api/%20x",
            "/api/a%2520b",
        ] {
            assert!(normalize(good).is_ok(), "{good}");
        }
    }

    fn fold(s: &str) -> String {
        loose_fold(s)
    }

    #[test]
    fn the_loose_reading_finds_what_lenient_servers_would_read_as_the_same_name() {
        for spelling in [
            "admin",
            "ADMIN",
            "Admin",
            "admin.",
            "admin%20",
            "admin%3Bx",
            "admin%252e",
            "admin%253B",
            "adm%C4%B1n",    // dotless ı: Java's equalsIgnoreCase
            "%EF%BD%81dmin", // fullwidth ａ
            "admi%CC%81n",   // a combining acute
            "a%E2%84%AAb",   // not admin: Kelvin sign folds to k
        ] {
            let expected = if spelling.starts_with("a%E2") {
                "akb"
            } else {
                "admin"
            };
            assert_eq!(fold(spelling), expected, "{spelling}");
        }
        assert_ne!(fold("admins"), "admin");
    }

    /// A spelling of `path`: each byte of it, where that keeps its meaning, randomly raw or
    /// percent-encoded in either case of hex.
    fn spell(path: &str, choices: &[u8]) -> String {
        let mut out = String::new();
        for (i, c) in path.chars().enumerate() {
            let choice = choices.get(i).copied().unwrap_or(0) % 4;
            if c == '/' || choice == 0 || !c.is_ascii() || !unreserved(c as u8) {
                out.push(c);
                continue;
            }
            let b = c as u8;
            match choice {
                1 => out.push_str(&format!("%{b:02x}")),
                2 => out.push_str(&format!("%{b:02X}")),
                _ => out.push_str(&format!("%{:x}{:X}", b >> 4, b & 15)),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn normalising_is_idempotent(raw in "/[a-zA-Z0-9%;./~_:@!$&'()*+,=\\\\|-]{0,40}") {
            if let Ok(normal) = normalize(&raw) {
                let again = normalize(&normal).expect("the normal form normalises");
                prop_assert_eq!(&again, &normal);
                prop_assert!(matches!(again, Cow::Borrowed(_)));
            }
        }

        #[test]
        fn spellings_of_one_path_have_one_normal_form(
            path in "(/[a-z0-9._~-]{1,8}){1,5}/?",
            choices in proptest::collection::vec(any::<u8>(), 0..50),
        ) {
            let spelled = spell(&path, &choices);
            prop_assert_eq!(normalize(&spelled), normalize(&path));
        }
    }
}
