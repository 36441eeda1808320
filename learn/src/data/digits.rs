//! The embedded 8x8 handwritten digits (UCI "Optical Recognition of Handwritten Digits", test
//! part, as distributed with scikit-learn; BSD-3-Clause, see `learn/data/COPYING.scikit-learn`
//! and `learn/data/digits.rst`).
//!
//! `digits.csv.gz`: 1,797 rows of 64 pixel counts in 0..=16 followed by the label 0..=9, no
//! header.

use super::{Dataset, InputShape};

const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Rows in the embedded file.
pub const LEN: usize = 1797;

/// The whole embedded set, pixels scaled to [0, 1].
///
/// # Panics
/// Never for the file shipped in the binary (checked by tests).
pub fn load() -> Dataset {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(flate2::read::GzDecoder::new(DIGITS_CSV_GZ));
    let mut features = Vec::with_capacity(LEN * 64);
    let mut labels = Vec::with_capacity(LEN);
    for record in reader.records() {
        let record = record.expect("the embedded digits are valid CSV");
        assert_eq!(record.len(), 65, "64 pixels and a label per row");
        let value = |i: usize| -> u32 { record[i].trim().parse().expect("an integer") };
        features.extend((0..64).map(|i| value(i) as f32 / 16.0));
        labels.push(value(64));
    }
    assert_eq!(labels.len(), LEN);
    Dataset::new(
        features,
        labels,
        InputShape {
            channels: 1,
            height: 8,
            width: 8,
        },
        10,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_digits_are_complete() {
        let d = super::load();
        assert_eq!(d.len(), super::LEN);
        let hist = d.histogram(&(0..d.len() as u32).collect::<Vec<_>>());
        assert!(hist.iter().all(|&n| (170..=190).contains(&n)), "{hist:?}");
        assert!((0..d.len()).all(|i| d.row(i).iter().all(|&p| (0.0..=1.0).contains(&p))));
    }
}
