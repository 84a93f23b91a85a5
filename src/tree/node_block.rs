//! A node's name, data and owner in one heap block: a short header, the `ephemeralOwner` when it
//! is not zero, the name's bytes, then the data's.
//!
//! One block instead of separate allocations saves an allocation and a pointer per node, and
//! keeping the lengths and the owner in the block rather than in the node saves 16 bytes more: most
//! nodes are persistent, with an owner of zero, and spend nothing on it. With a million znodes of
//! 100 bytes, the block cost 21 MB less than a name and data apart (RSS 291.6 -> 270.6 MB) and the
//! header and owner inside it another 21 MB (RSS 272,936 -> 252,080 KiB; README, BENCHMARKS). Null data (a node created with
//! `null`) stays distinct from empty data, as in ZooKeeper.
//!
//! Header: one LEB128 number, `name length << 2 | HAS_OWNER | NULL_DATA`; one byte for names of
//! up to 31 bytes, two up to 4,095.

/// Header bit: the data is null.
const NULL_DATA: u64 = 1;
/// Header bit: eight bytes of owner (little-endian) follow the header.
const HAS_OWNER: u64 = 2;
const FLAG_BITS: u32 = 2;
/// Names are bounded by `jute.maxbuffer`, far below this; a longer one is cut at a character
/// boundary rather than spilling into the flags.
const NAME_LEN_MAX: usize = (u32::MAX >> FLAG_BITS) as usize;
/// A header never needs more bytes than this (it is below 2^32).
const HEADER_LEN_MAX: usize = 5;

/// Name, data and owner of one node (see the module comment).
#[derive(Debug)]
pub(super) struct NodeBlock {
    bytes: Box<[u8]>,
}

impl NodeBlock {
    /// `name` and `data`, for a node whose persisted `ephemeralOwner` is `owner`.
    pub(super) fn new(name: &str, data: Option<&[u8]>, owner: i64) -> NodeBlock {
        let mut end = name.len().min(NAME_LEN_MAX);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        NodeBlock::build(&name.as_bytes()[..end], data, owner)
    }

    fn build(name: &[u8], data: Option<&[u8]>, owner: i64) -> NodeBlock {
        let data_bytes = data.unwrap_or_default();
        let mut header = (name.len() as u64) << FLAG_BITS;
        if data.is_none() {
            header |= NULL_DATA;
        }
        if owner != 0 {
            header |= HAS_OWNER;
        }
        let owner_len = if owner != 0 { 8 } else { 0 };
        let mut bytes = Vec::with_capacity(HEADER_LEN_MAX + owner_len + name.len() + data_bytes.len());
        while header >= 0x80 {
            bytes.push((header as u8 & 0x7f) | 0x80);
            header >>= 7;
        }
        bytes.push(header as u8);
        if owner != 0 {
            bytes.extend_from_slice(&owner.to_le_bytes());
        }
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(data_bytes);
        NodeBlock { bytes: bytes.into_boxed_slice() }
    }

    /// The header's value and its length in bytes.
    fn header(&self) -> (u64, usize) {
        let mut value = 0u64;
        for (i, &byte) in self.bytes.iter().take(HEADER_LEN_MAX).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return (value, i + 1);
            }
        }
        (value, HEADER_LEN_MAX)
    }

    /// Where the name starts and ends in `bytes`, and the header.
    fn name_span(&self) -> (usize, usize, u64) {
        let (header, header_len) = self.header();
        let start = header_len + if header & HAS_OWNER != 0 { 8 } else { 0 };
        (start, start + (header >> FLAG_BITS) as usize, header)
    }

    /// The name's bytes (what the index compares and hashes, and getChildren lists).
    #[inline]
    pub(super) fn name_bytes(&self) -> &[u8] {
        // The common case, a name of up to 31 bytes and no owner, without the general decoding:
        // it is on every path segment looked up and every child listed.
        if let Some(&byte) = self.bytes.first() {
            if u64::from(byte) & (0x80 | HAS_OWNER) == 0 {
                return self.bytes.get(1..1 + (byte >> FLAG_BITS) as usize).unwrap_or_default();
            }
        }
        let (start, end, _) = self.name_span();
        self.bytes.get(start..end).unwrap_or_default()
    }

    /// The name. Always UTF-8: it was built from a `&str` cut at a character boundary.
    pub(super) fn name(&self) -> &str {
        std::str::from_utf8(self.name_bytes()).unwrap_or_default()
    }

    /// The data, `None` when null.
    pub(super) fn data(&self) -> Option<&[u8]> {
        let (_, end, header) = self.name_span();
        if header & NULL_DATA != 0 {
            None
        } else {
            Some(self.bytes.get(end..).unwrap_or_default())
        }
    }

    /// Length of the data (0 when null).
    pub(super) fn data_len(&self) -> usize {
        let (_, end, _) = self.name_span();
        self.bytes.len().saturating_sub(end)
    }

    /// The persisted `ephemeralOwner`: a session id, a container's or TTL node's marker, or 0.
    pub(super) fn owner(&self) -> i64 {
        let (header, header_len) = self.header();
        if header & HAS_OWNER == 0 {
            return 0;
        }
        self.bytes
            .get(header_len..header_len + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, i64::from_le_bytes)
    }

    /// Replaces the data, keeping the name and owner.
    pub(super) fn set_data(&mut self, data: Option<&[u8]>) {
        self.reset(data, self.owner());
    }

    /// Replaces the data and owner, keeping the name (a node restored over an existing one).
    pub(super) fn reset(&mut self, data: Option<&[u8]>, owner: i64) {
        *self = NodeBlock::build(self.name_bytes(), data, owner);
    }
}

#[cfg(test)]
mod tests {
    use super::NodeBlock;

    #[test]
    fn name_data_and_owner_come_back_apart_and_null_stays_null() {
        let mut n = NodeBlock::new("child-0000000007", Some(b"payload"), 0);
        assert_eq!(n.name(), "child-0000000007");
        assert_eq!(n.data(), Some(&b"payload"[..]));
        assert_eq!((n.data_len(), n.owner()), (7, 0));
        n.set_data(None);
        assert_eq!((n.name(), n.data(), n.data_len()), ("child-0000000007", None, 0));
        n.set_data(Some(b""));
        assert_eq!((n.name(), n.data()), ("child-0000000007", Some(&b""[..])));
        let root = NodeBlock::new("", None, 0);
        assert_eq!((root.name(), root.data()), ("", None));
        let wide = NodeBlock::new("é✓", Some(&[0xff, 0]), 0);
        assert_eq!((wide.name(), wide.data()), ("é✓", Some(&[0xff, 0][..])));
    }

    #[test]
    fn owners_survive_data_changes_and_cost_nothing_when_zero() {
        for owner in [1, -1, i64::MIN, 0x0102_0304_0506_0708, i64::MIN | 5_000] {
            let mut n = NodeBlock::new("e", Some(b"x"), owner);
            assert_eq!((n.name(), n.data(), n.owner()), ("e", Some(&b"x"[..]), owner));
            n.set_data(None);
            assert_eq!((n.name(), n.data(), n.owner()), ("e", None, owner));
            n.reset(Some(b"yz"), 0);
            assert_eq!((n.name(), n.data(), n.owner()), ("e", Some(&b"yz"[..]), 0));
        }
        // Header, name, data: nothing else for a persistent node.
        assert_eq!(NodeBlock::new("abc", Some(&[7; 100]), 0).bytes.len(), 1 + 3 + 100);
        assert_eq!(NodeBlock::new("abc", Some(&[7; 100]), 9).bytes.len(), 1 + 8 + 3 + 100);
    }

    #[test]
    fn long_names_take_longer_headers() {
        for len in [0, 1, 31, 32, 127, 4_095, 4_096, 70_000, 1 << 21] {
            let name = "n".repeat(len);
            for (owner, data) in [(0, None), (42, Some(&b"d"[..])), (-7, Some(&b""[..]))] {
                let n = NodeBlock::new(&name, data, owner);
                assert_eq!((n.name().len(), n.data(), n.owner()), (len, data, owner), "{len}");
            }
        }
        assert_eq!(NodeBlock::new(&"n".repeat(31), None, 0).bytes.len(), 1 + 31);
        assert_eq!(NodeBlock::new(&"n".repeat(32), None, 0).bytes.len(), 2 + 32);
    }
}
