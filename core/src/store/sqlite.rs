//! The durable job store: one SQLite file (rusqlite, bundled), in WAL mode.
//!
//! Durability: with the default `synchronous=NORMAL`, a committed transaction is in the WAL
//! file when `apply` returns, so it survives the crash or kill of the master's process (the
//! operating system still holds the write). It may be lost if the machine loses power before
//! the operating system flushes the WAL; [`SqliteOptions::synchronous_full`] closes that gap
//! with an fsync per commit, at a cost in throughput that group commit (see
//! [`StoreWriter`](super::StoreWriter)) mostly absorbs.
//!
//! Every connection opens the file through a thin VFS over SQLite's default one
//! (`sqlite/wal_vfs.rs`) that writes each commit's WAL frames with one system call instead of
//! two per page; what reaches the file, and when a commit counts as written, is unchanged.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{
    CachedStatement, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior,
    params,
};

#[cfg(test)]
use super::StateCounts;
use super::{JobState, JobStore, StoreOp, StoredJob};
use crate::error::{Error, Result};
use crate::job::{WorkerInfo, now_ms};

/// The schema this build writes and reads, kept in `PRAGMA user_version`. Version 1 kept each
/// payload in its job's row; [`SqliteStore::migrate`] moves them to `payloads` (version 2).
const SCHEMA_VERSION: i64 = 2;

/// Marks a SQLite file as a queuexec job store (`PRAGMA application_id`, "QXEC").
const APPLICATION_ID: i64 = 0x5158_4543;

/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Each job's sealed payload, by the job's seq, written once and never updated. Kept out of the
/// jobs row because SQLite rewrites (or reads back and compares) a whole row on every UPDATE,
/// overflow pages included: with the payload in the row, a 1 MiB job cost about 3 MiB of WAL
/// writes and 2 MiB of reads over its life (done, delivered), and the checkpoints copied it all
/// again. Here it is written once. (A macro: [`SCHEMA`] and [`MIGRATE_1_TO_2`] are built from
/// it at compile time.)
macro_rules! payloads_table {
    () => {
        "CREATE TABLE payloads (
    seq     INTEGER PRIMARY KEY NOT NULL,
    payload BLOB NOT NULL
);
"
    };
}

const SCHEMA: &str = concat!(
    "
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY NOT NULL,
    seq           INTEGER NOT NULL,
    task_type     TEXT,
    priority      INTEGER NOT NULL,
    state         INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    timeout_ms    INTEGER,
    not_before_ms INTEGER NOT NULL,
    last_error    TEXT,
    result        BLOB,
    worker_id     TEXT,
    worker_name   TEXT,
    delivered     INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);
-- Exactly the rows load() returns, in its order; finished and delivered jobs leave it, so a
-- restart reads the open jobs without scanning the history.
CREATE INDEX jobs_open ON jobs (seq) WHERE state NOT IN (2, 4) OR delivered = 0;
",
    payloads_table!(),
    "
-- One row per setting. max_seq is the highest seq of a job discarded (deleted) so far: the
-- highest seq ever used is the larger of it and the last payload's (found in its table's
-- b-tree at once), so no insert writes this row.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('max_seq', 0);
"
);

/// The columns a [`StoredJob`] is read from, in `row_to_job`'s order (a macro so that
/// [`LOAD_SQL`] can be built from it at compile time). Every query using it reads `FROM jobs`
/// (unaliased): the payload comes from its own table by the job's seq.
macro_rules! columns {
    () => {
        "id, seq, task_type, (SELECT payload FROM payloads WHERE payloads.seq = jobs.seq), \
         priority, state, attempt, max_attempts, timeout_ms, not_before_ms, last_error, result, \
         worker_id, worker_name, delivered"
    };
}

mod checkpoint;
mod wal_vfs;
// After `columns!`, which it uses.
mod pager;

/// `load()`'s query: unfinished jobs and undelivered results, in push order. One constant, so
/// the test of its query plan runs exactly this statement.
#[cfg(test)]
const LOAD_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM jobs WHERE state NOT IN (2, 4) OR delivered = 0 ORDER BY seq"
);

const INSERT: &str = "INSERT OR IGNORE INTO jobs (id, seq, task_type, priority, state, attempt, \
                      max_attempts, timeout_ms, not_before_ms, last_error, result, worker_id, \
                      worker_name, delivered, created_ms, updated_ms) \
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                      ?15)";
/// A new job's payload; only after its jobs row was inserted (a seq is never reused).
const INSERT_PAYLOAD: &str = "INSERT INTO payloads (seq, payload) VALUES (?1, ?2)";
const RETRY: &str = "UPDATE jobs SET state = 3, attempt = ?2, not_before_ms = ?3, last_error = ?4, \
                     updated_ms = ?5 WHERE id = ?1";
const DONE: &str = "UPDATE jobs SET state = 2, attempt = ?2, result = ?3, worker_id = ?4, \
                    worker_name = ?5, delivered = 0, updated_ms = ?6 WHERE id = ?1";
const DEAD: &str = "UPDATE jobs SET state = 4, attempt = ?2, last_error = ?3, worker_id = ?4, \
                    worker_name = ?5, delivered = 0, updated_ms = ?6 WHERE id = ?1";
const DELIVERED: &str = "UPDATE jobs SET delivered = 1, updated_ms = ?2 WHERE id = ?1";
const REQUEUE: &str = "UPDATE jobs SET state = 0, attempt = 0, not_before_ms = ?2, delivered = 0, \
                       updated_ms = ?3 WHERE id = ?1 AND state = 4";
/// Before a dead job is discarded: its seq may be the highest ever used, which `max_seq`
/// otherwise finds among the payloads.
const KEEP_DISCARDED_SEQ: &str = "UPDATE meta SET value = max(value, \
                                  coalesce((SELECT seq FROM jobs WHERE id = ?1 AND state = 4), 0)) \
                                  WHERE key = 'max_seq'";
const DISCARD_PAYLOAD: &str =
    "DELETE FROM payloads WHERE seq = (SELECT seq FROM jobs WHERE id = ?1 AND state = 4)";
const DISCARD: &str = "DELETE FROM jobs WHERE id = ?1 AND state = 4";
/// Version 1 to 2: payloads move out of the jobs rows into their own table.
/// Two jobs with one seq would make it fail (and change nothing) rather than lose a payload.
const MIGRATE_1_TO_2: &str = concat!(
    payloads_table!(),
    "INSERT INTO payloads (seq, payload) SELECT seq, payload FROM jobs;
ALTER TABLE jobs DROP COLUMN payload;
"
);
/// The highest seq ever used: the last payload's, or a discarded job's above it.
const MAX_SEQ: &str = "SELECT max(coalesce((SELECT value FROM meta WHERE key = 'max_seq'), 0), \
                       coalesce((SELECT max(seq) FROM payloads), 0))";

/// The write statements of one transaction, each prepared (through the connection's cache) on
/// first use.
#[derive(Default)]
struct Statements<'c> {
    insert: Option<CachedStatement<'c>>,
    insert_payload: Option<CachedStatement<'c>>,
    retry: Option<CachedStatement<'c>>,
    done: Option<CachedStatement<'c>>,
    dead: Option<CachedStatement<'c>>,
    delivered: Option<CachedStatement<'c>>,
}

impl<'c> Statements<'c> {
    fn get<'s>(
        slot: &'s mut Option<CachedStatement<'c>>,
        conn: &'c Connection,
        sql: &str,
    ) -> rusqlite::Result<&'s mut CachedStatement<'c>> {
        if slot.is_none() {
            *slot = Some(conn.prepare_cached(sql)?);
        }
        match slot {
            Some(stmt) => Ok(stmt),
            // Filled just above.
            None => Err(rusqlite::Error::InvalidQuery),
        }
    }
}

/// Options for [`SqliteStore::open_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SqliteOptions {
    /// `PRAGMA synchronous=FULL`: fsync the WAL on every commit, so accepted jobs survive a
    /// power loss too, not only a crash of the process. Off by default (`synchronous=NORMAL`).
    pub(crate) synchronous_full: bool,
}

/// The durable job store: a SQLite file in WAL mode.
///
/// A push resolves once its transaction is committed to the WAL, which survives a crash of the
/// process; see the module docs for power loss and [`SqliteOptions::synchronous_full`].
pub(crate) struct SqliteStore {
    conn: Connection,
    location: String,
    /// Checkpoints off the writer's thread (the writer's connection only; see
    /// [`checkpoint`]). `None` for readers, and if it could not start (SQLite's own automatic
    /// checkpoints then stay on).
    checkpointer: Option<checkpoint::Checkpointer>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Its connection closes before the writer's, so that the writer's close, as the last
        // connection, checkpoints and removes the WAL; its WAL hook goes first.
        if self.checkpointer.is_some() {
            checkpoint::unwatch(&self.conn);
        }
        self.checkpointer.take();
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file and its schema when it does not exist.
    ///
    /// Fails with [`Error::Store`] when the file is not a SQLite database, is another
    /// program's database, or was written by a newer queuexec.
    pub(crate) fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens the store at `path` with `options`; see [`open`](Self::open).
    pub(crate) fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore> {
        let mut store = Self::open_connection(path.as_ref(), options)?;
        store.start_checkpointer(path.as_ref(), options);
        Ok(store)
    }

    /// Opens, configures and migrates one connection, with SQLite's own checkpoints.
    fn open_connection(path: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        let location = path.display().to_string();
        let conn = open_file(path, OpenFlags::default()).map_err(|e| {
            opening_error(
                &location,
                "could not be opened: check that its directory exists and is writable, or choose \
                 another --store path",
                e,
            )
        })?;
        let mut store = SqliteStore {
            conn,
            location,
            checkpointer: None,
        };
        store.configure(options)?;
        store.migrate()?;
        Ok(store)
    }

    /// Moves checkpoints to a thread of their own (see [`checkpoint`]); on failure, logs it
    /// and leaves them to SQLite.
    fn start_checkpointer(&mut self, path: &Path, options: SqliteOptions) {
        let wal: rusqlite::Result<String> =
            self.conn
                .pragma_query_value(None, "journal_mode", |row| row.get(0));
        if !wal.is_ok_and(|mode| mode.eq_ignore_ascii_case("wal")) {
            return;
        }
        let started = checkpoint::Checkpointer::start(path, &self.location, synchronous(options))
            .and_then(|mut checkpointer| {
                checkpointer.watch(&self.conn)?;
                Ok(checkpointer)
            });
        match started {
            Ok(checkpointer) => self.checkpointer = Some(checkpointer),
            Err(e) => tracing::warn!(
                store = %self.location,
                error = %e,
                "checkpoints of the job store stay on its writer's thread: could not start a \
                 thread for them"
            ),
        }
    }

    fn configure(&mut self, options: SqliteOptions) -> Result<()> {
        let location = self.location.clone();
        let failed = |what: &str, e: rusqlite::Error| {
            opening_error(
                &location,
                &format!(
                    "{what} failed: check that the file and its directory are writable, or choose \
                     another --store path"
                ),
                e,
            )
        };
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| failed("setting busy_timeout", e))?;
        // The first statement that reads the file; a file that is not SQLite fails here.
        let application_id: i64 = self
            .conn
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .map_err(|e| failed("reading the file header", e))?;
        if application_id != 0 && application_id != APPLICATION_ID {
            return Err(refuse(
                &location,
                "is a SQLite database of another program, not a queuexec job store: choose \
                 another --store path",
            ));
        }
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| failed("switching to WAL mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Still durable (a rollback journal is the stricter mode), only slower; some file
            // systems (network shares) cannot host a WAL.
            tracing::warn!(
                store = %self.location,
                journal_mode = %mode,
                "the job store could not switch to WAL mode; writes will be slower"
            );
        }
        self.conn
            .pragma_update(None, "synchronous", synchronous(options))
            .map_err(|e| failed("setting synchronous", e))?;
        // Keep the WAL from staying huge after a burst, and give the id index some room in
        // memory (4 MiB: the master's memory counts, and pages it misses come from the OS's
        // file cache, not the disk).
        self.conn
            .pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(|e| failed("setting journal_size_limit", e))?;
        self.conn
            .pragma_update(None, "cache_size", -4 * 1024)
            .map_err(|e| failed("setting cache_size", e))?;
        Ok(())
    }

    /// Creates the schema in a new file, or checks the schema of an existing one.
    fn migrate(&mut self) -> Result<()> {
        let location = self.location.clone();
        let failed = |e: rusqlite::Error| {
            opening_error(
                &location,
                "reading or creating the schema failed: check that the file is writable and the \
                 disk has room, or choose another --store path",
                e,
            )
        };
        // IMMEDIATE: two processes opening a new file at once must not both create the schema.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(failed)?;
        let application_id: i64 = tx
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .map_err(failed)?;
        match version {
            0 => {
                let tables: i64 = tx
                    .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
                    .map_err(failed)?;
                if tables > 0 || application_id != 0 {
                    return Err(refuse(
                        &location,
                        "is a SQLite database of another program, not a queuexec job store: \
                         choose another --store path",
                    ));
                }
                tx.execute_batch(SCHEMA).map_err(failed)?;
                tx.pragma_update(None, "application_id", APPLICATION_ID)
                    .map_err(failed)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(failed)?;
                tx.commit().map_err(failed)?;
                Ok(())
            }
            SCHEMA_VERSION if application_id == APPLICATION_ID => {
                tx.commit().map_err(failed)?;
                Ok(())
            }
            1 if application_id == APPLICATION_ID => {
                // One transaction: a store is wholly version 1 or wholly version 2.
                tracing::info!(
                    store = %location,
                    "moving the store's payloads to their own table (schema version 1 to 2, once)"
                );
                tx.execute_batch(MIGRATE_1_TO_2).map_err(failed)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(failed)?;
                tx.commit().map_err(failed)?;
                Ok(())
            }
            1 | SCHEMA_VERSION => Err(refuse(
                &location,
                "is a SQLite database of another program, not a queuexec job store: choose \
                 another --store path",
            )),
            newer if newer > SCHEMA_VERSION && application_id == APPLICATION_ID => Err(refuse(
                &location,
                &format!(
                    "was written by a newer queuexec (store schema version {newer}; this build \
                     reads version {SCHEMA_VERSION}): upgrade queuexec, or choose another --store \
                     path"
                ),
            )),
            unknown => Err(refuse(
                &location,
                &format!(
                    "has an unknown schema version {unknown}, so it is not a job store this queuexec \
                 can read: choose another --store path"
                ),
            )),
        }
    }

    fn error(&self, doing: &str, e: rusqlite::Error) -> Error {
        store_error(&self.location, doing, e)
    }

    /// Runs `ops` in one transaction; calls `ignored(index)` for each ignored insert.
    fn apply_with(&mut self, ops: &[StoreOp], mut ignored: impl FnMut(usize)) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let location = &self.location;
        let failed = |e: rusqlite::Error| {
            store_error(
                location,
                &format!("writing {} change(s) in one transaction", ops.len()),
                e,
            )
        };
        // The checkpoint thread may close the gate to copy the WAL's last pages between two
        // transactions.
        let held = self
            .checkpointer
            .as_ref()
            .map(checkpoint::Checkpointer::enter_gate);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let now = now_ms();
        {
            // Looked up in the connection's statement cache once per transaction, not per op.
            let mut statements = Statements::default();
            for (index, op) in ops.iter().enumerate() {
                match op {
                    StoreOp::Insert(job) => {
                        let (worker_id, worker_name) = worker_columns(job.worker.as_ref());
                        let inserted = Statements::get(&mut statements.insert, &tx, INSERT)
                            .and_then(|stmt| {
                                stmt.execute(params![
                                    job.id,
                                    job.seq,
                                    job.task_type,
                                    job.priority,
                                    job.state.code(),
                                    job.attempt,
                                    job.max_attempts,
                                    job.timeout_ms.map(clamp_u64),
                                    job.not_before_ms,
                                    job.last_error,
                                    job.result,
                                    worker_id,
                                    worker_name,
                                    job.delivered,
                                    now,
                                ])
                            })
                            .map_err(failed)?;
                        if inserted == 0 {
                            ignored(index);
                        } else {
                            Statements::get(&mut statements.insert_payload, &tx, INSERT_PAYLOAD)
                                .and_then(|stmt| stmt.execute(params![job.seq, &job.payload[..]]))
                                .map_err(failed)?;
                        }
                    }
                    StoreOp::Retry {
                        id,
                        attempt,
                        not_before_ms,
                        error,
                    } => {
                        Statements::get(&mut statements.retry, &tx, RETRY)
                            .and_then(|stmt| {
                                stmt.execute(params![id, attempt, not_before_ms, error, now])
                            })
                            .map_err(failed)?;
                    }
                    StoreOp::Done {
                        id,
                        attempt,
                        result,
                        worker,
                    } => {
                        Statements::get(&mut statements.done, &tx, DONE)
                            .and_then(|stmt| {
                                stmt.execute(params![
                                    id,
                                    attempt,
                                    result,
                                    worker.id,
                                    worker.name,
                                    now
                                ])
                            })
                            .map_err(failed)?;
                    }
                    StoreOp::Dead {
                        id,
                        attempt,
                        error,
                        worker,
                    } => {
                        let (worker_id, worker_name) = worker_columns(worker.as_ref());
                        Statements::get(&mut statements.dead, &tx, DEAD)
                            .and_then(|stmt| {
                                stmt.execute(params![
                                    id,
                                    attempt,
                                    error,
                                    worker_id,
                                    worker_name,
                                    now
                                ])
                            })
                            .map_err(failed)?;
                    }
                    StoreOp::Delivered { id } => {
                        Statements::get(&mut statements.delivered, &tx, DELIVERED)
                            .and_then(|stmt| stmt.execute(params![id, now]))
                            .map_err(failed)?;
                    }
                    StoreOp::Requeue { id, not_before_ms } => {
                        tx.prepare_cached(REQUEUE)
                            .and_then(|mut stmt| stmt.execute(params![id, not_before_ms, now]))
                            .map_err(failed)?;
                    }
                    StoreOp::Discard { id } => {
                        tx.prepare_cached(KEEP_DISCARDED_SEQ)
                            .and_then(|mut stmt| stmt.execute(params![id]))
                            .map_err(failed)?;
                        tx.prepare_cached(DISCARD_PAYLOAD)
                            .and_then(|mut stmt| stmt.execute(params![id]))
                            .map_err(failed)?;
                        tx.prepare_cached(DISCARD)
                            .and_then(|mut stmt| stmt.execute(params![id]))
                            .map_err(failed)?;
                    }
                }
            }
        }
        tx.commit().map_err(failed)?;
        drop(held);
        if let Some(checkpointer) = self.checkpointer.as_mut() {
            checkpointer.committed(&self.conn, ops);
        }
        Ok(())
    }

    fn row_to_job(&self, row: &Row<'_>) -> Result<StoredJob> {
        let read = |e: rusqlite::Error| self.error("reading a job", e);
        let id: String = row.get(0).map_err(read)?;
        let corrupt = |what: String| Error::Store {
            location: self.location.clone(),
            message: format!(
                "job {id:?} has {what}, which this queuexec cannot read: the file was altered or \
                 written by an incompatible version; choose another --store path"
            ),
            source: None,
        };
        let state_code: i64 = row.get(5).map_err(read)?;
        let state = JobState::from_code(state_code)
            .ok_or_else(|| corrupt(format!("unknown state code {state_code}")))?;
        let timeout_ms = match row.get::<_, Option<i64>>(8).map_err(read)? {
            None => None,
            Some(ms) => Some(
                u64::try_from(ms).map_err(|_| corrupt(format!("a negative timeout ({ms} ms)")))?,
            ),
        };
        let worker_id: Option<String> = row.get(12).map_err(read)?;
        let worker_name: Option<String> = row.get(13).map_err(read)?;
        let worker = worker_id.map(|id| WorkerInfo {
            id,
            name: worker_name.unwrap_or_default(),
        });
        let priority: i64 = row.get(4).map_err(read)?;
        let attempt: i64 = row.get(6).map_err(read)?;
        let max_attempts: i64 = row.get(7).map_err(read)?;
        Ok(StoredJob {
            seq: row.get(1).map_err(read)?,
            task_type: row.get(2).map_err(read)?,
            payload: Bytes::from(row.get::<_, Vec<u8>>(3).map_err(read)?),
            priority: i32::try_from(priority)
                .map_err(|_| corrupt(format!("an out-of-range priority {priority}")))?,
            state,
            attempt: u32::try_from(attempt)
                .map_err(|_| corrupt(format!("an out-of-range attempt {attempt}")))?,
            max_attempts: u32::try_from(max_attempts)
                .map_err(|_| corrupt(format!("an out-of-range max_attempts {max_attempts}")))?,
            timeout_ms,
            not_before_ms: row.get(9).map_err(read)?,
            last_error: row.get(10).map_err(read)?,
            result: row.get(11).map_err(read)?,
            worker,
            delivered: row.get(14).map_err(read)?,
            id,
        })
    }
}

impl JobStore for SqliteStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    #[cfg(test)]
    fn load(&mut self) -> Result<Vec<StoredJob>> {
        let mut stmt = self
            .conn
            .prepare_cached(LOAD_SQL)
            .map_err(|e| self.error("loading open jobs", e))?;
        let mut rows = stmt
            .query([])
            .map_err(|e| self.error("loading open jobs", e))?;
        let mut jobs = Vec::new();
        while let Some(row) = rows
            .next()
            .map_err(|e| self.error("loading open jobs", e))?
        {
            jobs.push(self.row_to_job(row)?);
        }
        Ok(jobs)
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<Vec<String>> {
        let mut ignored = Vec::new();
        self.apply_with(ops, |index| {
            if let StoreOp::Insert(job) = &ops[index] {
                ignored.push(job.id.clone());
            }
        })?;
        Ok(ignored)
    }

    fn apply_owned(&mut self, ops: Vec<StoreOp>) -> Result<Vec<(usize, String)>> {
        let mut ignored = Vec::new();
        self.apply_with(&ops, |index| {
            if let StoreOp::Insert(job) = &ops[index] {
                ignored.push((index, job.id.clone()));
            }
        })?;
        Ok(ignored)
    }

    #[cfg(test)]
    fn counts(&mut self) -> Result<StateCounts> {
        let failed = |e| store_error(&self.location, "counting jobs", e);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT state, count(*) FROM jobs GROUP BY state")
            .map_err(failed)?;
        let mut rows = stmt.query([]).map_err(failed)?;
        let mut counts = StateCounts::default();
        while let Some(row) = rows.next().map_err(failed)? {
            let code: i64 = row.get(0).map_err(failed)?;
            let n: i64 = row.get(1).map_err(failed)?;
            let n = u64::try_from(n).unwrap_or(0);
            match JobState::from_code(code) {
                Some(JobState::Queued) => counts.queued += n,
                Some(JobState::Leased) => counts.leased += n,
                Some(JobState::Done) => counts.done += n,
                Some(JobState::Failed) => counts.failed += n,
                Some(JobState::Dead) => counts.dead += n,
                // Reading such a job fails with a clear error; a count has no job to name.
                None => {}
            }
        }
        Ok(counts)
    }

    #[cfg(test)]
    fn get(&mut self, id: &str) -> Result<Option<StoredJob>> {
        let mut stmt = self
            .conn
            .prepare_cached(concat!("SELECT ", columns!(), " FROM jobs WHERE id = ?1"))
            .map_err(|e| self.error("reading a job", e))?;
        let mut rows = stmt
            .query([id])
            .map_err(|e| self.error("reading a job", e))?;
        match rows.next().map_err(|e| self.error("reading a job", e))? {
            Some(row) => Ok(Some(self.row_to_job(row)?)),
            None => Ok(None),
        }
    }

    fn max_seq(&mut self) -> Result<i64> {
        let value: Option<i64> = self
            .conn
            .query_row(MAX_SEQ, [], |row| row.get(0))
            .optional()
            .map_err(|e| self.error("reading the highest job number", e))?;
        Ok(value.unwrap_or(0))
    }
}

/// Opens a connection to the store file on the VFS that writes each commit's WAL frames at
/// once ([`wal_vfs`]), or on SQLite's default one if that VFS could not be registered.
fn open_file(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    if wal_vfs::register() {
        Connection::open_with_flags_and_vfs(path, flags, wal_vfs::NAME)
    } else {
        Connection::open_with_flags(path, flags)
    }
}

/// `PRAGMA synchronous` for `options`.
fn synchronous(options: SqliteOptions) -> &'static str {
    if options.synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    }
}

fn worker_columns(worker: Option<&WorkerInfo>) -> (Option<&str>, Option<&str>) {
    match worker {
        Some(w) => (Some(w.id.as_str()), Some(w.name.as_str())),
        None => (None, None),
    }
}

/// SQLite integers are signed; a timeout beyond i64::MAX ms is "forever" either way.
fn clamp_u64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An error while opening: "not a database" gets its own message whatever step met it.
fn opening_error(location: &str, message: &str, e: rusqlite::Error) -> Error {
    if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) {
        return Error::Store {
            location: location.to_string(),
            message: format!(
                "{location} is not a queuexec job store (not a SQLite database): choose another \
                 --store path"
            ),
            source: Some(Box::new(e)),
        };
    }
    Error::Store {
        location: location.to_string(),
        message: format!("{message} ({e})"),
        source: Some(Box::new(e)),
    }
}

/// A refusal to use the file, with no underlying error.
fn refuse(location: &str, message: &str) -> Error {
    Error::Store {
        location: location.to_string(),
        message: message.to_string(),
        source: None,
    }
}

fn store_error(location: &str, doing: &str, e: rusqlite::Error) -> Error {
    let advice = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "free disk space, then push again",
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "another process holds the store file; run one master per --store file"
        }
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
            "make the store file and its directory writable"
        }
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            "the file is damaged; keep a copy for inspection and choose another --store path"
        }
        _ => "check the disk and the store file's permissions",
    };
    // The cause is in the message as well as in `source`: the StoreWriter rebuilds this error
    // for every caller of a failed group commit, and only the message survives that intact.
    Error::Store {
        location: location.to_string(),
        message: format!("{doing} failed ({e}): {advice}"),
        source: Some(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, job, worker};
    use super::*;

    fn temp() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    #[test]
    fn sqlite_store_passes_the_store_conformance_tests() {
        let dir = temp();
        let mut n = 0;
        conformance::run_all(|| {
            n += 1;
            Box::new(SqliteStore::open(dir.path().join(format!("jobs{n}.db"))).expect("open"))
        });
    }

    #[test]
    fn reopening_returns_exactly_the_unfinished_and_undelivered_jobs() {
        let dir = temp();
        let path = dir.path().join("jobs.db");
        let mut leased = job("leased", 3);
        leased.state = JobState::Leased;
        leased.attempt = 1;
        leased.worker = Some(worker(7));
        {
            let mut store = SqliteStore::open(&path).expect("open");
            let ops: Vec<StoreOp> = (1..=6)
                .filter(|&seq| seq != 3)
                .map(|seq| StoreOp::Insert(job(&format!("j{seq}"), seq)))
                .chain([StoreOp::Insert(leased.clone())])
                .collect();
            store.apply(&ops).expect("insert");
            store
                .apply(&[
                    StoreOp::Done {
                        id: "j1".into(),
                        attempt: 1,
                        result: b"r1".to_vec(),
                        worker: worker(1),
                    },
                    StoreOp::Delivered { id: "j1".into() },
                    StoreOp::Done {
                        id: "j2".into(),
                        attempt: 2,
                        result: b"r2".to_vec(),
                        worker: worker(2),
                    },
                    StoreOp::Dead {
                        id: "j4".into(),
                        attempt: 3,
                        error: "bad".into(),
                        worker: None,
                    },
                    StoreOp::Delivered { id: "j4".into() },
                    StoreOp::Retry {
                        id: "j5".into(),
                        attempt: 1,
                        not_before_ms: 99,
                        error: "again".into(),
                    },
                ])
                .expect("transitions");
        }
        let mut store = SqliteStore::open(&path).expect("reopen");
        let loaded = store.load().expect("load");
        let expected = vec![
            StoredJob {
                state: JobState::Done,
                attempt: 2,
                result: Some(b"r2".to_vec()),
                worker: Some(worker(2)),
                ..job("j2", 2)
            },
            leased,
            StoredJob {
                state: JobState::Failed,
                attempt: 1,
                not_before_ms: 99,
                last_error: Some("again".into()),
                ..job("j5", 5)
            },
            job("j6", 6),
        ];
        assert_eq!(loaded, expected);
        assert_eq!(store.max_seq().expect("max_seq"), 6);
        assert_eq!(
            store.counts().expect("counts"),
            StateCounts {
                queued: 1,
                leased: 1,
                done: 2,
                failed: 1,
                dead: 1
            }
        );
        // Still deduplicates after the restart, finished jobs included.
        assert_eq!(
            store
                .apply(&[StoreOp::Insert(job("j1", 10))])
                .expect("insert"),
            ["j1"]
        );
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_with_its_path() {
        let dir = temp();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "these are my notes, not a database; ".repeat(100)).expect("write");
        let err = SqliteStore::open(&path).expect_err("a text file is not a store");
        let Error::Store {
            location, message, ..
        } = &err
        else {
            panic!("not a store error: {err:?}")
        };
        assert_eq!(location, &path.display().to_string());
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains("not a queuexec job store (not a SQLite database)"),
            "{message}"
        );
        assert!(message.contains("--store"), "{message}");
        // And the file was left alone.
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("these are my notes"));
    }

    #[test]
    fn another_programs_database_is_refused() {
        let dir = temp();
        let path = dir.path().join("other.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch("CREATE TABLE songs (title TEXT); PRAGMA user_version = 1;")
                .expect("create");
        }
        let err = SqliteStore::open(&path).expect_err("not ours");
        assert!(err.to_string().contains("another program"), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    /// A store written by a build before payloads had their own table (schema version 1) opens
    /// once migrated: its open jobs come back with their payloads, done ones keep theirs, new
    /// pushes work, and the file says version 2.
    #[test]
    fn a_version_1_store_is_migrated_with_every_payload() {
        let dir = temp();
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(
                "CREATE TABLE jobs (
                    id TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL, task_type TEXT,
                    payload BLOB NOT NULL, priority INTEGER NOT NULL, state INTEGER NOT NULL,
                    attempt INTEGER NOT NULL, max_attempts INTEGER NOT NULL, timeout_ms INTEGER,
                    not_before_ms INTEGER NOT NULL, last_error TEXT, result BLOB,
                    worker_id TEXT, worker_name TEXT, delivered INTEGER NOT NULL DEFAULT 0,
                    created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
                 CREATE INDEX jobs_open ON jobs (seq) WHERE state NOT IN (2, 4) OR delivered = 0;
                 CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
                 INSERT INTO meta (key, value) VALUES ('max_seq', 2);
                 INSERT INTO jobs VALUES ('open', 1, NULL, X'0102030405', 0, 0, 0, 3, NULL, 0,
                     NULL, NULL, NULL, NULL, 0, 1, 1);
                 INSERT INTO jobs VALUES ('done', 2, 't', X'AABBCC', 5, 2, 1, 3, 100, 0,
                     NULL, X'7265', 'w', 'n', 1, 1, 1);
                 PRAGMA application_id = 1364739395;
                 PRAGMA user_version = 1;",
            )
            .expect("a version 1 store");
        }
        let mut store = SqliteStore::open(&path).expect("migrates");
        let open = store.load().expect("load");
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(open[0].id, "open");
        assert_eq!(open[0].payload, vec![1, 2, 3, 4, 5]);
        let done = store.get("done").expect("get").expect("kept");
        assert_eq!(done.payload, vec![0xAA, 0xBB, 0xCC]);
        assert_eq!(done.result.as_deref(), Some(&b"re"[..]));
        assert_eq!(store.max_seq().expect("max_seq"), 2);
        store
            .apply(&[StoreOp::Insert(job("new", 3))])
            .expect("push after migrating");
        assert_eq!(
            store.get("new").expect("get").expect("stored").payload,
            job("new", 3).payload
        );
        drop(store);
        let conn = Connection::open(&path).expect("open");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let columns: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('jobs') WHERE name = 'payload'",
                [],
                |row| row.get(0),
            )
            .expect("columns");
        assert_eq!(columns, 0, "the payload column left the jobs table");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = temp();
        let path = dir.path().join("jobs.db");
        drop(SqliteStore::open(&path).expect("create"));
        {
            let conn = Connection::open(&path).expect("open");
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .expect("bump");
        }
        let err = SqliteStore::open(&path).expect_err("newer schema");
        let text = err.to_string();
        assert!(matches!(err, Error::Store { .. }));
        assert!(
            text.contains("newer queuexec") && text.contains("version 3"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_file_becomes_a_store_and_reopens() {
        let dir = temp();
        let path = dir.path().join("empty.db");
        std::fs::write(&path, b"").expect("write");
        let mut store = SqliteStore::open(&path).expect("an empty file is a new database");
        store
            .apply(&[StoreOp::Insert(job("a", 1))])
            .expect("insert");
        drop(store);
        let mut store = SqliteStore::open_with(
            &path,
            SqliteOptions {
                synchronous_full: true,
            },
        )
        .expect("reopen");
        assert_eq!(store.load().expect("load").len(), 1);
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let sync: i64 = store
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("sync");
        assert_eq!(sync, 2, "synchronous_full sets FULL");
    }

    #[test]
    fn a_failed_transaction_changes_nothing() {
        let dir = temp();
        let mut store = SqliteStore::open(dir.path().join("jobs.db")).expect("open");
        store
            .apply(&[StoreOp::Insert(job("a", 1))])
            .expect("insert");
        // Make one op fail mid-transaction, as a full disk would.
        store
            .conn
            .execute_batch(
                "CREATE TRIGGER poison BEFORE UPDATE ON jobs WHEN NEW.id = 'a' \
                 BEGIN SELECT RAISE(ABORT, 'simulated failure'); END;",
            )
            .expect("trigger");
        let err = store
            .apply(&[
                StoreOp::Insert(job("b", 2)),
                StoreOp::Done {
                    id: "a".into(),
                    attempt: 1,
                    result: vec![],
                    worker: worker(1),
                },
            ])
            .expect_err("the trigger aborts");
        let text = err.to_string();
        assert!(
            text.contains("simulated failure") && text.contains("2 change(s)"),
            "{text}"
        );
        assert_eq!(
            store.get("b").expect("get"),
            None,
            "the insert before the failure rolled back"
        );
        assert_eq!(store.max_seq().expect("max_seq"), 1);
        assert_eq!(
            store.get("a").expect("get").map(|j| j.state),
            Some(JobState::Queued)
        );
    }

    /// 1 MiB payloads: the checkpoint thread copies the WAL into the database file while the
    /// writer goes on, the WAL stays bounded, and the jobs are all there after a reopen.
    #[test]
    fn big_payloads_are_checkpointed_beside_the_writer_and_the_wal_stays_bounded() {
        const MIB: usize = 1024 * 1024;
        let dir = temp();
        let path = dir.path().join("big.db");
        let wal = dir.path().join("big.db-wal");
        let mut store = SqliteStore::open(&path).expect("open");
        let writer_autocheckpoint: i64 = store
            .conn
            .pragma_query_value(None, "wal_autocheckpoint", |row| row.get(0))
            .expect("wal_autocheckpoint");
        assert_eq!(
            writer_autocheckpoint, 0,
            "the writer leaves checkpoints to the thread"
        );
        let payload = |seq: i64| Bytes::from(vec![(seq % 251) as u8; MIB]);
        let batch = |batch: i64| {
            (0..2)
                .map(|k| {
                    let seq = batch * 2 + k + 1;
                    let mut job = job(&format!("big-{seq}"), seq);
                    job.payload = payload(seq);
                    StoreOp::Insert(job)
                })
                .collect::<Vec<_>>()
        };
        // 10 MiB, then nothing: the thread copies it all and rewinds the WAL on its own.
        for n in 0..5 {
            store.apply(&batch(n)).expect("apply");
        }
        let checkpointer = store.checkpointer.as_ref().expect("a checkpoint thread");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while checkpointer.rewound_bytes() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the checkpoint thread never left the WAL all copied"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let copied = std::fs::metadata(&path).expect("database file").len();
        assert!(
            copied >= 8 * MIB as u64,
            "only {copied} bytes reached the database file"
        );
        // 70 MiB more without a pause (the thread finds no moment to rewind the WAL): the
        // writer copies everything itself past its bound (here 16 MiB), so the WAL stays small.
        store
            .checkpointer
            .as_mut()
            .expect("a checkpoint thread")
            .set_rewind_bytes(16 * MIB as u64);
        let mut largest_wal = 0;
        for n in 5..40 {
            store.apply(&batch(n)).expect("apply");
            largest_wal = largest_wal.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        assert!(
            largest_wal <= 24 * MIB as u64,
            "the WAL grew to {largest_wal} bytes for 80 MiB of payloads"
        );
        drop(store);
        assert!(!wal.exists(), "a clean close removes the WAL");
        let mut store = SqliteStore::open(&path).expect("reopen");
        for seq in [1_i64, 40, 80] {
            let stored = store
                .get(&format!("big-{seq}"))
                .expect("get")
                .expect("stored");
            assert_eq!(stored.payload, payload(seq), "payload of big-{seq}");
        }
        assert_eq!(store.counts().expect("counts").queued, 80);
    }

    /// Many small commits (a lone job each) are measured by what they add to the WAL, whole
    /// pages, not by their few bytes of data: the WAL is copied and rewound as they go.
    #[test]
    fn small_commits_are_measured_in_wal_pages_and_the_wal_stays_bounded() {
        const MIB: u64 = 1024 * 1024;
        let dir = temp();
        let path = dir.path().join("small.db");
        let wal = dir.path().join("small.db-wal");
        let mut store = SqliteStore::open(&path).expect("open");
        // The writer's own copy, past 4 MiB committed since the WAL last rewound, makes the
        // bound independent of the checkpoint thread's timing.
        store
            .checkpointer
            .as_mut()
            .expect("a checkpoint thread")
            .set_rewind_bytes(4 * MIB);
        // 3,000 commits of about 20 KiB of pages each (60 MiB in all), but under 1 MiB by
        // their data.
        let mut largest_wal = 0;
        for seq in 1..=3000_i64 {
            store
                .apply(&[StoreOp::Insert(job(&format!("small-{seq}"), seq))])
                .expect("apply");
            largest_wal = largest_wal.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        assert!(
            largest_wal <= 12 * MIB,
            "the WAL grew to {largest_wal} bytes over 3,000 small commits"
        );
        assert!(
            store
                .checkpointer
                .as_ref()
                .expect("a checkpoint thread")
                .rewound_bytes()
                > 0,
            "the WAL was never left all copied"
        );
        assert_eq!(store.counts().expect("counts").queued, 3000);
    }

    /// The engine's reader connection leaves checkpoints alone.
    #[test]
    fn the_reader_connection_has_no_checkpoint_thread() {
        let dir = temp();
        let path = dir.path().join("jobs.db");
        let writer = SqliteStore::open(&path).expect("open");
        let reader = SqliteStore::open_reader(&path).expect("reader");
        assert!(writer.checkpointer.is_some());
        assert!(reader.checkpointer.is_none());
    }

    #[test]
    fn load_reads_the_open_jobs_index() {
        let dir = temp();
        let store = SqliteStore::open(dir.path().join("jobs.db")).expect("open");
        let sql = format!("EXPLAIN QUERY PLAN {LOAD_SQL}");
        let mut stmt = store.conn.prepare(&sql).expect("prepare");
        let plan: Vec<String> = stmt
            .query_map([], |row| row.get::<_, String>(3))
            .expect("plan")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        let plan = plan.join("\n");
        assert!(
            plan.contains("jobs_open"),
            "load should use the partial index: {plan}"
        );
        assert!(
            !plan.contains("TEMP B-TREE"),
            "load should not sort: {plan}"
        );
    }
}
