//! Reads for the scheduler's spilled jobs (`scheduler/spill.rs`): ready durable jobs that are
//! kept only in the store. The engine reads them on a connection of its own (WAL readers see
//! committed transactions only, and a job is spilled only once its insert is committed).

use rusqlite::params;

use super::SqliteStore;
use crate::error::Result;
use crate::job::{KEY_SEPARATOR, label_of};
use crate::store::{JobState, StoredJob};

/// The open jobs in a range of push numbers, with when they were stored.
const PAGE_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    ", created_ms FROM jobs WHERE seq BETWEEN ?1 AND ?2 \
     AND (state NOT IN (2, 4) OR delivered = 0) ORDER BY seq"
);

/// The open jobs a restart notes without reading them: ready (queued, leased when the master
/// stopped, or failed with its retry due), in push order.
const READY_SQL: &str = "SELECT seq, priority FROM jobs WHERE (state NOT IN (2, 4) OR delivered = 0) \
     AND state NOT IN (2, 4) AND not_before_ms <= ?1 ORDER BY seq";

/// The open jobs a restart reads whole: finished but undelivered, and those not due yet.
const REST_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM jobs WHERE (state NOT IN (2, 4) OR delivered = 0) \
     AND (state IN (2, 4) OR not_before_ms > ?1) ORDER BY seq"
);

/// An open job's key, push number, priority and attempts used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenJob {
    pub(crate) key: String,
    pub(crate) seq: i64,
    pub(crate) priority: i32,
    pub(crate) attempt: u32,
}

/// What a restart finds in the store.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Finished jobs whose result was not delivered, and open jobs that are not due yet: read
    /// whole.
    pub(crate) whole: Vec<StoredJob>,
    /// Ready open jobs: only their priority and push number.
    pub(crate) ready: Vec<(i32, i64)>,
}

impl SqliteStore {
    /// Opens a second connection to the store at `path` for the engine's reads, with a small
    /// page cache (the writer's connection keeps the big one).
    pub(crate) fn open_reader(path: impl AsRef<std::path::Path>) -> Result<SqliteStore> {
        let store = SqliteStore::open_connection(path.as_ref(), super::SqliteOptions::default())?;
        store
            .conn
            .pragma_update(None, "cache_size", -2048)
            .map_err(|e| store.error("setting cache_size", e))?;
        Ok(store)
    }

    /// The open jobs whose push numbers lie in `ranges`, each with when it was stored (ms).
    pub(crate) fn page(&mut self, ranges: &[(i64, i64)]) -> Result<Vec<(StoredJob, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(PAGE_SQL)
            .map_err(|e| self.error("reading queued jobs", e))?;
        let mut jobs = Vec::new();
        for (start, end) in ranges {
            let mut rows = stmt
                .query(params![start, end])
                .map_err(|e| self.error("reading queued jobs", e))?;
            while let Some(row) = rows
                .next()
                .map_err(|e| self.error("reading queued jobs", e))?
            {
                let created: i64 = row
                    .get(15)
                    .map_err(|e| self.error("reading queued jobs", e))?;
                jobs.push((self.row_to_job(row)?, created));
            }
        }
        Ok(jobs)
    }

    /// What a restart needs: see [`Recovered`]. `now_ms` tells due jobs from later ones.
    pub(crate) fn recover(&mut self, now_ms: i64) -> Result<Recovered> {
        let failed = |s: &SqliteStore, e| s.error("loading open jobs", e);
        let mut recovered = Recovered::default();
        {
            let mut stmt = self
                .conn
                .prepare_cached(REST_SQL)
                .map_err(|e| failed(self, e))?;
            let mut rows = stmt.query([now_ms]).map_err(|e| failed(self, e))?;
            while let Some(row) = rows.next().map_err(|e| failed(self, e))? {
                recovered.whole.push(self.row_to_job(row)?);
            }
        }
        let mut stmt = self
            .conn
            .prepare_cached(READY_SQL)
            .map_err(|e| failed(self, e))?;
        let mut rows = stmt.query([now_ms]).map_err(|e| failed(self, e))?;
        while let Some(row) = rows.next().map_err(|e| failed(self, e))? {
            let seq: i64 = row.get(0).map_err(|e| failed(self, e))?;
            let priority: i64 = row.get(1).map_err(|e| failed(self, e))?;
            recovered
                .ready
                .push((i32::try_from(priority).unwrap_or(0), seq));
        }
        Ok(recovered)
    }

    /// The job stored under `key`, with when it was stored.
    pub(crate) fn find(&mut self, key: &str) -> Result<Option<(StoredJob, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(concat!(
                "SELECT ",
                columns!(),
                ", created_ms FROM jobs WHERE id = ?1"
            ))
            .map_err(|e| self.error("reading a job", e))?;
        let mut rows = stmt
            .query([key])
            .map_err(|e| self.error("reading a job", e))?;
        match rows.next().map_err(|e| self.error("reading a job", e))? {
            Some(row) => {
                let created: i64 = row.get(15).map_err(|e| self.error("reading a job", e))?;
                Ok(Some((self.row_to_job(row)?, created)))
            }
            None => Ok(None),
        }
    }

    /// The open (not finished) jobs whose key is `id` or whose label (the id as pushed) is
    /// `id`: the key itself, an automatic id's key, and the keys of a repeated id.
    pub(crate) fn find_open(&mut self, id: &str) -> Result<Vec<OpenJob>> {
        let automatic = format!("{KEY_SEPARATOR}{id}");
        let repeated_from = format!("{id}{KEY_SEPARATOR}");
        let repeated_to = format!("{id}{}", char::from(KEY_SEPARATOR as u8 + 1));
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, seq, priority, attempt, state FROM jobs \
                 WHERE (id = ?1 OR id = ?2 OR (id >= ?3 AND id < ?4)) AND state NOT IN (2, 4)",
            )
            .map_err(|e| self.error("finding a job", e))?;
        let mut rows = stmt
            .query(params![id, automatic, repeated_from, repeated_to])
            .map_err(|e| self.error("finding a job", e))?;
        let mut found = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.error("finding a job", e))? {
            let read = |e| self.error("finding a job", e);
            let key: String = row.get(0).map_err(read)?;
            let state: i64 = row.get(4).map_err(read)?;
            if key != id && label_of(&key) != id
                || JobState::from_code(state).is_none_or(JobState::is_terminal)
            {
                continue;
            }
            let priority: i64 = row.get(2).map_err(read)?;
            let attempt: i64 = row.get(3).map_err(read)?;
            found.push(OpenJob {
                key,
                seq: row.get(1).map_err(read)?,
                priority: i32::try_from(priority).unwrap_or(0),
                attempt: u32::try_from(attempt).unwrap_or(0),
            });
        }
        Ok(found)
    }
}
