//! The message DSL: one declaration per struct, from which decode, encode and defaults derive.
//!
//! ```ignore
//! kafka_struct! {
//!     /// One partition's data in a produce request.
//!     pub struct PartitionProduceData {
//!         /// The partition index.
//!         pub index: i32 [0..],
//!         /// The record data to be produced.
//!         pub records: Option<Bytes> [0..],
//!         /// A field that exists only from version 10, encoded as tag 0.
//!         pub current_leader: LeaderIdAndEpoch [10.., tag = 0],
//!     }
//! }
//! ```
//!
//! Each field names its Rust type (which fixes the wire type, see `field.rs`) and, in brackets, the
//! versions it exists in, then optionally `nullable = VERSIONS` (default: every version, only
//! meaningful for `Option` types), `default = EXPR` (the value when absent; Kafka's schema default),
//! and `tag = N` for a tagged field of flexible versions. Version ranges are Rust ranges of i16.
//!
//! Decoding reads the fields present in the version, in order, then (in flexible versions) the
//! tagged-field section, skipping tags it does not know. Encoding writes the fields present in the
//! version and silently omits the others (Kafka's "ignorable" behaviour, applied to every field, so
//! a handler can fill one response for all versions). Tagged fields are written only when they
//! differ from their default, in declaration order, which must be ascending tag order.

/// Version-range membership for the DSL.
#[doc(hidden)]
pub fn in_versions(range: &impl core::ops::RangeBounds<i16>, version: i16) -> bool {
    range.contains(&version)
}

/// Declares a Kafka message struct and derives its codec.
#[macro_export]
macro_rules! kafka_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                pub $field:ident : $ty:ty [
                    $versions:expr
                    $(, nullable = $nullable:expr)?
                    $(, default = $default:expr)?
                    $(, tag = $tag:literal)?
                ]
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                pub $field: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $( $field: $crate::__field_default!($ty $(, $default)?), )*
                }
            }
        }

        impl $crate::protocol::field::Field for $name {
            #[allow(unused_variables, unused_mut)]
            fn read(
                reader: &mut $crate::protocol::wire::Reader,
                ctx: $crate::protocol::field::Ctx,
            ) -> Result<Self, $crate::protocol::error::CodecError> {
                use $crate::protocol::schema::in_versions;
                let version = ctx.version;
                let mut this = Self::default();
                $(
                    if $crate::__field_tag!($($tag)?).is_none() && in_versions(&($versions), version) {
                        let nullable = $crate::__field_nullable!(version $(, $nullable)?);
                        this.$field = <$ty as $crate::protocol::field::Field>::read(reader, ctx.field(nullable))?;
                    }
                )*
                if ctx.flexible {
                    let count = reader.uvarint()?;
                    // A tagged field takes at least two bytes: its tag and its size.
                    reader.check_length(i64::from(count), 2)?;
                    for _ in 0..count {
                        let tag = reader.uvarint()?;
                        let size = reader.uvarint()?;
                        let size = reader.check_length(i64::from(size), 1)?;
                        let mut field_reader = $crate::protocol::wire::Reader::new(reader.take(size)?);
                        $(
                            if $crate::__field_tag!($($tag)?) == Some(tag)
                                && in_versions(&($versions), version)
                            {
                                let nullable = $crate::__field_nullable!(version $(, $nullable)?);
                                this.$field = <$ty as $crate::protocol::field::Field>::read(
                                    &mut field_reader,
                                    ctx.field(nullable),
                                )?;
                            }
                        )*
                    }
                }
                Ok(this)
            }

            #[allow(unused_variables, unused_mut)]
            fn write(
                &self,
                writer: &mut $crate::protocol::wire::Writer,
                ctx: $crate::protocol::field::Ctx,
            ) -> Result<(), $crate::protocol::error::CodecError> {
                use $crate::protocol::schema::in_versions;
                let version = ctx.version;
                $(
                    if $crate::__field_tag!($($tag)?).is_none() && in_versions(&($versions), version) {
                        let nullable = $crate::__field_nullable!(version $(, $nullable)?);
                        $crate::protocol::field::Field::write(&self.$field, writer, ctx.field(nullable))?;
                    }
                )*
                if ctx.flexible {
                    let mut count: u32 = 0;
                    $(
                        if $crate::__field_tag!($($tag)?).is_some()
                            && in_versions(&($versions), version)
                            && self.$field != $crate::__field_default!($ty $(, $default)?)
                        {
                            count += 1;
                        }
                    )*
                    writer.uvarint(count);
                    $(
                        if let Some(tag) = $crate::__field_tag!($($tag)?) {
                            if in_versions(&($versions), version)
                                && self.$field != $crate::__field_default!($ty $(, $default)?)
                            {
                                let nullable = $crate::__field_nullable!(version $(, $nullable)?);
                                let mut value = $crate::protocol::wire::Writer::new();
                                $crate::protocol::field::Field::write(&self.$field, &mut value, ctx.field(nullable))?;
                                let value = value.into_bytes();
                                let size = u32::try_from(value.len()).map_err(|_| {
                                    $crate::protocol::error::CodecError::ValueTooLong {
                                        length: value.len(),
                                    }
                                })?;
                                writer.uvarint(tag);
                                writer.uvarint(size);
                                writer.put_slice(&value);
                            }
                        }
                    )*
                }
                Ok(())
            }
        }

        #[cfg(test)]
        impl $crate::protocol::sample::Sample for $name {
            #[allow(unused_variables, unused_mut)]
            fn sample(
                rng: &mut $crate::protocol::sample::SampleRng,
                ctx: $crate::protocol::field::Ctx,
            ) -> Self {
                use $crate::protocol::schema::in_versions;
                let version = ctx.version;
                let mut this = Self::default();
                $(
                    let tagged = $crate::__field_tag!($($tag)?).is_some();
                    if in_versions(&($versions), version) && (!tagged || ctx.flexible) {
                        let nullable = $crate::__field_nullable!(version $(, $nullable)?);
                        this.$field = <$ty as $crate::protocol::sample::Sample>::sample(
                            rng,
                            ctx.field(nullable),
                        );
                    }
                )*
                this
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_default {
    ($ty:ty) => {
        <$ty as Default>::default()
    };
    ($ty:ty, $default:expr) => {
        $default
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_tag {
    () => {
        None::<u32>
    };
    ($tag:literal) => {
        Some::<u32>($tag)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_nullable {
    ($version:ident) => {
        true
    };
    ($version:ident, $nullable:expr) => {
        $crate::protocol::schema::in_versions(&($nullable), $version)
    };
}
