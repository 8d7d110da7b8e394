//! The batched event stream that the bindings pull a master's or a worker's events from.
//!
//! A binding crosses into its language once per batch, not once per event: a reader waits for
//! the first event and then takes whatever else is already there, up to a cap. Node pulls with
//! one promise per batch, Python with one GIL acquisition per batch; both use this one
//! implementation, so "cancel-safe", "what close() does to a waiting reader" and "nothing is
//! lost at close" are decided here once.

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Mutex, watch};

/// The events of one master or worker, read in batches by any number of readers (one at a time
/// holds the receiver; the others wait their turn).
///
/// Build it from the receiver that [`crate::Master::start`] or [`crate::Worker::start`] returns.
pub struct EventStream<T> {
    rx: Mutex<UnboundedReceiver<T>>,
    closed: watch::Sender<bool>,
}

impl<T> From<UnboundedReceiver<T>> for EventStream<T> {
    fn from(rx: UnboundedReceiver<T>) -> Self {
        EventStream::new(rx)
    }
}

impl<T> EventStream<T> {
    /// A stream over the receiving end of an engine's event channel.
    pub fn new(rx: UnboundedReceiver<T>) -> Self {
        EventStream {
            rx: Mutex::new(rx),
            closed: watch::Sender::new(false),
        }
    }

    /// Up to `max` events (at least one is asked for even when `max` is 0): waits for the first,
    /// then takes what is already there. `None` once the engine is gone or [`Self::close`] was
    /// called and every buffered event was handed out; events that arrived before `close` are
    /// still handed out after it.
    ///
    /// Cancel-safe: dropping the future before it resolves loses no event.
    pub async fn next_batch(&self, max: usize) -> Option<Vec<T>> {
        let max = max.max(1);
        let mut closed = self.closed.subscribe();
        let mut rx = self.rx.lock().await;
        let first = match rx.try_recv() {
            Ok(event) => event,
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if *closed.borrow_and_update() => return None,
            Err(TryRecvError::Empty) => tokio::select! {
                event = rx.recv() => event?,
                // A close while waiting: whatever raced in is still handed out.
                _ = closed.wait_for(|c| *c) => rx.try_recv().ok()?,
            },
        };
        let mut batch = Vec::with_capacity(max.min(64));
        batch.push(first);
        take_ready(&mut rx, &mut batch, max);
        Some(batch)
    }

    /// Up to `max` events that are there now, without waiting: `Some(vec![])` when there are
    /// none (or another reader holds the stream), `None` once the engine is gone and nothing is
    /// left.
    pub fn try_batch(&self, max: usize) -> Option<Vec<T>> {
        let Ok(mut rx) = self.rx.try_lock() else {
            return Some(Vec::new());
        };
        let mut batch = Vec::new();
        match rx.try_recv() {
            Ok(event) => batch.push(event),
            Err(TryRecvError::Empty) => return Some(batch),
            Err(TryRecvError::Disconnected) => return None,
        }
        take_ready(&mut rx, &mut batch, max.max(1));
        Some(batch)
    }

    /// Ends every wait: readers waiting now and later get what is buffered, then `None`. Call it
    /// when the master or worker is closed (an engine can outlive its handle briefly).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
}

fn take_ready<T>(rx: &mut UnboundedReceiver<T>, batch: &mut Vec<T>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(event) => batch.push(event),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio::time::timeout;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_batch_holds_what_is_ready_up_to_max() {
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = EventStream::new(rx);
        for i in 0..5 {
            tx.send(i).expect("the stream holds the receiver");
        }
        let first = timeout(DEADLINE, stream.next_batch(3))
            .await
            .expect("within the deadline");
        assert_eq!(first, Some(vec![0, 1, 2]));
        let rest = timeout(DEADLINE, stream.next_batch(10))
            .await
            .expect("within the deadline");
        assert_eq!(rest, Some(vec![3, 4]));
        assert_eq!(stream.try_batch(10), Some(vec![]));
    }

    #[tokio::test]
    async fn next_batch_waits_for_the_first_event() {
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = Arc::new(EventStream::new(rx));
        let reader = tokio::spawn({
            let stream = stream.clone();
            async move { stream.next_batch(8).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!reader.is_finished(), "a reader with nothing to read waits");
        tx.send("joined").expect("the stream holds the receiver");
        let got = timeout(DEADLINE, reader)
            .await
            .expect("within the deadline")
            .expect("the reader task ran");
        assert_eq!(got, Some(vec!["joined"]));
    }

    #[tokio::test]
    async fn a_cancelled_wait_loses_no_event() {
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = EventStream::new(rx);
        // Dropped on its deadline while waiting, as the Python binding's slices are.
        assert!(
            timeout(Duration::from_millis(10), stream.next_batch(4))
                .await
                .is_err()
        );
        tx.send(7).expect("the stream holds the receiver");
        tx.send(8).expect("the stream holds the receiver");
        let got = timeout(DEADLINE, stream.next_batch(4))
            .await
            .expect("within the deadline");
        assert_eq!(got, Some(vec![7, 8]));
    }

    #[tokio::test]
    async fn close_wakes_a_waiting_reader_and_keeps_buffered_events() {
        let (tx, rx) = mpsc::unbounded_channel::<u32>();
        let stream = Arc::new(EventStream::new(rx));
        let reader = tokio::spawn({
            let stream = stream.clone();
            async move { stream.next_batch(8).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        stream.close();
        let got = timeout(DEADLINE, reader)
            .await
            .expect("within the deadline")
            .expect("the reader task ran");
        assert_eq!(got, None, "a waiting reader ends at close");
        // The sender is still alive (an engine outliving its handle): events still in the
        // channel are handed out, then the stream ends without waiting.
        tx.send(1).expect("the stream holds the receiver");
        let got = timeout(DEADLINE, stream.next_batch(8))
            .await
            .expect("within the deadline");
        assert_eq!(got, Some(vec![1]));
        let end = timeout(DEADLINE, stream.next_batch(8))
            .await
            .expect("within the deadline");
        assert_eq!(end, None);
        assert!(stream.is_closed());
    }

    #[tokio::test]
    async fn the_stream_ends_when_the_engine_is_gone_after_its_last_events() {
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = EventStream::new(rx);
        tx.send("a").expect("the stream holds the receiver");
        tx.send("b").expect("the stream holds the receiver");
        drop(tx);
        assert_eq!(stream.try_batch(1), Some(vec!["a"]));
        let got = timeout(DEADLINE, stream.next_batch(8))
            .await
            .expect("within the deadline");
        assert_eq!(got, Some(vec!["b"]));
        assert_eq!(
            timeout(DEADLINE, stream.next_batch(8))
                .await
                .expect("within the deadline"),
            None
        );
        assert_eq!(stream.try_batch(8), None);
    }
}
