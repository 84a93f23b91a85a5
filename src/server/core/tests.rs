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

/// Connects `conn` to a core with a real commit point and makes its session durable.
fn connect_durable(core: &mut Core, conn: ConnId) -> i64 {
    core.connect(conn, addr(), ConnectRequest { time_out: 30000, passwd: Bytes::from_static(&[0; 16]), ..Default::default() }, false, now(0));
    let zxid = core.take_unpersisted().last().expect("createSession txn").header.zxid;
    core.persisted_through(zxid, now(0));
    let outputs = core.take_outputs();
    let Output::Send(c, frame) = &outputs[0] else { panic!("{outputs:?}") };
    assert_eq!(*c, conn);
    ConnectResponse::decode(&mut frame.slice(4..)).unwrap().session_id
}

/// (connection, xid, err) of each output frame; events have xid -1.
fn replies(outputs: &[Output]) -> Vec<(ConnId, i32, i32)> {
    outputs
        .iter()
        .map(|o| {
            let Output::Send(conn, _) = o else { panic!("{o:?}") };
            let (header, _) = reply_header(o);
            (*conn, header.xid, header.err)
        })
        .collect()
}

fn exists(path: &str, watch: bool) -> PathWatchRequest {
    PathWatchRequest { path: path.into(), watch }
}

/// ZooKeeper's quorum `CommitProcessor` rule: a session's reads wait only for that session's own
/// pending writes. Another session's read is answered from the applied tree at once, so it cannot
/// see the write that is not durable yet.
#[test]
fn reads_of_other_sessions_bypass_a_pending_write() {
    let mut core = Core::restored(settings(), DataTree::new(true), &[], 0, None, now(0));
    connect_durable(&mut core, 1);
    connect_durable(&mut core, 2);
    assert!(request(&mut core, 1, 1, OpCode::Create, &create("/a", 0)).is_empty(), "not durable yet");
    let out = request(&mut core, 2, 1, OpCode::Exists, &exists("/a", false));
    assert_eq!(replies(&out), vec![(2, 1, ErrorCode::NoNode.code())], "answered now, without the pending create");
    assert_eq!(reply_header(&out[0]).0.zxid, 2, "the zxid of the applied tree");
    let out = request(&mut core, 2, 2, OpCode::GetData, &exists("/", false));
    assert_eq!(replies(&out), vec![(2, 2, 0)]);
    assert_eq!(core.outstanding(), 1);
    let zxid = core.take_unpersisted()[0].header.zxid;
    core.persisted_through(zxid, now(2));
    assert_eq!(replies(&core.take_outputs()), vec![(1, 1, 0)]);
    assert_eq!(core.outstanding(), 0);
}

/// A session's read after its own pending write waits for it, and the replies leave in request
/// order, interleaved correctly with the session's later writes.
#[test]
fn a_sessions_read_waits_for_its_own_pending_write() {
    let mut core = Core::restored(settings(), DataTree::new(true), &[], 0, None, now(0));
    connect_durable(&mut core, 1);
    connect_durable(&mut core, 2);
    assert!(request(&mut core, 1, 1, OpCode::Create, &create("/a", 0)).is_empty());
    assert!(request(&mut core, 1, 2, OpCode::Exists, &exists("/a", false)).is_empty(), "waits for xid 1");
    assert!(request(&mut core, 1, 3, OpCode::Create, &create("/a/b", 0)).is_empty());
    assert!(request(&mut core, 1, 4, OpCode::GetChildren, &exists("/a", false)).is_empty(), "waits for xid 3");
    assert_eq!(core.outstanding(), 4);
    let txns = core.take_unpersisted();
    assert_eq!(txns.len(), 2);
    // Only the first write is durable: its reply and the read behind it leave, nothing more.
    core.persisted_through(txns[0].header.zxid, now(2));
    let out = core.take_outputs();
    assert_eq!(replies(&out), vec![(1, 1, 0), (1, 2, 0)], "the read sees its own write");
    assert_eq!(core.outstanding(), 2);
    // Session 2 is not held up meanwhile.
    assert_eq!(replies(&request(&mut core, 2, 1, OpCode::Exists, &exists("/a/b", false))), vec![(2, 1, ErrorCode::NoNode.code())]);
    core.persisted_through(txns[1].header.zxid, now(3));
    let out = core.take_outputs();
    assert_eq!(replies(&out), vec![(1, 3, 0), (1, 4, 0)]);
    let mut body = reply_header(&out[1]).1;
    assert_eq!(crate::proto::GetChildrenResponse::decode(&mut body).unwrap().children, vec!["b".to_string()]);
    assert_eq!(core.outstanding(), 0);
}

/// Watches and the read bypass: a read that registers a watch while another session's write is
/// pending gets its reply first and the event when the write applies; a read that waited behind
/// its own write gets its reply before the event of any later txn; and no read sees a change
/// before the watch event for it has been queued.
#[test]
fn watch_events_never_overtake_the_reply_that_registered_them() {
    let mut core = Core::restored(settings(), DataTree::new(true), &[], 0, None, now(0));
    connect_durable(&mut core, 1);
    connect_durable(&mut core, 2);
    // Session 1's create of /w is pending; session 2 watches /w and is answered at once.
    assert!(request(&mut core, 1, 1, OpCode::Create, &create("/w", 0)).is_empty());
    assert_eq!(replies(&request(&mut core, 2, 1, OpCode::Exists, &exists("/w", true))), vec![(2, 1, ErrorCode::NoNode.code())]);
    // Session 2 now writes too, then reads /w behind its own pending write.
    assert!(request(&mut core, 2, 2, OpCode::Create, &create("/other", 0)).is_empty());
    assert!(request(&mut core, 2, 3, OpCode::GetData, &exists("/w", true)).is_empty());
    // Session 1 reads /y with a watch behind its own write; session 2 then creates /y.
    assert!(request(&mut core, 1, 2, OpCode::Exists, &exists("/y", true)).is_empty());
    assert!(request(&mut core, 2, 4, OpCode::Create, &create("/y", 0)).is_empty());
    let last = core.take_unpersisted().last().unwrap().header.zxid;
    core.persisted_through(last, now(2));
    let out = core.take_outputs();
    assert_eq!(
        replies(&out),
        vec![
            // Apply of /w: session 2's event comes before session 1's reply, and session 1's
            // waiting exists(/y) runs right after that reply, registering its watch.
            (2, -1, 0),
            (1, 1, 0),
            (1, 2, ErrorCode::NoNode.code()),
            // Apply of /other, then session 2's getData(/w), which sees /w after its event.
            (2, 2, 0),
            (2, 3, 0),
            // Apply of /y: the watch registered by exists(/y) fires after that exists' reply.
            (1, -1, 0),
            (2, 4, 0),
        ]
    );
    let event = |i: usize| WatcherEvent::decode(&mut reply_header(&out[i]).1).unwrap();
    assert_eq!((event(0).event_type, event(0).path.as_str()), (1, "/w"));
    assert_eq!((event(5).event_type, event(5).path.as_str()), (1, "/y"));
}

/// sync orders like a write: its reply waits for every txn prepped before it, whichever session
/// sent it, and the session's reads behind the sync wait for it.
#[test]
fn sync_waits_for_all_earlier_writes_and_holds_later_reads() {
    let mut core = Core::restored(settings(), DataTree::new(true), &[], 0, None, now(0));
    connect_durable(&mut core, 1);
    connect_durable(&mut core, 2);
    assert!(request(&mut core, 1, 1, OpCode::Create, &create("/a", 0)).is_empty());
    assert!(request(&mut core, 2, 1, OpCode::Sync, &PathRequest { path: "/a".into() }).is_empty());
    assert!(request(&mut core, 2, 2, OpCode::Exists, &exists("/a", false)).is_empty());
    let zxid = core.take_unpersisted()[0].header.zxid;
    core.persisted_through(zxid, now(2));
    assert_eq!(replies(&core.take_outputs()), vec![(1, 1, 0), (2, 1, 0), (2, 2, 0)]);
    assert_eq!(core.outstanding(), 0);
}

/// A session that reconnects on a new connection while its old connection's write is pending:
/// reads on the new connection still wait for it (ordering is per session, not per connection).
#[test]
fn reads_after_a_reconnect_wait_for_the_sessions_pending_write() {
    let mut core = Core::restored(settings(), DataTree::new(true), &[], 0, None, now(0));
    let session_id = connect_durable(&mut core, 1);
    assert!(request(&mut core, 1, 1, OpCode::Create, &create("/a", 0)).is_empty());
    let passwd = Bytes::copy_from_slice(&session_password(session_id));
    core.connect(2, addr(), ConnectRequest { time_out: 30000, session_id, passwd, ..Default::default() }, false, now(1));
    core.take_outputs();
    assert!(request(&mut core, 2, 1, OpCode::Exists, &exists("/a", false)).is_empty());
    let zxid = core.take_unpersisted()[0].header.zxid;
    core.persisted_through(zxid, now(2));
    // The write's reply still goes to the old (closing) connection, whose frames the driver
    // drops; the new connection's read follows it and sees the write.
    assert_eq!(replies(&core.take_outputs()), vec![(1, 1, 0), (2, 1, 0)]);
}

/// A follower's pipeline whose leader is this test: `Forward`s come out, committed txns go in.
fn follower() -> Core {
    let mut core = Core::new(
        CoreSettings {
            server_id: 2,
            ..settings()
        },
        7,
    );
    core.set_role(Role::Follower);
    core
}

fn forwards(outputs: &[Output]) -> Vec<&Forward> {
    outputs
        .iter()
        .filter_map(|o| if let Output::Forward(f) = o { Some(f) } else { None })
        .collect()
}

fn committed_txn(session_id: i64, cxid: i32, zxid: i64, body: TxnBody) -> Txn {
    let txn_type = match &body {
        TxnBody::CreateSession { .. } => OpCode::CreateSession as i32,
        TxnBody::CloseSession { .. } => OpCode::CloseSession as i32,
        TxnBody::Create { .. } => OpCode::Create as i32,
        _ => OpCode::SetData as i32,
    };
    Txn {
        header: TxnHeader {
            client_id: session_id,
            cxid,
            zxid,
            time: 1_700_000_000_000,
            txn_type,
        },
        body,
    }
}

/// Connects `conn` through the leader: the createSession goes out, comes back committed.
fn follower_connect(core: &mut Core, conn: ConnId, zxid: i64) -> i64 {
    core.connect(
        conn,
        addr(),
        ConnectRequest {
            time_out: 30000,
            passwd: Bytes::from_static(&[0; 16]),
            ..Default::default()
        },
        false,
        now(0),
    );
    let outputs = core.take_outputs();
    let [Output::Forward(forward)] = outputs.as_slice() else {
        panic!("{outputs:?}")
    };
    assert_eq!(
        (forward.cxid, forward.op, &forward.record[..]),
        (0, OpCode::CreateSession as i32, &30000i32.to_be_bytes()[..])
    );
    assert_eq!(forward.session_id >> 56, 2, "the session id carries this server's id");
    let session_id = forward.session_id;
    core.committed(
        committed_txn(session_id, 0, zxid, TxnBody::CreateSession { timeout_ms: 30000 }),
        now(1),
    );
    let outputs = core.take_outputs();
    let Output::Send(c, frame) = &outputs[0] else {
        panic!("{outputs:?}")
    };
    assert_eq!(*c, conn);
    let mut body = frame.slice(4..);
    assert_eq!(ConnectResponse::decode(&mut body).unwrap().session_id, session_id);
    session_id
}

#[test]
fn a_follower_forwards_writes_and_answers_them_when_they_come_back_committed() {
    let mut core = follower();
    let mine = follower_connect(&mut core, 1, 0x1_0000_0001);
    let other = follower_connect(&mut core, 2, 0x1_0000_0002);
    let outputs = request(&mut core, 1, 5, OpCode::Create, &create("/a", 0));
    let sent = forwards(&outputs);
    assert_eq!(sent.len(), 1);
    let mut expected = BytesMut::new();
    create("/a", 0).encode(&mut expected);
    assert_eq!(
        (sent[0].session_id, sent[0].cxid, sent[0].op, &sent[0].record[..]),
        (mine, 5, OpCode::Create as i32, &expected[..])
    );
    assert_eq!(
        sent[0].authinfo,
        vec![Id {
            scheme: "ip".into(),
            id: "127.0.0.1".into()
        }]
    );
    // The session's next read waits for the write; another session's read does not.
    assert!(request(&mut core, 1, 6, OpCode::Exists, &exists("/a", false)).is_empty());
    let out = request(&mut core, 2, 1, OpCode::Exists, &exists("/a", false));
    assert_eq!(reply_header(&out[0]).0.err, ErrorCode::NoNode.code());
    let txn = committed_txn(
        mine,
        5,
        0x1_0000_0003,
        TxnBody::Create {
            path: "/a".into(),
            data: Some(Bytes::from_static(b"x")),
            acl: open_acl_unsafe(),
            ephemeral: false,
            parent_cversion: 1,
        },
    );
    core.committed(txn, now(2));
    let out = core.take_outputs();
    assert_eq!(
        replies(&out),
        vec![(1, 5, 0), (1, 6, 0)],
        "the create's reply, then the read that waited"
    );
    assert_eq!(reply_header(&out[0]).0.zxid, 0x1_0000_0003);
    assert_eq!(
        core.local_sessions(),
        vec![(mine.min(other), 30000), (mine.max(other), 30000)]
    );
}

#[test]
fn a_follower_applies_other_servers_txns_and_fires_local_watches() {
    let mut core = follower();
    follower_connect(&mut core, 1, 0x1_0000_0001);
    assert!(request(&mut core, 1, 1, OpCode::Exists, &exists("/b", true)).len() == 1);
    let txn = committed_txn(
        0x0300_0000_0000_0001,
        9,
        0x1_0000_0002,
        TxnBody::Create {
            path: "/b".into(),
            data: None,
            acl: open_acl_unsafe(),
            ephemeral: false,
            parent_cversion: 1,
        },
    );
    core.committed(txn, now(2));
    let out = core.take_outputs();
    let [event] = out.as_slice() else { panic!("{out:?}") };
    assert_eq!(reply_header(event).0.xid, -1, "a watch event, no reply");
    assert!(core.tree.stat("/b").is_some());
}

#[test]
fn a_follower_forwards_sync_and_reconnects_through_the_leader_and_never_expires_sessions() {
    let mut core = follower();
    let session_id = follower_connect(&mut core, 1, 0x1_0000_0001);
    let out = request(&mut core, 1, 3, OpCode::Sync, &PathRequest { path: "/".into() });
    assert_eq!(forwards(&out)[0].op, OpCode::Sync as i32);
    assert!(
        request(&mut core, 1, 4, OpCode::Exists, &exists("/", false)).is_empty(),
        "reads wait behind the sync"
    );
    core.sync_done(now(2));
    assert_eq!(replies(&core.take_outputs()), vec![(1, 3, 0), (1, 4, 0)]);
    // Far past the session timeout: only the leader expires sessions.
    core.tick(now(10_000_000));
    assert!(core.take_outputs().is_empty());
    // A reconnect asks the leader.
    core.disconnect(1);
    let request = ConnectRequest {
        time_out: 30000,
        session_id,
        passwd: Bytes::copy_from_slice(&session_password(session_id)),
        ..Default::default()
    };
    core.connect(3, addr(), request, false, now(3));
    assert_eq!(
        core.take_outputs(),
        vec![Output::Revalidate {
            session_id,
            timeout_ms: 30000
        }]
    );
    core.revalidated(session_id, true, now(4));
    let out = core.take_outputs();
    let Output::Send(3, frame) = &out[0] else {
        panic!("{out:?}")
    };
    let mut body = frame.slice(4..);
    assert_eq!(ConnectResponse::decode(&mut body).unwrap().session_id, session_id);
}

#[test]
fn a_follower_forwards_close_session_and_closes_the_connection_at_its_commit() {
    let mut core = follower();
    let session_id = follower_connect(&mut core, 1, 0x1_0000_0001);
    let mut frame = BytesMut::new();
    RequestHeader {
        xid: 8,
        op: OpCode::CloseSession as i32,
    }
    .encode(&mut frame);
    core.request(1, frame.freeze(), now(1));
    let out = core.take_outputs();
    assert_eq!(forwards(&out)[0].op, OpCode::CloseSession as i32);
    core.committed(
        committed_txn(
            session_id,
            8,
            0x1_0000_0002,
            TxnBody::CloseSession {
                paths_to_delete: vec![],
            },
        ),
        now(2),
    );
    let out = core.take_outputs();
    assert_eq!(replies(&out[..1]), vec![(1, 8, 0)]);
    assert_eq!(out[1..], [Output::Close(1)]);
}

#[test]
fn a_leader_preps_forwarded_requests_and_applies_them_at_their_commit_without_a_local_reply() {
    let mut core = Core::new(settings(), 1);
    core.persist_immediately = false;
    core.start_epoch(2);
    let session_id = 0x0300_0000_0000_0001;
    let mut timeout = BytesMut::new();
    30000i32.encode(&mut timeout);
    let create_session = Forward { session_id, cxid: 0, op: OpCode::CreateSession as i32, record: timeout.freeze(), authinfo: vec![] };
    core.remote_request(create_session, now(0));
    let mut record = BytesMut::new();
    create("/remote", 0).encode(&mut record);
    let authinfo = vec![Id { scheme: "ip".into(), id: "10.0.0.1".into() }];
    core.remote_request(Forward { session_id, cxid: 4, op: OpCode::Create as i32, record: record.freeze(), authinfo }, now(1));
    let txns = core.take_unpersisted();
    let headers: Vec<(i64, i32, i64)> = txns.iter().map(|t| (t.header.client_id, t.header.cxid, t.header.zxid)).collect();
    assert_eq!(headers, vec![(session_id, 0, 0x2_0000_0001), (session_id, 4, 0x2_0000_0002)], "the new epoch's first zxids");
    assert!(core.tree.stat("/remote").is_none(), "nothing applies before the commit");
    core.persisted_through(0x2_0000_0002, now(2));
    assert!(core.tree.stat("/remote").is_some());
    assert!(core.take_outputs().is_empty(), "the learner answers its own client");
    assert!(core.revalidate(session_id, now(3)));
    assert!(!core.revalidate(0x0300_0000_0000_0002, now(3)));
    // Its session expires on the leader unless a learner's pings touch it.
    core.touch_sessions(&[(session_id, 30000)], now(20_000));
    core.tick(now(40_000));
    assert!(core.take_unpersisted().is_empty(), "touched at 20 s: alive at 40 s");
    core.tick(now(60_000));
    let expiry = core.take_unpersisted();
    assert!(matches!(expiry.as_slice(), [Txn { body: TxnBody::CloseSession { .. }, .. }]), "{expiry:?}");
}

/// Lists `path` with op (GetChildren or GetChildren2) and returns the names sorted and, for
/// GetChildren2, the Stat's numChildren.
fn list(core: &mut Core, conn: ConnId, xid: i32, op: OpCode, path: &str) -> (Vec<String>, Option<i32>) {
    let out = request(core, conn, xid, op, &exists(path, false));
    assert_eq!(replies(&out), vec![(conn, xid, 0)]);
    let mut body = reply_header(&out[0]).1;
    let mut names = crate::proto::GetChildrenResponse::decode(&mut body).unwrap().children;
    let num_children = (op == OpCode::GetChildren2).then(|| crate::proto::Stat::decode(&mut body).unwrap().num_children);
    assert!(body.is_empty(), "nothing after the reply");
    names.sort();
    (names, num_children)
}

/// A node with many children has its encoded listing kept between getChildren requests: every
/// listing still names exactly the children of the moment, through creates and deletes, for
/// getChildren and getChildren2 alike.
#[test]
fn listings_of_big_nodes_follow_every_create_and_delete() {
    let mut core = Core::restored(settings(), DataTree::new(true), &[], 0, None, now(0));
    connect_durable(&mut core, 1);
    let mut xid = 0;
    let mut write = |core: &mut Core, op: OpCode, path: String| {
        xid += 1;
        let out = match op {
            OpCode::Create => request(core, 1, xid, op, &create(&path, 0)),
            _ => request(core, 1, xid, op, &crate::proto::DeleteRequest { path, version: -1 }),
        };
        assert!(out.is_empty());
        let zxid = core.take_unpersisted()[0].header.zxid;
        core.persisted_through(zxid, now(2));
        assert_eq!(replies(&core.take_outputs()), vec![(1, xid, 0)]);
    };
    write(&mut core, OpCode::Create, "/p".into());
    let mut expected: Vec<String> = Vec::new();
    for i in 0..100 {
        write(&mut core, OpCode::Create, format!("/p/c{i:03}"));
        expected.push(format!("c{i:03}"));
    }
    for round in 0..3 {
        // Twice each: the second answer comes from the kept listing.
        for op in [OpCode::GetChildren, OpCode::GetChildren, OpCode::GetChildren2, OpCode::GetChildren2] {
            let (names, num_children) = list(&mut core, 1, 1000 + round, op, "/p");
            assert_eq!(names, expected, "round {round}, {op:?}");
            if op == OpCode::GetChildren2 {
                assert_eq!(num_children, Some(expected.len() as i32));
            }
        }
        core.tree.check_invariants().unwrap();
        match round {
            0 => {
                write(&mut core, OpCode::Create, "/p/new".into());
                expected.push("new".into());
            }
            1 => {
                write(&mut core, OpCode::Delete, "/p/c050".into());
                expected.retain(|n| n != "c050");
            }
            _ => {}
        }
        expected.sort();
    }
}
