//! What brokers ask the controller, and the client that asks it.
//!
//! The requests travel on the voters' Raft port as `KIND_SERVICE` frames of the Raft network
//! (src/raft/network.rs), their bodies JSON. Only the leader answers them; any other voter
//! answers `NotLeader` with the leader it knows, and the client tries that one next.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use glommio::net::TcpStream;
use serde::{Deserialize, Serialize};

use crate::io::connect::connect;
use crate::io::deadline::within;
use crate::meta::controller::{AdminRequest, TopicError};
use crate::meta::{BrokerInfo, ClusterState, MetadataChange};
use crate::raft::network::{KIND_RESPONSE, KIND_SERVICE, read_frame, write_frame};

/// A broker's request to the controller.
#[derive(Debug, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// Register (at start, or after being fenced): the controller records the broker alive
    /// with a new epoch.
    Register(BrokerInfo),
    /// Heartbeat and fetch: the changes after `applied`, waiting up to `wait_ms` for one.
    Fetch {
        /// The broker.
        broker: u32,
        /// Its epoch from `Registered`.
        epoch: u64,
        /// The last log index it applied.
        applied: u64,
        /// How long the controller may hold the request for new changes.
        wait_ms: u64,
    },
    /// A topic change from a client of the broker.
    Admin(AdminRequest),
}

/// The controller's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum ControllerResponse {
    /// This voter is not the leader; `leader` is the one it knows, if any.
    NotLeader {
        /// The leader's broker id.
        leader: Option<u32>,
    },
    /// Registered: the broker's new epoch, and the cluster it joined.
    Registered {
        /// The cluster id.
        cluster_id: String,
        /// The broker's epoch, for its fetches.
        epoch: u64,
    },
    /// The broker is unknown, fenced or of an older epoch: it must register again.
    Reregister,
    /// The changes after the broker's applied index, in order; `applied` is the controller's.
    Changes {
        /// The leader's broker id.
        leader: u32,
        /// The controller's last applied index.
        applied: u64,
        /// Each change with its log index.
        changes: Vec<(u64, MetadataChange)>,
    },
    /// The broker is behind what the controller keeps: the whole state as of `applied`.
    State {
        /// The leader's broker id.
        leader: u32,
        /// The index the state is as of.
        applied: u64,
        /// The whole metadata.
        state: Box<ClusterState>,
    },
    /// One result per admin item, and the index after the last committed change.
    Admin {
        /// The results, in request order.
        results: Vec<Result<(), TopicError>>,
        /// Applied up to here once the changes were committed.
        applied: u64,
    },
}

/// One connection to one voter, dialled on demand and dropped on any failure.
pub struct ControllerClient {
    addr: String,
    /// The local address the connection leaves from.
    source: Option<IpAddr>,
    stream: Option<TcpStream>,
    next_id: u64,
}

impl ControllerClient {
    /// A client of the voter at `addr`, dialling from `source` when given.
    pub fn new(addr: String, source: Option<IpAddr>) -> Self {
        Self {
            addr,
            source,
            stream: None,
            next_id: 0,
        }
    }

    /// Sends `request` and waits at most `limit` for the answer.
    pub async fn call(
        &mut self,
        request: &ControllerRequest,
        limit: Duration,
    ) -> io::Result<ControllerResponse> {
        let body = serde_json::to_vec(request).map_err(io::Error::other)?;
        match within(limit, self.exchange(&body)).await {
            Some(Ok(response)) => Ok(response),
            Some(Err(error)) => {
                self.stream = None;
                Err(error)
            }
            None => {
                self.stream = None;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no answer from the controller at {} in {limit:?}",
                        self.addr
                    ),
                ))
            }
        }
    }

    async fn exchange(&mut self, body: &[u8]) -> io::Result<ControllerResponse> {
        if self.stream.is_none() {
            let stream = connect(&self.addr, self.source)
                .await
                .map_err(|error| io::Error::other(format!("{}: {error}", self.addr)))?;
            stream
                .set_nodelay(true)
                .map_err(|error| io::Error::other(error.to_string()))?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        write_frame(stream, KIND_SERVICE, id, body).await?;
        let frame = read_frame(stream).await?;
        if frame.kind != KIND_SERVICE | KIND_RESPONSE || frame.id != id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "controller response kind {} id {} to request id {id}",
                    frame.kind, frame.id
                ),
            ));
        }
        serde_json::from_slice(&frame.body).map_err(io::Error::other)
    }
}
