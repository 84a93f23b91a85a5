//! The quorum: which servers form a quorum (`quorum`), how they elect a leader (`election`, a pure
//! state machine), and the election connections between them (`peers`, the tokio driver of the
//! election, ZooKeeper's `QuorumCnxManager`).
//!
//! Speaks ZooKeeper 3.8's own election protocol (PROTOCOL.md §4.2-4.4), so a ferrokeeper server
//! and Apache ZooKeeper servers elect one leader together. Discovery, synchronization and
//! broadcast (§4.5-4.10) are not here yet: until they are, the server does not start the
//! election, and a `zoo.cfg` with `server.N` lines runs standalone (README).
//!
//! `quorum` and `election` do no IO and read no clock; `peers` owns the sockets and the timer.

pub mod election;
pub mod peers;
pub mod quorum;
