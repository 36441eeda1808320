//! Model-sized buffers handed from one engine to another in one process.
//!
//! Each mix writes a new model of the full dimension. A buffer the allocator hands out has
//! mostly been out of the caches since it was freed, and it was zeroed before the mix wrote
//! it: two writes of cold memory. Where many engines run in one process (the simulator), the
//! model a node has just trained from is free when its trained model comes back, and is still
//! in the caches (its training read it). [`Spares`] keeps a few such buffers, the last given
//! the first taken, and the next mix of any engine writes into one, over whatever it held:
//! every aggregation rule writes every value of its output (test
//! `every_rule_writes_every_value_of_its_output_whatever_it_held`), so the results are the
//! same bits.
//!
//! At most [`KEPT`] buffers are held, whatever the number of engines: a few models of memory.

use std::sync::{Mutex, MutexGuard};

/// The most buffers held.
pub const KEPT: usize = 4;

/// Free model buffers. See the module documentation.
#[derive(Debug, Default)]
pub struct Spares {
    held: Mutex<Vec<Vec<f32>>>,
}

impl Spares {
    fn lock(&self) -> MutexGuard<'_, Vec<Vec<f32>>> {
        // A panic elsewhere leaves a list of buffers, any of which is still a buffer.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The buffer given last, if it holds `dim` values (what they are is unspecified).
    pub(crate) fn take(&self, dim: usize) -> Option<Vec<f32>> {
        let mut held = self.lock();
        if held.last()?.len() != dim {
            return None;
        }
        held.pop()
    }

    /// Keeps `buffer` for a later [`Spares::take`], unless [`KEPT`] are held already.
    pub(crate) fn give(&self, buffer: Vec<f32>) {
        let mut held = self.lock();
        if held.len() < KEPT && !buffer.is_empty() {
            held.push(buffer);
        }
    }

    /// Buffers held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_back_the_last_buffer_of_the_dimension_and_holds_a_few() {
        let s = Spares::default();
        assert_eq!(s.take(3), None);
        s.give(vec![1.0; 3]);
        s.give(vec![2.0; 3]);
        assert_eq!(s.take(4), None, "another dimension");
        assert_eq!(s.take(3), Some(vec![2.0; 3]), "the last given first");
        s.give(Vec::new());
        assert_eq!(s.len(), 1, "an empty buffer is not kept");
        for i in 0..2 * KEPT {
            s.give(vec![i as f32; 3]);
        }
        assert_eq!(s.len(), KEPT);
    }
}
