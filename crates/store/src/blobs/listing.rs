//! Listing a container: blob paths in byte order, from a cursor, a page at a time.
//!
//! The walk visits each folder's entries sorted as their full paths would sort (a folder `a`
//! sorts as `a/`, after `a-b`), so pages come out in the same order as a flat sorted list of
//! paths, and the cursor (the last path returned) is enough to resume.

use std::fs;
use std::path::Path;

use serde::Serialize;

use super::meta::BlobMeta;
use super::BlobError;

/// One listed blob.
#[derive(Debug, Clone, Serialize)]
pub struct ListingItem {
    /// The path inside the container.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The strong ETag.
    pub etag: String,
    /// The content type.
    pub content_type: String,
    /// Last modification, as an HTTP date.
    pub last_modified: String,
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The blobs, in path order.
    pub items: Vec<ListingItem>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

pub(super) fn list(
    root: &Path,
    prefix: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Listing, BlobError> {
    let mut walk = Walk {
        prefix,
        cursor,
        limit,
        items: Vec::new(),
        more: false,
    };
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => walk.folder(root, "")?,
        _ => {}
    }
    let next_cursor = walk
        .more
        .then(|| walk.items.last().map(|i| i.path.clone()))
        .flatten();
    Ok(Listing {
        items: walk.items,
        next_cursor,
    })
}

struct Walk<'a> {
    prefix: &'a str,
    cursor: Option<&'a str>,
    limit: usize,
    items: Vec<ListingItem>,
    more: bool,
}

impl Walk<'_> {
    fn folder(&mut self, dir: &Path, folder_path: &str) -> Result<(), BlobError> {
        let mut entries: Vec<(String, bool)> = Vec::new();
        let listed = match fs::read_dir(dir) {
            // Removed by a delete since its parent was read: nothing in it to list.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !folder_path.is_empty() => {
                return Ok(())
            }
            other => other.map_err(BlobError::from_io)?,
        };
        for entry in listed {
            let entry = entry.map_err(BlobError::from_io)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let kind = entry.file_type().map_err(BlobError::from_io)?;
            if kind.is_dir() {
                entries.push((format!("{folder_path}{name}/"), true));
            } else if kind.is_file() {
                entries.push((format!("{folder_path}{name}"), false));
            }
        }
        entries.sort();
        for (path, is_dir) in entries {
            if self.more {
                return Ok(());
            }
            if is_dir {
                let past_cursor = self
                    .cursor
                    .is_none_or(|c| path.as_str() > c || c.starts_with(path.as_str()));
                let under_prefix =
                    path.starts_with(self.prefix) || self.prefix.starts_with(path.as_str());
                if past_cursor && under_prefix {
                    let name = path
                        .trim_end_matches('/')
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    self.folder(&dir.join(name), &path)?;
                }
            } else if path.starts_with(self.prefix) && self.cursor.is_none_or(|c| path.as_str() > c)
            {
                if self.items.len() == self.limit {
                    self.more = true;
                    return Ok(());
                }
                let file = dir.join(path.rsplit('/').next().unwrap_or_default());
                match item(&file, path) {
                    Ok(item) => self.items.push(item),
                    // Deleted since the folder was read: not in the listing.
                    Err(ItemError::Gone) => {}
                    Err(ItemError::Failed(e)) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// Why a listed file has no item.
enum ItemError {
    /// It was deleted after its folder was read.
    Gone,
    /// Anything else.
    Failed(BlobError),
}

impl From<std::io::Error> for ItemError {
    fn from(e: std::io::Error) -> ItemError {
        ItemError::Failed(BlobError::from_io(e))
    }
}

fn item(file: &Path, path: String) -> Result<ListingItem, ItemError> {
    let f = fs::File::open(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ItemError::Gone,
        _ => ItemError::from(e),
    })?;
    let stat = f.metadata()?;
    let meta = BlobMeta::of_file(&f, &stat)?;
    Ok(ListingItem {
        path,
        size: meta.size,
        etag: meta.etag().to_owned(),
        last_modified: meta.last_modified().to_owned(),
        content_type: meta.content_type,
    })
}
