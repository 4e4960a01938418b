//! Scopes: what a key grants access to, and what a request asks for.
//!
//! One grammar serves both: a key's scope `blob:photos/2024/` and a request's resource
//! `blob:photos/2024/cat.jpg` are both `Scope`s, and authorization asks whether the first
//! [`covers`](Scope::covers) the second. Coverage is the only relation a verifier needs, and it
//! is defined so that a prefix never matches across a segment boundary.
//!
//! ```text
//! blob:CONTAINER                 the whole container (also read from `blob:CONTAINER/`)
//! blob:CONTAINER/PREFIX/         every blob under PREFIX (whole segments)
//! blob:CONTAINER/PATH            one blob
//! table:NAME                     the whole table
//! table:NAME/PARTITION           one partition
//! table:NAME/PARTITION/ROW       one row
//! table:NAME/PARTITION/FROM..TO  rows FROM to TO inclusive (either end may be left open)
//! queue:NAME                     one queue
//! ```

use std::fmt;
use std::str::FromStr;

use crate::error::ScopeError;
use crate::name::Name;
use crate::op::{Op, Ops};
use crate::path::{BlobPath, BlobPrefix, TableKey};

/// A resource, or a set of resources, named in the text grammar of the module docs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Blobs in a container.
    Blob {
        /// The container.
        container: Name,
        /// Which blobs of it.
        target: BlobTarget,
    },
    /// Rows of a table.
    Table {
        /// The table.
        table: Name,
        /// One partition, or all of them.
        partition: Option<TableKey>,
        /// Rows of that partition, or all of them. Only present with a partition.
        rows: Option<RowRange>,
    },
    /// A queue.
    Queue {
        /// The queue.
        queue: Name,
    },
}

/// The kind of resource a scope names, as far as operations go: each kind has the operations
/// that mean something on it (`docs/KEY-FORMAT.md`, "Operations by scope").
///
/// A key is for one family (blobs, tables or queues) and stays in it: a caveat may narrow a
/// set of blobs to one blob, never to a queue.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ScopeKind {
    /// A whole container, or every blob under a prefix.
    Blobs,
    /// One blob.
    Blob,
    /// A whole table, a partition, or a range of rows.
    Rows,
    /// One row.
    Row,
    /// A queue.
    Queue,
}

impl ScopeKind {
    /// The operations that mean something on this kind of resource.
    ///
    /// Blobs are read, written (`create` only if absent) and deleted, and listed where there
    /// is more than one. Rows are also updated in place (a merge). A queue's messages are
    /// enqueued, peeked at, dequeued, updated (a longer visibility, new content) and deleted
    /// (acknowledged by their receipt); a queue has no `read`, `write`, `create` or `list`:
    /// peeking is its read.
    pub const fn ops(self) -> Ops {
        let blob = Ops::NONE
            .with(Op::Read)
            .with(Op::Write)
            .with(Op::Create)
            .with(Op::Delete);
        match self {
            ScopeKind::Blob => blob,
            ScopeKind::Blobs => blob.with(Op::List),
            ScopeKind::Row => blob.with(Op::Update),
            ScopeKind::Rows => blob.with(Op::Update).with(Op::List),
            ScopeKind::Queue => Ops::NONE
                .with(Op::Enqueue)
                .with(Op::Dequeue)
                .with(Op::Peek)
                .with(Op::Update)
                .with(Op::Delete),
        }
    }

    /// The kind in words, for messages: "one blob", "a queue".
    pub const fn describe(self) -> &'static str {
        match self {
            ScopeKind::Blobs => "a blob container or prefix",
            ScopeKind::Blob => "one blob",
            ScopeKind::Rows => "a table, partition or row range",
            ScopeKind::Row => "one table row",
            ScopeKind::Queue => "a queue",
        }
    }

    /// The family of resources: `blob`, `table` or `queue`, the scope's text prefix.
    pub const fn family(self) -> &'static str {
        match self {
            ScopeKind::Blobs | ScopeKind::Blob => "blob",
            ScopeKind::Rows | ScopeKind::Row => "table",
            ScopeKind::Queue => "queue",
        }
    }

    /// [`ScopeKind::ops`] as a list in words: "read, write, create, delete or list".
    pub(crate) fn ops_in_words(self) -> String {
        let names: Vec<&str> = self.ops().iter().map(Op::as_str).collect();
        match names.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

/// Which blobs of a container a blob scope names.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum BlobTarget {
    /// Every blob of the container.
    Container,
    /// Every blob under a prefix.
    Prefix(BlobPrefix),
    /// One blob.
    Blob(BlobPath),
}

/// An inclusive range of row keys; `None` at an end leaves it open. A single row is the range
/// from that row to itself, written as just the row key.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct RowRange {
    /// The first row key in the range, if bounded below.
    pub from: Option<TableKey>,
    /// The last row key in the range, if bounded above.
    pub to: Option<TableKey>,
}

impl RowRange {
    fn single(row: TableKey) -> Self {
        RowRange {
            from: Some(row.clone()),
            to: Some(row),
        }
    }

    fn is_single(&self) -> bool {
        self.from.is_some() && self.from == self.to
    }

    /// Whether every row of `inner` is also in this range.
    fn contains(&self, inner: &RowRange) -> bool {
        let from_ok = match (&self.from, &inner.from) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(outer), Some(inner)) => outer <= inner,
        };
        let to_ok = match (&self.to, &inner.to) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(outer), Some(inner)) => inner <= outer,
        };
        from_ok && to_ok
    }

    fn parse(text: &str) -> Result<Self, ScopeError> {
        let Some((from, to)) = text.split_once("..") else {
            return Ok(RowRange::single(TableKey::parse(text)?));
        };
        let end = |t: &str| -> Result<Option<TableKey>, ScopeError> {
            Ok(if t.is_empty() {
                None
            } else {
                Some(TableKey::parse(t)?)
            })
        };
        let range = RowRange {
            from: end(from)?,
            to: end(to)?,
        };
        match (&range.from, &range.to) {
            (None, None) => Err(ScopeError::BadRowRange),
            (Some(f), Some(t)) if f > t => Err(ScopeError::BadRowRange),
            _ => Ok(range),
        }
    }
}

impl fmt::Display for RowRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            return write!(
                f,
                "{}",
                self.from.as_ref().expect("single range has a start")
            );
        }
        if let Some(from) = &self.from {
            f.write_str(from.as_str())?;
        }
        f.write_str("..")?;
        if let Some(to) = &self.to {
            f.write_str(to.as_str())?;
        }
        Ok(())
    }
}

impl Scope {
    /// The scope of one blob.
    pub fn blob(container: Name, path: BlobPath) -> Self {
        Scope::Blob {
            container,
            target: BlobTarget::Blob(path),
        }
    }

    /// The kind of resource the scope names, which decides the operations that apply to it.
    pub fn kind(&self) -> ScopeKind {
        match self {
            Scope::Blob {
                target: BlobTarget::Blob(_),
                ..
            } => ScopeKind::Blob,
            Scope::Blob { .. } => ScopeKind::Blobs,
            Scope::Table {
                rows: Some(rows), ..
            } if rows.is_single() => ScopeKind::Row,
            Scope::Table { .. } => ScopeKind::Rows,
            Scope::Queue { .. } => ScopeKind::Queue,
        }
    }

    /// Checks that every operation of `ops` means something on this scope: the first that
    /// does not is the error, named with the scope's kind.
    pub fn check_ops(&self, ops: Ops) -> Result<(), OpScopeError> {
        let kind = self.kind();
        match ops.iter().find(|op| !kind.ops().names(*op)) {
            Some(op) => Err(OpScopeError { op, kind }),
            None => Ok(()),
        }
    }

    /// Whether every resource named by `other` is also named by `self`. This is the whole
    /// of scope checking: a key's scope must cover the request's resource, and a caveat's scope
    /// must be covered by the scope it narrows.
    pub fn covers(&self, other: &Scope) -> bool {
        match (self, other) {
            (
                Scope::Blob {
                    container: a,
                    target: outer,
                },
                Scope::Blob {
                    container: b,
                    target: inner,
                },
            ) => a == b && blob_target_covers(outer, inner),
            (
                Scope::Table {
                    table: a,
                    partition: pa,
                    rows: ra,
                },
                Scope::Table {
                    table: b,
                    partition: pb,
                    rows: rb,
                },
            ) => a == b && partition_covers(pa, pb) && rows_cover(ra, rb),
            (Scope::Queue { queue: a }, Scope::Queue { queue: b }) => a == b,
            _ => false,
        }
    }

    /// Whether `text` is exactly this scope's text form, compared without parsing it.
    ///
    /// Only blob and queue scopes ever answer `true`: their parts can only be built by the
    /// validating parsers, so their text form is certain to parse back to them, and a verifier
    /// may take a clone of the request's resource for a key naming exactly that resource (the
    /// usual key for one blob) instead of parsing the key's scope. A table scope's row range has
    /// public fields, so its text might not parse back; it answers `false`.
    pub(crate) fn has_text(&self, text: &[u8]) -> bool {
        let rest = |prefix: &str, name: &Name| {
            text.strip_prefix(prefix.as_bytes())
                .and_then(|rest| rest.strip_prefix(name.as_str().as_bytes()))
        };
        match self {
            Scope::Blob { container, target } => {
                let Some(rest) = rest("blob:", container) else {
                    return false;
                };
                let path = match target {
                    BlobTarget::Container => return rest.is_empty(),
                    BlobTarget::Prefix(prefix) => prefix.as_str(),
                    BlobTarget::Blob(path) => path.as_str(),
                };
                rest.strip_prefix(b"/") == Some(path.as_bytes())
            }
            Scope::Queue { queue } => rest("queue:", queue) == Some(&[]),
            Scope::Table { .. } => false,
        }
    }
}

fn blob_target_covers(outer: &BlobTarget, inner: &BlobTarget) -> bool {
    match (outer, inner) {
        (BlobTarget::Container, _) => true,
        (BlobTarget::Prefix(p), BlobTarget::Prefix(q)) => p.contains_prefix(q),
        (BlobTarget::Prefix(p), BlobTarget::Blob(b)) => b.is_under(p),
        (BlobTarget::Blob(a), BlobTarget::Blob(b)) => a == b,
        _ => false,
    }
}

fn partition_covers(outer: &Option<TableKey>, inner: &Option<TableKey>) -> bool {
    match (outer, inner) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a == b,
    }
}

fn rows_cover(outer: &Option<RowRange>, inner: &Option<RowRange>) -> bool {
    match (outer, inner) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a.contains(b),
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(text: &str) -> Result<Self, ScopeError> {
        if let Some(rest) = text.strip_prefix("blob:") {
            parse_blob(rest)
        } else if let Some(rest) = text.strip_prefix("table:") {
            parse_table(rest)
        } else if let Some(rest) = text.strip_prefix("queue:") {
            Ok(Scope::Queue {
                queue: Name::parse(rest).map_err(|e| {
                    if rest.contains('/') {
                        ScopeError::TrailingParts
                    } else {
                        e.into()
                    }
                })?,
            })
        } else {
            Err(ScopeError::UnknownKind)
        }
    }
}

fn parse_blob(rest: &str) -> Result<Scope, ScopeError> {
    let (container, path) = match rest.bytes().position(|b| b == b'/') {
        None => (rest, None),
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
    };
    let container = Name::parse(container)?;
    let target = match path {
        // `blob:NAME/` is what people type for a container's contents (it reads like every
        // other prefix): the same scope as `blob:NAME`, written back without the slash, so a
        // key's text form and its coverage do not depend on which spelling was given.
        None | Some("") => BlobTarget::Container,
        Some(p) if p.ends_with('/') => BlobTarget::Prefix(BlobPrefix::parse(p)?),
        Some(p) => BlobTarget::Blob(BlobPath::parse(p)?),
    };
    Ok(Scope::Blob { container, target })
}

fn parse_table(rest: &str) -> Result<Scope, ScopeError> {
    let mut parts = rest.splitn(3, '/');
    let table = Name::parse(parts.next().unwrap_or_default())?;
    let partition = parts.next().map(TableKey::parse).transpose()?;
    let rows = parts.next().map(RowRange::parse).transpose()?;
    Ok(Scope::Table {
        table,
        partition,
        rows,
    })
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Blob { container, target } => match target {
                BlobTarget::Container => write!(f, "blob:{container}"),
                BlobTarget::Prefix(p) => write!(f, "blob:{container}/{p}"),
                BlobTarget::Blob(b) => write!(f, "blob:{container}/{b}"),
            },
            Scope::Table {
                table,
                partition,
                rows,
            } => {
                write!(f, "table:{table}")?;
                if let Some(p) = partition {
                    write!(f, "/{p}")?;
                }
                if let Some(r) = rows {
                    write!(f, "/{r}")?;
                }
                Ok(())
            }
            Scope::Queue { queue } => write!(f, "queue:{queue}"),
        }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({self})")
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An operation that means nothing on the kind of resource a scope names: `list` on one blob,
/// `enqueue` on a blob, `read` on a queue. A key or caveat naming one is refused when it is
/// made, so that nobody holds a key that does less than it says. Here, with the kinds of
/// scope, so that `error` needs nothing of scopes and operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct OpScopeError {
    /// The operation that does not apply.
    pub op: Op,
    /// The kind of resource it was asked for.
    pub kind: ScopeKind,
}

impl fmt::Display for OpScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let OpScopeError { op, kind } = *self;
        write!(
            f,
            "the operation '{op}' does not apply to {}",
            kind.describe()
        )?;
        match (op, kind) {
            (Op::List, ScopeKind::Blob) => {
                f.write_str(": list a container (blob:NAME) or a prefix ending in '/'")
            }
            (Op::List, ScopeKind::Row) => f.write_str(": list a partition or a row range"),
            _ => write!(f, ", which takes {}", kind.ops_in_words()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Scope {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn text_round_trips() {
        for text in [
            "blob:photos",
            "blob:photos/2024/",
            "blob:photos/2024/cat.jpg",
            "table:orders",
            "table:orders/customer-1",
            "table:orders/customer-1/row-7",
            "table:orders/customer-1/a..m",
            "table:orders/customer-1/a..",
            "table:orders/customer-1/..m",
            "queue:jobs",
        ] {
            assert_eq!(s(text).to_string(), text);
        }
    }

    #[test]
    fn refuses_bad_text() {
        for bad in [
            "",
            "photos",
            "file:photos",
            "blob:",
            "blob:Photos",
            "blob:photos//",
            "blob:photos//x",
            "blob:photos/../x",
            "blob:photos/a/./b",
            "blob:photos/%2e%2e/x",
            "blob:photos/a\\b",
            "table:orders//x",
            "table:orders/p/..",
            "table:orders/p/z..a",
            "table:orders/p/a..b/c",
            "queue:jobs/x",
            "queue:j",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_container_may_be_written_with_a_trailing_slash() {
        assert_eq!(s("blob:photos/"), s("blob:photos"));
        assert_eq!(s("blob:photos/").to_string(), "blob:photos");
        assert!(s("blob:photos/").covers(&s("blob:photos/2024/cat.jpg")));
        assert!(!s("blob:photos/").covers(&s("blob:photos-private/x")));
    }

    #[test]
    fn blob_coverage() {
        let whole = s("blob:photos");
        let prefix = s("blob:photos/2024/");
        let one = s("blob:photos/2024/cat.jpg");
        assert!(whole.covers(&prefix) && whole.covers(&one) && whole.covers(&whole));
        assert!(prefix.covers(&one) && prefix.covers(&s("blob:photos/2024/jan/")));
        assert!(!prefix.covers(&whole));
        assert!(!prefix.covers(&s("blob:photos/2024-private/x")));
        assert!(!prefix.covers(&s("blob:photos/2024")));
        assert!(!one.covers(&prefix) && !one.covers(&s("blob:photos/2024/cat.jpg.exe")));
        assert!(!whole.covers(&s("blob:photos-private/x")));
        assert!(!whole.covers(&s("table:photos")));
    }

    #[test]
    fn table_coverage() {
        let table = s("table:orders");
        let part = s("table:orders/p1");
        let range = s("table:orders/p1/b..m");
        assert!(table.covers(&part) && table.covers(&range));
        assert!(part.covers(&range) && part.covers(&s("table:orders/p1/zz")));
        assert!(!part.covers(&table) && !part.covers(&s("table:orders/p2")));
        assert!(range.covers(&s("table:orders/p1/b")) && range.covers(&s("table:orders/p1/m")));
        assert!(range.covers(&s("table:orders/p1/c..d")));
        assert!(!range.covers(&s("table:orders/p1/a")));
        assert!(!range.covers(&s("table:orders/p1/n")));
        assert!(!range.covers(&s("table:orders/p1/c..")));
        assert!(!range.covers(&part));
        assert!(s("table:orders/p1/b..").covers(&s("table:orders/p1/zzz")));
        assert!(!s("table:orders/p1/..m").covers(&s("table:orders/p1/n")));
    }

    #[test]
    fn text_comparison_without_parsing() {
        for text in [
            "blob:photos",
            "blob:photos/2024/",
            "blob:photos/2024/cat.jpg",
            "queue:jobs",
        ] {
            assert!(s(text).has_text(text.as_bytes()), "{text}");
        }
        let one = s("blob:photos/2024/cat.jpg");
        for other in [
            "blob:photos/2024/cat.jp",
            "blob:photos/2024/cat.jpgx",
            "blob:photos/2024/",
            "blob:photos",
            "blob:photo/2024/cat.jpg",
            "queue:photos/2024/cat.jpg",
            "",
        ] {
            assert!(!one.has_text(other.as_bytes()), "{other}");
        }
        assert!(!s("blob:photos").has_text(b"blob:photos/"));
        assert!(!s("blob:photos/2024/").has_text(b"blob:photos/2024"));
        assert!(!s("queue:jobs").has_text(b"queue:jobs/x"));
        let table = "table:orders/p1/a..m";
        assert!(
            !s(table).has_text(table.as_bytes()),
            "table scopes are always parsed"
        );
    }

    proptest::proptest! {
        #[test]
        fn text_comparison_agrees_with_parsing(
            a in "(blob|queue):(photos|docs)(/[a-z.]{1,3}){0,3}/?",
            b in "(blob|queue):(photos|docs)(/[a-z.]{1,3}){0,3}/?",
            variant in 0..4,
        ) {
            // Mostly near misses of `a`, so that equal and almost equal texts are common.
            let b = match variant {
                0 => a.clone(),
                1 => format!("{a}/"),
                2 => a[..a.len() - 1].to_owned(),
                _ => b,
            };
            // `has_text` answers for the canonical text only (`blob:photos/` is the same scope
            // as `blob:photos` but not its text): never `true` for another scope, always for
            // the scope's own text form.
            if let Ok(scope) = a.parse::<Scope>() {
                let same = b.parse::<Scope>() == Ok(scope.clone());
                let canonical = same && b == scope.to_string();
                proptest::prop_assert_eq!(scope.has_text(b.as_bytes()), canonical);
            }
        }
    }

    #[test]
    fn queue_coverage() {
        assert!(s("queue:jobs").covers(&s("queue:jobs")));
        assert!(!s("queue:jobs").covers(&s("queue:jobs-2")));
        assert!(!s("queue:jobs").covers(&s("blob:jobs")));
    }
}
