//! Data sources and partitions: real files load, corrupt files are named and explained,
//! partitions are disjoint, complete, deterministic and as skewed as asked.

use std::io::Write;
use std::path::{Path, PathBuf};

use murmur_learn::data::{self, DataError, Partition};

/// The MNIST subset shipped with the repository (`tests/fixtures/mnist`).
const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/mnist");

fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A small valid MNIST-format directory (plain files) with `n` 4x4 images per set.
fn tiny_mnist(dir: &Path, n: u32) {
    let images = idx(0x803, &[n, 4, 4], &vec![128u8; (n * 16) as usize]);
    let labels = idx(
        0x801,
        &[n],
        &(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>(),
    );
    for set in ["train", "t10k"] {
        std::fs::write(dir.join(format!("{set}-images-idx3-ubyte")), &images).unwrap();
        std::fs::write(dir.join(format!("{set}-labels-idx1-ubyte")), &labels).unwrap();
    }
}

fn load(dir: &Path) -> Result<data::Split, DataError> {
    data::Spec::Mnist {
        dir: dir.to_owned(),
    }
    .load(0)
}

fn names(err: &DataError, file: &Path) -> bool {
    err.to_string().contains(&file.display().to_string())
}

#[test]
fn the_mnist_subset_loads_gzipped() {
    let split = load(Path::new(MNIST)).unwrap();
    assert_eq!((split.train.len(), split.test.len()), (5_000, 1_000));
    assert_eq!(split.train.shape().len(), 784);
    assert_eq!(&split.train.labels()[..5], &[5, 0, 4, 1, 9]);
    assert_eq!(&split.test.labels()[..5], &[7, 2, 1, 0, 4]);
}

/// All of MNIST: `MURMUR_MNIST_DIR=DIR cargo test -p murmur-learn --test data -- --ignored`
/// (fetch it with `murmur-node data fetch mnist --dir DIR`).
#[test]
#[ignore = "needs all of MNIST in MURMUR_MNIST_DIR"]
fn full_mnist_loads_gzipped() {
    let dir =
        std::env::var("MURMUR_MNIST_DIR").expect("MURMUR_MNIST_DIR names the MNIST directory");
    let split = load(Path::new(&dir)).unwrap();
    assert_eq!((split.train.len(), split.test.len()), (60_000, 10_000));
    assert_eq!(&split.train.labels()[..5], &[5, 0, 4, 1, 9]);
}

#[test]
fn corrupt_idx_files_are_named_and_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tiny_mnist(dir, 20);
    assert_eq!(load(dir).unwrap().train.len(), 20);
    let train_images: PathBuf = dir.join("train-images-idx3-ubyte");
    let train_labels: PathBuf = dir.join("train-labels-idx1-ubyte");
    let good_labels = std::fs::read(&train_labels).unwrap();

    // Wrong magic: a label file where images belong.
    std::fs::write(&train_images, &good_labels).unwrap();
    let err = load(dir).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadMagic {
                found: 0x801,
                expected: 0x803,
                ..
            }
        ),
        "{err}"
    );
    assert!(names(&err, &train_images), "{err}");

    // Truncated body.
    let images = idx(0x803, &[20, 4, 4], &[0u8; 20 * 16]);
    std::fs::write(&train_images, &images[..images.len() - 5]).unwrap();
    let err = load(dir).unwrap_err();
    assert!(matches!(err, DataError::Truncated { .. }), "{err}");
    assert!(
        names(&err, &train_images) && err.to_string().contains("truncated"),
        "{err}"
    );

    // Counts that disagree.
    std::fs::write(&train_images, idx(0x803, &[19, 4, 4], &[0u8; 19 * 16])).unwrap();
    let err = load(dir).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                n_images: 19,
                n_labels: 20,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        names(&err, &train_images) && names(&err, &train_labels),
        "{err}"
    );

    // Label out of range, in a gzipped file.
    std::fs::write(&train_images, &images).unwrap();
    std::fs::remove_file(&train_labels).unwrap();
    let mut labels = vec![1u8; 20];
    labels[13] = 10;
    let gz_labels = dir.join("train-labels-idx1-ubyte.gz");
    std::fs::write(&gz_labels, gz(&idx(0x801, &[20], &labels))).unwrap();
    let err = load(dir).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                index: 13,
                label: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(names(&err, &gz_labels), "{err}");

    // Corrupt gzip stream.
    let mut broken = gz(&idx(0x801, &[20], &[1u8; 20]));
    let len = broken.len();
    broken.truncate(len - 12);
    std::fs::write(&gz_labels, &broken).unwrap();
    let err = load(dir).unwrap_err();
    assert!(
        names(&err, &gz_labels) && err.to_string().contains("gzip"),
        "{err}"
    );

    // Missing file.
    std::fs::remove_file(&gz_labels).unwrap();
    let err = load(dir).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("train-labels-idx1-ubyte"), "{err}");
}

#[test]
fn csv_data_trains_from_config() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("points.csv");
    let mut text = String::from("x,y,label\n");
    for i in 0..200 {
        let c = i % 2;
        let (x, y) = (c as f32 * 4.0 + (i % 7) as f32 * 0.1, (i % 5) as f32 * 0.1);
        text.push_str(&format!("{x},{y},{c}\n"));
    }
    std::fs::write(&path, text).unwrap();
    let spec: data::Spec = toml::from_str(&format!(
        "kind = \"csv\"\npath = {:?}\nlabel-column = \"label\"",
        path.display().to_string()
    ))
    .unwrap();
    let split = spec.load(5).unwrap();
    assert_eq!((split.train.len(), split.test.len()), (160, 40));
    assert_eq!(split.train.classes(), 2);
}

fn check_partition(parts: &[Vec<u32>], n: usize) {
    let mut seen = vec![false; n];
    for p in parts {
        for &i in p {
            assert!(!seen[i as usize], "sample {i} in two partitions");
            seen[i as usize] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "every sample assigned");
}

/// Mean over nodes of the largest class's share of the node's samples.
fn mean_top_share(train: &data::Dataset, parts: &[Vec<u32>]) -> f64 {
    parts
        .iter()
        .map(|p| *train.histogram(p).iter().max().unwrap() as f64 / p.len() as f64)
        .sum::<f64>()
        / parts.len() as f64
}

#[test]
fn partitions_are_disjoint_complete_deterministic_and_skewed_as_asked() {
    let train = data::Spec::default().load(1).unwrap().train;
    let n = train.len();
    let schemes = [
        Partition::Iid,
        Partition::Dirichlet { alpha: 0.1 },
        Partition::Dirichlet { alpha: 100.0 },
        Partition::Shards { per_node: 2 },
        Partition::LabelSorted,
    ];
    for scheme in &schemes {
        let parts = scheme.split(train.labels(), 10, 20, 42).unwrap();
        assert_eq!(parts.len(), 20);
        assert!(parts.iter().all(|p| !p.is_empty()), "{scheme:?}");
        check_partition(&parts, n);
        assert_eq!(
            parts,
            scheme.split(train.labels(), 10, 20, 42).unwrap(),
            "{scheme:?}"
        );
    }
    let iid = Partition::Iid.split(train.labels(), 10, 20, 42).unwrap();
    assert!(
        iid.iter()
            .all(|p| p.len() == n / 20 || p.len() == n / 20 + 1)
    );
    assert_ne!(
        iid,
        Partition::Iid.split(train.labels(), 10, 20, 43).unwrap()
    );

    let skewed = Partition::Dirichlet { alpha: 0.1 }
        .split(train.labels(), 10, 20, 42)
        .unwrap();
    let flat = Partition::Dirichlet { alpha: 100.0 }
        .split(train.labels(), 10, 20, 42)
        .unwrap();
    let (s, f, i) = (
        mean_top_share(&train, &skewed),
        mean_top_share(&train, &flat),
        mean_top_share(&train, &iid),
    );
    println!("top-class share: dirichlet 0.1 {s:.2}, dirichlet 100 {f:.2}, iid {i:.2}");
    assert!(s > 0.5, "alpha 0.1 gives nodes a dominant class: {s}");
    assert!(
        f < 0.3 && i < 0.3,
        "alpha 100 and IID stay balanced: {f} {i}"
    );

    let shards = Partition::Shards { per_node: 2 }
        .split(train.labels(), 10, 20, 42)
        .unwrap();
    for p in &shards {
        let classes = train.histogram(p).iter().filter(|&&c| c > 0).count();
        assert!(
            classes <= 4,
            "2 label-sorted shards span at most 4 classes, got {classes}"
        );
    }
    let sorted = Partition::LabelSorted
        .split(train.labels(), 10, 10, 0)
        .unwrap();
    assert!(mean_top_share(&train, &sorted) > 0.8);

    // Scale: 1,000 nodes over 60,000 samples with a very skewed Dirichlet leave nobody empty.
    let labels: Vec<u32> = (0..60_000u32).map(|i| (i * 7 + i / 13) % 10).collect();
    let many = Partition::Dirichlet { alpha: 0.05 }
        .split(&labels, 10, 1000, 3)
        .unwrap();
    assert!(many.iter().all(|p| !p.is_empty()));
    check_partition(&many, labels.len());

    assert!(Partition::Iid.split(train.labels(), 10, n + 1, 0).is_err());
    assert!(
        Partition::Dirichlet { alpha: 0.0 }
            .split(train.labels(), 10, 5, 0)
            .is_err()
    );
    let parsed: Partition = toml::from_str("kind = \"dirichlet\"\nalpha = 0.5").unwrap();
    assert_eq!(parsed, Partition::Dirichlet { alpha: 0.5 });
}
