//! A follower driven packet by packet, as a 3.8 leader sends them (PROTOCOL.md §4.7).

use bytes::{Bytes, BytesMut};

use super::*;
use crate::jute::Encode;
use crate::proto::txn::{TxnBody, TxnHeader};

const EPOCH: i64 = 2;

fn start() -> LearnerStart {
    LearnerStart {
        my_sid: 3,
        config_version: 0,
        accepted_epoch: 1,
        current_epoch: 1,
        last_logged_zxid: make_zxid(1, 4),
    }
}

/// A setData txn's entry bytes at `zxid` (shared by zab's unit tests).
pub(crate) fn txn_bytes(zxid: i64) -> Bytes {
    let header = TxnHeader {
        client_id: 0x100,
        cxid: 1,
        zxid,
        time: 1_700_000_000_000,
        txn_type: 5,
    };
    let body = TxnBody::SetData {
        path: "/a".into(),
        data: Some(Bytes::from_static(b"x")),
        version: 1,
    };
    let mut out = BytesMut::new();
    header.encode(&mut out);
    body.encode(&mut out);
    out.freeze()
}

fn proposal(zxid: i64) -> QuorumPacket {
    QuorumPacket::with_data(packet_type::PROPOSAL, zxid, txn_bytes(zxid))
}

fn packet(packet_type: i32, zxid: i64) -> QuorumPacket {
    QuorumPacket::new(packet_type, zxid)
}

/// A learner past discovery (LEADERINFO of `EPOCH` handled), actions taken.
fn discovered() -> Learner {
    let mut learner = Learner::new(start());
    learner.take_actions();
    learner
        .packet(QuorumPacket::with_data(
            packet_type::LEADERINFO,
            make_zxid(EPOCH, 0),
            Bytes::from_static(&[0, 1, 0, 0]),
        ))
        .unwrap();
    learner.take_actions();
    learner
}

/// The actions as short strings, for exact comparison.
fn names(actions: &[LearnerAction]) -> Vec<String> {
    actions
        .iter()
        .map(|action| match action {
            LearnerAction::Send(p) => format!("send {} 0x{:x}", packet_type::name(p.packet_type), p.zxid),
            LearnerAction::PersistAcceptedEpoch(e) => format!("accepted epoch {e}"),
            LearnerAction::PersistCurrentEpoch(e) => format!("current epoch {e}"),
            LearnerAction::LoadSnapshot { zxid } => format!("load snapshot 0x{zxid:x}"),
            LearnerAction::Truncate { zxid } => format!("truncate 0x{zxid:x}"),
            LearnerAction::ApplyUnlogged(p) => format!("apply unlogged 0x{:x}", p.zxid()),
            LearnerAction::TakeSnapshot => "snapshot".to_string(),
            LearnerAction::Log(p) => format!("log 0x{:x}", p.zxid()),
            LearnerAction::Commit(zxid) => format!("commit 0x{zxid:x}"),
            LearnerAction::Ping { zxid } => format!("ping 0x{zxid:x}"),
            LearnerAction::Serving { epoch } => format!("serving {epoch}"),
            LearnerAction::SyncDone => "sync done".to_string(),
            LearnerAction::Revalidated { session_id, valid } => format!("revalidated 0x{session_id:x} {valid}"),
        })
        .collect()
}

#[test]
fn discovery_persists_a_newer_epoch_before_acking_it() {
    let mut learner = Learner::new(start());
    let actions = learner.take_actions();
    let [LearnerAction::Send(followerinfo)] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (followerinfo.packet_type, followerinfo.zxid),
        (packet_type::FOLLOWERINFO, make_zxid(1, 0))
    );
    let info = LearnerInfo::decode(followerinfo.data.as_ref().unwrap()).unwrap();
    assert_eq!((info.server_id, info.protocol_version), (3, 0x10000));
    assert_eq!(learner.zab_state(), "discovery");

    learner
        .packet(QuorumPacket::with_data(
            packet_type::LEADERINFO,
            make_zxid(EPOCH, 0),
            Bytes::from_static(&[0, 1, 0, 0]),
        ))
        .unwrap();
    let actions = learner.take_actions();
    assert_eq!(names(&actions), ["accepted epoch 2", "send ACKEPOCH 0x100000004"]);
    let LearnerAction::Send(ackepoch) = &actions[1] else {
        unreachable!()
    };
    assert_eq!(
        ackepoch.data.as_deref(),
        Some(&1i32.to_be_bytes()[..]),
        "the current epoch"
    );
    assert_eq!(learner.zab_state(), "synchronization");
}

#[test]
fn an_epoch_already_accepted_is_acked_with_minus_one_and_an_older_one_is_refused() {
    let mut learner = Learner::new(start());
    learner.take_actions();
    learner
        .packet(packet(packet_type::LEADERINFO, make_zxid(1, 0)))
        .unwrap();
    let actions = learner.take_actions();
    assert_eq!(names(&actions), ["send ACKEPOCH 0x100000004"]);
    let LearnerAction::Send(ackepoch) = &actions[0] else {
        unreachable!()
    };
    assert_eq!(ackepoch.data.as_deref(), Some(&(-1i32).to_be_bytes()[..]));

    let mut learner = Learner::new(LearnerStart {
        accepted_epoch: 5,
        ..start()
    });
    assert_eq!(
        learner.packet(packet(packet_type::LEADERINFO, make_zxid(4, 0))),
        Err(LearnerError::StaleEpoch { leader: 4, accepted: 5 })
    );
}

#[test]
fn diff_sync_logs_the_txns_at_newleader_and_acks_it_once_they_are_on_disk() {
    let mut learner = discovered();
    for p in [
        packet(packet_type::DIFF, make_zxid(1, 6)),
        proposal(make_zxid(1, 5)),
        packet(packet_type::COMMIT, make_zxid(1, 5)),
        proposal(make_zxid(1, 6)),
        packet(packet_type::COMMIT, make_zxid(1, 6)),
        proposal(make_zxid(2, 1)),
    ] {
        learner.packet(p).unwrap();
    }
    assert!(
        learner.take_actions().is_empty(),
        "nothing is logged or applied before NEWLEADER"
    );
    assert_eq!(learner.sync_mode(), Some(SyncMode::Diff));
    learner
        .packet(packet(packet_type::NEWLEADER, make_zxid(EPOCH, 0)))
        .unwrap();
    assert_eq!(
        names(&learner.take_actions()),
        [
            "current epoch 2",
            "log 0x100000005",
            "log 0x100000006",
            "log 0x200000001"
        ]
    );
    learner.persisted_through(make_zxid(1, 6));
    assert!(
        learner.take_actions().is_empty(),
        "the NEWLEADER ack waits for every synced txn"
    );
    learner.persisted_through(make_zxid(2, 1));
    assert_eq!(
        names(&learner.take_actions()),
        [
            "send ACK 0x200000000",
            "send ACK 0x100000005",
            "send ACK 0x100000006",
            "send ACK 0x200000001"
        ]
    );
    learner.packet(packet(packet_type::UPTODATE, -1)).unwrap();
    assert_eq!(
        names(&learner.take_actions()),
        [
            "send ACK 0x200000000",
            "serving 2",
            "commit 0x100000005",
            "commit 0x100000006"
        ]
    );
    assert_eq!(learner.zab_state(), "broadcast");
    learner.packet(packet(packet_type::COMMIT, make_zxid(2, 1))).unwrap();
    assert_eq!(names(&learner.take_actions()), ["commit 0x200000001"]);
}

#[test]
fn snap_sync_applies_commits_unlogged_and_snapshots_at_newleader() {
    let mut learner = discovered();
    learner.packet(packet(packet_type::SNAP, make_zxid(1, 9))).unwrap();
    assert_eq!(names(&learner.take_actions()), ["load snapshot 0x100000009"]);
    assert!(
        learner.packet(proposal(make_zxid(1, 10))).is_err(),
        "nothing is read while the snapshot loads"
    );
    learner.snapshot_loaded(make_zxid(1, 9));
    learner.packet(proposal(make_zxid(1, 10))).unwrap();
    learner.packet(packet(packet_type::COMMIT, make_zxid(1, 10))).unwrap();
    learner.packet(proposal(make_zxid(2, 1))).unwrap();
    assert_eq!(names(&learner.take_actions()), ["apply unlogged 0x10000000a"]);
    learner
        .packet(packet(packet_type::NEWLEADER, make_zxid(EPOCH, 0)))
        .unwrap();
    // The outstanding proposal is logged; the ack waits for it.
    assert_eq!(
        names(&learner.take_actions()),
        ["snapshot", "current epoch 2", "log 0x200000001"]
    );
    learner.persisted_through(make_zxid(2, 1));
    assert_eq!(
        names(&learner.take_actions()),
        ["send ACK 0x200000000", "send ACK 0x200000001"]
    );
}

#[test]
fn trunc_sync_cuts_the_log_back_and_snapshots_at_newleader() {
    let mut learner = discovered();
    learner.packet(packet(packet_type::TRUNC, make_zxid(1, 3))).unwrap();
    assert_eq!(names(&learner.take_actions()), ["truncate 0x100000003"]);
    learner
        .packet(packet(packet_type::NEWLEADER, make_zxid(EPOCH, 0)))
        .unwrap();
    assert_eq!(
        names(&learner.take_actions()),
        ["snapshot", "current epoch 2", "send ACK 0x200000000"]
    );
}

#[test]
fn broadcast_acks_each_proposal_once_durable_and_applies_commits_in_order() {
    let mut learner = discovered();
    for p in [
        packet(packet_type::DIFF, make_zxid(1, 4)),
        packet(packet_type::NEWLEADER, make_zxid(EPOCH, 0)),
    ] {
        learner.packet(p).unwrap();
    }
    learner.packet(packet(packet_type::UPTODATE, -1)).unwrap();
    assert_eq!(
        names(&learner.take_actions()),
        [
            "current epoch 2",
            "send ACK 0x200000000",
            "send ACK 0x200000000",
            "serving 2"
        ]
    );
    learner.packet(proposal(make_zxid(2, 1))).unwrap();
    learner.packet(proposal(make_zxid(2, 2))).unwrap();
    assert_eq!(names(&learner.take_actions()), ["log 0x200000001", "log 0x200000002"]);
    // A quorum without this server may commit before its own disk has the txn.
    learner.packet(packet(packet_type::COMMIT, make_zxid(2, 1))).unwrap();
    assert_eq!(names(&learner.take_actions()), ["commit 0x200000001"]);
    learner.persisted_through(make_zxid(2, 2));
    assert_eq!(
        names(&learner.take_actions()),
        ["send ACK 0x200000001", "send ACK 0x200000002"]
    );
    assert_eq!(
        learner.packet(packet(packet_type::COMMIT, make_zxid(2, 7))),
        Err(LearnerError::UnknownCommit(make_zxid(2, 7)))
    );
    learner.packet(packet(packet_type::PING, make_zxid(2, 2))).unwrap();
    learner.packet(packet(packet_type::SYNC, 0)).unwrap();
    let mut revalidate = BytesMut::new();
    revalidate.extend_from_slice(&0x0300_0000_0000_0001i64.to_be_bytes());
    revalidate.extend_from_slice(&[1]);
    learner
        .packet(QuorumPacket::with_data(
            packet_type::REVALIDATE,
            -1,
            revalidate.freeze(),
        ))
        .unwrap();
    assert_eq!(
        names(&learner.take_actions()),
        ["ping 0x200000002", "sync done", "revalidated 0x300000000000001 true"]
    );
}

#[test]
fn packets_out_of_place_or_unreadable_end_the_following() {
    let mut learner = Learner::new(start());
    learner.take_actions();
    assert_eq!(
        learner.packet(packet(packet_type::NEWLEADER, make_zxid(EPOCH, 0))),
        Err(LearnerError::Unexpected("NEWLEADER", "discovery"))
    );
    let mut learner = discovered();
    learner.packet(packet(packet_type::DIFF, make_zxid(1, 4))).unwrap();
    let bad = QuorumPacket::with_data(packet_type::PROPOSAL, 1, Bytes::from_static(b"\x00\x01"));
    assert!(matches!(
        learner.packet(bad),
        Err(LearnerError::Malformed("PROPOSAL", _))
    ));
    assert_eq!(
        learner.packet(packet(packet_type::COMMIT, 99)),
        Err(LearnerError::UnknownCommit(99))
    );
    assert!(learner.packet(packet(packet_type::REQUEST, -1)).is_err());
}

proptest::proptest! {
    /// Whatever a leader sends, in whatever order, the learner answers or refuses; it never
    /// panics (the connection is closed on an error, and the server looks again).
    #[test]
    fn arbitrary_packets_never_panic(packets in proptest::collection::vec((1..20i32, 0..4i64, proptest::prelude::any::<bool>()), 0..40)) {
        let mut learner = Learner::new(start());
        for (packet_type, counter, with_txn) in packets {
            let zxid = make_zxid(EPOCH, counter);
            let data = if with_txn { Some(txn_bytes(zxid)) } else { None };
            let packet = QuorumPacket { packet_type, zxid, data, authinfo: None };
            let snapshot = packet_type == packet_type::SNAP;
            if learner.packet(packet).is_err() {
                break;
            }
            if snapshot {
                learner.snapshot_loaded(zxid);
            }
            learner.persisted_through(zxid);
            learner.take_actions();
        }
    }
}
