//! The network of replicated partitions: every Raft group of a shard reaches a peer shard over
//! one TCP connection, however many groups the two share.
//!
//! A connection is opened to the peer shard's Kafka port and starts with [`PREAMBLE`], which no
//! Kafka frame can start with (its first byte would make the frame's size negative), so the
//! shard's listener hands it to [`serve_peer`] instead of the Kafka codec. Then both ways carry
//! frames: a u32 big-endian length (of what follows), a kind byte, a u64 request id, the group
//! (topic id, partition) and a bincode body, in which a batch's bytes travel as they are. A
//! response carries its request's id and kind with [`KIND_RESPONSE`] set, and a
//! `Result<response, error text>` body.
//!
//! Requests of different groups do not wait for each other: the server answers each in a task of
//! its own (at most [`SERVER_REQUESTS_INFLIGHT_MAX`] per connection) and the client matches
//! responses to requests by id, so one group's slow fsync does not stall another's heartbeat. A
//! client gives up a request after openraft's hard TTL without touching the connection (other
//! groups use it); a failed connection fails every request waiting on it, and the next request
//! dials again (a failed dial is `Unreachable`, so openraft backs off). A hostile or broken
//! frame closes that connection only.
//!
//! Groups send no heartbeats of their own: a shard sends each peer shard one [`Heartbeat`] per
//! interval naming every group it leads there (src/shard/replica_liveness.rs), so an idle
//! partition costs a few bytes, not a Raft round trip. A follower that heard its group named
//! recently refuses pre-votes ([`PRE_VOTE_REFUSED_WITHIN`]), which keeps the live leader of an
//! idle group in place as openraft's lease does for a busy one.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::{BasicNode, Raft, RaftNetworkV2, ServerState};
use openraft_rt::WatchReceiver as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::io::connect::connect;
use crate::io::deadline::within;
use crate::log::signal::Signal;
use crate::raft::network::read_length_prefixed;

use super::partition_state_machine::PartitionStateMachine;
use super::partition_store::PartitionRaft;

/// First bytes of a replication connection. A Kafka request starts with its size, a positive
/// i32, so its first byte is below 0x80.
pub const PREAMBLE: [u8; 4] = [0xFF, b'S', b'R', b'1'];

/// Largest frame either side reads (length field included). An AppendEntries carries at most
/// openraft's `max_payload_entries` batches; a longer frame is hostile or a bug and closes the
/// connection. Memory grows only as a frame's bytes arrive.
pub const FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Requests a server connection answers at once; the connection reads no further frame until
/// one is answered.
pub const SERVER_REQUESTS_INFLIGHT_MAX: u64 = 1024;

/// A server connection with no frame for this long is closed: shards heartbeat far more often.
pub const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A follower that heard no heartbeat naming its group for this long counts the group's leader
/// as gone, and campaigns.
pub const LEADER_QUIET: Duration = Duration::from_millis(500);

/// A follower refuses pre-votes while it heard its leader within this long: a heartbeat interval
/// less than [`LEADER_QUIET`], so two followers that heard the last heartbeat a few milliseconds
/// apart agree the leader is gone.
const PRE_VOTE_REFUSED_WITHIN: Duration = Duration::from_millis(400);

/// Frames the client's writer joins into one socket write, in bytes, when several are queued.
const WRITE_COALESCE_BYTES: usize = 256 * 1024;

/// Bytes before the body: length, kind, request id, topic id, partition.
const HEADER_BYTES: usize = 4 + 1 + 8 + 16 + 4;

const KIND_APPEND: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_PRE_VOTE: u8 = 3;
const KIND_TRANSFER_LEADER: u8 = 4;
const KIND_HEARTBEAT: u8 = 5;
const KIND_SNAPSHOT: u8 = 6;
/// Set on the kind of a response to the request of the same kind.
const KIND_RESPONSE: u8 = 0x80;

/// A replicated partition's Raft node on its shard.
pub type PartitionRaftNode = Raft<PartitionRaft, PartitionStateMachine>;

/// Names a partition's Raft group on the wire: the topic's id and the partition's index (a
/// topic deleted and re-created under its name gets a new id, so its groups are new groups).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct GroupKey {
    /// The topic id (Kafka's UUID).
    pub topic_id: [u8; 16],
    /// The partition index.
    pub partition: u32,
}

/// Groups a heartbeat may name beyond those this shard runs: a peer's new groups open before
/// this shard's do while a topic is created.
const HEARTBEAT_SPARE_ENTRIES: usize = 65_536;
/// The most bytes one (group, term) entry takes in a heartbeat body, and the body's own header.
const HEARTBEAT_ENTRY_BYTES_MAX: usize = 64;

/// One shard's heartbeat to a peer shard: the groups it leads that have a replica there, each
/// with the term it leads in.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    /// (group, term) of each group led.
    pub led: Vec<(GroupKey, u64)>,
}

/// When a group's leader was last named in a heartbeat, and in which term.
#[derive(Debug, Clone, Copy)]
pub struct Heard {
    /// When the heartbeat arrived.
    pub at: Instant,
    /// The term its sender leads in.
    pub term: u64,
}

/// The partition groups a shard runs, by group, for its server to answer from.
#[derive(Default)]
pub struct PartitionGroups {
    groups: RefCell<HashMap<GroupKey, PartitionRaftNode>>,
    heard: RefCell<HashMap<GroupKey, Heard>>,
}

impl PartitionGroups {
    /// No groups yet.
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Starts answering for `key` from `raft`.
    pub fn insert(&self, key: GroupKey, raft: PartitionRaftNode) {
        self.groups.borrow_mut().insert(key, raft);
    }

    /// Stops answering for `key`; returns its node.
    pub fn remove(&self, key: &GroupKey) -> Option<PartitionRaftNode> {
        self.heard.borrow_mut().remove(key);
        self.groups.borrow_mut().remove(key)
    }

    /// The last heartbeat that named `key`'s leader in the group's current term or a later one.
    pub fn heard(&self, key: &GroupKey) -> Option<Heard> {
        let heard = self.heard.borrow().get(key).copied()?;
        let raft = self.get(key)?;
        let term = raft.metrics().borrow_watched().current_term;
        (heard.term >= term).then_some(heard)
    }

    /// Whether `key`'s leader was named in a heartbeat within [`PRE_VOTE_REFUSED_WITHIN`].
    fn leader_alive(&self, key: &GroupKey) -> bool {
        self.heard(key)
            .is_some_and(|heard| heard.at.elapsed() < PRE_VOTE_REFUSED_WITHIN)
    }

    /// Records a peer's heartbeat. A group this shard still leads in an older term learns of
    /// the newer one from its followers' answers to a heartbeat of its own, and steps down.
    fn note_heartbeat(&self, heartbeat: &Heartbeat) {
        let now = Instant::now();
        for &(key, term) in &heartbeat.led {
            let Some(raft) = self.get(&key) else {
                continue;
            };
            {
                let mut heard = self.heard.borrow_mut();
                let entry = heard.entry(key).or_insert(Heard { at: now, term });
                if term >= entry.term {
                    *entry = Heard { at: now, term };
                }
            }
            let stale_leader = {
                let metrics = raft.metrics();
                let metrics = metrics.borrow_watched();
                metrics.state == ServerState::Leader && metrics.current_term < term
            };
            if stale_leader {
                glommio::spawn_local(async move {
                    let _ = raft.trigger().heartbeat().await;
                })
                .detach();
            }
        }
    }

    /// The node of `key`, if this shard runs it.
    pub fn get(&self, key: &GroupKey) -> Option<PartitionRaftNode> {
        self.groups.borrow().get(key).cloned()
    }

    /// How many groups this shard runs.
    pub fn len(&self) -> usize {
        self.groups.borrow().len()
    }

    /// Whether this shard runs no group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One decoded frame.
struct Frame {
    kind: u8,
    id: u64,
    key: GroupKey,
    body: Vec<u8>,
}

/// The body encoding: bincode with fixed-width integers, bounded by the frame size (a length
/// field inside a hostile body cannot make the decoder reserve more than a frame).
fn codec() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(FRAME_BYTES_MAX as u64)
}

fn encode_body<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    bincode::Options::serialize(codec(), value).map_err(invalid)
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> io::Result<T> {
    bincode::Options::deserialize(codec(), body).map_err(invalid)
}

fn invalid(message: impl Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

fn encode_frame(kind: u8, id: u64, key: &GroupKey, body: &[u8]) -> io::Result<Vec<u8>> {
    let total = HEADER_BYTES + body.len();
    if total > FRAME_BYTES_MAX {
        return Err(invalid(format_args!(
            "replication frame of {total} bytes exceeds {FRAME_BYTES_MAX}"
        )));
    }
    let mut frame = Vec::with_capacity(total);
    frame.extend_from_slice(&((total - 4) as u32).to_be_bytes());
    frame.push(kind);
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(&key.topic_id);
    frame.extend_from_slice(&key.partition.to_be_bytes());
    frame.extend_from_slice(body);
    Ok(frame)
}

async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<Frame> {
    let mut rest = read_length_prefixed(stream, HEADER_BYTES - 4, FRAME_BYTES_MAX).await?;
    let kind = rest[0];
    let id = u64::from_be_bytes(rest[1..9].try_into().expect("length checked above"));
    let topic_id = rest[9..25].try_into().expect("length checked above");
    let partition = u32::from_be_bytes(rest[25..29].try_into().expect("length checked above"));
    rest.drain(..HEADER_BYTES - 4);
    Ok(Frame {
        kind,
        id,
        key: GroupKey {
            topic_id,
            partition,
        },
        body: rest,
    })
}

/// Frames waiting for a connection's writer; closing it ends the writer once it is drained.
#[derive(Default)]
struct FrameQueue {
    frames: RefCell<VecDeque<Vec<u8>>>,
    closed: Cell<bool>,
    changed: Rc<Signal>,
}

impl FrameQueue {
    fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Queues a frame; false once the queue is closed.
    fn push(&self, frame: Vec<u8>) -> bool {
        if self.closed.get() {
            return false;
        }
        self.frames.borrow_mut().push_back(frame);
        self.changed.notify();
        true
    }

    fn close(&self) {
        self.closed.set(true);
        self.changed.notify();
    }

    fn is_closed(&self) -> bool {
        self.closed.get()
    }
}

fn shut_down(fd: RawFd) {
    // SAFETY: `fd` is a socket its owner keeps open; shutdown(2) neither closes nor frees it.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Serves one replication connection, whose first bytes are [`PREAMBLE`], until the peer closes
/// it, idles or misbehaves. Answers each request from the group it names in `groups`; a request
/// for a group this shard does not run gets an error answer (the group may not be started yet).
pub async fn serve_peer(stream: TcpStream, groups: Rc<PartitionGroups>) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let (mut read_half, write_half) = futures_lite::io::split(stream);
    let mut preamble = [0u8; PREAMBLE.len()];
    match within(SERVER_IDLE_TIMEOUT, read_half.read_exact(&mut preamble)).await {
        Some(Ok(())) if preamble == PREAMBLE => {}
        _ => return,
    }
    let responses = FrameQueue::new();
    let writer = glommio::spawn_local(write_frames(Rc::clone(&responses), write_half, fd));
    let inflight = Rc::new(Semaphore::new(SERVER_REQUESTS_INFLIGHT_MAX));
    loop {
        let Ok(permit) = inflight.acquire_static_permit(1).await else {
            break;
        };
        let frame = match within(SERVER_IDLE_TIMEOUT, read_frame(&mut read_half)).await {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                if error.kind() != io::ErrorKind::UnexpectedEof {
                    tracing::warn!(%error, "replication connection closed");
                }
                break;
            }
            None => {
                tracing::debug!("idle replication connection closed");
                break;
            }
        };
        let groups = Rc::clone(&groups);
        let responses = Rc::clone(&responses);
        glommio::spawn_local(async move {
            let _permit = permit;
            let answered = answer(&groups, &frame).await;
            let response = answered.and_then(|body| {
                encode_frame(frame.kind | KIND_RESPONSE, frame.id, &frame.key, &body)
            });
            match response {
                Ok(response) => {
                    responses.push(response);
                }
                Err(error) => {
                    tracing::warn!(%error, kind = frame.kind, "replication request refused, connection closed");
                    shut_down(fd);
                }
            }
        })
        .detach();
    }
    responses.close();
    shut_down(fd);
    writer.await;
}

/// Decodes a request, runs it on its group and encodes `Result<response, error text>`; an
/// undecodable request or unknown kind is an error (the connection is closed), a Raft error or
/// an unknown group is an answer.
async fn answer(groups: &PartitionGroups, frame: &Frame) -> io::Result<Vec<u8>> {
    fn encode<T: Serialize, E: Display>(result: Result<T, E>) -> io::Result<Vec<u8>> {
        encode_body(&result.map_err(|error| error.to_string()))
    }
    enum Decoded {
        Append(AppendEntriesRequest<PartitionRaft>),
        Vote(VoteRequest<PartitionRaft>),
        PreVote(VoteRequest<PartitionRaft>),
        TransferLeader(TransferLeaderRequest<PartitionRaft>),
        Snapshot(SnapshotRequest),
    }
    // Decoded before the group is looked up, so a malformed frame closes the connection
    // whichever group it names.
    let request = match frame.kind {
        KIND_HEARTBEAT => {
            // A peer names only groups with a replica here (or about to have one, while a topic
            // is being created), so a heartbeat far larger is hostile: refused before decoding,
            // it cannot hold the shard for the seconds ten million entries would take.
            let entries_max = groups.groups.borrow().len() + HEARTBEAT_SPARE_ENTRIES;
            if frame.body.len() > entries_max.saturating_mul(HEARTBEAT_ENTRY_BYTES_MAX) {
                return Err(invalid(format_args!(
                    "a heartbeat of {} bytes names more groups than this shard runs",
                    frame.body.len()
                )));
            }
            let heartbeat: Heartbeat = decode_body(&frame.body)?;
            groups.note_heartbeat(&heartbeat);
            return encode::<(), String>(Ok(()));
        }
        KIND_APPEND => Decoded::Append(decode_body(&frame.body)?),
        KIND_VOTE => Decoded::Vote(decode_body(&frame.body)?),
        KIND_PRE_VOTE => Decoded::PreVote(decode_body(&frame.body)?),
        KIND_TRANSFER_LEADER => Decoded::TransferLeader(decode_body(&frame.body)?),
        KIND_SNAPSHOT => {
            let request: SnapshotRequest = decode_body(&frame.body)?;
            // An install that fails stops the group: a snapshot it cannot take is refused here.
            if let Err(error) = PartitionStateMachine::check_snapshot(&request.meta, &request.data)
            {
                return encode::<SnapshotResponse<PartitionRaft>, _>(Err(error));
            }
            Decoded::Snapshot(request)
        }
        other => {
            return Err(invalid(format_args!(
                "unknown replication request kind {other}"
            )));
        }
    };
    let Some(raft) = groups.get(&frame.key) else {
        return encode::<(), _>(Err(format_args!(
            "partition {} of topic {:02x?} has no replica here",
            frame.key.partition, frame.key.topic_id
        )));
    };
    match request {
        Decoded::Append(request) => encode(raft.append_entries(request).await),
        Decoded::Vote(request) => encode(raft.vote(request).await),
        // Raft's check against disruptive candidates, for groups too idle for openraft's lease:
        // a follower that hears its leader does not help another replica replace it.
        Decoded::PreVote(_) if groups.leader_alive(&frame.key) => {
            encode::<VoteResponse<PartitionRaft>, _>(Err("the group's leader is alive"))
        }
        Decoded::PreVote(request) => encode(raft.pre_vote(request).await),
        Decoded::TransferLeader(request) => encode(raft.handle_transfer_leader(request).await),
        Decoded::Snapshot(request) => encode(
            raft.install_full_snapshot(
                request.vote,
                SnapshotOf::<PartitionRaft, Vec<u8>> {
                    meta: request.meta,
                    snapshot: request.data,
                },
            )
            .await,
        ),
    }
}

/// A leader's snapshot for a replica behind its log start: small (where the log goes on and
/// the membership there, `PartitionStateMachine`), so it travels in one frame.
#[derive(Serialize, Deserialize)]
struct SnapshotRequest {
    vote: VoteOf<PartitionRaft>,
    meta: SnapshotMetaOf<PartitionRaft>,
    data: Vec<u8>,
}

/// Writes queued frames in order, joining those already queued into one write, until the queue
/// is closed and drained or a write fails (which shuts the socket down, ending its reader too).
async fn write_frames(queue: Rc<FrameQueue>, mut write_half: WriteHalf<TcpStream>, fd: RawFd) {
    loop {
        let listener = queue.changed.listen();
        let joined = {
            let mut frames = queue.frames.borrow_mut();
            let mut joined = frames.pop_front();
            if let Some(joined) = joined.as_mut() {
                while joined.len() < WRITE_COALESCE_BYTES {
                    match frames.pop_front() {
                        Some(frame) => joined.extend_from_slice(&frame),
                        None => break,
                    }
                }
            }
            joined
        };
        let Some(joined) = joined else {
            if queue.is_closed() {
                break;
            }
            listener.await;
            continue;
        };
        let written = async {
            write_half.write_all(&joined).await?;
            write_half.flush().await
        };
        if written.await.is_err() {
            queue.close();
            shut_down(fd);
            return;
        }
    }
    let _ = write_half.close().await;
}

/// Why one request failed, before openraft's error types.
enum CallError {
    /// No connection could be made: openraft backs off.
    Unreachable(io::Error),
    /// The connection failed, or the peer answered an error or nonsense.
    Network(io::Error),
    /// No answer within the RPC's hard TTL.
    Timeout(Duration),
}

/// A shard's connections to its peer shards, one per address, shared by all its groups.
pub struct PeerLinks {
    links: RefCell<HashMap<String, Rc<PeerLink>>>,
    /// The local address every link dials from (`None`: the kernel's choice).
    source: Option<IpAddr>,
}

impl PeerLinks {
    /// No connections yet; each is dialled on its first request, from `source` when given.
    pub fn new(source: Option<IpAddr>) -> Rc<Self> {
        Rc::new(Self {
            links: RefCell::default(),
            source,
        })
    }

    fn link(&self, addr: &str) -> Rc<PeerLink> {
        let mut links = self.links.borrow_mut();
        if let Some(link) = links.get(addr) {
            return Rc::clone(link);
        }
        let link = Rc::new(PeerLink {
            addr: addr.to_owned(),
            source: self.source,
            connection: RefCell::new(None),
            dialing: Semaphore::new(1),
            next_id: Cell::new(0),
            heartbeat_inflight: Cell::new(false),
            answered_at: Cell::new(None),
        });
        links.insert(addr.to_owned(), Rc::clone(&link));
        link
    }

    /// Sends `heartbeat` to the shard at `addr` and waits for its answer, within `limit`. A
    /// heartbeat still unanswered from an earlier interval is not joined by another.
    pub async fn heartbeat(&self, addr: &str, heartbeat: &Heartbeat, limit: Duration) {
        let link = self.link(addr);
        if link.heartbeat_inflight.replace(true) {
            return;
        }
        let answered = match encode_body(heartbeat) {
            Ok(body) => link
                .exchange(KIND_HEARTBEAT, &GroupKey::default(), &body, limit)
                .await
                .ok()
                .filter(|frame| frame.kind == KIND_HEARTBEAT | KIND_RESPONSE),
            Err(_) => None,
        };
        if answered.is_some() {
            link.answered_at.set(Some(Instant::now()));
        }
        link.heartbeat_inflight.set(false);
    }

    /// Whether the shard at `addr` answered a heartbeat within `within`.
    pub fn answered_within(&self, addr: &str, within: Duration) -> bool {
        self.links
            .borrow()
            .get(addr)
            .and_then(|link| link.answered_at.get())
            .is_some_and(|at| at.elapsed() <= within)
    }

    /// Connections open now (for tests and metrics).
    pub fn open_connections(&self) -> usize {
        self.links
            .borrow()
            .values()
            .filter(|link| link.live().is_some())
            .count()
    }
}

/// The connection to one peer shard, dialled on demand, replaced when it fails.
struct PeerLink {
    addr: String,
    /// The local address this link dials from.
    source: Option<IpAddr>,
    connection: RefCell<Option<Rc<Connection>>>,
    /// One dial at a time: requests arriving meanwhile wait and share its connection.
    dialing: Semaphore,
    next_id: Cell<u64>,
    /// A heartbeat is on its way and not answered yet.
    heartbeat_inflight: Cell<bool>,
    /// When the peer last answered a heartbeat.
    answered_at: Cell<Option<Instant>>,
}

/// One open connection: the writer's queue and the requests waiting for an answer.
struct Connection {
    /// Closed when the connection fails, which ends the writer.
    outgoing: Rc<FrameQueue>,
    waiting: RefCell<HashMap<u64, LocalSender<Frame>>>,
}

impl Connection {
    fn is_live(&self) -> bool {
        !self.outgoing.is_closed()
    }

    /// Fails every waiting request and stops the writer.
    fn fail(&self) {
        self.outgoing.close();
        self.waiting.borrow_mut().clear();
    }
}

impl PeerLink {
    fn live(&self) -> Option<Rc<Connection>> {
        self.connection
            .borrow()
            .as_ref()
            .filter(|connection| connection.is_live())
            .cloned()
    }

    async fn connection(&self, limit: Duration) -> io::Result<Rc<Connection>> {
        if let Some(connection) = self.live() {
            return Ok(connection);
        }
        let _dial = self
            .dialing
            .acquire_permit(1)
            .await
            .map_err(|error| io::Error::other(error.to_string()))?;
        if let Some(connection) = self.live() {
            return Ok(connection);
        }
        let stream = within(limit, connect(&self.addr, self.source))
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream
            .set_nodelay(true)
            .map_err(|error| io::Error::other(error.to_string()))?;
        let fd = stream.as_raw_fd();
        let (read_half, write_half) = futures_lite::io::split(stream);
        let outgoing = FrameQueue::new();
        outgoing.push(PREAMBLE.to_vec());
        let connection = Rc::new(Connection {
            outgoing: Rc::clone(&outgoing),
            waiting: RefCell::new(HashMap::new()),
        });
        glommio::spawn_local(write_frames(outgoing, write_half, fd)).detach();
        glommio::spawn_local(read_responses(Rc::clone(&connection), read_half, fd)).detach();
        *self.connection.borrow_mut() = Some(Rc::clone(&connection));
        Ok(connection)
    }

    /// Sends one request and waits for its answer's frame, within `limit`.
    async fn exchange(
        &self,
        kind: u8,
        key: &GroupKey,
        body: &[u8],
        limit: Duration,
    ) -> Result<Frame, CallError> {
        let connection = self
            .connection(limit)
            .await
            .map_err(CallError::Unreachable)?;
        let id = self.next_id.get().wrapping_add(1);
        self.next_id.set(id);
        let frame = encode_frame(kind, id, key, body).map_err(CallError::Network)?;
        let (answer, answered) = local_channel::new_bounded(1);
        connection.waiting.borrow_mut().insert(id, answer);
        if !connection.outgoing.push(frame) {
            connection.waiting.borrow_mut().remove(&id);
            return Err(CallError::Network(io::Error::other("connection lost")));
        }
        match within(limit, answered.recv()).await {
            Some(Some(frame)) => Ok(frame),
            Some(None) => Err(CallError::Network(io::Error::other("connection lost"))),
            None => {
                connection.waiting.borrow_mut().remove(&id);
                Err(CallError::Timeout(limit))
            }
        }
    }
}

/// Hands each response to the request waiting for it; on a broken or hostile stream fails the
/// connection. A response nobody waits for (its request timed out) is dropped.
async fn read_responses(connection: Rc<Connection>, mut read_half: ReadHalf<TcpStream>, fd: RawFd) {
    loop {
        let frame = match read_frame(&mut read_half).await {
            Ok(frame) if frame.kind & KIND_RESPONSE != 0 => frame,
            Ok(frame) => {
                tracing::warn!(
                    kind = frame.kind,
                    "replication peer sent a request as a response"
                );
                break;
            }
            Err(error) => {
                if error.kind() != io::ErrorKind::UnexpectedEof {
                    tracing::debug!(%error, "replication connection lost");
                }
                break;
            }
        };
        let waiter = connection.waiting.borrow_mut().remove(&frame.id);
        if let Some(waiter) = waiter {
            let _ = waiter.try_send(frame);
        }
    }
    connection.fail();
    shut_down(fd);
}

/// Finds where a group's member is: the address of the shard holding its replica on that
/// broker (from the cluster metadata), or `None` while it is unknown.
pub type ResolveMember = Rc<dyn Fn(u64) -> Option<String>>;

/// Makes one group's clients (openraft's `RaftNetworkFactory`), over the shard's `PeerLinks`.
pub struct GroupNetwork {
    key: GroupKey,
    local_id: u64,
    links: Rc<PeerLinks>,
    resolve: ResolveMember,
}

impl GroupNetwork {
    /// Clients of group `key` sent by member `local_id`.
    pub fn new(key: GroupKey, local_id: u64, links: Rc<PeerLinks>, resolve: ResolveMember) -> Self {
        Self {
            key,
            local_id,
            links,
            resolve,
        }
    }
}

impl RaftNetworkFactory<PartitionRaft> for GroupNetwork {
    type Network = GroupPeer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> GroupPeer {
        GroupPeer {
            key: self.key,
            local_id: self.local_id,
            target,
            membership_addr: node.addr.clone(),
            links: Rc::clone(&self.links),
            resolve: Rc::clone(&self.resolve),
        }
    }
}

/// One group's client of one member.
pub struct GroupPeer {
    key: GroupKey,
    local_id: u64,
    target: u64,
    /// The member's address in the membership, used when the resolver knows none.
    membership_addr: String,
    links: Rc<PeerLinks>,
    resolve: ResolveMember,
}

impl GroupPeer {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        kind: u8,
        request: &Req,
        option: &RPCOption,
        action: RPCTypes,
    ) -> Result<Resp, RPCError<PartitionRaft>> {
        let limit = option.hard_ttl();
        let result = async {
            let addr = (self.resolve)(self.target)
                .or_else(|| {
                    (!self.membership_addr.is_empty()).then(|| self.membership_addr.clone())
                })
                .ok_or_else(|| {
                    CallError::Unreachable(io::Error::other(format!(
                        "no address for member {}",
                        self.target
                    )))
                })?;
            let body = encode_body(request).map_err(CallError::Network)?;
            let frame = self
                .links
                .link(&addr)
                .exchange(kind, &self.key, &body, limit)
                .await?;
            if frame.kind != kind | KIND_RESPONSE || frame.key != self.key {
                return Err(CallError::Network(invalid(format_args!(
                    "replication response kind {} to request kind {kind}",
                    frame.kind
                ))));
            }
            let result: Result<Resp, String> =
                decode_body(&frame.body).map_err(CallError::Network)?;
            result.map_err(|remote| CallError::Network(io::Error::other(remote)))
        }
        .await;
        result.map_err(|error| match error {
            CallError::Unreachable(error) => RPCError::Unreachable(Unreachable::new(&error)),
            CallError::Network(error) => RPCError::Network(NetworkError::new(&error)),
            CallError::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.local_id,
                target: self.target,
                timeout,
            }),
        })
    }
}

impl RaftNetworkV2<PartitionRaft> for GroupPeer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<PartitionRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        self.call(KIND_APPEND, &rpc, &option, RPCTypes::AppendEntries)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<PartitionRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        self.call(KIND_VOTE, &rpc, &option, RPCTypes::Vote).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<PartitionRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        self.call(KIND_PRE_VOTE, &rpc, &option, RPCTypes::Vote)
            .await
    }

    async fn transfer_leader(
        &mut self,
        rpc: TransferLeaderRequest<PartitionRaft>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        self.call(
            KIND_TRANSFER_LEADER,
            &rpc,
            &option,
            RPCTypes::TransferLeader,
        )
        .await
    }

    /// A replica behind the leader's log start gets the leader's snapshot: where the log goes
    /// on, which it empties its log to start at (Kafka's reset), then catches up by entries.
    async fn full_snapshot(
        &mut self,
        vote: VoteOf<PartitionRaft>,
        snapshot: SnapshotOf<PartitionRaft, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<PartitionRaft>, StreamingError<PartitionRaft>> {
        let request = SnapshotRequest {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        Ok(self
            .call(KIND_SNAPSHOT, &request, &option, RPCTypes::InstallSnapshot)
            .await?)
    }
}
