//! What every command that talks to a gate or a store shares: the HTTP client, the I/O
//! runtime, the errors a server answers and the usage errors, and the exit codes they map to.
//!
//! Users: `transfer` (`valet get`, `valet put`) and `key::remote` (`valet key … --gate`).
//! A server's error is printed as `valet: CODE: MESSAGE (HTTP STATUS)` by [`finish`].

use std::fmt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use reqwest::StatusCode;

use crate::exit;

/// Exit code when a server answered with an error that is not a denial (`not_found`,
/// `precondition_failed`, `checksum_mismatch`, `too_large`, `bad_request`, a 5xx …).
pub const SERVER_ERROR: u8 = 4;
/// Exit code for a command line that parses but cannot be carried out as written (clap's own
/// usage errors use the same code).
pub const USAGE: u8 = 2;

/// How long a response head, or the next piece of a body, may keep us waiting.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest error body read from a server; the rest is not worth holding.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A single-threaded runtime for one command's requests.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the I/O runtime")
}

/// Errors the server answered, and usage mistakes, get their own exit codes and are printed
/// here; everything else goes back to `main` (exit 1).
pub fn finish(outcome: anyhow::Result<()>) -> anyhow::Result<ExitCode> {
    let Err(err) = outcome else {
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(server) = err.downcast_ref::<ServerError>() {
        eprintln!("valet: {server}");
        return Ok(ExitCode::from(server.exit_code()));
    }
    if let Some(usage) = err.downcast_ref::<UsageError>() {
        eprintln!("valet: {usage}");
        return Ok(ExitCode::from(USAGE));
    }
    Err(err)
}

/// The HTTP client: no automatic redirects (a redirect from the gate is followed by hand, so
/// that the API key never travels to the store), no overall timeout (transfers can be long),
/// and the extra CA certificates of `cacert`, if given.
pub fn client(cacert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("valet/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = cacert {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} is not a PEM certificate bundle", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().context("setting up the HTTP client")
}

/// A request that got no answer, in words: what failed, and the innermost cause (the OS's
/// error, or the TLS library's), not the client library's layers (`error sending request:
/// client error (Connect): tcp connect error: …`). Without the URL: it may carry a key.
pub fn network_error(err: reqwest::Error) -> anyhow::Error {
    let err = err.without_url();
    let what = if err.is_connect() {
        "cannot connect"
    } else if err.is_timeout() {
        "no answer in time"
    } else if err.is_body() || err.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    let mut cause: &dyn std::error::Error = &err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    anyhow::anyhow!("{what}: {cause}")
}

/// An error answered by the store or the gate.
#[derive(Debug)]
pub struct ServerError {
    status: StatusCode,
    /// The stable code from `{"error": {"code", "message"}}`, when the body had one.
    code: Option<String>,
    message: String,
}

impl ServerError {
    /// Reads the JSON error body of a failed response (or makes do without one).
    pub async fn from_response(response: reqwest::Response) -> ServerError {
        let status = response.status();
        let body = read_capped(response, MAX_ERROR_BODY).await;
        ServerError::from_body(status, &body)
    }

    fn from_body(status: StatusCode, body: &[u8]) -> ServerError {
        #[derive(serde::Deserialize)]
        struct Body {
            error: Detail,
        }
        #[derive(serde::Deserialize)]
        struct Detail {
            code: String,
            #[serde(default)]
            message: String,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(Body { error }) => ServerError {
                status,
                code: Some(error.code),
                message: error.message,
            },
            Err(_) => ServerError {
                status,
                code: None,
                message: format!(
                    "the server answered {}",
                    status.canonical_reason().unwrap_or("an error")
                ),
            },
        }
    }

    /// A denial is a 401 or 403, or a `key_*` code (a malformed key is a 400).
    fn is_denial(&self) -> bool {
        matches!(
            self.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) || self.code.as_deref().is_some_and(|c| c.starts_with("key_"))
    }

    fn exit_code(&self) -> u8 {
        if self.is_denial() {
            exit::DENIED
        } else {
            SERVER_ERROR
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(
                f,
                "{code}: {} (HTTP {})",
                self.message,
                self.status.as_u16()
            ),
            None => write!(f, "{} (HTTP {})", self.message, self.status.as_u16()),
        }
    }
}

impl std::error::Error for ServerError {}

/// A command line that clap accepted but that cannot be carried out as written.
#[derive(Debug)]
pub struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error: printed, exit 2.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// At most `cap` bytes of a response body; a failure to read is an empty body.
pub async fn read_capped(mut response: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(IDLE_TIMEOUT, response.chunk()).await {
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == cap {
            break;
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_exit_3_and_other_server_errors_exit_4() {
        let err = |status: u16, body: &str| {
            ServerError::from_body(StatusCode::from_u16(status).unwrap(), body.as_bytes())
        };
        let denied = err(403, r#"{"error":{"code":"out_of_scope","message":"no"}}"#);
        assert_eq!(denied.exit_code(), exit::DENIED);
        assert_eq!(denied.to_string(), "out_of_scope: no (HTTP 403)");
        let malformed = err(400, r#"{"error":{"code":"key_malformed","message":"bad"}}"#);
        assert_eq!(malformed.exit_code(), exit::DENIED);
        let missing = err(404, r#"{"error":{"code":"not_found","message":"none"}}"#);
        assert_eq!(missing.exit_code(), SERVER_ERROR);
        let opaque = err(502, "<html>");
        assert_eq!(opaque.exit_code(), SERVER_ERROR);
        assert_eq!(
            opaque.to_string(),
            "the server answered Bad Gateway (HTTP 502)"
        );
    }
}
