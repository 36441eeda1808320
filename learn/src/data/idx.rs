//! MNIST-format IDX files (<http://yann.lecun.com/exdb/mnist/>), plain or gzipped.
//!
//! An IDX file is a big-endian header (magic `0x0000_08_NN`: unsigned bytes, `NN` dimensions;
//! then one `u32` size per dimension) followed by the values. Images are `0x00000803`
//! (`count x rows x cols`), labels `0x00000801` (`count`). Gzip is detected by its magic bytes,
//! whatever the file name.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DataError, Dataset, InputShape, Split};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Classes of MNIST and Fashion-MNIST.
pub const CLASSES: usize = 10;

/// File names of the MNIST (and Fashion-MNIST) training and test sets, without `.gz`.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Reads a whole file, gunzipping it if it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::Format {
                path: path.to_owned(),
                reason: format!("corrupt gzip stream: {e}"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Checks the header of an IDX file and returns its dimensions and body.
fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    ndims: usize,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let header = 4 + 4 * ndims;
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            expected: header,
            found: bytes.len(),
        });
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_owned(),
            found,
            expected: magic,
        });
    }
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            expected: header,
            found: bytes.len(),
        });
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| be_u32(bytes, 4 + 4 * i) as usize)
        .collect();
    let body: usize = dims.iter().product();
    let expected = header + body;
    if bytes.len() < expected {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            expected,
            found: bytes.len(),
        });
    }
    if bytes.len() > expected {
        return Err(DataError::TrailingBytes {
            path: path.to_owned(),
            expected,
            found: bytes.len(),
        });
    }
    Ok((dims, &bytes[header..]))
}

/// Loads an image file and its label file into a dataset with pixels scaled to [0, 1].
pub fn load_idx_pair(images: &Path, labels: &Path) -> Result<Dataset, DataError> {
    let image_bytes = read_maybe_gz(images)?;
    let (dims, pixels) = parse(images, &image_bytes, IMAGES_MAGIC, 3)?;
    let (n_images, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 {
        return Err(DataError::Format {
            path: images.to_owned(),
            reason: format!("images of {rows}x{cols} pixels"),
        });
    }
    let label_bytes = read_maybe_gz(labels)?;
    let (dims, label_values) = parse(labels, &label_bytes, LABELS_MAGIC, 1)?;
    if dims[0] != n_images {
        return Err(DataError::CountMismatch {
            images: images.to_owned(),
            n_images,
            labels: labels.to_owned(),
            n_labels: dims[0],
        });
    }
    if let Some((index, &label)) = label_values
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= CLASSES)
    {
        return Err(DataError::LabelOutOfRange {
            path: labels.to_owned(),
            index,
            label: i64::from(label),
            classes: CLASSES,
        });
    }
    // Collected straight into the data set's shared allocation: a `Vec` would be copied into
    // one (60,000 MNIST images are 188 MB of features).
    let features: Arc<[f32]> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    let labels = label_values.iter().map(|&l| u32::from(l)).collect();
    let shape = InputShape {
        channels: 1,
        height: rows,
        width: cols,
    };
    Ok(Dataset::new(features, labels, shape, CLASSES))
}

/// Finds `name` or `name.gz` in `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::Missing {
        dir: dir.to_owned(),
        name: name.to_owned(),
    })
}

/// Loads the MNIST-format training and test sets from `dir`.
pub fn load_mnist_dir(dir: &Path) -> Result<Split, DataError> {
    let [train_x, train_y, test_x, test_y] = FILES.map(|name| find(dir, name));
    let train = load_idx_pair(&train_x?, &train_y?)?;
    let test = load_idx_pair(&test_x?, &test_y?)?;
    if train.shape() != test.shape() {
        return Err(DataError::Format {
            path: dir.to_owned(),
            reason: format!(
                "training images are {}, test images {}",
                train.shape(),
                test.shape()
            ),
        });
    }
    Ok(Split { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn header_errors_are_distinguished() {
        let p = Path::new("f");
        let good = idx(LABELS_MAGIC, &[3], &[1, 2, 3]);
        assert_eq!(parse(p, &good, LABELS_MAGIC, 1).unwrap().1, &[1, 2, 3]);
        assert!(matches!(
            parse(p, &good, IMAGES_MAGIC, 3),
            Err(DataError::BadMagic { .. })
        ));
        assert!(matches!(
            parse(p, &good[..6], LABELS_MAGIC, 1),
            Err(DataError::Truncated { expected: 8, .. })
        ));
        assert!(matches!(
            parse(p, &good[..10], LABELS_MAGIC, 1),
            Err(DataError::Truncated {
                expected: 11,
                found: 10,
                ..
            })
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            parse(p, &long, LABELS_MAGIC, 1),
            Err(DataError::TrailingBytes { .. })
        ));
    }
}
