//! The filesystem object store: one file per object under `ROOT/objects/…`.
//!
//! Durability: the caller writes and fsyncs a staging file (ideally under
//! [`FsObjectStore::staging_dir`], on the same filesystem); [`ObjectStore::put_file`] links it
//! into place and fsyncs every directory whose entries changed, so an `Ok` survives power
//! loss. Objects are never overwritten: the link fails when the key already exists.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use super::{ByteStream, ObjectKey, ObjectStore};
use crate::error::StoreError;

/// Chunk size of [`ObjectStore::get_stream`].
const STREAM_CHUNK: usize = 256 * 1024;

/// Objects stored as files under `root/objects`, staging files under `root/staging`.
#[derive(Debug, Clone)]
pub struct FsObjectStore {
    root: PathBuf,
}

impl FsObjectStore {
    /// Opens (creating when missing) a store rooted at `root`, with its `objects` and
    /// `staging` directories.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let store = FsObjectStore { root };
        let (root, objects, staging) =
            (store.root.clone(), store.objects_dir(), store.staging_dir());
        blocking(move || {
            for dir in [&objects, &staging] {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::io("cannot create object store directory", dir, e))?;
            }
            // The 256 fan-out directories, once (see `ObjectKey`); one fsync makes them durable.
            let mut created = false;
            for i in 0..=255u8 {
                let dir = objects.join(format!("{i:02x}"));
                match std::fs::create_dir(&dir) {
                    Ok(()) => created = true,
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(StoreError::io(
                            "cannot create object store directory",
                            &dir,
                            e,
                        ));
                    }
                }
            }
            if created {
                fsync_dir(&objects)?;
            }
            // Make the two entries durable: a store whose directories vanish after a crash
            // would look empty rather than broken.
            fsync_dir(&root)?;
            Ok(())
        })
        .await?;
        Ok(store)
    }

    /// Where callers should write staging files: same filesystem as the objects, so that
    /// `put_file` is a link rather than a copy.
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// The file of `key`. Keys are validated by type, but re-check that every component is
    /// a plain name so that no key can ever address a path outside the root.
    fn path_of(&self, key: &ObjectKey) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key.as_str());
        if rel.components().all(|c| matches!(c, Component::Normal(_))) {
            Ok(self.root.join(rel))
        } else {
            Err(StoreError::InvalidObjectKey(key.as_str().to_owned()))
        }
    }
}

#[async_trait]
impl ObjectStore for FsObjectStore {
    async fn put_file(&self, key: &ObjectKey, staged: &Path) -> Result<(), StoreError> {
        let dest = self.path_of(key)?;
        let root = self.root.clone();
        let staged = staged.to_owned();
        let key = key.clone();
        blocking(move || put_blocking(&root, &key, &staged, &dest)).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) => Err(read_error(key, &path, e)),
        }
    }

    async fn get_stream(&self, key: &ObjectKey) -> Result<ByteStream, StoreError> {
        let path = self.path_of(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) => return Err(read_error(key, &path, e)),
        };
        // State: Some(file) while reading, None once finished or failed (the stream ends
        // after yielding an error).
        let stream = futures::stream::unfold(Some((file, path)), |state| async move {
            let (mut file, path) = state?;
            let mut buf = BytesMut::with_capacity(STREAM_CHUNK);
            // Fill the whole chunk unless the file ends: tokio's File may return short reads.
            while buf.len() < STREAM_CHUNK {
                match file.read_buf(&mut buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Some((Err(StoreError::io("cannot read object", path, e)), None));
                    }
                }
            }
            if buf.is_empty() {
                None
            } else {
                let full = buf.len() == STREAM_CHUNK;
                Some((Ok(buf.freeze()), full.then_some((file, path))))
            }
        });
        Ok(Box::pin(stream))
    }

    async fn get_range(
        &self,
        key: &ObjectKey,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, StoreError> {
        use tokio::io::AsyncSeekExt;
        let path = self.path_of(key)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) => return Err(read_error(key, &path, e)),
        };
        if len > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| StoreError::io("cannot seek in object", &path, e))?;
        }
        // State: the file, the path and the bytes still to read; None after an error.
        let stream = futures::stream::unfold(Some((file, path, len)), |state| async move {
            let (mut file, path, left) = state?;
            if left == 0 {
                return None;
            }
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(STREAM_CHUNK);
            let mut buf = BytesMut::with_capacity(want);
            while buf.len() < want {
                let mut limited = (&mut file).take((want - buf.len()) as u64);
                match limited.read_buf(&mut buf).await {
                    Ok(0) => {
                        let e = std::io::Error::new(
                            ErrorKind::UnexpectedEof,
                            "the object ends before the requested range",
                        );
                        return Some((Err(StoreError::io("cannot read object", path, e)), None));
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Some((Err(StoreError::io("cannot read object", path, e)), None));
                    }
                }
            }
            let left = left - buf.len() as u64;
            Some((Ok(buf.freeze()), Some((file, path, left))))
        });
        Ok(Box::pin(stream))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(StoreError::io("cannot delete object", &path, e)),
            }
            // Directories are left in place: a concurrent put may be about to use them.
            match path.parent() {
                Some(dir) => fsync_dir(dir),
                None => Ok(()),
            }
        })
        .await
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("cannot check object", path, e)),
        }
    }

    async fn list(&self) -> Result<Vec<ObjectKey>, StoreError> {
        let root = self.root.clone();
        let objects = self.objects_dir();
        blocking(move || list_blocking(&root, &objects)).await
    }

    fn describe(&self) -> String {
        format!("files under {}", self.root.display())
    }
}

/// Runs blocking filesystem work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        StoreError::io(
            "filesystem task failed",
            PathBuf::new(),
            std::io::Error::other(e),
        )
    })?
}

fn read_error(key: &ObjectKey, path: &Path, e: std::io::Error) -> StoreError {
    if e.kind() == ErrorKind::NotFound {
        StoreError::ObjectNotFound(key.to_string())
    } else {
        StoreError::io("cannot read object", path, e)
    }
}

/// Fsyncs a directory so that entries created or removed in it are durable.
fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("cannot fsync directory", dir, e))
}

/// Creates the missing directories between `root` and `dir`, fsyncing the parent of each
/// one so that the new entry is durable. A directory that already exists is fsynced in its
/// parent too when we raced with another creator: it may not have synced it yet.
fn create_dirs_durably(root: &Path, dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let rel = dir.strip_prefix(root).map_err(|_| {
        StoreError::io(
            "object directory outside the store",
            dir,
            ErrorKind::InvalidInput.into(),
        )
    })?;
    let mut current = root.to_path_buf();
    for component in rel.components() {
        let parent = current.clone();
        current.push(component);
        match std::fs::create_dir(&current) {
            Ok(()) => fsync_dir(&parent)?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists && current.is_dir() => {
                // Existing before we looked (cheap path) or created concurrently; in the
                // latter case its creator may not have fsynced the parent yet.
                fsync_dir(&parent)?;
            }
            Err(e) => {
                return Err(StoreError::io(
                    "cannot create object directory",
                    &current,
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// Whether a failed `hard_link` means "links cannot work here" (another filesystem, or
/// a filesystem without hard links) rather than a real failure.
fn link_unsupported(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::CrossesDevices | ErrorKind::Unsupported)
        || e.raw_os_error() == Some(1) // EPERM: some filesystems (FUSE, vfat) refuse links
}

fn put_blocking(
    root: &Path,
    key: &ObjectKey,
    staged: &Path,
    dest: &Path,
) -> Result<(), StoreError> {
    let dir = dest
        .parent()
        .ok_or_else(|| StoreError::InvalidObjectKey(key.as_str().to_owned()))?;

    // Check the staging file first: a missing one must not create anything.
    let meta = std::fs::metadata(staged)
        .map_err(|e| StoreError::io("cannot read staging file", staged, e))?;
    if !meta.is_file() {
        return Err(StoreError::io(
            "staging path is not a regular file",
            staged,
            ErrorKind::InvalidInput.into(),
        ));
    }

    create_dirs_durably(root, dir)?;

    // link(2) never replaces an existing name: this is the no-overwrite guarantee.
    match std::fs::hard_link(staged, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(StoreError::AlreadyExists(format!("object {key}")));
        }
        Err(e) if link_unsupported(&e) => return put_by_copy(key, staged, dest, dir),
        Err(e) => {
            return Err(StoreError::io(
                "cannot link staging file into the store",
                dest,
                e,
            ));
        }
    }
    if let Err(err) = fsync_dir(dir) {
        // Not durable: take the object back out so that an error leaves nothing under key.
        let _ = std::fs::remove_file(dest);
        return Err(err);
    }
    Ok(())
}

/// Staging file on another filesystem (or links unsupported): copy into a temporary file
/// beside the destination, fsync it, then put it in place without overwriting.
fn put_by_copy(key: &ObjectKey, staged: &Path, dest: &Path, dir: &Path) -> Result<(), StoreError> {
    // A leading dot and no `.dcm` suffix: never mistaken for an object by `list`.
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        std::fs::copy(staged, &tmp)
            .map_err(|e| StoreError::io("cannot copy staging file into the store", &tmp, e))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::io("cannot fsync object", &tmp, e))?;
        match std::fs::hard_link(&tmp, dest) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists(format!("object {key}")));
            }
            Err(e) if link_unsupported(&e) => {
                // No hard links at all here: rename after an existence check. Keys are
                // random UUIDs, so the window between check and rename is harmless.
                if dest.symlink_metadata().is_ok() {
                    return Err(StoreError::AlreadyExists(format!("object {key}")));
                }
                std::fs::rename(&tmp, dest)
                    .map_err(|e| StoreError::io("cannot move object into place", dest, e))?;
            }
            Err(e) => return Err(StoreError::io("cannot link object into place", dest, e)),
        }
        if let Err(err) = fsync_dir(dir) {
            let _ = std::fs::remove_file(dest);
            return Err(err);
        }
        Ok(())
    })();
    // Gone already when renamed; otherwise a leftover link or a failed copy.
    let _ = std::fs::remove_file(&tmp);
    result?;
    Ok(())
}

fn list_blocking(root: &Path, objects: &Path) -> Result<Vec<ObjectKey>, StoreError> {
    let mut keys = Vec::new();
    let mut pending = vec![objects.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| StoreError::io("cannot list object directory", &dir, e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| StoreError::io("cannot list object directory", &dir, e))?;
            let path = entry.path();
            // file_type() does not follow symlinks: a symlink is foreign, never traversed.
            let file_type = entry
                .file_type()
                .map_err(|e| StoreError::io("cannot stat object store entry", &path, e))?;
            if file_type.is_dir() {
                pending.push(path);
                continue;
            }
            let parsed = path
                .strip_prefix(root)
                .ok()
                .filter(|_| file_type.is_file())
                .and_then(|rel| rel.to_str())
                .map(|rel| rel.replace(std::path::MAIN_SEPARATOR, "/"))
                .and_then(|rel| ObjectKey::parse(&rel).ok());
            match parsed {
                Some(key) => keys.push(key),
                None => {
                    tracing::warn!(path = %path.display(), "skipping a file in the object store that is not an object")
                }
            }
        }
    }
    keys.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(keys)
}
