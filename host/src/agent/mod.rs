//! certctl-agent: runs on each node, pulls its work from the server (the server never connects
//! to agents), keeps private keys on the node, deploys certificates and finds the ones already
//! there.
//!
//! - `runner`: configuration, identity, the loops (heartbeat, work, discovery).
//! - `deploy`: files written atomically, check/reload commands, verification, rollback.
//! - `discovery`: the directory walk and certificate parsing.

pub mod deploy;
pub mod discovery;
pub mod runner;
