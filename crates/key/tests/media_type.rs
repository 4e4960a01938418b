//! Property tests of the `Content-Type` parser (`MediaType`, RFC 9110 §8.3.1): it never
//! panics; whatever it accepts is one media type with no list, control or non-ASCII character
//! in it; its canonical form is a fixed point; and any spelling of a well-formed type (letter
//! case, whitespace, quoting) comes out as the one canonical form, which a range then matches
//! exactly as it matches the type's essence.

use proptest::prelude::*;
use valet_key::{MediaRange, MediaType, MediaTypeError};

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,8}"
}

fn ows() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

/// A parameter value's characters inside quotes: any printable ASCII but `,` (and `"`/`\`,
/// which are sent escaped).
fn quoted_text() -> impl Strategy<Value = String> {
    "[ -+\\--~]{0,8}"
}

/// One parameter as sent, and its name and value as meant.
fn parameter() -> impl Strategy<Value = (String, String, String)> {
    (
        token(),
        prop_oneof![token(), quoted_text()],
        any::<bool>(),
        ows(),
        ows(),
    )
        .prop_map(|(name, value, force_quotes, before, after)| {
            let sent_value = if is_token(&value) && !force_quotes {
                value.clone()
            } else {
                quoted(&value)
            };
            (format!("{before};{after}{name}={sent_value}"), name, value)
        })
}

fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+.^_`|~-".contains(c))
}

/// The canonical form of a value: bare if a token, else quoted.
fn canonical_value(value: &str) -> String {
    if is_token(value) {
        value.to_owned()
    } else {
        quoted(value)
    }
}

/// A quoted string with `"` and `\` escaped.
fn quoted(value: &str) -> String {
    let escaped: String = value
        .chars()
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_and_accepts_only_one_clean_type(text in "\\PC{0,40}|[ -~\t]{0,40}") {
        if let Ok(media_type) = MediaType::parse(&text) {
            let canonical = media_type.as_str();
            prop_assert!(!canonical.contains(','));
            prop_assert!(canonical.is_ascii());
            prop_assert!(!canonical.bytes().any(|b| b.is_ascii_control() && b != b'\t'));
            prop_assert!(!text.contains(','), "a list was accepted: {text:?}");
            prop_assert_eq!(media_type.essence(), media_type.essence().to_ascii_lowercase());
            // Canonical is a fixed point.
            let again = MediaType::parse(canonical).unwrap();
            prop_assert_eq!(again.as_str(), canonical);
        }
    }

    #[test]
    fn any_spelling_of_a_type_has_one_canonical_form(
        main in token(),
        sub in token(),
        params in prop::collection::vec(parameter(), 0..4),
        lead in ows(),
        trail in ows(),
        upper in any::<bool>(),
    ) {
        let mut names: Vec<String> = params.iter().map(|(_, n, _)| n.to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        let essence = format!("{main}/{sub}");
        let sent_essence = if upper { essence.to_ascii_uppercase() } else { essence.clone() };
        let sent: String = std::iter::once(format!("{lead}{sent_essence}"))
            .chain(params.iter().map(|(p, _, _)| p.clone()))
            .chain(std::iter::once(trail))
            .collect();
        let parsed = MediaType::parse(&sent);
        if names.len() < params.len() {
            prop_assert_eq!(parsed, Err(MediaTypeError::DuplicateParameter));
            return Ok(());
        }
        let parsed = parsed.map_err(|e| TestCaseError::fail(format!("{sent:?}: {e}")))?;
        let mut want = essence.to_ascii_lowercase();
        for (_, name, value) in &params {
            want.push_str("; ");
            want.push_str(&name.to_ascii_lowercase());
            want.push('=');
            want.push_str(&canonical_value(value));
        }
        prop_assert_eq!(parsed.as_str(), want.as_str());
        prop_assert_eq!(parsed.essence(), essence.to_ascii_lowercase());
        // A range matches exactly by the essence, parameters and spelling aside.
        if let Ok(range) = essence.to_ascii_lowercase().parse::<MediaRange>() {
            prop_assert!(range.matches(&sent));
            prop_assert!(range.contains(&parsed));
        }
        // With a list appended, in any form, it is refused.
        for list in [",text/html", ";,text/html", ", text/html"] {
            let listed = format!("{sent}{list}");
            prop_assert_eq!(MediaType::parse(&listed), Err(MediaTypeError::List));
        }
    }
}
