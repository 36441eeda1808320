//! Splitting a training set across `n` nodes.
//!
//! Every scheme returns disjoint index lists that together cover the dataset (Dirichlet may
//! leave a node's list short but never drops a sample), each sorted ascending, and is a pure
//! function of `(labels, n, seed)` (stream [`super::stream::PARTITION`]).

use std::sync::Arc;

use rand::Rng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};

use super::{Dataset, stream};

/// How the training set is divided between nodes, as written in config
/// (`partition = { kind = "dirichlet", alpha = 0.5 }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub enum Partition {
    /// Shuffle, then deal equal contiguous chunks (sizes differ by at most one).
    #[default]
    Iid,
    /// For each class, split its samples among nodes in proportions drawn from
    /// `Dirichlet(alpha, ..., alpha)` (Hsu, Qi & Brown 2019, "Measuring the effects of
    /// non-identical data distribution for federated visual classification"). Small `alpha`
    /// (0.1) gives each node a few dominant classes; large `alpha` (100) approaches IID.
    /// A node left without samples then takes one from the largest node, so every node has
    /// at least one.
    Dirichlet {
        /// Concentration, > 0.
        alpha: f64,
    },
    /// Sort by label, cut into `n * per-node` equal shards, give each node `per-node` random
    /// shards (McMahan et al. 2017, "Communication-efficient learning of deep networks from
    /// decentralized data").
    Shards {
        /// Shards per node (default 2).
        #[serde(default = "default_shards")]
        per_node: usize,
    },
    /// Sort by label (ties by index) and deal contiguous chunks: the most skewed split.
    LabelSorted,
}

fn default_shards() -> usize {
    2
}

/// A partition that cannot be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PartitionError {
    /// More nodes (or shards) than samples.
    #[error("partition: cannot give {parts} parts of {samples} samples at least one each")]
    TooFew {
        /// Parts requested.
        parts: usize,
        /// Samples available.
        samples: usize,
    },
    /// A parameter out of range.
    #[error("partition.{field}: {reason}")]
    Invalid {
        /// The config field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Partition {
    /// Checks the parameters, whatever the data.
    pub fn check(&self) -> Result<(), PartitionError> {
        match *self {
            Partition::Shards { per_node: 0 } => Err(PartitionError::Invalid {
                field: "per-node",
                reason: "must be at least 1".into(),
            }),
            Partition::Dirichlet { alpha } if !(alpha.is_finite() && alpha > 0.0) => {
                Err(PartitionError::Invalid {
                    field: "alpha",
                    reason: format!("must be finite and > 0, got {alpha}"),
                })
            }
            _ => Ok(()),
        }
    }

    /// Index lists for `nodes` nodes over a dataset with these `labels` (`classes` classes).
    pub fn split(
        &self,
        labels: &[u32],
        classes: usize,
        nodes: usize,
        seed: u64,
    ) -> Result<Vec<Vec<u32>>, PartitionError> {
        self.check()?;
        let n = labels.len();
        if nodes == 0 || nodes > n {
            return Err(PartitionError::TooFew {
                parts: nodes,
                samples: n,
            });
        }
        let mut rng = stream::rng(seed, stream::PARTITION, 0);
        let mut parts = match *self {
            Partition::Iid => {
                let mut all: Vec<u32> = (0..n as u32).collect();
                all.shuffle(&mut rng);
                chunks(&all, nodes)
            }
            Partition::LabelSorted => chunks(&by_label(labels), nodes),
            Partition::Shards { per_node } => {
                let total = nodes * per_node;
                if total > n {
                    return Err(PartitionError::TooFew {
                        parts: total,
                        samples: n,
                    });
                }
                let shards = chunks(&by_label(labels), total);
                let mut ids: Vec<usize> = (0..total).collect();
                ids.shuffle(&mut rng);
                ids.chunks(per_node)
                    .map(|mine| mine.iter().flat_map(|&s| shards[s].clone()).collect())
                    .collect()
            }
            Partition::Dirichlet { alpha } => dirichlet(labels, classes, nodes, alpha, &mut rng)?,
        };
        for p in &mut parts {
            p.sort_unstable();
        }
        Ok(parts)
    }
}

/// Indices sorted by label, ties by index.
fn by_label(labels: &[u32]) -> Vec<u32> {
    let mut all: Vec<u32> = (0..labels.len() as u32).collect();
    all.sort_by_key(|&i| (labels[i as usize], i));
    all
}

/// `parts` contiguous chunks whose sizes differ by at most one.
fn chunks(items: &[u32], parts: usize) -> Vec<Vec<u32>> {
    let (base, extra) = (items.len() / parts, items.len() % parts);
    let mut out = Vec::with_capacity(parts);
    let mut at = 0;
    for p in 0..parts {
        let len = base + usize::from(p < extra);
        out.push(items[at..at + len].to_vec());
        at += len;
    }
    out
}

fn dirichlet(
    labels: &[u32],
    classes: usize,
    nodes: usize,
    alpha: f64,
    rng: &mut impl Rng,
) -> Result<Vec<Vec<u32>>, PartitionError> {
    let gamma = Gamma::new(alpha, 1.0).map_err(|e| PartitionError::Invalid {
        field: "alpha",
        reason: e.to_string(),
    })?;
    let mut per_class: Vec<Vec<u32>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        per_class[l as usize].push(i as u32);
    }
    let mut parts: Vec<Vec<u32>> = vec![Vec::new(); nodes];
    for members in &per_class {
        let mut members = members.clone();
        members.shuffle(rng);
        let mut weights: Vec<f64> = (0..nodes).map(|_| gamma.sample(rng)).collect();
        let sum: f64 = weights.iter().sum();
        if sum > 0.0 {
            weights.iter_mut().for_each(|w| *w /= sum);
        } else {
            // Every draw underflowed (tiny alpha): the class goes to one node.
            weights.iter_mut().for_each(|w| *w = 0.0);
            weights[rng.random_range(0..nodes)] = 1.0;
        }
        // Cut points at the rounded cumulative proportions.
        let mut cum = 0.0;
        let mut start = 0;
        for (node, w) in weights.iter().enumerate() {
            cum += w;
            let end = if node + 1 == nodes {
                members.len()
            } else {
                ((cum * members.len() as f64).round() as usize).clamp(start, members.len())
            };
            parts[node].extend_from_slice(&members[start..end]);
            start = end;
        }
    }
    // Nodes left empty each take the last-dealt sample of the currently largest node.
    for empty in 0..nodes {
        if parts[empty].is_empty() {
            let largest = (0..nodes)
                .max_by_key(|&i| (parts[i].len(), std::cmp::Reverse(i)))
                .expect("at least one node");
            let moved = parts[largest].pop().expect("nodes <= samples");
            parts[empty].push(moved);
        }
    }
    Ok(parts)
}

/// One node's share of a dataset: the shared table and the node's row indices.
#[derive(Debug, Clone)]
pub struct Shard {
    /// The whole (shared) dataset.
    pub data: Dataset,
    /// The rows this node trains on.
    pub indices: Arc<[u32]>,
}

impl Shard {
    /// The whole dataset as one shard.
    pub fn all(data: Dataset) -> Self {
        let indices = (0..data.len() as u32).collect();
        Self { data, indices }
    }

    /// Number of samples in the shard.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the shard has no samples.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Splits `data` across `nodes` nodes with `partition`.
    pub fn split(
        data: &Dataset,
        partition: &Partition,
        nodes: usize,
        seed: u64,
    ) -> Result<Vec<Shard>, PartitionError> {
        let parts = partition.split(data.labels(), data.classes(), nodes, seed)?;
        Ok(parts
            .into_iter()
            .map(|p| Shard {
                data: data.clone(),
                indices: p.into(),
            })
            .collect())
    }
}
