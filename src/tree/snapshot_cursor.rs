//! Walks the tree in pre-order a few thousand nodes at a time, so a snapshot can be written while
//! writes go on between steps (a fuzzy snapshot, as ZooKeeper's). Parents are always written
//! before their children, so a loader never meets an orphan.
//!
//! The cursor holds node ids, one frame per level of the walk: the node, its identity and the ids
//! of its children when it was visited. It builds each path in one reused buffer, so a visit costs
//! no path lookup and no allocation (the earlier cursor held one `String` per pending node and
//! looked every path up again: a snapshot of a node with 900,000 children allocated 900,000
//! strings and spent most of its time in the index).
//!
//! Between steps the tree may change. What that may do to the walk, and why each case is safe:
//! - A pending child was deleted: its slot is empty or holds a node with another parent; it is
//!   skipped. Replaying the log from the snapshot's zxid deletes it anyway.
//! - Its slot was reused by a new node under the same parent: that node is written. It was created
//!   after the snapshot started, so replay creates it again, which the loader tolerates as it does
//!   for every node a fuzzy snapshot catches after its start.
//! - A frame's node was deleted: then so was every node below it (only empty nodes can be
//!   deleted), so the frame and those above it are dropped when the next step validates them. A
//!   frame is valid while its slot holds a node with the same parent, name and czxid: that node has
//!   the frame's path, so nothing is ever written under a path it does not have.
//! - A node created after its parent was visited is not in the snapshot; replay creates it.
//!
//! A node's children are collected in pieces, a bounded number per step, so a node with a million
//! children does not stall the pipeline for the whole walk of its child list. The piece already
//! collected ends at a child whose identity (parent, czxid) is checked on resume; its list links
//! are then still valid, because creations only add children at the newest end, which is where
//! collection goes (children created meanwhile are collected too). If that child was deleted
//! meanwhile, the whole list is walked again in one go, adding what was not collected yet, which
//! always completes.

use crate::proto::{Acl, StatPersisted};
use crate::tree::{DataTree, NodeId, NONE, ROOT};

/// One level of the walk: a visited node whose children are being visited.
#[derive(Debug)]
struct Frame {
    id: NodeId,
    /// Identity check on resume, with the parent and the name.
    czxid: i64,
    /// Length of this node's path in the cursor's buffer (0 for the root, whose children start
    /// with `/`).
    path_len: usize,
    /// Children in creation order (as ZooKeeper writes them), collected oldest first, then
    /// visited from `next`.
    children: Vec<NodeId>,
    /// While collecting: the czxid of the last child collected (the list goes on after it).
    collecting: Option<i64>,
    next: usize,
}

impl Frame {
    fn new(tree: &DataTree, id: NodeId, path_len: usize) -> Frame {
        let node = tree.node(id);
        let collecting = (node.first_child != NONE).then_some(i64::MIN);
        Frame {
            id,
            czxid: node.stat.czxid,
            path_len,
            children: Vec::new(),
            collecting,
            next: 0,
        }
    }

    /// Collects up to `max_ids` more children; returns how many.
    fn collect(&mut self, tree: &DataTree, max_ids: usize) -> usize {
        let Some(last_czxid) = self.collecting else { return 0 };
        let mut child = match self.children.last() {
            None => tree.node(self.id).first_child,
            Some(&last) => match tree.nodes.get(last as usize) {
                Some(Some(n)) if n.parent == self.id && n.stat.czxid == last_czxid => n.next_sibling,
                // The last child collected is gone: walk the list again and collect the rest now.
                _ => return self.collect_again(tree),
            },
        };
        let mut collected = 0;
        while child != NONE && collected < max_ids {
            self.children.push(child);
            collected += 1;
            child = tree.node(child).next_sibling;
        }
        match self.children.last() {
            Some(&last) if child != NONE => self.collecting = Some(tree.node(last).stat.czxid),
            _ => self.collecting = None,
        }
        collected
    }

    /// Collects the whole list again in one pass, adding every child not collected before: the
    /// newer ones not reached yet, including any created since the frame began (written too early is
    /// harmless in a fuzzy snapshot, see the module doc; left out would lose a node).
    fn collect_again(&mut self, tree: &DataTree) -> usize {
        let before: std::collections::HashSet<NodeId, foldhash::fast::FixedState> =
            self.children.iter().copied().collect();
        let mut child = tree.node(self.id).first_child;
        let mut collected = 0;
        while child != NONE {
            if !before.contains(&child) {
                self.children.push(child);
                collected += 1;
            }
            child = tree.node(child).next_sibling;
        }
        self.collecting = None;
        collected.max(1)
    }
}

/// Children ids collected per node visit in a step's budget: collecting an id (one cache miss,
/// ~25 ns with a million children) costs a fraction of encoding a node. Small lists cost nothing;
/// a collection that uses up the budget always ends the step's collecting (`max_ids`).
const COLLECTED_IDS_PER_NODE: usize = 8;

/// A resumable pre-order walk.
#[derive(Debug, Default)]
pub struct SnapshotCursor {
    frames: Vec<Frame>,
    path: String,
    started: bool,
    visited: u64,
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
        if !self.started {
            if budget == 0 {
                return false;
            }
            self.started = true;
            let root = tree.node(ROOT);
            visit("/", root.block.data(), tree.acls.get_ref(root.acl), &root.persisted());
            self.visited += 1;
            budget -= 1;
            self.frames.push(Frame::new(tree, ROOT, 0));
        } else {
            self.drop_stale_frames(tree);
        }
        while budget > 0 {
            let Some(top) = self.frames.last_mut() else { return true };
            if top.collecting.is_some() {
                let max_ids = budget.saturating_mul(COLLECTED_IDS_PER_NODE);
                let collected = top.collect(tree, max_ids);
                budget = budget.saturating_sub(collected / COLLECTED_IDS_PER_NODE);
                continue;
            }
            let Some(&child) = top.children.get(top.next) else {
                self.frames.pop();
                continue;
            };
            top.next += 1;
            let (parent, parent_len) = (top.id, top.path_len);
            let Some(Some(node)) = tree.nodes.get(child as usize) else {
                continue;
            };
            if node.parent != parent {
                continue;
            }
            self.path.truncate(parent_len);
            self.path.push('/');
            self.path.push_str(node.block.name());
            visit(
                &self.path,
                node.block.data(),
                tree.acls.get_ref(node.acl),
                &node.persisted(),
            );
            self.visited += 1;
            budget -= 1;
            if node.num_children > 0 {
                self.frames.push(Frame::new(tree, child, self.path.len()));
            }
        }
        self.frames.is_empty()
    }

    /// Drops the first frame whose node is no longer the one visited, and every frame above it.
    fn drop_stale_frames(&mut self, tree: &DataTree) {
        let stale = (1..self.frames.len()).find(|&k| {
            let (parent, frame) = (&self.frames[k - 1], &self.frames[k]);
            let name = &self.path[parent.path_len + 1..frame.path_len];
            !matches!(tree.nodes.get(frame.id as usize),
                Some(Some(n)) if n.parent == parent.id && n.stat.czxid == frame.czxid && n.block.name_bytes() == name.as_bytes())
        });
        if let Some(k) = stale {
            self.frames.truncate(k);
        }
    }

    /// Nodes visited so far.
    pub fn visited(&self) -> u64 {
        self.visited
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::proto::open_acl_unsafe;
    use crate::proto::txn::{Txn, TxnBody, TxnHeader};

    struct Applier {
        tree: DataTree,
        zxid: i64,
    }

    impl Applier {
        fn new() -> Applier {
            Applier {
                tree: DataTree::new(false),
                zxid: 0,
            }
        }
        /// A tree with `/w` and its children `/w/c0` .. `/w/c{n-1}`.
        fn wide(n: usize) -> Applier {
            let mut a = Applier::new();
            a.create("/w");
            for i in 0..n {
                a.create(&format!("/w/c{i}"));
            }
            a
        }
        fn apply(&mut self, body: TxnBody) {
            self.zxid += 1;
            let header = TxnHeader {
                client_id: 1,
                zxid: self.zxid,
                time: self.zxid,
                ..Default::default()
            };
            self.tree.apply(&Txn { header, body }, &mut Vec::new());
        }
        fn create(&mut self, path: &str) {
            let body = TxnBody::Create {
                path: path.into(),
                data: Some(Bytes::from_static(b"d")),
                acl: open_acl_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            };
            self.apply(body);
        }
        fn delete(&mut self, path: &str) {
            self.apply(TxnBody::Delete { path: path.into() });
        }
    }

    fn assert_written_once(seen: &[String]) {
        let mut unique = seen.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "a node was written twice: {seen:?}");
    }

    fn paths_in_steps(tree: &DataTree, step: usize) -> Vec<String> {
        let mut cursor = SnapshotCursor::default();
        let mut paths = Vec::new();
        while !cursor.step(tree, step, |p, _, _, _| paths.push(p.to_owned())) {}
        paths
    }

    #[test]
    fn walks_in_preorder_in_creation_order_in_any_step_size() {
        let mut a = Applier::new();
        for path in ["/b", "/a", "/a/y", "/a/x", "/a/x/1", "/c"] {
            a.create(path);
        }
        let expected = [
            "/",
            "/zookeeper",
            "/zookeeper/quota",
            "/zookeeper/config",
            "/b",
            "/a",
            "/a/y",
            "/a/x",
            "/a/x/1",
            "/c",
        ];
        let mut whole = Vec::new();
        a.tree.visit_preorder(|p, _, _, _| whole.push(p.to_owned()));
        assert_eq!(whole, expected);
        for step in [1, 2, 3, 100] {
            assert_eq!(paths_in_steps(&a.tree, step), expected, "step {step}");
        }
    }

    #[test]
    fn changes_between_steps_never_write_a_wrong_path_and_keep_untouched_nodes() {
        let mut a = Applier::new();
        for path in ["/p", "/p/a", "/p/b", "/p/c", "/q", "/q/deep", "/q/deep/leaf", "/r"] {
            a.create(path);
        }
        let mut cursor = SnapshotCursor::default();
        let mut seen = Vec::new();
        // "/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config", "/p", "/p/a".
        assert!(!cursor.step(&a.tree, 6, |p, _, _, _| seen.push(p.to_owned())));
        // /p/b goes; a new node may take its slot under /p. /q's subtree is replaced by a node of
        // the same name at a new czxid, whose child has another name: the old frame must not be
        // reused for it.
        a.delete("/p/b");
        a.create("/p/new");
        a.delete("/q/deep/leaf");
        a.delete("/q/deep");
        a.delete("/q");
        a.create("/q");
        a.create("/q/other");
        while !cursor.step(&a.tree, 1, |p, _, _, _| seen.push(p.to_owned())) {}
        for path in ["/p/c", "/r", "/q", "/q/other"] {
            assert!(seen.iter().any(|p| p == path), "{path} missing from {seen:?}");
        }
        for path in &seen {
            assert!(
                a.tree.lookup(path).is_some(),
                "{path} written but not in the tree: {seen:?}"
            );
        }
        assert_written_once(&seen);
    }

    #[test]
    fn a_deleted_frame_drops_its_subtree_only() {
        let mut a = Applier::new();
        for path in ["/a", "/a/b", "/a/b/c", "/a/b/d", "/a/z"] {
            a.create(path);
        }
        let mut cursor = SnapshotCursor::default();
        let mut seen = Vec::new();
        // Through /a/b/c: the frame of /a/b is open with /a/b/d pending.
        assert!(!cursor.step(&a.tree, 7, |p, _, _, _| seen.push(p.to_owned())));
        assert_eq!(seen.last().map(String::as_str), Some("/a/b/c"));
        a.delete("/a/b/c");
        a.delete("/a/b/d");
        a.delete("/a/b");
        // A new node reuses a freed slot, possibly /a/b's: it is not /a/b and has no child /a/b/d.
        a.create("/a/b2");
        a.create("/a/b2/x");
        while !cursor.step(&a.tree, 100, |p, _, _, _| seen.push(p.to_owned())) {}
        assert!(seen.iter().any(|p| p == "/a/z"), "{seen:?}");
        for path in &seen[7..] {
            assert!(
                a.tree.lookup(path).is_some(),
                "{path} written but not in the tree: {seen:?}"
            );
        }
    }

    #[test]
    fn a_wide_node_is_collected_over_steps_while_children_come_and_go() {
        let mut a = Applier::wide(300);
        let mut cursor = SnapshotCursor::default();
        let mut seen: Vec<String> = Vec::new();
        let mut deleted = std::collections::HashSet::new();
        let mut victim = 299u64;
        for round in 0.. {
            let mut written = Vec::new();
            let done = cursor.step(&a.tree, 1, |p, _, _, _| written.push(p.to_owned()));
            for path in &written {
                assert!(a.tree.lookup(path).is_some(), "{path} written but not in the tree");
            }
            seen.extend(written);
            if done {
                break;
            }
            assert!(round < 10_000, "the walk does not end");
            // Delete children from the newest end, where collection has been, and elsewhere.
            for _ in 0..2 {
                victim = (victim * 7 + 13) % 300;
                if deleted.insert(victim) {
                    a.delete(&format!("/w/c{victim}"));
                }
            }
            a.create(&format!("/w/new{round}"));
        }
        for i in (0..300).filter(|i| !deleted.contains(i)) {
            let path = format!("/w/c{i}");
            assert_eq!(seen.iter().filter(|p| **p == path).count(), 1, "{path} in {seen:?}");
        }
        assert_written_once(&seen);
    }

    #[test]
    fn collection_resumes_after_its_last_child_was_deleted() {
        let mut a = Applier::wide(20);
        let w = a.tree.lookup("/w").unwrap();
        let mut frame = Frame::new(&a.tree, w, 2);
        // Oldest first: c0 ..= c4.
        assert_eq!(frame.collect(&a.tree, 5), 5);
        a.delete("/w/c4");
        a.delete("/w/c3");
        a.create("/w/late");
        frame.collect(&a.tree, 5);
        assert!(
            frame.collecting.is_none(),
            "a lost resume point collects the rest at once"
        );
        let names: Vec<String> = frame
            .children
            .iter()
            .filter_map(|&id| match a.tree.nodes.get(id as usize) {
                Some(Some(n)) if n.parent == w => Some(n.block.name().to_string()),
                _ => None,
            })
            .collect();
        let mut expected: Vec<String> = (0..20)
            .filter(|i| *i != 4 && *i != 3)
            .map(|i| format!("c{i}"))
            .collect();
        expected.push("late".into());
        let mut sorted = names.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected, "every child once: {names:?}");
    }
}
