//! The Raft network: openraft's RPCs over TCP between glommio executors.
//!
//! A frame is a u32 big-endian length (of what follows), a kind byte, a u64 big-endian request
//! id and a serde_json body. A client (`RaftPeer`) keeps one connection to its target and sends
//! one request at a time on it (openraft takes it `&mut`); a response whose id is not the
//! request's, a frame over `FRAME_BYTES_MAX`, an unknown kind or a timeout drops the
//! connection, and the next request dials again. The server (`serve_raft`) answers each
//! connection's requests in order from the local `openraft::Raft`; a hostile frame closes that
//! connection only.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::RaftStateMachine;
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::{BasicNode, Raft, RaftNetworkV2, RaftTypeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::io::connect::connect;
use crate::io::deadline::within;

/// Largest frame either side reads (length field included): a longer one is hostile or a bug,
/// and the connection is closed before anything is allocated for it. Bounds a snapshot's size.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How much of a frame is read (and allocated) at a time.
const READ_STEP_BYTES: usize = 64 * 1024;

/// Connections the server keeps at once; more are closed at accept. Voters and brokers need a
/// few each, so this only bounds what a flood of strangers can hold.
pub const SERVER_CONNECTIONS_MAX: usize = 1024;

/// A server connection with no request for this long is closed: peers send Raft heartbeats
/// and broker fetches far more often, so only an abandoned or hostile connection is idle.
pub const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes before the body: length, kind, request id.
const HEADER_BYTES: usize = 4 + 1 + 8;

const KIND_APPEND: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_PRE_VOTE: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;
/// A request for the service beside Raft on the same port (the cluster controller's).
pub(crate) const KIND_SERVICE: u8 = 16;
/// Set on the kind of a response to the request of the same kind.
pub(crate) const KIND_RESPONSE: u8 = 0x80;

/// One decoded frame.
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) id: u64,
    pub(crate) body: Vec<u8>,
}

/// What answers `KIND_SERVICE` requests beside Raft: the body in, the response body out; an
/// error closes the connection.
pub trait RaftSideService {
    /// Answers one request.
    fn answer(&self, body: Vec<u8>) -> Pin<Box<dyn Future<Output = io::Result<Vec<u8>>> + '_>>;
}

fn invalid(message: impl Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

pub(crate) async fn write_frame(
    stream: &mut TcpStream,
    kind: u8,
    id: u64,
    body: &[u8],
) -> io::Result<()> {
    let total = HEADER_BYTES + body.len();
    if total > FRAME_BYTES_MAX {
        return Err(invalid(format_args!(
            "raft frame of {total} bytes exceeds {FRAME_BYTES_MAX}"
        )));
    }
    let mut frame = Vec::with_capacity(total);
    frame.extend_from_slice(&((total - 4) as u32).to_be_bytes());
    frame.push(kind);
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(body);
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// Reads a u32 big-endian length and the `length` bytes after it, refusing a length below
/// `header_bytes` (what follows the length field) or a frame (length field included) over
/// `frames_max`. The buffer grows as bytes arrive, so a peer that claims a large frame and sends
/// nothing holds no more memory than it sent.
pub(crate) async fn read_length_prefixed(
    stream: &mut (impl futures_lite::AsyncRead + Unpin),
    header_bytes: usize,
    frames_max: usize,
) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await?;
    let length = u32::from_be_bytes(length) as usize;
    if length < header_bytes || length + 4 > frames_max {
        return Err(invalid(format_args!(
            "frame length {length} outside {header_bytes}..={}",
            frames_max - 4
        )));
    }
    let mut rest = Vec::with_capacity(length.min(READ_STEP_BYTES));
    while rest.len() < length {
        let filled = rest.len();
        rest.resize(filled + (length - filled).min(READ_STEP_BYTES), 0);
        stream.read_exact(&mut rest[filled..]).await?;
    }
    Ok(rest)
}

pub(crate) async fn read_frame(stream: &mut TcpStream) -> io::Result<Frame> {
    let mut rest = read_length_prefixed(stream, HEADER_BYTES - 4, FRAME_BYTES_MAX).await?;
    let kind = rest[0];
    let id = u64::from_be_bytes(rest[1..9].try_into().expect("9 bytes checked above"));
    rest.drain(..9);
    Ok(Frame {
        kind,
        id,
        body: rest,
    })
}

/// Makes a `RaftPeer` per target; `local_id` is the node sending (openraft's `Timeout` names it).
pub struct RaftNetwork<C: RaftTypeConfig> {
    local_id: C::NodeId,
    /// Where to dial each node, overriding the address in the membership: each broker reaches
    /// the voters at the addresses of its own `--controller-quorum-voters`.
    addresses: std::collections::BTreeMap<C::NodeId, String>,
    /// The local address connections leave from (`None`: the kernel's choice).
    source: Option<IpAddr>,
}

impl<C: RaftTypeConfig> RaftNetwork<C> {
    /// A factory for node `local_id`'s clients, dialling the membership's addresses.
    pub fn new(local_id: C::NodeId) -> Self {
        Self {
            local_id,
            addresses: std::collections::BTreeMap::new(),
            source: None,
        }
    }

    /// A factory dialling the nodes in `addresses` there, whatever the membership says.
    pub fn with_addresses(
        local_id: C::NodeId,
        addresses: std::collections::BTreeMap<C::NodeId, String>,
    ) -> Self {
        Self {
            local_id,
            addresses,
            source: None,
        }
    }

    /// The same factory, its connections leaving from `source`.
    pub fn dialling_from(self, source: Option<IpAddr>) -> Self {
        Self { source, ..self }
    }
}

impl<C> RaftNetworkFactory<C> for RaftNetwork<C>
where
    C: RaftTypeConfig<Node = BasicNode>,
{
    type Network = RaftPeer<C>;

    async fn new_client(&mut self, target: C::NodeId, node: &BasicNode) -> RaftPeer<C> {
        let addr = self
            .addresses
            .get(&target)
            .cloned()
            .unwrap_or_else(|| node.addr.clone());
        RaftPeer {
            local_id: self.local_id.clone(),
            target,
            addr,
            source: self.source,
            stream: None,
            next_id: 0,
            _config: PhantomData,
        }
    }
}

/// Why one RPC failed, before openraft's error types.
enum CallError {
    /// No connection could be made: openraft backs off.
    Unreachable(io::Error),
    /// The connection failed mid-request or the peer answered nonsense: retry at once.
    Network(io::Error),
    /// No answer within the RPC's hard TTL.
    Timeout(Duration),
}

/// One target's client: one connection, dialled on demand and dropped on any failure.
pub struct RaftPeer<C: RaftTypeConfig> {
    local_id: C::NodeId,
    target: C::NodeId,
    addr: String,
    source: Option<IpAddr>,
    stream: Option<TcpStream>,
    next_id: u64,
    _config: PhantomData<C>,
}

impl<C: RaftTypeConfig> RaftPeer<C> {
    /// Sends one request and decodes its response, within `option`'s hard TTL.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        kind: u8,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, CallError> {
        let limit = option.hard_ttl();
        let body =
            serde_json::to_vec(request).map_err(|error| CallError::Network(invalid(error)))?;
        match within(limit, self.exchange(kind, &body)).await {
            Some(Ok(response)) => Ok(response),
            Some(Err(error)) => {
                self.stream = None;
                Err(error)
            }
            None => {
                self.stream = None;
                Err(CallError::Timeout(limit))
            }
        }
    }

    async fn exchange<Resp: DeserializeOwned>(
        &mut self,
        kind: u8,
        body: &[u8],
    ) -> Result<Resp, CallError> {
        if self.stream.is_none() {
            let stream = connect(&self.addr, self.source)
                .await
                .map_err(CallError::Unreachable)?;
            stream
                .set_nodelay(true)
                .map_err(|error| CallError::Unreachable(io::Error::other(error.to_string())))?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        write_frame(stream, kind, id, body)
            .await
            .map_err(CallError::Network)?;
        let frame = read_frame(stream).await.map_err(CallError::Network)?;
        if frame.kind != kind | KIND_RESPONSE || frame.id != id {
            return Err(CallError::Network(invalid(format_args!(
                "raft response kind {} id {} to request kind {kind} id {id}",
                frame.kind, frame.id
            ))));
        }
        let result: Result<Resp, String> = serde_json::from_slice(&frame.body)
            .map_err(|error| CallError::Network(invalid(error)))?;
        result.map_err(|remote| CallError::Network(io::Error::other(remote)))
    }

    fn rpc_error(&self, error: CallError, action: RPCTypes) -> RPCError<C> {
        match error {
            CallError::Unreachable(error) => RPCError::Unreachable(Unreachable::new(&error)),
            CallError::Network(error) => RPCError::Network(NetworkError::new(&error)),
            CallError::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.local_id.clone(),
                target: self.target.clone(),
                timeout,
            }),
        }
    }
}

impl<C> RaftNetworkV2<C> for RaftPeer<C>
where
    C: RaftTypeConfig<Node = BasicNode>,
{
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        self.call(KIND_APPEND, &rpc, &option)
            .await
            .map_err(|error| self.rpc_error(error, RPCTypes::AppendEntries))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call(KIND_VOTE, &rpc, &option)
            .await
            .map_err(|error| self.rpc_error(error, RPCTypes::Vote))
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call(KIND_PRE_VOTE, &rpc, &option)
            .await
            .map_err(|error| self.rpc_error(error, RPCTypes::Vote))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Vec<u8>>,
        cancel: impl Future<Output = ReplicationClosed> + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let request = (vote, snapshot.meta, snapshot.snapshot);
        let sent = futures_lite::future::or(
            async { Ok(self.call(KIND_SNAPSHOT, &request, &option).await) },
            async { Err(cancel.await) },
        )
        .await;
        match sent {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(self.rpc_error(error, RPCTypes::InstallSnapshot).into()),
            Err(closed) => {
                // The request may be half written: the connection cannot be reused.
                self.stream = None;
                Err(StreamingError::Closed(closed))
            }
        }
    }
}

/// Accepts Raft connections on `listener` and answers them from `raft` until the returned
/// future is dropped; each connection runs in its own task on the current executor.
pub async fn serve_raft<C, SM>(listener: TcpListener, raft: Raft<C, SM>)
where
    C: RaftTypeConfig,
    SM: RaftStateMachine<C, SnapshotData = Vec<u8>>,
{
    serve_raft_with(listener, raft, None).await
}

/// As `serve_raft`, with `service` answering the `KIND_SERVICE` requests.
pub async fn serve_raft_with<C, SM>(
    listener: TcpListener,
    raft: Raft<C, SM>,
    service: Option<Rc<dyn RaftSideService>>,
) where
    C: RaftTypeConfig,
    SM: RaftStateMachine<C, SnapshotData = Vec<u8>>,
{
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok(stream) if open.get() >= SERVER_CONNECTIONS_MAX => {
                tracing::warn!(
                    limit = SERVER_CONNECTIONS_MAX,
                    "raft connection refused: too many open"
                );
                drop(stream);
            }
            Ok(stream) => {
                let raft = raft.clone();
                let service = service.clone();
                let open = Rc::clone(&open);
                open.set(open.get() + 1);
                glommio::spawn_local(async move {
                    serve_connection(stream, raft, service).await;
                    open.set(open.get() - 1);
                })
                .detach();
            }
            Err(error) => {
                tracing::warn!(%error, "raft listener accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_connection<C, SM>(
    mut stream: TcpStream,
    raft: Raft<C, SM>,
    service: Option<Rc<dyn RaftSideService>>,
) where
    C: RaftTypeConfig,
    SM: RaftStateMachine<C, SnapshotData = Vec<u8>>,
{
    let _ = stream.set_nodelay(true);
    loop {
        let mut frame = match within(SERVER_IDLE_TIMEOUT, read_frame(&mut stream)).await {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                if error.kind() != io::ErrorKind::UnexpectedEof {
                    tracing::warn!(%error, "raft connection closed");
                }
                return;
            }
            None => {
                tracing::debug!("idle raft connection closed");
                return;
            }
        };
        let answered = match (&service, frame.kind) {
            (Some(service), KIND_SERVICE) => service.answer(std::mem::take(&mut frame.body)).await,
            _ => answer(&raft, &frame).await,
        };
        let body = match answered {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, kind = frame.kind, "raft request refused, connection closed");
                return;
            }
        };
        if let Err(error) =
            write_frame(&mut stream, frame.kind | KIND_RESPONSE, frame.id, &body).await
        {
            tracing::warn!(%error, "raft response not sent");
            return;
        }
    }
}

/// Decodes a request, runs it on `raft` and encodes `Result<response, error text>`; an
/// undecodable request is an error (the connection is closed), a Raft error is an answer.
async fn answer<C, SM>(raft: &Raft<C, SM>, frame: &Frame) -> io::Result<Vec<u8>>
where
    C: RaftTypeConfig,
    SM: RaftStateMachine<C, SnapshotData = Vec<u8>>,
{
    fn encode<T: Serialize, E: Display>(result: Result<T, E>) -> io::Result<Vec<u8>> {
        serde_json::to_vec(&result.map_err(|error| error.to_string())).map_err(invalid)
    }
    match frame.kind {
        KIND_APPEND => {
            let request: AppendEntriesRequest<C> =
                serde_json::from_slice(&frame.body).map_err(invalid)?;
            encode(raft.append_entries(request).await)
        }
        KIND_VOTE => {
            let request: VoteRequest<C> = serde_json::from_slice(&frame.body).map_err(invalid)?;
            encode(raft.vote(request).await)
        }
        KIND_PRE_VOTE => {
            let request: VoteRequest<C> = serde_json::from_slice(&frame.body).map_err(invalid)?;
            encode(raft.pre_vote(request).await)
        }
        KIND_SNAPSHOT => {
            let (vote, meta, data): (VoteOf<C>, SnapshotMetaOf<C>, Vec<u8>) =
                serde_json::from_slice(&frame.body).map_err(invalid)?;
            let snapshot = SnapshotOf::<C, Vec<u8>> {
                meta,
                snapshot: data,
            };
            encode(raft.install_full_snapshot(vote, snapshot).await)
        }
        other => Err(invalid(format_args!("unknown raft request kind {other}"))),
    }
}
