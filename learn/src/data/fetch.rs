//! Downloading the MNIST and Fashion-MNIST files, checked against their published SHA-256.
//!
//! Each file is streamed to `DIR/.NAME.part`, hashed on the way, and renamed to `DIR/NAME` only
//! when its digest matches; a file already present with the right digest is not downloaded
//! again. The IDX files are kept gzipped: [`super::Spec::Mnist`] reads them as they are.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A dataset that `murmur-node data fetch` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// LeCun, Cortes & Burges, the MNIST database of handwritten digits.
    Mnist,
    /// Xiao, Rasul & Vollgraf 2017, Fashion-MNIST (Zalando Research).
    FashionMnist,
}

/// One file of a source and its SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct File {
    /// File name, also the last path segment of its URL.
    pub name: &'static str,
    /// Lower-case hex SHA-256 of the file as published.
    pub sha256: &'static str,
}

const MNIST_FILES: [File; 4] = [
    File {
        name: "train-images-idx3-ubyte.gz",
        sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    },
    File {
        name: "train-labels-idx1-ubyte.gz",
        sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    },
    File {
        name: "t10k-images-idx3-ubyte.gz",
        sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    },
    File {
        name: "t10k-labels-idx1-ubyte.gz",
        sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
];

const FASHION_MNIST_FILES: [File; 4] = [
    File {
        name: "train-images-idx3-ubyte.gz",
        sha256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    },
    File {
        name: "train-labels-idx1-ubyte.gz",
        sha256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    },
    File {
        name: "t10k-images-idx3-ubyte.gz",
        sha256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    },
    File {
        name: "t10k-labels-idx1-ubyte.gz",
        sha256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
];

/// Largest file accepted from a server (the largest real one is 26 MB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

impl Source {
    /// The four files with their digests.
    pub fn files(self) -> &'static [File; 4] {
        match self {
            Source::Mnist => &MNIST_FILES,
            Source::FashionMnist => &FASHION_MNIST_FILES,
        }
    }

    /// Where the files are downloaded from unless a base URL is given. MNIST's original site
    /// (yann.lecun.com) no longer serves the files reliably; this is the mirror PyTorch's
    /// torchvision uses. Fashion-MNIST's is the address in Zalando's README.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Source::Mnist => "https://ossci-datasets.s3.amazonaws.com/mnist/",
            Source::FashionMnist => "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Mnist => "mnist",
            Source::FashionMnist => "fashion-mnist",
        })
    }
}

/// A download that failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed or the server answered with an error status.
    #[error("{url}: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The downloaded bytes do not have the published digest; nothing was kept.
    #[error("{url}: sha256 {found} does not match the published {expected}")]
    Checksum {
        /// The URL.
        url: String,
        /// Published digest.
        expected: &'static str,
        /// Digest of what arrived.
        found: String,
    },
}

/// Progress of one file, reported while it downloads.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// File name.
    pub name: &'a str,
    /// Bytes received so far.
    pub done: u64,
    /// Bytes announced by the server, if it said.
    pub total: Option<u64>,
    /// Whether the file was already present with the right digest (nothing downloaded).
    pub cached: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

/// SHA-256 of a local file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Downloads the four files of `source` from `base_url` (the files' URLs are
/// `base_url/NAME`) into `dir`, creating it, and returns their paths.
pub fn fetch(
    source: Source,
    dir: &Path,
    base_url: &str,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Vec<PathBuf>, FetchError> {
    fetch_files(source.files(), dir, base_url, progress)
}

/// Downloads `files` from `base_url` (each file's URL is `base_url/NAME`) into `dir`, creating
/// it, checking each against its SHA-256; a file already present with the right digest is kept.
/// Returns their paths, in order.
pub fn fetch_files(
    files: &[File],
    dir: &Path,
    base_url: &str,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Vec<PathBuf>, FetchError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .build()
        .into();
    let base = base_url.trim_end_matches('/');
    let mut out = Vec::new();
    for file in files {
        let dest = dir.join(file.name);
        if dest.is_file() && sha256_file(&dest).map_err(io_err(&dest))? == file.sha256 {
            progress(Progress {
                name: file.name,
                done: 0,
                total: None,
                cached: true,
            });
            out.push(dest);
            continue;
        }
        let url = format!("{base}/{}", file.name);
        download(&agent, &url, file, &dest, progress)?;
        out.push(dest);
    }
    Ok(out)
}

fn download(
    agent: &ureq::Agent,
    url: &str,
    file: &File,
    dest: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(), FetchError> {
    let http = |reason: String| FetchError::Http {
        url: url.to_owned(),
        reason,
    };
    let mut response = agent.get(url).call().map_err(|e| http(e.to_string()))?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if total.is_some_and(|t| t > MAX_FILE_BYTES) {
        return Err(http(format!("announces {total:?} bytes, over the limit")));
    }
    let part = dest.with_file_name(format!(".{}.part", file.name));
    let result = (|| {
        let mut out = std::fs::File::create(&part).map_err(io_err(&part))?;
        let mut reader = response
            .body_mut()
            .with_config()
            .limit(MAX_FILE_BYTES)
            .reader();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut done = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| http(e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io_err(&part))?;
            done += n as u64;
            progress(Progress {
                name: file.name,
                done,
                total,
                cached: false,
            });
        }
        out.sync_all().map_err(io_err(&part))?;
        let found = hex::encode(hasher.finalize());
        if found != file.sha256 {
            return Err(FetchError::Checksum {
                url: url.to_owned(),
                expected: file.sha256,
                found,
            });
        }
        std::fs::rename(&part, dest).map_err(io_err(dest))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `MURMUR_MNIST_DIR=DIR cargo test -p murmur-learn recorded_mnist -- --ignored`.
    #[test]
    #[ignore = "needs the published MNIST files in MURMUR_MNIST_DIR"]
    fn recorded_mnist_digests_match_the_published_files() {
        let dir =
            std::env::var("MURMUR_MNIST_DIR").expect("MURMUR_MNIST_DIR names the MNIST directory");
        let dir = Path::new(&dir);
        for file in Source::Mnist.files() {
            assert_eq!(
                sha256_file(&dir.join(file.name)).unwrap(),
                file.sha256,
                "{}",
                file.name
            );
        }
    }
}
