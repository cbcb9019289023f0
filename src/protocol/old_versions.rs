//! The versions Kafka 3.9 accepts and Kafka 4.0 removed (KIP-896), checked against frames built
//! by hand from Kafka 3.9's message specs: the oracle crate no longer knows them, so these bytes
//! are the only independent check of the fields that exist in them alone.

use bytes::Bytes;

use super::apis::{decode_message, encode_message};
use super::messages::describe_configs::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use super::messages::list_offsets::{
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use super::messages::offset_commit::OffsetCommitRequest;
use super::messages::offset_fetch::OffsetFetchRequest;
use super::messages::produce::{PartitionProduceResponse, ProduceResponse, TopicProduceResponse};
use super::wire::Writer;

/// Classic (non-flexible) encoding helpers for hand-built frames.
#[derive(Default)]
struct Frame(Vec<u8>);

impl Frame {
    fn i8(mut self, value: i8) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn i16(mut self, value: i16) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn i32(mut self, value: i32) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn i64(mut self, value: i64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn string(self, value: &str) -> Self {
        let mut this = self.i16(value.len() as i16);
        this.0.extend_from_slice(value.as_bytes());
        this
    }
    fn bytes(self) -> Bytes {
        Bytes::from(self.0)
    }
}

fn encoded<M: super::apis::ApiMessage>(message: &M, version: i16) -> Bytes {
    let mut writer = Writer::new();
    encode_message(message, version, &mut writer).unwrap();
    writer.into_bytes()
}

#[test]
fn list_offsets_v0_has_max_num_offsets_and_old_style_offsets() {
    // Proves the v0-only fields: the request's max_num_offsets after the timestamp, and the
    // response's array of offsets in place of v1's timestamp and offset.
    let request = Frame::default()
        .i32(-1) // replica_id
        .i32(1) // topics
        .string("t")
        .i32(1) // partitions
        .i32(3) // partition_index
        .i64(-1) // timestamp: latest
        .i32(5) // max_num_offsets
        .bytes();
    let decoded: ListOffsetsRequest = decode_message(request.clone(), 0).unwrap();
    let partition = &decoded.topics[0].partitions[0];
    assert_eq!(
        (
            partition.partition_index,
            partition.timestamp,
            partition.max_num_offsets
        ),
        (3, -1, 5)
    );
    assert_eq!(encoded(&decoded, 0), request);

    let response = ListOffsetsResponse {
        topics: vec![ListOffsetsTopicResponse {
            name: "t".into(),
            partitions: vec![ListOffsetsPartitionResponse {
                partition_index: 3,
                error_code: 0,
                old_style_offsets: vec![42, 7],
                ..ListOffsetsPartitionResponse::default()
            }],
        }],
        ..ListOffsetsResponse::default()
    };
    let expected = Frame::default()
        .i32(1)
        .string("t")
        .i32(1)
        .i32(3)
        .i16(0)
        .i32(2) // old_style_offsets
        .i64(42)
        .i64(7)
        .bytes();
    assert_eq!(encoded(&response, 0), expected);
}

#[test]
fn offset_commit_v1_has_a_commit_timestamp_per_partition() {
    // Proves v1's layout: generation and member after the group, and the commit timestamp
    // between the offset and the metadata; v0 has neither.
    let v1 = Frame::default()
        .string("g")
        .i32(7) // generation
        .string("m")
        .i32(1)
        .string("t")
        .i32(1)
        .i32(0) // partition
        .i64(99) // committed offset
        .i64(1_700_000_000_000) // commit timestamp
        .string("meta")
        .bytes();
    let decoded: OffsetCommitRequest = decode_message(v1.clone(), 1).unwrap();
    assert_eq!(decoded.generation_id_or_member_epoch, 7);
    assert_eq!(decoded.member_id, "m");
    let partition = &decoded.topics[0].partitions[0];
    assert_eq!(partition.committed_offset, 99);
    assert_eq!(partition.commit_timestamp, 1_700_000_000_000);
    assert_eq!(partition.committed_metadata.as_deref(), Some("meta"));
    assert_eq!(encoded(&decoded, 1), v1);

    let v0 = Frame::default()
        .string("g")
        .i32(1)
        .string("t")
        .i32(1)
        .i32(0)
        .i64(99)
        .string("meta")
        .bytes();
    let decoded: OffsetCommitRequest = decode_message(v0.clone(), 0).unwrap();
    assert_eq!(decoded.topics[0].partitions[0].commit_timestamp, -1);
    assert_eq!(encoded(&decoded, 0), v0);
}

#[test]
fn offset_fetch_v0_is_v1s_layout() {
    // Proves v0 decodes: a group and a non-nullable topic array.
    let v0 = Frame::default()
        .string("g")
        .i32(1)
        .string("t")
        .i32(2)
        .i32(0)
        .i32(1)
        .bytes();
    let decoded: OffsetFetchRequest = decode_message(v0.clone(), 0).unwrap();
    assert_eq!(decoded.group_id, "g");
    assert_eq!(
        decoded.topics.as_ref().unwrap()[0].partition_indexes,
        [0, 1]
    );
    assert_eq!(encoded(&decoded, 0), v0);
}

#[test]
fn describe_configs_v0_has_is_default_and_no_source() {
    // Proves v0's config entry: is_default between read_only and is_sensitive, no source, no
    // synonyms.
    let response = DescribeConfigsResponse {
        throttle_time_ms: 0,
        results: vec![DescribeConfigsResult {
            resource_type: 2,
            resource_name: "t".into(),
            configs: vec![DescribeConfigsResourceResult {
                name: "retention.ms".into(),
                value: Some("1".into()),
                read_only: false,
                is_default: true,
                config_source: 5,
                ..DescribeConfigsResourceResult::default()
            }],
            ..DescribeConfigsResult::default()
        }],
    };
    let expected = Frame::default()
        .i32(0) // throttle
        .i32(1)
        .i16(0) // error
        .i16(-1) // null message
        .i8(2)
        .string("t")
        .i32(1)
        .string("retention.ms")
        .string("1")
        .i8(0) // read_only
        .i8(1) // is_default
        .i8(0) // is_sensitive
        .bytes();
    assert_eq!(encoded(&response, 0), expected);
}

#[test]
fn produce_v0_to_v2_responses_grow_throttle_then_append_time() {
    // Proves the refusal of Produce v0-2 is readable by those clients: v0 has no throttle time,
    // v1 adds it after the topics, v2 adds the log append time per partition.
    let response = ProduceResponse {
        responses: vec![TopicProduceResponse {
            name: "t".into(),
            partition_responses: vec![PartitionProduceResponse {
                index: 0,
                error_code: 35,
                base_offset: -1,
                ..PartitionProduceResponse::default()
            }],
        }],
        ..ProduceResponse::default()
    };
    let v0 = Frame::default()
        .i32(1)
        .string("t")
        .i32(1)
        .i32(0)
        .i16(35)
        .i64(-1);
    assert_eq!(encoded(&response, 0), v0.bytes());
    let v2 = Frame::default()
        .i32(1)
        .string("t")
        .i32(1)
        .i32(0)
        .i16(35)
        .i64(-1)
        .i64(-1) // log append time
        .i32(0); // throttle
    assert_eq!(encoded(&response, 2), v2.bytes());
}
