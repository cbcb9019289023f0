//! Codec regressions under plain `cargo test`: replays the fuzz corpus (fuzz/corpus/<target>/*)
//! through the same entry points as the fuzz targets, and pins the hostile inputs we know about.
//!
//! Each `*_entry` function mirrors one target in fuzz/fuzz_targets/ by calling the same spate APIs;
//! nothing is shared with the fuzz crate, so this file needs neither nightly nor libFuzzer. When a
//! target is added there, its entry point belongs here too: an unknown corpus directory fails.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use spate::protocol::frame::{FRAME_SIZE_PREFIX_BYTES, frame_size};
use spate::protocol::messages::*;
use spate::protocol::record_batch::{
    self, BatchIter, Compression, RECORD_BATCH_HEADER_BYTES, RecordBatchHeader,
};
use spate::protocol::records::RecordIter;
use spate::protocol::wire::{Reader, Writer};
use spate::protocol::{ApiKey, CodecError, Request, RequestHeader, encode_message};

/// Same bound as fuzz/fuzz_targets/frame.rs: Kafka's default `socket.request.max.bytes`.
const FRAME_BYTES_MAX: usize = 100 * 1024 * 1024;

/// Same version span as fuzz/fuzz_targets/request_body.rs.
const VERSION_SPAN: u8 = 20;

/// The Produce v3..=8 body from the issue: null transactional id, acks 1, timeout 30 s, then a
/// topic array claiming i32::MAX elements with no bytes left.
const PRODUCE_I32_MAX_ARRAY: [u8; 12] = [
    0xff, 0xff, 0x00, 0x01, 0x00, 0x00, 0x75, 0x30, 0x7f, 0xff, 0xff, 0xff,
];

/// The versions whose default request holds null in a field that version does not allow to be
/// null (the topic list of Metadata v0 and OffsetFetch v0-1), so there is no default body to cut up.
const DEFAULT_NOT_ENCODABLE: [(ApiKey, i16); 3] = [
    (ApiKey::Metadata, 0),
    (ApiKey::OffsetFetch, 0),
    (ApiKey::OffsetFetch, 1),
];

/// What the frame entry point made of an input.
#[derive(Debug)]
enum FrameOutcome {
    /// Fewer bytes than the size prefix (or the prefix itself) needs: a connection would wait.
    Incomplete,
    /// The size prefix, the header or the body was rejected.
    Rejected(CodecError),
    /// A header whose API key the codec does not know; the body is not read.
    UnknownApi,
    /// A whole request.
    Decoded(Request),
}

/// Mirrors fuzz_targets/request_header.rs.
fn request_header_entry(data: &[u8]) -> Result<RequestHeader, CodecError> {
    RequestHeader::decode(&mut Reader::new(Bytes::copy_from_slice(data)))
}

/// Mirrors fuzz_targets/request_body.rs, round-trip assertion included.
fn request_body_entry(data: &[u8]) -> Option<Result<Request, CodecError>> {
    let [api_index, version, body @ ..] = data else {
        return None;
    };
    let key = ApiKey::ALL[usize::from(*api_index) % ApiKey::ALL.len()];
    let version = i16::from(version % VERSION_SPAN);
    let result = Request::decode(key, version, Bytes::copy_from_slice(body));
    if let Ok(request) = &result {
        let again = Request::decode(key, version, encode_request(request, version));
        assert_eq!(again.as_ref(), Ok(request), "{key:?} v{version}");
    }
    Some(result)
}

/// Mirrors fuzz_targets/record_batch.rs; returns whether `data` is one valid batch.
fn record_batch_entry(data: &[u8]) -> bool {
    let bytes = Bytes::copy_from_slice(data);
    let valid = record_batch::validate(data);
    if let Ok(header) = valid
        && record_batch::compression(header) == Ok(Compression::None)
    {
        read_records(&bytes, header);
    }
    for batch in BatchIter::new(bytes).flatten() {
        if let Ok(header) = record_batch::header(&batch) {
            read_records(&batch, header);
        }
    }
    valid.is_ok()
}

fn read_records(batch: &Bytes, header: &RecordBatchHeader) {
    let region = batch.slice(RECORD_BATCH_HEADER_BYTES..);
    for record in RecordIter::new(region, header.records_count.get()) {
        let _ = record;
    }
}

/// Mirrors fuzz_targets/frame.rs.
fn frame_entry(data: &[u8]) -> FrameOutcome {
    let Some((prefix, rest)) = data.split_first_chunk::<FRAME_SIZE_PREFIX_BYTES>() else {
        return FrameOutcome::Incomplete;
    };
    let size = match frame_size(*prefix, FRAME_BYTES_MAX) {
        Ok(size) => size,
        Err(error) => return FrameOutcome::Rejected(error),
    };
    let Some(frame) = rest.get(..size) else {
        return FrameOutcome::Incomplete;
    };
    let mut reader = Reader::new(Bytes::copy_from_slice(frame));
    let header = match RequestHeader::decode(&mut reader) {
        Ok(header) => header,
        Err(error) => return FrameOutcome::Rejected(error),
    };
    let Some(key) = ApiKey::from_code(header.api_key) else {
        return FrameOutcome::UnknownApi;
    };
    match Request::decode(key, header.api_version, reader.rest().clone()) {
        Ok(request) => FrameOutcome::Decoded(request),
        Err(error) => FrameOutcome::Rejected(error),
    }
}

fn encode_request(request: &Request, version: i16) -> Bytes {
    let mut writer = Writer::new();
    request
        .encode(version, &mut writer)
        .expect("a decoded request encodes at its version");
    writer.into_bytes()
}

/// The body of `key`'s default request at `version`, if the default is encodable there (a default
/// holds null in fields that some versions do not allow to be null).
fn default_body(key: ApiKey, version: i16) -> Option<Bytes> {
    fn encode<M: spate::protocol::ApiMessage>(version: i16) -> Option<Bytes> {
        let mut writer = Writer::new();
        encode_message(&M::default(), version, &mut writer).ok()?;
        Some(writer.into_bytes())
    }
    // Exhaustive on purpose: a new API in the table must be added here to compile.
    match key {
        ApiKey::Produce => encode::<produce::ProduceRequest>(version),
        ApiKey::Fetch => encode::<fetch::FetchRequest>(version),
        ApiKey::ListOffsets => encode::<list_offsets::ListOffsetsRequest>(version),
        ApiKey::Metadata => encode::<metadata::MetadataRequest>(version),
        ApiKey::OffsetCommit => encode::<offset_commit::OffsetCommitRequest>(version),
        ApiKey::OffsetFetch => encode::<offset_fetch::OffsetFetchRequest>(version),
        ApiKey::FindCoordinator => encode::<find_coordinator::FindCoordinatorRequest>(version),
        ApiKey::JoinGroup => encode::<join_group::JoinGroupRequest>(version),
        ApiKey::Heartbeat => encode::<heartbeat::HeartbeatRequest>(version),
        ApiKey::LeaveGroup => encode::<leave_group::LeaveGroupRequest>(version),
        ApiKey::SyncGroup => encode::<sync_group::SyncGroupRequest>(version),
        ApiKey::DescribeGroups => encode::<describe_groups::DescribeGroupsRequest>(version),
        ApiKey::ListGroups => encode::<list_groups::ListGroupsRequest>(version),
        ApiKey::SaslHandshake => encode::<sasl_handshake::SaslHandshakeRequest>(version),
        ApiKey::ApiVersions => encode::<api_versions::ApiVersionsRequest>(version),
        ApiKey::CreateTopics => encode::<create_topics::CreateTopicsRequest>(version),
        ApiKey::DeleteTopics => encode::<delete_topics::DeleteTopicsRequest>(version),
        ApiKey::DeleteRecords => encode::<delete_records::DeleteRecordsRequest>(version),
        ApiKey::InitProducerId => encode::<init_producer_id::InitProducerIdRequest>(version),
        ApiKey::OffsetForLeaderEpoch => {
            encode::<offset_for_leader_epoch::OffsetForLeaderEpochRequest>(version)
        }
        ApiKey::DescribeConfigs => encode::<describe_configs::DescribeConfigsRequest>(version),
        ApiKey::AlterConfigs => encode::<alter_configs::AlterConfigsRequest>(version),
        ApiKey::SaslAuthenticate => encode::<sasl_authenticate::SaslAuthenticateRequest>(version),
        ApiKey::CreatePartitions => encode::<create_partitions::CreatePartitionsRequest>(version),
        ApiKey::DeleteGroups => encode::<delete_groups::DeleteGroupsRequest>(version),
        ApiKey::IncrementalAlterConfigs => {
            encode::<incremental_alter_configs::IncrementalAlterConfigsRequest>(version)
        }
        ApiKey::OffsetDelete => encode::<offset_delete::OffsetDeleteRequest>(version),
        ApiKey::DescribeCluster => encode::<describe_cluster::DescribeClusterRequest>(version),
    }
}

/// A request header for `key` at `version`, in the header version the table picks for it.
fn header_bytes(key: ApiKey, version: i16) -> Bytes {
    let header = RequestHeader {
        api_key: key.code(),
        api_version: version,
        correlation_id: 0x0102_0304,
        client_id: Some("regression".into()),
    };
    let mut writer = Writer::new();
    header.encode(&mut writer).expect("a header always encodes");
    writer.into_bytes()
}

/// Every (key, version, header, body) with an encodable default request.
fn default_requests() -> Vec<(ApiKey, i16, Bytes, Bytes)> {
    let mut out = Vec::new();
    for &key in ApiKey::ALL {
        let versions = key.versions();
        for version in versions.min..=versions.max {
            if let Some(body) = default_body(key, version) {
                out.push((key, version, header_bytes(key, version), body));
            }
        }
    }
    out
}

fn with_size_prefix(payload: &[u8]) -> Vec<u8> {
    let size = i32::try_from(payload.len()).expect("test frames are small");
    let mut frame = size.to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn corpus_replays_without_panics() {
    // Proves every saved fuzz input still goes through its target's entry point without a panic
    // (or a failed round trip), and that each target has a non-empty corpus.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut replayed = Vec::new();
    for target in fs::read_dir(&corpus).expect("fuzz/corpus exists") {
        let target = target.unwrap().path();
        let name = target.file_name().unwrap().to_str().unwrap().to_owned();
        let mut count = 0;
        for input in fs::read_dir(&target).unwrap() {
            let input = input.unwrap().path();
            // libFuzzer keeps hidden bookkeeping files in a corpus directory; they are not inputs.
            if input
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with('.')
            {
                continue;
            }
            let data = fs::read(&input).unwrap();
            match name.as_str() {
                "request_header" => {
                    let _ = request_header_entry(&data);
                }
                "request_body" => {
                    let _ = request_body_entry(&data);
                }
                "record_batch" => {
                    let _ = record_batch_entry(&data);
                }
                "frame" => {
                    let _ = frame_entry(&data);
                }
                _ => panic!("corpus directory {name} has no entry point in this file"),
            }
            count += 1;
        }
        assert!(count > 0, "empty corpus for {name}");
        replayed.push(name);
    }
    replayed.sort();
    assert_eq!(
        replayed,
        ["frame", "record_batch", "request_body", "request_header"]
    );
}

#[test]
fn hand_made_seeds_are_what_their_names_say() {
    // Proves the valid seeds really are valid (so the fuzzer starts from inputs that reach deep
    // code) and the hostile ones really are rejected.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let read = |path: &str| fs::read(corpus.join(path)).unwrap();
    let frame = frame_entry(&read("frame/api_versions_v3"));
    assert!(matches!(
        frame,
        FrameOutcome::Decoded(Request::ApiVersions(_))
    ));
    let frame = frame_entry(&read("frame/produce_v3_i32_max_array"));
    assert!(matches!(
        frame,
        FrameOutcome::Rejected(CodecError::InvalidLength { .. })
    ));
    assert!(matches!(
        frame_entry(&read("frame/size_negative")),
        FrameOutcome::Rejected(CodecError::FrameSize { .. })
    ));
    assert!(matches!(
        frame_entry(&read("frame/unknown_api_key")),
        FrameOutcome::UnknownApi
    ));
    assert!(record_batch_entry(&read("record_batch/one_record")));
    assert!(!record_batch_entry(&read("record_batch/crc_mismatch")));
    for seed in [
        "api_versions_v3",
        "metadata_v12_all_topics",
        "produce_v9_one_batch",
    ] {
        let decoded = request_body_entry(&read(&format!("request_body/{seed}")));
        assert!(matches!(decoded, Some(Ok(_))), "{seed}");
    }
    for seed in ["produce_v3_i32_max_array", "produce_v8_i32_max_array"] {
        let decoded = request_body_entry(&read(&format!("request_body/{seed}")));
        assert!(matches!(decoded, Some(Err(_))), "{seed}");
    }
    assert!(request_header_entry(&read("request_header/api_versions_v3_header")).is_ok());
}

#[test]
fn produce_body_claiming_i32_max_topics_is_an_error() {
    // Proves the 12-byte body whose topic array claims i32::MAX elements is rejected in every
    // Produce version, before anything is allocated for the claimed elements.
    let body = Bytes::from_static(&PRODUCE_I32_MAX_ARRAY);
    for version in 3..=8 {
        let result = Request::decode(ApiKey::Produce, version, body.clone());
        assert!(
            matches!(result, Err(CodecError::InvalidLength { .. })),
            "v{version}: {result:?}"
        );
    }
    // v9 and later are flexible: the same bytes are a compact string far longer than the body.
    for version in 9..=11 {
        let result = Request::decode(ApiKey::Produce, version, body.clone());
        assert!(result.is_err(), "v{version}: {result:?}");
    }
}

#[test]
fn every_api_and_version_has_a_default_request_to_truncate() {
    // Proves the truncation tests below cover every API and version in the table, except the
    // ones named in DEFAULT_NOT_ENCODABLE, not a lucky subset.
    let covered = default_requests();
    for &key in ApiKey::ALL {
        let versions = key.versions();
        for version in versions.min..=versions.max {
            let is_covered = covered.iter().any(|(k, v, ..)| (*k, *v) == (key, version));
            let is_exempt = DEFAULT_NOT_ENCODABLE.contains(&(key, version));
            assert_ne!(is_covered, is_exempt, "{key:?} v{version}");
        }
    }
}

#[test]
fn whole_frames_decode_to_the_request_they_carry() {
    // Proves the frame entry point accepts the untruncated frames the truncation tests cut up.
    for (key, version, header, body) in default_requests() {
        let frame = with_size_prefix(&[header, body.clone()].concat());
        let FrameOutcome::Decoded(request) = frame_entry(&frame) else {
            panic!("{key:?} v{version}");
        };
        assert_eq!(request.api_key(), key);
        assert_eq!(
            encode_request(&request, version),
            body,
            "{key:?} v{version}"
        );
    }
}

#[test]
fn frames_cut_short_are_incomplete_or_rejected() {
    // Proves every truncation of a valid frame, of every API and version, is handled without a
    // panic: a cut that leaves the size prefix claiming more bytes is incomplete, and a frame
    // whose prefix honestly states the shorter length is an error, never a bogus request.
    for (key, version, header, body) in default_requests() {
        let payload = [header, body].concat();
        let frame = with_size_prefix(&payload);
        for len in 0..frame.len() {
            let outcome = frame_entry(&frame[..len]);
            assert!(
                matches!(outcome, FrameOutcome::Incomplete),
                "{key:?} v{version} cut to {len}: {outcome:?}"
            );
        }
        for len in 0..payload.len() {
            let outcome = frame_entry(&with_size_prefix(&payload[..len]));
            assert!(
                matches!(outcome, FrameOutcome::Rejected(_)),
                "{key:?} v{version} sized {len}: {outcome:?}"
            );
        }
    }
}

#[test]
fn bodies_cut_short_are_errors() {
    // Proves every strict prefix of a valid body is an error: decoding reads exactly what
    // encoding wrote, so a shorter body must run out somewhere.
    for (key, version, _, body) in default_requests() {
        for len in 0..body.len() {
            let result = Request::decode(key, version, body.slice(..len));
            assert!(result.is_err(), "{key:?} v{version} cut to {len}");
        }
    }
}

#[test]
fn headers_shorter_than_eight_bytes_are_errors() {
    // Proves a header without its fixed api key, version and correlation id is an error for
    // every API and version, flexible (header v2) or not.
    for (key, version, header, _) in default_requests() {
        for len in 0..8 {
            let result = request_header_entry(&header[..len]);
            assert!(result.is_err(), "{key:?} v{version} cut to {len}");
        }
    }
}

#[test]
fn record_batches_cut_short_are_rejected() {
    // Proves every truncation of a valid batch fails validation without a panic, and that the
    // record-set iterator treats it as a partial tail rather than a batch.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let batch = fs::read(corpus.join("record_batch/one_record")).unwrap();
    assert!(record_batch_entry(&batch));
    for len in 0..batch.len() {
        assert!(!record_batch_entry(&batch[..len]), "cut to {len}");
        let mut batches = BatchIter::new(Bytes::copy_from_slice(&batch[..len]));
        assert!(batches.next().is_none(), "cut to {len}");
    }
}
