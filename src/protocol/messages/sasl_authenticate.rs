//! SaslAuthenticate: the request and response of api key 36, versions 0-2.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use bytes::Bytes;

use crate::kafka_struct;

kafka_struct! {
    /// SaslAuthenticate request (api key 36).
    pub struct SaslAuthenticateRequest {
        /// The SASL authentication bytes from the client, as defined by the SASL mechanism.
        pub auth_bytes: Bytes [0..],
    }
}

kafka_struct! {
    /// SaslAuthenticate response (api key 36).
    pub struct SaslAuthenticateResponse {
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The error message, or null if there was no error.
        pub error_message: Option<String> [0..],
        /// The SASL authentication bytes from the server, as defined by the SASL mechanism.
        pub auth_bytes: Bytes [0..],
        /// Number of milliseconds after which only re-authentication over the existing connection to
        /// create a new session can occur.
        pub session_lifetime_ms: i64 [1..],
    }
}
