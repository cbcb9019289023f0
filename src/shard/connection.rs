//! One client connection: read frames, dispatch them in order, answer in order.
//!
//! The reader half reads a frame, decodes it and dispatches it; dispatch finishes the part of a
//! request that must happen in arrival order (a produce is *sequenced*: its offsets are assigned)
//! and returns a future for the rest (a produce waits for its acks level, a fetch for data). The
//! future goes into a bounded queue; the writer half awaits the queued futures one by one and
//! sends their responses, so responses leave in request order while several requests are in
//! flight. A full queue stops the reader: that is the per-connection in-flight limit.
//!
//! Memory: before a frame's body is read, the reader takes its size from the shard's
//! `RequestBudget` (queued.max.request.bytes) and the permit travels with the request until its
//! response is written; the writer charges each response frame to the budget while writing it.
//! Responses are computed one at a time by the writer, so a client that does not read holds at
//! most one response plus the in-flight queue of requests; `close_when_idle`
//! (connections.max.idle.ms) closes it once it makes no progress.
//!
//! A frame that is too large, malformed, for an unknown API or an unsupported version (other
//! than ApiVersions, which gets its special answer) closes this connection; nothing else is
//! affected.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use futures_lite::io::WriteHalf;
use glommio::channels::local_channel;
use glommio::net::TcpStream;

use crate::api::{self, Pending};
use crate::io::deadline::within;
use crate::io::socket_reader::SocketReader;
use crate::protocol::api_versions::unsupported_version_frame;
use crate::protocol::frame::{FRAME_SIZE_PREFIX_BYTES, encode_response_frame, frame_size};
use crate::protocol::wire::Reader;
use crate::protocol::{ApiKey, CodecError, Request, RequestHeader};
use crate::raft::partition_network::{PREAMBLE, serve_peer};

use super::Shard;
use super::idle_watch::{ConnectionProgress, close_when_idle, shut_down};
use super::request_budget::BudgetPermit;

/// What the writer half sends next, in request order.
enum Outgoing {
    /// A dispatched request: its response (or none, for acks=0) once the future resolves.
    Response {
        correlation_id: i32,
        api_version: i16,
        pending: Pending,
    },
    /// An already encoded frame.
    Frame(Vec<Bytes>),
}

/// A request read and its share of the shard's request budget, held until it is answered.
struct Queued {
    outgoing: Outgoing,
    _permit: BudgetPermit,
}

/// Why the reader stops.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Codec(#[from] CodecError),
    #[error("unknown api key {0}")]
    UnknownApi(i16),
    #[error("{api:?} version {version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
}

/// Serves one connection until the client closes it, misbehaves or idles. A connection opened
/// by a peer broker's shard for partition replication (its first byte says so) goes to the
/// shard's partition groups instead.
pub async fn serve_connection(shard: Rc<Shard>, stream: TcpStream) {
    let idle_max = Duration::from_millis(shard.config.connections_max_idle_ms);
    let mut first = [0u8; 1];
    match within(idle_max, stream.peek(&mut first)).await {
        Some(Ok(1)) if first[0] == PREAMBLE[0] => {
            serve_peer(stream, Rc::clone(&shard.partition_groups)).await;
            return;
        }
        Some(Ok(1)) => {}
        // Closed, failed or silent before its first byte.
        _ => return,
    }
    let peer = stream.peer_addr().ok();
    // Responses are written whole; Nagle would only delay the last partial packet.
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let (read_half, write_half) = futures_lite::io::split(stream);
    let mut reader = SocketReader::new(fd, read_half);
    let progress = ConnectionProgress::new();
    let watch = glommio::spawn_local(close_when_idle(Rc::clone(&progress), fd, idle_max));
    let (queue, queued) =
        local_channel::new_bounded(shard.config.inflight_requests_per_connection_max);
    let writer = glommio::spawn_local(write_responses(
        Rc::clone(&shard),
        queued,
        write_half,
        Rc::clone(&progress),
        fd,
    ));
    loop {
        match read_request(&shard, &mut reader, &progress, peer).await {
            Ok(Some(request)) => {
                if queue.send(request).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(error) => {
                tracing::info!(shard = shard.id.0, ?peer, %error, "closing connection");
                break;
            }
        }
    }
    drop(queue);
    writer.await;
    // Stopped while the read half still keeps the descriptor open.
    drop(watch);
}

/// The writer half: awaits each queued request's response in order and writes it.
async fn write_responses(
    shard: Rc<Shard>,
    queued: local_channel::LocalReceiver<Queued>,
    mut write_half: WriteHalf<TcpStream>,
    progress: Rc<ConnectionProgress>,
    fd: RawFd,
) {
    while let Some(Queued { outgoing, _permit }) = queued.recv().await {
        let frame = match outgoing {
            Outgoing::Frame(frame) => frame,
            Outgoing::Response {
                correlation_id,
                api_version,
                pending,
            } => {
                let response = {
                    let _busy = progress.busy();
                    pending.await
                };
                match response {
                    None => continue,
                    Some(response) => {
                        match encode_response_frame(correlation_id, api_version, &response) {
                            Ok(frame) => frame,
                            Err(error) => {
                                tracing::error!(%error, "cannot encode a response; closing");
                                shut_down(fd);
                                return;
                            }
                        }
                    }
                }
            }
        };
        let frame_bytes = frame.iter().map(Bytes::len).sum();
        let _response_permit = shard.request_budget.charge(frame_bytes);
        for chunk in &frame {
            if write_half.write_all(chunk).await.is_err() {
                shut_down(fd);
                return;
            }
            progress.advanced();
        }
    }
    let _ = write_half.close().await;
}

/// Reads and dispatches one request; `None` when the client closed the connection.
async fn read_request(
    shard: &Rc<Shard>,
    reader: &mut SocketReader<impl futures_lite::AsyncRead + Unpin>,
    progress: &Rc<ConnectionProgress>,
    peer: Option<SocketAddr>,
) -> Result<Option<Queued>, ConnectionError> {
    let mut prefix = [0u8; FRAME_SIZE_PREFIX_BYTES];
    match reader.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let size = frame_size(prefix, shard.config.max_request_bytes)?;
    let permit = {
        let _busy = progress.busy();
        shard.request_budget.acquire(size).await
    };
    // One allocation per request: the frame becomes `Bytes` whose record slices may live on in
    // the partition cache after the request is answered. Never zeroed: the socket fills it.
    let frame = reader.read_vec(size).await?;
    progress.advanced();
    let mut reader = Reader::new(Bytes::from(frame));
    let header = RequestHeader::decode(&mut reader)?;
    let api = ApiKey::from_code(header.api_key)
        .filter(|api| api::is_advertised(*api))
        .ok_or(ConnectionError::UnknownApi(header.api_key))?;
    if !api.versions().contains(header.api_version) {
        if api == ApiKey::ApiVersions {
            return Ok(Some(Queued {
                outgoing: Outgoing::Frame(unsupported_version_frame(header.correlation_id)?),
                _permit: permit,
            }));
        }
        return Err(ConnectionError::UnsupportedVersion {
            api,
            version: header.api_version,
        });
    }
    let request = Request::decode(api, header.api_version, reader.rest().clone())?;
    let client_address = peer.map(|peer| peer.ip());
    let pending = api::dispatch(shard, &header, request, client_address).await;
    Ok(Some(Queued {
        outgoing: Outgoing::Response {
            correlation_id: header.correlation_id,
            api_version: header.api_version,
            pending,
        },
        _permit: permit,
    }))
}
