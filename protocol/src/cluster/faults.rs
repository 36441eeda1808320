//! Link faults: cut links, isolated nodes, a partition, and message loss.

use rand::Rng;
use std::collections::BTreeSet;

/// The faults in force.
#[derive(Debug, Default)]
pub(super) struct Faults {
    /// Cut links, as `(low, high)` pairs.
    cut: BTreeSet<(usize, usize)>,
    /// Nodes whose every link is cut.
    isolated: BTreeSet<usize>,
    /// Each node's side of the partition in force, if any.
    groups: Option<Vec<usize>>,
    /// Probability that a message is lost.
    pub drop: f64,
}

impl Faults {
    /// Whether the link between `a` and `b` is cut.
    pub(super) fn cuts(&self, a: usize, b: usize) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
            || self.isolated.contains(&a)
            || self.isolated.contains(&b)
            || self.groups.as_ref().is_some_and(|g| g.get(a) != g.get(b))
    }

    pub(super) fn cut(&mut self, a: usize, b: usize) {
        self.cut.insert((a.min(b), a.max(b)));
    }

    pub(super) fn isolate(&mut self, node: usize) {
        self.isolated.insert(node);
    }

    pub(super) fn partition(&mut self, groups: Vec<usize>) {
        self.groups = Some(groups);
    }

    /// Heals cuts, isolations and the partition; losses go on.
    pub(super) fn heal(&mut self) {
        self.cut.clear();
        self.isolated.clear();
        self.groups = None;
    }

    /// Draws whether a message is lost.
    pub(super) fn loses(&self, rng: &mut impl Rng) -> bool {
        self.drop > 0.0 && rng.random::<f64>() < self.drop
    }
}
