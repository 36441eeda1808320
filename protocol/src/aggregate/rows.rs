//! The rows a rule aggregates, whatever holds them: the caller's slices, a flat buffer of
//! pre-aggregated rows, signed updates read in place, or some of the columns of any of these.

use std::sync::Arc;

/// The rows being aggregated: the caller's slices, or a flat buffer of pre-aggregated rows.
pub(crate) trait Rows {
    /// Number of rows.
    fn count(&self) -> usize;
    /// Row `i`, of the aggregator's dimension.
    fn row(&self, i: usize) -> &[f32];
}

impl Rows for [&[f32]] {
    fn count(&self) -> usize {
        self.len()
    }
    fn row(&self, i: usize) -> &[f32] {
        self[i]
    }
}

/// Rows stored one after another in one buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flat<'a> {
    pub data: &'a [f32],
    pub dim: usize,
}

impl Rows for Flat<'_> {
    fn count(&self) -> usize {
        self.data.len() / self.dim
    }
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Rows held as signed updates read in place (`f32` little-endian payloads in shared
/// allocations): handles another thread can hold, for
/// [`combine_assisted`](super::kernels::combine_assisted).
#[derive(Debug, Clone)]
pub(crate) struct SharedRows(pub Arc<[(Arc<[u8]>, usize)]>);

impl Rows for SharedRows {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn row(&self, i: usize) -> &[f32] {
        let (bytes, payload) = &self.0[i];
        crate::codec::f32_view(&bytes[*payload..]).expect("held only if read in place")
    }
}

impl SharedRows {
    /// `rows` copied into payloads of signed updates of their own, each after a header of 8
    /// bytes, read in place.
    #[cfg(test)]
    pub(crate) fn copied(rows: &[Vec<f32>]) -> SharedRows {
        let held: Vec<(Arc<[u8]>, usize)> = rows
            .iter()
            .map(|r| {
                let bytes: Arc<[u8]> = [0u8; 8]
                    .into_iter()
                    .chain(r.iter().flat_map(|v| v.to_le_bytes()))
                    .collect();
                (bytes, 8)
            })
            .collect();
        SharedRows(held.into())
    }
}

/// Columns `start..end` of `rows`.
pub(crate) struct Columns<'a, R: ?Sized> {
    pub rows: &'a R,
    pub start: usize,
    pub end: usize,
}

impl<R: Rows + ?Sized> Rows for Columns<'_, R> {
    fn count(&self) -> usize {
        self.rows.count()
    }
    fn row(&self, i: usize) -> &[f32] {
        &self.rows.row(i)[self.start..self.end]
    }
}
