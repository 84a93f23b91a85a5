//! A server that speaks the client protocol and does no work: the floor of the request rows.
//!
//! It runs as its own process, as the servers under test do, and the generator drives it with
//! the same load code, so a row's floor holds everything a real server cannot avoid on this
//! machine (the generator, loopback, the wake-ups of two processes, one `fdatasync` per write with
//! `--sync-dir`) and nothing a server could do better. Replies have the sizes real ones have:
//! the data asked for, the path created, a Stat, the children list of the getChildren workload
//! (encoded once, at start). There is no tree behind them: nothing is looked up or stored.
//!
//! Blocking IO, one thread per connection (at most `CONNECTIONS_MAX`), each thread answering its
//! requests in order; durable writes of all connections share one log under a lock. A thread waits
//! for its next request in `recv` (the default) or, with `--wait epoll`, in `epoll_wait` on its
//! socket as an event-driven server does: the two floors compare how the wait itself costs.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use rustix::buffer::spare_capacity;
use rustix::event::epoll;
use ferrokeeper::jute::{Decode, Encode};
use ferrokeeper::proto::{
    encode_children_response, encode_get_data_response, ConnectResponse, CreateResponse, OpCode, ReplyHeader,
    RequestHeader, SetDataRequest, Stat, StatResponse,
};

use crate::floor_log::FloorLog;
use crate::workload::WIDE;

/// Connections served at once; more are closed at accept.
const CONNECTIONS_MAX: usize = 4_096;
/// Largest request frame read (the generator's requests are a few hundred bytes).
const FRAME_BYTES_MAX: usize = 1 << 20;
/// Replies a connection may hold behind writes waiting for their answer; past it the connection
/// is closed.
const HELD_MAX: usize = 65_536;
/// The xid of a ping's reply.
const XID_PING: i32 = -2;

/// How a connection's thread waits for its next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Wait {
    /// In `recv` itself: the socket wakes the thread directly.
    Recv,
    /// In `epoll_wait` on the socket, then `recv`: how an event-driven server (ZooKeeper's NIO
    /// selector, ferrokeeper's tokio runtime) waits, since one thread serves many connections.
    Epoll,
}

/// What every connection's thread shares.
pub(crate) struct Shared {
    data: Vec<u8>,
    /// The body of the getChildren reply (the workload lists one node's children).
    children_body: Bytes,
    /// The last write's zxid (the zxid of a read's reply).
    pub(crate) zxid: AtomicI64,
    sessions: AtomicI64,
    connections: AtomicUsize,
    wait: Wait,
}

impl Shared {
    pub(crate) fn new(data_bytes: usize, children: u64, wait: Wait) -> Shared {
        let mut children_body = BytesMut::new();
        let names = (0..children).map(|c| format!("child-{c:06}"));
        encode_children_response(names, None, &mut children_body);
        Shared {
            data: vec![b'x'; data_bytes],
            children_body: children_body.freeze(),
            zxid: AtomicI64::new(1),
            sessions: AtomicI64::new(1),
            connections: AtomicUsize::new(0),
            wait,
        }
    }
}

/// Where a connection's writes go before they are answered: the null server's own log, or a null
/// ensemble's quorum (`null_ensemble`).
pub(crate) trait Writes: Send + Sync {
    /// Makes `reply`'s write durable and answers it through `conn`, now or later (from another
    /// thread, after `conn.hold`).
    fn write(&self, conn: &Arc<Conn>, reply: Reply) -> io::Result<()>;
}

/// A standalone null server's writes: one record synced to its log (if any), then the answer.
struct LocalWrites {
    log: Option<Mutex<FloorLog>>,
}

impl Writes for LocalWrites {
    fn write(&self, conn: &Arc<Conn>, reply: Reply) -> io::Result<()> {
        if let Some(log) = &self.log {
            log.lock().unwrap_or_else(|p| p.into_inner()).append_synced()?;
        }
        let zxid = conn.shared.zxid.fetch_add(1, Ordering::Relaxed) + 1;
        conn.answer(reply, zxid)
    }
}

/// A request to answer: what its reply needs of it.
pub(crate) struct Reply {
    xid: i32,
    op: Option<OpCode>,
    /// The request's body, after its header.
    pub(crate) body: Bytes,
}

impl Reply {
    fn is_write(&self) -> bool {
        matches!(
            self.op,
            Some(OpCode::Create | OpCode::Create2 | OpCode::SetData | OpCode::Delete)
        )
    }

    /// The reply frame's body (header and record) for a reply at `zxid`.
    fn encode(mut self, zxid: i64, shared: &Shared, out: &mut BytesMut) {
        let xid = if self.op == Some(OpCode::Ping) { XID_PING } else { self.xid };
        let stat = Stat {
            data_length: shared.data.len() as i32,
            mzxid: zxid,
            ..Stat::default()
        };
        ReplyHeader { xid, zxid, err: 0 }.encode(out);
        match self.op {
            Some(OpCode::Create) => {
                // The path asked for is the path created (no sequential names here).
                let path = String::decode(&mut self.body).unwrap_or_default();
                CreateResponse { path }.encode(out);
            }
            Some(OpCode::GetData) => encode_get_data_response(Some(&shared.data), &stat, out),
            Some(OpCode::Exists) => StatResponse { stat }.encode(out),
            Some(OpCode::SetData) => {
                let data_length = SetDataRequest::decode(&mut self.body).map_or(0, |r| r.data.map_or(0, |d| d.len()));
                StatResponse {
                    stat: Stat {
                        data_length: data_length as i32,
                        ..stat
                    },
                }
                .encode(out);
            }
            Some(OpCode::GetChildren) => out.extend_from_slice(&shared.children_body),
            _ => {}
        }
    }
}

/// A connection's way out: its socket and the replies held behind a write not yet answered (so
/// replies leave in request order).
pub(crate) struct Conn {
    shared: Arc<Shared>,
    out: Mutex<Outgoing>,
}

struct Outgoing {
    stream: TcpStream,
    buf: BytesMut,
    /// Replies waiting for the write at their head to be answered (`Conn::release`).
    held: VecDeque<Reply>,
}

impl Conn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outgoing> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers `reply` at `zxid`, or holds it behind a write still waiting for its answer.
    fn answer(&self, reply: Reply, zxid: i64) -> io::Result<()> {
        let mut out = self.lock();
        if !out.held.is_empty() {
            return out.hold(reply);
        }
        out.send(reply, zxid, &self.shared)
    }

    /// Holds a write whose answer comes with `release`.
    pub(crate) fn hold(&self, reply: Reply) -> io::Result<()> {
        self.lock().hold(reply)
    }

    /// Answers the oldest held write at `zxid`, and the reads held behind it.
    pub(crate) fn release(&self, zxid: i64) -> io::Result<()> {
        let mut out = self.lock();
        let Some(write) = out.held.pop_front() else { return Ok(()) };
        out.send(write, zxid, &self.shared)?;
        while out.held.front().is_some_and(|r| !r.is_write()) {
            let read = out.held.pop_front().expect("front checked");
            out.send(read, zxid, &self.shared)?;
        }
        Ok(())
    }
}

impl Outgoing {
    fn hold(&mut self, reply: Reply) -> io::Result<()> {
        if self.held.len() >= HELD_MAX {
            return Err(io::Error::other("too many replies held behind unanswered writes"));
        }
        self.held.push_back(reply);
        Ok(())
    }

    fn send(&mut self, reply: Reply, zxid: i64, shared: &Shared) -> io::Result<()> {
        let Outgoing { stream, buf, .. } = self;
        write_frame(stream, buf, |out| reply.encode(zxid, shared, out))
    }
}

/// Serves on 127.0.0.1:`port` until killed. Answers `ruok` with `imok`, as the servers do.
pub fn serve(port: u16, data_bytes: usize, children: u64, sync_dir: Option<&Path>, wait: Wait) -> io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    eprintln!("null server on 127.0.0.1:{port}, children of {WIDE}: {children}, waiting in {wait:?}");
    let writes = LocalWrites {
        log: sync_dir.map(FloorLog::create).transpose()?.map(Mutex::new),
    };
    serve_on(listener, Arc::new(Shared::new(data_bytes, children, wait)), Arc::new(writes))
}

/// Serves the client protocol on `listener` until it fails, a thread per connection.
pub(crate) fn serve_on(listener: TcpListener, shared: Arc<Shared>, writes: Arc<dyn Writes>) -> io::Result<()> {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if shared.connections.fetch_add(1, Ordering::AcqRel) >= CONNECTIONS_MAX {
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let shared = shared.clone();
        let writes = writes.clone();
        std::thread::spawn(move || {
            // A connection ends on its first error (the peer closed, or sent what this server
            // cannot read); nothing else is affected.
            let _ = serve_connection(stream, &shared, &*writes);
            shared.connections.fetch_sub(1, Ordering::AcqRel);
        });
    }
    Ok(())
}

fn read_frame(stream: &mut TcpStream, body: &mut Vec<u8>) -> io::Result<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    read_body(stream, len, body)
}

fn read_body(stream: &mut TcpStream, len: [u8; 4], body: &mut Vec<u8>) -> io::Result<Bytes> {
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    body.resize(len as usize, 0);
    stream.read_exact(body)?;
    Ok(Bytes::copy_from_slice(body))
}

fn bad(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn serve_connection(mut stream: TcpStream, shared: &Arc<Shared>, writes: &dyn Writes) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut body = Vec::new();
    let mut out = BytesMut::with_capacity(4096);
    // The handshake: `ruok` (the scripts' readiness check) gets `imok`; any ConnectRequest gets a
    // new session of the timeout it asked for.
    let mut first = [0u8; 4];
    stream.read_exact(&mut first)?;
    if &first == b"ruok" {
        return stream.write_all(b"imok");
    }
    let mut connect = read_body(&mut stream, first, &mut body)?;
    let _protocol_version = i32::decode(&mut connect).map_err(bad)?;
    let _last_zxid = i64::decode(&mut connect).map_err(bad)?;
    let time_out = i32::decode(&mut connect).map_err(bad)?;
    let response = ConnectResponse {
        protocol_version: 0,
        time_out,
        session_id: shared.sessions.fetch_add(1, Ordering::Relaxed),
        passwd: Bytes::from_static(&[0; 16]),
    };
    write_frame(&mut stream, &mut out, |out| {
        response.encode(out);
        out.extend_from_slice(&[0]); // readOnly
    })?;
    let conn = Arc::new(Conn {
        shared: shared.clone(),
        out: Mutex::new(Outgoing {
            stream: stream.try_clone()?,
            buf: out,
            held: VecDeque::new(),
        }),
    });
    let readable = match shared.wait {
        Wait::Recv => None,
        Wait::Epoll => {
            let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
            epoll::add(&epoll, &stream, epoll::EventData::new_u64(0), epoll::EventFlags::IN)?;
            Some(epoll)
        }
    };
    let mut events = Vec::with_capacity(1);
    loop {
        if let Some(epoll) = &readable {
            // Level-triggered: returns at once while a request is buffered.
            events.clear();
            epoll::wait(epoll, spare_capacity(&mut events), None)?;
        }
        let mut request = read_frame(&mut stream, &mut body)?;
        let header = RequestHeader::decode(&mut request).map_err(bad)?;
        let reply = Reply {
            xid: header.xid,
            op: OpCode::from_i32(header.op),
            body: request,
        };
        let close = reply.op == Some(OpCode::CloseSession);
        if reply.is_write() {
            writes.write(&conn, reply)?;
        } else {
            conn.answer(reply, shared.zxid.load(Ordering::Relaxed))?;
        }
        if close {
            return Ok(());
        }
    }
}

/// Writes one frame: its length, then what `body` appends.
fn write_frame(stream: &mut TcpStream, out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) -> io::Result<()> {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(out)
}

#[cfg(test)]
mod tests {
    use ferrokeeper::jute::Decode;
    use ferrokeeper::proto::{GetChildrenResponse, GetDataResponse, ReplyHeader, StatResponse};

    use super::*;
    use crate::wire::{Request, Session};

    #[tokio::test]
    async fn answers_the_generators_requests_with_replies_of_the_real_sizes_waiting_in_recv() {
        answers_with_replies_of_the_real_sizes(Wait::Recv).await;
    }

    #[tokio::test]
    async fn answers_the_generators_requests_with_replies_of_the_real_sizes_waiting_in_epoll() {
        answers_with_replies_of_the_real_sizes(Wait::Epoll).await;
    }

    async fn answers_with_replies_of_the_real_sizes(wait: Wait) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let dir = std::env::temp_dir().join(format!("null-server-test-{}-{wait:?}", std::process::id()));
        let log_dir = dir.clone();
        let writes = LocalWrites {
            log: Some(Mutex::new(FloorLog::create(&log_dir).unwrap())),
        };
        let shared = Arc::new(Shared::new(100, 3, wait));
        std::thread::spawn(move || serve_on(listener, shared, Arc::new(writes)));
        let mut session = Session::connect(address, None, std::time::Duration::from_secs(10))
            .await
            .unwrap();
        let ok = |header: &ReplyHeader, xid: i32| assert_eq!((header.xid, header.err), (xid, 0));

        let (header, mut body) = session
            .call(
                1,
                &Request::GetData {
                    path: "/bench/keys/k1",
                    watch: false,
                },
            )
            .await
            .unwrap();
        ok(&header, 1);
        let reply = GetDataResponse::decode(&mut body).unwrap();
        assert_eq!((reply.data.unwrap().len(), reply.stat.data_length), (100, 100));

        let (set, mut body) = session
            .call(
                2,
                &Request::SetData {
                    path: "/bench/keys/k1",
                    data: b"abc",
                },
            )
            .await
            .unwrap();
        ok(&set, 2);
        assert_eq!(StatResponse::decode(&mut body).unwrap().stat.data_length, 3);
        // A write is a new zxid, synced to the log first.
        assert!(set.zxid > header.zxid);
        // The log is preallocated with zeros: the write left its record at the start.
        assert_eq!(std::fs::read(dir.join("floor.log")).unwrap()[0], 0x5a);

        let (header, mut body) = session
            .call(
                3,
                &Request::Create {
                    path: "/bench/created/x",
                    data: b"d",
                },
            )
            .await
            .unwrap();
        ok(&header, 3);
        assert_eq!(String::decode(&mut body).unwrap(), "/bench/created/x");

        let (header, mut body) = session
            .call(
                4,
                &Request::GetChildren {
                    path: WIDE,
                    watch: false,
                },
            )
            .await
            .unwrap();
        ok(&header, 4);
        let children = GetChildrenResponse::decode(&mut body).unwrap().children;
        assert_eq!(children, ["child-000000", "child-000001", "child-000002"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
