//! `murmur-sim compare`: scenarios under several methods (the protocol and the synchronous
//! references) over several seeds, as one table of accuracy, traffic and time.
//!
//! Every run is an ordinary [`crate::run`] of the scenario with its `method` and `seed`
//! replaced; the table gives, per scenario and method, the mean and standard deviation over the
//! seeds (and the worst seed) of the honest nodes' mean accuracy and of the average model's, the
//! consensus distance, the bytes each node sent, the virtual time of the run, and the virtual
//! time at which the honest mean accuracy first reached the target (at an evaluation point).

use crate::report::{Report, Row};
use crate::scenario::{Method, Scenario};
use crate::{Error, Options};
use murmur_protocol::aggregate;
use std::fmt::Write as _;

/// The Markdown markers of the comparison section named `key` (the first scenario's name) that
/// `--splice` replaces, so that one file can hold the tables of several scenarios.
pub fn markers(key: &str) -> (String, String) {
    (
        format!("<!-- compare:{key}:begin -->"),
        format!("<!-- compare:{key}:end -->"),
    )
}

/// One seed's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The seed.
    pub seed: u64,
    /// Honest nodes' mean accuracy at the end.
    pub acc_mean: f64,
    /// The average model's accuracy at the end.
    pub acc_average: f64,
    /// Consensus distance at the end.
    pub consensus: f64,
    /// Bytes sent per running node (a parameter server's traffic included, shared out).
    pub bytes_per_node: f64,
    /// Virtual seconds of the whole run.
    pub virtual_s: f64,
    /// Virtual seconds until the honest mean accuracy first reached the target, if it did.
    pub to_target_s: Option<f64>,
    /// Virtual seconds until the average model's accuracy first reached the target, if it did.
    pub avg_to_target_s: Option<f64>,
}

/// One row of the table: a scenario under one method, over the seeds.
#[derive(Debug, Clone)]
pub struct Line {
    /// The entry's label.
    pub label: String,
    /// Per seed, in the order run.
    pub runs: Vec<Run>,
}

/// The scenario `base` with `method` and `seed`, evaluated every `eval_every` rounds if given.
pub fn scenario(base: &Scenario, method: Method, seed: u64, eval_every: Option<u64>) -> Scenario {
    let mut s = base.clone();
    s.method = method;
    s.seed = seed;
    if let Some(every) = eval_every {
        s.eval.every_rounds = Some(every);
        s.eval.every_ms = None;
    }
    s
}

/// The figures of one finished run.
pub fn figures(report: &Report, target: f64) -> Run {
    let last: &Row = &report.summary.last;
    Run {
        seed: report.summary.seed,
        acc_mean: last.acc_mean,
        acc_average: last.acc_average,
        consensus: last.consensus,
        bytes_per_node: last.bytes_sent as f64 / last.online.max(1) as f64,
        virtual_s: report.summary.virtual_s,
        to_target_s: report
            .rows
            .iter()
            .find(|r| r.acc_mean >= target)
            .map(|r| r.virtual_s),
        avg_to_target_s: report
            .rows
            .iter()
            .find(|r| r.acc_average >= target)
            .map(|r| r.virtual_s),
    }
}

/// One row to run: a label and its scenario (method and rule set; seed replaced per run).
#[derive(Debug, Clone)]
pub struct Entry {
    /// `<scenario name> / <method>[, <rule>]`.
    pub label: String,
    /// The scenario.
    pub scenario: Scenario,
}

/// The rows of a comparison: every base scenario under every method, in order; with `rules`
/// (aggregation configs), the methods that mix with the engine's rule (the protocol and the
/// robust parameter server) once per rule, the others once.
pub fn entries(
    bases: &[Scenario],
    methods: &[Method],
    rules: &[aggregate::Config],
    eval_every: Option<u64>,
) -> Vec<Entry> {
    let mut out = Vec::new();
    for base in bases {
        for &method in methods {
            let s = scenario(base, method, base.seed, eval_every);
            let uses_rule = matches!(method, Method::Protocol | Method::RobustParameterServer);
            if rules.is_empty() || !uses_rule {
                out.push(Entry {
                    label: format!("{} / {method}", base.name),
                    scenario: s,
                });
                continue;
            }
            for rule in rules {
                let mut s = s.clone();
                s.engine.aggregation = rule.clone();
                out.push(Entry {
                    label: format!("{} / {method}, {}", base.name, rule.name()),
                    scenario: s,
                });
            }
        }
    }
    out
}

/// An aggregation config from one line of TOML keys, comma-separated
/// (`rule = "trimmed-mean", f = 1`), as `--rule` takes it.
pub fn parse_rule(text: &str) -> Result<aggregate::Config, String> {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        rule: aggregate::Config,
    }
    let w: Wrapper = toml::from_str(&format!("rule = {{ {text} }}"))
        .map_err(|e| format!("--rule `{text}`: {}", e.message()))?;
    w.rule
        .validate()
        .map_err(|e| format!("--rule `{text}`: {e}"))?;
    Ok(w.rule)
}

/// Runs every entry for every seed; `each` sees every run as it ends (for progress).
pub fn run(
    entries: &[Entry],
    seeds: &[u64],
    target: f64,
    options: &Options,
    mut each: impl FnMut(&str, &Report),
) -> Result<Vec<Line>, Error> {
    let mut lines = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut runs = Vec::with_capacity(seeds.len());
        for &seed in seeds {
            let mut s = entry.scenario.clone();
            s.seed = seed;
            let report = crate::run(&s, options)?;
            each(&entry.label, &report);
            runs.push(figures(&report, target));
        }
        lines.push(Line {
            label: entry.label.clone(),
            runs,
        });
    }
    Ok(lines)
}

/// Mean and (sample) standard deviation.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The table, in Markdown.
pub fn markdown(lines: &[Line], target: f64) -> String {
    let mut out = format!(
        "| scenario / method | honest mean acc. | worst seed | average model | consensus | MB sent per node | virtual s | virtual s to {t:.0}%: honest mean | average model |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        t = 100.0 * target
    );
    for line in lines {
        let pick = |f: fn(&Run) -> f64| line.runs.iter().map(f).collect::<Vec<f64>>();
        let (acc, acc_sd) = mean_sd(&pick(|r| r.acc_mean));
        let worst = pick(|r| r.acc_mean)
            .into_iter()
            .fold(f64::INFINITY, f64::min);
        let (avg, avg_sd) = mean_sd(&pick(|r| r.acc_average));
        let (cons, _) = mean_sd(&pick(|r| r.consensus));
        let (mb, _) = mean_sd(&pick(|r| r.bytes_per_node / 1e6));
        let (vs, _) = mean_sd(&pick(|r| r.virtual_s));
        let to_target = reached(line.runs.iter().map(|r| r.to_target_s));
        let avg_to_target = reached(line.runs.iter().map(|r| r.avg_to_target_s));
        let _ = writeln!(
            out,
            "| {} | {:.2} ± {:.2}% | {:.2}% | {:.2} ± {:.2}% | {:.3e} | {:.1} | {:.1} | {} | {} |",
            line.label,
            100.0 * acc,
            100.0 * acc_sd,
            100.0 * worst,
            100.0 * avg,
            100.0 * avg_sd,
            cons,
            mb,
            vs,
            to_target,
            avg_to_target
        );
    }
    out
}

/// The mean (± standard deviation) of the times a target was reached, over the seeds that
/// reached it.
fn reached(times: impl Iterator<Item = Option<f64>>) -> String {
    let all: Vec<Option<f64>> = times.collect();
    let got: Vec<f64> = all.iter().flatten().copied().collect();
    match got.len() {
        0 => "not reached".to_owned(),
        k if k == all.len() => {
            let (m, sd) = mean_sd(&got);
            format!("{m:.1} ± {sd:.1}")
        }
        k => {
            let (m, _) = mean_sd(&got);
            format!("{m:.1} ({k} of {} seeds)", all.len())
        }
    }
}

/// The table as a section for docs named `key`: the markers, the command, the seeds, the
/// table.
pub fn section(key: &str, lines: &[Line], seeds: &[u64], command: &str, target: f64) -> String {
    let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
    let (begin, end) = markers(key);
    format!(
        "{begin}\n`{command}` (seeds {}; mean ± standard deviation over the seeds):\n\n{}{end}\n",
        seeds.join(", "),
        markdown(lines, target),
    )
}

/// One line per run: `label,seed,acc_mean,acc_average,consensus,bytes_per_node,virtual_s,
/// to_target_s,avg_to_target_s`.
pub fn csv(lines: &[Line]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "label",
        "seed",
        "acc_mean",
        "acc_average",
        "consensus",
        "bytes_per_node",
        "virtual_s",
        "to_target_s",
        "avg_to_target_s",
    ])?;
    for line in lines {
        for r in &line.runs {
            w.write_record([
                line.label.clone(),
                r.seed.to_string(),
                r.acc_mean.to_string(),
                r.acc_average.to_string(),
                r.consensus.to_string(),
                r.bytes_per_node.to_string(),
                r.virtual_s.to_string(),
                r.to_target_s.map_or(String::new(), |t| t.to_string()),
                r.avg_to_target_s.map_or(String::new(), |t| t.to_string()),
            ])?;
        }
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("the fields are UTF-8"))
}

/// `text` with the section named `key` replaced by `section` (appended if absent).
pub fn splice(text: &str, key: &str, section: &str) -> String {
    let (begin, end) = markers(key);
    crate::robustness::splice_between(text, section, (&begin, &end))
}

/// Seeds from `6-10`, `6,7,9` or a mix (`1-3,7`).
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let mut seeds = Vec::new();
    for part in text.split(',').map(str::trim) {
        let bad = || format!("seeds `{text}`: `{part}` is not a seed or a range a-b");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(bad());
                }
                seeds.extend(a..=b);
            }
            None => seeds.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_as_lists_and_ranges() {
        assert_eq!(parse_seeds("6-10").unwrap(), vec![6, 7, 8, 9, 10]);
        assert_eq!(parse_seeds("1-2, 7").unwrap(), vec![1, 2, 7]);
        assert!(parse_seeds("3-1").unwrap_err().contains("`3-1`"));
        assert!(parse_seeds("x").is_err());
    }

    #[test]
    fn rules_parse_from_one_line_and_name_what_is_wrong() {
        let r = parse_rule(r#"rule = "trimmed-mean", f = 1"#).unwrap();
        assert_eq!(
            r.name(),
            parse_rule(r#"rule = "trimmed-mean",f = 1"#).unwrap().name()
        );
        let e = parse_rule(r#"rule = "trimmed-man""#).unwrap_err();
        assert!(e.contains("trimmed-man"), "{e}");
        // Commas inside arrays and inline tables stay where they are.
        let r = parse_rule(
            r#"rule = "trimmed-mean", f = 2, pre = [{ kind = "nnm", f = 2 }, { kind = "bucketing", s = 2 }]"#,
        )
        .unwrap();
        assert_eq!(r.pre.len(), 2);
    }

    #[test]
    fn the_table_gives_mean_spread_worst_and_time_to_target() {
        let run = |seed, acc, to| Run {
            seed,
            acc_mean: acc,
            acc_average: acc,
            consensus: 0.0,
            bytes_per_node: 2e6,
            virtual_s: 10.0,
            to_target_s: to,
            avg_to_target_s: Some(3.0),
        };
        let lines = [Line {
            label: "x / protocol".into(),
            runs: vec![run(1, 0.90, Some(4.0)), run(2, 0.92, None)],
        }];
        let md = markdown(&lines, 0.9);
        assert!(
            md.contains("| x / protocol | 91.00 ± 1.41% | 90.00% |"),
            "{md}"
        );
        assert!(
            md.contains("| 2.0 | 10.0 | 4.0 (1 of 2 seeds) | 3.0 ± 0.0 |"),
            "{md}"
        );
    }
}
