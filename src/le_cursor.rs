//! `LeCursor`: reads the little-endian fields of Spate's own record files (the metadata log and
//! the group offset store).
//!
//! Every read returns `None` when the field does not fit in what remains, so a torn or corrupt
//! record is rejected whole instead of being misread.

/// A read position in one record's bytes.
pub struct LeCursor<'a> {
    bytes: &'a [u8],
}

impl<'a> LeCursor<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    /// The next byte.
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// The next u16.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    /// The next u32.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// The next i32.
    pub fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// The next i64.
    pub fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A u32 length, then that many bytes of UTF-8.
    pub fn string(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    /// A string, or `u32::MAX` alone for none.
    pub fn nullable_string(&mut self) -> Option<Option<String>> {
        if self.bytes.get(..4)? == u32::MAX.to_le_bytes() {
            self.take(4)?;
            return Some(None);
        }
        Some(Some(self.string()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_in_order_and_a_short_field_is_none() {
        let mut bytes = Vec::new();
        bytes.push(7u8);
        bytes.extend_from_slice(&513u16.to_le_bytes());
        bytes.extend_from_slice(&(-5i32).to_le_bytes());
        bytes.extend_from_slice(&(1i64 << 40).to_le_bytes());
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(b"abc");
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&9u32.to_le_bytes());
        bytes.extend_from_slice(b"short");
        let mut cursor = LeCursor::new(&bytes);
        assert_eq!(cursor.u8(), Some(7));
        assert_eq!(cursor.u16(), Some(513));
        assert_eq!(cursor.i32(), Some(-5));
        assert_eq!(cursor.i64(), Some(1 << 40));
        assert_eq!(cursor.string().as_deref(), Some("abc"));
        assert_eq!(cursor.nullable_string(), Some(None));
        // A length of 9 with 5 bytes left: the record is torn.
        assert_eq!(cursor.string(), None);
    }
}
