//! Datasets, their loading from config, and their partition across nodes.
//!
//! A [`Dataset`] is a table of `f32` feature rows and `u32` labels behind `Arc`s, so any number
//! of trainers share one copy; a node's share of it is a [`Shard`], a list of row indices.
//!
//! Sources ([`Spec`]): the embedded 8x8 digits (the zero-setup default), MNIST-format IDX files
//! (MNIST, Fashion-MNIST; gzipped or not), CSV with a label column, and two synthetic tasks.
//! Loading is deterministic from the run seed (test split, synthetic draws). Missing, truncated
//! or corrupt files give a [`DataError`] naming the file and what is wrong.

mod digits;
pub mod fetch;
mod idx;
pub mod partition;
pub mod stream;
mod synthetic;
mod tabular;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

pub use idx::load_idx_pair;
pub use partition::{Partition, Shard};

/// Shape of one sample: `channels x height x width`; tabular data is `1 x 1 x features`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShape {
    /// Channels (1 for grey-scale images and tabular data).
    pub channels: usize,
    /// Image height in pixels (1 for tabular data).
    pub height: usize,
    /// Image width in pixels (the number of features for tabular data).
    pub width: usize,
}

impl InputShape {
    /// Values per sample.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether a sample holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tabular data with `features` columns.
    pub fn tabular(features: usize) -> Self {
        Self {
            channels: 1,
            height: 1,
            width: features,
        }
    }
}

impl fmt::Display for InputShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// A labelled dataset in memory. Cloning is cheap (three `Arc`s).
#[derive(Clone)]
pub struct Dataset {
    features: Arc<[f32]>,
    labels: Arc<[u32]>,
    shape: InputShape,
    classes: usize,
    /// The rows in sparse form, built at first use and shared by the clones.
    sparse: Arc<OnceLock<Option<SparseRows>>>,
}

/// A data set's rows in compressed sparse form: the positions and values of sample `i`'s
/// non-zero features are `index[starts[i]..starts[i + 1]]` and `value[..]` alike, in position
/// order. Kept only for data whose features are mostly zero (MNIST: about one pixel in five is
/// not), where a forward pass that skips the zeros does a fraction of the work.
#[derive(Debug)]
pub struct SparseRows {
    pub(crate) starts: Vec<usize>,
    pub(crate) index: Vec<u32>,
    pub(crate) value: Vec<f32>,
}

impl SparseRows {
    /// The sparse form of `features` (rows of `width` values), or `None` when more than half
    /// of them are non-zero.
    fn of(features: &[f32], width: usize) -> Option<Self> {
        let nonzero = features.iter().filter(|&&v| v != 0.0).count();
        if width == 0 || nonzero > features.len() / 2 {
            return None;
        }
        let mut rows = Self {
            starts: Vec::with_capacity(features.len() / width + 1),
            index: Vec::with_capacity(nonzero),
            value: Vec::with_capacity(nonzero),
        };
        rows.starts.push(0);
        for row in features.chunks_exact(width) {
            for (k, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    rows.index.push(k as u32);
                    rows.value.push(v);
                }
            }
            rows.starts.push(rows.index.len());
        }
        Some(rows)
    }
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("len", &self.len())
            .field("shape", &self.shape)
            .field("classes", &self.classes)
            .finish()
    }
}

impl Dataset {
    /// Builds a dataset from row-major features (`labels.len()` rows of `shape.len()` values).
    ///
    /// # Panics
    /// If the lengths disagree or a label is not below `classes`; loaders check their input and
    /// return a [`DataError`] first.
    pub fn new(
        features: impl Into<Arc<[f32]>>,
        labels: Vec<u32>,
        shape: InputShape,
        classes: usize,
    ) -> Self {
        let features = features.into();
        assert_eq!(
            features.len(),
            labels.len() * shape.len(),
            "feature table size"
        );
        assert!(
            labels.iter().all(|&l| (l as usize) < classes),
            "label range"
        );
        Self {
            features,
            labels: labels.into(),
            shape,
            classes,
            sparse: Arc::default(),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Shape of one sample.
    pub fn shape(&self) -> InputShape {
        self.shape
    }

    /// Number of classes; labels are `0..classes`.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The features of sample `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        let d = self.shape.len();
        &self.features[i * d..(i + 1) * d]
    }

    /// The rows in sparse form, if most features are zero (built at the first call, then
    /// shared by every clone).
    pub fn sparse_rows(&self) -> Option<&SparseRows> {
        self.sparse
            .get_or_init(|| SparseRows::of(&self.features, self.shape.len()))
            .as_ref()
    }

    /// The label of sample `i`.
    pub fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }

    /// All labels, in sample order.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// A new dataset holding the rows `indices`, in that order.
    pub fn select(&self, indices: &[u32]) -> Self {
        let d = self.shape.len();
        let mut features = Vec::with_capacity(indices.len() * d);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(self.row(i as usize));
            labels.push(self.labels[i as usize]);
        }
        Self::new(features, labels, self.shape, self.classes)
    }

    /// Count of samples per class.
    pub fn histogram(&self, indices: &[u32]) -> Vec<usize> {
        let mut h = vec![0; self.classes];
        for &i in indices {
            h[self.labels[i as usize] as usize] += 1;
        }
        h
    }

    /// Splits into `(train, test)` with `round(len * test_fraction)` test samples chosen by a
    /// shuffle seeded from `seed` (stream [`stream::SPLIT`]).
    pub fn split(&self, test_fraction: f64, seed: u64) -> (Self, Self) {
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        order.shuffle(&mut stream::rng(seed, stream::SPLIT, 0));
        let n_test = ((self.len() as f64) * test_fraction).round() as usize;
        let (test, train) = order.split_at(n_test);
        let (mut train, mut test) = (train.to_vec(), test.to_vec());
        train.sort_unstable();
        test.sort_unstable();
        (self.select(&train), self.select(&test))
    }
}

/// A training set and its held-out test set.
#[derive(Debug, Clone)]
pub struct Split {
    /// Samples to partition across nodes and train on.
    pub train: Dataset,
    /// Held-out samples for evaluation.
    pub test: Dataset,
}

fn default_test_fraction() -> f64 {
    0.2
}

fn default_true() -> bool {
    true
}

/// Where a run's data comes from, as written in config (`data = { kind = "digits" }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub enum Spec {
    /// The 8x8 handwritten digits (1,797 samples, 10 classes) embedded in the binary; pixels
    /// scaled from 0..16 to [0, 1].
    Digits {
        /// Fraction held out for testing (default 0.2).
        #[serde(default = "default_test_fraction")]
        test_fraction: f64,
    },
    /// MNIST: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
    /// `t10k-labels-idx1-ubyte` in `dir`, each optionally `.gz`; pixels scaled to [0, 1].
    Mnist {
        /// Directory holding the four files (see `murmur-node data fetch mnist`).
        dir: PathBuf,
    },
    /// Fashion-MNIST, same file names and format as MNIST.
    FashionMnist {
        /// Directory holding the four files.
        dir: PathBuf,
    },
    /// A CSV file with a header row, one numeric label column (class ids `0..classes`) and
    /// numeric feature columns.
    Csv {
        /// Path of the file.
        path: PathBuf,
        /// Header name of the label column.
        label_column: String,
        /// Fraction held out for testing (default 0.2).
        #[serde(default = "default_test_fraction")]
        test_fraction: f64,
        /// Standardise each feature to mean 0, variance 1 with training-set statistics
        /// (default true).
        #[serde(default = "default_true")]
        standardize: bool,
    },
    /// A mixture of isotropic unit Gaussians, one per class, with means drawn from
    /// `N(0, separation^2 / dim)` per coordinate.
    SyntheticGaussian(synthetic::Gaussian),
    /// Labels given by a random ReLU teacher network `dim -> hidden -> classes` (argmax) on
    /// standard normal inputs.
    SyntheticTeacher(synthetic::Teacher),
}

impl Default for Spec {
    fn default() -> Self {
        Self::Digits {
            test_fraction: default_test_fraction(),
        }
    }
}

/// A data file or data config that cannot be used. Every file error names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// None of the accepted names of a required file exists.
    #[error("{dir}: missing {name} (also looked for {name}.gz)")]
    Missing {
        /// Directory searched.
        dir: PathBuf,
        /// File name expected.
        name: String,
    },
    /// The file's magic number is not the one its format requires.
    #[error("{path}: wrong magic number {found:#010x}, expected {expected:#010x}")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Magic number read.
        found: u32,
        /// Magic number of the format.
        expected: u32,
    },
    /// The file ends before the size its header announces.
    #[error("{path}: truncated: header announces {expected} bytes, file has {found}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header requires.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The file is longer than its header announces.
    #[error("{path}: {found} bytes, header announces {expected}")]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Bytes the header requires.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// An image file and its label file disagree on the number of samples.
    #[error("{images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Images it holds.
        n_images: usize,
        /// The label file.
        labels: PathBuf,
        /// Labels it holds.
        n_labels: usize,
    },
    /// A label is not a valid class id.
    #[error("{path}: sample {index} has label {label}, outside 0..{classes}")]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// Sample index (0-based; for CSV, the data row).
        index: usize,
        /// The label read.
        label: i64,
        /// Number of classes allowed.
        classes: usize,
    },
    /// A structural problem in a file: bad dimensions, an unparsable CSV cell, a gzip error.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A data config value is out of range.
    #[error("data.{field}: {reason}")]
    Invalid {
        /// The config field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn check_fraction(f: f64) -> Result<(), DataError> {
    if f.is_finite() && (0.0..1.0).contains(&f) {
        Ok(())
    } else {
        Err(DataError::Invalid {
            field: "test-fraction",
            reason: format!("must be in [0, 1), got {f}"),
        })
    }
}

impl Spec {
    /// Replaces the directory of a file-based dataset (MNIST, Fashion-MNIST); other sources
    /// are left as they are.
    pub fn set_dir(&mut self, dir: PathBuf) {
        if let Spec::Mnist { dir: d } | Spec::FashionMnist { dir: d } = self {
            *d = dir;
        }
    }

    /// Loads (or generates) the data. `seed` drives the test split and synthetic draws.
    pub fn load(&self, seed: u64) -> Result<Split, DataError> {
        match self {
            Spec::Digits { test_fraction } => {
                check_fraction(*test_fraction)?;
                let all = digits::load();
                let (train, test) = all.split(*test_fraction, seed);
                Ok(Split { train, test })
            }
            Spec::Mnist { dir } | Spec::FashionMnist { dir } => idx::load_mnist_dir(dir),
            Spec::Csv {
                path,
                label_column,
                test_fraction,
                standardize,
            } => {
                check_fraction(*test_fraction)?;
                tabular::load(path, label_column, *test_fraction, *standardize, seed)
            }
            Spec::SyntheticGaussian(g) => g.generate(seed),
            Spec::SyntheticTeacher(t) => t.generate(seed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_rows_hold_each_rows_non_zero_features_for_mostly_zero_data_only() {
        let features = vec![
            0.0, 0.5, 0.0, 0.0, //
            0.0, 0.0, 0.0, 0.0, //
            0.25, 0.0, 0.0, -1.0,
        ];
        let data = Dataset::new(features, vec![0, 1, 0], InputShape::tabular(4), 2);
        let rows = data.sparse_rows().expect("three in twelve are not zero");
        assert_eq!(rows.starts, [0, 1, 1, 3]);
        assert_eq!(rows.index, [1, 0, 3]);
        assert_eq!(rows.value, [0.5, 0.25, -1.0]);
        let clone = data.clone();
        assert!(
            std::ptr::eq(clone.sparse_rows().unwrap(), rows),
            "built once, shared"
        );
        let dense = Dataset::new(vec![1.0, 0.0, 2.0], vec![0], InputShape::tabular(3), 2);
        assert!(dense.sparse_rows().is_none(), "two in three are not zero");
        let digits = digits::load();
        assert!(
            digits.sparse_rows().is_none(),
            "the digits keep burn's path"
        );
    }

    #[test]
    fn digits_load_and_split_deterministically() {
        let split = Spec::default().load(3).unwrap();
        assert_eq!(split.train.len() + split.test.len(), 1797);
        assert_eq!(split.test.len(), 359);
        assert_eq!(split.train.shape().len(), 64);
        let again = Spec::default().load(3).unwrap();
        assert_eq!(split.test.labels(), again.test.labels());
        let other = Spec::default().load(4).unwrap();
        assert_ne!(split.test.labels(), other.test.labels());
    }

    #[test]
    fn spec_parses_every_kind() {
        let cases = [
            "kind = \"digits\"",
            "kind = \"mnist\"\ndir = \"/d\"",
            "kind = \"fashion-mnist\"\ndir = \"/d\"",
            "kind = \"csv\"\npath = \"x.csv\"\nlabel-column = \"label\"",
            "kind = \"synthetic-gaussian\"\nclasses = 4\ndim = 8",
            "kind = \"synthetic-teacher\"\ndim = 8",
        ];
        for case in cases {
            toml::from_str::<Spec>(case).unwrap_or_else(|e| panic!("{case}: {e}"));
        }
        assert!(toml::from_str::<Spec>("kind = \"digits\"\nfraction = 0.1").is_err());
        let err = Spec::Digits { test_fraction: 1.5 }.load(0).unwrap_err();
        assert!(err.to_string().contains("data.test-fraction"), "{err}");
    }
}
