//! `valet get`: a download streamed to a partial file beside the target, resumable, checked
//! against the store's SHA-256, then renamed into place (or streamed to stdout).
//!
//! The partial file is `.NAME.valet-part`; its sidecar `.NAME.valet-part.json` holds the ETag
//! of the version being fetched, written before the first byte, so that any interruption
//! leaves a pair that the next run can resume. The resume sends `Range: bytes=N-` with
//! `If-Range: ETAG`: the store answers `206` with the rest only if the blob is still that
//! version, and the whole blob (`200`) otherwise, which restarts the file from zero.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use indicatif::ProgressBar;
use reqwest::header::{HeaderMap, CONTENT_RANGE, ETAG, IF_RANGE, RANGE};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use super::{
    client, declared_sha256, etag_sha256, last_segment, net, progress, send, usage, GetArgs,
    Location, ServerError, Target, CHUNK, IDLE_TIMEOUT,
};

pub(super) async fn run(args: GetArgs) -> anyhow::Result<()> {
    let client = client(&args.endpoint)?;
    let location = Location::parse(&args.source, &args.endpoint, None)?;
    let output = output_path(args.output.as_deref(), location.url())?;
    let target = location
        .resolve(&client, Method::GET, HeaderMap::new())
        .await?;
    let quiet = args.endpoint.quiet;
    match output {
        None => to_stdout(&client, &target, quiet).await,
        Some(path) => {
            let partial = Partial::beside(&path)?;
            if args.restart {
                partial.discard().await?;
            }
            partial.fetch(&client, &target, quiet).await
        }
    }
}

/// `None` for stdout.
fn output_path(output: Option<&Path>, url: &Url) -> anyhow::Result<Option<PathBuf>> {
    if output == Some(Path::new("-")) {
        return Ok(None);
    }
    let name = || {
        last_segment(url).ok_or_else(|| {
            usage("cannot tell a file name from the URL's path: give one with -o FILE")
        })
    };
    Ok(Some(match output {
        Some(path) if path.is_dir() => path.join(name()?),
        Some(path) => path.to_owned(),
        None => PathBuf::from(name()?),
    }))
}

/// The error for a response that is not the one asked for.
async fn unexpected(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        ServerError::from_response(response).await.into()
    } else {
        anyhow!("the store answered an unexpected HTTP {status}")
    }
}

async fn to_stdout(client: &reqwest::Client, target: &Target, quiet: bool) -> anyhow::Result<()> {
    let response = send(target.request(client), &target.shown(), true).await?;
    if response.status() != StatusCode::OK {
        return Err(unexpected(response).await);
    }
    let expected = declared_sha256(response.headers());
    let bar = progress(quiet, response.content_length(), "downloading");
    let mut out = tokio::io::stdout();
    let mut hasher = Sha256::new();
    let received = stream_body(response, &mut out, &mut hasher, &bar, "stdout").await;
    out.flush().await.context("writing to stdout")?;
    received?;
    bar.finish_and_clear();
    let digest: [u8; 32] = hasher.finalize().into();
    if let Some(want) = expected.filter(|want| *want != digest) {
        bail!(
            "the bytes written do not match the store's SHA-256 {} (got {})",
            hex::encode(want),
            hex::encode(digest)
        );
    }
    Ok(())
}

/// Copies a response body to `out`, hashing it; returns the number of bytes.
async fn stream_body<W: AsyncWrite + Unpin>(
    mut response: reqwest::Response,
    out: &mut W,
    hasher: &mut Sha256,
    bar: &ProgressBar,
    what: &str,
) -> anyhow::Result<u64> {
    let mut written = 0u64;
    loop {
        let chunk = tokio::time::timeout(IDLE_TIMEOUT, response.chunk())
            .await
            .map_err(|_| anyhow!("the download stalled for {}s", IDLE_TIMEOUT.as_secs()))?
            .map_err(net)
            .context("downloading")?;
        let Some(chunk) = chunk else {
            return Ok(written);
        };
        hasher.update(&chunk);
        out.write_all(&chunk)
            .await
            .with_context(|| format!("writing to {what}"))?;
        written += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
}

/// What a sidecar records.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Sidecar {
    /// The strong ETag of the version the partial file holds the start of.
    etag: String,
}

/// A partial file to resume: its length, and the version it is the start of.
#[derive(Debug)]
struct Resume {
    offset: u64,
    etag: String,
}

/// The partial download of one target file and its sidecar.
#[derive(Debug)]
struct Partial {
    target: PathBuf,
    part: PathBuf,
    sidecar: PathBuf,
}

impl Partial {
    fn beside(target: &Path) -> anyhow::Result<Partial> {
        let name = target
            .file_name()
            .ok_or_else(|| usage(format!("{} is not a file name", target.display())))?
            .to_string_lossy();
        let dir = target.parent().unwrap_or(Path::new(""));
        Ok(Partial {
            target: target.to_owned(),
            part: dir.join(format!(".{name}.valet-part")),
            sidecar: dir.join(format!(".{name}.valet-part.json")),
        })
    }

    /// Downloads into the partial file, resuming it if it can, then checks and renames it.
    async fn fetch(
        &self,
        client: &reqwest::Client,
        target: &Target,
        quiet: bool,
    ) -> anyhow::Result<()> {
        let mut resume = self.resumable().await;
        loop {
            let mut request = target.request(client);
            if let Some(r) = &resume {
                request = request
                    .header(RANGE, format!("bytes={}-", r.offset))
                    .header(IF_RANGE, &r.etag);
            }
            let response = send(request, &target.shown(), true).await?;
            match (response.status(), &resume) {
                (StatusCode::OK, _) => return self.receive(response, 0, None, quiet).await,
                (StatusCode::PARTIAL_CONTENT, Some(r)) => {
                    match content_range(response.headers()) {
                        Some((start, total)) if start == r.offset => {
                            return self.receive(response, start, total, quiet).await;
                        }
                        // Not the rest we asked for: start over rather than guess.
                        _ => {}
                    }
                }
                (StatusCode::RANGE_NOT_SATISFIABLE, Some(r)) => {
                    // The version is unchanged and nothing is past our end: the partial file
                    // is already whole (an earlier run stopped before the rename).
                    if unsatisfied_size(response.headers()) == Some(r.offset) {
                        return self.complete(etag_sha256(&r.etag)).await;
                    }
                }
                _ => return Err(unexpected(response).await),
            }
            self.discard().await?;
            resume = None;
        }
    }

    /// The partial file, if a sidecar says which version it is the start of.
    async fn resumable(&self) -> Option<Resume> {
        let offset = tokio::fs::metadata(&self.part)
            .await
            .ok()
            .filter(|m| m.is_file())?
            .len();
        let sidecar: Sidecar =
            serde_json::from_slice(&tokio::fs::read(&self.sidecar).await.ok()?).ok()?;
        let strong = sidecar.etag.starts_with('"');
        (offset > 0 && strong).then_some(Resume {
            offset,
            etag: sidecar.etag,
        })
    }

    /// Removes the partial file and its sidecar.
    async fn discard(&self) -> anyhow::Result<()> {
        for path in [&self.part, &self.sidecar] {
            match tokio::fs::remove_file(path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", path.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes a response body into the partial file from `from` on (0: a fresh start).
    async fn receive(
        &self,
        response: reqwest::Response,
        from: u64,
        total: Option<u64>,
        quiet: bool,
    ) -> anyhow::Result<()> {
        let expected = declared_sha256(response.headers());
        let part = self.part.display();
        let mut hasher = Sha256::new();
        let (file, total, resumable) = if from == 0 {
            // Record the version before the first byte: an interruption from here on leaves
            // a pair the next run can resume.
            let file = tokio::fs::File::create(&self.part)
                .await
                .with_context(|| format!("creating {part}"))?;
            let resumable = self.record(response.headers()).await?;
            (file, response.content_length(), resumable)
        } else {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(&self.part)
                .await
                .with_context(|| format!("opening {part}"))?;
            file.set_len(from).await?;
            super::hash_file(&self.part, &mut hasher, &ProgressBar::hidden()).await?;
            file.seek(std::io::SeekFrom::End(0)).await?;
            (file, total, true)
        };
        let bar = progress(quiet, total, "downloading");
        bar.set_position(from);
        bar.reset_eta();
        let mut out = tokio::io::BufWriter::with_capacity(CHUNK, file);
        let received = stream_body(response, &mut out, &mut hasher, &bar, &part.to_string()).await;
        // Keep what arrived, even after a failure: it is the next run's head start.
        let flushed = out.flush().await.with_context(|| format!("writing {part}"));
        let next = if resumable {
            "run the same command again to resume"
        } else {
            "the store gave no ETag to resume with"
        };
        let size = match received {
            Ok(n) => from + n,
            Err(err) => {
                let kept = tokio::fs::metadata(&self.part).await.map_or(0, |m| m.len());
                return Err(err.context(format!(
                    "the download stopped with {kept} bytes in {part}; {next}"
                )));
            }
        };
        flushed?;
        if let Some(total) = total.filter(|t| *t != size) {
            bail!("the download stopped after {size} of {total} bytes in {part}; {next}");
        }
        out.get_ref()
            .sync_all()
            .await
            .with_context(|| format!("writing {part}"))?;
        bar.finish_and_clear();
        self.finish(hasher.finalize().into(), expected).await
    }

    /// Writes the sidecar for a fresh download, or removes it when the version has no strong
    /// ETag (such a download cannot be resumed safely). True if the download can be resumed.
    async fn record(&self, headers: &HeaderMap) -> anyhow::Result<bool> {
        let etag = headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|e| e.starts_with('"'));
        match etag {
            Some(etag) => {
                let body = serde_json::to_vec(&Sidecar {
                    etag: etag.to_owned(),
                })?;
                tokio::fs::write(&self.sidecar, body)
                    .await
                    .with_context(|| format!("writing {}", self.sidecar.display()))?;
                Ok(true)
            }
            None => match tokio::fs::remove_file(&self.sidecar).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(false),
            },
        }
    }

    /// The partial file already holds the whole blob: check it and put it in place.
    async fn complete(&self, expected: Option<[u8; 32]>) -> anyhow::Result<()> {
        let mut hasher = Sha256::new();
        super::hash_file(&self.part, &mut hasher, &ProgressBar::hidden()).await?;
        self.finish(hasher.finalize().into(), expected).await
    }

    /// Checks the digest, then renames the partial file onto the target.
    async fn finish(&self, digest: [u8; 32], expected: Option<[u8; 32]>) -> anyhow::Result<()> {
        if let Some(want) = expected.filter(|want| *want != digest) {
            self.discard().await?;
            bail!(
                "the download does not match the store's SHA-256 {} (got {}); the partial file \
                 was removed",
                hex::encode(want),
                hex::encode(digest)
            );
        }
        tokio::fs::rename(&self.part, &self.target)
            .await
            .with_context(|| {
                format!(
                    "renaming {} to {}",
                    self.part.display(),
                    self.target.display()
                )
            })?;
        let _ = tokio::fs::remove_file(&self.sidecar).await;
        Ok(())
    }
}

/// `Content-Range: bytes START-END/TOTAL` → (START, TOTAL if known).
fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.parse().ok()?, total.parse().ok()))
}

/// `Content-Range: bytes */SIZE` of a 416 → SIZE.
fn unsatisfied_size(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes */")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn content_ranges_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 100-199/200"));
        assert_eq!(content_range(&headers), Some((100, Some(200))));
        headers.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 100-199/*"));
        assert_eq!(content_range(&headers), Some((100, None)));
        headers.insert(CONTENT_RANGE, HeaderValue::from_static("bytes */200"));
        assert_eq!(unsatisfied_size(&headers), Some(200));
    }

    #[test]
    fn the_partial_file_sits_beside_the_target() {
        let p = Partial::beside(Path::new("out/report.pdf")).unwrap();
        assert_eq!(p.part, Path::new("out/.report.pdf.valet-part"));
        assert_eq!(p.sidecar, Path::new("out/.report.pdf.valet-part.json"));
        let p = Partial::beside(Path::new("report.pdf")).unwrap();
        assert_eq!(p.part, Path::new(".report.pdf.valet-part"));
    }
}
