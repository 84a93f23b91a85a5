//! The state a follower syncs from its leader, on this server's own storage: the tree, the
//! sessions, the RocksDB txn log and the epochs (`zab::follower::FollowerStore`).
//!
//! Owns: that state while the follower syncs. Must not touch: the quorum socket.
//!
//! Durability: the accepted and current epochs are synced meta entries of the txn log; appended
//! proposals are written in one synced batch at `sync`; a SNAP or TRUNC sync becomes durable at
//! `take_snapshot`, which writes a snapshot, then removes newer snapshots and the log after it
//! (they are another history). A crash before that restarts from the state before the sync.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use tracing::info;

use super::txn_log::TxnLog;
use super::zk_format::read_snap_stream_body;
use super::{restore, snapshot, Layout, StorageError};
use crate::proto::txn::{Txn, TxnBody};
use crate::tree::DataTree;
use crate::zab::follower::{FollowerStore, StoreError};
use crate::zab::learner::Proposal;

/// Meta key of the accepted epoch (ZooKeeper's `acceptedEpoch` file).
pub const ACCEPTED_EPOCH_KEY: &str = "acceptedEpoch";
/// Meta key of the current epoch (ZooKeeper's `currentEpoch` file).
pub const CURRENT_EPOCH_KEY: &str = "currentEpoch";

/// A follower's state on disk and in memory.
pub struct DiskFollowerStore {
    layout: Layout,
    log: TxnLog,
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

impl DiskFollowerStore {
    /// Restores the state in `layout` (snapshot and log), as a server start does.
    pub fn open(layout: Layout, extended_types_enabled: bool) -> Result<DiskFollowerStore, StorageError> {
        layout.create_dirs()?;
        let log = TxnLog::open(&layout.log_dir)?;
        let restored = restore(&layout, &log, extended_types_enabled)?;
        Ok(DiskFollowerStore {
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

fn store_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl FollowerStore for DiskFollowerStore {
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
        let Some(txn) = self.uncommitted.pop_front() else {
            return Err(StoreError(format!("commit of 0x{zxid:x} with nothing appended")));
        };
        if txn.header.zxid != zxid {
            return Err(StoreError(format!(
                "commit of 0x{zxid:x}, but the next appended txn is 0x{:x}",
                txn.header.zxid
            )));
        }
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
}
