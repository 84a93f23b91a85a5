//! The client-facing server: prep and apply as a deterministic pipeline (`core`, `prep`), auth
//! and ACL rules (`auth`), the pipeline's state and rounds (`pipeline`), the thin tokio layer that drives them over TCP (`net`), and what that layer exchanges with the
//! replication threads in a quorum (`replication`).

pub mod auth;
pub mod core;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod prep;
pub mod replication;
