//! Leader-election wire messages (PROTOCOL.md §4.2, §4.3): the handshake a peer sends first on an
//! election-port connection, the 4-byte length framing of what follows, and the notification that
//! every election message is.
//!
//! Owns: the bytes. Must not touch: sockets, the election rules (`zab::election`).
//!
//! These are not jute records: ZooKeeper writes them with `DataOutputStream` and reads them with a
//! `ByteBuffer` (`QuorumCnxManager.startConnection`, `InitialMessage.parse`,
//! `FastLeaderElection.buildMsg`, `Messenger.WorkerReceiver.run`), big-endian, with no null rules.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::jute::DecodeError;

/// First long of a 3.5+ handshake (`QuorumCnxManager.PROTOCOL_VERSION_V1`): one election address.
pub const PROTOCOL_VERSION_V1: i64 = -65536;
/// First long of a handshake with `multiAddress.enabled=true` (`PROTOCOL_VERSION_V2`): addresses
/// joined by `|`.
pub const PROTOCOL_VERSION_V2: i64 = -65535;
/// Longest address list a handshake may carry (`QuorumCnxManager.maxBuffer`).
pub const HANDSHAKE_ADDRESS_MAX_BYTES: usize = 2048;
/// Longest election message (`QuorumCnxManager.PACKETMAXSIZE`); a longer length closes the
/// connection, as does a length of 0 or less.
pub const MESSAGE_MAX_BYTES: usize = 512 * 1024;
/// The notification format ZooKeeper 3.5+ sends (`Notification.CURRENTVERSION`): with peer epoch,
/// version and the sender's quorum config.
pub const NOTIFICATION_VERSION: i32 = 2;
/// Notifications shorter than this are dropped (`WorkerReceiver`: "Got a short response").
pub const NOTIFICATION_MIN_BYTES: usize = 28;
/// A notification of exactly this size carries no version (pre-3.4.6): treated as version 0.
const NOTIFICATION_NO_VERSION_BYTES: usize = 40;

/// A quorum member's state as notifications carry it (`QuorumPeer.ServerState` ordinals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    /// In an election.
    Looking,
    /// Following a leader.
    Following,
    /// Leading.
    Leading,
    /// Observing a leader (does not vote).
    Observing,
}

impl ServerState {
    /// The ordinal on the wire.
    pub fn ordinal(self) -> i32 {
        match self {
            ServerState::Looking => 0,
            ServerState::Following => 1,
            ServerState::Leading => 2,
            ServerState::Observing => 3,
        }
    }

    /// The state of an ordinal; `None` for anything else (the receiver drops such a message).
    pub fn from_ordinal(ordinal: i32) -> Option<ServerState> {
        match ordinal {
            0 => Some(ServerState::Looking),
            1 => Some(ServerState::Following),
            2 => Some(ServerState::Leading),
            3 => Some(ServerState::Observing),
            _ => None,
        }
    }

    /// The lower-case name ZooKeeper logs and reports (`srvr` Mode, `zk_server_state`).
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Looking => "looking",
            ServerState::Following => "following",
            ServerState::Leading => "leading",
            ServerState::Observing => "observing",
        }
    }
}

/// What the connecting side sends first on an election-port connection; no reply is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// `PROTOCOL_VERSION_V1` or `_V2`; a pre-3.5 peer sends only its sid, decoded as version 0.
    pub protocol_version: i64,
    /// The sender's server id.
    pub sid: i64,
    /// The sender's election addresses as `host:port` (several only with V2); empty for pre-3.5.
    pub addresses: Vec<String>,
}

impl Handshake {
    /// Appends the handshake's bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        let joined = self.addresses.join("|");
        out.reserve(20 + joined.len());
        out.put_i64(self.protocol_version);
        out.put_i64(self.sid);
        out.put_i32(joined.len() as i32);
        out.put_slice(joined.as_bytes());
    }
}

/// How far a handshake has been read.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeProgress {
    /// The handshake, and how many bytes of the input it took.
    Done(Handshake, usize),
    /// At least this many bytes are needed in all before it can be decoded.
    NeedBytes(usize),
}

/// Reads a handshake from the start of `input` (which may hold less than a whole one). Errors are
/// bad bytes: ZooKeeper logs "Initial message parsing error" and closes the connection.
pub fn decode_handshake(input: &[u8]) -> Result<HandshakeProgress, DecodeError> {
    let mut buf = input;
    if buf.len() < 8 {
        return Ok(HandshakeProgress::NeedBytes(8));
    }
    let first = buf.get_i64();
    if first >= 0 {
        // A pre-3.5 peer: the first long is its sid and nothing follows.
        let handshake = Handshake {
            protocol_version: 0,
            sid: first,
            addresses: Vec::new(),
        };
        return Ok(HandshakeProgress::Done(handshake, 8));
    }
    if first != PROTOCOL_VERSION_V1 && first != PROTOCOL_VERSION_V2 {
        return Err(DecodeError::Invalid(format!(
            "unrecognized election protocol version {first}"
        )));
    }
    if buf.len() < 12 {
        return Ok(HandshakeProgress::NeedBytes(20));
    }
    let sid = buf.get_i64();
    let length = buf.get_i32();
    if length <= 0 || length as usize > HANDSHAKE_ADDRESS_MAX_BYTES {
        return Err(DecodeError::BadLength(length));
    }
    let total = 20 + length as usize;
    if input.len() < total {
        return Ok(HandshakeProgress::NeedBytes(total));
    }
    let text = std::str::from_utf8(&buf[..length as usize])
        .map_err(|_| DecodeError::Invalid("handshake address is not UTF-8".to_string()))?;
    let addresses = text.split('|').map(str::to_string).collect();
    Ok(HandshakeProgress::Done(
        Handshake {
            protocol_version: first,
            sid,
            addresses,
        },
        total,
    ))
}

/// Checks the 4-byte length in front of an election message (`RecvWorker.run`).
pub fn check_message_length(length: i32) -> Result<usize, DecodeError> {
    if length <= 0 || length as usize > MESSAGE_MAX_BYTES {
        return Err(DecodeError::BadLength(length));
    }
    Ok(length as usize)
}

/// One election message: a vote and the state of the server that sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The sender's state.
    pub state: ServerState,
    /// The sid the sender proposes (or follows); `i64::MIN` from a non-voter.
    pub leader: i64,
    /// Last zxid of the proposed leader, as the sender knows it.
    pub zxid: i64,
    /// The sender's election round (`logicalclock`).
    pub election_epoch: i64,
    /// Epoch of the proposed leader.
    pub peer_epoch: i64,
    /// Message format version: 2 from 3.5+, 0 from the short formats.
    pub version: i32,
    /// The sender's quorum config (`QuorumVerifier.toString`), present from version 2 on.
    pub config: Option<Bytes>,
}

impl Notification {
    /// Appends the message as `FastLeaderElection.buildMsg` writes it (always version 2).
    pub fn encode(&self, out: &mut BytesMut) {
        let config: &[u8] = self.config.as_deref().unwrap_or(&[]);
        out.reserve(44 + config.len());
        out.put_i32(self.state.ordinal());
        out.put_i64(self.leader);
        out.put_i64(self.zxid);
        out.put_i64(self.election_epoch);
        out.put_i64(self.peer_epoch);
        out.put_i32(NOTIFICATION_VERSION);
        out.put_i32(config.len() as i32);
        out.put_slice(config);
    }

    /// Reads a whole message (without its length prefix), accepting the three formats ZooKeeper
    /// accepts: 28 bytes (no peer epoch: taken from the zxid), 40 bytes (no version), and version
    /// 2 with a config. `None` for a message the receiver ignores without closing the connection:
    /// too short, a partial field, an unknown state, or a config length outside the message.
    pub fn decode(message: &[u8]) -> Option<Notification> {
        if message.len() < NOTIFICATION_MIN_BYTES {
            return None;
        }
        let mut buf = message;
        let state = buf.get_i32();
        let leader = buf.get_i64();
        let zxid = buf.get_i64();
        let election_epoch = buf.get_i64();
        let (peer_epoch, version) = if message.len() == NOTIFICATION_MIN_BYTES {
            (zxid >> 32, 0)
        } else {
            if buf.len() < 8 {
                return None;
            }
            let peer_epoch = buf.get_i64();
            if message.len() == NOTIFICATION_NO_VERSION_BYTES {
                (peer_epoch, 0)
            } else {
                if buf.len() < 4 {
                    return None;
                }
                (peer_epoch, buf.get_i32())
            }
        };
        let mut config = None;
        if version > 1 {
            if buf.len() < 4 {
                return None;
            }
            let length = buf.get_i32();
            if length < 0 || length as usize > buf.len() {
                return None;
            }
            config = Some(Bytes::copy_from_slice(&buf[..length as usize]));
        }
        let state = ServerState::from_ordinal(state)?;
        Some(Notification {
            state,
            leader,
            zxid,
            election_epoch,
            peer_epoch,
            version,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn handshake_bytes_match_what_zookeeper_accepts() {
        // PROTOCOL.md §4.2: this exact handshake was accepted by a real 3.8 server.
        let handshake = Handshake {
            protocol_version: PROTOCOL_VERSION_V1,
            sid: 3,
            addresses: vec!["127.0.0.1:3890".to_string()],
        };
        let mut out = BytesMut::new();
        handshake.encode(&mut out);
        assert_eq!(
            hex(&out),
            format!(
                "ffffffffffff0000{}0000000e{}",
                "0000000000000003",
                hex(b"127.0.0.1:3890")
            )
        );
        assert_eq!(
            decode_handshake(&out),
            Ok(HandshakeProgress::Done(handshake, out.len()))
        );
    }

    #[test]
    fn handshake_decoding_waits_for_bytes_and_rejects_bad_ones() {
        let handshake = Handshake {
            protocol_version: PROTOCOL_VERSION_V2,
            sid: 7,
            addresses: vec!["10.0.0.1:3888".to_string(), "[::1]:3888".to_string()],
        };
        let mut out = BytesMut::new();
        handshake.encode(&mut out);
        for cut in 0..out.len() {
            match decode_handshake(&out[..cut]) {
                Ok(HandshakeProgress::NeedBytes(n)) => assert!(n > cut, "cut {cut} asks for {n}"),
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        assert_eq!(
            decode_handshake(&out),
            Ok(HandshakeProgress::Done(handshake, out.len()))
        );
        // A pre-3.5 peer sends only its sid.
        let old = 5i64.to_be_bytes();
        let expected = Handshake {
            protocol_version: 0,
            sid: 5,
            addresses: vec![],
        };
        assert_eq!(decode_handshake(&old), Ok(HandshakeProgress::Done(expected, 8)));
        // An unknown version, an empty or oversized address: closed.
        assert!(decode_handshake(&(-3i64).to_be_bytes()).is_err());
        let mut empty = BytesMut::new();
        empty.put_i64(PROTOCOL_VERSION_V1);
        empty.put_i64(1);
        empty.put_i32(0);
        assert_eq!(decode_handshake(&empty), Err(DecodeError::BadLength(0)));
        let mut huge = BytesMut::new();
        huge.put_i64(PROTOCOL_VERSION_V1);
        huge.put_i64(1);
        huge.put_i32(2049);
        assert_eq!(decode_handshake(&huge), Err(DecodeError::BadLength(2049)));
    }

    #[test]
    fn message_lengths_outside_one_to_512_kib_are_refused() {
        assert!(check_message_length(0).is_err());
        assert!(check_message_length(-1).is_err());
        assert_eq!(check_message_length(1), Ok(1));
        assert_eq!(check_message_length(512 * 1024), Ok(512 * 1024));
        assert!(check_message_length(512 * 1024 + 1).is_err());
    }

    #[test]
    fn notification_round_trips_in_the_176_byte_form_zookeeper_sends() {
        let config = "server.1=127.0.0.1:2888:3888:participant\nserver.2=127.0.0.1:2889:3889:participant\n\
                      server.3=127.0.0.1:2890:3890:participant\nversion=0";
        let n = Notification {
            state: ServerState::Looking,
            leader: 3,
            zxid: 0x1_0000_0005,
            election_epoch: 1,
            peer_epoch: 1,
            version: NOTIFICATION_VERSION,
            config: Some(Bytes::from(config)),
        };
        let mut out = BytesMut::new();
        n.encode(&mut out);
        // PROTOCOL.md §4.3: with this three-server config ZooKeeper's notifications are 176 bytes.
        assert_eq!(out.len(), 176);
        assert_eq!(
            hex(&out[..44]),
            "00000000\
             0000000000000003\
             0000000100000005\
             0000000000000001\
             0000000000000001\
             00000002\
             00000084"
        );
        assert_eq!(Notification::decode(&out), Some(n));
    }

    #[test]
    fn notification_accepts_the_older_formats_and_ignores_broken_ones() {
        let mut short = BytesMut::new();
        short.put_i32(1);
        short.put_i64(2);
        short.put_i64(0x3_0000_0001);
        short.put_i64(9);
        let n = Notification::decode(&short).unwrap();
        assert_eq!(
            (n.state, n.leader, n.peer_epoch, n.version, n.config),
            (ServerState::Following, 2, 3, 0, None)
        );
        let mut forty = short.clone();
        forty.put_i64(4);
        forty.put_i32(77); // the version field is not read from a 40-byte message
        let n = Notification::decode(&forty).unwrap();
        assert_eq!((n.peer_epoch, n.version), (4, 0));
        assert_eq!(Notification::decode(&short[..27]), None);
        // 36 bytes: a peer epoch but half a version.
        let mut partial = short.clone();
        partial.put_i64(4);
        assert_eq!(Notification::decode(&partial), None);
        // Unknown state.
        let mut bad_state = forty.clone();
        bad_state[..4].copy_from_slice(&9i32.to_be_bytes());
        assert_eq!(Notification::decode(&bad_state), None);
        // A config length past the end.
        let mut v2 = short.clone();
        v2.put_i64(4);
        v2.put_i32(2);
        v2.put_i32(10);
        v2.put_slice(b"abc");
        assert_eq!(Notification::decode(&v2), None);
        // Version 1 carries no config even if bytes follow.
        let mut v1 = short;
        v1.put_i64(4);
        v1.put_i32(1);
        v1.put_slice(b"trailing");
        assert_eq!(Notification::decode(&v1).unwrap().config, None);
    }
}
