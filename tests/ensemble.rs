//! Ensembles of the `ferrokeeper` binary as operators run them, from `zoo.cfg` files with
//! `server.N` lines and `myid`: three ferrokeeper servers that elect a leader, forward writes,
//! replicate them and survive the loss of the leader; and mixed ensembles in which ferrokeeper
//! leads real Apache ZooKeeper 3.8 followers or follows a ZooKeeper leader, each serving clients.

use std::time::Duration;

mod common;
use common::{four_letter, mode, wait_until, zxid, Client, Ferrokeeper, ZooKeeper};

/// The body of an HTTP GET.
fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// Waits until every server in `sids` serves, one as leader, and returns the leader's sid.
fn leader_among(net: u8, sids: &[i64], within: Duration) -> i64 {
    let mut leader = 0;
    wait_until(&format!("one leader and the rest followers among {sids:?}"), within, || {
        let modes: Vec<Option<String>> = sids.iter().map(|&sid| mode(net, sid)).collect();
        let leaders: Vec<i64> =
            sids.iter().zip(&modes).filter(|(_, m)| m.as_deref() == Some("leader")).map(|(&s, _)| s).collect();
        let followers = modes.iter().filter(|m| m.as_deref() == Some("follower")).count();
        if leaders.len() == 1 && followers == sids.len() - 1 {
            leader = leaders[0];
            true
        } else {
            false
        }
    });
    leader
}

/// Waits until every server in `sids` has applied the leader's last zxid.
fn caught_up(net: u8, sids: &[i64], leader: i64) {
    let target = zxid(net, leader).expect("the leader answers srvr");
    for &sid in sids {
        wait_until(&format!("server {sid} applied {target:#x}"), Duration::from_secs(10), || {
            zxid(net, sid).is_some_and(|z| z >= target)
        });
    }
}

fn data(net: u8, sid: i64, path: &str) -> Option<Vec<u8>> {
    Client::connect(net, sid).get_data(path)
}

/// `mntr`'s keys, without the labelled ones (per-namespace and per-learner summary sets), which
/// depend on the znodes written and the learners connected.
fn mntr_keys(net: u8, sid: i64) -> std::collections::BTreeSet<String> {
    four_letter(net, sid, "mntr")
        .lines()
        .filter_map(|line| line.split('\t').next())
        .filter(|key| !key.contains("per_namespace") && !key.contains("learner_handler_qp"))
        .map(str::to_string)
        .collect()
}

fn difference(ours: &std::collections::BTreeSet<String>, theirs: &std::collections::BTreeSet<String>) -> String {
    format!(
        "only ferrokeeper: {:?}\nonly ZooKeeper: {:?}",
        ours.difference(theirs).collect::<Vec<_>>(),
        theirs.difference(ours).collect::<Vec<_>>()
    )
}

fn mntr_value(net: u8, sid: i64, key: &str) -> Option<String> {
    four_letter(net, sid, "mntr")
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}\t")).map(str::to_string))
}

#[test]
fn three_ferrokeeper_servers_replicate_writes_and_survive_losing_the_leader() {
    const NET: u8 = 46;
    // Each member also serves Prometheus metrics on its own address, as ZooKeeper's provider does.
    let mut servers: Vec<Ferrokeeper> = (1..=3)
        .map(|sid| {
            let metrics = format!(
                "metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
                 metricsProvider.httpHost=127.0.{NET}.{sid}\nmetricsProvider.httpPort=7000\n"
            );
            Ferrokeeper::start(NET, sid, 3, &metrics)
        })
        .collect();
    let all = [1, 2, 3];
    let leader = leader_among(NET, &all, Duration::from_secs(60));
    // Fresh servers all have zxid 0, so the largest sid wins, as in ZooKeeper.
    assert_eq!(leader, 3, "{}", servers[2].log());
    let followers: Vec<i64> = all.iter().copied().filter(|&s| s != leader).collect();
    assert!(servers[2].log().contains("LEADING - LEADER ELECTION TOOK"), "{}", servers[2].log());
    assert_eq!(mntr_value(NET, leader, "zk_server_state").as_deref(), Some("leader"));
    // The quorum series the community Grafana dashboard (10465) queries are in the leader's scrape.
    let scrape = http_get(&format!("127.0.{NET}.{leader}:7000"), "/metrics");
    let dashboard = include_str!("../compat-tests/admin/dashboard_10465_metrics.txt");
    for name in dashboard.lines().filter(|l| l.ends_with(" quorum")).filter_map(|l| l.split_whitespace().next()) {
        assert!(scrape.lines().any(|l| l.starts_with(&format!("{name} "))), "{name} missing from the scrape:\n{scrape}");
    }
    assert!(scrape.contains("\nsynced_followers 2.0\n") && scrape.contains("\nquorum_size 3.0\n"), "{scrape}");
    assert!(scrape.contains("\nelection_time_count 1.0\n"), "{scrape}");

    // A write through a follower is forwarded to the leader, committed, and read everywhere.
    let mut client = Client::connect(NET, followers[0]);
    assert_eq!(client.create("/via-follower", b"forwarded"), 0);
    assert_eq!(client.get_data("/via-follower").as_deref(), Some(&b"forwarded"[..]), "read-your-writes on the follower");
    assert_eq!(client.create("/via-follower", b"again"), -110, "NodeExists comes back from the leader's prep");
    let mut on_leader = Client::connect(NET, leader);
    assert_eq!(on_leader.set_data("/via-follower", b"changed on the leader"), 0);
    // A sync makes the other follower catch up before its read.
    let mut other = Client::connect(NET, followers[1]);
    assert_eq!(other.sync("/via-follower"), 0);
    assert_eq!(other.get_data("/via-follower").as_deref(), Some(&b"changed on the leader"[..]));
    // An ephemeral node lives as long as its session, which lives on a follower.
    assert_eq!(client.create_with_flags("/ephemeral", b"", 1), 0);
    caught_up(NET, &all, leader);
    for &sid in &all {
        assert_eq!(data(NET, sid, "/via-follower").as_deref(), Some(&b"changed on the leader"[..]), "server {sid}");
        assert!(data(NET, sid, "/ephemeral").is_some(), "server {sid}");
    }

    // The leader dies (SIGKILL): the other two elect one of themselves and keep every write.
    servers[leader as usize - 1].kill();
    let new_leader = leader_among(NET, &followers, Duration::from_secs(60));
    // The session on the surviving follower was kept alive by its pings; its ephemeral stays.
    for &sid in &followers {
        assert_eq!(data(NET, sid, "/via-follower").as_deref(), Some(&b"changed on the leader"[..]), "server {sid}");
    }
    let survivor = followers.iter().copied().find(|&s| s != new_leader).unwrap();
    let mut after = Client::connect(NET, survivor);
    assert_eq!(after.create("/after-failover", b"new epoch"), 0);

    // The old leader comes back as a follower and catches up on what it missed.
    servers[leader as usize - 1].restart();
    assert_eq!(leader_among(NET, &all, Duration::from_secs(60)), new_leader);
    caught_up(NET, &all, new_leader);
    assert_eq!(data(NET, leader, "/after-failover").as_deref(), Some(&b"new epoch"[..]), "{}", servers[leader as usize - 1].log());
    assert!(zxid(NET, leader).unwrap() >> 32 >= 2, "the write is in a later epoch");
    drop(client);
}

#[test]
fn zookeeper_followers_serve_clients_of_a_ferrokeeper_leader() {
    const NET: u8 = 48;
    let one = ZooKeeper::start(NET, 1, 3, "");
    let two = ZooKeeper::start(NET, 2, 3, "");
    let fk = Ferrokeeper::start(NET, 3, 3, "");
    let leader = leader_among(NET, &[1, 2, 3], Duration::from_secs(90));
    assert_eq!(leader, 3, "{}\n{}", fk.log(), one.log());
    // Global sessions and writes from ZooKeeper's followers go to ferrokeeper's pipeline.
    let mut on_zk = Client::connect(NET, 1);
    assert_eq!(on_zk.create("/from-zookeeper-client", b"via a ZooKeeper follower"), 0, "{}", fk.log());
    assert_eq!(on_zk.create_with_flags("/zk-ephemeral", b"", 1), 0);
    let mut on_fk = Client::connect(NET, 3);
    assert_eq!(on_fk.create("/from-ferrokeeper-client", b"on the leader"), 0);
    caught_up(NET, &[1, 2, 3], 3);
    for sid in 1..=3 {
        assert_eq!(data(NET, sid, "/from-zookeeper-client").as_deref(), Some(&b"via a ZooKeeper follower"[..]), "server {sid}");
        assert_eq!(data(NET, sid, "/from-ferrokeeper-client").as_deref(), Some(&b"on the leader"[..]), "server {sid}");
        assert!(data(NET, sid, "/zk-ephemeral").is_some(), "server {sid}");
    }
    assert_eq!(mntr_value(NET, 3, "zk_synced_followers").as_deref(), Some("2"), "{}", four_letter(NET, 3, "mntr"));
    assert_eq!(mntr_value(NET, 3, "zk_learners").as_deref(), Some("2"));
    assert_eq!(mntr_value(NET, 3, "zk_quorum_size").as_deref(), Some("3"));
    assert_eq!(mntr_value(NET, 3, "zk_peer_state").as_deref(), Some("leading - broadcast"));
    let sizes = mntr_value(NET, 3, "zk_max_proposal_size").unwrap().parse::<i64>().unwrap();
    assert!(sizes > 0, "proposals were made");
    assert!(four_letter(NET, 3, "srvr").contains("Proposal sizes last/min/max: "));
    // The leader's mntr has the keys a ZooKeeper leader's has (captured from one).
    let reference: std::collections::BTreeSet<String> = include_str!("data/mntr_keys_zookeeper_3.8.0_leader.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    let ours = mntr_keys(NET, 3);
    assert_eq!(ours, reference, "{}", difference(&ours, &reference));
    // And, as a ZooKeeper leader, its send queue to each learner, labelled by sid.
    let mut expected = std::collections::BTreeSet::new();
    for sid in [1, 2] {
        for stat in ["avg", "min", "max", "cnt", "sum"] {
            expected.insert(format!("zk_{stat}_{sid}_learner_handler_qp_size"));
        }
        for stat in ["avg", "min", "max", "cnt", "sum", "p50", "p95", "p99", "p999"] {
            expected.insert(format!("zk_{stat}_{sid}_learner_handler_qp_time_ms"));
        }
    }
    let queue_keys = || -> std::collections::BTreeSet<String> {
        four_letter(NET, 3, "mntr")
            .lines()
            .filter_map(|line| line.split('\t').next())
            .filter(|key| key.contains("learner_handler_qp"))
            .map(str::to_string)
            .collect()
    };
    // The pipeline takes the samples once per half tick.
    wait_until("the leader's send-queue samples are in mntr", Duration::from_secs(5), || {
        queue_keys().len() >= expected.len()
    });
    assert_eq!(queue_keys(), expected);
    // Closing the session removes its ephemeral everywhere.
    on_zk.close();
    caught_up(NET, &[1, 2, 3], 3);
    for sid in 1..=3 {
        assert!(data(NET, sid, "/zk-ephemeral").is_none(), "server {sid}");
    }
    drop(two);
}

#[test]
fn ferrokeeper_follows_a_zookeeper_leader_and_serves_its_clients() {
    const NET: u8 = 49;
    // ZooKeeper 3 is looking before the others start, so the first quorum always counts its vote
    // and elects it (highest sid, equal zxids). Started together, ferrokeeper 1 and ZooKeeper 2
    // could form a quorum while 3's JVM was still starting, and elect 2.
    let three = ZooKeeper::start(NET, 3, 3, "");
    three.wait_for_log("QuorumPeer - LOOKING", Duration::from_secs(60));
    let fk = Ferrokeeper::start(NET, 1, 3, "");
    let two = ZooKeeper::start(NET, 2, 3, "");
    let leader = leader_among(NET, &[1, 2, 3], Duration::from_secs(90));
    assert_eq!(leader, 3, "{}\n{}", fk.log(), three.log());
    let mut on_fk = Client::connect(NET, 1);
    assert_eq!(on_fk.create("/from-ferrokeeper-follower", b"forwarded to ZooKeeper"), 0, "{}", fk.log());
    assert_eq!(on_fk.get_data("/from-ferrokeeper-follower").as_deref(), Some(&b"forwarded to ZooKeeper"[..]));
    let mut on_zk = Client::connect(NET, 3);
    assert_eq!(on_zk.create("/from-zookeeper-leader", b"proposed by ZooKeeper"), 0);
    assert_eq!(on_fk.sync("/"), 0);
    assert_eq!(on_fk.get_data("/from-zookeeper-leader").as_deref(), Some(&b"proposed by ZooKeeper"[..]));
    caught_up(NET, &[1, 2, 3], 3);
    for sid in 1..=3 {
        assert_eq!(data(NET, sid, "/from-ferrokeeper-follower").as_deref(), Some(&b"forwarded to ZooKeeper"[..]), "server {sid}");
    }
    // ZooKeeper's leader counts ferrokeeper among its synced followers.
    assert_eq!(mntr_value(NET, 3, "zk_synced_followers").as_deref(), Some("2"));
    // A follower's mntr, srvr and /zookeeper/config look like ZooKeeper's follower's.
    let (ours, theirs) = (mntr_keys(NET, 1), mntr_keys(NET, 2));
    assert!(theirs.len() > 400, "ZooKeeper's follower answers mntr: {theirs:?}");
    assert_eq!(mntr_value(NET, 1, "zk_server_state").as_deref(), Some("follower"));
    assert_eq!(ours, theirs, "{}", difference(&ours, &theirs));
    for key in ["zk_server_state", "zk_peer_state", "zk_quorum_size"] {
        assert_eq!(mntr_value(NET, 1, key), mntr_value(NET, 2, key), "{key}");
    }
    let config = data(NET, 1, "/zookeeper/config").unwrap();
    assert!(String::from_utf8_lossy(&config).starts_with("server.1=127.0.49.1:2888:3888:participant\n"));
    assert_eq!(Some(config), data(NET, 2, "/zookeeper/config"));
    assert!(mntr_value(NET, 1, "zk_cnt_election_time").is_some_and(|n| n == "1"));
    drop(two);
}
