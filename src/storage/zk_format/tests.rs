//! Tests over real files written by Apache ZooKeeper 3.8.0 (`testdata/zk380`, produced by
//! `testdata/generate.py`; see `testdata/README.md`), and corrupted copies of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::proto::{Acl, Id, Stat, StatPersisted};
use crate::tree::digest::tree_digest;
use crate::tree::DataTree;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage/zk_format/testdata/zk380")
}

fn options() -> LoadOptions {
    LoadOptions {
        extended_types_enabled: true,
        snapshot_trust_empty: false,
    }
}

#[derive(Debug, PartialEq)]
struct ExpectedNode {
    data: Option<Vec<u8>>,
    stat: Stat,
    acl: Vec<Acl>,
}

/// What the real server reported just before it was stopped (`expected.txt`).
struct Expected {
    last_zxid: i64,
    sessions: Vec<(i64, i32)>,
    nodes: BTreeMap<String, ExpectedNode>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixture().join("expected.txt")).unwrap();
    let mut out = Expected {
        last_zxid: 0,
        sessions: Vec::new(),
        nodes: BTreeMap::new(),
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(zxid) = line.strip_prefix("last_zxid ") {
            out.last_zxid = zxid.parse().unwrap();
        } else if let Some(session) = line.strip_prefix("session ") {
            let (id, timeout) = session.split_once(' ').unwrap();
            out.sessions.push((id.parse().unwrap(), timeout.parse().unwrap()));
        } else {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields[0], "node", "{line}");
            let s: Vec<i64> = fields[3].split(' ').map(|v| v.parse().unwrap()).collect();
            let stat = Stat {
                czxid: s[0],
                mzxid: s[1],
                ctime: s[2],
                mtime: s[3],
                version: s[4] as i32,
                cversion: s[5] as i32,
                aversion: s[6] as i32,
                ephemeral_owner: s[7],
                data_length: s[8] as i32,
                num_children: s[9] as i32,
                pzxid: s[10],
            };
            let acl = fields[4]
                .split(' ')
                .map(|a| {
                    let mut parts = a.splitn(3, '/');
                    let perms = parts.next().unwrap().parse().unwrap();
                    let scheme = parts.next().unwrap().to_owned();
                    Acl {
                        perms,
                        id: Id {
                            scheme,
                            id: parts.next().unwrap().to_owned(),
                        },
                    }
                })
                .collect();
            let data = if fields[2] == "-" { None } else { Some(hex(fields[2])) };
            out.nodes.insert(fields[1].to_owned(), ExpectedNode { data, stat, acl });
        }
    }
    out.sessions.sort_unstable();
    out
}

/// Every node of `tree` as a client would read it.
fn client_view(tree: &DataTree) -> BTreeMap<String, ExpectedNode> {
    let mut paths = Vec::new();
    tree.visit_preorder(|path, _, _, _| paths.push(path.to_owned()));
    paths
        .into_iter()
        .map(|path| {
            let (data, stat) = tree.get_data(&path).unwrap();
            let (acl, _) = tree.get_acl(&path).unwrap();
            (
                path,
                ExpectedNode {
                    data: data.map(|d| d.to_vec()),
                    stat,
                    acl: acl.to_vec(),
                },
            )
        })
        .collect()
}

/// A node as stored: data, ACL, persisted Stat.
type PersistedNode = (Option<Vec<u8>>, Vec<Acl>, StatPersisted);

/// Every node with its persisted form, for exact tree comparisons.
fn persisted_view(tree: &DataTree) -> BTreeMap<String, PersistedNode> {
    let mut nodes = BTreeMap::new();
    tree.visit_preorder(|path, data, acl, stat| {
        nodes.insert(path.to_owned(), (data.map(<[u8]>::to_vec), acl.to_vec(), *stat));
    });
    nodes
}

fn assert_matches_expected(image: &ZkImage) {
    let expected = expected();
    let actual = client_view(&image.tree);
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.nodes.keys().collect::<Vec<_>>()
    );
    for (path, node) in &expected.nodes {
        assert_eq!(&actual[path], node, "node {path}");
    }
    assert_eq!(image.sessions, expected.sessions);
    assert_eq!(image.last_zxid, expected.last_zxid);
    assert_eq!(image.tree.last_processed_zxid, expected.last_zxid);
    image.tree.check_invariants().unwrap();
}

/// A scratch copy of the fixture, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("fk-zkfiles-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["data/version-2", "log/version-2"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            for entry in std::fs::read_dir(fixture().join(sub)).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
            }
        }
        Scratch(dir)
    }
    fn data(&self) -> PathBuf {
        self.0.join("data")
    }
    fn log(&self) -> PathBuf {
        self.0.join("log")
    }
    fn file(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
    fn newest(&self, sub: &str, prefix: &str) -> PathBuf {
        let mut files: Vec<(i64, PathBuf)> = std::fs::read_dir(self.0.join(sub))
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                zxid_from_name(&path.file_name().unwrap().to_string_lossy(), prefix).map(|z| (z, path))
            })
            .collect();
        files.sort();
        files.pop().unwrap().1
    }
    fn load(&self) -> Result<ZkImage, ZkFormatError> {
        load_data_dir_with(&self.data(), &self.log(), &options())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn loads_the_real_data_dir() {
    let image = load_data_dir_with(&fixture().join("data"), &fixture().join("log"), &options()).unwrap();
    assert_matches_expected(&image);
    // The newest snapshot was used and the log went on past it.
    let (snapshot, snapshot_zxid) = image.snapshot.clone().unwrap();
    assert!(snapshot.ends_with(snapshot_file_name(snapshot_zxid)));
    assert!(snapshot_zxid < image.last_zxid);
    assert!(image.txns_replayed > 0);
    assert!(image.skipped_snapshots.is_empty() && image.torn_logs.is_empty());
    // Ephemerals of the session left open survive; its session too.
    let open_session = image.tree.ephemerals().keys().copied().collect::<Vec<_>>();
    assert_eq!(open_session.len(), 1);
    assert!(image.sessions.iter().any(|(id, _)| *id == open_session[0]));
    assert_eq!(image.digest_matches(), Some(true));
    assert_eq!(image.digest.unwrap().zxid, image.last_zxid);
}

/// Every TxnDigest ZooKeeper logged equals our digest of the tree after applying that txn,
/// starting from the real `snapshot.0`: checks the digest and `DataTree::apply` txn by txn.
#[test]
fn digest_after_every_logged_txn_matches_zookeeper() {
    let snapshot = read_snapshot_file(&fixture().join("data/version-2/snapshot.0"), true).unwrap();
    let mut tree = snapshot.tree;
    assert_eq!(tree_digest(&tree), 0x51c6_d660);
    let mut logs: Vec<PathBuf> = std::fs::read_dir(fixture().join("log/version-2"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    logs.sort_by_key(|p| zxid_from_name(&p.file_name().unwrap().to_string_lossy(), "log"));
    let mut checked = 0;
    let mut types = std::collections::BTreeSet::new();
    for log in logs {
        for entry in read_log_file(&log).unwrap().entries {
            types.insert(entry.txn.header.txn_type);
            let _ = tree.apply(&entry.txn, &mut Vec::new());
            if let Some(digest) = entry.digest {
                assert_eq!(digest.version, 2);
                assert_eq!(
                    tree_digest(&tree),
                    digest.tree_digest,
                    "after zxid {:#x}",
                    entry.txn.header.zxid
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked}");
    // createSession, closeSession, create, delete, setData, setACL, multi, create2, containers,
    // deleteContainer, TTL, error.
    for txn_type in [-10, -11, 1, 2, 5, 7, 14, 15, 19, 20, 21, -1] {
        assert!(
            types.contains(&txn_type),
            "fixture has no txn of type {txn_type}: {types:?}"
        );
    }
}

/// Each real snapshot's stored digest equals our digest of the tree it holds (the fixture's
/// snapshots were taken while no write was in flight, so none is fuzzy).
#[test]
fn digest_of_every_real_snapshot_matches_the_stored_one() {
    for entry in std::fs::read_dir(fixture().join("data/version-2")).unwrap() {
        let path = entry.unwrap().path();
        let snapshot = read_snapshot_file(&path, true).unwrap();
        if let Some(digest) = snapshot.digest {
            assert_eq!(tree_digest(&snapshot.tree), digest.digest, "{}", path.display());
        }
    }
}

#[test]
fn export_then_load_gives_the_same_tree() {
    let image = load_data_dir_with(&fixture().join("data"), &fixture().join("log"), &options()).unwrap();
    let scratch = Scratch::new("export");
    let out = scratch.file("export");
    let path = write_snapshot_file(&out, &image.tree, &image.sessions, image.last_zxid).unwrap();
    assert_eq!(path, out.join("version-2").join(snapshot_file_name(image.last_zxid)));
    let back = load_data_dir_with(&out, &out, &options()).unwrap();
    assert_eq!(persisted_view(&back.tree), persisted_view(&image.tree));
    assert_matches_expected(&back);
    assert_eq!(back.digest.unwrap().zxid, image.last_zxid);
    assert_eq!(back.digest_matches(), Some(true));
    // Only the snapshot is there: no temporary file left behind.
    assert_eq!(std::fs::read_dir(out.join("version-2")).unwrap().count(), 1);
    // The SNAP stream carries the same tree and sessions.
    let mut stream = Vec::new();
    write_snap_stream_body(&image.tree, &image.sessions, &mut stream).unwrap();
    let (tree, sessions) = read_snap_stream_body(&mut Bytes::from(stream), true).unwrap();
    assert_eq!(persisted_view(&tree), persisted_view(&image.tree));
    assert_eq!(sessions, image.sessions);
}

#[test]
fn gzip_snapshots_load() {
    use std::io::Write;
    let scratch = Scratch::new("gzip");
    let newest = scratch.newest("data/version-2", "snapshot");
    let raw = std::fs::read(&newest).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    std::fs::write(
        newest.with_file_name(format!("{}.gz", newest.file_name().unwrap().to_string_lossy())),
        gz.finish().unwrap(),
    )
    .unwrap();
    std::fs::remove_file(&newest).unwrap();
    let image = scratch.load().unwrap();
    assert!(image.snapshot.as_ref().unwrap().0.to_string_lossy().ends_with(".gz"));
    assert_matches_expected(&image);
}

#[test]
fn flipped_byte_in_a_log_names_the_file_and_zxid() {
    let scratch = Scratch::new("flip-log");
    let log = scratch.newest("log/version-2", "log");
    let entries = read_log_file(&log).unwrap().entries;
    let victim = &entries[entries.len() / 2];
    let mut raw = std::fs::read(&log).unwrap();
    // Byte 20 of the TxnHeader is inside its `time` field: the zxid stays readable.
    raw[victim.offset as usize + 12 + 20] ^= 0x5a;
    std::fs::write(&log, raw).unwrap();
    let err = scratch.load().unwrap_err();
    match &err {
        ZkFormatError::LogChecksum { path, offset, zxid } => {
            assert_eq!(path, &log);
            assert_eq!(*offset, victim.offset);
            assert_eq!(*zxid, Some(victim.txn.header.zxid));
        }
        other => panic!("unexpected {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&*log.file_name().unwrap().to_string_lossy()),
        "{message}"
    );
    assert!(message.contains(&format!("{:#x}", victim.txn.header.zxid)), "{message}");
}

#[test]
fn torn_last_entry_is_cut_off_and_earlier_ones_kept() {
    for (name, tear) in [("torn-short", 0usize), ("torn-marker", 1)] {
        let scratch = Scratch::new(name);
        let log = scratch.newest("log/version-2", "log");
        let entries = read_log_file(&log).unwrap().entries;
        let last = entries.last().unwrap();
        let mut raw = std::fs::read(&log).unwrap();
        if tear == 0 {
            // The write stopped in the middle of the body.
            raw.truncate(last.offset as usize + 20);
        } else {
            // Everything but the end-of-record marker made it.
            *raw.last_mut().unwrap() = 0x00;
        }
        std::fs::write(&log, raw).unwrap();
        let image = scratch.load().unwrap();
        assert_eq!(image.torn_logs, vec![(log.clone(), last.offset)], "{name}");
        let before_last = entries[entries.len() - 2].txn.header.zxid;
        assert_eq!(image.last_zxid, before_last, "{name}");
        // The last txn was `setData /app "final"`: cut off, so /app keeps its previous data.
        assert_ne!(
            image.tree.get_data("/app").unwrap().0.as_deref(),
            Some(&b"final"[..]),
            "{name}"
        );
        assert!(image.tree.lookup("/app/eph-open").is_some(), "{name}");
    }
}

#[test]
fn truncated_newest_snapshot_falls_back_to_an_older_one() {
    let scratch = Scratch::new("trunc-snap");
    let newest = scratch.newest("data/version-2", "snapshot");
    let raw = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &raw[..raw.len() / 2]).unwrap();
    let image = scratch.load().unwrap();
    // Not even a candidate (no trailing seal), as in ZooKeeper; the older one plus logs give
    // exactly the same final state.
    assert_ne!(image.snapshot.as_ref().unwrap().0, newest);
    assert_matches_expected(&image);
    assert_eq!(image.digest_matches(), Some(true));
}

#[test]
fn corrupt_newest_snapshot_is_reported_and_skipped() {
    let scratch = Scratch::new("corrupt-snap");
    let newest = scratch.newest("data/version-2", "snapshot");
    let mut raw = std::fs::read(&newest).unwrap();
    let middle = raw.len() / 2;
    raw[middle] ^= 0x01;
    std::fs::write(&newest, raw).unwrap();
    let image = scratch.load().unwrap();
    assert_eq!(image.skipped_snapshots.len(), 1);
    let message = image.skipped_snapshots[0].to_string();
    assert!(
        message.contains(&*newest.file_name().unwrap().to_string_lossy()),
        "{message}"
    );
    assert_matches_expected(&image);
}

#[test]
fn no_readable_snapshot_is_an_error() {
    let scratch = Scratch::new("all-corrupt");
    for entry in std::fs::read_dir(scratch.file("data/version-2")).unwrap() {
        let path = entry.unwrap().path();
        let mut raw = std::fs::read(&path).unwrap();
        raw[20] ^= 0xff;
        std::fs::write(&path, raw).unwrap();
    }
    match scratch.load() {
        Err(ZkFormatError::NoValidSnapshot { tried, .. }) => assert_eq!(tried.len(), 5),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn logs_without_snapshot_need_trust_empty() {
    let scratch = Scratch::new("no-snap");
    for entry in std::fs::read_dir(scratch.file("data/version-2")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    assert!(matches!(scratch.load(), Err(ZkFormatError::NoSnapshot { .. })));
    let trusting = LoadOptions {
        snapshot_trust_empty: true,
        ..options()
    };
    let image = load_data_dir_with(&scratch.data(), &scratch.log(), &trusting).unwrap();
    assert!(image.snapshot.is_none());
    assert_matches_expected(&image);
}

#[test]
fn missing_dir_is_an_io_error_naming_it() {
    let err = load_data_dir(Path::new("/nonexistent/zk"), Path::new("/nonexistent/zk")).unwrap_err();
    assert!(matches!(err, ZkFormatError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/zk/version-2"), "{err}");
}

/// The newest snapshot and the newest log of the fixture.
fn real_files() -> [PathBuf; 2] {
    let newest = |sub: &str, prefix: &str| {
        std::fs::read_dir(fixture().join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max_by_key(|p| zxid_from_name(&p.file_name().unwrap().to_string_lossy(), prefix))
            .unwrap()
    };
    [newest("data/version-2", "snapshot"), newest("log/version-2", "log")]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_snapshot_bytes(Path::new("snapshot.1"), Bytes::from(raw.clone()), true);
        let _ = read_log_bytes(Path::new("log.1"), Bytes::from(raw.clone()));
        // Behind valid headers, so the bytes reach the record decoders.
        let mut snap = b"ZKSN\0\0\0\x02\xff\xff\xff\xff\xff\xff\xff\xff".to_vec();
        snap.extend_from_slice(&raw);
        let _ = read_snapshot_bytes(Path::new("snapshot.1"), Bytes::from(snap), true);
        let mut log = b"ZKLG\0\0\0\x02\0\0\0\0\0\0\0\0".to_vec();
        log.extend_from_slice(&raw);
        let _ = read_log_bytes(Path::new("log.1"), Bytes::from(log));
        let _ = read_snap_stream_body(&mut Bytes::from(raw), true);
    }

    /// Damage to real files: flipped bytes and truncation anywhere.
    #[test]
    fn damaged_real_files_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        for path in real_files() {
            let mut raw = std::fs::read(&path).unwrap();
            for (at, byte) in &flips {
                let i = at.index(raw.len());
                raw[i] ^= byte | 1;
            }
            let truncated = raw[..cut.index(raw.len() + 1)].to_vec();
            for bytes in [raw, truncated] {
                if path.to_string_lossy().contains("snapshot.") {
                    if let Ok(snapshot) = read_snapshot_bytes(&path, Bytes::from(bytes), true) {
                        snapshot.tree.check_invariants().unwrap();
                    }
                } else {
                    let _ = read_log_bytes(&path, Bytes::from(bytes));
                }
            }
        }
    }
}
