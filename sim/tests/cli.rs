//! `murmur-sim` from the command line: `run` writes its outputs, refuses a folder that holds
//! other files unless told to overwrite, and names the file and key of a bad scenario; `bench`
//! takes several measurements when asked and prints their spread.

use std::process::Command;

const SCENARIO: &str = r#"
name = "cli"
seed = 2
nodes = 4
rounds = 2
[learning]
model = { kind = "logistic-regression" }
local-steps = 2
"#;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_murmur-sim"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_writes_its_outputs_and_refuses_a_used_folder_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli.toml");
    std::fs::write(&config, SCENARIO).unwrap();
    let out = dir.path().join("out");
    let (config, out_arg) = (config.to_str().unwrap(), out.to_str().unwrap());
    let first = run(&["run", config, "--out", out_arg, "--quiet"]);
    assert!(first.status.success(), "{first:?}");
    for name in [
        "rounds.csv",
        "timing.csv",
        "summary.json",
        "plot.svg",
        "scenario.toml",
    ] {
        assert!(out.join(name).is_file(), "{name}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["rejected"]["bad_signature"], 0,
        "counts named by reason"
    );

    let again = run(&["run", config, "--out", out_arg, "--quiet"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(
        stderr.contains(out_arg) && stderr.contains("--overwrite"),
        "{stderr}"
    );
    let forced = run(&["run", config, "--out", out_arg, "--quiet", "--overwrite"]);
    assert!(forced.status.success(), "{forced:?}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, format!("{SCENARIO}[engine]\nfanout = 0\n")).unwrap();
    let refused = run(&["run", bad.to_str().unwrap(), "--quiet"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("bad.toml") && stderr.contains("`engine`") && stderr.contains("`fanout`"),
        "{stderr}"
    );
}

#[test]
fn compare_tables_methods_over_seeds_and_splices_its_section() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli.toml");
    std::fs::write(&config, SCENARIO).unwrap();
    let doc = dir.path().join("results.md");
    std::fs::write(
        &doc,
        "# Results\n\n<!-- compare:cli:begin -->\nold\n<!-- compare:cli:end -->\nafter\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let done = run(&[
        "compare",
        config.to_str().unwrap(),
        "--methods",
        "protocol,all-reduce",
        "--rule",
        r#"rule = "trimmed-mean", f = 1"#,
        "--seeds",
        "1-2",
        "--out",
        out.to_str().unwrap(),
        "--splice",
        doc.to_str().unwrap(),
    ]);
    assert!(done.status.success(), "{done:?}");
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("| cli / protocol, trimmed-mean(f=1) |"), "{md}");
    assert!(md.contains("| cli / all-reduce |"), "{md}");
    let csv = std::fs::read_to_string(out.join("compare.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 2 * 2,
        "a header and one line per run: {csv}"
    );
    let spliced = std::fs::read_to_string(&doc).unwrap();
    assert!(
        !spliced.contains("old")
            && spliced.contains("| cli / all-reduce |")
            && spliced.ends_with("after\n"),
        "{spliced}"
    );

    // A reference method refuses what it cannot model, naming the key.
    let churn = dir.path().join("churn.toml");
    std::fs::write(&churn, format!("{SCENARIO}[churn]\njoiners = 1\n")).unwrap();
    let refused = run(&[
        "run",
        churn.to_str().unwrap(),
        "--method",
        "synchronous",
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("churn.toml")
            && stderr.contains("`method` = synchronous")
            && stderr.contains("[churn]"),
        "{stderr}"
    );
    let unknown = run(&["run", churn.to_str().unwrap(), "--method", "gossip"]);
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("unknown method `gossip`") && stderr.contains("all-reduce"),
        "{stderr}"
    );
}

/// A small robustness table over two seeds: one row, a few columns from two groups; run again
/// with the same cache, every run comes from it and the table is the same; a column that does
/// not exist is refused by name.
#[test]
fn robustness_runs_a_block_of_cells_and_resumes_from_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rob.toml");
    std::fs::write(
        &config,
        SCENARIO.replace("nodes = 4", "nodes = 6")
            + "[[attackers]]\ncount = 1\nattack = { kind = \"sign-flip\" }\n",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let table = |out: &str, columns: &str| {
        run(&[
            "robustness",
            config.to_str().unwrap(),
            "--seeds",
            "1-2",
            "--rows",
            "default",
            "--columns",
            columns,
            "--cache",
            cache.to_str().unwrap(),
            "--out",
            dir.path().join(out).to_str().unwrap(),
        ])
    };
    let first = table("a", "replay,adaptive");
    assert!(first.status.success(), "{first:?}");
    let stderr = String::from_utf8_lossy(&first.stderr);
    // none + replay + the four adaptive attacks, two seeds each.
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with('[') && l.contains(" in "))
            .count(),
        12,
        "{stderr}"
    );
    assert!(
        stderr.contains("[12/12]") && !stderr.contains("cached"),
        "{stderr}"
    );
    let md = std::fs::read_to_string(dir.path().join("a/robustness.md")).unwrap();
    assert!(
        md.contains("**Protocol attacks**")
            && md.contains("| rule | none | min-max | min-sum | opt-alie | opt-ipm |"),
        "{md}"
    );
    assert!(!md.contains("Model attacks"), "{md}");

    let again = table("b", "replay,adaptive");
    assert!(again.status.success(), "{again:?}");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.ends_with("cached")).count(),
        12,
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("b/robustness.md")).unwrap(),
        md
    );

    let bad = table("c", "sybil");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("`sybil`"),
        "{stderr}"
    );
}

#[test]
fn bench_takes_several_measurements_and_prints_their_spread() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli.toml");
    std::fs::write(&config, SCENARIO).unwrap();
    let config = config.to_str().unwrap();
    let args = ["bench", config, "--threads", "1", "--slice-ms", "20"];
    let out = run(&[&args[..], &["--runs", "3"]].concat());
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for k in 1..=3 {
        assert!(stdout.contains(&format!("run {k} of 3:")), "{stdout}");
    }
    for line in ["simulator, end to end:", "simulator, wall time:"] {
        assert_eq!(stdout.matches(line).count(), 3, "{stdout}");
    }
    assert_eq!(
        stdout.matches("of the trainers in turn").count(),
        3 * 2 + 2,
        "two ratios against the trainers in turn in each run, and their spreads: {stdout}"
    );
    assert!(
        stdout.contains("wall time over its training:"),
        "the spread of the wall time over the training: {stdout}"
    );
    // Least, median and greatest, in order, of the three end-to-end ratios printed above.
    let ratio = |line: &str| -> f64 {
        let at = line.find("= ").expect("a ratio") + 2;
        line[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut each: Vec<f64> = stdout
        .lines()
        .filter(|l| l.starts_with("simulator, end to end:"))
        .map(ratio)
        .collect();
    each.sort_by(f64::total_cmp);
    let spread = stdout
        .lines()
        .find(|l| l.contains("end to end, of standalone per core:"))
        .expect("the spread of the end-to-end ratio");
    let figures: Vec<f64> = spread
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .map(|v| v.trim().parse().unwrap())
        .collect();
    let close = |a: f64, b: f64| (a - b).abs() <= 0.0005;
    assert!(
        close(figures[0], each[0]) && close(figures[1], each[1]) && close(figures[2], each[2]),
        "{stdout}"
    );
    // With two threads, the training jobs and the whole run are also measured against one
    // standalone trainer per thread at once, in each run and in the spreads.
    let mut two = args;
    two[3] = "2";
    let two = run(&[&two[..], &["--runs", "2"]].concat());
    assert!(two.status.success(), "{two:?}");
    let two = String::from_utf8_lossy(&two.stdout);
    assert_eq!(
        two.matches("of standalone with every core busy").count(),
        2 * 2,
        "{two}"
    );
    for line in [
        "training jobs, with every core busy:",
        "end to end, with every core busy:",
    ] {
        assert_eq!(two.matches(line).count(), 1, "{two}");
    }
    // One measurement prints no spread; none is refused.
    let once = run(&args);
    assert!(once.status.success(), "{once:?}");
    assert!(!String::from_utf8_lossy(&once.stdout).contains("over "));
    let none = run(&[&args[..], &["--runs", "0"]].concat());
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("--runs"));
}
