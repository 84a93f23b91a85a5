//! Rebuilding a tree from snapshot records, fast enough that restart time is dominated by reading
//! the file.
//!
//! Snapshots hold nodes in pre-order (every parent before its children, siblings together), so the
//! parent of a node is nearly always the parent of the node before it. The restorer remembers that
//! parent instead of walking each path from the root, and interns each of the snapshot's ACL lists
//! once instead of hashing a node's ACL list per node. A restart with 1,000,000 znodes spent most
//! of its time in those two walks (`perf`: hashing and child lookups about 40% of samples).

use std::collections::HashMap;

use super::{split_parent, AclId, DataTree, NodeId, NodeKind, ROOT};
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

/// Feeds snapshot records into a tree. Call `finish` at the end: it drops the restorer's own
/// references to the ACL lists, so lists no node uses are forgotten.
#[derive(Debug, Default)]
pub struct TreeRestorer {
    parent_path: String,
    parent: Option<NodeId>,
    acls: HashMap<i32, AclId>,
}

impl TreeRestorer {
    /// Defines the snapshot's ACL list `file_id` (a later definition of the same id replaces it).
    pub fn acl(&mut self, tree: &mut DataTree, file_id: i32, acl: &[Acl]) {
        let id = tree.acls.intern(acl);
        if let Some(old) = self.acls.insert(file_id, id) {
            tree.acls.release(old);
        }
    }

    /// Restores one node: data, ACL and persisted Stat exactly as stored. The root (`/` or `""`) and
    /// nodes a fresh tree already has (`/zookeeper`, ...) are overwritten in place; any other node
    /// needs its parent restored first.
    pub fn node(
        &mut self,
        tree: &mut DataTree,
        path: &str,
        data: Option<&[u8]>,
        file_acl: i32,
        stat: StatPersisted,
    ) -> Result<(), RestoreError> {
        let acl = *self.acls.get(&file_acl).ok_or(RestoreError::UnknownAcl(file_acl))?;
        if path.is_empty() || path == "/" {
            tree.acls.retain(acl);
            tree.overwrite_node(ROOT, data, acl, stat);
            return Ok(());
        }
        let (parent_path, name) = split_parent(path).ok_or(RestoreError::Rejected(ErrorCode::BadArguments))?;
        if name.is_empty() {
            return Err(RestoreError::Rejected(ErrorCode::BadArguments));
        }
        let parent = match self.parent {
            Some(id) if self.parent_path == parent_path => id,
            _ => {
                let id = tree.lookup(parent_path).ok_or(RestoreError::Rejected(ErrorCode::NoNode))?;
                self.parent_path.clear();
                self.parent_path.push_str(parent_path);
                self.parent = Some(id);
                id
            }
        };
        tree.acls.retain(acl);
        match tree.find_child(parent, name) {
            Some(id) => tree.overwrite_node(id, data, acl, stat),
            None => {
                tree.link_child(parent, name, path.len(), data, acl, stat);
                tree.index_kind(path, NodeKind::from_owner(stat.ephemeral_owner, tree.extended_types_enabled));
            }
        }
        Ok(())
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
        StatPersisted { czxid, mzxid: czxid, pzxid: czxid, ephemeral_owner: owner, ..StatPersisted::default() }
    }

    fn world() -> Vec<Acl> {
        vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }]
    }

    #[test]
    fn restores_what_restore_node_restores() {
        let digest = vec![Acl { perms: 1, id: Id { scheme: "digest".into(), id: "u:x".into() } }];
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
        let mut restorer = TreeRestorer::default();
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
            assert_eq!(fast.get_acl(path).map(|a| a.0.to_vec()), slow.get_acl(path).map(|a| a.0.to_vec()), "{path}");
        }
        assert_eq!(fast.node_count(), slow.node_count());
        assert_eq!(fast.approximate_data_size(), slow.approximate_data_size());
        assert_eq!(fast.ephemerals_of(0x55), vec!["/a/b/e".to_string()]);
        assert_eq!(fast.children("/").map(|c| c.0), slow.children("/").map(|c| c.0));
    }

    #[test]
    fn refuses_orphans_and_unknown_acls() {
        let mut tree = DataTree::new(false);
        let fresh = tree.node_count();
        let mut restorer = TreeRestorer::default();
        restorer.acl(&mut tree, 0, &world());
        assert_eq!(restorer.node(&mut tree, "/x/y", None, 0, stat(1, 0)), Err(RestoreError::Rejected(ErrorCode::NoNode)));
        assert_eq!(restorer.node(&mut tree, "/x", None, 7, stat(1, 0)), Err(RestoreError::UnknownAcl(7)));
        assert_eq!(restorer.node(&mut tree, "x", None, 0, stat(1, 0)), Err(RestoreError::Rejected(ErrorCode::BadArguments)));
        restorer.node(&mut tree, "/x", None, 0, stat(1, 0)).unwrap();
        restorer.node(&mut tree, "/x/y", None, 0, stat(2, 0)).unwrap();
        restorer.finish(&mut tree);
        tree.check_invariants().unwrap();
        assert_eq!(tree.node_count(), fresh + 2);
    }
}
