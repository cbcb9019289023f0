//! InitProducerId: ids for idempotent producers, and epoch bumps (v3+) when a producer asks to
//! keep its id. Transactions are not supported: a transactional id is refused.

use std::rc::Rc;

use crate::protocol::ErrorCode;
use crate::protocol::messages::init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use crate::shard::Shard;

use super::now_ms;

/// Answers an InitProducerId request.
pub fn handle_init_producer_id(
    shard: &Rc<Shard>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if request.transactional_id.is_some() {
        return InitProducerIdResponse {
            error_code: ErrorCode::TransactionalIdAuthorizationFailed.code(),
            ..InitProducerIdResponse::default()
        };
    }
    let bump = request.producer_id >= 0 && request.producer_epoch >= 0;
    let (producer_id, producer_epoch) = if bump && request.producer_epoch < i16::MAX - 1 {
        (request.producer_id, request.producer_epoch + 1)
    } else {
        // A new producer, or an epoch about to overflow: a fresh id starts again at epoch 0.
        (shard.producer_ids.next(now_ms()), 0)
    };
    InitProducerIdResponse {
        error_code: 0,
        producer_id,
        producer_epoch,
        ..InitProducerIdResponse::default()
    }
}
