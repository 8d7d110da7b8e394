//! Checkpoints on a thread of their own, so that the store's writer never waits for the disk.
//!
//! In WAL mode a commit appends pages to the WAL; a checkpoint copies them into the database
//! file and fsyncs both files. SQLite's automatic checkpoint runs on the committing connection,
//! right after the commit that takes the WAL past 1000 pages (4 MiB): the store thread then
//! waits for the copy and the fsyncs, and every caller queued behind it waits too. With 1 MiB
//! payloads that was every fourth job, and pushes of such jobs ran at the speed of the disk's
//! flushes (`perf` showed the store thread asleep in `ext4_sync_file`).
//!
//! Here a thread with a connection of its own copies the WAL with `PASSIVE` checkpoints, which
//! never block the writer or readers, whenever about [`WAKE_BYTES`] were committed. One thing
//! it cannot do alone: SQLite rewinds the WAL to its start only when a write transaction begins
//! after everything in it was copied, and a checkpoint running beside a busy writer rarely
//! leaves it so. So once the thread has nearly caught up, the writer checkpoints the rest
//! itself between two transactions: a few pages and two fsyncs, after which the next
//! transaction rewinds the WAL. If the thread falls far behind (a disk slower than the
//! writes), the writer checkpoints whatever is left once about [`REWIND_BYTES`] were committed
//! since the WAL last rewound, waiting for the thread's round if need be: that bounds the WAL.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreOp;

/// Committed bytes (estimated, see [`wal_bytes`]) after which the thread is woken: SQLite's
/// default automatic checkpoint, 1000 pages of 4 KiB.
const WAKE_BYTES: u64 = 4 * 1024 * 1024;

/// Committed bytes after which the writer checkpoints everything itself when the thread has not
/// caught up: the bound on the WAL when the disk is slower than the writes (SQLite's own is
/// 4 MiB).
const REWIND_BYTES: u64 = 32 * 1024 * 1024;

/// WAL pages left uncopied after a round below which the thread counts as caught up (1 MiB).
const CAUGHT_UP_PAGES: i64 = 256;

/// Bytes committed since the thread's last round up to which the writer copies the rest.
const FOLLOW_UP_BYTES: u64 = 1024 * 1024;

/// Checkpoints one wake-up runs at most while the writer keeps adding pages.
const ROUNDS_PER_WAKE: usize = 4;

/// What the writer and the thread share.
struct Shared {
    /// Whether the thread should run (`true` once woken) and whether it should stop.
    state: Mutex<Wake>,
    wake: Condvar,
    /// Wake-ups the thread has finished.
    finished: AtomicU64,
    /// Held for each checkpoint, by the thread or the writer: SQLite refuses a second
    /// checkpoint at once rather than wait for the first.
    round: Mutex<()>,
    /// WAL pages its last checkpoint left uncopied; `i64::MAX` when it could not tell.
    behind: AtomicI64,
}

#[derive(Default)]
struct Wake {
    wanted: bool,
    closing: bool,
}

/// The writer's side: counts what it commits, wakes the thread, and finishes what the thread
/// leaves. Dropping it stops the thread (it closes its connection before the writer's).
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    location: String,
    /// Bytes committed since the thread was last woken.
    unannounced: u64,
    /// Bytes committed since the writer last checkpointed itself.
    since_rewind: u64,
    /// The thread's wake-ups the writer has already followed up.
    followed: u64,
    /// The thread's finished wake-ups when the writer last looked, and the bytes committed
    /// since it saw that number change: what the thread's last round cannot have copied.
    seen: u64,
    since_round: u64,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("location", &self.location)
            .field("since_rewind", &self.since_rewind)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// Opens a second connection to the store at `path` and starts the thread.
    ///
    /// `synchronous` is the writer's setting, so that a checkpoint syncs as the writer's own
    /// would. Fails when the connection or the thread cannot be made; the caller then leaves
    /// checkpoints to SQLite.
    pub(crate) fn start(path: &Path, location: &str, synchronous: &str) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // PASSIVE checkpoints never wait for a lock; nothing else runs on this connection.
        conn.busy_timeout(Duration::ZERO)?;
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(Wake::default()),
            wake: Condvar::new(),
            finished: AtomicU64::new(0),
            round: Mutex::new(()),
            behind: AtomicI64::new(i64::MAX),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            let location = location.to_string();
            std::thread::Builder::new()
                .name("queuexec-ckpt".into())
                .spawn(move || run(&conn, &shared, &location))
                .map_err(|e| {
                    rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(
                        format!("could not start the checkpoint thread: {e}"),
                    )))
                })?
        };
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
            location: location.to_string(),
            unannounced: 0,
            since_rewind: 0,
            followed: 0,
            seen: 0,
            since_round: 0,
        })
    }

    /// Wake-ups the thread has finished.
    #[cfg(test)]
    pub(crate) fn shared_finished(&self) -> u64 {
        self.shared.finished.load(Ordering::Acquire)
    }

    /// Called by the writer after each commit of `ops`. Wakes the thread when enough was
    /// written, and checkpoints on `writer` when the thread has nearly caught up since the
    /// last time (or has fallen far behind).
    pub(crate) fn committed(&mut self, writer: &Connection, ops: &[StoreOp]) {
        let bytes: u64 = ops.iter().map(wal_bytes).sum();
        self.unannounced += bytes;
        self.since_rewind += bytes;
        if self.unannounced >= WAKE_BYTES {
            self.unannounced = 0;
            let mut state = self
                .shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.wanted = true;
            drop(state);
            self.shared.wake.notify_one();
        }
        if self.since_rewind >= REWIND_BYTES {
            // The thread is behind: wait for its round in progress, then copy the rest.
            let shared = Arc::clone(&self.shared);
            let round = shared.round.lock().unwrap_or_else(PoisonError::into_inner);
            self.finish(writer, round);
            return;
        }
        let finished = self.shared.finished.load(Ordering::Acquire);
        if finished == self.seen {
            self.since_round += bytes;
        } else {
            // This commit may have come after the round: count it.
            self.seen = finished;
            self.since_round = bytes;
        }
        if self.since_rewind >= WAKE_BYTES
            && finished != self.followed
            && self.since_round <= FOLLOW_UP_BYTES
            && self.shared.behind.load(Ordering::Acquire) < CAUGHT_UP_PAGES
        {
            // The thread nearly caught up and little came since: copy the rest (its WAL
            // pages are synced by the copy, so a big rest would keep the writer waiting),
            // unless the thread is at work again.
            self.followed = finished;
            let shared = Arc::clone(&self.shared);
            match shared.round.try_lock() {
                Ok(round) => self.finish(writer, round),
                Err(TryLockError::Poisoned(round)) => self.finish(writer, round.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
    }

    /// Checkpoints on the writer's connection, between two of its transactions, while the
    /// thread is kept out: when it copies everything, the next transaction rewinds the WAL.
    fn finish(&mut self, writer: &Connection, round: MutexGuard<'_, ()>) {
        let left = checkpoint(writer);
        drop(round);
        match left {
            Ok(0) => self.since_rewind = 0,
            // A reader still needs older pages: try again after the next commit.
            Ok(_) => {}
            Err(e) => {
                self.since_rewind = 0;
                tracing::warn!(store = %self.location, error = %e, "a checkpoint of the job store failed; its WAL file keeps growing until one succeeds");
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.closing = true;
        drop(state);
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // A round in progress finishes first (PASSIVE: it never waits for a lock).
            let _ = thread.join();
        }
    }
}

/// The thread: a wake-up runs checkpoints until the WAL is nearly all copied, or
/// [`ROUNDS_PER_WAKE`] of them.
fn run(conn: &Connection, shared: &Shared, location: &str) {
    loop {
        {
            let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            while !state.wanted && !state.closing {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.closing {
                return;
            }
            state.wanted = false;
        }
        for _ in 0..ROUNDS_PER_WAKE {
            let round = shared.round.lock().unwrap_or_else(PoisonError::into_inner);
            let left = checkpoint(conn);
            drop(round);
            match left {
                Ok(behind) => {
                    shared.behind.store(behind, Ordering::Release);
                    if behind < CAUGHT_UP_PAGES {
                        break;
                    }
                }
                Err(e) => {
                    shared.behind.store(i64::MAX, Ordering::Release);
                    tracing::warn!(store = %location, error = %e, "a background checkpoint of the job store failed; the writer will checkpoint instead");
                    break;
                }
            }
            if shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .closing
            {
                break;
            }
        }
        shared.finished.fetch_add(1, Ordering::AcqRel);
    }
}

/// One PASSIVE checkpoint on `conn`; returns the WAL pages it left uncopied (`i64::MAX` when
/// it could not tell).
fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        let busy: i64 = row.get(0)?;
        let log: i64 = row.get(1)?;
        let copied: i64 = row.get(2)?;
        Ok(if busy != 0 || log < 0 || copied < 0 {
            i64::MAX
        } else {
            (log - copied).max(0)
        })
    })
}

/// About how many bytes `op` adds to the WAL: its payload or result, and a share of a page for
/// its row and index entries. Only a trigger: SQLite writes whole pages, once per transaction.
fn wal_bytes(op: &StoreOp) -> u64 {
    const ROW: u64 = 256;
    let data = match op {
        StoreOp::Insert(job) => job.payload.len() + job.id.len(),
        StoreOp::Done { result, .. } => result.len(),
        _ => 0,
    };
    data as u64 + ROW
}
