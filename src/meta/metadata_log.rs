//! The metadata log: `DATA_DIR/__meta/metadata.log`, an append-only, checksummed record of every
//! [`MetadataChange`], replayed at start-up to rebuild the cluster state.
//!
//! Record format, little-endian: `u32 payload_bytes`, `u32 crc32c(payload)`, payload. Topic
//! configs are stored as the topic's own values (overrides) only, so a topic follows the broker
//! defaults of the current start for everything else; the first record kinds stored the whole
//! configuration and are still read (their values that differ from the defaults become the
//! overrides). Only shard 0 (the controller) appends; loading happens on the main thread before
//! any shard starts, so it may block.
//!
//! Torn tail or corruption: a change is acknowledged only after its record is written (one
//! write of exactly that record, at the end of the file, which is never preallocated) and
//! fdatasync'ed, and the next record is written only after that. So a crash can damage only the
//! last record, and only within its own bytes: nothing valid can follow it. Replay stops at the
//! first damaged record (bad header, CRC or content) and then looks for a valid record after
//! it: from the end the damaged record's header claims, when that end lies within the file
//! (a torn write of that record reaches no further), else from the next byte. Finding none, the
//! damage is a torn tail, a change nobody was told about, and it is cut off. Finding one, the
//! damage is corruption of acknowledged changes: `load` refuses with [`MetaError::Corrupt`]
//! (naming the file and positions) unless the operator asked to cut
//! (`--unsafe-truncate-corrupt-metadata`), which drops every change from the damage on and
//! forgets the recorded deletions (a dropped change may have re-created a deleted topic).
//! A damaged last record is indistinguishable from a torn one and is cut like it.
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{TopicConfig, TopicDefaults};
use crate::le_cursor::LeCursor;
use crate::protocol::record_batch::crc32c;

use super::controller::topic_config;
use super::{ClusterState, MetadataChange, Node, TopicMeta};

/// The metadata directory under the data dir.
pub const META_DIR_NAME: &str = "__meta";
/// The metadata log file under the metadata directory.
pub const LOG_FILE_NAME: &str = "metadata.log";
const RECORD_HEADER_BYTES: usize = 8;
/// Largest record accepted when replaying: far above any real change (a topic with 100k
/// partitions is ~200 KB), low enough that a corrupt length cannot make start-up allocate much.
const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Topic creation with the whole configuration (read only: written by earlier versions).
const KIND_TOPIC_CREATED_WHOLE_CONFIG: u8 = 1;
const KIND_TOPIC_DELETED: u8 = 2;
const KIND_PARTITIONS_ADDED: u8 = 3;
/// Config change with the whole configuration (read only: written by earlier versions).
const KIND_CONFIG_CHANGED_WHOLE_CONFIG: u8 = 4;
const KIND_TOPIC_CREATED: u8 = 5;
const KIND_CONFIG_CHANGED: u8 = 6;
/// Every record kind this version reads.
const KINDS: [u8; 6] = [
    KIND_TOPIC_CREATED_WHOLE_CONFIG,
    KIND_TOPIC_DELETED,
    KIND_PARTITIONS_ADDED,
    KIND_CONFIG_CHANGED_WHOLE_CONFIG,
    KIND_TOPIC_CREATED,
    KIND_CONFIG_CHANGED,
];

/// Failures reading or writing the metadata log.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The file system refused.
    #[error("metadata log {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A damaged record is followed by valid ones: acknowledged changes were damaged.
    #[error(
        "metadata log {path} is corrupt: damaged record at file position {file_position}, \
         valid record after it at file position {valid_position}; refusing to start (cutting the \
         log there would lose every topic change after it). Restore the file, or start with \
         --unsafe-truncate-corrupt-metadata to cut it at file position {file_position}"
    )]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Where the first damaged record starts.
        file_position: u64,
        /// Where a valid record after it starts.
        valid_position: u64,
    },
    /// A change a single broker's log cannot hold (brokers come and go only in a cluster, whose
    /// changes the controller quorum keeps).
    #[error("metadata log {path}: a single broker cannot record {change}")]
    NotSingleBroker {
        /// The log file.
        path: PathBuf,
        /// What the change was.
        change: String,
    },
}

/// The state recovered from the log, and where the next record goes.
#[derive(Debug)]
pub struct LoadedMetadata {
    /// The cluster state after every intact record.
    pub state: ClusterState,
    /// The log file.
    pub path: PathBuf,
    /// Byte position after the last intact record.
    pub end_position: u64,
    /// Intact records replayed.
    pub records: usize,
    /// Whether valid records after corruption were cut off (only when asked to).
    pub cut_at_corruption: bool,
}

/// Loads (creating if missing) the metadata log, cutting off a torn tail; corruption (a damaged
/// record followed by valid ones) is refused unless `truncate_corrupt`, which cuts there too.
/// Blocking: call it before the shards start.
pub fn load(
    data_dir: &Path,
    defaults: &TopicDefaults,
    truncate_corrupt: bool,
) -> Result<LoadedMetadata, MetaError> {
    let dir = data_dir.join(META_DIR_NAME);
    let path = dir.join(LOG_FILE_NAME);
    let io = |source| MetaError::Io {
        path: path.clone(),
        source,
    };
    if !path.exists() {
        fs::create_dir_all(&dir).map_err(io)?;
        fs::File::create(&path)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        // The new file's entry lives in `__meta`, and `__meta`'s entry in the data dir: both
        // directories are synced, or a crash could lose the log that was just created.
        sync_dir(&dir).map_err(io)?;
        sync_dir(data_dir).map_err(io)?;
    }
    let bytes = fs::read(&path).map_err(io)?;
    let mut state = ClusterState::default();
    let mut position = 0usize;
    let mut records = 0;
    while let Some((change, next)) = decode_record(&bytes, position, defaults) {
        state.apply(&change);
        position = next;
        records += 1;
    }
    let mut cut_at_corruption = false;
    if position < bytes.len() {
        if let Some(valid_position) = valid_record_after_damage(&bytes, position, defaults) {
            let error = MetaError::Corrupt {
                path: path.clone(),
                file_position: position as u64,
                valid_position: valid_position as u64,
            };
            if !truncate_corrupt {
                return Err(error);
            }
            tracing::error!(
                %error,
                "cutting the corrupt metadata log as --unsafe-truncate-corrupt-metadata asks; \
                 no partition directory will be removed"
            );
            state.forget_deletions();
            cut_at_corruption = true;
        } else {
            tracing::warn!(
                path = %path.display(),
                kept_bytes = position,
                cut_bytes = bytes.len() - position,
                "metadata log has a torn tail (nothing valid after it); cutting it off"
            );
        }
        let file = fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
        file.set_len(position as u64).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    Ok(LoadedMetadata {
        state,
        path,
        end_position: position as u64,
        records,
        cut_at_corruption,
    })
}

/// Where the first valid record after the damaged one at `damage_position` starts, if any (see
/// the module doc): searched from the end the damaged header claims if that lies in the file,
/// else from the next byte, at every byte position.
fn valid_record_after_damage(
    bytes: &[u8],
    damage_position: usize,
    defaults: &TopicDefaults,
) -> Option<usize> {
    let claimed_end = bytes
        .get(damage_position..damage_position + RECORD_HEADER_BYTES)
        .map(|header| u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize)
        .filter(|&payload_bytes| payload_bytes > 0 && payload_bytes <= RECORD_BYTES_MAX)
        .map(|payload_bytes| damage_position + RECORD_HEADER_BYTES + payload_bytes)
        .filter(|&end| end <= bytes.len());
    let from = claimed_end.unwrap_or(damage_position + 1);
    (from..bytes.len()).find(|&position| decode_record(bytes, position, defaults).is_some())
}

/// Encodes a change as one log record (header included); `None` for a change only a cluster
/// makes, or one placing a partition on another broker than the single one (id 0) or on
/// several replicas.
pub fn encode_record(change: &MetadataChange) -> Option<Vec<u8>> {
    let mut payload = Vec::with_capacity(128);
    match change {
        MetadataChange::TopicCreated(topic) if topic.is_replicated() => return None,
        MetadataChange::PartitionsAdded { added_replicas, .. } if !added_replicas.is_empty() => {
            return None;
        }
        MetadataChange::TopicCreated(topic) => {
            payload.push(KIND_TOPIC_CREATED);
            put_string(&mut payload, &topic.name);
            payload.extend_from_slice(&topic.topic_id);
            put_shards(&mut payload, &topic.partitions)?;
            put_overrides(&mut payload, &topic.overrides);
        }
        MetadataChange::TopicDeleted { name } => {
            payload.push(KIND_TOPIC_DELETED);
            put_string(&mut payload, name);
        }
        MetadataChange::PartitionsAdded { name, added, .. } => {
            payload.push(KIND_PARTITIONS_ADDED);
            put_string(&mut payload, name);
            put_shards(&mut payload, added)?;
        }
        MetadataChange::ConfigChanged {
            name, overrides, ..
        } => {
            payload.push(KIND_CONFIG_CHANGED);
            put_string(&mut payload, name);
            put_overrides(&mut payload, overrides);
        }
        MetadataChange::ClusterCreated { .. }
        | MetadataChange::BrokerRegistered(_)
        | MetadataChange::BrokerFenced { .. }
        | MetadataChange::LeaderElected { .. }
        | MetadataChange::IsrChanged { .. } => return None,
    }
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32c(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Some(record)
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// The owners' shards: a single broker's log holds only its own (broker 0) nodes.
fn put_shards(out: &mut Vec<u8>, owners: &[Node]) -> Option<()> {
    out.extend_from_slice(&(owners.len() as u32).to_le_bytes());
    for owner in owners {
        if owner.broker != 0 {
            return None;
        }
        out.extend_from_slice(&owner.shard.0.to_le_bytes());
    }
    Some(())
}

fn put_overrides(out: &mut Vec<u8>, overrides: &BTreeMap<String, String>) {
    out.extend_from_slice(&(overrides.len() as u32).to_le_bytes());
    for (name, value) in overrides {
        put_string(out, name);
        put_string(out, value);
    }
}

/// The values of a whole stored configuration that differ from the current defaults: what an
/// old record's topic had set on itself, as far as can be told.
fn overrides_of(config: &TopicConfig, defaults: &TopicDefaults) -> BTreeMap<String, String> {
    let default_entries = TopicConfig::from_defaults(defaults).to_entries();
    config
        .to_entries()
        .into_iter()
        .filter(|(name, value)| default_entries.get(name) != Some(value))
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// Decodes the record at `position`; `None` at the end or at the first damaged record.
fn decode_record(
    bytes: &[u8],
    position: usize,
    defaults: &TopicDefaults,
) -> Option<(MetadataChange, usize)> {
    let header = bytes.get(position..position.checked_add(RECORD_HEADER_BYTES)?)?;
    let payload_bytes = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if payload_bytes > RECORD_BYTES_MAX {
        return None;
    }
    let start = position + RECORD_HEADER_BYTES;
    let payload = bytes.get(start..start + payload_bytes)?;
    // Checked before the CRC: the search after damage tries every byte position.
    if !KINDS.contains(payload.first()?) {
        return None;
    }
    if crc32c(payload) != crc {
        return None;
    }
    let mut cursor = LeCursor::new(payload);
    let change = read_change(&mut cursor, defaults)?;
    Some((change, start + payload_bytes))
}

/// A u32 count, then that many shard ids, each of the single broker (id 0).
fn read_shards(cursor: &mut LeCursor) -> Option<Vec<Node>> {
    let count = cursor.u32()? as usize;
    if count > cursor.remaining() / 2 {
        return None;
    }
    (0..count)
        .map(|_| Some(Node::new(0, cursor.u16()?)))
        .collect()
}

/// A whole configuration (the older records' form): name and value pairs.
fn read_config(cursor: &mut LeCursor, defaults: &TopicDefaults) -> Option<TopicConfig> {
    let count = cursor.u32()? as usize;
    let mut config = TopicConfig::from_defaults(defaults);
    for _ in 0..count.min(cursor.remaining()) {
        let name = cursor.string()?;
        let value = cursor.string()?;
        // A value this version cannot apply keeps the default rather than losing the topic.
        if let Err(error) = config.set(&name, &value) {
            tracing::warn!(%error, "ignoring a stored topic config");
        }
    }
    Some(config)
}

/// A topic's own values, and its configuration with them on the defaults.
fn read_overrides(
    cursor: &mut LeCursor,
    defaults: &TopicDefaults,
) -> Option<(TopicConfig, BTreeMap<String, String>)> {
    let count = cursor.u32()? as usize;
    let mut overrides = BTreeMap::new();
    for _ in 0..count.min(cursor.remaining()) {
        let name = cursor.string()?;
        let value = cursor.string()?;
        overrides.insert(name, value);
    }
    // A value this version cannot apply is dropped (the default applies) rather than losing
    // the topic.
    loop {
        match topic_config(defaults, &overrides) {
            Ok(config) => return Some((config, overrides)),
            Err(error) => {
                tracing::warn!(%error, "ignoring a stored topic config");
                overrides.remove(&error.name)?;
            }
        }
    }
}

/// One record's change (after its length and CRC).
fn read_change(cursor: &mut LeCursor, defaults: &TopicDefaults) -> Option<MetadataChange> {
    let kind = cursor.u8()?;
    Some(match kind {
        KIND_TOPIC_CREATED | KIND_TOPIC_CREATED_WHOLE_CONFIG => {
            let name = cursor.string()?;
            let topic_id = cursor.take(16)?.try_into().ok()?;
            let partitions = read_shards(cursor)?;
            let (config, overrides) = if kind == KIND_TOPIC_CREATED {
                read_overrides(cursor, defaults)?
            } else {
                let config = read_config(cursor, defaults)?;
                let overrides = overrides_of(&config, defaults);
                (config, overrides)
            };
            MetadataChange::TopicCreated(TopicMeta {
                name,
                topic_id,
                partitions,
                replicas: Vec::new(),
                leader_terms: Vec::new(),
                isr: Vec::new(),
                config,
                overrides,
            })
        }
        KIND_TOPIC_DELETED => MetadataChange::TopicDeleted {
            name: cursor.string()?,
        },
        KIND_PARTITIONS_ADDED => MetadataChange::PartitionsAdded {
            name: cursor.string()?,
            added: read_shards(cursor)?,
            added_replicas: Vec::new(),
        },
        KIND_CONFIG_CHANGED => {
            let name = cursor.string()?;
            let (config, overrides) = read_overrides(cursor, defaults)?;
            MetadataChange::ConfigChanged {
                name,
                config,
                overrides,
            }
        }
        KIND_CONFIG_CHANGED_WHOLE_CONFIG => {
            let name = cursor.string()?;
            let config = read_config(cursor, defaults)?;
            let overrides = overrides_of(&config, defaults);
            MetadataChange::ConfigChanged {
                name,
                config,
                overrides,
            }
        }
        _ => return None,
    })
}

/// The controller's handle for appending to the log (shard 0 only).
pub struct MetadataLogWriter {
    file: glommio::io::BufferedFile,
    path: PathBuf,
    end_position: u64,
}

impl MetadataLogWriter {
    /// Opens the log for appending at `end_position` (from [`load`]).
    pub async fn open(path: PathBuf, end_position: u64) -> Result<Self, MetaError> {
        let file = glommio::io::OpenOptions::new()
            .write(true)
            .buffered_open(&path)
            .await
            .map_err(|error| MetaError::Io {
                path: path.clone(),
                source: error.into(),
            })?;
        Ok(Self {
            file,
            path,
            end_position,
        })
    }

    /// Appends a change and makes it durable before returning.
    pub async fn append(&mut self, change: &MetadataChange) -> Result<(), MetaError> {
        let record = encode_record(change).ok_or_else(|| MetaError::NotSingleBroker {
            path: self.path.clone(),
            change: format!("{change:?}"),
        })?;
        let len = record.len() as u64;
        let io = |error: glommio::GlommioError<()>| MetaError::Io {
            path: self.path.clone(),
            source: error.into(),
        };
        let written = self
            .file
            .write_at(record, self.end_position)
            .await
            .map_err(io)?;
        if written as u64 != len {
            return Err(MetaError::Io {
                path: self.path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::WriteZero, "short write"),
            });
        }
        self.file.fdatasync().await.map_err(io)?;
        self.end_position += len;
        Ok(())
    }
}

/// Writes `bytes` to `path` durably via a temp file, fsync, rename and a directory fsync.
/// Blocking: for the main thread (for example the listeners file).
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(change: &MetadataChange) -> Vec<u8> {
        encode_record(change).expect("a single-broker change")
    }

    fn defaults() -> TopicDefaults {
        TopicDefaults::default()
    }

    fn topic(name: &str) -> MetadataChange {
        let overrides = BTreeMap::from([("max.message.bytes".into(), "6000000".into())]);
        MetadataChange::TopicCreated(TopicMeta {
            name: name.to_owned(),
            topic_id: [7; 16],
            partitions: vec![Node::new(0, 0), Node::new(0, 1), Node::new(0, 0)],
            replicas: Vec::new(),
            leader_terms: Vec::new(),
            isr: Vec::new(),
            config: topic_config(&defaults(), &overrides).unwrap(),
            overrides,
        })
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spate-meta-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// A record as the first versions wrote it: the whole configuration, not the overrides.
    fn whole_config_record(
        kind: u8,
        name: &str,
        partitions: &[Node],
        config: &TopicConfig,
    ) -> Vec<u8> {
        let mut payload = vec![kind];
        put_string(&mut payload, name);
        if kind == KIND_TOPIC_CREATED_WHOLE_CONFIG {
            payload.extend_from_slice(&[9; 16]);
            put_shards(&mut payload, partitions).unwrap();
        }
        let entries = config.to_entries();
        payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (name, value) in entries {
            put_string(&mut payload, name);
            put_string(&mut payload, &value);
        }
        let mut record = (payload.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&crc32c(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        record
    }

    #[test]
    fn config_changes_and_added_partitions_replay_with_their_overrides() {
        // Proves ConfigChanged and PartitionsAdded survive a restart, overrides stay overrides,
        // and values not overridden follow the defaults of the new start.
        let dir = temp_dir("overrides");
        let loaded = load(&dir, &defaults(), false).unwrap();
        let overrides = BTreeMap::from([("retention.ms".into(), "1000".into())]);
        let mut bytes = record(&topic("a"));
        bytes.extend(record(&MetadataChange::PartitionsAdded {
            name: "a".into(),
            added: vec![Node::new(0, 1)],
            added_replicas: Vec::new(),
        }));
        bytes.extend(record(&MetadataChange::ConfigChanged {
            name: "a".into(),
            config: topic_config(&defaults(), &overrides).unwrap(),
            overrides: overrides.clone(),
        }));
        fs::write(&loaded.path, &bytes).unwrap();
        let mut new_defaults = defaults();
        new_defaults.max_message_bytes = 2000;
        let loaded = load(&dir, &new_defaults, false).unwrap();
        let a = loaded.state.topic("a").unwrap();
        assert_eq!(a.partitions.len(), 4);
        assert_eq!(a.overrides, overrides);
        assert_eq!(a.config.retention_ms, 1000);
        assert_eq!(a.config.max_message_bytes, 2000);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn logs_written_with_whole_configs_stay_readable() {
        // Proves records of the first format (whole configuration) still load, their values
        // that differ from the defaults becoming the topic's overrides.
        let dir = temp_dir("whole");
        let loaded = load(&dir, &defaults(), false).unwrap();
        let mut config = TopicConfig::from_defaults(&defaults());
        config.set("segment.bytes", "100000").unwrap();
        let mut bytes = whole_config_record(
            KIND_TOPIC_CREATED_WHOLE_CONFIG,
            "old",
            &[Node::new(0, 0), Node::new(0, 1)],
            &config,
        );
        config.set("retention.ms", "5000").unwrap();
        bytes.extend(whole_config_record(
            KIND_CONFIG_CHANGED_WHOLE_CONFIG,
            "old",
            &[],
            &config,
        ));
        fs::write(&loaded.path, &bytes).unwrap();
        let loaded = load(&dir, &defaults(), false).unwrap();
        assert_eq!(loaded.records, 2);
        let old = loaded.state.topic("old").unwrap();
        assert_eq!(old.partitions, vec![Node::new(0, 0), Node::new(0, 1)]);
        assert_eq!(old.topic_id, [9; 16]);
        assert_eq!(old.config, config);
        assert_eq!(
            old.overrides,
            BTreeMap::from([
                ("retention.ms".into(), "5000".into()),
                ("segment.bytes".into(), "100000".into()),
            ])
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_are_created_durably() {
        // Proves a fresh data dir gets its metadata log (created, then both directories synced)
        // and an atomic write replaces the file's content and leaves no temp file behind.
        let dir = temp_dir("fresh");
        let loaded = load(&dir, &defaults(), false).unwrap();
        assert_eq!(fs::metadata(&loaded.path).unwrap().len(), 0);
        let path = dir.join("listeners");
        write_file_atomically(&path, b"one").unwrap();
        write_file_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(!path.with_extension("tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_replay_and_a_torn_tail_is_cut() {
        // Proves replay restores every change, and a half-written last record is dropped.
        let dir = temp_dir("torn");
        let loaded = load(&dir, &defaults(), false).unwrap();
        assert_eq!(loaded.records, 0);
        let mut bytes = Vec::new();
        bytes.extend(record(&topic("a")));
        bytes.extend(record(&topic("b")));
        bytes.extend(record(&MetadataChange::TopicDeleted { name: "a".into() }));
        let whole = bytes.len();
        let torn = record(&topic("c"));
        bytes.extend_from_slice(&torn[..torn.len() - 3]);
        fs::write(&loaded.path, &bytes).unwrap();
        let loaded = load(&dir, &defaults(), false).unwrap();
        assert_eq!(loaded.records, 3);
        assert_eq!(loaded.end_position, whole as u64);
        assert!(loaded.state.topic("a").is_none());
        let b = loaded.state.topic("b").unwrap();
        assert_eq!(b.partitions.len(), 3);
        assert_eq!(b.config.max_message_bytes, 6_000_000);
        assert_eq!(fs::metadata(&loaded.path).unwrap().len(), whole as u64);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Three records (topics a, b, c) in a fresh log; returns the dir and each record's start.
    fn three_topics(name: &str) -> (PathBuf, PathBuf, Vec<usize>) {
        let dir = temp_dir(name);
        let loaded = load(&dir, &defaults(), false).unwrap();
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for topic_name in ["a", "b", "c"] {
            starts.push(bytes.len());
            bytes.extend(record(&topic(topic_name)));
        }
        starts.push(bytes.len());
        fs::write(&loaded.path, &bytes).unwrap();
        (dir, loaded.path, starts)
    }

    #[test]
    fn a_damaged_record_followed_by_valid_ones_is_refused_unless_cutting_is_asked() {
        // Proves a flipped byte in a middle record (payload or length) refuses the load with the
        // file and both positions, leaves the file untouched, and only the explicit flag cuts
        // it there, forgetting the recorded deletions.
        for flipped in [RECORD_HEADER_BYTES + 3, 1] {
            let (dir, path, starts) = three_topics("corrupt");
            let mut bytes = fs::read(&path).unwrap();
            bytes[starts[1] + flipped] ^= 0x40;
            fs::write(&path, &bytes).unwrap();
            let error = load(&dir, &defaults(), false).unwrap_err();
            let MetaError::Corrupt {
                path: error_path,
                file_position,
                valid_position,
            } = &error
            else {
                panic!("not corruption: {error}");
            };
            assert_eq!(error_path, &path);
            assert_eq!(*file_position, starts[1] as u64);
            assert!(*valid_position > starts[1] as u64, "{error}");
            assert!(*valid_position <= starts[2] as u64, "{error}");
            let message = error.to_string();
            assert!(message.contains("metadata.log"), "{message}");
            assert!(
                message.contains(&format!("file position {}", starts[1])),
                "{message}"
            );
            assert!(
                message.contains("--unsafe-truncate-corrupt-metadata"),
                "{message}"
            );
            assert_eq!(
                fs::read(&path).unwrap(),
                bytes,
                "a refused load changed the file"
            );
            let loaded = load(&dir, &defaults(), true).unwrap();
            assert!(loaded.cut_at_corruption);
            assert_eq!(loaded.records, 1);
            assert!(loaded.state.topic("a").is_some());
            assert!(loaded.state.topic("c").is_none());
            assert_eq!(fs::metadata(&path).unwrap().len(), starts[1] as u64);
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_torn_last_record_is_cut_whether_its_header_landed_or_not() {
        // Proves the crash cases start: the last record's payload partly written, its header
        // zeros (the page never reached the disk) with part of the payload, or a bad last
        // record; each is cut and the earlier records stay.
        let torn_cases: [fn(&mut Vec<u8>, usize); 3] = [
            |bytes, start| bytes.truncate(start + RECORD_HEADER_BYTES + 4),
            |bytes, start| bytes[start..start + RECORD_HEADER_BYTES].fill(0),
            |bytes, start| bytes[start + RECORD_HEADER_BYTES + 2] ^= 1,
        ];
        for tear in torn_cases {
            let (dir, path, starts) = three_topics("torn-last");
            let mut bytes = fs::read(&path).unwrap();
            tear(&mut bytes, starts[2]);
            fs::write(&path, &bytes).unwrap();
            let loaded = load(&dir, &defaults(), false).unwrap();
            assert!(!loaded.cut_at_corruption);
            assert_eq!(loaded.records, 2);
            assert_eq!(loaded.end_position, starts[2] as u64);
            assert!(loaded.state.topic("b").is_some());
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn deletions_are_recorded_until_a_cut_forgets_them() {
        // Proves the replayed state remembers which topics the log deleted (the proof a
        // leftover directory may be removed), also when the name was created again.
        let dir = temp_dir("deletions");
        let loaded = load(&dir, &defaults(), false).unwrap();
        let mut bytes = record(&topic("a"));
        bytes.extend(record(&MetadataChange::TopicDeleted { name: "a".into() }));
        bytes.extend(record(&topic("a")));
        bytes.extend(record(&topic("b")));
        bytes.extend(record(&MetadataChange::TopicDeleted { name: "b".into() }));
        bytes.extend(record(&MetadataChange::TopicDeleted { name: "x".into() }));
        fs::write(&loaded.path, &bytes).unwrap();
        let mut state = load(&dir, &defaults(), false).unwrap().state;
        assert!(state.deletion_recorded("a"));
        assert!(state.deletion_recorded("b"));
        assert!(
            !state.deletion_recorded("x"),
            "deleting an unknown topic proves nothing"
        );
        assert_eq!(state.deleted_topics().collect::<Vec<_>>(), vec!["b"]);
        state.forget_deletions();
        assert!(!state.deletion_recorded("b"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
