//! Byzantine-robust aggregation over flat `f32` vectors.
//!
//! An [`Aggregator`] is built from a serde [`Config`] (see [`config`] for the keys) and a model
//! dimension. Each call to [`Aggregator::aggregate`] checks the inputs (dimension, finiteness,
//! weights) before anything else runs, applies the configured pre-aggregation steps
//! ([`Pre`]: nearest-neighbour mixing, bucketing, static clipping, adaptive robust clipping), then
//! the rule ([`Rule`]): mean, coordinate-wise median, trimmed mean, Krum, multi-Krum, geometric
//! median (smoothed Weiszfeld), centered clipping, ClippedGossip, MoNNA, or mean around the median
//! (Meamed).
//!
//! Each rule's breakdown point, cost and paper are given on its [`Rule`] variant, and each
//! pre-aggregation step's on its [`Pre`] variant. All buffers live in a workspace held by the
//! aggregator: once it has seen a call with a given number of inputs, further calls with that
//! number do not allocate.
//!
//! Not implemented: MDA (minimum-diameter averaging, exponential in f) and CS+ (the clipping
//! rule of Gaucher et al.).

pub mod config;

mod clipping;
mod geomed;
mod kernels;
mod krum;
mod mean;
mod median;
mod monna;
mod pre;
mod rows;
mod sorting;

#[cfg(test)]
mod tests;

pub use config::{Config, ConfigError, Pre, Rule, Tau};

use kernels::NonFinite;
pub(crate) use rows::SharedRows;
use rows::{Flat, Rows};

/// Why a call to [`Aggregator::aggregate`] was refused. The aggregator's state is unchanged and
/// nothing has been written to the output when one of these is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Input `index` does not have the aggregator's dimension.
    #[error("input {index} has dimension {got}, expected {expected}")]
    Dimension {
        index: usize,
        expected: usize,
        got: usize,
    },
    /// Input `index` contains a NaN or an infinity.
    #[error("input {index} contains a non-finite value")]
    NonFinite { index: usize },
    /// Fewer inputs than the rule (after its pre-aggregation) accepts.
    #[error("rule {rule} needs at least {need} inputs, got {got}")]
    TooFew {
        rule: &'static str,
        need: usize,
        got: usize,
    },
    /// `weights` is neither empty nor one per input.
    #[error("{got} weights for {expected} inputs")]
    WeightCount { expected: usize, got: usize },
    /// Weight `index` is not a finite positive number.
    #[error("weight {index} is {value}, expected a finite positive number")]
    Weight { index: usize, value: f32 },
    /// The output buffer does not have the aggregator's dimension.
    #[error("output has dimension {got}, expected {expected}")]
    OutputDimension { expected: usize, got: usize },
    /// The node's own model does not have the aggregator's dimension (ClippedGossip, MoNNA).
    #[error("own model has dimension {got}, expected {expected}")]
    OwnDimension { expected: usize, got: usize },
    /// The node's own model contains a NaN or an infinity (ClippedGossip, MoNNA).
    #[error("own model contains a non-finite value")]
    OwnNonFinite,
}

/// What one aggregation did, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Report {
    /// Number of inputs received.
    pub inputs: usize,
    /// Inputs clipped or discarded: clipped inputs for the clipping rules and steps (the last
    /// step of centered clipping), inputs not selected for Krum, multi-Krum and MoNNA, values
    /// dropped per coordinate for the median, the trimmed mean and Meamed; 0 for the mean and the
    /// geometric median. Clipping done by pre-aggregation steps is added.
    pub clipped: usize,
}

/// A configured rule with its workspace and state. See the module documentation.
#[derive(Debug)]
pub struct Aggregator {
    config: Config,
    dim: usize,
    /// Centered clipping's previous aggregate (its starting point): zero at first, or what
    /// [`Aggregator::reset_to`] set.
    momentum: Vec<f32>,
    /// The result of the rules that check their inputs as they go, copied to the caller's
    /// output once the whole pass has found them finite.
    staging: Vec<f32>,
    stages: Stages,
    ws: Workspace,
}

/// Pre-aggregated rows (two flat buffers used in turn) and weights (`w[2]` holds the caller's
/// normalised weights, `w[0]` and `w[1]` the stages' outputs).
#[derive(Debug, Default)]
struct Stages {
    rows: [Vec<f32>; 2],
    w: [Vec<f32>; 3],
}

#[derive(Debug, Default)]
struct Workspace {
    pre: pre::Workspace,
    median: median::Workspace,
    krum: krum::Workspace,
    geomed: geomed::Workspace,
    clipping: clipping::Workspace,
    monna: monna::Workspace,
    /// The next aggregation's rows as handles, and a thread that may take part of the plain
    /// mean ([`Aggregator::rows_shared`]).
    assisted: Option<mean::Assisted>,
}

impl Aggregator {
    /// Validates `config` and prepares an aggregator for vectors of length `dim`.
    pub fn new(config: &Config, dim: usize) -> Result<Self, ConfigError> {
        config.validate()?;
        if dim == 0 {
            return Err(ConfigError::ZeroDimension);
        }
        let momentum = match config.rule {
            Rule::CenteredClipping { .. } => vec![0.0; dim],
            _ => Vec::new(),
        };
        Ok(Self {
            config: config.clone(),
            dim,
            momentum,
            staging: Vec::new(),
            stages: Stages::default(),
            ws: Workspace::default(),
        })
    }

    /// The configuration this aggregator was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Forgets the rule's state: centered clipping starts again from zero, ClippedGossip
    /// forgets its last adaptive radius. Other rules have no state.
    pub fn reset(&mut self) {
        self.momentum.fill(0.0);
        self.ws.clipping.forget();
    }

    /// [`Aggregator::reset`], with centered clipping starting again from `center` (a node's own
    /// model: its first clipping step is then around what it holds, not around zero). Call it
    /// when the model is set or replaced (a start, a join, a catch-up).
    pub fn reset_to(&mut self, center: &[f32]) {
        self.reset();
        if self.momentum.len() == center.len() {
            self.momentum.copy_from_slice(center);
        }
    }

    /// The vector length this aggregator accepts.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// True when the rule's first pass measures every input's squared distance to `own`, as
    /// [`sq_dists_to`] does (ClippedGossip and CS+-RG, without pre-aggregation steps).
    pub(crate) fn measures_distances_to_own(&self) -> bool {
        self.config.pre.is_empty()
            && matches!(
                self.config.rule,
                Rule::ClippedGossip { .. } | Rule::CsPlus { .. }
            )
    }

    /// The squared distances of the next aggregation's inputs to its `own`, which the caller
    /// measured with [`sq_dists_to`] over those very inputs in that order: the rule takes them
    /// rather than measure them again (the same bits). Used by the next aggregation only, and
    /// only if it [`measures_distances_to_own`](Self::measures_distances_to_own) and has as many
    /// inputs.
    pub(crate) fn distances_known(&mut self, sq: Vec<f64>) {
        self.ws.clipping.known = Some(sq);
    }

    /// Whether the next aggregation can use [`Aggregator::rows_shared`]: the plain mean with no
    /// pre-aggregation.
    pub(crate) fn takes_shared_rows(&self) -> bool {
        matches!(self.config.rule, Rule::Mean) && self.config.pre.is_empty()
    }

    /// The next aggregation's inputs (`[own, inputs...]` as it is called) as handles another
    /// thread can hold, and `assist`, which may lend one idle thread to compute part of the
    /// plain mean (the same bits). Used by the next aggregation only, if it
    /// [`takes_shared_rows`](Self::takes_shared_rows) and has as many inputs.
    pub(crate) fn rows_shared(
        &mut self,
        rows: SharedRows,
        assist: std::sync::Arc<dyn crate::assist::Assist>,
    ) {
        self.ws.assisted = Some((rows, assist));
    }

    /// Smallest number of inputs the rule accepts (e.g. 2f+1 for trimmed mean), counted before
    /// pre-aggregation.
    pub fn min_inputs(&self) -> usize {
        self.config.min_inputs()
    }

    /// Mixes `inputs` into `out` (len dim). `weights` is empty (all equal) or one positive weight
    /// per input; weights are normalised to sum 1. Rules that cannot use weights (median, trimmed
    /// mean, Meamed, Krum) ignore them. `own` is the aggregating node's model: ClippedGossip clips
    /// around it and MoNNA averages the inputs nearest to it; other rules ignore it and do not
    /// check it (the caller includes its own model among `inputs` when it wants it mixed).
    /// Inputs are checked for dimension and finiteness before any result is written; on error
    /// `out` and the aggregator's state are untouched. `rng` is used by bucketing only.
    pub fn aggregate<R: rand::Rng + ?Sized>(
        &mut self,
        own: &[f32],
        inputs: &[&[f32]],
        weights: &[f32],
        rng: &mut R,
        out: &mut [f32],
    ) -> Result<Report, Error> {
        self.aggregate_screened(own, inputs, weights, 0, rng, out)
    }

    /// [`Aggregator::aggregate`] after the caller has already removed `screened` inputs of this
    /// round as Byzantine (the engine's outlier screen). ClippedGossip's adaptive radius then
    /// clips `adaptive-f - screened` inputs (at least 0) instead of `adaptive-f`: the removed
    /// inputs used up that much of the per-mix budget, and clipping as many honest inputs in
    /// their place would leave a node with few inputs unable to mix at all. Other rules keep
    /// their parameters.
    pub fn aggregate_screened<R: rand::Rng + ?Sized>(
        &mut self,
        own: &[f32],
        inputs: &[&[f32]],
        weights: &[f32],
        screened: usize,
        rng: &mut R,
        out: &mut [f32],
    ) -> Result<Report, Error> {
        self.aggregate_into(own, inputs, weights, screened, rng, out, true)
    }

    /// [`Aggregator::aggregate_screened`], into a scratch buffer unless `keep_out`: then on
    /// error `out` holds anything (the aggregator's state is still untouched), which spares
    /// the rules that check their inputs while they write a copy of the result.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn aggregate_into<R: rand::Rng + ?Sized>(
        &mut self,
        own: &[f32],
        inputs: &[&[f32]],
        weights: &[f32],
        screened: usize,
        rng: &mut R,
        out: &mut [f32],
        keep_out: bool,
    ) -> Result<Report, Error> {
        // Distances handed over are for this aggregation only, whatever happens to it.
        let known = self.ws.clipping.known.take();
        // So are the rows handed over as handles.
        let assisted = self
            .ws
            .assisted
            .take()
            .filter(|(rows, _)| self.takes_shared_rows() && rows.count() == inputs.len());
        let known = known.filter(|k| self.measures_distances_to_own() && k.len() == inputs.len());
        let verified_by_rule = self.rule_verifies_inputs();
        self.check(own, inputs, weights, out, !verified_by_rule)?;
        let pre_clipped = self.run_pre(inputs, rng);
        // Rules that check the inputs while writing their result write it to `staging` first, so
        // that `out` stays untouched when they find a bad input (unless it is scratch).
        let staged = keep_out
            && verified_by_rule
            && matches!(
                self.config.rule,
                Rule::Mean | Rule::Median | Rule::TrimmedMean { .. } | Rule::Meamed { .. }
            );
        let Self {
            config,
            dim,
            momentum,
            staging,
            stages,
            ws,
        } = self;
        staging.resize(if staged { *dim } else { 0 }, 0.0);
        let target: &mut [f32] = if staged { staging } else { &mut *out };
        let rule = match config.rule {
            Rule::ClippedGossip {
                tau: Tau::Adaptive { f },
            } => Rule::ClippedGossip {
                tau: Tau::Adaptive {
                    f: f.saturating_sub(screened),
                },
            },
            Rule::CsPlus { f } => Rule::CsPlus {
                f: f.saturating_sub(screened),
            },
            rule => rule,
        };
        ws.clipping.known = known;
        ws.assisted = assisted;
        let clipped = match config.pre.len() {
            0 => run_rule(&rule, inputs, &stages.w[2], own, momentum, ws, target),
            k => {
                let rows = Flat {
                    data: &stages.rows[(k - 1) % 2],
                    dim: *dim,
                };
                run_rule(
                    &rule,
                    &rows,
                    &stages.w[(k - 1) % 2],
                    own,
                    momentum,
                    ws,
                    target,
                )
            }
        };
        ws.clipping.known = None;
        ws.assisted = None;
        if staged && clipped.is_ok() {
            out.copy_from_slice(staging);
        }
        match clipped {
            Ok(clipped) => Ok(Report {
                inputs: inputs.len(),
                clipped: clipped + pre_clipped,
            }),
            Err(NonFinite::Center) => Err(Error::OwnNonFinite),
            Err(NonFinite::Input) => {
                let index = inputs
                    .iter()
                    .position(|x| !kernels::all_finite(x))
                    .unwrap_or(0);
                Err(Error::NonFinite { index })
            }
        }
    }

    /// Runs only the checks and the pre-aggregation steps and returns their output rows, one
    /// after another (`m × dim` values; a copy of the inputs when there is no step). For
    /// inspection and tests; the rule's state is not touched.
    pub fn pre_aggregate<R: rand::Rng + ?Sized>(
        &mut self,
        inputs: &[&[f32]],
        weights: &[f32],
        rng: &mut R,
    ) -> Result<&[f32], Error> {
        let scratch = vec![0.0; self.dim];
        self.check(&scratch, inputs, weights, &scratch, true)?;
        self.run_pre(inputs, rng);
        let k = self.config.pre.len();
        if k == 0 {
            let buf = &mut self.stages.rows[0];
            buf.clear();
            inputs.iter().for_each(|r| buf.extend_from_slice(r));
            return Ok(buf);
        }
        Ok(&self.stages.rows[(k - 1) % 2])
    }

    /// True when the rule proves the raw inputs finite in its own pass over them (the distance
    /// pass of the clipping rules before they write anything; the single pass of the mean,
    /// median and trimmed mean, which write to `staging`), so that a separate finiteness pass
    /// would only read them one more time.
    fn rule_verifies_inputs(&self) -> bool {
        self.config.pre.is_empty()
            && matches!(
                self.config.rule,
                Rule::Mean
                    | Rule::Median
                    | Rule::TrimmedMean { .. }
                    | Rule::Meamed { .. }
                    | Rule::ClippedGossip { .. }
                    | Rule::CsPlus { .. }
                    | Rule::CenteredClipping { .. }
                    | Rule::Monna { .. }
            )
    }

    /// Checks everything before any rule runs (finiteness of the inputs and of `own` only if
    /// `finiteness`), and writes the normalised weights to `w[2]`.
    fn check(
        &mut self,
        own: &[f32],
        inputs: &[&[f32]],
        weights: &[f32],
        out: &[f32],
        finiteness: bool,
    ) -> Result<(), Error> {
        let (n, dim) = (inputs.len(), self.dim);
        if out.len() != dim {
            return Err(Error::OutputDimension {
                expected: dim,
                got: out.len(),
            });
        }
        let need = self.min_inputs();
        if n < need {
            return Err(Error::TooFew {
                rule: self.config.rule.kind(),
                need,
                got: n,
            });
        }
        if !weights.is_empty() && weights.len() != n {
            return Err(Error::WeightCount {
                expected: n,
                got: weights.len(),
            });
        }
        if let Some((index, &value)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(w.is_finite() && **w > 0.0))
        {
            return Err(Error::Weight { index, value });
        }
        for (index, x) in inputs.iter().enumerate() {
            if x.len() != dim {
                return Err(Error::Dimension {
                    index,
                    expected: dim,
                    got: x.len(),
                });
            }
        }
        if finiteness && let Some(index) = kernels::first_non_finite(inputs, dim) {
            return Err(Error::NonFinite { index });
        }
        if matches!(
            self.config.rule,
            Rule::ClippedGossip { .. } | Rule::CsPlus { .. } | Rule::Monna { .. }
        ) {
            if own.len() != dim {
                return Err(Error::OwnDimension {
                    expected: dim,
                    got: own.len(),
                });
            }
            if finiteness && !kernels::all_finite(own) {
                return Err(Error::OwnNonFinite);
            }
        }
        let w = &mut self.stages.w[2];
        w.clear();
        if weights.is_empty() {
            w.resize(n, 1.0 / n as f32);
        } else {
            let total: f64 = weights.iter().map(|&x| f64::from(x)).sum();
            w.extend(weights.iter().map(|&x| (f64::from(x) / total) as f32));
        }
        Ok(())
    }

    /// Runs the pre-aggregation steps; stage k writes `rows[k % 2]` and `w[k % 2]`. Returns the
    /// number of inputs the steps clipped.
    fn run_pre<R: rand::Rng + ?Sized>(&mut self, inputs: &[&[f32]], rng: &mut R) -> usize {
        let Self {
            config,
            dim,
            stages,
            ws,
            ..
        } = self;
        let [r0, r1] = &mut stages.rows;
        let [w0, w1, w2] = &mut stages.w;
        let mut clipped = 0;
        for (k, step) in config.pre.iter().enumerate() {
            let ws = &mut ws.pre;
            clipped += match k % 2 {
                0 if k == 0 => pre::apply(step, inputs, w2, *dim, rng, ws, r0, w0),
                0 => pre::apply(
                    step,
                    &Flat {
                        data: r1,
                        dim: *dim,
                    },
                    w1,
                    *dim,
                    rng,
                    ws,
                    r0,
                    w0,
                ),
                _ => pre::apply(
                    step,
                    &Flat {
                        data: r0,
                        dim: *dim,
                    },
                    w0,
                    *dim,
                    rng,
                    ws,
                    r1,
                    w1,
                ),
            };
        }
        clipped
    }
}

/// Runs the rule on the (pre-aggregated) rows. Returns the rule's clipped/discarded count, or
/// [`NonFinite`] from a rule that checks its inputs as it reads them.
fn run_rule<R: Rows + ?Sized>(
    rule: &Rule,
    rows: &R,
    w: &[f32],
    own: &[f32],
    momentum: &mut [f32],
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<usize, NonFinite> {
    Ok(match *rule {
        Rule::Mean => {
            mean::mean(rows, w, out.len(), out, ws.assisted.as_ref())?;
            0
        }
        Rule::Median => median::median(rows, &mut ws.median, out)?,
        Rule::TrimmedMean { f } => median::trimmed_mean(rows, f, &mut ws.median, out)?,
        Rule::Meamed { f } => median::meamed(rows, f, &mut ws.median, out)?,
        Rule::Krum { f } => krum::krum(rows, f, &mut ws.krum, out),
        Rule::MultiKrum { f, m } => krum::multi_krum(rows, f, m, w, &mut ws.krum, out),
        Rule::GeometricMedian { nu, iterations } => {
            geomed::geometric_median(rows, w, nu, iterations, &mut ws.geomed, out);
            0
        }
        Rule::CenteredClipping { tau, iterations } => {
            clipping::centered_clipping(rows, w, tau, iterations, momentum, &mut ws.clipping, out)?
        }
        Rule::ClippedGossip { tau } => {
            clipping::clipped_gossip(rows, w, own, tau, &mut ws.clipping, out)?
        }
        Rule::Monna { f } => monna::monna(rows, f, w, own, &mut ws.monna, out)?,
        Rule::CsPlus { f } => clipping::cs_plus(rows, w, own, f, &mut ws.clipping, out)?,
    })
}

kernels::wide! {
    /// [`distance`] of `a` from the zero vector, without one (the same bits).
    pub(crate) fn norm[](a: &[f32]) -> f64 => norm_blocks
}

#[inline(always)]
fn norm_blocks(a: &[f32]) -> f64 {
    // A loop rather than a closure, which the compiler may leave out of line and built for the
    // baseline; from -0, as `Iterator::sum` of floats starts.
    let mut s = -0.0f64;
    for x in a.chunks(kernels::BLOCK) {
        s += f64::from(kernels::sq_dist_from_zero(x));
    }
    s.sqrt()
}

/// `sq[i] = ||rows[i] - center||²` as the clipping rules measure it (blockwise, four rows at a
/// time), for a caller that measures those distances before the rule: it can then hand them to
/// the rule ([`Aggregator::distances_known`]) rather than have them measured twice.
pub(crate) fn sq_dists_to(rows: &[&[f32]], center: &[f32]) -> Vec<f64> {
    let mut sq = vec![0.0; rows.len()];
    kernels::sq_dists_to(rows, center, &mut sq);
    sq
}

kernels::wide! {
    /// Euclidean distance of two equal-length vectors, blockwise with an `f64` total (for callers
    /// outside the rules, such as the engine's outlier screen).
    pub(crate) fn distance[](a: &[f32], b: &[f32]) -> f64 => distance_blocks
}

#[inline(always)]
fn distance_blocks(a: &[f32], b: &[f32]) -> f64 {
    let mut s = -0.0f64;
    for (x, y) in a.chunks(kernels::BLOCK).zip(b.chunks(kernels::BLOCK)) {
        s += f64::from(kernels::sq_dist(x, y));
    }
    s.sqrt()
}
