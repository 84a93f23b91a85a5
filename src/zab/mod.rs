//! The quorum: which servers form a quorum (`quorum`), how they elect a leader (`election`, a pure
//! state machine), the election connections between them (`peers`, the tokio driver of the
//! election, ZooKeeper's `QuorumCnxManager`), and a follower's discovery, sync and broadcast with
//! its leader (`learner`, a pure state machine).
//!
//! Speaks ZooKeeper 3.8's own election and Zab protocols (PROTOCOL.md §4), so ferrokeeper servers
//! and Apache ZooKeeper servers form one ensemble. The leader's side is `leader` (pure) and
//! `leading` (its threads); the follower's `learner` (pure) and `follower` (its thread).
//! `node::quorum` runs them as a server's roles.
//!
//! `quorum`, `election`, `leader` and `learner` do no IO and read no clock; `peers`, `leading` and
//! `follower` own the sockets and the timers.

pub mod election;
pub mod follower;
pub mod leader;
pub mod leading;
pub mod learner;
mod packet_stream;
pub mod peers;
pub mod quorum;
