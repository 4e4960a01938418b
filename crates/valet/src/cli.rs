//! The command line: every command, flag and example of `valet`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::human;
pub use crate::settings::Role;

/// Valet: short-lived, narrowly scoped, signed keys for direct access to your data.
#[derive(Debug, Parser)]
#[command(
    name = "valet",
    version,
    after_help = "Examples:\n  valet serve                                   (gate on :8080, store on :8081)\n  export VALET_API_KEY=$(cat valet-data/admin-api-key)\n  valet put --gate http://127.0.0.1:8080 report.pdf /files/report.pdf\n  valet key issue --gate http://127.0.0.1:8080 --resource blob:files/report.pdf --ops read\n  valet key new-keyring --out keyring\n  valet key issue --keyring keyring --resource blob:photos/2024/ --ops read --ttl 10m\n\nExit codes: 0 success, 1 failure, 2 usage error, 3 key denied (or credentials refused: HTTP 401/403), 4 any other error answered by a server."
)]
pub struct Cli {
    /// Log format: text for people, json for log pipelines. The filter is RUST_LOG
    /// (default `info`).
    #[arg(long, global = true, env = "VALET_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// `valet serve`'s flags. Each overrides the setting of the same name from `--config`, the
/// environment (`VALET_…`) and the embedded defaults (`valet serve --print-defaults`): these
/// flags, serialized, are the top layer of the settings, so a flag for a setting is one field
/// here, named as the setting (given flags only: an absent one leaves the layers below).
#[derive(Debug, Args, serde::Serialize)]
pub struct ServeArgs {
    /// A TOML configuration file, laid over the embedded defaults.
    #[arg(long, env = "VALET_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_defaults: bool,
    /// Which part to run: all (gate and store in one process), gate or store [default: all].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The data folder: blobs, temporary uploads, the ledger, the keyring, the admin API key
    /// [default: ./valet-data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// The ledger: a PostgreSQL URL (postgres://user:password@host/db) shared by many nodes,
    /// or a SQLite file [default: DATA/ledger.sqlite].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<String>,
    /// PostgreSQL ledger: how long a node may go without confirming that its revocations are
    /// current before it refuses keyed requests [default: 3s].
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_staleness: Option<String>,
    /// Where the gate listens [default: 127.0.0.1:8080].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate_addr: Option<std::net::SocketAddr>,
    /// Where the store listens [default: 127.0.0.1:8081].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_addr: Option<std::net::SocketAddr>,
    /// The store's public base URL, put into issued URLs [default: http://STORE_ADDR].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_url: Option<String>,
    /// The keyring file [default: DATA/keyring, created on first start].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyring: Option<PathBuf>,
    /// Origins allowed to call the store from a browser (`*` for any); repeat or separate
    /// with commas.
    #[arg(long = "cors-origin")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cors_origins: Vec<String>,
    /// PEM certificate chain: serve HTTPS.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Clock-skew tolerance for key windows [default: 30s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skew: Option<String>,
    /// Worker threads, each with its own listeners [default: one per CPU].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// How long in-flight requests may finish after SIGTERM [default: 30s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<String>,
    /// Where the store keeps blobs: `folder` (DATA/blobs) or `s3://BUCKET[/PREFIX]`, with the
    /// endpoint, region and credentials from `[s3]` or AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY [default: folder].
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blobs: Option<String>,
}

/// The exit codes of the `valet key` commands that can ask a gate, for their `--help`.
macro_rules! remote_exit_codes {
    () => {
        "Server errors are printed as `valet: CODE: MESSAGE (HTTP STATUS)`. Exit codes: 0 done; \
1 failure; 2 usage error; 3 the gate refused the credentials (HTTP 401/403: unknown API key, \
policy_denied, forbidden); 4 any other error answered by the gate."
    };
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gate and the store (or one of them): keys issued, bytes served directly.
    #[command(
        after_help = "Examples:\n  valet serve                                   (gate on :8080, store on :8081, data in ./valet-data)\n  valet serve --config valet.toml\n  valet serve --role store --data /srv/valet --store-addr 0.0.0.0:8081\n  VALET_RATE_LIMIT__PER_SECOND=50 valet serve --role gate --store-url https://files.example.com"
    )]
    Serve(ServeArgs),
    /// Make, inspect, narrow and check valet keys; manage keyrings. Issue, look up and revoke
    /// keys offline (--keyring, --data) or on a running gate (--gate).
    #[command(
        subcommand,
        after_help = "Examples:\n  valet key issue --keyring keyring --resource blob:photos/2024/ --ops read --ttl 10m\n  VALET_API_KEY=… valet key issue --gate http://127.0.0.1:8080 --resource blob:files/ --ops read,list\n  valet key attenuate \"$TOKEN\" --ttl 1m --ops read\n  VALET_API_KEY=… valet key revoke --gate http://127.0.0.1:8080 5f0c…e1"
    )]
    Key(KeyCommand),
    /// Download a blob straight from the store (URL with a key, or through a gate); resumable.
    Get(crate::cmd::transfer::GetArgs),
    /// Upload a file straight to the store (URL with a key, or through a gate), checksummed.
    Put(crate::cmd::transfer::PutArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a keyring file with one active signing key (owner-only permissions).
    #[command(after_help = "Example:\n  valet key new-keyring --out /etc/valet/keyring")]
    NewKeyring {
        /// Where to write the keyring. Refuses to overwrite an existing file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a new active signing key; the previous one stays to verify what it signed. On one
    /// node; with several, `stage` then `promote` (docs/DEPLOYMENT.md).
    #[command(after_help = "Example:\n  valet key rotate --keyring keyring")]
    Rotate {
        /// The keyring file.
        #[arg(long, env = "VALET_KEYRING")]
        keyring: PathBuf,
    },
    /// Add a signing key that verifies but signs nothing until promoted: with several nodes,
    /// copy the file to every one before promoting it (docs/DEPLOYMENT.md).
    #[command(after_help = "Example:\n  valet key stage --keyring keyring")]
    Stage {
        /// The keyring file.
        #[arg(long, env = "VALET_KEYRING")]
        keyring: PathBuf,
    },
    /// Make a signing key (a staged one) the one that signs; the previous one verifies only.
    #[command(after_help = "Example:\n  valet key promote --keyring keyring k2")]
    Promote {
        /// The keyring file.
        #[arg(long, env = "VALET_KEYRING")]
        keyring: PathBuf,
        /// The signing key's id, as shown by `valet key list`.
        id: String,
    },
    /// Remove a verify-only signing key: every key it signed stops working.
    #[command(after_help = "Example:\n  valet key retire --keyring keyring k1")]
    Retire {
        /// The keyring file.
        #[arg(long, env = "VALET_KEYRING")]
        keyring: PathBuf,
        /// The signing key's id, as shown by `valet key list`.
        id: String,
    },
    /// List a keyring's signing keys: ids, states, dates and fingerprints (never secrets), to
    /// compare the copies on several nodes.
    #[command(after_help = "Example:\n  valet key list --keyring keyring")]
    List {
        /// The keyring file.
        #[arg(long, env = "VALET_KEYRING")]
        keyring: PathBuf,
    },
    /// Issue a key, signed offline with a keyring or by a running gate; prints the token alone
    /// on stdout.
    #[command(after_help = concat!(
        "Examples:\n  valet key issue --keyring keyring --resource blob:photos/2024/cat.jpg --ops read --ttl 10m --filename cat.jpg\n  VALET_API_KEY=… valet key issue --gate http://127.0.0.1:8080 --resource blob:files/docs/ --ops read,list --ttl 1h\n\n",
        "With --gate, the gate issues the key (POST /v1/keys) to the API key's principal, within its roles' policy, and records it, so that `valet key status|revoke --gate` find it. ",
        remote_exit_codes!()
    ))]
    Issue(IssueArgs),
    /// Print a token's claims and caveats as JSON. Needs no secret.
    #[command(after_help = "Example:\n  valet key inspect \"$TOKEN\"")]
    Inspect {
        /// The token, or `-` to read it from stdin.
        token: String,
    },
    /// Narrow a token by appending a caveat; prints the new token. Needs no secret.
    #[command(
        after_help = "Example:\n  valet key attenuate \"$TOKEN\" --ttl 1m --ops read --resource blob:photos/2024/jan/"
    )]
    Attenuate(AttenuateArgs),
    /// Revoke a key, every key of a subject issued before a time, or every key issued before a
    /// time: in the ledger of a data folder, or through a running gate (--gate). A running store
    /// sees it at its next request.
    #[command(after_help = concat!(
        "Examples:\n  valet key revoke --data ./valet-data 5f0c…e1   (a key id, or the token itself)\n  valet key revoke --data ./valet-data --subject alice --before now\n  valet key revoke --data ./valet-data --before 2026-11-27T12:00:00Z\n  VALET_API_KEY=… valet key revoke --gate http://127.0.0.1:8080 5f0c…e1\n  VALET_API_KEY=… valet key revoke --gate http://127.0.0.1:8080 --subject alice --before now\n\n",
        "With --gate: DELETE /v1/keys/ID, or POST /v1/revocations. ",
        remote_exit_codes!()
    ))]
    Revoke(RevokeArgs),
    /// Show a key's uses and whether it is revoked: from the ledger of a data folder, or from a
    /// running gate (--gate), which also shows its scope, limits and expiry.
    #[command(after_help = concat!(
        "Examples:\n  valet key status --data ./valet-data 5f0c…e1\n  VALET_API_KEY=… valet key status --gate http://127.0.0.1:8080 5f0c…e1\n\n",
        "With --gate: GET /v1/keys/ID. ",
        remote_exit_codes!()
    ))]
    Status {
        /// The data folder whose ledger to read.
        #[arg(
            long,
            env = "VALET_DATA",
            default_value = "./valet-data",
            conflicts_with = "gate"
        )]
        data: PathBuf,
        /// The ledger to read, if not DATA/ledger.sqlite: a PostgreSQL URL or a SQLite file.
        #[arg(long, env = "VALET_LEDGER", conflicts_with = "gate")]
        ledger: Option<String>,
        /// The key id (32 hex digits) or the token.
        key: String,
        #[command(flatten)]
        remote: GateArgs,
    },
    /// Check a token for one request: exit 0 and print the grant as JSON, or exit 3 and print
    /// the denial code.
    #[command(
        after_help = "Example:\n  valet key verify --keyring keyring --op read --resource blob:photos/2024/cat.jpg \"$TOKEN\""
    )]
    Verify(VerifyArgs),
}

/// Limits shared by `issue` and `attenuate`.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Largest upload accepted, e.g. 10MiB.
    #[arg(long, value_parser = human::size)]
    pub max_bytes: Option<u64>,
    /// How many requests the key may be used for.
    #[arg(long)]
    pub max_uses: Option<u64>,
    /// Content type uploads must have: `image/png` or `image/*`.
    #[arg(long)]
    pub content_type: Option<String>,
    /// Client addresses allowed (CIDR or single address); repeat or separate with commas.
    #[arg(long = "ip")]
    pub ips: Vec<String>,
}

/// A running gate to ask, and how: the one declaration of `--gate`, `--api-key` and `--cacert`,
/// flattened into the key commands and (with help of their own) into `get` and `put`.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// Ask this running gate (its key API, /v1/keys) instead of working offline.
    #[arg(long, env = "VALET_GATE", value_name = "URL")]
    pub gate: Option<reqwest::Url>,
    /// The API key for the gate, sent as `Authorization: Bearer KEY` (`valet serve` writes the
    /// admin's to DATA/admin-api-key).
    #[arg(
        long,
        env = "VALET_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// Also trust these CA certificates (PEM) for an HTTPS gate.
    #[arg(long, env = "VALET_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The keyring file whose active key signs (offline; not with --gate).
    #[arg(
        long,
        env = "VALET_KEYRING",
        required_unless_present = "gate",
        conflicts_with = "gate"
    )]
    pub keyring: Option<PathBuf>,
    #[command(flatten)]
    pub remote: GateArgs,
    /// What the key grants: blob:CONTAINER (or blob:CONTAINER/), blob:CONTAINER/PREFIX/,
    /// blob:CONTAINER/PATH, table:NAME[/PARTITION[/ROW or FROM..TO]], queue:NAME.
    #[arg(long)]
    pub resource: String,
    /// Operations, comma-separated. Blobs take read, write, create, delete, and list on a
    /// container or prefix; tables the same and update (list not on one row); queues enqueue,
    /// dequeue, peek, update, delete.
    #[arg(long)]
    pub ops: String,
    /// How long the key lives, e.g. 90s, 10m, 1h [default: 10m; with --gate, 10m or the role's
    /// max_ttl if shorter].
    #[arg(long, value_parser = human::duration)]
    pub ttl: Option<Duration>,
    /// Who the key is issued to (offline; a gate issues to the API key's principal).
    #[arg(long, conflicts_with = "gate")]
    pub subject: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// File name for downloads (Content-Disposition).
    #[arg(long)]
    pub filename: Option<String>,
    /// Where the store sends events about this key's uses (offline only).
    #[arg(long, conflicts_with = "gate")]
    pub event_target: Option<String>,
    /// Print {"id", "token", "expires_at"} as JSON instead of the token alone (with --gate,
    /// also the store "url" that carries the key and its "method").
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AttenuateArgs {
    /// The token to narrow, or `-` to read it from stdin.
    pub token: String,
    /// A shorter life, counted from now.
    #[arg(long, value_parser = human::duration)]
    pub ttl: Option<Duration>,
    /// Make the key valid only after this delay from now.
    #[arg(long, value_parser = human::duration)]
    pub start_in: Option<Duration>,
    /// Fewer operations.
    #[arg(long)]
    pub ops: Option<String>,
    /// A narrower scope.
    #[arg(long)]
    pub resource: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The keyring file.
    #[arg(long, env = "VALET_KEYRING")]
    pub keyring: PathBuf,
    /// The operation requested.
    #[arg(long)]
    pub op: String,
    /// The resource requested, e.g. blob:photos/2024/cat.jpg.
    #[arg(long)]
    pub resource: String,
    /// The client's address.
    #[arg(long)]
    pub ip: Option<std::net::IpAddr>,
    /// Clock-skew tolerance.
    #[arg(long, value_parser = human::duration, default_value = "30s")]
    pub skew: Duration,
    /// The token, or `-` to read it from stdin.
    pub token: String,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The data folder whose ledger to write.
    #[arg(
        long,
        env = "VALET_DATA",
        default_value = "./valet-data",
        conflicts_with = "gate"
    )]
    pub data: PathBuf,
    /// The ledger to write, if not DATA/ledger.sqlite: a PostgreSQL URL or a SQLite file.
    #[arg(long, env = "VALET_LEDGER", conflicts_with = "gate")]
    pub ledger: Option<String>,
    #[command(flatten)]
    pub remote: GateArgs,
    /// The key to revoke: its id (32 hex digits) or the token itself.
    #[arg(conflicts_with_all = ["subject", "before"])]
    pub key: Option<String>,
    /// Revoke the keys of this subject (with --before).
    #[arg(long, requires = "before")]
    pub subject: Option<String>,
    /// Revoke keys issued before this time: RFC 3339 (2026-11-27T12:00:00Z) or `now`.
    #[arg(long)]
    pub before: Option<String>,
}
