//! The Raft glue (docs/architecture.md §8): what openraft needs from Spate to run a Raft group on a
//! glommio shard. `runtime` adapts glommio to openraft's `AsyncRuntime`; `log_store` keeps the
//! controller's Raft log and vote in checksummed files.

pub mod log_store;
pub mod network;
pub mod runtime;

pub use runtime::{GlommioRuntime, WatchReceiver, WatchSender, watch_channel};
