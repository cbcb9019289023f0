//! Fetch: the request and response of api key 1, versions 0-12 (0-3 are decoded only to be refused: they return magic 0/1 message sets).
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;
use crate::protocol::field::RecordSet;

kafka_struct! {
    /// Fetch request (api key 1).
    pub struct FetchRequest {
        /// The clusterId if known. This is used to validate metadata fetches prior to broker
        /// registration.
        pub cluster_id: Option<String> [12.., tag = 0],
        /// The broker ID of the follower, of -1 if this request is from a consumer.
        pub replica_id: i32 [0..=14, default = -1],
        /// The maximum time in milliseconds to wait for the response.
        pub max_wait_ms: i32 [0..],
        /// The minimum bytes to accumulate in the response.
        pub min_bytes: i32 [0..],
        /// The maximum bytes to fetch. See KIP-74 for cases where this limit may not be honored.
        pub max_bytes: i32 [3.., default = 2147483647],
        /// This setting controls the visibility of transactional records. Using READ_UNCOMMITTED
        /// (isolation_level = 0) makes all records visible. With READ_COMMITTED (isolation_level =
        /// 1), non-transactional and COMMITTED transactional records are visible. To be more
        /// concrete, READ_COMMITTED returns all data from offsets smaller than the current LSO (last
        /// stable offset), and enables the inclusion of the list of aborted transactions in the
        /// result, which allows consumers to discard ABORTED transactional records.
        pub isolation_level: i8 [4..],
        /// The fetch session ID.
        pub session_id: i32 [7..],
        /// The fetch session epoch, which is used for ordering requests in a session.
        pub session_epoch: i32 [7.., default = -1],
        /// The topics to fetch.
        pub topics: Vec<FetchTopic> [0..],
        /// In an incremental fetch request, the partitions to remove.
        pub forgotten_topics_data: Vec<ForgottenTopic> [7..],
        /// Rack ID of the consumer making this request.
        pub rack_id: String [11..],
    }
}

kafka_struct! {
    /// The topics to fetch.
    pub struct FetchTopic {
        /// The name of the topic to fetch.
        pub topic: String [0..=12],
        /// The partitions to fetch.
        pub partitions: Vec<FetchPartition> [0..],
    }
}

kafka_struct! {
    /// The partitions to fetch.
    pub struct FetchPartition {
        /// The partition index.
        pub partition: i32 [0..],
        /// The current leader epoch of the partition.
        pub current_leader_epoch: i32 [9.., default = -1],
        /// The message offset.
        pub fetch_offset: i64 [0..],
        /// The epoch of the last fetched record or -1 if there is none.
        pub last_fetched_epoch: i32 [12.., default = -1],
        /// The earliest available offset of the follower replica. The field is only used when the
        /// request is sent by the follower.
        pub log_start_offset: i64 [5.., default = -1],
        /// The maximum bytes to fetch from this partition. See KIP-74 for cases where this limit may
        /// not be honored.
        pub partition_max_bytes: i32 [0..],
    }
}

kafka_struct! {
    /// In an incremental fetch request, the partitions to remove.
    pub struct ForgottenTopic {
        /// The topic name.
        pub topic: String [7..=12],
        /// The partitions indexes to forget.
        pub partitions: Vec<i32> [7..],
    }
}

kafka_struct! {
    /// Fetch response (api key 1).
    pub struct FetchResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [1..],
        /// The top level response error code.
        pub error_code: i16 [7..],
        /// The fetch session ID, or 0 if this is not part of a fetch session.
        pub session_id: i32 [7..],
        /// The response topics.
        pub responses: Vec<FetchableTopicResponse> [0..],
    }
}

kafka_struct! {
    /// The response topics.
    pub struct FetchableTopicResponse {
        /// The topic name.
        pub topic: String [0..=12],
        /// The topic partitions.
        pub partitions: Vec<PartitionData> [0..],
    }
}

kafka_struct! {
    /// The topic partitions.
    pub struct PartitionData {
        /// The partition index.
        pub partition_index: i32 [0..],
        /// The error code, or 0 if there was no fetch error.
        pub error_code: i16 [0..],
        /// The current high water mark.
        pub high_watermark: i64 [0..],
        /// The last stable offset (or LSO) of the partition. This is the last offset such that the
        /// state of all transactional records prior to this offset have been decided (ABORTED or
        /// COMMITTED).
        pub last_stable_offset: i64 [4.., default = -1],
        /// The current log start offset.
        pub log_start_offset: i64 [5.., default = -1],
        /// In case divergence is detected based on the 'LastFetchedEpoch' and 'FetchOffset' in the
        /// request, this field indicates the largest epoch and its end offset such that subsequent
        /// records are known to diverge.
        pub diverging_epoch: EpochEndOffset [12.., tag = 0],
        /// The current leader of the partition.
        pub current_leader: LeaderIdAndEpoch [12.., tag = 1],
        /// In the case of fetching an offset less than the LogStartOffset, this is the end offset and
        /// epoch that should be used in the FetchSnapshot request.
        pub snapshot_id: SnapshotId [12.., tag = 2],
        /// The aborted transactions.
        pub aborted_transactions: Option<Vec<AbortedTransaction>> [4..],
        /// The preferred read replica for the consumer to use on its next fetch request.
        pub preferred_read_replica: i32 [11.., default = -1],
        /// The record data.
        pub records: Option<RecordSet> [0..],
    }
}

kafka_struct! {
    /// In case divergence is detected based on the 'LastFetchedEpoch' and 'FetchOffset' in the
    /// request, this field indicates the largest epoch and its end offset such that subsequent
    /// records are known to diverge.
    pub struct EpochEndOffset {
        /// The largest epoch.
        pub epoch: i32 [12.., default = -1],
        /// The end offset of the epoch.
        pub end_offset: i64 [12.., default = -1],
    }
}

kafka_struct! {
    /// The current leader of the partition.
    pub struct LeaderIdAndEpoch {
        /// The ID of the current leader or -1 if the leader is unknown.
        pub leader_id: i32 [12.., default = -1],
        /// The latest known leader epoch.
        pub leader_epoch: i32 [12.., default = -1],
    }
}

kafka_struct! {
    /// In the case of fetching an offset less than the LogStartOffset, this is the end offset and
    /// epoch that should be used in the FetchSnapshot request.
    pub struct SnapshotId {
        /// The end offset of the epoch.
        pub end_offset: i64 [0.., default = -1],
        /// The largest epoch.
        pub epoch: i32 [0.., default = -1],
    }
}

kafka_struct! {
    /// The aborted transactions.
    pub struct AbortedTransaction {
        /// The producer id associated with the aborted transaction.
        pub producer_id: i64 [4..],
        /// The first offset in the aborted transaction.
        pub first_offset: i64 [4..],
    }
}
