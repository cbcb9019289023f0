//! The small files that end in a CRC-32C (u32 LE) of everything before it: a partition's
//! clean-shutdown marker, recovery checkpoint and log start offset, a replicated partition's
//! Raft state, a shard's Raft votes.
//!
//! Guarantees: `unseal` returns the body only if the trailer matches, so a torn or damaged file
//! is refused whole instead of being misread.

use std::io;
use std::path::Path;

use crate::protocol::record_batch::crc32c;

use super::segment::write_file_atomically;

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

/// The body of the sealed file at `path`: `Ok(None)` when there is no file, an `InvalidData`
/// error naming the file when its CRC-32C does not match. Blocking.
pub fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let body = unseal(&bytes).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is damaged: CRC-32C mismatch", path.display()),
        )
    })?;
    Ok(Some(body.to_vec()))
}

/// Replaces the file at `path` with `body` sealed, atomically and durably. Blocking.
pub fn write_file(path: &Path, body: Vec<u8>) -> io::Result<()> {
    write_file_atomically(path, &seal(body))
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
