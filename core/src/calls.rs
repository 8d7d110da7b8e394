//! Calls between a worker and its master beside jobs (okanjo-conductor's lookups and custom
//! messages): a worker (or a task through its context) asks, the master's user answers.
//!
//! - [`WorkerRequest`]: what a worker may ask: a lookup value, a change of one, or a message
//!   with a command name; each is answered with JSON (or an error text).
//! - [`PendingCalls`] (master side): the questions waiting for the master's user, each with the
//!   session that must get the answer. A worker may have at most [`MAX_CALLS_PER_WORKER`]
//!   waiting; one that asks more without waiting for answers is cut off. Lookup values workers
//!   set are bounded too: at most [`MAX_LOOKUP_KEYS`] keys and [`MAX_LOOKUP_BYTES`] bytes written
//!   by workers since the master started; a write beyond either is refused (the call fails, the
//!   master's lookups are not touched), so a hostile worker cannot grow the master without bound.
//! - [`WorkerLink`] (worker side): the live connection's way to ask, and the answers awaited.
//!
//! Everything travels in the session's sealed frames (`ToMaster::Call`, `ToWorker::Reply`,
//! `ToWorker::Message`), so it is as private as jobs are.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::job::WorkerInfo;
use crate::protocol::ToWorker;
use crate::scheduler::SessionId;

/// Calls one worker may have waiting for the master at once.
pub(crate) const MAX_CALLS_PER_WORKER: usize = 1024;

/// Largest name, key or command a call may carry, in bytes.
const MAX_NAME: usize = 4096;

/// Distinct lookup keys (name and key) workers may write through `setLookup`.
pub(crate) const MAX_LOOKUP_KEYS: usize = 100_000;

/// Bytes (names, keys and values, the last write of each) workers may hold in the master's
/// lookups through `setLookup`.
pub(crate) const MAX_LOOKUP_BYTES: usize = 64 << 20;

/// A field of a call: its name (for messages) and its text.
type Field<'a> = (&'a str, &'a str);

/// What a worker asks its master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WorkerRequest {
    /// The value under `key` in the master's lookup `name` (`null` when there is none).
    Lookup {
        /// The lookup's name.
        name: String,
        /// The key within it.
        key: String,
    },
    /// Sets the value under `key` in the master's lookup `name`.
    SetLookup {
        /// The lookup's name.
        name: String,
        /// The key within it.
        key: String,
        /// The value, as JSON text.
        value: String,
    },
    /// A custom message; the answer is what the master's handler returns.
    Message {
        /// The command name.
        cmd: String,
        /// The message data, as JSON text.
        data: String,
    },
}

/// A [`WorkerRequest`] as the front ends hand it to their users: its `op` and the fields that
/// kind has (the others `None`). The inverse of [`WorkerRequest::from_op`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestParts<'a> {
    /// `lookup`, `setLookup` or `message`.
    pub op: &'static str,
    /// The lookup's name.
    pub name: Option<&'a str>,
    /// The key within the lookup.
    pub key: Option<&'a str>,
    /// The value to set, as JSON text.
    pub value: Option<&'a str>,
    /// The message's command name.
    pub cmd: Option<&'a str>,
    /// The message's data, as JSON text.
    pub data: Option<&'a str>,
}

impl WorkerRequest {
    /// This request's `op` and fields (see [`RequestParts`]).
    pub fn parts(&self) -> RequestParts<'_> {
        let none = RequestParts {
            op: "",
            name: None,
            key: None,
            value: None,
            cmd: None,
            data: None,
        };
        match self {
            WorkerRequest::Lookup { name, key } => RequestParts {
                op: "lookup",
                name: Some(name),
                key: Some(key),
                ..none
            },
            WorkerRequest::SetLookup { name, key, value } => RequestParts {
                op: "setLookup",
                name: Some(name),
                key: Some(key),
                value: Some(value),
                ..none
            },
            WorkerRequest::Message { cmd, data } => RequestParts {
                op: "message",
                cmd: Some(cmd),
                data: Some(data),
                ..none
            },
        }
    }

    /// The request a front end names by `op` (`lookup`, `setLookup` or `message`, as task.js's
    /// `ctx` methods): `a` is the lookup or command name, `b` the key, `c` the value or data as
    /// JSON (`null` when absent). An unknown `op` is a [`Error::Config`] naming the three.
    pub fn from_op(op: &str, a: String, b: Option<String>, c: Option<String>) -> Result<Self> {
        let json = || c.clone().unwrap_or_else(|| "null".into());
        Ok(match op {
            "lookup" => WorkerRequest::Lookup {
                name: a,
                key: b.unwrap_or_default(),
            },
            "setLookup" => WorkerRequest::SetLookup {
                name: a,
                key: b.unwrap_or_default(),
                value: json(),
            },
            "message" => WorkerRequest::Message {
                cmd: a,
                data: json(),
            },
            other => {
                return Err(Error::config(format!(
                    "unknown call {other:?}: lookup, setLookup or message"
                )));
            }
        })
    }

    /// Checks what a peer sent: names within bounds, JSON fields JSON. The error says which.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let (names, json): (Vec<Field<'_>>, Option<Field<'_>>) = match self {
            WorkerRequest::Lookup { name, key } => {
                (vec![("name", name.as_str()), ("key", key.as_str())], None)
            }
            WorkerRequest::SetLookup { name, key, value } => (
                vec![("name", name.as_str()), ("key", key.as_str())],
                Some(("value", value.as_str())),
            ),
            WorkerRequest::Message { cmd, data } => {
                (vec![("cmd", cmd.as_str())], Some(("data", data.as_str())))
            }
        };
        for (what, text) in names {
            if text.len() > MAX_NAME {
                return Err(format!(
                    "the {what} is {} bytes; at most {MAX_NAME} are allowed",
                    text.len()
                ));
            }
        }
        if let Some((what, text)) = json
            && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text)
        {
            return Err(format!("the {what} is not JSON ({e})"));
        }
        Ok(())
    }
}

/// A call waiting for the master's answer.
struct Pending {
    session: SessionId,
    call: u64,
    out: mpsc::UnboundedSender<ToWorker>,
}

/// What workers have written into the master's lookups: the size of each key's last write, by
/// a keyed hash of (name, key), so the ledger itself stays small (a collision only undercounts).
struct LookupLedger {
    hasher: std::collections::hash_map::RandomState,
    sizes: HashMap<u64, usize>,
    bytes: usize,
    max_keys: usize,
    max_bytes: usize,
}

impl Default for LookupLedger {
    fn default() -> Self {
        LookupLedger::with_caps(MAX_LOOKUP_KEYS, MAX_LOOKUP_BYTES)
    }
}

impl LookupLedger {
    fn with_caps(max_keys: usize, max_bytes: usize) -> Self {
        LookupLedger {
            hasher: Default::default(),
            sizes: HashMap::new(),
            bytes: 0,
            max_keys,
            max_bytes,
        }
    }

    /// Records a write of `value_len` bytes under (`name`, `key`), or says why it is refused.
    fn write(
        &mut self,
        name: &str,
        key: &str,
        value_len: usize,
    ) -> std::result::Result<(), String> {
        let hash = self.hasher.hash_one((name, key));
        let size = name.len() + key.len() + value_len;
        let old = self.sizes.get(&hash).copied();
        if old.is_none() && self.sizes.len() >= self.max_keys {
            return Err(format!(
                "workers have written {} lookup keys, the most a master takes from workers; \
                 write to existing keys, or set lookups from the master",
                self.max_keys
            ));
        }
        let bytes = self.bytes - old.unwrap_or(0) + size;
        if bytes > self.max_bytes {
            return Err(format!(
                "this write would make workers' lookup values {bytes} bytes; a master takes at \
                 most {} from workers (set large lookups from the master)",
                self.max_bytes
            ));
        }
        self.sizes.insert(hash, size);
        self.bytes = bytes;
        Ok(())
    }
}

/// The master's calls waiting for an answer from its user, by the id the user answers with.
#[derive(Default)]
pub(crate) struct PendingCalls {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    per_session: Mutex<HashMap<SessionId, usize>>,
    lookups: Mutex<LookupLedger>,
}

impl PendingCalls {
    /// Admits a checked request within the bounds on what workers may write (a `setLookup`
    /// beyond [`MAX_LOOKUP_KEYS`] or [`MAX_LOOKUP_BYTES`] is refused; the error says why).
    pub(crate) fn admit(&self, request: &WorkerRequest) -> std::result::Result<(), String> {
        match request {
            WorkerRequest::SetLookup { name, key, value } => {
                lock(&self.lookups).write(name, key, value.len())
            }
            _ => Ok(()),
        }
    }

    /// Records a worker's call; returns the id its answer must name. A session with
    /// [`MAX_CALLS_PER_WORKER`] calls waiting gets a protocol error (it is cut off).
    pub(crate) fn open(
        &self,
        session: SessionId,
        call: u64,
        out: mpsc::UnboundedSender<ToWorker>,
    ) -> Result<u64> {
        {
            let mut counts = lock(&self.per_session);
            let n = counts.entry(session).or_default();
            if *n >= MAX_CALLS_PER_WORKER {
                return Err(Error::protocol(format!(
                    "the worker has {MAX_CALLS_PER_WORKER} calls waiting for the master; a worker waits for answers before asking more"
                )));
            }
            *n += 1;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.pending).insert(id, Pending { session, call, out });
        Ok(id)
    }

    /// Sends the answer to call `id`; false when it is unknown (answered already, or its worker
    /// is gone).
    pub(crate) fn answer(&self, id: u64, outcome: std::result::Result<String, String>) -> bool {
        let Some(pending) = lock(&self.pending).remove(&id) else {
            return false;
        };
        self.release(pending.session);
        let (ok, value) = match outcome {
            Ok(json) => (true, json),
            Err(error) => (false, error),
        };
        pending
            .out
            .send(ToWorker::Reply {
                call: pending.call,
                ok,
                value,
            })
            .is_ok()
    }

    /// A session ended: its calls are dropped (their answers go nowhere).
    pub(crate) fn forget(&self, session: SessionId) {
        lock(&self.pending).retain(|_, p| p.session != session);
        lock(&self.per_session).remove(&session);
    }

    fn release(&self, session: SessionId) {
        let mut counts = lock(&self.per_session);
        if let Some(n) = counts.get_mut(&session) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&session);
            }
        }
    }
}

/// A worker's call as the master's user sees it: answer it with [`crate::Master::answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCall {
    /// The id to answer with.
    pub id: u64,
    /// Who asks.
    pub worker: WorkerInfo,
    /// What it asks.
    pub request: WorkerRequest,
}

/// The worker's side of calls on its live master connection.
#[derive(Default)]
pub(crate) struct WorkerLink {
    next: AtomicU64,
    /// The live connection's sender (none between connections), and the calls it waits on.
    live: Mutex<Option<LiveLink>>,
}

struct LiveLink {
    out: mpsc::UnboundedSender<crate::worker::Outbound>,
    waiting: HashMap<u64, oneshot::Sender<std::result::Result<String, String>>>,
}

impl WorkerLink {
    /// A connection is up: calls go through `out`.
    pub(crate) fn connect(&self, out: mpsc::UnboundedSender<crate::worker::Outbound>) {
        *lock(&self.live) = Some(LiveLink {
            out,
            waiting: HashMap::new(),
        });
    }

    /// The connection ended: waiting calls fail.
    pub(crate) fn disconnect(&self) {
        lock(&self.live).take();
    }

    /// Sends a message on the live connection; false when there is none.
    pub(crate) fn send(&self, message: crate::protocol::ToMaster) -> bool {
        lock(&self.live).as_ref().is_some_and(|live| {
            live.out
                .send(crate::worker::Outbound::Message(message))
                .is_ok()
        })
    }

    /// An answer from the master.
    pub(crate) fn answered(&self, call: u64, outcome: std::result::Result<String, String>) {
        let tx = lock(&self.live)
            .as_mut()
            .and_then(|live| live.waiting.remove(&call));
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }

    /// Asks the master; resolves with its answer: JSON, or the error text of the master's
    /// handler. Fails when no master is connected or the connection ends first.
    pub(crate) async fn call(
        &self,
        request: WorkerRequest,
    ) -> Result<std::result::Result<String, String>> {
        if let Err(why) = request.check() {
            return Err(Error::payload(format!("this call cannot be sent: {why}")));
        }
        let call = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        {
            let mut live = lock(&self.live);
            let Some(live) = live.as_mut() else {
                return Err(Error::Closed(
                    "the connection to the master (the worker is not connected now; try again once it is)",
                ));
            };
            if live.waiting.len() >= MAX_CALLS_PER_WORKER {
                return Err(Error::config(format!(
                    "{MAX_CALLS_PER_WORKER} calls to the master are waiting already; await answers before asking more"
                )));
            }
            live.waiting.insert(call, tx);
            live.out
                .send(crate::worker::Outbound::Message(
                    crate::protocol::ToMaster::Call { call, request },
                ))
                .map_err(|_| Error::Closed("the connection to the master"))?;
        }
        match rx.await {
            Ok(outcome) => Ok(outcome),
            Err(_) => Err(Error::Closed(
                "the connection to the master (it ended before the master answered)",
            )),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_ledger_refuses_new_keys_beyond_its_cap_but_takes_rewrites() {
        let mut ledger = LookupLedger::with_caps(3, 1 << 20);
        for key in ["a", "b", "c"] {
            ledger.write("prices", key, 10).expect("within the cap");
        }
        let refused = ledger.write("prices", "d", 10).expect_err("a fourth key");
        assert!(refused.contains("3 lookup keys"), "{refused}");
        // A key already written may be written again, and another table's key is a new key.
        ledger.write("prices", "a", 20).expect("a rewrite");
        assert!(ledger.write("rates", "a", 1).is_err());
    }

    #[test]
    fn the_lookup_ledger_counts_the_last_write_of_each_key_against_its_byte_cap() {
        let mut ledger = LookupLedger::with_caps(100, 100);
        ledger.write("n", "k", 90).expect("92 bytes");
        // Rewriting the same key replaces its size rather than adding to it.
        ledger
            .write("n", "k", 95)
            .expect("97 bytes after the rewrite");
        let refused = ledger.write("n", "j", 5).expect_err("104 bytes");
        assert!(refused.contains("at most 100"), "{refused}");
        ledger.write("n", "k", 1).expect("shrinks");
        ledger.write("n", "j", 5).expect("now fits");
        assert_eq!(ledger.bytes, 3 + 7);
    }
}
