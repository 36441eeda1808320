//! The embedded 8x8 handwritten digits (UCI "Optical Recognition of Handwritten Digits", test
//! part, as distributed with scikit-learn; BSD-3-Clause, see `learn/data/COPYING.scikit-learn`
//! and `learn/data/digits.rst`).
//!
//! `digits.csv.gz`: 1,797 rows of 64 pixel counts in 0..=16 followed by the label 0..=9, no
//! header.

use std::io::Read;

use super::{Dataset, InputShape};

const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Rows in the embedded file.
pub const LEN: usize = 1797;

/// The whole embedded set, pixels scaled to [0, 1].
///
/// # Panics
/// Never for the file shipped in the binary (checked by tests).
pub fn load() -> Dataset {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .expect("embedded digits decompress");
    let mut features = Vec::with_capacity(LEN * 64);
    let mut labels = Vec::with_capacity(LEN);
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut cells = line.split(',').map(|c| c.trim().parse::<u32>());
        for _ in 0..64 {
            let v = cells.next().expect("64 pixels").expect("integer pixel");
            features.push(v as f32 / 16.0);
        }
        labels.push(cells.next().expect("label").expect("integer label"));
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
