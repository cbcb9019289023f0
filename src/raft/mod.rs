//! The Raft glue (docs/architecture.md §8): what openraft needs from Spate to run a Raft group on a
//! glommio shard. `runtime` adapts glommio to openraft's `AsyncRuntime`; `log_store` keeps the
//! controller's Raft log and vote in checksummed files; `vote_store` keeps the votes of a shard's
//! replicated-partition groups in one file, with grouped writes; `partition_store` is a
//! replicated partition's Raft log storage over its own segment log, and
//! `partition_state_machine` moves its commit point (the high watermark) as entries commit.
//! `network` carries the controller's Raft; `partition_network` carries every partition group
//! of a shard over one connection per peer shard; `recovery_throttle` bounds the catch-up
//! reads a shard's leaders make for replicas far behind.

pub mod log_store;
pub mod network;
pub mod partition_network;
pub mod partition_state_machine;
pub mod partition_store;
pub mod recovery_throttle;
pub mod runtime;
pub mod vote_store;

pub use runtime::{GlommioRuntime, WatchReceiver, WatchSender, watch_channel};
