//! The keyring: the secrets that sign and verify keys, and the tag chain they start.
//!
//! One key is active and signs new keys; every other key in the ring verifies only: older keys,
//! to verify what they signed until they are retired (after which everything they signed is
//! `key_invalid`), and a staged key ([`Keyring::stage`]), which verifies before any gate signs
//! with it. Staging a key on every node, then promoting it ([`Keyring::promote`]), is how a
//! rotation reaches many nodes without one of them refusing a key another has signed; see
//! docs/DEPLOYMENT.md. Each
//! secret is turned into a pre-keyed HMAC state once, when the ring is loaded, so that
//! verification pays for the message blocks only.
//!
//! This module is pure: it serialises the ring to and from JSON text, and generating a secret
//! takes the random source as an argument. Owner-only files live in the `valet-keyring` crate.

use std::fmt;

use base64_simd::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::claims::{Claims, UnixTime};
use crate::mac::{MacKey, Tag};
use crate::scope::OpScopeError;
use crate::token::Token;

/// The format name written into keyring files.
pub const KEYRING_FORMAT: &str = "valet-keyring/1";

/// Why a keyring could not be read, changed or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The text is not a keyring document.
    #[error("not a keyring: {0}")]
    Parse(String),
    /// The document is of another format or version.
    #[error("unsupported keyring format '{0}' (expected '{KEYRING_FORMAT}')")]
    Format(String),
    /// A signing-key id is not 1 to 32 characters of `A-Za-z0-9_-`.
    #[error("bad signing key id '{0}'")]
    BadId(String),
    /// A secret is not 32 bytes of base64url.
    #[error("the secret of signing key '{0}' is not 32 bytes of base64url")]
    BadSecret(String),
    /// Two keys share an id.
    #[error("signing key id '{0}' appears twice")]
    DuplicateId(String),
    /// The active key named is not in the ring.
    #[error("the active key '{0}' is not in the keyring")]
    NoSuchKey(String),
    /// A key to retire is not in the ring.
    #[error("there is no signing key '{0}' in the keyring")]
    UnknownKey(String),
    /// There is no active key to sign with.
    #[error("the keyring has no active signing key")]
    NoActiveKey,
    /// The active key cannot be retired; promote another (or rotate) first.
    #[error("'{0}' is the active key: promote another key (or rotate) before retiring it")]
    RetireActive(String),
}

/// Why a key could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// See [`KeyringError`].
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// A key must grant at least one operation.
    #[error("a key must grant at least one operation")]
    NoOps,
    /// An operation that means nothing on the key's scope (`list` on one blob).
    #[error(transparent)]
    OpsDoNotFit(#[from] OpScopeError),
    /// Expiry must come after not-before.
    #[error("the key would expire before it becomes valid")]
    NoValidity,
    /// The subject is too long or has control characters.
    #[error("the subject is longer than 256 bytes or has control characters")]
    BadSubject,
}

/// One signing secret with its id.
#[derive(Clone)]
pub struct SigningKey {
    id: String,
    secret: [u8; 32],
    created: UnixTime,
    mac: MacKey,
}

impl SigningKey {
    fn new(id: String, secret: [u8; 32], created: UnixTime) -> Result<SigningKey, KeyringError> {
        if !valid_key_id(&id) {
            return Err(KeyringError::BadId(id));
        }
        let mac = MacKey::new(&secret);
        Ok(SigningKey {
            id,
            secret,
            created,
            mac,
        })
    }

    /// The key's id, which tokens name so the verifier can find the key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the key was made.
    pub fn created(&self) -> UnixTime {
        self.created
    }

    /// A short digest of the secret, 16 hex digits, to tell whether two nodes hold the same
    /// key under an id (copies of one keyring) or different secrets that share it (keyrings
    /// made apart). A truncated SHA-256 of the secret with a label of its own: nothing of it
    /// is a tag, and it tells nothing about the secret.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::new()
            .chain_update(b"valet-keyring fingerprint\n")
            .chain_update(self.secret)
            .finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The chain's first tag: `HMAC(secret, claims)`.
    pub(crate) fn root_tag(&self, claims: &[u8]) -> Tag {
        Tag(self.mac.mac(claims))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn valid_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Signing keys: one active, the rest verify-only.
#[derive(Clone, Debug)]
pub struct Keyring {
    active: Option<String>,
    keys: Vec<SigningKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringDoc {
    format: String,
    active: Option<String>,
    keys: Vec<KeyDoc>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDoc {
    id: String,
    secret: String,
    created: u64,
}

impl Keyring {
    /// A new ring with one fresh active key, `k1`.
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore, now: UnixTime) -> Keyring {
        let mut ring = Keyring {
            active: None,
            keys: Vec::new(),
        };
        ring.rotate(rng, now);
        ring
    }

    /// Adds a fresh key and makes it the active one; the previous active key becomes
    /// verify-only. Returns the new key's id. On one node only: with several, a node that has
    /// not yet seen the new key would refuse what it signs; [`Keyring::stage`] then
    /// [`Keyring::promote`] instead.
    pub fn rotate(&mut self, rng: &mut impl rand_core::CryptoRngCore, now: UnixTime) -> String {
        let id = self.stage(rng, now);
        self.active = Some(id.clone());
        id
    }

    /// Adds a fresh verify-only key: it verifies at once and signs nothing until promoted.
    /// Returns its id, `k` and one more than the highest number among the `kN` ids.
    pub fn stage(&mut self, rng: &mut impl rand_core::CryptoRngCore, now: UnixTime) -> String {
        let next = self
            .keys
            .iter()
            .filter_map(|k| k.id.strip_prefix('k')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let id = format!("k{next}");
        let mut secret = [0; 32];
        rng.fill_bytes(&mut secret);
        let key = SigningKey::new(id.clone(), secret, now).expect("generated ids are valid");
        self.keys.push(key);
        id
    }

    /// Makes the key `id` the one that signs; the one that signed until now verifies only.
    /// Returns that previous one's id (`None` if there was none, or it is `id`).
    pub fn promote(&mut self, id: &str) -> Result<Option<String>, KeyringError> {
        if self.find(id).is_none() {
            return Err(KeyringError::UnknownKey(id.to_owned()));
        }
        let previous = self.active.replace(id.to_owned());
        Ok(previous.filter(|p| p != id))
    }

    /// Whether `id` is the key that signs.
    pub fn is_active(&self, id: &str) -> bool {
        self.active.as_deref() == Some(id)
    }

    /// Removes a verify-only key: every token it signed stops verifying. (A staged key never
    /// promoted signed none: retiring it withdraws it.)
    pub fn retire(&mut self, id: &str) -> Result<(), KeyringError> {
        if self.active.as_deref() == Some(id) {
            return Err(KeyringError::RetireActive(id.to_owned()));
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.id != id);
        if self.keys.len() == before {
            return Err(KeyringError::UnknownKey(id.to_owned()));
        }
        Ok(())
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> Result<&SigningKey, KeyringError> {
        let id = self.active.as_deref().ok_or(KeyringError::NoActiveKey)?;
        self.find(id)
            .ok_or_else(|| KeyringError::NoSuchKey(id.to_owned()))
    }

    /// The key with this id, active or verify-only.
    pub fn find(&self, id: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Every key, in the order they were added.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// Signs `claims` with the active key, refusing claims that grant nothing, or an operation
    /// that means nothing on their scope (see [`Scope::check_ops`](crate::Scope::check_ops)).
    pub fn issue(&self, claims: Claims) -> Result<Token, IssueError> {
        claims.scope.check_ops(claims.ops)?;
        self.issue_unchecked(claims)
    }

    /// Signs `claims` without checking that their operations apply to their scope, as issuers
    /// before that rule did (and other implementations of the format may): for tests that
    /// prove what a verifier answers to such keys. Claims that grant nothing, have no time to
    /// be valid or have a bad subject are refused all the same.
    pub fn issue_unchecked(&self, claims: Claims) -> Result<Token, IssueError> {
        if claims.ops.is_empty() {
            return Err(IssueError::NoOps);
        }
        if claims.expires <= claims.not_before {
            return Err(IssueError::NoValidity);
        }
        if claims
            .subject
            .as_deref()
            .is_some_and(|s| !crate::claims::valid_subject(s))
        {
            return Err(IssueError::BadSubject);
        }
        let key = self.active()?;
        let bytes = claims.encode(&key.id);
        let tag = key.root_tag(&bytes);
        Ok(Token::signed(claims, bytes, tag))
    }

    /// Whether `token`'s tag chain was started by a key of this ring.
    pub fn check_tag(&self, token: &Token) -> bool {
        let mut segments = token.segments();
        let claims = segments.next().expect("a token has a claims segment");
        let Some(root) = self.root_tag(token.signing_key().as_bytes(), claims) else {
            return false;
        };
        let tag = segments.fold(root, |tag, caveat| tag.chain(caveat));
        tag == *token.tag()
    }

    /// The chain's first tag for `claims` under the key whose id is `signing_key`, if the
    /// ring has it. The id is taken as the bytes of the claims segment, not yet known to be text.
    pub(crate) fn root_tag(&self, signing_key: &[u8], claims: &[u8]) -> Option<Tag> {
        let key = self.keys.iter().find(|k| k.id.as_bytes() == signing_key)?;
        Some(key.root_tag(claims))
    }

    /// The ring as a JSON document (secrets included: write it owner-only).
    pub fn to_json(&self) -> String {
        let doc = KeyringDoc {
            format: KEYRING_FORMAT.to_owned(),
            active: self.active.clone(),
            keys: self
                .keys
                .iter()
                .map(|k| KeyDoc {
                    id: k.id.clone(),
                    secret: URL_SAFE_NO_PAD.encode_to_string(k.secret),
                    created: k.created.0,
                })
                .collect(),
        };
        serde_json::to_string_pretty(&doc).expect("a keyring serialises") + "\n"
    }

    /// Reads a ring written by [`Keyring::to_json`].
    pub fn from_json(text: &str) -> Result<Keyring, KeyringError> {
        let doc: KeyringDoc =
            serde_json::from_str(text).map_err(|e| KeyringError::Parse(e.to_string()))?;
        if doc.format != KEYRING_FORMAT {
            return Err(KeyringError::Format(doc.format));
        }
        let mut keys: Vec<SigningKey> = Vec::with_capacity(doc.keys.len());
        for k in doc.keys {
            let secret = URL_SAFE_NO_PAD
                .decode_to_vec(&k.secret)
                .ok()
                .and_then(|s| <[u8; 32]>::try_from(s).ok())
                .ok_or_else(|| KeyringError::BadSecret(k.id.clone()))?;
            if keys.iter().any(|other| other.id == k.id) {
                return Err(KeyringError::DuplicateId(k.id));
            }
            keys.push(SigningKey::new(k.id, secret, UnixTime(k.created))?);
        }
        let ring = Keyring {
            active: doc.active,
            keys,
        };
        if let Some(active) = &ring.active {
            ring.find(active)
                .ok_or_else(|| KeyringError::NoSuchKey(active.clone()))?;
        }
        Ok(ring)
    }

    /// A ring from explicit secrets, for test vectors and tools that derive keys elsewhere.
    pub fn from_secrets(
        active: Option<&str>,
        keys: &[(&str, [u8; 32])],
    ) -> Result<Keyring, KeyringError> {
        let mut ring = Keyring {
            active: None,
            keys: Vec::new(),
        };
        for (id, secret) in keys {
            if ring.find(id).is_some() {
                return Err(KeyringError::DuplicateId((*id).to_owned()));
            }
            ring.keys
                .push(SigningKey::new((*id).to_owned(), *secret, UnixTime(0))?);
        }
        if let Some(active) = active {
            ring.find(active)
                .ok_or_else(|| KeyringError::NoSuchKey(active.to_owned()))?;
            ring.active = Some(active.to_owned());
        }
        Ok(ring)
    }
}
