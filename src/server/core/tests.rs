use proptest::prelude::*;

use super::*;
use crate::proto::open_acl_unsafe;

fn settings() -> CoreSettings {
    CoreSettings {
        tick_ms: 500,
        min_session_timeout_ms: 1000,
        max_session_timeout_ms: 60000,
        server_id: 1,
        prep: PrepSettings { extended_types_enabled: true, ..Default::default() },
        container_max_never_used_ms: 0,
        container_max_per_minute: 10000,
    }
}

fn now(ms: i64) -> Now {
    Now { wall_ms: 1_700_000_000_000 + ms, mono_ms: ms }
}

fn addr() -> SocketAddr {
    "127.0.0.1:5000".parse().unwrap()
}

/// Connects `conn` with a new session and returns (session id, password).
fn connect(core: &mut Core, conn: ConnId, timeout: i32) -> (i64, Bytes) {
    core.connect(conn, addr(), ConnectRequest { time_out: timeout, passwd: Bytes::from_static(&[0; 16]), ..Default::default() }, false, now(0));
    let outputs = core.take_outputs();
    let Output::Send(c, frame) = &outputs[0] else { panic!("{outputs:?}") };
    assert_eq!(*c, conn);
    let mut body = frame.slice(4..);
    let response = ConnectResponse::decode(&mut body).unwrap();
    assert_eq!(body.len(), 1, "readOnly byte");
    (response.session_id, response.passwd)
}

fn request<T: Encode>(core: &mut Core, conn: ConnId, xid: i32, op: OpCode, record: &T) -> Vec<Output> {
    let mut out = BytesMut::new();
    RequestHeader { xid, op: op as i32 }.encode(&mut out);
    record.encode(&mut out);
    core.request(conn, out.freeze(), now(1));
    core.take_outputs()
}

fn reply_header(output: &Output) -> (ReplyHeader, Bytes) {
    let Output::Send(_, frame) = output else { panic!("{output:?}") };
    let mut body = frame.slice(4..);
    (ReplyHeader::decode(&mut body).unwrap(), body)
}

fn create(path: &str, flags: i32) -> CreateRequest {
    CreateRequest { path: path.into(), data: Some(Bytes::from_static(b"x")), acl: open_acl_unsafe(), flags }
}

#[test]
fn new_session_gets_timeout_clamped_and_java_password() {
    let mut core = Core::new(settings(), 0x93_60ef);
    let (session_id, passwd) = connect(&mut core, 1, 100);
    assert_eq!(session_id, 0x0100_0093_60ef_0000);
    assert_eq!(&passwd[..], &session_password(session_id)[..]);
    assert_eq!(core.conns[&1].timeout_ms, 1000);
    assert_eq!(core.last_processed_zxid(), 1);
}

#[test]
fn failed_write_consumes_a_zxid_and_replies_with_it() {
    let mut core = Core::new(settings(), 1);
    connect(&mut core, 1, 30000);
    let out = request(&mut core, 1, 1, OpCode::Create, &create("/a", 0));
    assert_eq!(reply_header(&out[0]).0, ReplyHeader { xid: 1, zxid: 2, err: 0 });
    let out = request(&mut core, 1, 2, OpCode::Create, &create("/a", 0));
    assert_eq!(reply_header(&out[0]).0, ReplyHeader { xid: 2, zxid: 3, err: ErrorCode::NodeExists.code() });
    let out = request(&mut core, 1, 3, OpCode::Create2, &create("/b", 0));
    let (header, mut body) = reply_header(&out[0]);
    assert_eq!(header.zxid, 4);
    let response = Create2Response::decode(&mut body).unwrap();
    assert_eq!((response.path.as_str(), response.stat.czxid, response.stat.pzxid), ("/b", 4, 4));
}

#[test]
fn watch_event_precedes_the_reply_of_the_write() {
    let mut core = Core::new(settings(), 1);
    connect(&mut core, 1, 30000);
    request(&mut core, 1, 1, OpCode::Exists, &PathWatchRequest { path: "/w".into(), watch: true });
    let out = request(&mut core, 1, 2, OpCode::Create, &create("/w", 0));
    assert_eq!(out.len(), 2);
    let (header, mut body) = reply_header(&out[0]);
    assert_eq!(header, ReplyHeader { xid: -1, zxid: -1, err: 0 });
    assert_eq!(WatcherEvent::decode(&mut body).unwrap(), WatcherEvent { event_type: 1, state: 3, path: "/w".into() });
    assert_eq!(reply_header(&out[1]).0.xid, 2);
}

#[test]
fn unknown_opcode_gets_unimplemented_then_close() {
    let mut core = Core::new(settings(), 1);
    connect(&mut core, 1, 30000);
    let out = request(&mut core, 1, 1, OpCode::Notification, &Bytes::new());
    assert_eq!(reply_header(&out[0]).0, ReplyHeader { xid: 1, zxid: -1, err: -6 });
    assert_eq!(out[1], Output::Close(1));
}

#[test]
fn multi_with_bad_sub_op_is_a_marshalling_error_and_server_goes_on() {
    let mut core = Core::new(settings(), 1);
    connect(&mut core, 1, 30000);
    let mut raw = BytesMut::new();
    crate::proto::MultiHeader { op: 99, done: false, err: -1 }.encode(&mut raw);
    let out = request(&mut core, 1, 1, OpCode::Multi, &raw.freeze());
    assert_eq!(reply_header(&out[0]).0.err, ErrorCode::MarshallingError.code());
    let out = request(&mut core, 1, 2, OpCode::Exists, &PathWatchRequest { path: "/".into(), watch: false });
    assert_eq!(reply_header(&out[0]).0.err, 0);
}

#[test]
fn expiry_deletes_ephemerals_and_notifies_others() {
    let mut core = Core::new(settings(), 1);
    connect(&mut core, 1, 1000);
    connect(&mut core, 2, 30000);
    request(&mut core, 1, 1, OpCode::Create, &create("/e", 1));
    request(&mut core, 2, 1, OpCode::Exists, &PathWatchRequest { path: "/e".into(), watch: true });
    core.tick(now(1499));
    assert!(core.take_outputs().is_empty());
    core.tick(now(2000));
    let out = core.take_outputs();
    let (header, mut body) = reply_header(&out[0]);
    assert_eq!(header.xid, -1);
    assert_eq!(WatcherEvent::decode(&mut body).unwrap().event_type, 2);
    assert_eq!(out[1], Output::Close(1));
    assert!(core.tree.stat("/e").is_none());
    assert_eq!(core.sessions.len(), 1);
}

#[test]
fn reconnect_with_wrong_password_is_expired_and_closed() {
    let mut core = Core::new(settings(), 1);
    let (session_id, passwd) = connect(&mut core, 1, 30000);
    core.connect(2, addr(), ConnectRequest { time_out: 30000, session_id, passwd: Bytes::from_static(&[1; 16]), ..Default::default() }, true, now(5));
    let out = core.take_outputs();
    assert_eq!(out[0], Output::Close(1), "the old connection of the session is closed first");
    let Output::Send(2, frame) = &out[1] else { panic!() };
    assert_eq!(frame.len(), 4 + 36, "old client: no readOnly byte");
    let response = ConnectResponse::decode(&mut frame.slice(4..)).unwrap();
    assert_eq!((response.time_out, response.session_id), (0, 0));
    assert_eq!(out[2], Output::Close(2));
    core.connect(3, addr(), ConnectRequest { time_out: 30000, session_id, passwd, ..Default::default() }, false, now(6));
    let out = core.take_outputs();
    let Output::Send(3, frame) = &out[0] else { panic!() };
    assert_eq!(ConnectResponse::decode(&mut frame.slice(4..)).unwrap().session_id, session_id);
}

#[test]
fn setwatches_fires_missed_events_before_its_reply() {
    let mut core = Core::new(settings(), 1);
    connect(&mut core, 1, 30000);
    request(&mut core, 1, 1, OpCode::Create, &create("/d", 0));
    let sw = SetWatches { relative_zxid: 1, data_watches: vec!["/d".into(), "/gone".into()], ..Default::default() };
    let out = request(&mut core, 1, -8, OpCode::SetWatches, &sw);
    assert_eq!(out.len(), 3);
    let events: Vec<i32> = out[..2].iter().map(|o| WatcherEvent::decode(&mut reply_header(o).1).unwrap().event_type).collect();
    assert_eq!(events, vec![3, 2]);
    assert_eq!(reply_header(&out[2]).0.xid, -8);
}

proptest! {
    /// Whatever bytes a client sends after its handshake, the pipeline never panics, answers or
    /// closes that one connection, and keeps serving another client.
    #[test]
    fn random_request_frames_never_break_the_server(frames in proptest::collection::vec(
        (any::<i32>(), 0i32..120, proptest::collection::vec(any::<u8>(), 0..96)), 1..24)) {
        let mut core = Core::new(settings(), 1);
        connect(&mut core, 1, 30000);
        connect(&mut core, 2, 30000);
        for (xid, op, body) in frames {
            let mut out = BytesMut::new();
            RequestHeader { xid, op }.encode(&mut out);
            out.extend_from_slice(&body);
            core.request(1, out.freeze(), now(1));
            core.take_outputs();
            prop_assert!(core.tree.check_invariants().is_ok());
        }
        let out = request(&mut core, 2, 7, OpCode::Exists, &PathWatchRequest { path: "/zookeeper".into(), watch: false });
        prop_assert_eq!(reply_header(&out[0]).0.err, 0);
    }

    /// Random multi bodies (valid headers, random sub-op types and bytes) never panic.
    #[test]
    fn random_multi_bodies_never_break_the_server(ops in proptest::collection::vec(
        (-2i32..30, proptest::collection::vec(any::<u8>(), 0..40)), 0..8)) {
        let mut core = Core::new(settings(), 1);
        connect(&mut core, 1, 30000);
        let mut body = BytesMut::new();
        for (op, bytes) in &ops {
            crate::proto::MultiHeader { op: *op, done: false, err: -1 }.encode(&mut body);
            body.extend_from_slice(bytes);
        }
        crate::proto::MultiHeader { op: -1, done: true, err: -1 }.encode(&mut body);
        let body = body.freeze();
        for op in [OpCode::Multi, OpCode::MultiRead] {
            let out = request(&mut core, 1, 1, op, &body);
            prop_assert!(!out.is_empty());
        }
    }
}

/// With a real commit point, a new session's ConnectResponse waits for its createSession txn to
/// be durable; frames pipelined behind the ConnectRequest (auth, requests) must not be answered
/// before it (ZooKeeper reads nothing past the ConnectRequest until the session exists).
#[test]
fn pipelined_frames_wait_for_the_session_to_be_durable() {
    let mut core = Core::restored(settings(), DataTree::new(true), &[], 0, None, now(0));
    core.connect(1, addr(), ConnectRequest { time_out: 30000, passwd: Bytes::from_static(&[0; 16]), ..Default::default() }, false, now(0));
    let mut auth = BytesMut::new();
    RequestHeader { xid: -4, op: OpCode::Auth as i32 }.encode(&mut auth);
    AuthPacket { auth_type: 0, scheme: "digest".into(), auth: Bytes::from_static(b"bob:secret") }.encode(&mut auth);
    core.request(1, auth.freeze(), now(1));
    let mut exists = BytesMut::new();
    RequestHeader { xid: 1, op: OpCode::Exists as i32 }.encode(&mut exists);
    PathWatchRequest { path: "/".into(), watch: false }.encode(&mut exists);
    core.request(1, exists.freeze(), now(1));
    assert!(core.take_outputs().is_empty(), "nothing may be answered before the session is durable");
    assert_eq!(core.take_unpersisted().len(), 1);
    core.persisted_through(1, now(2));
    let out = core.take_outputs();
    assert_eq!(out.len(), 3, "{out:?}");
    let Output::Send(1, first) = &out[0] else { panic!() };
    assert_eq!(first.len(), 4 + 37, "the ConnectResponse comes first");
    assert_eq!(reply_header(&out[1]).0.xid, -4);
    assert_eq!(reply_header(&out[2]).0, ReplyHeader { xid: 1, zxid: 1, err: 0 });
}

/// A log failure refuses the writes waiting for it, answers reads queued among them in request
/// order, applies nothing, and rewinds the zxid counter so the next write reuses the zxid.
#[test]
fn log_failure_refuses_pending_writes_in_order_and_rewinds() {
    let mut core = Core::restored(settings(), DataTree::new(true), &[], 0, None, now(0));
    core.connect(1, addr(), ConnectRequest { time_out: 30000, passwd: Bytes::from_static(&[0; 16]), ..Default::default() }, false, now(0));
    core.persisted_through(1, now(0));
    core.take_unpersisted();
    core.take_outputs();
    let frames: [(i32, OpCode, Bytes); 3] = [
        (1, OpCode::Create, crate::jute::to_bytes(&create("/a", 0))),
        (2, OpCode::Exists, crate::jute::to_bytes(&PathWatchRequest { path: "/".into(), watch: false })),
        (3, OpCode::Create, crate::jute::to_bytes(&create("/b", 0))),
    ];
    for (xid, op, body) in frames {
        let mut out = BytesMut::new();
        RequestHeader { xid, op: op as i32 }.encode(&mut out);
        out.extend_from_slice(&body);
        core.request(1, out.freeze(), now(1));
    }
    assert!(core.take_outputs().is_empty());
    assert_eq!(core.take_unpersisted().len(), 2);
    core.persist_failed(1, now(2));
    let replies: Vec<(i32, i32)> = core.take_outputs().iter().map(reply_header).map(|(h, _)| (h.xid, h.err)).collect();
    assert_eq!(replies, vec![(1, ErrorCode::SystemError.code()), (2, 0), (3, ErrorCode::SystemError.code())]);
    assert!(core.tree.stat("/a").is_none() && core.tree.stat("/b").is_none());
    assert_eq!(core.log_generation(), 1);
    // The next write reuses zxid 2 and succeeds once durable.
    let mut out = BytesMut::new();
    RequestHeader { xid: 4, op: OpCode::Create as i32 }.encode(&mut out);
    create("/a", 0).encode(&mut out);
    core.request(1, out.freeze(), now(3));
    assert_eq!(core.take_unpersisted()[0].header.zxid, 2);
    core.persisted_through(2, now(4));
    assert_eq!(reply_header(&core.take_outputs()[0]).0, ReplyHeader { xid: 4, zxid: 2, err: 0 });
}
