//! Moving data between Apache ZooKeeper and ferrokeeper: `ferrokeeper import` reads a ZooKeeper
//! 3.x data dir (snapshots and txn logs) and writes a ferrokeeper data dir holding the same tree,
//! Stats, ACLs, sessions and zxid; `ferrokeeper export` writes ferrokeeper's current state as a
//! ZooKeeper snapshot that ZooKeeper starts from.

use std::path::{Path, PathBuf};

use crate::storage::txn_log::TxnLog;
use crate::storage::zk_format::{self, LoadOptions, ZkFormatError};
use crate::storage::{restore, Layout, StorageError};
use crate::tree::DataTree;

/// Why a migration failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Reading ZooKeeper's files.
    #[error(transparent)]
    ZkFormat(#[from] ZkFormatError),
    /// ferrokeeper's storage.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The target already holds data.
    #[error("{0} already holds ferrokeeper data; import only into an empty data dir")]
    NotEmpty(PathBuf),
    /// Writing files.
    #[error("{path}: {source}")]
    Io {
        /// File or dir.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// What an import or export moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationSummary {
    /// Nodes as ZooKeeper counts them.
    pub nodes: usize,
    /// Sessions.
    pub sessions: usize,
    /// Last zxid.
    pub zxid: i64,
    /// Where it was written.
    pub written: PathBuf,
    /// Notes for the operator (torn log tails cut, snapshots skipped).
    pub warnings: Vec<String>,
}

/// Writes a ferrokeeper snapshot of `tree` at `zxid` into `dir`.
fn write_snapshot(dir: &Path, tree: &DataTree, sessions: &[(i64, i32)], zxid: i64) -> Result<PathBuf, StorageError> {
    Ok(crate::storage::snapshot::write(dir, tree, sessions, zxid)?)
}

/// Imports ZooKeeper's `data_dir`/`data_log_dir` into an empty ferrokeeper `layout`.
pub fn import_zookeeper(
    data_dir: &Path,
    data_log_dir: &Path,
    layout: &Layout,
    extended_types_enabled: bool,
) -> Result<MigrationSummary, MigrateError> {
    let image = zk_format::load_data_dir_with(
        data_dir,
        data_log_dir,
        &LoadOptions { extended_types_enabled, ..LoadOptions::default() },
    )?;
    layout.create_dirs()?;
    let log = TxnLog::open(&layout.log_dir).map_err(StorageError::from)?;
    if log.last_zxid().map_err(StorageError::from)?.is_some() || !crate::storage::snapshot::list(&layout.snapshot_dir).is_empty() {
        return Err(MigrateError::NotEmpty(layout.snapshot_dir.clone()));
    }
    let mut warnings: Vec<String> = image.skipped_snapshots.iter().map(|e| format!("skipped snapshot: {e}")).collect();
    for (path, at) in &image.torn_logs {
        warnings.push(format!("{}: torn tail cut off at byte {at}", path.display()));
    }
    let written = write_snapshot(&layout.snapshot_dir, &image.tree, &image.sessions, image.last_zxid)?;
    // Zab's epochs continue from the imported history.
    let epoch = image.last_zxid >> 32;
    log.set_meta("acceptedEpoch", epoch).map_err(StorageError::from)?;
    log.set_meta("currentEpoch", epoch).map_err(StorageError::from)?;
    Ok(MigrationSummary {
        nodes: image.tree.node_count(),
        sessions: image.sessions.len(),
        zxid: image.last_zxid,
        written,
        warnings,
    })
}

/// Exports ferrokeeper's state (newest snapshot + log) as a ZooKeeper snapshot under
/// `<to>/version-2/`, ready to be ZooKeeper's `dataDir`. The server must be stopped.
pub fn export_zookeeper(layout: &Layout, to: &Path, extended_types_enabled: bool) -> Result<MigrationSummary, MigrateError> {
    let log = TxnLog::open(&layout.log_dir).map_err(StorageError::from)?;
    let restored = restore(layout, &log, extended_types_enabled)?;
    let written = zk_format::write_snapshot_file(to, &restored.tree, &restored.sessions, restored.last_zxid)
        .map_err(|source| MigrateError::Io { path: to.to_path_buf(), source })?;
    Ok(MigrationSummary {
        nodes: restored.tree.node_count(),
        sessions: restored.sessions.len(),
        zxid: restored.last_zxid,
        written,
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage/zk_format/testdata/zk380")
    }

    /// Import of a real ZooKeeper data dir, then export, then import of the export: the same tree.
    #[test]
    fn import_then_export_round_trips_a_real_zookeeper_dir() {
        let dir = crate::storage::txn_log::tests::tempdir();
        let layout = Layout::new(&dir.join("fk"), &dir.join("fk"));
        let original = zk_format::load_data_dir(&fixture().join("data"), &fixture().join("log")).unwrap();
        let imported = import_zookeeper(&fixture().join("data"), &fixture().join("log"), &layout, false).unwrap();
        assert_eq!(imported.zxid, original.last_zxid);
        assert_eq!(imported.nodes, original.tree.node_count());
        assert!(matches!(
            import_zookeeper(&fixture().join("data"), &fixture().join("log"), &layout, false),
            Err(MigrateError::NotEmpty(_))
        ));
        let exported = export_zookeeper(&layout, &dir.join("zk"), false).unwrap();
        assert_eq!(exported.zxid, original.last_zxid);
        let back = zk_format::load_data_dir(&dir.join("zk"), &dir.join("zk")).unwrap();
        let dump = |t: &DataTree| {
            let mut v = Vec::new();
            t.visit_preorder(|p, d, a, s| v.push((p.to_owned(), d.map(<[u8]>::to_vec), a.to_vec(), *s)));
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(dump(&back.tree), dump(&original.tree));
        let mut sessions = back.sessions.clone();
        let mut want = original.sessions.clone();
        sessions.sort_unstable();
        want.sort_unstable();
        assert_eq!(sessions, want);
        std::fs::remove_dir_all(&dir).ok();
    }
}
