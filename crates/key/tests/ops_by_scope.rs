//! Which operations apply to which kind of scope (`docs/KEY-FORMAT.md`, "Operations by
//! scope"): a key or caveat naming one that does not is refused when it is made, with a
//! message naming the operation and the kind; the verifier still enforces the intersection of
//! whatever a hand-made token carries.

mod common;

use common::*;
use valet_key::{
    Access, AttenuateError, Caveat, IssueError, Op, OpScopeError, Ops, ScopeKind, Token, Verifier,
};

/// The table of the format document, written out once more: a change to either fails here.
const TABLE: [(&str, ScopeKind, &str); 9] = [
    (
        "blob:photos",
        ScopeKind::Blobs,
        "read,write,create,delete,list",
    ),
    (
        "blob:photos/2024/",
        ScopeKind::Blobs,
        "read,write,create,delete,list",
    ),
    (
        "blob:photos/2024/cat.jpg",
        ScopeKind::Blob,
        "read,write,create,delete",
    ),
    (
        "table:orders",
        ScopeKind::Rows,
        "read,write,create,delete,list,update",
    ),
    (
        "table:orders/p1",
        ScopeKind::Rows,
        "read,write,create,delete,list,update",
    ),
    (
        "table:orders/p1/a..m",
        ScopeKind::Rows,
        "read,write,create,delete,list,update",
    ),
    (
        "table:orders/p1/row-7",
        ScopeKind::Row,
        "read,write,create,delete,update",
    ),
    (
        "table:orders/p1/row-7..row-7",
        ScopeKind::Row,
        "read,write,create,delete,update",
    ),
    (
        "queue:jobs",
        ScopeKind::Queue,
        "delete,enqueue,dequeue,peek,update",
    ),
];

fn one(op: Op) -> Ops {
    Ops::NONE.with(op)
}

#[test]
fn each_kind_of_scope_takes_exactly_its_operations() {
    for (text, kind, allowed) in TABLE {
        let allowed: Ops = allowed.parse().unwrap();
        assert_eq!(scope(text).kind(), kind, "{text}");
        assert_eq!(kind.ops(), allowed, "{text}");
        for op in Op::ALL {
            let mut claims = claims(text, "read");
            claims.ops = one(op);
            let issued = keyring().issue(claims);
            if allowed.names(op) {
                assert!(issued.is_ok(), "{op} on {text}: {issued:?}");
            } else {
                assert_eq!(
                    issued.unwrap_err(),
                    IssueError::OpsDoNotFit(OpScopeError { op, kind }),
                    "{op} on {text}"
                );
            }
        }
    }
}

#[test]
fn a_key_with_one_meaningless_operation_among_good_ones_is_refused() {
    let refused = keyring().issue(claims("blob:files/x", "read,write,enqueue"));
    assert_eq!(
        refused.unwrap_err().to_string(),
        "the operation 'enqueue' does not apply to one blob, which takes read, write, create or delete"
    );
    let refused = keyring().issue(claims("queue:jobs", "read,write"));
    assert_eq!(
        refused.unwrap_err().to_string(),
        "the operation 'read' does not apply to a queue, which takes delete, enqueue, dequeue, peek or update"
    );
    let refused = keyring().issue(claims("blob:files/x", "read,list"));
    assert_eq!(
        refused.unwrap_err().to_string(),
        "the operation 'list' does not apply to one blob: list a container (blob:NAME) or a prefix ending in '/'"
    );
    let refused = keyring().issue(claims("table:orders/p1/r1", "list"));
    assert_eq!(
        refused.unwrap_err().to_string(),
        "the operation 'list' does not apply to one table row: list a partition or a row range"
    );
}

fn narrow(
    token: &Token,
    scope_text: Option<&str>,
    ops: Option<&str>,
) -> Result<Token, AttenuateError> {
    token.attenuate(Caveat {
        scope: scope_text.map(scope),
        ops: ops.map(|o| o.parse().unwrap()),
        ..Caveat::default()
    })
}

#[test]
fn a_caveat_stays_in_the_keys_family_of_resources() {
    let blobs = token("blob:jobs", "read,list");
    for other in ["queue:jobs", "table:jobs", "table:jobs/p/r"] {
        assert_eq!(
            narrow(&blobs, Some(other), None).unwrap_err(),
            AttenuateError::OtherKind {
                key: "blob",
                caveat: scope(other).kind().family(),
            },
            "{other}"
        );
    }
    let queue = token("queue:jobs", "enqueue,peek");
    assert_eq!(
        narrow(&queue, Some("blob:jobs"), Some("peek"))
            .unwrap_err()
            .to_string(),
        "the caveat's scope is a blob scope and the key's a queue scope: a caveat narrows within \
         the key's kind of resource"
    );
}

#[test]
fn a_caveats_operations_must_apply_to_the_scope_it_leaves() {
    let folder = token("blob:photos/2024/", "read,write,list");
    // Its own scope, or one an earlier caveat narrowed to: `list` does not apply to one blob.
    assert_eq!(
        narrow(&folder, Some("blob:photos/2024/cat.jpg"), Some("read,list")).unwrap_err(),
        AttenuateError::OpsDoNotFit(OpScopeError {
            op: Op::List,
            kind: ScopeKind::Blob
        })
    );
    // (An earlier caveat appended unchecked, as anyone can: the narrowest scope decides.)
    let one = folder
        .append(Caveat {
            scope: Some(scope("blob:photos/2024/cat.jpg")),
            ..Caveat::default()
        })
        .unwrap();
    assert_eq!(
        narrow(&one, None, Some("list")).unwrap_err(),
        AttenuateError::OpsDoNotFit(OpScopeError {
            op: Op::List,
            kind: ScopeKind::Blob
        })
    );
    assert!(narrow(&one, None, Some("create")).is_ok());
    // A scope alone leaves the key's operations: they must apply to it too.
    let refused = narrow(&folder, Some("blob:photos/2024/cat.jpg"), None).unwrap_err();
    assert_eq!(
        refused,
        AttenuateError::KeyOpsDoNotFit(OpScopeError {
            op: Op::List,
            kind: ScopeKind::Blob
        })
    );
    assert_eq!(
        refused.to_string(),
        "the key's operation 'list' does not apply to one blob, the caveat's scope: narrow the \
         operations in the same caveat"
    );
    assert!(narrow(&folder, Some("blob:photos/2024/jan/"), None).is_ok());
    let table = token("table:orders/p1", "read,list,update");
    assert!(narrow(&table, Some("table:orders/p1/a..m"), None).is_ok());
    assert!(narrow(&table, Some("table:orders/p1/r1"), None).is_err());
    assert!(narrow(&table, Some("table:orders/p1/r1"), Some("read,update")).is_ok());
}

/// A caveat appended without the checks (as anyone can, by computing the tag) still only
/// narrows: the verifier grants the intersection, never an operation the claims lack.
#[test]
fn hand_made_caveats_with_meaningless_operations_still_only_narrow() {
    let verifier = Verifier::new(keyring());
    let folder = token("blob:photos/2024/", "read,list");
    let odd = folder
        .append(Caveat {
            scope: Some(scope("blob:photos/2024/cat.jpg")),
            ops: Some("list,enqueue,write".parse().unwrap()),
            ..Caveat::default()
        })
        .unwrap()
        .to_string();
    let ask = |op: Op, resource: &str| {
        let resource = scope(resource);
        let access = Access {
            op,
            resource: &resource,
            now: NOW,
            client: None,
        };
        match verifier.authorize(&odd, &access) {
            Ok(_) => "granted",
            Err(denial) => denial.code(),
        }
    };
    assert_eq!(ask(Op::List, "blob:photos/2024/"), "out_of_scope");
    assert_eq!(ask(Op::Read, "blob:photos/2024/cat.jpg"), "op_not_allowed");
    for op in [Op::Enqueue, Op::Write, Op::Create, Op::Delete] {
        assert_eq!(
            ask(op, "blob:photos/2024/cat.jpg"),
            "op_not_allowed",
            "{op}"
        );
    }
}
