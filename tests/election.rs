//! Fast leader election over real sockets: ferrokeeper servers among themselves, and a
//! ferrokeeper server in one ensemble with real Apache ZooKeeper 3.8 servers (Debian's package,
//! which `scripts/install-test-deps.sh` installs), so both sides must read each other's
//! handshakes and notifications and agree on the leader.
//!
//! Each test has its own loopback addresses (127.0.4x.sid) so tests can run in parallel.

use std::io::Read;
use std::time::Duration;

use ferrokeeper::proto::election::ServerState;

mod common;
use common::{decided, host, mode, start_election, wait_until, ZooKeeper, QUORUM_PORT};

/// `srvr`'s Mode from a ZooKeeper server, once it serves.
fn zookeeper_mode(net: u8, sid: i64, within: Duration) -> String {
    let mut found = None;
    wait_until(&format!("ZooKeeper {sid} serves"), within, || {
        found = mode(net, sid);
        found.is_some()
    });
    found.unwrap_or_default()
}

#[tokio::test]
async fn three_ferrokeeper_servers_elect_the_highest_sid() {
    let mut handles = Vec::new();
    for sid in 1..=3 {
        handles.push(start_election(40, sid, 3).await);
    }
    let mut outcomes = Vec::new();
    for handle in &mut handles {
        outcomes.push(decided(handle, Duration::from_secs(10)).await);
    }
    assert_eq!(
        outcomes,
        vec![
            (ServerState::Following, 3),
            (ServerState::Following, 3),
            (ServerState::Leading, 3)
        ]
    );
}

#[tokio::test]
async fn a_late_ferrokeeper_server_follows_the_running_leader() {
    let mut first = start_election(42, 1, 3).await;
    let mut second = start_election(42, 2, 3).await;
    assert_eq!(
        decided(&mut first, Duration::from_secs(10)).await,
        (ServerState::Following, 2)
    );
    assert_eq!(
        decided(&mut second, Duration::from_secs(10)).await,
        (ServerState::Leading, 2)
    );
    // 3 would win a fresh election, but 1 and 2 have decided: it learns their votes and follows.
    let mut third = start_election(42, 3, 3).await;
    assert_eq!(
        decided(&mut third, Duration::from_secs(10)).await,
        (ServerState::Following, 2)
    );
}

#[tokio::test]
async fn ferrokeeper_follows_the_leader_two_zookeeper_servers_elected() {
    let one = ZooKeeper::start(41, 1, 3, "");
    let two = ZooKeeper::start(41, 2, 3, "");
    // The two real servers form a quorum of three on their own; the larger sid leads.
    let mode_two = tokio::task::spawn_blocking(|| zookeeper_mode(41, 2, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(mode_two, "leader", "ZooKeeper 2's log:\n{}", two.log());
    let mode_one = tokio::task::spawn_blocking(|| zookeeper_mode(41, 1, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(mode_one, "follower", "ZooKeeper 1's log:\n{}", one.log());
    // ferrokeeper 3 joins: from their FOLLOWING and LEADING answers it follows 2.
    let mut three = start_election(41, 3, 3).await;
    assert_eq!(
        decided(&mut three, Duration::from_secs(20)).await,
        (ServerState::Following, 2)
    );
    let status = *three.status.borrow();
    assert_eq!(
        status.vote.peer_epoch, 1,
        "the leader's new epoch, as ZooKeeper's answers carry it"
    );
    // And ZooKeeper read every field of ferrokeeper's notification as sent (its receiver logs each).
    for zookeeper in [&one, &two] {
        zookeeper.wait_for_log(
            "n.sid:3, n.state:LOOKING, n.leader:3, n.round:0x1, n.peerEpoch:0x0, n.zxid:0x0, \
             message format version:0x2, n.config version:0x0",
            Duration::from_secs(10),
        );
    }
}

#[tokio::test]
async fn zookeeper_follows_a_ferrokeeper_leader_and_calls_its_quorum_port() {
    // Only ZooKeeper 1 and ferrokeeper 3 are up: both propose 3 (the larger sid) and 3 leads.
    // ZooKeeper 1 then calls 3's quorum port as a follower: its first packet is FOLLOWERINFO.
    let quorum = std::net::TcpListener::bind((host(43, 3).as_str(), QUORUM_PORT)).unwrap();
    let one = ZooKeeper::start(43, 1, 3, "");
    let mut three = start_election(43, 3, 3).await;
    assert_eq!(
        decided(&mut three, Duration::from_secs(60)).await,
        (ServerState::Leading, 3)
    );
    let packet = tokio::task::spawn_blocking(move || {
        let (mut stream, _) = quorum.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // QuorumPacket: int type, long zxid, buffer data (LearnerInfo: long sid, ...), authinfo.
        let mut head = [0u8; 16];
        stream.read_exact(&mut head).unwrap();
        let mut sid = [0u8; 8];
        stream.read_exact(&mut sid).unwrap();
        (
            i32::from_be_bytes(head[..4].try_into().unwrap()),
            i64::from_be_bytes(sid),
        )
    })
    .await
    .unwrap();
    assert_eq!(packet, (11, 1), "FOLLOWERINFO from sid 1");
    one.wait_for_log("FOLLOWING - LEADER ELECTION TOOK", Duration::from_secs(10));
}
