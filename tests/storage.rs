//! Damaged data directories, as the `ferrokeeper` binary meets them at start-up: a torn tail of the
//! log is cut off and the server starts with every whole txn; corruption anywhere else (an SST
//! block, the middle of the journal or of RocksDB's write-ahead log, a snapshot the log cannot
//! replace) stops the start
//! with a message naming the file and the zxid, never a partial tree.
//!
//! The data dirs are built with the library's own storage types, then damaged byte by byte, then
//! handed to the binary. Servers that start listen on 127.0.0.1 ports 23900-23909.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrokeeper::proto::open_acl_unsafe;
use ferrokeeper::proto::txn::{Txn, TxnBody, TxnHeader};
use ferrokeeper::storage::txn_log::TxnLog;
use ferrokeeper::storage::{restore, snapshot, Layout};
use ferrokeeper::tree::DataTree;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrokeeper-storage-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Txn `zxid` creates `/n<zxid>` with a 100-byte value, so a few hundred fill several SST blocks.
fn txn(zxid: i64) -> Txn {
    Txn {
        header: TxnHeader {
            client_id: 7,
            cxid: zxid as i32,
            zxid,
            time: 1_700_000_000_000 + zxid,
            txn_type: 1,
        },
        body: TxnBody::Create {
            path: format!("/n{zxid}"),
            data: Some(Bytes::from(vec![b'a' + (zxid % 26) as u8; 100])),
            acl: open_acl_unsafe(),
            ephemeral: false,
            parent_cversion: zxid as i32,
        },
    }
}

/// Appends txns `zxids`, one synced batch (one journal record) each, as the server's log writer does
/// under light load.
fn append(log: &TxnLog, zxids: std::ops::RangeInclusive<i64>) {
    for zxid in zxids {
        log.append(&[txn(zxid)], true).unwrap();
    }
}

/// The tree after txns 1..=n.
fn tree_through(n: i64) -> DataTree {
    let mut tree = DataTree::new(false);
    let mut triggers = Vec::new();
    for zxid in 1..=n {
        tree.apply(&txn(zxid), &mut triggers);
    }
    tree
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(at < bytes.len(), "{} has only {} bytes", path.display(), bytes.len());
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let cfg = dir.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "dataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n",
            dir.display()
        ),
    )
    .unwrap();
    cfg
}

/// Runs the server on `dir` and expects the start to fail: returns its stderr.
fn start_fails(dir: &Path, port: u16) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrokeeper"))
        .arg(write_config(dir, port))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = String::new();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
                log.push_str(&line);
                log.push('\n');
            }
            assert_eq!(
                status.code(),
                Some(1),
                "expected a failed start, got {status:?}:\n{log}"
            );
            eprintln!("server log:\n{log}");
            return log;
        }
        while let Ok(line) = lines.try_recv() {
            let serving = line.contains("serving clients");
            log.push_str(&line);
            log.push('\n');
            if serving {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server started on a damaged data dir:\n{log}");
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server neither started nor exited:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the server on `dir`, waits until it serves clients, stops it with SIGTERM, and returns its
/// log.
fn start_and_stop(dir: &Path, port: u16) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrokeeper"))
        .arg(write_config(dir, port))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = String::new();
    loop {
        let line = match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(Instant::now() < deadline, "the server did not start:\n{log}");
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("the server exited ({status:?}) instead of starting:\n{log}");
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                panic!("the server exited ({status:?}) instead of starting:\n{log}");
            }
        };
        log.push_str(&line);
        log.push('\n');
        if line.contains("serving clients") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(exit.success(), "exit status {exit:?}:\n{log}");
    eprintln!("server log:\n{log}");
    log
}

fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn node_paths(tree: &DataTree) -> Vec<String> {
    let mut paths = Vec::new();
    tree.visit_preorder(|path, _, _, _| {
        if path.starts_with("/n") {
            paths.push(path.to_owned());
        }
    });
    paths.sort();
    paths
}

fn expected_paths(through: i64) -> Vec<String> {
    let mut paths: Vec<String> = (1..=through).map(|z| format!("/n{z}")).collect();
    paths.sort();
    paths
}

fn layout(dir: &Path) -> Layout {
    let layout = Layout::new(dir, dir);
    layout.create_dirs().unwrap();
    layout
}

/// Fills a fresh log with `fill` and leaves `log_dir` as a crash (SIGKILL, power loss) would:
/// the log's files are copied there while it is still open and idle, so RocksDB's memtables were
/// never flushed and only what was written to the journal and the WAL is there.
fn crashed(log_dir: &Path, fill: impl FnOnce(&TxnLog)) {
    let live = log_dir.with_extension("live");
    let log = TxnLog::open(&live).unwrap();
    fill(&log);
    std::fs::create_dir_all(log_dir).unwrap();
    for entry in std::fs::read_dir(&live).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), log_dir.join(entry.file_name())).unwrap();
        }
    }
    drop(log);
    std::fs::remove_dir_all(&live).ok();
}

/// Where the records in journal file `path` end: after its last byte that is not zero.
fn journal_used_end(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    bytes.iter().rposition(|b| *b != 0).unwrap() + 1
}

#[test]
fn a_torn_journal_tail_is_cut_off_and_every_whole_txn_kept() {
    let dir = temp_dir("torn-tail");
    let layout = layout(&dir);
    crashed(&layout.log_dir, |log| append(log, 1..=40));
    // The last record (txn 40) loses its last bytes, as when the machine stops mid-write.
    let journal = layout.log_dir.join("journal.0");
    let end = journal_used_end(&journal);
    let file = std::fs::OpenOptions::new().write(true).open(&journal).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[0u8; 9], (end - 9) as u64).unwrap();

    let log = start_and_stop(&dir, 23900);
    assert!(
        log.contains("last_zxid=0x27"),
        "expected txns through 0x27 restored:\n{log}"
    );
    let txn_log = TxnLog::open(&layout.log_dir).unwrap();
    let restored = restore(&layout, &txn_log, false).unwrap();
    assert_eq!(restored.last_zxid, 39);
    assert_eq!(node_paths(&restored.tree), expected_paths(39));
    drop(txn_log);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_damaged_sst_block_stops_the_start_naming_the_file_and_the_zxid() {
    let dir = temp_dir("sst");
    let layout = layout(&dir);
    {
        let log = TxnLog::open(&layout.log_dir).unwrap();
        append(&log, 1..=300);
        log.flush().unwrap();
    }
    let ssts = files_with_suffix(&layout.log_dir, ".sst");
    let sst = ssts
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap_or_else(|| panic!("no SST after a flush: {ssts:?}"));
    // Data blocks come first in an SST; half-way through the file is inside one of them, past the
    // first blocks, so some txns are still readable before the damage.
    let len = std::fs::metadata(sst).unwrap().len() as usize;
    flip_byte(sst, len / 2);

    let log = start_fails(&dir, 23901);
    let name = sst.file_name().unwrap().to_string_lossy().into_owned();
    assert!(log.contains(&name), "the message does not name {name}:\n{log}");
    assert!(
        log.contains("cannot read the entries after zxid 0x"),
        "no zxid in the message:\n{log}"
    );
    assert!(log.to_lowercase().contains("checksum mismatch"), "{log}");
    // The zxid named is where reading stopped: real txns were read before the damaged block.
    let after = log
        .split("after zxid 0x")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .unwrap();
    let after = i64::from_str_radix(after, 16).unwrap();
    assert!(after > 0 && after < 300, "implausible last good zxid {after}:\n{log}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn damage_in_the_middle_of_the_journal_stops_the_start() {
    let dir = temp_dir("journal-middle");
    let layout = layout(&dir);
    crashed(&layout.log_dir, |log| append(log, 1..=200));
    let journal = layout.log_dir.join("journal.0");
    // Records start after the file's 4 KiB header.
    flip_byte(&journal, (4096 + journal_used_end(&journal)) / 2);

    let log = start_fails(&dir, 23902);
    assert!(log.contains("is damaged and will not be replayed in part"), "{log}");
    assert!(log.contains("journal.0"), "the message does not name the file:\n{log}");
    let through = log
        .split("readable through zxid 0x")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap();
    let through = i64::from_str_radix(through, 16).unwrap();
    assert!(
        (50..150).contains(&through),
        "implausible last good zxid {through}:\n{log}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// RocksDB's WAL still holds the epochs and any batch too large for a journal record: damage in
/// its middle stops the start too.
#[test]
fn damage_in_the_middle_of_the_wal_stops_the_start() {
    let dir = temp_dir("wal-middle");
    let layout = layout(&dir);
    crashed(&layout.log_dir, |log| {
        log.set_meta("acceptedEpoch", 1).unwrap();
        // 45 txns of 100 KiB in one batch: over the journal's record limit (about 4 MiB).
        let batch: Vec<Txn> = (1..=45)
            .map(|zxid| {
                let mut t = txn(zxid);
                if let TxnBody::Create { data, .. } = &mut t.body {
                    *data = Some(Bytes::from(vec![b'w'; 100 << 10]));
                }
                t
            })
            .collect();
        log.append(&batch, true).unwrap();
        log.set_meta("currentEpoch", 1).unwrap();
    });
    let wal = files_with_suffix(&layout.log_dir, ".log");
    assert_eq!(wal.len(), 1, "{wal:?}");
    let len = std::fs::metadata(&wal[0]).unwrap().len() as usize;
    assert!(len > 4 << 20, "the batch did not go through the WAL ({len} bytes)");
    flip_byte(&wal[0], len / 2);

    let log = start_fails(&dir, 23906);
    let name = wal[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(log.contains("is damaged and will not be replayed in part"), "{log}");
    assert!(log.contains(&name), "the message does not name {name}:\n{log}");
    assert!(log.contains("readable through zxid none"), "{log}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_corrupt_snapshot_falls_back_to_an_older_one_and_the_log() {
    let dir = temp_dir("snap-fallback");
    let layout = layout(&dir);
    {
        let log = TxnLog::open(&layout.log_dir).unwrap();
        append(&log, 1..=30);
    }
    snapshot::write(&layout.snapshot_dir, &tree_through(10), &[], 10).unwrap();
    let newest = snapshot::write(&layout.snapshot_dir, &tree_through(20), &[], 20).unwrap();
    flip_byte(&newest, 40);

    let log = start_and_stop(&dir, 23903);
    assert!(
        log.contains("skipping snapshot") && log.contains("snapshot.14 is invalid"),
        "{log}"
    );
    assert!(
        log.contains("loaded snapshot") && log.contains("snapshot.a zxid=0xa"),
        "{log}"
    );
    assert!(log.contains("last_zxid=0x1e"), "{log}");
    let txn_log = TxnLog::open(&layout.log_dir).unwrap();
    let restored = restore(&layout, &txn_log, false).unwrap();
    assert_eq!(node_paths(&restored.tree), expected_paths(30));
    drop(txn_log);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_corrupt_snapshot_the_log_cannot_replace_stops_the_start() {
    // The log was purged through the newest snapshot, so the older one cannot be brought forward.
    let dir = temp_dir("snap-purged");
    let layout = layout(&dir);
    {
        let log = TxnLog::open(&layout.log_dir).unwrap();
        append(&log, 1..=30);
        log.purge_through(20).unwrap();
    }
    snapshot::write(&layout.snapshot_dir, &tree_through(10), &[], 10).unwrap();
    let newest = snapshot::write(&layout.snapshot_dir, &tree_through(20), &[], 20).unwrap();
    flip_byte(&newest, 40);
    let log = start_fails(&dir, 23904);
    assert!(
        log.contains("txns up to 0x14 were purged, but the newest usable snapshot ends at 0xa"),
        "{log}"
    );
    assert!(
        log.contains(&newest.display().to_string()),
        "the message does not name the snapshot:\n{log}"
    );

    // The only snapshot is corrupt and the log holds nothing after it (an imported data dir).
    let dir2 = temp_dir("snap-only");
    let layout2 = Layout::new(&dir2, &dir2);
    layout2.create_dirs().unwrap();
    drop(TxnLog::open(&layout2.log_dir).unwrap());
    let only = snapshot::write(&layout2.snapshot_dir, &tree_through(20), &[], 20).unwrap();
    flip_byte(&only, 40);
    let log = start_fails(&dir2, 23905);
    assert!(
        log.contains(&only.display().to_string()),
        "the message does not name the snapshot:\n{log}"
    );
    assert!(log.contains("reaches only 0x0, short of that snapshot's 0x14"), "{log}");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&dir2).ok();
}
