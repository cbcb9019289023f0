//! One client connection: read frames, dispatch them in order, answer in order.
//!
//! The reader half reads a frame, decodes it and dispatches it; dispatch finishes the part of a
//! request that must happen in arrival order (a produce is *sequenced*: its offsets are assigned)
//! and returns a future for the rest (a produce waits for its acks level, a fetch for data). The
//! future goes into a bounded queue; the writer half awaits the queued futures one by one and
//! sends their responses, so responses leave in request order while several requests are in
//! flight. A full queue stops the reader: that is the per-connection in-flight limit.
//!
//! A frame that is too large, malformed, for an unknown API or an unsupported version (other
//! than ApiVersions, which gets its special answer) closes this connection; nothing else is
//! affected.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;

use crate::api::{self, Pending};
use crate::io::socket_reader::SocketReader;
use crate::protocol::api_versions::unsupported_version_frame;
use crate::protocol::frame::{FRAME_SIZE_PREFIX_BYTES, encode_response_frame, frame_size};
use crate::protocol::wire::Reader;
use crate::protocol::{ApiKey, CodecError, Request, RequestHeader};

use super::Shard;

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

/// Serves one connection until the client closes it or misbehaves.
pub async fn serve_connection(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    // Responses are written whole; Nagle would only delay the last partial packet.
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let (read_half, mut write_half) = futures_lite::io::split(stream);
    let mut reader = SocketReader::new(fd, read_half);
    let (queue, queued) =
        local_channel::new_bounded(shard.config.inflight_requests_per_connection_max);
    let writer = glommio::spawn_local(async move {
        while let Some(outgoing) = queued.recv().await {
            let frame = match outgoing {
                Outgoing::Frame(frame) => frame,
                Outgoing::Response {
                    correlation_id,
                    api_version,
                    pending,
                } => match pending.await {
                    None => continue,
                    Some(response) => {
                        match encode_response_frame(correlation_id, api_version, &response) {
                            Ok(frame) => frame,
                            Err(error) => {
                                tracing::error!(%error, "cannot encode a response; closing");
                                return;
                            }
                        }
                    }
                },
            };
            for chunk in &frame {
                if write_half.write_all(chunk).await.is_err() {
                    return;
                }
            }
        }
        let _ = write_half.close().await;
    });
    loop {
        match read_request(&shard, &mut reader, peer).await {
            Ok(Some(outgoing)) => {
                if queue.send(outgoing).await.is_err() {
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
}

/// Reads and dispatches one request; `None` when the client closed the connection.
async fn read_request(
    shard: &Rc<Shard>,
    reader: &mut SocketReader<impl futures_lite::AsyncRead + Unpin>,
    peer: Option<SocketAddr>,
) -> Result<Option<Outgoing>, ConnectionError> {
    let mut prefix = [0u8; FRAME_SIZE_PREFIX_BYTES];
    match reader.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let size = frame_size(prefix, shard.config.max_request_bytes)?;
    // One allocation per request: the frame becomes `Bytes` whose record slices may live on in
    // the partition cache after the request is answered. Never zeroed: the socket fills it.
    let frame = reader.read_vec(size).await?;
    let mut reader = Reader::new(Bytes::from(frame));
    let header = RequestHeader::decode(&mut reader)?;
    let api = ApiKey::from_code(header.api_key)
        .filter(|api| api::is_advertised(*api))
        .ok_or(ConnectionError::UnknownApi(header.api_key))?;
    if !api.versions().contains(header.api_version) {
        if api == ApiKey::ApiVersions {
            return Ok(Some(Outgoing::Frame(unsupported_version_frame(
                header.correlation_id,
            )?)));
        }
        return Err(ConnectionError::UnsupportedVersion {
            api,
            version: header.api_version,
        });
    }
    let request = Request::decode(api, header.api_version, reader.rest().clone())?;
    let client_address = peer.map(|peer| peer.ip());
    let pending = api::dispatch(shard, &header, request, client_address).await;
    Ok(Some(Outgoing::Response {
        correlation_id: header.correlation_id,
        api_version: header.api_version,
        pending,
    }))
}
