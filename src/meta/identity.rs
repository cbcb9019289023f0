//! The data dir's identity, `DATA_DIR/meta.properties` (Kafka's file of that name): which broker
//! id wrote the data, whether as a single node or as a member of a cluster, and which cluster.
//!
//! Guarantees: a data dir is never served under another broker id, never switches between
//! single-node and cluster mode, and never joins a cluster other than the one it first joined.
//! The file is written atomically; a file this version cannot read is refused, never overwritten.
//! A data dir from before this file existed holds single-node data: single mode adopts it,
//! cluster mode refuses it (there is no migration of a single node into a cluster yet).
//!
//! Blocking std::fs: callers run it on the main thread before any shard starts, or off the
//! executor (`spawn_blocking`) for [`store_cluster_id`]. Callers must check the identity before
//! anything else reads or writes the data dir, and hold the data-dir lock while doing so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::metadata_log::{LOG_FILE_NAME, META_DIR_NAME, write_file_atomically};

/// The identity file under the data dir.
pub const META_PROPERTIES_FILE_NAME: &str = "meta.properties";
/// The only `version` this code reads and writes.
const VERSION: &str = "1";

/// Who a data dir belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The data dir this identity was read from or written to.
    pub data_dir: PathBuf,
    /// The broker id (0 for a single node).
    pub node_id: u32,
    /// Whether the data was written as a member of a cluster.
    pub cluster_mode: bool,
    /// The cluster, once the controller told it (cluster mode only).
    pub cluster_id: Option<String>,
}

/// Why a data dir cannot be served by this broker as started.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file or the directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The identity file is not one this version wrote; it is left untouched.
    #[error(
        "{path}: {reason}; the file is left untouched: fix it, or give this broker an empty \
         --data-dir"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line number where there is one.
        reason: String,
    },
    /// The data dir was written by another broker id.
    #[error(
        "data dir {data_dir} belongs to node {stored}, but this broker was started with \
         --node-id {given}"
    )]
    ForeignNode {
        /// The data dir.
        data_dir: PathBuf,
        /// The broker id in the file.
        stored: u32,
        /// The broker id this start was given.
        given: u32,
    },
    /// Single-node data started with cluster flags.
    #[error(
        "data dir {data_dir} holds single-node data, which cannot join a cluster (there is no \
         migration yet): start without --node-id and --controller-quorum-voters to serve it, \
         or give this cluster broker an empty --data-dir"
    )]
    SingleNodeData {
        /// The data dir.
        data_dir: PathBuf,
    },
    /// Cluster data started without cluster flags.
    #[error(
        "data dir {data_dir} belongs to cluster node {node_id}: start it with --node-id \
         {node_id} and --controller-quorum-voters, or give a single-node broker an empty \
         --data-dir"
    )]
    ClusterData {
        /// The data dir.
        data_dir: PathBuf,
        /// The broker id in the file.
        node_id: u32,
    },
    /// The controller quorum is another cluster than the one the data dir joined.
    #[error(
        "data dir {data_dir} belongs to cluster {stored}; the controller quorum is cluster {given}"
    )]
    ForeignCluster {
        /// The data dir.
        data_dir: PathBuf,
        /// The cluster id in the file.
        stored: String,
        /// The controller's cluster id.
        given: String,
    },
}

/// Reads the data dir's identity and checks it against this start, or writes it on a fresh dir
/// (and on an older single-node dir started in single mode).
pub fn check_or_format(
    data_dir: &Path,
    node_id: u32,
    cluster_mode: bool,
) -> Result<Identity, IdentityError> {
    let path = data_dir.join(META_PROPERTIES_FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return format(data_dir, node_id, cluster_mode);
        }
        Err(source) => return Err(IdentityError::Io { path, source }),
    };
    let stored = parse(data_dir, &path, &text)?;
    match (stored.cluster_mode, cluster_mode) {
        (false, true) => {
            return Err(IdentityError::SingleNodeData {
                data_dir: data_dir.to_owned(),
            });
        }
        (true, false) => {
            return Err(IdentityError::ClusterData {
                data_dir: data_dir.to_owned(),
                node_id: stored.node_id,
            });
        }
        _ => {}
    }
    if stored.node_id != node_id {
        return Err(IdentityError::ForeignNode {
            data_dir: data_dir.to_owned(),
            stored: stored.node_id,
            given: node_id,
        });
    }
    Ok(stored)
}

/// Whether the controller's cluster id must be stored (`true`: none yet) or matches (`false`).
pub fn check_cluster_id(identity: &Identity, cluster_id: &str) -> Result<bool, IdentityError> {
    match &identity.cluster_id {
        None => Ok(true),
        Some(stored) if stored == cluster_id => Ok(false),
        Some(stored) => Err(IdentityError::ForeignCluster {
            data_dir: identity.data_dir.clone(),
            stored: stored.clone(),
            given: cluster_id.to_owned(),
        }),
    }
}

/// Records the cluster id the controller gave, atomically; refuses a different one.
pub fn store_cluster_id(
    data_dir: &Path,
    identity: &Identity,
    cluster_id: &str,
) -> Result<(), IdentityError> {
    check_cluster_id(identity, cluster_id)?;
    write(
        data_dir,
        &Identity {
            data_dir: data_dir.to_owned(),
            cluster_id: Some(cluster_id.to_owned()),
            ..identity.clone()
        },
    )
}

/// Writes the identity of a dir without one, refusing older single-node data in cluster mode.
fn format(data_dir: &Path, node_id: u32, cluster_mode: bool) -> Result<Identity, IdentityError> {
    if holds_single_node_data(data_dir)? {
        if cluster_mode {
            return Err(IdentityError::SingleNodeData {
                data_dir: data_dir.to_owned(),
            });
        }
        tracing::info!(data_dir = %data_dir.display(), "adopting an existing single-node data dir");
    }
    let identity = Identity {
        data_dir: data_dir.to_owned(),
        node_id,
        cluster_mode,
        cluster_id: None,
    };
    write(data_dir, &identity)?;
    Ok(identity)
}

/// Whether the dir holds data a single node wrote before identity files existed: a non-empty
/// metadata log or a `<topic>-<n>` partition directory.
fn holds_single_node_data(data_dir: &Path) -> Result<bool, IdentityError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| IdentityError::Io { path, source }
    };
    let metadata_log = data_dir.join(META_DIR_NAME).join(LOG_FILE_NAME);
    match std::fs::metadata(&metadata_log) {
        Ok(meta) if meta.len() > 0 => return Ok(true),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(io(&metadata_log)(source)),
    }
    for entry in std::fs::read_dir(data_dir).map_err(io(data_dir))? {
        let entry = entry.map_err(io(data_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let partition_like = name
            .rsplit_once('-')
            .is_some_and(|(topic, n)| !topic.is_empty() && n.parse::<u32>().is_ok());
        if partition_like && entry.file_type().map_err(io(&entry.path()))?.is_dir() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn write(data_dir: &Path, identity: &Identity) -> Result<(), IdentityError> {
    let path = data_dir.join(META_PROPERTIES_FILE_NAME);
    let mode = if identity.cluster_mode {
        "cluster"
    } else {
        "single"
    };
    let mut text = format!(
        "# The identity of this data dir, written by spate; do not edit.\n\
         version={VERSION}\nnode.id={}\nmode={mode}\n",
        identity.node_id
    );
    if let Some(cluster_id) = &identity.cluster_id {
        text.push_str(&format!("cluster.id={cluster_id}\n"));
    }
    write_file_atomically(&path, text.as_bytes())
        .map_err(|source| IdentityError::Io { path, source })
}

/// Parses Java-properties `key=value` lines (blank lines and `#` or `!` comments skipped).
fn parse(data_dir: &Path, path: &Path, text: &str) -> Result<Identity, IdentityError> {
    let malformed = |reason: String| IdentityError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let mut entries: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| malformed(format!("line {line_number}: expected key=value")))?;
        let key = key.trim();
        if entries.insert(key, (line_number, value.trim())).is_some() {
            return Err(malformed(format!(
                "line {line_number}: {key} appears twice"
            )));
        }
    }
    let field = |key: &str| {
        entries
            .get(key)
            .copied()
            .ok_or_else(|| malformed(format!("no {key} line")))
    };
    let (line, version) = field("version")?;
    if version != VERSION {
        return Err(malformed(format!(
            "line {line}: version {version:?} is not one this spate reads (it reads {VERSION})"
        )));
    }
    let (line, node_id) = field("node.id")?;
    let node_id = node_id
        .parse()
        .map_err(|_| malformed(format!("line {line}: node.id {node_id:?} is not a number")))?;
    let (line, mode) = field("mode")?;
    let cluster_mode = match mode {
        "single" => false,
        "cluster" => true,
        _ => {
            return Err(malformed(format!(
                "line {line}: mode {mode:?} is neither single nor cluster"
            )));
        }
    };
    let cluster_id = match entries.get("cluster.id") {
        Some((line, "")) => return Err(malformed(format!("line {line}: empty cluster.id"))),
        Some((_, id)) => Some((*id).to_owned()),
        None => None,
    };
    Ok(Identity {
        data_dir: data_dir.to_owned(),
        node_id,
        cluster_mode,
        cluster_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn properties(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(META_PROPERTIES_FILE_NAME)).unwrap()
    }

    #[test]
    fn a_fresh_dir_is_formatted_and_then_accepted() {
        // Proves a fresh dir gets its identity written, and the same start is accepted again.
        for (node_id, cluster_mode, mode) in [(0, false, "mode=single"), (7, true, "mode=cluster")]
        {
            let dir = fresh();
            let identity = check_or_format(dir.path(), node_id, cluster_mode).unwrap();
            assert_eq!(identity.node_id, node_id);
            assert_eq!(identity.cluster_mode, cluster_mode);
            assert_eq!(identity.cluster_id, None);
            let text = properties(dir.path());
            assert!(text.contains("version=1\n"), "{text}");
            assert!(text.contains(&format!("node.id={node_id}\n")), "{text}");
            assert!(text.contains(mode), "{text}");
            assert!(!text.contains("cluster.id"), "{text}");
            assert_eq!(
                check_or_format(dir.path(), node_id, cluster_mode).unwrap(),
                identity
            );
        }
    }

    #[test]
    fn another_node_id_is_refused() {
        // Proves a data dir written by node 3 is refused to a broker started as node 1.
        let dir = fresh();
        check_or_format(dir.path(), 3, true).unwrap();
        let error = check_or_format(dir.path(), 1, true).unwrap_err();
        assert!(matches!(
            error,
            IdentityError::ForeignNode {
                stored: 3,
                given: 1,
                ..
            }
        ));
        let message = error.to_string();
        assert!(
            message.contains("belongs to node 3, but this broker was started with --node-id 1"),
            "{message}"
        );
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(properties(dir.path()).contains("node.id=3\n"));
    }

    #[test]
    fn the_mode_cannot_change() {
        // Proves single-node data refuses cluster flags and cluster data refuses their absence.
        let single = fresh();
        check_or_format(single.path(), 0, false).unwrap();
        let error = check_or_format(single.path(), 0, true).unwrap_err();
        assert!(
            matches!(error, IdentityError::SingleNodeData { .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("cannot join a cluster"),
            "{error}"
        );
        let cluster = fresh();
        check_or_format(cluster.path(), 2, true).unwrap();
        let error = check_or_format(cluster.path(), 0, false).unwrap_err();
        assert!(
            matches!(error, IdentityError::ClusterData { node_id: 2, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("--node-id 2"), "{error}");
        assert!(properties(cluster.path()).contains("mode=cluster\n"));
    }

    #[test]
    fn older_single_node_data_is_adopted_in_single_mode_only() {
        // Proves a data dir from before meta.properties (a metadata log or a partition
        // directory) is adopted as node 0 in single mode and refused in cluster mode, while an
        // empty metadata log or non-partition entries do not count as data.
        let empty_log = fresh();
        std::fs::create_dir(empty_log.path().join(META_DIR_NAME)).unwrap();
        std::fs::write(
            empty_log.path().join(META_DIR_NAME).join(LOG_FILE_NAME),
            b"",
        )
        .unwrap();
        std::fs::create_dir(empty_log.path().join("__groups")).unwrap();
        std::fs::write(empty_log.path().join("orders-0"), b"a file, not a dir").unwrap();
        check_or_format(empty_log.path(), 1, true).unwrap();

        let with_log = fresh();
        std::fs::create_dir(with_log.path().join(META_DIR_NAME)).unwrap();
        std::fs::write(
            with_log.path().join(META_DIR_NAME).join(LOG_FILE_NAME),
            b"x",
        )
        .unwrap();
        let with_partition = fresh();
        std::fs::create_dir(with_partition.path().join("my-topic-12")).unwrap();
        for dir in [&with_log, &with_partition] {
            let error = check_or_format(dir.path(), 1, true).unwrap_err();
            assert!(
                matches!(error, IdentityError::SingleNodeData { .. }),
                "{error}"
            );
            assert!(!dir.path().join(META_PROPERTIES_FILE_NAME).exists());
            let identity = check_or_format(dir.path(), 0, false).unwrap();
            assert_eq!((identity.node_id, identity.cluster_mode), (0, false));
            assert!(properties(dir.path()).contains("mode=single\n"));
        }
    }

    #[test]
    fn a_malformed_file_is_refused_and_left_untouched() {
        // Proves each kind of unreadable file is refused, naming the file and line, unchanged.
        let cases = [
            (
                "version=2\nnode.id=1\nmode=cluster\n",
                "line 1: version \"2\"",
            ),
            ("version=1\nmode=cluster\n", "no node.id line"),
            (
                "version=1\nnode.id=x\nmode=single\n",
                "line 2: node.id \"x\"",
            ),
            (
                "# c\nversion=1\nnode.id=1\nmode=both\n",
                "line 4: mode \"both\"",
            ),
            ("version=1\nnode.id=1\n", "no mode line"),
            ("node.id=1\nmode=single\n", "no version line"),
            (
                "version=1\nnode.id 1\nmode=single\n",
                "line 2: expected key=value",
            ),
            (
                "version=1\nnode.id=1\nnode.id=2\nmode=single\n",
                "line 3: node.id appears twice",
            ),
            (
                "version=1\nnode.id=1\nmode=cluster\ncluster.id=\n",
                "line 4: empty cluster.id",
            ),
        ];
        for (text, reason) in cases {
            let dir = fresh();
            let path = dir.path().join(META_PROPERTIES_FILE_NAME);
            std::fs::write(&path, text).unwrap();
            let error = check_or_format(dir.path(), 1, true).unwrap_err();
            assert!(matches!(error, IdentityError::Malformed { .. }), "{error}");
            let message = error.to_string();
            assert!(message.contains(reason), "{text:?}: {message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert_eq!(properties(dir.path()), text);
        }
    }

    #[test]
    fn comments_blank_lines_and_unknown_keys_are_ignored() {
        // Proves the Java-properties syntax is read leniently where it is harmless.
        let dir = fresh();
        std::fs::write(
            dir.path().join(META_PROPERTIES_FILE_NAME),
            "#Tue Dec 01\n! comment\n\n version = 1 \ndirectory.id=abc\nnode.id=5\nmode=cluster\n\
             cluster.id=Xy-1\n",
        )
        .unwrap();
        let identity = check_or_format(dir.path(), 5, true).unwrap();
        assert_eq!(identity.cluster_id.as_deref(), Some("Xy-1"));
    }

    #[test]
    fn the_cluster_id_is_stored_once_and_a_foreign_one_refused() {
        // Proves the first cluster id is stored (and survives a restart), the same one matches,
        // and another one is refused naming the data dir and both clusters.
        let dir = fresh();
        let identity = check_or_format(dir.path(), 1, true).unwrap();
        assert!(check_cluster_id(&identity, "cluster-A").unwrap());
        store_cluster_id(dir.path(), &identity, "cluster-A").unwrap();
        assert!(properties(dir.path()).contains("cluster.id=cluster-A\n"));
        let identity = check_or_format(dir.path(), 1, true).unwrap();
        assert_eq!(identity.cluster_id.as_deref(), Some("cluster-A"));
        assert!(!check_cluster_id(&identity, "cluster-A").unwrap());
        let error = check_cluster_id(&identity, "cluster-B").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(
                "belongs to cluster cluster-A; the controller quorum is cluster cluster-B"
            ),
            "{message}"
        );
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(store_cluster_id(dir.path(), &identity, "cluster-B").is_err());
        assert!(properties(dir.path()).contains("cluster.id=cluster-A\n"));
    }
}
