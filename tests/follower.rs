//! A ferrokeeper follower syncing from a real Apache ZooKeeper 3.8 leader (Debian's package):
//! discovery, a SNAP or DIFF sync, NEWLEADER and UPTODATE, then proposals and commits as the
//! leader takes writes, all on ferrokeeper's own storage, which a restart reads back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use ferrokeeper::jute::{Decode, Encode};
use ferrokeeper::proto::{open_acl_unsafe, ConnectRequest, CreateRequest, ReplyHeader, RequestHeader};
use ferrokeeper::storage::follower::DiskFollowerStore;
use ferrokeeper::storage::Layout;
use ferrokeeper::zab::follower::{follow, FollowError, FollowerSettings, FollowerStore, StoreError};
use ferrokeeper::zab::learner::{LearnerStart, Proposal};

const NET: u8 = 44;
const QUORUM_PORT: u16 = 2888;
const CLIENT_PORT: u16 = 2181;

fn host(sid: i64) -> String {
    format!("127.0.{NET}.{sid}")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrokeeper-follower-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A real ZooKeeper member of the ensemble {1, 2 (ZooKeeper), 3 (ferrokeeper)}.
struct ZooKeeper {
    child: Child,
    log: PathBuf,
}

impl ZooKeeper {
    fn start(sid: i64) -> ZooKeeper {
        let dir = temp_dir(&format!("zk{sid}"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("data/myid"), format!("{sid}\n")).unwrap();
        let mut cfg = format!(
            "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={CLIENT_PORT}\n\
             clientPortAddress={}\n4lw.commands.whitelist=*\nadmin.enableServer=false\n",
            dir.join("data").display(),
            host(sid)
        );
        for member in 1..=3 {
            cfg.push_str(&format!("server.{member}={}:{QUORUM_PORT}:3888\n", host(member)));
        }
        std::fs::write(dir.join("zoo.cfg"), cfg).unwrap();
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("java")
            .args([
                "-Xmx256m",
                "-cp",
                "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
            ])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(dir.join("zoo.cfg"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("java runs (scripts/install-test-deps.sh installs ZooKeeper)");
        ZooKeeper { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn four_letter(sid: i64, word: &str) -> String {
    let Ok(mut stream) = TcpStream::connect((host(sid).as_str(), CLIENT_PORT)) else {
        return String::new();
    };
    let _ = stream.write_all(word.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < within {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

fn frame(parts: &[&dyn Encode]) -> Vec<u8> {
    let mut body = BytesMut::new();
    for part in parts {
        part.encode(&mut body);
    }
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn read_frame(stream: &mut TcpStream) -> Bytes {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    Bytes::from(body)
}

/// Creates a persistent znode through ZooKeeper server `sid`'s client port (a session of its own).
fn create(sid: i64, path: &str, data: &[u8]) {
    let mut stream = TcpStream::connect((host(sid).as_str(), CLIENT_PORT)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let connect = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        time_out: 10_000,
        session_id: 0,
        passwd: Bytes::from_static(&[0; 16]),
    };
    stream.write_all(&frame(&[&connect])).unwrap();
    read_frame(&mut stream);
    let header = RequestHeader { xid: 1, op: 1 };
    let request = CreateRequest {
        path: path.to_string(),
        data: Some(Bytes::copy_from_slice(data)),
        acl: open_acl_unsafe(),
        flags: 0,
    };
    stream.write_all(&frame(&[&header, &request])).unwrap();
    let mut reply = read_frame(&mut stream);
    let reply_header = ReplyHeader::decode(&mut reply).unwrap();
    assert_eq!(reply_header.err, 0, "create {path} on ZooKeeper {sid}");
    assert_eq!(String::decode(&mut reply).unwrap(), path);
    // closeSession, so the leader does not keep the session around.
    stream.write_all(&frame(&[&RequestHeader { xid: 2, op: -11 }])).unwrap();
    let mut reply = read_frame(&mut stream);
    assert_eq!(reply.get_i32(), 2);
}

/// The follower's store, shared with the test that looks at it.
struct Shared(Arc<Mutex<DiskFollowerStore>>);

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
}

fn data_of(store: &DiskFollowerStore, path: &str) -> Option<Vec<u8>> {
    store
        .tree()
        .get_data(path)
        .map(|(data, _)| data.map(|d| d.to_vec()).unwrap_or_default())
}

fn learner_start(store: &DiskFollowerStore) -> LearnerStart {
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
    Arc<Mutex<DiskFollowerStore>>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<FollowError>,
) {
    let layout = Layout::new(layout, layout);
    let store = Arc::new(Mutex::new(DiskFollowerStore::open(layout, false).unwrap()));
    let start = learner_start(&store.lock().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let settings = FollowerSettings {
        leader: format!("{}:{QUORUM_PORT}", host(2)),
        init_limit: Duration::from_secs(5),
        sync_limit: Duration::from_millis(2_500),
        data_max_bytes: 0xfffff + 1024,
    };
    let thread = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || follow(&settings, start, &mut Shared(store), &stop).unwrap_err())
    };
    (store, stop, thread)
}

#[test]
fn ferrokeeper_syncs_from_a_zookeeper_leader_and_follows_its_writes() {
    let one = ZooKeeper::start(1);
    let two = ZooKeeper::start(2);
    wait_until("ZooKeeper 2 leads", Duration::from_secs(60), || {
        four_letter(2, "srvr").contains("Mode: leader")
    });
    create(2, "/synced", b"before ferrokeeper joined");

    let dir = temp_dir("fk3");
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
    let applied = store.lock().unwrap().last_processed_zxid();
    let leader_zxid = four_letter(2, "srvr")
        .lines()
        .find_map(|l| l.strip_prefix("Zxid: 0x").map(|z| i64::from_str_radix(z, 16).unwrap()))
        .unwrap();
    assert_eq!(applied, leader_zxid, "ferrokeeper is at the leader's last zxid");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ended = thread.join().unwrap();
    assert!(matches!(ended, FollowError::Stopped), "{ended}");
    drop(store);

    // What was synced and logged is on disk: a restart rebuilds the same tree.
    let reopened = DiskFollowerStore::open(Layout::new(&dir, &dir), false).unwrap();
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
