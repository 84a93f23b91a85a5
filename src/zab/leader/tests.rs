//! The leader state machine against in-memory followers that run the real `Learner` state
//! machine: whatever one sends, the other reads, in order.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::zab::learner::tests::txn_bytes;
use crate::zab::learner::{Learner, LearnerAction, LearnerStart};
use crate::zab::quorum::tests::member;

fn verifier(count: i64) -> QuorumVerifier {
    QuorumVerifier::majority((1..=count).map(|sid| member(sid, true)), 0)
}

fn entry(zxid: i64) -> Bytes {
    txn_bytes(zxid)
}

fn start(last_zxid: i64, committed: &[i64]) -> LeaderStart {
    LeaderStart {
        my_sid: 3,
        verifier: verifier(3),
        accepted_epoch: epoch_of(last_zxid),
        current_epoch: epoch_of(last_zxid),
        last_zxid,
        committed_log: committed.iter().map(|&z| (z, entry(z))).collect(),
        init_limit_ticks: 10,
        sync_limit_ticks: 5,
    }
}

/// A follower as the leader sees it: the real learner and what its store would hold.
struct Follower {
    learner: Learner,
    logged: Vec<i64>,
    committed: Vec<i64>,
    synced_by: Vec<String>,
    serving: bool,
    closed: bool,
}

struct Ensemble {
    leader: Leader,
    followers: BTreeMap<LearnerId, Follower>,
    leader_log: Vec<String>,
}

impl Ensemble {
    fn new(start: LeaderStart) -> Ensemble {
        Ensemble {
            leader: Leader::new(start),
            followers: BTreeMap::new(),
            leader_log: Vec::new(),
        }
    }

    /// Connects a follower with sid `sid` (its learner id is the sid) at that state.
    fn join(&mut self, sid: i64, accepted_epoch: i64, current_epoch: i64, last_logged_zxid: i64) {
        let learner = Learner::new(LearnerStart {
            my_sid: sid,
            config_version: 0,
            accepted_epoch,
            current_epoch,
            last_logged_zxid,
        });
        let id = sid as LearnerId;
        self.followers.insert(
            id,
            Follower {
                learner,
                logged: Vec::new(),
                committed: Vec::new(),
                synced_by: Vec::new(),
                serving: false,
                closed: false,
            },
        );
        self.leader.connected(id);
        self.run();
    }

    /// Moves packets both ways until nothing is left to do.
    fn run(&mut self) {
        for _ in 0..1000 {
            let mut progress = false;
            for action in self.leader.take_actions() {
                progress = true;
                match action {
                    LeaderAction::Send { to, packet } => self.deliver_to_follower(to, packet),
                    LeaderAction::SendSnapshot { to, zxid } => {
                        self.deliver_to_follower(to, QuorumPacket::new(packet_type::SNAP, zxid));
                        if let Some(f) = self.followers.get_mut(&to) {
                            if !f.closed {
                                f.learner.snapshot_loaded(zxid);
                            }
                        }
                    }
                    LeaderAction::Close { learner, .. } => {
                        self.followers.get_mut(&learner).unwrap().closed = true;
                        self.leader_log.push(format!("closed {learner}"));
                    }
                    LeaderAction::PersistAcceptedEpoch(e) => self.leader_log.push(format!("accepted epoch {e}")),
                    LeaderAction::PersistCurrentEpoch(e) => self.leader_log.push(format!("current epoch {e}")),
                    LeaderAction::Established { epoch } => self.leader_log.push(format!("established {epoch}")),
                    LeaderAction::Commit(z) => self.leader_log.push(format!("commit 0x{z:x}")),
                    LeaderAction::Abdicate { reason } => self.leader_log.push(format!("abdicate: {reason}")),
                    other => self.leader_log.push(format!("{other:?}")),
                }
            }
            let ids: Vec<LearnerId> = self.followers.keys().copied().collect();
            for id in ids {
                let f = self.followers.get_mut(&id).unwrap();
                if f.closed {
                    continue;
                }
                let mut last_logged = None;
                for action in f.learner.take_actions() {
                    progress = true;
                    match action {
                        LearnerAction::Send(packet) => self.leader.packet(id, packet),
                        LearnerAction::Log(p) => {
                            f.logged.push(p.zxid());
                            last_logged = Some(p.zxid());
                        }
                        LearnerAction::Commit(z) => f.committed.push(z),
                        LearnerAction::LoadSnapshot { .. } => f.synced_by.push("SNAP".into()),
                        LearnerAction::Truncate { zxid } => f.synced_by.push(format!("TRUNC 0x{zxid:x}")),
                        LearnerAction::ApplyUnlogged(p) => f.committed.push(p.zxid()),
                        LearnerAction::Serving { .. } => f.serving = true,
                        _ => {}
                    }
                }
                if let Some(z) = last_logged {
                    f.learner.persisted_through(z);
                    progress = true;
                }
                if f.synced_by.is_empty() {
                    if let Some(mode) = f.learner.sync_mode() {
                        f.synced_by.push(mode.as_str().to_string());
                    }
                }
            }
            if !progress {
                return;
            }
        }
        panic!("the ensemble never settles");
    }

    fn deliver_to_follower(&mut self, to: LearnerId, packet: QuorumPacket) {
        let Some(f) = self.followers.get_mut(&to) else { return };
        if f.closed {
            return;
        }
        if let Err(e) = f.learner.packet(packet) {
            panic!("follower {to} refused a packet: {e}");
        }
    }

    fn propose(&mut self, count: usize) -> Vec<i64> {
        let mut zxids = Vec::new();
        for _ in 0..count {
            let zxid = self.leader.next_zxid();
            self.leader.propose(zxid, entry(zxid));
            self.leader.persisted_through(zxid);
            zxids.push(zxid);
        }
        self.run();
        zxids
    }
}

#[test]
fn a_fresh_ensemble_fixes_epoch_one_syncs_by_diff_and_commits_with_a_quorum() {
    let mut ensemble = Ensemble::new(start(0, &[]));
    assert_eq!(ensemble.leader.zab_state(), "discovery");
    // One follower with the leader is two of three: a quorum for every phase at once.
    ensemble.join(1, 0, 0, 0);
    assert_eq!(ensemble.leader.epoch(), 1);
    assert_eq!(
        ensemble.leader_log,
        ["accepted epoch 1", "current epoch 1", "established 1"]
    );
    // A second follower joins the established leader and is synced the same way.
    ensemble.join(2, 0, 0, 0);
    assert_eq!(ensemble.leader_log.len(), 3);
    for f in ensemble.followers.values() {
        assert!(f.serving && f.synced_by == ["DIFF"], "{:?}", f.synced_by);
    }
    let zxids = ensemble.propose(3);
    assert_eq!(zxids, [0x1_0000_0001, 0x1_0000_0002, 0x1_0000_0003]);
    assert_eq!(
        &ensemble.leader_log[3..],
        ["commit 0x100000001", "commit 0x100000002", "commit 0x100000003"]
    );
    for f in ensemble.followers.values() {
        assert_eq!((&f.logged, &f.committed), (&zxids, &zxids));
    }
    assert_eq!(ensemble.leader.synced_learners(), [1, 2]);
}

#[test]
fn the_epoch_is_one_more_than_any_accepted_and_a_follower_ahead_is_refused() {
    let mut ensemble = Ensemble::new(start(0x2_0000_0005, &[0x2_0000_0004, 0x2_0000_0005]));
    ensemble.join(1, 6, 2, 0x2_0000_0005);
    assert_eq!(ensemble.leader.epoch(), 7, "follower 1 had accepted epoch 6");
    assert!(ensemble.followers[&1].serving);
    let mut ahead = Ensemble::new(start(0x2_0000_0005, &[0x2_0000_0005]));
    ahead.join(1, 2, 3, 0x3_0000_0001);
    assert!(ahead.followers[&1].closed, "{:?}", ahead.leader_log);
}

#[test]
fn a_late_follower_gets_the_txns_it_missed_then_the_proposals_after() {
    let mut ensemble = Ensemble::new(start(0, &[]));
    ensemble.join(1, 0, 0, 0);
    let first = ensemble.propose(2);
    // Follower 2 was at the first txn: a DIFF from there, then the rest as proposal + commit.
    ensemble.join(2, 1, 1, first[0]);
    let f = &ensemble.followers[&2];
    assert!(f.serving);
    assert_eq!(
        (f.synced_by.as_slice(), f.logged.as_slice(), f.committed.as_slice()),
        (&["DIFF".to_string()][..], &first[1..], &first[1..])
    );
    let more = ensemble.propose(1);
    assert_eq!(ensemble.followers[&2].committed.last(), more.last());
}

#[test]
fn a_follower_ahead_in_an_old_epoch_is_truncated_and_one_too_far_behind_gets_a_snapshot() {
    // Leader's history ends at 0x100000003; follower 1 logged two more txns of epoch 1 that were
    // never committed; the leader has since established epoch 2 (with no txns yet).
    let leader_start = LeaderStart {
        accepted_epoch: 2,
        current_epoch: 2,
        ..start(0x1_0000_0003, &[0x1_0000_0002, 0x1_0000_0003])
    };
    let mut ensemble = Ensemble::new(leader_start);
    ensemble.join(1, 1, 1, 0x1_0000_0005);
    assert_eq!(ensemble.followers[&1].synced_by, ["TRUNC 0x100000003"]);
    // Follower 2 is older than the kept log: only a snapshot will do.
    ensemble.join(2, 1, 1, 0x1_0000_0001);
    assert_eq!(ensemble.followers[&2].synced_by, ["SNAP"]);
    assert!(ensemble.followers.values().all(|f| f.serving));
}

#[test]
fn a_commit_waits_for_a_quorum_of_acks_in_zxid_order() {
    let mut ensemble = Ensemble::new(start(0, &[]));
    ensemble.join(1, 0, 0, 0);
    ensemble.join(2, 0, 0, 0);
    // The leader's own disk is slow: followers' acks alone (2 of 3) commit.
    let zxid = ensemble.leader.next_zxid();
    ensemble.leader.propose(zxid, entry(zxid));
    ensemble.run();
    assert!(ensemble.leader_log.contains(&format!("commit 0x{zxid:x}")));
    // With follower 2 gone, a proposal needs the leader's own ack as well.
    ensemble.followers.get_mut(&2).unwrap().closed = true;
    let next = ensemble.leader.next_zxid();
    ensemble.leader.propose(next, entry(next));
    ensemble.run();
    assert!(!ensemble.leader_log.contains(&format!("commit 0x{next:x}")));
    ensemble.leader.persisted_through(next);
    ensemble.run();
    assert!(ensemble.leader_log.contains(&format!("commit 0x{next:x}")));
}

#[test]
fn a_forwarded_sync_is_answered_after_the_outstanding_proposals_commit() {
    let mut ensemble = Ensemble::new(start(0, &[]));
    ensemble.join(1, 0, 0, 0);
    ensemble.leader.sync(1);
    let actions = ensemble.leader.take_actions();
    assert!(matches!(&actions[..], [LeaderAction::Send { to: 1, packet }] if packet.packet_type == packet_type::SYNC));
    let zxid = ensemble.leader.next_zxid();
    ensemble.leader.propose(zxid, entry(zxid));
    ensemble.leader.sync(1);
    let sent = |actions: Vec<LeaderAction>| -> Vec<&'static str> {
        actions
            .iter()
            .filter_map(|a| match a {
                LeaderAction::Send { packet, .. } => Some(packet_type::name(packet.packet_type)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        sent(ensemble.leader.take_actions()),
        ["PROPOSAL"],
        "no SYNC before the commit"
    );
    ensemble.leader.persisted_through(zxid);
    assert!(
        sent(ensemble.leader.take_actions()).is_empty(),
        "the leader's own ack is one of two needed"
    );
    ensemble.leader.packet(1, QuorumPacket::new(packet_type::ACK, zxid));
    assert_eq!(sent(ensemble.leader.take_actions()), ["COMMIT", "SYNC"]);
}

#[test]
fn the_leader_abdicates_without_a_quorum_in_time_or_when_followers_fall_silent() {
    let mut alone = Ensemble::new(start(0, &[]));
    for _ in 0..(2 * 11) {
        alone.leader.half_tick();
    }
    alone.run();
    assert!(
        alone
            .leader_log
            .iter()
            .any(|l| l.starts_with("abdicate: timeout while waiting for the epoch")),
        "{:?}",
        alone.leader_log
    );

    let mut ensemble = Ensemble::new(start(0, &[]));
    ensemble.join(1, 0, 0, 0);
    ensemble.join(2, 0, 0, 0);
    // Pings every half tick; follower 1 stops answering, follower 2 keeps answering.
    for _ in 0..(2 * 6) {
        ensemble.leader.half_tick();
        let actions = ensemble.leader.take_actions();
        for action in actions {
            if let LeaderAction::Send { to: 2, packet } = action {
                ensemble.leader.packet(2, packet);
            } else if let LeaderAction::Close { learner, .. } = action {
                ensemble.leader_log.push(format!("closed {learner}"));
            }
        }
    }
    assert!(
        ensemble.leader_log.contains(&"closed 1".to_string()),
        "{:?}",
        ensemble.leader_log
    );
    assert_eq!(ensemble.leader.synced_learners(), [2]);
    // Then 2 falls silent too: the leader alone is no quorum.
    for _ in 0..(2 * 6) {
        ensemble.leader.half_tick();
    }
    assert!(ensemble
        .leader
        .take_actions()
        .iter()
        .any(|a| matches!(a, LeaderAction::Abdicate { .. })));
}

#[test]
fn pings_carry_session_touches_and_requests_are_handed_on() {
    let mut ensemble = Ensemble::new(start(0, &[]));
    ensemble.join(1, 0, 0, 0);
    let mut touches = BytesMut::new();
    touches.extend_from_slice(&0x0100_0000_0000_0001i64.to_be_bytes());
    touches.extend_from_slice(&30_000i32.to_be_bytes());
    ensemble
        .leader
        .packet(1, QuorumPacket::with_data(packet_type::PING, 0, touches.freeze()));
    let request = QuorumPacket {
        packet_type: packet_type::REQUEST,
        zxid: -1,
        data: Some(Bytes::from_static(b"head+record")),
        authinfo: Some(vec![]),
    };
    ensemble.leader.packet(1, request);
    let actions = ensemble.leader.take_actions();
    assert_eq!(actions[0], LeaderAction::Touch(vec![(0x0100_0000_0000_0001, 30_000)]));
    assert!(matches!(&actions[1], LeaderAction::Request { from: 1, sid: 1, data, .. } if &data[..] == b"head+record"));
}

proptest::proptest! {
    /// Whatever learners send, the leader closes them or goes on; it never panics.
    #[test]
    fn arbitrary_learner_packets_never_panic(
        packets in proptest::collection::vec((1..4u64, 1..20i32, 0..3i64, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24)), 0..60)
    ) {
        let mut leader = Leader::new(start(0, &[]));
        for id in 1..4 {
            leader.connected(id);
        }
        for (id, packet_type, epoch, data) in packets {
            let packet = QuorumPacket { packet_type, zxid: make_zxid(epoch, 0), data: Some(Bytes::from(data)), authinfo: None };
            leader.packet(id, packet);
            leader.half_tick();
            leader.take_actions();
        }
    }
}
