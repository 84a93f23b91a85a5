//! ZooKeeper's tree digest (`DigestCalculator`, digest version 2; PROTOCOL.md §5.4): a CRC32 per
//! node over its path, data and persisted Stat, summed over the whole tree with wrapping u64
//! addition (`AdHash`), so it can be updated per change and compared across servers.
//!
//! Stored in every txn log entry (`TxnDigest`) and at the end of every snapshot (`ZxidDigest`);
//! an exported snapshot must carry the value ZooKeeper would compute, or the real server logs a
//! digest mismatch when it loads it. Pure functions over the tree; no IO.

use crc32fast::Hasher;

use super::DataTree;
use crate::proto::StatPersisted;

/// The digest version ZooKeeper 3.8 writes (`DigestCalculator.DIGEST_VERSION`).
pub const DIGEST_VERSION: i32 = 2;

/// Digest of one node. `path` is as ZooKeeper keys it: the root may be given as `/` or `""` (both
/// hash as `""`). Nodes strictly under `/zookeeper/` count as 0 (upstream excludes them because
/// quota nodes are updated locally on each server); `/zookeeper` itself counts.
pub fn node_digest(path: &str, data: Option<&[u8]>, stat: &StatPersisted) -> u64 {
    if path.starts_with("/zookeeper/") {
        return 0;
    }
    let path = if path == "/" { "" } else { path };
    // 60-byte tail; the order (pzxid third) differs from StatPersisted's wire order.
    let mut tail = [0u8; 60];
    let fields_64 = [stat.czxid, stat.mzxid, stat.pzxid, stat.ctime, stat.mtime];
    for (i, value) in fields_64.iter().enumerate() {
        tail[i * 8..i * 8 + 8].copy_from_slice(&value.to_be_bytes());
    }
    tail[40..44].copy_from_slice(&stat.version.to_be_bytes());
    tail[44..48].copy_from_slice(&stat.cversion.to_be_bytes());
    tail[48..52].copy_from_slice(&stat.aversion.to_be_bytes());
    tail[52..60].copy_from_slice(&stat.ephemeral_owner.to_be_bytes());
    let mut crc = Hasher::new();
    // Upstream hashes `path.getBytes()` (the JVM's default charset, UTF-8 on any usual setup).
    crc.update(path.as_bytes());
    if let Some(data) = data {
        crc.update(data);
    }
    crc.update(&tail);
    u64::from(crc.finalize())
}

/// Digest of the whole tree: the wrapping sum of every node's digest, the root counted once.
/// Returned as the `long` ZooKeeper stores in `TxnDigest`/`ZxidDigest`.
pub fn tree_digest(tree: &DataTree) -> i64 {
    let mut sum: u64 = 0;
    tree.visit_preorder(|path, data, _acl, stat| {
        sum = sum.wrapping_add(node_digest(path, data, stat));
    });
    sum as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PROTOCOL.md §5.4 [obs]: a fresh server's tree digests to 0x51c6d660 (the value in the
    /// first TxnDigest of a real `log.1`).
    #[test]
    fn fresh_tree_matches_zookeeper() {
        assert_eq!(tree_digest(&DataTree::new(false)), 0x51c6_d660);
    }

    #[test]
    fn root_aliases_and_zookeeper_subtree() {
        let stat = StatPersisted {
            czxid: 5,
            ..StatPersisted::default()
        };
        assert_eq!(node_digest("/", Some(b""), &stat), node_digest("", Some(b""), &stat));
        assert_eq!(node_digest("/zookeeper/quota", Some(b"x"), &stat), 0);
        assert_ne!(node_digest("/zookeeper", Some(b""), &stat), 0);
        // Null and empty data hash the same (only the bytes go into the CRC).
        assert_eq!(node_digest("/a", None, &stat), node_digest("/a", Some(b""), &stat));
    }
}
