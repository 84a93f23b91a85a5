use proptest::prelude::*;

use super::*;
use crate::proto::open_acl_unsafe;
use crate::proto::txn::TxnHeader;

fn txn(zxid: i64, body: TxnBody) -> Txn {
    Txn { header: TxnHeader { client_id: 7, cxid: 1, zxid, time: 1000 + zxid, txn_type: 0 }, body }
}

fn create(path: &str, parent_cversion: i32) -> TxnBody {
    TxnBody::Create { path: path.into(), data: Some(Bytes::from_static(b"d")), acl: open_acl_unsafe(), ephemeral: false, parent_cversion }
}

#[test]
fn fresh_tree_has_zookeepers_nodes() {
    let tree = DataTree::new(false);
    assert_eq!(tree.node_count(), 5);
    assert_eq!(tree.children("/").unwrap().0, vec!["zookeeper"]);
    assert_eq!(tree.get_acl("/zookeeper/config").unwrap().1.aversion, -1);
    assert_eq!(tree.get_data("/zookeeper/config").unwrap().0.as_deref(), Some(&b""[..]));
    assert_eq!(tree.count_descendants("/"), Some(3));
    tree.check_invariants().unwrap();
}

/// The per-node budget the memory row of the benchmark rests on (README, BENCHMARKS): growing a
/// node by a field is 8 MB more with a million znodes, so it should be a decision, not an accident.
#[test]
fn a_node_slot_is_72_bytes() {
    assert_eq!(std::mem::size_of::<Option<Node>>(), 72);
}

/// The index moves to a bigger table a few entries per insert; every node stays findable, and
/// deleted ones gone, while it does.
#[test]
fn the_index_grows_without_losing_a_node() {
    let mut tree = DataTree::new(false);
    let mut t = Vec::new();
    let mut zxid = 0;
    let mut live = std::collections::BTreeSet::new();
    let mut checks_while_growing = 0;
    for i in 0..6_000 {
        zxid += 1;
        tree.apply(&txn(zxid, create(&format!("/n{i}"), -1)), &mut t);
        live.insert(i);
        if i % 3 == 0 {
            // Frees slots the next creates reuse, ahead of and behind the drain.
            zxid += 1;
            tree.apply(&txn(zxid, TxnBody::Delete { path: format!("/n{}", i / 2) }), &mut t);
            live.remove(&(i / 2));
        }
        if i % 61 == 0 || tree.index.growing() && i % 7 == 0 {
            checks_while_growing += usize::from(tree.index.growing());
            for j in 0..=i {
                assert_eq!(tree.lookup(&format!("/n{j}")).is_some(), live.contains(&j), "/n{j} after {i}");
            }
            tree.check_invariants().unwrap();
        }
    }
    assert!(checks_while_growing > 10, "the test never looked while the index grew");
    assert_eq!(tree.node_count(), live.len() + 5);
}

/// PROTOCOL.md §2.5 [obs]: create a, delete a, create b → cversion 3; then create a sequential
/// (suffix from persisted cversion 2), delete both → cversion 6.
#[test]
fn cversion_counts_creations_and_deletions() {
    let mut tree = DataTree::new(false);
    let mut triggers = Vec::new();
    tree.apply(&txn(1, create("/p", -1)), &mut triggers);
    tree.apply(&txn(2, create("/p/a", 1)), &mut triggers);
    tree.apply(&txn(3, TxnBody::Delete { path: "/p/a".into() }), &mut triggers);
    tree.apply(&txn(4, create("/p/b", 2)), &mut triggers);
    let stat = tree.stat("/p").unwrap();
    assert_eq!(stat.cversion, 3);
    assert_eq!(stat.pzxid, 4);
    assert_eq!(tree.node_info("/p").unwrap().stat.cversion, 2);
    tree.apply(&txn(5, create("/p/s0000000002", 3)), &mut triggers);
    tree.apply(&txn(6, TxnBody::Delete { path: "/p/b".into() }), &mut triggers);
    tree.apply(&txn(7, TxnBody::Delete { path: "/p/s0000000002".into() }), &mut triggers);
    let stat = tree.stat("/p").unwrap();
    assert_eq!(stat.cversion, 6);
    assert_eq!(stat.pzxid, 7);
    assert_eq!(stat.num_children, 0);
    tree.check_invariants().unwrap();
}

#[test]
fn children_come_back_in_creation_order() {
    let mut tree = DataTree::new(false);
    let mut t = Vec::new();
    for (i, name) in ["/c", "/a", "/b"].iter().enumerate() {
        tree.apply(&txn(i as i64 + 1, create(name, -1)), &mut t);
    }
    assert_eq!(tree.children("/").unwrap().0, vec!["zookeeper", "c", "a", "b"]);
    // The borrowed view walks the same order, and knows its length up front.
    let root = tree.read("/").unwrap();
    let names = root.child_names();
    assert_eq!(names.len(), 4);
    assert_eq!(names.collect::<Vec<_>>(), vec![&b"zookeeper"[..], b"c", b"a", b"b"]);
    assert_eq!(root.stat(), tree.stat("/").unwrap());
    // After deleting from the middle and the head, the order still holds.
    let mut t = Vec::new();
    tree.delete_node("/a", 10, &mut t).unwrap();
    tree.delete_node("/b", 11, &mut t).unwrap();
    assert_eq!(tree.read("/").unwrap().child_names().collect::<Vec<_>>(), vec![&b"zookeeper"[..], b"c"]);
    assert!(tree.read("/c").unwrap().child_names().next().is_none());
}

#[test]
fn failed_multi_applies_nothing() {
    let mut tree = DataTree::new(false);
    let mut t = Vec::new();
    let multi = TxnBody::Multi(vec![(1, create("/m", -1)), (-1, TxnBody::Error { err: -103 }), (-1, TxnBody::Error { err: -2 })]);
    let result = tree.apply(&txn(1, multi), &mut t);
    assert_eq!(
        result,
        ApplyResult::Multi(vec![
            ApplyResult::Failed(ErrorCode::Ok),
            ApplyResult::Failed(ErrorCode::BadVersion),
            ApplyResult::Failed(ErrorCode::RuntimeInconsistency)
        ])
    );
    assert!(tree.stat("/m").is_none());
    assert!(t.is_empty());
    assert_eq!(tree.last_processed_zxid, 1);
}

#[test]
fn close_session_removes_its_ephemerals() {
    let mut tree = DataTree::new(false);
    let mut t = Vec::new();
    let eph = TxnBody::Create { path: "/e".into(), data: None, acl: open_acl_unsafe(), ephemeral: true, parent_cversion: -1 };
    tree.apply(&txn(1, eph), &mut t);
    assert_eq!(tree.stat("/e").unwrap().ephemeral_owner, 7);
    assert_eq!(tree.ephemerals_of(7), vec!["/e"]);
    tree.apply(&txn(2, TxnBody::CloseSession { paths_to_delete: vec![] }), &mut t);
    assert!(tree.stat("/e").is_none());
    assert!(tree.ephemerals().is_empty());
    assert_eq!(t.last(), Some(&Trigger::Deleted("/e".into())));
}

#[test]
fn containers_and_ttls_show_owner_zero_and_expire() {
    let mut tree = DataTree::new(true);
    let mut t = Vec::new();
    tree.apply(&txn(1, TxnBody::CreateContainer { path: "/c".into(), data: None, acl: open_acl_unsafe(), parent_cversion: -1 }), &mut t);
    tree.apply(&txn(2, TxnBody::CreateTtl { path: "/t".into(), data: None, acl: open_acl_unsafe(), parent_cversion: -1, ttl_ms: 100 }), &mut t);
    assert_eq!(tree.stat("/c").unwrap().ephemeral_owner, 0);
    assert_eq!(tree.stat("/t").unwrap().ephemeral_owner, 0);
    assert_eq!(tree.node_info("/c").unwrap().stat.ephemeral_owner, i64::MIN);
    // The unused container stays; the TTL node goes once its ttl passed since mtime (1002).
    assert!(tree.expired_containers_and_ttls(1050, 0).is_empty());
    assert_eq!(tree.expired_containers_and_ttls(1200, 0), vec!["/t"]);
    tree.apply(&txn(3, create("/c/x", -1)), &mut t);
    tree.apply(&txn(4, TxnBody::Delete { path: "/c/x".into() }), &mut t);
    assert_eq!(tree.expired_containers_and_ttls(1050, 0), vec!["/c"]);
}

#[test]
fn malformed_paths_are_not_found() {
    let tree = DataTree::new(false);
    for path in ["", "zookeeper", "/zookeeper/", "//zookeeper", "/zookeeper//quota"] {
        assert!(tree.lookup(path).is_none(), "{path}");
    }
}

#[test]
fn delete_refuses_root_and_non_empty() {
    let mut tree = DataTree::new(false);
    let mut t = Vec::new();
    assert_eq!(tree.delete_node("/", 1, &mut t), Err(ErrorCode::BadArguments));
    assert_eq!(tree.delete_node("/zookeeper", 1, &mut t), Err(ErrorCode::NotEmpty));
}

proptest! {
    /// Random creates and deletes keep the tree's links, counts and index consistent, list every
    /// node's children in creation order, and the approximate data size returns to its start when
    /// everything is deleted again.
    #[test]
    fn random_ops_keep_invariants(ops in proptest::collection::vec((0u8..3, 0usize..6, 0usize..6), 1..200)) {
        let mut tree = DataTree::new(false);
        let start_size = tree.approximate_data_size();
        let mut t = Vec::new();
        let mut zxid = 0;
        // The paths that exist, in creation order.
        let mut created: Vec<String> = vec!["/zookeeper".into()];
        for (op, a, b) in ops {
            zxid += 1;
            let path = if b % 2 == 0 { format!("/n{a}") } else { format!("/n{a}/m{b}") };
            let body = match op {
                0 => create(&path, -1),
                1 => TxnBody::Delete { path: path.clone() },
                _ => TxnBody::SetData { path: path.clone(), data: Some(Bytes::from(vec![1; a])), version: 1 },
            };
            let applied = !matches!(tree.apply(&txn(zxid, body), &mut t), ApplyResult::Failed(_));
            match op {
                0 if applied => created.push(path),
                1 if applied => created.retain(|p| *p != path),
                _ => {}
            }
            prop_assert!(tree.check_invariants().is_ok());
            // (/zookeeper's own children are not in the model.)
            for parent in std::iter::once("/").chain(created.iter().map(String::as_str).filter(|p| p.starts_with("/n"))) {
                let expected: Vec<&str> = created
                    .iter()
                    .filter_map(|p| split_parent(p).filter(|(q, _)| *q == parent).map(|(_, name)| name))
                    .collect();
                prop_assert_eq!(&tree.children(parent).unwrap().0, &expected, "children of {}", parent);
                let listed: Vec<&[u8]> = tree.read(parent).unwrap().child_names().collect();
                let expected: Vec<&[u8]> = expected.iter().map(|n| n.as_bytes()).collect();
                prop_assert_eq!(listed, expected, "child names of {}", parent);
            }
        }
        for a in 0..6 {
            for b in 0..6 {
                zxid += 1;
                tree.apply(&txn(zxid, TxnBody::Delete { path: format!("/n{a}/m{b}") }), &mut t);
            }
            zxid += 1;
            tree.apply(&txn(zxid, TxnBody::Delete { path: format!("/n{a}") }), &mut t);
        }
        prop_assert_eq!(tree.node_count(), 5);
        prop_assert_eq!(tree.approximate_data_size(), start_size);
        prop_assert!(tree.check_invariants().is_ok());
    }
}

#[test]
fn preorder_visit_and_restore_rebuild_the_same_tree() {
    let mut tree = DataTree::new(true);
    let mut t = Vec::new();
    tree.apply(&txn(1, create("/a", -1)), &mut t);
    tree.apply(&txn(2, create("/a/b", -1)), &mut t);
    tree.apply(&txn(3, TxnBody::Create { path: "/e".into(), data: None, acl: open_acl_unsafe(), ephemeral: true, parent_cversion: -1 }), &mut t);
    tree.apply(&txn(4, TxnBody::CreateTtl { path: "/t".into(), data: None, acl: open_acl_unsafe(), parent_cversion: -1, ttl_ms: 5 }), &mut t);
    let mut records = Vec::new();
    tree.visit_preorder(|path, data, acl, stat| records.push((path.to_owned(), data.map(<[u8]>::to_vec), acl.to_vec(), *stat)));
    let paths: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(paths, vec!["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config", "/a", "/a/b", "/e", "/t"]);
    let mut copy = DataTree::new(true);
    for (path, data, acl, stat) in &records {
        copy.restore_node(path, data.as_deref(), acl, *stat).unwrap();
    }
    for path in ["/", "/a", "/a/b", "/e", "/t", "/zookeeper/config"] {
        assert_eq!(copy.stat(path), tree.stat(path), "{path}");
        assert_eq!(copy.get_data(path), tree.get_data(path), "{path}");
    }
    assert_eq!(copy.ephemerals_of(7), vec!["/e"]);
    assert_eq!(copy.expired_containers_and_ttls(i64::MAX / 2, 0), vec!["/t"]);
    assert_eq!(copy.approximate_data_size(), tree.approximate_data_size());
    assert_eq!(copy.node_count(), tree.node_count());
    copy.check_invariants().unwrap();
}

/// The Stat a node reports after each kind of change, field by field: the slot keeps some fields
/// and the block the rest, only while they differ from their creation values (`node_block`).
#[test]
fn every_stat_field_follows_creates_set_data_and_set_acl() {
    let mut tree = DataTree::new(true);
    let mut t = Vec::new();
    tree.apply(&txn(1, create("/s", -1)), &mut t);
    let created = tree.stat("/s").unwrap();
    assert_eq!((created.czxid, created.mzxid, created.pzxid), (1, 1, 1));
    assert_eq!((created.ctime, created.mtime, created.version, created.aversion), (1001, 1001, 0, 0));
    tree.apply(&txn(2, TxnBody::SetData { path: "/s".into(), data: Some(Bytes::from_static(b"two")), version: 1 }), &mut t);
    tree.apply(&txn(3, TxnBody::SetAcl { path: "/s".into(), acl: open_acl_unsafe(), version: 4 }), &mut t);
    tree.apply(&txn(4, create("/s/c", -1)), &mut t);
    let s = tree.stat("/s").unwrap();
    assert_eq!((s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime), (1, 2, 4, 1001, 1002));
    assert_eq!((s.version, s.aversion, s.cversion, s.num_children, s.data_length), (1, 4, 1, 1, 3));
    assert_eq!(tree.get_data("/s").unwrap().0.as_deref(), Some(&b"two"[..]));
    // A later setData keeps the aversion; setting the data back does not undo the change.
    tree.apply(&txn(5, TxnBody::SetData { path: "/s".into(), data: Some(Bytes::from_static(b"d")), version: 2 }), &mut t);
    let s = tree.stat("/s").unwrap();
    assert_eq!((s.mzxid, s.mtime, s.version, s.aversion, s.data_length), (5, 1005, 2, 4, 1));
    // Restored Stats come back exactly, also when only some setData fields differ.
    let zero = StatPersisted::default();
    for stat in [
        StatPersisted { czxid: 9, mzxid: 9, ctime: 50, mtime: 60, ..zero },
        StatPersisted { czxid: 9, mzxid: 10, ctime: 50, mtime: 50, ..zero },
        StatPersisted { czxid: 9, mzxid: 9, ctime: 50, mtime: 50, version: 3, ..zero },
        StatPersisted { czxid: 9, mzxid: 9, ctime: 50, mtime: 50, aversion: -1, ephemeral_owner: 77, ..zero },
    ] {
        tree.restore_node("/r", Some(b"x"), &open_acl_unsafe(), stat).unwrap();
        assert_eq!(tree.node_info("/r").unwrap().stat, stat);
    }
    // A TTL node's expiry counts from its last setData.
    tree.apply(&txn(6, TxnBody::CreateTtl { path: "/t".into(), data: None, acl: open_acl_unsafe(), parent_cversion: -1, ttl_ms: 100 }), &mut t);
    tree.apply(&txn(50, TxnBody::SetData { path: "/t".into(), data: None, version: 1 }), &mut t);
    assert!(tree.expired_containers_and_ttls(1140, 0).is_empty());
    assert_eq!(tree.expired_containers_and_ttls(1151, 0), vec!["/t"]);
    tree.check_invariants().unwrap();
}
