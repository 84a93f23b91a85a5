//! What the quorum tests share: real ZooKeeper 3.8 quorum members (Debian's package, which
//! `scripts/install-test-deps.sh` installs) on loopback addresses of their own, four-letter
//! words, and a minimal client speaking the jute protocol through the crate's own records.
//!
//! An ensemble lives on `127.0.<net>.<sid>`, every member with quorum port 2888, election port
//! 3888 and client port 2181, so tests with different `net`s run in parallel.

#![allow(dead_code)] // each test file uses its own part of this

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use ferrokeeper::jute::{Decode, Encode};
use ferrokeeper::proto::election::ServerState;
use ferrokeeper::proto::{
    open_acl_unsafe, ConnectRequest, ConnectResponse, CreateRequest, PathRequest, PathWatchRequest, ReplyHeader,
    RequestHeader, SetDataRequest,
};
use ferrokeeper::zab::election::{Election, ElectionTimeouts};
use ferrokeeper::zab::peers::{self, Command as ElectionCommand, ElectionHandle, PeerSettings};
use ferrokeeper::zab::quorum::{Member, QuorumVerifier};

pub const QUORUM_PORT: u16 = 2888;
pub const ELECTION_PORT: u16 = 3888;
pub const CLIENT_PORT: u16 = 2181;

pub fn host(net: u8, sid: i64) -> String {
    format!("127.0.{net}.{sid}")
}

/// Members `1..=count`, all participants.
pub fn members(net: u8, count: i64) -> Vec<Member> {
    (1..=count)
        .map(|sid| Member {
            sid,
            participant: true,
            line: format!("{}:{QUORUM_PORT}:{ELECTION_PORT}:participant", host(net, sid)),
        })
        .collect()
}

pub fn verifier(net: u8, count: i64) -> QuorumVerifier {
    QuorumVerifier::majority(members(net, count), 0)
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrokeeper-quorum-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A real ZooKeeper quorum member, killed when dropped.
pub struct ZooKeeper {
    child: Child,
    log: PathBuf,
}

/// zoo.cfg of member `sid` of the ensemble `1..=count` on `net`, with its data under `data`.
pub fn member_config(net: u8, sid: i64, count: i64, data: &std::path::Path, extra: &str) -> String {
    let mut cfg = format!(
        "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={CLIENT_PORT}\n\
         clientPortAddress={}\n4lw.commands.whitelist=*\nadmin.enableServer=false\n{extra}",
        data.display(),
        host(net, sid)
    );
    for m in members(net, count) {
        cfg.push_str(&format!("server.{}={}\n", m.sid, m.line));
    }
    cfg
}

/// Writes a member's `zoo.cfg` and `myid` under `dir`; returns the config path.
fn write_member(dir: &std::path::Path, net: u8, sid: i64, count: i64, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/myid"), format!("{sid}\n")).unwrap();
    std::fs::write(dir.join("zoo.cfg"), member_config(net, sid, count, &dir.join("data"), extra)).unwrap();
    dir.join("zoo.cfg")
}

impl ZooKeeper {
    /// Member `sid` of the ensemble `1..=count` on `net`, with `extra` zoo.cfg lines.
    pub fn start(net: u8, sid: i64, count: i64, extra: &str) -> ZooKeeper {
        let dir = temp_dir(&format!("zk-{net}-{sid}"));
        let cfg = write_member(&dir, net, sid, count, extra);
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("java")
            .args([
                "-Xmx256m",
                "-cp",
                "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
            ])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(cfg)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("java runs (scripts/install-test-deps.sh installs ZooKeeper)");
        ZooKeeper { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has `text`.
    pub fn wait_for_log(&self, text: &str, within: Duration) {
        wait_until(&format!("ZooKeeper logs {text:?}"), within, || {
            self.log().contains(text)
        });
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A ferrokeeper quorum member (the crate's binary), killed when dropped.
pub struct Ferrokeeper {
    child: Option<Child>,
    dir: PathBuf,
    pub sid: i64,
}

impl Ferrokeeper {
    /// Member `sid` of the ensemble `1..=count` on `net`, with `extra` zoo.cfg lines.
    pub fn start(net: u8, sid: i64, count: i64, extra: &str) -> Ferrokeeper {
        let dir = temp_dir(&format!("fk-{net}-{sid}"));
        write_member(&dir, net, sid, count, extra);
        let mut server = Ferrokeeper { child: None, dir, sid };
        server.restart();
        server
    }

    /// Starts the binary again on the same data (after `kill`).
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferrokeeper"))
            .arg(self.dir.join("zoo.cfg"))
            .env("RUST_LOG", "info,ferrokeeper=debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown snapshot, no goodbye to the peers.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Ferrokeeper {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < within {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

/// A four-letter word's answer from a server's client port (empty if it does not answer).
pub fn four_letter(net: u8, sid: i64, word: &str) -> String {
    let Ok(mut stream) = TcpStream::connect((host(net, sid).as_str(), CLIENT_PORT)) else {
        return String::new();
    };
    let _ = stream.write_all(word.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// `srvr`'s Mode, once the server serves.
pub fn mode(net: u8, sid: i64) -> Option<String> {
    four_letter(net, sid, "srvr")
        .lines()
        .find_map(|l| l.strip_prefix("Mode: ").map(str::to_string))
}

/// `srvr`'s Zxid.
pub fn zxid(net: u8, sid: i64) -> Option<i64> {
    four_letter(net, sid, "srvr")
        .lines()
        .find_map(|l| l.strip_prefix("Zxid: 0x").and_then(|z| i64::from_str_radix(z, 16).ok()))
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

fn try_read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0; i32::from_be_bytes(len).max(0) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

fn read_frame(stream: &mut TcpStream) -> Bytes {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    Bytes::from(body)
}

/// A client session on one server.
pub struct Client {
    stream: TcpStream,
    xid: i32,
    /// The session's id and password, as the server answered.
    pub session: (i64, Bytes),
}

impl Client {
    pub fn connect(net: u8, sid: i64) -> Client {
        Client::resume(net, sid, (0, Bytes::from_static(&[0; 16]))).expect("the server accepts a new session")
    }

    /// Connects with `session` (0 for a new one); `None` if the server refuses it (closes the
    /// connection or answers with a zero timeout, as for an expired or unknown session).
    pub fn resume(net: u8, sid: i64, session: (i64, Bytes)) -> Option<Client> {
        let mut stream = TcpStream::connect((host(net, sid).as_str(), CLIENT_PORT)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let connect = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: 10_000,
            session_id: session.0,
            passwd: session.1,
        };
        stream.write_all(&frame(&[&connect])).ok()?;
        let mut reply = try_read_frame(&mut stream)?;
        let response = ConnectResponse::decode(&mut reply).ok()?;
        if response.time_out <= 0 {
            return None;
        }
        Some(Client {
            stream,
            xid: 0,
            session: (response.session_id, response.passwd),
        })
    }

    fn call(&mut self, op: i32, request: &dyn Encode) -> (i32, Bytes) {
        self.xid += 1;
        let header = RequestHeader { xid: self.xid, op };
        self.stream.write_all(&frame(&[&header, request])).unwrap();
        let mut reply = read_frame(&mut self.stream);
        let header = ReplyHeader::decode(&mut reply).unwrap();
        assert_eq!(header.xid, self.xid);
        (header.err, reply)
    }

    /// Creates a persistent node; the error code (0 on success).
    pub fn create(&mut self, path: &str, data: &[u8]) -> i32 {
        self.create_with_flags(path, data, 0)
    }

    /// Creates a node with create flags (1 = ephemeral); the error code.
    pub fn create_with_flags(&mut self, path: &str, data: &[u8], flags: i32) -> i32 {
        let request = CreateRequest {
            path: path.to_string(),
            data: Some(Bytes::copy_from_slice(data)),
            acl: open_acl_unsafe(),
            flags,
        };
        self.call(1, &request).0
    }

    /// Sets a node's data (any version); the error code.
    pub fn set_data(&mut self, path: &str, data: &[u8]) -> i32 {
        let request = SetDataRequest {
            path: path.to_string(),
            data: Some(Bytes::copy_from_slice(data)),
            version: -1,
        };
        self.call(5, &request).0
    }

    /// `sync` (makes this server catch up with the leader); the error code.
    pub fn sync(&mut self, path: &str) -> i32 {
        self.call(9, &PathRequest { path: path.to_string() }).0
    }

    /// A node's data, `None` if it does not exist.
    pub fn get_data(&mut self, path: &str) -> Option<Vec<u8>> {
        let (err, mut reply) = self.call(
            4,
            &PathWatchRequest {
                path: path.to_string(),
                watch: false,
            },
        );
        if err != 0 {
            return None;
        }
        let len = reply.get_i32();
        Some(reply[..len.max(0) as usize].to_vec())
    }

    pub fn close(mut self) {
        self.xid += 1;
        self.stream
            .write_all(&frame(&[&RequestHeader { xid: self.xid, op: -11 }]))
            .unwrap();
        read_frame(&mut self.stream);
    }
}

/// Starts ferrokeeper's election for `sid` in the ensemble `1..=count` on `net` (fresh: zxid 0).
pub async fn start_election(net: u8, sid: i64, count: i64) -> ElectionHandle {
    let election = Election::new(sid, verifier(net, count), ElectionTimeouts::default(), 0, 0);
    let peers: BTreeMap<i64, String> = (1..=count)
        .filter(|&other| other != sid)
        .map(|other| (other, format!("{}:{ELECTION_PORT}", host(net, other))))
        .collect();
    let settings = PeerSettings {
        my_sid: sid,
        listen: format!("{}:{ELECTION_PORT}", host(net, sid)).parse().unwrap(),
        announce: format!("{}:{ELECTION_PORT}", host(net, sid)),
        peers,
        connect_timeout: Duration::from_secs(5),
    };
    let handle = peers::start(settings, election).await.expect("election listener binds");
    handle
        .commands
        .send(ElectionCommand::Look {
            last_logged_zxid: 0,
            current_epoch: 0,
        })
        .await
        .unwrap();
    handle
}

/// The election's outcome (state, leader), once it decides.
pub async fn decided(handle: &mut ElectionHandle, within: Duration) -> (ServerState, i64) {
    let waited = tokio::time::timeout(within, handle.status.wait_for(|s| s.last_outcome.is_some())).await;
    let status = *waited
        .expect("the election decides in time")
        .expect("the election task runs");
    (status.state, status.vote.leader)
}
