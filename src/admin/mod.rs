//! Operator-facing read-outs: the four-letter words, the AdminServer HTTP commands and the Prometheus
//! endpoint, all in ZooKeeper 3.8's names and shapes. Command logic runs inside the core task (it
//! reads `Core` directly, as the 4lw always did); the HTTP side only moves bytes and never touches
//! server state. Never changes the tree.

pub mod commands;
pub mod four_letter;
pub mod http;
pub mod json;
pub mod monitor;
pub mod prometheus;
