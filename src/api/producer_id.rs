//! InitProducerId: ids for idempotent producers. Transactions are not supported: a transactional
//! id is refused.
//!
//! As Kafka's TransactionCoordinator does for a producer without a transactional id, every
//! request gets a fresh producer id at epoch 0, whatever producer id and epoch it names (v3+,
//! KIP-360): the broker keeps no epoch per id outside the partitions, so bumping the named id's
//! epoch would let any client fence any producer. An idempotent client bumps its epoch itself
//! (the partitions accept a higher epoch starting at sequence 0) or asks for a new id here.
//! Naming only one of the two is INVALID_REQUEST, as Kafka's KafkaApis answers.

use std::rc::Rc;

use crate::protocol::ErrorCode;
use crate::protocol::messages::init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use crate::shard::Shard;

use super::now_ms;

/// Kafka's "no producer id" and "no epoch".
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

/// Answers an InitProducerId request.
pub fn handle_init_producer_id(
    shard: &Rc<Shard>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refuse = |error: ErrorCode| InitProducerIdResponse {
        error_code: error.code(),
        ..InitProducerIdResponse::default()
    };
    if request.transactional_id.is_some() {
        return refuse(ErrorCode::TransactionalIdAuthorizationFailed);
    }
    let id_named = request.producer_id != NO_PRODUCER_ID;
    let epoch_named = request.producer_epoch != NO_PRODUCER_EPOCH;
    if id_named != epoch_named {
        return refuse(ErrorCode::InvalidRequest);
    }
    InitProducerIdResponse {
        error_code: 0,
        producer_id: shard.producer_ids.next(now_ms()),
        producer_epoch: 0,
        ..InitProducerIdResponse::default()
    }
}
