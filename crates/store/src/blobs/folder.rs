//! The blob folder: blobs as plain files under `DATA/blobs/CONTAINER/PATH`, their metadata in
//! an extended attribute of the same file.
//!
//! Keeping data and metadata in one inode is what makes a commit atomic: an upload is written
//! to `DATA/tmp/`, hashed on the way, fsynced, given its metadata attribute, and only then
//! renamed into place, so a reader sees the old blob or the new one, never a mixture, and a
//! crash leaves at most a stray temporary file, removed at the next start. The files stay
//! ordinary files, readable by backup tools and by a plain web server.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use valet_key::{BlobPath, Name};

use super::conditional::{Preconditions, Verdict};
use super::hot::{CacheCounters, HotBlobs};
use super::listing::{self, Listing};
use super::meta::{BlobMeta, MetaCache};
use super::upload::Upload;
use super::{BlobBackend, BlobData, BlobError, CommitMode, Committed, UploadSpec};

/// The local folder that holds every container.
#[derive(Debug)]
pub struct BlobFolder {
    blobs: PathBuf,
    tmp: PathBuf,
    /// The mode of blob files (see [`crate::StoreConfig::blob_mode`]).
    file_mode: u32,
    /// The mode of the folders: the file mode with search (`x`) wherever it has read.
    dir_mode: u32,
    /// Serialises check-then-rename per path (striped), so that `If-Match` is atomic against
    /// other writers in this process.
    locks: Vec<Mutex<()>>,
    metadata: MetaCache,
    hot: HotBlobs,
}

impl BlobFolder {
    /// Opens (creating) `DATA/blobs` and `DATA/tmp`, removing temporary files left by a crash.
    /// Blob files get `file_mode` and every folder of the tier (`DATA` itself included) the
    /// same with search permission wherever it has read (`0o600` gives `0o700`); folders an
    /// older version made wider are narrowed here, which also keeps other users out of the
    /// files they hold, whatever those files' own modes. Up to `hot_bytes` of small blobs are
    /// kept in memory (zero: none), their hits and misses counted into `counters`.
    pub fn open(
        data_dir: &Path,
        file_mode: u32,
        hot_bytes: u64,
        counters: CacheCounters,
    ) -> io::Result<BlobFolder> {
        let dir_mode = folder_mode(file_mode);
        let blobs = data_dir.join("blobs");
        let tmp = data_dir.join("tmp");
        for dir in [data_dir, &blobs, &tmp] {
            DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(dir)?;
            // An existing folder keeps its mode through `create`: set it.
            fs::set_permissions(dir, fs::Permissions::from_mode(dir_mode))?;
        }
        let mut removed = 0;
        for entry in fs::read_dir(&tmp)? {
            fs::remove_file(entry?.path())?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(removed, "removed temporary files left by an earlier run");
        }
        Ok(BlobFolder {
            blobs,
            tmp,
            file_mode,
            dir_mode,
            locks: (0..64).map(|_| Mutex::new(())).collect(),
            metadata: MetaCache::default(),
            hot: HotBlobs::new(hot_bytes, counters),
        })
    }

    /// Where the blob lives on disk. The path was validated by `BlobPath::parse`, so joining
    /// its segments cannot leave the container's folder.
    pub fn file_path(&self, container: &Name, path: &BlobPath) -> PathBuf {
        let (root, container, path) = (self.blobs.as_os_str(), container.as_str(), path.as_str());
        let mut file = PathBuf::with_capacity(root.len() + container.len() + path.len() + 2);
        file.push(root);
        file.push(container);
        file.push(path);
        file
    }

    fn container_dir(&self, container: &Name) -> PathBuf {
        self.blobs.join(container.as_str())
    }

    fn lock_for(&self, file: &Path) -> std::sync::MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        file.hash(&mut hasher);
        let stripe = (hasher.finish() % self.locks.len() as u64) as usize;
        self.locks[stripe].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a blob for reading, with its metadata: from memory if it is small and hot.
    pub fn open_now(
        &self,
        container: &Name,
        path: &BlobPath,
    ) -> Result<(BlobData, Arc<BlobMeta>), BlobError> {
        let file_path = self.file_path(container, path);
        if let Some(hot) = self.hot.lookup(&file_path) {
            return Ok((BlobData::Memory(hot.data), hot.meta));
        }
        let (file, stat) = open_regular(&file_path).map_err(|e| self.tier_intact(e))?;
        let meta = self
            .metadata
            .get(&file, &stat)
            .map_err(BlobError::from_io)?;
        if self.hot.admits(&stat) {
            if let Some(data) = self.hot.load(&file_path, &file, &stat, &meta) {
                return Ok((BlobData::Memory(data), meta));
            }
        }
        Ok((BlobData::File(file), meta))
    }

    /// `err`, unless it is `not_found` and the data tier's own folders are gone: then no blob
    /// is missing, the store is broken (someone removed `DATA/blobs` or `DATA/tmp`), and an
    /// operator must hear of it rather than clients being told their blobs do not exist.
    fn tier_intact(&self, err: BlobError) -> BlobError {
        match err {
            BlobError::NotFound if !(self.blobs.is_dir() && self.tmp.is_dir()) => {
                BlobError::Internal("the data folder's blobs/ or tmp/ is missing".into())
            }
            other => other,
        }
    }

    /// How many small blobs are held in memory, and the bytes they count for.
    pub fn hot_usage(&self) -> (u64, u64) {
        self.hot.usage()
    }

    /// Drops what the caches hold of a file that a write replaced or deleted. Called after
    /// the rename or unlink, so that no reader can cache the old file again (see `hot`).
    fn forget(&self, stat: &fs::Metadata) {
        self.metadata.forget(stat);
        self.hot.forget(stat);
    }

    /// The blob at `file` that a write is about to replace or delete: its identity (to
    /// [`MetaCache::forget`] once it is gone) and its metadata, read without caching it.
    fn current(&self, file: &Path) -> Result<Option<(fs::Metadata, Arc<BlobMeta>)>, BlobError> {
        match open_regular(file) {
            Ok((file, stat)) => {
                let meta = self
                    .metadata
                    .peek(&file, &stat)
                    .map_err(BlobError::from_io)?;
                Ok(Some((stat, meta)))
            }
            Err(BlobError::NotFound) => match self.tier_intact(BlobError::NotFound) {
                BlobError::NotFound => Ok(None),
                e => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Starts an upload into a fresh temporary file.
    pub fn start_upload(&self, content_type: String, check_md5: bool) -> Result<Upload, BlobError> {
        Upload::create(&self.tmp, self.file_mode, content_type, check_md5)
            .map_err(BlobError::from_io)
    }

    /// Makes a finished upload visible at `path`, atomically. Blocking: call off the runtime.
    pub fn commit_now(
        &self,
        upload: Upload,
        container: &Name,
        path: &BlobPath,
        mode: CommitMode,
    ) -> Result<Committed, BlobError> {
        let target = self.file_path(container, path);
        let meta = upload.seal()?;
        let _guard = self.lock_for(&target);
        let current = self.current(&target)?;
        let replaced = current.is_some();
        match mode {
            CommitMode::CreateOnly => {
                if current.is_some() {
                    return Err(BlobError::PreconditionFailed("the blob already exists"));
                }
                // A hard link fails if the target exists, even if another process created it
                // since the check above: create-only is atomic, not just checked.
                self.place(&target, |t| upload.link_to(t))?;
            }
            CommitMode::Overwrite(pre) => {
                let current_meta = current.as_ref().map(|(_, meta)| meta.as_ref());
                if pre.evaluate(current_meta, false) != Verdict::Proceed {
                    return Err(BlobError::PreconditionFailed("If-Match or If-None-Match"));
                }
                self.place(&target, |t| upload.rename_to(t))?;
            }
        }
        if let Some((stat, _)) = &current {
            self.forget(stat);
        }
        Ok(Committed { meta, replaced })
    }

    /// Runs `place` (a rename or link into `target`), creating parent folders, and retrying
    /// once if a concurrent delete removed an emptied parent in between.
    fn place(
        &self,
        target: &Path,
        place: impl Fn(&Path) -> io::Result<()>,
    ) -> Result<(), BlobError> {
        let parent = target.parent().expect("blob paths have a parent");
        for attempt in 0..3 {
            DirBuilder::new()
                .recursive(true)
                .mode(self.dir_mode)
                .create(parent)
                .map_err(conflict_or_io)?;
            match place(target) {
                Ok(()) => {
                    File::open(parent)
                        .and_then(|d| d.sync_all())
                        .map_err(BlobError::from_io)?;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 2 => continue,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(BlobError::PreconditionFailed("the blob already exists"))
                }
                Err(e) => return Err(conflict_or_io(e)),
            }
        }
        Err(BlobError::Internal(
            "could not create the blob's folder".into(),
        ))
    }

    /// Deletes a blob, subject to preconditions, and prunes folders it leaves empty.
    pub fn delete_now(
        &self,
        container: &Name,
        path: &BlobPath,
        pre: &Preconditions,
    ) -> Result<(), BlobError> {
        let target = self.file_path(container, path);
        let _guard = self.lock_for(&target);
        let (stat, current) = self.current(&target)?.ok_or(BlobError::NotFound)?;
        if pre.evaluate(Some(&current), false) != Verdict::Proceed {
            return Err(BlobError::PreconditionFailed("If-Match"));
        }
        fs::remove_file(&target).map_err(|e| match e.kind() {
            // Deleted by another process since it was looked at.
            io::ErrorKind::NotFound => BlobError::NotFound,
            _ => BlobError::from_io(e),
        })?;
        self.forget(&stat);
        let root = self.container_dir(container);
        let mut dir = target.parent();
        while let Some(d) = dir.filter(|d| *d != root && d.starts_with(&root)) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// Lists blobs of a container whose paths start with `prefix`, after `cursor`.
    pub fn list_now(
        &self,
        container: &Name,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Listing, BlobError> {
        listing::list(&self.container_dir(container), prefix, cursor, limit)
    }
}

/// The folder behind the seam. Opening a blob runs on the connection's task, as before (a
/// `statx` and an open, or a hit in memory); everything that fsyncs, renames or walks folders
/// runs on the blocking pool.
impl BlobBackend for BlobFolder {
    type Upload = Upload;

    async fn open_blob(
        &self,
        container: &Name,
        path: &BlobPath,
    ) -> Result<(BlobData, Arc<BlobMeta>), BlobError> {
        self.open_now(container, path)
    }

    async fn begin_upload(
        &self,
        _container: &Name,
        _path: &BlobPath,
        spec: UploadSpec,
    ) -> Result<Upload, BlobError> {
        self.start_upload(spec.content_type, spec.check_md5)
    }

    async fn commit(
        self: &Arc<Self>,
        upload: Upload,
        container: &Name,
        path: &BlobPath,
        mode: CommitMode,
    ) -> Result<Committed, BlobError> {
        let (folder, container, path) = (self.clone(), container.clone(), path.clone());
        blocking(move || folder.commit_now(upload, &container, &path, mode)).await
    }

    async fn delete(
        self: &Arc<Self>,
        container: &Name,
        path: &BlobPath,
        pre: &Preconditions,
    ) -> Result<(), BlobError> {
        let (folder, container, path, pre) =
            (self.clone(), container.clone(), path.clone(), pre.clone());
        blocking(move || folder.delete_now(&container, &path, &pre)).await
    }

    async fn list(
        self: &Arc<Self>,
        container: &Name,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Listing, BlobError> {
        let (folder, container) = (self.clone(), container.clone());
        let (prefix, cursor) = (prefix.to_owned(), cursor.map(str::to_owned));
        blocking(move || folder.list_now(&container, &prefix, cursor.as_deref(), limit)).await
    }
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BlobError::Internal(format!("a blocking blob task failed: {e}")))?
}

/// A folder's mode for blob files of `file_mode`: search wherever there is read, so that
/// whoever may read a blob may reach it, and nobody else.
pub fn folder_mode(file_mode: u32) -> u32 {
    file_mode | ((file_mode & 0o444) >> 2)
}

/// Opens a regular file without following a symbolic link at the last component.
fn open_regular(path: &Path) -> Result<(File, std::fs::Metadata), BlobError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // No such file, a parent is a file, or the blob is a symbolic link: no such blob.
            Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => BlobError::NotFound,
            _ => BlobError::from_io(e),
        })?;
    let stat = file.metadata().map_err(BlobError::from_io)?;
    if !stat.is_file() {
        return Err(BlobError::NotFound);
    }
    Ok((file, stat))
}

fn conflict_or_io(e: io::Error) -> BlobError {
    match e.raw_os_error() {
        // `a` and `a/b` cannot both be blobs.
        Some(libc::EEXIST | libc::ENOTDIR | libc::EISDIR) => {
            BlobError::Conflict("the path collides with an existing blob or folder".into())
        }
        _ => BlobError::from_io(e),
    }
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::super::DEFAULT_BLOB_CACHE;
    use super::*;

    fn upload(folder: &BlobFolder, bytes: &[u8]) -> Upload {
        let mut upload = folder
            .start_upload("application/octet-stream".into(), false)
            .unwrap();
        upload.write(bytes).unwrap();
        upload
    }

    /// A folder in `dir` with the default small-blob cache.
    fn cached_folder(dir: &Path) -> BlobFolder {
        BlobFolder::open(dir, 0o600, DEFAULT_BLOB_CACHE, CacheCounters::default()).unwrap()
    }

    /// Commits `bytes` at `path`, replacing what is there.
    fn put(folder: &BlobFolder, container: &Name, path: &BlobPath, bytes: &[u8]) -> Committed {
        let mode = CommitMode::Overwrite(Preconditions::default());
        folder
            .commit_now(upload(folder, bytes), container, path, mode)
            .unwrap()
    }

    /// A write neither caches the blob it replaces or deletes nor leaves its entry behind: an
    /// entry of a file that is gone is never hit again, and overwrites used to fill the cache
    /// with them (one per upload, up to its bound: the memory an upload-heavy load grew by).
    #[test]
    fn writes_leave_no_dead_cache_entries() {
        let dir = tempfile::tempdir().unwrap();
        let folder = cached_folder(dir.path());
        let container = Name::parse("files").unwrap();
        let path = BlobPath::parse("a/b.bin").unwrap();

        put(&folder, &container, &path, b"one");
        assert_eq!(folder.metadata.len(), 0, "a commit caches nothing");
        for round in 0..100u32 {
            let body = round.to_le_bytes();
            let committed = put(&folder, &container, &path, &body);
            assert!(committed.replaced);
            assert_eq!(folder.metadata.len(), 0, "an overwrite caches nothing");
        }

        // A download caches the blob; the overwrite that replaces it drops the entry.
        let (_, read) = folder.open_now(&container, &path).unwrap();
        assert_eq!(folder.metadata.len(), 1);
        assert_eq!(folder.hot.usage().0, 1);
        let committed = put(&folder, &container, &path, b"two");
        assert_ne!(committed.meta.sha256, read.sha256);
        assert_eq!(
            folder.metadata.len(),
            0,
            "the replaced blob's entry is dropped"
        );
        assert_eq!(folder.hot.usage().0, 0, "and its bytes");

        // A failed precondition keeps the blob and its entry.
        folder.open_now(&container, &path).unwrap();
        let refused = folder.commit_now(
            upload(&folder, b"three"),
            &container,
            &path,
            CommitMode::CreateOnly,
        );
        assert!(matches!(refused, Err(BlobError::PreconditionFailed(_))));
        assert_eq!(folder.metadata.len(), 1);
        let (_, meta) = folder.open_now(&container, &path).unwrap();
        assert_eq!(meta.size, 3);

        // A delete drops it too.
        folder
            .delete_now(&container, &path, &Preconditions::default())
            .unwrap();
        assert_eq!(
            folder.metadata.len(),
            0,
            "the deleted blob's entry is dropped"
        );
        assert_eq!(folder.hot.usage().0, 0);
        assert!(folder
            .current(&folder.file_path(&container, &path))
            .unwrap()
            .is_none());
    }

    fn read_all(folder: &BlobFolder, container: &Name, path: &BlobPath) -> (Vec<u8>, bool) {
        use std::io::Read;
        match folder.open_now(container, path).unwrap().0 {
            BlobData::Memory(bytes) => (bytes.to_vec(), true),
            BlobData::File(mut file) => {
                let mut out = Vec::new();
                file.read_to_end(&mut out).unwrap();
                (out, false)
            }
            BlobData::Remote(_) => unreachable!("the folder has no remote blobs"),
        }
    }

    /// Small blobs come from memory from the second read on; large ones, and every blob when
    /// the budget is zero, from their file.
    #[test]
    fn small_blobs_are_served_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let folder = cached_folder(dir.path());
        let container = Name::parse("files").unwrap();
        let small = BlobPath::parse("small").unwrap();
        let large = BlobPath::parse("large").unwrap();
        let small_bytes = vec![7u8; 4096];
        let large_bytes = vec![9u8; super::super::hot::MAX_HOT_BLOB as usize + 1];
        for (path, bytes) in [(&small, &small_bytes), (&large, &large_bytes)] {
            put(&folder, &container, path, bytes);
        }
        assert_eq!(
            read_all(&folder, &container, &small),
            (small_bytes.clone(), true)
        );
        assert_eq!(folder.hot.usage().0, 1);
        let counted = |f: &BlobFolder| (f.hot.counters.hits.get(), f.hot.counters.misses.get());
        assert_eq!(counted(&folder), (0, 1), "the first read is a miss");
        let (entries, weight) = folder.hot.usage();
        assert!(weight >= 4096 && entries == 1, "{weight}");
        assert_eq!(
            read_all(&folder, &container, &small),
            (small_bytes.clone(), true)
        );
        assert_eq!(
            read_all(&folder, &container, &large),
            (large_bytes.clone(), false)
        );
        assert_eq!(folder.hot.usage().0, 1, "the large blob is not kept");
        assert_eq!(
            counted(&folder),
            (1, 1),
            "one hit; the large blob counts as neither"
        );

        let off = BlobFolder::open(dir.path(), 0o600, 0, CacheCounters::default()).unwrap();
        assert_eq!(read_all(&off, &container, &small), (small_bytes, false));
        assert_eq!(off.hot.usage(), (0, 0));
    }

    /// Whatever changes the file at a path, the next read sees it: a commit, a delete, an edit
    /// in place of the same size, a rename over it by another program.
    #[test]
    fn memory_never_serves_a_changed_blob() {
        let dir = tempfile::tempdir().unwrap();
        let folder = cached_folder(dir.path());
        let container = Name::parse("files").unwrap();
        let path = BlobPath::parse("doc.txt").unwrap();
        let file = folder.file_path(&container, &path);

        put(&folder, &container, &path, b"first version");
        assert_eq!(read_all(&folder, &container, &path).0, b"first version");
        assert_eq!(
            read_all(&folder, &container, &path),
            (b"first version".to_vec(), true)
        );

        put(&folder, &container, &path, b"second version");
        assert_eq!(read_all(&folder, &container, &path).0, b"second version");

        // The same size, written in place by another program, at once.
        fs::write(&file, b"third  version").unwrap();
        let (bytes, _) = read_all(&folder, &container, &path);
        assert_eq!(bytes, b"third  version");
        let (_, meta) = folder.open_now(&container, &path).unwrap();
        assert_eq!(
            meta.sha256,
            <[u8; 32]>::from(sha2::Sha256::digest(b"third  version"))
        );

        // Renamed over by another program.
        let other = dir.path().join("other");
        fs::write(&other, b"fourth version").unwrap();
        fs::rename(&other, &file).unwrap();
        assert_eq!(read_all(&folder, &container, &path).0, b"fourth version");

        folder
            .delete_now(&container, &path, &Preconditions::default())
            .unwrap();
        assert!(matches!(
            folder.open_now(&container, &path),
            Err(BlobError::NotFound)
        ));
    }

    /// A reader that opened a blob just before a write replaced it serves what it opened, but
    /// does not keep it: the path no longer names that file.
    #[test]
    fn a_blob_replaced_while_read_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let folder = cached_folder(dir.path());
        let container = Name::parse("files").unwrap();
        let path = BlobPath::parse("race").unwrap();
        let target = folder.file_path(&container, &path);
        put(&folder, &container, &path, b"old");
        let (file, stat) = open_regular(&target).unwrap();
        let meta = folder.metadata.get(&file, &stat).unwrap();
        let replacement = dir.path().join("new");
        fs::write(&replacement, b"new").unwrap();
        fs::rename(&replacement, &target).unwrap();

        let served = folder.hot.load(&target, &file, &stat, &meta).unwrap();
        assert_eq!(&served[..], b"old", "the reader gets what it opened");
        assert_eq!(folder.hot.usage().0, 0, "but it is not kept");
        assert_eq!(read_all(&folder, &container, &path).0, b"new");
    }

    /// The cache stays within its budget however many blobs are read.
    #[test]
    fn memory_stays_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let budget = 256 * 1024;
        let folder = BlobFolder::open(dir.path(), 0o600, budget, CacheCounters::default()).unwrap();
        let container = Name::parse("files").unwrap();
        for i in 0..200 {
            let path = BlobPath::parse(&format!("b{i}")).unwrap();
            put(&folder, &container, &path, &vec![i as u8; 8 * 1024]);
            let (bytes, _) = read_all(&folder, &container, &path);
            assert_eq!(bytes, vec![i as u8; 8 * 1024]);
        }
        let (entries, weight) = folder.hot.usage();
        assert!(weight <= budget, "{weight} > {budget}");
        assert!(entries > 0 && entries < 200, "{entries}");
    }
}
