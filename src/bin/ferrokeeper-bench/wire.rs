//! The client side of the wire protocol, as far as the load generator needs it: the handshake,
//! length-prefixed request frames built from the crate's own `proto` records, and reply-frame
//! splitting. Encoding writes straight into one reusable buffer per session, so the generator
//! spends as little of the shared CPU as it can.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use ferrokeeper::jute::{encode_buffer, encode_str, Decode, DecodeError, Encode};
use ferrokeeper::proto::frame::{check_frame, FrameCheck, DEFAULT_MAX_FRAME_LEN};
use ferrokeeper::proto::{ConnectRequest, ConnectResponse, OpCode, ReplyHeader, RequestHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpSocket;

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes that are not a valid reply.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// A reply that makes no sense for what was sent.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server went quiet for longer than the read timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
}

/// One request the generator sends. Paths and data are borrowed: the caller keeps them in
/// reusable buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// create (opcode 1), persistent, open ACL.
    Create { path: &'a str, data: &'a [u8] },
    /// setData (opcode 5), any version.
    SetData { path: &'a str, data: &'a [u8] },
    /// getData (opcode 4).
    GetData { path: &'a str, watch: bool },
    /// exists (opcode 3).
    Exists { path: &'a str, watch: bool },
    /// getChildren (opcode 8).
    GetChildren { path: &'a str, watch: bool },
    /// closeSession (opcode -11).
    CloseSession,
}

impl Request<'_> {
    /// The opcode on the wire.
    pub fn op(&self) -> OpCode {
        match self {
            Request::Create { .. } => OpCode::Create,
            Request::SetData { .. } => OpCode::SetData,
            Request::GetData { .. } => OpCode::GetData,
            Request::Exists { .. } => OpCode::Exists,
            Request::GetChildren { .. } => OpCode::GetChildren,
            Request::CloseSession => OpCode::CloseSession,
        }
    }
}

/// The `Ids.OPEN_ACL_UNSAFE` list, pre-encoded (vector of one `world:anyone` ACL with all perms).
fn encode_open_acl(out: &mut BytesMut) {
    ferrokeeper::proto::open_acl_unsafe().encode(out);
}

/// Appends one length-prefixed request frame to `out`.
pub fn encode_request(xid: i32, request: &Request<'_>, out: &mut BytesMut) {
    let start = out.len();
    out.put_i32(0);
    RequestHeader {
        xid,
        op: request.op() as i32,
    }
    .encode(out);
    match *request {
        Request::Create { path, data } => {
            encode_str(path, out);
            encode_buffer(Some(data), out);
            encode_open_acl(out);
            out.put_i32(0); // flags: persistent
        }
        Request::SetData { path, data } => {
            encode_str(path, out);
            encode_buffer(Some(data), out);
            out.put_i32(-1); // any version
        }
        Request::GetData { path, watch } | Request::Exists { path, watch } | Request::GetChildren { path, watch } => {
            encode_str(path, out);
            watch.encode(out);
        }
        Request::CloseSession => {}
    }
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Splits the next complete frame body off the front of `buf`, if one is there.
pub fn next_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
    match check_frame(buf, DEFAULT_MAX_FRAME_LEN) {
        FrameCheck::Incomplete => Ok(None),
        FrameCheck::Complete(len) => {
            let mut frame = buf.split_to(4 + len);
            let _ = frame.split_to(4);
            Ok(Some(frame.freeze()))
        }
        FrameCheck::BadLength(len) => Err(WireError::Protocol(format!("reply frame length {len}"))),
    }
}

/// Source address number `index` of `count`: 127.0.0.1 for one, else spread over 127.1.x.y so
/// per-address connection limits (`maxClientCnxns`) and ephemeral ports do not run out.
pub fn source_ip(index: usize, count: usize) -> Ipv4Addr {
    if count <= 1 {
        return Ipv4Addr::LOCALHOST;
    }
    let k = index % count;
    Ipv4Addr::new(127, 1, (k / 250) as u8, (1 + k % 250) as u8)
}

/// A connected session: the socket halves and the read buffer.
pub struct Session {
    /// Session id the server assigned.
    pub session_id: i64,
    /// Read half.
    pub reader: OwnedReadHalf,
    /// Write half.
    pub writer: OwnedWriteHalf,
    /// Bytes read but not yet split into frames.
    pub read_buf: BytesMut,
}

/// Session timeout the generator asks for (within both servers' negotiated bounds).
pub const SESSION_TIMEOUT_MS: i32 = 30_000;

impl Session {
    /// Connects from `source` (if given) and completes the handshake within `timeout`.
    pub async fn connect(
        server: SocketAddr,
        source: Option<Ipv4Addr>,
        timeout: Duration,
    ) -> Result<Session, WireError> {
        tokio::time::timeout(timeout, Self::connect_inner(server, source))
            .await
            .map_err(|_| WireError::Timeout(timeout))?
    }

    async fn connect_inner(server: SocketAddr, source: Option<Ipv4Addr>) -> Result<Session, WireError> {
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip.into(), 0))?;
        }
        let stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        let (reader, mut writer) = stream.into_split();
        let mut out = BytesMut::with_capacity(64);
        encode_connect(&mut out);
        writer.write_all(&out).await?;
        let mut session = Session {
            session_id: 0,
            reader,
            writer,
            read_buf: BytesMut::with_capacity(64 * 1024),
        };
        let mut frame = session.read_frame().await?;
        let response = ConnectResponse::decode(&mut frame)?;
        if response.session_id == 0 || response.time_out <= 0 {
            return Err(WireError::Protocol("session refused".into()));
        }
        session.session_id = response.session_id;
        Ok(session)
    }

    /// Reads until one complete frame is buffered and returns it.
    pub async fn read_frame(&mut self) -> Result<Bytes, WireError> {
        loop {
            if let Some(frame) = next_frame(&mut self.read_buf)? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// Reads whatever the socket has (at least one byte) into the read buffer.
    pub async fn fill(&mut self) -> Result<(), WireError> {
        self.read_buf.reserve(64 * 1024);
        match self.reader.read_buf(&mut self.read_buf).await? {
            0 => Err(WireError::Closed),
            _ => Ok(()),
        }
    }

    /// Sends one request and waits for its reply header (skipping notifications); for setup and
    /// control traffic, not for measured load.
    pub async fn call(&mut self, xid: i32, request: &Request<'_>) -> Result<(ReplyHeader, Bytes), WireError> {
        let mut out = BytesMut::with_capacity(256);
        encode_request(xid, request, &mut out);
        self.writer.write_all(&out).await?;
        loop {
            let mut frame = self.read_frame().await?;
            let header = ReplyHeader::decode(&mut frame)?;
            if header.xid == xid {
                return Ok((header, frame));
            }
        }
    }
}

/// Appends a ConnectRequest frame for a new session (with the readOnly byte, as 3.8 clients send).
pub fn encode_connect(out: &mut BytesMut) {
    let start = out.len();
    out.put_i32(0);
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        time_out: SESSION_TIMEOUT_MS,
        session_id: 0,
        passwd: Bytes::from_static(&[0; 16]),
    }
    .encode(out);
    false.encode(out);
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use ferrokeeper::proto::{CreateRequest, PathWatchRequest, SetDataRequest};

    use super::*;

    fn one_frame(bytes: &mut BytesMut) -> Bytes {
        let frame = next_frame(bytes).unwrap().expect("a complete frame");
        assert!(bytes.is_empty(), "exactly one frame");
        frame
    }

    #[test]
    fn create_decodes_as_the_server_reads_it() {
        let mut out = BytesMut::new();
        encode_request(
            7,
            &Request::Create {
                path: "/a/b",
                data: b"xyz",
            },
            &mut out,
        );
        let mut frame = one_frame(&mut out);
        assert_eq!(
            RequestHeader::decode(&mut frame).unwrap(),
            RequestHeader { xid: 7, op: 1 }
        );
        let create = CreateRequest::decode(&mut frame).unwrap();
        assert!(frame.is_empty());
        assert_eq!(create.path, "/a/b");
        assert_eq!(create.data.as_deref(), Some(&b"xyz"[..]));
        assert_eq!(create.acl, ferrokeeper::proto::open_acl_unsafe());
        assert_eq!(create.flags, 0);
    }

    #[test]
    fn set_data_and_reads_decode() {
        let mut out = BytesMut::new();
        encode_request(
            1,
            &Request::SetData {
                path: "/k",
                data: &[1; 100],
            },
            &mut out,
        );
        encode_request(
            2,
            &Request::GetData {
                path: "/k",
                watch: true,
            },
            &mut out,
        );
        encode_request(
            3,
            &Request::Exists {
                path: "/k",
                watch: false,
            },
            &mut out,
        );
        encode_request(
            4,
            &Request::GetChildren {
                path: "/",
                watch: false,
            },
            &mut out,
        );
        encode_request(5, &Request::CloseSession, &mut out);

        let mut frame = next_frame(&mut out).unwrap().unwrap();
        assert_eq!(RequestHeader::decode(&mut frame).unwrap().op, 5);
        let set = SetDataRequest::decode(&mut frame).unwrap();
        assert_eq!(
            (set.path.as_str(), set.data.map(|d| d.len()), set.version),
            ("/k", Some(100), -1)
        );

        for (xid, op, watch) in [(2, 4, true), (3, 3, false), (4, 8, false)] {
            let mut frame = next_frame(&mut out).unwrap().unwrap();
            assert_eq!(RequestHeader::decode(&mut frame).unwrap(), RequestHeader { xid, op });
            assert_eq!(PathWatchRequest::decode(&mut frame).unwrap().watch, watch);
            assert!(frame.is_empty());
        }
        let mut frame = one_frame(&mut out);
        assert_eq!(
            RequestHeader::decode(&mut frame).unwrap(),
            RequestHeader { xid: 5, op: -11 }
        );
        assert!(frame.is_empty());
    }

    #[test]
    fn connect_request_has_the_read_only_byte() {
        let mut out = BytesMut::new();
        encode_connect(&mut out);
        let mut frame = one_frame(&mut out);
        let request = ConnectRequest::decode(&mut frame).unwrap();
        assert_eq!(request.time_out, SESSION_TIMEOUT_MS);
        assert_eq!(request.passwd.len(), 16);
        assert_eq!(&frame[..], &[0]);
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut full = BytesMut::new();
        encode_request(
            9,
            &Request::Exists {
                path: "/x",
                watch: false,
            },
            &mut full,
        );
        let mut partial = BytesMut::from(&full[..full.len() - 1]);
        assert!(next_frame(&mut partial).unwrap().is_none());
        assert_eq!(partial.len(), full.len() - 1, "nothing consumed");
        let mut bad = BytesMut::from(&[0xff, 0xff, 0xff, 0xf0][..]);
        assert!(matches!(next_frame(&mut bad), Err(WireError::Protocol(_))));
    }

    #[test]
    fn source_addresses_spread_and_wrap() {
        assert_eq!(source_ip(5, 1), Ipv4Addr::LOCALHOST);
        assert_eq!(source_ip(0, 300), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(source_ip(249, 300), Ipv4Addr::new(127, 1, 0, 250));
        assert_eq!(source_ip(250, 300), Ipv4Addr::new(127, 1, 1, 1));
        assert_eq!(source_ip(300, 300), source_ip(0, 300));
    }
}
