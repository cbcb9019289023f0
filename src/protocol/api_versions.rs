//! ApiVersions answers, built from the same API table that dispatch uses.
//!
//! Three quirks live here. A request at a version above ours is answered with a **v0** body holding
//! UNSUPPORTED_VERSION and our own ApiVersions range, without parsing the request body (KIP-511):
//! every client then retries at a version we support. Produce is advertised from version 0
//! although only 3+ is served, because librdkafka stops compressing when the advertised minimum
//! is above 0 (KAFKA-18659); requests at 0-2 carry magic 0/1 message sets and are answered with
//! UNSUPPORTED_VERSION (src/api/refused_versions.rs). Fetch 0-3 are decoded for the same answer
//! but advertised from 4, as Kafka 4 does: nothing would be served at those versions.

use bytes::Bytes;

use super::apis::{ApiKey, Response, Versions};
use super::error::CodecError;
use super::error_code::ErrorCode;
use super::frame::encode_response_frame;
use super::messages::api_versions::{ApiVersion, ApiVersionsResponse};

/// The lowest Fetch version whose responses hold RecordBatch v2 (magic 2) data.
pub const FETCH_VERSION_RECORD_BATCH_MIN: i16 = 4;

/// The lowest Produce version whose requests hold RecordBatch v2 (magic 2) data.
pub const PRODUCE_VERSION_RECORD_BATCH_MIN: i16 = 3;

/// The version range to advertise for an API the codec supports.
pub fn advertised_versions(api_key: ApiKey) -> Versions {
    let versions = api_key.versions();
    match api_key {
        ApiKey::Fetch => Versions {
            min: FETCH_VERSION_RECORD_BATCH_MIN,
            ..versions
        },
        _ => versions,
    }
}

/// The ApiVersions response advertising `api_keys` (the APIs that have handlers).
pub fn api_versions_response(api_keys: &[ApiKey]) -> ApiVersionsResponse {
    ApiVersionsResponse {
        api_keys: api_keys
            .iter()
            .map(|&api_key| {
                let versions = advertised_versions(api_key);
                ApiVersion {
                    api_key: api_key.code(),
                    min_version: versions.min,
                    max_version: versions.max,
                }
            })
            .collect(),
        ..ApiVersionsResponse::default()
    }
}

/// The frame answering an ApiVersions request at an unsupported version: header v0, body v0 with
/// UNSUPPORTED_VERSION and our ApiVersions range.
pub fn unsupported_version_frame(correlation_id: i32) -> Result<Vec<Bytes>, CodecError> {
    let mut response = api_versions_response(&[ApiKey::ApiVersions]);
    response.error_code = ErrorCode::UnsupportedVersion.code();
    encode_response_frame(correlation_id, 0, &Response::ApiVersions(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_version_answer_is_a_v0_body() {
        // Proves the exact bytes a client at a too-new ApiVersions version receives.
        let frame: Vec<u8> = unsupported_version_frame(9).unwrap().concat();
        let expected: Vec<u8> = [
            &0i32.to_be_bytes()[..], // size, patched below
            &9i32.to_be_bytes(),     // correlation id (header v0)
            &35i16.to_be_bytes(),    // UNSUPPORTED_VERSION
            &1i32.to_be_bytes(),     // one api key entry, classic array
            &18i16.to_be_bytes(),
            &0i16.to_be_bytes(),
            &4i16.to_be_bytes(),
        ]
        .concat();
        assert_eq!(&frame[4..], &expected[4..]);
        assert_eq!(
            frame.len() - 4,
            i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize
        );
    }

    #[test]
    fn produce_is_advertised_from_zero_and_fetch_from_four() {
        // Proves the librdkafka compression workaround stays in place, and Fetch is advertised
        // only where it serves RecordBatch v2, as Kafka 4 does.
        assert_eq!(advertised_versions(ApiKey::Produce).min, 0);
        assert_eq!(
            advertised_versions(ApiKey::Produce).max,
            ApiKey::Produce.versions().max
        );
        assert_eq!(advertised_versions(ApiKey::Fetch).min, 4);
        assert_eq!(
            advertised_versions(ApiKey::Fetch).max,
            ApiKey::Fetch.versions().max
        );
    }

    #[test]
    fn minimums_are_kafka_3_9s() {
        // Proves every API is decoded from the minimum Kafka 3.9 accepts (before KIP-896 removed
        // old versions in 4.0), so old clients get answers rather than a closed connection.
        for api_key in ApiKey::ALL {
            assert_eq!(api_key.versions().min, 0, "{api_key:?}");
        }
    }
}
