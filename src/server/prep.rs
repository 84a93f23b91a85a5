//! Prep: validates a write against the committed tree plus the effects of writes already prepped
//! but not yet applied, and turns it into a txn (`PrepRequestProcessor`, PROTOCOL.md §2.7–2.9,
//! §2.12). The order of checks is ZooKeeper's, because it decides which error a client sees.
//!
//! Owns: the pending overlay (ZooKeeper's `outstandingChanges`): path → the node's state after
//! the newest prepped-but-unapplied txn touching it, trimmed as txns are applied.
//! Must not touch: the tree (read-only here), watches, sockets, clocks (zxid and time come in).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::proto::consts::{perms, CONFIG_PATH, MAX_TTL_MS, QUOTA_PATH, ZOOKEEPER_PATH};
use crate::proto::txn::TxnBody;
use crate::proto::{Acl, CheckVersionRequest, CreateRequest, DeleteRequest, ErrorCode, Id, MultiOp, SetDataRequest};
use crate::server::auth::{check_acl, fixup_acl, AuthSettings};
use crate::tree::{split_parent, DataTree, NodeInfo, NodeKind};

/// Prepped-but-unapplied changes, newest state per path (`None` = deleted).
#[derive(Debug, Default)]
pub struct PendingOverlay {
    /// foldhash with a fixed seed, not std's SipHash: every write looks up and inserts two or three
    /// paths here (SipHash was 4% of the server's samples under create load). At most
    /// `globalOutstandingLimit` paths are pending, which bounds what colliding names could cost.
    records: HashMap<String, (i64, Option<NodeInfo>), foldhash::fast::FixedState>,
    order: VecDeque<(i64, String)>,
}

impl PendingOverlay {
    fn get(&self, path: &str) -> Option<&Option<NodeInfo>> {
        self.records.get(path).map(|(_, info)| info)
    }

    fn put(&mut self, zxid: i64, path: String, info: Option<NodeInfo>) {
        self.order.push_back((zxid, path.clone()));
        self.records.insert(path, (zxid, info));
    }

    /// Forgets changes whose txn (zxid ≤ `zxid`) has been applied to the tree.
    pub fn applied_through(&mut self, zxid: i64) {
        while let Some((z, _)) = self.order.front() {
            if *z > zxid {
                break;
            }
            let Some((z, path)) = self.order.pop_front() else { break };
            if self.records.get(&path).is_some_and(|(rz, _)| *rz == z) {
                self.records.remove(&path);
            }
        }
    }

    /// Number of pending records (`outstanding_changes` gauges).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Settings prep needs.
#[derive(Debug, Clone, Default)]
pub struct PrepSettings {
    /// ACL and super user settings.
    pub auth: AuthSettings,
    /// `extendedTypesEnabled`: TTL nodes allowed.
    pub extended_types_enabled: bool,
    /// `reconfigEnabled`.
    pub reconfig_enabled: bool,
}

/// One write request, decoded.
#[derive(Debug, Clone)]
pub enum WriteRequest {
    /// create (1), create2 (15), createContainer (19); the opcode decides container-ness.
    Create(i32, CreateRequest),
    /// createTTL (21).
    CreateTtl(CreateRequest, i64),
    /// delete.
    Delete(DeleteRequest),
    /// setData.
    SetData(SetDataRequest),
    /// setACL.
    SetAcl(String, Vec<Acl>, i32),
    /// check (top level).
    Check(CheckVersionRequest),
    /// multi.
    Multi(Vec<MultiOp>),
    /// reconfig.
    Reconfig,
    /// Internal: the container manager deleting an empty container or expired TTL node.
    DeleteContainer(String),
}

/// A view that layers a scratch map (one multi's changes) over the overlay over the tree.
struct View<'a> {
    tree: &'a DataTree,
    overlay: &'a PendingOverlay,
    scratch: Vec<(String, Option<NodeInfo>)>,
}

impl View<'_> {
    fn get(&self, path: &str) -> Option<NodeInfo> {
        let path = if path.is_empty() { "/" } else { path };
        if let Some((_, info)) = self.scratch.iter().rev().find(|(p, _)| p == path) {
            return info.clone();
        }
        match self.overlay.get(path) {
            Some(info) => info.clone(),
            None => self.tree.node_info(path),
        }
    }

    fn record(&self, path: &str) -> Result<NodeInfo, ErrorCode> {
        self.get(path).ok_or(ErrorCode::NoNode)
    }

    fn put(&mut self, path: &str, info: Option<NodeInfo>) {
        let path = if path.is_empty() { "/" } else { path };
        self.scratch.push((path.to_owned(), info));
    }
}

/// `PathUtils.validatePath`: BadArguments for anything ZooKeeper would refuse.
pub fn validate_path(path: &str) -> Result<(), ErrorCode> {
    let bad = Err(ErrorCode::BadArguments);
    if !path.starts_with('/') {
        return bad;
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return bad;
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return bad;
        }
    }
    for c in path.chars() {
        let c = c as u32;
        // Non-BMP characters are surrogate pairs in Java, which fall in the forbidden range.
        let forbidden = c == 0
            || (0x01..=0x1f).contains(&c)
            || (0x7f..=0x9f).contains(&c)
            || (0xd800..=0xf8ff).contains(&c)
            || (0xfff0..=0xffff).contains(&c)
            || c > 0xffff;
        if forbidden {
            return bad;
        }
    }
    Ok(())
}

fn is_special_path(path: &str) -> bool {
    matches!(path, "/" | ZOOKEEPER_PATH | QUOTA_PATH | CONFIG_PATH)
}

/// `checkAndIncVersion`: BadVersion unless `expected` is -1 or equal; returns current + 1.
fn check_and_inc_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(current.wrapping_add(1))
}

/// Create flags → (ephemeral, sequential, container, ttl); `BadArguments` for unknown flags.
fn create_mode(flags: i32) -> Result<(bool, bool, bool, bool), ErrorCode> {
    Ok(match flags {
        0 => (false, false, false, false),
        1 => (true, false, false, false),
        2 => (false, true, false, false),
        3 => (true, true, false, false),
        4 => (false, false, true, false),
        5 => (false, false, false, true),
        6 => (false, true, false, true),
        _ => return Err(ErrorCode::BadArguments),
    })
}

/// Preps one write into a txn body. `session_id` is the caller's session, `auth_ids` its
/// identities. Overlay changes are recorded under `zxid` only when the whole request succeeds.
pub fn prep_write(
    request: &WriteRequest,
    session_id: i64,
    auth_ids: &[Id],
    zxid: i64,
    tree: &DataTree,
    overlay: &mut PendingOverlay,
    settings: &PrepSettings,
) -> Result<TxnBody, ErrorCode> {
    let mut view = View { tree, overlay, scratch: Vec::new() };
    let body = match request {
        WriteRequest::Multi(ops) => prep_multi(ops, session_id, auth_ids, zxid, &mut view, settings),
        single => prep_one(single, session_id, auth_ids, zxid, &mut view, settings)?,
    };
    // A failed multi still logs a txn but leaves no pending changes (they are rolled back).
    let failed_multi = matches!(&body, TxnBody::Multi(subs) if subs.iter().any(|(_, b)| matches!(b, TxnBody::Error { .. })));
    if !failed_multi {
        let scratch = std::mem::take(&mut view.scratch);
        for (path, info) in scratch {
            overlay.put(zxid, path, info);
        }
    }
    Ok(body)
}

fn prep_multi(
    ops: &[MultiOp],
    session_id: i64,
    auth_ids: &[Id],
    zxid: i64,
    view: &mut View<'_>,
    settings: &PrepSettings,
) -> TxnBody {
    let mut subs = Vec::with_capacity(ops.len());
    let mut failed = false;
    for op in ops {
        if failed {
            subs.push((-1, TxnBody::Error { err: ErrorCode::RuntimeInconsistency.code() }));
            continue;
        }
        // The server re-derives the sub-op type from the flags (`Op.create`): create, create2 and
        // createContainer headers become create (1) unless the flags say container or TTL.
        let single = match op {
            MultiOp::Create(_, req) => match req.flags {
                4 => WriteRequest::Create(19, req.clone()),
                5 | 6 => WriteRequest::CreateTtl(req.clone(), -1),
                _ => WriteRequest::Create(1, req.clone()),
            },
            MultiOp::CreateTtl(req) => WriteRequest::CreateTtl(
                CreateRequest { path: req.path.clone(), data: req.data.clone(), acl: req.acl.clone(), flags: req.flags },
                req.ttl,
            ),
            MultiOp::Delete(req) => WriteRequest::Delete(req.clone()),
            MultiOp::SetData(req) => WriteRequest::SetData(req.clone()),
            MultiOp::Check(req) => WriteRequest::Check(req.clone()),
            MultiOp::GetChildren(_) | MultiOp::GetData(_) => {
                failed = true;
                subs.push((-1, TxnBody::Error { err: ErrorCode::MarshallingError.code() }));
                continue;
            }
        };
        match prep_one(&single, session_id, auth_ids, zxid, view, settings) {
            Ok(body) => subs.push((txn_type(&single, &body), body)),
            Err(err) => {
                failed = true;
                subs.push((-1, TxnBody::Error { err: err.code() }));
            }
        }
    }
    TxnBody::Multi(subs)
}

/// The txn type logged for a prepped request.
pub fn txn_type(request: &WriteRequest, body: &TxnBody) -> i32 {
    match body {
        TxnBody::Error { .. } => -1,
        TxnBody::Create { .. } => match request {
            WriteRequest::Create(15, _) => 15,
            _ => 1,
        },
        TxnBody::CreateContainer { .. } => 19,
        TxnBody::CreateTtl { .. } => 21,
        TxnBody::Delete { .. } => match request {
            WriteRequest::DeleteContainer(_) => 20,
            _ => 2,
        },
        TxnBody::SetData { .. } => 5,
        TxnBody::SetAcl { .. } => 7,
        TxnBody::Check { .. } => 13,
        TxnBody::Multi(_) => 14,
        TxnBody::CreateSession { .. } => -10,
        TxnBody::CloseSession { .. } => -11,
    }
}

fn prep_one(
    request: &WriteRequest,
    session_id: i64,
    auth_ids: &[Id],
    zxid: i64,
    view: &mut View<'_>,
    settings: &PrepSettings,
) -> Result<TxnBody, ErrorCode> {
    let auth = &settings.auth;
    match request {
        WriteRequest::Create(opcode, req) => prep_create(*opcode, req, -1, session_id, auth_ids, zxid, view, settings),
        WriteRequest::CreateTtl(req, ttl) => prep_create(21, req, *ttl, session_id, auth_ids, zxid, view, settings),
        WriteRequest::Delete(DeleteRequest { path, version }) => {
            prep_delete(path, *version, auth_ids, zxid, view, auth, false)
        }
        WriteRequest::DeleteContainer(path) => prep_delete(path, -1, auth_ids, zxid, view, auth, true),
        WriteRequest::SetData(req) => {
            validate_path(&req.path)?;
            let mut node = view.record(&req.path)?;
            check_acl(&node.acl, perms::WRITE, auth_ids, auth)?;
            let version = check_and_inc_version(node.stat.version, req.version)?;
            node.stat.version = version;
            node.stat.mzxid = zxid;
            view.put(&req.path, Some(node));
            Ok(TxnBody::SetData { path: req.path.clone(), data: req.data.clone(), version })
        }
        WriteRequest::SetAcl(path, acl, expected) => {
            validate_path(path)?;
            let acl = fixup_acl(acl, auth_ids)?;
            let mut node = view.record(path)?;
            check_acl(&node.acl, perms::ADMIN, auth_ids, auth)?;
            let version = check_and_inc_version(node.stat.aversion, *expected)?;
            node.stat.aversion = version;
            node.acl = Arc::from(acl.clone());
            view.put(path, Some(node));
            Ok(TxnBody::SetAcl { path: path.clone(), acl, version })
        }
        WriteRequest::Check(req) => {
            validate_path(&req.path)?;
            let node = view.record(&req.path)?;
            check_acl(&node.acl, perms::READ, auth_ids, auth)?;
            let version = check_and_inc_version(node.stat.version, req.version)?;
            Ok(TxnBody::Check { path: req.path.clone(), version })
        }
        WriteRequest::Reconfig => {
            if !settings.reconfig_enabled {
                return Err(ErrorCode::ReconfigDisabled);
            }
            // Standalone: reconfiguration is not supported (`PrepRequestProcessor`, ClassCastException).
            Err(ErrorCode::Unimplemented)
        }
        WriteRequest::Multi(_) => Err(ErrorCode::MarshallingError),
    }
}

#[allow(clippy::too_many_arguments)]
fn prep_create(
    opcode: i32,
    req: &CreateRequest,
    ttl: i64,
    session_id: i64,
    auth_ids: &[Id],
    zxid: i64,
    view: &mut View<'_>,
    settings: &PrepSettings,
) -> Result<TxnBody, ErrorCode> {
    let (ephemeral, sequential, _, is_ttl) = create_mode(req.flags)?;
    if is_ttl && !settings.extended_types_enabled {
        return Err(ErrorCode::Unimplemented);
    }
    // EphemeralType.validateTTL: TTL modes need 0 < ttl ≤ max; other modes must not carry one.
    if is_ttl {
        if ttl <= 0 || ttl > MAX_TTL_MS {
            return Err(ErrorCode::BadArguments);
        }
    } else if ttl >= 0 {
        return Err(ErrorCode::BadArguments);
    }
    let path = &req.path;
    let Some((parent_path, _)) = split_parent(path) else { return Err(ErrorCode::BadArguments) };
    if path.contains('\0') {
        return Err(ErrorCode::BadArguments);
    }
    let acl = fixup_acl(&req.acl, auth_ids)?;
    let mut parent = view.record(parent_path)?;
    check_acl(&parent.acl, perms::CREATE, auth_ids, &settings.auth)?;
    let parent_cversion = parent.stat.cversion;
    let final_path = if sequential { format!("{path}{parent_cversion:010}") } else { path.clone() };
    validate_path(&final_path)?;
    if view.get(&final_path).is_some() {
        return Err(ErrorCode::NodeExists);
    }
    if let NodeKind::Ephemeral(_) = NodeKind::from_owner(parent.stat.ephemeral_owner, settings.extended_types_enabled) {
        return Err(ErrorCode::NoChildrenForEphemerals);
    }
    let new_cversion = parent_cversion.wrapping_add(1);
    let kind = match opcode {
        19 => NodeKind::Container,
        21 => NodeKind::Ttl(ttl),
        _ if ephemeral => NodeKind::Ephemeral(session_id),
        _ => NodeKind::Persistent,
    };
    parent.stat.cversion = new_cversion;
    parent.stat.pzxid = zxid;
    parent.num_children += 1;
    view.put(parent_path, Some(parent));
    let stat = crate::proto::StatPersisted {
        czxid: zxid,
        mzxid: zxid,
        pzxid: zxid,
        ephemeral_owner: kind.ephemeral_owner(),
        ..Default::default()
    };
    view.put(&final_path, Some(NodeInfo { stat, num_children: 0, acl: Arc::from(acl.clone()) }));
    let data: Option<Bytes> = req.data.clone();
    Ok(match kind {
        NodeKind::Container => TxnBody::CreateContainer { path: final_path, data, acl, parent_cversion: new_cversion },
        NodeKind::Ttl(ttl_ms) => TxnBody::CreateTtl { path: final_path, data, acl, parent_cversion: new_cversion, ttl_ms },
        _ => TxnBody::Create { path: final_path, data, acl, ephemeral, parent_cversion: new_cversion },
    })
}

fn prep_delete(
    path: &str,
    version: i32,
    auth_ids: &[Id],
    zxid: i64,
    view: &mut View<'_>,
    auth: &AuthSettings,
    container_manager: bool,
) -> Result<TxnBody, ErrorCode> {
    let Some((parent_path, _)) = split_parent(path) else { return Err(ErrorCode::BadArguments) };
    if path.contains('\0') || is_special_path(path) {
        return Err(ErrorCode::BadArguments);
    }
    let mut parent = view.record(parent_path)?;
    if !container_manager {
        check_acl(&parent.acl, perms::DELETE, auth_ids, auth)?;
    }
    let node = view.record(path)?;
    if container_manager {
        // The container manager re-checks: a real ephemeral is never reaped (BadVersion), nor a
        // node that gained children (NotEmpty) (`PrepRequestProcessor` case deleteContainer).
        if let NodeKind::Ephemeral(_) = NodeKind::from_owner(node.stat.ephemeral_owner, true) {
            return Err(ErrorCode::BadVersion);
        }
    }
    check_and_inc_version(node.stat.version, version)?;
    if node.num_children > 0 {
        return Err(ErrorCode::NotEmpty);
    }
    parent.num_children -= 1;
    parent.stat.pzxid = zxid;
    view.put(parent_path, Some(parent));
    view.put(path, None);
    Ok(TxnBody::Delete { path: path.to_owned() })
}

/// The ephemerals a closing session owns, including ones still pending in the overlay.
pub fn closing_session_paths(session_id: i64, tree: &DataTree, overlay: &PendingOverlay) -> Vec<String> {
    let mut paths = tree.ephemerals_of(session_id);
    for (path, (_, info)) in &overlay.records {
        match info {
            Some(info) if info.stat.ephemeral_owner == session_id && !paths.contains(path) => paths.push(path.clone()),
            None => paths.retain(|p| p != path),
            _ => {}
        }
    }
    paths.sort();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::open_acl_unsafe;
    use crate::proto::txn::{Txn, TxnHeader};

    fn create(path: &str, flags: i32) -> WriteRequest {
        WriteRequest::Create(1, CreateRequest { path: path.into(), data: None, acl: open_acl_unsafe(), flags })
    }

    fn prep(tree: &DataTree, overlay: &mut PendingOverlay, req: &WriteRequest, zxid: i64) -> Result<TxnBody, ErrorCode> {
        prep_write(req, 5, &[], zxid, tree, overlay, &PrepSettings::default())
    }

    #[test]
    fn paths_are_validated_like_zookeeper() {
        for bad in ["", "a", "/a/", "//", "/a//b", "/.", "/a/..", "/a\u{1}", "/\u{e000}", "/😀"] {
            assert_eq!(validate_path(bad), Err(ErrorCode::BadArguments), "{bad:?}");
        }
        for good in ["/", "/a", "/a.b/..c", "/é"] {
            assert_eq!(validate_path(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn overlay_lets_later_writes_see_earlier_pending_ones() {
        let tree = DataTree::new(false);
        let mut overlay = PendingOverlay::default();
        prep(&tree, &mut overlay, &create("/a", 0), 1).unwrap();
        prep(&tree, &mut overlay, &create("/a/b", 0), 2).unwrap();
        assert_eq!(prep(&tree, &mut overlay, &create("/a", 0), 3), Err(ErrorCode::NodeExists));
        let seq = prep(&tree, &mut overlay, &create("/a/s", 2), 4).unwrap();
        assert!(matches!(seq, TxnBody::Create { ref path, parent_cversion: 2, .. } if path == "/a/s0000000001"));
        overlay.applied_through(4);
        assert!(overlay.is_empty());
    }

    #[test]
    fn multi_sees_its_own_earlier_ops_and_rolls_back() {
        let tree = DataTree::new(false);
        let mut overlay = PendingOverlay::default();
        let ok = WriteRequest::Multi(vec![
            MultiOp::Create(1, CreateRequest { path: "/m".into(), acl: open_acl_unsafe(), ..Default::default() }),
            MultiOp::Create(15, CreateRequest { path: "/m/c".into(), acl: open_acl_unsafe(), ..Default::default() }),
            MultiOp::Check(CheckVersionRequest { path: "/m".into(), version: 0 }),
        ]);
        let body = prep(&tree, &mut overlay, &ok, 1).unwrap();
        let TxnBody::Multi(subs) = body else { panic!() };
        assert_eq!(subs.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![1, 1, 13]);
        let bad = WriteRequest::Multi(vec![
            MultiOp::Create(1, CreateRequest { path: "/x".into(), acl: open_acl_unsafe(), ..Default::default() }),
            MultiOp::Check(CheckVersionRequest { path: "/m".into(), version: 7 }),
            MultiOp::Delete(DeleteRequest { path: "/m".into(), version: -1 }),
        ]);
        let body = prep(&tree, &mut overlay, &bad, 2).unwrap();
        let TxnBody::Multi(subs) = body else { panic!() };
        assert_eq!(subs[1].1, TxnBody::Error { err: -103 });
        assert_eq!(subs[2].1, TxnBody::Error { err: -2 });
        // /x was rolled back, so it can be created now.
        assert!(prep(&tree, &mut overlay, &create("/x", 0), 3).is_ok());
    }

    #[test]
    fn create_errors_in_zookeepers_order() {
        let mut tree = DataTree::new(true);
        let mut overlay = PendingOverlay::default();
        assert_eq!(prep(&tree, &mut overlay, &create("/a", 9), 1), Err(ErrorCode::BadArguments));
        assert_eq!(prep(&tree, &mut overlay, &create("/a", 5), 1), Err(ErrorCode::Unimplemented));
        let no_acl = WriteRequest::Create(1, CreateRequest { path: "/nope/x".into(), ..Default::default() });
        assert_eq!(prep(&tree, &mut overlay, &no_acl, 1), Err(ErrorCode::InvalidAcl));
        assert_eq!(prep(&tree, &mut overlay, &create("/nope/x", 0), 1), Err(ErrorCode::NoNode));
        let eph = prep(&tree, &mut overlay, &create("/e", 1), 1).unwrap();
        let mut t = Vec::new();
        tree.apply(&Txn { header: TxnHeader { client_id: 5, zxid: 1, ..Default::default() }, body: eph }, &mut t);
        overlay.applied_through(1);
        assert_eq!(prep(&tree, &mut overlay, &create("/e/c", 0), 2), Err(ErrorCode::NoChildrenForEphemerals));
        let delete_zk = WriteRequest::Delete(DeleteRequest { path: "/zookeeper".into(), version: -1 });
        assert_eq!(prep(&tree, &mut overlay, &delete_zk, 2), Err(ErrorCode::BadArguments));
        assert_eq!(closing_session_paths(5, &tree, &overlay), vec!["/e"]);
    }
}
