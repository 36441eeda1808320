//! CSV files with a header row, a label column and numeric feature columns.

use std::path::Path;

use super::{DataError, Dataset, InputShape, Split};

/// Largest number of classes a CSV label column may define.
pub const MAX_CLASSES: usize = 1000;

/// Loads `path`, holds out `test_fraction` of the rows (shuffled from `seed`) and optionally
/// standardises the features with the training rows' mean and standard deviation.
///
/// Labels must be integers in `0..MAX_CLASSES`; the class count is the largest label plus one.
pub fn load(
    path: &Path,
    label_column: &str,
    test_fraction: f64,
    standardize: bool,
    seed: u64,
) -> Result<Split, DataError> {
    let all = read(path, label_column)?;
    let (mut train, mut test) = all.split(test_fraction, seed);
    if standardize {
        let (mean, std) = moments(&train);
        train = scaled(&train, &mean, &std);
        test = scaled(&test, &mean, &std);
    }
    Ok(Split { train, test })
}

fn format_error(path: &Path, reason: String) -> DataError {
    DataError::Format {
        path: path.to_owned(),
        reason,
    }
}

/// Reads the whole file into one dataset.
pub fn read(path: &Path, label_column: &str) -> Result<Dataset, DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(file);
    let headers = reader
        .headers()
        .map_err(|e| format_error(path, format!("header row: {e}")))?
        .clone();
    let label_at = headers
        .iter()
        .position(|h| h.trim() == label_column)
        .ok_or_else(|| {
            format_error(
                path,
                format!("no column named {label_column:?} (columns: {headers:?})"),
            )
        })?;
    let n_features = headers.len() - 1;
    if n_features == 0 {
        return Err(format_error(path, "no feature columns".into()));
    }
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let line = row + 2;
        let record = record.map_err(|e| format_error(path, format!("line {line}: {e}")))?;
        for (col, cell) in record.iter().enumerate() {
            let cell = cell.trim();
            if col == label_at {
                let label: i64 = cell.parse().map_err(|_| {
                    format_error(
                        path,
                        format!("line {line}: label {cell:?} is not an integer class id"),
                    )
                })?;
                if !(0..MAX_CLASSES as i64).contains(&label) {
                    return Err(DataError::LabelOutOfRange {
                        path: path.to_owned(),
                        index: row,
                        label,
                        classes: MAX_CLASSES,
                    });
                }
                labels.push(label as u32);
            } else {
                let value: f32 = cell
                    .parse()
                    .ok()
                    .filter(|v: &f32| v.is_finite())
                    .ok_or_else(|| {
                        format_error(
                            path,
                            format!(
                                "line {line}, column {:?}: {cell:?} is not a finite number",
                                &headers[col]
                            ),
                        )
                    })?;
                features.push(value);
            }
        }
    }
    if labels.is_empty() {
        return Err(format_error(path, "no data rows".into()));
    }
    let classes = labels.iter().max().map_or(0, |&m| m as usize + 1).max(2);
    Ok(Dataset::new(
        features,
        labels,
        InputShape::tabular(n_features),
        classes,
    ))
}

/// Per-feature mean and standard deviation (1 where a feature is constant).
fn moments(d: &Dataset) -> (Vec<f32>, Vec<f32>) {
    let dim = d.shape().len();
    let n = d.len().max(1) as f64;
    let mut mean = vec![0f64; dim];
    for i in 0..d.len() {
        for (m, &x) in mean.iter_mut().zip(d.row(i)) {
            *m += f64::from(x);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0f64; dim];
    for i in 0..d.len() {
        for ((v, &x), m) in var.iter_mut().zip(d.row(i)).zip(&mean) {
            *v += (f64::from(x) - m).powi(2);
        }
    }
    let std = var
        .iter()
        .map(|v| {
            let s = (v / n).sqrt();
            if s > 1e-12 { s as f32 } else { 1.0 }
        })
        .collect();
    (mean.iter().map(|&m| m as f32).collect(), std)
}

fn scaled(d: &Dataset, mean: &[f32], std: &[f32]) -> Dataset {
    let mut features = Vec::with_capacity(d.len() * mean.len());
    for i in 0..d.len() {
        for ((&x, m), s) in d.row(i).iter().zip(mean).zip(std) {
            features.push((x - m) / s);
        }
    }
    Dataset::new(features, d.labels().to_vec(), d.shape(), d.classes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn reads_labels_from_any_column_and_standardizes() {
        let f = file("a,label,b\n1,0,10\n2,1,20\n3,2,30\n4,1,40\n5,0,50\n");
        let d = read(f.path(), "label").unwrap();
        assert_eq!(d.len(), 5);
        assert_eq!(d.classes(), 3);
        assert_eq!(d.row(1), &[2.0, 20.0]);
        assert_eq!(d.labels(), &[0, 1, 2, 1, 0]);
        let split = load(f.path(), "label", 0.0, true, 1).unwrap();
        let col0: f32 = (0..5).map(|i| split.train.row(i)[0]).sum();
        assert!(col0.abs() < 1e-5);
    }

    #[test]
    fn bad_cells_name_the_file_line_and_column() {
        let f = file("x,label\n1,0\nfoo,1\n");
        let err = read(f.path(), "label").unwrap_err().to_string();
        assert!(err.contains(&f.path().display().to_string()), "{err}");
        assert!(err.contains("line 3") && err.contains("\"x\""), "{err}");
        let f = file("x,label\n1,-1\n");
        assert!(matches!(
            read(f.path(), "label"),
            Err(DataError::LabelOutOfRange { label: -1, .. })
        ));
        let err = read(f.path(), "y").unwrap_err().to_string();
        assert!(err.contains("no column named \"y\""), "{err}");
        let f = file("x,label\n1,0\n2\n");
        assert!(read(f.path(), "label").is_err());
    }
}
