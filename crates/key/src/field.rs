//! Field type numbers of the binary form (`wire`), shared by claims and caveats so that a
//! restriction has one number. A module of its own because errors name fields too
//! (`error::FieldName`): the errors then need the numbers, not the reader that returns them.

pub const KEY_ID: u8 = 1;
pub const SIGNING_KEY: u8 = 2;
pub const SUBJECT: u8 = 3;
pub const SCOPE: u8 = 4;
pub const OPS: u8 = 5;
pub const NOT_BEFORE: u8 = 6;
pub const EXPIRES: u8 = 7;
pub const MAX_BYTES: u8 = 8;
pub const MAX_USES: u8 = 9;
pub const CONTENT_TYPE: u8 = 10;
pub const CLIENT_IPS: u8 = 11;
pub const FILENAME: u8 = 12;
pub const EVENT_TARGET: u8 = 13;

/// The field's name in `docs/KEY-FORMAT.md`, for messages; `None` for a type this
/// version does not know.
pub const fn name(field: u8) -> Option<&'static str> {
    Some(match field {
        KEY_ID => "key id",
        SIGNING_KEY => "signing key",
        SUBJECT => "subject",
        SCOPE => "scope",
        OPS => "ops",
        NOT_BEFORE => "not before",
        EXPIRES => "expires",
        MAX_BYTES => "max bytes",
        MAX_USES => "max uses",
        CONTENT_TYPE => "content type",
        CLIENT_IPS => "client addresses",
        FILENAME => "file name",
        EVENT_TARGET => "event target",
        _ => return None,
    })
}
