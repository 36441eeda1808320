//! The weighted average, the baseline every robust rule is compared with.

use super::kernels::{self, Rows};

/// Weighted average `sum_i w_i x_i` with `w` normalised to sum 1.
///
/// Breakdown point: 0 (one input can move the result anywhere). Cost: O(n d), one pass over the
/// inputs, the output written once per block.
pub(crate) fn mean<R: Rows + ?Sized>(rows: &R, w: &[f32], out: &mut [f32]) {
    kernels::combine(rows, w, None, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_average_of_two_rows() {
        let a = [1.0f32, -2.0, 3.0];
        let b = [3.0f32, 2.0, -1.0];
        let mut out = [0.0; 3];
        mean(&[&a[..], &b[..]][..], &[0.75, 0.25], &mut out);
        assert_eq!(out, [1.5, -1.0, 2.0]);
    }
}
