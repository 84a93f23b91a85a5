//! A leader's side of Zab after the election (ZooKeeper's `Leader.lead`, `LearnerHandler.run`
//! and `syncFollower`; PROTOCOL.md §4.6-4.10) as a deterministic state machine: learners'
//! packets, ticks, proposals and "this much is on my disk" come in; packets to send and what to
//! persist, commit and hand to the request pipeline go out, in the order they must happen.
//!
//! Owns: the learner connections' protocol state (each gets a `LearnerId` from the driver), the
//! epoch being established, the outstanding proposals with their acks, the recent committed txns
//! used for DIFF syncs, and each learner's liveness deadline. Must not touch: sockets, disk, the
//! tree (a SNAP's stream is written by the driver from the tree's owner), clocks (time is
//! `tick` calls, two per `tickTime` as ZooKeeper's leader loop wakes).
//!
//! Phases, each needing a quorum of voters counting the leader itself:
//! 1. epoch: FOLLOWERINFO from a quorum fixes the new epoch (one more than any accepted epoch);
//!    it is persisted as the accepted epoch before any LEADERINFO reveals it;
//! 2. epoch acks: ACKEPOCH from a quorum (none ahead of the leader) makes it the current epoch;
//!    each learner is then synced (DIFF, TRUNC or SNAP, then NEWLEADER);
//! 3. NEWLEADER acks from a quorum: established; UPTODATE goes to every learner that acked, and
//!    proposals may begin.
//!
//! Each phase must finish within `initLimit` ticks of the start, or the leader abdicates.
//!
//! Invariants: commits go out in zxid order, each once a quorum (the leader's own ack comes from
//! its log) has acked it and every earlier proposal; a learner gets every proposal after its
//! sync point exactly once, in order; a learner silent for `syncLimit` ticks is dropped, and the
//! leader abdicates when the learners still heard from do not make a quorum with it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::proto::quorum::{packet_type, LearnerInfo, QuorumPacket, ZAB_PROTOCOL_VERSION};
use crate::zab::learner::{epoch_of, make_zxid};
use crate::zab::quorum::QuorumVerifier;

/// How many committed txns the leader keeps for DIFF syncs (`zookeeper.commitLogCount`).
pub const COMMIT_LOG_MAX: usize = 500;

/// A learner connection, named by the driver.
pub type LearnerId = u64;

/// What the new leader starts from.
#[derive(Clone, Debug)]
pub struct LeaderStart {
    /// This server's sid.
    pub my_sid: i64,
    /// The ensemble.
    pub verifier: QuorumVerifier,
    /// The `acceptedEpoch` file.
    pub accepted_epoch: i64,
    /// The `currentEpoch` file.
    pub current_epoch: i64,
    /// The last zxid in its log, which is also the last it applied.
    pub last_zxid: i64,
    /// Its most recent txns, oldest first, ending at `last_zxid` (log entry bodies), for DIFF
    /// syncs; at most `COMMIT_LOG_MAX` are kept.
    pub committed_log: Vec<(i64, Bytes)>,
    /// `initLimit` in ticks.
    pub init_limit_ticks: u64,
    /// `syncLimit` in ticks.
    pub sync_limit_ticks: u64,
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderAction {
    /// Write this packet to that learner.
    Send {
        /// The learner.
        to: LearnerId,
        /// The packet.
        packet: QuorumPacket,
    },
    /// Write a SNAP packet with this zxid to that learner, then the snapshot stream of the tree
    /// as of `zxid` (PROTOCOL.md §4.9).
    SendSnapshot {
        /// The learner.
        to: LearnerId,
        /// The last zxid the tree has applied.
        zxid: i64,
    },
    /// Close that learner's connection.
    Close {
        /// The learner.
        learner: LearnerId,
        /// Why, for the log.
        reason: String,
    },
    /// Durably record the accepted epoch before going on.
    PersistAcceptedEpoch(i64),
    /// Durably record the current epoch before going on.
    PersistCurrentEpoch(i64),
    /// A quorum acked NEWLEADER: start serving clients; proposals may begin.
    Established {
        /// The new epoch.
        epoch: i64,
    },
    /// The proposal with this zxid is committed: apply it.
    Commit(i64),
    /// Sessions a learner's clients touched, with their timeouts.
    Touch(Vec<(i64, i32)>),
    /// A client request a learner forwarded (REQUEST data: session, cxid, type, record).
    Request {
        /// The learner.
        from: LearnerId,
        /// Its sid.
        sid: i64,
        /// The REQUEST's data.
        data: Bytes,
        /// The client's auth ids.
        authinfo: Vec<crate::proto::Id>,
    },
    /// A learner asks whether a reconnecting session is valid; answer with `revalidated`.
    Revalidate {
        /// The learner.
        from: LearnerId,
        /// The session.
        session_id: i64,
        /// Its timeout.
        timeout_ms: i32,
    },
    /// Leading ended; the server goes back to looking.
    Abdicate {
        /// Why, for the log.
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LearnerPhase {
    /// Connected; waiting for FOLLOWERINFO.
    AwaitInfo,
    /// FOLLOWERINFO received; waiting for the epoch to be fixed.
    AwaitEpoch,
    /// LEADERINFO sent; waiting for ACKEPOCH.
    AwaitAckEpoch,
    /// ACKEPOCH received; waiting for a quorum of them (then synced).
    AwaitEpochQuorum { peer_last_zxid: i64 },
    /// Synced and NEWLEADER sent; waiting for its ACK.
    AwaitNewLeaderAck,
    /// NEWLEADER acked; waiting for the quorum (then UPTODATE).
    AwaitEstablished,
    /// UPTODATE sent.
    Broadcast,
}

#[derive(Clone, Debug)]
struct Learner {
    sid: Option<i64>,
    phase: LearnerPhase,
    accepted_epoch: i64,
    /// Gets new proposals and commits (from its sync on).
    forwarding: bool,
    /// The tick by which it must have sent something.
    deadline_tick: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Epoch,
    EpochAcks,
    NewLeaderAcks,
    Broadcast,
    Ended,
}

#[derive(Clone, Debug)]
struct Outstanding {
    entry: Bytes,
    acks: BTreeSet<i64>,
    /// Learners whose forwarded sync waits for this proposal's commit.
    syncs: Vec<LearnerId>,
}

/// One term of leading.
#[derive(Debug)]
pub struct Leader {
    start: LeaderStart,
    phase: Phase,
    half_ticks: u64,
    tick: u64,
    proposed_epoch: i64,
    epoch: i64,
    learners: BTreeMap<LearnerId, Learner>,
    /// Voters that sent FOLLOWERINFO, ACKEPOCH, or acked NEWLEADER (each with the leader).
    connecting: BTreeSet<i64>,
    electing: BTreeSet<i64>,
    newleader_acked: BTreeSet<i64>,
    committed_log: VecDeque<(i64, Bytes)>,
    last_committed: i64,
    last_proposed: i64,
    /// The leader's own log is durable through this zxid.
    persisted: i64,
    outstanding: BTreeMap<i64, Outstanding>,
    actions: Vec<LeaderAction>,
}

impl Leader {
    /// Starts leading: the epoch phase waits for FOLLOWERINFO from a quorum.
    pub fn new(start: LeaderStart) -> Leader {
        let mut committed_log: VecDeque<(i64, Bytes)> = start.committed_log.iter().cloned().collect();
        while committed_log.len() > COMMIT_LOG_MAX {
            committed_log.pop_front();
        }
        let mut leader = Leader {
            proposed_epoch: start.accepted_epoch + 1,
            epoch: 0,
            phase: Phase::Epoch,
            half_ticks: 0,
            tick: 0,
            learners: BTreeMap::new(),
            connecting: BTreeSet::from([start.my_sid]),
            electing: BTreeSet::from([start.my_sid]),
            newleader_acked: BTreeSet::from([start.my_sid]),
            committed_log,
            last_committed: start.last_zxid,
            last_proposed: start.last_zxid,
            persisted: start.last_zxid,
            outstanding: BTreeMap::new(),
            actions: Vec::new(),
            start,
        };
        // A one-member ensemble needs nobody else.
        leader.check_epoch_quorum();
        leader
    }

    /// The actions produced since the last call, in the order to perform them.
    pub fn take_actions(&mut self) -> Vec<LeaderAction> {
        std::mem::take(&mut self.actions)
    }

    /// The epoch, once fixed (0 before).
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Whether a quorum acked NEWLEADER and proposals may be made.
    pub fn is_established(&self) -> bool {
        self.phase == Phase::Broadcast
    }

    /// The Zab phase as `zabstate` names it.
    pub fn zab_state(&self) -> &'static str {
        match self.phase {
            Phase::Epoch | Phase::EpochAcks => "discovery",
            Phase::NewLeaderAcks => "synchronization",
            Phase::Broadcast | Phase::Ended => "broadcast",
        }
    }

    /// Sids of the learners in the broadcast phase, in order (`zk_synced_followers` counts the
    /// voters among them).
    pub fn synced_learners(&self) -> Vec<i64> {
        let mut sids: Vec<i64> = self
            .learners
            .values()
            .filter(|l| l.phase == LearnerPhase::Broadcast)
            .filter_map(|l| l.sid)
            .collect();
        sids.sort_unstable();
        sids
    }

    /// Learners connected, whatever their phase (`zk_learners`).
    pub fn learner_count(&self) -> usize {
        self.learners.len()
    }

    /// The last zxid proposed.
    pub fn last_proposed(&self) -> i64 {
        self.last_proposed
    }

    /// A connected learner's sid, once its FOLLOWERINFO said.
    pub fn learner_sid(&self, learner: LearnerId) -> Option<i64> {
        self.learners.get(&learner).and_then(|l| l.sid)
    }

    /// Forwarded syncs waiting for a proposal's commit.
    pub fn pending_syncs(&self) -> usize {
        self.outstanding.values().map(|o| o.syncs.len()).sum()
    }

    /// The last zxid committed.
    pub fn last_committed(&self) -> i64 {
        self.last_committed
    }

    /// The zxid the next proposal must carry.
    pub fn next_zxid(&self) -> i64 {
        if epoch_of(self.last_proposed) == self.epoch {
            self.last_proposed + 1
        } else {
            make_zxid(self.epoch, 1)
        }
    }

    /// A learner connected to the quorum port.
    pub fn connected(&mut self, learner: LearnerId) {
        let deadline_tick = self.tick + self.start.init_limit_ticks + self.start.sync_limit_ticks;
        let state = Learner {
            sid: None,
            phase: LearnerPhase::AwaitInfo,
            accepted_epoch: 0,
            forwarding: false,
            deadline_tick,
        };
        self.learners.insert(learner, state);
    }

    /// A learner's connection ended.
    pub fn disconnected(&mut self, learner: LearnerId) {
        self.learners.remove(&learner);
    }

    /// One packet from a learner. Protocol errors close that learner, not the leader.
    pub fn packet(&mut self, from: LearnerId, packet: QuorumPacket) {
        let Some(learner) = self.learners.get_mut(&from) else {
            return;
        };
        if learner.phase == LearnerPhase::Broadcast {
            learner.deadline_tick = self.tick + self.start.sync_limit_ticks;
        }
        let phase = learner.phase;
        let result = match (phase, packet.packet_type) {
            (LearnerPhase::AwaitInfo, packet_type::FOLLOWERINFO) => self.followerinfo(from, &packet),
            (LearnerPhase::AwaitAckEpoch, packet_type::ACKEPOCH) => self.ackepoch(from, &packet),
            (LearnerPhase::AwaitNewLeaderAck, packet_type::ACK) => self.newleader_ack(from, packet.zxid),
            (LearnerPhase::Broadcast | LearnerPhase::AwaitEstablished, packet_type::ACK) => {
                self.ack(from, packet.zxid);
                Ok(())
            }
            (_, packet_type::PING) => {
                self.touch(packet.data.as_deref().unwrap_or_default());
                Ok(())
            }
            (LearnerPhase::Broadcast, packet_type::REQUEST) => {
                let sid = self.learners.get(&from).and_then(|l| l.sid).unwrap_or(0);
                let data = packet.data.unwrap_or_default();
                let authinfo = packet.authinfo.unwrap_or_default();
                self.actions.push(LeaderAction::Request {
                    from,
                    sid,
                    data,
                    authinfo,
                });
                Ok(())
            }
            (LearnerPhase::Broadcast, packet_type::REVALIDATE) => {
                let mut data = packet.data.unwrap_or_default();
                if data.len() < 12 {
                    Err(format!("REVALIDATE with {} bytes", data.len()))
                } else {
                    let session_id = data.get_i64();
                    let timeout_ms = data.get_i32();
                    self.actions.push(LeaderAction::Revalidate {
                        from,
                        session_id,
                        timeout_ms,
                    });
                    Ok(())
                }
            }
            (phase, other) => Err(format!("unexpected {} in {phase:?}", packet_type::name(other))),
        };
        if let Err(reason) = result {
            self.close(from, reason);
        }
    }

    /// The leader's own log is durable through `zxid`: its own ack.
    pub fn persisted_through(&mut self, zxid: i64) {
        self.persisted = self.persisted.max(zxid);
        let me = self.start.my_sid;
        let zxids: Vec<i64> = self.outstanding.range(..=zxid).map(|(&z, _)| z).collect();
        for z in zxids {
            if let Some(o) = self.outstanding.get_mut(&z) {
                o.acks.insert(me);
            }
        }
        self.try_commit();
    }

    /// Proposes a txn (a log entry body with the zxid `next_zxid` gave): sent to every forwarding
    /// learner; the caller logs it and reports `persisted_through`. Only once established.
    pub fn propose(&mut self, zxid: i64, entry: Bytes) {
        assert!(self.is_established(), "proposal before the leader is established");
        assert_eq!(zxid, self.next_zxid(), "proposals carry consecutive zxids");
        self.last_proposed = zxid;
        let packet = QuorumPacket::with_data(packet_type::PROPOSAL, zxid, entry.clone());
        self.send_to_forwarding(&packet);
        self.outstanding.insert(
            zxid,
            Outstanding {
                entry,
                acks: BTreeSet::new(),
                syncs: Vec::new(),
            },
        );
        if self.persisted >= zxid {
            self.persisted_through(zxid);
        }
    }

    /// A learner's forwarded sync: answered once every proposal outstanding now is committed.
    pub fn sync(&mut self, learner: LearnerId) {
        match self.outstanding.values_mut().next_back() {
            Some(last) => last.syncs.push(learner),
            None => self.send(learner, QuorumPacket::new(packet_type::SYNC, 0)),
        }
    }

    /// Answers a learner's REVALIDATE (and makes it the session's owner).
    pub fn revalidated(&mut self, learner: LearnerId, session_id: i64, valid: bool) {
        let mut data = BytesMut::with_capacity(9);
        data.put_i64(session_id);
        data.put_u8(valid as u8);
        self.send(
            learner,
            QuorumPacket::with_data(packet_type::REVALIDATE, -1, data.freeze()),
        );
    }

    /// Half a tick passed (ZooKeeper's leader wakes every `tickTime / 2`): pings every learner,
    /// drops the silent ones, and abdicates when a phase overran `initLimit` or the learners
    /// heard from no longer make a quorum.
    pub fn half_tick(&mut self) {
        if self.phase == Phase::Ended {
            return;
        }
        self.half_ticks += 1;
        if self.half_ticks % 2 == 0 {
            self.tick += 1;
        }
        if self.phase != Phase::Broadcast {
            if self.tick > self.start.init_limit_ticks {
                let what = match self.phase {
                    Phase::Epoch => "the epoch from a quorum",
                    Phase::EpochAcks => "epoch acks from a quorum",
                    _ => "NEWLEADER acks from a quorum",
                };
                self.abdicate(format!("timeout while waiting for {what}"));
            }
            return;
        }
        let late: Vec<LearnerId> = self
            .learners
            .iter()
            .filter(|(_, l)| l.deadline_tick < self.tick)
            .map(|(&id, _)| id)
            .collect();
        for learner in late {
            self.close(learner, "no packet within syncLimit".to_string());
        }
        let mut synced: BTreeSet<i64> = self.synced_learners().into_iter().collect();
        synced.insert(self.start.my_sid);
        if !self.start.verifier.contains_quorum(&synced) {
            self.abdicate(format!(
                "not sufficient followers synced, only synced with sids: {synced:?}"
            ));
            return;
        }
        let ping = QuorumPacket::new(packet_type::PING, self.last_proposed);
        let ids: Vec<LearnerId> = self.learners.keys().copied().collect();
        for id in ids {
            self.send(id, ping.clone());
        }
    }

    fn send(&mut self, to: LearnerId, packet: QuorumPacket) {
        self.actions.push(LeaderAction::Send { to, packet });
    }

    fn send_to_forwarding(&mut self, packet: &QuorumPacket) {
        let ids: Vec<LearnerId> = self
            .learners
            .iter()
            .filter(|(_, l)| l.forwarding)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.send(id, packet.clone());
        }
    }

    fn close(&mut self, learner: LearnerId, reason: String) {
        if self.learners.remove(&learner).is_some() {
            self.actions.push(LeaderAction::Close { learner, reason });
        }
    }

    fn abdicate(&mut self, reason: String) {
        self.phase = Phase::Ended;
        self.actions.push(LeaderAction::Abdicate { reason });
    }

    fn is_voter(&self, sid: i64) -> bool {
        self.start.verifier.is_voter(sid)
    }

    fn followerinfo(&mut self, from: LearnerId, packet: &QuorumPacket) -> Result<(), String> {
        let info = LearnerInfo::decode(packet.data.as_deref().unwrap_or_default()).map_err(|e| e.to_string())?;
        if info.protocol_version < ZAB_PROTOCOL_VERSION {
            return Err(format!(
                "learner protocol version 0x{:x} predates 3.4",
                info.protocol_version
            ));
        }
        if info.config_version > self.start.verifier.version() {
            return Err("learner has a newer config".to_string());
        }
        if self.learners.values().any(|l| l.sid == Some(info.server_id)) {
            // A reconnect: the old connection is stale.
            let stale: Vec<LearnerId> = self
                .learners
                .iter()
                .filter(|(_, l)| l.sid == Some(info.server_id))
                .map(|(&id, _)| id)
                .collect();
            for id in stale {
                self.close(id, "replaced by a new connection from the same server".to_string());
            }
        }
        let accepted_epoch = epoch_of(packet.zxid);
        let Some(learner) = self.learners.get_mut(&from) else {
            return Ok(());
        };
        learner.sid = Some(info.server_id);
        learner.accepted_epoch = accepted_epoch;
        learner.phase = LearnerPhase::AwaitEpoch;
        if self.phase == Phase::Epoch {
            if self.is_voter(info.server_id) {
                self.connecting.insert(info.server_id);
                self.proposed_epoch = self.proposed_epoch.max(accepted_epoch + 1);
            }
            self.check_epoch_quorum();
        } else {
            self.send_leaderinfo(from);
        }
        Ok(())
    }

    fn check_epoch_quorum(&mut self) {
        if self.phase != Phase::Epoch || !self.start.verifier.contains_quorum(&self.connecting) {
            return;
        }
        self.epoch = self.proposed_epoch;
        self.phase = Phase::EpochAcks;
        self.actions.push(LeaderAction::PersistAcceptedEpoch(self.epoch));
        let waiting: Vec<LearnerId> = self
            .learners
            .iter()
            .filter(|(_, l)| l.phase == LearnerPhase::AwaitEpoch)
            .map(|(&id, _)| id)
            .collect();
        for id in waiting {
            self.send_leaderinfo(id);
        }
        self.check_epoch_ack_quorum();
    }

    fn send_leaderinfo(&mut self, to: LearnerId) {
        let mut data = BytesMut::with_capacity(4);
        data.put_i32(ZAB_PROTOCOL_VERSION);
        self.send(
            to,
            QuorumPacket::with_data(packet_type::LEADERINFO, make_zxid(self.epoch, 0), data.freeze()),
        );
        if let Some(learner) = self.learners.get_mut(&to) {
            learner.phase = LearnerPhase::AwaitAckEpoch;
        }
    }

    fn ackepoch(&mut self, from: LearnerId, packet: &QuorumPacket) -> Result<(), String> {
        let data = packet.data.as_deref().unwrap_or_default();
        if data.len() < 4 {
            return Err(format!("ACKEPOCH with {} bytes", data.len()));
        }
        let current_epoch = i32::from_be_bytes(data[..4].try_into().expect("4 bytes")) as i64;
        let peer_last_zxid = packet.zxid;
        let sid = self.learners.get(&from).and_then(|l| l.sid).unwrap_or(0);
        if current_epoch != -1 {
            // `StateSummary.isMoreRecentThan`: a learner ahead of the leader cannot follow it.
            let leader_state = (self.start.current_epoch, self.start.last_zxid);
            if (current_epoch, peer_last_zxid) > leader_state {
                return Err(format!(
                    "follower is ahead of the leader: epoch {current_epoch}, zxid 0x{peer_last_zxid:x}"
                ));
            }
            if self.phase == Phase::EpochAcks && self.is_voter(sid) {
                self.electing.insert(sid);
            }
        }
        if let Some(learner) = self.learners.get_mut(&from) {
            learner.phase = LearnerPhase::AwaitEpochQuorum { peer_last_zxid };
        }
        if self.phase == Phase::EpochAcks {
            self.check_epoch_ack_quorum();
        } else {
            self.sync_learner(from, peer_last_zxid);
        }
        Ok(())
    }

    fn check_epoch_ack_quorum(&mut self) {
        if self.phase != Phase::EpochAcks || !self.start.verifier.contains_quorum(&self.electing) {
            return;
        }
        self.phase = Phase::NewLeaderAcks;
        self.actions.push(LeaderAction::PersistCurrentEpoch(self.epoch));
        let waiting: Vec<(LearnerId, i64)> = self
            .learners
            .iter()
            .filter_map(|(&id, l)| match l.phase {
                LearnerPhase::AwaitEpochQuorum { peer_last_zxid } => Some((id, peer_last_zxid)),
                _ => None,
            })
            .collect();
        for (id, peer_last_zxid) in waiting {
            self.sync_learner(id, peer_last_zxid);
        }
        self.check_newleader_quorum();
    }

    /// `LearnerHandler.syncFollower` and `queueCommittedProposals`: DIFF, TRUNC or SNAP, the txns
    /// the learner lacks, the proposals outstanding, then NEWLEADER.
    fn sync_learner(&mut self, to: LearnerId, peer_last_zxid: i64) {
        let last_processed = self.last_committed;
        let (min_committed, max_committed) = match (self.committed_log.front(), self.committed_log.back()) {
            (Some(first), Some(last)) => (first.0, last.0),
            _ => (last_processed, last_processed),
        };
        let new_epoch_zxid = peer_last_zxid & 0xffff_ffff == 0;
        let mut packets: Vec<QuorumPacket> = Vec::new();
        let mut snapshot = false;
        if peer_last_zxid == last_processed {
            packets.push(QuorumPacket::new(packet_type::DIFF, peer_last_zxid));
        } else if peer_last_zxid > max_committed && !new_epoch_zxid {
            packets.push(QuorumPacket::new(packet_type::TRUNC, max_committed));
        } else if min_committed <= peer_last_zxid && peer_last_zxid <= max_committed {
            match self.diff_from_log(peer_last_zxid, max_committed) {
                Some(diff) => packets = diff,
                None => snapshot = true,
            }
        } else {
            snapshot = true;
        }
        if snapshot {
            self.actions.push(LeaderAction::SendSnapshot {
                to,
                zxid: last_processed,
            });
        }
        for packet in packets {
            self.send(to, packet);
        }
        // Outstanding proposals, then everything proposed from now on.
        let outstanding: Vec<QuorumPacket> = self
            .outstanding
            .iter()
            .map(|(&zxid, o)| QuorumPacket::with_data(packet_type::PROPOSAL, zxid, o.entry.clone()))
            .collect();
        for packet in outstanding {
            self.send(to, packet);
        }
        let config = Bytes::from(self.start.verifier.config_string());
        self.send(
            to,
            QuorumPacket::with_data(packet_type::NEWLEADER, make_zxid(self.epoch, 0), config),
        );
        if let Some(learner) = self.learners.get_mut(&to) {
            learner.forwarding = true;
            learner.phase = LearnerPhase::AwaitNewLeaderAck;
        }
    }

    /// The DIFF (or TRUNC) from the committed log for a learner at `peer_last_zxid`, or `None`
    /// when only a snapshot will do (its zxid is of another epoch than the leader's next txn).
    fn diff_from_log(&self, peer_last_zxid: i64, max_committed: i64) -> Option<Vec<QuorumPacket>> {
        let new_epoch_zxid = peer_last_zxid & 0xffff_ffff == 0;
        let mut packets = Vec::new();
        let mut need_op = true;
        let mut previous = -1;
        for (zxid, entry) in &self.committed_log {
            let zxid = *zxid;
            if zxid < peer_last_zxid {
                previous = zxid;
                continue;
            }
            if need_op {
                if zxid == peer_last_zxid {
                    packets.push(QuorumPacket::new(packet_type::DIFF, max_committed));
                    need_op = false;
                    continue;
                }
                if new_epoch_zxid {
                    packets.push(QuorumPacket::new(packet_type::DIFF, max_committed));
                } else {
                    if epoch_of(zxid) != epoch_of(peer_last_zxid) {
                        return None;
                    }
                    packets.push(QuorumPacket::new(packet_type::TRUNC, previous));
                }
                need_op = false;
            }
            packets.push(QuorumPacket::with_data(packet_type::PROPOSAL, zxid, entry.clone()));
            packets.push(QuorumPacket::new(packet_type::COMMIT, zxid));
        }
        if need_op && new_epoch_zxid {
            packets.insert(0, QuorumPacket::new(packet_type::DIFF, max_committed));
            need_op = false;
        }
        (!need_op).then_some(packets)
    }

    fn newleader_ack(&mut self, from: LearnerId, zxid: i64) -> Result<(), String> {
        if zxid != make_zxid(self.epoch, 0) {
            return Err(format!("NEWLEADER ack for 0x{zxid:x}, the new epoch is {}", self.epoch));
        }
        let sid = self.learners.get(&from).and_then(|l| l.sid).unwrap_or(0);
        if let Some(learner) = self.learners.get_mut(&from) {
            learner.phase = LearnerPhase::AwaitEstablished;
        }
        if self.phase == Phase::NewLeaderAcks {
            if self.is_voter(sid) {
                self.newleader_acked.insert(sid);
            }
            self.check_newleader_quorum();
        } else if self.phase == Phase::Broadcast {
            self.uptodate(from);
        }
        Ok(())
    }

    fn check_newleader_quorum(&mut self) {
        if self.phase != Phase::NewLeaderAcks || !self.start.verifier.contains_quorum(&self.newleader_acked) {
            return;
        }
        self.phase = Phase::Broadcast;
        self.actions.push(LeaderAction::Established { epoch: self.epoch });
        let ready: Vec<LearnerId> = self
            .learners
            .iter()
            .filter(|(_, l)| l.phase == LearnerPhase::AwaitEstablished)
            .map(|(&id, _)| id)
            .collect();
        for id in ready {
            self.uptodate(id);
        }
    }

    fn uptodate(&mut self, to: LearnerId) {
        self.send(to, QuorumPacket::new(packet_type::UPTODATE, -1));
        let tick = self.tick + self.start.sync_limit_ticks;
        if let Some(learner) = self.learners.get_mut(&to) {
            learner.phase = LearnerPhase::Broadcast;
            learner.deadline_tick = tick;
        }
    }

    fn ack(&mut self, from: LearnerId, zxid: i64) {
        // The epoch ack after UPTODATE (counter 0) and acks of committed proposals are ignored.
        let Some(sid) = self.learners.get(&from).and_then(|l| l.sid) else {
            return;
        };
        if !self.is_voter(sid) {
            return;
        }
        if let Some(o) = self.outstanding.get_mut(&zxid) {
            o.acks.insert(sid);
            self.try_commit();
        }
    }

    fn try_commit(&mut self) {
        while let Some((&zxid, first)) = self.outstanding.iter().next() {
            if !self.start.verifier.contains_quorum(&first.acks) {
                break;
            }
            let Some(o) = self.outstanding.remove(&zxid) else { break };
            self.last_committed = zxid;
            self.send_to_forwarding(&QuorumPacket::new(packet_type::COMMIT, zxid));
            self.actions.push(LeaderAction::Commit(zxid));
            self.committed_log.push_back((zxid, o.entry));
            if self.committed_log.len() > COMMIT_LOG_MAX {
                self.committed_log.pop_front();
            }
            for learner in o.syncs {
                self.send(learner, QuorumPacket::new(packet_type::SYNC, 0));
            }
        }
    }

    fn touch(&mut self, mut data: &[u8]) {
        let mut touched = Vec::with_capacity(data.len() / 12);
        while data.len() >= 12 {
            touched.push((data.get_i64(), data.get_i32()));
        }
        if !touched.is_empty() {
            self.actions.push(LeaderAction::Touch(touched));
        }
    }
}

#[cfg(test)]
mod tests;
