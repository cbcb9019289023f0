//! SaslHandshake: the request and response of api key 17, versions 0-1.
//!
//! Declared from Kafka's message specification; see `schema.rs` for the DSL.

use crate::kafka_struct;

kafka_struct! {
    /// SaslHandshake request (api key 17).
    pub struct SaslHandshakeRequest {
        /// The SASL mechanism chosen by the client.
        pub mechanism: String [0..],
    }
}

kafka_struct! {
    /// SaslHandshake response (api key 17).
    pub struct SaslHandshakeResponse {
        /// The error code, or 0 if there was no error.
        pub error_code: i16 [0..],
        /// The mechanisms enabled in the server.
        pub mechanisms: Vec<String> [0..],
    }
}
