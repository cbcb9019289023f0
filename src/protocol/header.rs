//! Request and response headers.
//!
//! Request header v0 is api key, version and correlation id; v1 adds `client_id`, which stays a
//! classic INT16-length nullable string in every version (even flexible ones); v2 adds tagged
//! fields. Response header v0 is the correlation id; v1 adds tagged fields. Which version applies
//! is decided by the API table (`ApiKey::request_header_version`, `response_header_version`).

use super::apis::ApiKey;
use super::error::CodecError;
use super::field::{Ctx, Field};
use super::wire::{Reader, Writer};

/// A decoded request header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHeader {
    /// The API key, possibly one Spate does not know.
    pub api_key: i16,
    /// The API version the client chose.
    pub api_version: i16,
    /// Echoed in the response so the client can match it.
    pub correlation_id: i32,
    /// The client's self-chosen name, if sent.
    pub client_id: Option<String>,
}

const CLIENT_ID_CTX: Ctx = Ctx {
    version: 1,
    flexible: false,
    nullable: true,
};

impl RequestHeader {
    /// Decodes a header from the start of a frame, leaving the reader at the body. An unknown API
    /// key is not an error here: the caller answers or closes with the correlation id in hand.
    pub fn decode(reader: &mut Reader) -> Result<Self, CodecError> {
        let api_key = reader.i16()?;
        let api_version = reader.i16()?;
        let correlation_id = reader.i32()?;
        let client_id = Option::<String>::read(reader, CLIENT_ID_CTX)?;
        let flexible = ApiKey::from_code(api_key).is_some_and(|key| key.is_flexible(api_version));
        if flexible {
            skip_tagged_fields(reader)?;
        }
        Ok(Self {
            api_key,
            api_version,
            correlation_id,
            client_id,
        })
    }

    /// Encodes the header for `api_key` (client side).
    pub fn encode(&self, writer: &mut Writer) -> Result<(), CodecError> {
        writer.i16(self.api_key);
        writer.i16(self.api_version);
        writer.i32(self.correlation_id);
        self.client_id.write(writer, CLIENT_ID_CTX)?;
        let flexible =
            ApiKey::from_code(self.api_key).is_some_and(|key| key.is_flexible(self.api_version));
        if flexible {
            writer.uvarint(0);
        }
        Ok(())
    }
}

/// A response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResponseHeader {
    /// The correlation id of the request this answers.
    pub correlation_id: i32,
}

impl ResponseHeader {
    /// Encodes the header in `header_version` (0 or 1).
    pub fn encode(&self, writer: &mut Writer, header_version: i16) {
        writer.i32(self.correlation_id);
        if header_version >= 1 {
            writer.uvarint(0);
        }
    }

    /// Decodes a header in `header_version` (client side), skipping any tagged fields.
    pub fn decode(reader: &mut Reader, header_version: i16) -> Result<Self, CodecError> {
        let correlation_id = reader.i32()?;
        if header_version >= 1 {
            skip_tagged_fields(reader)?;
        }
        Ok(Self { correlation_id })
    }
}

fn skip_tagged_fields(reader: &mut Reader) -> Result<(), CodecError> {
    let count = reader.uvarint()?;
    reader.check_length(i64::from(count), 2)?;
    for _ in 0..count {
        reader.uvarint()?;
        let size = reader.uvarint()?;
        reader.skip(size as usize)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn flexible_header_keeps_a_classic_client_id() {
        // Proves header v2 encodes client_id with an INT16 length and then an empty tag section.
        let header = RequestHeader {
            api_key: ApiKey::ApiVersions.code(),
            api_version: 3,
            correlation_id: 7,
            client_id: Some("rdkafka".into()),
        };
        let mut writer = Writer::new();
        header.encode(&mut writer).unwrap();
        let bytes = writer.into_bytes();
        assert_eq!(&bytes[8..10], &[0, 7]);
        assert_eq!(bytes.len(), 8 + 2 + 7 + 1);
        let decoded = RequestHeader::decode(&mut Reader::new(bytes)).unwrap();
        assert_eq!(decoded, header);
    }

    #[test]
    fn every_truncation_of_a_header_is_an_error() {
        // Proves frames shorter than a header (including under 4 bytes) are errors, not panics.
        let header = RequestHeader {
            api_key: ApiKey::Metadata.code(),
            api_version: 12,
            correlation_id: 1,
            client_id: Some("client".into()),
        };
        let mut writer = Writer::new();
        header.encode(&mut writer).unwrap();
        let bytes = writer.into_bytes();
        for len in 0..bytes.len() {
            let result = RequestHeader::decode(&mut Reader::new(bytes.slice(..len)));
            assert!(result.is_err(), "length {len}");
        }
        let unknown = Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
        let decoded = RequestHeader::decode(&mut Reader::new(unknown)).unwrap();
        assert_eq!(decoded.api_key, 0x7f7f);
        assert_eq!(decoded.client_id, None);
    }
}
