//! The fsync of SQLite's write-ahead log after commits made without one.
//!
//! The audit entry of a read must be committed before the data is released (no audit,
//! no data), but waiting for its fsync as well made a small read a quarter to 60%
//! slower: an exact patient-name search took 0.83 ms with the fsync and 0.67 ms
//! without, a study by UID 0.74 and 0.46 ms (5,000-study index, this machine's virtio
//! disk). So the [`direct`](super::direct) connections, which make those appends,
//! commit with `synchronous=NORMAL`: the commit is in the WAL file, and in the page
//! cache, when the statement returns — a crash of pacs loses nothing — and this
//! module's thread then makes the WAL durable with `fdatasync`, at once, in the
//! background. Only a power cut in the fraction of a millisecond between the two can
//! lose those last entries (never a part of one: SQLite's recovery keeps whole
//! transactions, and the chain stays a chain without its last links).
//!
//! A caller that must not go on before its write is durable (an audited write, an
//! acknowledgement) waits with [`WalSync::sync`]. Requests made while a sync is running
//! are served together by the next one. A failed fsync is final: every later request
//! fails, waited for or not (audited reads stop), as PostgreSQL stops on one, because
//! after a failed fsync Linux may have dropped the pages it could not write and a later
//! fsync that succeeds proves nothing.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use crate::{Result, StoreError, lock};

/// The sync thread of one SQLite index. Stops (after a last sync) when dropped.
#[derive(Debug)]
pub(crate) struct WalSync {
    shared: Arc<Shared>,
    done: tokio::sync::watch::Receiver<Synced>,
}

#[derive(Debug)]
struct Shared {
    wal: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Requests so far; a request is served by a sync that starts after it was made.
    requested: u64,
    stop: bool,
}

/// What the thread has done: every request up to `through` is durable, unless `failed`.
#[derive(Debug, Clone, Default)]
struct Synced {
    through: u64,
    failed: Option<String>,
}

impl WalSync {
    /// Starts the thread for the database file `db` (its WAL is `db` + `-wal`).
    pub(crate) fn start(db: PathBuf) -> std::io::Result<Self> {
        let mut wal = db.into_os_string();
        wal.push("-wal");
        let shared = Arc::new(Shared {
            wal: wal.into(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let (tx, done) = tokio::sync::watch::channel(Synced::default());
        let thread = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("pacs-wal-sync".into())
            .spawn(move || thread.run(tx))?;
        Ok(WalSync { shared, done })
    }

    /// Asks for a sync of what is committed now, without waiting for it; fails once a
    /// sync has failed (a write made now would never be durable).
    pub(crate) fn request(&self) -> Result<u64> {
        if let Some(e) = &self.done.borrow().failed {
            return Err(failed(e));
        }
        let mut state = lock(&self.shared.state);
        state.requested += 1;
        self.shared.wake.notify_one();
        Ok(state.requested)
    }

    /// Returns once everything committed before the call is durable.
    pub(crate) async fn sync(&self) -> Result<()> {
        let ticket = self.request()?;
        let mut done = self.done.clone();
        let synced = done
            .wait_for(|s| s.through >= ticket || s.failed.is_some())
            .await
            .map_err(|_| StoreError::Invalid("the index's WAL sync thread has stopped".into()))?;
        match &synced.failed {
            Some(e) => Err(failed(e)),
            None => Ok(()),
        }
    }

    /// Requests served so far (for tests).
    #[cfg(test)]
    pub(crate) fn synced_through(&self) -> u64 {
        self.done.borrow().through
    }

    /// Requests made so far (for tests).
    #[cfg(test)]
    pub(crate) fn requested(&self) -> u64 {
        lock(&self.shared.state).requested
    }
}

impl Drop for WalSync {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.stop = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn run(&self, done: tokio::sync::watch::Sender<Synced>) {
        let mut through = 0;
        loop {
            let target = {
                let mut state = lock(&self.state);
                while state.requested == through && !state.stop {
                    state = self
                        .wake
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                if state.requested == through {
                    return; // stopped, nothing left to sync
                }
                state.requested
            };
            match self.fdatasync() {
                Ok(()) => {
                    through = target;
                    done.send_modify(|s| s.through = target);
                }
                Err(e) => {
                    tracing::error!(wal = %self.wal.display(), error = %e,
                        "cannot fsync the index's write-ahead log; audited reads stop until pacs is restarted");
                    done.send_modify(|s| s.failed = Some(e.to_string()));
                    return;
                }
            }
        }
    }

    /// Opened for each sync: SQLite deletes the WAL when its last connection closes and
    /// makes a new one, and a kept descriptor would sync the deleted file.
    fn fdatasync(&self) -> std::io::Result<()> {
        match std::fs::File::open(&self.wal) {
            Ok(f) => f.sync_data(),
            // No WAL: everything was checkpointed into the database, which SQLite synced.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn failed(e: &str) -> StoreError {
    StoreError::Invalid(format!(
        "the index's write-ahead log could not be made durable ({e}); \
         check the disk and restart pacs"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_served_by_a_later_sync() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("index.db");
        std::fs::write(dir.path().join("index.db-wal"), b"frames").unwrap();
        let sync = WalSync::start(db).unwrap();
        sync.sync().await.unwrap();
        assert!(sync.synced_through() >= 1);
        // Many at once: each returns only when a sync that began after its request ended.
        let waits: Vec<_> = (0..20).map(|_| sync.sync()).collect();
        for w in futures::future::join_all(waits).await {
            w.unwrap();
        }
        assert!(sync.synced_through() >= 21);
        // A request without a wait is served too.
        let ticket = sync.request().unwrap();
        let mut done = sync.done.clone();
        done.wait_for(|s| s.through >= ticket).await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_wal_has_nothing_to_sync() {
        let dir = tempfile::tempdir().unwrap();
        let sync = WalSync::start(dir.path().join("index.db")).unwrap();
        sync.sync().await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_sync_fails_every_later_wait() {
        let dir = tempfile::tempdir().unwrap();
        // A WAL path that cannot be opened: a directory's child of a file.
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        let sync = WalSync::start(file.join("index.db")).unwrap();
        let e = sync.sync().await.unwrap_err().to_string();
        assert!(e.contains("could not be made durable"), "{e}");
        assert!(sync.sync().await.is_err());
        // And a write that does not wait is refused too (an audited read fails closed).
        assert!(sync.request().is_err());
    }
}
