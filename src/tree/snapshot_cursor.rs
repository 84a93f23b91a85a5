//! Walks the tree in pre-order a few thousand nodes at a time, so a snapshot can be written while
//! writes go on between steps (a fuzzy snapshot, as ZooKeeper's). The cursor holds paths, not node
//! ids: a node deleted between steps is simply skipped, and one created after its parent was
//! visited is not in the snapshot; replaying the log from the snapshot's zxid restores both.
//! Parents are always written before their children, so a loader never meets an orphan.

use crate::proto::{Acl, StatPersisted};
use crate::tree::DataTree;

/// A resumable pre-order walk.
#[derive(Debug)]
pub struct SnapshotCursor {
    stack: Vec<String>,
    visited: u64,
}

impl Default for SnapshotCursor {
    fn default() -> Self {
        SnapshotCursor { stack: vec!["/".to_owned()], visited: 0 }
    }
}

impl SnapshotCursor {
    /// Visits up to `max_nodes` nodes; returns true when the walk is complete.
    pub fn step(
        &mut self,
        tree: &DataTree,
        max_nodes: usize,
        mut visit: impl FnMut(&str, Option<&[u8]>, &[Acl], &StatPersisted),
    ) -> bool {
        let mut budget = max_nodes;
        while budget > 0 {
            let Some(path) = self.stack.pop() else { return true };
            let Some(view) = tree.snapshot_view(&path) else { continue };
            visit(&path, view.data, &view.acl, view.stat);
            self.visited += 1;
            budget -= 1;
            let base = if path == "/" { "" } else { path.as_str() };
            // Children come newest first; pushing them in that order pops the oldest first.
            for name in view.children_newest_first {
                self.stack.push(format!("{base}/{name}"));
            }
        }
        self.stack.is_empty()
    }

    /// Nodes visited so far.
    pub fn visited(&self) -> u64 {
        self.visited
    }
}
