//! Group commit: one thread owns the store and commits the writes of many callers at once.
//!
//! A commit costs about the same for one job as for thousands, so the thread takes everything
//! queued when it gets to work (up to [`GROUP_OPS_CAP`] ops), applies it in one transaction, and
//! answers every caller. Under load groups grow by themselves; a lone caller waits for one
//! commit, never for a timer.
//!
//! A small write that finds nothing queued and the store free is committed on the caller's own
//! thread instead: handing it to the store thread and back costs two thread wake-ups, more than
//! the commit of a job or two (this is most of a lone job's push → result round trip).
//!
//! Writes nobody awaits (delivery acknowledgements) wait up to [`DETACHED_LINGER`] for a write
//! somebody awaits and ride along in its commit, so that a push right after a result does not
//! queue behind a commit of its own.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use tokio::sync::{mpsc, oneshot};

#[cfg(test)]
use super::StateCounts;
#[cfg(test)]
use super::StoredJob;
use super::{JobStore, StoreOp};
use crate::error::{Error, Result};

/// A group stops taking more callers once it holds this many ops (one caller's ops are never
/// split, so a group can be larger when a single call is).
const GROUP_OPS_CAP: usize = 64 * 1024;

/// How long a write nobody awaits waits for another write to share its commit with.
const DETACHED_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// A write is committed on its caller's thread only when it has at most this many ops…
const INLINE_OPS_CAP: usize = 64;
/// …and at most this many payload and result bytes: the caller is an async task, which a big
/// commit would hold up longer than the wake-ups it saves.
const INLINE_BYTES_CAP: usize = 256 * 1024;

type Reply<T> = oneshot::Sender<Result<T>>;

/// One caller's writes in a group, and where its answer goes (none: nobody awaits them).
type CallerOps = (Vec<StoreOp>, Option<Reply<Vec<String>>>);

enum Request {
    Apply {
        ops: Vec<StoreOp>,
        reply: Option<Reply<Vec<String>>>,
    },
    /// Writes nobody awaits were stashed (see [`Owned::stash`]) by a caller outside a tokio
    /// runtime, or the stash's timer found the store busy: commit them after the linger unless
    /// another commit takes them first. Not counted in [`Shared::backlog`].
    Flush,
    #[cfg(test)]
    Load(Reply<Vec<StoredJob>>),
    #[cfg(test)]
    Counts(Reply<StateCounts>),
    #[cfg(test)]
    Get(String, Reply<Option<StoredJob>>),
    MaxSeq(Reply<i64>),
    Close(oneshot::Sender<()>),
}

/// What the store thread and inline callers take turns at.
struct Owned {
    /// `None` once the store is closed.
    store: Option<Box<dyn JobStore>>,
    /// Writes nobody awaits, made while nothing was queued: the next commit, inline or on the
    /// thread, applies them first (they were called before it).
    stash: Vec<StoreOp>,
}

struct Shared {
    owned: Mutex<Owned>,
    /// Requests sent to the store thread and not yet served. A write is committed inline only
    /// when this is 0, so it never passes a request made before it.
    backlog: AtomicUsize,
    commits: AtomicU64,
    location: Arc<str>,
    /// Whether small writes may be committed on the caller's thread (tests that hold the store
    /// thread inside a commit turn it off).
    inline: bool,
    /// How long stashed writes wait for a commit to ride along in.
    linger: std::time::Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Owned> {
        // A panic inside a store leaves it as SQLite left it (a transaction rolls back when
        // dropped); keep serving.
        self.owned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock, if nobody holds it and nothing is queued for the thread.
    fn idle(&self) -> Option<MutexGuard<'_, Owned>> {
        if !self.inline || self.backlog.load(Ordering::Acquire) != 0 {
            return None;
        }
        let owned = match self.owned.try_lock() {
            Ok(owned) => owned,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        // A request queued while the lock was taken came first.
        (self.backlog.load(Ordering::Acquire) == 0).then_some(owned)
    }

    /// Applies the stash, then each part, in one transaction; returns each part's ignored
    /// inserts. A failure loses the stash (logged): nobody awaits it.
    fn transact(&self, owned: &mut Owned, parts: Vec<Vec<StoreOp>>) -> Result<Vec<Vec<String>>> {
        let Some(store) = owned.store.as_mut() else {
            return Err(closed());
        };
        let stash = std::mem::take(&mut owned.stash);
        let stashed = stash.len();
        let mut ops = stash;
        let mut ends = Vec::with_capacity(parts.len());
        for mut part in parts {
            ops.append(&mut part);
            ends.push(ops.len());
        }
        if ops.is_empty() {
            return Ok(vec![Vec::new(); ends.len()]);
        }
        match store.apply_owned(ops) {
            Ok(mut ignored) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                ignored.sort_unstable_by_key(|(index, _)| *index);
                let mut ignored = ignored
                    .into_iter()
                    .skip_while(|(index, _)| *index < stashed)
                    .peekable();
                Ok(ends
                    .into_iter()
                    .map(|end| {
                        let mut mine = Vec::new();
                        while let Some((_, id)) = ignored.next_if(|(index, _)| *index < end) {
                            mine.push(id);
                        }
                        mine
                    })
                    .collect())
            }
            Err(error) => {
                if stashed > 0 {
                    lost_detached(&self.location, &error, stashed);
                }
                Err(error)
            }
        }
    }

    /// Commits the stash on its own, if there is one.
    fn flush(&self, owned: &mut Owned) {
        if !owned.stash.is_empty() && owned.store.is_some() {
            // Its failure is logged by `transact`.
            let _ = self.transact(owned, Vec::new());
        }
    }
}

/// A cloneable handle to the thread that owns a [`JobStore`] and writes to it with group commit.
///
/// Every request is queued the moment its method is called (not when its future is first
/// polled): ops from one caller are applied in the order of its calls, and calls across callers
/// in the order they arrived. Reads are served after every write made before them.
///
/// The thread ends, after finishing the queued work, when every clone is dropped or when
/// [`close`](Self::close) is called; calls after that fail with [`Error::Closed`].
#[derive(Clone)]
pub(crate) struct StoreWriter {
    requests: mpsc::UnboundedSender<Request>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("location", &self.shared.location)
            .field("commits", &self.commits())
            .finish()
    }
}

impl StoreWriter {
    /// Starts the thread that owns `store`; returns the first handle to it.
    pub(crate) fn spawn(store: Box<dyn JobStore>) -> StoreWriter {
        Self::spawn_with(store, DETACHED_LINGER, true)
    }

    /// [`spawn`](Self::spawn) with another linger for writes nobody awaits (tests use a long one,
    /// so that timing cannot decide what they check), and inline commits on or off.
    fn spawn_with(
        store: Box<dyn JobStore>,
        linger: std::time::Duration,
        inline: bool,
    ) -> StoreWriter {
        let (requests, receiver) = mpsc::unbounded_channel();
        let location: Arc<str> = store.location().into();
        let shared = Arc::new(Shared {
            owned: Mutex::new(Owned {
                store: Some(store),
                stash: Vec::new(),
            }),
            backlog: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
            location: Arc::clone(&location),
            inline,
            linger,
        });
        let thread_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("queuexec-store".to_string())
            .spawn(move || run(&thread_shared, receiver));
        if let Err(e) = spawned {
            // The receiver is gone with the closure, so every queued call reports
            // Error::Closed; no inline commit either.
            shared.lock().store = None;
            tracing::error!(store = %location, error = %e, "could not start the job store thread");
        }
        StoreWriter { requests, shared }
    }

    /// Applies `ops` atomically, grouped with other callers' ops into one transaction. Resolves
    /// once the transaction is committed, with the ids of this call's `Insert`s that were
    /// ignored because the id already existed. A small write that finds the store idle is
    /// committed before this returns, on the caller's thread.
    ///
    /// When the group's transaction fails, every caller in it gets an [`Error::Store`] with the
    /// same message, and none of the group's ops was applied.
    pub(crate) fn apply(
        &self,
        ops: Vec<StoreOp>,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + 'static {
        let path = match self.apply_inline(ops) {
            Ok(result) => Path::Done(result),
            Err(ops) => Path::Queued(self.ask(|reply| Request::Apply {
                ops,
                reply: Some(reply),
            })),
        };
        async move {
            match path {
                Path::Done(result) => result,
                Path::Queued(answer) => answer.await,
            }
        }
    }

    /// [`apply`](Self::apply)'s commit on the caller's thread, when `ops` are small and the
    /// store is idle; otherwise `ops` come back untouched, for the caller to queue as it sees
    /// fit.
    pub(crate) fn apply_inline(
        &self,
        ops: Vec<StoreOp>,
    ) -> std::result::Result<Result<Vec<String>>, Vec<StoreOp>> {
        let owned = if small(&ops) {
            self.shared.idle()
        } else {
            None
        };
        match owned {
            Some(mut owned) => Ok(self
                .shared
                .transact(&mut owned, vec![ops])
                .map(|mut parts| parts.pop().unwrap_or_default())),
            None => Err(ops),
        }
    }

    /// [`apply`](Self::apply) on the store thread, never on the caller's: for a caller with
    /// other work to do on its thread while the commit runs (a push hands its jobs to the engine
    /// meanwhile), or whose [`apply_inline`](Self::apply_inline) was declined. Queued the
    /// moment it is called, so every write made after it is applied after it.
    pub(crate) fn apply_queued(
        &self,
        ops: Vec<StoreOp>,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + 'static {
        self.ask(|reply| Request::Apply {
            ops,
            reply: Some(reply),
        })
    }

    /// Queues `ops` with the same ordering as [`apply`](Self::apply), for writes nobody awaits
    /// (such as delivery acknowledgements). A failure is logged, and reported to nobody.
    pub(crate) fn apply_detached(&self, ops: Vec<StoreOp>) {
        if let Some(mut owned) = self.shared.idle()
            && owned.store.is_some()
        {
            let first = owned.stash.is_empty();
            owned.stash.extend(ops);
            drop(owned);
            if first {
                self.flush_later();
            }
            return;
        }
        if !self.queue(Request::Apply { ops, reply: None }) {
            tracing::warn!(store = %self.shared.location, "a job store write was dropped: the store is closed");
        }
    }

    /// Commits the stash once the linger is over, unless a commit takes it first. On the
    /// caller's runtime this is a timer, which wakes no other thread (by the time it fires the
    /// next write has usually taken the stash along); elsewhere the store thread waits it out.
    fn flush_later(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // If the thread is gone the store is closed, and the stash with it.
            let _ = self.requests.send(Request::Flush);
            return;
        };
        let writer = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(writer.shared.linger).await;
            match writer.shared.idle() {
                Some(mut owned) => writer.shared.flush(&mut owned),
                // Busy: the store thread commits the stash with what it serves next, or after
                // the linger.
                None => {
                    let _ = writer.requests.send(Request::Flush);
                }
            }
        });
    }

    /// [`JobStore::load`], after every write made before it. (Tests only: a master reads
    /// its open jobs on a connection of its own, `SqliteStore::recover`.)
    #[cfg(test)]
    pub(crate) fn load(&self) -> impl Future<Output = Result<Vec<StoredJob>>> + Send + 'static {
        self.ask(Request::Load)
    }

    /// [`JobStore::counts`], after every write made before it. (Tests only: the master
    /// counts jobs in its scheduler.)
    #[cfg(test)]
    pub(crate) fn counts(&self) -> impl Future<Output = Result<StateCounts>> + Send + 'static {
        self.ask(Request::Counts)
    }

    /// [`JobStore::get`], after every write made before it. (Tests only.)
    #[cfg(test)]
    pub(crate) fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredJob>>> + Send + 'static {
        let id = id.to_string();
        self.ask(|reply| Request::Get(id, reply))
    }

    /// [`JobStore::max_seq`], after every write made before it.
    pub(crate) fn max_seq(&self) -> impl Future<Output = Result<i64>> + Send + 'static {
        self.ask(Request::MaxSeq)
    }

    /// Finishes every request made before this call, closes the store (for SQLite: the
    /// connection, which checkpoints the WAL) and resolves once it is closed. Later calls, from
    /// any clone, fail with [`Error::Closed`]. Closing twice is harmless.
    pub(crate) fn close(&self) -> impl Future<Output = ()> + Send + 'static {
        let (done, closed) = oneshot::channel();
        let sent = self.queue(Request::Close(done));
        async move {
            if sent {
                // An error means the thread is gone already, which is what we wait for.
                let _ = closed.await;
            }
        }
    }

    /// How many transactions the writer has committed: a statistic, to see how well writes
    /// are grouped (jobs written / commits = average group size).
    pub(crate) fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Requests queued for the store thread and not yet served (tests).
    #[cfg(test)]
    pub(crate) fn backlog(&self) -> usize {
        self.shared.backlog.load(Ordering::Acquire)
    }

    fn ask<T: Send + 'static>(
        &self,
        request: impl FnOnce(Reply<T>) -> Request,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.queue(request(reply));
        async move {
            if !sent {
                return Err(closed());
            }
            // A dropped reply: the store was closed before the request was served.
            answer.await.unwrap_or_else(|_| Err(closed()))
        }
    }

    /// Sends `request` to the store thread, counted in the backlog until it is served; false
    /// when the thread is gone.
    fn queue(&self, request: Request) -> bool {
        self.shared.backlog.fetch_add(1, Ordering::AcqRel);
        let sent = self.requests.send(request).is_ok();
        if !sent {
            self.shared.backlog.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }
}

/// An answer known when the call was made, or one to wait for.
enum Path<F> {
    Done(Result<Vec<String>>),
    Queued(F),
}

/// Whether `ops` are small enough to commit on the caller's thread.
fn small(ops: &[StoreOp]) -> bool {
    if ops.len() > INLINE_OPS_CAP {
        return false;
    }
    let bytes: usize = ops
        .iter()
        .map(|op| match op {
            StoreOp::Insert(job) => job.payload.len(),
            StoreOp::Done { result, .. } => result.len(),
            _ => 0,
        })
        .sum();
    bytes <= INLINE_BYTES_CAP
}

fn closed() -> Error {
    Error::Closed("job store")
}

fn lost_detached(location: &str, error: &Error, count: usize) {
    tracing::error!(
        store = %location,
        error = %error,
        "{count} job store write(s) that nobody awaits failed and were not applied"
    );
}

/// The store thread: serves requests in arrival order until every handle is gone or a close.
fn run(shared: &Shared, mut requests: mpsc::UnboundedReceiver<Request>) {
    let linger = shared.linger;
    // Only a timer for the linger of detached writes (see `gather_detached`).
    let timer = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .ok();
    let mut next: Option<Request> = None;
    let mut closers = Vec::new();
    loop {
        let request = match next.take() {
            Some(request) => request,
            None => match requests.blocking_recv() {
                Some(request) => request,
                None => break,
            },
        };
        // Each request taken from the queue (but a Flush) is counted off the backlog once it is
        // served, before its caller is answered: a caller answered may commit inline at once.
        match request {
            Request::Flush => {
                // Wait out the linger unless a request comes first: it commits the stash.
                let got = timer.as_ref().map(|timer| {
                    timer.block_on(async { tokio::time::timeout(linger, requests.recv()).await })
                });
                match got {
                    Some(Ok(Some(request))) => next = Some(request),
                    // Every handle is gone: the stash is committed on the way out.
                    Some(Ok(None)) => break,
                    Some(Err(_)) | None => shared.flush(&mut shared.lock()),
                }
            }
            Request::Apply { ops, reply: None } => {
                let (first, after) = gather_detached(timer.as_ref(), &mut requests, ops, linger);
                next = commit_group(shared, &mut requests, first, after.is_none());
                if after.is_some() {
                    next = after;
                }
            }
            Request::Apply { ops, reply } => {
                next = commit_group(shared, &mut requests, vec![(ops, reply)], true);
            }
            #[cfg(test)]
            Request::Load(reply) => serve_read(shared, reply, |s| s.load()),
            #[cfg(test)]
            Request::Counts(reply) => serve_read(shared, reply, |s| s.counts()),
            #[cfg(test)]
            Request::Get(id, reply) => serve_read(shared, reply, |s| s.get(&id)),
            Request::MaxSeq(reply) => serve_read(shared, reply, |s| s.max_seq()),
            Request::Close(done) => {
                closers.push(done);
                break;
            }
        }
    }
    {
        let mut owned = shared.lock();
        shared.flush(&mut owned);
        owned.store = None;
    }
    // Requests that arrived after the close are dropped unanswered (their callers get
    // Error::Closed); other closers are told the store is closed.
    requests.close();
    while let Ok(request) = requests.try_recv() {
        if let Request::Close(done) = request {
            closers.push(done);
        }
    }
    for done in closers {
        let _ = done.send(());
    }
}

/// A read, after the stash is committed (it was written before the read was asked for).
fn serve_read<T>(
    shared: &Shared,
    reply: Reply<T>,
    read: impl FnOnce(&mut dyn JobStore) -> Result<T>,
) {
    let answer = {
        let mut owned = shared.lock();
        shared.flush(&mut owned);
        match owned.store.as_mut() {
            Some(store) => read(store.as_mut()),
            None => Err(closed()),
        }
    };
    shared.backlog.fetch_sub(1, Ordering::AcqRel);
    let _ = reply.send(answer);
}

/// A write nobody awaits: waits up to `linger` ([`DETACHED_LINGER`]) for writes queued after it (until one
/// somebody awaits, which ends the wait), so they share one commit. Returns the writes to
/// commit, in arrival order, and the request that ended the wait if it is not a write (served
/// after the commit, and nothing queued behind it may be taken into the commit).
fn gather_detached(
    timer: Option<&tokio::runtime::Runtime>,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    ops: Vec<StoreOp>,
    linger: std::time::Duration,
) -> (Vec<CallerOps>, Option<Request>) {
    let mut group = vec![(ops, None)];
    let Some(timer) = timer else {
        return (group, None);
    };
    let deadline = tokio::time::Instant::now() + linger;
    let mut held = group[0].0.len();
    while held < GROUP_OPS_CAP {
        let got =
            timer.block_on(async { tokio::time::timeout_at(deadline, requests.recv()).await });
        match got {
            Ok(Some(Request::Apply { ops, reply })) => {
                let awaited = reply.is_some();
                held += ops.len();
                group.push((ops, reply));
                if awaited {
                    break;
                }
            }
            Ok(Some(other)) => return (group, Some(other)),
            // Every handle gone (the loop ends after this commit) or the linger is over.
            Ok(None) | Err(_) => break,
        }
    }
    (group, None)
}

/// Applies the stash, the `first` callers' ops and, when `take_more`, every apply queued behind
/// them (up to the cap) in one transaction, answers each caller, and returns the first queued
/// request that is not an apply, if it took one.
fn commit_group(
    shared: &Shared,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    mut callers: Vec<CallerOps>,
    take_more: bool,
) -> Option<Request> {
    let mut owned = shared.lock();
    let mut held: usize = callers.iter().map(|(ops, _)| ops.len()).sum();
    let mut next = None;
    while take_more && held < GROUP_OPS_CAP {
        match requests.try_recv() {
            Ok(Request::Apply { ops, reply }) => {
                held += ops.len();
                callers.push((ops, reply));
            }
            Ok(other) => {
                next = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    let served = callers.len();
    let (parts, replies): (Vec<_>, Vec<_>) = callers.into_iter().unzip();
    let result = shared.transact(&mut owned, parts);
    drop(owned);
    shared.backlog.fetch_sub(served, Ordering::AcqRel);
    match result {
        Ok(ignored) => {
            for (mine, reply) in ignored.into_iter().zip(replies) {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(mine));
                }
            }
        }
        Err(error) => {
            let detached = replies.iter().filter(|r| r.is_none()).count();
            if detached > 0 {
                lost_detached(&shared.location, &error, detached);
            }
            // The first caller gets the original error (with its source); the others an equal
            // copy, since errors cannot be cloned.
            let mut waiting = replies.into_iter().flatten();
            if let Some(first) = waiting.next() {
                for reply in waiting {
                    let _ = reply.send(Err(copy_error(&error, &shared.location)));
                }
                let _ = first.send(Err(error));
            }
        }
    }
    next
}

/// An [`Error::Store`] equal to `error` in location and message; the source, if any, is kept
/// as its text.
fn copy_error(error: &Error, location: &str) -> Error {
    match error {
        Error::Store {
            location,
            message,
            source,
        } => Error::Store {
            location: location.clone(),
            message: message.clone(),
            source: source.as_ref().map(|s| s.to_string().into()),
        },
        other => Error::Store {
            location: location.to_string(),
            message: other.to_string(),
            source: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc as std_mpsc;
    use std::time::{Duration, Instant};

    use super::super::conformance::{job, worker};
    use super::super::{JobState, MemoryStore, SqliteStore};
    use super::*;

    fn insert(id: &str, seq: i64) -> StoreOp {
        StoreOp::Insert(job(id, seq))
    }

    /// A store that runs a hook before each `apply_owned` (Ok: apply; Err: fail with that
    /// message) and flags its drop.
    struct Hooked<S> {
        inner: S,
        before: Box<dyn FnMut() -> std::result::Result<(), String> + Send>,
        dropped: Arc<AtomicBool>,
    }

    impl<S: JobStore> JobStore for Hooked<S> {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn load(&mut self) -> Result<Vec<StoredJob>> {
            self.inner.load()
        }
        fn apply(&mut self, ops: &[StoreOp]) -> Result<Vec<String>> {
            self.inner.apply(ops)
        }
        fn apply_owned(&mut self, ops: Vec<StoreOp>) -> Result<Vec<(usize, String)>> {
            match (self.before)() {
                Ok(()) => self.inner.apply_owned(ops),
                Err(message) => Err(Error::Store {
                    location: self.location(),
                    message,
                    source: Some("the disk said no".into()),
                }),
            }
        }
        fn counts(&mut self) -> Result<StateCounts> {
            self.inner.counts()
        }
        fn get(&mut self, id: &str) -> Result<Option<StoredJob>> {
            self.inner.get(id)
        }
        fn max_seq(&mut self) -> Result<i64> {
            self.inner.max_seq()
        }
    }

    impl<S> Drop for Hooked<S> {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    struct Gate {
        open: std_mpsc::Sender<std::result::Result<(), String>>,
        waiting: std_mpsc::Receiver<()>,
        dropped: Arc<AtomicBool>,
    }

    impl Gate {
        /// Waits until the store thread is inside `apply_owned`.
        fn wait_for_apply(&self) {
            self.waiting
                .recv_timeout(Duration::from_secs(10))
                .expect("the store thread applies");
        }
        fn pass(&self) {
            self.open.send(Ok(())).expect("gate");
        }
        fn fail(&self, message: &str) {
            self.open.send(Err(message.to_string())).expect("gate");
        }
    }

    /// A store that waits for the test's word before each `apply_owned` (Ok: apply; Err: fail
    /// with that message) and says when it is waiting.
    fn gated<S: JobStore>(inner: S) -> (StoreWriter, Gate) {
        let (open, gate) = std_mpsc::channel::<std::result::Result<(), String>>();
        let (waiting_tx, waiting) = std_mpsc::channel();
        let dropped = Arc::new(AtomicBool::new(false));
        let store = Hooked {
            inner,
            before: Box::new(move || {
                let _ = waiting_tx.send(());
                // Bounded: a test that wrongly commits on its own thread fails instead of
                // hanging.
                gate.recv_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|_| Err("the test gave no word".to_string()))
            }),
            dropped: Arc::clone(&dropped),
        };
        (
            // The gate holds whoever commits: the store thread, never the test's own.
            StoreWriter::spawn_with(Box::new(store), DETACHED_LINGER, false),
            Gate {
                open,
                waiting,
                dropped,
            },
        )
    }

    #[tokio::test]
    async fn grouped_callers_get_only_their_own_duplicates() {
        let (writer, gate) = gated(MemoryStore::new());
        // Hold the thread inside a first commit while three callers queue up behind it.
        let first = writer.apply(vec![insert("old", 1)]);
        gate.wait_for_apply();
        let b = writer.apply(vec![insert("x", 2), insert("old", 3)]);
        let c = writer.apply(vec![insert("x", 4)]);
        writer.apply_detached(vec![StoreOp::Delivered { id: "old".into() }]);
        let d = writer.apply(vec![insert("y", 5), insert("x", 6), insert("y", 7)]);
        gate.pass();
        gate.wait_for_apply();
        gate.pass();
        assert!(first.await.expect("first").is_empty());
        assert_eq!(b.await.expect("b"), ["old"]);
        assert_eq!(
            c.await.expect("c"),
            ["x"],
            "x was inserted by b, earlier in the same group"
        );
        assert_eq!(d.await.expect("d"), ["x", "y"]);
        assert_eq!(
            writer.commits(),
            2,
            "the three queued calls shared one transaction"
        );
        let x = writer.get("x").await.expect("get").expect("x stored");
        assert_eq!(x.seq, 2, "b's insert of x won");
        assert!(
            writer
                .get("old")
                .await
                .expect("get")
                .expect("old")
                .delivered
        );
    }

    #[tokio::test]
    async fn every_caller_of_a_failed_group_gets_the_error_and_nothing_is_applied() {
        let (writer, gate) = gated(MemoryStore::new());
        let first = writer.apply(vec![insert("a", 1)]);
        gate.wait_for_apply();
        let b = writer.apply(vec![insert("b", 2)]);
        writer.apply_detached(vec![insert("c", 3)]);
        let d = writer.apply(vec![StoreOp::Delivered { id: "a".into() }]);
        gate.pass();
        gate.wait_for_apply();
        gate.fail("writing failed: the disk is full");
        first.await.expect("first commit");
        for result in [b.await, d.await] {
            let Err(Error::Store {
                location,
                message,
                source,
            }) = result
            else {
                panic!("expected a store error, got {result:?}");
            };
            assert_eq!(location, "memory");
            assert_eq!(message, "writing failed: the disk is full");
            assert_eq!(
                source.map(|s| s.to_string()).as_deref(),
                Some("the disk said no")
            );
        }
        assert_eq!(writer.commits(), 1);
        // The writer keeps serving after a failed group.
        let e = writer.apply(vec![insert("e", 5)]);
        gate.wait_for_apply();
        gate.pass();
        e.await.expect("after a failure");
        assert_eq!(writer.get("b").await.expect("get"), None);
        assert_eq!(writer.get("c").await.expect("get"), None);
        assert!(!writer.get("a").await.expect("get").expect("a").delivered);
        assert_eq!(writer.max_seq().await.expect("max_seq"), 5);
    }

    #[tokio::test]
    async fn one_callers_ops_apply_in_call_order_and_reads_follow_writes() {
        let writer = StoreWriter::spawn(Box::new(MemoryStore::new()));
        // Futures not yet polled still keep their place: requests queue when called.
        let inserted = writer.apply(vec![insert("a", 1)]);
        writer.apply_detached(vec![StoreOp::Done {
            id: "a".into(),
            attempt: 1,
            result: b"r".to_vec(),
            worker: worker(1),
        }]);
        let read = writer.get("a");
        writer.apply_detached(vec![StoreOp::Delivered { id: "a".into() }]);
        let loaded = writer.load();
        let counts = writer.counts();
        assert!(inserted.await.expect("insert").is_empty());
        let a = read.await.expect("get").expect("a");
        assert_eq!((a.state, a.delivered), (JobState::Done, false));
        assert!(
            loaded.await.expect("load").is_empty(),
            "delivered before the load"
        );
        assert_eq!(counts.await.expect("counts").done, 1);
    }

    /// A delivery acknowledgement (nobody awaits it), then a push a moment later: one commit for
    /// both, so the push does not wait behind a commit of the acknowledgement alone. The linger
    /// is long here, so the push comes while the acknowledgement waits whatever the machine's
    /// load; without the linger the acknowledgement would be committed alone meanwhile. Both
    /// ways: stashed for the push's inline commit, and queued on the store thread.
    #[tokio::test]
    async fn a_detached_write_rides_along_with_the_next_awaited_write() {
        for inline in [true, false] {
            let writer = StoreWriter::spawn_with(
                Box::new(MemoryStore::new()),
                Duration::from_secs(30),
                inline,
            );
            writer.apply(vec![insert("a", 1)]).await.expect("insert a");
            assert_eq!(writer.commits(), 1);
            writer.apply_detached(vec![StoreOp::Delivered { id: "a".into() }]);
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(
                writer.commits(),
                1,
                "the acknowledgement waits for company (inline: {inline})"
            );
            let push =
                tokio::time::timeout(Duration::from_secs(10), writer.apply(vec![insert("b", 2)]))
                    .await
                    .expect("the push is committed at once");
            assert!(push.expect("insert b").is_empty());
            assert_eq!(
                writer.commits(),
                2,
                "the acknowledgement and the push share one commit (inline: {inline})"
            );
            assert!(writer.get("a").await.expect("get").expect("a").delivered);
        }
    }

    /// A lone small write is committed before `apply` returns, on the caller's thread: no hop to
    /// the store thread and back. A big one, and whatever comes while it is queued, go to the
    /// store thread, in order, and take a stashed acknowledgement along.
    #[test]
    fn small_writes_to_an_idle_store_commit_on_the_callers_thread() {
        // Which thread each commit ran on.
        let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let noted = Arc::clone(&threads);
        let spy = Hooked {
            inner: MemoryStore::new(),
            before: Box::new(move || {
                let name = std::thread::current().name().map(str::to_string);
                noted.lock().expect("threads").push(name);
                Ok(())
            }),
            dropped: Arc::new(AtomicBool::new(false)),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let me = std::thread::current().name().map(str::to_string);
        runtime.block_on(async {
            let writer = StoreWriter::spawn_with(Box::new(spy), Duration::from_secs(30), true);
            let small = writer.apply(vec![insert("a", 1)]);
            assert_eq!(writer.commits(), 1, "committed before apply returned");
            assert!(small.await.expect("a").is_empty());
            assert_eq!(threads.lock().expect("threads").last(), Some(&me));

            writer.apply_detached(vec![StoreOp::Delivered { id: "a".into() }]);
            assert_eq!(writer.commits(), 1, "an acknowledgement waits in the stash");
            let big = writer.apply((2..=100).map(|i| insert(&format!("j{i}"), i)).collect());
            // Made while the big write may still be queued: it must not pass it. It is committed
            // inline only once the store thread has served the big write.
            let after = writer.apply(vec![insert("j2", 101)]);
            assert_eq!(big.await.expect("big").len(), 0);
            assert_eq!(
                after.await.expect("after"),
                ["j2"],
                "applied after the big write, which inserted j2"
            );
            let seen = threads.lock().expect("threads").clone();
            // The acknowledgement rides in the big write's commit, on the store thread. The write
            // after it joins that commit when it was queued before the thread got to work, or
            // has a commit of its own: on the store thread if it was queued behind the big
            // write, inline if the thread had served it already. `["j2"]` above shows it never
            // passed the big write either way.
            assert!(
                (2..=3).contains(&seen.len()),
                "one commit for the acknowledgement and the big write: {seen:?}"
            );
            assert_eq!(
                seen[1].as_deref(),
                Some("queuexec-store"),
                "the big write commits on the store thread: {seen:?}"
            );
            assert!(writer.get("a").await.expect("get").expect("a").delivered);
            writer.close().await;
        });
    }

    /// A lone detached write is committed on its own once the linger is over, and before a read
    /// or a close queued after it.
    #[tokio::test]
    async fn a_lone_detached_write_is_committed_after_the_linger_and_before_later_reads() {
        let writer = StoreWriter::spawn(Box::new(MemoryStore::new()));
        writer.apply(vec![insert("a", 1)]).await.expect("insert a");
        writer.apply_detached(vec![StoreOp::Delivered { id: "a".into() }]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while writer.commits() < 2 {
            assert!(
                Instant::now() < deadline,
                "the detached write was never committed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        writer.apply_detached(vec![StoreOp::Delivered { id: "a".into() }]);
        writer.apply_detached(vec![insert("c", 3)]);
        // A read right behind them ends their wait and sees them.
        assert!(writer.get("c").await.expect("get").is_some());
        writer.close().await;
        assert_eq!(writer.commits(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_single_job_calls_all_land_in_at_most_one_commit_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("jobs.db")).expect("open");
        let writer = StoreWriter::spawn(Box::new(store));
        let mut tasks = Vec::new();
        for task in 0..8 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..1000 {
                    let seq = task * 1000 + i + 1;
                    let ignored = writer
                        .apply(vec![insert(&format!("t{task}-{i}"), seq)])
                        .await?;
                    assert!(ignored.is_empty());
                }
                Ok::<_, Error>(())
            }));
        }
        for task in tasks {
            task.await.expect("task").expect("every apply succeeds");
        }
        let counts = writer.counts().await.expect("counts");
        assert_eq!(counts.queued, 8000);
        assert_eq!(writer.max_seq().await.expect("max_seq"), 8000);
        // How far calls group depends on scheduling (the deterministic grouping test above pins
        // it down with a gate); what holds always is at least one commit and never more commits
        // than calls: no call is committed twice or on its own beside its group.
        let commits = writer.commits();
        assert!(
            (1..=8000).contains(&commits),
            "8000 concurrent single-job calls took {commits} commits"
        );
        eprintln!("8 callers x 1000 single-job applies: {commits} commits");
    }

    #[tokio::test]
    async fn close_finishes_queued_writes_and_refuses_later_calls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.db");
        let (writer, gate) = gated(SqliteStore::open(&path).expect("open"));
        let other = writer.clone();
        writer.apply_detached(vec![insert("a", 1), insert("b", 2)]);
        other.apply_detached(vec![StoreOp::Dead {
            id: "b".into(),
            attempt: 1,
            error: "e".into(),
            worker: None,
        }]);
        let closing = writer.close();
        let late = other.apply(vec![insert("late", 3)]);
        gate.wait_for_apply();
        gate.pass();
        closing.await;
        assert!(
            gate.dropped.load(Ordering::SeqCst),
            "close resolves after the store is closed"
        );
        assert!(
            matches!(late.await, Err(Error::Closed(_))),
            "queued after the close"
        );
        assert!(matches!(other.load().await, Err(Error::Closed(_))));
        assert!(matches!(writer.apply(vec![]).await, Err(Error::Closed(_))));
        writer.close().await;

        let mut store = SqliteStore::open(&path).expect("reopen");
        let ids: Vec<String> = store
            .load()
            .expect("load")
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(
            store.get("b").expect("get").map(|j| j.state),
            Some(JobState::Dead)
        );
    }

    #[tokio::test]
    async fn dropping_every_handle_finishes_the_queue_and_ends_the_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.db");
        let (writer, gate) = gated(SqliteStore::open(&path).expect("open"));
        let other = writer.clone();
        writer.apply_detached(vec![insert("a", 1)]);
        other.apply_detached(vec![insert("b", 2)]);
        drop(writer);
        drop(other);
        gate.wait_for_apply();
        gate.pass();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gate.dropped.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the store thread did not end");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(store.load().expect("load").len(), 2);
    }

    const CRASH_CHILD_ENV: &str = "QUEUEXEC_TEST_STORE_CRASH_CHILD";

    /// Every job whose `apply` resolved is in the file after the process dies abruptly, with
    /// writes still in flight and no close.
    #[test]
    fn accepted_jobs_survive_an_abrupt_process_exit() {
        if let Some(path) = std::env::var_os(CRASH_CHILD_ENV) {
            crash_child(std::path::Path::new(&path));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.db");
        let exe = std::env::current_exe().expect("test binary");
        let output = std::process::Command::new(exe)
            .args([
                "--exact",
                "store::writer::tests::accepted_jobs_survive_an_abrupt_process_exit",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, &path)
            .output()
            .expect("run the child");
        assert!(!output.status.success(), "the child aborts: {output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        // The harness prints "test <name> ... " without a newline before the child's
        // first line, so an id is whatever follows the last "accepted " on its line.
        let accepted: Vec<&str> = stdout
            .lines()
            .filter_map(|line| line.rsplit_once("accepted ").map(|(_, id)| id))
            .collect();
        assert!(
            accepted.len() >= 2000,
            "the child accepted {} jobs: {output:?}",
            accepted.len()
        );
        let mut store = SqliteStore::open(&path).expect("reopen after the crash");
        for id in &accepted {
            assert!(
                store.get(id).expect("get").is_some(),
                "accepted job {id} was lost"
            );
        }
        assert!(store.max_seq().expect("max_seq") >= accepted.len() as i64);
    }

    /// Pushes from 8 tasks, prints each accepted id, and aborts mid-stream.
    fn crash_child(path: &std::path::Path) -> ! {
        use std::io::Write;
        use std::sync::atomic::AtomicUsize;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let writer = StoreWriter::spawn(Box::new(SqliteStore::open(path).expect("open")));
            let accepted = Arc::new(AtomicUsize::new(0));
            let seq = Arc::new(AtomicU64::new(0));
            for task in 0..8 {
                let (writer, accepted, seq) = (writer.clone(), accepted.clone(), seq.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        let id = format!("t{task}-{i}");
                        let n = seq.fetch_add(1, Ordering::SeqCst) as i64 + 1;
                        if writer.apply(vec![insert(&id, n)]).await.is_ok() {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "accepted {id}");
                            let _ = out.flush();
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
            while accepted.load(Ordering::SeqCst) < 2000 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            std::process::abort();
        })
    }

    /// Throughput through the writer with 64 concurrent callers. Not a pass/fail test: run
    /// `cargo test --release -p queuexec-core --lib store -- --ignored --nocapture`.
    #[ignore = "measures throughput; run with --release --ignored --nocapture"]
    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn store_writer_throughput() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("jobs.db")).expect("open");
        let writer = StoreWriter::spawn(Box::new(store));
        const CALLERS: u64 = 64;
        const SINGLE: u64 = 200_000;
        const BATCH: u64 = 100;
        const BATCHED: u64 = 1_000_000;
        let payload = bytes::Bytes::from(vec![7u8; 200]);
        let result = vec![9u8; 100];

        async fn phase(
            writer: &StoreWriter,
            label: &str,
            total: u64,
            batch: u64,
            make: Arc<dyn Fn(u64) -> StoreOp + Send + Sync>,
        ) {
            let commits_before = writer.commits();
            let started = Instant::now();
            let mut tasks = Vec::new();
            for caller in 0..CALLERS {
                let (writer, make) = (writer.clone(), make.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = caller * batch;
                    while n < total {
                        let ops = (n..(n + batch).min(total)).map(|i| make(i)).collect();
                        writer.apply(ops).await.expect("apply");
                        n += CALLERS * batch;
                    }
                }));
            }
            for task in tasks {
                task.await.expect("task");
            }
            let secs = started.elapsed().as_secs_f64();
            let commits = writer.commits() - commits_before;
            eprintln!(
                "{label}: {total} ops in {secs:.2}s = {:.0} ops/s ({commits} commits, {:.0} ops/commit)",
                total as f64 / secs,
                total as f64 / commits.max(1) as f64
            );
        }

        let p = payload.clone();
        let make_insert = move |offset: u64| {
            let p = p.clone();
            Arc::new(move |i: u64| {
                let mut j = job(&format!("job-{}", offset + i), (offset + i + 1) as i64);
                j.payload = p.clone();
                StoreOp::Insert(j)
            }) as Arc<dyn Fn(u64) -> StoreOp + Send + Sync>
        };
        let r = result.clone();
        let make_done = move |offset: u64| {
            let r = r.clone();
            Arc::new(move |i: u64| StoreOp::Done {
                id: format!("job-{}", offset + i),
                attempt: 1,
                result: r.clone(),
                worker: worker(1),
            }) as Arc<dyn Fn(u64) -> StoreOp + Send + Sync>
        };
        {
            // The store alone, without the writer or the callers: pre-built ops, 4096 per commit.
            let mut store = SqliteStore::open(dir.path().join("direct.db")).expect("open");
            let direct =
                |label: &str,
                 store: &mut SqliteStore,
                 make: Arc<dyn Fn(u64) -> StoreOp + Send + Sync>| {
                    let groups: Vec<Vec<StoreOp>> = (0..BATCHED / 4096 + 1)
                        .map(|g| {
                            (g * 4096..((g + 1) * 4096).min(BATCHED))
                                .map(|i| make(i))
                                .collect()
                        })
                        .collect();
                    let started = Instant::now();
                    for group in groups {
                        store.apply_owned(group).expect("apply");
                    }
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "{label}: {BATCHED} ops in {secs:.2}s = {:.0} ops/s",
                        BATCHED as f64 / secs
                    );
                };
            direct("sqlite store alone, inserts", &mut store, make_insert(0));
            direct("sqlite store alone, done-updates", &mut store, make_done(0));
        }
        phase(
            &writer,
            "sqlite inserts, 1 job per apply",
            SINGLE,
            1,
            make_insert(0),
        )
        .await;
        phase(
            &writer,
            "sqlite done-updates, 1 job per apply",
            SINGLE,
            1,
            make_done(0),
        )
        .await;
        phase(
            &writer,
            "sqlite inserts, 100 jobs per apply",
            BATCHED,
            BATCH,
            make_insert(SINGLE),
        )
        .await;
        phase(
            &writer,
            "sqlite done-updates, 100 jobs per apply",
            BATCHED,
            BATCH,
            make_done(SINGLE),
        )
        .await;
        writer.close().await;

        let memory = StoreWriter::spawn(Box::new(MemoryStore::new()));
        phase(
            &memory,
            "memory inserts, 1 job per apply",
            SINGLE,
            1,
            make_insert(0),
        )
        .await;
        phase(
            &memory,
            "memory inserts, 100 jobs per apply",
            BATCHED,
            BATCH,
            make_insert(SINGLE),
        )
        .await;
        phase(
            &memory,
            "memory done-updates, 100 jobs per apply",
            BATCHED,
            BATCH,
            make_done(SINGLE),
        )
        .await;
    }
}
