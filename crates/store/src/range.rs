//! Single byte ranges (RFC 9110 §14). A multi-range or unparsable `Range` is ignored and the
//! whole blob is sent, as the RFC allows; only a well-formed range entirely past the end is 416.

/// What to send of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// All of it (200).
    Whole,
    /// `start..=end` (206).
    Part {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// Nothing satisfiable (416).
    Unsatisfiable,
}

/// Resolves a `Range` header value against a blob of `size` bytes.
pub fn resolve(header: Option<&str>, size: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let number = |t: &str| -> Option<u64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            None => ByteRange::Whole,
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if size == 0 => ByteRange::Unsatisfiable,
            Some(n) => ByteRange::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        (start, "") => match number(start) {
            None => ByteRange::Whole,
            Some(s) if s >= size => ByteRange::Unsatisfiable,
            Some(s) => ByteRange::Part {
                start: s,
                end: size - 1,
            },
        },
        (start, end) => match (number(start), number(end)) {
            (Some(s), Some(e)) if s <= e => {
                if s >= size {
                    ByteRange::Unsatisfiable
                } else {
                    ByteRange::Part {
                        start: s,
                        end: e.min(size - 1),
                    }
                }
            }
            _ => ByteRange::Whole,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(resolve(None, 10), ByteRange::Whole);
        assert_eq!(
            resolve(Some("bytes=0-4"), 10),
            ByteRange::Part { start: 0, end: 4 }
        );
        assert_eq!(
            resolve(Some("bytes=5-"), 10),
            ByteRange::Part { start: 5, end: 9 }
        );
        assert_eq!(
            resolve(Some("bytes=-3"), 10),
            ByteRange::Part { start: 7, end: 9 }
        );
        assert_eq!(
            resolve(Some("bytes=-30"), 10),
            ByteRange::Part { start: 0, end: 9 }
        );
        assert_eq!(
            resolve(Some("bytes=8-100"), 10),
            ByteRange::Part { start: 8, end: 9 }
        );
    }

    #[test]
    fn unsatisfiable_and_ignored_ranges() {
        assert_eq!(resolve(Some("bytes=10-"), 10), ByteRange::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=10-20"), 10), ByteRange::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=-0"), 10), ByteRange::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=0-"), 0), ByteRange::Unsatisfiable);
        for ignored in [
            "bytes=5-2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(resolve(Some(ignored), 10), ByteRange::Whole, "{ignored}");
        }
    }
}
