//! The data tree: every znode with its data, Stat, ACL and children, plus the indexes ZooKeeper
//! keeps beside it (ephemerals by session, containers, TTL nodes) and the last applied zxid.
//!
//! Owns: the in-memory tree and `apply(txn)`, a pure function of the tree and the txn (the leader
//! fixed zxid, time, sequential suffix and session in the txn; nothing here reads a clock).
//! Must not touch: sockets, sessions' connections, watches (apply *returns* `Trigger`s; the watch
//! module turns them into events), threads. Single owner, `&mut self` only (STYLE.md §c.6).
//!
//! Layout, chosen for memory at millions of znodes: nodes live in a slab (`Vec<Option<Node>>`)
//! addressed by `NodeId`; each node stores only its own name, not its full path; children are an
//! intrusive doubly-linked sibling list in creation order (O(1) append and delete, no per-parent
//! set); the lookup index is a hash table of `NodeId`s keyed by (parent id, name) so it holds 4
//! bytes per node, grown a few entries per insert (`index`); ACL lists are interned in a shared
//! `AclTable` and referenced by a 4-byte id. Paths are walked segment by segment. Nothing here
//! recurses: deep paths are walked with explicit loops.
//!
//! Invariants (checked by `check_invariants` in tests): `num_children` equals the length of the
//! sibling list; every non-root node is in the index under (parent, name); the node count equals
//! the number of live slots.

mod acl_table;
pub mod digest;
mod index;
mod listings;
mod node_block;
mod restorer;
mod snapshot_cursor;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;

pub use acl_table::{AclId, AclTable};
pub use listings::Listing;
pub use restorer::{NodePreparer, PreparedNode, RestoreError, TreeRestorer};
pub use snapshot_cursor::SnapshotCursor;

use crate::proto::consts::{CONTAINER_EPHEMERAL_OWNER, CONFIG_PATH, EXTENDED_MASK, QUOTA_PATH, ZOOKEEPER_PATH};
use crate::proto::txn::{Txn, TxnBody};
use crate::proto::{Acl, ErrorCode, Id, Stat, StatPersisted};
use index::NodeIndex;
use listings::Listings;
use node_block::{BlockStat, Change, NodeBlock};

/// Index of a node in the slab.
pub type NodeId = u32;
const NONE: NodeId = u32::MAX;
const ROOT: NodeId = 0;

/// What kind of node a create makes; decides the persisted `ephemeralOwner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Plain node.
    Persistent,
    /// Owned by a session; deleted when it ends.
    Ephemeral(i64),
    /// Deleted by the container manager once its last child is gone.
    Container,
    /// Deleted when unmodified and childless for longer than the TTL (ms).
    Ttl(i64),
}

impl NodeKind {
    /// The persisted `ephemeralOwner` for this kind (`EphemeralType`, PROTOCOL.md §2.7).
    pub fn ephemeral_owner(self) -> i64 {
        match self {
            NodeKind::Persistent => 0,
            NodeKind::Ephemeral(session_id) => session_id,
            NodeKind::Container => CONTAINER_EPHEMERAL_OWNER,
            NodeKind::Ttl(ttl_ms) => EXTENDED_MASK | ttl_ms,
        }
    }

    /// Decodes a persisted `ephemeralOwner` as `EphemeralType.get` does.
    pub fn from_owner(owner: i64, extended_types_enabled: bool) -> NodeKind {
        if extended_types_enabled && (owner & EXTENDED_MASK) == EXTENDED_MASK {
            return NodeKind::Ttl(owner & 0xFF_FFFF_FFFF);
        }
        match owner {
            0 => NodeKind::Persistent,
            CONTAINER_EPHEMERAL_OWNER => NodeKind::Container,
            session_id => NodeKind::Ephemeral(session_id),
        }
    }
}

/// A change that watches may care about, returned by `apply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Node created at the path.
    Created(String),
    /// Node deleted at the path.
    Deleted(String),
    /// Node data set at the path.
    DataChanged(String),
}

/// The outcome of applying one txn (or one sub-txn of a multi).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyResult {
    /// Applied; nothing to report (delete, check, sessions).
    Done,
    /// Node created; its Stat.
    Created(Stat),
    /// Data or ACL set; the node's new Stat.
    Stat(Stat),
    /// Not applied, with the ZooKeeper code. In a failed multi, sub-ops that were fine but rolled
    /// back carry `ErrorCode::Ok`.
    Failed(ErrorCode),
    /// Per-sub-op results of a multi.
    Multi(Vec<ApplyResult>),
}

/// What prep needs to know about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Persisted stat (`cversion` counts creations only).
    pub stat: StatPersisted,
    /// Number of children.
    pub num_children: i32,
    /// The node's ACL.
    pub acl: Arc<[Acl]>,
}

/// The Stat fields a node's slot keeps: those fixed at creation (`czxid`, `ctime`) and those its
/// children change (`pzxid`, `cversion`), which must not rebuild its block. The rest, usually at
/// their initial values, are in the block (`BlockStat`).
#[derive(Debug, Clone, Copy)]
struct NodeStat {
    czxid: i64,
    ctime: i64,
    pzxid: i64,
    cversion: i32,
}

/// Splits a persisted Stat between a node's slot and its block.
fn split_stat(stat: &StatPersisted) -> (NodeStat, BlockStat) {
    let slot = NodeStat { czxid: stat.czxid, ctime: stat.ctime, pzxid: stat.pzxid, cversion: stat.cversion };
    (slot, block_stat(&slot, stat.ephemeral_owner, stat.mzxid, stat.mtime, stat.version, stat.aversion))
}

/// The block's fields for a node whose slot holds `slot`: a change only when the setData fields
/// differ from the creation's.
fn block_stat(slot: &NodeStat, owner: i64, mzxid: i64, mtime: i64, version: i32, aversion: i32) -> BlockStat {
    let unchanged = mzxid == slot.czxid && mtime == slot.ctime && version == 0;
    BlockStat { owner, change: (!unchanged).then_some(Change { mzxid, mtime, version }), aversion }
}

/// 72 bytes (checked by a test): with a million nodes every 8 bytes here is 8 MB.
#[derive(Debug)]
struct Node {
    block: NodeBlock,
    stat: NodeStat,
    acl: AclId,
    parent: NodeId,
    /// The oldest child; the list runs in creation order through `next_sibling`.
    first_child: NodeId,
    /// The next newer sibling (`NONE` for the newest).
    next_sibling: NodeId,
    /// The next older sibling; for the oldest child, the newest (so a create appends in O(1) and
    /// a listing needs no walk to find where creation order starts).
    prev_sibling: NodeId,
    num_children: u32,
}

/// The whole tree.
#[derive(Debug)]
pub struct DataTree {
    nodes: Vec<Option<Node>>,
    free: Vec<NodeId>,
    index: NodeIndex,
    acls: AclTable,
    ephemerals: HashMap<i64, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    live_nodes: usize,
    data_size: u64,
    extended_types_enabled: bool,
    /// Encoded child lists of nodes with many children (forgotten when a child comes or goes).
    listings: Listings,
    /// Highest zxid applied.
    pub last_processed_zxid: i64,
}

/// A node borrowed from the tree (`DataTree::read`).
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    tree: &'a DataTree,
    id: NodeId,
    node: &'a Node,
}

impl Node {
    /// The persisted Stat, as snapshots and prep see it.
    fn persisted(&self) -> StatPersisted {
        let s = &self.stat;
        let b = self.block.stat();
        let change = self.change(&b);
        StatPersisted {
            czxid: s.czxid,
            mzxid: change.mzxid,
            ctime: s.ctime,
            mtime: change.mtime,
            version: change.version,
            cversion: s.cversion,
            aversion: b.aversion,
            ephemeral_owner: b.owner,
            pzxid: s.pzxid,
        }
    }

    /// The node's last setData, or its creation when there was none.
    fn change(&self, b: &BlockStat) -> Change {
        b.change.unwrap_or(Change { mzxid: self.stat.czxid, mtime: self.stat.ctime, version: 0 })
    }
}

impl<'a> NodeRef<'a> {
    /// The Stat a client sees.
    pub fn stat(&self) -> Stat {
        self.tree.client_stat(self.node)
    }

    /// The data (None for a node created with null data).
    pub fn data(&self) -> Option<&'a [u8]> {
        self.node.block.data()
    }

    /// The node's ACL.
    pub fn acl(&self) -> &'a [Acl] {
        self.tree.acls.get_ref(self.node.acl)
    }

    /// The child names in creation order, borrowed: a reply encoder writes them straight into
    /// its buffer (a `Vec<String>` cost one allocation and free per child).
    pub fn child_names(&self) -> ChildNames<'a> {
        ChildNames { tree: self.tree, next: self.node.first_child, remaining: self.node.num_children as usize }
    }

    /// The node's encoded child list, when the tree keeps one (`DataTree::keep_listing`).
    pub fn listing(&self) -> Option<&'a Listing> {
        self.tree.listings.get(self.id)
    }

    /// Whether the tree would keep this node's encoded child list (it has many children).
    pub fn listing_worth_keeping(&self) -> bool {
        self.node.num_children >= listings::CHILDREN_MIN
    }

    /// The node's id, for `DataTree::keep_listing`.
    pub fn id(&self) -> NodeId {
        self.id
    }
}

/// Child names of one node in creation order (`NodeRef::child_names`).
#[derive(Clone)]
pub struct ChildNames<'a> {
    tree: &'a DataTree,
    next: NodeId,
    remaining: usize,
}

/// Each name as its UTF-8 bytes: the reply encoder copies bytes, and checking each name's UTF-8
/// again (`str::from_utf8`) was a quarter of the server's samples listing 1,000 children.
impl<'a> Iterator for ChildNames<'a> {
    type Item = &'a [u8];

    // Inlined into the reply encoder's loop: as a call it cost a third more instructions per name.
    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.next == NONE {
            debug_assert_eq!(self.remaining, 0, "num_children disagrees with the sibling list");
            return None;
        }
        let node = self.tree.node(self.next);
        self.next = node.next_sibling;
        self.remaining = self.remaining.saturating_sub(1);
        Some(node.block.name_bytes())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for ChildNames<'_> {}

/// Splits `/a/b/c` into (`/a/b`, `c`) and `/a` into (`/`, `a`). `None` when there is no `/`.
pub fn split_parent(path: &str) -> Option<(&str, &str)> {
    // A byte search: `rfind('/')`'s char searcher cost 5% of a snapshot load's reading thread.
    let slash = path.bytes().rposition(|b| b == b'/')?;
    let parent = if slash == 0 { "/" } else { &path[..slash] };
    Some((parent, &path[slash + 1..]))
}

impl DataTree {
    /// A tree holding only ZooKeeper's own nodes: `/`, `/zookeeper`, `/zookeeper/quota` and
    /// `/zookeeper/config` (world-readable only, `aversion` -1), as `DataTree`'s constructor makes.
    pub fn new(extended_types_enabled: bool) -> DataTree {
        let mut tree = DataTree {
            nodes: Vec::new(),
            free: Vec::new(),
            index: NodeIndex::new(),
            acls: AclTable::default(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            live_nodes: 0,
            data_size: 0,
            extended_types_enabled,
            listings: Listings::default(),
            last_processed_zxid: 0,
        };
        let open = tree.acls.intern(&crate::proto::open_acl_unsafe());
        // ZooKeeper's own nodes hold empty (not null) data (`DataTree` constructor).
        tree.nodes.push(Some(Node {
            block: NodeBlock::new("", Some(&[]), &BlockStat::default()),
            stat: split_stat(&StatPersisted::default()).0,
            acl: open,
            parent: NONE,
            first_child: NONE,
            next_sibling: NONE,
            prev_sibling: NONE,
            num_children: 0,
        }));
        tree.live_nodes = 1;
        let zero = StatPersisted::default();
        let all = crate::proto::open_acl_unsafe();
        let read_only = vec![Acl { perms: crate::proto::consts::perms::READ, id: world_anyone() }];
        for (path, acl, aversion) in [(ZOOKEEPER_PATH, &all, 0), (QUOTA_PATH, &all, 0), (CONFIG_PATH, &read_only, -1)] {
            let stat = StatPersisted { aversion, ..zero };
            let created = tree.insert_node(path, Some(&[]), acl, stat);
            debug_assert!(created.is_ok());
        }
        tree
    }

    fn node(&self, id: NodeId) -> &Node {
        match self.nodes.get(id as usize) {
            Some(Some(node)) => node,
            _ => panic!("dangling node id {id}"),
        }
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        match self.nodes.get_mut(id as usize) {
            Some(Some(node)) => node,
            _ => panic!("dangling node id {id}"),
        }
    }

    fn find_child(&self, parent: NodeId, name: &str) -> Option<NodeId> {
        self.index.find(&self.nodes, parent, name.as_bytes())
    }

    /// Finds the node at `path`. Malformed paths (no leading `/`, empty segments, a trailing `/`)
    /// are simply not found, as in ZooKeeper's path-keyed map.
    pub fn lookup(&self, path: &str) -> Option<NodeId> {
        self.lookup_visiting(path, |_| {})
    }

    /// `lookup`, calling `visit` with each node found on the way below the root, the last one
    /// included.
    fn lookup_visiting(&self, path: &str, mut visit: impl FnMut(NodeId)) -> Option<NodeId> {
        if path == "/" {
            return Some(ROOT);
        }
        let rest = path.strip_prefix('/')?;
        let mut id = ROOT;
        for segment in rest.split('/') {
            if segment.is_empty() {
                return None;
            }
            id = self.find_child(id, segment)?;
            visit(id);
        }
        Some(id)
    }

    /// The Stat a client sees: `cversion` converted to "creations + deletions", and
    /// `ephemeralOwner` 0 for containers and TTL nodes (`DataNode.copyStat`).
    fn client_stat(&self, node: &Node) -> Stat {
        let s = &node.stat;
        let b = node.block.stat();
        let change = node.change(&b);
        let ephemeral_owner = match NodeKind::from_owner(b.owner, self.extended_types_enabled) {
            NodeKind::Ephemeral(session_id) => session_id,
            _ => 0,
        };
        Stat {
            czxid: s.czxid,
            mzxid: change.mzxid,
            ctime: s.ctime,
            mtime: change.mtime,
            version: change.version,
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(node.num_children as i32),
            aversion: b.aversion,
            ephemeral_owner,
            data_length: node.block.data_len() as i32,
            num_children: node.num_children as i32,
            pzxid: s.pzxid,
        }
    }

    /// The client Stat of the node at `path`.
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.lookup(path).map(|id| self.client_stat(self.node(id)))
    }

    /// Data and Stat of the node at `path`.
    pub fn get_data(&self, path: &str) -> Option<(Option<Bytes>, Stat)> {
        let node = self.node(self.lookup(path)?);
        Some((node.block.data().map(Bytes::copy_from_slice), self.client_stat(node)))
    }

    /// ACL and Stat of the node at `path`.
    pub fn get_acl(&self, path: &str) -> Option<(Arc<[Acl]>, Stat)> {
        let node = self.node(self.lookup(path)?);
        Some((self.acls.get(node.acl), self.client_stat(node)))
    }

    /// A borrowed view of the node at `path`, for answering reads without copying: one path
    /// lookup serves the ACL check, the data or child names and the Stat.
    pub fn read(&self, path: &str) -> Option<NodeRef<'_>> {
        let id = self.lookup(path)?;
        Some(NodeRef { tree: self, id, node: self.node(id) })
    }

    /// Keeps the encoded child list of node `id` (read through `NodeRef::child_names`) for later
    /// replies, until one of its children is added or removed or the node itself is deleted.
    /// Callers keep only what `NodeRef::listing_worth_keeping`.
    pub fn keep_listing(&mut self, id: NodeId, listing: Listing) {
        if self.nodes.get(id as usize).is_some_and(Option::is_some) {
            self.listings.keep(id, listing);
        }
    }

    /// Child names (creation order) and Stat of the node at `path`.
    pub fn children(&self, path: &str) -> Option<(Vec<String>, Stat)> {
        let id = self.lookup(path)?;
        let node = self.node(id);
        let mut names = Vec::with_capacity(node.num_children as usize);
        let mut child = node.first_child;
        while child != NONE {
            let c = self.node(child);
            // Not `to_string()`: that goes through `Display` and the formatter (callgrind:
            // `Formatter::pad` and growing writes were ~10% of a 1,000-child listing).
            names.push(String::from(c.block.name()));
            child = c.next_sibling;
        }
        Some((names, self.client_stat(node)))
    }

    /// What prep needs about the node at `path`.
    pub fn node_info(&self, path: &str) -> Option<NodeInfo> {
        let node = self.node(self.lookup(path)?);
        Some(NodeInfo { stat: node.persisted(), num_children: node.num_children as i32, acl: self.acls.get(node.acl) })
    }

    /// Number of descendants of `path` (getAllChildrenNumber), counted without recursion.
    pub fn count_descendants(&self, path: &str) -> Option<i32> {
        let id = self.lookup(path)?;
        let mut count: i64 = 0;
        let mut stack = vec![self.node(id).first_child];
        while let Some(mut child) = stack.pop() {
            while child != NONE {
                count += 1;
                let c = self.node(child);
                if c.first_child != NONE {
                    stack.push(c.first_child);
                }
                child = c.next_sibling;
            }
        }
        Some(count.min(i32::MAX as i64) as i32)
    }

    /// Ephemeral paths owned by `session_id`, sorted.
    pub fn ephemerals_of(&self, session_id: i64) -> Vec<String> {
        self.ephemerals.get(&session_id).map(|set| set.iter().cloned().collect()).unwrap_or_default()
    }

    /// All sessions that own ephemerals, with their paths.
    pub fn ephemerals(&self) -> &HashMap<i64, BTreeSet<String>> {
        &self.ephemerals
    }

    /// Total number of ephemeral nodes.
    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    /// Node count as ZooKeeper reports it: its node map also holds the root under `""`, so it is
    /// one more than the number of nodes (5 on a fresh server).
    pub fn node_count(&self) -> usize {
        self.live_nodes + 1
    }

    /// Sum of path lengths and data lengths (`zk_approximate_data_size`).
    pub fn approximate_data_size(&self) -> u64 {
        self.data_size
    }

    /// Container nodes that should be deleted now: no children and used at least once
    /// (persisted `cversion > 0`), or never used and older than `max_never_used_ms` when that is
    /// non-zero; and TTL nodes with no children whose `now - mtime > ttl` (`ContainerManager`).
    pub fn expired_containers_and_ttls(&self, now_ms: i64, max_never_used_ms: i64) -> Vec<String> {
        let mut expired = Vec::new();
        for path in &self.containers {
            let Some(id) = self.lookup(path) else { continue };
            let node = self.node(id);
            if node.num_children != 0 {
                continue;
            }
            let used = node.stat.cversion > 0;
            let never_used_too_long = max_never_used_ms > 0 && now_ms - node.change(&node.block.stat()).mtime > max_never_used_ms;
            if used || never_used_too_long {
                expired.push(path.clone());
            }
        }
        for path in &self.ttls {
            let Some(id) = self.lookup(path) else { continue };
            let node = self.node(id);
            if node.num_children != 0 {
                continue;
            }
            if let NodeKind::Ttl(ttl_ms) = NodeKind::from_owner(node.block.owner(), true) {
                if now_ms - node.change(&node.block.stat()).mtime > ttl_ms {
                    expired.push(path.clone());
                }
            }
        }
        expired
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        self.live_nodes += 1;
        match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = Some(node);
                id
            }
            None => {
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as NodeId
            }
        }
    }

    /// Links a new node under its parent. Errors: `NoNode` (no parent), `NodeExists`.
    fn insert_node(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: &[Acl],
        stat: StatPersisted,
    ) -> Result<NodeId, ErrorCode> {
        let (parent_path, name) = split_parent(path).ok_or(ErrorCode::BadArguments)?;
        // An empty name is refused before the parent is looked for, whether it exists or not.
        if name.is_empty() {
            return Err(ErrorCode::BadArguments);
        }
        let parent = self.lookup(parent_path).ok_or(ErrorCode::NoNode)?;
        self.insert_child(parent, name, path.len(), data, acl, stat)
    }

    /// `insert_node` under a parent already looked up: `name` is the last segment of a path of
    /// `path_len` bytes.
    fn insert_child(
        &mut self,
        parent: NodeId,
        name: &str,
        path_len: usize,
        data: Option<&[u8]>,
        acl: &[Acl],
        stat: StatPersisted,
    ) -> Result<NodeId, ErrorCode> {
        if name.is_empty() {
            return Err(ErrorCode::BadArguments);
        }
        if self.find_child(parent, name).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        let acl = self.acls.intern(acl);
        Ok(self.link_child(parent, name, path_len, data, acl, stat))
    }

    /// Links a new node `name` under `parent`, which has no child of that name, taking over one
    /// reference to `acl`. `path_len`: the length of the node's whole path (`approximate_data_size`
    /// counts it, as ZooKeeper's does).
    fn link_child(
        &mut self,
        parent: NodeId,
        name: &str,
        path_len: usize,
        data: Option<&[u8]>,
        acl: AclId,
        stat: StatPersisted,
    ) -> NodeId {
        debug_assert!(self.find_child(parent, name).is_none());
        let (slot, block) = split_stat(&stat);
        let block = NodeBlock::new(name, data, &block);
        let hash = index::key_hash(parent, index::name_hash(block.name_bytes()));
        self.link_block(parent, block, slot, acl, path_len, hash)
    }

    /// `link_child` for a node whose block is built: `hash` is its index key's (`index::key_hash`).
    fn link_block(&mut self, parent: NodeId, block: NodeBlock, slot: NodeStat, acl: AclId, path_len: usize, hash: u64) -> NodeId {
        let data_len = block.data_len();
        let oldest = self.node(parent).first_child;
        let newest = if oldest == NONE { NONE } else { self.node(oldest).prev_sibling };
        let id = self.alloc(Node {
            block,
            stat: slot,
            acl,
            parent,
            first_child: NONE,
            next_sibling: NONE,
            prev_sibling: newest,
            num_children: 0,
        });
        if oldest == NONE {
            self.node_mut(id).prev_sibling = id;
            self.node_mut(parent).first_child = id;
        } else {
            self.node_mut(newest).next_sibling = id;
            self.node_mut(oldest).prev_sibling = id;
        }
        self.node_mut(parent).num_children += 1;
        self.listings.forget(parent);
        self.index.insert_hashed(&self.nodes, id, hash);
        self.data_size += (path_len + data_len) as u64;
        id
    }

    /// Room for `additional` more nodes without growing the slab or rehashing the index (a
    /// snapshot says how many nodes it holds).
    pub fn reserve(&mut self, additional: usize) {
        self.nodes.reserve(additional.saturating_sub(self.free.len()));
        self.index.reserve(&self.nodes, additional);
    }

    /// Creates a node as a create txn does. On `NodeExists` the parent's cversion/pzxid are still
    /// advanced (replay over a fuzzy snapshot, `DataTree.createNode`).
    #[allow(clippy::too_many_arguments)]
    pub fn create_node(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: &[Acl],
        kind: NodeKind,
        parent_cversion: i32,
        zxid: i64,
        time: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Result<Stat, ErrorCode> {
        let (parent_path, name) = split_parent(path).ok_or(ErrorCode::BadArguments)?;
        let parent = self.lookup(parent_path).ok_or(ErrorCode::NoNode)?;
        {
            let parent_stat = &mut self.node_mut(parent).stat;
            let new_cversion = if parent_cversion == -1 { parent_stat.cversion + 1 } else { parent_cversion };
            if new_cversion > parent_stat.cversion {
                parent_stat.cversion = new_cversion;
                parent_stat.pzxid = zxid;
            }
        }
        let stat = StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: kind.ephemeral_owner(),
            pzxid: zxid,
        };
        // The parent found above: one walk of the path per create, not two.
        let id = self.insert_child(parent, name, path.len(), data, acl, stat)?;
        self.index_kind(path, kind);
        triggers.push(Trigger::Created(path.to_owned()));
        Ok(self.client_stat(self.node(id)))
    }

    /// Deletes a childless node. Errors: `NoNode`, `NotEmpty`, `BadArguments` (the root).
    pub fn delete_node(&mut self, path: &str, zxid: i64, triggers: &mut Vec<Trigger>) -> Result<(), ErrorCode> {
        let id = self.lookup(path).ok_or(ErrorCode::NoNode)?;
        if id == ROOT {
            return Err(ErrorCode::BadArguments);
        }
        if self.node(id).num_children != 0 {
            return Err(ErrorCode::NotEmpty);
        }
        let Some(node) = self.nodes[id as usize].take() else { return Err(ErrorCode::NoNode) };
        self.free.push(id);
        self.live_nodes -= 1;
        // Its id may be reused by the next create.
        self.listings.forget(id);
        self.index.remove(node.parent, node.block.name_bytes(), id);
        let oldest = self.node(node.parent).first_child;
        if id == oldest {
            // Its prev_sibling is the newest child, which the next one now points back to.
            self.node_mut(node.parent).first_child = node.next_sibling;
        } else {
            self.node_mut(node.prev_sibling).next_sibling = node.next_sibling;
        }
        if node.next_sibling != NONE {
            self.node_mut(node.next_sibling).prev_sibling = node.prev_sibling;
        } else if id != oldest {
            // It was the newest: the one before it is now.
            self.node_mut(oldest).prev_sibling = node.prev_sibling;
        }
        self.listings.forget(node.parent);
        let parent = self.node_mut(node.parent);
        parent.num_children -= 1;
        // Deletes move pzxid but not the persisted cversion (`DataTree.deleteNode`).
        if zxid > parent.stat.pzxid {
            parent.stat.pzxid = zxid;
        }
        self.acls.release(node.acl);
        self.data_size =
            self.data_size.saturating_sub((path.len() + node.block.data_len()) as u64);
        match NodeKind::from_owner(node.block.owner(), self.extended_types_enabled) {
            NodeKind::Ephemeral(session_id) => {
                if let Some(set) = self.ephemerals.get_mut(&session_id) {
                    set.remove(path);
                    if set.is_empty() {
                        self.ephemerals.remove(&session_id);
                    }
                }
            }
            NodeKind::Container => {
                self.containers.remove(path);
            }
            NodeKind::Ttl(_) => {
                self.ttls.remove(path);
            }
            NodeKind::Persistent => {}
        }
        triggers.push(Trigger::Deleted(path.to_owned()));
        Ok(())
    }

    /// Sets data, `mtime`, `mzxid` and the new `version`.
    pub fn set_data(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        version: i32,
        zxid: i64,
        time: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Result<Stat, ErrorCode> {
        let id = self.lookup(path).ok_or(ErrorCode::NoNode)?;
        let node = self.node_mut(id);
        let old_len = node.block.data_len() as u64;
        let b = node.block.stat();
        node.block.reset(data, &block_stat(&node.stat, b.owner, zxid, time, version, b.aversion));
        self.data_size = self.data_size.saturating_sub(old_len) + data.map_or(0, <[u8]>::len) as u64;
        triggers.push(Trigger::DataChanged(path.to_owned()));
        Ok(self.client_stat(self.node(id)))
    }

    /// Replaces the ACL and sets `aversion`.
    pub fn set_acl(&mut self, path: &str, acl: &[Acl], version: i32) -> Result<Stat, ErrorCode> {
        let id = self.lookup(path).ok_or(ErrorCode::NoNode)?;
        let new_acl = self.acls.intern(acl);
        let node = self.node_mut(id);
        let old_acl = std::mem::replace(&mut node.acl, new_acl);
        let b = node.block.stat();
        node.block.set_stat(&BlockStat { aversion: version, ..b });
        self.acls.release(old_acl);
        Ok(self.client_stat(self.node(id)))
    }

    /// Applies one txn (`DataTree.processTxn`). Never panics on a txn that does not fit the tree:
    /// such a txn reports the ZooKeeper error it hit.
    pub fn apply(&mut self, txn: &Txn, triggers: &mut Vec<Trigger>) -> ApplyResult {
        let header = &txn.header;
        let result = self.apply_body(header.client_id, header.zxid, header.time, &txn.body, triggers);
        if header.zxid > self.last_processed_zxid {
            self.last_processed_zxid = header.zxid;
        }
        result
    }

    fn apply_body(
        &mut self,
        session_id: i64,
        zxid: i64,
        time: i64,
        body: &TxnBody,
        triggers: &mut Vec<Trigger>,
    ) -> ApplyResult {
        let created = |r: Result<Stat, ErrorCode>| r.map_or_else(ApplyResult::Failed, ApplyResult::Created);
        match body {
            TxnBody::CreateSession { .. } | TxnBody::Check { .. } => ApplyResult::Done,
            TxnBody::Error { err } => ApplyResult::Failed(ErrorCode::from_i32(*err)),
            TxnBody::Create { path, data, acl, ephemeral, parent_cversion } => {
                let kind = if *ephemeral { NodeKind::Ephemeral(session_id) } else { NodeKind::Persistent };
                created(self.create_node(path, data.as_deref(), acl, kind, *parent_cversion, zxid, time, triggers))
            }
            TxnBody::CreateContainer { path, data, acl, parent_cversion } => created(self.create_node(
                path,
                data.as_deref(),
                acl,
                NodeKind::Container,
                *parent_cversion,
                zxid,
                time,
                triggers,
            )),
            TxnBody::CreateTtl { path, data, acl, parent_cversion, ttl_ms } => created(self.create_node(
                path,
                data.as_deref(),
                acl,
                NodeKind::Ttl(*ttl_ms),
                *parent_cversion,
                zxid,
                time,
                triggers,
            )),
            TxnBody::Delete { path } => match self.delete_node(path, zxid, triggers) {
                Ok(()) => ApplyResult::Done,
                Err(err) => ApplyResult::Failed(err),
            },
            TxnBody::SetData { path, data, version } => self
                .set_data(path, data.as_deref(), *version, zxid, time, triggers)
                .map_or_else(ApplyResult::Failed, ApplyResult::Stat),
            TxnBody::SetAcl { path, acl, version } => {
                self.set_acl(path, acl, *version).map_or_else(ApplyResult::Failed, ApplyResult::Stat)
            }
            TxnBody::CloseSession { paths_to_delete } => {
                for path in paths_to_delete {
                    // Already gone is fine: a later delete or a fuzzy snapshot may have removed it.
                    let _ = self.delete_node(path, zxid, triggers);
                }
                for path in self.ephemerals_of(session_id) {
                    let _ = self.delete_node(&path, zxid, triggers);
                }
                ApplyResult::Done
            }
            TxnBody::Multi(subs) => {
                // All-or-nothing: a multi holding an error sub-txn applies nothing (PROTOCOL.md §2.9).
                if subs.iter().any(|(_, b)| matches!(b, TxnBody::Error { .. })) {
                    return ApplyResult::Multi(
                        subs.iter()
                            .map(|(_, b)| match b {
                                TxnBody::Error { err } => ApplyResult::Failed(ErrorCode::from_i32(*err)),
                                _ => ApplyResult::Failed(ErrorCode::Ok),
                            })
                            .collect(),
                    );
                }
                ApplyResult::Multi(
                    subs.iter()
                        .map(|(_, sub)| match sub {
                            TxnBody::Multi(_) => ApplyResult::Failed(ErrorCode::MarshallingError),
                            _ => self.apply_body(session_id, zxid, time, sub, triggers),
                        })
                        .collect(),
                )
            }
        }
    }

    /// Puts back a node read from a snapshot: its data, ACL and persisted Stat exactly as stored.
    /// The root (`/` or `""`) is overwritten in place; any other node needs its parent restored
    /// first (snapshots are written in pre-order). Ephemeral, container and TTL indexes are rebuilt
    /// from `ephemeralOwner`. Errors: `NoNode` (parent missing), `NodeExists`, `BadArguments`.
    pub fn restore_node(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: &[Acl],
        stat: StatPersisted,
    ) -> Result<(), ErrorCode> {
        // The root and ZooKeeper's own nodes exist in a fresh tree; a snapshot carries their state.
        let existing = if path.is_empty() { Some(ROOT) } else { self.lookup(path) };
        if let Some(id) = existing {
            let acl = self.acls.intern(acl);
            self.overwrite_node(id, data, acl, stat);
            return Ok(());
        }
        self.insert_node(path, data, acl, stat)?;
        self.index_kind(path, NodeKind::from_owner(stat.ephemeral_owner, self.extended_types_enabled));
        Ok(())
    }

    /// Replaces a restored node's data, ACL (taking over one reference to `acl`) and Stat.
    fn overwrite_node(&mut self, id: NodeId, data: Option<&[u8]>, acl: AclId, stat: StatPersisted) {
        let (slot, block) = split_stat(&stat);
        let block = NodeBlock::new(self.node(id).block.name(), data, &block);
        self.overwrite_block(id, block, slot, acl);
    }

    /// Gives node `id` a new `block` (carrying the node's name), Stat `slot` and ACL `acl` (taking
    /// over one reference).
    fn overwrite_block(&mut self, id: NodeId, block: NodeBlock, slot: NodeStat, acl: AclId) {
        let new_len = block.data_len() as u64;
        let node = self.node_mut(id);
        let old_len = node.block.data_len() as u64;
        node.block = block;
        node.stat = slot;
        let old_acl = std::mem::replace(&mut node.acl, acl);
        self.acls.release(old_acl);
        self.data_size = self.data_size.saturating_sub(old_len) + new_len;
    }

    /// Records a new node in the ephemeral, container or TTL index its kind belongs to.
    fn index_kind(&mut self, path: &str, kind: NodeKind) {
        match kind {
            NodeKind::Ephemeral(session_id) => {
                self.ephemerals.entry(session_id).or_default().insert(path.to_owned());
            }
            NodeKind::Container => {
                self.containers.insert(path.to_owned());
            }
            NodeKind::Ttl(_) => {
                self.ttls.insert(path.to_owned());
            }
            NodeKind::Persistent => {}
        }
    }

    /// Visits every node in pre-order (parents before children), as snapshots are written: the
    /// root first with path `/`, then `/a`, `/a/b`, ... Children in creation order. No recursion.
    pub fn visit_preorder(&self, visit: impl FnMut(&str, Option<&[u8]>, &[Acl], &StatPersisted)) {
        SnapshotCursor::default().step(self, usize::MAX, visit);
    }

    /// Whether TTL owners are decoded (`extendedTypesEnabled`).
    pub fn extended_types_enabled(&self) -> bool {
        self.extended_types_enabled
    }

    /// Checks the structural invariants; for tests and debug assertions.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut live = 0;
        for (id, slot) in self.nodes.iter().enumerate() {
            let Some(node) = slot else { continue };
            live += 1;
            let mut count = 0;
            let mut child = node.first_child;
            let mut prev = NONE;
            while child != NONE {
                let c = self.node(child);
                if c.parent != id as NodeId || (prev != NONE && c.prev_sibling != prev) {
                    return Err(format!("bad links at {child}"));
                }
                count += 1;
                prev = child;
                child = c.next_sibling;
            }
            if node.first_child != NONE && self.node(node.first_child).prev_sibling != prev {
                return Err(format!("node {id}: the oldest child does not point to the newest"));
            }
            if count != node.num_children {
                return Err(format!("node {id}: num_children {} but {count} linked", node.num_children));
            }
            if id as NodeId != ROOT && self.find_child(node.parent, node.block.name()) != Some(id as NodeId) {
                return Err(format!("node {id} missing from index"));
            }
        }
        if self.listings.iter().map(|(_, l)| l.encoded.len()).sum::<usize>() != self.listings.bytes() {
            return Err("the listings' byte count is off".into());
        }
        for (id, listing) in self.listings.iter() {
            let node = self.nodes.get(id as usize).and_then(Option::as_ref).ok_or(format!("listing kept for gone node {id}"))?;
            let names = NodeRef { tree: self, id, node }.child_names();
            let mut encoded = bytes::BytesMut::new();
            crate::jute::encode_str_vector(names, &mut encoded);
            if encoded[..] != listing.encoded[..] {
                return Err(format!("node {id}: the kept listing is not its children's"));
            }
        }
        if live != self.live_nodes || self.index.len() + 1 != live {
            return Err(format!("live {live} vs counted {} vs index {}", self.live_nodes, self.index.len()));
        }
        Ok(())
    }
}

fn world_anyone() -> Id {
    Id { scheme: "world".into(), id: "anyone".into() }
}

#[cfg(test)]
mod tests;
