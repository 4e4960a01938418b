//! The gate's settings as written in `valet.toml` (or the environment), before validation.
//!
//! Everything here is plain data; [`crate::Gate::new`] checks it and compiles it into the
//! types that answer requests, refusing a bad setting with a [`ConfigError`] that names it.
//!
//! This is the one declaration of the gate's settings: `valet serve` reads [`GateConfig`]
//! from its layered configuration as it is (top-level keys shared with the server's own), so a
//! new gate setting is one field here, plus its line in `valet`'s `defaults.toml` if its
//! default is worth showing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The gate's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// The store's public base URL, put into issued URLs, e.g. `https://files.example.com`.
    pub store_url: String,
    /// Clock-skew tolerance, for JWT windows and for checking keys presented to `complete`.
    #[serde(with = "units::duration", default = "defaults::skew")]
    pub skew: Duration,
    /// API keys, stored as the SHA-256 of the key.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// JWT bearer tokens, if accepted.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// What each role may obtain.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
    /// The route table: delegate or proxy.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Per-principal rate limit on issuance and proxying.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Defaults for proxy routes.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// Whether clients reach the gate over HTTPS (for `X-Forwarded-Proto`).
    #[serde(skip)]
    pub https: bool,
}

/// One API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who the key authenticates.
    pub principal: String,
    /// The principal's roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Hex SHA-256 of the key (see docs/GATE.md for making one); the key itself is never stored.
    pub sha256: String,
}

/// JWT bearer tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256, RS256 or ES256.
    pub algorithm: String,
    /// The shared secret, for HS256.
    #[serde(default)]
    pub secret: Option<String>,
    /// A PEM public key file, for RS256 and ES256.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// The required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The required `aud`.
    #[serde(default)]
    pub audience: Option<String>,
    /// The claim that names the principal.
    #[serde(default = "defaults::principal_claim")]
    pub principal_claim: String,
    /// The claim that lists roles (an array, or a space-separated string).
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Roles given to every JWT principal.
    #[serde(default)]
    pub default_roles: Vec<String>,
}

/// What a role may obtain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Resource patterns such as `blob:users/{sub}/`, or `*` for any resource.
    pub resources: Vec<String>,
    /// Operations allowed.
    pub ops: Vec<String>,
    /// The longest key lifetime.
    #[serde(with = "units::duration", default = "defaults::max_ttl")]
    pub max_ttl: Duration,
    /// The largest upload a key may allow.
    #[serde(with = "units::opt_size", default)]
    pub max_bytes: Option<u64>,
    /// The most uses a key may allow.
    #[serde(default)]
    pub max_uses: Option<u64>,
    /// Whether the role may revoke keys it did not obtain, and revoke by subject or time.
    #[serde(default)]
    pub may_revoke: bool,
}

/// One route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The path pattern: literal segments, `{name}` for one segment, `{*name}` for the rest.
    pub path: String,
    /// Methods matched (default: GET, HEAD, PUT, DELETE for delegate; any for proxy).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Delegate: the resource template, e.g. `blob:files/{path}`.
    #[serde(default)]
    pub delegate: Option<String>,
    /// Proxy: the upstream URL, e.g. `http://127.0.0.1:9000`.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Roles allowed on this route; empty for any authenticated principal.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Delegate: lifetime of the minted key.
    #[serde(with = "units::opt_duration", default)]
    pub ttl: Option<Duration>,
    /// Delegate: a `PUT` gets the `create` operation (refuses to overwrite) instead of `write`.
    #[serde(default)]
    pub create_only: bool,
    /// Proxy: the largest request body.
    #[serde(with = "units::opt_size", default)]
    pub max_body: Option<u64>,
    /// Proxy: how long the upstream may take to answer.
    #[serde(with = "units::opt_duration", default)]
    pub timeout: Option<Duration>,
}

/// Per-principal rate limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second per principal; 0 turns the limit off.
    #[serde(default = "defaults::per_second")]
    pub per_second: u32,
    /// Requests allowed in a burst.
    #[serde(default = "defaults::burst")]
    pub burst: u32,
    /// Sustained revocations per second per principal (`DELETE /v1/keys/ID`, `complete`,
    /// `POST /v1/revocations`): each is a durable ledger write, so they have their own, much
    /// smaller bucket; 0 turns it off.
    #[serde(default = "defaults::revocations_per_second")]
    pub revocations_per_second: u32,
    /// Revocations allowed in a burst.
    #[serde(default = "defaults::revocations_burst")]
    pub revocations_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_second: defaults::per_second(),
            burst: defaults::burst(),
            revocations_per_second: defaults::revocations_per_second(),
            revocations_burst: defaults::revocations_burst(),
        }
    }
}

/// Defaults of proxy routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The header that carries the authenticated principal upstream. Any such header sent by
    /// the client is removed.
    #[serde(default = "defaults::principal_header")]
    pub principal_header: String,
    /// The header that carries the principal's roles upstream (comma-separated).
    #[serde(default = "defaults::roles_header")]
    pub roles_header: String,
    /// The largest request body, unless a route says otherwise.
    #[serde(with = "units::size", default = "defaults::max_body")]
    pub max_body: u64,
    /// How long the upstream may take to send its response head.
    #[serde(with = "units::duration", default = "defaults::timeout")]
    pub timeout: Duration,
    /// A PEM file of certificates to trust for `https://` upstreams besides the system's roots:
    /// a private CA's, typically.
    #[serde(default)]
    pub upstream_ca: Option<std::path::PathBuf>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            principal_header: defaults::principal_header(),
            roles_header: defaults::roles_header(),
            max_body: defaults::max_body(),
            timeout: defaults::timeout(),
            upstream_ca: None,
        }
    }
}

mod defaults {
    use std::time::Duration;

    pub fn skew() -> Duration {
        Duration::from_secs(valet_key::DEFAULT_SKEW_SECONDS)
    }
    pub fn max_ttl() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn principal_claim() -> String {
        "sub".into()
    }
    pub fn per_second() -> u32 {
        200
    }
    pub fn burst() -> u32 {
        400
    }
    pub fn revocations_per_second() -> u32 {
        10
    }
    pub fn revocations_burst() -> u32 {
        100
    }
    pub fn principal_header() -> String {
        "x-valet-principal".into()
    }
    pub fn roles_header() -> String {
        "x-valet-roles".into()
    }
    pub fn max_body() -> u64 {
        10 << 20
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(30)
    }
}

/// A setting that cannot be used, named as in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting `{setting}`: {reason}")]
pub struct ConfigError {
    /// Where: `routes[0].path`, `roles.admin.ops`, ...
    pub setting: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(setting: impl fmt::Display, reason: impl fmt::Display) -> ConfigError {
        ConfigError {
            setting: setting.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Durations (`90s`, `10m`, or a number of seconds) and sizes (`10MiB`, or a number of bytes)
/// as people write them.
pub mod units {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged, expecting = "expected a number or a string")]
    enum Human {
        Number(u64),
        Text(String),
    }

    fn parse_duration(h: Human) -> Result<std::time::Duration, String> {
        match h {
            Human::Number(n) => Ok(std::time::Duration::from_secs(n)),
            Human::Text(t) => humantime::parse_duration(&t)
                .map_err(|e| format!("'{t}' is not a duration like 90s or 10m: {e}")),
        }
    }

    fn parse_size(h: Human) -> Result<u64, String> {
        match h {
            Human::Number(n) => Ok(n),
            Human::Text(t) => parse_size::parse_size(&t)
                .map_err(|e| format!("'{t}' is not a size like 10MiB: {e}")),
        }
    }

    /// A required duration.
    pub mod duration {
        use super::*;
        /// Reads `90s`, `10m` or a number of seconds.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<std::time::Duration, D::Error> {
            parse_duration(Human::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }

    /// An optional duration.
    pub mod opt_duration {
        use super::*;
        /// Reads `90s`, `10m` or a number of seconds.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<std::time::Duration>, D::Error> {
            Option::<Human>::deserialize(d)?
                .map(parse_duration)
                .transpose()
                .map_err(serde::de::Error::custom)
        }
    }

    /// A required size.
    pub mod size {
        use super::*;
        /// Reads `10MiB` or a number of bytes.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
            parse_size(Human::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }

    /// An optional size.
    pub mod opt_size {
        use super::*;
        /// Reads `10MiB` or a number of bytes.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            Option::<Human>::deserialize(d)?
                .map(parse_size)
                .transpose()
                .map_err(serde::de::Error::custom)
        }
    }
}
