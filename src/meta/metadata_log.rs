//! The metadata log: `DATA_DIR/__meta/metadata.log`, an append-only, checksummed record of every
//! [`MetadataChange`], replayed at start-up to rebuild the cluster state.
//!
//! Record format, little-endian: `u32 payload_bytes`, `u32 crc32c(payload)`, payload. A change is
//! acknowledged only after its record is written and fdatasync'ed, so a torn or corrupt tail found
//! at start-up is a change nobody was told about: it is cut off. Only shard 0 (the controller)
//! appends; loading happens on the main thread before any shard starts, so it may block.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{TopicConfig, TopicDefaults};
use crate::protocol::record_batch::crc32c;

use super::{ClusterState, MetadataChange, ShardId, TopicMeta};

/// The metadata directory under the data dir.
pub const META_DIR_NAME: &str = "__meta";
const LOG_FILE_NAME: &str = "metadata.log";
const RECORD_HEADER_BYTES: usize = 8;
/// Largest record accepted when replaying: far above any real change (a topic with 100k
/// partitions is ~200 KB), low enough that a corrupt length cannot make start-up allocate much.
const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;

const KIND_TOPIC_CREATED: u8 = 1;
const KIND_TOPIC_DELETED: u8 = 2;
const KIND_PARTITIONS_ADDED: u8 = 3;
const KIND_CONFIG_CHANGED: u8 = 4;

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
}

/// Loads (creating if missing) the metadata log, cutting off a torn tail. Blocking: call it
/// before the shards start.
pub fn load(data_dir: &Path, defaults: &TopicDefaults) -> Result<LoadedMetadata, MetaError> {
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
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
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
    if position < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            kept_bytes = position,
            cut_bytes = bytes.len() - position,
            "metadata log has a torn or corrupt tail; cutting it off"
        );
        let file = fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
        file.set_len(position as u64).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    Ok(LoadedMetadata {
        state,
        path,
        end_position: position as u64,
        records,
    })
}

/// Encodes a change as one log record (header included).
pub fn encode_record(change: &MetadataChange) -> Vec<u8> {
    let mut payload = Vec::with_capacity(128);
    match change {
        MetadataChange::TopicCreated(topic) => {
            payload.push(KIND_TOPIC_CREATED);
            put_string(&mut payload, &topic.name);
            payload.extend_from_slice(&topic.topic_id);
            put_shards(&mut payload, &topic.partitions);
            put_config(&mut payload, &topic.config);
        }
        MetadataChange::TopicDeleted { name } => {
            payload.push(KIND_TOPIC_DELETED);
            put_string(&mut payload, name);
        }
        MetadataChange::PartitionsAdded { name, added } => {
            payload.push(KIND_PARTITIONS_ADDED);
            put_string(&mut payload, name);
            put_shards(&mut payload, added);
        }
        MetadataChange::ConfigChanged { name, config } => {
            payload.push(KIND_CONFIG_CHANGED);
            put_string(&mut payload, name);
            put_config(&mut payload, config);
        }
    }
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32c(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    record
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_shards(out: &mut Vec<u8>, shards: &[ShardId]) {
    out.extend_from_slice(&(shards.len() as u32).to_le_bytes());
    for shard in shards {
        out.extend_from_slice(&shard.0.to_le_bytes());
    }
}

fn put_config(out: &mut Vec<u8>, config: &TopicConfig) {
    let entries = config.to_entries();
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (name, value) in entries {
        put_string(out, name);
        put_string(out, &value);
    }
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
    if crc32c(payload) != crc {
        return None;
    }
    let mut cursor = Cursor { bytes: payload };
    let change = cursor.change(defaults)?;
    Some((change, start + payload_bytes))
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    fn shards(&mut self) -> Option<Vec<ShardId>> {
        let count = self.u32()? as usize;
        if count > self.bytes.len() / 2 {
            return None;
        }
        (0..count)
            .map(|_| Some(ShardId(u16::from_le_bytes(self.take(2)?.try_into().ok()?))))
            .collect()
    }

    fn config(&mut self, defaults: &TopicDefaults) -> Option<TopicConfig> {
        let count = self.u32()? as usize;
        let mut config = TopicConfig::from_defaults(defaults);
        for _ in 0..count.min(self.bytes.len()) {
            let name = self.string()?;
            let value = self.string()?;
            // A value this version cannot apply keeps the default rather than losing the topic.
            if let Err(error) = config.set(&name, &value) {
                tracing::warn!(%error, "ignoring a stored topic config");
            }
        }
        Some(config)
    }

    fn change(&mut self, defaults: &TopicDefaults) -> Option<MetadataChange> {
        let kind = self.take(1)?[0];
        Some(match kind {
            KIND_TOPIC_CREATED => {
                let name = self.string()?;
                let topic_id = self.take(16)?.try_into().ok()?;
                let partitions = self.shards()?;
                let config = self.config(defaults)?;
                MetadataChange::TopicCreated(TopicMeta {
                    name,
                    topic_id,
                    partitions,
                    config,
                })
            }
            KIND_TOPIC_DELETED => MetadataChange::TopicDeleted {
                name: self.string()?,
            },
            KIND_PARTITIONS_ADDED => MetadataChange::PartitionsAdded {
                name: self.string()?,
                added: self.shards()?,
            },
            KIND_CONFIG_CHANGED => MetadataChange::ConfigChanged {
                name: self.string()?,
                config: self.config(defaults)?,
            },
            _ => return None,
        })
    }
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
        let record = encode_record(change);
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
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TopicDefaults {
        TopicDefaults::default()
    }

    fn topic(name: &str) -> MetadataChange {
        let mut config = TopicConfig::from_defaults(&defaults());
        config.set("max.message.bytes", "6000000").unwrap();
        MetadataChange::TopicCreated(TopicMeta {
            name: name.to_owned(),
            topic_id: [7; 16],
            partitions: vec![ShardId(0), ShardId(1), ShardId(0)],
            config,
        })
    }

    #[test]
    fn records_replay_and_a_torn_tail_is_cut() {
        // Proves replay restores every change, and a half-written last record is dropped.
        let dir = std::env::temp_dir().join(format!("spate-meta-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let loaded = load(&dir, &defaults()).unwrap();
        assert_eq!(loaded.records, 0);
        let mut bytes = Vec::new();
        bytes.extend(encode_record(&topic("a")));
        bytes.extend(encode_record(&topic("b")));
        bytes.extend(encode_record(&MetadataChange::TopicDeleted {
            name: "a".into(),
        }));
        let whole = bytes.len();
        let torn = encode_record(&topic("c"));
        bytes.extend_from_slice(&torn[..torn.len() - 3]);
        fs::write(&loaded.path, &bytes).unwrap();
        let loaded = load(&dir, &defaults()).unwrap();
        assert_eq!(loaded.records, 3);
        assert_eq!(loaded.end_position, whole as u64);
        assert!(loaded.state.topic("a").is_none());
        let b = loaded.state.topic("b").unwrap();
        assert_eq!(b.partitions.len(), 3);
        assert_eq!(b.config.max_message_bytes, 6_000_000);
        assert_eq!(fs::metadata(&loaded.path).unwrap().len(), whole as u64);
        fs::remove_dir_all(&dir).unwrap();
    }
}
