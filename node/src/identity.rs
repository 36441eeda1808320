//! Key files on disk: create, load, and refuse files that are missing, corrupt or readable by
//! others. The format itself is [`murmur_protocol::keyfile`]. The same ed25519 key signs updates
//! and is the node's libp2p identity.

use murmur_protocol::{Identity, keyfile};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a key file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No file at the path.
    #[error("key file {path} does not exist (create one with `murmur-node keygen --out {path}`)")]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// The file exists, and `keygen` will not overwrite it.
    #[error("key file {path} already exists; refusing to overwrite it")]
    Exists {
        /// The path.
        path: PathBuf,
    },
    /// Group or others may read or write it.
    #[error(
        "key file {path} has mode {mode:03o}: group or others can access it; run `chmod 600 {path}`"
    )]
    Permissions {
        /// The path.
        path: PathBuf,
        /// The permission bits.
        mode: u32,
    },
    /// The contents are not a valid key.
    #[error("key file {path}: {source}")]
    Format {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        source: keyfile::Error,
    },
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The operating system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a new key file at `path` with mode 0600, from the operating system's randomness.
/// Refuses to overwrite an existing file.
pub fn create(path: &Path) -> Result<Identity, KeyError> {
    let identity = loop {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
        if keyfile::check_strength(&secret).is_ok() {
            break Identity::from_secret(secret);
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    if path.exists() {
        return Err(KeyError::Exists {
            path: path.to_path_buf(),
        });
    }
    // Written whole to a temporary file, synced, then linked into place (which, unlike a
    // rename, refuses an existing file) and the directory synced: a crash leaves either no key
    // file or a complete one, never a truncated one that the next start refuses as corrupt.
    let name = path
        .file_name()
        .map_or("key".into(), |n| n.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(keyfile::format(&identity).as_bytes())
        .map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists {
            path: path.to_path_buf(),
        },
        _ => KeyError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    sync_dir(path).map_err(io(path))?;
    Ok(identity)
}

/// Syncs the directory holding `path`, so that a file created or renamed in it survives a crash.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => fs::File::open(".")?.sync_all(),
    }
}

/// Loads the key file at `path`, refusing one that group or others can access.
pub fn load(path: &Path) -> Result<Identity, KeyError> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => KeyError::Missing {
            path: path.to_path_buf(),
        },
        _ => KeyError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = fs::read_to_string(path).map_err(io(path))?;
    keyfile::parse(&text).map_err(|source| KeyError::Format {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads the key at `path`, creating it first if there is none.
pub fn load_or_create(path: &Path) -> Result<Identity, KeyError> {
    match load(path) {
        Err(KeyError::Missing { .. }) => create(path),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/node.key");
        let id = create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path).unwrap(), id);
        assert!(matches!(create(&path), Err(KeyError::Exists { .. })));
        assert_eq!(load_or_create(&path).unwrap(), id);
        let other = create(&dir.path().join("other.key")).unwrap();
        assert_ne!(other, id, "fresh keys differ");
    }

    #[test]
    fn missing_corrupt_and_world_readable_files_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let e = load(&path).unwrap_err();
        assert!(matches!(e, KeyError::Missing { .. }));
        assert!(e.to_string().contains("node.key"), "{e}");

        create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            matches!(e, KeyError::Permissions { mode: 0o644, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let mut text = fs::read_to_string(&path).unwrap();
        text.truncate(40);
        fs::write(&path, text).unwrap();
        let e = load(&path).unwrap_err();
        assert!(matches!(e, KeyError::Format { .. }), "{e}");
        assert!(e.to_string().contains("node.key"), "{e}");
    }
}
