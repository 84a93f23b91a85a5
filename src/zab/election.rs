//! Fast leader election, ZooKeeper 3.8's (`FastLeaderElection`, PROTOCOL.md §4.4), as a
//! deterministic state machine: notifications and the time come in, notifications to send and the
//! outcome go out.
//!
//! Owns: this server's election state (`logicalclock`, the proposal, the votes received in this
//! round and from servers outside it) and the vote it answers with once decided. Must not touch:
//! sockets (the driver in `zab::peers` owns the connections), clocks (every input carries
//! `now_ms`, a monotonic millisecond count), the log (the caller passes the last logged zxid and
//! the current epoch in).
//!
//! It merges ZooKeeper's two election threads: `WorkerReceiver`, which answers every notification
//! at once (a lagging or non-voting sender gets this server's vote back, a looking sender gets the
//! decided vote from a server that is not looking), and `lookForLeader`, which runs the round
//! while this server is looking. A notification to itself goes through the same path, as
//! ZooKeeper's loopback does, and counts as its own vote.
//!
//! Invariants: a decision needs a quorum of voters behind one vote; a server follows another only
//! once that server says it is leading (`checkLeader`); the proposal only ever moves to a vote that
//! beats it (`totalOrderPredicate`); the action list holds at most one round of sends.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::proto::election::{Notification, ServerState, NOTIFICATION_VERSION};
use crate::zab::quorum::QuorumVerifier;

/// The election's timing, in milliseconds (`FastLeaderElection` statics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElectionTimeouts {
    /// First wait for a notification before re-sending; doubles on each timeout
    /// (`zookeeper.fastleader.minNotificationInterval`, 200).
    pub min_notification_interval_ms: u64,
    /// Cap of that wait (`zookeeper.fastleader.maxNotificationInterval`, 60,000).
    pub max_notification_interval_ms: u64,
    /// Quiet time after a quorum agrees before deciding, in case a better vote arrives
    /// (`finalizeWait`, 200).
    pub finalize_wait_ms: u64,
}

impl Default for ElectionTimeouts {
    fn default() -> Self {
        ElectionTimeouts {
            min_notification_interval_ms: 200,
            max_notification_interval_ms: 60_000,
            finalize_wait_ms: 200,
        }
    }
}

/// A vote as ZooKeeper's `Vote` holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vote {
    /// The proposed (or followed) leader's sid.
    pub leader: i64,
    /// Its last zxid.
    pub zxid: i64,
    /// The round the vote was cast in; -1 before any round.
    pub election_epoch: i64,
    /// The proposed leader's epoch.
    pub peer_epoch: i64,
    /// The state of whoever cast it.
    pub state: ServerState,
    /// Notification format version it came with (0 for votes built locally).
    pub version: i32,
}

impl Vote {
    fn looking(leader: i64, zxid: i64, election_epoch: i64, peer_epoch: i64) -> Vote {
        Vote {
            leader,
            zxid,
            election_epoch,
            peer_epoch,
            state: ServerState::Looking,
            version: 0,
        }
    }

    /// `Vote.equals`: votes from looking servers must agree on everything; between servers out of
    /// the election the leader and its epoch are enough (ZOOKEEPER-1805), and only the leader when
    /// one side predates the peer-epoch fix (ZOOKEEPER-1732).
    fn same_as(&self, other: &Vote) -> bool {
        if self.state == ServerState::Looking || other.state == ServerState::Looking {
            return self.leader == other.leader
                && self.zxid == other.zxid
                && self.election_epoch == other.election_epoch
                && self.peer_epoch == other.peer_epoch;
        }
        if (self.version > 0) != (other.version > 0) {
            return self.leader == other.leader;
        }
        self.leader == other.leader && self.peer_epoch == other.peer_epoch
    }
}

/// How an election ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Leading, Following or Observing.
    pub state: ServerState,
    /// The vote decided on (the leader and its zxid and epoch, the round).
    pub vote: Vote,
    /// From the start of looking to the decision.
    pub took_ms: u64,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this notification to that server (connecting first if need be).
    Send {
        /// The recipient's sid.
        to: i64,
        /// The message.
        notification: Notification,
    },
    /// The election ended; this server now leads, follows or observes.
    Decided(Outcome),
}

/// What the round is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Not looking.
    Idle,
    /// Waiting for notifications; at the deadline, send the proposal again and double the wait.
    Notification { deadline_ms: u64, interval_ms: u64 },
    /// A quorum agrees; decide at the deadline unless a better vote arrives first.
    Finalize { deadline_ms: u64, interval_ms: u64 },
}

/// The proposal of a round: leader, zxid, epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Proposal {
    leader: i64,
    zxid: i64,
    peer_epoch: i64,
}

/// One server's fast leader election.
#[derive(Debug)]
pub struct Election {
    my_sid: i64,
    participant: bool,
    verifier: QuorumVerifier,
    config: Bytes,
    timeouts: ElectionTimeouts,
    state: ServerState,
    logical_clock: i64,
    /// This round's starting vote (`getInitId`, `getInitLastLoggedZxid`, `getPeerEpoch`).
    initial: Proposal,
    proposal: Proposal,
    /// `QuorumPeer.currentVote`: what this server answers with when it is not looking.
    current_vote: Vote,
    /// Votes of this round, by sender (`recvset`).
    received: BTreeMap<i64, Vote>,
    /// Votes of servers that are leading or following, from any round (`outofelection`).
    out_of_election: BTreeMap<i64, Vote>,
    timer: Timer,
    looking_since_ms: u64,
    /// Notifications this server sent itself, handled after the current input.
    loopback: VecDeque<Notification>,
    /// The last looking notification from each voter while this server was not looking, with when
    /// it came, handled again if its next round starts soon after (see `look`); one per voter.
    deferred: BTreeMap<i64, (u64, Notification)>,
    actions: Vec<Action>,
}

impl Election {
    /// An election for `my_sid` in the ensemble `verifier`; it starts looking at `look`.
    /// `last_logged_zxid` and `current_epoch` make the vote it answers with until then.
    pub fn new(
        my_sid: i64,
        verifier: QuorumVerifier,
        timeouts: ElectionTimeouts,
        last_logged_zxid: i64,
        current_epoch: i64,
    ) -> Election {
        let participant = verifier.is_voter(my_sid);
        let config = Bytes::from(verifier.config_string());
        let initial = Proposal {
            leader: my_sid,
            zxid: last_logged_zxid,
            peer_epoch: current_epoch,
        };
        Election {
            my_sid,
            participant,
            verifier,
            config,
            timeouts,
            state: ServerState::Looking,
            logical_clock: 0,
            initial,
            proposal: initial,
            current_vote: Vote::looking(my_sid, last_logged_zxid, -1, current_epoch),
            received: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            timer: Timer::Idle,
            looking_since_ms: 0,
            loopback: VecDeque::new(),
            deferred: BTreeMap::new(),
            actions: Vec::new(),
        }
    }

    /// This server's state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The round (`logicalclock`).
    pub fn logical_clock(&self) -> i64 {
        self.logical_clock
    }

    /// The vote this server stands by (`QuorumPeer.getCurrentVote`).
    pub fn current_vote(&self) -> Vote {
        self.current_vote
    }

    /// When `tick` next has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        match self.timer {
            Timer::Idle => None,
            Timer::Notification { deadline_ms, .. } | Timer::Finalize { deadline_ms, .. } => Some(deadline_ms),
        }
    }

    /// The actions produced since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Starts a round (`lookForLeader`): proposes itself with its last logged zxid and current
    /// epoch and tells every voter. Observers and servers outside the voting view propose nobody
    /// (`Long.MIN_VALUE`).
    pub fn look(&mut self, now_ms: u64, last_logged_zxid: i64, current_epoch: i64) {
        self.state = ServerState::Looking;
        self.logical_clock += 1;
        // Only participants vote, so "in the voting view" (`getInitId`) and "a participant"
        // (`getInitLastLoggedZxid`, `getPeerEpoch`) are the same test here.
        self.initial = if self.participant {
            Proposal {
                leader: self.my_sid,
                zxid: last_logged_zxid,
                peer_epoch: current_epoch,
            }
        } else {
            Proposal {
                leader: i64::MIN,
                zxid: i64::MIN,
                peer_epoch: i64::MIN,
            }
        };
        self.proposal = self.initial;
        self.received.clear();
        self.out_of_election.clear();
        self.loopback.clear();
        self.looking_since_ms = now_ms;
        let interval_ms = self.timeouts.min_notification_interval_ms;
        self.timer = Timer::Notification {
            deadline_ms: now_ms + interval_ms,
            interval_ms,
        };
        self.send_notifications();
        self.drain_loopback(now_ms);
        // A survivor of a leader's crash often hears the other survivor's first notification
        // while it still follows (it sees the connection close a moment later): answered with
        // its old vote, as ZooKeeper does, and also kept, then handled here as if it had arrived
        // now. Without it neither survivor had the other's vote for the new round until their
        // notification timers fired, 200 ms into the election. Handling a message late is
        // something the election already allows (messages may be delayed at will). Older than a
        // notification interval, the sender has sent again or moved on: dropped.
        for (from, (heard_ms, notification)) in std::mem::take(&mut self.deferred) {
            if now_ms.saturating_sub(heard_ms) <= self.timeouts.min_notification_interval_ms {
                self.handle(now_ms, from, notification);
                self.drain_loopback(now_ms);
            }
        }
    }

    /// After the new leader fixed the epoch, the vote this server answers with carries it
    /// (`QuorumPeer.updateElectionVote`).
    pub fn set_peer_epoch(&mut self, epoch: i64) {
        self.current_vote.peer_epoch = epoch;
    }

    /// The leader or follower role ended; the caller starts a new round with `look`.
    pub fn role_ended(&mut self) {
        self.state = ServerState::Looking;
    }

    /// Handles one election message from server `from`; a message ZooKeeper would skip is skipped.
    pub fn receive(&mut self, now_ms: u64, from: i64, message: &[u8]) {
        let Some(notification) = Notification::decode(message) else {
            return;
        };
        self.handle(now_ms, from, notification);
        self.drain_loopback(now_ms);
    }

    /// Moves the round on when its deadline has passed: sends the proposal again after a quiet
    /// wait, or decides once the finalize wait ended with no better vote.
    pub fn tick(&mut self, now_ms: u64) {
        match self.timer {
            Timer::Notification {
                deadline_ms,
                interval_ms,
            } if now_ms >= deadline_ms => {
                // `haveDelivered` or `connectAll`: either way every voter gets the proposal again
                // (the driver connects where it has no connection).
                self.send_notifications();
                let interval_ms = (interval_ms * 2).min(self.timeouts.max_notification_interval_ms);
                self.timer = Timer::Notification {
                    deadline_ms: now_ms + interval_ms,
                    interval_ms,
                };
                self.drain_loopback(now_ms);
            }
            Timer::Finalize { deadline_ms, .. } if now_ms >= deadline_ms => {
                let vote = Vote::looking(
                    self.proposal.leader,
                    self.proposal.zxid,
                    self.logical_clock,
                    self.proposal.peer_epoch,
                );
                self.decide(now_ms, vote);
            }
            _ => {}
        }
    }

    fn drain_loopback(&mut self, now_ms: u64) {
        // Each pass handles what the last one sent; a round sends itself one message per change
        // of proposal, and the proposal only moves up, so this ends.
        while let Some(notification) = self.loopback.pop_front() {
            self.handle(now_ms, self.my_sid, notification);
        }
    }

    fn notification(&self, to: i64, vote: Vote, election_epoch: i64, state: ServerState) -> Action {
        Action::Send {
            to,
            notification: Notification {
                state,
                leader: vote.leader,
                zxid: vote.zxid,
                election_epoch,
                peer_epoch: vote.peer_epoch,
                version: NOTIFICATION_VERSION,
                config: Some(self.config.clone()),
            },
        }
    }

    fn proposal_vote(&self) -> Vote {
        Vote::looking(
            self.proposal.leader,
            self.proposal.zxid,
            self.logical_clock,
            self.proposal.peer_epoch,
        )
    }

    /// `sendNotifications`: the proposal to every voter, itself included.
    fn send_notifications(&mut self) {
        let voters: Vec<i64> = self.verifier.voters().collect();
        for to in voters {
            let action = self.notification(to, self.proposal_vote(), self.logical_clock, ServerState::Looking);
            self.push_send(action);
        }
    }

    fn push_send(&mut self, action: Action) {
        match action {
            Action::Send { to, notification } if to == self.my_sid => self.loopback.push_back(notification),
            action => self.actions.push(action),
        }
    }

    /// `WorkerReceiver.run` and then, while looking, one pass of `lookForLeader`'s loop.
    fn handle(&mut self, now_ms: u64, from: i64, n: Notification) {
        if !self.verifier.is_voter(from) {
            let reply = self.notification(from, self.current_vote, self.logical_clock, self.state);
            self.push_send(reply);
            return;
        }
        if self.state != ServerState::Looking {
            if n.state == ServerState::Looking {
                let vote = self.current_vote;
                let reply = self.notification(from, vote, vote.election_epoch, self.state);
                self.push_send(reply);
                self.deferred.insert(from, (now_ms, n));
            }
            return;
        }
        if n.state == ServerState::Looking && n.election_epoch < self.logical_clock {
            let reply = self.notification(from, self.proposal_vote(), self.logical_clock, ServerState::Looking);
            self.push_send(reply);
        }
        self.look_step(now_ms, from, n);
    }

    fn beats(&self, n: &Notification, current: Proposal) -> bool {
        // `totalOrderPredicate`: a candidate of weight 0 never wins.
        if self.verifier.weight(n.leader) == 0 {
            return false;
        }
        (n.peer_epoch, n.zxid, n.leader) > (current.peer_epoch, current.zxid, current.leader)
    }

    fn look_step(&mut self, now_ms: u64, from: i64, n: Notification) {
        if let Timer::Finalize { interval_ms, .. } = self.timer {
            if !self.beats(&n, self.proposal) {
                // Taken off the queue during the finalize wait and dropped; the wait starts over.
                let deadline_ms = now_ms + self.timeouts.finalize_wait_ms;
                self.timer = Timer::Finalize {
                    deadline_ms,
                    interval_ms,
                };
                return;
            }
            // A better vote: back to the round, which handles it below.
            self.timer = Timer::Notification {
                deadline_ms: now_ms + interval_ms,
                interval_ms,
            };
        }
        let Timer::Notification { interval_ms, .. } = self.timer else {
            return;
        };
        self.timer = Timer::Notification {
            deadline_ms: now_ms + interval_ms,
            interval_ms,
        };
        if !self.verifier.is_voter(n.leader) {
            return;
        }
        match n.state {
            ServerState::Looking => self.looking_notification(now_ms, from, n, interval_ms),
            ServerState::Observing => {}
            ServerState::Following | ServerState::Leading => self.decided_notification(now_ms, from, n),
        }
    }

    fn looking_notification(&mut self, now_ms: u64, from: i64, n: Notification, interval_ms: u64) {
        if self.initial.zxid == -1 || n.zxid == -1 {
            return;
        }
        if n.election_epoch > self.logical_clock {
            self.logical_clock = n.election_epoch;
            self.received.clear();
            self.proposal = if self.beats(&n, self.initial) {
                proposal_of(&n)
            } else {
                self.initial
            };
            self.send_notifications();
        } else if n.election_epoch < self.logical_clock {
            return;
        } else if self.beats(&n, self.proposal) {
            self.proposal = proposal_of(&n);
            self.send_notifications();
        }
        self.received
            .insert(from, Vote::looking(n.leader, n.zxid, n.election_epoch, n.peer_epoch));
        if self.has_quorum(&self.received, &self.proposal_vote()) {
            let deadline_ms = now_ms + self.timeouts.finalize_wait_ms;
            self.timer = Timer::Finalize {
                deadline_ms,
                interval_ms,
            };
        }
    }

    /// `receivedFollowingNotification` (and `receivedLeadingNotification`, which adds only the
    /// oracle of two-server ensembles, not supported here).
    fn decided_notification(&mut self, now_ms: u64, from: i64, n: Notification) {
        let vote = Vote {
            leader: n.leader,
            zxid: n.zxid,
            election_epoch: n.election_epoch,
            peer_epoch: n.peer_epoch,
            state: n.state,
            version: n.version,
        };
        let decided = Vote::looking(n.leader, n.zxid, n.election_epoch, n.peer_epoch);
        if n.election_epoch == self.logical_clock {
            self.received.insert(from, Vote { version: 0, ..vote });
            if self.has_quorum(&self.received, &vote)
                && self.leader_confirmed(&self.received, n.leader, n.election_epoch)
            {
                self.decide(now_ms, decided);
                return;
            }
        }
        self.out_of_election.insert(from, vote);
        if self.has_quorum(&self.out_of_election, &vote)
            && self.leader_confirmed(&self.out_of_election, n.leader, n.election_epoch)
        {
            self.logical_clock = n.election_epoch;
            self.decide(now_ms, decided);
        }
    }

    fn has_quorum(&self, votes: &BTreeMap<i64, Vote>, vote: &Vote) -> bool {
        let backers: BTreeSet<i64> = votes
            .iter()
            .filter(|(_, v)| v.same_as(vote))
            .map(|(&sid, _)| sid)
            .collect();
        self.verifier.contains_quorum(&backers)
    }

    /// `checkLeader`: follow another server only once it says it leads; lead only in the round
    /// the notification is from.
    fn leader_confirmed(&self, votes: &BTreeMap<i64, Vote>, leader: i64, election_epoch: i64) -> bool {
        if leader != self.my_sid {
            return votes.get(&leader).is_some_and(|v| v.state == ServerState::Leading);
        }
        self.logical_clock == election_epoch
    }

    fn decide(&mut self, now_ms: u64, vote: Vote) {
        self.state = if vote.leader == self.my_sid {
            ServerState::Leading
        } else if self.participant {
            ServerState::Following
        } else {
            ServerState::Observing
        };
        self.current_vote = vote;
        self.timer = Timer::Idle;
        self.loopback.clear();
        self.deferred.clear();
        let took_ms = now_ms.saturating_sub(self.looking_since_ms);
        self.actions.push(Action::Decided(Outcome {
            state: self.state,
            vote,
            took_ms,
        }));
    }
}

fn proposal_of(n: &Notification) -> Proposal {
    Proposal {
        leader: n.leader,
        zxid: n.zxid,
        peer_epoch: n.peer_epoch,
    }
}

#[cfg(test)]
mod tests;
