//! The Raft glue (DESIGN.md §6): what openraft needs from Spate to run a Raft group on a
//! glommio shard. `runtime` adapts glommio to openraft's `AsyncRuntime`.

pub mod runtime;

pub use runtime::GlommioRuntime;
