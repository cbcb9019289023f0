//! Conformance of every declared message, for every supported version: round trips, byte-for-byte
//! agreement with the `kafka-protocol` crate (a test oracle, generated from Kafka's own specs),
//! and decoders that survive truncated and mutated input. The oracle is generated from Kafka 4.1,
//! which dropped the versions KIP-896 removed; Spate still speaks Kafka 3.9's, so those old
//! versions are checked by round trip here and against hand-built frames in `old_versions.rs`.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages as kp;
use kafka_protocol::protocol::{Decodable, Encodable};
use proptest::prelude::*;

use super::apis::{ApiKey, ApiMessage, Request, decode_message, encode_message};
use super::field::Ctx;
use super::messages::*;
use super::sample::{Sample, SampleRng};
use super::wire::Writer;

/// Samples per API version in the deterministic sweeps.
const SAMPLES_PER_VERSION: u64 = 64;

fn sample<M: ApiMessage + Sample>(seed: u64, version: i16) -> M {
    let ctx = Ctx {
        version,
        flexible: M::API_KEY.is_flexible(version),
        nullable: false,
    };
    M::sample(&mut SampleRng::new(seed), ctx)
}

fn encode<M: ApiMessage>(message: &M, version: i16) -> Bytes {
    let mut writer = Writer::new();
    encode_message(message, version, &mut writer).expect("sampled messages encode");
    writer.into_bytes()
}

/// Ours -> bytes -> oracle decode -> oracle encode must give the same bytes, and decoding the
/// oracle's bytes with ours must give back the sampled message.
fn check_against_oracle<M, O>(version: i16)
where
    M: ApiMessage + Sample + std::fmt::Debug + PartialEq,
    O: Decodable + Encodable,
{
    for seed in 0..SAMPLES_PER_VERSION {
        let ours: M = sample(seed, version);
        let bytes = encode(&ours, version);
        let oracle = O::decode(&mut bytes.clone(), version).unwrap_or_else(|error| {
            panic!(
                "{:?} v{version} seed {seed}: oracle cannot decode ours: {error}",
                M::API_KEY
            )
        });
        let mut oracle_bytes = BytesMut::new();
        oracle.encode(&mut oracle_bytes, version).unwrap();
        assert_eq!(
            bytes,
            oracle_bytes.freeze(),
            "{:?} v{version} seed {seed}: encodings differ",
            M::API_KEY
        );
        let back: M = decode_message(bytes, version).unwrap();
        assert_eq!(back, ours, "{:?} v{version} seed {seed}", M::API_KEY);
    }
}

/// decode(encode(m)) == m, for versions the oracle no longer knows.
fn check_round_trip<M>(version: i16)
where
    M: ApiMessage + Sample + std::fmt::Debug + PartialEq,
{
    for seed in 0..SAMPLES_PER_VERSION {
        let ours: M = sample(seed, version);
        let back: M = decode_message(encode(&ours, version), version).unwrap();
        assert_eq!(back, ours, "{:?} v{version} seed {seed}", M::API_KEY);
    }
}

/// The oldest version the oracle (Kafka 4.1's specs) decodes: Kafka 4.0 removed older ones.
fn oracle_version_min(api_key: ApiKey) -> i16 {
    match api_key {
        ApiKey::Produce => 3,
        ApiKey::Fetch => 4,
        ApiKey::OffsetCommit | ApiKey::CreateTopics | ApiKey::OffsetForLeaderEpoch => 2,
        ApiKey::ListOffsets
        | ApiKey::OffsetFetch
        | ApiKey::DeleteTopics
        | ApiKey::DescribeConfigs => 1,
        _ => 0,
    }
}

/// Every prefix of a valid encoding must decode to an error or a value, never panic; most are
/// errors because the message ends early.
fn check_truncations<M: ApiMessage + Sample>(version: i16) {
    for seed in 0..4 {
        let message: M = sample(seed, version);
        let bytes = encode(&message, version);
        for len in 0..bytes.len() {
            let _ = decode_message::<M>(bytes.slice(..len), version);
        }
    }
}

macro_rules! conformance {
    ($($test:ident: $api:ident, $module:ident::$request:ident => kp::$kp_request:ident,
        $response:ident => kp::$kp_response:ident;)*) => {$(
        #[test]
        fn $test() {
            // Proves both bodies of this API agree with the oracle in every supported version.
            let versions = ApiKey::$api.versions();
            for version in versions.min..=versions.max {
                if version >= oracle_version_min(ApiKey::$api) {
                    check_against_oracle::<$module::$request, kp::$kp_request>(version);
                    check_against_oracle::<$module::$response, kp::$kp_response>(version);
                } else {
                    check_round_trip::<$module::$request>(version);
                    check_round_trip::<$module::$response>(version);
                }
                check_truncations::<$module::$request>(version);
                check_truncations::<$module::$response>(version);
            }
        }
    )*};
}

conformance! {
    produce_matches_oracle: Produce, produce::ProduceRequest => kp::ProduceRequest, ProduceResponse => kp::ProduceResponse;
    fetch_matches_oracle: Fetch, fetch::FetchRequest => kp::FetchRequest, FetchResponse => kp::FetchResponse;
    list_offsets_matches_oracle: ListOffsets, list_offsets::ListOffsetsRequest => kp::ListOffsetsRequest, ListOffsetsResponse => kp::ListOffsetsResponse;
    metadata_matches_oracle: Metadata, metadata::MetadataRequest => kp::MetadataRequest, MetadataResponse => kp::MetadataResponse;
    offset_commit_matches_oracle: OffsetCommit, offset_commit::OffsetCommitRequest => kp::OffsetCommitRequest, OffsetCommitResponse => kp::OffsetCommitResponse;
    offset_fetch_matches_oracle: OffsetFetch, offset_fetch::OffsetFetchRequest => kp::OffsetFetchRequest, OffsetFetchResponse => kp::OffsetFetchResponse;
    find_coordinator_matches_oracle: FindCoordinator, find_coordinator::FindCoordinatorRequest => kp::FindCoordinatorRequest, FindCoordinatorResponse => kp::FindCoordinatorResponse;
    join_group_matches_oracle: JoinGroup, join_group::JoinGroupRequest => kp::JoinGroupRequest, JoinGroupResponse => kp::JoinGroupResponse;
    heartbeat_matches_oracle: Heartbeat, heartbeat::HeartbeatRequest => kp::HeartbeatRequest, HeartbeatResponse => kp::HeartbeatResponse;
    leave_group_matches_oracle: LeaveGroup, leave_group::LeaveGroupRequest => kp::LeaveGroupRequest, LeaveGroupResponse => kp::LeaveGroupResponse;
    sync_group_matches_oracle: SyncGroup, sync_group::SyncGroupRequest => kp::SyncGroupRequest, SyncGroupResponse => kp::SyncGroupResponse;
    describe_groups_matches_oracle: DescribeGroups, describe_groups::DescribeGroupsRequest => kp::DescribeGroupsRequest, DescribeGroupsResponse => kp::DescribeGroupsResponse;
    list_groups_matches_oracle: ListGroups, list_groups::ListGroupsRequest => kp::ListGroupsRequest, ListGroupsResponse => kp::ListGroupsResponse;
    sasl_handshake_matches_oracle: SaslHandshake, sasl_handshake::SaslHandshakeRequest => kp::SaslHandshakeRequest, SaslHandshakeResponse => kp::SaslHandshakeResponse;
    api_versions_matches_oracle: ApiVersions, api_versions::ApiVersionsRequest => kp::ApiVersionsRequest, ApiVersionsResponse => kp::ApiVersionsResponse;
    create_topics_matches_oracle: CreateTopics, create_topics::CreateTopicsRequest => kp::CreateTopicsRequest, CreateTopicsResponse => kp::CreateTopicsResponse;
    delete_topics_matches_oracle: DeleteTopics, delete_topics::DeleteTopicsRequest => kp::DeleteTopicsRequest, DeleteTopicsResponse => kp::DeleteTopicsResponse;
    delete_records_matches_oracle: DeleteRecords, delete_records::DeleteRecordsRequest => kp::DeleteRecordsRequest, DeleteRecordsResponse => kp::DeleteRecordsResponse;
    init_producer_id_matches_oracle: InitProducerId, init_producer_id::InitProducerIdRequest => kp::InitProducerIdRequest, InitProducerIdResponse => kp::InitProducerIdResponse;
    offset_for_leader_epoch_matches_oracle: OffsetForLeaderEpoch, offset_for_leader_epoch::OffsetForLeaderEpochRequest => kp::OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse => kp::OffsetForLeaderEpochResponse;
    alter_configs_matches_oracle: AlterConfigs, alter_configs::AlterConfigsRequest => kp::AlterConfigsRequest, AlterConfigsResponse => kp::AlterConfigsResponse;
    describe_configs_matches_oracle: DescribeConfigs, describe_configs::DescribeConfigsRequest => kp::DescribeConfigsRequest, DescribeConfigsResponse => kp::DescribeConfigsResponse;
    sasl_authenticate_matches_oracle: SaslAuthenticate, sasl_authenticate::SaslAuthenticateRequest => kp::SaslAuthenticateRequest, SaslAuthenticateResponse => kp::SaslAuthenticateResponse;
    create_partitions_matches_oracle: CreatePartitions, create_partitions::CreatePartitionsRequest => kp::CreatePartitionsRequest, CreatePartitionsResponse => kp::CreatePartitionsResponse;
    delete_groups_matches_oracle: DeleteGroups, delete_groups::DeleteGroupsRequest => kp::DeleteGroupsRequest, DeleteGroupsResponse => kp::DeleteGroupsResponse;
    incremental_alter_configs_matches_oracle: IncrementalAlterConfigs, incremental_alter_configs::IncrementalAlterConfigsRequest => kp::IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse => kp::IncrementalAlterConfigsResponse;
    offset_delete_matches_oracle: OffsetDelete, offset_delete::OffsetDeleteRequest => kp::OffsetDeleteRequest, OffsetDeleteResponse => kp::OffsetDeleteResponse;
    describe_cluster_matches_oracle: DescribeCluster, describe_cluster::DescribeClusterRequest => kp::DescribeClusterRequest, DescribeClusterResponse => kp::DescribeClusterResponse;
}

#[test]
fn every_table_api_has_a_conformance_test() {
    // Proves the list above keeps up with the API table (28 APIs today).
    assert_eq!(ApiKey::ALL.len(), 28);
}

#[test]
fn hostile_produce_array_is_an_error_not_an_abort() {
    // The 12-byte ProduceRequest that aborts kafka-protocol 0.18: null transactional id, acks,
    // timeout, then a topic array claiming i32::MAX entries.
    let body = Bytes::from_static(&[0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30, 0x7f, 0xff, 0xff, 0xff]);
    for version in 3..=8 {
        assert!(Request::decode(ApiKey::Produce, version, body.clone()).is_err());
    }
    // The same claim in a flexible version, as a compact length.
    let body = Bytes::from_static(&[0, 0, 1, 0, 0, 0x75, 0x30, 0xff, 0xff, 0xff, 0xff, 0x07]);
    assert!(Request::decode(ApiKey::Produce, 9, body).is_err());
}

#[test]
fn produce_records_are_slices_of_the_frame() {
    // Proves decoding a Produce request does not copy its records.
    let mut request: produce::ProduceRequest = sample(3, 9);
    request.topic_data = vec![produce::TopicProduceData {
        name: "t".into(),
        partition_data: vec![produce::PartitionProduceData {
            index: 0,
            records: Some(Bytes::from(vec![1u8; 1 << 20])),
        }],
    }];
    let frame = encode(&request, 9);
    let decoded: produce::ProduceRequest = decode_message(frame.clone(), 9).unwrap();
    let records = decoded.topic_data[0].partition_data[0]
        .records
        .as_ref()
        .unwrap();
    let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    assert!(frame_range.contains(&(records.as_ptr() as usize)));
}

fn decode_any_request(api_key: ApiKey, version: i16, body: Bytes) {
    let _ = Request::decode(api_key, version, body);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sampled_requests_round_trip(seed in any::<u64>(), api_index in 0..28usize) {
        // Proves decode(encode(m)) == m for random requests of every API and version.
        let api_key = ApiKey::ALL[api_index];
        let versions = api_key.versions();
        let version = versions.min + (seed % (versions.max - versions.min + 1) as u64) as i16;
        let body = sample_request_bytes(api_key, version, seed);
        let request = Request::decode(api_key, version, body.clone()).unwrap();
        let mut writer = Writer::new();
        request.encode(version, &mut writer).unwrap();
        prop_assert_eq!(writer.into_bytes(), body);
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        api_index in 0..28usize,
        version in 0i16..14,
    ) {
        // Proves any byte string is a value or an error for every request decoder.
        decode_any_request(ApiKey::ALL[api_index], version, Bytes::from(body));
    }

    #[test]
    fn mutated_requests_never_panic_a_decoder(
        seed in any::<u64>(),
        api_index in 0..28usize,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        // Proves valid requests with random bytes overwritten decode or fail cleanly.
        let api_key = ApiKey::ALL[api_index];
        let versions = api_key.versions();
        let version = versions.min + (seed % (versions.max - versions.min + 1) as u64) as i16;
        let mut body = sample_request_bytes(api_key, version, seed).to_vec();
        if !body.is_empty() {
            for (position, byte) in flips {
                let len = body.len();
                body[position % len] = byte;
            }
        }
        decode_any_request(api_key, version, Bytes::from(body));
    }
}

/// Encodes a random valid request body of `api_key` at `version`.
pub(crate) fn sample_request_bytes(api_key: ApiKey, version: i16, seed: u64) -> Bytes {
    macro_rules! by_key {
        ($($api:ident => $module:ident::$request:ident),* $(,)?) => {
            match api_key {
                $(ApiKey::$api => encode(&sample::<$module::$request>(seed, version), version),)*
            }
        };
    }
    by_key! {
        Produce => produce::ProduceRequest,
        Fetch => fetch::FetchRequest,
        ListOffsets => list_offsets::ListOffsetsRequest,
        Metadata => metadata::MetadataRequest,
        OffsetCommit => offset_commit::OffsetCommitRequest,
        OffsetFetch => offset_fetch::OffsetFetchRequest,
        FindCoordinator => find_coordinator::FindCoordinatorRequest,
        JoinGroup => join_group::JoinGroupRequest,
        Heartbeat => heartbeat::HeartbeatRequest,
        LeaveGroup => leave_group::LeaveGroupRequest,
        SyncGroup => sync_group::SyncGroupRequest,
        DescribeGroups => describe_groups::DescribeGroupsRequest,
        ListGroups => list_groups::ListGroupsRequest,
        SaslHandshake => sasl_handshake::SaslHandshakeRequest,
        ApiVersions => api_versions::ApiVersionsRequest,
        CreateTopics => create_topics::CreateTopicsRequest,
        DeleteTopics => delete_topics::DeleteTopicsRequest,
        DeleteRecords => delete_records::DeleteRecordsRequest,
        InitProducerId => init_producer_id::InitProducerIdRequest,
        OffsetForLeaderEpoch => offset_for_leader_epoch::OffsetForLeaderEpochRequest,
        AlterConfigs => alter_configs::AlterConfigsRequest,
        DescribeConfigs => describe_configs::DescribeConfigsRequest,
        SaslAuthenticate => sasl_authenticate::SaslAuthenticateRequest,
        CreatePartitions => create_partitions::CreatePartitionsRequest,
        DeleteGroups => delete_groups::DeleteGroupsRequest,
        IncrementalAlterConfigs => incremental_alter_configs::IncrementalAlterConfigsRequest,
        OffsetDelete => offset_delete::OffsetDeleteRequest,
        DescribeCluster => describe_cluster::DescribeClusterRequest,
    }
}
