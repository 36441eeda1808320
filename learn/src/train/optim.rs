//! Optimisers over the flat parameter vector, with PyTorch's update rules.
//!
//! Gradients come from burn's autodiff; the update itself runs here, on the same flat `f32`
//! vector the node exchanges, so the optimiser state has the same fixed order as the
//! parameters, is checkpointed as plain tensors, and survives [`super::Trainer::set_params`]
//! (the state is kept when parameters are replaced by a mixed model).

use serde::{Deserialize, Serialize};

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// `lr` at every step.
    #[default]
    Constant,
    /// Cosine annealing from `lr` to `min-lr` over `total-steps` steps, then `min-lr`
    /// (Loshchilov & Hutter 2017, SGDR, without restarts).
    Cosine,
}

fn d_momentum() -> f64 {
    0.9
}
fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.999
}
fn d_eps() -> f64 {
    1e-8
}

/// The optimiser as written in config
/// (`optimizer = { kind = "sgd", lr = 0.05, momentum = 0.9, weight-decay = 0.0, schedule = "constant" }`).
///
/// All rates are per local step; `weight-decay` is an L2 term added to the gradient (as in
/// PyTorch's `SGD` and `Adam`). `total-steps` counts the node's local steps over the whole
/// run and is required by `schedule = "cosine"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub enum Spec {
    /// Stochastic gradient descent with heavy-ball momentum (dampening 0, no Nesterov).
    Sgd {
        /// Learning rate, > 0.
        lr: f64,
        /// Momentum in [0, 1) (default 0.9; 0 is plain SGD).
        #[serde(default = "d_momentum")]
        momentum: f64,
        /// L2 weight decay, >= 0 (default 0).
        #[serde(default)]
        weight_decay: f64,
        /// Learning-rate schedule (default constant).
        #[serde(default)]
        schedule: Schedule,
        /// Steps of the cosine schedule.
        #[serde(default)]
        total_steps: Option<u64>,
        /// Final learning rate of the cosine schedule (default 0).
        #[serde(default)]
        min_lr: f64,
    },
    /// Adam (Kingma & Ba 2015) with bias correction.
    Adam {
        /// Learning rate, > 0.
        lr: f64,
        /// First-moment decay in [0, 1) (default 0.9).
        #[serde(default = "d_beta1")]
        beta1: f64,
        /// Second-moment decay in [0, 1) (default 0.999).
        #[serde(default = "d_beta2")]
        beta2: f64,
        /// Denominator term, > 0 (default 1e-8).
        #[serde(default = "d_eps")]
        eps: f64,
        /// L2 weight decay, >= 0 (default 0).
        #[serde(default)]
        weight_decay: f64,
        /// Learning-rate schedule (default constant).
        #[serde(default)]
        schedule: Schedule,
        /// Steps of the cosine schedule.
        #[serde(default)]
        total_steps: Option<u64>,
        /// Final learning rate of the cosine schedule (default 0).
        #[serde(default)]
        min_lr: f64,
    },
}

impl Default for Spec {
    fn default() -> Self {
        Spec::Sgd {
            lr: 0.05,
            momentum: d_momentum(),
            weight_decay: 0.0,
            schedule: Schedule::Constant,
            total_steps: None,
            min_lr: 0.0,
        }
    }
}

/// An optimiser setting out of range.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("optimizer.{field}: {reason}")]
pub struct OptimError {
    /// The config field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn check(ok: bool, field: &'static str, value: f64, want: &str) -> Result<(), OptimError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(OptimError {
            field,
            reason: format!("must be {want}, got {value}"),
        })
    }
}

/// A validated learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    lr: f64,
    min_lr: f64,
    cosine_steps: Option<u64>,
}

impl LrSchedule {
    /// The learning rate of local step `step` (0-based).
    pub fn at(&self, step: u64) -> f64 {
        match self.cosine_steps {
            None => self.lr,
            Some(total) => {
                let t = (step.min(total) as f64) / (total as f64);
                self.min_lr
                    + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// The update rule, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// See [`Spec::Sgd`].
    Sgd {
        /// Momentum factor.
        momentum: f32,
        /// L2 weight decay.
        weight_decay: f32,
    },
    /// See [`Spec::Adam`].
    Adam {
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Denominator term.
        eps: f32,
        /// L2 weight decay.
        weight_decay: f32,
    },
}

impl Spec {
    /// Validates into an update rule and a schedule; errors name the field.
    pub fn validate(&self) -> Result<(Rule, LrSchedule), OptimError> {
        let (lr, schedule, total_steps, min_lr, weight_decay) = match *self {
            Spec::Sgd {
                lr,
                schedule,
                total_steps,
                min_lr,
                weight_decay,
                ..
            }
            | Spec::Adam {
                lr,
                schedule,
                total_steps,
                min_lr,
                weight_decay,
                ..
            } => (lr, schedule, total_steps, min_lr, weight_decay),
        };
        check(lr > 0.0, "lr", lr, "> 0")?;
        check(weight_decay >= 0.0, "weight-decay", weight_decay, ">= 0")?;
        check((0.0..=lr).contains(&min_lr), "min-lr", min_lr, "in [0, lr]")?;
        let cosine_steps = match (schedule, total_steps) {
            (Schedule::Constant, _) => None,
            (Schedule::Cosine, Some(t)) if t > 0 => Some(t),
            (Schedule::Cosine, _) => {
                return Err(OptimError {
                    field: "total-steps",
                    reason: "schedule \"cosine\" needs total-steps >= 1".into(),
                });
            }
        };
        let rule = match *self {
            Spec::Sgd { momentum, .. } => {
                check(
                    (0.0..1.0).contains(&momentum),
                    "momentum",
                    momentum,
                    "in [0, 1)",
                )?;
                Rule::Sgd {
                    momentum: momentum as f32,
                    weight_decay: weight_decay as f32,
                }
            }
            Spec::Adam {
                beta1, beta2, eps, ..
            } => {
                check((0.0..1.0).contains(&beta1), "beta1", beta1, "in [0, 1)")?;
                check((0.0..1.0).contains(&beta2), "beta2", beta2, "in [0, 1)")?;
                check(eps > 0.0, "eps", eps, "> 0")?;
                Rule::Adam {
                    beta1: beta1 as f32,
                    beta2: beta2 as f32,
                    eps: eps as f32,
                    weight_decay: weight_decay as f32,
                }
            }
        };
        Ok((
            rule,
            LrSchedule {
                lr,
                min_lr,
                cosine_steps,
            },
        ))
    }
}

/// Optimiser state: one or two buffers of the parameters' length and the step count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    /// Momentum buffer (SGD) or first moment (Adam); empty for plain SGD.
    pub m: Vec<f32>,
    /// Second moment (Adam only; empty otherwise).
    pub v: Vec<f32>,
    /// The outer optimiser's momentum ([`Outer`]; empty without one).
    pub outer: Vec<f32>,
    /// Local steps taken (drives the schedule and Adam's bias correction).
    pub step: u64,
}

fn d_outer_lr() -> f32 {
    0.7
}
fn d_outer_momentum() -> f32 {
    0.9
}
fn d_nesterov() -> bool {
    true
}

/// The outer optimiser of local SGD (DiLoCo, Douillard et al. 2023): after a node's local
/// steps and the mix, the difference between the model the round started from and the mixed
/// model is an outer gradient, applied with (Nesterov) momentum SGD. Config
/// (`[learning] outer = { lr = 0.7, momentum = 0.9, nesterov = true }`, DiLoCo's values and the
/// defaults); off when absent. `lr = 1` with `momentum = 0` is plain gossip: the model becomes
/// the mix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Outer {
    /// Outer learning rate, > 0 (default 0.7).
    #[serde(default = "d_outer_lr")]
    pub lr: f32,
    /// Outer momentum in [0, 1) (default 0.9).
    #[serde(default = "d_outer_momentum")]
    pub momentum: f32,
    /// Nesterov momentum, as PyTorch's `SGD(nesterov=True)` (default true).
    #[serde(default = "d_nesterov")]
    pub nesterov: bool,
}

impl Outer {
    /// Checks the values; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("lr must be > 0, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        Ok(())
    }

    /// One outer step: `anchor` is the model the round started from, `mixed` the round's mix;
    /// `anchor` becomes the new model. With `g = anchor - mixed`: `b = momentum · b + g`, then
    /// `anchor -= lr · (g + momentum · b)` (Nesterov) or `anchor -= lr · b`.
    pub fn step(&self, anchor: &mut [f32], buffer: &mut [f32], mixed: &[f32]) {
        let (lr, mu) = (self.lr, self.momentum);
        for ((p, b), &x) in anchor.iter_mut().zip(buffer.iter_mut()).zip(mixed) {
            let g = *p - x;
            *b = mu * *b + g;
            *p -= lr * if self.nesterov { g + mu * *b } else { *b };
        }
    }
}

impl State {
    /// Zero state for `rule` over `n` parameters.
    pub fn new(rule: &Rule, n: usize) -> Self {
        let (m, v) = match *rule {
            Rule::Sgd { momentum: 0.0, .. } => (0, 0),
            Rule::Sgd { .. } => (n, 0),
            Rule::Adam { .. } => (n, n),
        };
        Self {
            m: vec![0.0; m],
            v: vec![0.0; v],
            outer: Vec::new(),
            step: 0,
        }
    }
}

/// `x`, or the zero of its sign if `x` is subnormal. Once a model fits its shard, some
/// coordinates' gradients stay below `f32::MIN_POSITIVE` (1.2e-38) for good, their moments with
/// them, and every operation on a subnormal value takes the CPU a slow path: bench-mnist's
/// trainer, trained on past the bench's 100 steps, ran at 40,000 samples/s with about 6,300
/// subnormal momenta, against 81,000-85,000 with them flushed. A step of that size moves no
/// parameter of a normal size, so flushing changes no such parameter; NaN and infinities pass
/// unchanged. It costs the update a few percent, so a trainer flushes only once its moments have
/// held a subnormal value (see [`Rule::update`]).
#[inline]
fn flush_subnormal(x: f32) -> f32 {
    // On the bits, so that the optimiser's loops stay vectorised: a zero exponent field is a
    // zero or a subnormal, and either becomes the zero of its sign.
    let bits = x.to_bits();
    f32::from_bits(if bits & 0x7f80_0000 == 0 {
        bits & 0x8000_0000
    } else {
        bits
    })
}

/// A new moment, flushed by [`flush_subnormal`] when `FLUSH`.
#[inline]
fn moment<const FLUSH: bool>(x: f32) -> f32 {
    if FLUSH { flush_subnormal(x) } else { x }
}

/// Whether `state`'s moments hold a subnormal value.
pub(crate) fn holds_subnormal(state: &State) -> bool {
    state.m.iter().chain(&state.v).any(|x| x.is_subnormal())
}

/// Where an update writes the new parameters: over the old ones, or after `out`'s end from
/// old ones elsewhere (`from`, as long as the gradient).
enum Target<'a> {
    InPlace(&'a mut [f32]),
    Into {
        from: &'a [f32],
        out: &'a mut Vec<f32>,
    },
}

impl Target<'_> {
    /// Each parameter's new value `f(old, gradient, its state)`, in order. Exact-size
    /// iterators over slices either way, so both loops are vectorised alike.
    #[inline(always)]
    fn apply<S: Iterator>(
        self,
        grad: &[f32],
        state: S,
        mut f: impl FnMut(f32, f32, S::Item) -> f32,
    ) {
        match self {
            Target::InPlace(params) => params
                .iter_mut()
                .zip(grad)
                .zip(state)
                .for_each(|((p, &g), s)| *p = f(*p, g, s)),
            Target::Into { from, out } => out.extend(
                from.iter()
                    .zip(grad)
                    .zip(state)
                    .map(|((&p, &g), s)| f(p, g, s)),
            ),
        }
    }
}

impl Rule {
    /// Applies one update to `params[offset..offset + grad.len()]` given its gradient, at
    /// learning rate `lr`, for the step `t` (1-based, for Adam's bias correction). With `FLUSH`,
    /// every new moment that is subnormal becomes the zero of its sign (see `flush_subnormal`).
    pub fn update<const FLUSH: bool>(
        &self,
        state: &mut State,
        offset: usize,
        params: &mut [f32],
        grad: &[f32],
        lr: f32,
        t: u64,
    ) {
        self.step::<FLUSH>(state, offset, Target::InPlace(params), grad, lr, t);
    }

    /// [`Rule::update`] of the parameters `from` (as long as `grad`, at `offset` in the model),
    /// their new values pushed onto `out`: the same bits as updating a copy of `from` in
    /// place, without the copy.
    #[allow(clippy::too_many_arguments)]
    pub fn update_into<const FLUSH: bool>(
        &self,
        state: &mut State,
        offset: usize,
        from: &[f32],
        out: &mut Vec<f32>,
        grad: &[f32],
        lr: f32,
        t: u64,
    ) {
        debug_assert_eq!(from.len(), grad.len());
        self.step::<FLUSH>(state, offset, Target::Into { from, out }, grad, lr, t);
    }

    fn step<const FLUSH: bool>(
        &self,
        state: &mut State,
        offset: usize,
        target: Target<'_>,
        grad: &[f32],
        lr: f32,
        t: u64,
    ) {
        let range = offset..offset + grad.len();
        match *self {
            Rule::Sgd {
                momentum,
                weight_decay,
            } => {
                if momentum == 0.0 {
                    target.apply(grad, std::iter::repeat(()), |p, g, ()| {
                        p - lr * (g + weight_decay * p)
                    });
                } else {
                    target.apply(grad, state.m[range].iter_mut(), |p, g, b| {
                        let d = g + weight_decay * p;
                        *b = moment::<FLUSH>(momentum * *b + d);
                        p - lr * *b
                    });
                }
            }
            Rule::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let c1 = 1.0 - beta1.powi(t.min(i32::MAX as u64) as i32);
                let c2 = 1.0 - beta2.powi(t.min(i32::MAX as u64) as i32);
                let step = lr / c1;
                let c2_sqrt = c2.sqrt();
                let (m, v) = (&mut state.m[range.clone()], &mut state.v[range]);
                target.apply(grad, m.iter_mut().zip(v), |p, g, (m, v)| {
                    let d = g + weight_decay * p;
                    *m = moment::<FLUSH>(beta1 * *m + (1.0 - beta1) * d);
                    *v = moment::<FLUSH>(beta2 * *v + (1.0 - beta2) * d * d);
                    p - step * *m / (v.sqrt() / c2_sqrt + eps)
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flushing_update_leaves_no_subnormal_moment() {
        let tiny = f32::MIN_POSITIVE / 4.0;
        let sgd = Rule::Sgd {
            momentum: 0.9,
            weight_decay: 0.0,
        };
        let adam = Rule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        for rule in [sgd, adam] {
            let mut state = State::new(&rule, 4);
            state.m = vec![tiny, -tiny, 0.5, f32::NAN];
            if !state.v.is_empty() {
                state.v = vec![tiny, tiny, 0.25, 0.25];
            }
            let mut params = vec![0.5f32, -0.5, 0.5, 0.5];
            // Gradients too small to lift the moments out of the subnormal range.
            let grad = [tiny / 2.0, 0.0, 0.0, 0.0];
            let mut kept = state.clone();
            rule.update::<false>(&mut kept, 0, &mut params.clone(), &grad, 0.05, 1);
            assert!(holds_subnormal(&kept), "{rule:?}: not flushed unless asked");
            rule.update::<true>(&mut state, 0, &mut params, &grad, 0.05, 1);
            assert!(!holds_subnormal(&state));
            let moments = state.m.iter().chain(&state.v);
            assert!(
                moments.clone().all(|x| !x.is_subnormal()),
                "{rule:?}: {state:?}"
            );
            assert_eq!(
                state.m[1].to_bits(),
                (-0.0f32).to_bits(),
                "a zero of its sign"
            );
            assert!(state.m[2] > 0.0 && state.m[3].is_nan(), "the others pass");
            assert_eq!(
                &params[..2],
                &[0.5, -0.5],
                "steps that small move no parameter"
            );
        }
    }

    #[test]
    fn sgd_momentum_matches_the_pytorch_recurrence() {
        let (rule, _) = Spec::Sgd {
            lr: 0.1,
            momentum: 0.5,
            weight_decay: 0.1,
            schedule: Schedule::Constant,
            total_steps: None,
            min_lr: 0.0,
        }
        .validate()
        .unwrap();
        let mut state = State::new(&rule, 1);
        let mut p = [1.0f32];
        rule.update::<false>(&mut state, 0, &mut p, &[1.0], 0.1, 1);
        // d = 1 + 0.1 * 1 = 1.1; b = 1.1; p = 1 - 0.11
        assert!((p[0] - 0.89).abs() < 1e-6);
        rule.update::<false>(&mut state, 0, &mut p, &[1.0], 0.1, 2);
        // d = 1.089; b = 0.55 + 1.089 = 1.639; p = 0.89 - 0.1639
        assert!((p[0] - 0.7261).abs() < 1e-6, "{}", p[0]);
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        let spec: Spec = toml::from_str("kind = \"adam\"\nlr = 0.01").unwrap();
        let (rule, _) = spec.validate().unwrap();
        let mut state = State::new(&rule, 2);
        let mut p = [0.0f32, 0.0];
        rule.update::<false>(&mut state, 0, &mut p, &[3.0, -0.5], 0.01, 1);
        assert!(
            (p[0] + 0.01).abs() < 1e-6 && (p[1] - 0.01).abs() < 1e-6,
            "{p:?}"
        );
    }

    #[test]
    fn cosine_decays_to_min_lr_and_config_errors_name_fields() {
        let spec: Spec = toml::from_str(
            "kind = \"sgd\"\nlr = 1.0\nschedule = \"cosine\"\ntotal-steps = 100\nmin-lr = 0.1",
        )
        .unwrap();
        let (_, s) = spec.validate().unwrap();
        assert!((s.at(0) - 1.0).abs() < 1e-12);
        assert!((s.at(50) - 0.55).abs() < 1e-12);
        assert!((s.at(100) - 0.1).abs() < 1e-12 && (s.at(500) - 0.1).abs() < 1e-12);

        let spec: Spec = toml::from_str("kind = \"sgd\"\nlr = 1.0\nschedule = \"cosine\"").unwrap();
        assert_eq!(spec.validate().unwrap_err().field, "total-steps");
        let spec: Spec = toml::from_str("kind = \"sgd\"\nlr = 0.1\nmomentum = 1.0").unwrap();
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .starts_with("optimizer.momentum")
        );
        assert!(toml::from_str::<Spec>("kind = \"sgd\"\nlr = 0.1\nmomentun = 0.9").is_err());
    }

    /// The outer step as PyTorch's `SGD(lr, momentum, nesterov)` applies it to the outer
    /// gradient `anchor - mixed`; `lr = 1` without momentum is plain gossip.
    #[test]
    fn the_outer_step_is_nesterov_sgd_on_the_outer_gradient() {
        let outer = Outer {
            lr: 0.5,
            momentum: 0.9,
            nesterov: true,
        };
        let (mut anchor, mut b) = (vec![1.0f32, 2.0], vec![0.0f32; 2]);
        outer.step(&mut anchor, &mut b, &[0.0, 2.0]);
        // g = (1, 0); b = g; step g + 0.9 b = 1.9 g.
        assert_eq!(b, vec![1.0, 0.0]);
        assert!((anchor[0] - (1.0 - 0.5 * 1.9)).abs() < 1e-6 && anchor[1] == 2.0);
        let a0 = anchor[0];
        outer.step(&mut anchor, &mut b, &[a0, 2.0]);
        // g = 0: momentum alone moves on, b = 0.9, step 0.81.
        assert!((b[0] - 0.9).abs() < 1e-6);
        assert!((anchor[0] - (a0 - 0.5 * 0.81)).abs() < 1e-6);
        let heavy = Outer {
            nesterov: false,
            ..outer
        };
        let (mut anchor, mut b) = (vec![1.0f32], vec![0.0f32]);
        heavy.step(&mut anchor, &mut b, &[0.0]);
        assert!((anchor[0] - 0.5).abs() < 1e-6);
        let plain = Outer {
            lr: 1.0,
            momentum: 0.0,
            nesterov: true,
        };
        let (mut anchor, mut b) = (vec![3.0f32, -1.0], vec![0.0f32; 2]);
        plain.step(&mut anchor, &mut b, &[0.25, 4.0]);
        assert_eq!(anchor, vec![0.25, 4.0]);
        // Config: DiLoCo's defaults, and errors that name the field.
        let parsed: Outer = toml::from_str("").unwrap();
        assert_eq!(
            (parsed.lr, parsed.momentum, parsed.nesterov),
            (0.7, 0.9, true)
        );
        let bad: Outer = toml::from_str("momentum = 1.0").unwrap();
        assert!(bad.validate().unwrap_err().starts_with("momentum"));
        let bad: Outer = toml::from_str("lr = 0.0").unwrap();
        assert!(bad.validate().unwrap_err().starts_with("lr"));
        assert!(toml::from_str::<Outer>("nesterof = true").is_err());
    }
}
