//! A node's name and data in one heap block: the name's bytes, then the data's.
//!
//! One block instead of two saves an allocation and a pointer per node: with a million znodes of
//! 100 bytes that was 24 bytes per node, 8% of the server's memory (RSS 291.6 -> 270.6 MB;
//! README, BENCHMARKS). Null data (a node created with `null`) stays distinct from empty data, as in
//! ZooKeeper.

/// Bit of `meta` set when the data is null.
const NULL_DATA: u32 = 1 << 31;

/// Name and data of one node (see the module comment).
#[derive(Debug)]
pub(super) struct NameData {
    bytes: Box<[u8]>,
    /// The name's length in `bytes`, with `NULL_DATA` set for null data.
    meta: u32,
}

impl NameData {
    /// `name` then `data`. Names are bounded by `jute.maxbuffer`, far below 2^31 bytes; a longer
    /// one is cut at a character boundary rather than wrapping into the null-data bit.
    pub(super) fn new(name: &str, data: Option<&[u8]>) -> NameData {
        let mut end = name.len().min((NULL_DATA - 1) as usize);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let name = &name[..end];
        NameData::join(name.as_bytes(), data)
    }

    fn join(name: &[u8], data: Option<&[u8]>) -> NameData {
        let data_bytes = data.unwrap_or_default();
        let mut bytes = Vec::with_capacity(name.len() + data_bytes.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(data_bytes);
        let null = if data.is_none() { NULL_DATA } else { 0 };
        NameData { bytes: bytes.into_boxed_slice(), meta: name.len() as u32 | null }
    }

    fn name_len(&self) -> usize {
        (self.meta & !NULL_DATA) as usize
    }

    /// The name's bytes (what the index compares and hashes).
    pub(super) fn name_bytes(&self) -> &[u8] {
        &self.bytes[..self.name_len()]
    }

    /// The name. Always UTF-8: it was built from a `&str` cut at a character boundary.
    pub(super) fn name(&self) -> &str {
        std::str::from_utf8(self.name_bytes()).unwrap_or_default()
    }

    /// The data, `None` when null.
    pub(super) fn data(&self) -> Option<&[u8]> {
        if self.meta & NULL_DATA != 0 {
            None
        } else {
            Some(&self.bytes[self.name_len()..])
        }
    }

    /// Length of the data (0 when null).
    pub(super) fn data_len(&self) -> usize {
        self.bytes.len() - self.name_len()
    }

    /// Replaces the data, keeping the name.
    pub(super) fn set_data(&mut self, data: Option<&[u8]>) {
        *self = NameData::join(self.name_bytes(), data);
    }
}

#[cfg(test)]
mod tests {
    use super::NameData;

    #[test]
    fn name_and_data_come_back_apart_and_null_stays_null() {
        let mut n = NameData::new("child-0000000007", Some(b"payload"));
        assert_eq!(n.name(), "child-0000000007");
        assert_eq!(n.data(), Some(&b"payload"[..]));
        assert_eq!(n.data_len(), 7);
        n.set_data(None);
        assert_eq!((n.name(), n.data(), n.data_len()), ("child-0000000007", None, 0));
        n.set_data(Some(b""));
        assert_eq!((n.name(), n.data()), ("child-0000000007", Some(&b""[..])));
        let root = NameData::new("", None);
        assert_eq!((root.name(), root.data()), ("", None));
        let wide = NameData::new("é✓", Some(&[0xff, 0]));
        assert_eq!((wide.name(), wide.data()), ("é✓", Some(&[0xff, 0][..])));
    }
}
