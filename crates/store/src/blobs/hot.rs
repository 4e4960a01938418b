//! Small blobs kept in memory, so that a hot one is served with one `statx` instead of an
//! open, a stat, a read and a close.
//!
//! On a 4 KiB download those four system calls were about a tenth of the store's CPU: more
//! than the key check. nginx pays them too (without its `open_file_cache`), which is why the
//! store can beat it on small blobs it serves again and again.
//!
//! # Never stale
//!
//! An entry is keyed by the file's identity ([`FileIdentity`]: device, inode, size, mtime and
//! ctime), and every lookup stats the blob's path first: a commit renames a new inode into
//! place, a delete unlinks it, and an edit in place changes the mtime or ctime, so none of
//! them can hit an old entry. Two races remain, and both are closed here:
//! - a reader that opened a blob just before a commit or delete replaced it would cache bytes
//!   that are no longer at the path; so after reading, [`HotBlobs::load`] stats the path again
//!   and caches only if it still names the file it read (the write paths rename first and
//!   forget after, see [`BlobFolder::commit_now`](super::BlobFolder::commit_now));
//! - an entry for a replaced file would waste its room until evicted, and a later file that
//!   reused the inode with the same size and timestamps could hit it; so the write paths drop
//!   the entry of the file they replace or delete ([`HotBlobs::forget`]).
//!
//! A file changed behind the store's back by a tool that restores both its mtime and its
//! ctime, which only a change of the system clock can do, is the one case this cannot see; the
//! metadata cache has the same limit.
//!
//! # Memory
//!
//! Bounded by a byte budget ([`StoreConfig::blob_cache`](crate::StoreConfig::blob_cache),
//! default [`DEFAULT_BLOB_CACHE`]), counted with a fixed overhead per entry, and evicted by
//! `quick_cache`'s scan-resistant policy: a listing-driven crawl over many blobs does not push
//! out the few that are hot. Only blobs up to [`MAX_HOT_BLOB`] (and an eighth of the budget)
//! are kept; larger ones stream from the file as before.

use std::fs::{self, File, Metadata};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use valet_http::metrics::Counter;

use super::meta::{BlobMeta, FileIdentity};

/// The default budget of [`HotBlobs`], in bytes.
pub const DEFAULT_BLOB_CACHE: u64 = 8 * 1024 * 1024;
/// The largest blob kept in memory.
pub const MAX_HOT_BLOB: u64 = 64 * 1024;
/// What an entry costs beside its bytes: the table slot, the key, and its share of the
/// metadata (which the metadata cache holds too, with its ready-made download headers).
const ENTRY_OVERHEAD: u64 = 2048;

/// A blob served from memory.
#[derive(Debug, Clone)]
pub struct HotBlob {
    /// Its metadata.
    pub meta: Arc<BlobMeta>,
    /// All of its bytes.
    pub data: Bytes,
}

#[derive(Debug, Clone, Copy)]
struct ByteWeight;

impl Weighter<FileIdentity, HotBlob> for ByteWeight {
    fn weight(&self, _: &FileIdentity, blob: &HotBlob) -> u64 {
        blob.data.len() as u64 + ENTRY_OVERHEAD
    }
}

/// Where the cache counts its hits and misses (the store's metrics).
#[derive(Debug, Clone, Default)]
pub struct CacheCounters {
    /// Small blobs served from memory.
    pub hits: Counter,
    /// Small blobs read from their file (and kept for next time, if they still were current).
    pub misses: Counter,
}

/// The in-memory copies of small, recently read blobs.
#[derive(Debug)]
pub struct HotBlobs {
    /// `None` when the budget is zero: no lookups, no extra `statx`.
    cache: Option<Cache<FileIdentity, HotBlob, ByteWeight>>,
    /// The largest blob kept.
    max_blob: u64,
    pub(super) counters: CacheCounters,
}

impl HotBlobs {
    /// A cache that holds up to `budget` bytes (zero turns it off), counting into `counters`.
    pub fn new(budget: u64, counters: CacheCounters) -> HotBlobs {
        let max_blob = MAX_HOT_BLOB.min(budget / 8);
        let cache = (max_blob > 0).then(|| {
            let typical = 4 * 1024 + ENTRY_OVERHEAD;
            let items = usize::try_from(budget / typical)
                .unwrap_or(usize::MAX)
                .max(16);
            Cache::with_weighter(items, budget, ByteWeight)
        });
        HotBlobs {
            cache,
            max_blob,
            counters,
        }
    }

    /// The blob at `path`, if it is cached and the path still names the file it was read from.
    pub fn lookup(&self, path: &Path) -> Option<HotBlob> {
        let cache = self.cache.as_ref()?;
        // Not following a symbolic link, like the open that a miss falls back to.
        let stat = fs::symlink_metadata(path).ok()?;
        if !stat.is_file() || stat.len() > self.max_blob {
            return None;
        }
        let hot = cache.get(&FileIdentity::of(&stat));
        if hot.is_some() {
            self.counters.hits.inc();
        }
        hot
    }

    /// Whether a blob of this size would be kept.
    pub fn admits(&self, stat: &Metadata) -> bool {
        self.cache.is_some() && stat.len() <= self.max_blob
    }

    /// Reads all of `file` (opened from `path`, with `stat` and `meta`) and keeps it if the path
    /// still names that file once read. `None` if it could not be read whole (it shrank, or a
    /// read failed): the caller streams the file instead, which reports such errors.
    pub fn load(
        &self,
        path: &Path,
        file: &File,
        stat: &Metadata,
        meta: &Arc<BlobMeta>,
    ) -> Option<Bytes> {
        let cache = self.cache.as_ref()?;
        self.counters.misses.inc();
        let mut buf = vec![0; usize::try_from(stat.len()).ok()?];
        // Positional: the file's offset stays at 0 for the caller if this gives up.
        file.read_exact_at(&mut buf, 0).ok()?;
        let data = Bytes::from(buf);
        let identity = FileIdentity::of(stat);
        let unchanged =
            fs::symlink_metadata(path).is_ok_and(|now| FileIdentity::of(&now) == identity);
        if unchanged {
            let blob = HotBlob {
                meta: meta.clone(),
                data: data.clone(),
            };
            cache.insert(identity, blob);
        }
        Some(data)
    }

    /// Drops the entry of a file that a write replaced or deleted.
    pub fn forget(&self, stat: &Metadata) {
        if let Some(cache) = &self.cache {
            cache.remove(&FileIdentity::of(stat));
        }
    }

    /// Entries, and the bytes they count for against the budget.
    pub fn usage(&self) -> (u64, u64) {
        self.cache
            .as_ref()
            .map_or((0, 0), |cache| (cache.len() as u64, cache.weight()))
    }
}
