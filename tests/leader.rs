//! Real Apache ZooKeeper 3.8 servers following a ferrokeeper leader: ferrokeeper wins the
//! election (largest sid), fixes the epoch, syncs both ZooKeeper servers and commits its
//! proposals with their acks; their clients then read what ferrokeeper proposed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferrokeeper::proto::election::ServerState;
use ferrokeeper::proto::open_acl_unsafe;
use ferrokeeper::proto::txn::{Txn, TxnBody, TxnHeader};
use ferrokeeper::storage::replica::ReplicaStore;
use ferrokeeper::storage::Layout;
use ferrokeeper::zab::leading::{inputs, lead, LeadError, LeaderInput, LeaderStatus, LeadingSettings};

mod common;
use common::{
    decided, host, mode, start_election, temp_dir, verifier, wait_until, zxid, Client, ZooKeeper, QUORUM_PORT,
};

const NET: u8 = 45;

fn create_txn(path: &str, data: &'static [u8]) -> Box<Txn> {
    // A txn of the leader's own (session 0), as a container sweep or expiry is.
    let header = TxnHeader {
        client_id: 0,
        cxid: 0,
        zxid: 0,
        time: 1_700_000_000_000,
        txn_type: 1,
    };
    let body = TxnBody::Create {
        path: path.to_string(),
        data: Some(Bytes::from_static(data)),
        acl: open_acl_unsafe(),
        ephemeral: false,
        parent_cversion: 1,
    };
    Box::new(Txn { header, body })
}

/// Server 3 of `net` leads with a half-second tick.
fn settings(net: u8) -> LeadingSettings {
    LeadingSettings {
        listen: format!("{}:{QUORUM_PORT}", host(net, 3)).parse().unwrap(),
        tick: Duration::from_millis(500),
        data_max_bytes: 0xfffff + 1024,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_servers_follow_a_ferrokeeper_leader_and_serve_its_writes() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("ferrokeeper=debug")
        .with_test_writer()
        .try_init();
    // ZooKeeper's followers use local sessions: the request pipeline is not wired to
    // ferrokeeper's leader yet, so a global createSession would have nobody to take it.
    let extra = "localSessionsEnabled=true\nlocalSessionsUpgradingEnabled=false\n";
    let one = ZooKeeper::start(NET, 1, 3, extra);
    let two = ZooKeeper::start(NET, 2, 3, extra);

    let dir = temp_dir("leader-fk3");
    let store = ReplicaStore::open(Layout::new(&dir, &dir), false).unwrap();
    let mut election = start_election(NET, 3, 3).await;
    let decided = decided(&mut election, Duration::from_secs(60)).await;
    assert_eq!(decided, (ServerState::Leading, 3));

    let start = store.leader_start(3, verifier(NET, 3), 10, 5).unwrap();
    let leading = settings(NET);
    let status = Arc::new(Mutex::new(LeaderStatus::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (sender, receiver) = inputs().unwrap();
    let thread = {
        let (status, stop, sender) = (status.clone(), stop.clone(), sender.clone());
        std::thread::spawn(move || {
            let mut store = store;
            let result = lead(&leading, start, &mut store, (sender, receiver), &status, &stop);
            (result, store)
        })
    };

    let (status_for_wait, one_ref, two_ref) = (status.clone(), &one, &two);
    tokio::task::block_in_place(|| {
        wait_until(
            "both ZooKeeper servers follow ferrokeeper",
            Duration::from_secs(60),
            || {
                let status = status_for_wait.lock().unwrap().clone();
                status.established && status.synced_learners == [1, 2]
            },
        );
        for sid in 1..=2 {
            wait_until(
                &format!("ZooKeeper {sid} serves as a follower"),
                Duration::from_secs(20),
                || mode(NET, sid).as_deref() == Some("follower"),
            );
        }
        assert_eq!(status.lock().unwrap().epoch, 1, "{}", one_ref.log());
        one_ref.wait_for_log("FOLLOWING - LEADER ELECTION TOOK", Duration::from_secs(1));
        two_ref.wait_for_log("FOLLOWING - LEADER ELECTION TOOK", Duration::from_secs(1));

        // ferrokeeper proposes; both followers log, ack, commit and serve it.
        sender
            .send(LeaderInput::Propose(create_txn(
                "/from-ferrokeeper",
                b"proposed by the leader",
            )))
            .unwrap();
        sender
            .send(LeaderInput::Propose(create_txn("/from-ferrokeeper/child", b"second")))
            .unwrap();
        wait_until("the proposals commit", Duration::from_secs(10), || {
            status_for_wait.lock().unwrap().last_committed == 0x1_0000_0002
        });
        for sid in 1..=2 {
            wait_until(
                &format!("ZooKeeper {sid} applied both"),
                Duration::from_secs(10),
                || zxid(NET, sid) == Some(0x1_0000_0002),
            );
            let mut client = Client::connect(NET, sid);
            assert_eq!(
                client.get_data("/from-ferrokeeper").as_deref(),
                Some(&b"proposed by the leader"[..])
            );
            assert_eq!(
                client.get_data("/from-ferrokeeper/child").as_deref(),
                Some(&b"second"[..])
            );
        }
        // Neither follower lost the leader on the way (that is logged once leading stops below).
        for zookeeper in [one_ref, two_ref] {
            assert!(
                !zookeeper.log().contains("Exception when following the leader"),
                "{}",
                zookeeper.log()
            );
        }
    });

    stop.store(true, Ordering::Relaxed);
    let (result, store) = tokio::task::block_in_place(|| thread.join().unwrap());
    assert!(matches!(result, Err(LeadError::Stopped)), "{result:?}");
    assert_eq!(store.last_processed_zxid(), 0x1_0000_0002);
    assert_eq!(store.epochs().unwrap(), (1, 1));
}

/// The leading loop reads every learner's socket itself: a learner that sends what is not a
/// packet, or goes away, is dropped, and another learner is still read and answered.
#[test]
fn a_learner_that_sends_garbage_or_leaves_is_dropped_and_the_others_are_still_served() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use ferrokeeper::proto::quorum::{decode_packet, packet_type, LearnerInfo, QuorumPacket};
    use ferrokeeper::jute::Encode;

    const NET: u8 = 46;
    let dir = temp_dir("leader-garbage");
    let store = ReplicaStore::open(Layout::new(&dir, &dir), false).unwrap();
    let start = store.leader_start(3, verifier(NET, 3), 10, 5).unwrap();
    let leading = settings(NET);
    let address = leading.listen;
    let status = Arc::new(Mutex::new(LeaderStatus::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (sender, receiver) = inputs().unwrap();
    let thread = {
        let (status, stop) = (status.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut store = store;
            lead(&leading, start, &mut store, (sender, receiver), &status, &stop)
        })
    };
    let connect = || {
        let mut stream = None;
        wait_until("the quorum port listens", Duration::from_secs(10), || {
            stream = TcpStream::connect(address).ok();
            stream.is_some()
        });
        let stream = stream.unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
    };

    // A packet whose data length is far above the limit: closed.
    let mut garbage = connect();
    let mut bad = vec![0, 0, 0, 11];
    bad.extend_from_slice(&[0; 8]);
    bad.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
    garbage.write_all(&bad).unwrap();
    // Well within initLimit (5 s here), after which the leader would close it anyway (and, with
    // no quorum by then, stop leading).
    garbage.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut byte = [0u8; 1];
    match garbage.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("a learner that sent garbage is still connected: {other:?}"),
    }

    // A learner that connects and leaves at once.
    drop(connect());

    // A learner that says who it is gets the leader's epoch (a quorum: the leader and it).
    let mut learner = connect();
    let info = LearnerInfo { server_id: 1, protocol_version: 0x10000, config_version: 0 };
    let mut out = bytes::BytesMut::new();
    QuorumPacket::with_data(packet_type::FOLLOWERINFO, 0, info.to_bytes()).encode(&mut out);
    learner.write_all(&out).unwrap();
    let mut read = Vec::new();
    let packet = loop {
        if let Some((packet, _)) = decode_packet(&read, 1 << 20).unwrap() {
            break packet;
        }
        let mut chunk = [0u8; 4096];
        let n = learner.read(&mut chunk).expect("the leader answers FOLLOWERINFO");
        assert!(n > 0, "the leader closed a learner that sent FOLLOWERINFO");
        read.extend_from_slice(&chunk[..n]);
    };
    assert_eq!(packet.packet_type, packet_type::LEADERINFO);
    wait_until("only the last learner is still connected", Duration::from_secs(10), || {
        status.lock().unwrap().learners == 1
    });

    stop.store(true, Ordering::Relaxed);
    let result = thread.join().unwrap();
    assert!(matches!(result, Err(LeadError::Stopped)), "{result:?}");
    drop(learner);
    let _ = std::fs::remove_dir_all(&dir);
}
