//! The client-facing server: prep and apply as a deterministic pipeline (`core`, `prep`), auth
//! and ACL rules (`auth`), and the thin tokio layer that drives them over TCP (`net`).

pub mod auth;
pub mod core;
pub mod metrics;
pub mod net;
pub mod prep;
