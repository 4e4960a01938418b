//! Operations a key may grant, and sets of them.
//!
//! A set is a bit mask so that intersecting a key's operations with each caveat's costs one
//! instruction. `write` (create or overwrite) implies `create` (only if absent): the weaker
//! right is always available to the holder of the stronger, so narrowing `write` to `create`
//! is a real attenuation rather than an empty set.

use std::fmt;
use std::str::FromStr;

use crate::error::OpError;

/// One operation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Op {
    /// Download a blob (GET, HEAD), read rows.
    Read,
    /// Create or overwrite a blob, insert or replace rows.
    Write,
    /// Create a blob only if it does not exist yet.
    Create,
    /// Delete a blob or rows; acknowledge (delete) a dequeued message.
    Delete,
    /// List the blobs of a container or prefix, query the rows of a table, partition or range.
    List,
    /// Add a message to a queue.
    Enqueue,
    /// Take a message from a queue.
    Dequeue,
    /// Look at a queue's messages without taking them.
    Peek,
    /// Change a row or a queued message in place.
    Update,
}

impl Op {
    /// Every operation, in bit order.
    pub const ALL: [Op; 9] = [
        Op::Read,
        Op::Write,
        Op::Create,
        Op::Delete,
        Op::List,
        Op::Enqueue,
        Op::Dequeue,
        Op::Peek,
        Op::Update,
    ];

    const fn bit(self) -> u16 {
        1 << self as u16
    }

    /// The operation's name in text forms and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Create => "create",
            Op::Delete => "delete",
            Op::List => "list",
            Op::Enqueue => "enqueue",
            Op::Dequeue => "dequeue",
            Op::Peek => "peek",
            Op::Update => "update",
        }
    }
}

impl FromStr for Op {
    type Err = OpError;

    fn from_str(text: &str) -> Result<Self, OpError> {
        Op::ALL
            .into_iter()
            .find(|op| op.as_str() == text)
            .ok_or_else(|| OpError::Unknown(text.to_owned()))
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of operations.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ops(u16);

impl Ops {
    /// The empty set.
    pub const NONE: Ops = Ops(0);
    const KNOWN: u16 = (1 << Op::ALL.len()) - 1;

    /// The set's wire form: one bit per operation, in the order of [`Op::ALL`].
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Reads a wire form; `None` if it has bits for operations this version does not know.
    pub const fn from_bits(bits: u16) -> Option<Ops> {
        if bits & !Self::KNOWN == 0 {
            Some(Ops(bits))
        } else {
            None
        }
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set with `op` added.
    pub const fn with(self, op: Op) -> Ops {
        Ops(self.0 | op.bit())
    }

    /// Whether the set names `op` itself (not counting implied operations).
    pub const fn names(self, op: Op) -> bool {
        self.0 & op.bit() != 0
    }

    /// The set with every implied operation added: `write` brings `create`.
    pub const fn implied(self) -> Ops {
        if self.names(Op::Write) {
            self.with(Op::Create)
        } else {
            self
        }
    }

    /// Whether a holder of this set may perform `op`.
    pub const fn permits(self, op: Op) -> bool {
        self.implied().names(op)
    }

    /// The operations permitted by both sets.
    pub const fn intersect(self, other: Ops) -> Ops {
        Ops(self.implied().0 & other.implied().0)
    }

    /// Whether everything `self` permits, `outer` permits too.
    pub const fn within(self, outer: Ops) -> bool {
        self.implied().0 & !outer.implied().0 == 0
    }

    /// The operations in the set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Op> {
        Op::ALL.into_iter().filter(move |op| self.names(*op))
    }
}

impl FromIterator<Op> for Ops {
    fn from_iter<I: IntoIterator<Item = Op>>(ops: I) -> Self {
        ops.into_iter().fold(Ops::NONE, Ops::with)
    }
}

impl FromStr for Ops {
    type Err = OpError;

    /// A comma-separated list such as `read,write`.
    fn from_str(text: &str) -> Result<Self, OpError> {
        let ops = text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Op::from_str)
            .collect::<Result<Ops, _>>()?;
        if ops.is_empty() {
            return Err(OpError::Empty);
        }
        Ok(ops)
    }
}

impl fmt::Display for Ops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(op.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Ops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ops({self})")
    }
}

impl serde::Serialize for Ops {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Op::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        let ops: Ops = "read,write,list".parse().unwrap();
        assert_eq!(ops.to_string(), "read,write,list");
        assert_eq!(
            "update, read".parse::<Ops>().unwrap().to_string(),
            "read,update"
        );
        assert_eq!("".parse::<Ops>(), Err(OpError::Empty));
        assert!(matches!(
            "read,admin".parse::<Ops>(),
            Err(OpError::Unknown(_))
        ));
    }

    #[test]
    fn write_implies_create_and_nothing_else() {
        let write: Ops = "write".parse().unwrap();
        assert!(write.permits(Op::Write) && write.permits(Op::Create));
        assert!(!write.permits(Op::Read) && !write.permits(Op::Delete));
        let create: Ops = "create".parse().unwrap();
        assert!(!create.permits(Op::Write));
        assert!(create.within(write) && !write.within(create));
        assert_eq!(write.intersect(create), create);
    }

    #[test]
    fn unknown_bits_are_refused() {
        assert!(Ops::from_bits(1 << 9).is_none());
        assert!(Ops::from_bits(0b1_1111_1111).is_some());
    }
}
