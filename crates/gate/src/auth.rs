//! Who is asking: API keys and JWT bearer tokens, both in `Authorization: Bearer ...`.
//!
//! API keys are stored as their SHA-256 only, so a leaked configuration or data folder does not
//! leak a usable credential; the keys are 256 random bits, so a fast hash is enough (there is
//! nothing to brute-force). JWTs are checked for algorithm and signature (by `jsonwebtoken`),
//! then here for the registered claims: each of its type where present (a string `nbf` is a
//! refusal, not an absent one), `exp` required, `exp` and `nbf` with the gate's clock-skew
//! tolerance, and the configured `iss` and `aud`. Refusals say what is wrong in plain words,
//! never in the library's type names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{ApiKeyConfig, ConfigError, JwtConfig, RoleConfig};
use crate::error::GateError;

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Its name: the subject of the keys it obtains, `{sub}` in resource patterns.
    pub name: String,
    /// Its roles, each naming a policy.
    pub roles: Vec<String>,
    /// The name and roles as the header values a proxy route passes upstream, made once.
    headers: Option<(HeaderValue, HeaderValue)>,
}

impl Principal {
    pub(crate) fn new(name: String, roles: Vec<String>) -> Principal {
        let headers = HeaderValue::from_str(&name)
            .ok()
            .zip(HeaderValue::from_str(&roles.join(",")).ok());
        Principal {
            name,
            roles,
            headers,
        }
    }

    /// The name and the comma-separated roles as header values; `None` if they cannot be
    /// header values (a JWT subject with non-visible characters).
    pub(crate) fn header_values(&self) -> Option<&(HeaderValue, HeaderValue)> {
        self.headers.as_ref()
    }
}

/// The prefix of API keys made by [`new_api_key`], so that they are easy to recognise in a
/// secret scanner.
pub const API_KEY_PREFIX: &str = "vak_";

/// A new API key from the OS random source, and its hex SHA-256 for the configuration.
pub fn new_api_key() -> (String, String) {
    let mut secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let key = format!("{API_KEY_PREFIX}{}", hex::encode(secret));
    let hash = api_key_hash(&key);
    (key, hash)
}

/// The hex SHA-256 under which an API key is stored.
pub fn api_key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Checks credentials.
pub(crate) struct Authenticator {
    api_keys: HashMap<[u8; 32], Arc<Principal>>,
    /// The principals of API keys: a JWT may not claim one of these names, or an identity
    /// provider's user called `admin` would own the admin key's keys.
    api_key_principals: HashSet<String>,
    jwt: Option<JwtCheck>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("api_keys", &self.api_keys.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

struct JwtCheck {
    key: DecodingKey,
    /// The one algorithm accepted.
    algorithm: Algorithm,
    /// The library's checks: algorithm and signature.
    validation: Validation,
    /// Seconds `exp` may be past and `nbf` ahead.
    skew: u64,
    /// The `iss` a token must carry, if configured.
    issuer: Option<String>,
    /// The audience a token's `aud` must name, if configured.
    audience: Option<String>,
    principal_claim: String,
    roles_claim: Option<String>,
    default_roles: Vec<String>,
    /// The configured roles; any other role a token claims means nothing here and is dropped.
    known_roles: HashSet<String>,
}

impl Authenticator {
    pub(crate) fn new(
        api_keys: &[ApiKeyConfig],
        jwt: Option<&JwtConfig>,
        roles: &BTreeMap<String, RoleConfig>,
        skew_seconds: u64,
    ) -> Result<Authenticator, ConfigError> {
        let mut by_hash = HashMap::with_capacity(api_keys.len());
        for (i, entry) in api_keys.iter().enumerate() {
            let setting = |field: &str| format!("api_keys[{i}].{field}");
            let mut hash = [0u8; 32];
            hex::decode_to_slice(entry.sha256.trim(), &mut hash).map_err(|_| {
                ConfigError::new(setting("sha256"), "not 64 hex digits (a SHA-256)")
            })?;
            check_principal(&entry.principal)
                .map_err(|e| ConfigError::new(setting("principal"), e))?;
            for role in &entry.roles {
                if !roles.contains_key(role) {
                    return Err(ConfigError::new(
                        setting("roles"),
                        format!("no role named '{role}' in [roles]"),
                    ));
                }
            }
            let principal = Principal::new(entry.principal.clone(), entry.roles.clone());
            if by_hash.insert(hash, Arc::new(principal)).is_some() {
                return Err(ConfigError::new(
                    setting("sha256"),
                    "the same key is listed twice",
                ));
            }
        }
        let jwt = jwt
            .map(|c| JwtCheck::new(c, skew_seconds, roles))
            .transpose()?;
        let api_key_principals = api_keys.iter().map(|k| k.principal.clone()).collect();
        Ok(Authenticator {
            api_keys: by_hash,
            api_key_principals,
            jwt,
        })
    }

    /// The principal behind the request's `Authorization: Bearer` credential.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, GateError> {
        let credential = bearer(headers)?;
        if credential.split('.').count() == 3 {
            let jwt = self.jwt.as_ref().ok_or_else(|| {
                GateError::Unauthenticated("this gate does not accept JWTs".into())
            })?;
            let principal = jwt.check(credential)?;
            if self.api_key_principals.contains(&principal.name) {
                return Err(GateError::Unauthenticated(format!(
                    "JWT refused: '{}' is the principal of an API key",
                    principal.name
                )));
            }
            return Ok(principal);
        }
        let hash: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
        match self.api_keys.get(&hash) {
            Some(principal) => Ok(principal.clone()),
            None => Err(GateError::Unauthenticated("unknown API key".into())),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, GateError> {
    let missing = || {
        GateError::Unauthenticated(
            "this request needs credentials: 'Authorization: Bearer API_KEY' or a JWT".into(),
        )
    };
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or_else(missing)?;
    if values.next().is_some() {
        // As the store refuses two keys: no layer may pick a different one than another.
        return Err(GateError::Unauthenticated(
            "the request carries more than one Authorization header; send exactly one".into(),
        ));
    }
    let text = value.to_str().map_err(|_| missing())?;
    let (scheme, credential) = text.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || credential.trim().is_empty() {
        return Err(missing());
    }
    Ok(credential.trim())
}

fn check_principal(name: &str) -> Result<(), &'static str> {
    // Surrounding spaces are refused: HTTP drops them from header values, so `admin ` would
    // reach an upstream as `admin`.
    if name.is_empty() || !valet_key::valid_subject(name) || name.trim() != name {
        return Err(
            "a principal name must be 1 to 256 bytes, without control characters or \
             surrounding spaces",
        );
    }
    Ok(())
}

impl JwtCheck {
    fn new(
        config: &JwtConfig,
        skew_seconds: u64,
        roles: &BTreeMap<String, RoleConfig>,
    ) -> Result<JwtCheck, ConfigError> {
        let algorithm = match config.algorithm.to_ascii_uppercase().as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(ConfigError::new(
                    "jwt.algorithm",
                    format!("'{other}' is not one of HS256, RS256, ES256"),
                ))
            }
        };
        let key = match algorithm {
            Algorithm::HS256 => match &config.secret {
                Some(secret) if secret.len() >= 32 => DecodingKey::from_secret(secret.as_bytes()),
                Some(_) => return Err(ConfigError::new("jwt.secret", "must be at least 32 bytes")),
                None => return Err(ConfigError::new("jwt.secret", "HS256 needs a secret")),
            },
            _ => {
                let path = config.public_key_file.as_ref().ok_or_else(|| {
                    ConfigError::new("jwt.public_key_file", "RS256 and ES256 need a public key")
                })?;
                let pem = std::fs::read(path).map_err(|e| {
                    ConfigError::new("jwt.public_key_file", format!("{}: {e}", path.display()))
                })?;
                let parsed = if algorithm == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                };
                parsed.map_err(|e| {
                    ConfigError::new("jwt.public_key_file", format!("{}: {e}", path.display()))
                })?
            }
        };
        // The library checks the algorithm and the signature only; the registered claims are
        // checked by `check_registered`, which refuses a claim of the wrong type (the library
        // skips an `nbf` it cannot read as a number, and reports a string `exp` as missing).
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.iss = None;
        Ok(JwtCheck {
            key,
            algorithm,
            validation,
            skew: skew_seconds,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            principal_claim: config.principal_claim.clone(),
            roles_claim: config.roles_claim.clone(),
            default_roles: config.default_roles.clone(),
            known_roles: roles.keys().cloned().collect(),
        })
    }

    fn check(&self, token: &str) -> Result<Arc<Principal>, GateError> {
        let refused = |why: String| GateError::Unauthenticated(format!("JWT refused: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|e| refused(plain(&e)))?;
        if header.alg != self.algorithm {
            return Err(refused(format!(
                "the token is signed with {:?}; this gate accepts {:?} only",
                header.alg, self.algorithm
            )));
        }
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| refused(plain(&e)))?
            .claims;
        self.check_registered(&claims, valet_keyring::now().0)
            .map_err(refused)?;
        let name = claims
            .get(&self.principal_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                GateError::Unauthenticated(format!(
                    "JWT refused: no string claim '{}'",
                    self.principal_claim
                ))
            })?;
        check_principal(name)
            .map_err(|e| GateError::Unauthenticated(format!("JWT refused: {e}")))?;
        let mut roles = self.default_roles.clone();
        if let Some(claim) = &self.roles_claim {
            match claims.get(claim) {
                Some(Value::Array(items)) => {
                    roles.extend(items.iter().filter_map(|v| v.as_str()).map(str::to_owned))
                }
                Some(Value::String(list)) => {
                    roles.extend(list.split_whitespace().map(str::to_owned))
                }
                _ => {}
            }
        }
        roles.retain(|r| self.known_roles.contains(r));
        roles.dedup();
        Ok(Arc::new(Principal::new(name.to_owned(), roles)))
    }
}

impl JwtCheck {
    /// The registered claims (RFC 7519 section 4.1): each of the right type where present, `exp`
    /// present, the window with the skew, the configured `iss` and `aud`. A claim of the wrong
    /// type is a refusal, never skipped: a string `nbf` must not make a token valid early.
    fn check_registered(&self, claims: &Map<String, Value>, now: u64) -> Result<(), String> {
        for name in ["exp", "nbf", "iat"] {
            if claims.get(name).is_some_and(|v| numeric_date(v).is_none()) {
                return Err(format!(
                    "the `{name}` claim is not a time (a non-negative number of seconds)"
                ));
            }
        }
        for name in ["iss", "sub"] {
            if claims.get(name).is_some_and(|v| !v.is_string()) {
                return Err(format!("the `{name}` claim is not a string"));
            }
        }
        let audiences = match claims.get("aud") {
            None => None,
            Some(Value::String(one)) => Some(vec![one.as_str()]),
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(Value::as_str)
                    .collect::<Option<Vec<_>>>()
                    .ok_or("the `aud` claim is not a string or an array of strings")?,
            ),
            Some(_) => return Err("the `aud` claim is not a string or an array of strings".into()),
        };
        let skew = self.skew as f64;
        let now = now as f64;
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or("the token has no `exp` claim")?;
        if exp + skew < now {
            return Err("the token has expired".into());
        }
        if claims
            .get("nbf")
            .and_then(numeric_date)
            .is_some_and(|nbf| nbf > now + skew)
        {
            return Err("the token is not valid yet (`nbf`)".into());
        }
        if let Some(issuer) = &self.issuer {
            match claims.get("iss").and_then(Value::as_str) {
                None => return Err("the token has no `iss` claim".into()),
                Some(iss) if iss != issuer => {
                    return Err(format!("the token's issuer is not {issuer:?}"))
                }
                Some(_) => {}
            }
        }
        if let Some(audience) = &self.audience {
            match audiences {
                None => return Err("the token has no `aud` claim".into()),
                Some(list) if !list.contains(&audience.as_str()) => {
                    return Err(format!(
                        "the token's audience does not include {audience:?}"
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// A NumericDate: a JSON number of seconds since the epoch, not negative (fractions allowed).
fn numeric_date(value: &Value) -> Option<f64> {
    value.as_f64().filter(|t| *t >= 0.0)
}

/// What went wrong, in words for the client rather than the library's type names.
fn plain(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidToken => "the token is not a JWT (three base64url parts)".into(),
        ErrorKind::Base64(_) => "a part of the token is not base64url".into(),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            "the token's header or claims are not of the JWT form (JSON objects; a header \
             naming a supported algorithm; registered claims of their types)"
                .into()
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token is not signed with the algorithm this gate accepts".into()
        }
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (`nbf`)".into(),
        ErrorKind::InvalidIssuer => "the token's issuer is not the configured one".into(),
        ErrorKind::InvalidAudience => {
            "the token's audience does not include the configured one".into()
        }
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        // A bad signature, or signature bytes of the wrong form for the key.
        _ => "the signature does not verify".into(),
    }
}
