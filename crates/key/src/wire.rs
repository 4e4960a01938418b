//! The binary form of a token's segments: a kind byte, then type-length-value fields.
//!
//! Every field is `type (1 byte) · length (LEB128) · value`, in strictly ascending type order,
//! each type at most once. Integers inside values are LEB128 too. The reader refuses anything
//! it does not understand (an unknown type, a repeat, an overlong varint, trailing bytes):
//! a restriction this version cannot read must fail closed, never be skipped. See
//! `docs/KEY-FORMAT.md` for the byte-by-byte description.

use crate::error::FormatError;

/// First byte of the claims segment.
pub(crate) const CLAIMS_KIND: u8 = 0x01;
/// First byte of a caveat segment.
pub(crate) const CAVEAT_KIND: u8 = 0x02;

/// Field type numbers (`crate::field`), here too, where the segments are read and written.
pub(crate) use crate::field;

/// Builds one segment. Fields must be written in ascending type order (debug-asserted: the
/// encoders in this crate are the only callers).
pub(crate) struct SegmentWriter {
    buf: Vec<u8>,
    last: u8,
}

impl SegmentWriter {
    pub fn new(kind: u8) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.push(kind);
        SegmentWriter { buf, last: 0 }
    }

    pub fn bytes(&mut self, field: u8, value: &[u8]) {
        debug_assert!(field > self.last, "fields out of order");
        self.last = field;
        self.buf.push(field);
        push_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    pub fn uint(&mut self, field: u8, value: u64) {
        let mut tmp = [0u8; 10];
        let len = write_varint(&mut tmp, value);
        self.bytes(field, &tmp[..len]);
    }

    /// A field whose value is `value`'s `Display` text, written in place: no temporary string.
    pub fn text(&mut self, field: u8, value: &impl std::fmt::Display) {
        use std::fmt::Write as _;
        debug_assert!(field > self.last, "fields out of order");
        self.last = field;
        self.buf.push(field);
        // Room for a two-byte length (texts here are under 16 KiB), shrunk to one if it fits.
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        let mut out = Utf8Sink(&mut self.buf);
        write!(out, "{value}").expect("writing to a Vec cannot fail");
        let len = self.buf.len() - at - 2;
        assert!(len < 1 << 14, "text field too long for its length prefix");
        if len < 0x80 {
            self.buf[at] = len as u8;
            self.buf.remove(at + 1);
        } else {
            self.buf[at] = (len as u8) | 0x80;
            self.buf[at + 1] = (len >> 7) as u8;
        }
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads one segment's fields in order.
pub(crate) struct SegmentReader<'a> {
    rest: &'a [u8],
    last: u8,
}

impl<'a> SegmentReader<'a> {
    pub fn new(segment: &'a [u8], kind: u8) -> Result<Self, FormatError> {
        match segment.split_first() {
            Some((&k, rest)) if k == kind => Ok(SegmentReader { rest, last: 0 }),
            _ => Err(FormatError::SegmentKind),
        }
    }

    /// The next field, or `None` at the end of the segment.
    pub fn next_field(&mut self) -> Result<Option<(u8, &'a [u8])>, FormatError> {
        let Some((&field, rest)) = self.rest.split_first() else {
            return Ok(None);
        };
        if field <= self.last {
            return Err(FormatError::Field(field));
        }
        self.last = field;
        let (len, rest) = read_varint(rest)?;
        let len = usize::try_from(len).map_err(|_| FormatError::Truncated)?;
        if len > rest.len() {
            return Err(FormatError::Truncated);
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(Some((field, value)))
    }
}

/// Where `field`'s value is in `segment`, found without reading the other values.
pub(crate) fn field_range(segment: &[u8], kind: u8, field: u8) -> Option<std::ops::Range<usize>> {
    let mut reader = SegmentReader::new(segment, kind).ok()?;
    while let Ok(Some((f, value))) = reader.next_field() {
        if f == field {
            let start = value.as_ptr() as usize - segment.as_ptr() as usize;
            return Some(start..start + value.len());
        }
    }
    None
}

/// Reads a value that must be exactly one varint.
pub(crate) fn uint_value(value: &[u8]) -> Result<u64, FormatError> {
    match read_varint(value)? {
        (n, []) => Ok(n),
        _ => Err(FormatError::Truncated),
    }
}

struct Utf8Sink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8Sink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn push_varint(buf: &mut Vec<u8>, value: u64) {
    let mut tmp = [0u8; 10];
    let len = write_varint(&mut tmp, value);
    buf.extend_from_slice(&tmp[..len]);
}

/// Writes `value` as LEB128 into `out`, returning how many bytes it took.
fn write_varint(out: &mut [u8; 10], mut value: u64) -> usize {
    let mut i = 0;
    while value >= 0x80 {
        out[i] = (value as u8) | 0x80;
        value >>= 7;
        i += 1;
    }
    out[i] = value as u8;
    i + 1
}

/// LEB128, canonical only: no trailing zero groups, no more than 64 bits.
#[inline]
fn read_varint(bytes: &[u8]) -> Result<(u64, &[u8]), FormatError> {
    // Field lengths are almost all under 128: one byte, read inline; longer forms out of line.
    if let [first @ 0..=0x7f, rest @ ..] = bytes {
        return Ok((u64::from(*first), rest));
    }
    read_long_varint(bytes)
}

/// [`read_varint`] for values of two bytes or more (or none). Every verification reads two
/// (the times), so the loop does only the accumulating; the canonical-form checks are made
/// once, on the last byte.
fn read_long_varint(bytes: &[u8]) -> Result<(u64, &[u8]), FormatError> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            // No trailing zero group (`i > 0` always holds here), and a tenth byte may only
            // carry bit 63.
            if b == 0 || (i == 9 && b > 1) {
                return Err(FormatError::Truncated);
            }
            return Ok((value, &bytes[i + 1..]));
        }
    }
    Err(FormatError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_overlong_forms() {
        for n in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            push_varint(&mut buf, n);
            assert_eq!(read_varint(&buf).unwrap(), (n, &[][..]));
        }
        assert!(read_varint(&[0x80, 0x00]).is_err());
        assert!(read_varint(&[0x80]).is_err());
        assert!(read_varint(&[0xff; 10]).is_err());
        assert!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).is_err()
        );
    }

    #[test]
    fn text_fields_get_the_shortest_length_prefix() {
        for len in [0usize, 1, 127, 128, 300, 5000] {
            let text = "x".repeat(len);
            let mut w = SegmentWriter::new(CLAIMS_KIND);
            w.text(field::SCOPE, &text);
            let seg = w.finish();
            let mut r = SegmentReader::new(&seg, CLAIMS_KIND).unwrap();
            assert_eq!(
                r.next_field().unwrap(),
                Some((field::SCOPE, text.as_bytes()))
            );
            assert_eq!(r.next_field().unwrap(), None);
            let mut expected = SegmentWriter::new(CLAIMS_KIND);
            expected.bytes(field::SCOPE, text.as_bytes());
            assert_eq!(seg, expected.finish(), "same bytes as the plain encoder");
        }
    }

    #[test]
    fn reader_refuses_disorder_repeats_and_truncation() {
        let mut w = SegmentWriter::new(CLAIMS_KIND);
        w.uint(field::OPS, 1);
        w.uint(field::EXPIRES, 2);
        let seg = w.finish();
        let mut r = SegmentReader::new(&seg, CLAIMS_KIND).unwrap();
        assert_eq!(r.next_field().unwrap(), Some((field::OPS, &[1u8][..])));
        assert_eq!(r.next_field().unwrap(), Some((field::EXPIRES, &[2u8][..])));
        assert_eq!(r.next_field().unwrap(), None);

        assert!(SegmentReader::new(&seg, CAVEAT_KIND).is_err());
        let repeated = [CLAIMS_KIND, 5, 1, 1, 5, 1, 1];
        let mut r = SegmentReader::new(&repeated, CLAIMS_KIND).unwrap();
        r.next_field().unwrap();
        assert_eq!(r.next_field(), Err(FormatError::Field(5)));
        let truncated = [CLAIMS_KIND, 5, 3, 1];
        let mut r = SegmentReader::new(&truncated, CLAIMS_KIND).unwrap();
        assert_eq!(r.next_field(), Err(FormatError::Truncated));
    }
}
