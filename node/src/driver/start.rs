//! What a node loads before it joins the network: its key, data, trainer, and where it resumes.

use std::path::Path;

use murmur_protocol::attack;
use murmur_protocol::sign::Identity;

use super::Error;
use crate::config::Resolved;
use crate::identity;
use murmur_learn::checkpoint::Checkpoint;
use murmur_learn::data::{Dataset, Shard};
use murmur_learn::train::{Setup, Trainer};

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
    /// The checkpoint's round, when one was restored.
    pub checkpoint: Option<u64>,
    /// The highest round this node has ever signed (from the data directory), 0 if none.
    pub signed_round: u64,
}

/// Loads the key (creating it if missing), the data and this node's shard, the trainer, and the
/// checkpoint in the data directory if there is one (a checkpoint of another run is an error).
pub fn load(r: &Resolved) -> Result<Local, Error> {
    std::fs::create_dir_all(&r.data_dir).map_err(|e| Error::Io(r.data_dir.clone(), e))?;
    let identity = identity::load_or_create(&r.key)?;
    let c = &r.config;
    let (setup, split) = c.learning.load(c.run.seed)?;
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
    Ok(Local {
        identity,
        trainer,
        setup,
        test: split.test,
        checkpoint,
        signed_round: read_signed_round(&r.signed_round_path())?,
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

/// Reads the signed-round record; a missing file is round 0.
pub fn read_signed_round(path: &Path) -> Result<u64, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            Error::Io(
                path.to_owned(),
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not a round number"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::Io(path.to_owned(), e)),
    }
}

/// Records that `round` has been signed, before anything signed for it leaves the node: a node
/// restarted from an older checkpoint must never sign a second, different update for a round it
/// already signed (peers would hold proof of equivocation and ban it). Written through a
/// temporary file and a rename, and synced.
pub fn write_signed_round(path: &Path, round: u64) -> Result<(), Error> {
    let io = |e| Error::Io(path.to_owned(), e);
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        writeln!(f, "{round}").map_err(io)?;
        f.sync_data().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
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
        assert!(read_signed_round(&p).is_err());
    }
}
