//! A Jepsen-style history checker for a Spate cluster (issue 13's fault checking).
//!
//! - `history`: the events of a round (sends, acknowledgements, reads, the final read);
//! - `check`: judges a history and reports each anomaly with the records involved;
//! - `workload`: the librdkafka producers and consumers that record into a history;
//! - `faults`: the faults injected into a three-broker cluster, and their healing;
//! - `round`: one round: cluster, topic, clients, faults, final read, report.
//!
//! The round is parameterized by the topic's replication factor, so the same workload runs on
//! RF=3 topics once they land; today RF=1 topics spread over three brokers, a dead broker's
//! partitions unavailable until it restarts.

#![allow(dead_code)]

pub mod check;
pub mod faults;
pub mod history;
pub mod round;
pub mod workload;
