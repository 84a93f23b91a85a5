//! Transactions: what prep produces, what the log stores and Zab replicates, and what apply reads
//! (PROTOCOL.md §5.1). The leader fixes every non-deterministic value (zxid, time, sequential
//! suffix, session id) in the txn; applying one is a pure function of the tree and the txn.

use bytes::{Bytes, BytesMut};

use crate::jute::{Decode, DecodeError, Encode};
use crate::jute_record;
use crate::proto::records::Acl;

jute_record! {
    /// Header of every logged txn.
    pub struct TxnHeader { pub client_id: i64, pub cxid: i32, pub zxid: i64, pub time: i64, pub txn_type: i32 }
}
jute_record! {
    /// Digest of the tree after a txn (`TxnDigest`; absent on error txns and older logs).
    #[derive(Copy)]
    pub struct TxnDigest { pub version: i32, pub tree_digest: i64 }
}

/// The body of a txn, one variant per `zookeeper.jute` txn record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnBody {
    /// createSession: the negotiated timeout.
    CreateSession {
        /// ms
        timeout_ms: i32,
    },
    /// closeSession: the ephemerals to delete.
    CloseSession {
        /// Paths known at prep time; apply also removes any other ephemeral of the session.
        paths_to_delete: Vec<String>,
    },
    /// create / create2 (type 1 or 15).
    Create {
        /// Final path, sequential suffix included.
        path: String,
        /// Node data.
        data: Option<Bytes>,
        /// Fixed-up ACL.
        acl: Vec<Acl>,
        /// Whether the node is owned by the txn's session.
        ephemeral: bool,
        /// The parent's persisted cversion after this create.
        parent_cversion: i32,
    },
    /// createContainer (type 19).
    CreateContainer {
        /// Path.
        path: String,
        /// Data.
        data: Option<Bytes>,
        /// ACL.
        acl: Vec<Acl>,
        /// Parent's cversion after.
        parent_cversion: i32,
    },
    /// createTTL (type 21).
    CreateTtl {
        /// Final path.
        path: String,
        /// Data.
        data: Option<Bytes>,
        /// ACL.
        acl: Vec<Acl>,
        /// Parent's cversion after.
        parent_cversion: i32,
        /// Time to live in ms.
        ttl_ms: i64,
    },
    /// delete (type 2) or deleteContainer (type 20).
    Delete {
        /// Path.
        path: String,
    },
    /// setData (type 5; reconfig uses type 16 with the same body).
    SetData {
        /// Path.
        path: String,
        /// New data.
        data: Option<Bytes>,
        /// The new version.
        version: i32,
    },
    /// setACL.
    SetAcl {
        /// Path.
        path: String,
        /// New ACL.
        acl: Vec<Acl>,
        /// The new aversion.
        version: i32,
    },
    /// check (inside multi).
    Check {
        /// Path.
        path: String,
        /// Expected version.
        version: i32,
    },
    /// multi: sub-txns sharing the outer header.
    Multi(Vec<(i32, TxnBody)>),
    /// A failed write (consumes a zxid).
    Error {
        /// The ZooKeeper error code.
        err: i32,
    },
}

/// A complete txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// Header (zxid, time, session, type).
    pub header: TxnHeader,
    /// Body.
    pub body: TxnBody,
}

/// Decodes a log entry body, which is also a PROPOSAL's data: `TxnHeader`, the record for its
/// type, then an optional `TxnDigest` (`SerializeUtils.deserializeTxn`: a digest cut short reads
/// as none). Errors are reasons.
pub fn decode_entry(mut body: Bytes) -> Result<(Txn, Option<TxnDigest>), String> {
    let header = TxnHeader::decode(&mut body).map_err(|e| format!("txn header: {e}"))?;
    let txn_type = header.txn_type;
    let body_record = TxnBody::decode(txn_type, &mut body).map_err(|e| format!("txn type {txn_type}: {e}"))?;
    let digest = if body.len() >= 12 { TxnDigest::decode(&mut body).ok() } else { None };
    Ok((Txn { header, body: body_record }, digest))
}

fn encode_create_common(path: &str, data: &Option<Bytes>, acl: &Vec<Acl>, out: &mut BytesMut) {
    crate::jute::encode_str(path, out);
    data.encode(out);
    acl.encode(out);
}

impl TxnBody {
    /// Appends the record's wire form (no header).
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            TxnBody::CreateSession { timeout_ms } => timeout_ms.encode(out),
            TxnBody::CloseSession { paths_to_delete } => paths_to_delete.encode(out),
            TxnBody::Create { path, data, acl, ephemeral, parent_cversion } => {
                encode_create_common(path, data, acl, out);
                ephemeral.encode(out);
                parent_cversion.encode(out);
            }
            TxnBody::CreateContainer { path, data, acl, parent_cversion } => {
                encode_create_common(path, data, acl, out);
                parent_cversion.encode(out);
            }
            TxnBody::CreateTtl { path, data, acl, parent_cversion, ttl_ms } => {
                encode_create_common(path, data, acl, out);
                parent_cversion.encode(out);
                ttl_ms.encode(out);
            }
            TxnBody::Delete { path } => crate::jute::encode_str(path, out),
            TxnBody::SetData { path, data, version } => {
                crate::jute::encode_str(path, out);
                data.encode(out);
                version.encode(out);
            }
            TxnBody::SetAcl { path, acl, version } => {
                crate::jute::encode_str(path, out);
                acl.encode(out);
                version.encode(out);
            }
            TxnBody::Check { path, version } => {
                crate::jute::encode_str(path, out);
                version.encode(out);
            }
            TxnBody::Multi(txns) => {
                (txns.len() as i32).encode(out);
                for (txn_type, body) in txns {
                    txn_type.encode(out);
                    let mut sub = BytesMut::new();
                    body.encode(&mut sub);
                    sub.freeze().encode(out);
                }
            }
            TxnBody::Error { err } => err.encode(out),
        }
    }

    /// Reads a record of txn type `txn_type`.
    pub fn decode(txn_type: i32, input: &mut Bytes) -> Result<TxnBody, DecodeError> {
        Ok(match txn_type {
            -10 => TxnBody::CreateSession { timeout_ms: i32::decode(input)? },
            // Logs written without closeSessionTxn.enabled have no body (PROTOCOL.md §5.1).
            -11 if input.is_empty() => TxnBody::CloseSession { paths_to_delete: Vec::new() },
            -11 => TxnBody::CloseSession { paths_to_delete: Vec::decode(input)? },
            1 | 15 => TxnBody::Create {
                path: String::decode(input)?,
                data: Option::decode(input)?,
                acl: Vec::decode(input)?,
                ephemeral: bool::decode(input)?,
                // Pre-3.3 CreateTxnV0 has no parentCVersion: -1 means "current + 1".
                parent_cversion: if input.len() >= 4 { i32::decode(input)? } else { -1 },
            },
            19 => TxnBody::CreateContainer {
                path: String::decode(input)?,
                data: Option::decode(input)?,
                acl: Vec::decode(input)?,
                parent_cversion: i32::decode(input)?,
            },
            21 => TxnBody::CreateTtl {
                path: String::decode(input)?,
                data: Option::decode(input)?,
                acl: Vec::decode(input)?,
                parent_cversion: i32::decode(input)?,
                ttl_ms: i64::decode(input)?,
            },
            2 | 20 => TxnBody::Delete { path: String::decode(input)? },
            5 | 16 => TxnBody::SetData {
                path: String::decode(input)?,
                data: Option::decode(input)?,
                version: i32::decode(input)?,
            },
            7 => TxnBody::SetAcl { path: String::decode(input)?, acl: Vec::decode(input)?, version: i32::decode(input)? },
            13 => TxnBody::Check { path: String::decode(input)?, version: i32::decode(input)? },
            14 => {
                let count = i32::decode(input)?;
                if count < 0 || count as usize > input.len() {
                    return Err(DecodeError::BadLength(count));
                }
                let mut txns = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let sub_type = i32::decode(input)?;
                    let mut sub = Bytes::decode(input)?;
                    if sub_type == 14 {
                        return Err(DecodeError::Invalid("nested multi txn".into()));
                    }
                    txns.push((sub_type, TxnBody::decode(sub_type, &mut sub)?));
                }
                TxnBody::Multi(txns)
            }
            -1 => TxnBody::Error { err: i32::decode(input)? },
            other => return Err(DecodeError::Invalid(format!("unknown txn type {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::records::open_acl_unsafe;

    fn round_trip(txn_type: i32, body: TxnBody) {
        let mut out = BytesMut::new();
        body.encode(&mut out);
        let back = TxnBody::decode(txn_type, &mut out.freeze()).unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn every_txn_round_trips() {
        round_trip(-10, TxnBody::CreateSession { timeout_ms: 30000 });
        round_trip(-11, TxnBody::CloseSession { paths_to_delete: vec!["/e".into()] });
        let create = TxnBody::Create {
            path: "/a".into(),
            data: Some(Bytes::from_static(b"x")),
            acl: open_acl_unsafe(),
            ephemeral: true,
            parent_cversion: 3,
        };
        round_trip(1, create.clone());
        round_trip(21, TxnBody::CreateTtl { path: "/t".into(), data: None, acl: vec![], parent_cversion: 1, ttl_ms: 9 });
        round_trip(19, TxnBody::CreateContainer { path: "/c".into(), data: None, acl: vec![], parent_cversion: 1 });
        round_trip(5, TxnBody::SetData { path: "/a".into(), data: None, version: 2 });
        round_trip(7, TxnBody::SetAcl { path: "/a".into(), acl: open_acl_unsafe(), version: 1 });
        round_trip(14, TxnBody::Multi(vec![(1, create), (-1, TxnBody::Error { err: -101 })]));
    }

    /// The first entry of a real `log.1` (PROTOCOL.md §5.2): header + CreateSessionTxn.
    #[test]
    fn create_session_txn_golden() {
        let header = TxnHeader { client_id: 0x0100_0092_7e0c_0000, cxid: 0, zxid: 1, time: 0x1a2049ede7b, txn_type: -10 };
        let mut out = BytesMut::new();
        header.encode(&mut out);
        TxnBody::CreateSession { timeout_ms: 10000 }.encode(&mut out);
        let expected = "010000927e0c0000" .to_owned() + "00000000" + "0000000000000001" + "000001a2049ede7b" + "fffffff6" + "00002710";
        assert_eq!(out.to_vec(), crate::proto::records::tests::hex(&expected));
    }
}
