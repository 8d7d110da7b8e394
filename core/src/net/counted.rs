//! A job stream that counts the bytes it carries when it runs through a relay, so both sides
//! can say how much went through one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

/// Bytes carried by relayed job streams (both directions), and how many such streams are open.
#[derive(Debug, Default)]
pub(crate) struct RelayedCounters {
    pub(crate) bytes: AtomicU64,
    pub(crate) streams: AtomicU64,
}

/// A stream whose bytes are added to `counters` when it is relayed.
pub(crate) struct Counted<S> {
    inner: S,
    counters: Option<Arc<RelayedCounters>>,
}

impl<S> Counted<S> {
    /// Wraps `inner`; counts only when `relayed`.
    pub(crate) fn new(inner: S, relayed: bool, counters: &Arc<RelayedCounters>) -> Self {
        let counters = relayed.then(|| {
            counters.streams.fetch_add(1, Ordering::Relaxed);
            counters.clone()
        });
        Counted { inner, counters }
    }

    fn add(&self, n: usize) {
        if let Some(c) = &self.counters {
            c.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        if let Some(c) = &self.counters {
            c.streams.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            this.add(*n);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            this.add(*n);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_relayed_stream_counts_both_directions_and_a_direct_one_nothing() {
        let counters = Arc::new(RelayedCounters::default());
        let mut relayed = Counted::new(futures::io::Cursor::new(vec![0u8; 0]), true, &counters);
        relayed.write_all(b"hello").await.expect("write");
        relayed.set_position_for_test(0);
        let mut back = Vec::new();
        relayed.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"hello");
        assert_eq!(counters.bytes.load(Ordering::Relaxed), 10);
        assert_eq!(counters.streams.load(Ordering::Relaxed), 1);
        drop(relayed);
        assert_eq!(counters.streams.load(Ordering::Relaxed), 0);

        let mut direct = Counted::new(futures::io::Cursor::new(vec![0u8; 0]), false, &counters);
        direct.write_all(b"hello").await.expect("write");
        assert_eq!(counters.bytes.load(Ordering::Relaxed), 10);
    }

    impl Counted<futures::io::Cursor<Vec<u8>>> {
        fn set_position_for_test(&mut self, pos: u64) {
            self.inner.set_position(pos);
        }
    }
}
