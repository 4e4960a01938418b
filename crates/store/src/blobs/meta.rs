//! Blob metadata, kept in the `user.valet` extended attribute of the blob's own file, and
//! cached in memory by file identity.
//!
//! It records what a reader needs without re-reading the data: size, SHA-256 (the strong
//! ETag), content type, and the modification time the data had when committed. If the file was
//! changed behind the store's back (its size or mtime no longer match), the metadata is
//! recomputed from the data and written back.
//!
//! The cache saves a download the attribute read and its parsing. It is keyed by everything
//! that changes when a file does (device, inode, size, mtime and ctime, which setting an
//! attribute also changes), so a stale entry can never be served: a commit always brings a new
//! inode, and an edit in place a new mtime or ctime.
//!
//! An entry whose file was replaced or deleted can never be hit again, so the write paths do not
//! fill the cache with the blob they are about to replace ([`MetaCache::peek`]) and drop its
//! entry once it is gone ([`MetaCache::forget`]). Without that, every overwrite left one dead
//! entry (about 830 bytes with its allocations), and an upload-heavy load grew the process by
//! ~13 MiB until the cache first filled and started over.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt as _, MetadataExt};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xattr::FileExt;

const ATTRIBUTE: &str = "user.valet";

/// A blob's metadata, with its validators formatted once.
#[derive(Debug, Clone)]
pub struct BlobMeta {
    /// Length in bytes.
    pub size: u64,
    /// SHA-256 of the data.
    pub sha256: [u8; 32],
    /// Content type given at upload.
    pub content_type: String,
    /// When the data was last written.
    pub modified: SystemTime,
    etag: String,
    last_modified: String,
    /// The response headers a download sends, made once rather than per request.
    pub headers: BlobHeaders,
}

/// Ready-made header values of a blob.
#[derive(Debug, Clone)]
pub struct BlobHeaders {
    /// `ETag`.
    pub etag: HeaderValue,
    /// `Last-Modified`.
    pub last_modified: HeaderValue,
    /// `Content-Type`.
    pub content_type: HeaderValue,
    /// `x-valet-sha256`.
    pub sha256: HeaderValue,
    /// Every header of a whole-blob download, made by the download handler the first time
    /// the blob is served and cloned for each download after (the metadata is cached and
    /// shared): cheaper than inserting them one by one.
    pub download: OnceLock<HeaderMap>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    v: u8,
    size: u64,
    sha256: String,
    content_type: String,
    mtime_ns: i128,
}

fn mtime_ns(m: &Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// A SHA-256 from its hex form.
pub fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    hex::decode_to_slice(text.trim(), &mut out).ok()?;
    Some(out)
}

impl BlobMeta {
    /// Metadata of a blob with these properties.
    pub fn new(
        size: u64,
        sha256: [u8; 32],
        content_type: String,
        modified: SystemTime,
    ) -> BlobMeta {
        let etag = format!("\"{}\"", hex::encode(sha256));
        let last_modified = httpdate::fmt_http_date(modified);
        let headers = BlobHeaders {
            etag: HeaderValue::from_str(&etag).expect("hex is a header value"),
            last_modified: HeaderValue::from_str(&last_modified).expect("an HTTP date"),
            content_type: HeaderValue::from_str(&content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            sha256: HeaderValue::from_str(&etag[1..etag.len() - 1]).expect("hex"),
            download: OnceLock::new(),
        };
        BlobMeta {
            size,
            sha256,
            content_type,
            modified,
            etag,
            last_modified,
            headers,
        }
    }

    /// The strong ETag: the quoted hex SHA-256.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// `Last-Modified` as an HTTP date.
    pub fn last_modified(&self) -> &str {
        &self.last_modified
    }

    /// The hex SHA-256, for `x-valet-sha256`.
    pub fn sha256_hex(&self) -> &str {
        &self.etag[1..self.etag.len() - 1]
    }

    /// Reads the metadata of an open blob, repairing it if the data changed behind our back.
    pub fn of_file(file: &File, stat: &Metadata) -> io::Result<BlobMeta> {
        let modified =
            UNIX_EPOCH + Duration::from_nanos(u64::try_from(mtime_ns(stat)).unwrap_or(0));
        let stored = file
            .get_xattr(ATTRIBUTE)?
            .and_then(|raw| serde_json::from_slice::<Stored>(&raw).ok())
            .filter(|s| s.v == 1 && s.size == stat.len() && s.mtime_ns == mtime_ns(stat));
        if let Some(stored) = stored {
            if let Some(sha256) = parse_sha256_hex(&stored.sha256) {
                return Ok(BlobMeta::new(
                    stored.size,
                    sha256,
                    stored.content_type,
                    modified,
                ));
            }
        }
        Self::rebuild(file, stat, modified)
    }

    fn rebuild(file: &File, stat: &Metadata, modified: SystemTime) -> io::Result<BlobMeta> {
        // Positional reads leave the file offset alone for the caller that streams it next.
        let mut hasher = Sha256::new();
        let mut buf = vec![0; 256 * 1024];
        let mut offset = 0;
        loop {
            let n = file.read_at(&mut buf, offset)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        let meta = BlobMeta::new(
            stat.len(),
            hasher.finalize().into(),
            "application/octet-stream".into(),
            modified,
        );
        // Best effort: a read-only folder still serves, it just re-hashes next time.
        let _ = meta.write_to(file, stat);
        Ok(meta)
    }

    /// Stores this metadata on `file`, stamped with the file's current size and mtime.
    pub fn write_to(&self, file: &File, stat: &Metadata) -> io::Result<()> {
        let stored = Stored {
            v: 1,
            size: self.size,
            sha256: hex::encode(self.sha256),
            content_type: self.content_type.clone(),
            mtime_ns: mtime_ns(stat),
        };
        let raw = serde_json::to_vec(&stored).expect("metadata serialises");
        file.set_xattr(ATTRIBUTE, &raw)
    }
}

/// Everything that changes when a file's data or attribute does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileIdentity {
    pub(super) fn of(stat: &Metadata) -> FileIdentity {
        FileIdentity {
            dev: stat.dev(),
            ino: stat.ino(),
            size: stat.len(),
            mtime_ns: mtime_ns(stat),
            ctime_ns: i128::from(stat.ctime()) * 1_000_000_000 + i128::from(stat.ctime_nsec()),
        }
    }
}

/// Parsed metadata of recently read blobs.
#[derive(Debug, Default)]
pub struct MetaCache {
    entries: Mutex<HashMap<FileIdentity, Arc<BlobMeta>>>,
}

/// Entries kept before the cache starts over. An entry costs about 830 bytes (the `BlobMeta`
/// in its `Arc`, its seven small heap strings and header values, and the table slot; measured
/// with heaptrack: 13 MiB for 16 Ki entries), and about 1.5 KiB more once the blob was
/// downloaded (its ready-made download headers), so this bounds the cache near 10 MiB.
const CACHE_ENTRIES: usize = 4 * 1024;

impl MetaCache {
    /// The metadata of an open blob, from the cache or from its attribute.
    pub fn get(&self, file: &File, stat: &Metadata) -> io::Result<Arc<BlobMeta>> {
        let id = FileIdentity::of(stat);
        if let Some(meta) = self.lock().get(&id) {
            return Ok(meta.clone());
        }
        let meta = Arc::new(BlobMeta::of_file(file, stat)?);
        let mut entries = self.lock();
        if entries.len() >= CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(id, meta.clone());
        Ok(meta)
    }

    /// Like [`MetaCache::get`], but a miss is not cached: for a blob that a write is about to
    /// replace or delete, whose entry would never be hit again.
    pub fn peek(&self, file: &File, stat: &Metadata) -> io::Result<Arc<BlobMeta>> {
        if let Some(meta) = self.lock().get(&FileIdentity::of(stat)) {
            return Ok(meta.clone());
        }
        Ok(Arc::new(BlobMeta::of_file(file, stat)?))
    }

    /// Drops the entry of a file that was replaced or deleted.
    pub fn forget(&self, stat: &Metadata) {
        self.lock().remove(&FileIdentity::of(stat));
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FileIdentity, Arc<BlobMeta>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
