//! `valet serve`'s settings: the embedded defaults (`defaults.toml`), then a `--config` file,
//! then `VALET_*` environment variables, then flags; each layer overrides the one before.
//! Unknown keys and bad values are refused at start, naming the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use valet_gate::config::{
    units, ApiKeyConfig, JwtConfig, ProxyConfig, RateLimitConfig, RoleConfig, RouteConfig,
};

use crate::cli::ServeArgs;

/// The embedded defaults: `valet serve` with no file, flag or variable.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// Which parts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The gate and the store, in one process.
    All,
    /// The gatekeeper alone.
    Gate,
    /// The data tier alone.
    Store,
}

impl Role {
    pub fn runs_gate(self) -> bool {
        matches!(self, Role::All | Role::Gate)
    }
    pub fn runs_store(self) -> bool {
        matches!(self, Role::All | Role::Store)
    }
}

/// Everything `valet serve` reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub role: Role,
    pub data: PathBuf,
    pub gate_addr: SocketAddr,
    pub store_addr: SocketAddr,
    #[serde(default)]
    pub store_url: Option<String>,
    #[serde(default)]
    pub keyring: Option<PathBuf>,
    #[serde(default, deserialize_with = "list")]
    pub cors_origins: Vec<String>,
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    #[serde(with = "units::duration")]
    pub skew: Duration,
    /// The ledger: a PostgreSQL URL or a SQLite file (default: DATA/ledger.sqlite).
    #[serde(default)]
    pub ledger: Option<String>,
    /// PostgreSQL ledger: how long a node may go without confirming its revocations are
    /// current before it refuses keyed requests.
    #[serde(with = "units::duration")]
    pub ledger_staleness: Duration,
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(with = "units::duration")]
    pub shutdown_grace: Duration,
    /// Bytes of small blobs the store keeps in memory.
    #[serde(with = "units::size")]
    pub blob_cache: u64,
    /// The store's blob file mode, octal (`"600"`, `"640"`, `"644"`).
    #[serde(deserialize_with = "octal_mode")]
    pub blob_mode: u32,
    /// Where the store keeps blobs: `folder` or `s3://BUCKET[/PREFIX]`.
    pub blobs: String,
    /// The S3 endpoint, region and credentials, for `blobs = "s3://…"`; each left out is
    /// taken from its AWS environment variable.
    #[serde(default)]
    pub s3: S3Config,
    /// How long a new connection may stay silent (and then take for its TLS handshake).
    #[serde(with = "units::duration")]
    pub first_byte_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    #[serde(with = "units::duration")]
    pub idle_timeout: Duration,
    /// How long a response may wait on a peer that takes none of its bytes.
    #[serde(with = "units::duration")]
    pub send_timeout: Duration,
    /// Connections each worker keeps open at most.
    pub max_connections: usize,
    /// HTTP/2 streams per connection.
    pub max_streams: u32,
    /// Uploads in flight per connection (store only).
    pub max_uploads_per_connection: usize,
    #[serde(default)]
    pub admin_api_key: Option<String>,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub proxy: ProxyConfig,
}

/// The top-level keys, so that unrelated `VALET_*` variables (a client's `VALET_API_KEY`)
/// are not mistaken for server settings.
const KEYS: &[&str] = &[
    "role",
    "data",
    "gate_addr",
    "store_addr",
    "store_url",
    "keyring",
    "cors_origins",
    "tls_cert",
    "tls_key",
    "skew",
    "ledger",
    "ledger_staleness",
    "workers",
    "shutdown_grace",
    "blob_cache",
    "blob_mode",
    "blobs",
    "s3",
    "first_byte_timeout",
    "idle_timeout",
    "send_timeout",
    "max_connections",
    "max_streams",
    "max_uploads_per_connection",
    "admin_api_key",
    "api_keys",
    "jwt",
    "roles",
    "routes",
    "rate_limit",
    "proxy",
];

/// The flags given on the command line, as the top layer.
#[derive(Debug, Default, Serialize)]
struct Flags {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gate_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keyring: Option<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cors_origins: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skew: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ledger: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_grace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blobs: Option<String>,
}

/// `[s3]`: how to reach the bucket of `blobs = "s3://…"`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `http(s)://HOST[:PORT]`, for S3-compatible storage other than AWS (`AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// The signing region (`AWS_REGION`).
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`; never shown.
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "(hidden)"),
            )
            .finish()
    }
}

impl Settings {
    /// Where the ledger is: `ledger`, or the SQLite file in the data folder.
    pub fn ledger_location(&self) -> String {
        ledger_location(self.ledger.as_deref(), &self.data)
    }

    /// Reads every layer.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = &args.config {
            if !path.is_file() {
                anyhow::bail!("--config {}: no such file", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        let env = Env::prefixed("VALET_")
            .filter(|key| {
                let top = key.as_str().split("__").next().unwrap_or_default();
                KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
            })
            .split("__");
        let flags = Flags {
            role: args.role,
            data: args.data.clone(),
            gate_addr: args.gate_addr,
            store_addr: args.store_addr,
            store_url: args.store_url.clone(),
            keyring: args.keyring.clone(),
            cors_origins: args.cors_origins.clone(),
            tls_cert: args.tls_cert.clone(),
            tls_key: args.tls_key.clone(),
            skew: args.skew.clone(),
            ledger: args.ledger.clone(),
            workers: args.workers,
            shutdown_grace: args.shutdown_grace.clone(),
            blobs: args.blobs.clone(),
        };
        figment
            .merge(env)
            .merge(Serialized::defaults(flags))
            .extract::<Settings>()
            .map_err(|e| anyhow::anyhow!("bad configuration: {}", describe(e)))
    }

    /// The keyring file.
    pub fn keyring_path(&self) -> PathBuf {
        self.keyring
            .clone()
            .unwrap_or_else(|| self.data.join("keyring"))
    }

    /// Where the store keeps blobs, with `[s3]` filled in (what it leaves out, the store takes
    /// from the AWS environment variables).
    pub fn blob_storage(&self) -> anyhow::Result<valet_store::BlobStorage> {
        let storage = valet_store::BlobStorage::parse(&self.blobs)
            .map_err(|e| anyhow::anyhow!("bad configuration: {e}"))?;
        Ok(match storage {
            valet_store::BlobStorage::S3(bucket) => {
                valet_store::BlobStorage::S3(valet_store::S3Settings {
                    endpoint: self.s3.endpoint.clone(),
                    region: self.s3.region.clone(),
                    access_key_id: self.s3.access_key_id.clone(),
                    secret_access_key: self.s3.secret_access_key.clone(),
                    ..bucket
                })
            }
            folder => folder,
        })
    }

    /// What each connection of either server may hold, and for how long.
    pub fn connection_limits(&self) -> valet_http::ConnectionLimits {
        valet_http::ConnectionLimits {
            first_byte_timeout: self.first_byte_timeout,
            idle_timeout: self.idle_timeout,
            send_timeout: self.send_timeout,
            max_connections: self.max_connections,
            max_streams: self.max_streams,
            max_uploads: self.max_uploads_per_connection,
        }
    }

    /// The TLS files, if both are given.
    pub fn tls(&self) -> anyhow::Result<Option<valet_http::TlsFiles>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(valet_http::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None) => Ok(None),
            _ => anyhow::bail!("bad configuration: tls_cert and tls_key go together"),
        }
    }
}

/// Every error of the extraction, each naming its key.
fn describe(errors: figment::Error) -> String {
    errors
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let what = kind_text(&e.kind);
            let whence = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{what}{whence}")
            } else {
                format!("setting `{key}`: {what}{whence}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One error in words. figment's own text nests serde's "one of `a`, `b`" in another pair of
/// backquotes, and names an unknown setting twice (the key already says which).
fn kind_text(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    let choices = |names: &[&str]| names.join(", ");
    match kind {
        Kind::UnknownVariant(found, expected) => {
            format!("'{found}' is not one of {}", choices(expected))
        }
        Kind::UnknownField(_, expected) => {
            format!(
                "no such setting (the settings here are {})",
                choices(expected)
            )
        }
        other => other.to_string(),
    }
}

/// A list given as a TOML array, or as one comma-separated string (`VALET_CORS_ORIGINS=a,b`).
fn list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

/// A file mode written in octal digits, as a string (`"0640"`, `"640"`) or, from the
/// environment (`VALET_BLOB_MODE=640`), a number whose decimal digits are the octal ones.
fn octal_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Digits(u64),
        Text(String),
    }
    let text = match Text::deserialize(d)? {
        Text::Digits(n) => n.to_string(),
        Text::Text(s) => s,
    };
    let digits = text.trim().trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "'{text}' is not a file mode in octal, like \"600\""
            ))
        })
}

/// The admin API key: the setting, else the one in `DATA/admin-api-key`, else a new one
/// written there (owner-only). Returns the key and whether it was just created.
pub fn admin_api_key(settings: &Settings) -> anyhow::Result<(String, bool)> {
    if let Some(key) = &settings.admin_api_key {
        if key.trim().len() < 16 {
            anyhow::bail!("bad configuration: setting `admin_api_key`: use at least 16 characters");
        }
        return Ok((key.trim().to_owned(), false));
    }
    let path = settings.data.join("admin-api-key");
    match std::fs::read_to_string(&path) {
        Ok(text) => return Ok((checked_key_file(&path, &text)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("reading {}: {e}", path.display()),
    }
    let (key, _) = valet_gate::new_api_key();
    write_owner_only(&path, &format!("{key}\n"))?;
    Ok((key, true))
}

/// The key in the admin key file, refusing a file others can read (as for the keyring) or one
/// too short to be a real key.
fn checked_key_file(path: &Path, text: &str) -> anyhow::Result<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{} is accessible by others (mode {mode:o}); run: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
    let key = text.trim();
    if key.len() < 16 {
        anyhow::bail!(
            "{} holds no usable key (under 16 characters)",
            path.display()
        );
    }
    Ok(key.to_owned())
}

fn write_owner_only(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// `ledger` if given, else the SQLite file in the data folder `data`.
pub fn ledger_location(ledger: Option<&str>, data: &std::path::Path) -> String {
    match ledger {
        Some(location) if !location.is_empty() => location.to_owned(),
        _ => data.join("ledger.sqlite").display().to_string(),
    }
}
