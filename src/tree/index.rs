//! The path index: every node's id, keyed by (parent id, name), grown without stopping the tree.
//!
//! A hash table that doubles rehashes every entry at once, and hashing an entry here reads its
//! node and its name (two cache misses): at a million znodes one doubling stopped every request
//! for about 200 ms (create at 32 x 1,000: `reserve_rehash` was 3.8% of the server's samples,
//! nearly all of it in the doublings, and the p99.9 was 220-410 ms). So when the table is full a
//! table of twice the size takes its place and the old one is drained into it a few entries per
//! insert, walking the slab by id; until it is empty a lookup that misses the new table also tries
//! the old one. Memory at the peak is what a doubling holds anyway: both tables.

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

use super::{Node, NodeId};

/// Slab slots visited per insert while draining, at the least (see `NodeIndex::grow`).
const DRAIN_SLOTS_MIN: usize = 16;
/// The drain ends within this fraction of the new table's room: both tables are held meanwhile,
/// so it should end soon, and each insert moves a bounded number of entries (16 slots: a few
/// microseconds) for the same total work a doubling does at once.
const DRAIN_WITHIN_ROOM_DIVISOR: usize = 16;

/// Node ids by (parent, name); see the module comment.
#[derive(Debug)]
pub(super) struct NodeIndex {
    table: HashTable<NodeId>,
    /// While growing: the full table being drained into `table`; empty otherwise.
    old: HashTable<NodeId>,
    /// While growing: the next slab slot whose node moves over.
    drain_at: usize,
    /// While growing: slots visited per insert, so the drain ends well before `table` fills.
    drain_slots: usize,
}

/// The hash of a name alone: half of an index key, the half that does not depend on where the
/// node sits, so a snapshot loader can compute it on the thread that decodes the records
/// (`restorer`) and the tree's thread only mixes in the parent.
pub(super) fn name_hash(name: &[u8]) -> u64 {
    NAME_HASHER.hash_one(name)
}

/// Fixed-key hasher of names: the index layout (not any observable order) depends on it.
/// foldhash, not std's SipHash: every path segment of every request is hashed here, and SipHash
/// was 4.6% of the server's CPU samples under getData load (README, BENCHMARKS). Resistance to
/// crafted colliding names is unchanged: the SipHash key was fixed (zero) too, so bucket
/// collisions could be brute-forced offline either way.
const NAME_HASHER: FixedState = FixedState::with_seed(0x6665_7272_6f6b_6565);
/// Mixes a parent id into a name's hash.
const KEY_HASHER: FixedState = FixedState::with_seed(0x6b65_7065_7273_6b65);

/// The index key of the child of `parent` whose name hashes to `name_hash`.
pub(super) fn key_hash(parent: NodeId, name_hash: u64) -> u64 {
    KEY_HASHER.hash_one((parent, name_hash))
}

fn node_hash(nodes: &[Option<Node>], id: NodeId) -> u64 {
    match nodes.get(id as usize) {
        Some(Some(n)) => key_hash(n.parent, name_hash(n.block.name_bytes())),
        _ => 0,
    }
}

impl NodeIndex {
    pub(super) fn new() -> NodeIndex {
        NodeIndex {
            table: HashTable::new(),
            old: HashTable::new(),
            drain_at: 0,
            drain_slots: DRAIN_SLOTS_MIN,
        }
    }

    /// The child of `parent` named `name`.
    pub(super) fn find(&self, nodes: &[Option<Node>], parent: NodeId, name: &[u8]) -> Option<NodeId> {
        self.find_hashed(nodes, parent, name, key_hash(parent, name_hash(name)))
    }

    /// The child of `parent` named `name`, whose key hashes to `hash` (`key_hash`).
    pub(super) fn find_hashed(
        &self,
        nodes: &[Option<Node>],
        parent: NodeId,
        name: &[u8],
        hash: u64,
    ) -> Option<NodeId> {
        let is = |&id: &NodeId| matches!(&nodes[id as usize], Some(n) if n.parent == parent && n.block.name_bytes() == name);
        match self.table.find(hash, is) {
            Some(&id) => Some(id),
            None if !self.old.is_empty() => self.old.find(hash, is).copied(),
            None => None,
        }
    }

    /// Adds node `id`, already in its slab slot, whose key hashes to `hash` (`key_hash`).
    pub(super) fn insert_hashed(&mut self, nodes: &[Option<Node>], id: NodeId, hash: u64) {
        if self.old.is_empty() && self.table.len() >= self.table.capacity() {
            self.grow(nodes.len());
        }
        self.drain(nodes, self.drain_slots);
        self.table.insert_unique(hash, id, |&other| node_hash(nodes, other));
    }

    /// Removes node `id`, whose slot no longer holds it: `parent` and `name` were its key.
    pub(super) fn remove(&mut self, parent: NodeId, name: &[u8], id: NodeId) {
        let hash = key_hash(parent, name_hash(name));
        if let Ok(entry) = self.table.find_entry(hash, |&other| other == id) {
            entry.remove();
        } else if let Ok(entry) = self.old.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
    }

    /// Room for `additional` more nodes without growing (a snapshot says how many it holds).
    pub(super) fn reserve(&mut self, nodes: &[Option<Node>], additional: usize) {
        self.drain(nodes, usize::MAX);
        self.table.reserve(additional, |&other| node_hash(nodes, other));
    }

    /// Number of nodes indexed.
    pub(super) fn len(&self) -> usize {
        self.table.len() + self.old.len()
    }

    /// Whether an old table is still being drained (for tests).
    #[cfg(test)]
    pub(super) fn growing(&self) -> bool {
        !self.old.is_empty()
    }

    /// Starts draining the full table into one of twice its capacity. The drain visits every slab
    /// slot once; at `drain_slots` per insert it ends after a sixteenth of the new room is used.
    fn grow(&mut self, slab_len: usize) {
        let capacity = (self.table.capacity() * 2).max(16);
        let room = capacity - self.table.len();
        self.old = std::mem::replace(&mut self.table, HashTable::with_capacity(capacity));
        self.drain_at = 0;
        self.drain_slots = (slab_len * DRAIN_WITHIN_ROOM_DIVISOR / room.max(1) + 1).max(DRAIN_SLOTS_MIN);
    }

    /// Moves the nodes of up to `slots` more slab slots from the old table to the new one.
    fn drain(&mut self, nodes: &[Option<Node>], slots: usize) {
        if self.old.is_empty() {
            return;
        }
        let end = self.drain_at.saturating_add(slots).min(nodes.len());
        for id in self.drain_at..end {
            let id = id as NodeId;
            if nodes[id as usize].is_none() {
                continue;
            }
            let hash = node_hash(nodes, id);
            // A node created since the growth began is in the new table already.
            if let Ok(entry) = self.old.find_entry(hash, |&other| other == id) {
                entry.remove();
                self.table.insert_unique(hash, id, |&other| node_hash(nodes, other));
            }
        }
        self.drain_at = end;
        if self.drain_at >= nodes.len() || self.old.is_empty() {
            // Every slot was visited, so every node is in the new table (what is left in the old
            // one is nothing); free it.
            debug_assert!(self.old.is_empty(), "nodes left behind in the old index");
            self.old = HashTable::new();
        }
    }
}
