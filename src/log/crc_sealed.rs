//! The small files of a partition directory that end in a CRC-32C (u32 LE) of everything before
//! it: the clean-shutdown marker, the recovery checkpoint and the log start offset.
//!
//! Guarantees: `unseal` returns the body only if the trailer matches, so a torn or damaged file
//! is refused whole instead of being misread.

use crate::protocol::record_batch::crc32c;

/// Bytes of the CRC-32C trailer.
pub const CRC_BYTES: usize = 4;

/// `body` followed by its CRC-32C.
pub fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32c(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// The body of sealed `bytes`; `None` if they are too short or the CRC-32C does not match.
pub fn unseal(bytes: &[u8]) -> Option<&[u8]> {
    let (body, crc) = bytes.split_last_chunk::<CRC_BYTES>()?;
    (crc32c(body) == u32::from_le_bytes(*crc)).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_body_unseals_and_any_damage_is_refused() {
        let sealed = seal(b"offsets".to_vec());
        assert_eq!(unseal(&sealed), Some(&b"offsets"[..]));
        for i in 0..sealed.len() {
            let mut damaged = sealed.clone();
            damaged[i] ^= 0x01;
            assert_eq!(unseal(&damaged), None, "byte {i}");
        }
        assert_eq!(unseal(&sealed[..sealed.len() - 1]), None);
        assert_eq!(unseal(&[]), None);
    }
}
