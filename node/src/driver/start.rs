//! What a node loads before it runs: its key, data and trainer, and what it remembers from
//! earlier lives in its state directory (checkpoint, signed-round record, bans). Where it resumes
//! is the engine's decision ([`murmur_protocol::engine::Input::Start`]); this module only reads
//! and writes the files.

use std::path::Path;
use std::sync::{Arc, Mutex};

use murmur_learn::checkpoint::Checkpoint;
use murmur_learn::data::{Dataset, Shard, Split};
use murmur_learn::train::{ConfigError, Setup, Trainer};
use murmur_protocol::attack;
use murmur_protocol::engine::Resume;
use murmur_protocol::sign::Identity;

use super::bans::BansFile;
use super::{Cpu, Error};
use crate::config::Resolved;
use crate::identity;

/// A node's local pieces, ready to be driven.
#[derive(Debug)]
pub struct Local {
    /// The signing (and libp2p) key.
    pub identity: Identity,
    /// The trainer, with the run's initial model or the checkpoint's.
    pub trainer: Trainer,
    /// The validated learning config.
    pub setup: Setup,
    /// The test set.
    pub test: Dataset,
    /// What the node remembers from earlier lives.
    pub resume: Resume,
    /// The bans record, as read into `resume`.
    pub bans: BansFile,
}

/// Loads the key (creating it if missing), the data and this node's shard, the trainer, the
/// checkpoint in the state directory if there is one (a checkpoint of another run is an error),
/// What the nodes of one process share: the CPU their training takes turns on, and the data
/// set, loaded once (the Sybil identities of a red-team process have one config).
#[derive(Debug, Clone, Default)]
pub struct Process {
    pub(super) cpu: Cpu,
    data: Arc<Mutex<Option<(Setup, Split)>>>,
}

impl Process {
    /// The process's data set and learning setup: loaded by `load` the first time, shared
    /// after.
    pub(super) fn data(
        &self,
        load: impl FnOnce() -> Result<(Setup, Split), ConfigError>,
    ) -> Result<(Setup, Split), ConfigError> {
        let mut slot = self.data.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(loaded) = &*slot {
            return Ok(loaded.clone());
        }
        let loaded = load()?;
        *slot = Some(loaded.clone());
        Ok(loaded)
    }
}

/// Whether the run admits this node's key, checked before its data or checkpoint are read: an
/// honest node outside the run's members list is a mistake to name at once (a red-team identity
/// outside it is the attack being tested).
fn admitted(r: &Resolved, identity: &Identity) -> Result<(), Error> {
    match (&r.members, &r.config.run.members) {
        (Some(m), Some(path))
            if !m.admits(&identity.public()) && r.config.node.attack.is_none() =>
        {
            Err(Error::NotMember {
                key: r.key.clone(),
                peer: crate::net::keypair(identity)
                    .public()
                    .to_peer_id()
                    .to_string(),
                path: path.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// Loads what a node starts from: its key (admitted by the run's members list, if any), its
/// part of the data, its checkpoint, the signed-round record and the bans.
pub fn load(r: &Resolved, process: &Process) -> Result<Local, Error> {
    std::fs::create_dir_all(&r.state_dir).map_err(|e| Error::Io(r.state_dir.clone(), e))?;
    let identity = identity::load_or_create(&r.key)?;
    admitted(r, &identity)?;
    let c = &r.config;
    let (setup, split) = process.data(|| c.learning.load(c.run.seed))?;
    let shards = Shard::split(
        &split.train,
        &c.learning.partition,
        c.run.partitions,
        c.run.seed,
    )
    .map_err(|e| Error::Learning(e.into()))?;
    let mut shard = shards
        .into_iter()
        .nth(c.node.index)
        .expect("index checked below partitions");
    if c.node
        .attack
        .as_ref()
        .is_some_and(attack::Attack::flips_labels)
    {
        shard.data = flipped(&shard.data);
    }
    let mut trainer = Trainer::new(&setup, shard, c.node.index as u32, c.run.seed)?;
    let path = r.checkpoint_path();
    let checkpoint = if path.exists() {
        let ckpt = Checkpoint::load(&path, &r.run)?;
        let round = ckpt.round;
        ckpt.restore(&mut trainer)?;
        Some(round)
    } else {
        None
    };
    let (bans, banned) = BansFile::open(&r.bans_path())?;
    Ok(Local {
        identity,
        trainer,
        setup,
        test: split.test,
        resume: Resume {
            checkpoint,
            signed: read_signed_round(&r.signed_round_path())?,
            bans: banned,
        },
        bans,
    })
}

/// The dataset with every label flipped ([`attack::flip_label`]), for the label-flip attack.
fn flipped(data: &Dataset) -> Dataset {
    let classes = data.classes();
    let mut features = Vec::with_capacity(data.len() * data.shape().len());
    for i in 0..data.len() {
        features.extend_from_slice(data.row(i));
    }
    let labels = data
        .labels()
        .iter()
        .map(|&l| attack::flip_label(l, classes as u32))
        .collect();
    Dataset::new(features, labels, data.shape(), classes)
}

pub(super) fn invalid(path: &Path, why: String) -> Error {
    Error::Io(
        path.to_owned(),
        std::io::Error::new(std::io::ErrorKind::InvalidData, why),
    )
}

/// Reads a small text file; a missing one is `None`.
pub(super) fn read_text(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io(path.to_owned(), e)),
    }
}

/// Reads the signed-round record; a missing file is round 0.
pub fn read_signed_round(path: &Path) -> Result<u64, Error> {
    let Some(text) = read_text(path)? else {
        return Ok(0);
    };
    text.trim()
        .parse()
        .map_err(|_| invalid(path, format!("{:?} is not a round number", text.trim())))
}

/// Records that `round` has been signed, before anything signed for it leaves the node: a node
/// restarted from an older checkpoint must never sign a second, different update for a round it
/// already signed (peers would hold proof of equivocation and ban it).
pub fn write_signed_round(path: &Path, round: u64) -> Result<(), Error> {
    write_atomically(path, &format!("{round}\n"))
}

/// Writes `text` through a temporary file, synced, then renamed over `path`, and syncs the
/// directory so the rename itself survives a crash.
pub(super) fn write_atomically(path: &Path, text: &str) -> Result<(), Error> {
    let io = |e| Error::Io(path.to_owned(), e);
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    crate::identity::sync_dir(path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_round_record_round_trips_and_defaults_to_zero() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("signed-round");
        assert_eq!(read_signed_round(&p).unwrap(), 0);
        write_signed_round(&p, 17).unwrap();
        assert_eq!(read_signed_round(&p).unwrap(), 17);
        std::fs::write(&p, "x").unwrap();
        let e = read_signed_round(&p).unwrap_err().to_string();
        assert!(e.contains("signed-round") && e.contains("\"x\""), "{e}");
    }

    /// The identities of one process load the data set once: the second identity's data is
    /// the first one's (the same allocation).
    #[test]
    fn the_identities_of_a_process_load_the_data_once() {
        let spec: murmur_learn::train::Spec =
            toml::from_str("model = { kind = \"logistic-regression\" }\n").unwrap();
        let process = Process::default();
        let loads = std::cell::Cell::new(0);
        let load = || {
            loads.set(loads.get() + 1);
            spec.load(1)
        };
        let (_, a) = process.data(load).unwrap();
        let (_, b) = process.data(load).unwrap();
        assert_eq!(loads.get(), 1, "loaded once");
        assert_eq!(a.train.row(0).as_ptr(), b.train.row(0).as_ptr());
        let (_, lone) = Process::default().data(load).unwrap();
        assert_eq!(loads.get(), 2, "another process loads its own");
        assert_ne!(a.train.row(0).as_ptr(), lone.train.row(0).as_ptr());
    }
}
