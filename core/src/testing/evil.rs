//! The evil peer: a peer that holds the room tokens and speaks this crate's protocol (its own
//! handshake and sealed frames over real libp2p), but does what it likes with it — the attacks of
//! issue 9. Shared by the master's in-process tests (`core/src/master/tests.rs`,
//! `core/src/master/session/tests.rs`) and the evil-peer test binary that runs them against a
//! real master process (`cli/tests/evil_peer.rs`). Test code, not API: it may change at any time.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

use crate::assets::Sha256;
use crate::crypto::{RoomKey, TransferKey};
use crate::net::{self, Net, NetConfig};
use crate::protocol::{
    self, Direction, MAX_FRAME, SealedReader, SealedWriter, ToMaster, ToWorker, WireResult,
    WorkerHandshake,
};
use crate::{Error, Result};

/// How long [`EvilPeer::join`] keeps trying (a previous connection may still be closing, or the
/// master may not listen yet).
const JOIN_DEADLINE: Duration = Duration::from_secs(10);

/// How soon a flooding connection comes back after the master drops it.
pub const REDIAL: Duration = Duration::from_millis(200);

/// A peer with the room's tokens that misbehaves on purpose. One identity (peer id) across all
/// its sessions.
pub struct EvilPeer {
    pub(crate) net: Net,
    room: RoomKey,
    key: TransferKey,
    _events: mpsc::UnboundedReceiver<net::NetEvent>,
}

/// A job the master handed to the evil peer (its data is not opened).
#[derive(Debug, Clone)]
pub struct EvilJob {
    /// The job's id.
    pub id: String,
    /// The attempt the lease is for.
    pub attempt: u32,
}

/// One authenticated session of the evil peer. What the master sends arrives on an internal
/// queue read by [`EvilSession::take`] — unless the session was joined deaf, in which case
/// nothing is ever read and the master's frames pile up on its side.
pub struct EvilSession {
    master: PeerId,
    pub(crate) out: mpsc::UnboundedSender<ToMaster>,
    jobs: mpsc::UnboundedReceiver<EvilJob>,
    /// The master's answers to calls: (call, ok, value); closed when the master ends the stream.
    replies: mpsc::UnboundedReceiver<(u64, bool, String)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    key: TransferKey,
    _deaf: Option<ReadHalf<libp2p::Stream>>,
}

impl EvilPeer {
    /// A new evil peer with the room's `token` and `transfer` token, on its own libp2p node
    /// (no listening address, mDNS off).
    pub fn new(token: &str, transfer: &str) -> Result<EvilPeer> {
        let (net, events) = net::spawn(NetConfig::for_tests(Vec::new()))?;
        Ok(EvilPeer {
            net,
            room: RoomKey::from_token(token)?,
            key: TransferKey::from_token(transfer)?,
            _events: events,
        })
    }

    /// This peer's id, as the master names it in warnings.
    pub fn peer_id(&self) -> String {
        self.net.peer_id().to_string()
    }

    /// Joins the master at `master` (a multiaddr with `/p2p/`), announces `window` credits and
    /// reads every job it is sent.
    pub async fn join(&self, master: &str, window: u32) -> Result<EvilSession> {
        self.join_with(master, Some(window), true).await
    }

    /// Joins without announcing credits and without ever reading what the master sends.
    pub async fn join_deaf(&self, master: &str) -> Result<EvilSession> {
        self.join_with(master, None, false).await
    }

    async fn join_with(
        &self,
        master: &str,
        window: Option<u32>,
        read: bool,
    ) -> Result<EvilSession> {
        let (peer, stream) = self.connect_retrying(master).await?;
        let (reader, writer) = stream.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<ToMaster>();
        let (jobs_tx, jobs) = mpsc::unbounded_channel();
        let (replies_tx, replies) = mpsc::unbounded_channel();
        let mut writer = SealedWriter::new(self.key.clone(), Direction::ToMaster, writer);
        let mut tasks = vec![tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                if writer.send(&message).await.is_err() || writer.flush().await.is_err() {
                    return;
                }
            }
            writer.close().await;
        })];
        let deaf = if read {
            let mut reader = SealedReader::new(self.key.clone(), Direction::ToWorker, reader);
            tasks.push(tokio::spawn(async move {
                while let Ok(Some(message)) = reader.next::<ToWorker>().await {
                    match message {
                        ToWorker::Jobs { jobs, .. } => {
                            for job in jobs {
                                let _ = jobs_tx.send(EvilJob {
                                    id: job.id,
                                    attempt: job.attempt,
                                });
                            }
                        }
                        ToWorker::Reply { call, ok, value } => {
                            let _ = replies_tx.send((call, ok, value));
                        }
                        _ => {}
                    }
                }
            }));
            None
        } else {
            Some(reader)
        };
        if let Some(window) = window {
            let _ = out.send(ToMaster::Credits(window));
        }
        Ok(EvilSession {
            master: peer,
            out,
            jobs,
            replies,
            tasks,
            key: self.key.clone(),
            _deaf: deaf,
        })
    }

    /// [`Self::connect`], trying again for up to [`JOIN_DEADLINE`] (a previous connection may
    /// still be closing).
    async fn connect_retrying(&self, master: &str) -> Result<(PeerId, libp2p::Stream)> {
        let addr = net::parse_addr(master, "master")?;
        let deadline = tokio::time::Instant::now() + JOIN_DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.connect(addr.clone())).await {
                Ok(Ok(joined)) => return Ok(joined),
                Ok(Err(e)) if tokio::time::Instant::now() >= deadline => return Err(e),
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => {
                    return Err(Error::network(format!(
                        "the evil peer could not join {master} within {JOIN_DEADLINE:?}"
                    )));
                }
            }
        }
    }

    /// Dials, opens a job stream and completes the queuexec handshake.
    async fn connect(&self, addr: Multiaddr) -> Result<(PeerId, libp2p::Stream)> {
        let peer = self.net.dial(addr).await?;
        let mut stream = self
            .net
            .control()
            .open_stream(peer, protocol::JOB_PROTOCOL)
            .await
            .map_err(|e| Error::network(e.to_string()))?;
        WorkerHandshake {
            room: &self.room,
            key: &self.key,
            master: &peer.to_string(),
            worker: &self.net.peer_id().to_string(),
            name: "evil",
            concurrency: 1,
        }
        .run(&mut stream)
        .await?;
        Ok((peer, stream))
    }

    /// Ends the session and the connection.
    pub async fn leave(&self, session: EvilSession) {
        drop(session.out);
        for task in session.tasks {
            task.abort();
        }
        self.net.disconnect(session.master).await;
    }

    /// Authenticates, then writes a frame header claiming `len` bytes and streams junk up to
    /// `MAX_FRAME + 1 MiB`. Returns whether the master closed the stream within `limit` (what
    /// it must do: the cap is 8 MiB).
    pub async fn send_oversize_frame(
        &self,
        master: &str,
        len: u32,
        limit: Duration,
    ) -> Result<bool> {
        let (peer, stream) = self.connect_retrying(master).await?;
        let (mut reader, mut writer): (ReadHalf<_>, WriteHalf<_>) = stream.split();
        let attack = async {
            writer.write_all(&len.to_be_bytes()).await?;
            let junk = vec![0x5au8; 64 * 1024];
            for _ in 0..(MAX_FRAME / junk.len() + 16) {
                writer.write_all(&junk).await?;
            }
            writer.flush().await?;
            let mut buf = [0u8; 4096];
            // The master may first send its Jobs frames; it must end the stream.
            while reader.read(&mut buf).await? > 0 {}
            Ok::<_, std::io::Error>(())
        };
        // Ended in time, by end of stream or by a write or read error (reset): closed.
        let closed = tokio::time::timeout(limit, attack).await.is_ok();
        self.net.disconnect(peer).await;
        Ok(closed)
    }
}

impl EvilSession {
    /// Jobs received until none arrives for `quiet`.
    pub async fn take(&mut self, quiet: Duration) -> Vec<EvilJob> {
        let mut jobs = Vec::new();
        while let Ok(Some(job)) = tokio::time::timeout(quiet, self.jobs.recv()).await {
            jobs.push(job);
        }
        jobs
    }

    /// Sends heartbeats every `period` while the returned task runs.
    pub fn heartbeat(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let out = self.out.clone();
        tokio::spawn(async move {
            while out.send(ToMaster::Heartbeat).is_ok() {
                tokio::time::sleep(period).await;
            }
        })
    }

    /// Announces `n` more credits.
    pub fn credits(&self, n: u32) {
        let _ = self.out.send(ToMaster::Credits(n));
    }

    /// Sends a properly sealed result with `text` as its body for job `id`, attempt `attempt`
    /// (whether or not this session holds it).
    pub fn result(&self, id: &str, attempt: u32, ok: bool, text: &[u8]) {
        self.results(&[(id.to_string(), attempt)], ok, text);
    }

    /// One Results frame with the same `text` for every `(id, attempt)`.
    pub fn results(&self, jobs: &[(String, u32)], ok: bool, text: &[u8]) {
        let results = jobs
            .iter()
            .map(|(id, attempt)| WireResult {
                body: self.key.seal(&protocol::result_context(id, ok), text),
                id: id.clone(),
                attempt: *attempt,
                ok,
            })
            .collect();
        let _ = self.out.send(ToMaster::Results(results));
    }

    /// Asks `times` times for the file whose content is `content`.
    pub fn get_file(&self, content: &[u8], times: usize) {
        let sha256 = Sha256::of(content);
        for _ in 0..times {
            let _ = self.out.send(ToMaster::GetFile { sha256 });
        }
    }

    /// Sends call `call` (a lookup, a lookup write or a message) without waiting for its answer.
    pub fn call(&self, call: u64, request: crate::calls::WorkerRequest) {
        let _ = self.out.send(ToMaster::Call { call, request });
    }

    /// The master's answers to calls, `(call, ok, value)`, until `n` came, none came for
    /// `quiet`, or the master ended the session.
    pub async fn replies(&mut self, n: usize, quiet: Duration) -> Vec<(u64, bool, String)> {
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(quiet, self.replies.recv()).await {
                Ok(Some(reply)) => out.push(reply),
                _ => break,
            }
        }
        out
    }

    /// Whether the master ended this session within `limit` (what it must do to a peer that
    /// breaks a bound).
    pub async fn cut_off(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.replies.recv()).await {
                Ok(Some(_)) => continue,
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Asks `times` times for the manifest.
    pub fn get_manifest(&self, times: usize) {
        for _ in 0..times {
            let _ = self.out.send(ToMaster::GetManifest);
        }
    }
}

/// The TCP socket address in a multiaddr such as `/ip4/127.0.0.1/tcp/4001/p2p/…`.
pub fn tcp_socket(multiaddr: &str) -> Option<SocketAddr> {
    let addr: Multiaddr = multiaddr.parse().ok()?;
    let (mut ip, mut port) = (None, None);
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(a),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(SocketAddr::from((ip?, port?)))
}

/// Keeps one raw TCP connection from `source` to `master` open at a time: it never speaks, and
/// when the master closes it, it connects again after [`REDIAL`]. Runs until aborted.
pub async fn raw_tcp_flood(source: Ipv4Addr, master: SocketAddr) {
    loop {
        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
            return;
        };
        if socket.bind(SocketAddr::from((source, 0))).is_err() {
            return;
        }
        if let Ok(mut stream) = socket.connect(master).await {
            let mut buf = [0u8; 1024];
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        }
        tokio::time::sleep(REDIAL).await;
    }
}

/// A libp2p peer on `source` that completes the transport handshake, opens a job stream and
/// never answers the queuexec handshake; when the master drops it, it comes back after
/// [`REDIAL`]. `master` must be a QUIC address: a QUIC dial leaves from the listening socket,
/// so from `source`. Runs until aborted.
pub async fn stalled_handshake_flood(source: Ipv4Addr, master: String) {
    let Ok(master) = master.parse::<Multiaddr>() else {
        return;
    };
    let Ok(listen) = format!("/ip4/{source}/udp/0/quic-v1").parse() else {
        return;
    };
    let Ok((net, _events)) = net::spawn(NetConfig::for_tests(vec![listen])) else {
        return;
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    loop {
        let Ok(peer) = net.dial(master.clone()).await else {
            tokio::time::sleep(REDIAL).await;
            continue;
        };
        let mut control = net.control();
        if let Ok(mut stream) = control.open_stream(peer, protocol::JOB_PROTOCOL).await {
            let mut buf = [0u8; 1024];
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        }
        tokio::time::sleep(REDIAL).await;
    }
}
