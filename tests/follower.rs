//! A ferrokeeper follower syncing from a real Apache ZooKeeper 3.8 leader (Debian's package):
//! discovery, a SNAP or DIFF sync, NEWLEADER and UPTODATE, then proposals and commits as the
//! leader takes writes, all on ferrokeeper's own storage, which a restart reads back.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferrokeeper::storage::replica::ReplicaStore;
use ferrokeeper::storage::Layout;
use ferrokeeper::zab::follower::{follow, outgoing, FollowError, FollowerSettings, FollowerStore, StoreError};
use ferrokeeper::zab::learner::{LearnerStart, Proposal};

const NET: u8 = 44;

mod common;
use common::{four_letter as four, host, temp_dir, wait_until, zxid, Client, ZooKeeper, QUORUM_PORT};

fn four_letter(sid: i64, word: &str) -> String {
    four(NET, sid, word)
}

/// Creates a persistent znode through ZooKeeper server `sid`'s client port (a session of its own).
fn create(sid: i64, path: &str, data: &[u8]) {
    let mut client = Client::connect(NET, sid);
    assert_eq!(client.create(path, data), 0, "create {path} on ZooKeeper {sid}");
    client.close();
}

/// The follower's store, shared with the test that looks at it.
struct Shared(Arc<Mutex<ReplicaStore>>);

impl FollowerStore for Shared {
    fn persist_accepted_epoch(&mut self, epoch: i64) -> Result<(), StoreError> {
        self.0.lock().unwrap().persist_accepted_epoch(epoch)
    }
    fn persist_current_epoch(&mut self, epoch: i64) -> Result<(), StoreError> {
        self.0.lock().unwrap().persist_current_epoch(epoch)
    }
    fn load_snapshot(&mut self, stream: Bytes, zxid: i64) -> Result<(), StoreError> {
        self.0.lock().unwrap().load_snapshot(stream, zxid)
    }
    fn truncate(&mut self, zxid: i64) -> Result<(), StoreError> {
        self.0.lock().unwrap().truncate(zxid)
    }
    fn apply_unlogged(&mut self, proposal: Proposal) -> Result<(), StoreError> {
        self.0.lock().unwrap().apply_unlogged(proposal)
    }
    fn take_snapshot(&mut self) -> Result<(), StoreError> {
        self.0.lock().unwrap().take_snapshot()
    }
    fn append(&mut self, proposal: Proposal) -> Result<(), StoreError> {
        self.0.lock().unwrap().append(proposal)
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        self.0.lock().unwrap().sync()
    }
    fn commit(&mut self, zxid: i64) -> Result<(), StoreError> {
        self.0.lock().unwrap().commit(zxid)
    }
    fn touched_sessions(&mut self) -> Vec<(i64, i32)> {
        self.0.lock().unwrap().touched_sessions()
    }
    fn serving(&mut self, epoch: i64) {
        self.0.lock().unwrap().serving(epoch)
    }
    fn sync_done(&mut self) {
        self.0.lock().unwrap().sync_done()
    }
    fn revalidated(&mut self, session_id: i64, valid: bool) {
        self.0.lock().unwrap().revalidated(session_id, valid)
    }
}

fn data_of(store: &ReplicaStore, path: &str) -> Option<Vec<u8>> {
    store
        .tree()
        .get_data(path)
        .map(|(data, _)| data.map(|d| d.to_vec()).unwrap_or_default())
}

fn learner_start(store: &ReplicaStore) -> LearnerStart {
    let (accepted_epoch, current_epoch) = store.epochs().unwrap();
    LearnerStart {
        my_sid: 3,
        config_version: 0,
        accepted_epoch,
        current_epoch,
        last_logged_zxid: store.last_logged_zxid().unwrap(),
    }
}

fn run_follower(
    layout: &Path,
) -> (
    Arc<Mutex<ReplicaStore>>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<FollowError>,
) {
    let layout = Layout::new(layout, layout);
    let store = Arc::new(Mutex::new(ReplicaStore::open(layout, false).unwrap()));
    let start = learner_start(&store.lock().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let settings = FollowerSettings {
        leader: format!("{}:{QUORUM_PORT}", host(NET, 2)),
        init_limit: Duration::from_secs(5),
        sync_limit: Duration::from_millis(2_500),
        data_max_bytes: 0xfffff + 1024,
    };
    let thread = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || follow(&settings, start, &mut Shared(store), outgoing(), &stop).unwrap_err())
    };
    (store, stop, thread)
}

#[test]
fn ferrokeeper_syncs_from_a_zookeeper_leader_and_follows_its_writes() {
    let one = ZooKeeper::start(NET, 1, 3, "");
    let two = ZooKeeper::start(NET, 2, 3, "");
    wait_until("ZooKeeper 2 leads", Duration::from_secs(60), || {
        four_letter(2, "srvr").contains("Mode: leader")
    });
    create(2, "/synced", b"before ferrokeeper joined");

    let dir = temp_dir("follower-fk3");
    let (store, stop, thread) = run_follower(&dir);
    wait_until("ferrokeeper serves after the sync", Duration::from_secs(20), || {
        store.lock().unwrap().serving_epoch().is_some()
    });
    assert_eq!(
        data_of(&store.lock().unwrap(), "/synced").as_deref(),
        Some(&b"before ferrokeeper joined"[..])
    );
    // The leader counts ferrokeeper among its synced followers.
    wait_until(
        "ZooKeeper's leader reports 2 synced followers",
        Duration::from_secs(10),
        || four_letter(2, "mntr").contains("zk_synced_followers\t2"),
    );

    // Writes on either ZooKeeper server reach ferrokeeper as proposals and commits.
    create(1, "/synced/one", b"through the follower");
    create(2, "/synced/two", b"through the leader");
    wait_until("ferrokeeper applied both writes", Duration::from_secs(10), || {
        let store = store.lock().unwrap();
        data_of(&store, "/synced/one").is_some() && data_of(&store, "/synced/two").is_some()
    });
    // The closeSession of the last create may still be on its way.
    let leader_zxid = zxid(NET, 2).unwrap();
    wait_until(
        "ferrokeeper is at the leader's last zxid",
        Duration::from_secs(10),
        || store.lock().unwrap().last_processed_zxid() == leader_zxid,
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ended = thread.join().unwrap();
    assert!(matches!(ended, FollowError::Stopped), "{ended}");
    drop(store);

    // What was synced and logged is on disk: a restart rebuilds the same tree.
    let reopened = ReplicaStore::open(Layout::new(&dir, &dir), false).unwrap();
    assert_eq!(reopened.last_processed_zxid(), leader_zxid);
    assert_eq!(
        data_of(&reopened, "/synced/two").as_deref(),
        Some(&b"through the leader"[..])
    );
    assert_eq!(reopened.epochs().unwrap(), (leader_zxid >> 32, leader_zxid >> 32));
    drop(reopened);

    // Following again from that state, after a write it missed: the leader sends a DIFF with the
    // missed txns this time, not a snapshot.
    create(1, "/synced/while-down", b"missed");
    let (store, stop, thread) = run_follower(&dir);
    create(1, "/synced/three", b"after the restart");
    wait_until(
        "ferrokeeper caught up after its restart",
        Duration::from_secs(20),
        || {
            let store = store.lock().unwrap();
            store.serving_epoch().is_some() && data_of(&store, "/synced/three").is_some()
        },
    );
    assert_eq!(
        data_of(&store.lock().unwrap(), "/synced/while-down").as_deref(),
        Some(&b"missed"[..])
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(thread.join().unwrap(), FollowError::Stopped));
    let leader_log = two.log();
    let syncs: Vec<&str> = leader_log
        .lines()
        .filter(|l| l.contains("Sending snapshot") || l.contains("Sending DIFF zxid=0x1000") && l.contains("sid: 3"))
        .collect();
    assert!(
        syncs.len() == 2 && syncs[0].contains("Sending snapshot") && syncs[1].contains("Sending DIFF"),
        "{syncs:?}"
    );
    for zookeeper in [&one, &two] {
        assert!(
            !zookeeper.log().contains("Exception when following the leader"),
            "{}",
            zookeeper.log()
        );
    }
}
