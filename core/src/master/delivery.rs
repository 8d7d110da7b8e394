//! The master's delivery task: hands out the engine's results and applies its store writes in
//! order (merging what queued up into one transaction). A result goes out while its write
//! commits; what comes after it (`idle` answers, `Drained`, the delivery acknowledgements) waits
//! for the commit. Results are delivered at least once: a master that stops before the commit
//! runs the job again after a restart, and its result comes again.

use tokio::sync::{mpsc, oneshot};

use super::MasterEvent;
use crate::job::JobResult;
use crate::store::{StoreOp, StoreWriter};

/// Store writes and the events they allow, in engine order.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) durable_ops: Vec<StoreOp>,
    pub(super) results: Vec<(JobResult, bool)>,
}

/// What the engine hands the delivery task, in its order.
pub(super) enum Delivery {
    Batch(Batch),
    Idle {
        reply: oneshot::Sender<bool>,
        idle: bool,
    },
    Drained,
    /// An event handed out in order behind the results before it.
    Event(MasterEvent),
}

/// Hands out the engine's results and applies its batches in order (merging what queued up into
/// one transaction); the next delivery waits for the commit.
pub(super) async fn deliver(
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    durable: Option<StoreWriter>,
    events: mpsc::UnboundedSender<MasterEvent>,
    auto_ack: bool,
) {
    let mut held: Option<Delivery> = None;
    loop {
        let first = match held.take() {
            Some(d) => d,
            None => match rx.recv().await {
                Some(d) => d,
                None => break,
            },
        };
        let mut batch = match first {
            Delivery::Batch(batch) => batch,
            Delivery::Idle { reply, idle } => {
                let _ = reply.send(idle);
                continue;
            }
            Delivery::Drained => {
                let _ = events.send(MasterEvent::Drained);
                continue;
            }
            Delivery::Event(event) => {
                let _ = events.send(event);
                continue;
            }
        };
        while batch.results.len() < 65_536 {
            match rx.try_recv() {
                Ok(Delivery::Batch(more)) => {
                    batch.durable_ops.extend(more.durable_ops);
                    batch.results.extend(more.results);
                }
                Ok(other) => {
                    held = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        // The results go out while their writes commit: a round trip does not wait for a commit
        // (the store thread's, or this thread's after the reader had its turn). What the user
        // sees after them (`idle`, `Drained`) waits for the commit; automatic acknowledgements
        // are written in it.
        let mut acks_durable = Vec::new();
        for (result, in_memory) in batch.results {
            if auto_ack && !in_memory {
                acks_durable.push(StoreOp::Delivered {
                    id: result.key.clone(),
                });
            }
            let _ = events.send(MasterEvent::Result(result));
        }
        if let (Some(durable), false) = (&durable, batch.durable_ops.is_empty()) {
            // The acknowledgements share the results' commit (their rows' pages are written
            // once), rather than riding along in the next push's insert, which a result waits
            // for.
            batch.durable_ops.append(&mut acks_durable);
            tokio::task::yield_now().await;
            if let Err(e) = durable.apply(batch.durable_ops).await {
                let _ = events.send(MasterEvent::Warning(format!(
                    "results could not be written to the store: their jobs will run again after a restart, and their results come again: {e}"
                )));
                continue;
            }
        }
        if let (Some(durable), false) = (&durable, acks_durable.is_empty()) {
            durable.apply_detached(acks_durable);
        }
    }
}
