//! Where the blobs are: which backend, and how to reach an S3 bucket (read from `--blobs`).

/// Where the store keeps blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BlobStorage {
    /// `DATA/blobs`: served with `sendfile` and the small-blob cache.
    #[default]
    Folder,
    /// An S3-compatible bucket.
    S3(S3Settings),
}

/// An S3-compatible bucket for blobs: `s3://BUCKET[/PREFIX]`, with the endpoint, region and
/// credentials given here or (for any left out) taken from the standard AWS environment
/// variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// Where under the bucket the containers are (`""`: at its root).
    pub prefix: String,
    /// The endpoint, `http(s)://HOST[:PORT]`, for storage other than AWS (Garage, say).
    pub endpoint: Option<String>,
    /// The signing region.
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key: never logged nor shown by `Debug`.
    pub secret_access_key: Option<String>,
    /// How old an unfinished multipart upload must be for the store to abort it as abandoned
    /// (left by a node that died mid-upload): [`DEFAULT_ABANDONED_AFTER`] unless set, at least
    /// [`MIN_ABANDONED_AFTER`], and longer than any upload takes.
    pub abandoned_after: std::time::Duration,
}

/// The default age at which unfinished multipart uploads are aborted: a day.
pub const DEFAULT_ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The least age accepted: an hour (a shorter one could abort a live upload of another node).
pub const MIN_ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

impl Default for S3Settings {
    fn default() -> S3Settings {
        S3Settings {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            abandoned_after: DEFAULT_ABANDONED_AFTER,
        }
    }
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
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

impl BlobStorage {
    /// Reads `--blobs`: `s3://BUCKET[/PREFIX]`, or `folder` (also the empty text) for the
    /// local folder.
    pub fn parse(text: &str) -> Result<BlobStorage, String> {
        let text = text.trim();
        if text.is_empty() || text == "folder" {
            return Ok(BlobStorage::Folder);
        }
        let Some(rest) = text.strip_prefix("s3://") else {
            return Err(format!(
                "blobs {text:?}: expected s3://BUCKET[/PREFIX] or `folder` (the local folder)"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(format!(
                "blobs {text:?}: the bucket name must be 3 to 63 lowercase letters, digits, '-' or '.'"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
            && !prefix.is_empty()
        {
            return Err(format!(
                "blobs {text:?}: the prefix must be segments separated by single '/', without . or .."
            ));
        }
        Ok(BlobStorage::S3(S3Settings {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            ..S3Settings::default()
        }))
    }
}
