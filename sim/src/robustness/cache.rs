//! The on-disk cache of finished runs.

use crate::Options;
use crate::scenario::Scenario;
use std::path::{Path, PathBuf};

/// Finished cells on disk, so that an interrupted table resumes where it stopped and shards run
/// as separate processes (`--rows`, `--columns`, `--seeds`) share their results: one small JSON
/// file per run, named by a hash of the cell's whole scenario (seed included), the dataset
/// directory and the running executable, so a rebuilt binary or a changed config never reuses
/// an old result. Files are written whole (to a temporary name, then renamed): a crash loses at
/// most the run in progress, and processes sharing the directory never read half a file.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    build: blake3::Hash,
}

/// What the cache keeps of a run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Stored {
    pub(super) accuracy: f64,
    pub(super) worst: f64,
    pub(super) bans_of_byzantine: u64,
    pub(super) bans_of_honest: u64,
    pub(super) skipped_mixes: u64,
    pub(super) wall_s: f64,
}

impl Cache {
    /// A cache in `dir` (created if missing) for the running executable.
    pub fn open(dir: &Path) -> std::io::Result<Cache> {
        std::fs::create_dir_all(dir)?;
        let exe = std::fs::read(std::env::current_exe()?)?;
        Ok(Cache {
            dir: dir.to_owned(),
            build: blake3::hash(&exe),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, scenario: &Scenario, options: &Options) -> PathBuf {
        let mut h = blake3::Hasher::new();
        h.update(self.build.as_bytes());
        h.update(
            serde_json::to_string(scenario)
                .expect("a scenario serialises")
                .as_bytes(),
        );
        if let Some(d) = &options.dataset_dir {
            h.update(d.as_os_str().as_encoded_bytes());
        }
        let hex = h.finalize().to_hex();
        self.dir.join(format!(
            "{}-seed{}-{}.json",
            scenario.name,
            scenario.seed,
            &hex[..24]
        ))
    }

    pub(super) fn get(&self, scenario: &Scenario, options: &Options) -> Option<Stored> {
        let text = std::fs::read_to_string(self.path(scenario, options)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub(super) fn put(
        &self,
        scenario: &Scenario,
        options: &Options,
        stored: &Stored,
    ) -> std::io::Result<()> {
        let path = self.path(scenario, options);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(
            &tmp,
            serde_json::to_string(stored).expect("plain numbers serialise"),
        )?;
        std::fs::rename(&tmp, &path)
    }
}
