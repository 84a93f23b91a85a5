//! A null ensemble: three null servers (`null_server`) that replicate each write as a Zab quorum
//! must, and do nothing else: the floor of the ensemble rows.
//!
//! A write sent to a follower crosses loopback six times and waits for the syncs a quorum cannot
//! skip: the follower forwards it to the leader (REQUEST); the leader sends a PROPOSAL to every
//! follower, then syncs one record to its own log; each follower syncs one record to its log and
//! ACKs; the first ACKs that make a majority (the leader's own counts as one) get a COMMIT sent
//! to every follower; the follower that took the request answers it. Every member's log is on
//! the same disk, as in the bench's real ensembles, and every member is its own process. Each hop
//! wakes one thread, for a socket: a follower's thread reading the leader both syncs the
//! proposals and answers the clients on commit, and the leader's thread reading a follower both
//! proposes (and syncs) its requests and counts its ACKs. No tree, no sessions beyond a counter,
//! no election: member `leader` leads from the start.
//!
//! The quorum link's packets are this module's own (no Zab framing), of about Zab's sizes:
//! `length (u32) | kind (u8) | zxid (i64) | origin (u32) | tag (u64) | payload`, the payload
//! being the client request's body in a REQUEST and a PROPOSAL.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::floor_log::FloorLog;
use crate::null_server::{self, Conn, Reply, Shared, Wait, Writes};

/// Bytes of a packet's fixed part after its length: kind, zxid, origin, tag.
const PACKET_HEADER_BYTES: usize = 1 + 8 + 4 + 8;
/// Largest quorum packet read.
const PACKET_BYTES_MAX: usize = 1 << 20;
/// How long a follower tries to reach its leader before giving up.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);
/// The origin of a request a leader's own client sent.
const LEADER_ORIGIN: u32 = 0;
/// Requests forwarded and not yet committed, per member; past it a write fails its connection.
const PENDING_MAX: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hello = 0,
    Request = 1,
    Proposal = 2,
    Ack = 3,
    Commit = 4,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            0 => Kind::Hello,
            1 => Kind::Request,
            2 => Kind::Proposal,
            3 => Kind::Ack,
            4 => Kind::Commit,
            _ => return None,
        })
    }
}

struct Packet {
    kind: Kind,
    zxid: i64,
    origin: u32,
    tag: u64,
    payload: Bytes,
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Packet {
    fn new(kind: Kind, zxid: i64, origin: u32, tag: u64, payload: Bytes) -> Packet {
        Packet {
            kind,
            zxid,
            origin,
            tag,
            payload,
        }
    }

    fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(4 + PACKET_HEADER_BYTES + self.payload.len());
        out.put_u32((PACKET_HEADER_BYTES + self.payload.len()) as u32);
        out.put_u8(self.kind as u8);
        out.put_i64(self.zxid);
        out.put_u32(self.origin);
        out.put_u64(self.tag);
        out.extend_from_slice(&self.payload);
        out
    }

    fn read(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Packet> {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if !(PACKET_HEADER_BYTES..=PACKET_BYTES_MAX).contains(&len) {
            return Err(invalid(format!("quorum packet of {len} bytes")));
        }
        buf.resize(len, 0);
        stream.read_exact(buf)?;
        let mut bytes = Bytes::copy_from_slice(buf);
        let kind = bytes.get_u8();
        let kind = Kind::from_u8(kind).ok_or_else(|| invalid(format!("quorum packet kind {kind}")))?;
        Ok(Packet {
            kind,
            zxid: bytes.get_i64(),
            origin: bytes.get_u32(),
            tag: bytes.get_u64(),
            payload: bytes,
        })
    }
}

/// One end of a quorum link, written by any thread.
struct Link {
    stream: Mutex<TcpStream>,
}

impl Link {
    fn send(&self, packet: &Packet) -> io::Result<()> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner()).write_all(&packet.encode())
    }
}

/// Connections whose writes wait for their commit, by tag.
struct Pending {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_tag: AtomicU64,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            conns: Mutex::new(HashMap::new()),
            next_tag: AtomicU64::new(1),
        }
    }

    /// Holds `reply` on `conn` under a new tag.
    fn hold(&self, conn: &Arc<Conn>, reply: Reply) -> io::Result<u64> {
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns.len() >= PENDING_MAX {
            return Err(io::Error::other("too many writes waiting for their commit"));
        }
        conn.hold(reply)?;
        conns.insert(tag, conn.clone());
        Ok(tag)
    }

    /// Answers the write held under `tag` at `zxid`.
    fn commit(&self, tag: u64, zxid: i64) {
        let conn = self.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&tag);
        // A client gone meanwhile is no one else's concern.
        if let Some(conn) = conn {
            let _ = conn.release(zxid);
        }
    }
}

/// What a member needs to run.
pub struct MemberSpec<'a> {
    /// This member's address: its client port and quorum port are on it; its last byte is a
    /// follower's id (the members' addresses differ in it).
    pub host: Ipv4Addr,
    /// Client port.
    pub port: u16,
    /// The quorum port, on every member.
    pub quorum_port: u16,
    /// The leader's address (this member leads if it is `host`).
    pub leader: Ipv4Addr,
    /// Members in the ensemble (the majority is counted from it).
    pub members: usize,
    /// Where this member's log goes.
    pub sync_dir: &'a Path,
    /// Data bytes in each getData reply.
    pub data_bytes: usize,
    /// Children in the getChildren reply.
    pub children: u64,
}

/// Runs one member until killed.
pub fn serve_member(spec: &MemberSpec) -> io::Result<()> {
    let shared = Arc::new(Shared::new(spec.data_bytes, spec.children, Wait::Recv));
    let log = FloorLog::create(spec.sync_dir)?;
    let writes: Arc<dyn Writes> = if spec.host == spec.leader {
        let quorum = TcpListener::bind(SocketAddr::from((spec.host, spec.quorum_port)))?;
        let leader = Arc::new(Leader {
            shared: shared.clone(),
            log: Mutex::new(log),
            followers: Mutex::new(Vec::new()),
            proposals: Mutex::new(HashMap::new()),
            majority: spec.members / 2 + 1,
            pending: Pending::new(),
        });
        let accepting = leader.clone();
        std::thread::spawn(move || accepting.accept(quorum));
        leader
    } else {
        let id = u32::from(spec.host.octets()[3]).max(1);
        Follower::start(id, shared.clone(), log, SocketAddr::from((spec.leader, spec.quorum_port)))?
    };
    let listener = TcpListener::bind(SocketAddr::from((spec.host, spec.port)))?;
    eprintln!(
        "null ensemble member on {}:{} ({})",
        spec.host,
        spec.port,
        if spec.host == spec.leader { "leader" } else { "follower" }
    );
    null_server::serve_on(listener, shared, writes)
}

/// A proposal waiting for its majority.
struct Proposal {
    acks: usize,
    origin: u32,
    tag: u64,
}

struct Leader {
    shared: Arc<Shared>,
    log: Mutex<FloorLog>,
    /// Followers by the id they said hello with.
    followers: Mutex<Vec<(u32, Arc<Link>)>>,
    proposals: Mutex<HashMap<i64, Proposal>>,
    majority: usize,
    /// The leader's own clients' writes.
    pending: Pending,
}

impl Leader {
    fn accept(self: Arc<Self>, quorum: TcpListener) {
        for stream in quorum.incoming() {
            let Ok(stream) = stream else { continue };
            let leader = self.clone();
            std::thread::spawn(move || {
                if let Err(e) = leader.serve_follower(stream) {
                    eprintln!("null ensemble leader: a follower's link ended: {e}");
                }
            });
        }
    }

    fn serve_follower(&self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let mut buf = Vec::new();
        let hello = Packet::read(&mut stream, &mut buf)?;
        if hello.kind != Kind::Hello || hello.origin == LEADER_ORIGIN {
            return Err(invalid("a follower's link must open with its hello".into()));
        }
        let id = hello.origin;
        let link = Arc::new(Link {
            stream: Mutex::new(stream.try_clone()?),
        });
        self.followers.lock().unwrap_or_else(|p| p.into_inner()).push((id, link));
        let result = loop {
            let packet = match Packet::read(&mut stream, &mut buf) {
                Ok(packet) => packet,
                Err(e) => break Err(e),
            };
            let handled = match packet.kind {
                Kind::Request => self.propose(id, packet.tag, packet.payload),
                Kind::Ack => self.ack(packet.zxid),
                kind => Err(invalid(format!("{kind:?} from a follower"))),
            };
            if let Err(e) = handled {
                break Err(e);
            }
        };
        self.followers.lock().unwrap_or_else(|p| p.into_inner()).retain(|(f, _)| *f != id);
        result
    }

    fn links(&self) -> Vec<Arc<Link>> {
        self.followers.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(_, l)| l.clone()).collect()
    }

    /// Sends the proposal to every follower, syncs it to the leader's own log, then counts the
    /// leader's ack.
    fn propose(&self, origin: u32, tag: u64, payload: Bytes) -> io::Result<()> {
        let zxid = {
            let mut proposals = self.proposals.lock().unwrap_or_else(|p| p.into_inner());
            if proposals.len() >= PENDING_MAX {
                return Err(io::Error::other("too many proposals waiting for a majority"));
            }
            let zxid = self.shared.zxid.fetch_add(1, Ordering::Relaxed) + 1;
            proposals.insert(zxid, Proposal { acks: 0, origin, tag });
            zxid
        };
        let proposal = Packet::new(Kind::Proposal, zxid, origin, tag, payload);
        for link in self.links() {
            // A follower that is gone is its reader thread's concern.
            let _ = link.send(&proposal);
        }
        self.log.lock().unwrap_or_else(|p| p.into_inner()).append_synced()?;
        self.ack(zxid)
    }

    /// Counts an ack; the one that makes the majority commits.
    fn ack(&self, zxid: i64) -> io::Result<()> {
        let committed = {
            let mut proposals = self.proposals.lock().unwrap_or_else(|p| p.into_inner());
            let Some(proposal) = proposals.get_mut(&zxid) else { return Ok(()) };
            proposal.acks += 1;
            if proposal.acks < self.majority {
                return Ok(());
            }
            proposals.remove(&zxid).expect("looked up above")
        };
        let commit = Packet::new(Kind::Commit, zxid, committed.origin, committed.tag, Bytes::new());
        for link in self.links() {
            let _ = link.send(&commit);
        }
        if committed.origin == LEADER_ORIGIN {
            self.pending.commit(committed.tag, zxid);
        }
        Ok(())
    }
}

impl Writes for Leader {
    fn write(&self, conn: &Arc<Conn>, reply: Reply) -> io::Result<()> {
        let payload = reply.body.clone();
        let tag = self.pending.hold(conn, reply)?;
        self.propose(LEADER_ORIGIN, tag, payload)
    }
}

struct Follower {
    id: u32,
    leader: Link,
    pending: Pending,
}

impl Follower {
    /// Connects to the leader (retrying until it listens), says hello, and starts the thread
    /// that reads the leader.
    fn start(id: u32, shared: Arc<Shared>, log: FloorLog, leader: SocketAddr) -> io::Result<Arc<Follower>> {
        let started = Instant::now();
        let stream = loop {
            match TcpStream::connect(leader) {
                Ok(stream) => break stream,
                Err(e) if started.elapsed() > CONNECT_DEADLINE => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_nodelay(true)?;
        let follower = Arc::new(Follower {
            id,
            leader: Link {
                stream: Mutex::new(stream.try_clone()?),
            },
            pending: Pending::new(),
        });
        follower.leader.send(&Packet::new(Kind::Hello, 0, id, 0, Bytes::new()))?;
        let reading = follower.clone();
        std::thread::spawn(move || {
            let e = reading.read_leader(stream, &shared, log);
            eprintln!("null ensemble follower: the leader's link ended: {e}");
            // Without a leader no write is ever answered: end, as a real member would stop serving.
            std::process::exit(1);
        });
        Ok(follower)
    }

    fn read_leader(&self, mut stream: TcpStream, shared: &Shared, mut log: FloorLog) -> io::Error {
        let mut buf = Vec::new();
        loop {
            let packet = match Packet::read(&mut stream, &mut buf) {
                Ok(packet) => packet,
                Err(e) => return e,
            };
            let handled = match packet.kind {
                Kind::Proposal => log
                    .append_synced()
                    .and_then(|()| self.leader.send(&Packet::new(Kind::Ack, packet.zxid, self.id, 0, Bytes::new()))),
                Kind::Commit => {
                    shared.zxid.fetch_max(packet.zxid, Ordering::Relaxed);
                    if packet.origin == self.id {
                        self.pending.commit(packet.tag, packet.zxid);
                    }
                    Ok(())
                }
                kind => Err(invalid(format!("{kind:?} from the leader"))),
            };
            if let Err(e) = handled {
                return e;
            }
        }
    }
}

impl Writes for Follower {
    fn write(&self, conn: &Arc<Conn>, reply: Reply) -> io::Result<()> {
        let payload = reply.body.clone();
        let tag = self.pending.hold(conn, reply)?;
        self.leader.send(&Packet::new(Kind::Request, 0, self.id, tag, payload))
    }
}

#[cfg(test)]
mod tests {
    use ferrokeeper::jute::Decode;
    use ferrokeeper::proto::{ReplyHeader, StatResponse};
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::wire::{encode_request, Request, Session};

    fn free_port(host: Ipv4Addr) -> u16 {
        TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn writes_through_a_follower_are_synced_by_every_member_and_a_read_behind_a_write_is_answered_after_it() {
        let dir = std::env::temp_dir().join(format!("null-ensemble-test-{}", std::process::id()));
        let hosts: Vec<Ipv4Addr> = (1..=3).map(|i| Ipv4Addr::new(127, 0, 97, i)).collect();
        let port = free_port(hosts[0]);
        let quorum_port = free_port(hosts[0]);
        for (i, host) in hosts.iter().enumerate() {
            let spec_dir = dir.join(i.to_string());
            let host = *host;
            let leader = hosts[0];
            std::thread::spawn(move || {
                serve_member(&MemberSpec {
                    host,
                    port,
                    quorum_port,
                    leader,
                    members: 3,
                    sync_dir: &spec_dir,
                    data_bytes: 100,
                    children: 3,
                })
            });
        }
        let follower = SocketAddr::from((hosts[1], port));
        let mut session = loop {
            match Session::connect(follower, None, Duration::from_secs(10)).await {
                Ok(session) => break session,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let mut last_zxid = 0;
        for xid in 1..=3 {
            let (header, mut body) = session
                .call(
                    xid,
                    &Request::SetData {
                        path: "/bench/keys/k1",
                        data: b"abcd",
                    },
                )
                .await
                .unwrap();
            assert_eq!((header.xid, header.err), (xid, 0));
            assert!(header.zxid > last_zxid, "every write is a new zxid");
            last_zxid = header.zxid;
            assert_eq!(StatResponse::decode(&mut body).unwrap().stat.data_length, 4);
        }
        // Every member synced a record of every proposal (the log is preallocated with zeros).
        let records = |member: usize| {
            let log = std::fs::read(dir.join(member.to_string()).join("floor.log")).unwrap();
            log.chunks(FloorLog::RECORD_BYTES).take_while(|r| r[0] != 0).count()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        // A member outside the majority may still be syncing after the answer.
        while (0..3).any(|m| records(m) < 3) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!([records(0), records(1), records(2)], [3, 3, 3]);
        // A read sent right behind a write, before its answer, is answered after it.
        let mut out = BytesMut::new();
        encode_request(
            4,
            &Request::SetData {
                path: "/bench/keys/k1",
                data: b"ef",
            },
            &mut out,
        );
        encode_request(
            5,
            &Request::Exists {
                path: "/bench/keys/k1",
                watch: false,
            },
            &mut out,
        );
        session.writer.write_all(&out).await.unwrap();
        let mut first = session.read_frame().await.unwrap();
        let mut second = session.read_frame().await.unwrap();
        let (write, read) = (ReplyHeader::decode(&mut first).unwrap(), ReplyHeader::decode(&mut second).unwrap());
        assert_eq!((write.xid, read.xid), (4, 5));
        assert!(write.zxid > last_zxid);
        assert_eq!(read.zxid, write.zxid);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
