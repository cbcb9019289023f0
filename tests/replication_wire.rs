//! The partition replication network on a real `spate serve`: a connection that opens with the
//! replication preamble is answered by the shard's partition groups on the Kafka port, a request
//! for a group the shard does not run gets an error answer (not a closed connection), as does a
//! snapshot that is not one, hostile
//! frames (a huge heartbeat among them) close only their own connection, and Kafka clients on
//! the same port are unaffected.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use openraft::raft::{SnapshotResponse, VoteRequest, VoteResponse};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf};
use spate::protocol::messages::api_versions::ApiVersionsRequest;
use spate::protocol::{Request, Response};
use spate::raft::partition_network::PREAMBLE;
use spate::raft::partition_store::PartitionRaft;

use common::Broker;
use common::wire::Wire;

const KIND_VOTE: u8 = 2;
const KIND_HEARTBEAT: u8 = 5;
const KIND_SNAPSHOT: u8 = 6;
const KIND_RESPONSE: u8 = 0x80;

/// A replication frame as docs/architecture.md §8 lays it out: length, kind, request id,
/// topic id, partition, body.
fn frame(kind: u8, id: u64, topic_id: [u8; 16], partition: u32, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&((1 + 8 + 16 + 4 + body.len()) as u32).to_be_bytes());
    frame.push(kind);
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(&topic_id);
    frame.extend_from_slice(&partition.to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

fn connect(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect(broker.bootstrap()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

fn kafka_still_answers(broker: &Broker) {
    let mut wire = Wire::connect(&broker.bootstrap());
    let response = wire.call(3, Request::ApiVersions(ApiVersionsRequest::default()));
    assert!(matches!(response, Response::ApiVersions(r) if r.error_code == 0));
}

#[test]
fn replication_connections_share_the_kafka_port_and_hostile_ones_close_alone() {
    let broker = Broker::start(&[]);

    // A vote for a group this broker does not run: an error answer with the request's id.
    let mut stream = connect(&broker);
    let vote = VoteRequest::<PartitionRaft> {
        vote: openraft::Vote::new(4, 9),
        last_log_id: None,
        leadership_transfer: false,
    };
    let body = bincode::serialize(&vote).unwrap();
    stream.write_all(&PREAMBLE).unwrap();
    stream
        .write_all(&frame(KIND_VOTE, 77, [5; 16], 3, &body))
        .unwrap();
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut rest).unwrap();
    assert_eq!(rest[0], KIND_VOTE | KIND_RESPONSE);
    assert_eq!(u64::from_be_bytes(rest[1..9].try_into().unwrap()), 77);
    assert_eq!(&rest[9..25], &[5; 16]);
    assert_eq!(u32::from_be_bytes(rest[25..29].try_into().unwrap()), 3);
    let answer: Result<VoteResponse<PartitionRaft>, String> =
        bincode::deserialize(&rest[29..]).unwrap();
    let error = answer.unwrap_err();
    assert!(error.contains("no replica here"), "{error}");
    // The connection stays open for the next request.
    stream
        .write_all(&frame(KIND_VOTE, 78, [5; 16], 3, &body))
        .unwrap();
    stream.read_exact(&mut length).unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut rest).unwrap();
    assert_eq!(u64::from_be_bytes(rest[1..9].try_into().unwrap()), 78);

    // A snapshot whose data is not one: refused with an error answer before any group sees it
    // (an install that failed would stop the group), the connection still open.
    let meta = SnapshotMetaOf::<PartitionRaft> {
        last_log_id: Some(LogIdOf::<PartitionRaft>::new_term_index(2, 40)),
        last_membership: Default::default(),
    };
    let snapshot = bincode::serialize(&(vote.vote, meta, b"not a snapshot".to_vec())).unwrap();
    stream
        .write_all(&frame(KIND_SNAPSHOT, 79, [5; 16], 3, &snapshot))
        .unwrap();
    stream.read_exact(&mut length).unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut rest).unwrap();
    assert_eq!(rest[0], KIND_SNAPSHOT | KIND_RESPONSE);
    let answer: Result<SnapshotResponse<PartitionRaft>, String> =
        bincode::deserialize(&rest[29..]).unwrap();
    let error = answer.unwrap_err();
    assert!(error.contains("damaged"), "{error}");

    // A heartbeat naming 300,000 groups (this broker runs none; its bound is 65,536 spare) is
    // well formed but far beyond any peer's: refused before it is decoded.
    let entries: u64 = 300_000;
    let mut heartbeat = entries.to_le_bytes().to_vec();
    heartbeat.resize(8 + entries as usize * (16 + 4 + 8), 0);
    // A frame claiming 4 GiB, an unknown kind, an undecodable body, a wrong preamble, the huge
    // heartbeat: each closes its own connection.
    let hostile: Vec<Vec<u8>> = vec![
        [
            PREAMBLE.as_slice(),
            &frame(KIND_HEARTBEAT, 1, [0; 16], 0, &heartbeat),
        ]
        .concat(),
        [PREAMBLE.as_slice(), &u32::MAX.to_be_bytes()].concat(),
        [PREAMBLE.as_slice(), &frame(9, 1, [5; 16], 0, &body)].concat(),
        [
            PREAMBLE.as_slice(),
            &frame(KIND_VOTE, 1, [5; 16], 0, &[1, 2]),
        ]
        .concat(),
        [PREAMBLE[0], 0, 0, 0, 0, 0, 0, 0].to_vec(),
    ];
    for bytes in hostile {
        let mut stream = connect(&broker);
        stream.write_all(&bytes).unwrap();
        assert!(closed(&mut stream), "{bytes:02x?} left the connection open");
    }
    kafka_still_answers(&broker);
    broker.stop();
}
