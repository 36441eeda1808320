//! The table's rows, columns, cells, Markdown, CSV and splicing.

use super::*;

#[test]
fn every_rule_and_attack_of_the_table_is_valid() {
    for (_, rule) in RULES {
        parse_rule(rule).validate().unwrap();
    }
    assert_eq!(
        attacks().len(),
        murmur_protocol::attack::NAMES.len() + sweep().len()
    );
    let columns: std::collections::BTreeSet<String> = attacks().iter().map(column).collect();
    assert_eq!(columns.len(), attacks().len(), "column headings are unique");
}

/// Every cell of the shipped table's scenario is a valid engine config: a row whose rule
/// needs more models than the scenario's `wait-for` gives (Krum with f = 1 needs five) waits
/// for as many as it needs.
#[test]
fn every_cell_of_the_shipped_scenario_is_a_valid_engine_config() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sim/robustness.toml");
    let base = Scenario::load(&path).unwrap();
    for row in table_rows() {
        let label = row.label;
        let s = cell_scenario(&base, &row, Some(&Attack::SignFlip));
        // As the nodes run it, with the scenario's rounds (and its rounds of mixing alone).
        s.validate().unwrap_or_else(|e| panic!("row {label}: {e}"));
        // The baseline: the same attackers, absent.
        let none = cell_scenario(&base, &row, None);
        none.validate()
            .unwrap_or_else(|e| panic!("row {label}: {e}"));
        assert_eq!(none.byzantine(), base.byzantine());
        assert!(
            none.attackers
                .iter()
                .all(|a| a.absent && a.running().is_none())
        );
    }
}

/// Each screened row runs the rule its label names, behind the engine's screen; the
/// rule-alone rows run with the screen off.
#[test]
fn screened_rows_name_their_rule_and_run_the_screen() {
    let base = Scenario::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sim/robustness.toml"),
    )
    .unwrap();
    let defaults = murmur_protocol::engine::Config::default();
    for &(label, i) in &SCREENED {
        assert_eq!(label, format!("{} + screen", RULES[i].0));
    }
    for row in table_rows() {
        let s = cell_scenario(&base, &row, None);
        let factor = if row.screen {
            defaults.outlier_factor
        } else {
            0.0
        };
        assert_eq!(s.engine.outlier_factor, factor, "{}", row.label);
        if let Some(rule) = row.rule {
            assert_eq!(s.engine.aggregation, parse_rule(rule), "{}", row.label);
        }
    }
    assert_eq!(rows().count(), RULES.len() + SCREENED.len() + 1);
}

#[test]
fn the_default_row_label_matches_the_engine_defaults() {
    let c = murmur_protocol::engine::Config::default();
    assert_eq!(
        c.aggregation,
        parse_rule(r#"rule = "clipped-gossip", adaptive-f = 2"#)
    );
    assert!(DEFAULT_ROW.contains(&format!("(factor {})", c.outlier_factor)));
}

#[test]
fn csv_has_a_line_per_cell_and_quotes_what_needs_it() {
    let cells = vec![
        Cell {
            rule: "mean",
            attack: None,
            seed: 6,
            accuracy: 0.5,
            worst: 0.25,
            bans_of_byzantine: 0,
            bans_of_honest: 0,
            skipped_mixes: 0,
        },
        Cell {
            rule: "a, b",
            attack: Some(Attack::Alie { z: Some(3.0) }),
            seed: 7,
            accuracy: 0.75,
            worst: 0.5,
            bans_of_byzantine: 2,
            bans_of_honest: 1,
            skipped_mixes: 4,
        },
    ];
    let text = csv(&cells).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "rule,attack,seed,accuracy,worst,bans_of_byzantine,bans_of_honest,skipped_mixes"
    );
    assert_eq!(lines[1], "mean,none,6,0.500000,0.250000,0,0,0");
    assert_eq!(lines[2], "\"a, b\",alie (z=3),7,0.750000,0.500000,2,1,4");
}

fn run_of(rule: &'static str, attack: Option<Attack>, seed: u64, accuracy: f64) -> Cell {
    let skipped_mixes = if seed == 7 && attack.is_some() { 3 } else { 0 };
    Cell {
        skipped_mixes,
        rule,
        attack,
        seed,
        accuracy,
        worst: accuracy - 0.1,
        bans_of_byzantine: 0,
        bans_of_honest: 0,
    }
}

/// Several seeds: a cell shows the mean ± the sample standard deviation and the worst seed;
/// a row that did not run is left out; the checks need the defaults and the mean rows.
#[test]
fn several_seeds_show_mean_deviation_and_worst_seed() {
    let flip = Some(Attack::SignFlip);
    let mut cells = Vec::new();
    for (seed, none, flipped) in [(6, 0.90, 0.80), (7, 0.92, 0.84)] {
        cells.push(run_of(DEFAULT_ROW, None, seed, none));
        cells.push(run_of(DEFAULT_ROW, flip.clone(), seed, flipped));
    }
    let table = markdown(&cells);
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("| {DEFAULT_ROW} |")))
        .unwrap();
    // sd of (90, 92) is sqrt(2) = 1.41.
    assert!(
        row.starts_with(&format!(
            "| {DEFAULT_ROW} | 91.0 ± 1.4 (90.0) | 82.0 ± 2.8 (80.0) [3 skipped] |"
        )),
        "{row}"
    );
    assert!(!table.contains("| mean |"), "{table}");
    assert!(table.starts_with("**Model attacks**\n\n| rule | none | sign-flip |"));
    cells.push(run_of(
        DEFAULT_ROW,
        Some("min-max".parse().unwrap()),
        6,
        0.7,
    ));
    let grouped = markdown(&cells);
    assert!(grouped.contains("\n**Adaptive attacks**\n\n| rule | none | min-max |\n"));
    assert!(!grouped.contains("Protocol attacks"), "{grouped}");
    let base = Scenario::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sim/robustness.toml"),
    )
    .unwrap();
    let section = section(&base, &cells, "cmd");
    assert!(section.contains("seeds 6, 7;"), "{section}");
    assert!(!section.contains("target"), "{section}");
    let plan = Plan {
        seeds: vec![6, 7],
        rows: Some(vec!["Default".into(), "cs+".into()]),
        columns: Some(vec!["Adaptive".into(), "alie (".into()]),
    };
    let columns: Vec<String> = plan.attacks().unwrap().iter().map(column).collect();
    assert_eq!(
        columns,
        [
            "alie (z=1)",
            "alie (z=3)",
            "min-max",
            "min-sum",
            "opt-alie",
            "opt-ipm"
        ]
    );
    let bad = Plan {
        columns: Some(vec!["sybil".into()]),
        ..plan.clone()
    };
    assert!(bad.attacks().unwrap_err().contains("`sybil`"));
    assert_eq!(
        plan.labels().unwrap(),
        vec!["CS+-RG (f=1)", "CS+-RG (f=1) + screen", DEFAULT_ROW]
    );
    let whole = Plan {
        rows: Some(vec!["MEAN".into(), "median +".into()]),
        ..plan.clone()
    };
    assert_eq!(whole.labels().unwrap(), vec!["mean", "median + screen"]);
    let bad = Plan {
        rows: Some(vec!["krum2".into()]),
        ..plan
    };
    assert!(bad.labels().unwrap_err().contains("`krum2`"));
}

#[test]
fn splice_replaces_only_the_marked_section() {
    let old = format!(
        "# Results\nintro\n{}\nold\n{}\nafter\n",
        MARKERS.0, MARKERS.1
    );
    let base = Scenario::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sim/robustness.toml"),
    )
    .unwrap();
    let new = splice(&base, &old, &format!("{}\nnew\n{}\n", MARKERS.0, MARKERS.1));
    assert!(new.contains("new") && !new.contains("old"));
    assert!(new.starts_with("# Results\nintro\n") && new.ends_with("after\n"));
    assert!(splice(&base, "x\n", "S\n").ends_with("S\n"));
    // Another setting has a section of its own, beside the first.
    let other = Scenario {
        name: "robustness-dir01".into(),
        ..base.clone()
    };
    let (begin, end) = markers(&other);
    assert_eq!(begin, "<!-- robustness:robustness-dir01:begin -->");
    let both = splice(&other, &new, &format!("{begin}\nmine\n{end}\n"));
    assert!(both.contains("new") && both.contains("mine"), "{both}");
}

/// The attackers of every cell have the powers of the base scenario's first group (free timing
/// and omniscience here), except that label flipping, being training, keeps its timing; the
/// table's header says which powers they had.
#[test]
fn cells_carry_the_base_scenarios_attacker_powers() {
    let mut base = Scenario::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sim/robustness.toml"),
    )
    .unwrap();
    let row = table_rows().last().expect("the default row");
    let plain = cell_scenario(&base, &row, Some(&Attack::SignFlip));
    assert!(!plain.attackers[0].free_timing && plain.attackers[0].knowledge.is_own());
    assert_eq!(powers_text(&base), "");
    base.attackers[0].free_timing = true;
    base.attackers[0].knowledge = murmur_protocol::attack::Knowledge::Omniscient;
    base.attackers[0].identities = 3;
    base.attackers[0].aim = murmur_protocol::attack::Aim::Victim;
    base.attackers[0].hog = true;
    base.attackers[0].hog_in_turn = true;
    let s = cell_scenario(&base, &row, Some(&Attack::OptAlie));
    assert!(s.attackers[0].free_timing);
    assert_eq!(s.attackers[0].aim, murmur_protocol::attack::Aim::Victim);
    assert_eq!(
        s.attackers[0].knowledge,
        murmur_protocol::attack::Knowledge::Omniscient
    );
    assert_eq!(s.attackers[0].identities, 3);
    assert!(s.attackers[0].hog && s.attackers[0].hog_in_turn);
    s.validate().unwrap();
    let flip = cell_scenario(&base, &row, Some(&Attack::LabelFlip));
    assert!(!flip.attackers[0].free_timing, "label flipping is training");
    assert_eq!(
        powers_text(&base),
        " The attackers are omniscient, forge from each asker's model and its honest \
         neighbours', skip training (free timing; not under label-flip, which is training), hog \
         the honest uplinks (ask every peer for its next round, each identity of a process in its \
         turn) and run 3 identities per process (Sybil: one uplink and one CPU each)."
    );
}

/// The header says how many rounds the cells run, the rounds of mixing alone included; the
/// Dirichlet(0.1) setting has 20 of them, and every cell keeps them.
#[test]
fn the_header_counts_the_rounds_of_mixing_alone() {
    let load = |name: &str| {
        Scenario::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../configs/sim")
                .join(name),
        )
        .unwrap()
    };
    assert_eq!(rounds_text(&load("robustness-sparse.toml")), "100 rounds");
    let base = load("robustness-dir01.toml");
    assert_eq!(rounds_text(&base), "100 rounds and 20 more of mixing alone");
    let row = table_rows().last().expect("the default row");
    let cell = cell_scenario(&base, &row, Some(&Attack::SignFlip));
    assert_eq!(cell.engine.final_mix_rounds, 20);
}

/// An attack that ran at several strengths has a column per strength, beside its default, and
/// a cell in the "Strongest strength" table at the strength whose seed-mean accuracy is lowest,
/// row by row; an attack that ran at one strength has none there.
#[test]
fn the_strongest_strength_of_each_swept_attack_is_shown() {
    let alie = |z: Option<f64>| Some(Attack::Alie { z });
    let mut cells = Vec::new();
    for (seed, shift) in [(6, 0.0), (7, 0.02)] {
        cells.push(run_of(DEFAULT_ROW, None, seed, 0.90 + shift));
        cells.push(run_of(DEFAULT_ROW, alie(None), seed, 0.89 + shift));
        cells.push(run_of(DEFAULT_ROW, alie(Some(1.0)), seed, 0.85 + shift));
        cells.push(run_of(DEFAULT_ROW, alie(Some(3.0)), seed, 0.87 + shift));
        cells.push(run_of("mean", None, seed, 0.91 + shift));
        cells.push(run_of("mean", alie(Some(3.0)), seed, 0.40 + shift));
        cells.push(run_of(DEFAULT_ROW, Some(Attack::SignFlip), seed, 0.5));
    }
    let table = markdown(&cells);
    assert!(
        table.contains("| rule | none | sign-flip | alie | alie (z=1) | alie (z=3) |"),
        "{table}"
    );
    let strongest = &table[table.find("**Strongest strength**").expect(&table)..];
    assert!(
        strongest.contains("| rule | none | alie |\n"),
        "{strongest}"
    );
    assert!(
        strongest.contains(&format!(
            "| {DEFAULT_ROW} | 91.0 ± 1.4 (90.0) | 86.0 ± 1.4 (85.0) [3 skipped] at z=1 |"
        )),
        "{strongest}"
    );
    // The mean ran ALIE at z = 3 alone: that is its worst.
    assert!(
        strongest.contains("| mean | 92.0 ± 1.4 (91.0) | 41.0 ± 1.4 (40.0) [3 skipped] at z=3 |"),
        "{strongest}"
    );
    assert!(!strongest.contains("sign-flip"), "{strongest}");
}
