//! A cluster of brokers (docs/architecture.md §8): the controller quorum, an openraft group on
//! shard 0 of each voter whose state machine is the cluster metadata, and each broker's link
//! to it. A broker started without `--controller-quorum-voters` is a cluster of one and uses
//! none of this (its controller is shard 0 with the metadata log, src/shard/control.rs).

pub mod broker_link;
pub mod controller_rpc;
pub mod controller_service;
pub mod local_state;
pub mod state_machine;

use crate::meta::MetadataChange;
use crate::raft::GlommioRuntime;

openraft::declare_raft_types!(
    /// The controller quorum's Raft types: each entry is one metadata change.
    pub ControllerRaft:
        D = MetadataChange,
        R = (),
        AsyncRuntime = GlommioRuntime,
);
