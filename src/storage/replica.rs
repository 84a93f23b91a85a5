//! A quorum member's replicated state on this server's own storage: the tree, the sessions, the
//! RocksDB txn log and the epochs, as a follower syncs it (`zab::follower::FollowerStore`) and
//! a leader serves it (`zab::leading::LeaderStore`).
//!
//! Owns: that state while the server follows or leads. Must not touch: the quorum sockets.
//!
//! Durability: the accepted and current epochs are synced meta entries of the txn log; appended
//! proposals are written in one synced batch at `sync`; a SNAP or TRUNC sync becomes durable at
//! `take_snapshot`, which writes a snapshot, then removes newer snapshots and the log after it
//! (they are another history). A crash before that restarts from the state before the sync.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tracing::{debug, info};

use super::txn_log::TxnLog;
use super::zk_format::{read_snap_stream_body, write_snap_stream_body};
use super::{restore, snapshot, Layout, StorageError};
use crate::jute::Encode;
use crate::proto::txn::{Txn, TxnBody};
use crate::tree::DataTree;
use crate::zab::follower::{FollowerStore, StoreError};
use crate::proto::quorum::RequestHead;
use crate::proto::Id;
use crate::zab::leader::{LeaderStart, LearnerId, COMMIT_LOG_MAX};
use crate::zab::leading::LeaderStore;
use crate::zab::learner::Proposal;
use crate::zab::quorum::QuorumVerifier;

/// Meta key of the accepted epoch (ZooKeeper's `acceptedEpoch` file).
pub const ACCEPTED_EPOCH_KEY: &str = "acceptedEpoch";
/// Meta key of the current epoch (ZooKeeper's `currentEpoch` file).
pub const CURRENT_EPOCH_KEY: &str = "currentEpoch";

/// A quorum member's state on disk and in memory.
pub struct ReplicaStore {
    layout: Layout,
    log: Arc<TxnLog>,
    extended_types_enabled: bool,
    tree: DataTree,
    sessions: BTreeMap<i64, i32>,
    last_processed_zxid: i64,
    /// Appended proposals not committed yet, in zxid order.
    uncommitted: VecDeque<Txn>,
    /// Appended proposals not written yet: written, synced, at `sync`.
    unsynced: Vec<Txn>,
    serving_epoch: Option<i64>,
}

impl ReplicaStore {
    /// Restores the state in `layout` (snapshot and log), as a server start does.
    pub fn open(layout: Layout, extended_types_enabled: bool) -> Result<ReplicaStore, StorageError> {
        layout.create_dirs()?;
        let log = Arc::new(TxnLog::open(&layout.log_dir)?);
        ReplicaStore::with_log(layout, log, extended_types_enabled)
    }

    /// Restores the state in `layout` through a log that is open already.
    pub fn with_log(
        layout: Layout,
        log: Arc<TxnLog>,
        extended_types_enabled: bool,
    ) -> Result<ReplicaStore, StorageError> {
        let restored = restore(&layout, &log, extended_types_enabled)?;
        Ok(ReplicaStore {
            layout,
            log,
            extended_types_enabled,
            tree: restored.tree,
            sessions: restored.sessions.into_iter().collect(),
            last_processed_zxid: restored.last_zxid,
            uncommitted: VecDeque::new(),
            unsynced: Vec::new(),
            serving_epoch: None,
        })
    }

    /// The tree as synced and committed so far.
    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    /// The log, shared with whoever purges it.
    pub fn log(&self) -> &Arc<TxnLog> {
        &self.log
    }

    /// Gives the tree, the sessions and the last applied zxid to the request pipeline, which
    /// applies every later commit itself (`take_committed` hands them over). Leaves an empty tree.
    pub fn hand_over(&mut self) -> (DataTree, Vec<(i64, i32)>, i64) {
        let mut tree = std::mem::replace(&mut self.tree, DataTree::new(self.extended_types_enabled));
        // A tree loaded from a SNAP stream has applied nothing itself yet.
        tree.last_processed_zxid = tree.last_processed_zxid.max(self.last_processed_zxid);
        let sessions = std::mem::take(&mut self.sessions).into_iter().collect();
        (tree, sessions, self.last_processed_zxid)
    }

    /// Rebuilds the state from disk (the newest snapshot and the log after it), as a start does:
    /// after the pipeline that held the tree stopped.
    pub fn reload(&mut self) -> Result<(), StorageError> {
        let restored = restore(&self.layout, &self.log, self.extended_types_enabled)?;
        self.tree = restored.tree;
        self.sessions = restored.sessions.into_iter().collect();
        self.last_processed_zxid = restored.last_zxid;
        self.uncommitted.clear();
        self.unsynced.clear();
        self.serving_epoch = None;
        Ok(())
    }

    /// The appended proposal with this zxid, now committed, removed without being applied here
    /// (the pipeline that holds the tree applies it).
    pub fn take_committed(&mut self, zxid: i64) -> Result<Txn, StoreError> {
        let Some(txn) = self.uncommitted.pop_front() else {
            return Err(StoreError(format!("commit of 0x{zxid:x} with nothing appended")));
        };
        if txn.header.zxid != zxid {
            return Err(StoreError(format!(
                "commit of 0x{zxid:x}, but the next appended txn is 0x{:x}",
                txn.header.zxid
            )));
        }
        self.last_processed_zxid = self.last_processed_zxid.max(zxid);
        Ok(txn)
    }

    /// The last zxid applied to the tree.
    pub fn last_processed_zxid(&self) -> i64 {
        self.last_processed_zxid
    }

    /// The highest zxid in the log or the tree (ZooKeeper's `getLastLoggedZxid`).
    pub fn last_logged_zxid(&self) -> Result<i64, StorageError> {
        Ok(self.log.last_zxid()?.unwrap_or(0).max(self.last_processed_zxid))
    }

    /// `(accepted epoch, current epoch)`; absent ones are the last zxid's epoch, as ZooKeeper
    /// initialises missing epoch files.
    pub fn epochs(&self) -> Result<(i64, i64), StorageError> {
        let from_zxid = self.last_logged_zxid()? >> 32;
        let current = self.log.meta(CURRENT_EPOCH_KEY)?.unwrap_or(from_zxid);
        let accepted = self.log.meta(ACCEPTED_EPOCH_KEY)?.unwrap_or(current);
        Ok((accepted, current))
    }

    /// The epoch of the leader this store last synced with, once serving.
    pub fn serving_epoch(&self) -> Option<i64> {
        self.serving_epoch
    }

    /// Live sessions and their timeouts.
    pub fn sessions(&self) -> Vec<(i64, i32)> {
        self.sessions.iter().map(|(&id, &timeout)| (id, timeout)).collect()
    }

    /// What a leader starts from: the epochs, the last zxid and the most recent txns (as
    /// log entry bodies) for DIFF syncs. Reads the log from its start (it is purged behind
    /// snapshots, so it holds at most the txns since the oldest snapshot kept).
    pub fn leader_start(
        &self,
        my_sid: i64,
        verifier: QuorumVerifier,
        init_limit_ticks: u64,
        sync_limit_ticks: u64,
    ) -> Result<LeaderStart, StorageError> {
        let (accepted_epoch, current_epoch) = self.epochs()?;
        let mut recent: VecDeque<(i64, Bytes)> = VecDeque::new();
        self.log.read_after(0, |txn| {
            if txn.header.zxid <= self.last_processed_zxid {
                recent.push_back((txn.header.zxid, entry_bytes(&txn)));
                if recent.len() > COMMIT_LOG_MAX {
                    recent.pop_front();
                }
            }
            true
        })?;
        Ok(LeaderStart {
            my_sid,
            verifier,
            accepted_epoch,
            current_epoch,
            last_zxid: self.last_processed_zxid,
            committed_log: recent.into_iter().collect(),
            init_limit_ticks,
            sync_limit_ticks,
        })
    }

    fn apply(&mut self, txn: &Txn) {
        match &txn.body {
            TxnBody::CreateSession { timeout_ms } => {
                self.sessions.insert(txn.header.client_id, *timeout_ms);
            }
            TxnBody::CloseSession { .. } => {
                self.sessions.remove(&txn.header.client_id);
            }
            _ => {}
        }
        let mut triggers = Vec::new();
        self.tree.apply(txn, &mut triggers);
        self.last_processed_zxid = self.last_processed_zxid.max(txn.header.zxid);
    }
}

/// A txn as a log entry body, which is also a PROPOSAL's data: header then record.
fn entry_bytes(txn: &Txn) -> Bytes {
    let mut out = BytesMut::new();
    txn.header.encode(&mut out);
    txn.body.encode(&mut out);
    out.freeze()
}

fn store_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl FollowerStore for ReplicaStore {
    fn persist_accepted_epoch(&mut self, epoch: i64) -> Result<(), StoreError> {
        self.log.set_meta(ACCEPTED_EPOCH_KEY, epoch).map_err(store_error)
    }

    fn persist_current_epoch(&mut self, epoch: i64) -> Result<(), StoreError> {
        self.log.set_meta(CURRENT_EPOCH_KEY, epoch).map_err(store_error)
    }

    fn load_snapshot(&mut self, mut stream: Bytes, zxid: i64) -> Result<(), StoreError> {
        let (tree, sessions) = read_snap_stream_body(&mut stream, self.extended_types_enabled).map_err(store_error)?;
        info!(
            zxid = format_args!("0x{zxid:x}"),
            nodes = tree.node_count(),
            sessions = sessions.len(),
            "loaded the leader's snapshot"
        );
        self.tree = tree;
        self.sessions = sessions.into_iter().collect();
        self.last_processed_zxid = zxid;
        self.uncommitted.clear();
        self.unsynced.clear();
        Ok(())
    }

    fn truncate(&mut self, zxid: i64) -> Result<(), StoreError> {
        self.log.truncate_after(zxid).map_err(store_error)?;
        for (snapshot_zxid, path) in snapshot::list(&self.layout.snapshot_dir) {
            if snapshot_zxid > zxid {
                std::fs::remove_file(&path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
            }
        }
        let restored = restore(&self.layout, &self.log, self.extended_types_enabled).map_err(store_error)?;
        if restored.last_zxid != zxid {
            return Err(StoreError(format!(
                "cannot truncate to 0x{zxid:x}: the log and snapshots rebuild only to 0x{:x}",
                restored.last_zxid
            )));
        }
        self.tree = restored.tree;
        self.sessions = restored.sessions.into_iter().collect();
        self.last_processed_zxid = zxid;
        self.uncommitted.clear();
        self.unsynced.clear();
        Ok(())
    }

    fn apply_unlogged(&mut self, proposal: Proposal) -> Result<(), StoreError> {
        self.apply(&proposal.txn);
        Ok(())
    }

    fn take_snapshot(&mut self) -> Result<(), StoreError> {
        let zxid = self.last_processed_zxid;
        let sessions = self.sessions();
        snapshot::write(&self.layout.snapshot_dir, &self.tree, &sessions, zxid).map_err(store_error)?;
        // Newer snapshots and later txns belong to a history the leader overrode.
        for (snapshot_zxid, path) in snapshot::list(&self.layout.snapshot_dir) {
            if snapshot_zxid > zxid {
                std::fs::remove_file(&path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
            }
        }
        self.log.truncate_after(zxid).map_err(store_error)?;
        info!(
            zxid = format_args!("0x{zxid:x}"),
            nodes = self.tree.node_count(),
            "snapshot of the synced state written"
        );
        Ok(())
    }

    fn append(&mut self, proposal: Proposal) -> Result<(), StoreError> {
        self.uncommitted.push_back(proposal.txn.clone());
        self.unsynced.push(proposal.txn);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut self.unsynced);
        self.log.append(&batch, true).map_err(store_error)
    }

    fn commit(&mut self, zxid: i64) -> Result<(), StoreError> {
        let txn = self.take_committed(zxid)?;
        self.apply(&txn);
        Ok(())
    }

    fn touched_sessions(&mut self) -> Vec<(i64, i32)> {
        // No client connections are served while following yet, so no session is touched here.
        Vec::new()
    }

    fn serving(&mut self, epoch: i64) {
        self.serving_epoch = Some(epoch);
    }

    // No client connections are served through this store alone, so nothing was forwarded.
    fn sync_done(&mut self) {
        debug!("SYNC from the leader, with no client waiting for it");
    }

    fn revalidated(&mut self, session_id: i64, _valid: bool) {
        debug!(session = format_args!("0x{session_id:x}"), "REVALIDATE answer, with no client waiting for it");
    }
}

impl LeaderStore for ReplicaStore {
    fn persist_accepted_epoch(&mut self, epoch: i64) -> Result<(), StoreError> {
        FollowerStore::persist_accepted_epoch(self, epoch)
    }

    fn persist_current_epoch(&mut self, epoch: i64) -> Result<(), StoreError> {
        FollowerStore::persist_current_epoch(self, epoch)
    }

    fn snapshot_stream(&mut self) -> Result<Bytes, StoreError> {
        let mut out = Vec::new();
        write_snap_stream_body(&self.tree, &self.sessions(), &mut out).map_err(store_error)?;
        Ok(Bytes::from(out))
    }

    fn append(&mut self, proposal: Proposal) -> Result<(), StoreError> {
        FollowerStore::append(self, proposal)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        FollowerStore::sync(self)
    }

    fn commit(&mut self, zxid: i64) -> Result<(), StoreError> {
        FollowerStore::commit(self, zxid)
    }

    fn established(&mut self, epoch: i64) {
        self.serving_epoch = Some(epoch);
    }

    // Without a request pipeline there is nobody to take clients' requests, keep their sessions
    // or answer for them: a leader serving clients wraps this store (`node::quorum`).
    fn request(&mut self, head: RequestHead, _record: Bytes, _authinfo: Vec<Id>) {
        debug!(session = format_args!("0x{:x}", head.session_id), op = head.op, "forwarded request dropped: no request pipeline");
    }

    fn touch(&mut self, _sessions: Vec<(i64, i32)>) {}

    fn revalidate(&mut self, _learner: LearnerId, session_id: i64, _timeout_ms: i32) {
        debug!(session = format_args!("0x{session_id:x}"), "revalidation unanswered: no session table");
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::proto::open_acl_unsafe;
    use crate::proto::txn::TxnHeader;
    use crate::storage::txn_log;

    fn proposal(zxid: i64, path: &str) -> Proposal {
        let header = TxnHeader {
            client_id: 0,
            cxid: 0,
            zxid,
            time: 1,
            txn_type: 1,
        };
        let body = TxnBody::Create {
            path: path.to_string(),
            data: Some(Bytes::from_static(b"v")),
            acl: open_acl_unsafe(),
            ephemeral: false,
            parent_cversion: 1,
        };
        let txn = Txn { header, body };
        let bytes = entry_bytes(&txn);
        Proposal {
            txn,
            digest: None,
            bytes,
        }
    }

    fn logged(store: &mut ReplicaStore, proposals: &[(i64, &str)]) {
        for &(zxid, path) in proposals {
            FollowerStore::append(store, proposal(zxid, path)).unwrap();
        }
        FollowerStore::sync(store).unwrap();
        for &(zxid, _) in proposals {
            FollowerStore::commit(store, zxid).unwrap();
        }
    }

    #[test]
    fn truncate_drops_the_txns_after_the_zxid_on_disk_and_in_the_tree() {
        let dir = txn_log::tests::tempdir();
        let layout = Layout::new(&dir, &dir);
        let mut store = ReplicaStore::open(layout.clone(), false).unwrap();
        logged(
            &mut store,
            &[(0x1_0000_0001, "/a"), (0x1_0000_0002, "/b"), (0x1_0000_0003, "/c")],
        );
        // A snapshot taken past the truncation point belongs to the dropped history too.
        snapshot::write(&layout.snapshot_dir, store.tree(), &[], 0x1_0000_0003).unwrap();
        store.truncate(0x1_0000_0001).unwrap();
        assert_eq!(store.last_processed_zxid(), 0x1_0000_0001);
        assert!(store.tree().get_data("/a").is_some() && store.tree().get_data("/b").is_none());
        drop(store);
        let reopened = ReplicaStore::open(layout, false).unwrap();
        assert_eq!(reopened.last_processed_zxid(), 0x1_0000_0001);
        assert!(reopened.tree().get_data("/c").is_none());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_snapshot_sync_is_durable_once_taken_and_replaces_the_old_history() {
        let dir = txn_log::tests::tempdir();
        let layout = Layout::new(&dir, &dir);
        // An old history, with a snapshot, up to 0x200000005.
        let mut old = ReplicaStore::open(layout.clone(), false).unwrap();
        logged(&mut old, &[(0x2_0000_0004, "/old"), (0x2_0000_0005, "/older")]);
        old.take_snapshot().unwrap();
        let leader_stream = old.snapshot_stream().unwrap();
        drop(old);
        // The leader's state is another tree, as of 0x100000009 (its stream, with /new added).
        let mut leader = ReplicaStore::open(Layout::new(&dir.join("leader"), &dir.join("leader")), false).unwrap();
        logged(&mut leader, &[(0x1_0000_0009, "/new")]);
        let stream = leader.snapshot_stream().unwrap();
        drop(leader);
        assert_ne!(stream, leader_stream);
        let mut store = ReplicaStore::open(layout.clone(), false).unwrap();
        store.load_snapshot(stream, 0x1_0000_0009).unwrap();
        FollowerStore::apply_unlogged(&mut store, proposal(0x1_0000_000a, "/unlogged")).unwrap();
        store.take_snapshot().unwrap();
        drop(store);
        let reopened = ReplicaStore::open(layout, false).unwrap();
        assert_eq!(reopened.last_processed_zxid(), 0x1_0000_000a);
        assert!(reopened.tree().get_data("/new").is_some() && reopened.tree().get_data("/unlogged").is_some());
        assert!(
            reopened.tree().get_data("/old").is_none(),
            "the newer snapshot of the old history is gone"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
