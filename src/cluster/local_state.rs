//! A cluster broker's durable copy of the metadata it applied: `__meta/cluster-state.json`,
//! the whole state and the controller log index it is as of.
//!
//! Written (atomically) before the changes it holds are applied to the shards, so a broker
//! that restarts opens exactly the partitions it had, serves them before the controller is
//! reachable, and fetches only what it missed. It replaces the metadata log of a single
//! broker; the controller quorum's log is the cluster's record.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::meta::ClusterState;
use crate::meta::metadata_log::{META_DIR_NAME, write_file_atomically};

/// The file, in the metadata directory.
pub const LOCAL_STATE_FILE_NAME: &str = "cluster-state.json";

/// What the file holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LocalState {
    /// The controller log index the state is as of (0: nothing applied yet).
    pub applied: u64,
    /// The metadata.
    pub state: ClusterState,
}

/// Why the file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LocalStateError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not parse.
    #[error(
        "{path} is damaged ({reason}); it is this broker's copy of the cluster metadata: \
         restore it, or remove it to fetch the metadata from the controller again (partition \
         directories are then kept and adopted by name)"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The file's path under `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(META_DIR_NAME).join(LOCAL_STATE_FILE_NAME)
}

/// Reads the file; an empty state when there is none. Blocking: call it before the shards
/// start.
pub fn load(data_dir: &Path) -> Result<LocalState, LocalStateError> {
    let path = path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| LocalStateError::Damaged {
            path,
            reason: error.to_string(),
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(LocalState::default()),
        Err(source) => Err(LocalStateError::Io { path, source }),
    }
}

/// Replaces the file durably, on the blocking pool.
pub async fn store(data_dir: &Path, local: &LocalState) -> io::Result<()> {
    let bytes = serde_json::to_vec(local).map_err(io::Error::other)?;
    let path = path(data_dir);
    glommio::executor()
        .spawn_blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            write_file_atomically(&path, &bytes)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{BrokerInfo, MetadataChange};

    #[test]
    fn a_missing_file_is_empty_and_a_damaged_one_is_refused() {
        // Proves a fresh dir loads as nothing applied, a written state round-trips, and a
        // damaged file is an error naming it rather than an empty state.
        let dir = tempfile::tempdir().unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.applied, 0);
        let mut state = ClusterState::default();
        state.apply(&MetadataChange::BrokerRegistered(BrokerInfo {
            id: 3,
            rack: None,
            host: "127.0.0.1".into(),
            ports: vec![1, 2],
            epoch: 4,
            fenced: false,
        }));
        std::fs::create_dir_all(dir.path().join(META_DIR_NAME)).unwrap();
        let bytes = serde_json::to_vec(&LocalState {
            applied: 9,
            state: state.clone(),
        })
        .unwrap();
        write_file_atomically(&path(dir.path()), &bytes).unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!((loaded.applied, loaded.state), (9, state));
        std::fs::write(path(dir.path()), &bytes[..bytes.len() / 2]).unwrap();
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.contains(LOCAL_STATE_FILE_NAME), "{error}");
    }
}
