//! The red team's side channel (`node.attack-knowledge = "colluding"`): a directory the red-team
//! processes share, on one machine or a network file system.
//!
//! ```text
//! DIR/allies/<key>              one empty file per red-team node (its ed25519 key in hex)
//! DIR/intel/<digest>.update     every honest signed update a red-team node fetched
//! ```
//!
//! Each node writes its own peer id once and every update its engine shares
//! ([`Output::Share`](murmur_protocol::engine::Output::Share)), named by its BLAKE3 digest and
//! written to a temporary name first, then renamed, so a reader never sees half a file. It reads
//! the directory every [`POLL`]: peer ids it has not seen become allies of its engine
//! ([`Engine::add_ally`](murmur_protocol::engine::Engine::add_ally)), updates it has not seen go
//! to its engine as [`Input::Intel`](murmur_protocol::engine::Input::Intel), which checks them
//! like any update (signature, run, codec, size, finite values) before it learns anything.
//!
//! What this red team can do: pool every honest model any of its nodes fetched, within a poll
//! interval plus a file write. What it cannot: see honest models no red-team node fetched, or a
//! model the moment it is signed (the simulator's `omniscient`); its files are plain data that
//! anyone with the directory can read.
//!
//! Bounds: a node keeps its last [`KEPT`] files and deletes older ones; a file larger than the
//! largest signed update is skipped; the names remembered as seen are those still in the
//! directory.

use murmur_protocol::sign::PeerKey;
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the directory is read.
pub const POLL: Duration = Duration::from_millis(200);
/// Update files each node keeps; older ones of its own are deleted.
pub const KEPT: usize = 512;

/// One node's end of the channel.
#[derive(Debug)]
pub struct Channel {
    allies_dir: PathBuf,
    intel_dir: PathBuf,
    me: PeerKey,
    /// Largest file read, in bytes.
    limit: usize,
    allies: BTreeSet<PeerKey>,
    /// File names of updates already read or written.
    seen: BTreeSet<String>,
    /// This node's own update files, oldest first.
    written: VecDeque<PathBuf>,
}

/// What a poll found.
#[derive(Debug, Default)]
pub struct Found {
    /// Red-team nodes not known before.
    pub allies: Vec<PeerKey>,
    /// Updates not read before, unchecked.
    pub updates: Vec<Arc<[u8]>>,
}

impl Channel {
    /// Opens the channel in `dir` (created if missing) and announces `me` as a red-team node.
    /// `limit` bounds the size of an update file.
    pub fn open(dir: &Path, me: PeerKey, limit: usize) -> std::io::Result<Channel> {
        let allies_dir = dir.join("allies");
        let intel_dir = dir.join("intel");
        std::fs::create_dir_all(&allies_dir)?;
        std::fs::create_dir_all(&intel_dir)?;
        std::fs::write(allies_dir.join(hex::encode(me.0)), b"")?;
        Ok(Channel {
            allies_dir,
            intel_dir,
            me,
            limit,
            allies: BTreeSet::new(),
            seen: BTreeSet::new(),
            written: VecDeque::new(),
        })
    }

    /// Writes an update this node fetched for the others to read.
    pub fn share(&mut self, update: &[u8]) -> std::io::Result<()> {
        let name = format!("{}.update", blake3::hash(update).to_hex());
        if !self.seen.insert(name.clone()) {
            return Ok(()); // written or read already
        }
        let path = self.intel_dir.join(&name);
        let partial = self
            .intel_dir
            .join(format!(".{name}.{}.partial", self.me.short()));
        std::fs::write(&partial, update)?;
        std::fs::rename(&partial, &path)?;
        self.written.push_back(path);
        if self.written.len() > KEPT
            && let Some(old) = self.written.pop_front()
        {
            // Another node may have deleted it already; nothing to do then.
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// Reads what is new in the directory. A file that cannot be read, or is too large, is
    /// skipped (and logged).
    pub fn poll(&mut self) -> std::io::Result<Found> {
        let mut found = Found::default();
        for entry in std::fs::read_dir(&self.allies_dir)? {
            let name = entry?.file_name();
            let Some(key) = name.to_str().and_then(parse_key) else {
                continue;
            };
            if key != self.me && self.allies.insert(key) {
                found.allies.push(key);
            }
        }
        let mut present = BTreeSet::new();
        for entry in std::fs::read_dir(&self.intel_dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !name.ends_with(".update") || name.starts_with('.') {
                continue;
            }
            present.insert(name.clone());
            if self.seen.contains(&name) {
                continue;
            }
            self.seen.insert(name.clone());
            let path = entry.path();
            match read_bounded(&path, self.limit) {
                Ok(Some(bytes)) => found.updates.push(bytes.into()),
                Ok(None) => tracing::warn!(
                    path = %path.display(),
                    limit = self.limit,
                    "red-team intel file larger than a signed update: skipped"
                ),
                // Deleted between the listing and the read: its writer pruned it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "red-team intel file unreadable")
                }
            }
        }
        let own: BTreeSet<&str> = self
            .written
            .iter()
            .filter_map(|p| p.file_name()?.to_str())
            .collect();
        self.seen
            .retain(|n| present.contains(n) || own.contains(n.as_str()));
        Ok(found)
    }
}

/// A key written as 64 hex digits.
fn parse_key(name: &str) -> Option<PeerKey> {
    let bytes = hex::decode(name).ok()?;
    Some(PeerKey(bytes.try_into().ok()?))
}

/// The file's bytes, or `None` if it holds more than `limit`.
fn read_bounded(path: &Path, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() <= limit).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_protocol::sign::Identity;

    /// Two red-team nodes on one directory: each learns the other as an ally and reads what the
    /// other shared, once; a file past the limit is skipped; a node's own files are pruned
    /// past [`KEPT`].
    #[test]
    fn two_nodes_learn_each_other_and_read_each_others_updates_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            Identity::from_secret([1; 32]).public(),
            Identity::from_secret([2; 32]).public(),
        );
        let mut ca = Channel::open(dir.path(), a, 100).unwrap();
        let mut cb = Channel::open(dir.path(), b, 100).unwrap();
        ca.share(b"update one").unwrap();
        ca.share(b"update one").unwrap(); // once
        ca.share(&[7u8; 101]).unwrap(); // too large for b's limit
        let found = cb.poll().unwrap();
        assert_eq!(found.allies, vec![a]);
        assert_eq!(found.updates, vec![Arc::<[u8]>::from(&b"update one"[..])]);
        let again = cb.poll().unwrap();
        assert!(again.allies.is_empty() && again.updates.is_empty());
        // a reads nothing of its own, and learns b.
        let found = ca.poll().unwrap();
        assert_eq!(found.allies, vec![b]);
        assert!(found.updates.is_empty());
        for i in 0..KEPT + 5 {
            ca.share(format!("u{i}").as_bytes()).unwrap();
        }
        let files = std::fs::read_dir(dir.path().join("intel")).unwrap().count();
        assert_eq!(files, KEPT);
        // The first two files (one read, one too large) were pruned: b reads the rest.
        assert_eq!(cb.poll().unwrap().updates.len(), KEPT);
    }
}
