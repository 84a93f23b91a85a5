//! The records of ZooKeeper's client protocol and transaction log, as plain structs in the wire
//! order of `zookeeper.jute`, plus the wire constants (opcodes, error codes, reserved xids, event
//! numbers, four-letter-word codes) and the 4-byte length framing.
//!
//! Owns: what each record looks like on the wire. Must not touch: sockets, time, state.
//! Depends only on `jute`.

pub mod consts;
pub mod election;
pub mod error_code;
pub mod frame;
pub mod op_code;
pub mod quorum;
pub mod records;
pub mod txn;

pub use error_code::ErrorCode;
pub use op_code::OpCode;
pub use records::*;
