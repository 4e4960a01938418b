//! Abandoned multipart uploads: the parts a store node left in the bucket when it died in the
//! middle of an upload (it aborts every upload it refuses or fails itself, but cannot clean up
//! after its own crash). Never visible as objects, they still take space and are billed.
//!
//! Every store node lists the multipart uploads under the store's prefix once an hour
//! (`ListMultipartUploads`) and aborts those begun longer ago than
//! [`S3Settings::abandoned_after`](super::S3Settings::abandoned_after) (a day by default): far
//! longer than an upload in progress takes, so a live upload of another node is never touched.
//! Several nodes sweeping at once is harmless (an upload already aborted is simply gone).
//!
//! `object_store` has no call for listing multipart uploads, so these two requests are made
//! here: signed with `aws-sigv4` (AWS's own signer), with the credentials `object_store`
//! resolved (static keys, or the instance's role), sent with `reqwest`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use object_store::aws::AwsCredentialProvider;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

/// What RFC 3986 leaves unencoded (and SigV4 expects so): letters, digits and `-._~`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// In an object key, `/` stays: it separates the path's segments.
const KEY_PATH: &AsciiSet = &QUERY_VALUE.remove(b'/');

/// Why a sweep stopped. Logged as a warning; the next sweep tries again.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The credentials could not be had.
    #[error("cannot get credentials for the bucket")]
    Credentials(#[source] object_store::Error),
    /// The request could not be signed.
    #[error("cannot sign the request")]
    Sign(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The storage could not be reached.
    #[error("cannot reach the bucket")]
    Unreachable(#[source] reqwest::Error),
    /// The storage refused the request.
    #[error("the bucket answered {status} to {what}: {body}")]
    Refused {
        /// The request.
        what: &'static str,
        /// Its status.
        status: reqwest::StatusCode,
        /// The start of the answer's body (S3's error document).
        body: String,
    },
    /// The listing was not what S3 answers.
    #[error("cannot read the list of multipart uploads")]
    Listing(#[source] quick_xml::DeError),
}

/// What one sweep found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Multipart uploads under the prefix, of any age.
    pub pending: u64,
    /// Of those, the abandoned ones aborted.
    pub aborted: u64,
}

/// Lists and aborts the abandoned multipart uploads of one bucket and prefix.
pub(crate) struct AbandonedUploads {
    http: reqwest::Client,
    /// `http(s)://HOST[:PORT]/BUCKET`: path-style, which every S3 implementation takes.
    bucket_url: String,
    region: String,
    /// `""` or `PREFIX/`.
    prefix: String,
    credentials: AwsCredentialProvider,
}

impl std::fmt::Debug for AbandonedUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbandonedUploads")
            .field("bucket_url", &self.bucket_url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// `ListMultipartUploadsResult`, as much of it as a sweep needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListingPage {
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<PendingUpload>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PendingUpload {
    key: String,
    upload_id: String,
    initiated: String,
}

impl AbandonedUploads {
    /// For `bucket` at `endpoint` (`None`: AWS in `region`), under `prefix` (`""` or
    /// `PREFIX/`).
    pub(crate) fn new(
        endpoint: Option<&str>,
        region: &str,
        bucket: &str,
        prefix: &str,
        credentials: AwsCredentialProvider,
    ) -> AbandonedUploads {
        let endpoint = endpoint.map_or_else(
            || format!("https://s3.{region}.amazonaws.com"),
            |e| e.trim_end_matches('/').to_owned(),
        );
        AbandonedUploads {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(60))
                .build()
                .expect("a TLS-capable HTTP client"),
            bucket_url: format!("{endpoint}/{bucket}"),
            region: region.to_owned(),
            prefix: prefix.to_owned(),
            credentials,
        }
    }

    /// Aborts every multipart upload under the prefix begun before `now - older_than`.
    pub(crate) async fn sweep(
        &self,
        now: SystemTime,
        older_than: Duration,
    ) -> Result<Swept, SweepError> {
        let cutoff = now
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut swept = Swept::default();
        let mut markers: Option<(String, String)> = None;
        loop {
            let page = self.list(markers.as_ref()).await?;
            for upload in &page.uploads {
                swept.pending += 1;
                // An upload whose start cannot be read is left alone: never abort on a guess.
                if initiated(&upload.initiated).is_some_and(|begun| begun < cutoff) {
                    self.abort(upload).await?;
                    swept.aborted += 1;
                }
            }
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(key), Some(id)) => markers = Some((key, id)),
                _ => return Ok(swept),
            }
        }
    }

    async fn list(&self, markers: Option<&(String, String)>) -> Result<ListingPage, SweepError> {
        let mut url = format!("{}?uploads", self.bucket_url);
        if let Some((key, id)) = markers {
            url.push_str(&format!(
                "&key-marker={}&upload-id-marker={}",
                utf8_percent_encode(key, QUERY_VALUE),
                utf8_percent_encode(id, QUERY_VALUE)
            ));
        }
        if !self.prefix.is_empty() {
            url.push_str(&format!(
                "&prefix={}",
                utf8_percent_encode(&self.prefix, QUERY_VALUE)
            ));
        }
        let body = self
            .send(reqwest::Method::GET, &url, "ListMultipartUploads")
            .await?;
        quick_xml::de::from_str(&body).map_err(SweepError::Listing)
    }

    async fn abort(&self, upload: &PendingUpload) -> Result<(), SweepError> {
        let url = format!(
            "{}/{}?uploadId={}",
            self.bucket_url,
            utf8_percent_encode(&upload.key, KEY_PATH),
            utf8_percent_encode(&upload.upload_id, QUERY_VALUE)
        );
        match self
            .send(reqwest::Method::DELETE, &url, "AbortMultipartUpload")
            .await
        {
            // Aborted meanwhile by another node, or completed: nothing left to do.
            Err(SweepError::Refused { status, .. }) if status == reqwest::StatusCode::NOT_FOUND => {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// Sends one signed request with an empty body; the answer's body if it succeeded.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        what: &'static str,
    ) -> Result<String, SweepError> {
        let headers = self.sign(method.as_str(), url).await?;
        let mut request = self.http.request(method, url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(SweepError::Unreachable)?;
        let status = response.status();
        let body = response.text().await.map_err(SweepError::Unreachable)?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(SweepError::Refused {
                what,
                status,
                body: body.chars().take(300).collect(),
            })
        }
    }

    /// The headers that sign `method url` (SigV4, header form, S3's conventions).
    async fn sign(&self, method: &str, url: &str) -> Result<Vec<(String, String)>, SweepError> {
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(SweepError::Credentials)?;
        let identity = Credentials::new(
            &credential.key_id,
            &credential.secret_key,
            credential.token.clone(),
            None,
            "valet-store",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| SweepError::Sign(e.into()))?
            .into();
        let request =
            SignableRequest::new(method, url, std::iter::empty(), SignableBody::Bytes(&[]))
                .map_err(|e| SweepError::Sign(e.into()))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| SweepError::Sign(e.into()))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect())
    }
}

/// When an upload began, from S3's `Initiated` (`2026-12-04T18:00:00.000Z`).
fn initiated(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

/// How often each store node sweeps.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Sweeps now and then every [`SWEEP_EVERY`], logging what it aborted or why it could not.
pub(crate) async fn sweep_forever(uploads: Arc<AbandonedUploads>, older_than: Duration) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        match uploads.sweep(SystemTime::now(), older_than).await {
            Ok(Swept { aborted: 0, .. }) => {}
            Ok(swept) => tracing::info!(
                aborted = swept.aborted,
                pending = swept.pending,
                "aborted abandoned multipart uploads (begun over {} ago)",
                humantime::format_duration(older_than)
            ),
            Err(err) => tracing::warn!(
                error = %valet_http::edge::Chain(&err),
                "cannot sweep abandoned multipart uploads; trying again in an hour"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initiated_reads_s3s_timestamps_and_nothing_else() {
        let at = |s| initiated(s).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap());
        assert_eq!(
            at("2026-12-04T18:00:00.000Z"),
            Some(Duration::from_secs(1_796_407_200))
        );
        assert_eq!(
            at("2026-12-04T18:00:00Z"),
            Some(Duration::from_secs(1_796_407_200))
        );
        assert_eq!(at("yesterday"), None);
    }
}
