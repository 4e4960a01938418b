//! Blob metadata, kept in the `user.valet` extended attribute of the blob's own file.
//!
//! It records what a reader needs without re-reading the data: size, SHA-256 (the strong
//! ETag), content type, and the modification time the data had when committed. If the file was
//! changed behind the store's back (its size or mtime no longer match), the metadata is
//! recomputed from the data and written back.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xattr::FileExt;

const ATTRIBUTE: &str = "user.valet";

/// A blob's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// Length in bytes.
    pub size: u64,
    /// SHA-256 of the data.
    pub sha256: [u8; 32],
    /// Content type given at upload.
    pub content_type: String,
    /// When the data was last written.
    pub modified: SystemTime,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    v: u8,
    size: u64,
    sha256: String,
    content_type: String,
    mtime_ns: i128,
}

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// A SHA-256 from its hex form.
pub fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    hex::decode_to_slice(text.trim(), &mut out).ok()?;
    Some(out)
}

impl BlobMeta {
    /// The strong ETag: the quoted hex SHA-256.
    pub fn etag(&self) -> String {
        format!("\"{}\"", hex::encode(self.sha256))
    }

    /// The hex SHA-256, for `x-valet-sha256`.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Reads the metadata of an open blob, repairing it if the data changed behind our back.
    pub fn of_file(file: &File) -> io::Result<BlobMeta> {
        let stat = file.metadata()?;
        let modified =
            UNIX_EPOCH + Duration::from_nanos(u64::try_from(mtime_ns(&stat)).unwrap_or(0));
        if let Some(stored) = file
            .get_xattr(ATTRIBUTE)?
            .and_then(|raw| serde_json::from_slice::<Stored>(&raw).ok())
            .filter(|s| s.v == 1 && s.size == stat.len() && s.mtime_ns == mtime_ns(&stat))
        {
            if let Some(sha256) = parse_sha256_hex(&stored.sha256) {
                return Ok(BlobMeta {
                    size: stored.size,
                    sha256,
                    content_type: stored.content_type,
                    modified,
                });
            }
        }
        Self::rebuild(file, &stat, modified)
    }

    fn rebuild(
        file: &File,
        stat: &std::fs::Metadata,
        modified: SystemTime,
    ) -> io::Result<BlobMeta> {
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
        let meta = BlobMeta {
            size: stat.len(),
            sha256: hasher.finalize().into(),
            content_type: "application/octet-stream".into(),
            modified,
        };
        // Best effort: a read-only folder still serves, it just re-hashes next time.
        let _ = meta.write_to(file, stat);
        Ok(meta)
    }

    /// Stores this metadata on `file`, stamped with the file's current size and mtime.
    pub fn write_to(&self, file: &File, stat: &std::fs::Metadata) -> io::Result<()> {
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
