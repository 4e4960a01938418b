//! The valet key: a short-lived, narrowly scoped, signed token.
//!
//! A gate issues keys with [`Keyring::issue`]; a store checks them with
//! [`Verifier::authorize`], with no call back to the gate. Any holder can narrow a key with
//! [`Token::attenuate`], without the secret, by chaining the tag as Macaroons do.
//!
//! This crate is pure: no I/O, no async, no clock (callers pass the time), no global state.
//! Randomness is an argument. The text and byte formats are described in `docs/KEY-FORMAT.md`.

mod authorize;
mod caveat;
mod claims;
mod error;
mod field;
mod keyring;
mod mac;
mod media_range;
mod name;
mod op;
mod path;
mod scope;
mod token;
mod url_path;
mod wire;

pub use authorize::{Access, Denial, Grant, Verifier, DEFAULT_SKEW_SECONDS};
pub use caveat::{AttenuateError, Caveat};
pub use claims::{
    is_bidi_control, valid_subject, Claims, FileName, KeyId, Limits, UnixTime, MAX_SUBJECT_LEN,
};
pub use error::{
    FileNameError, FormatError, MediaRangeError, NameError, OpError, PathError, ScopeError,
};
pub use keyring::{IssueError, Keyring, KeyringError, SigningKey, KEYRING_FORMAT};
pub use mac::Tag;
pub use media_range::{MediaRange, MediaType, MediaTypeError, MAX_MEDIA_TYPE_LEN};
pub use name::{Name, MAX_NAME_LEN, MIN_NAME_LEN};
pub use op::{Op, Ops};
pub use path::{
    BlobPath, BlobPrefix, TableKey, MAX_PATH_LEN, MAX_SEGMENT_LEN, MAX_TABLE_KEY_LEN,
    SEGMENT_PATTERN,
};
pub use scope::{BlobTarget, OpScopeError, RowRange, Scope, ScopeKind};
pub use token::{redact, EffectiveLimits, Token, MAX_CAVEATS, MAX_TOKEN_LEN, TOKEN_PREFIX};
pub use url_path::{blob_url_path, decode_url_path, UrlPathError};
