//! One connection to one broker: pipelined requests, responses matched by correlation id.
//!
//! Guarantees:
//! - any number of `call`s may be in flight at once; each frame is written whole (writes are
//!   serialised by a one-permit semaphore), so frames never interleave on the socket;
//! - a reader task reads response frames and completes the waiter registered under the frame's
//!   correlation id; a response nobody waits for (its caller timed out) is dropped;
//! - versions are negotiated once, at connect, with ApiVersions: each API is sent at
//!   min(codec max, broker max), and an API with no common version is `UnsupportedApi`;
//! - once the socket fails or the peer closes it, the connection is closed for good: every waiter
//!   gets `Closed`, every later call fails fast, and `is_closed` says so (the cluster then opens
//!   a new one). Dropping the last `Rc<Connection>` cancels its reader and closes the socket.
//!
//! Callers must not: share a `Connection` across executors (it is `!Send` by design), or cancel
//! a `call` future while it writes (the frame may be half written; the connection then closes).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::io::{BufReader, ReadHalf, WriteHalf};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::task::JoinHandle;

use crate::protocol::decode_message;
use crate::protocol::frame::{FRAME_SIZE_PREFIX_BYTES, encode_request_frame, frame_size};
use crate::protocol::messages::api_versions::{ApiVersionsRequest, ApiVersionsResponse};
use crate::protocol::wire::Reader;
use crate::protocol::{ApiKey, ErrorCode, Request, RequestHeader, Response, ResponseHeader};

use super::error::ClientError;

/// The client id sent in every request header; brokers log it and use it for quotas.
pub const CLIENT_ID: &str = "spate";
/// Largest response frame accepted. Fetch responses are bounded by the request's `max_bytes`
/// (50 MiB by default) but a broker may exceed it by one batch (KIP-74); 512 MiB leaves room for
/// that and still refuses a garbage size prefix before allocating it.
pub const RESPONSE_BYTES_MAX: usize = 512 << 20;
/// How long a connect may take before it fails with `TimedOut`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `call` waits for a response unless `set_request_timeout` changes it. A Fetch waits at
/// most its `max_wait_ms` on the broker, so this only fires on a stuck broker or network.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Read buffer: one syscall brings in many small responses (produce acks) at once; frames larger
/// than this are read straight into their own allocation.
const READ_BUFFER_BYTES: usize = 64 << 10;
/// Frame chunks smaller than this are copied into one write buffer so a request with many small
/// pieces costs one send, while large record batches are written from their own memory.
const WRITE_COALESCE_BYTES_MAX: usize = 16 << 10;
/// ApiVersions version tried first; a broker that lacks it answers with its range (KIP-511).
const API_VERSIONS_VERSION_FIRST: i16 = 3;

/// Who waits for a response: the caller of `call`, which decodes the frame itself.
struct Waiter {
    sender: LocalSender<Bytes>,
}

/// State shared by the connection and its reader task.
struct Shared {
    waiters: RefCell<HashMap<i32, Waiter>>,
    closed: Cell<bool>,
}

impl Shared {
    /// Marks the connection closed and fails every waiter (their receivers see the channel end).
    fn close(&self) {
        self.closed.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        drop(waiters);
    }
}

/// One broker connection: pipelined requests, responses matched by correlation id (a reader task
/// completes waiters; writes are serialised). Versions negotiated at connect with ApiVersions:
/// each request is sent at min(codec max, broker max); an API the broker lacks →
/// `ClientError::UnsupportedApi`.
pub struct Connection {
    address: String,
    shared: Rc<Shared>,
    writer: RefCell<Option<WriteHalf<TcpStream>>>,
    write_permit: Semaphore,
    correlation_id_next: Cell<i32>,
    versions: RefCell<HashMap<ApiKey, i16>>,
    request_timeout: Cell<Duration>,
    reader: Option<JoinHandle<()>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The reader task owns the read half; cancelling it releases the socket.
        if let Some(reader) = self.reader.take() {
            reader.cancel();
        }
        self.shared.close();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.address)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Connects to `address` ("host:port") and negotiates API versions.
    pub async fn connect(address: &str) -> Result<Rc<Connection>, ClientError> {
        let socket_address = resolve(address)?;
        let stream = TcpStream::connect_timeout(socket_address, CONNECT_TIMEOUT)
            .await
            .map_err(std::io::Error::from)?;
        // Requests are written whole; Nagle would only delay the last partial packet.
        stream.set_nodelay(true).map_err(std::io::Error::from)?;
        let (read_half, write_half) = futures_lite::io::split(stream);
        let shared = Rc::new(Shared {
            waiters: RefCell::new(HashMap::new()),
            closed: Cell::new(false),
        });
        let reader = glommio::spawn_local(read_responses(read_half, shared.clone())).detach();
        let mut connection = Connection {
            address: address.to_string(),
            shared,
            writer: RefCell::new(Some(write_half)),
            write_permit: Semaphore::new(1),
            correlation_id_next: Cell::new(0),
            versions: RefCell::new(HashMap::new()),
            request_timeout: Cell::new(REQUEST_TIMEOUT_DEFAULT),
            reader: None,
        };
        connection.reader = Some(reader);
        connection.negotiate_versions().await?;
        Ok(Rc::new(connection))
    }

    /// The address this connection was opened to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the socket has failed or been closed; a closed connection never reopens.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.get()
    }

    /// The version `api` is sent at, or `None` if the broker and the codec share none.
    pub fn version(&self, api: ApiKey) -> Option<i16> {
        self.versions.borrow().get(&api).copied()
    }

    /// Changes how long `call` waits for a response.
    pub fn set_request_timeout(&self, timeout: Duration) {
        self.request_timeout.set(timeout);
    }

    /// Sends `request` at the negotiated version and waits for its response.
    pub async fn call(&self, request: Request) -> Result<Response, ClientError> {
        let api = request.api_key();
        let version = self.version(api).ok_or(ClientError::UnsupportedApi(api))?;
        self.call_at(request, version).await
    }

    /// Sends `request` expecting no response (a Produce with acks=0); returns once it is written.
    pub async fn send_without_response(&self, request: Request) -> Result<(), ClientError> {
        let api = request.api_key();
        let version = self.version(api).ok_or(ClientError::UnsupportedApi(api))?;
        let (frame, _) = self.encode(&request, version)?;
        self.write_frame(&frame).await
    }

    async fn call_at(&self, request: Request, version: i16) -> Result<Response, ClientError> {
        let api = request.api_key();
        let (frame, correlation_id) = self.encode(&request, version)?;
        drop(request);
        let (sender, receiver) = local_channel::new_bounded(1);
        self.shared
            .waiters
            .borrow_mut()
            .insert(correlation_id, Waiter { sender });
        if let Err(error) = self.write_frame(&frame).await {
            self.shared.waiters.borrow_mut().remove(&correlation_id);
            return Err(error);
        }
        drop(frame);
        let timeout = self.request_timeout.get();
        let received = glommio::timer::timeout(timeout, async { Ok(receiver.recv().await) }).await;
        let frame = match received {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(ClientError::Closed),
            Err(_) => {
                self.shared.waiters.borrow_mut().remove(&correlation_id);
                return Err(ClientError::Timeout);
            }
        };
        decode_response(api, version, frame)
    }

    fn encode(&self, request: &Request, version: i16) -> Result<(Vec<Bytes>, i32), ClientError> {
        if self.is_closed() {
            return Err(ClientError::Closed);
        }
        let correlation_id = self.correlation_id_next.get();
        self.correlation_id_next.set(correlation_id.wrapping_add(1));
        let header = RequestHeader {
            api_key: request.api_key().code(),
            api_version: version,
            correlation_id,
            client_id: Some(CLIENT_ID.to_string()),
        };
        Ok((encode_request_frame(&header, request)?, correlation_id))
    }

    /// Writes one frame whole. The permit serialises writers; the write half is taken out of
    /// its cell for the duration so no `RefCell` borrow is held across an await.
    async fn write_frame(&self, frame: &[Bytes]) -> Result<(), ClientError> {
        let _permit = self
            .write_permit
            .acquire_permit(1)
            .await
            .map_err(|_| ClientError::Closed)?;
        if self.is_closed() {
            return Err(ClientError::Closed);
        }
        let Some(mut writer) = self.writer.borrow_mut().take() else {
            // A previous write was cancelled halfway: the stream is unusable.
            self.shared.close();
            return Err(ClientError::Closed);
        };
        match write_chunks(&mut writer, frame).await {
            Ok(()) => {
                *self.writer.borrow_mut() = Some(writer);
                Ok(())
            }
            Err(error) => {
                self.shared.close();
                Err(error.into())
            }
        }
    }

    /// ApiVersions at v3, falling back to the version the broker names when it lacks v3.
    async fn negotiate_versions(&mut self) -> Result<(), ClientError> {
        let request = |version: i16| {
            let mut request = ApiVersionsRequest::default();
            if version >= 3 {
                request.client_software_name = CLIENT_ID.to_string();
                request.client_software_version = env!("CARGO_PKG_VERSION").to_string();
            }
            Request::ApiVersions(request)
        };
        let mut version = API_VERSIONS_VERSION_FIRST;
        let response = loop {
            match self.call_at(request(version), version).await {
                Ok(Response::ApiVersions(response))
                    if response.error_code != ErrorCode::UnsupportedVersion.code() =>
                {
                    break response;
                }
                Ok(Response::ApiVersions(response)) if version > 0 => {
                    version = broker_api_versions_max(&response)
                        .unwrap_or(0)
                        .min(version - 1);
                }
                Ok(_) => return Err(ClientError::UnexpectedResponse("ApiVersions")),
                // A broker without v3 may answer in a v0 body, which does not decode as v3.
                Err(ClientError::Codec(_)) if version > 0 => version = 0,
                Err(error) => return Err(error),
            }
        };
        if let Some(error) = ClientError::from_code(response.error_code, || "ApiVersions".into()) {
            return Err(error);
        }
        *self.versions.borrow_mut() = negotiated_versions(&response);
        Ok(())
    }
}

/// The highest ApiVersions version the broker advertises in an error answer.
fn broker_api_versions_max(response: &ApiVersionsResponse) -> Option<i16> {
    response
        .api_keys
        .iter()
        .find(|entry| entry.api_key == ApiKey::ApiVersions.code())
        .map(|entry| entry.max_version)
}

/// For each API both sides know: min(codec max, broker max), if that is within both ranges.
fn negotiated_versions(response: &ApiVersionsResponse) -> HashMap<ApiKey, i16> {
    response
        .api_keys
        .iter()
        .filter_map(|entry| {
            let api = ApiKey::from_code(entry.api_key)?;
            let codec = api.versions();
            let version = codec.max.min(entry.max_version);
            (version >= codec.min && version >= entry.min_version).then_some((api, version))
        })
        .collect()
}

fn resolve(address: &str) -> Result<SocketAddr, ClientError> {
    address.to_socket_addrs()?.next().ok_or_else(|| {
        ClientError::InvalidArgument(format!("address {address:?} resolves to nothing"))
    })
}

/// Decodes a response frame (after the size prefix) for a request of `api` at `version`.
fn decode_response(api: ApiKey, version: i16, frame: Bytes) -> Result<Response, ClientError> {
    let mut reader = Reader::new(frame);
    ResponseHeader::decode(&mut reader, api.response_header_version(version))?;
    let body = reader.rest().clone();
    if api == ApiKey::ApiVersions {
        // Both v0 and v3 bodies start with the error code; an UNSUPPORTED_VERSION answer is a
        // v0 body whatever version was asked (KIP-511).
        if body.get(..2) == Some(&ErrorCode::UnsupportedVersion.code().to_be_bytes()[..]) {
            let response: ApiVersionsResponse = decode_message(body, 0)?;
            return Ok(Response::ApiVersions(response));
        }
    }
    Ok(Response::decode(api, version, body)?)
}

/// Writes a frame's chunks, coalescing small ones so a request costs few sends.
async fn write_chunks(writer: &mut WriteHalf<TcpStream>, frame: &[Bytes]) -> std::io::Result<()> {
    let total: usize = frame.iter().map(Bytes::len).sum();
    if frame.len() == 1 || total <= WRITE_COALESCE_BYTES_MAX {
        if let [one] = frame {
            return writer.write_all(one).await;
        }
        return writer.write_all(&frame.concat()).await;
    }
    let mut pending = BytesMut::new();
    for chunk in frame {
        if chunk.len() < WRITE_COALESCE_BYTES_MAX {
            pending.extend_from_slice(chunk);
            continue;
        }
        if !pending.is_empty() {
            writer.write_all(&pending).await?;
            pending.clear();
        }
        writer.write_all(chunk).await?;
    }
    if !pending.is_empty() {
        writer.write_all(&pending).await?;
    }
    Ok(())
}

/// The reader task: reads frames until the socket fails, handing each to its waiter.
async fn read_responses(read_half: ReadHalf<TcpStream>, shared: Rc<Shared>) {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, read_half);
    loop {
        let frame = match read_frame(&mut reader).await {
            Ok(frame) => frame,
            Err(error) => {
                tracing::debug!(%error, "client connection closed");
                break;
            }
        };
        let Some(correlation_id) = frame
            .get(..4)
            .map(|id| i32::from_be_bytes([id[0], id[1], id[2], id[3]]))
        else {
            tracing::warn!("response frame shorter than its header; closing");
            break;
        };
        let waiter = shared.waiters.borrow_mut().remove(&correlation_id);
        if let Some(waiter) = waiter {
            // The receiver is gone only if the caller stopped waiting; nothing to do then.
            let _ = waiter.sender.try_send(frame);
        }
    }
    shared.close();
}

async fn read_frame(reader: &mut BufReader<ReadHalf<TcpStream>>) -> Result<Bytes, ClientError> {
    let mut prefix = [0u8; FRAME_SIZE_PREFIX_BYTES];
    reader.read_exact(&mut prefix).await?;
    let size = frame_size(prefix, RESPONSE_BYTES_MAX)?;
    // One allocation per response: fetched batches are handed out as slices of it.
    let mut frame = vec![0u8; size];
    reader.read_exact(&mut frame).await?;
    Ok(Bytes::from(frame))
}
