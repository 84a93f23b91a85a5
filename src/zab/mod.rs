//! The quorum: which servers form a quorum (`quorum`), how they elect a leader (`election`, a pure
//! state machine), the election connections between them (`peers`, the tokio driver of the
//! election, ZooKeeper's `QuorumCnxManager`), and a follower's discovery, sync and broadcast with
//! its leader (`learner`, a pure state machine).
//!
//! Speaks ZooKeeper 3.8's own election protocol (PROTOCOL.md §4.2-4.4), so a ferrokeeper server
//! and Apache ZooKeeper servers elect one leader together. Discovery, synchronization and
//! broadcast (§4.5-4.10) are in progress: the follower's protocol is here, the leader's is not,
//! and neither is wired into the server yet. Until they are, the server does not start the
//! election, and a `zoo.cfg` with `server.N` lines runs standalone (README).
//!
//! `quorum`, `election` and `learner` do no IO and read no clock; `peers` owns the sockets and the
//! timer.

pub mod election;
pub mod follower;
pub mod leader;
pub mod leading;
pub mod learner;
mod packet_stream;
pub mod peers;
pub mod quorum;
