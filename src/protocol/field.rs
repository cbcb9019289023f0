//! How each wire type reads and writes itself, in classic and flexible (compact) encodings.
//!
//! A message declaration (see `schema.rs`) only names its fields' Rust types; this file maps those
//! types to Kafka's wire types: `String` and `Option<String>` are (nullable) strings, `Bytes` and
//! `Option<Bytes>` are (nullable) bytes and records, `Vec<T>` and `Option<Vec<T>>` are (nullable)
//! arrays, `Uuid` is a uuid. Lengths are checked against the bytes that remain before anything is
//! allocated, and byte fields are zero-copy slices of the frame.

use bytes::Bytes;

use super::error::CodecError;
use super::wire::{Reader, Writer};

/// Preallocation cap for decoded arrays: a checked count can still be large, so vectors beyond
/// this grow as elements actually decode instead of reserving memory up front.
const ARRAY_PREALLOCATE_MAX: usize = 64;

/// What a field needs to know to read or write itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    /// The API version of the enclosing message.
    pub version: i16,
    /// Whether that version uses compact lengths and tagged fields.
    pub flexible: bool,
    /// Whether null is allowed for this field in this version.
    pub nullable: bool,
}

impl Ctx {
    /// The context for a field of a message at `version`.
    pub fn field(self, nullable: bool) -> Self {
        Self { nullable, ..self }
    }
}

/// A value with a Kafka wire encoding.
pub trait Field: Sized {
    /// Decodes one value.
    fn read(reader: &mut Reader, ctx: Ctx) -> Result<Self, CodecError>;
    /// Encodes one value.
    fn write(&self, writer: &mut Writer, ctx: Ctx) -> Result<(), CodecError>;
}

/// A 16-byte UUID (Kafka's `uuid` type, e.g. topic ids).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

macro_rules! fixed_width_field {
    ($($ty:ty => $method:ident),* $(,)?) => {$(
        impl Field for $ty {
            fn read(reader: &mut Reader, _ctx: Ctx) -> Result<Self, CodecError> {
                reader.$method()
            }
            fn write(&self, writer: &mut Writer, _ctx: Ctx) -> Result<(), CodecError> {
                writer.$method(*self);
                Ok(())
            }
        }
    )*};
}

fixed_width_field!(i8 => i8, i16 => i16, i32 => i32, i64 => i64, u16 => u16, u32 => u32, f64 => f64);

impl Field for bool {
    fn read(reader: &mut Reader, _ctx: Ctx) -> Result<Self, CodecError> {
        Ok(reader.i8()? != 0)
    }
    fn write(&self, writer: &mut Writer, _ctx: Ctx) -> Result<(), CodecError> {
        writer.i8(i8::from(*self));
        Ok(())
    }
}

impl Field for Uuid {
    fn read(reader: &mut Reader, _ctx: Ctx) -> Result<Self, CodecError> {
        Ok(Uuid(reader.uuid()?))
    }
    fn write(&self, writer: &mut Writer, _ctx: Ctx) -> Result<(), CodecError> {
        writer.put_slice(&self.0);
        Ok(())
    }
}

/// The width of a classic (non-compact) length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LengthWidth {
    I16,
    I32,
}

/// A value that starts with a length, where a null is encoded in the length.
pub trait LengthPrefixed: Sized {
    /// Width of the classic length prefix.
    #[doc(hidden)]
    const WIDTH_I32: bool;
    /// Minimum encoded size of one counted unit, for bounding the count.
    #[doc(hidden)]
    const UNIT_BYTES_MIN: usize;
    /// Reads the value after its (non-null) length.
    fn read_body(reader: &mut Reader, length: usize, ctx: Ctx) -> Result<Self, CodecError>;
    /// The length to write.
    fn length(&self) -> usize;
    /// Writes the value after its length.
    fn write_body(&self, writer: &mut Writer, ctx: Ctx) -> Result<(), CodecError>;
}

fn width<T: LengthPrefixed>() -> LengthWidth {
    if T::WIDTH_I32 {
        LengthWidth::I32
    } else {
        LengthWidth::I16
    }
}

/// Reads a length prefix; `None` is the null marker. The length is checked against what remains.
fn read_length<T: LengthPrefixed>(
    reader: &mut Reader,
    ctx: Ctx,
) -> Result<Option<usize>, CodecError> {
    let length: i64 = if ctx.flexible {
        i64::from(reader.uvarint()?) - 1
    } else {
        match width::<T>() {
            LengthWidth::I16 => i64::from(reader.i16()?),
            LengthWidth::I32 => i64::from(reader.i32()?),
        }
    };
    if length == -1 {
        return Ok(None);
    }
    reader.check_length(length, T::UNIT_BYTES_MIN).map(Some)
}

fn write_length<T: LengthPrefixed>(
    writer: &mut Writer,
    length: Option<usize>,
    ctx: Ctx,
) -> Result<(), CodecError> {
    let too_long = |length| CodecError::ValueTooLong { length };
    match (ctx.flexible, length) {
        (true, None) => writer.uvarint(0),
        (true, Some(n)) => {
            let n = u32::try_from(n)
                .ok()
                .and_then(|n| n.checked_add(1))
                .ok_or(too_long(n))?;
            writer.uvarint(n)
        }
        (false, None) => match width::<T>() {
            LengthWidth::I16 => writer.i16(-1),
            LengthWidth::I32 => writer.i32(-1),
        },
        (false, Some(n)) => match width::<T>() {
            LengthWidth::I16 => writer.i16(i16::try_from(n).map_err(|_| too_long(n))?),
            LengthWidth::I32 => writer.i32(i32::try_from(n).map_err(|_| too_long(n))?),
        },
    }
    Ok(())
}

impl LengthPrefixed for String {
    const WIDTH_I32: bool = false;
    const UNIT_BYTES_MIN: usize = 1;
    fn read_body(reader: &mut Reader, length: usize, _ctx: Ctx) -> Result<Self, CodecError> {
        let raw = reader.take(length)?;
        let text = std::str::from_utf8(&raw).map_err(|_| CodecError::InvalidUtf8)?;
        Ok(text.to_owned())
    }
    fn length(&self) -> usize {
        self.len()
    }
    fn write_body(&self, writer: &mut Writer, _ctx: Ctx) -> Result<(), CodecError> {
        writer.put_slice(self.as_bytes());
        Ok(())
    }
}

impl LengthPrefixed for Bytes {
    const WIDTH_I32: bool = true;
    const UNIT_BYTES_MIN: usize = 1;
    fn read_body(reader: &mut Reader, length: usize, _ctx: Ctx) -> Result<Self, CodecError> {
        reader.take(length)
    }
    fn length(&self) -> usize {
        self.len()
    }
    fn write_body(&self, writer: &mut Writer, _ctx: Ctx) -> Result<(), CodecError> {
        writer.put_bytes(self);
        Ok(())
    }
}

impl<T: Field> LengthPrefixed for Vec<T> {
    const WIDTH_I32: bool = true;
    // Every element type encodes to at least one byte (the smallest is an i8 or an empty
    // compact string), so a count above the bytes remaining cannot be honest.
    const UNIT_BYTES_MIN: usize = 1;
    fn read_body(reader: &mut Reader, length: usize, ctx: Ctx) -> Result<Self, CodecError> {
        let element_ctx = ctx.field(false);
        let mut out = Vec::with_capacity(length.min(ARRAY_PREALLOCATE_MAX));
        for _ in 0..length {
            out.push(T::read(reader, element_ctx)?);
        }
        Ok(out)
    }
    fn length(&self) -> usize {
        self.len()
    }
    fn write_body(&self, writer: &mut Writer, ctx: Ctx) -> Result<(), CodecError> {
        let element_ctx = ctx.field(false);
        for element in self {
            element.write(writer, element_ctx)?;
        }
        Ok(())
    }
}

/// A record set made of several `Bytes` chunks (whole batches from the log or its cache), encoded
/// as one `records` field without joining them: each chunk is spliced into the output. Decoding
/// yields a single chunk, the slice of the frame.
#[derive(Debug, Clone, Default)]
pub struct RecordSet(pub Vec<Bytes>);

impl RecordSet {
    /// Total bytes across the chunks.
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes as one buffer (copies unless there is a single chunk).
    pub fn to_bytes(&self) -> Bytes {
        match self.0.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }
}

impl PartialEq for RecordSet {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

impl From<Bytes> for RecordSet {
    fn from(bytes: Bytes) -> Self {
        RecordSet(vec![bytes])
    }
}

impl LengthPrefixed for RecordSet {
    const WIDTH_I32: bool = true;
    const UNIT_BYTES_MIN: usize = 1;
    fn read_body(reader: &mut Reader, length: usize, _ctx: Ctx) -> Result<Self, CodecError> {
        Ok(RecordSet(vec![reader.take(length)?]))
    }
    fn length(&self) -> usize {
        self.len()
    }
    fn write_body(&self, writer: &mut Writer, _ctx: Ctx) -> Result<(), CodecError> {
        for chunk in &self.0 {
            writer.put_bytes(chunk);
        }
        Ok(())
    }
}

macro_rules! length_prefixed_field {
    ($($ty:ty),* $(,)?) => {$(
        impl Field for $ty {
            fn read(reader: &mut Reader, ctx: Ctx) -> Result<Self, CodecError> {
                match read_length::<Self>(reader, ctx)? {
                    Some(length) => Self::read_body(reader, length, ctx),
                    None => Err(CodecError::UnexpectedNull),
                }
            }
            fn write(&self, writer: &mut Writer, ctx: Ctx) -> Result<(), CodecError> {
                write_length::<Self>(writer, Some(self.length()), ctx)?;
                self.write_body(writer, ctx)
            }
        }
    )*};
}

length_prefixed_field!(String, Bytes, RecordSet);

impl<T: Field> Field for Vec<T> {
    fn read(reader: &mut Reader, ctx: Ctx) -> Result<Self, CodecError> {
        match read_length::<Self>(reader, ctx)? {
            Some(length) => Self::read_body(reader, length, ctx),
            None => Err(CodecError::UnexpectedNull),
        }
    }
    fn write(&self, writer: &mut Writer, ctx: Ctx) -> Result<(), CodecError> {
        write_length::<Self>(writer, Some(self.length()), ctx)?;
        self.write_body(writer, ctx)
    }
}

impl<T: LengthPrefixed + Field> Field for Option<T> {
    fn read(reader: &mut Reader, ctx: Ctx) -> Result<Self, CodecError> {
        match read_length::<T>(reader, ctx)? {
            Some(length) => T::read_body(reader, length, ctx).map(Some),
            None if ctx.nullable => Ok(None),
            None => Err(CodecError::UnexpectedNull),
        }
    }
    fn write(&self, writer: &mut Writer, ctx: Ctx) -> Result<(), CodecError> {
        match self {
            Some(value) => {
                write_length::<T>(writer, Some(value.length()), ctx)?;
                value.write_body(writer, ctx)
            }
            None if ctx.nullable => write_length::<T>(writer, None, ctx),
            None => Err(CodecError::UnexpectedNull),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(flexible: bool) -> Ctx {
        Ctx {
            version: 0,
            flexible,
            nullable: true,
        }
    }

    #[test]
    fn hostile_array_count_is_rejected_before_allocation() {
        // Proves an array claiming i32::MAX elements in a 4-byte body is an error, not an abort.
        let mut reader = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]));
        let result = Vec::<i64>::read(&mut reader, ctx(false));
        assert!(matches!(result, Err(CodecError::InvalidLength { .. })));
    }

    #[test]
    fn null_handling_follows_the_version() {
        // Proves null decodes only where the field is nullable, in both encodings.
        for flexible in [false, true] {
            let mut writer = Writer::new();
            None::<String>.write(&mut writer, ctx(flexible)).unwrap();
            let bytes = writer.into_bytes();
            let decoded = Option::<String>::read(&mut Reader::new(bytes.clone()), ctx(flexible));
            assert_eq!(decoded, Ok(None));
            let strict = Ctx {
                nullable: false,
                ..ctx(flexible)
            };
            let decoded = Option::<String>::read(&mut Reader::new(bytes.clone()), strict);
            assert_eq!(decoded, Err(CodecError::UnexpectedNull));
            let decoded = String::read(&mut Reader::new(bytes), ctx(flexible));
            assert_eq!(decoded, Err(CodecError::UnexpectedNull));
        }
    }

    #[test]
    fn decoded_bytes_point_into_the_frame() {
        // Proves a bytes field is a slice of the input, not a copy.
        let mut frame = vec![0, 0, 0, 5];
        frame.extend_from_slice(b"hello");
        let frame = Bytes::from(frame);
        let value = Bytes::read(&mut Reader::new(frame.clone()), ctx(false)).unwrap();
        assert_eq!(&value[..], b"hello");
        assert_eq!(value.as_ptr(), frame[4..].as_ptr());
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        // Proves a string with bad UTF-8 is a typed error.
        let frame = Bytes::from_static(&[0, 2, 0xc3, 0x28]);
        assert_eq!(
            String::read(&mut Reader::new(frame), ctx(false)),
            Err(CodecError::InvalidUtf8)
        );
    }
}
