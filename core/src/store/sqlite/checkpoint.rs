//! Checkpoints on a thread of their own, so that the store's writer never waits for the disk.
//!
//! In WAL mode a commit appends pages to the WAL; a checkpoint copies them into the database
//! file and fsyncs both files. SQLite's automatic checkpoint runs on the committing connection,
//! right after the commit that takes the WAL past 1000 pages (4 MiB): the store thread then
//! waits for the copy and the fsyncs, and every caller queued behind it waits too. With 1 MiB
//! payloads that was every fourth job (`perf` showed the store thread asleep in
//! `ext4_sync_file`).
//!
//! Here a thread with a connection of its own copies the WAL with `PASSIVE` checkpoints, which
//! never block the writer or readers, whenever about [`WAKE_BYTES`] were committed. One thing
//! such a copy cannot do alone: SQLite rewinds the WAL to its start only when a write
//! transaction begins after everything in it was copied, and beside a busy writer there is
//! always a little more. So when the writer committed little during a copy (at most
//! [`REST_BYTES`]), the thread closes the writer's gate (held by the writer around each
//! transaction), copies that rest (a few pages and two fsyncs) and opens the gate again: the
//! next transaction rewinds the WAL. If the thread falls far behind (a disk slower than the
//! writes), the writer copies everything itself once about [`REWIND_BYTES`] were committed
//! since the WAL last rewound, waiting for the thread's copy in progress: that bounds the WAL.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, ffi};

use crate::store::StoreOp;

/// Committed bytes (estimated, see [`wal_bytes`]) after which the thread is woken: SQLite's
/// default automatic checkpoint, 1000 pages of 4 KiB.
const WAKE_BYTES: u64 = 4 * 1024 * 1024;

/// Bytes committed during a copy up to which the thread copies the rest behind the gate.
const REST_BYTES: u64 = 1024 * 1024;

/// Committed bytes since the WAL last rewound after which the writer copies everything itself:
/// the bound on the WAL when the thread finds no moment to rewind it (SQLite's own is 4 MiB).
/// Generous, because the writer waits for that copy: under a steady stream of big commits
/// (1 MiB payloads pushed 20 at a time) the thread rewinds the WAL every few pushes, and at
/// 32 MiB the writer had copied every other push itself.
const REWIND_BYTES: u64 = 128 * 1024 * 1024;

/// Copies one wake-up makes at most while the writer keeps committing.
const COPIES_PER_WAKE: usize = 4;

/// What the writer and the thread share.
struct Shared {
    /// Whether the thread should run (`true` once woken) and whether it should stop.
    state: Mutex<Wake>,
    wake: Condvar,
    /// Held by the writer around each transaction; the thread holds it to copy the rest.
    gate: Mutex<()>,
    /// Held around each checkpoint, the thread's or the writer's: SQLite refuses a second
    /// checkpoint at once rather than wait for the first.
    copying: Mutex<()>,
    /// Bytes committed so far (estimated).
    committed: AtomicU64,
    /// `committed` when the WAL was last left all copied, so that the next transaction
    /// rewinds it.
    rewound: AtomicU64,
    /// Frames in the WAL after the writer's last commit, as SQLite's WAL hook reports them
    /// (see [`Checkpointer::watch`]).
    wal_frames: AtomicU64,
}

#[derive(Default)]
struct Wake {
    wanted: bool,
    closing: bool,
}

/// The writer's side: holds the gate around transactions, counts what it commits and wakes
/// the thread. Dropping it stops the thread (it closes its connection before the writer's).
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    location: String,
    /// Bytes committed since the thread was last woken.
    unannounced: u64,
    /// [`REWIND_BYTES`], smaller in tests.
    rewind_bytes: u64,
    /// Bytes of one WAL frame (a page and its header); 0 until [`Checkpointer::watch`].
    frame_bytes: u64,
    /// `Shared::wal_frames` when [`Checkpointer::committed`] last looked.
    seen_frames: u64,
}

impl Checkpointer {
    /// Opens a second connection to the store at `path` and starts the thread.
    ///
    /// `synchronous` is the writer's setting, so that a checkpoint syncs as the writer's own
    /// would. Fails when the connection or the thread cannot be made; the caller then leaves
    /// checkpoints to SQLite.
    pub(crate) fn start(path: &Path, location: &str, synchronous: &str) -> rusqlite::Result<Self> {
        let conn = super::open_file(
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
            gate: Mutex::new(()),
            copying: Mutex::new(()),
            committed: AtomicU64::new(0),
            rewound: AtomicU64::new(0),
            wal_frames: AtomicU64::new(0),
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
            rewind_bytes: REWIND_BYTES,
            frame_bytes: 0,
            seen_frames: 0,
        })
    }

    /// Takes the checkpoints over from `writer`: turns its automatic ones off and has SQLite
    /// report the WAL's length after each of its commits (its WAL hook, which setting
    /// `wal_autocheckpoint` would replace), so that what a commit adds to the WAL is measured,
    /// not estimated from its ops: a lone small job's insert adds four or five whole pages
    /// (about 20 KiB), fifty times its bytes. Call [`unwatch`] before the checkpointer is
    /// dropped.
    pub(crate) fn watch(&mut self, writer: &Connection) -> rusqlite::Result<()> {
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let page: i64 = writer
            .pragma_query_value(None, "page_size", |row| row.get(0))
            .unwrap_or(4096);
        self.frame_bytes = u64::try_from(page).unwrap_or(4096) + WAL_FRAME_HEADER;
        // SAFETY: the hook's data is this checkpointer's `Shared`, which lives as long as the
        // checkpointer (it holds an `Arc`); the store removes the hook (`unwatch`) before it
        // drops the checkpointer. The hook only stores into an atomic, from whichever thread
        // commits on `writer`.
        unsafe {
            ffi::sqlite3_wal_hook(
                writer.handle(),
                Some(wal_frames_hook),
                Arc::as_ptr(&self.shared).cast_mut().cast(),
            );
        }
        Ok(())
    }

    /// The gate, held by the writer around each transaction until the guard is dropped.
    pub(crate) fn enter_gate(&self) -> MutexGuard<'_, ()> {
        lock(&self.shared.gate)
    }

    /// Sets the bytes after which the writer copies everything itself (tests).
    #[cfg(test)]
    pub(crate) fn set_rewind_bytes(&mut self, bytes: u64) {
        self.rewind_bytes = bytes;
    }

    /// Bytes committed when the WAL was last left all copied (tests).
    #[cfg(test)]
    pub(crate) fn rewound_bytes(&self) -> u64 {
        self.shared.rewound.load(Ordering::Acquire)
    }

    /// Called by the writer after each commit of `ops`, outside the gate. Wakes the thread when
    /// enough was written; copies everything itself when the thread has fallen far behind.
    pub(crate) fn committed(&mut self, writer: &Connection, ops: &[StoreOp]) {
        let frames = self.shared.wal_frames.load(Ordering::Acquire);
        // Fewer frames than after the last commit: this transaction rewound the WAL.
        let added = frames.checked_sub(self.seen_frames).unwrap_or(frames);
        self.seen_frames = frames;
        let estimated: u64 = ops.iter().map(wal_bytes).sum();
        let bytes = estimated.max(added * self.frame_bytes);
        let committed = self.shared.committed.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.unannounced += bytes;
        if self.unannounced >= WAKE_BYTES {
            self.unannounced = 0;
            lock(&self.shared.state).wanted = true;
            self.shared.wake.notify_one();
        }
        if committed.saturating_sub(self.shared.rewound.load(Ordering::Acquire))
            >= self.rewind_bytes
        {
            // Wait for the thread's copy in progress, then copy the rest: between two of the
            // writer's transactions, so it is everything unless a reader still needs pages.
            match self.shared.copy(writer) {
                Ok(0) => self.shared.rewound.store(committed, Ordering::Release),
                Ok(_) => {}
                Err(e) => {
                    // Try again after as many bytes, not after every commit.
                    self.shared.rewound.store(committed, Ordering::Release);
                    tracing::warn!(store = %self.location, error = %e, "a checkpoint of the job store failed; its WAL file keeps growing until one succeeds");
                }
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared.state).closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // A copy in progress finishes first (PASSIVE: it never waits for a lock).
            let _ = thread.join();
        }
    }
}

impl Shared {
    /// One checkpoint on `conn`, after any other in progress (the thread's or the writer's).
    fn copy(&self, conn: &Connection) -> rusqlite::Result<i64> {
        let _copying = lock(&self.copying);
        checkpoint(conn)
    }
}

/// Removes the hook [`Checkpointer::watch`] set on `writer`.
pub(crate) fn unwatch(writer: &Connection) {
    // SAFETY: a null hook with null data is SQLite's "no hook".
    unsafe {
        ffi::sqlite3_wal_hook(writer.handle(), None, std::ptr::null_mut());
    }
}

/// The header before each page in a WAL file.
const WAL_FRAME_HEADER: u64 = 24;

/// SQLite's WAL hook: records the frames in the WAL after a commit.
unsafe extern "C" fn wal_frames_hook(
    shared: *mut std::ffi::c_void,
    _db: *mut ffi::sqlite3,
    _name: *const std::ffi::c_char,
    frames: std::ffi::c_int,
) -> std::ffi::c_int {
    // SAFETY: `watch` passes a `Shared` that outlives the hook.
    let shared = unsafe { &*shared.cast::<Shared>() };
    shared
        .wal_frames
        .store(u64::try_from(frames).unwrap_or(0), Ordering::Release);
    ffi::SQLITE_OK
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The thread: each wake-up copies until the WAL is all copied and the writer's gate was
/// closed for the rest, or [`COPIES_PER_WAKE`] copies were made.
fn run(conn: &Connection, shared: &Shared, location: &str) {
    loop {
        {
            let mut state = lock(&shared.state);
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
        let failed = |e: rusqlite::Error| {
            tracing::warn!(store = %location, error = %e, "a background checkpoint of the job store failed; the writer will checkpoint instead");
        };
        for _ in 0..COPIES_PER_WAKE {
            let before = shared.committed.load(Ordering::Acquire);
            if let Err(e) = shared.copy(conn) {
                failed(e);
                break;
            }
            if shared.committed.load(Ordering::Acquire) - before > REST_BYTES {
                // Too much came meanwhile to copy behind the gate: copy again first.
                continue;
            }
            // Little came during the copy: copy the rest with the writer held back.
            let gate = lock(&shared.gate);
            let now = shared.committed.load(Ordering::Acquire);
            if now - before > REST_BYTES {
                // A big transaction slipped in while the gate was being closed.
                continue;
            }
            let rest = shared.copy(conn);
            drop(gate);
            match rest {
                Ok(0) => shared.rewound.store(now, Ordering::Release),
                // A reader still needs older pages.
                Ok(_) => {}
                Err(e) => failed(e),
            }
            break;
        }
        if lock(&shared.state).closing {
            return;
        }
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
/// its row and index entries. A floor under what the WAL hook measures, which misses part of a
/// commit that rewinds the WAL and writes more frames than it held before.
fn wal_bytes(op: &StoreOp) -> u64 {
    const ROW: u64 = 256;
    let data = match op {
        StoreOp::Insert(job) => job.payload.len() + job.id.len(),
        StoreOp::Done { result, .. } => result.len(),
        _ => 0,
    };
    data as u64 + ROW
}
