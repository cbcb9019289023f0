//! The cluster as one shard of a client sees it: bootstrap, Metadata, one connection per node,
//! leader routing, and the two admin calls the tools need (create and delete a topic).
//!
//! Guarantees:
//! - at most one open connection per node is kept; a closed one is replaced on the next
//!   `connection` call (lazily: nothing reconnects in the background);
//! - `leader` and `partition_count` answer from the last Metadata response and never block;
//!   they are as stale as that response, and callers refresh on NOT_LEADER_OR_FOLLOWER and
//!   UNKNOWN_TOPIC_OR_PARTITION;
//! - Metadata is asked with `allow_auto_topic_creation = false`: a client never creates topics
//!   by looking at them.
//!
//! Callers must not: share a `Cluster` across executors (each shard of a client has its own).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use crate::protocol::messages::create_topics::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use crate::protocol::messages::delete_topics::{DeleteTopicState, DeleteTopicsRequest};
use crate::protocol::messages::metadata::{MetadataRequest, MetadataRequestTopic};
use crate::protocol::{ApiKey, ErrorCode, Request, Response};

use super::connection::Connection;
use super::error::ClientError;

/// How long a topic admin request lets the broker work before it answers.
const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// After CreateTopics succeeds, how long `create_topic` waits for Metadata to name a leader for
/// every partition (Kafka propagates metadata asynchronously).
const CREATE_LEADERS_WAIT: Duration = Duration::from_secs(10);
/// Pause between Metadata polls while waiting for leaders.
const CREATE_LEADERS_POLL: Duration = Duration::from_millis(50);

/// What the client knows about one topic.
#[derive(Debug, Clone)]
struct TopicMeta {
    /// Leader node per partition index; -1 while none is known.
    leaders: Vec<i32>,
}

/// The cluster as seen from one shard of a client: bootstrap, Metadata, connections per node
/// (lazily opened, reopened when closed), leader routing.
pub struct Cluster {
    bootstrap: Vec<String>,
    brokers: RefCell<HashMap<i32, String>>,
    topics: RefCell<HashMap<String, TopicMeta>>,
    controller_id: Cell<i32>,
    connections: RefCell<HashMap<i32, Rc<Connection>>>,
    bootstrap_connection: RefCell<Option<Rc<Connection>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.bootstrap)
            .field("brokers", &self.brokers.borrow())
            .finish()
    }
}

impl Cluster {
    /// Connects to the first reachable address of `bootstrap` (comma-separated "host:port"s)
    /// and loads the broker list.
    pub async fn connect(bootstrap: &str) -> Result<Rc<Cluster>, ClientError> {
        let addresses: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|address| !address.is_empty())
            .map(str::to_string)
            .collect();
        if addresses.is_empty() {
            return Err(ClientError::InvalidArgument("empty bootstrap list".into()));
        }
        let cluster = Rc::new(Cluster {
            bootstrap: addresses,
            brokers: RefCell::new(HashMap::new()),
            topics: RefCell::new(HashMap::new()),
            controller_id: Cell::new(-1),
            connections: RefCell::new(HashMap::new()),
            bootstrap_connection: RefCell::new(None),
        });
        cluster.refresh(Some(&[])).await?;
        Ok(cluster)
    }

    /// Reloads metadata for `topics` (all topics when empty). Topics the broker does not know
    /// are forgotten, so `partition_count` returns `None` for them.
    pub async fn refresh_metadata(&self, topics: &[&str]) -> Result<(), ClientError> {
        self.refresh(if topics.is_empty() {
            None
        } else {
            Some(topics)
        })
        .await
    }

    /// Partitions of `topic`, from the last Metadata.
    pub fn partition_count(&self, topic: &str) -> Option<usize> {
        self.topics
            .borrow()
            .get(topic)
            .map(|meta| meta.leaders.len())
    }

    /// The leader node of a partition, from the last Metadata.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let topics = self.topics.borrow();
        let leader = *topics
            .get(topic)?
            .leaders
            .get(usize::try_from(partition).ok()?)?;
        (leader >= 0).then_some(leader)
    }

    /// The node ids Metadata listed.
    pub fn node_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.brokers.borrow().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The open connection to `node_id`, opening one if there is none or it closed.
    pub async fn connection(&self, node_id: i32) -> Result<Rc<Connection>, ClientError> {
        if let Some(open) = self.open_connection(node_id) {
            return Ok(open);
        }
        let address = self
            .brokers
            .borrow()
            .get(&node_id)
            .cloned()
            .ok_or(ClientError::UnknownNode(node_id))?;
        let connection = Connection::connect(&address).await?;
        // Another task may have connected while we did: keep theirs, drop ours.
        if let Some(open) = self.open_connection(node_id) {
            return Ok(open);
        }
        self.connections
            .borrow_mut()
            .insert(node_id, connection.clone());
        Ok(connection)
    }

    /// Any open connection: a node's, else the bootstrap one, else a new one to the first
    /// reachable node or bootstrap address. For requests any broker answers (Metadata,
    /// InitProducerId).
    pub async fn any_connection(&self) -> Result<Rc<Connection>, ClientError> {
        let open = self
            .connections
            .borrow()
            .values()
            .find(|connection| !connection.is_closed())
            .cloned();
        if let Some(open) = open {
            return Ok(open);
        }
        let bootstrap_open = self
            .bootstrap_connection
            .borrow()
            .clone()
            .filter(|connection| !connection.is_closed());
        if let Some(open) = bootstrap_open {
            return Ok(open);
        }
        let mut last_error = ClientError::Closed;
        for node_id in self.node_ids() {
            match self.connection(node_id).await {
                Ok(connection) => return Ok(connection),
                Err(error) => last_error = error,
            }
        }
        for address in &self.bootstrap {
            match Connection::connect(address).await {
                Ok(connection) => {
                    *self.bootstrap_connection.borrow_mut() = Some(connection.clone());
                    return Ok(connection);
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Creates `name` with `partitions` partitions of `replication_factor` replicas (-1: the
    /// broker's default), via the controller, then waits (bounded) until Metadata names a
    /// leader for every partition. TOPIC_ALREADY_EXISTS is an error like any other.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<(), ClientError> {
        let connection = self.controller_connection().await?;
        let version = connection
            .version(ApiKey::CreateTopics)
            .ok_or(ClientError::UnsupportedApi(ApiKey::CreateTopics))?;
        let request = CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.to_string(),
                num_partitions: partitions,
                // -1 (the broker's default) needs v4 (KIP-464); before it, ask for one replica.
                replication_factor: match replication_factor {
                    -1 if version < 4 => 1,
                    factor => factor,
                },
                configs: configs
                    .iter()
                    .map(|(key, value)| CreatableTopicConfig {
                        name: key.to_string(),
                        value: Some(value.to_string()),
                    })
                    .collect(),
                ..CreatableTopic::default()
            }],
            timeout_ms: ADMIN_TIMEOUT_MS,
            validate_only: false,
        };
        let Response::CreateTopics(response) =
            connection.call(Request::CreateTopics(request)).await?
        else {
            return Err(ClientError::UnexpectedResponse("CreateTopics"));
        };
        let result = response
            .topics
            .iter()
            .find(|topic| topic.name == name)
            .ok_or(ClientError::UnexpectedResponse(
                "CreateTopics without the topic",
            ))?;
        if let Some(error) = ClientError::from_code(result.error_code, || {
            format!(
                "create topic {name}: {}",
                result.error_message.as_deref().unwrap_or("")
            )
        }) {
            return Err(error);
        }
        self.wait_for_leaders(name).await
    }

    /// Deletes `name` via the controller and forgets it locally.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let connection = self.controller_connection().await?;
        let request = DeleteTopicsRequest {
            // v6+ names topics in `topics`, older versions in `topic_names`; the encoder writes
            // whichever the negotiated version has.
            topics: vec![DeleteTopicState {
                name: Some(name.to_string()),
                ..DeleteTopicState::default()
            }],
            topic_names: vec![name.to_string()],
            timeout_ms: ADMIN_TIMEOUT_MS,
        };
        let Response::DeleteTopics(response) =
            connection.call(Request::DeleteTopics(request)).await?
        else {
            return Err(ClientError::UnexpectedResponse("DeleteTopics"));
        };
        let result = response
            .responses
            .iter()
            .find(|topic| topic.name.as_deref() == Some(name))
            .ok_or(ClientError::UnexpectedResponse(
                "DeleteTopics without the topic",
            ))?;
        if let Some(error) = ClientError::from_code(result.error_code, || {
            format!(
                "delete topic {name}: {}",
                result.error_message.as_deref().unwrap_or("")
            )
        }) {
            return Err(error);
        }
        self.topics.borrow_mut().remove(name);
        Ok(())
    }

    fn open_connection(&self, node_id: i32) -> Option<Rc<Connection>> {
        let connections = self.connections.borrow();
        connections
            .get(&node_id)
            .filter(|connection| !connection.is_closed())
            .cloned()
    }

    async fn controller_connection(&self) -> Result<Rc<Connection>, ClientError> {
        if self.controller_id.get() < 0 {
            self.refresh(Some(&[])).await?;
        }
        let controller_id = self.controller_id.get();
        if controller_id < 0 {
            // Pre-KIP-4 brokers name no controller; any broker forwards admin requests then.
            return self.any_connection().await;
        }
        self.connection(controller_id).await
    }

    async fn wait_for_leaders(&self, name: &str) -> Result<(), ClientError> {
        let deadline = std::time::Instant::now() + CREATE_LEADERS_WAIT;
        loop {
            self.refresh(Some(&[name])).await?;
            let ready = self.topics.borrow().get(name).is_some_and(|meta| {
                !meta.leaders.is_empty() && meta.leaders.iter().all(|&leader| leader >= 0)
            });
            if ready {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(ClientError::Kafka {
                    code: ErrorCode::LeaderNotAvailable.code(),
                    context: format!("create topic {name}: leaders not elected in time"),
                });
            }
            glommio::timer::sleep(CREATE_LEADERS_POLL).await;
        }
    }

    /// Metadata for `topics` (`None`: all topics; `Some(&[])`: brokers and controller only).
    async fn refresh(&self, topics: Option<&[&str]>) -> Result<(), ClientError> {
        let connection = self.any_connection().await?;
        let request = MetadataRequest {
            topics: topics.map(|names| {
                names
                    .iter()
                    .map(|name| MetadataRequestTopic {
                        name: Some(name.to_string()),
                        ..MetadataRequestTopic::default()
                    })
                    .collect()
            }),
            allow_auto_topic_creation: false,
            ..MetadataRequest::default()
        };
        let Response::Metadata(response) = connection.call(Request::Metadata(request)).await?
        else {
            return Err(ClientError::UnexpectedResponse("Metadata"));
        };
        let brokers: HashMap<i32, String> = response
            .brokers
            .iter()
            .map(|broker| (broker.node_id, format!("{}:{}", broker.host, broker.port)))
            .collect();
        // A node whose address changed gets a new connection on next use.
        self.connections.borrow_mut().retain(|node_id, connection| {
            brokers.get(node_id).map(String::as_str) == Some(connection.address())
        });
        *self.brokers.borrow_mut() = brokers;
        self.controller_id.set(response.controller_id);
        let mut known = self.topics.borrow_mut();
        if topics.is_none() {
            known.clear();
        }
        for topic in response.topics {
            let Some(name) = topic.name else { continue };
            if topic.error_code != ErrorCode::NoError.code() {
                // UNKNOWN_TOPIC_OR_PARTITION and friends: the topic is gone (or not yet there).
                known.remove(&name);
                continue;
            }
            let count = topic
                .partitions
                .iter()
                .map(|partition| partition.partition_index + 1)
                .max()
                .unwrap_or(0);
            let mut leaders = vec![-1; usize::try_from(count).unwrap_or(0)];
            for partition in &topic.partitions {
                if let Ok(index) = usize::try_from(partition.partition_index) {
                    leaders[index] = partition.leader_id;
                }
            }
            known.insert(name, TopicMeta { leaders });
        }
        Ok(())
    }
}
