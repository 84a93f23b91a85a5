//! A node's name, data and the rarely set parts of its Stat in one heap block: a short header,
//! the name's bytes, the optional fields, then the data's.
//!
//! One block instead of separate allocations saves an allocation and a pointer per node. Keeping
//! in the block what most nodes never set saves more: `ephemeralOwner` is zero for persistent
//! nodes; `mzxid`, `mtime` and `version` equal `czxid`, `ctime` and 0 until the first setData
//! (which rebuilds the block anyway, for the new data); `aversion` is 0 until the first setACL.
//! Such a node carries none of them. With a million znodes of 100 bytes, the block cost 21 MB
//! less than a name and data apart (RSS 291.6 -> 270.6 MB); the owner inside it another 21 MB
//! (RSS 272,936 -> 252,080 KiB), and the setData fields and `aversion`, which took the node from
//! 96 bytes to 72, 18 MiB more (RSS 254,120 -> 235,612 KiB; README, BENCHMARKS). Null data (a node
//! created with `null`) stays distinct from empty data, as in ZooKeeper.
//!
//! Layout: a LEB128 header, `name length << 1 | HAS_FLAGS` (one byte for names of up to 63
//! bytes, two up to 8,191); the name; when `HAS_FLAGS`, a flag byte, then in this order the
//! owner (8 bytes), the setData fields (`mzxid`, `mtime`: 8 each, `version`: 4) and `aversion`
//! (4), each only when its flag is set, all little-endian; the data. A persistent node that was
//! never changed, with data, is its header, name and data.

/// Header bit: a flag byte follows the name.
const HAS_FLAGS: u64 = 1;
const HEADER_FLAG_BITS: u32 = 1;
/// Flag: the data is null.
const NULL_DATA: u8 = 1;
/// Flag: eight bytes of owner.
const HAS_OWNER: u8 = 2;
/// Flag: the setData fields (20 bytes).
const HAS_CHANGE: u8 = 4;
/// Flag: four bytes of aversion.
const HAS_AVERSION: u8 = 8;
const CHANGE_LEN: usize = 8 + 8 + 4;
/// Names are bounded by `jute.maxbuffer`, far below this; a longer one is cut at a character
/// boundary rather than spilling into the flags.
const NAME_LEN_MAX: usize = (u32::MAX >> HEADER_FLAG_BITS) as usize;
/// A header never needs more bytes than this (it is below 2^32).
const HEADER_LEN_MAX: usize = 5;

/// The last setData of a node: `mzxid`, `mtime` and the `version` it set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Change {
    pub(super) mzxid: i64,
    pub(super) mtime: i64,
    pub(super) version: i32,
}

/// The Stat fields a block carries, each absent (costing nothing) at its usual value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct BlockStat {
    /// The persisted `ephemeralOwner` (a session id, a container's or TTL node's marker, or 0).
    pub(super) owner: i64,
    /// None until the node's Stat differs from its creation's (`mzxid == czxid`,
    /// `mtime == ctime`, `version == 0`).
    pub(super) change: Option<Change>,
    /// The persisted `aversion`.
    pub(super) aversion: i32,
}

impl BlockStat {
    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.owner != 0 {
            flags |= HAS_OWNER;
        }
        if self.change.is_some() {
            flags |= HAS_CHANGE;
        }
        if self.aversion != 0 {
            flags |= HAS_AVERSION;
        }
        flags
    }

    fn encoded_len(flags: u8) -> usize {
        let mut len = 0;
        if flags & HAS_OWNER != 0 {
            len += 8;
        }
        if flags & HAS_CHANGE != 0 {
            len += CHANGE_LEN;
        }
        if flags & HAS_AVERSION != 0 {
            len += 4;
        }
        len
    }
}

/// Where a block's parts are.
struct Spans {
    name_end: usize,
    /// 0 when there is no flag byte.
    flags: u8,
    data_start: usize,
}

/// Name, data and the rarely set Stat fields of one node (see the module comment).
#[derive(Debug)]
pub(super) struct NodeBlock {
    bytes: Box<[u8]>,
}

impl NodeBlock {
    /// `name` and `data`, with the Stat fields in `stat`.
    pub(super) fn new(name: &str, data: Option<&[u8]>, stat: &BlockStat) -> NodeBlock {
        let mut end = name.len().min(NAME_LEN_MAX);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        NodeBlock::build(&name.as_bytes()[..end], data, stat)
    }

    fn build(name: &[u8], data: Option<&[u8]>, stat: &BlockStat) -> NodeBlock {
        let data_bytes = data.unwrap_or_default();
        let mut flags = stat.flags();
        if data.is_none() {
            flags |= NULL_DATA;
        }
        let mut header = (name.len() as u64) << HEADER_FLAG_BITS;
        let flags_len = if flags != 0 {
            header |= HAS_FLAGS;
            1 + BlockStat::encoded_len(flags)
        } else {
            0
        };
        // The exact length, so that `into_boxed_slice` keeps the allocation instead of shrinking it
        // (a reallocation per node: 2% of a snapshot load's reading thread, `perf`).
        let header_len = (u64::BITS - header.leading_zeros()).div_ceil(7).max(1) as usize;
        let mut bytes = Vec::with_capacity(header_len + name.len() + flags_len + data_bytes.len());
        while header >= 0x80 {
            bytes.push((header as u8 & 0x7f) | 0x80);
            header >>= 7;
        }
        bytes.push(header as u8);
        bytes.extend_from_slice(name);
        if flags != 0 {
            bytes.push(flags);
            if stat.owner != 0 {
                bytes.extend_from_slice(&stat.owner.to_le_bytes());
            }
            if let Some(change) = &stat.change {
                bytes.extend_from_slice(&change.mzxid.to_le_bytes());
                bytes.extend_from_slice(&change.mtime.to_le_bytes());
                bytes.extend_from_slice(&change.version.to_le_bytes());
            }
            if stat.aversion != 0 {
                bytes.extend_from_slice(&stat.aversion.to_le_bytes());
            }
        }
        bytes.extend_from_slice(data_bytes);
        debug_assert_eq!(bytes.len(), bytes.capacity(), "a node block's length was mispredicted");
        NodeBlock { bytes: bytes.into_boxed_slice() }
    }

    /// The header's value and its length in bytes.
    #[inline]
    fn header(&self) -> (u64, usize) {
        // The common case, a name of up to 63 bytes, without the loop: it is on every path
        // segment looked up and every child listed.
        if let Some(&byte) = self.bytes.first() {
            if byte & 0x80 == 0 {
                return (u64::from(byte), 1);
            }
        }
        let mut value = 0u64;
        for (i, &byte) in self.bytes.iter().take(HEADER_LEN_MAX).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return (value, i + 1);
            }
        }
        (value, HEADER_LEN_MAX)
    }

    #[inline]
    fn spans(&self) -> Spans {
        let (header, name_start) = self.header();
        let name_end = name_start + (header >> HEADER_FLAG_BITS) as usize;
        if header & HAS_FLAGS == 0 {
            return Spans { name_end, flags: 0, data_start: name_end };
        }
        let flags = self.bytes.get(name_end).copied().unwrap_or_default();
        Spans { name_end, flags, data_start: name_end + 1 + BlockStat::encoded_len(flags) }
    }

    /// The name's bytes (what the index compares and hashes, and getChildren lists).
    #[inline]
    pub(super) fn name_bytes(&self) -> &[u8] {
        let (header, start) = self.header();
        self.bytes.get(start..start + (header >> HEADER_FLAG_BITS) as usize).unwrap_or_default()
    }

    /// The name. Always UTF-8: it was built from a `&str` cut at a character boundary.
    pub(super) fn name(&self) -> &str {
        std::str::from_utf8(self.name_bytes()).unwrap_or_default()
    }

    /// The data, `None` when null.
    pub(super) fn data(&self) -> Option<&[u8]> {
        let spans = self.spans();
        if spans.flags & NULL_DATA != 0 {
            None
        } else {
            Some(self.bytes.get(spans.data_start..).unwrap_or_default())
        }
    }

    /// Length of the data (0 when null).
    pub(super) fn data_len(&self) -> usize {
        self.bytes.len().saturating_sub(self.spans().data_start)
    }

    /// The Stat fields the block holds.
    pub(super) fn stat(&self) -> BlockStat {
        let spans = self.spans();
        let mut stat = BlockStat::default();
        if spans.flags & !NULL_DATA == 0 {
            return stat;
        }
        let mut at = spans.name_end + 1;
        let mut take = |len: usize| {
            let field = self.bytes.get(at..at + len).unwrap_or_default();
            at += len;
            field
        };
        let long = |b: &[u8]| <[u8; 8]>::try_from(b).map_or(0, i64::from_le_bytes);
        let int = |b: &[u8]| <[u8; 4]>::try_from(b).map_or(0, i32::from_le_bytes);
        if spans.flags & HAS_OWNER != 0 {
            stat.owner = long(take(8));
        }
        if spans.flags & HAS_CHANGE != 0 {
            let (mzxid, mtime) = (long(take(8)), long(take(8)));
            stat.change = Some(Change { mzxid, mtime, version: int(take(4)) });
        }
        if spans.flags & HAS_AVERSION != 0 {
            stat.aversion = int(take(4));
        }
        stat
    }

    /// The persisted `ephemeralOwner`.
    pub(super) fn owner(&self) -> i64 {
        self.stat().owner
    }

    /// Replaces the data and the Stat fields, keeping the name.
    pub(super) fn reset(&mut self, data: Option<&[u8]>, stat: &BlockStat) {
        *self = NodeBlock::build(self.name_bytes(), data, stat);
    }

    /// Replaces the Stat fields, keeping the name and data.
    pub(super) fn set_stat(&mut self, stat: &BlockStat) {
        *self = NodeBlock::build(self.name_bytes(), self.data(), stat);
    }
}

#[cfg(test)]
mod tests {
    use super::{BlockStat, Change, NodeBlock};

    fn owned(owner: i64) -> BlockStat {
        BlockStat { owner, ..BlockStat::default() }
    }

    #[test]
    fn name_data_and_owner_come_back_apart_and_null_stays_null() {
        let mut n = NodeBlock::new("child-0000000007", Some(b"payload"), &owned(0));
        assert_eq!(n.name(), "child-0000000007");
        assert_eq!(n.data(), Some(&b"payload"[..]));
        assert_eq!((n.data_len(), n.owner()), (7, 0));
        n.reset(None, &owned(0));
        assert_eq!((n.name(), n.data(), n.data_len()), ("child-0000000007", None, 0));
        n.reset(Some(b""), &owned(0));
        assert_eq!((n.name(), n.data()), ("child-0000000007", Some(&b""[..])));
        let root = NodeBlock::new("", None, &owned(0));
        assert_eq!((root.name(), root.data()), ("", None));
        let wide = NodeBlock::new("é✓", Some(&[0xff, 0]), &owned(0));
        assert_eq!((wide.name(), wide.data()), ("é✓", Some(&[0xff, 0][..])));
    }

    #[test]
    fn every_combination_of_stat_fields_comes_back() {
        let change = Change { mzxid: 0x1_0000_0005, mtime: 1_700_000_000_123, version: -3 };
        for owner in [0, 1, -1, i64::MIN, 0x0102_0304_0506_0708, i64::MIN | 5_000] {
            for change in [None, Some(change)] {
                for aversion in [0, 1, i32::MIN, i32::MAX] {
                    let stat = BlockStat { owner, change, aversion };
                    for data in [None, Some(&b""[..]), Some(&b"x"[..])] {
                        let mut n = NodeBlock::new("e", data, &stat);
                        assert_eq!((n.name(), n.data(), n.stat(), n.owner()), ("e", data, stat, owner));
                        n.reset(Some(b"yz"), &BlockStat::default());
                        assert_eq!((n.name(), n.data(), n.stat()), ("e", Some(&b"yz"[..]), BlockStat::default()));
                        n.set_stat(&stat);
                        assert_eq!((n.name(), n.data(), n.stat()), ("e", Some(&b"yz"[..]), stat));
                    }
                }
            }
        }
    }

    #[test]
    fn fields_at_their_usual_values_cost_nothing() {
        // Header, name, data: nothing else for a persistent node never changed.
        assert_eq!(NodeBlock::new("abc", Some(&[7; 100]), &owned(0)).bytes.len(), 1 + 3 + 100);
        // A flag byte, then only the fields that are set.
        assert_eq!(NodeBlock::new("abc", None, &owned(0)).bytes.len(), 1 + 3 + 1);
        assert_eq!(NodeBlock::new("abc", Some(&[7; 100]), &owned(9)).bytes.len(), 1 + 3 + 1 + 8 + 100);
        let changed = BlockStat { change: Some(Change { mzxid: 2, mtime: 3, version: 1 }), ..BlockStat::default() };
        assert_eq!(NodeBlock::new("abc", Some(&[7; 100]), &changed).bytes.len(), 1 + 3 + 1 + 20 + 100);
        let acl_set = BlockStat { aversion: 1, ..BlockStat::default() };
        assert_eq!(NodeBlock::new("abc", Some(b""), &acl_set).bytes.len(), 1 + 3 + 1 + 4);
    }

    #[test]
    fn long_names_take_longer_headers() {
        let stat = BlockStat { owner: -7, change: Some(Change { mzxid: 1, mtime: 2, version: 3 }), aversion: 4 };
        for len in [0, 1, 63, 64, 127, 8_191, 8_192, 70_000, 1 << 21] {
            let name = "n".repeat(len);
            for (stat, data) in [(BlockStat::default(), None), (owned(42), Some(&b"d"[..])), (stat, Some(&b""[..]))] {
                let n = NodeBlock::new(&name, data, &stat);
                assert_eq!((n.name().len(), n.data(), n.stat()), (len, data, stat), "{len}");
            }
        }
        assert_eq!(NodeBlock::new(&"n".repeat(63), Some(b""), &owned(0)).bytes.len(), 1 + 63);
        assert_eq!(NodeBlock::new(&"n".repeat(64), Some(b""), &owned(0)).bytes.len(), 2 + 64);
    }
}
