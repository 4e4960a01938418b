//! `valet serve`'s settings: the embedded defaults (`defaults.toml`), then a `--config` file,
//! then `VALET_*` environment variables, then flags; each layer overrides the one before.
//! Unknown keys and bad values are refused at start, naming the setting.
//!
//! Each setting is declared once: a gate setting is a field of [`GateConfig`] (the gate's
//! crate), any other a field of [`ServerSettings`]; a flag is a field of the same name in
//! [`ServeArgs`], which is the top layer as it is. `defaults.toml` documents them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use valet_gate::config::{units, GateConfig};

use crate::cli::ServeArgs;

mod known;

use known::Known;

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

/// Everything `valet serve` reads: its own settings and the gate's, from one flat namespace
/// (`role`, `skew`, `rate_limit.per_second`, ...). Each setting is declared once, where it is
/// used: the gate's in [`GateConfig`] (read here as they are), the rest in [`ServerSettings`].
/// `Deref` reaches the latter, the former is `gate`.
#[derive(Debug)]
pub struct Settings {
    /// The process's and the store's settings.
    pub server: ServerSettings,
    /// The gate's settings. Its `store_url` is the one configured, or empty: the default
    /// (`http://STORE_ADDR`) is known only once the store listens ([`Settings::store_url`]).
    pub gate: GateConfig,
    /// Whether `store_url` was configured (an empty one is the gate's to refuse).
    store_url_given: bool,
}

impl std::ops::Deref for Settings {
    type Target = ServerSettings;

    fn deref(&self) -> &ServerSettings {
        &self.server
    }
}

/// The settings of `valet serve` that are not the gate's: which parts run, where, and what the
/// store and each connection may hold. A new one is one field here (and, to document its
/// default, a line in `defaults.toml`; for a flag, a field of the same name in
/// [`ServeArgs`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub role: Role,
    pub data: PathBuf,
    pub gate_addr: SocketAddr,
    pub store_addr: SocketAddr,
    #[serde(default)]
    pub keyring: Option<PathBuf>,
    #[serde(default, deserialize_with = "list")]
    pub cors_origins: Vec<String>,
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
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
    /// How old an unfinished multipart upload must be to be aborted as abandoned (`1d`).
    pub abandoned_after: Option<String>,
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
            .field("abandoned_after", &self.abandoned_after)
            .finish()
    }
}

/// Every top-level setting, the server's first: what an unknown key is told it could have
/// been, and which `VALET_*` variables are settings (not a client's `VALET_API_KEY`).
fn top_level_keys() -> Vec<&'static str> {
    let mut keys = known::fields_of::<ServerSettings>().to_vec();
    for key in known::fields_of::<GateConfig>() {
        if !keys.contains(key) {
            keys.push(key);
        }
    }
    keys
}

impl Settings {
    /// Reads every layer.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = &args.config {
            if !path.is_file() {
                anyhow::bail!("--config {}: no such file", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        let keys = top_level_keys();
        let env = Env::prefixed("VALET_")
            .filter(move |key| {
                let top = key.as_str().split("__").next().unwrap_or_default();
                keys.iter().any(|k| k.eq_ignore_ascii_case(top))
            })
            .split("__");
        let figment = figment.merge(env).merge(Flags(args));
        read(&figment).map_err(|e| anyhow::anyhow!("bad configuration: {e}"))
    }

    /// The store's public base URL as configured, if it was.
    pub fn store_url(&self) -> Option<&str> {
        self.store_url_given.then_some(self.gate.store_url.as_str())
    }

    /// The keyring file.
    pub fn keyring_path(&self) -> PathBuf {
        self.keyring
            .clone()
            .unwrap_or_else(|| self.data.join("keyring"))
    }

    /// Where the ledger is: `ledger`, or the SQLite file in the data folder.
    pub fn ledger_location(&self) -> String {
        ledger_location(self.ledger.as_deref(), &self.data)
    }

    /// Where the store keeps blobs, with `[s3]` filled in (what it leaves out, the store takes
    /// from the AWS environment variables).
    pub fn blob_storage(&self) -> anyhow::Result<valet_store::BlobStorage> {
        let storage = valet_store::BlobStorage::parse(&self.blobs)
            .map_err(|e| anyhow::anyhow!("bad configuration: {e}"))?;
        Ok(match storage {
            valet_store::BlobStorage::S3(bucket) => {
                let abandoned_after = match &self.s3.abandoned_after {
                    None => valet_store::DEFAULT_ABANDONED_AFTER,
                    Some(text) => humantime::parse_duration(text)
                        .ok()
                        .filter(|d| *d >= valet_store::MIN_ABANDONED_AFTER)
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "bad configuration: setting `s3.abandoned_after`: '{text}' is not \
                                 a duration of at least 1h, like \"1d\""
                            )
                        })?,
                };
                valet_store::BlobStorage::S3(valet_store::S3Settings {
                    abandoned_after,
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

/// The flags given, as the top layer, named as such in errors.
struct Flags<'a>(&'a ServeArgs);

impl figment::Provider for Flags<'_> {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("command-line flags")
    }

    fn data(&self) -> figment::Result<figment::value::Map<figment::Profile, figment::value::Dict>> {
        Serialized::defaults(self.0).data()
    }
}

/// Each struct's share of the layered settings, and every key no struct declares: every error
/// at once, each naming its key.
fn read(figment: &Figment) -> Result<Settings, String> {
    let mut errors = unknown_keys(figment);
    let server = figment.extract::<Known<ServerSettings>>();
    // `store_url` is the gate's but optional to `valet serve`: absent, it reads as empty.
    let gate = figment
        .clone()
        .join(Serialized::default("store_url", ""))
        .extract::<Known<GateConfig>>();
    errors.extend(server.as_ref().err().cloned().map(describe));
    errors.extend(gate.as_ref().err().cloned().map(describe));
    match (server, gate) {
        (Ok(Known(server)), Ok(Known(gate))) if errors.is_empty() => {
            let store_url_given = figment.contains("store_url");
            Ok(Settings {
                server,
                gate,
                store_url_given,
            })
        }
        _ => Err(errors.join("; ")),
    }
}

/// The top-level keys no settings struct declares, each refused as serde refuses one inside a
/// table: naming the keys it could have been, and where it came from.
fn unknown_keys(figment: &Figment) -> Vec<String> {
    let keys = top_level_keys();
    // Not a table at all: the structs' own extraction says so.
    let given = figment
        .extract::<BTreeMap<String, figment::value::Value>>()
        .unwrap_or_default();
    given
        .keys()
        .filter(|key| !keys.contains(&key.as_str()))
        .map(|key| {
            let whence = figment
                .find_metadata(key)
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            format!(
                "setting `{key}`: no such setting (the settings here are {}){whence}",
                keys.join(", ")
            )
        })
        .collect()
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
