//! Rebuilding a tree from snapshot records, fast enough that restart time is dominated by reading
//! the file.
//!
//! The work is split in two so that a loader can run the halves on two threads: `NodePreparer`
//! turns a record into a `PreparedNode` without the tree (checks the path, builds the node's heap
//! block, hashes its name, works out where it goes), and `TreeRestorer` links prepared nodes into
//! the tree in file order. A restart with 1,000,000 znodes spent about half of its time in what
//! the preparer does now (`perf`: decoding, UTF-8 checks, the blocks' allocations and page
//! faults, name hashing) and the other half in the tree's slab and path index.
//!
//! Snapshots hold nodes in pre-order (every parent before its children, siblings together), so the
//! parent of a node is nearly always a node on the path of the node before it. Both halves keep
//! that path, the preparer as byte offsets into the previous path and the restorer as node ids,
//! updated in lockstep, so a parent is found by its depth instead of by walking its path from the
//! root; a record out of that order names its parent's path and the restorer walks it. ACL lists
//! are interned once per snapshot ACL id instead of hashing a node's list per node.

use std::collections::HashMap;

use super::node_block::NodeBlock;
use super::{index, split_parent, split_stat, AclId, DataTree, NodeId, NodeKind, NodeStat, ROOT};
use crate::proto::{Acl, ErrorCode, StatPersisted};

/// Why a record could not be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreError {
    /// The node names an ACL id no earlier record defined.
    UnknownAcl(i32),
    /// The tree refused the node: `NoNode` (parent missing), `BadArguments` (malformed path).
    Rejected(ErrorCode),
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreError::UnknownAcl(id) => write!(f, "unknown acl {id}"),
            RestoreError::Rejected(code) => write!(f, "cannot restore ({code:?})"),
        }
    }
}

/// Where a prepared node goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// It is the root.
    Root,
    /// Under the node at this depth (0: the root) on the previous node's path.
    Ancestor(u32),
    /// Under the node at `Rare::parent_path` (the record is not where pre-order puts it).
    Parent,
}

/// `PreparedNode::place` for `Place::Root` and `Place::Parent`; any other value is an ancestor's
/// depth, which is below a path's length and so below both.
const PLACE_ROOT: u32 = u32::MAX;
const PLACE_PARENT: u32 = u32::MAX - 1;

/// What few prepared nodes carry.
#[derive(Debug, Default)]
struct Rare {
    /// For `Place::Parent`.
    parent_path: String,
    /// The path, for a node of a kind the tree indexes (ephemeral, container, TTL).
    kind: Option<(NodeKind, String)>,
}

/// A snapshot node record made ready for `TreeRestorer::restore`. Small (72 bytes, the slot's
/// fields unpacked so no padding is carried): a loader hands a million of them from one thread to
/// another, and reading them on the tree's thread was that thread's largest stall (`perf`).
#[derive(Debug)]
pub struct PreparedNode {
    block: NodeBlock,
    czxid: i64,
    ctime: i64,
    pzxid: i64,
    cversion: i32,
    /// Length of the node's path (the tree's data size counts it).
    path_len: u32,
    /// `index::name_hash` of the block's name.
    name_hash: u64,
    /// `Place`, packed (`PLACE_ROOT`, `PLACE_PARENT`, or a depth).
    place: u32,
    /// The snapshot's ACL id for the node.
    file_acl: i32,
    rare: Option<Box<Rare>>,
}

impl PreparedNode {
    fn place(&self) -> Place {
        match self.place {
            PLACE_ROOT => Place::Root,
            PLACE_PARENT => Place::Parent,
            depth => Place::Ancestor(depth),
        }
    }

    fn slot(&self) -> NodeStat {
        NodeStat {
            czxid: self.czxid,
            ctime: self.ctime,
            pzxid: self.pzxid,
            cversion: self.cversion,
        }
    }
}

/// The half of a restore that needs no tree; see the module comment.
#[derive(Debug)]
pub struct NodePreparer {
    extended_types_enabled: bool,
    /// The previous node's path.
    last_path: String,
    /// The length of each path on `last_path`, by depth: 0 (the root) first, `last_path`'s last.
    ends: Vec<usize>,
}

impl NodePreparer {
    /// A preparer for a tree with `extended_types_enabled` (decides which owners mark TTL nodes).
    pub fn new(extended_types_enabled: bool) -> NodePreparer {
        NodePreparer {
            extended_types_enabled,
            last_path: String::new(),
            ends: vec![0],
        }
    }

    /// Prepares one node: data and persisted Stat exactly as stored.
    pub fn prepare(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        file_acl: i32,
        stat: StatPersisted,
    ) -> Result<PreparedNode, RestoreError> {
        let (slot, block_stat) = split_stat(&stat);
        let mut rare = None;
        let (place, block) = if path.is_empty() || path == "/" {
            self.reset();
            (PLACE_ROOT, NodeBlock::new("", data, &block_stat))
        } else {
            let (parent_path, name) = split_parent(path).ok_or(RestoreError::Rejected(ErrorCode::BadArguments))?;
            if name.is_empty() {
                return Err(RestoreError::Rejected(ErrorCode::BadArguments));
            }
            let place = match self.depth_on_last_path(parent_path) {
                Some(depth) => {
                    self.ends.truncate(depth + 1);
                    u32::try_from(depth).unwrap_or(PLACE_PARENT).min(PLACE_PARENT)
                }
                None => PLACE_PARENT,
            };
            if place == PLACE_PARENT {
                // The restorer walks the parent's path: afterwards both hold every node on it.
                self.ends.clear();
                self.ends.push(0);
                self.ends
                    .extend(parent_path.match_indices('/').skip(1).map(|(at, _)| at));
                if parent_path != "/" {
                    self.ends.push(parent_path.len());
                }
                rare = Some(Box::new(Rare {
                    parent_path: parent_path.to_owned(),
                    kind: None,
                }));
            }
            self.ends.push(path.len());
            self.last_path.clear();
            self.last_path.push_str(path);
            let kind = NodeKind::from_owner(stat.ephemeral_owner, self.extended_types_enabled);
            if kind != NodeKind::Persistent {
                rare.get_or_insert_with(Box::default).kind = Some((kind, path.to_owned()));
            }
            (place, NodeBlock::new(name, data, &block_stat))
        };
        Ok(PreparedNode {
            name_hash: if place == PLACE_ROOT {
                0
            } else {
                index::name_hash(block.name_bytes())
            },
            block,
            czxid: slot.czxid,
            ctime: slot.ctime,
            pzxid: slot.pzxid,
            cversion: slot.cversion,
            // Paths are bounded by jute.maxbuffer; the length only feeds the data size figure.
            path_len: u32::try_from(path.len()).unwrap_or(u32::MAX),
            place,
            file_acl,
            rare,
        })
    }

    /// Forgets the previous path (the next parent is found from the root).
    fn reset(&mut self) {
        self.last_path.clear();
        self.ends.clear();
        self.ends.push(0);
    }

    /// The depth of `parent_path` when it is on the previous node's path (that node or one of its
    /// ancestors).
    fn depth_on_last_path(&self, parent_path: &str) -> Option<usize> {
        if parent_path == "/" {
            return Some(0);
        }
        if !self.last_path.starts_with(parent_path) {
            return None;
        }
        // `ends` holds the lengths of the whole segments of `last_path`: a match is a whole path.
        self.ends.iter().rposition(|&end| end == parent_path.len())
    }
}

/// The half of a restore that links prepared nodes into a tree, in file order. Call `finish` at
/// the end: it drops the restorer's own references to the ACL lists, so lists no node uses are
/// forgotten.
#[derive(Debug)]
pub struct TreeRestorer {
    /// The node ids on the previous node's path, by depth (`NodePreparer::ends`).
    ancestors: Vec<NodeId>,
    acls: HashMap<i32, AclId>,
    /// The last ACL looked up in `acls` (most nodes have their predecessor's ACL).
    last_acl: Option<(i32, AclId)>,
    /// For `node`, which prepares records itself.
    preparer: NodePreparer,
    /// The path of the last node refused, for the message.
    refused_path: String,
}

impl TreeRestorer {
    /// A restorer for a tree with `extended_types_enabled`.
    pub fn new(extended_types_enabled: bool) -> TreeRestorer {
        TreeRestorer {
            ancestors: vec![ROOT],
            acls: HashMap::new(),
            last_acl: None,
            preparer: NodePreparer::new(extended_types_enabled),
            refused_path: String::new(),
        }
    }

    /// Defines the snapshot's ACL list `file_id` (a later definition of the same id replaces it).
    pub fn acl(&mut self, tree: &mut DataTree, file_id: i32, acl: &[Acl]) {
        let id = tree.acls.intern(acl);
        self.last_acl = None;
        if let Some(old) = self.acls.insert(file_id, id) {
            tree.acls.release(old);
        }
    }

    /// Prepares and restores one node: data, ACL and persisted Stat exactly as stored. The root
    /// (`/` or `""`) and nodes a fresh tree already has (`/zookeeper`, ...) are overwritten in
    /// place; any other node needs its parent restored first.
    pub fn node(
        &mut self,
        tree: &mut DataTree,
        path: &str,
        data: Option<&[u8]>,
        file_acl: i32,
        stat: StatPersisted,
    ) -> Result<(), RestoreError> {
        let restored = self
            .preparer
            .prepare(path, data, file_acl, stat)
            .and_then(|node| self.restore(tree, node));
        if restored.is_err() {
            // Keep the two halves in step for the records after a refused one.
            self.preparer.reset();
            self.ancestors.truncate(1);
        }
        restored
    }

    /// Restores one prepared node. The nodes must come from one `NodePreparer`, in the order it
    /// prepared them, and the restore stops at the first error (after which the two halves' paths
    /// differ). On `Rejected`, `refused_path` names the node.
    pub fn restore(&mut self, tree: &mut DataTree, node: PreparedNode) -> Result<(), RestoreError> {
        let file_acl = node.file_acl;
        let acl = match self.last_acl {
            Some((file_id, id)) if file_id == file_acl => id,
            _ => {
                let id = *self.acls.get(&file_acl).ok_or(RestoreError::UnknownAcl(file_acl))?;
                self.last_acl = Some((file_acl, id));
                id
            }
        };
        let slot = node.slot();
        let parent = match node.place() {
            Place::Root => {
                tree.acls.retain(acl);
                tree.overwrite_block(ROOT, node.block, slot, acl);
                self.ancestors.truncate(1);
                return Ok(());
            }
            Place::Ancestor(depth) => match self.ancestors.get(depth as usize) {
                Some(&id) => {
                    self.ancestors.truncate(depth as usize + 1);
                    id
                }
                None => return Err(self.refuse(std::str::from_utf8(node.block.name_bytes()).unwrap_or_default())),
            },
            Place::Parent => {
                let parent_path = node.rare.as_deref().map_or("/", |rare| rare.parent_path.as_str());
                self.ancestors.truncate(1);
                let ancestors = &mut self.ancestors;
                match tree.lookup_visiting(parent_path, |id| ancestors.push(id)) {
                    Some(id) => id,
                    None => {
                        let name = std::str::from_utf8(node.block.name_bytes()).unwrap_or_default();
                        let path = format!("{}/{name}", parent_path.trim_end_matches('/'));
                        return Err(self.refuse(&path));
                    }
                }
            }
        };
        tree.acls.retain(acl);
        let hash = index::key_hash(parent, node.name_hash);
        let id = match tree
            .index
            .find_hashed(&tree.nodes, parent, node.block.name_bytes(), hash)
        {
            Some(id) => {
                tree.overwrite_block(id, node.block, slot, acl);
                id
            }
            None => {
                let id = tree.link_block(parent, node.block, slot, acl, node.path_len as usize, hash);
                if let Some((kind, path)) = node.rare.and_then(|rare| rare.kind) {
                    tree.index_kind(&path, kind);
                }
                id
            }
        };
        self.ancestors.push(id);
        Ok(())
    }

    /// The path of the last node `restore` refused.
    pub fn refused_path(&self) -> &str {
        &self.refused_path
    }

    fn refuse(&mut self, path: &str) -> RestoreError {
        self.refused_path.clear();
        self.refused_path.push_str(path);
        RestoreError::Rejected(ErrorCode::NoNode)
    }

    /// Ends the restore.
    pub fn finish(self, tree: &mut DataTree) {
        for id in self.acls.into_values() {
            tree.acls.release(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Id;

    fn stat(czxid: i64, owner: i64) -> StatPersisted {
        StatPersisted {
            czxid,
            mzxid: czxid,
            pzxid: czxid,
            ephemeral_owner: owner,
            ..StatPersisted::default()
        }
    }

    fn world() -> Vec<Acl> {
        vec![Acl {
            perms: 31,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }]
    }

    #[test]
    fn restores_what_restore_node_restores() {
        let digest = vec![Acl {
            perms: 1,
            id: Id {
                scheme: "digest".into(),
                id: "u:x".into(),
            },
        }];
        let records: Vec<(&str, Option<&[u8]>, i32, StatPersisted)> = vec![
            ("", None, 0, stat(0, 0)),
            ("/a", Some(b"1"), 0, stat(1, 0)),
            ("/a/b", Some(b"22"), 1, stat(2, 0)),
            ("/a/b/e", None, 0, stat(3, 0x55)),
            ("/a/c", None, 1, stat(4, 0)),
            ("/zookeeper", None, 0, stat(0, 0)),
            ("/d", Some(b""), 0, stat(5, i64::MIN)),
        ];
        let mut fast = DataTree::new(false);
        let mut restorer = TreeRestorer::new(false);
        restorer.acl(&mut fast, 0, &world());
        restorer.acl(&mut fast, 1, &digest);
        restorer.acl(&mut fast, 2, &[]); // defined, used by nothing: forgotten at finish
        fast.reserve(records.len());
        let mut slow = DataTree::new(false);
        for (path, data, acl, st) in &records {
            restorer.node(&mut fast, path, *data, *acl, *st).unwrap();
            let acl = if *acl == 0 { world() } else { digest.clone() };
            slow.restore_node(path, *data, &acl, *st).unwrap();
        }
        restorer.finish(&mut fast);
        fast.check_invariants().unwrap();
        for (path, ..) in &records[1..] {
            assert_eq!(fast.stat(path), slow.stat(path), "{path}");
            assert_eq!(fast.get_data(path), slow.get_data(path), "{path}");
            assert_eq!(
                fast.get_acl(path).map(|a| a.0.to_vec()),
                slow.get_acl(path).map(|a| a.0.to_vec()),
                "{path}"
            );
        }
        assert_eq!(fast.node_count(), slow.node_count());
        assert_eq!(fast.approximate_data_size(), slow.approximate_data_size());
        assert_eq!(fast.ephemerals_of(0x55), vec!["/a/b/e".to_string()]);
        assert_eq!(fast.children("/").map(|c| c.0), slow.children("/").map(|c| c.0));
    }

    #[test]
    fn a_prepared_node_is_72_bytes() {
        assert_eq!(std::mem::size_of::<PreparedNode>(), 72);
    }

    #[test]
    fn restores_records_out_of_pre_order() {
        // Parents off the previous node's path (walked from the root), then back on it.
        let paths = [
            "/a",
            "/b",
            "/a/x",
            "/a/x/y",
            "/b/z",
            "/a/x/y/w",
            "/a/x/q",
            "/a/x/y/w/v",
            "/b/z/u",
            "/c",
            "/a/x/y/w/v/t",
        ];
        let mut fast = DataTree::new(false);
        let mut slow = DataTree::new(false);
        let mut restorer = TreeRestorer::new(false);
        restorer.acl(&mut fast, 0, &world());
        for (i, path) in paths.iter().enumerate() {
            let data = vec![i as u8; i];
            restorer
                .node(&mut fast, path, Some(&data), 0, stat(i as i64 + 1, 0))
                .unwrap();
            slow.restore_node(path, Some(&data), &world(), stat(i as i64 + 1, 0))
                .unwrap();
        }
        restorer.finish(&mut fast);
        fast.check_invariants().unwrap();
        for path in paths {
            assert_eq!(fast.stat(path), slow.stat(path), "{path}");
            assert_eq!(fast.get_data(path), slow.get_data(path), "{path}");
        }
        assert_eq!(fast.node_count(), slow.node_count());
        assert_eq!(fast.approximate_data_size(), slow.approximate_data_size());
    }

    #[test]
    fn a_refused_record_leaves_the_next_ones_placed_right() {
        let mut tree = DataTree::new(false);
        let mut restorer = TreeRestorer::new(false);
        restorer.acl(&mut tree, 0, &world());
        restorer.node(&mut tree, "/a", None, 0, stat(1, 0)).unwrap();
        restorer.node(&mut tree, "/a/b", None, 0, stat(2, 0)).unwrap();
        // Prepared (its parent /a/b is on the path) but refused for its ACL.
        assert_eq!(
            restorer.node(&mut tree, "/a/b/c", None, 9, stat(3, 0)),
            Err(RestoreError::UnknownAcl(9))
        );
        restorer.node(&mut tree, "/a/b/d", None, 0, stat(4, 0)).unwrap();
        restorer.node(&mut tree, "/a/b/d/e", None, 0, stat(5, 0)).unwrap();
        restorer.finish(&mut tree);
        tree.check_invariants().unwrap();
        assert_eq!(tree.stat("/a/b/d/e").map(|s| s.czxid), Some(5));
        assert_eq!(tree.stat("/a/b/c"), None);
    }

    #[test]
    fn refuses_orphans_and_unknown_acls() {
        let mut tree = DataTree::new(false);
        let fresh = tree.node_count();
        let mut restorer = TreeRestorer::new(false);
        restorer.acl(&mut tree, 0, &world());
        assert_eq!(
            restorer.node(&mut tree, "/x/y", None, 0, stat(1, 0)),
            Err(RestoreError::Rejected(ErrorCode::NoNode))
        );
        assert_eq!(
            restorer.node(&mut tree, "/x", None, 7, stat(1, 0)),
            Err(RestoreError::UnknownAcl(7))
        );
        assert_eq!(
            restorer.node(&mut tree, "x", None, 0, stat(1, 0)),
            Err(RestoreError::Rejected(ErrorCode::BadArguments))
        );
        // A parent path without its leading `/` names no node (not the root).
        assert_eq!(
            restorer.node(&mut tree, "x/y", None, 0, stat(1, 0)),
            Err(RestoreError::Rejected(ErrorCode::NoNode))
        );
        restorer.node(&mut tree, "/x", None, 0, stat(1, 0)).unwrap();
        restorer.node(&mut tree, "/x/y", None, 0, stat(2, 0)).unwrap();
        restorer.finish(&mut tree);
        tree.check_invariants().unwrap();
        assert_eq!(tree.node_count(), fresh + 2);
    }
}
