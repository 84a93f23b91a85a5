//! The path a slow request touched, for the slow-request log line. Only computed for requests over
//! the threshold, so it may decode again what the pipeline already decoded.

use bytes::Bytes;

use crate::jute::Decode;
use crate::proto::txn::TxnBody;
use crate::proto::OpCode;

/// The path a txn changes (the first sub-op's for a multi; empty for session txns).
pub(super) fn txn_path(body: &TxnBody) -> String {
    match body {
        TxnBody::Create { path, .. }
        | TxnBody::CreateContainer { path, .. }
        | TxnBody::CreateTtl { path, .. }
        | TxnBody::Delete { path, .. }
        | TxnBody::SetData { path, .. }
        | TxnBody::SetAcl { path, .. }
        | TxnBody::Check { path, .. } => path.clone(),
        TxnBody::Multi(ops) => ops.first().map(|(_, op)| txn_path(op)).unwrap_or_default(),
        _ => String::new(),
    }
}

/// The path a read request names: every read record that has one starts with it.
pub(super) fn request_path(op: OpCode, body: &Bytes) -> String {
    let starts_with_path = matches!(
        op,
        OpCode::Exists
            | OpCode::GetData
            | OpCode::GetAcl
            | OpCode::GetChildren
            | OpCode::GetChildren2
            | OpCode::Sync
            | OpCode::CheckWatches
            | OpCode::RemoveWatches
            | OpCode::GetEphemerals
            | OpCode::GetAllChildrenNumber
            | OpCode::AddWatch
    );
    if !starts_with_path {
        return String::new();
    }
    let mut input = body.clone();
    String::decode(&mut input).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::jute::Encode;

    #[test]
    fn paths_come_from_txns_and_read_records() {
        assert_eq!(txn_path(&TxnBody::Delete { path: "/a".into() }), "/a");
        let multi = TxnBody::Multi(vec![(2, TxnBody::Delete { path: "/b".into() })]);
        assert_eq!(txn_path(&multi), "/b");
        let mut out = BytesMut::new();
        "/c/d".to_string().encode(&mut out);
        out.extend_from_slice(&[1]);
        assert_eq!(request_path(OpCode::GetData, &out.clone().freeze()), "/c/d");
        assert_eq!(request_path(OpCode::SetWatches, &out.freeze()), "");
    }
}
