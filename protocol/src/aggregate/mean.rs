//! The weighted average, the baseline every robust rule is compared with.

use super::kernels::{self, NonFinite};
use super::rows::{Rows, SharedRows};

/// The rows of a mix as handles another thread can hold, and that thread.
pub(crate) type Assisted = (SharedRows, std::sync::Arc<dyn crate::assist::Assist>);

/// Weighted average `sum_i w_i x_i` with `w` normalised to sum 1 (all positive).
///
/// Breakdown point: 0 (one input can move the result anywhere). Cost: O(n d), one pass over the
/// inputs, the output written once per block.
///
/// Also checks the inputs: with positive weights a NaN or an infinity in any input makes the
/// corresponding output coordinate non-finite, so only a non-finite output needs a look at the
/// inputs, which then returns [`NonFinite`] (and the output is meaningless). A non-finite output
/// from finite inputs (an overflow next to `f32::MAX`) is returned as it is.
///
/// With `assisted` (the same rows as handles, and another thread), that thread may compute part
/// of the output ([`kernels::combine_assisted`]: the same bits).
pub(crate) fn mean<R: Rows + ?Sized>(
    rows: &R,
    w: &[f32],
    dim: usize,
    out: &mut [f32],
    assisted: Option<&Assisted>,
) -> Result<(), NonFinite> {
    let finite = match assisted {
        Some((shared, assist)) => kernels::combine_assisted(rows, shared, w, out, &**assist),
        None => kernels::combine(rows, w, None, out),
    };
    if !finite && kernels::first_non_finite(rows, dim).is_some() {
        return Err(NonFinite::Input);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_average_of_two_rows() {
        let a = [1.0f32, -2.0, 3.0];
        let b = [3.0f32, 2.0, -1.0];
        let mut out = [0.0; 3];
        mean(&[&a[..], &b[..]][..], &[0.75, 0.25], 3, &mut out, None).unwrap();
        assert_eq!(out, [1.5, -1.0, 2.0]);
        let c = [1.0f32, f32::INFINITY, 0.0];
        let d = [1.0f32, f32::NEG_INFINITY, f32::NAN];
        for bad in [&c, &d] {
            let r = mean(&[&a[..], &bad[..]][..], &[0.5, 0.5], 3, &mut out, None);
            assert_eq!(r, Err(NonFinite::Input));
        }
    }
}
