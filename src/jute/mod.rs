//! Jute, ZooKeeper's binary serialization: the primitive encodings and the `Encode`/`Decode` pair
//! every wire, log and snapshot record implements.
//!
//! Owns: how `int`, `long`, `boolean`, `buffer`, `ustring` and `vector` look on the wire
//! (PROTOCOL.md §1.1), the null (-1) rules, and length checks done before any allocation.
//! Must not touch: sockets, framing policy (the 4-byte frame length lives in `proto::frame`), or
//! any record definition (those live in `proto`).
//!
//! Invariants: decoding never panics and never allocates more than the bytes still unread in the
//! input (a length or count larger than what remains is `DecodeError::Truncated`, checked before
//! allocating), so a hostile frame costs at most its own size.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a record could not be decoded. Inside a complete frame every one of these means "bad bytes":
/// the caller answers with ZooKeeper's MarshallingError or closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the record did (or a length points past the end).
    #[error("record truncated: needed {needed} more bytes, {remaining} remain")]
    Truncated {
        /// Bytes the next field needed.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A length or count below -1.
    #[error("unreasonable length {0}")]
    BadLength(i32),
    /// A value outside the set the field allows (unknown opcode inside a multi, bad enum value).
    #[error("invalid value: {0}")]
    Invalid(String),
}

/// A value with a jute wire form.
pub trait Encode {
    /// Appends the wire form of `self`.
    fn encode(&self, out: &mut BytesMut);

    /// Exact number of bytes `encode` appends. Records reserve this much before encoding, so a
    /// reply is built in one allocation instead of a chain of reallocations (callgrind under
    /// getData load: realloc and BytesMut growth were ~8% of the server's instructions).
    fn encoded_len(&self) -> usize;
}

/// A value that can be read back from its jute wire form. Reads consume from the front of `input`.
pub trait Decode: Sized {
    /// Reads one value from the front of `input`.
    fn decode(input: &mut Bytes) -> Result<Self, DecodeError>;
}

fn need(input: &Bytes, needed: usize) -> Result<(), DecodeError> {
    if input.remaining() < needed {
        return Err(DecodeError::Truncated { needed, remaining: input.remaining() });
    }
    Ok(())
}

/// Reads a length prefix: -1 is null (`None`); other negatives are errors; a length longer than the
/// remaining input is `Truncated` (so callers may allocate it safely).
fn decode_length(input: &mut Bytes) -> Result<Option<usize>, DecodeError> {
    let len = i32::decode(input)?;
    check_length(len, input.remaining())
}

/// The rules of a length prefix `len` with `remaining` bytes after it (`decode_length`).
fn check_length(len: i32, remaining: usize) -> Result<Option<usize>, DecodeError> {
    match len {
        -1 => Ok(None),
        l if l < -1 => Err(DecodeError::BadLength(l)),
        l if l as usize > remaining => Err(DecodeError::Truncated { needed: l as usize, remaining }),
        l => Ok(Some(l as usize)),
    }
}

/// Jute read from a borrowed slice, for a hot path that copies what it reads anyway (loading a
/// snapshot into the tree): the encodings and rules of `Decode`, without splitting `Bytes` off
/// the input (a reference count each) or allocating. Each function consumes from the front.
pub mod borrowed {
    use super::{check_length, DecodeError};

    /// The next `n` bytes.
    pub fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
        if input.len() < n {
            return Err(DecodeError::Truncated { needed: n, remaining: input.len() });
        }
        let (head, rest) = input.split_at(n);
        *input = rest;
        Ok(head)
    }

    /// An `int`.
    pub fn int(input: &mut &[u8]) -> Result<i32, DecodeError> {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(take(input, 4)?);
        Ok(i32::from_be_bytes(raw))
    }

    /// A `long`.
    pub fn long(input: &mut &[u8]) -> Result<i64, DecodeError> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(take(input, 8)?);
        Ok(i64::from_be_bytes(raw))
    }

    /// A `buffer`'s bytes, `None` when null.
    pub fn buffer<'a>(input: &mut &'a [u8]) -> Result<Option<&'a [u8]>, DecodeError> {
        let len = int(input)?;
        match check_length(len, input.len())? {
            None => Ok(None),
            Some(len) => take(input, len).map(Some),
        }
    }

    /// A `ustring`, as `String`'s decoder reads it: null as empty, bytes that are not UTF-8 lossily.
    pub fn ustring<'a>(input: &mut &'a [u8]) -> Result<std::borrow::Cow<'a, str>, DecodeError> {
        let bytes = buffer(input)?.unwrap_or_default();
        // `from_utf8` first: its check of valid text (nearly all) is several times faster than
        // `from_utf8_lossy`'s chunking, which was 5% of a snapshot load's reading thread (`perf`).
        Ok(match std::str::from_utf8(bytes) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        })
    }
}

impl Encode for i32 {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(*self);
    }
    fn encoded_len(&self) -> usize {
        4
    }
}
impl Decode for i32 {
    fn decode(input: &mut Bytes) -> Result<Self, DecodeError> {
        need(input, 4)?;
        Ok(input.get_i32())
    }
}
impl Encode for i64 {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i64(*self);
    }
    fn encoded_len(&self) -> usize {
        8
    }
}
impl Decode for i64 {
    fn decode(input: &mut Bytes) -> Result<Self, DecodeError> {
        need(input, 8)?;
        Ok(input.get_i64())
    }
}
impl Encode for bool {
    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(u8::from(*self));
    }
    fn encoded_len(&self) -> usize {
        1
    }
}
impl Decode for bool {
    /// Java's `readBoolean`: any non-zero byte is true.
    fn decode(input: &mut Bytes) -> Result<Self, DecodeError> {
        need(input, 1)?;
        Ok(input.get_u8() != 0)
    }
}

/// `ustring`: null decodes as the empty string (kazoo sends "" as null, PROTOCOL.md §1.2);
/// bytes that are not UTF-8 are decoded lossily, as the Java reader does.
impl Encode for String {
    fn encode(&self, out: &mut BytesMut) {
        encode_str(self, out);
    }
    fn encoded_len(&self) -> usize {
        4 + self.len()
    }
}
impl Decode for String {
    fn decode(input: &mut Bytes) -> Result<Self, DecodeError> {
        match decode_length(input)? {
            None => Ok(String::new()),
            Some(len) => {
                let raw = input.split_to(len);
                Ok(match std::str::from_utf8(&raw) {
                    Ok(s) => s.to_owned(),
                    Err(_) => String::from_utf8_lossy(&raw).into_owned(),
                })
            }
        }
    }
}

/// Encodes a `ustring` from a borrowed string.
pub fn encode_str(s: &str, out: &mut BytesMut) {
    encode_utf8(s.as_bytes(), out);
}

/// Encodes a `ustring` from its UTF-8 bytes.
fn encode_utf8(bytes: &[u8], out: &mut BytesMut) {
    out.put_i32(bytes.len() as i32);
    out.put_slice(bytes);
}

/// Encodes a `vector<ustring>` from borrowed strings, each as its UTF-8 bytes (`&str` or, from the
/// tree, `&[u8]`): the same bytes as `Vec<String>::encode`. The count is patched in after the
/// walk, so it is exact whatever the iterator's size hint says.
pub fn encode_str_vector<S: AsRef<[u8]>>(items: impl Iterator<Item = S>, out: &mut BytesMut) {
    let count_at = out.len();
    out.put_i32(0);
    let mut count: i32 = 0;
    for item in items {
        encode_utf8(item.as_ref(), out);
        count += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
}

/// Encodes a nullable `buffer` from a borrowed slice.
pub fn encode_buffer(data: Option<&[u8]>, out: &mut BytesMut) {
    match data {
        None => out.put_i32(-1),
        Some(d) => {
            out.put_i32(d.len() as i32);
            out.put_slice(d);
        }
    }
}

/// `buffer` where null and empty are the same to the reader (passwords, auth tokens).
impl Encode for Bytes {
    fn encode(&self, out: &mut BytesMut) {
        encode_buffer(Some(self), out);
    }
    fn encoded_len(&self) -> usize {
        4 + self.len()
    }
}
impl Decode for Bytes {
    fn decode(input: &mut Bytes) -> Result<Self, DecodeError> {
        Ok(decode_length(input)?.map(|len| input.split_to(len)).unwrap_or_default())
    }
}
/// `buffer` where null is kept distinct from empty (znode data: a node created with null data
/// answers getData with a null buffer, as ZooKeeper does).
impl Encode for Option<Bytes> {
    fn encode(&self, out: &mut BytesMut) {
        encode_buffer(self.as_deref(), out);
    }
    fn encoded_len(&self) -> usize {
        4 + self.as_ref().map_or(0, Bytes::len)
    }
}
impl Decode for Option<Bytes> {
    fn decode(input: &mut Bytes) -> Result<Self, DecodeError> {
        Ok(decode_length(input)?.map(|len| input.split_to(len)))
    }
}

/// `vector<T>`: null decodes as empty. The count is checked against the remaining input before
/// allocating (every element takes at least one byte).
impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.len() as i32);
        for item in self {
            item.encode(out);
        }
    }
    fn encoded_len(&self) -> usize {
        4 + self.iter().map(Encode::encoded_len).sum::<usize>()
    }
}
impl<T: Decode> Decode for Vec<T> {
    fn decode(input: &mut Bytes) -> Result<Self, DecodeError> {
        let count = i32::decode(input)?;
        if count == -1 {
            return Ok(Vec::new());
        }
        if count < -1 {
            return Err(DecodeError::BadLength(count));
        }
        let count = count as usize;
        need(input, count)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(T::decode(input)?);
        }
        Ok(items)
    }
}

/// Serializes one record into a fresh buffer.
pub fn to_bytes<T: Encode + ?Sized>(value: &T) -> Bytes {
    let mut out = BytesMut::with_capacity(value.encoded_len());
    value.encode(&mut out);
    out.freeze()
}

/// Declares a record: a plain struct whose fields are encoded in declaration order, which must be
/// the order of `zookeeper.jute` (wire order is the contract).
#[macro_export]
macro_rules! jute_record {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        ///
        /// Fields are those of the record of the same name in `zookeeper.jute`, in wire order.
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        #[allow(missing_docs)]
        pub struct $name { $($(#[$fmeta])* pub $field: $ty),* }
        impl $crate::jute::Encode for $name {
            #[allow(unused_variables)]
            fn encode(&self, out: &mut bytes::BytesMut) {
                // One reservation for the whole record (nested records find it already there).
                out.reserve($crate::jute::Encode::encoded_len(self));
                $($crate::jute::Encode::encode(&self.$field, out);)*
            }
            fn encoded_len(&self) -> usize {
                0 $(+ $crate::jute::Encode::encoded_len(&self.$field))*
            }
        }
        impl $crate::jute::Decode for $name {
            #[allow(unused_variables)]
            fn decode(input: &mut bytes::Bytes) -> Result<Self, $crate::jute::DecodeError> {
                Ok(Self { $($field: $crate::jute::Decode::decode(input)?),* })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(value: T) {
        let mut bytes = to_bytes(&value);
        assert_eq!(value.encoded_len(), bytes.len(), "encoded_len of {value:?}");
        let back = T::decode(&mut bytes).unwrap();
        assert_eq!(back, value);
        assert!(bytes.is_empty());
    }

    #[test]
    fn primitives_are_big_endian() {
        assert_eq!(&to_bytes(&0x0102_0304i32)[..], &[1, 2, 3, 4]);
        assert_eq!(&to_bytes(&-1i64)[..], &[0xff; 8]);
        assert_eq!(&to_bytes(&true)[..], &[1]);
        assert_eq!(&to_bytes(&"ab".to_string())[..], &[0, 0, 0, 2, b'a', b'b']);
        assert_eq!(&to_bytes(&None::<Bytes>)[..], &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(&to_bytes(&Some(Bytes::new()))[..], &[0, 0, 0, 0]);
    }

    #[test]
    fn any_nonzero_byte_is_true() {
        assert!(bool::decode(&mut Bytes::from_static(&[7])).unwrap());
    }

    #[test]
    fn null_string_and_vector_decode_empty() {
        assert_eq!(String::decode(&mut Bytes::from_static(&[0xff; 4])).unwrap(), "");
        assert!(Vec::<i32>::decode(&mut Bytes::from_static(&[0xff; 4])).unwrap().is_empty());
    }

    #[test]
    fn oversized_lengths_fail_before_allocating() {
        let mut huge = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 1, 2]);
        assert!(matches!(String::decode(&mut huge), Err(DecodeError::Truncated { .. })));
        let mut huge = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(Vec::<i64>::decode(&mut huge), Err(DecodeError::Truncated { .. })));
        let mut negative = Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(Option::<Bytes>::decode(&mut negative), Err(DecodeError::BadLength(-2)));
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        let mut input = Bytes::from_static(&[0, 0, 0, 2, 0xff, b'a']);
        assert_eq!(String::decode(&mut input).unwrap(), "\u{fffd}a");
    }

    proptest! {
        #[test]
        fn round_trips(i in any::<i32>(), l in any::<i64>(), b in any::<bool>(), s in ".*",
                       v in proptest::collection::vec(any::<i64>(), 0..20),
                       d in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))) {
            round_trip(i);
            round_trip(l);
            round_trip(b);
            round_trip(s);
            round_trip(v);
            round_trip(d.map(Bytes::from));
        }

        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Vec::<String>::decode(&mut Bytes::from(raw.clone()));
            let _ = Option::<Bytes>::decode(&mut Bytes::from(raw));
        }

        /// The borrowed readers agree with `Decode` on any input, errors included.
        #[test]
        fn borrowed_readers_match_decode(raw in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut slice: &[u8] = &raw;
            let mut bytes = Bytes::from(raw.clone());
            prop_assert_eq!(borrowed::buffer(&mut slice).map(|b| b.map(<[u8]>::to_vec)),
                Option::<Bytes>::decode(&mut bytes).map(|b| b.map(|b| b.to_vec())));
            prop_assert_eq!(slice.len(), bytes.len());
            let (mut slice, mut bytes): (&[u8], _) = (&raw, Bytes::from(raw.clone()));
            prop_assert_eq!(borrowed::ustring(&mut slice).map(|s| s.into_owned()), String::decode(&mut bytes));
            let (mut slice, mut bytes): (&[u8], _) = (&raw, Bytes::from(raw.clone()));
            prop_assert_eq!(borrowed::long(&mut slice), i64::decode(&mut bytes));
            prop_assert_eq!(borrowed::int(&mut slice), i32::decode(&mut bytes));
            prop_assert_eq!(slice.len(), bytes.len());
        }
    }
}
