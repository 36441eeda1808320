//! The robustness table: one base scenario run against every attack under every aggregation
//! rule, the honest nodes' final mean accuracy in each cell, as Markdown.
//!
//! The base scenario's attacker groups are replaced: each cell puts all of the scenario's
//! Byzantine nodes (the same nodes in every cell, see [`Scenario::byzantine`]) on one attack, and
//! the "none" column leaves them absent (they never run: the same honest nodes with the
//! attackers absent, the baseline every attack is measured against). Everything else (seed,
//! data, partition, network, rounds) stays as written, so the cells differ only in rule and
//! attack.
//!
//! With several seeds (`--seeds 6-10`) every cell runs once per seed (the scenario's `seed`
//! replaced) and shows the mean over the seeds, their standard deviation and the worst seed's
//! accuracy; `--rows` runs only some rows (the engine's defaults, say, in another codec) and
//! `--columns` some columns (a group, or attacks by name). Every run's result is cached on disk
//! ([`Cache`]): a table that stopped resumes, and shards run apart are put together by running
//! the whole plan once they are done.

use crate::Options;
use crate::scenario::{Attackers, Scenario};
use murmur_protocol::aggregate;
use murmur_protocol::attack::{Attack, Space};
use std::fmt::Write as _;

mod cache;
pub use cache::Cache;
use cache::Stored;
mod output;
pub(crate) use output::splice_between;
pub use output::{MARKERS, csv, markdown, markers, section, splice};

/// The rules of the table: a label and an aggregation config (TOML inline-table keys), with the
/// parameters used at about five inputs per mix (own model + four peers). Each runs alone, with
/// the engine's outlier screen off (`outlier-factor = 0`), so the table shows what each rule does
/// by itself, and then behind the screen ([`SCREENED`]); the last row, [`DEFAULT_ROW`], is the
/// engine's defaults.
pub const RULES: [(&str, &str); 8] = [
    ("mean", r#"rule = "mean""#),
    ("median", r#"rule = "median""#),
    ("trimmed mean (f=1)", r#"rule = "trimmed-mean", f = 1"#),
    ("Krum (f=1)", r#"rule = "krum", f = 1"#),
    ("geometric median", r#"rule = "geometric-median""#),
    (
        "centered clipping (tau=1)",
        r#"rule = "centered-clipping", tau = 1.0, iterations = 3"#,
    ),
    (
        "ClippedGossip (adaptive-f=2)",
        r#"rule = "clipped-gossip", adaptive-f = 2"#,
    ),
    ("CS+-RG (f=1)", r#"rule = "cs-plus", f = 1"#),
];

/// The label of the last row: the engine's default aggregation (ClippedGossip, adaptive-f = 2)
/// with its default outlier screen.
pub const DEFAULT_ROW: &str = "default: ClippedGossip (adaptive-f=2) + outlier screen (factor 2.5)";

/// The rows that run a rule of [`RULES`] behind the engine's outlier screen (with its default
/// factor): a label and the rule's index. ClippedGossip with `adaptive-f = 2` behind the screen
/// is [`DEFAULT_ROW`].
pub const SCREENED: [(&str, usize); 7] = [
    ("mean + screen", 0),
    ("median + screen", 1),
    ("trimmed mean (f=1) + screen", 2),
    ("Krum (f=1) + screen", 3),
    ("geometric median + screen", 4),
    ("centered clipping (tau=1) + screen", 5),
    ("CS+-RG (f=1) + screen", 7),
];

/// A row of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Its label.
    pub label: &'static str,
    /// Its entry of [`RULES`]; `None` for the engine's defaults ([`DEFAULT_ROW`]).
    pub rule: Option<&'static str>,
    /// Whether the engine's outlier screen runs in front of the rule.
    pub screen: bool,
}

/// Every row in table order: each rule alone, each behind the outlier screen, then the engine's
/// defaults.
fn table_rows() -> impl Iterator<Item = Row> {
    let alone = RULES.iter().map(|&(label, rule)| Row {
        label,
        rule: Some(rule),
        screen: false,
    });
    let screened = SCREENED.iter().map(|&(label, i)| Row {
        label,
        rule: Some(RULES[i].1),
        screen: true,
    });
    let default = Row {
        label: DEFAULT_ROW,
        rule: None,
        screen: true,
    };
    alone.chain(screened).chain(std::iter::once(default))
}

/// Every row label in table order, [`DEFAULT_ROW`] last.
pub fn rows() -> impl Iterator<Item = &'static str> {
    table_rows().map(|r| r.label)
}

/// The attacks of the table: every kind with its default parameters, each followed by its
/// other strengths, for the attacks that have one ([`sweep`]).
pub fn attacks() -> Vec<Attack> {
    let sweep = sweep();
    murmur_protocol::attack::NAMES
        .iter()
        .flat_map(|k| {
            let default: Attack = k.parse().expect("a known attack");
            let others = sweep.iter().filter(|a| a.name() == *k).cloned();
            std::iter::once(default).chain(others).collect::<Vec<_>>()
        })
        .collect()
}

/// The strengths swept besides each attack's default (the last columns): Gaussian noise of
/// standard deviation 0.1 and 0.01 per parameter (the default, 1, is a gross outlier; 0.01 is
/// within the honest spread of this model), ALIE with z = 1 and 3 (the default z from n and f is
/// about 0.3 here and barely moves even the plain mean), IPM with epsilon = 0.5 and 2, and
/// dissensus with epsilon = 1 (freeze the victim) and 4 (besides 1.5). The table shows each, and
/// for each attack the strength the honest nodes did worst against ([`markdown`]).
pub fn sweep() -> [Attack; 8] {
    [
        Attack::Gaussian { sigma: 0.1 },
        Attack::Gaussian { sigma: 0.01 },
        Attack::Alie { z: Some(1.0) },
        Attack::Alie { z: Some(3.0) },
        Attack::Ipm {
            epsilon: 0.5,
            space: Space::Model,
        },
        Attack::Ipm {
            epsilon: 2.0,
            space: Space::Model,
        },
        Attack::Dissensus { epsilon: 1.0 },
        Attack::Dissensus { epsilon: 4.0 },
    ]
}

/// The strength of an attack that has one, as a column shows it (`z=3`, `ε=0.5`); `None` for
/// the others.
pub fn strength(a: &Attack) -> Option<String> {
    match a {
        Attack::Gaussian { sigma } => Some(format!("σ={sigma}")),
        Attack::Alie { z: Some(z) } => Some(format!("z={z}")),
        Attack::Alie { z: None } => Some("z from n, f".into()),
        Attack::Ipm {
            epsilon,
            space: Space::Model,
        } => Some(format!("ε={epsilon}")),
        Attack::Dissensus { epsilon } => Some(format!("ε={epsilon}")),
        _ => None,
    }
}

/// The three kinds of column the table groups its attacks into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Forged models sent by the protocol's rules: what a robust rule is for.
    Model,
    /// Messages the protocol itself must refuse or discount: non-finite payloads, replays,
    /// equivocation, copied models, lies about the round, junk bytes.
    Protocol,
    /// Attacks that fit their forgery to the defence: min-max and min-sum (bounded by the honest
    /// models' own spread) and ALIE and IPM with the strength searched against the rule.
    Adaptive,
}

impl Group {
    /// Every group, in table order.
    pub const ALL: [Group; 3] = [Group::Model, Group::Protocol, Group::Adaptive];

    /// The group's name, as `--columns` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Group::Model => "model",
            Group::Protocol => "protocol",
            Group::Adaptive => "adaptive",
        }
    }

    /// The heading of its table.
    pub fn title(self) -> &'static str {
        match self {
            Group::Model => "Model attacks",
            Group::Protocol => "Protocol attacks",
            Group::Adaptive => "Adaptive attacks",
        }
    }
}

/// The group an attack's column belongs to.
pub fn group(a: &Attack) -> Group {
    match a {
        Attack::NonFinite { .. }
        | Attack::Replay { .. }
        | Attack::Equivocate
        | Attack::FreeRider
        | Attack::RoundLie { .. }
        | Attack::Junk { .. }
        | Attack::GossipAbuse => Group::Protocol,
        Attack::MinMax { .. } | Attack::MinSum { .. } | Attack::OptAlie | Attack::OptIpm { .. } => {
            Group::Adaptive
        }
        _ => Group::Model,
    }
}

/// A column heading: the attack's kind, with its strength when it is not the default one.
pub fn column(a: &Attack) -> String {
    use murmur_protocol::attack::{DEFAULT_DISSENSUS_EPSILON, DEFAULT_IPM_EPSILON, DEFAULT_SIGMA};
    let swept = match a {
        Attack::Gaussian { sigma } => *sigma != DEFAULT_SIGMA,
        Attack::Alie { z } => z.is_some(),
        Attack::Ipm { epsilon, .. } => *epsilon != DEFAULT_IPM_EPSILON,
        Attack::Dissensus { epsilon } => *epsilon != DEFAULT_DISSENSUS_EPSILON,
        _ => false,
    };
    match a {
        Attack::Ipm {
            epsilon,
            space: Space::Update,
        } => format!("ipm (updates, ε={epsilon})"),
        a => match strength(a) {
            Some(st) if swept => format!("{} ({st})", a.name()),
            _ => a.name().to_owned(),
        },
    }
}

/// The rounds a cell runs: its training rounds, and its rounds of mixing alone if any.
pub fn rounds_text(base: &Scenario) -> String {
    let rounds = base.rounds.map_or("?".into(), |r| r.to_string());
    match base.engine.final_mix_rounds {
        0 => format!("{rounds} rounds"),
        k => format!("{rounds} rounds and {k} more of mixing alone"),
    }
}

/// The attackers' powers beyond the protocol's rules (those of the base scenario's first group,
/// which every cell's attackers have), as a sentence of the table's header; empty when none.
pub fn powers_text(base: &Scenario) -> String {
    let Some(a) = base.attackers.first() else {
        return String::new();
    };
    let mut powers = Vec::new();
    if !a.knowledge.is_own() {
        powers.push(format!("are {}", a.knowledge.name()));
    }
    if !a.aim.is_all() {
        powers.push("forge from each asker's model and its honest neighbours'".into());
    }
    if a.free_timing {
        powers.push("skip training (free timing; not under label-flip, which is training)".into());
    }
    if a.push {
        powers.push("push their forgeries at every peer every round".into());
    }
    if a.hog {
        powers.push(format!(
            "hog the honest uplinks (ask every peer for its next round, {})",
            if a.hog_in_turn {
                "each identity of a process in its turn"
            } else {
                "every round"
            }
        ));
    }
    if a.identities > 1 {
        powers.push(format!(
            "run {} identities per process (Sybil: one uplink and one CPU each)",
            a.identities
        ));
    }
    match powers.as_slice() {
        [] => String::new(),
        [one] => format!(" The attackers {one}."),
        [init @ .., last] => format!(" The attackers {} and {last}.", init.join(", ")),
    }
}

/// An entry of [`RULES`] as an aggregation config (its keys are comma-separated).
pub fn parse_rule(rule: &str) -> aggregate::Config {
    toml::from_str(&rule.replace(", ", "\n")).expect("the table's rules parse")
}

/// One run of a cell: a rule, an attack (`None`: no attack), a seed, and the run's last row.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Row label of the rule.
    pub rule: &'static str,
    /// The attack, if any.
    pub attack: Option<Attack>,
    /// The run's seed.
    pub seed: u64,
    /// Honest mean test accuracy at the end, in [0, 1].
    pub accuracy: f64,
    /// Honest worst test accuracy at the end.
    pub worst: f64,
    /// Bans of Byzantine peers by honest nodes in force at the end.
    pub bans_of_byzantine: u64,
    /// Bans of honest peers by honest nodes in force at the end (false positives).
    pub bans_of_honest: u64,
    /// Mixes honest nodes skipped because the rule refused the inputs they had (too few).
    pub skipped_mixes: u64,
}

/// The scenario of one cell: a rule of [`RULES`] (alone or behind the screen, waiting for at
/// least as many answers as the rule needs), or the engine's defaults ([`DEFAULT_ROW`]).
pub fn cell_scenario(base: &Scenario, row: &Row, attack: Option<&Attack>) -> Scenario {
    let mut s = base.clone();
    let defaults = murmur_protocol::engine::Config::default();
    match row.rule {
        Some(rule) => {
            s.engine.aggregation = parse_rule(rule);
            s.engine.outlier_factor = if row.screen {
                defaults.outlier_factor
            } else {
                0.0
            };
            // A rule that needs more models than `wait-for` answers and the own model give
            // (Krum with f = 1 needs five) waits for as many answers as it needs.
            let need = s.engine.aggregation.min_inputs();
            if need > s.engine.wait_for + 1 {
                s.engine.wait_for = need - 1;
                s.engine.fanout = s.engine.fanout.max(need - 1);
            }
        }
        None => {
            s.engine.aggregation = defaults.aggregation;
            s.engine.outlier_factor = defaults.outlier_factor;
        }
    }
    // The same nodes in every cell; without an attack they are absent (the baseline of the
    // same honest nodes), not honest. They have the powers of the base scenario's first group.
    let powers = base.attackers.first();
    s.attackers = vec![Attackers {
        count: base.byzantine(),
        nodes: None,
        attack: attack.cloned(),
        absent: attack.is_none(),
        push: powers.is_some_and(|a| a.push),
        // Label flipping is training: it keeps its timing.
        free_timing: powers.is_some_and(|a| a.free_timing)
            && !matches!(attack, Some(Attack::LabelFlip)),
        hog: powers.is_some_and(|a| a.hog),
        hog_in_turn: powers.is_some_and(|a| a.hog_in_turn),
        knowledge: powers.map(|a| a.knowledge).unwrap_or_default(),
        aim: powers.map(|a| a.aim).unwrap_or_default(),
        identities: powers.map_or(1, |a| a.identities),
    }];
    s.name = format!(
        "{}-{}",
        base.name,
        attack.map_or("none".into(), |a| column(a)
            .replace([' ', '(', ')', '='], ""))
    );
    s
}

/// Which runs make the table.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seeds each cell runs with (the base scenario's own seed when given one).
    pub seeds: Vec<u64>,
    /// The rows to run: those an entry names (a whole label, or the start of
    /// labels), case ignored; `None`: all.
    pub rows: Option<Vec<String>>,
    /// The attack columns to run besides "none" (always run: it is every drop's baseline):
    /// those whose heading starts with one of these, or whose group ([`Group::name`]) is one of
    /// them (case ignored); `None`: all.
    pub columns: Option<Vec<String>>,
}

impl Plan {
    /// Every row, with the base scenario's seed.
    pub fn single(base: &Scenario) -> Plan {
        Plan {
            seeds: vec![base.seed],
            rows: None,
            columns: None,
        }
    }

    fn wants_column(&self, a: &Attack) -> bool {
        self.columns
            .as_ref()
            .is_none_or(|columns| columns.iter().any(|c| column_matches(c, a)))
    }

    /// The attack columns the plan runs, in table order; an error names a `--columns` entry
    /// that matches no column.
    pub fn attacks(&self) -> Result<Vec<Attack>, String> {
        if let Some(columns) = &self.columns
            && let Some(c) = columns
                .iter()
                .find(|c| !attacks().iter().any(|a| column_matches(c, a)))
        {
            return Err(format!(
                "--columns: `{c}` is no group ({}) and starts no column heading; the columns \
                 are: {}",
                Group::ALL.map(Group::name).join(", "),
                attacks().iter().map(column).collect::<Vec<_>>().join("; ")
            ));
        }
        Ok(attacks()
            .into_iter()
            .filter(|a| self.wants_column(a))
            .collect())
    }

    fn wants(&self, label: &str) -> bool {
        self.rows
            .as_ref()
            .is_none_or(|rows| rows.iter().any(|r| row_matches(r, label)))
    }

    /// The row labels the plan runs, in table order; an error names a `--rows` entry that
    /// matches no row.
    pub fn labels(&self) -> Result<Vec<&'static str>, String> {
        if let Some(rows) = &self.rows
            && let Some(r) = rows
                .iter()
                .find(|r| !self::rows().any(|l| row_matches(r, l)))
        {
            return Err(format!(
                "--rows: `{r}` starts no row label; the rows are: {}",
                self::rows().collect::<Vec<_>>().join("; ")
            ));
        }
        Ok(self::rows().filter(|l| self.wants(l)).collect())
    }
}

/// A `--rows` entry names the row whose label it is (case ignored), or, when it is no row's
/// whole label, every row whose label starts with it: `mean` is the plain mean alone, `mean +`
/// the mean behind the screen, `default` the engine's defaults.
fn row_matches(entry: &str, label: &str) -> bool {
    let entry = entry.trim().to_lowercase();
    if rows().any(|l| l.to_lowercase() == entry) {
        label.to_lowercase() == entry
    } else {
        label.to_lowercase().starts_with(&entry)
    }
}

fn column_matches(entry: &str, a: &Attack) -> bool {
    let entry = entry.trim().to_lowercase();
    group(a).name() == entry || column(a).to_lowercase().starts_with(&entry)
}

/// Runs every cell of the plan (rows x (none + attacks) x seeds), taking each run's result from
/// `cache` when it holds it and storing it there otherwise, and calling `each` after each run
/// with its wall time in seconds (`None`: taken from the cache).
pub fn run(
    base: &Scenario,
    plan: &Plan,
    options: &Options,
    cache: Option<&Cache>,
    mut each: impl FnMut(&Cell, Option<f64>),
) -> Result<Vec<Cell>, crate::Error> {
    let mut cells = Vec::new();
    for row in table_rows().filter(|r| plan.wants(r.label)) {
        let attacks: Vec<Option<Attack>> = std::iter::once(None)
            .chain(
                attacks()
                    .into_iter()
                    .filter(|a| plan.wants_column(a))
                    .map(Some),
            )
            .collect();
        for attack in attacks {
            for &seed in &plan.seeds {
                let mut s = cell_scenario(base, &row, attack.as_ref());
                s.seed = seed;
                let (stored, fresh) = match cache.and_then(|c| c.get(&s, options)) {
                    Some(stored) => (stored, false),
                    None => {
                        let report = crate::run(&s, options)?;
                        let last = report.rows.last().expect("a run evaluates at the end");
                        let stored = Stored {
                            accuracy: last.acc_mean,
                            worst: last.acc_worst,
                            bans_of_byzantine: last.bans_of_byzantine,
                            bans_of_honest: last.bans_of_honest,
                            skipped_mixes: report.summary.skipped_mixes,
                            wall_s: report.summary.wall_s,
                        };
                        if let Some(c) = cache
                            && let Err(e) = c.put(&s, options, &stored)
                        {
                            eprintln!("warning: cannot cache a cell in {}: {e}", c.dir().display());
                        }
                        (stored, true)
                    }
                };
                let cell = Cell {
                    rule: row.label,
                    attack: attack.clone(),
                    seed,
                    accuracy: stored.accuracy,
                    worst: stored.worst,
                    bans_of_byzantine: stored.bans_of_byzantine,
                    bans_of_honest: stored.bans_of_honest,
                    skipped_mixes: stored.skipped_mixes,
                };
                each(&cell, fresh.then_some(stored.wall_s));
                cells.push(cell);
            }
        }
    }
    Ok(cells)
}

#[cfg(test)]
mod tests;
