//! A follower's side of Zab after the election (ZooKeeper's `Learner.registerWithLeader`,
//! `Learner.syncWithLeader` and `Follower.processPacket`; PROTOCOL.md §4.6-4.10), as a
//! deterministic state machine: packets from the leader and "this much is on disk" come in;
//! packets to send, and what to log, apply, snapshot or truncate, go out in the order they must
//! happen.
//!
//! Owns: the phase of this follower's connection to its leader (discovery, synchronization,
//! broadcast), the proposals received but not yet committed, and which acknowledgements wait for
//! the disk. Must not touch: sockets or files (the driver does what the actions say, in order),
//! the tree (commits are applied by whoever owns it), clocks.
//!
//! Durability, as ZooKeeper orders it and as principle 3 of STYLE.md demands: a new accepted
//! epoch is persisted before the ACKEPOCH that reveals it (`PersistAcceptedEpoch` comes before
//! that `Send`, and the driver performs actions in order); the NEWLEADER ack waits until the
//! synced state is on disk (`TakeSnapshot`, the current epoch, and every proposal received during
//! sync); a proposal is acked only once `persisted_through` says it is logged.
//!
//! Invariants: proposals are logged in zxid order and acked in that order, each once it is on
//! disk; commits are delivered in zxid order, each naming a proposal this follower logged;
//! nothing is acked before the NEWLEADER ack.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use crate::proto::quorum::{packet_type, LearnerInfo, QuorumPacket, ZAB_PROTOCOL_VERSION};
use crate::proto::txn::{decode_entry, Txn, TxnDigest};

/// The epoch of a zxid (its high 32 bits).
pub fn epoch_of(zxid: i64) -> i64 {
    zxid >> 32
}

/// The zxid `counter` of `epoch`.
pub fn make_zxid(epoch: i64, counter: i64) -> i64 {
    (epoch << 32) | (counter & 0xffff_ffff)
}

/// What this follower knows of itself when it connects to the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnerStart {
    /// This server's sid.
    pub my_sid: i64,
    /// The config version it has (`QuorumVerifier.getVersion`, 0 for a static config).
    pub config_version: i64,
    /// The `acceptedEpoch` file.
    pub accepted_epoch: i64,
    /// The `currentEpoch` file.
    pub current_epoch: i64,
    /// The highest zxid in its log.
    pub last_logged_zxid: i64,
}

/// How the leader brings this follower up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Only the txns it lacks follow.
    Diff,
    /// A whole snapshot follows.
    Snap,
    /// Its log is cut back first, then txns follow.
    Trunc,
}

impl SyncMode {
    /// The name ZooKeeper reports (`QuorumPeer.SyncMode`).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Diff => "DIFF",
            SyncMode::Snap => "SNAP",
            SyncMode::Trunc => "TRUNC",
        }
    }
}

/// A proposal: the txn, with the digest the leader computed, and the bytes it came as (which are
/// exactly a log entry body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The decoded txn.
    pub txn: Txn,
    /// The leader's tree digest after it, when digests are on.
    pub digest: Option<TxnDigest>,
    /// The PROPOSAL's data.
    pub bytes: Bytes,
}

impl Proposal {
    /// Its zxid.
    pub fn zxid(&self) -> i64 {
        self.txn.header.zxid
    }
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LearnerAction {
    /// Write this packet to the leader.
    Send(QuorumPacket),
    /// Write the `acceptedEpoch` file, durably, before going on.
    PersistAcceptedEpoch(i64),
    /// Write the `currentEpoch` file, durably, before going on.
    PersistCurrentEpoch(i64),
    /// A snapshot stream follows the SNAP packet on the leader's stream: read it, make it this
    /// server's whole state as of `zxid` (replacing tree and sessions, dropping the log after it),
    /// and call `snapshot_loaded`.
    LoadSnapshot {
        /// The leader's last processed zxid, which the snapshot is as of.
        zxid: i64,
    },
    /// Drop every logged txn after `zxid` and rebuild the state as of `zxid`.
    Truncate {
        /// The last zxid to keep.
        zxid: i64,
    },
    /// Apply this txn now; during a SNAP or TRUNC sync it is not logged, the snapshot taken at
    /// NEWLEADER holds it.
    ApplyUnlogged(Box<Proposal>),
    /// Make the state as synced so far durable (a snapshot of the tree and sessions) before going on.
    TakeSnapshot,
    /// Append this proposal to the log; `persisted_through` reports when it is durable.
    Log(Box<Proposal>),
    /// The logged proposal with this zxid is committed: apply it.
    Commit(i64),
    /// Answer the leader's ping (zxid echoed) with the sessions touched since the last answer:
    /// the driver fills the data with `(i64 session, i32 timeout)` pairs.
    Ping {
        /// The leader's zxid, echoed.
        zxid: i64,
    },
    /// The sync is complete: start serving clients.
    Serving {
        /// The epoch this leader established.
        epoch: i64,
    },
    /// A forwarded sync is answered (SYNC).
    SyncDone,
    /// The leader answered a REVALIDATE.
    Revalidated {
        /// The session.
        session_id: i64,
        /// Whether it is still valid (the leader now counts this server as its owner).
        valid: bool,
    },
}

/// Why following ended; the server goes back to looking.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LearnerError {
    /// The leader proposed an epoch older than one this server accepted.
    #[error("leader's epoch {leader} is older than my accepted epoch {accepted}")]
    StaleEpoch {
        /// Proposed.
        leader: i64,
        /// Accepted.
        accepted: i64,
    },
    /// A packet that has no place in the current phase.
    #[error("unexpected {0} from the leader during {1}")]
    Unexpected(&'static str, &'static str),
    /// A packet whose data could not be read.
    #[error("bad {0} from the leader: {1}")]
    Malformed(&'static str, String),
    /// A COMMIT for a proposal this server does not have.
    #[error("commit of 0x{0:x}, which was not proposed to me")]
    UnknownCommit(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// FOLLOWERINFO sent; waiting for LEADERINFO.
    Discovery,
    /// ACKEPOCH sent; waiting for DIFF, SNAP or TRUNC.
    AwaitSync,
    /// LoadSnapshot asked for; waiting for `snapshot_loaded`.
    LoadingSnapshot,
    /// Receiving the txns of the sync, up to NEWLEADER.
    Syncing,
    /// NEWLEADER handled; waiting for UPTODATE.
    AwaitUpToDate,
    /// Serving: proposals and commits as they come.
    Broadcast,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Discovery => "discovery",
            Phase::AwaitSync | Phase::LoadingSnapshot | Phase::Syncing | Phase::AwaitUpToDate => "synchronization",
            Phase::Broadcast => "broadcast",
        }
    }
}

/// One connection's worth of following.
#[derive(Debug)]
pub struct Learner {
    start: LearnerStart,
    phase: Phase,
    accepted_epoch: i64,
    new_epoch: i64,
    mode: Option<SyncMode>,
    /// Whether proposals of the sync are logged (DIFF) or applied unlogged at their commit
    /// (SNAP, TRUNC; ZooKeeper's `writeToTxnLog`).
    log_sync_txns: bool,
    /// Proposals not yet handed on: during sync, those waiting for NEWLEADER (or their commit).
    held: VecDeque<Proposal>,
    /// Zxids committed during sync, delivered after UPTODATE.
    held_commits: Vec<i64>,
    /// Logged but uncommitted zxids, in order: commits must name the first.
    uncommitted: VecDeque<i64>,
    /// Logged but not yet acked zxids, in order (acks go out as the disk catches up).
    unacked: VecDeque<i64>,
    /// The last zxid handed to the log, and the last the disk has.
    last_logged: i64,
    persisted: i64,
    /// The NEWLEADER ack waits for the disk to reach this zxid.
    newleader_ack_after: Option<i64>,
    actions: Vec<LearnerAction>,
}

impl Learner {
    /// Starts following: the first action sends FOLLOWERINFO.
    pub fn new(start: LearnerStart) -> Learner {
        let info = LearnerInfo {
            server_id: start.my_sid,
            protocol_version: ZAB_PROTOCOL_VERSION,
            config_version: start.config_version,
        };
        let followerinfo = QuorumPacket::with_data(
            packet_type::FOLLOWERINFO,
            make_zxid(start.accepted_epoch, 0),
            info.to_bytes(),
        );
        Learner {
            start,
            phase: Phase::Discovery,
            accepted_epoch: start.accepted_epoch,
            new_epoch: 0,
            mode: None,
            log_sync_txns: false,
            held: VecDeque::new(),
            held_commits: Vec::new(),
            uncommitted: VecDeque::new(),
            last_logged: start.last_logged_zxid,
            persisted: start.last_logged_zxid,
            unacked: VecDeque::new(),
            newleader_ack_after: None,
            actions: vec![LearnerAction::Send(followerinfo)],
        }
    }

    /// The actions produced since the last call, in the order to perform them.
    pub fn take_actions(&mut self) -> Vec<LearnerAction> {
        std::mem::take(&mut self.actions)
    }

    /// The Zab phase as `zabstate` and the logs name it.
    pub fn zab_state(&self) -> &'static str {
        self.phase.as_str()
    }

    /// How the leader is syncing this follower, once it said.
    pub fn sync_mode(&self) -> Option<SyncMode> {
        self.mode
    }

    /// The epoch the leader proposed, once LEADERINFO came.
    pub fn new_epoch(&self) -> i64 {
        self.new_epoch
    }

    /// Handles one packet from the leader.
    pub fn packet(&mut self, packet: QuorumPacket) -> Result<(), LearnerError> {
        let name = packet_type::name(packet.packet_type);
        match (self.phase, packet.packet_type) {
            (Phase::Discovery, packet_type::LEADERINFO) => self.leaderinfo(&packet),
            (Phase::AwaitSync, packet_type::DIFF) => {
                self.begin_sync(SyncMode::Diff, true);
                Ok(())
            }
            (Phase::AwaitSync, packet_type::SNAP) => {
                self.begin_sync(SyncMode::Snap, false);
                self.phase = Phase::LoadingSnapshot;
                self.actions.push(LearnerAction::LoadSnapshot { zxid: packet.zxid });
                Ok(())
            }
            (Phase::AwaitSync, packet_type::TRUNC) => {
                self.begin_sync(SyncMode::Trunc, false);
                self.actions.push(LearnerAction::Truncate { zxid: packet.zxid });
                self.last_logged = packet.zxid;
                self.persisted = packet.zxid;
                Ok(())
            }
            (Phase::Syncing | Phase::AwaitUpToDate | Phase::Broadcast, packet_type::PROPOSAL) => {
                let proposal = proposal_of(&packet)?;
                self.proposal(proposal);
                Ok(())
            }
            (Phase::Syncing | Phase::AwaitUpToDate | Phase::Broadcast, packet_type::COMMIT) => self.commit(packet.zxid),
            (Phase::Syncing, packet_type::NEWLEADER) => {
                self.newleader();
                Ok(())
            }
            (Phase::AwaitUpToDate, packet_type::UPTODATE) => {
                self.uptodate();
                Ok(())
            }
            (Phase::Syncing | Phase::AwaitUpToDate | Phase::Broadcast, packet_type::PING) => {
                self.actions.push(LearnerAction::Ping { zxid: packet.zxid });
                Ok(())
            }
            (Phase::Broadcast, packet_type::SYNC) => {
                self.actions.push(LearnerAction::SyncDone);
                Ok(())
            }
            (Phase::Broadcast, packet_type::REVALIDATE) => {
                let data = packet.data.unwrap_or_default();
                if data.len() < 9 {
                    return Err(LearnerError::Malformed(name, format!("{} bytes", data.len())));
                }
                let session_id = i64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
                self.actions.push(LearnerAction::Revalidated {
                    session_id,
                    valid: data[8] != 0,
                });
                Ok(())
            }
            // A second UPTODATE (ZooKeeper's followers ignore it too).
            (Phase::Broadcast, packet_type::UPTODATE) => Ok(()),
            (phase, _) => Err(LearnerError::Unexpected(name, phase.as_str())),
        }
    }

    /// The snapshot the SNAP packet announced is loaded.
    pub fn snapshot_loaded(&mut self, zxid: i64) {
        assert_eq!(
            self.phase,
            Phase::LoadingSnapshot,
            "snapshot_loaded outside a SNAP sync"
        );
        self.phase = Phase::Syncing;
        self.last_logged = zxid;
        self.persisted = zxid;
    }

    /// The log is durable through `zxid`: send the acks that waited for it.
    pub fn persisted_through(&mut self, zxid: i64) {
        self.persisted = self.persisted.max(zxid);
        self.send_acks();
    }

    fn leaderinfo(&mut self, packet: &QuorumPacket) -> Result<(), LearnerError> {
        let new_epoch = epoch_of(packet.zxid);
        let mut data = BytesMut::with_capacity(4);
        if new_epoch > self.accepted_epoch {
            data.put_i32(self.start.current_epoch as i32);
            self.accepted_epoch = new_epoch;
            self.actions.push(LearnerAction::PersistAcceptedEpoch(new_epoch));
        } else if new_epoch == self.accepted_epoch {
            // Already accepted (a reconnect): -1 says so, and the leader does not count it again.
            data.put_i32(-1);
        } else {
            return Err(LearnerError::StaleEpoch {
                leader: new_epoch,
                accepted: self.accepted_epoch,
            });
        }
        self.new_epoch = new_epoch;
        let ackepoch = QuorumPacket::with_data(packet_type::ACKEPOCH, self.start.last_logged_zxid, data.freeze());
        self.actions.push(LearnerAction::Send(ackepoch));
        self.phase = Phase::AwaitSync;
        Ok(())
    }

    fn begin_sync(&mut self, mode: SyncMode, log_sync_txns: bool) {
        self.mode = Some(mode);
        self.log_sync_txns = log_sync_txns;
        self.phase = Phase::Syncing;
    }

    fn proposal(&mut self, proposal: Proposal) {
        match self.phase {
            // Held until NEWLEADER (logged then) or, in SNAP and TRUNC, until its commit.
            Phase::Syncing => self.held.push_back(proposal),
            Phase::AwaitUpToDate | Phase::Broadcast => self.log(proposal),
            _ => unreachable!("proposals are only taken while syncing or serving"),
        }
    }

    fn log(&mut self, proposal: Proposal) {
        self.last_logged = self.last_logged.max(proposal.zxid());
        self.uncommitted.push_back(proposal.zxid());
        self.unacked.push_back(proposal.zxid());
        self.actions.push(LearnerAction::Log(Box::new(proposal)));
    }

    fn commit(&mut self, zxid: i64) -> Result<(), LearnerError> {
        match self.phase {
            Phase::Syncing if !self.log_sync_txns => {
                // SNAP and TRUNC: apply at once; the NEWLEADER snapshot makes it durable.
                match self.held.front() {
                    Some(first) if first.zxid() == zxid => {
                        let proposal = self.held.pop_front().expect("front exists");
                        self.actions.push(LearnerAction::ApplyUnlogged(Box::new(proposal)));
                        Ok(())
                    }
                    _ => Err(LearnerError::UnknownCommit(zxid)),
                }
            }
            Phase::Syncing => {
                if !self.held.iter().any(|p| p.zxid() == zxid) {
                    return Err(LearnerError::UnknownCommit(zxid));
                }
                self.held_commits.push(zxid);
                Ok(())
            }
            Phase::AwaitUpToDate => {
                if !self.uncommitted.contains(&zxid) {
                    return Err(LearnerError::UnknownCommit(zxid));
                }
                self.held_commits.push(zxid);
                Ok(())
            }
            _ => self.deliver_commit(zxid),
        }
    }

    fn deliver_commit(&mut self, zxid: i64) -> Result<(), LearnerError> {
        if self.uncommitted.front() != Some(&zxid) {
            return Err(LearnerError::UnknownCommit(zxid));
        }
        self.uncommitted.pop_front();
        self.actions.push(LearnerAction::Commit(zxid));
        Ok(())
    }

    fn newleader(&mut self) {
        if self.mode != Some(SyncMode::Diff) {
            self.actions.push(LearnerAction::TakeSnapshot);
        }
        self.actions.push(LearnerAction::PersistCurrentEpoch(self.new_epoch));
        for proposal in std::mem::take(&mut self.held) {
            self.log(proposal);
        }
        self.phase = Phase::AwaitUpToDate;
        self.newleader_ack_after = Some(self.last_logged);
        self.send_acks();
    }

    fn uptodate(&mut self) {
        self.phase = Phase::Broadcast;
        let epoch_zxid = make_zxid(self.new_epoch, 0);
        self.actions
            .push(LearnerAction::Send(QuorumPacket::new(packet_type::ACK, epoch_zxid)));
        self.actions.push(LearnerAction::Serving { epoch: self.new_epoch });
        for zxid in std::mem::take(&mut self.held_commits) {
            // Checked when each commit came; they name logged proposals in order.
            let delivered = self.deliver_commit(zxid);
            debug_assert!(delivered.is_ok(), "held commit 0x{zxid:x}");
        }
        self.send_acks();
    }

    /// Acks in order what the disk now holds: the NEWLEADER ack first (once the synced state is
    /// durable), then every proposal logged, one ACK each as ZooKeeper's SendAckRequestProcessor
    /// sends them (the leader ignores acks of proposals it has committed already).
    fn send_acks(&mut self) {
        if let Some(after) = self.newleader_ack_after {
            if self.persisted < after {
                return;
            }
            self.newleader_ack_after = None;
            let newleader_zxid = make_zxid(self.new_epoch, 0);
            self.actions
                .push(LearnerAction::Send(QuorumPacket::new(packet_type::ACK, newleader_zxid)));
        }
        if matches!(
            self.phase,
            Phase::Discovery | Phase::AwaitSync | Phase::LoadingSnapshot | Phase::Syncing
        ) {
            return;
        }
        while let Some(&zxid) = self.unacked.front() {
            if zxid > self.persisted {
                break;
            }
            self.unacked.pop_front();
            self.actions
                .push(LearnerAction::Send(QuorumPacket::new(packet_type::ACK, zxid)));
        }
    }
}

fn proposal_of(packet: &QuorumPacket) -> Result<Proposal, LearnerError> {
    let bytes = packet.data.clone().unwrap_or_default();
    let (txn, digest) = decode_entry(bytes.clone()).map_err(|reason| LearnerError::Malformed("PROPOSAL", reason))?;
    Ok(Proposal { txn, digest, bytes })
}

#[cfg(test)]
pub(crate) mod tests;
