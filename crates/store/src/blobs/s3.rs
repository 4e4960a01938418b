//! Blobs in an S3-compatible bucket (`--blobs s3://BUCKET[/PREFIX]`), through `object_store`.
//!
//! Each blob is one object, `PREFIX/CONTAINER/PATH`, with its content type as the object's
//! `Content-Type` and its SHA-256 (the store's strong ETag) as user metadata
//! (`x-amz-meta-valet-sha256`): ordinary objects that other S3 tools can read.
//!
//! # Writes
//!
//! S3 fixes an object's metadata when its upload starts, and the SHA-256 is in the metadata.
//! - If the client declared it (`x-valet-sha256`) and the body may be larger than one part,
//!   the upload streams through: a multipart upload starts at once, each 8 MiB part is sent as
//!   it fills (two at a time, while the next is read), and the digest is checked at the end
//!   ([`S3Upload::Streamed`]); nothing touches the node's disk, memory holds three parts.
//! - Otherwise the SHA-256 is known only at the end, so the body is first received into a
//!   temporary file of the node (`DATA/tmp/`, hashed on the way, cut at the key's cap, checked
//!   against `Content-MD5`), and only a body that passed is sent on ([`S3Upload::Staged`]): in
//!   one `PUT` if it is small, otherwise as a multipart upload from the file, one part in
//!   memory at a time.
//!
//! The object becomes visible at exactly one point, the `PUT` or the multipart `complete`,
//! taken under the commit lock (the ledger's name locks) after the current version was read and the
//! conditions held; anything else (a digest or the cap, a condition, a collision, a failure, a
//! cancelled request) aborts the multipart upload, so nothing partial is ever visible and no
//! parts are kept.
//!
//! # Reads
//!
//! A `HEAD` gives the metadata the conditions and the range are decided on; the bytes then come
//! from a `GET` of that version only (`If-Match` on the object's S3 ETag), streamed to the
//! client as they arrive.

use std::fs::{self, DirBuilder, File};
use std::os::unix::fs::{DirBuilderExt, FileExt as _};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, RetryConfig,
};
use valet_key::{BlobPath, Name};

use super::abandoned::{AbandonedUploads, SweepError, Swept};
use super::conditional::{Preconditions, Verdict};
use super::listing::{Listing, ListingItem};
use super::storage::MIN_ABANDONED_AFTER;
use super::upload::{Digests, Upload};
use super::S3Settings;
use super::{BlobBackend, BlobData, BlobError, BlobMeta, CommitMode, Committed, UploadSpec};
use valet_ledger::NameLocks;

/// The user metadata that holds a blob's SHA-256 (hex).
const SHA256_METADATA: &str = "valet-sha256";
/// The size of a multipart upload's parts, and the largest body sent in one `PUT`: the memory
/// one upload holds while it is sent on (S3 allows parts from 5 MiB, and 10 000 of them).
const PART_SIZE: u64 = 8 * 1024 * 1024;
/// Parts of one upload sent at once while the next is gathered: memory per upload is at most
/// this many parts plus one.
const PARTS_IN_FLIGHT: usize = 2;
/// The most parts S3 accepts in one upload.
const MAX_PARTS: u64 = 10_000;
/// The longest object name S3 takes, in bytes.
const MAX_KEY_LEN: usize = 1024;
/// Listed objects whose metadata is read at once.
const LISTING_HEADS: usize = 16;

/// A bucket (and prefix) holding every container.
#[derive(Debug)]
pub struct S3Blobs {
    bucket: Arc<AmazonS3>,
    /// `""` or `PREFIX/`.
    prefix: String,
    tmp: PathBuf,
    file_mode: u32,
    /// Serialise the check-and-commit of writers of one name, on every node that shares the
    /// ledger (S3's own conditional writes cannot: Garage 2.5 ignores them).
    locks: Arc<dyn NameLocks>,
    /// Finds and aborts the multipart uploads of nodes that died mid-upload.
    abandoned: Arc<AbandonedUploads>,
    abandoned_after: Duration,
}

impl S3Blobs {
    /// Connects to the bucket of `settings` (not checked until the first request) and opens
    /// `DATA/tmp` for uploads on their way, removing what a crash left there. Commits take
    /// `locks` (the ledger's: [`valet_ledger::Ledger::name_locks`]), which must be shared by
    /// every store node writing this bucket for create-only and `If-Match` to be exact.
    pub fn open(
        settings: &S3Settings,
        data_dir: &FsPath,
        file_mode: u32,
        locks: Arc<dyn NameLocks>,
    ) -> Result<S3Blobs, BlobError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_retry(RetryConfig {
                // Fail fast when the storage is down: the client hears 503 in seconds, not
                // after object_store's default three minutes of retries.
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    // A large download streams for as long as the client reads it.
                    .with_timeout_disabled(),
            );
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &settings.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let plain_http = settings
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
            || std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| e.starts_with("http://"));
        if settings.abandoned_after < MIN_ABANDONED_AFTER {
            return Err(BlobError::Internal(format!(
                "s3 abandoned_after must be at least {} (a shorter one could abort a live upload)",
                humantime::format_duration(MIN_ABANDONED_AFTER)
            )));
        }
        let builder = builder.with_allow_http(plain_http);
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        let region = builder
            .get_config_value(&AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".to_owned());
        let bucket = builder.build().map_err(BlobError::Remote)?;
        let tmp = data_dir.join("tmp");
        let dir_mode = super::folder::folder_mode(file_mode);
        DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(&tmp)
            .map_err(BlobError::from_io)?;
        for entry in fs::read_dir(&tmp).map_err(BlobError::from_io)? {
            let _ = fs::remove_file(entry.map_err(BlobError::from_io)?.path());
        }
        let prefix = match settings.prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let abandoned = Arc::new(AbandonedUploads::new(
            endpoint.as_deref(),
            &region,
            &settings.bucket,
            &prefix,
            bucket.credentials().clone(),
        ));
        Ok(S3Blobs {
            bucket: Arc::new(bucket),
            abandoned,
            abandoned_after: settings.abandoned_after,
            prefix,
            tmp,
            file_mode,
            locks,
        })
    }

    /// Aborts the multipart uploads under the prefix begun more than `older_than` ago (see
    /// [`super::abandoned`]).
    pub async fn sweep_abandoned_uploads(&self, older_than: Duration) -> Result<Swept, SweepError> {
        self.abandoned.sweep(SystemTime::now(), older_than).await
    }

    /// Sweeps abandoned multipart uploads once an hour, for as long as it is polled.
    pub async fn sweep_abandoned_uploads_forever(&self) {
        super::abandoned::sweep_forever(self.abandoned.clone(), self.abandoned_after).await
    }

    /// The object name of a blob.
    fn key(&self, container: &Name, path: &str) -> Result<Path, BlobError> {
        let name = format!("{}{}/{path}", self.prefix, container.as_str());
        if name.len() > MAX_KEY_LEN {
            return Err(BlobError::BadPath(format!(
                "the path is too long for the bucket: PREFIX/CONTAINER/PATH may have at most \
                 {MAX_KEY_LEN} bytes"
            )));
        }
        Path::parse(name).map_err(|e| BlobError::BadPath(format!("not a valid object name: {e}")))
    }

    /// The lock name a commit to `path` takes: the container and the path's first segment, so
    /// that a blob and any blob in a folder of the same name (`a`, `a/b`) are never created at
    /// once.
    fn lock_name(container: &Name, path: &BlobPath) -> String {
        let first = path.as_str().split('/').next().unwrap_or_default();
        format!("{}/{first}", container.as_str())
    }

    /// The blob's metadata and the object's, or `None` if there is no such object.
    async fn current(&self, key: &Path) -> Result<Option<(BlobMeta, ObjectMeta)>, BlobError> {
        let head = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.bucket.get_opts(key, head).await {
            Ok(found) => Ok(Some((
                blob_meta(&found.meta, &found.attributes)?,
                found.meta,
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    /// Refuses a blob at `path` if a blob is where one of its folders would be, or if blobs
    /// are under `path/` (the folder's rule: `a` and `a/b` cannot both exist).
    async fn check_no_collision(&self, container: &Name, path: &BlobPath) -> Result<(), BlobError> {
        let conflict =
            || BlobError::Conflict("the path collides with an existing blob or folder".into());
        let text = path.as_str();
        for (i, _) in text.match_indices('/') {
            if self
                .current(&self.key(container, &text[..i])?)
                .await?
                .is_some()
            {
                return Err(conflict());
            }
        }
        let key = self.key(container, text)?;
        match self.bucket.list(Some(&key)).next().await {
            None => Ok(()),
            Some(Ok(_)) => Err(conflict()),
            Some(Err(e)) => Err(classify(e)),
        }
    }

    /// Starts sending `upload` on: nothing for a small one (it goes in one `PUT` at the
    /// commit), every part for a large one, which stays invisible until completed.
    async fn stage(
        &self,
        upload: &Upload,
        key: &Path,
        meta: &BlobMeta,
    ) -> Result<Staged, BlobError> {
        let attributes = attributes(meta);
        if meta.size <= PART_SIZE {
            let bytes = read_part(upload, 0, meta.size).await?;
            return Ok(Staged::Small(PutPayload::from(bytes), attributes));
        }
        let options = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let multipart = self
            .bucket
            .put_multipart_opts(key, options)
            .await
            .map_err(classify)?;
        let mut pending = Pending::new(multipart);
        let part_size = PART_SIZE.max(meta.size.div_ceil(MAX_PARTS));
        let mut offset = 0;
        while offset < meta.size {
            let len = part_size.min(meta.size - offset);
            let bytes = read_part(upload, offset, len).await?;
            pending.part(bytes).await?;
            offset += len;
        }
        Ok(Staged::Multipart(pending))
    }
}

/// An upload sent on but not yet visible.
enum Staged {
    /// A small body, for one `PUT`.
    Small(PutPayload, Attributes),
    /// A multipart upload with all its parts.
    Multipart(Pending),
}

/// A multipart upload that is aborted unless completed: by [`Pending::abort`] on a refusal,
/// and when dropped (a request cancelled mid-commit), on a task of its own.
struct Pending {
    upload: Option<Box<dyn MultipartUpload>>,
    /// Parts on their way to the bucket, at most [`PARTS_IN_FLIGHT`]: the next part is
    /// gathered while the last ones are sent, so a client's upload is not held up by one
    /// round trip per part. Dropping the set cancels them.
    in_flight: tokio::task::JoinSet<Result<(), object_store::Error>>,
}

impl Pending {
    fn new(upload: Box<dyn MultipartUpload>) -> Pending {
        Pending {
            upload: Some(upload),
            in_flight: tokio::task::JoinSet::new(),
        }
    }

    async fn part(&mut self, bytes: Bytes) -> Result<(), BlobError> {
        self.part_payload(PutPayload::from(bytes)).await
    }

    /// Sends `payload` as the next part, returning once at most [`PARTS_IN_FLIGHT`] parts are
    /// still on their way (the first failure among them is the answer).
    async fn part_payload(&mut self, payload: PutPayload) -> Result<(), BlobError> {
        let upload = self.upload.as_mut().expect("a pending upload");
        // The part's number is taken now, in order, whenever it completes.
        self.in_flight.spawn(upload.put_part(payload));
        while self.in_flight.len() > PARTS_IN_FLIGHT {
            self.next_sent().await?;
        }
        Ok(())
    }

    /// Waits for one part in flight to be sent.
    async fn next_sent(&mut self) -> Result<(), BlobError> {
        match self.in_flight.join_next().await {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(classify(e)),
            Some(Err(e)) => Err(BlobError::Internal(format!(
                "a part upload task failed: {e}"
            ))),
        }
    }

    async fn complete(mut self) -> Result<(), BlobError> {
        while !self.in_flight.is_empty() {
            self.next_sent().await?;
        }
        let mut upload = self.upload.take().expect("a pending upload");
        match upload.complete().await {
            Ok(_) => Ok(()),
            Err(e) => {
                abort(upload).await;
                Err(classify(e))
            }
        }
    }

    async fn abort(mut self) {
        self.in_flight.shutdown().await;
        if let Some(upload) = self.upload.take() {
            abort(upload).await;
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.in_flight.abort_all();
        if let Some(upload) = self.upload.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(abort(upload));
            }
        }
    }
}

async fn abort(mut upload: Box<dyn MultipartUpload>) {
    if let Err(e) = upload.abort().await {
        // Left for the bucket's lifecycle rule (docs/DEPLOYMENT.md, "Blobs on S3").
        tracing::warn!(error = %e, "could not abort a multipart upload");
    }
}

impl Staged {
    /// Makes the object visible: the one point where it appears.
    async fn publish(self, bucket: &AmazonS3, key: &Path) -> Result<(), BlobError> {
        match self {
            Staged::Small(payload, attributes) => {
                let options = PutOptions {
                    attributes,
                    ..PutOptions::default()
                };
                bucket
                    .put_opts(key, payload, options)
                    .await
                    .map_err(classify)?;
                Ok(())
            }
            Staged::Multipart(pending) => pending.complete().await,
        }
    }

    async fn discard(self) {
        if let Staged::Multipart(pending) = self {
            pending.abort().await;
        }
    }
}

/// An upload bound for the bucket.
// One per upload in flight, moved a few times: its size does not matter, a box per upload would.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum S3Upload {
    /// Received into a temporary file first, sent on at the commit.
    Staged(Upload),
    /// Sent on as it arrives, in the parts of a multipart upload.
    Streamed(Streamed),
}

/// A multipart upload fed as the body arrives.
pub struct Streamed {
    digests: Digests,
    /// The declared SHA-256 and the content type, as they went on the object.
    declared: BlobMeta,
    pending: Pending,
    /// Chunks received since the last part, and their length.
    part: Vec<Bytes>,
    part_len: u64,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed")
            .field("received", &self.digests.len())
            .finish_non_exhaustive()
    }
}

impl Streamed {
    /// Sends the chunks gathered as one part.
    async fn flush(&mut self) -> Result<(), BlobError> {
        let payload: PutPayload = std::mem::take(&mut self.part).into_iter().collect();
        self.part_len = 0;
        self.pending.part_payload(payload).await
    }
}

impl S3Upload {
    /// Takes in the next chunk: into the file, or into the part being gathered (sent once it
    /// is full, before the next chunk is read: the client waits for the bucket).
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), BlobError> {
        match self {
            S3Upload::Staged(upload) => upload.write(&chunk),
            S3Upload::Streamed(streamed) => {
                streamed.digests.update(&chunk);
                streamed.part_len += chunk.len() as u64;
                streamed.part.push(chunk);
                if streamed.part_len >= PART_SIZE {
                    streamed.flush().await?;
                }
                Ok(())
            }
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        match self {
            S3Upload::Staged(upload) => upload.received(),
            S3Upload::Streamed(streamed) => streamed.digests.len(),
        }
    }

    /// The SHA-256 of what was received.
    pub fn sha256(&self) -> [u8; 32] {
        match self {
            S3Upload::Staged(upload) => upload.sha256(),
            S3Upload::Streamed(streamed) => streamed.digests.sha256(),
        }
    }

    /// The MD5 of what was received, if it was asked for.
    pub fn md5(&self) -> Option<[u8; 16]> {
        match self {
            S3Upload::Staged(upload) => upload.md5(),
            S3Upload::Streamed(streamed) => streamed.digests.md5(),
        }
    }
}

impl S3Blobs {
    /// Sends on what is left of `upload`: everything of a staged one, the last part of a
    /// streamed one. What comes back is ready to be made visible.
    async fn finish(&self, upload: S3Upload, key: &Path) -> Result<(Staged, BlobMeta), BlobError> {
        match upload {
            S3Upload::Staged(upload) => {
                let meta = upload.meta_now();
                let staged = self.stage(&upload, key, &meta).await?;
                Ok((staged, meta))
            }
            S3Upload::Streamed(mut streamed) => {
                if streamed.digests.sha256() != streamed.declared.sha256 {
                    // The handler refuses a mismatch first; this keeps the metadata true even
                    // if it did not.
                    return Err(BlobError::Internal(
                        "a streamed upload does not match its declared SHA-256".into(),
                    ));
                }
                // A body of no bytes still needs one (empty) part.
                if streamed.part_len > 0 || streamed.digests.len() == 0 {
                    streamed.flush().await?;
                }
                let meta = BlobMeta::new(
                    streamed.digests.len(),
                    streamed.declared.sha256,
                    streamed.declared.content_type.clone(),
                    SystemTime::now(),
                );
                Ok((Staged::Multipart(streamed.pending), meta))
            }
        }
    }
}

impl BlobBackend for S3Blobs {
    type Upload = S3Upload;

    async fn open_blob(
        &self,
        container: &Name,
        path: &BlobPath,
    ) -> Result<(BlobData, Arc<BlobMeta>), BlobError> {
        let key = self.key(container, path.as_str())?;
        let (meta, object) = self.current(&key).await?.ok_or(BlobError::NotFound)?;
        let remote = RemoteBlob {
            bucket: self.bucket.clone(),
            key,
            version: object.e_tag,
            size: meta.size,
        };
        Ok((BlobData::Remote(remote), Arc::new(meta)))
    }

    async fn begin_upload(
        &self,
        container: &Name,
        path: &BlobPath,
        spec: UploadSpec,
    ) -> Result<S3Upload, BlobError> {
        let may_span_parts = spec.length.is_none_or(|n| n > PART_SIZE);
        match spec.sha256 {
            Some(sha256) if may_span_parts => {
                let key = self.key(container, path.as_str())?;
                // Size and time are placeholders: what goes on the object is the content type
                // and the SHA-256.
                let declared = BlobMeta::new(0, sha256, spec.content_type, SystemTime::now());
                let options = PutMultipartOptions {
                    attributes: attributes(&declared),
                    ..PutMultipartOptions::default()
                };
                let multipart = self
                    .bucket
                    .put_multipart_opts(&key, options)
                    .await
                    .map_err(classify)?;
                Ok(S3Upload::Streamed(Streamed {
                    digests: Digests::new(spec.check_md5),
                    declared,
                    pending: Pending::new(multipart),
                    part: Vec::new(),
                    part_len: 0,
                }))
            }
            _ => Upload::create(&self.tmp, self.file_mode, spec.content_type, spec.check_md5)
                .map(S3Upload::Staged)
                .map_err(BlobError::from_io),
        }
    }

    async fn commit(
        self: &Arc<Self>,
        upload: S3Upload,
        container: &Name,
        path: &BlobPath,
        mode: CommitMode,
    ) -> Result<Committed, BlobError> {
        let key = self.key(container, path.as_str())?;
        let (staged, meta) = self.finish(upload, &key).await?;
        let _lock = self
            .locks
            .lock(&Self::lock_name(container, path))
            .await
            .map_err(BlobError::Lock)?;
        let checked = async {
            let current = self.current(&key).await?;
            let allowed = match &mode {
                CommitMode::CreateOnly => current.is_none(),
                CommitMode::Overwrite(pre) => {
                    let current = current.as_ref().map(|(meta, _)| meta);
                    pre.evaluate(current, false) == Verdict::Proceed
                }
            };
            if !allowed {
                return Err(BlobError::PreconditionFailed(match mode {
                    CommitMode::CreateOnly => "the blob already exists",
                    CommitMode::Overwrite(_) => "If-Match or If-None-Match",
                }));
            }
            if current.is_none() {
                self.check_no_collision(container, path).await?;
            }
            Ok(current.is_some())
        };
        let replaced = match checked.await {
            Ok(replaced) => replaced,
            Err(e) => {
                staged.discard().await;
                return Err(e);
            }
        };
        staged.publish(&self.bucket, &key).await?;
        Ok(Committed { meta, replaced })
    }

    async fn delete(
        self: &Arc<Self>,
        container: &Name,
        path: &BlobPath,
        pre: &Preconditions,
    ) -> Result<(), BlobError> {
        let key = self.key(container, path.as_str())?;
        let _lock = self
            .locks
            .lock(&Self::lock_name(container, path))
            .await
            .map_err(BlobError::Lock)?;
        let (current, _) = self.current(&key).await?.ok_or(BlobError::NotFound)?;
        if pre.evaluate(Some(&current), false) != Verdict::Proceed {
            return Err(BlobError::PreconditionFailed("If-Match"));
        }
        self.bucket.delete(&key).await.map_err(classify)
    }

    async fn list(
        self: &Arc<Self>,
        container: &Name,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Listing, BlobError> {
        let root = format!("{}{}/", self.prefix, container.as_str());
        let folder = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
        let under = Path::parse(format!("{root}{folder}"))
            .map_err(|e| BlobError::BadPath(format!("prefix: {e}")))?;
        // Listing starts after the cursor, or just before the prefix: S3 lists names in byte
        // order from `start-after`, which is exclusive.
        let start = match cursor {
            Some(c) if c >= prefix => Some(c.to_owned()),
            _ => prefix.chars().next().map(|_| {
                let mut before = prefix.to_owned();
                before.pop();
                before
            }),
        };
        // An offset at or before the folder's own name lists from the folder's start (Garage
        // lists nothing for a `start-after` that is a prefix of the listed prefix).
        let mut objects = match start.filter(|s| s.len() > folder.len()) {
            Some(start) => {
                let offset = Path::parse(format!("{root}{start}"))
                    .map_err(|e| BlobError::BadPath(format!("cursor: {e}")))?;
                self.bucket.list_with_offset(Some(&under), &offset)
            }
            None => self.bucket.list(Some(&under)),
        };
        let mut found = Vec::new();
        let mut more = false;
        while let Some(object) = objects.try_next().await.map_err(classify)? {
            let Some(name) = object.location.as_ref().strip_prefix(root.as_str()) else {
                continue;
            };
            if cursor.is_some_and(|c| name <= c) || !name.starts_with(prefix) {
                if name > prefix && !name.starts_with(prefix) {
                    break;
                }
                continue;
            }
            if found.len() == limit {
                more = true;
                break;
            }
            found.push(name.to_owned());
        }
        drop(objects);
        let items: Vec<Option<ListingItem>> = futures_util::stream::iter(found)
            .map(|name| self.listing_item(container, name))
            .buffered(LISTING_HEADS)
            .try_collect()
            .await?;
        let items: Vec<ListingItem> = items.into_iter().flatten().collect();
        let next_cursor = more.then(|| items.last().map(|i| i.path.clone())).flatten();
        Ok(Listing { items, next_cursor })
    }
}

impl S3Blobs {
    /// A listed blob's item, or `None` if it was deleted since it was listed. A `HEAD` each:
    /// S3 listings carry neither the content type nor user metadata.
    async fn listing_item(
        &self,
        container: &Name,
        name: String,
    ) -> Result<Option<ListingItem>, BlobError> {
        let Some((meta, _)) = self.current(&self.key(container, &name)?).await? else {
            return Ok(None);
        };
        Ok(Some(ListingItem {
            path: name,
            size: meta.size,
            etag: meta.etag().to_owned(),
            last_modified: meta.last_modified().to_owned(),
            content_type: meta.content_type,
        }))
    }
}

/// A blob in the bucket, ready to be read: the version whose metadata was served.
#[derive(Debug)]
pub struct RemoteBlob {
    bucket: Arc<AmazonS3>,
    key: Path,
    /// The object's S3 ETag when its metadata was read.
    version: Option<String>,
    size: u64,
}

impl RemoteBlob {
    /// `len` bytes from `start`, streamed as the bucket sends them; an error if the object
    /// changed since its metadata was read.
    pub async fn stream(
        self,
        start: u64,
        len: u64,
    ) -> Result<impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static, BlobError>
    {
        let range = (start > 0 || len < self.size).then_some(GetRange::Bounded(start..start + len));
        let options = GetOptions {
            if_match: self.version.clone(),
            range,
            ..GetOptions::default()
        };
        let stream = if len == 0 {
            futures_util::stream::empty().boxed()
        } else {
            self.bucket
                .get_opts(&self.key, options)
                .await
                .map_err(classify)?
                .into_stream()
        };
        Ok(stream.map_err(std::io::Error::other))
    }
}

/// Reads `len` bytes of the upload's file from `offset`, on the blocking pool.
async fn read_part(upload: &Upload, offset: u64, len: u64) -> Result<Bytes, BlobError> {
    let file: File = upload.file().try_clone().map_err(BlobError::from_io)?;
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; usize::try_from(len).expect("a part fits in memory")];
        file.read_exact_at(&mut buf, offset)
            .map_err(BlobError::from_io)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(|e| BlobError::Internal(format!("a blocking read failed: {e}")))?
}

fn attributes(meta: &BlobMeta) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, meta.content_type.clone().into());
    attributes.insert(
        Attribute::Metadata(SHA256_METADATA.into()),
        meta.sha256_hex().to_owned().into(),
    );
    attributes
}

/// A blob's metadata from its object's.
fn blob_meta(object: &ObjectMeta, attributes: &Attributes) -> Result<BlobMeta, BlobError> {
    let sha256 = attributes
        .get(&Attribute::Metadata(SHA256_METADATA.into()))
        .and_then(|v| super::parse_sha256_hex(v))
        .ok_or_else(|| {
            BlobError::Internal(format!(
                "the object {} has no {SHA256_METADATA} metadata: it was not written by Valet",
                object.location
            ))
        })?;
    let content_type = attributes
        .get(&Attribute::ContentType)
        .map_or("application/octet-stream", |v| v.as_ref())
        .to_owned();
    Ok(BlobMeta::new(
        object.size,
        sha256,
        content_type,
        SystemTime::from(object.last_modified),
    ))
}

/// What an `object_store` failure means for the store.
fn classify(err: object_store::Error) -> BlobError {
    match err {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        object_store::Error::InvalidPath { .. } => BlobError::BadPath(err.to_string()),
        object_store::Error::Precondition { .. } => BlobError::Changed,
        other => BlobError::Unavailable(other),
    }
}
