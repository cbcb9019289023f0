//! `Wire`: a raw Kafka connection for tests that build requests with Spate's own codec and check
//! the broker's answers byte for byte (error codes, ordering, closed connections).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use spate::protocol::frame::encode_request_frame;
use spate::protocol::messages::create_topics::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use spate::protocol::messages::list_offsets::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use spate::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use spate::protocol::records::{BatchBuilder, Record};
use spate::protocol::wire::Reader;
use spate::protocol::{ApiKey, Request, RequestHeader, Response, ResponseHeader};

/// How long a test waits for one response before failing.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A raw Kafka connection.
pub struct Wire {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl Wire {
    /// Connects to `address` ("host:port").
    pub fn connect(address: &str) -> Wire {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_read_timeout(Some(RESPONSE_TIMEOUT)).unwrap();
        Wire {
            stream,
            next_correlation_id: 1,
        }
    }

    /// Sends `request` at `version`; returns its correlation id.
    pub fn send(&mut self, version: i16, request: Request) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader {
            api_key: request.api_key().code(),
            api_version: version,
            correlation_id,
            client_id: Some("wire-test".into()),
        };
        for chunk in encode_request_frame(&header, &request).unwrap() {
            self.stream.write_all(&chunk).unwrap();
        }
        correlation_id
    }

    /// Writes `bytes` as they are, for frames the codec would not produce (malformed, oversized).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one frame; `None` when the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut prefix = [0u8; 4];
        if self.stream.read_exact(&mut prefix).is_err() {
            return None;
        }
        let mut body = vec![0u8; i32::from_be_bytes(prefix) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// Reads the response to the request sent with `correlation_id`, which must come next.
    pub fn receive(&mut self, api: ApiKey, version: i16, correlation_id: i32) -> Response {
        let frame = self.read_frame().expect("a response frame");
        let mut reader = Reader::new(frame);
        let header = ResponseHeader::decode(&mut reader, api.response_header_version(version))
            .expect("response header");
        assert_eq!(
            header.correlation_id, correlation_id,
            "responses in request order"
        );
        Response::decode(api, version, reader.rest().clone()).expect("response body")
    }

    /// Sends `request` and waits for its response.
    pub fn call(&mut self, version: i16, request: Request) -> Response {
        let api = request.api_key();
        let correlation_id = self.send(version, request);
        self.receive(api, version, correlation_id)
    }

    /// True when the broker closed the connection (EOF or reset) within 5 s.
    pub fn is_closed(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }
}

impl Wire {
    /// Creates `name` with CreateTopics v7 (`configs` as name and value pairs); its error code.
    pub fn create_topic(&mut self, name: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
        let request = Request::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                num_partitions: partitions,
                replication_factor: -1,
                assignments: vec![],
                configs: configs
                    .iter()
                    .map(|(name, value)| CreatableTopicConfig {
                        name: (*name).into(),
                        value: Some((*value).into()),
                    })
                    .collect(),
            }],
            timeout_ms: 10_000,
            validate_only: false,
        });
        let Response::CreateTopics(response) = self.call(7, request) else {
            panic!("not a CreateTopics response");
        };
        response.topics[0].error_code
    }
}

impl Wire {
    /// ListOffsets v7 of one partition at `timestamp` (-1 latest, -2 earliest): (error code,
    /// offset).
    pub fn list_offset_result(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> (i16, i64) {
        let request = Request::ListOffsets(ListOffsetsRequest {
            replica_id: -1,
            topics: vec![ListOffsetsTopic {
                name: topic.into(),
                partitions: vec![ListOffsetsPartition {
                    partition_index: partition,
                    timestamp,
                    ..ListOffsetsPartition::default()
                }],
            }],
            ..ListOffsetsRequest::default()
        });
        let Response::ListOffsets(response) = self.call(7, request) else {
            panic!("not a ListOffsets response");
        };
        let answer = &response.topics[0].partitions[0];
        (answer.error_code, answer.offset)
    }

    /// The offset ListOffsets v7 answers at `timestamp`, after checking it carries no error.
    pub fn list_offset(&mut self, topic: &str, partition: i32, timestamp: i64) -> i64 {
        let (error_code, offset) = self.list_offset_result(topic, partition, timestamp);
        assert_eq!(error_code, 0, "ListOffsets error");
        offset
    }
}

/// A Produce request carrying one batch for one partition.
pub fn produce(topic: &str, partition: i32, records: Bytes, acks: i16) -> Request {
    Request::Produce(ProduceRequest {
        transactional_id: None,
        acks,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: partition,
                records: Some(records),
            }],
        }],
    })
}

/// One batch of `count` records, each `value_bytes` long, with timestamps in 2023.
pub fn batch(count: usize, value_bytes: usize) -> Bytes {
    let value = vec![b'v'; value_bytes];
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for i in 0..count {
        builder.push(&Record {
            timestamp_delta: i as i64,
            key: None,
            value: Some(&value),
            headers: &[],
        });
    }
    builder.finish()
}
