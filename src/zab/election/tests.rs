//! Elections among in-memory servers: every message is delivered in send order unless a test
//! holds it back, and time moves only when a test moves it.

use std::collections::{BTreeMap, VecDeque};

use bytes::BytesMut;

use super::*;
use crate::zab::quorum::tests::member;
use crate::zab::quorum::Member;

fn encode(n: &Notification) -> Vec<u8> {
    let mut out = BytesMut::new();
    n.encode(&mut out);
    out.to_vec()
}

/// Servers and the messages between them.
struct Net {
    servers: BTreeMap<i64, Election>,
    /// (from, to, message) in send order.
    in_flight: VecDeque<(i64, i64, Notification)>,
    /// Servers whose messages (both ways) are lost.
    down: Vec<i64>,
    outcomes: BTreeMap<i64, Outcome>,
    now_ms: u64,
}

impl Net {
    /// Servers `1..=n` (all participants) with these (last zxid, current epoch).
    fn new(state: &[(i64, i64)]) -> Net {
        let members: Vec<Member> = (1..=state.len() as i64).map(|sid| member(sid, true)).collect();
        Net::with_members(members, state)
    }

    fn with_members(members: Vec<Member>, state: &[(i64, i64)]) -> Net {
        let verifier = QuorumVerifier::majority(members.clone(), 0);
        let servers = members
            .iter()
            .zip(state)
            .map(|(m, &(zxid, epoch))| {
                (
                    m.sid,
                    Election::new(m.sid, verifier.clone(), ElectionTimeouts::default(), zxid, epoch),
                )
            })
            .collect();
        Net {
            servers,
            in_flight: VecDeque::new(),
            down: Vec::new(),
            outcomes: BTreeMap::new(),
            now_ms: 1_000,
        }
    }

    fn look(&mut self, sid: i64, zxid: i64, epoch: i64) {
        let now = self.now_ms;
        self.servers.get_mut(&sid).unwrap().look(now, zxid, epoch);
        self.collect(sid);
    }

    fn collect(&mut self, from: i64) {
        for action in self.servers.get_mut(&from).unwrap().take_actions() {
            match action {
                Action::Send { to, notification } => self.in_flight.push_back((from, to, notification)),
                Action::Decided(outcome) => {
                    assert!(self.outcomes.insert(from, outcome).is_none(), "{from} decided twice");
                }
            }
        }
    }

    /// Delivers everything in flight (and what that causes), without moving time.
    fn deliver_all(&mut self) {
        let mut budget = 10_000;
        while let Some((from, to, n)) = self.in_flight.pop_front() {
            budget -= 1;
            assert!(budget > 0, "messages never stop");
            if self.down.contains(&from) || self.down.contains(&to) {
                continue;
            }
            let Some(server) = self.servers.get_mut(&to) else {
                continue;
            };
            server.receive(self.now_ms, from, &encode(&n));
            self.collect(to);
        }
    }

    /// Moves time in 10 ms steps, ticking every server and delivering, for `ms`.
    fn run_for(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        while self.now_ms < end {
            self.now_ms += 10;
            let sids: Vec<i64> = self.servers.keys().copied().collect();
            for sid in sids {
                if self.down.contains(&sid) {
                    continue;
                }
                let now = self.now_ms;
                self.servers.get_mut(&sid).unwrap().tick(now);
                self.collect(sid);
            }
            self.deliver_all();
        }
    }

    fn leader_of(&self, sid: i64) -> Option<(ServerState, i64)> {
        self.outcomes.get(&sid).map(|o| (o.state, o.vote.leader))
    }
}

#[test]
fn three_fresh_servers_elect_the_highest_sid_after_the_finalize_wait() {
    let mut net = Net::new(&[(0, 0), (0, 0), (0, 0)]);
    for sid in 1..=3 {
        net.look(sid, 0, 0);
    }
    net.deliver_all();
    assert!(net.outcomes.is_empty(), "nobody decides before the finalize wait");
    net.run_for(190);
    assert!(net.outcomes.is_empty(), "still inside the 200 ms finalize wait");
    net.run_for(30);
    assert_eq!(net.leader_of(1), Some((ServerState::Following, 3)));
    assert_eq!(net.leader_of(2), Some((ServerState::Following, 3)));
    assert_eq!(net.leader_of(3), Some((ServerState::Leading, 3)));
    let outcome = net.outcomes[&3];
    assert_eq!((outcome.vote.election_epoch, outcome.took_ms), (1, 200));
    assert!(net.servers.values().all(|s| s.next_deadline_ms().is_none()));
}

#[test]
fn the_highest_epoch_then_zxid_then_sid_wins() {
    // sid 1 has the newest zxid: it wins over the higher sids.
    let mut net = Net::new(&[(0x1_0000_0005, 1), (0x1_0000_0003, 1), (0x1_0000_0003, 1)]);
    for (sid, zxid) in [(1, 0x1_0000_0005), (2, 0x1_0000_0003), (3, 0x1_0000_0003)] {
        net.look(sid, zxid, 1);
    }
    net.run_for(300);
    assert_eq!(net.leader_of(3), Some((ServerState::Following, 1)));
    assert_eq!(net.leader_of(1), Some((ServerState::Leading, 1)));
    assert_eq!(net.outcomes[&2].vote.zxid, 0x1_0000_0005);
    // A newer epoch beats a larger zxid of an older epoch.
    let mut net = Net::new(&[(0x1_0000_0009, 1), (0x2_0000_0001, 2), (0x1_0000_0009, 1)]);
    for (sid, zxid, epoch) in [(1, 0x1_0000_0009, 1), (2, 0x2_0000_0001, 2), (3, 0x1_0000_0009, 1)] {
        net.look(sid, zxid, epoch);
    }
    net.run_for(300);
    assert!((1..=3).all(|sid| net.outcomes[&sid].vote.leader == 2));
}

#[test]
fn a_majority_decides_without_the_missing_server_which_then_follows_the_leader() {
    let mut net = Net::new(&[(0, 0), (0, 0), (0, 0)]);
    net.down = vec![3];
    net.look(1, 0, 0);
    net.look(2, 0, 0);
    net.run_for(300);
    assert_eq!(net.leader_of(1), Some((ServerState::Following, 2)));
    assert_eq!(net.leader_of(2), Some((ServerState::Leading, 2)));
    // Server 3 comes up later with a higher sid; the others answer its looking notifications with
    // their decided votes, and it follows 2 without a finalize wait.
    net.down.clear();
    net.look(3, 0, 0);
    net.deliver_all();
    assert_eq!(net.leader_of(3), Some((ServerState::Following, 2)));
    assert_eq!(net.outcomes[&3].took_ms, 0);
    assert_eq!(net.servers[&3].logical_clock(), 1);
}

#[test]
fn a_server_does_not_follow_until_the_leader_itself_says_it_leads() {
    // Server 1 follows 2 (say, from an earlier round), but 2 is down: 3 must not follow 2 on 1's
    // word alone, even though 1 and 3 would be a quorum.
    let mut net = Net::new(&[(0, 0), (0, 0), (0, 0)]);
    net.look(3, 0, 0);
    net.in_flight.clear();
    let from_one = Notification {
        state: ServerState::Following,
        leader: 2,
        zxid: 0,
        election_epoch: 1,
        peer_epoch: 1,
        version: NOTIFICATION_VERSION,
        config: None,
    };
    net.servers
        .get_mut(&3)
        .unwrap()
        .receive(net.now_ms, 1, &encode(&from_one));
    net.collect(3);
    assert!(net.outcomes.is_empty());
    // 2 confirms it leads: now two of three back it and the leader is known to lead.
    let from_two = Notification {
        state: ServerState::Leading,
        ..from_one
    };
    net.servers
        .get_mut(&3)
        .unwrap()
        .receive(net.now_ms, 2, &encode(&from_two));
    net.collect(3);
    assert_eq!(net.leader_of(3), Some((ServerState::Following, 2)));
}

#[test]
fn a_lone_server_resends_with_a_doubling_wait_up_to_the_cap() {
    let mut net = Net::new(&[(0, 0), (0, 0), (0, 0)]);
    net.down = vec![2, 3];
    net.look(1, 0, 0);
    net.in_flight.clear();
    let server = net.servers.get_mut(&1).unwrap();
    let mut deadlines = Vec::new();
    let mut now = 1_000;
    for _ in 0..12 {
        let deadline = server.next_deadline_ms().unwrap();
        deadlines.push(deadline - now);
        now = deadline;
        server.tick(now);
        let sent: Vec<i64> = server
            .take_actions()
            .into_iter()
            .map(|a| match a {
                Action::Send { to, .. } => to,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(sent, vec![2, 3]);
    }
    assert_eq!(
        deadlines,
        vec![200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 51_200, 60_000, 60_000, 60_000]
    );
    assert_eq!(server.state(), ServerState::Looking);
}

#[test]
fn a_better_vote_during_the_finalize_wait_changes_the_outcome() {
    let mut net = Net::new(&[(0, 0), (0, 0), (0x5, 0)]);
    net.down = vec![3];
    net.look(1, 0, 0);
    net.look(2, 0, 0);
    net.deliver_all();
    // 1 and 2 agree on 2 and wait; 3, with a newer zxid, shows up inside the wait.
    net.run_for(100);
    assert!(net.outcomes.is_empty());
    net.down.clear();
    net.look(3, 0x5, 0);
    net.run_for(300);
    assert!(
        (1..=3).all(|sid| net.outcomes[&sid].vote.leader == 3),
        "{:?}",
        net.outcomes
    );
}

#[test]
fn lagging_and_non_voting_senders_get_an_answer_at_once() {
    let members = vec![member(1, true), member(2, true), member(3, true), member(4, false)];
    let mut net = Net::with_members(members, &[(0, 0), (0, 0), (0, 0), (0, 0)]);
    net.look(1, 0, 0);
    net.in_flight.clear();
    // A looking voter in an older round gets this server's round and proposal back.
    let old_round = Notification {
        state: ServerState::Looking,
        leader: 2,
        zxid: 0,
        election_epoch: 0,
        peer_epoch: 0,
        version: NOTIFICATION_VERSION,
        config: None,
    };
    let server = net.servers.get_mut(&1).unwrap();
    server.receive(1_000, 2, &encode(&old_round));
    let actions = server.take_actions();
    let [Action::Send { to: 2, notification }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (notification.leader, notification.election_epoch, notification.state),
        (1, 1, ServerState::Looking)
    );
    assert_eq!(
        notification.config.as_deref(),
        Some(server.verifier.config_string().as_bytes())
    );
    // The observer (a non-voter) gets the current vote, whatever it sent.
    server.receive(1_000, 4, &encode(&old_round));
    let actions = server.take_actions();
    let [Action::Send { to: 4, notification }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!((notification.leader, notification.election_epoch), (1, 1));
    // Broken bytes are skipped without an answer.
    server.receive(1_000, 2, &[0; 12]);
    assert!(server.take_actions().is_empty());
}

#[test]
fn an_observer_looks_with_no_candidate_and_ends_observing() {
    let members = vec![member(1, true), member(2, true), member(3, true), member(4, false)];
    let mut net = Net::with_members(members, &[(0, 0), (0, 0), (0, 0), (0, 0)]);
    for sid in 1..=3 {
        net.look(sid, 0, 0);
    }
    net.run_for(300);
    net.look(4, 0, 0);
    // It sends to voters only, never to itself, and proposes nobody.
    let sent: Vec<(i64, i64)> = net.in_flight.iter().map(|(_, to, n)| (*to, n.leader)).collect();
    assert_eq!(sent, vec![(1, i64::MIN), (2, i64::MIN), (3, i64::MIN)]);
    net.deliver_all();
    assert_eq!(net.leader_of(4), Some((ServerState::Observing, 3)));
}

#[test]
fn a_candidate_of_weight_zero_never_wins() {
    let members: Vec<Member> = (1..=3).map(|sid| member(sid, true)).collect();
    let groups = BTreeMap::from([(1, vec![1, 2, 3])]);
    let weights = BTreeMap::from([(3, 0)]);
    let verifier = QuorumVerifier::hierarchical(members, &groups, &weights, 0).unwrap();
    let mut net = Net::new(&[(0, 0), (0, 0), (0, 0)]);
    for sid in 1..=3 {
        net.servers.insert(
            sid,
            Election::new(sid, verifier.clone(), ElectionTimeouts::default(), 0, 0),
        );
    }
    for sid in 1..=3 {
        net.look(sid, 0, 0);
    }
    net.run_for(300);
    assert!(
        (1..=3).all(|sid| net.outcomes[&sid].vote.leader == 2),
        "{:?}",
        net.outcomes
    );
}

#[test]
fn a_decided_server_answers_lookers_with_its_vote_and_state_and_the_new_epoch() {
    let mut net = Net::new(&[(0, 0), (0, 0), (0, 0)]);
    for sid in 1..=3 {
        net.look(sid, 0, 0);
    }
    net.run_for(300);
    let server = net.servers.get_mut(&3).unwrap();
    server.set_peer_epoch(1);
    let looking = Notification {
        state: ServerState::Looking,
        leader: 1,
        zxid: 0,
        election_epoch: 7,
        peer_epoch: 0,
        version: NOTIFICATION_VERSION,
        config: None,
    };
    server.receive(5_000, 1, &encode(&looking));
    let actions = server.take_actions();
    let [Action::Send { to: 1, notification }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    // PROTOCOL.md §4.4: such replies carry the decided round and, after sync, the new epoch.
    assert_eq!(
        (
            notification.state,
            notification.leader,
            notification.election_epoch,
            notification.peer_epoch
        ),
        (ServerState::Leading, 3, 1, 1)
    );
    // A non-looking sender gets no answer from a decided server.
    let following = Notification {
        state: ServerState::Following,
        ..looking
    };
    server.receive(5_000, 1, &encode(&following));
    assert!(server.take_actions().is_empty());
    // When the role ends the next round starts from the next logical clock.
    server.role_ended();
    server.look(6_000, 0x1_0000_0002, 1);
    assert_eq!(server.logical_clock(), 2);
}

#[test]
fn a_looking_notification_heard_while_following_counts_in_the_next_round() {
    let mut net = Net::new(&[(0, 0), (0, 0), (0, 0)]);
    for sid in 1..=3 {
        net.look(sid, 0, 0);
    }
    net.run_for(300);
    assert_eq!(net.leader_of(1), Some((ServerState::Following, 3)));
    // The leader crashes. Server 2 sees it first and starts a round; its notification reaches 1
    // while 1 still follows (1 answers with its old vote), and only then does 1 start its round.
    net.down = vec![3];
    net.outcomes.clear();
    net.servers.get_mut(&2).unwrap().role_ended();
    net.look(2, 0, 1);
    net.deliver_all();
    net.servers.get_mut(&1).unwrap().role_ended();
    net.look(1, 0, 1);
    net.deliver_all();
    // One finalize wait, not a notification interval and then a finalize wait.
    net.run_for(210);
    assert_eq!(net.leader_of(1), Some((ServerState::Following, 2)));
    assert_eq!(net.leader_of(2), Some((ServerState::Leading, 2)));
    assert!(net.outcomes[&1].took_ms <= 210, "took {} ms", net.outcomes[&1].took_ms);
    assert_eq!(net.outcomes[&1].vote.election_epoch, 2);
}
