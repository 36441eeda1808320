//! The robustness table: one base scenario run against every attack under every aggregation
//! rule, the honest nodes' final mean accuracy in each cell, as Markdown.
//!
//! The base scenario's attacker groups are replaced: each cell puts all of the scenario's
//! Byzantine nodes (the same nodes in every cell, see [`Scenario::byzantine`]) on one attack, and
//! the "none" column makes them honest nodes instead. Everything else (seed, data, partition,
//! network, rounds) stays as written, so the cells differ only in rule and attack.

use crate::scenario::{Attackers, Scenario};
use crate::{Options, Report};
use murmur_protocol::aggregate;
use murmur_protocol::attack::Attack;
use std::fmt::Write as _;

/// The rules of the table, as aggregation configs (TOML inline tables), with the parameters
/// used at about five inputs per mix (own model + four peers).
pub const RULES: [(&str, &str); 7] = [
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
];

/// The attacks of the table, with their parameters (kind names as in configs).
pub fn attacks() -> Vec<Attack> {
    [
        "sign-flip",
        "gaussian",
        "alie",
        "ipm",
        "label-flip",
        "dissensus",
        "mimic",
        "non-finite",
        "replay",
        "equivocate",
        "free-rider",
    ]
    .iter()
    .map(|k| k.parse().expect("a known attack"))
    .collect()
}

/// An entry of [`RULES`] as an aggregation config (its keys are comma-separated).
pub fn parse_rule(rule: &str) -> aggregate::Config {
    toml::from_str(&rule.replace(", ", "\n")).expect("the table's rules parse")
}

/// One cell: a rule, an attack (`None`: no attack), and the run's last row.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Row label of the rule.
    pub rule: &'static str,
    /// The attack, if any.
    pub attack: Option<Attack>,
    /// Honest mean test accuracy at the end, in [0, 1].
    pub accuracy: f64,
    /// Honest worst test accuracy at the end.
    pub worst: f64,
}

/// The scenario of one cell.
pub fn cell_scenario(base: &Scenario, rule: &str, attack: Option<&Attack>) -> Scenario {
    let mut s = base.clone();
    s.engine.aggregation = parse_rule(rule);
    let f = base.byzantine();
    s.attackers = match attack {
        Some(a) => vec![Attackers {
            count: f,
            nodes: None,
            attack: a.clone(),
        }],
        None => Vec::new(),
    };
    s.name = format!("{}-{}", base.name, attack.map_or("none", Attack::name));
    s
}

/// Runs every cell (rules x (none + attacks)), calling `each` after each run.
pub fn run(
    base: &Scenario,
    options: &Options,
    mut each: impl FnMut(&Cell, &Report),
) -> Result<Vec<Cell>, crate::Error> {
    let mut cells = Vec::new();
    for (label, rule) in RULES {
        let attacks: Vec<Option<Attack>> = std::iter::once(None)
            .chain(attacks().into_iter().map(Some))
            .collect();
        for attack in attacks {
            let s = cell_scenario(base, rule, attack.as_ref());
            let report = crate::run(&s, options)?;
            let last = report.rows.last().expect("a run evaluates at the end");
            let cell = Cell {
                rule: label,
                attack,
                accuracy: last.acc_mean,
                worst: last.acc_worst,
            };
            each(&cell, &report);
            cells.push(cell);
        }
    }
    Ok(cells)
}

/// The Markdown table: a row per rule, a column per attack, honest mean accuracy in percent
/// (worst node in parentheses).
pub fn markdown(cells: &[Cell]) -> String {
    let mut s = String::from("| rule | none |");
    let names: Vec<&str> = attacks().iter().map(Attack::name).collect();
    for n in &names {
        let _ = write!(s, " {n} |");
    }
    s.push_str("\n|---|---|");
    for _ in &names {
        s.push_str("---|");
    }
    s.push('\n');
    for (label, _) in RULES {
        let _ = write!(s, "| {label} |");
        for c in cells.iter().filter(|c| c.rule == label) {
            let _ = write!(s, " {:.1} ({:.1}) |", 100.0 * c.accuracy, 100.0 * c.worst);
        }
        s.push('\n');
    }
    s
}

/// Start and end markers of the generated section in a Markdown file.
pub const MARKERS: (&str, &str) = ("<!-- robustness:begin -->", "<!-- robustness:end -->");

/// The generated section: how it was made, the table, and the checks of the issue's targets.
pub fn section(base: &Scenario, cells: &[Cell], command: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", MARKERS.0);
    let _ = writeln!(
        s,
        "Generated by `{command}`: {} nodes, {} of them Byzantine, {} rounds, seed {}; the \
         honest nodes' mean test accuracy (%) after the last round, the worst honest node in \
         parentheses.\n",
        base.nodes,
        base.byzantine(),
        base.rounds.map_or("?".into(), |r| r.to_string()),
        base.seed
    );
    s.push_str(&markdown(cells));
    let acc = |rule: &str, attack: Option<&str>| {
        cells
            .iter()
            .find(|c| c.rule == rule && c.attack.as_ref().map(Attack::name) == attack)
            .map_or(f64::NAN, |c| 100.0 * c.accuracy)
    };
    let default = RULES[RULES.len() - 1].0;
    let base_default = acc(default, None);
    let worst_drop = attacks()
        .iter()
        .map(|a| (a.name(), base_default - acc(default, Some(a.name()))))
        .fold(
            ("", f64::NEG_INFINITY),
            |m, x| if x.1 > m.1 { x } else { m },
        );
    let _ = writeln!(
        s,
        "\n- {default}: largest drop from its no-attack accuracy ({base_default:.1}%) is \
         {:.1} points, under {}: target at most 2 points, **{}**.",
        worst_drop.1,
        worst_drop.0,
        if worst_drop.1 <= 2.0 {
            "met"
        } else {
            "not met"
        }
    );
    let base_mean = acc("mean", None);
    for a in ["alie", "ipm", "sign-flip"] {
        let drop = base_mean - acc("mean", Some(a));
        let _ = writeln!(
            s,
            "- mean under {a}: loses {drop:.1} points from {base_mean:.1}%: target at least 20, **{}**.",
            if drop >= 20.0 { "met" } else { "not met" }
        );
    }
    let _ = writeln!(s, "{}", MARKERS.1);
    s
}

/// `text` with the section between [`MARKERS`] replaced by `section` (appended if absent).
pub fn splice(text: &str, section: &str) -> String {
    match (text.find(MARKERS.0), text.find(MARKERS.1)) {
        (Some(a), Some(b)) if b > a => {
            let end = b + MARKERS.1.len();
            let rest = text[end..].strip_prefix('\n').unwrap_or(&text[end..]);
            format!("{}{}{}", &text[..a], section, rest)
        }
        _ => format!("{text}\n{section}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_and_attack_of_the_table_is_valid() {
        for (_, rule) in RULES {
            parse_rule(rule).validate().unwrap();
        }
        assert_eq!(attacks().len(), murmur_protocol::attack::NAMES.len());
    }

    #[test]
    fn splice_replaces_only_the_marked_section() {
        let old = format!(
            "# Results\nintro\n{}\nold\n{}\nafter\n",
            MARKERS.0, MARKERS.1
        );
        let new = splice(&old, &format!("{}\nnew\n{}\n", MARKERS.0, MARKERS.1));
        assert!(new.contains("new") && !new.contains("old"));
        assert!(new.starts_with("# Results\nintro\n") && new.ends_with("after\n"));
        assert!(splice("x\n", "S\n").ends_with("S\n"));
    }
}
