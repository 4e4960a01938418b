//! `valet get` and `valet put`: the client side of the valet key pattern.
//!
//! A transfer talks to the store directly, with a URL that carries its key in `?vk=`, or first
//! asks a gate for one (`--gate`, with an API key): the gate answers with a JSON description of
//! the store request to make (or a `307` to it), and the bytes then go straight to the store —
//! the gate never touches them, and the API key never reaches the store.
//!
//! Both directions stream: a download goes to a partial file beside the target that survives an
//! interruption and is resumed with `Range` + `If-Range` (the store's strong ETag is the blob's
//! SHA-256, so a resumed file is never a mix of two versions), then is checked against the
//! store's SHA-256 and renamed into place. An upload is hashed in a first pass and declared in
//! `x-valet-sha256`, so the store refuses bytes that changed on the way.
//!
//! Neighbours: `cli.rs` holds the `Get`/`Put` variants whose arguments are defined here;
//! `main.rs` owns the process exit, which this module chooses through [`run_get`]/[`run_put`];
//! `http.rs` holds the client, the server and usage errors and their exit codes, shared with
//! `valet key … --gate`.

mod gate;
mod get;
mod put;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Method, Url};
use sha2::{Digest, Sha256};

// Shared with `valet key … --gate`; the submodules take them from here.
use super::http::{finish, read_capped, runtime, usage, ServerError, IDLE_TIMEOUT};
use crate::cli::GateArgs;

/// Read and write buffer of the file side of a transfer.
const CHUNK: usize = 256 * 1024;

/// Exit codes shared by both commands, for their `--help`.
macro_rules! exit_codes {
    () => {
        "Exit codes: 0 done; 1 failure (file, network, checksum of a download); 2 usage error; \
3 denied (the store refused the key: 401/403 or a key_* code, or the gate refused the API key); \
4 any other error answered by the store or the gate. Server errors are printed as \
`valet: CODE: MESSAGE (HTTP STATUS)`."
    };
}

/// Where a transfer is sent: options shared by `get` and `put`. The gate's flags are the
/// key commands' ([`GateArgs`], declared once), with help that says what they mean here.
#[derive(Debug, Args)]
#[command(
    mut_arg("gate", |a| a.help(
        "Ask this gate for a key first: the location argument is then a gate path such as \
         /files/report.pdf. A location that is a full URL is used as it is"
    )),
    mut_arg("api_key", |a| a.help(
        "The API key for the gate, sent to the gate only, as `Authorization: Bearer KEY`"
    )),
    mut_arg("cacert", |a| a.help("Also trust these CA certificates (PEM) for HTTPS stores and gates"))
)]
pub struct EndpointArgs {
    #[command(flatten)]
    pub remote: GateArgs,
    /// No progress bar. (There is none anyway when stderr is not a terminal.)
    #[arg(short, long)]
    pub quiet: bool,
}

/// `valet get`.
#[derive(Debug, Args)]
#[command(after_help = GET_HELP)]
pub struct GetArgs {
    /// The store URL with its key (`http://HOST/blob/C/PATH?vk=TOKEN`), or with --gate a gate
    /// path such as /files/report.pdf.
    #[arg(value_name = "URL")]
    pub source: String,
    /// Where to write: a file, an existing folder, or `-` for stdout. Default: the last segment
    /// of the URL's path, in the current folder. An existing file is replaced.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Do not resume: discard a partial download left by an earlier attempt.
    #[arg(long)]
    pub restart: bool,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

const GET_HELP: &str = concat!(
    "Examples:
  valet get 'http://127.0.0.1:8081/blob/files/report.pdf?vk=vk1.…' -o report.pdf
  valet get 'http://127.0.0.1:8081/blob/files/log.txt?vk=vk1.…' -o - | less
  VALET_API_KEY=… valet get --gate https://gate.example.com /files/report.pdf

The download goes to .NAME.valet-part beside the target (its ETag in .NAME.valet-part.json) and is \
renamed into place once its SHA-256 matches the store's. Run the same command again after an \
interruption and it resumes where it stopped (Range + If-Range); if the blob changed meanwhile, it \
starts over.

",
    exit_codes!()
);

/// `valet put`.
#[derive(Debug, Args)]
#[command(after_help = PUT_HELP)]
pub struct PutArgs {
    /// The file to upload.
    pub file: PathBuf,
    /// The store URL with its key, or with --gate a gate path. A path ending in `/` gets the
    /// file's name appended.
    #[arg(value_name = "URL")]
    pub destination: String,
    /// The blob's content type. Default: guessed from the file name
    /// (application/octet-stream when unknown).
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Declare the expected digest (64 hex digits) instead of computing it: the store keeps
    /// the upload only if the bytes it received have this SHA-256 (else 400 checksum_mismatch).
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Only create: refuse (412 precondition_failed) if the blob exists (`If-None-Match: *`).
    #[arg(long)]
    pub if_absent: bool,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

const PUT_HELP: &str = concat!(
    "Examples:
  valet put report.pdf 'http://127.0.0.1:8081/blob/files/report.pdf?vk=vk1.…'
  valet put --if-absent --content-type text/csv data.csv 'http://127.0.0.1:8081/blob/files/?vk=vk1.…'
  VALET_API_KEY=… valet put --gate https://gate.example.com report.pdf /files/report.pdf

The file is hashed first and its SHA-256 sent as x-valet-sha256 with Content-Length and \
Content-Type; the store commits the upload only if every byte arrived intact. On success the \
store's JSON description of the blob is printed on stdout.

",
    exit_codes!()
);

/// Runs `valet get`; the exit code is one of those in its help.
pub fn run_get(args: GetArgs) -> anyhow::Result<ExitCode> {
    finish(runtime()?.block_on(get::run(args)))
}

/// Runs `valet put`; the exit code is one of those in its help.
pub fn run_put(args: PutArgs) -> anyhow::Result<ExitCode> {
    finish(runtime()?.block_on(put::run(args)))
}

/// A network error, without its URL: the URL carries a key, and its tag must not be printed.
fn net(err: reqwest::Error) -> anyhow::Error {
    super::http::network_error(err)
}

/// Sends a request, waiting at most [`IDLE_TIMEOUT`] for the response head when `bounded`
/// (an upload is not bounded: the head only comes once the whole body is sent).
async fn send(
    request: reqwest::RequestBuilder,
    shown: &str,
    bounded: bool,
) -> anyhow::Result<reqwest::Response> {
    let pending = request.send();
    let sent = if bounded {
        tokio::time::timeout(IDLE_TIMEOUT, pending)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {}s", IDLE_TIMEOUT.as_secs()))
            .with_context(|| format!("requesting {shown}"))?
    } else {
        pending.await
    };
    sent.map_err(net)
        .with_context(|| format!("requesting {shown}"))
}

/// The HTTP client (see [`super::http::client`]), trusting `--cacert` too.
fn client(endpoint: &EndpointArgs) -> anyhow::Result<reqwest::Client> {
    super::http::client(endpoint.remote.cacert.as_deref())
}

/// A progress bar on stderr, only for a person watching: never on a pipe, never with --quiet.
fn progress(quiet: bool, total: Option<u64>, action: &'static str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(
                    "{msg:>11} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{msg:>11} {spinner} {bytes} {binary_bytes_per_sec}")
                .expect("valid template"),
        ),
    };
    bar.set_message(action);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The location argument of a transfer.
enum Location {
    /// A store URL (with its key, normally).
    Store(Url),
    /// A path on the gate: the store request comes from the gate's answer.
    Gate { url: Url, api_key: String },
}

impl Location {
    /// A full URL is used as it is; a path needs a gate. `file_name` completes a location
    /// ending in `/` (uploads).
    fn parse(
        text: &str,
        endpoint: &EndpointArgs,
        file_name: Option<&str>,
    ) -> anyhow::Result<Location> {
        if text.starts_with("http://") || text.starts_with("https://") {
            let mut url = Url::parse(text).map_err(|e| usage(format!("not a URL ({e})")))?;
            complete_dir(&mut url, file_name)?;
            return Ok(Location::Store(url));
        }
        if !text.starts_with('/') {
            return Err(usage(format!(
                "{text:?} is neither an http(s) URL nor a gate path starting with /"
            )));
        }
        let Some(gate) = &endpoint.remote.gate else {
            return Err(usage(format!(
                "{text} is a gate path: give the gate with --gate URL or VALET_GATE"
            )));
        };
        let Some(api_key) = endpoint.remote.api_key.clone() else {
            return Err(usage(
                "the gate needs an API key: --api-key KEY or VALET_API_KEY",
            ));
        };
        // Appended, not joined: a gate may live under a base path (https://host/api/).
        let joined = format!("{}{text}", gate.as_str().trim_end_matches('/'));
        let mut url = Url::parse(&joined).map_err(|e| usage(format!("bad gate path ({e})")))?;
        complete_dir(&mut url, file_name)?;
        Ok(Location::Gate { url, api_key })
    }

    /// The URL whose path names the resource (for a default file name).
    fn url(&self) -> &Url {
        match self {
            Location::Store(url) | Location::Gate { url, .. } => url,
        }
    }

    /// The store request to make: the URL itself, or what the gate answers for it.
    async fn resolve(
        self,
        client: &reqwest::Client,
        method: Method,
        hints: HeaderMap,
    ) -> anyhow::Result<Target> {
        match self {
            Location::Store(url) => Ok(Target {
                url,
                method,
                token: None,
            }),
            Location::Gate { url, api_key } => {
                gate::delegate(client, url, &api_key, method, hints).await
            }
        }
    }
}

/// `…/dir/` + a file name → `…/dir/NAME`.
fn complete_dir(url: &mut Url, file_name: Option<&str>) -> anyhow::Result<()> {
    if let Some(name) = file_name.filter(|_| url.path().ends_with('/')) {
        url.path_segments_mut()
            .map_err(|()| usage("the URL cannot name a blob"))?
            .pop_if_empty()
            .push(name);
    }
    Ok(())
}

/// One request to the store.
struct Target {
    url: Url,
    method: Method,
    /// A key to send as `Authorization: Valet …`, when the URL carries none.
    token: Option<String>,
}

impl Target {
    fn request(&self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        let request = client.request(self.method.clone(), self.url.clone());
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Valet {token}")),
            None => request,
        }
    }

    /// The URL as it may be shown: any key in it redacted.
    fn shown(&self) -> String {
        redact_url(&self.url)
    }
}

/// A URL with the tag of every `vk` parameter replaced, for messages.
fn redact_url(url: &Url) -> String {
    let Some(query) = url.query() else {
        return url.to_string();
    };
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.strip_prefix("vk=") {
            Some(token) => format!("vk={}", valet_key::redact(token)),
            None => pair.to_owned(),
        })
        .collect();
    format!("{shown}?{}", pairs.join("&"))
}

/// The decoded last segment of a URL's path, if it is a usable file name.
fn last_segment(url: &Url) -> Option<String> {
    let segment = url.path_segments()?.next_back()?;
    let name = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?
        .into_owned();
    let bad = name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']);
    (!bad).then_some(name)
}

/// The SHA-256 a response says its whole blob has: `x-valet-sha256`, or else a strong ETag
/// that is a quoted SHA-256 (the store's form).
fn declared_sha256(headers: &HeaderMap) -> Option<[u8; 32]> {
    headers
        .get("x-valet-sha256")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_hex32)
        .or_else(|| {
            headers
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .and_then(etag_sha256)
        })
}

fn etag_sha256(etag: &str) -> Option<[u8; 32]> {
    parse_hex32(etag.strip_prefix('"')?.strip_suffix('"')?)
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).ok()?;
    Some(out)
}

/// Feeds a whole file to `hasher` in a streaming pass; returns its length.
async fn hash_file(path: &Path, hasher: &mut Sha256, bar: &ProgressBar) -> anyhow::Result<u64> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(len);
        }
        hasher.update(&buf[..n]);
        len += n as u64;
        bar.inc(n as u64);
    }
}

fn header_value(text: &str, what: &str) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(text).map_err(|_| usage(format!("{what} is not a valid header value")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_url_keeps_the_claims_and_drops_the_tag() {
        let url = Url::parse("http://h/blob/c/a.txt?x=1&vk=vk1.claims.tag123").unwrap();
        assert_eq!(
            redact_url(&url),
            "http://h/blob/c/a.txt?x=1&vk=vk1.claims.…"
        );
        let plain = Url::parse("http://h/blob/c/a.txt").unwrap();
        assert_eq!(redact_url(&plain), "http://h/blob/c/a.txt");
    }

    #[test]
    fn file_names_come_from_the_last_segment_only_when_safe() {
        let name = |u: &str| last_segment(&Url::parse(u).unwrap());
        assert_eq!(
            name("http://h/blob/c/caf%C3%A9%20au%20lait.jpg?vk=x").as_deref(),
            Some("café au lait.jpg")
        );
        assert_eq!(name("http://h/blob/c/"), None);
        assert_eq!(name("http://h/blob/c/a%2Fb"), None);
        assert_eq!(name("http://h/blob/c/%2E%2E"), None);
    }

    #[test]
    fn the_store_etag_is_its_sha256() {
        let hex = "ab".repeat(32);
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ETAG,
            HeaderValue::from_str(&format!("\"{hex}\"")).unwrap(),
        );
        assert_eq!(declared_sha256(&headers), Some([0xab; 32]));
        headers.insert(
            reqwest::header::ETAG,
            HeaderValue::from_str(&format!("W/\"{hex}\"")).unwrap(),
        );
        assert_eq!(
            declared_sha256(&headers),
            None,
            "a weak ETag proves nothing"
        );
    }
}
