//! Names of containers, tables, queues and event targets.
//!
//! One charset for all of them, chosen so that a name is safe as a directory name, a URL path
//! segment and a SQL identifier without any escaping, and so that no two spellings name the
//! same thing: mixed case is refused rather than folded.

use std::fmt;

use compact_str::CompactString;

use crate::error::NameError;

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// The shortest name accepted, in bytes.
pub const MIN_NAME_LEN: usize = 3;

/// A validated container, table, queue or event-target name: 3 to 63 characters of lowercase
/// ASCII letters, digits and `-`, starting and ending with a letter or digit, with no `--`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Name(CompactString);

impl Name {
    /// Validates `text` as a name.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        validate_name(text)?;
        Ok(Name(CompactString::new(text)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate_name(text: &str) -> Result<(), NameError> {
    if text.len() < MIN_NAME_LEN || text.len() > MAX_NAME_LEN {
        return Err(NameError::Length);
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if !text.bytes().all(allowed) {
        return Err(NameError::Charset);
    }
    // A byte-pair scan: `str::contains("--")` sets up a substring searcher, which costs more
    // than the whole scan of a name this short (every verification parses one).
    let bytes = text.as_bytes();
    if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' || bytes.windows(2).any(|w| w == b"--") {
        return Err(NameError::Hyphens);
    }
    Ok(())
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lowercase_digits_and_inner_hyphens() {
        for ok in ["abc", "photos", "user-data-2024", "a1b", &"x".repeat(63)] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        let cases = [
            ("ab", NameError::Length),
            (&"x".repeat(64) as &str, NameError::Length),
            ("Photos", NameError::Charset),
            ("pho_tos", NameError::Charset),
            ("pho.tos", NameError::Charset),
            ("pho/tos", NameError::Charset),
            ("phötos", NameError::Charset),
            ("-photos", NameError::Hyphens),
            ("photos-", NameError::Hyphens),
            ("pho--tos", NameError::Hyphens),
        ];
        for (text, want) in cases {
            assert_eq!(Name::parse(text), Err(want), "{text}");
        }
    }
}
