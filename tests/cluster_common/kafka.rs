//! Kafka requests for the cluster harness and its tests that fail with an error instead of
//! panicking, so waits can retry them until their deadline: Metadata, CreateTopics, Produce and
//! Fetch with Spate's own codec, and decoding of fetched record batches.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate::protocol::frame::encode_request_frame;
use spate::protocol::messages::create_topics::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use spate::protocol::messages::delete_records::{
    DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
};
use spate::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchTopic};
use spate::protocol::messages::metadata::MetadataRequest;
use spate::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use spate::protocol::records::{BatchBuilder, Record, RecordIter};
use spate::protocol::wire::Reader;
use spate::protocol::{ApiKey, Request, RequestHeader, Response, ResponseHeader};

/// Bound on one Kafka request made by the harness (connect, send, answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between retries in `fetch_all`.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What Metadata says about the cluster.
#[derive(Clone, Debug)]
pub struct ClusterMetadata {
    pub controller_id: i32,
    /// Node id to "host:port".
    pub nodes: BTreeMap<i32, String>,
    pub topics: BTreeMap<String, TopicMetadata>,
}

#[derive(Clone, Debug)]
pub struct TopicMetadata {
    pub error_code: i16,
    /// By partition index.
    pub partitions: Vec<PartitionMetadata>,
}

#[derive(Clone, Debug)]
pub struct PartitionMetadata {
    pub index: i32,
    pub leader: i32,
    pub error_code: i16,
    /// The leader's epoch (a replicated partition's Raft term; 0 otherwise).
    pub leader_epoch: i32,
    /// The replicas' node ids.
    pub replicas: Vec<i32>,
    /// The in-sync replicas' node ids.
    pub isr: Vec<i32>,
    /// The offline replicas' node ids.
    pub offline: Vec<i32>,
}

impl ClusterMetadata {
    /// True if `topic` is listed without error with `partitions` partitions, each led.
    pub fn topic_ready(&self, topic: &str, partitions: usize) -> bool {
        self.topics.get(topic).is_some_and(|t| {
            t.error_code == 0
                && t.partitions.len() == partitions
                && t.partitions
                    .iter()
                    .all(|p| p.leader >= 0 && p.error_code == 0)
        })
    }

    /// Leader node id of each partition of `topic`, by index.
    pub fn leaders(&self, topic: &str) -> Vec<i32> {
        self.topics
            .get(topic)
            .map(|t| t.partitions.iter().map(|p| p.leader).collect())
            .unwrap_or_default()
    }

    /// "host:port" of node `node_id`.
    pub fn address(&self, node_id: i32) -> &str {
        self.nodes
            .get(&node_id)
            .unwrap_or_else(|| panic!("node {node_id} not in Metadata {:?}", self.nodes))
    }
}

/// Metadata v12 (all topics) from `address`.
pub fn metadata_of(address: &str) -> Result<ClusterMetadata, String> {
    let request = Request::Metadata(MetadataRequest {
        topics: None,
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    });
    let Response::Metadata(response) = call_once(address, 12, request)? else {
        return Err("not a Metadata response".into());
    };
    let nodes = response
        .brokers
        .iter()
        .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
        .collect();
    let topics = response
        .topics
        .iter()
        .filter_map(|t| {
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    index: p.partition_index,
                    leader: p.leader_id,
                    error_code: p.error_code,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.clone(),
                    isr: p.isr_nodes.clone(),
                    offline: p.offline_replicas.clone(),
                })
                .collect();
            partitions.sort_by_key(|p| p.index);
            Some((
                t.name.clone()?,
                TopicMetadata {
                    error_code: t.error_code,
                    partitions,
                },
            ))
        })
        .collect();
    Ok(ClusterMetadata {
        controller_id: response.controller_id,
        nodes,
        topics,
    })
}

/// One Kafka connection whose failures are errors, each operation bounded by `REQUEST_TIMEOUT`
/// (or the timeout given at connect).
pub struct KafkaConnection {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl KafkaConnection {
    pub fn connect(address: &str, timeout: Duration) -> Result<KafkaConnection, String> {
        let socket: SocketAddr = address
            .parse()
            .map_err(|error| format!("address {address:?}: {error}"))?;
        let stream = TcpStream::connect_timeout(&socket, timeout)
            .map_err(|error| format!("connect {address}: {error}"))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(KafkaConnection {
            stream,
            next_correlation_id: 1,
        })
    }

    /// Sends `request` at `version` and reads its answer.
    pub fn call(&mut self, version: i16, request: Request) -> Result<Response, String> {
        let api: ApiKey = request.api_key();
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader {
            api_key: api.code(),
            api_version: version,
            correlation_id,
            client_id: Some("cluster-harness".into()),
        };
        let frame =
            encode_request_frame(&header, &request).map_err(|e| format!("encode: {e:?}"))?;
        for chunk in frame {
            self.stream
                .write_all(&chunk)
                .map_err(|error| format!("send {api:?}: {error}"))?;
        }
        let mut prefix = [0u8; 4];
        self.stream
            .read_exact(&mut prefix)
            .map_err(|error| format!("read the {api:?} answer: {error}"))?;
        let length =
            usize::try_from(i32::from_be_bytes(prefix)).map_err(|_| "negative frame length")?;
        let mut body = vec![0u8; length];
        self.stream
            .read_exact(&mut body)
            .map_err(|error| format!("read the {api:?} answer: {error}"))?;
        let mut reader = Reader::new(Bytes::from(body));
        let header = ResponseHeader::decode(&mut reader, api.response_header_version(version))
            .map_err(|e| format!("response header: {e:?}"))?;
        if header.correlation_id != correlation_id {
            return Err(format!(
                "answer for correlation id {}, want {correlation_id}",
                header.correlation_id
            ));
        }
        Response::decode(api, version, reader.rest().clone())
            .map_err(|e| format!("decode {api:?}: {e:?}"))
    }

    /// CreateTopics v7 for one topic with default settings (RF -1): (error code, message).
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        timeout_ms: i32,
    ) -> Result<(i16, Option<String>), String> {
        self.create_topic_replicated(name, partitions, -1, timeout_ms)
    }

    /// CreateTopics v7 for one topic with `replication_factor`: (error code, message).
    pub fn create_topic_replicated(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        timeout_ms: i32,
    ) -> Result<(i16, Option<String>), String> {
        self.create_topic_with(name, partitions, replication_factor, &[], timeout_ms)
    }

    /// CreateTopics v7 for one topic with `replication_factor` and `configs` (name, value).
    pub fn create_topic_with(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
        timeout_ms: i32,
    ) -> Result<(i16, Option<String>), String> {
        let request = Request::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                num_partitions: partitions,
                replication_factor,
                assignments: vec![],
                configs: configs
                    .iter()
                    .map(|(name, value)| CreatableTopicConfig {
                        name: (*name).into(),
                        value: Some((*value).into()),
                    })
                    .collect(),
            }],
            timeout_ms,
            validate_only: false,
        });
        let Response::CreateTopics(response) = self.call(7, request)? else {
            return Err("not a CreateTopics response".into());
        };
        let topic = response
            .topics
            .first()
            .ok_or("CreateTopics answered no topic")?;
        Ok((topic.error_code, topic.error_message.clone()))
    }

    /// Produce v8 of one batch of `values` (keys null) to one partition: (error code, base offset).
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        values: &[Vec<u8>],
        acks: i16,
    ) -> Result<(i16, i64), String> {
        let mut builder = BatchBuilder::new(1_700_000_000_000);
        for (i, value) in values.iter().enumerate() {
            builder.push(&Record {
                timestamp_delta: i as i64,
                key: None,
                value: Some(value),
                headers: &[],
            });
        }
        let request = Request::Produce(ProduceRequest {
            transactional_id: None,
            acks,
            timeout_ms: 10_000,
            topic_data: vec![TopicProduceData {
                name: topic.into(),
                partition_data: vec![PartitionProduceData {
                    index: partition,
                    records: Some(builder.finish()),
                }],
            }],
        });
        let Response::Produce(response) = self.call(8, request)? else {
            return Err("not a Produce response".into());
        };
        let answer = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or("Produce answered no partition")?;
        Ok((answer.error_code, answer.base_offset))
    }

    /// DeleteRecords v2 on one partition: (error code, low watermark).
    pub fn delete_records(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(i16, i64), String> {
        let request = Request::DeleteRecords(DeleteRecordsRequest {
            topics: vec![DeleteRecordsTopic {
                name: topic.into(),
                partitions: vec![DeleteRecordsPartition {
                    partition_index: partition,
                    offset,
                }],
            }],
            timeout_ms: 4_000,
        });
        let Response::DeleteRecords(response) = self.call(2, request)? else {
            return Err("not a DeleteRecords response".into());
        };
        let answer = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or("DeleteRecords answered no partition")?;
        Ok((answer.error_code, answer.low_watermark))
    }

    /// Fetch v11 of one partition from `offset`: (error code, high watermark, records, the
    /// offset after the last whole batch answered, control batches included).
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(i16, i64, Vec<FetchedRecord>, Option<i64>), String> {
        let request = Request::Fetch(FetchRequest {
            max_wait_ms: 100,
            min_bytes: 1,
            max_bytes: 8 << 20,
            topics: vec![FetchTopic {
                topic: topic.into(),
                partitions: vec![FetchPartition {
                    partition,
                    fetch_offset: offset,
                    partition_max_bytes: 4 << 20,
                    ..FetchPartition::default()
                }],
            }],
            ..FetchRequest::default()
        });
        let Response::Fetch(response) = self.call(11, request)? else {
            return Err("not a Fetch response".into());
        };
        let answer = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or("Fetch answered no partition")?;
        let (records, end) = match &answer.records {
            Some(set) => {
                let bytes = set.to_bytes();
                (decode_batches(&bytes)?, batches_end(&bytes))
            }
            None => (Vec::new(), None),
        };
        Ok((answer.error_code, answer.high_watermark, records, end))
    }
}

/// One request on a new connection to `address`.
pub fn call_once(address: &str, version: i16, request: Request) -> Result<Response, String> {
    KafkaConnection::connect(address, REQUEST_TIMEOUT)?.call(version, request)
}

/// One record read back by `KafkaConnection::fetch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedRecord {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// The offset after the last whole batch in a Fetch answer (its base offset plus its last offset
/// delta plus one), control batches included.
pub fn batches_end(bytes: &Bytes) -> Option<i64> {
    const HEADER_BYTES: usize = 61;
    let mut position = 0;
    let mut end_offset = None;
    while position + HEADER_BYTES <= bytes.len() {
        let at = |from: usize, n: usize| &bytes[position + from..position + from + n];
        let base_offset = i64::from_be_bytes(at(0, 8).try_into().unwrap());
        let batch_length =
            usize::try_from(i32::from_be_bytes(at(8, 4).try_into().unwrap())).ok()?;
        let last_offset_delta = i32::from_be_bytes(at(23, 4).try_into().unwrap());
        if position + 12 + batch_length > bytes.len() {
            break;
        }
        end_offset = Some(base_offset + i64::from(last_offset_delta) + 1);
        position += 12 + batch_length;
    }
    end_offset
}

/// The records of the uncompressed v2 batches in a Fetch answer; a partial batch at the end (the
/// broker may cut one at the size limit) is skipped, and so are control batches (a replicated
/// partition's Raft entries), as every Kafka client skips them.
pub fn decode_batches(bytes: &Bytes) -> Result<Vec<FetchedRecord>, String> {
    const HEADER_BYTES: usize = 61;
    let mut records = Vec::new();
    let mut position = 0;
    while position + HEADER_BYTES <= bytes.len() {
        let at = |from: usize, n: usize| &bytes[position + from..position + from + n];
        let base_offset = i64::from_be_bytes(at(0, 8).try_into().unwrap());
        let batch_length = i32::from_be_bytes(at(8, 4).try_into().unwrap());
        let end =
            position + 12 + usize::try_from(batch_length).map_err(|_| "negative batch length")?;
        if end > bytes.len() {
            break;
        }
        let attributes = i16::from_be_bytes(at(21, 2).try_into().unwrap());
        if attributes & 0x20 != 0 {
            position = end;
            continue;
        }
        if attributes & 0x7 != 0 {
            return Err(format!(
                "compressed batch at offset {base_offset}: not decoded here"
            ));
        }
        let count = i32::from_be_bytes(at(57, 4).try_into().unwrap());
        let region = bytes.slice(position + HEADER_BYTES..end);
        for record in RecordIter::new(region, count) {
            let record = record.map_err(|e| format!("record in batch at {base_offset}: {e:?}"))?;
            records.push(FetchedRecord {
                offset: base_offset + i64::from(record.offset_delta),
                key: record.key.map(|k| k.to_vec()),
                value: record.value.map(|v| v.to_vec()),
            });
        }
        position = end;
    }
    Ok(records)
}

/// Every record of `topic`/`partition` from offset 0 up to its high watermark, read from
/// `address`, retrying errors until `timeout`.
pub fn fetch_all(
    address: &str,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Vec<FetchedRecord>, String> {
    let deadline = Instant::now() + timeout;
    let mut records: Vec<FetchedRecord> = Vec::new();
    let mut last = String::new();
    let mut connection: Option<KafkaConnection> = None;
    // The next offset to fetch.
    let mut position = 0;
    while Instant::now() < deadline {
        let next = position;
        if connection.is_none() {
            match KafkaConnection::connect(address, REQUEST_TIMEOUT) {
                Ok(c) => connection = Some(c),
                Err(error) => {
                    last = error;
                    thread::sleep(POLL_INTERVAL);
                    continue;
                }
            }
        }
        match connection
            .as_mut()
            .expect("connected")
            .fetch(topic, partition, next)
        {
            Ok((0, high_watermark, fetched, end)) => {
                records.extend(fetched.into_iter().filter(|r| r.offset >= next));
                // A control batch (a new leader's Raft entry) may end the log: the read goes on
                // after it, and is complete once past the high watermark.
                position = position.max(records.last().map_or(0, |r| r.offset + 1));
                position = position.max(end.unwrap_or(0));
                if position >= high_watermark {
                    return Ok(records);
                }
                continue;
            }
            Ok((error_code, _, _, _)) => last = format!("Fetch error code {error_code}"),
            Err(error) => {
                last = error;
                connection = None;
            }
        }
        thread::sleep(POLL_INTERVAL);
    }
    Err(format!(
        "fetch {topic}/{partition} from {address}: not complete after {timeout:?}; {} records so far; last: {last}",
        records.len()
    ))
}
