//! Loading a whole ZooKeeper data dir (`FileTxnSnapLog.restore`): the newest snapshot that reads
//! back, then every logged txn after it, applied with ZooKeeper's replay tolerance.
//!
//! Choices copied from upstream, each a rule operators rely on:
//! - Candidates are `snapshot.<zxid>[.gz|.snappy]` in `<dataDir>/version-2`, newest first, at most
//!   100, that pass the cheap validity test (`FileSnap.findNValidSnapshots`); the first that fully
//!   decodes with good seals wins. If candidates exist and none decodes, loading fails.
//! - Logs are `log.<zxid>` in `<dataLogDir>/version-2`; replay starts in the last file whose start
//!   zxid is ≤ the first wanted zxid and goes through every later file (`FileTxnLog.getLogFiles`),
//!   skipping entries below the wanted zxid.
//! - Snapshots are fuzzy (taken while txns are applied), so replay ignores NoNode/NodeExists; a
//!   `create` (type 1, also inside a multi) that hits NodeExists still raises the parent's
//!   cversion/pzxid (`DataTree.processTxn` → `setCversionPzxid`), which `DataTree::create_node`
//!   does; the other create types hitting NodeExists change nothing upstream, so they are skipped.
//! - createSession adds a session, closeSession removes it (`FileTxnSnapLog.processTransaction`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::log::{LogReader, TxnDigest};
use super::snapshot::{compression_of, looks_valid, read_snapshot_file, Compression, ZxidDigest};
use super::{zxid_from_name, ZkFormatError};
use crate::proto::txn::{Txn, TxnBody};
use crate::tree::digest::tree_digest;
use crate::tree::DataTree;

/// Snapshots considered, newest first (`FileSnap.deserialize`).
const SNAPSHOT_CANDIDATES_MAX: usize = 100;

/// Settings that change how a data dir is read.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// ZooKeeper's `extendedTypesEnabled`: decode `ephemeralOwner` values with the top byte 0xFF as
    /// TTL nodes (ZooKeeper's default is off). Only changes which index a node lands in; the
    /// stored Stat is kept as is either way.
    pub extended_types_enabled: bool,
    /// ZooKeeper's `zookeeper.snapshot.trust.empty`: with logs but no snapshot, replay the logs
    /// onto an empty tree instead of failing.
    pub snapshot_trust_empty: bool,
}

/// A ZooKeeper data dir, loaded.
#[derive(Debug)]
pub struct ZkImage {
    /// The tree after replay; `tree.last_processed_zxid == last_zxid`.
    pub tree: DataTree,
    /// Live sessions `(session id, timeout ms)`, sorted by id.
    pub sessions: Vec<(i64, i32)>,
    /// Highest zxid applied (the snapshot's, when no log entry follows it).
    pub last_zxid: i64,
    /// The snapshot loaded and its zxid; `None` when the dir had none.
    pub snapshot: Option<(PathBuf, i64)>,
    /// Newer snapshots that were skipped because they did not read back, newest first.
    pub skipped_snapshots: Vec<ZkFormatError>,
    /// Log entries applied.
    pub txns_replayed: u64,
    /// Log files that ended in a torn (incomplete) entry, with its offset; it was cut off.
    pub torn_logs: Vec<(PathBuf, u64)>,
    /// ZooKeeper's stored digest of the final tree (from the last txn carrying one, or the
    /// snapshot), when the files have one that applies to the final state.
    pub digest: Option<ZxidDigest>,
}

impl ZkImage {
    /// Whether the tree digests to the stored value (`None` when nothing is stored). A mismatch
    /// means the import does not reproduce ZooKeeper's state exactly; ZooKeeper itself only logs
    /// it (`digest_mismatches_count`).
    pub fn digest_matches(&self) -> Option<bool> {
        self.digest.map(|d| d.digest == tree_digest(&self.tree))
    }
}

/// Loads a ZooKeeper 3.x data dir with default options: the newest valid snapshot in
/// `<data_dir>/version-2` plus every later txn from `<data_log_dir>/version-2` (pass the same
/// path twice when ZooKeeper ran without a separate `dataLogDir`).
pub fn load_data_dir(data_dir: &Path, data_log_dir: &Path) -> Result<ZkImage, ZkFormatError> {
    load_data_dir_with(data_dir, data_log_dir, &LoadOptions::default())
}

/// `load_data_dir` with explicit options.
pub fn load_data_dir_with(
    data_dir: &Path,
    data_log_dir: &Path,
    options: &LoadOptions,
) -> Result<ZkImage, ZkFormatError> {
    let snap_dir = data_dir.join("version-2");
    let log_dir = data_log_dir.join("version-2");
    let mut snapshots = list_by_zxid(&snap_dir, "snapshot")?;
    snapshots.reverse();
    let logs = list_by_zxid(&log_dir, "log")?;

    let mut skipped_snapshots = Vec::new();
    let mut loaded = None;
    let mut candidates = 0;
    for (zxid, path) in snapshots {
        if candidates == SNAPSHOT_CANDIDATES_MAX {
            break;
        }
        if !looks_valid(&path).map_err(|e| ZkFormatError::io(&path, e))? {
            continue;
        }
        candidates += 1;
        if compression_of(&path) == Compression::Snappy {
            // Falling back to an older snapshot would silently depend on old logs still being
            // there; refuse instead, so the operator converts it.
            return Err(ZkFormatError::UnsupportedCompression {
                path,
                method: "snappy".into(),
            });
        }
        match read_snapshot_file(&path, options.extended_types_enabled) {
            Ok(snapshot) => {
                loaded = Some((path, zxid, snapshot));
                break;
            }
            Err(err) => skipped_snapshots.push(err),
        }
    }

    let (mut tree, mut sessions, snapshot, mut digest) = match loaded {
        Some((path, zxid, snapshot)) => {
            let mut tree = snapshot.tree;
            tree.last_processed_zxid = zxid;
            let sessions: HashMap<i64, i32> = snapshot.sessions.into_iter().collect();
            // A digest older than the snapshot's zxid does not describe it (`deserializeZxidDigest`).
            let digest = snapshot.digest.filter(|d| d.zxid >= zxid);
            (tree, sessions, Some((path, zxid)), digest)
        }
        None if candidates > 0 => {
            return Err(ZkFormatError::NoValidSnapshot {
                dir: snap_dir,
                tried: skipped_snapshots,
            })
        }
        None if !logs.is_empty() && !options.snapshot_trust_empty => {
            return Err(ZkFormatError::NoSnapshot { dir: snap_dir })
        }
        None => (
            DataTree::new(options.extended_types_enabled),
            HashMap::new(),
            None,
            None,
        ),
    };

    let start_zxid = tree.last_processed_zxid + 1;
    let mut replay = Replay {
        tree: &mut tree,
        sessions: &mut sessions,
        digest: &mut digest,
        txns_replayed: 0,
    };
    let mut torn_logs = Vec::new();
    let mut started = false;
    for path in logs_to_replay(&logs, start_zxid) {
        let bytes = std::fs::read(&path).map_err(|e| ZkFormatError::io(&path, e))?;
        let mut reader = LogReader::new(&path, Bytes::from(bytes))?;
        while let Some(entry) = reader.next_entry()? {
            // FileTxnIterator skips to the first entry at or past the wanted zxid, then returns
            // everything after it.
            if !started && entry.txn.header.zxid < start_zxid {
                continue;
            }
            started = true;
            replay.apply(&entry.txn, entry.digest);
        }
        if let Some(offset) = reader.torn_at {
            torn_logs.push((path, offset));
        }
    }
    let txns_replayed = replay.txns_replayed;

    let mut sessions: Vec<(i64, i32)> = sessions.into_iter().collect();
    sessions.sort_unstable();
    Ok(ZkImage {
        last_zxid: tree.last_processed_zxid,
        tree,
        sessions,
        snapshot,
        skipped_snapshots,
        txns_replayed,
        torn_logs,
        digest,
    })
}

/// Files `<prefix>.<hex zxid>...` in `dir`, sorted by zxid ascending.
fn list_by_zxid(dir: &Path, prefix: &str) -> Result<Vec<(i64, PathBuf)>, ZkFormatError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ZkFormatError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ZkFormatError::io(dir, e))?;
        let name = entry.file_name();
        let Some(zxid) = zxid_from_name(&name.to_string_lossy(), prefix) else {
            continue;
        };
        if entry
            .file_type()
            .map_err(|e| ZkFormatError::io(entry.path(), e))?
            .is_file()
        {
            files.push((zxid, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// `FileTxnLog.getLogFiles`: the last file starting at or before `start_zxid`, and every later one.
fn logs_to_replay(logs: &[(i64, PathBuf)], start_zxid: i64) -> Vec<PathBuf> {
    let first_zxid = logs
        .iter()
        .map(|(zxid, _)| *zxid)
        .filter(|&zxid| zxid <= start_zxid)
        .max()
        .unwrap_or(0);
    logs.iter()
        .filter(|(zxid, _)| *zxid >= first_zxid)
        .map(|(_, path)| path.clone())
        .collect()
}

/// Replay state: the tree, the session map and the digest that describes the tree.
struct Replay<'a> {
    tree: &'a mut DataTree,
    sessions: &'a mut HashMap<i64, i32>,
    digest: &'a mut Option<ZxidDigest>,
    txns_replayed: u64,
}

impl Replay<'_> {
    fn apply(&mut self, txn: &Txn, txn_digest: Option<TxnDigest>) {
        let header = &txn.header;
        match &txn.body {
            TxnBody::CreateSession { timeout_ms } => {
                self.sessions.insert(header.client_id, *timeout_ms);
            }
            TxnBody::CloseSession { .. } => {
                self.sessions.remove(&header.client_id);
            }
            _ => {}
        }
        let filtered = self.without_noop_creates(txn);
        let mut triggers = Vec::new();
        // Results are ignored on purpose: NoNode/NodeExists are expected over a fuzzy snapshot,
        // and ZooKeeper ignores every other failure during replay too.
        let _ = self.tree.apply(filtered.as_ref().unwrap_or(txn), &mut triggers);
        self.txns_replayed += 1;
        match txn_digest {
            Some(d) => {
                *self.digest = Some(ZxidDigest {
                    zxid: header.zxid,
                    digest_version: d.version,
                    digest: d.tree_digest,
                })
            }
            // Error txns carry no digest and change nothing; any other txn without one leaves
            // the tree with no stored digest to compare against.
            None if matches!(txn.body, TxnBody::Error { .. }) => {}
            None => *self.digest = None,
        }
    }

    /// `DataTree::create_node` raises the parent's cversion even when the node exists, which
    /// upstream does only for type-1 creates; other creates of an existing node are dropped here.
    fn without_noop_creates(&self, txn: &Txn) -> Option<Txn> {
        let exists = |txn_type: i32, body: &TxnBody| match body {
            TxnBody::Create { path, .. } | TxnBody::CreateContainer { path, .. } | TxnBody::CreateTtl { path, .. } => {
                txn_type != 1 && self.tree.lookup(path).is_some()
            }
            _ => false,
        };
        match &txn.body {
            TxnBody::Multi(subs) if subs.iter().any(|(t, b)| exists(*t, b)) => {
                let kept = subs.iter().filter(|(t, b)| !exists(*t, b)).cloned().collect();
                Some(Txn {
                    header: txn.header.clone(),
                    body: TxnBody::Multi(kept),
                })
            }
            body if exists(txn.header.txn_type, body) => Some(Txn {
                header: txn.header.clone(),
                body: TxnBody::Check {
                    path: String::new(),
                    version: -1,
                },
            }),
            _ => None,
        }
    }
}
