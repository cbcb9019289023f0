//! The channel mesh: how shards talk. One bounded glommio shared channel per ordered pair of
//! shards, built once on the main thread and connected by each shard at start.
//!
//! Only control-plane traffic crosses cores (topic changes, metadata broadcasts, partitions gone
//! offline): partition data never does, because clients send each partition's requests to the
//! shard that owns it. A call is a request with an id and a reply carrying the same id. The
//! receive loops run in a `Latency::Matters` task queue: glommio's shared channels have no
//! cross-thread waker, and a receiver in an ordinary queue is only noticed on the next poll of
//! the reactor (~100 ms).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalSender};
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::{Latency, Shares};

use crate::meta::controller::{AdminRequest, TopicError};
use crate::meta::{MetadataChange, ShardId};

use super::offline::OfflinePartition;

/// Messages waiting in one direction between two shards. Senders wait when it is full; the
/// receiving loop drains it continuously, handing each request to its own task.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// How often a connecting shard polls for its peers' connects.
const MESH_CONNECT_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// How soon a shard must notice a message from another shard.
const MESH_LATENCY: Duration = Duration::from_millis(1);

/// A request to another shard.
#[derive(Debug)]
pub enum MeshRequest {
    /// To shard 0: make this topic change (through the controller).
    Admin(AdminRequest),
    /// From the controller: apply this durable change (open or delete owned partitions);
    /// `fresh` as in `control::apply_change`.
    Apply {
        /// The change.
        change: MetadataChange,
        /// Made now, rather than recovered from a whole state.
        fresh: bool,
    },
    /// From shard 0 of a cluster broker: the controller leader's broker id changed.
    ControllerLeader(Option<u32>),
    /// From a partition's owner: these partitions of its own went offline.
    PartitionsOffline(Vec<OfflinePartition>),
}

/// The answer to a [`MeshRequest`].
#[derive(Debug)]
pub enum MeshReply {
    /// One result per topic, in request order.
    Topics(Vec<Result<(), TopicError>>),
    /// The change was applied, or why not.
    Applied(Result<(), String>),
}

/// What travels on a channel.
#[derive(Debug)]
pub enum MeshMessage {
    /// A call from `from`.
    Request {
        /// The calling shard.
        from: ShardId,
        /// Matches the reply to the call.
        request_id: u64,
        /// What is asked.
        body: MeshRequest,
    },
    /// The reply to call `request_id`.
    Reply {
        /// The call answered.
        request_id: u64,
        /// The answer.
        body: MeshReply,
    },
}

/// The unconnected channel ends for one shard, built on the main thread.
pub struct MeshEnds {
    senders: Vec<Option<SharedSender<MeshMessage>>>,
    receivers: Vec<Option<SharedReceiver<MeshMessage>>>,
}

/// Builds every shard's channel ends: `ends[i].senders[j]` sends from shard i to shard j.
pub fn build_mesh(shard_count: usize) -> Vec<MeshEnds> {
    let mut ends: Vec<MeshEnds> = (0..shard_count)
        .map(|_| MeshEnds {
            senders: (0..shard_count).map(|_| None).collect(),
            receivers: (0..shard_count).map(|_| None).collect(),
        })
        .collect();
    for from in 0..shard_count {
        for to in 0..shard_count {
            if from != to {
                let (sender, receiver) = shared_channel::new_bounded(MESH_CHANNEL_CAPACITY);
                ends[from].senders[to] = Some(sender);
                ends[to].receivers[from] = Some(receiver);
            }
        }
    }
    ends
}

/// Failures of a mesh call.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The peer's channel is closed (it is shutting down).
    #[error("shard {0:?} is not reachable")]
    Unreachable(ShardId),
}

/// One shard's connected view of the mesh.
pub struct Mesh {
    me: ShardId,
    senders: Vec<Option<ConnectedSender<MeshMessage>>>,
    pending: RefCell<HashMap<u64, LocalSender<MeshReply>>>,
    next_request_id: Cell<u64>,
}

impl Mesh {
    /// Connects this shard's ends, and starts one receive loop per peer that hands requests to
    /// `serve` and replies to waiting callers.
    pub async fn connect<F, Fut>(me: ShardId, ends: MeshEnds, serve: F) -> Rc<Mesh>
    where
        F: Fn(ShardId, MeshRequest) -> Fut + Clone + 'static,
        Fut: std::future::Future<Output = MeshReply> + 'static,
    {
        // A connect completes only when the other end connects too, so every end is connected
        // concurrently: connecting them one by one would deadlock two shards waiting on each other.
        let sender_tasks: Vec<_> = ends
            .senders
            .into_iter()
            .map(|sender| {
                glommio::spawn_local(async move {
                    match sender {
                        Some(sender) => Some(sender.connect().await),
                        None => None,
                    }
                })
            })
            .collect();
        let receiver_tasks: Vec<_> = ends
            .receivers
            .into_iter()
            .flatten()
            .map(|receiver| glommio::spawn_local(receiver.connect()))
            .collect();
        // glommio notices a peer's connect only when its reactor polls: an executor with nothing
        // else to do sleeps in io_uring and never sees it. A short timer keeps it polling until
        // every end is connected.
        let connecting = Rc::new(Cell::new(true));
        let nudge = {
            let connecting = Rc::clone(&connecting);
            glommio::spawn_local(async move {
                while connecting.get() {
                    glommio::timer::sleep(MESH_CONNECT_POLL_INTERVAL).await;
                }
            })
        };
        let mut senders = Vec::with_capacity(sender_tasks.len());
        for task in sender_tasks {
            senders.push(task.await);
        }
        let mut receivers = Vec::with_capacity(receiver_tasks.len());
        for task in receiver_tasks {
            receivers.push(task.await);
        }
        connecting.set(false);
        nudge.await;
        let mesh = Rc::new(Mesh {
            me,
            senders,
            pending: RefCell::new(HashMap::new()),
            next_request_id: Cell::new(0),
        });
        let queue = glommio::executor().create_task_queue(
            Shares::default(),
            Latency::Matters(MESH_LATENCY),
            "mesh",
        );
        for receiver in receivers {
            let mesh = Rc::clone(&mesh);
            let serve = serve.clone();
            glommio::spawn_local_into(receive_loop(mesh, receiver, serve), queue)
                .expect("mesh task queue exists")
                .detach();
        }
        mesh
    }

    /// This shard's id.
    pub fn me(&self) -> ShardId {
        self.me
    }

    /// Sends `body` to shard `to` and waits for its reply.
    pub async fn call(&self, to: ShardId, body: MeshRequest) -> Result<MeshReply, MeshError> {
        let sender = self
            .senders
            .get(to.index())
            .and_then(Option::as_ref)
            .ok_or(MeshError::Unreachable(to))?;
        let request_id = self.next_request_id.get();
        self.next_request_id.set(request_id + 1);
        let (reply_sender, reply_receiver) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(request_id, reply_sender);
        let message = MeshMessage::Request {
            from: self.me,
            request_id,
            body,
        };
        if sender.send(message).await.is_err() {
            self.pending.borrow_mut().remove(&request_id);
            return Err(MeshError::Unreachable(to));
        }
        reply_receiver
            .recv()
            .await
            .ok_or(MeshError::Unreachable(to))
    }

    async fn reply(&self, to: ShardId, request_id: u64, body: MeshReply) {
        if let Some(sender) = self.senders.get(to.index()).and_then(Option::as_ref) {
            // A closed peer is shutting down and no longer waits for the reply.
            let _ = sender.send(MeshMessage::Reply { request_id, body }).await;
        }
    }
}

async fn receive_loop<F, Fut>(mesh: Rc<Mesh>, receiver: ConnectedReceiver<MeshMessage>, serve: F)
where
    F: Fn(ShardId, MeshRequest) -> Fut + 'static,
    Fut: std::future::Future<Output = MeshReply> + 'static,
{
    while let Some(message) = receiver.recv().await {
        match message {
            MeshMessage::Request {
                from,
                request_id,
                body,
            } => {
                let mesh = Rc::clone(&mesh);
                let answer = serve(from, body);
                glommio::spawn_local(async move {
                    let reply = answer.await;
                    mesh.reply(from, request_id, reply).await;
                })
                .detach();
            }
            MeshMessage::Reply { request_id, body } => {
                let waiter = mesh.pending.borrow_mut().remove(&request_id);
                if let Some(waiter) = waiter {
                    let _ = waiter.try_send(body);
                }
            }
        }
    }
}
