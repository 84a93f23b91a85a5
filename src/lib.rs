//! ferrokeeper: a wire-compatible, drop-in replacement for Apache ZooKeeper 3.8.
//!
//! Module map (dependencies point downwards only):
//! - `jute`: ZooKeeper's binary serialization primitives.
//! - `proto`: client-protocol and txn records, opcodes, error codes, framing.
//! - `tree`: the data tree; `apply(txn)` returns watch triggers.
//! - `watch`: watch tables and trigger rules.
//! - `session`: session ids, passwords, expiry buckets.
//! - `config`: `zoo.cfg` parsing.
//! - `server`: the request pipeline (`core`, `prep`, `auth`; its state between rounds in
//!   `pipeline`) and its tokio driver (`net`).
//! - `storage`: the txn log on RocksDB, snapshots, restart.
//! - `admin`: four-letter words.
//! - `zab`: the quorum: quorum rules, fast leader election, and the election connections.
//! - `node`: wiring and shutdown.
//!
//! `jute`, `proto`, `tree`, `watch`, `session`, `server::core`, `zab::quorum` and `zab::election` do no IO and read no clock.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod config;
pub mod jute;
pub mod node;
pub mod proto;
pub mod server;
pub mod session;
pub mod storage;
pub mod tree;
pub mod watch;
pub mod zab;
