//! The thin I/O layer over glommio: direct (O_DIRECT) files, the fault-injection seam below them,
//! outgoing connections from a chosen address, the iopoll probe, the CPUs shards may pin
//! themselves to, frame reads that skip zeroing, the data-dir lock, telling a memory file system
//! from a disk, bounded waits, and the sync journal that lets tests replay a power loss.
//!
//! Everything the log needs from glommio's file API goes through here, so glommio stays
//! replaceable (it is unmaintained; see the architecture anchors). Callers must run the probe
//! (`probe::probe_iopoll`) on each executor before opening any `DirectFile`.

pub mod connect;
pub mod cpus;
pub mod data_dir_lock;
pub mod deadline;
pub mod direct_file;
pub mod faults;
pub mod memory_file_system;
pub mod probe;
pub mod socket_reader;
pub mod sync_journal;

pub use direct_file::{AlignedBuffer, DirectFile, READ_CHUNK_BYTES_MAX, align_down, align_up};
