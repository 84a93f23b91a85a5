//! The packets between a leader and its learners on the quorum port (PROTOCOL.md §4.5):
//! `QuorumPacket { int type, long zxid, buffer data, vector<Id> authinfo }` from
//! `zookeeper.jute`, written back to back with no outer length, and the records some packets
//! carry in `data`.
//!
//! Owns: the bytes of those packets. Must not touch: sockets, the Zab rules (`zab`).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::jute::{Decode, DecodeError, Encode};
use crate::proto::Id;

/// Packet types (`Leader.java` constants), each with who sends it.
pub mod packet_type {
    /// learner → leader: a client write forwarded (`i64 session, i32 cxid, i32 type` + request).
    pub const REQUEST: i32 = 1;
    /// leader → follower: a txn to log and acknowledge.
    pub const PROPOSAL: i32 = 2;
    /// learner → leader: the txn (or NEWLEADER, UPTODATE) with this zxid is on disk.
    pub const ACK: i32 = 3;
    /// leader → follower: the proposal with this zxid is committed.
    pub const COMMIT: i32 = 4;
    /// both ways: liveness, and the sessions a learner saw since its last ping.
    pub const PING: i32 = 5;
    /// both ways: is this session (reconnecting to a learner) still valid?
    pub const REVALIDATE: i32 = 6;
    /// leader → learner: a forwarded sync is done.
    pub const SYNC: i32 = 7;
    /// leader → observer: a committed txn, whole.
    pub const INFORM: i32 = 8;
    /// leader → follower: commit a reconfig and activate its config.
    pub const COMMITANDACTIVATE: i32 = 9;
    /// leader → learner: the new epoch, once sync is sent.
    pub const NEWLEADER: i32 = 10;
    /// follower → leader: first packet, with the accepted epoch.
    pub const FOLLOWERINFO: i32 = 11;
    /// leader → learner: sync is complete, start serving.
    pub const UPTODATE: i32 = 12;
    /// leader → learner: the txns that follow bring the learner up to date.
    pub const DIFF: i32 = 13;
    /// leader → learner: drop the log after this zxid.
    pub const TRUNC: i32 = 14;
    /// leader → learner: a snapshot stream follows.
    pub const SNAP: i32 = 15;
    /// observer → leader: first packet, with the accepted epoch.
    pub const OBSERVERINFO: i32 = 16;
    /// leader → learner: the epoch it proposes.
    pub const LEADERINFO: i32 = 17;
    /// learner → leader: agreed to the epoch; its last zxid and current epoch.
    pub const ACKEPOCH: i32 = 18;
    /// leader → observer: a committed reconfig txn, whole, to activate.
    pub const INFORMANDACTIVATE: i32 = 19;

    /// The name ZooKeeper logs for a type (`LearnerHandler.packetToString`).
    pub fn name(packet_type: i32) -> &'static str {
        match packet_type {
            REQUEST => "REQUEST",
            PROPOSAL => "PROPOSAL",
            ACK => "ACK",
            COMMIT => "COMMIT",
            PING => "PING",
            REVALIDATE => "REVALIDATE",
            SYNC => "SYNC",
            INFORM => "INFORM",
            COMMITANDACTIVATE => "COMMITANDACTIVATE",
            NEWLEADER => "NEWLEADER",
            FOLLOWERINFO => "FOLLOWERINFO",
            UPTODATE => "UPTODATE",
            DIFF => "DIFF",
            TRUNC => "TRUNC",
            SNAP => "SNAP",
            OBSERVERINFO => "OBSERVERINFO",
            LEADERINFO => "LEADERINFO",
            ACKEPOCH => "ACKEPOCH",
            INFORMANDACTIVATE => "INFORMANDACTIVATE",
            _ => "UNKNOWN",
        }
    }
}

/// The Zab protocol version 3.4+ leaders and learners announce (`0x10000`).
pub const ZAB_PROTOCOL_VERSION: i32 = 0x10000;

/// One packet on the quorum port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumPacket {
    /// One of `packet_type`.
    pub packet_type: i32,
    /// The zxid the packet is about (or an epoch `<< 32`, or -1).
    pub zxid: i64,
    /// The payload; `None` is jute's null buffer (-1).
    pub data: Option<Bytes>,
    /// The client's auth ids (REQUEST only); `None` is jute's null vector (-1).
    pub authinfo: Option<Vec<Id>>,
}

impl QuorumPacket {
    /// A packet with no data and no auth info.
    pub fn new(packet_type: i32, zxid: i64) -> QuorumPacket {
        QuorumPacket {
            packet_type,
            zxid,
            data: None,
            authinfo: None,
        }
    }

    /// A packet with data and no auth info.
    pub fn with_data(packet_type: i32, zxid: i64, data: Bytes) -> QuorumPacket {
        QuorumPacket {
            packet_type,
            zxid,
            data: Some(data),
            authinfo: None,
        }
    }
}

impl Encode for QuorumPacket {
    fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_i32(self.packet_type);
        out.put_i64(self.zxid);
        self.data.encode(out);
        match &self.authinfo {
            None => out.put_i32(-1),
            Some(ids) => ids.encode(out),
        }
    }

    fn encoded_len(&self) -> usize {
        12 + self.data.encoded_len() + self.authinfo.as_ref().map_or(4, Encode::encoded_len)
    }
}

/// Reads one packet from the front of `input`, which may hold less than a whole one:
/// `Ok(None)` means more bytes are needed; `Ok(Some((packet, used)))` gives the packet and its
/// size. A data buffer longer than `data_max_bytes` (`jute.maxbuffer` plus its extra size, as
/// ZooKeeper's `BinaryInputArchive` checks) or an impossible count is bad bytes.
pub fn decode_packet(input: &[u8], data_max_bytes: usize) -> Result<Option<(QuorumPacket, usize)>, DecodeError> {
    let mut buf = input;
    if buf.len() < 16 {
        return Ok(None);
    }
    let packet_type = buf.get_i32();
    let zxid = buf.get_i64();
    let data_len = buf.get_i32();
    let data = match data_len {
        -1 => None,
        n if n < -1 || n as usize > data_max_bytes => return Err(DecodeError::BadLength(n)),
        n => {
            if buf.len() < n as usize {
                return Ok(None);
            }
            let data = Bytes::copy_from_slice(&buf[..n as usize]);
            buf.advance(n as usize);
            Some(data)
        }
    };
    if buf.len() < 4 {
        return Ok(None);
    }
    let count = buf.get_i32();
    let authinfo = match count {
        -1 => None,
        n if n < -1 => return Err(DecodeError::BadLength(n)),
        n => {
            // Each Id is at least 8 bytes (two lengths): a count the input cannot hold yet is
            // waited for, one no packet could hold is refused.
            if n as usize > data_max_bytes / 8 {
                return Err(DecodeError::BadLength(n));
            }
            let mut ids = Vec::with_capacity((n as usize).min(buf.len() / 8));
            for _ in 0..n {
                let Some((id, used)) = decode_id(buf, data_max_bytes)? else {
                    return Ok(None);
                };
                buf.advance(used);
                ids.push(id);
            }
            Some(ids)
        }
    };
    let used = input.len() - buf.len();
    Ok(Some((
        QuorumPacket {
            packet_type,
            zxid,
            data,
            authinfo,
        },
        used,
    )))
}

fn decode_id(input: &[u8], max_bytes: usize) -> Result<Option<(Id, usize)>, DecodeError> {
    let mut buf = input;
    let mut strings = [String::new(), String::new()];
    for slot in &mut strings {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = buf.get_i32();
        if len == -1 {
            continue;
        }
        if len < -1 || len as usize > max_bytes {
            return Err(DecodeError::BadLength(len));
        }
        if buf.len() < len as usize {
            return Ok(None);
        }
        *slot = String::from_utf8(buf[..len as usize].to_vec())
            .map_err(|_| DecodeError::Invalid("auth id is not UTF-8".to_string()))?;
        buf.advance(len as usize);
    }
    let [scheme, id] = strings;
    Ok(Some((Id { scheme, id }, input.len() - buf.len())))
}

/// The `data` of FOLLOWERINFO and OBSERVERINFO (`LearnerInfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnerInfo {
    /// The learner's sid.
    pub server_id: i64,
    /// `ZAB_PROTOCOL_VERSION`.
    pub protocol_version: i32,
    /// The learner's config version.
    pub config_version: i64,
}

impl LearnerInfo {
    /// The record's bytes.
    pub fn to_bytes(self) -> Bytes {
        let mut out = BytesMut::with_capacity(20);
        out.put_i64(self.server_id);
        out.put_i32(self.protocol_version);
        out.put_i64(self.config_version);
        out.freeze()
    }

    /// Reads it as the leader does: the sid from the first 8 bytes, the protocol version if 12 or
    /// more, the config version if 20 or more (older learners send less).
    pub fn decode(data: &[u8]) -> Result<LearnerInfo, DecodeError> {
        let mut buf = data;
        if buf.len() < 8 {
            return Err(DecodeError::Truncated {
                needed: 8,
                remaining: buf.len(),
            });
        }
        let server_id = buf.get_i64();
        let protocol_version = if buf.len() >= 4 { buf.get_i32() } else { 0 };
        let config_version = if buf.len() >= 8 { buf.get_i64() } else { 0 };
        Ok(LearnerInfo {
            server_id,
            protocol_version,
            config_version,
        })
    }
}

/// The first bytes of a REQUEST's data: whose request it is (`Request.java` as
/// `LearnerHandler` reads it), followed by the client's request record as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The client's session.
    pub session_id: i64,
    /// The request's xid.
    pub cxid: i32,
    /// The opcode.
    pub op: i32,
}

impl RequestHead {
    /// Bytes of the head.
    pub const LEN: usize = 16;

    /// Appends the head.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_i64(self.session_id);
        out.put_i32(self.cxid);
        out.put_i32(self.op);
    }

    /// Splits the head off a REQUEST's data, leaving the request record in `data`.
    pub fn decode(data: &mut Bytes) -> Result<RequestHead, DecodeError> {
        Ok(RequestHead {
            session_id: i64::decode(data)?,
            cxid: i32::decode(data)?,
            op: i32::decode(data)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(packet: &QuorumPacket) -> BytesMut {
        let mut out = BytesMut::new();
        packet.encode(&mut out);
        assert_eq!(out.len(), packet.encoded_len());
        out
    }

    #[test]
    fn followerinfo_is_what_zookeeper_reads() {
        // PROTOCOL.md §4.7: FOLLOWERINFO zxid=acceptedEpoch<<32 data=LearnerInfo(3, 0x10000, 0).
        let info = LearnerInfo {
            server_id: 3,
            protocol_version: ZAB_PROTOCOL_VERSION,
            config_version: 0,
        };
        let packet = QuorumPacket::with_data(packet_type::FOLLOWERINFO, 1 << 32, info.to_bytes());
        let bytes = encode(&packet);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "0000000b0000000100000000000000140000000000000003000100000000000000000000ffffffff"
        );
        assert_eq!(decode_packet(&bytes, 1 << 20), Ok(Some((packet.clone(), bytes.len()))));
        assert_eq!(LearnerInfo::decode(packet.data.as_ref().unwrap()), Ok(info));
        // An older learner's 8-byte info.
        let old = LearnerInfo::decode(&7i64.to_be_bytes()).unwrap();
        assert_eq!((old.server_id, old.protocol_version, old.config_version), (7, 0, 0));
    }

    #[test]
    fn packets_are_read_only_when_whole_and_bad_lengths_are_refused() {
        let packet = QuorumPacket {
            packet_type: packet_type::REQUEST,
            zxid: -1,
            data: Some(Bytes::from_static(b"0123456789abcdefXYZ")),
            authinfo: Some(vec![Id {
                scheme: "digest".into(),
                id: "user:hash".into(),
            }]),
        };
        let mut stream = encode(&packet);
        let second = QuorumPacket::new(packet_type::PING, 0x1_0000_0004);
        stream.extend_from_slice(&encode(&second));
        let first_len = packet.encoded_len();
        for cut in 0..first_len {
            assert_eq!(decode_packet(&stream[..cut], 1 << 20), Ok(None), "cut at {cut}");
        }
        assert_eq!(decode_packet(&stream, 1 << 20), Ok(Some((packet, first_len))));
        assert_eq!(decode_packet(&stream[first_len..], 1 << 20), Ok(Some((second, 16 + 4))));
        let mut huge = BytesMut::new();
        huge.put_i32(packet_type::PROPOSAL);
        huge.put_i64(1);
        huge.put_i32(1 << 21);
        assert_eq!(decode_packet(&huge, 1 << 20), Err(DecodeError::BadLength(1 << 21)));
        let mut negative = BytesMut::new();
        negative.put_i32(packet_type::PROPOSAL);
        negative.put_i64(1);
        negative.put_i32(-1);
        negative.put_i32(-7);
        assert_eq!(decode_packet(&negative, 1 << 20), Err(DecodeError::BadLength(-7)));
    }

    #[test]
    fn request_head_splits_off_the_client_record() {
        let mut data = BytesMut::new();
        RequestHead {
            session_id: 0x0300_0000_0000_0007,
            cxid: 4,
            op: 5,
        }
        .encode(&mut data);
        data.extend_from_slice(b"record");
        let mut data = data.freeze();
        let head = RequestHead::decode(&mut data).unwrap();
        assert_eq!((head.session_id, head.cxid, head.op), (0x0300_0000_0000_0007, 4, 5));
        assert_eq!(&data[..], b"record");
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            if let Ok(Some((packet, used))) = decode_packet(&bytes, 1 << 20) {
                proptest::prop_assert!(used <= bytes.len());
                proptest::prop_assert_eq!(encode(&packet).len(), used);
            }
            let _ = LearnerInfo::decode(&bytes);
            let _ = crate::proto::election::decode_handshake(&bytes);
            let _ = crate::proto::election::Notification::decode(&bytes);
        }
    }
}
