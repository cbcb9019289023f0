//! `ShardVotes`: the Raft votes of every replicated-partition group one shard runs, in one file.
//!
//! openraft must have a group's vote on disk before it grants a vote or acts on one
//! (`RaftLogStorage::save_vote`). When a broker restarts, every group on each of its shards
//! elects at once; a file per group would cost a create, an fsync and a rename each. Here a
//! shard's votes share one file and saves group-commit: a save changes the map, then waits for
//! a write that started after its change. One write runs at a time and carries every change
//! made before it started, so a thousand saves cost a few writes.
//!
//! On disk: `raft-votes` in the shard's directory, the JSON of the map (group name to vote)
//! sealed with a CRC-32C (`crc_sealed`), replaced atomically (temp file, fsync, rename,
//! directory fsync) on the blocking pool. A damaged file fails the open with its path rather
//! than being read as empty: a lost vote could let a replica vote twice in one term. A failed
//! write fails every later save (the fsync is never retried), as a failed log fsync does.
//!
//! `!Send`: one shard's store, used on that shard's executor.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::log::crc_sealed;
use crate::log::signal::Signal;

/// The votes file's name in the shard's directory.
pub const VOTES_FILE_NAME: &str = "raft-votes";

/// The votes of one shard's Raft groups. Clones share the store.
pub struct ShardVotes<V> {
    inner: Rc<Inner<V>>,
}

impl<V> Clone for ShardVotes<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<V> {
    path: PathBuf,
    /// Read and changed in short borrows, never across an await.
    votes: RefCell<BTreeMap<String, V>>,
    /// Bumped at each change of `votes`.
    generation: Cell<u64>,
    /// The generation the file holds.
    persisted: Cell<u64>,
    writing: Cell<bool>,
    /// Why a write failed: every later save answers it.
    failed: RefCell<Option<String>>,
    /// Notified when a write completes or fails.
    written: Rc<Signal>,
    /// Completed writes (for tests of the grouping).
    writes: Cell<u64>,
}

impl<V> ShardVotes<V>
where
    V: Clone + Serialize + DeserializeOwned + 'static,
{
    /// Opens the votes of the shard whose directory is `dir` (created if missing); no file
    /// means no group has voted yet.
    pub async fn open(dir: &Path) -> io::Result<Self> {
        let path = dir.join(VOTES_FILE_NAME);
        let read_path = path.clone();
        let dir = dir.to_path_buf();
        let body = glommio::executor()
            .spawn_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                crc_sealed::read_file(&read_path)
            })
            .await?;
        let votes = match body {
            None => BTreeMap::new(),
            Some(body) => serde_json::from_slice(&body).map_err(|error| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is damaged: {error}", path.display()),
                )
            })?,
        };
        Ok(Self {
            inner: Rc::new(Inner {
                path,
                votes: RefCell::new(votes),
                generation: Cell::new(0),
                persisted: Cell::new(0),
                writing: Cell::new(false),
                failed: RefCell::new(None),
                written: Signal::new(),
                writes: Cell::new(0),
            }),
        })
    }

    /// The vote of `group`, if it ever voted.
    pub fn get(&self, group: &str) -> Option<V> {
        self.inner.votes.borrow().get(group).cloned()
    }

    /// Records `vote` as `group`'s and returns once it is on disk.
    pub async fn save(&self, group: &str, vote: V) -> io::Result<()> {
        self.check()?;
        self.inner.votes.borrow_mut().insert(group.to_owned(), vote);
        self.persist().await
    }

    /// Forgets `group` (its partition left this shard) and returns once that is on disk.
    pub async fn forget(&self, group: &str) -> io::Result<()> {
        self.check()?;
        if self.inner.votes.borrow_mut().remove(group).is_none() {
            return Ok(());
        }
        self.persist().await
    }

    /// Completed file writes so far.
    pub fn writes(&self) -> u64 {
        self.inner.writes.get()
    }

    fn check(&self) -> io::Result<()> {
        match self.inner.failed.borrow().as_ref() {
            Some(reason) => Err(io::Error::other(reason.clone())),
            None => Ok(()),
        }
    }

    /// Waits until the file holds the map as it is now, starting a write if none runs.
    async fn persist(&self) -> io::Result<()> {
        let inner = &self.inner;
        inner.generation.set(inner.generation.get() + 1);
        let generation = inner.generation.get();
        if !inner.writing.get() {
            inner.writing.set(true);
            glommio::spawn_local(write_until_current(self.inner.clone())).detach();
        }
        loop {
            let listener = inner.written.listen();
            self.check()?;
            if inner.persisted.get() >= generation {
                return Ok(());
            }
            listener.await;
        }
    }
}

/// Writes the file until it holds the newest generation (each write carries every change made
/// before it started), or a write fails.
async fn write_until_current<V>(inner: Rc<Inner<V>>)
where
    V: Serialize + 'static,
{
    while inner.persisted.get() < inner.generation.get() {
        let generation = inner.generation.get();
        let body = serde_json::to_vec(&*inner.votes.borrow());
        let result = match body {
            Ok(body) => {
                let path = inner.path.clone();
                glommio::executor()
                    .spawn_blocking(move || crc_sealed::write_file(&path, body))
                    .await
            }
            Err(error) => Err(io::Error::other(error)),
        };
        if let Err(error) = result {
            let reason = format!("writing {} failed: {error}", inner.path.display());
            tracing::error!(%reason, "raft votes unusable until restart");
            *inner.failed.borrow_mut() = Some(reason);
            break;
        }
        inner.persisted.set(generation);
        inner.writes.set(inner.writes.get() + 1);
        inner.written.notify();
    }
    inner.writing.set(false);
    inner.written.notify();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::direct_file::tests::{TestDir, run_in_executor};

    type Votes = ShardVotes<(u64, u64)>;

    #[test]
    fn votes_survive_a_reopen_and_forgotten_ones_stay_gone() {
        // Proves save and forget are on disk when they return: a reopen reads exactly them.
        let dir = TestDir::new("raft-votes-reopen");
        let path = dir.path.join("shard-0");
        run_in_executor(dir.path.clone(), move || async move {
            let votes = Votes::open(&path).await.unwrap();
            assert_eq!(votes.get("orders-0"), None);
            votes.save("orders-0", (3, 1)).await.unwrap();
            votes.save("orders-1", (5, 2)).await.unwrap();
            votes.save("orders-0", (4, 2)).await.unwrap();
            votes.forget("orders-1").await.unwrap();
            votes.forget("never-voted").await.unwrap();
            drop(votes);
            let votes = Votes::open(&path).await.unwrap();
            assert_eq!(votes.get("orders-0"), Some((4, 2)));
            assert_eq!(votes.get("orders-1"), None);
        });
    }

    #[test]
    fn a_thousand_saves_at_once_share_a_few_writes() {
        // Proves the grouping: a thousand groups voting at once (a broker restart) each return
        // only once their vote is on disk, and that takes a handful of file writes, not a
        // thousand.
        let dir = TestDir::new("raft-votes-grouped");
        let path = dir.path.join("shard-0");
        run_in_executor(dir.path.clone(), move || async move {
            let votes = Votes::open(&path).await.unwrap();
            let tasks: Vec<_> = (0..1000u64)
                .map(|i| {
                    let votes = votes.clone();
                    glommio::spawn_local(async move {
                        votes.save(&format!("topic-{i}"), (i, i % 3)).await.unwrap();
                        // On disk already: read the file behind the store's back.
                        let bytes = std::fs::read(votes.inner.path.clone()).unwrap();
                        let on_disk: BTreeMap<String, (u64, u64)> =
                            serde_json::from_slice(crc_sealed::unseal(&bytes).unwrap()).unwrap();
                        assert_eq!(on_disk.get(&format!("topic-{i}")), Some(&(i, i % 3)));
                    })
                })
                .collect();
            for task in tasks {
                task.await;
            }
            assert!(votes.writes() <= 10, "{} writes", votes.writes());
            drop(votes);
            let votes = Votes::open(&path).await.unwrap();
            for i in 0..1000u64 {
                assert_eq!(votes.get(&format!("topic-{i}")), Some((i, i % 3)));
            }
        });
    }

    #[test]
    fn a_damaged_file_fails_the_open_naming_it() {
        // Proves damage is refused rather than read as "no votes" (which could let a replica
        // vote twice in a term): a flipped byte anywhere fails the open with the file's path.
        let dir = TestDir::new("raft-votes-damaged");
        let path = dir.path.join("shard-0");
        run_in_executor(dir.path.clone(), move || async move {
            let votes = Votes::open(&path).await.unwrap();
            votes.save("orders-0", (7, 1)).await.unwrap();
            drop(votes);
            let file = path.join(VOTES_FILE_NAME);
            let original = std::fs::read(&file).unwrap();
            for position in [0, original.len() / 2, original.len() - 1] {
                let mut damaged = original.clone();
                damaged[position] ^= 0x20;
                std::fs::write(&file, damaged).unwrap();
                let error = Votes::open(&path).await.err().expect("refused");
                assert!(error.to_string().contains(VOTES_FILE_NAME), "{error}");
            }
        });
    }
}
