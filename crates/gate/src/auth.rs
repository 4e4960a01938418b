//! Who is asking: API keys and JWT bearer tokens, both in `Authorization: Bearer ...`.
//!
//! API keys are stored as their SHA-256 only, so a leaked configuration or data folder does not
//! leak a usable credential; the keys are 256 random bits, so a fast hash is enough (there is
//! nothing to brute-force). JWTs are checked for signature, `exp`, `nbf`, and the configured
//! `iss` and `aud`, with the gate's clock-skew tolerance.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
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
    validation: Validation,
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
        let mut validation = Validation::new(algorithm);
        validation.leeway = skew_seconds;
        validation.validate_nbf = true;
        // A configured issuer or audience must be present, not merely right when present.
        let mut required = vec!["exp"];
        required.extend(config.issuer.as_ref().map(|_| "iss"));
        required.extend(config.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        match &config.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(JwtCheck {
            key,
            validation,
            principal_claim: config.principal_claim.clone(),
            roles_claim: config.roles_claim.clone(),
            default_roles: config.default_roles.clone(),
            known_roles: roles.keys().cloned().collect(),
        })
    }

    fn check(&self, token: &str) -> Result<Arc<Principal>, GateError> {
        let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| GateError::Unauthenticated(format!("JWT refused: {e}")))?
        .claims;
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
                Some(serde_json::Value::Array(items)) => {
                    roles.extend(items.iter().filter_map(|v| v.as_str()).map(str::to_owned))
                }
                Some(serde_json::Value::String(list)) => {
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
