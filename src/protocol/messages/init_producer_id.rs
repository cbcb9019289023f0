//! InitProducerId: the request and response of api key 22, versions 0-5.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// InitProducerId request (api key 22).
    pub struct InitProducerIdRequest {
        /// The transactional id, or null if the producer is not transactional.
        pub transactional_id: Option<String> [0..],
        /// The time in ms to wait before aborting idle transactions sent by this producer. This is
        /// only relevant if a TransactionalId has been defined.
        pub transaction_timeout_ms: i32 [0..],
        /// The producer id. This is used to disambiguate requests if a transactional id is reused
        /// following its expiration.
        pub producer_id: i64 [3.., default = -1],
        /// The producer's current epoch. This will be checked against the producer epoch on the
        /// broker, and the request will return an error if they do not match.
        pub producer_epoch: i16 [3.., default = -1],
    }
}

kafka_struct! {
    /// InitProducerId response (api key 22).
    pub struct InitProducerIdResponse {
        /// The duration in milliseconds for which the request was throttled due to a quota violation,
        /// or zero if the request did not violate any quota.
        pub throttle_time_ms: i32 [0..],
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The current producer id.
        pub producer_id: i64 [0.., default = -1],
        /// The current epoch associated with the producer id.
        pub producer_epoch: i16 [0..],
    }
}
