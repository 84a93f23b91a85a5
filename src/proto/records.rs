//! Client-protocol and data records (`zookeeper.jute` modules `org.apache.zookeeper.proto` and
//! `org.apache.zookeeper.data`, PROTOCOL.md §2.1, §2.2, §2.4). Field order is wire order.

use bytes::{Bytes, BytesMut};

use crate::jute::{Decode, DecodeError, Encode};
use crate::jute_record;

jute_record! {
    /// An identity: scheme plus id (`world:anyone`, `digest:user:hash`, `ip:1.2.3.4/8`).
    #[derive(Hash, PartialOrd, Ord)]
    pub struct Id { pub scheme: String, pub id: String }
}
jute_record! {
    /// One access-control entry.
    #[derive(Hash, PartialOrd, Ord)]
    pub struct Acl { pub perms: i32, pub id: Id }
}
jute_record! {
    /// The Stat clients see (68 bytes; note `pzxid` is last on the wire).
    #[derive(Copy)]
    pub struct Stat {
        pub czxid: i64, pub mzxid: i64, pub ctime: i64, pub mtime: i64, pub version: i32,
        pub cversion: i32, pub aversion: i32, pub ephemeral_owner: i64, pub data_length: i32,
        pub num_children: i32, pub pzxid: i64,
    }
}
jute_record! {
    /// The Stat as stored in snapshots (60 bytes).
    #[derive(Copy)]
    pub struct StatPersisted {
        pub czxid: i64, pub mzxid: i64, pub ctime: i64, pub mtime: i64, pub version: i32,
        pub cversion: i32, pub aversion: i32, pub ephemeral_owner: i64, pub pzxid: i64,
    }
}
impl StatPersisted {
    /// `decode` from a borrowed slice (`jute::borrowed`), for snapshot loading.
    pub fn decode_borrowed(input: &mut &[u8]) -> Result<StatPersisted, DecodeError> {
        use crate::jute::borrowed::{int, long};
        Ok(StatPersisted {
            czxid: long(input)?,
            mzxid: long(input)?,
            ctime: long(input)?,
            mtime: long(input)?,
            version: int(input)?,
            cversion: int(input)?,
            aversion: int(input)?,
            ephemeral_owner: long(input)?,
            pzxid: long(input)?,
        })
    }
}
jute_record! {
    /// Header of every client request.
    pub struct RequestHeader { pub xid: i32, pub op: i32 }
}
jute_record! {
    /// Header of every server reply and notification.
    pub struct ReplyHeader { pub xid: i32, pub zxid: i64, pub err: i32 }
}
jute_record! {
    /// First message of a connection (followed, outside the record, by an optional readOnly byte).
    pub struct ConnectRequest {
        pub protocol_version: i32, pub last_zxid_seen: i64, pub time_out: i32, pub session_id: i64,
        pub passwd: Bytes,
    }
}
jute_record! {
    /// Answer to ConnectRequest (followed by the readOnly byte unless the client is an old one).
    pub struct ConnectResponse { pub protocol_version: i32, pub time_out: i32, pub session_id: i64, pub passwd: Bytes }
}
jute_record! {
    /// create, create2, createContainer.
    pub struct CreateRequest { pub path: String, pub data: Option<Bytes>, pub acl: Vec<Acl>, pub flags: i32 }
}
jute_record! {
    /// createTTL.
    pub struct CreateTtlRequest {
        pub path: String, pub data: Option<Bytes>, pub acl: Vec<Acl>, pub flags: i32, pub ttl: i64,
    }
}
jute_record! {
    /// create reply.
    pub struct CreateResponse { pub path: String }
}
jute_record! {
    /// create2/createContainer/createTTL reply.
    pub struct Create2Response { pub path: String, pub stat: Stat }
}
jute_record! {
    /// delete.
    pub struct DeleteRequest { pub path: String, pub version: i32 }
}
jute_record! {
    /// exists, getData, getChildren, getChildren2 (same shape).
    pub struct PathWatchRequest { pub path: String, pub watch: bool }
}
jute_record! {
    /// A reply that is just a Stat (exists, setData, setACL).
    pub struct StatResponse { pub stat: Stat }
}
jute_record! {
    /// getData reply.
    pub struct GetDataResponse { pub data: Option<Bytes>, pub stat: Stat }
}
jute_record! {
    /// setData.
    pub struct SetDataRequest { pub path: String, pub data: Option<Bytes>, pub version: i32 }
}
jute_record! {
    /// Requests that carry only a path (getACL, sync, getAllChildrenNumber, getEphemerals).
    pub struct PathRequest { pub path: String }
}
jute_record! {
    /// getACL reply.
    pub struct GetAclResponse { pub acl: Vec<Acl>, pub stat: Stat }
}
jute_record! {
    /// setACL.
    pub struct SetAclRequest { pub path: String, pub acl: Vec<Acl>, pub version: i32 }
}
jute_record! {
    /// getChildren reply.
    pub struct GetChildrenResponse { pub children: Vec<String> }
}
jute_record! {
    /// getChildren2 reply.
    pub struct GetChildren2Response { pub children: Vec<String>, pub stat: Stat }
}
jute_record! {
    /// getAllChildrenNumber reply.
    pub struct GetAllChildrenNumberResponse { pub total_number: i32 }
}
jute_record! {
    /// getEphemerals reply.
    pub struct GetEphemeralsResponse { pub ephemerals: Vec<String> }
}
jute_record! {
    /// check (in multi, or top level).
    pub struct CheckVersionRequest { pub path: String, pub version: i32 }
}
jute_record! {
    /// setWatches (opcode 101).
    pub struct SetWatches {
        pub relative_zxid: i64, pub data_watches: Vec<String>, pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
    }
}
jute_record! {
    /// setWatches2 (opcode 105).
    pub struct SetWatches2 {
        pub relative_zxid: i64, pub data_watches: Vec<String>, pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>, pub persistent_watches: Vec<String>,
        pub persistent_recursive_watches: Vec<String>,
    }
}
jute_record! {
    /// addWatch: mode 0 persistent, 1 persistent-recursive.
    pub struct AddWatchRequest { pub path: String, pub mode: i32 }
}
jute_record! {
    /// checkWatches / removeWatches: type 1 children, 2 data, 3 any.
    pub struct WatchTypeRequest { pub path: String, pub watcher_type: i32 }
}
jute_record! {
    /// Body of a notification.
    pub struct WatcherEvent { pub event_type: i32, pub state: i32, pub path: String }
}
jute_record! {
    /// An error result inside a multi reply, and the addWatch reply body.
    pub struct ErrorResponse { pub err: i32 }
}
jute_record! {
    /// auth (xid -4).
    pub struct AuthPacket { pub auth_type: i32, pub scheme: String, pub auth: Bytes }
}
jute_record! {
    /// reconfig.
    pub struct ReconfigRequest {
        pub joining_servers: String, pub leaving_servers: String, pub new_members: String, pub cur_config_id: i64,
    }
}
jute_record! {
    /// One identity in a whoAmI reply.
    pub struct ClientInfo { pub auth_scheme: String, pub user: String }
}
jute_record! {
    /// whoAmI reply.
    pub struct WhoAmIResponse { pub client_info: Vec<ClientInfo> }
}
jute_record! {
    /// Header before each op of a multi request/reply.
    pub struct MultiHeader { pub op: i32, pub done: bool, pub err: i32 }
}
jute_record! {
    /// sasl request and reply token.
    pub struct SaslToken { pub token: Bytes }
}

/// World-readable-and-writable ACL (`Ids.OPEN_ACL_UNSAFE`).
pub fn open_acl_unsafe() -> Vec<Acl> {
    vec![Acl { perms: crate::proto::consts::perms::ALL, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

/// Reads the optional trailing readOnly byte of a ConnectRequest: `None` for an old client.
pub fn decode_read_only_flag(input: &mut Bytes) -> Option<bool> {
    if input.is_empty() {
        None
    } else {
        bool::decode(input).ok()
    }
}

/// One sub-operation of a multi or multiRead request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// create/create2/createContainer (the header's type is kept; flags decide the kind).
    Create(i32, CreateRequest),
    /// createTTL.
    CreateTtl(CreateTtlRequest),
    /// delete.
    Delete(DeleteRequest),
    /// setData.
    SetData(SetDataRequest),
    /// check.
    Check(CheckVersionRequest),
    /// getChildren (multiRead only).
    GetChildren(PathWatchRequest),
    /// getData (multiRead only).
    GetData(PathWatchRequest),
}

impl MultiOp {
    /// True for the read sub-ops allowed in multiRead.
    pub fn is_read(&self) -> bool {
        matches!(self, MultiOp::GetChildren(_) | MultiOp::GetData(_))
    }
}

/// Decodes a `MultiOperationRecord`: ops until the `done` header. An unknown sub-op type is a
/// decode error (ZooKeeper: IOException → MarshallingError), never a crash.
pub fn decode_multi(input: &mut Bytes) -> Result<Vec<MultiOp>, DecodeError> {
    let mut ops = Vec::new();
    loop {
        let header = MultiHeader::decode(input)?;
        if header.done {
            return Ok(ops);
        }
        // Each op needs at least a header's worth of bytes; this bounds the loop by the frame size.
        let op = match header.op {
            1 | 15 | 19 => MultiOp::Create(header.op, CreateRequest::decode(input)?),
            21 => MultiOp::CreateTtl(CreateTtlRequest::decode(input)?),
            2 => MultiOp::Delete(DeleteRequest::decode(input)?),
            5 => MultiOp::SetData(SetDataRequest::decode(input)?),
            13 => MultiOp::Check(CheckVersionRequest::decode(input)?),
            8 => MultiOp::GetChildren(PathWatchRequest::decode(input)?),
            4 => MultiOp::GetData(PathWatchRequest::decode(input)?),
            other => return Err(DecodeError::Invalid(format!("invalid multi sub-op type {other}"))),
        };
        ops.push(op);
    }
}

/// One result of a multi or multiRead reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    /// create (path only).
    Create(String),
    /// create2-typed result (used for container and TTL sub-ops).
    Create2(String, Stat),
    /// delete.
    Delete,
    /// setData.
    SetData(Stat),
    /// check.
    Check,
    /// getChildren.
    GetChildren(Vec<String>),
    /// getData.
    GetData(Option<Bytes>, Stat),
    /// failed sub-op.
    Error(i32),
}

/// Encodes a `MultiResponse`: per result a header and body, then the `{-1, true, -1}` terminator.
pub fn encode_multi_response(results: &[MultiResult], out: &mut BytesMut) {
    for result in results {
        let (op, err) = match result {
            MultiResult::Create(_) => (1, 0),
            MultiResult::Create2(..) => (15, 0),
            MultiResult::Delete => (2, 0),
            MultiResult::SetData(_) => (5, 0),
            MultiResult::Check => (13, 0),
            MultiResult::GetChildren(_) => (8, 0),
            MultiResult::GetData(..) => (4, 0),
            MultiResult::Error(err) => (-1, *err),
        };
        MultiHeader { op, done: false, err }.encode(out);
        match result {
            MultiResult::Create(path) => crate::jute::encode_str(path, out),
            MultiResult::Create2(path, stat) => {
                crate::jute::encode_str(path, out);
                stat.encode(out);
            }
            MultiResult::Delete | MultiResult::Check => {}
            MultiResult::SetData(stat) => stat.encode(out),
            MultiResult::GetChildren(children) => children.encode(out),
            MultiResult::GetData(data, stat) => {
                data.encode(out);
                stat.encode(out);
            }
            MultiResult::Error(err) => err.encode(out),
        }
    }
    MultiHeader { op: -1, done: true, err: -1 }.encode(out);
}

/// A `GetChildrenResponse` (or, with `stat`, a `GetChildren2Response`) written straight from
/// borrowed names (UTF-8 bytes): the same bytes as encoding the record, without a `Vec<String>`.
pub fn encode_children_response<S: AsRef<[u8]>>(children: impl Iterator<Item = S>, stat: Option<&Stat>, out: &mut BytesMut) {
    crate::jute::encode_str_vector(children, out);
    if let Some(stat) = stat {
        stat.encode(out);
    }
}

/// A `GetDataResponse` written from borrowed data: the same bytes as encoding the record.
pub fn encode_get_data_response(data: Option<&[u8]>, stat: &Stat, out: &mut BytesMut) {
    crate::jute::encode_buffer(data, out);
    stat.encode(out);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jute::to_bytes;

    #[test]
    fn stat_is_68_bytes_with_pzxid_last() {
        let stat = Stat { pzxid: 0x0102_0304_0506_0708, ..Default::default() };
        let bytes = to_bytes(&stat);
        assert_eq!(bytes.len(), 68);
        assert_eq!(&bytes[60..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    /// Golden bytes from the real server (PROTOCOL.md §2.1, new-session response).
    #[test]
    fn connect_response_golden() {
        let response = ConnectResponse {
            protocol_version: 0,
            time_out: 10000,
            session_id: 0x0100_0093_60ef_0000,
            passwd: Bytes::from(hex("63fb1ccbb42c0beb798cdc131dce4a9e")),
        };
        let mut out = BytesMut::new();
        response.encode(&mut out);
        false.encode(&mut out);
        assert_eq!(out.to_vec(), hex("00000000000027100100009360ef00000000001063fb1ccbb42c0beb798cdc131dce4a9e00"));
    }

    /// Golden bytes of the observed failed multi `[create, bad check, delete]` (PROTOCOL.md §2.9).
    #[test]
    fn failed_multi_response_golden() {
        let mut out = BytesMut::new();
        encode_multi_response(
            &[MultiResult::Error(0), MultiResult::Error(-103), MultiResult::Error(-2)],
            &mut out,
        );
        let expected = "ffffffff000000000000000000\
                        ffffffff00ffffff99ffffff99\
                        ffffffff00fffffffefffffffe\
                        ffffffff01ffffffff";
        assert_eq!(out.to_vec(), hex(expected));
    }

    #[test]
    fn multi_with_unknown_sub_op_is_an_error_not_a_panic() {
        let mut out = BytesMut::new();
        MultiHeader { op: 99, done: false, err: -1 }.encode(&mut out);
        assert!(matches!(decode_multi(&mut out.freeze()), Err(DecodeError::Invalid(_))));
    }

    #[test]
    fn multi_round_trip() {
        let mut out = BytesMut::new();
        MultiHeader { op: 21, done: false, err: -1 }.encode(&mut out);
        CreateTtlRequest { path: "/t".into(), ttl: 500, flags: 5, ..Default::default() }.encode(&mut out);
        MultiHeader { op: 13, done: false, err: -1 }.encode(&mut out);
        CheckVersionRequest { path: "/t".into(), version: 3 }.encode(&mut out);
        MultiHeader { op: -1, done: true, err: -1 }.encode(&mut out);
        let ops = decode_multi(&mut out.freeze()).unwrap();
        assert_eq!(ops.len(), 2);
        assert!(matches!(&ops[0], MultiOp::CreateTtl(r) if r.ttl == 500));
        assert!(matches!(&ops[1], MultiOp::Check(r) if r.version == 3));
    }

    fn assert_len_exact<T: Encode + std::fmt::Debug>(record: &T) {
        assert_eq!(record.encoded_len(), to_bytes(record).len(), "encoded_len of {record:?}");
    }

    /// Records reserve `encoded_len` before encoding; it must be exact, nested or not.
    #[test]
    fn encoded_len_is_exact() {
        let stat = Stat { num_children: 3, ..Default::default() };
        assert_eq!(stat.encoded_len(), 68);
        assert_len_exact(&stat);
        assert_len_exact(&GetDataResponse { data: Some(Bytes::from_static(&[7; 100])), stat });
        assert_len_exact(&GetDataResponse { data: None, stat });
        assert_len_exact(&GetChildrenResponse { children: (0..1000).map(|i| format!("child-{i}")).collect() });
        assert_len_exact(&GetChildren2Response { children: vec![], stat });
    }

    #[test]
    fn borrowed_encoders_match_the_records() {
        let stat = Stat { czxid: 1, mzxid: 2, pzxid: 3, num_children: 2, ..Stat::default() };
        let names = ["b", "child-000001"];
        let owned: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut borrowed = BytesMut::new();
        encode_children_response(names.iter().copied(), None, &mut borrowed);
        assert_eq!(borrowed, crate::jute::to_bytes(&GetChildrenResponse { children: owned.clone() }));
        borrowed.clear();
        encode_children_response(names.iter().copied(), Some(&stat), &mut borrowed);
        assert_eq!(borrowed, crate::jute::to_bytes(&GetChildren2Response { children: owned, stat }));
        borrowed.clear();
        encode_children_response(std::iter::empty::<&str>(), None, &mut borrowed);
        assert_eq!(borrowed, crate::jute::to_bytes(&GetChildrenResponse { children: vec![] }));
        for data in [None, Some(&b""[..]), Some(&b"xyz"[..])] {
            borrowed.clear();
            encode_get_data_response(data, &stat, &mut borrowed);
            let record = GetDataResponse { data: data.map(Bytes::copy_from_slice), stat };
            assert_eq!(borrowed, crate::jute::to_bytes(&record));
        }
        assert_len_exact(&CreateRequest {
            path: "/a/b".into(),
            data: Some(Bytes::from_static(b"xyz")),
            acl: open_acl_unsafe(),
            flags: 3,
        });
        assert_len_exact(&GetAclResponse { acl: open_acl_unsafe(), stat });
        assert_len_exact(&ConnectResponse { protocol_version: 0, time_out: 1, session_id: 2, passwd: Bytes::from_static(&[0; 16]) });
        assert_len_exact(&SetWatches2 { relative_zxid: 9, data_watches: vec!["/x".into()], ..Default::default() });
        assert_len_exact(&MultiHeader { op: -1, done: true, err: -1 });
        assert_len_exact(&WatcherEvent { event_type: 3, state: 3, path: "/w".into() });
    }

    #[test]
    fn stat_persisted_decodes_the_same_borrowed() {
        let stat = StatPersisted { czxid: 1, mzxid: -2, ctime: 3 << 40, mtime: 4, version: 5, cversion: -6, aversion: 7, ephemeral_owner: i64::MIN, pzxid: 9 };
        let mut out = BytesMut::new();
        stat.encode(&mut out);
        let mut slice: &[u8] = &out;
        assert_eq!(StatPersisted::decode_borrowed(&mut slice), Ok(stat));
        assert!(slice.is_empty());
        assert!(matches!(StatPersisted::decode_borrowed(&mut &out[..59]), Err(DecodeError::Truncated { .. })));
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
