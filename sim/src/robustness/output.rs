//! The table's outputs: the cells summarized over their seeds, as Markdown (one table per
//! group of columns, and the strongest strengths), the generated section with the checks of the
//! targets, CSV, and splicing a section into a Markdown file.

use super::*;

/// A cell over its seeds, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    /// Mean over the seeds of the honest mean accuracy.
    mean: f64,
    /// Its sample standard deviation over the seeds (0 with one seed).
    sd: f64,
    /// The lowest seed's honest mean accuracy.
    worst_seed: f64,
    /// The worst honest node over every seed.
    worst_node: f64,
    /// Mixes skipped by honest nodes, summed over the seeds.
    skipped: u64,
}

impl Summary {
    /// As a cell shows it: with several seeds the mean ± the standard deviation and the worst
    /// seed in parentheses, with one the accuracy and the worst node; then the skipped mixes,
    /// if any, in brackets.
    fn show(&self, several: bool) -> String {
        let mut s = if several {
            format!("{:.1} ± {:.1} ({:.1})", self.mean, self.sd, self.worst_seed)
        } else {
            format!("{:.1} ({:.1})", self.mean, self.worst_node)
        };
        if self.skipped > 0 {
            let _ = write!(s, " [{} skipped]", self.skipped);
        }
        s
    }
}

fn summarize(cells: &[Cell], rule: &str, attack: Option<&Attack>) -> Option<Summary> {
    let runs: Vec<&Cell> = cells
        .iter()
        .filter(|c| c.rule == rule && c.attack.as_ref() == attack)
        .collect();
    if runs.is_empty() {
        return None;
    }
    let n = runs.len() as f64;
    let mean = runs.iter().map(|c| c.accuracy).sum::<f64>() / n;
    let sd = if runs.len() > 1 {
        (runs
            .iter()
            .map(|c| (c.accuracy - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0))
            .sqrt()
    } else {
        0.0
    };
    let min = |f: fn(&Cell) -> f64| runs.iter().map(|c| f(c)).fold(f64::INFINITY, f64::min);
    Some(Summary {
        mean: 100.0 * mean,
        sd: 100.0 * sd,
        worst_seed: 100.0 * min(|c| c.accuracy),
        worst_node: 100.0 * min(|c| c.worst),
        skipped: runs.iter().map(|c| c.skipped_mixes).sum(),
    })
}

/// The distinct seeds of the cells, in run order.
fn seeds(cells: &[Cell]) -> Vec<u64> {
    let mut seeds: Vec<u64> = Vec::new();
    for c in cells {
        if !seeds.contains(&c.seed) {
            seeds.push(c.seed);
        }
    }
    seeds
}

/// The Markdown tables, one per [`Group`] of columns that ran: a row per rule, a column per
/// attack after the "none" baseline, honest mean accuracy in percent; with one seed the worst
/// node in parentheses, with several the mean ± the standard deviation over the seeds and the
/// worst seed in parentheses; then, in brackets, the mixes honest nodes skipped because the rule
/// had too few inputs (over every seed), when there were any. Last, for the attacks that ran at
/// several strengths, each row at its worst strength (`strongest`).
pub fn markdown(cells: &[Cell]) -> String {
    let ran: Vec<Attack> = attacks()
        .into_iter()
        .filter(|a| cells.iter().any(|c| c.attack.as_ref() == Some(a)))
        .collect();
    let mut groups: Vec<(Option<Group>, Vec<&Attack>)> = Group::ALL
        .iter()
        .map(|&g| (Some(g), ran.iter().filter(|a| group(a) == g).collect()))
        .filter(|(_, columns): &(_, Vec<_>)| !columns.is_empty())
        .collect();
    if groups.is_empty() {
        groups.push((None, Vec::new()));
    }
    let several = seeds(cells).len() > 1;
    let mut s = String::new();
    for (g, attacks) in groups {
        if let Some(g) = g {
            if !s.is_empty() {
                s.push('\n');
            }
            let _ = writeln!(s, "**{}**\n", g.title());
        }
        s.push_str("| rule | none |");
        for a in &attacks {
            let _ = write!(s, " {} |", column(a));
        }
        s.push_str("\n|---|---|");
        for _ in &attacks {
            s.push_str("---|");
        }
        s.push('\n');
        let columns: Vec<Option<&Attack>> = std::iter::once(None)
            .chain(attacks.iter().copied().map(Some))
            .collect();
        for label in rows().filter(|l| cells.iter().any(|c| c.rule == *l)) {
            let _ = write!(s, "| {label} |");
            for attack in &columns {
                match summarize(cells, label, *attack) {
                    Some(m) => {
                        let _ = write!(s, " {} |", m.show(several));
                    }
                    None => s.push_str(" |"),
                }
            }
            s.push('\n');
        }
    }
    s.push_str(&strongest(cells, &ran, several));
    s
}

/// The table of the strongest strengths: for each attack that ran at more than one strength
/// ([`sweep`]), each row's cell at the strength whose mean accuracy over the seeds is lowest,
/// and that strength. Empty when no attack ran at two strengths.
fn strongest(cells: &[Cell], ran: &[Attack], several: bool) -> String {
    let swept = |name: &str| -> Vec<&Attack> {
        ran.iter()
            .filter(|a| a.name() == name && strength(a).is_some())
            .collect()
    };
    let families: Vec<&str> = murmur_protocol::attack::NAMES
        .iter()
        .copied()
        .filter(|name| swept(name).len() > 1)
        .collect();
    if families.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n**Strongest strength** (each attack at the strength, of those above, whose mean \
         accuracy over the seeds is lowest for the row)\n\n| rule | none |",
    );
    for f in &families {
        let _ = write!(s, " {f} |");
    }
    s.push_str("\n|---|---|");
    for _ in &families {
        s.push_str("---|");
    }
    s.push('\n');
    for label in rows().filter(|l| cells.iter().any(|c| c.rule == *l)) {
        let _ = write!(s, "| {label} |");
        match summarize(cells, label, None) {
            Some(m) => {
                let _ = write!(s, " {} |", m.show(several));
            }
            None => s.push_str(" |"),
        }
        for f in &families {
            let worst = swept(f)
                .into_iter()
                .filter_map(|a| summarize(cells, label, Some(a)).map(|m| (a, m)))
                .min_by(|x, y| x.1.mean.total_cmp(&y.1.mean));
            match worst {
                Some((a, m)) => {
                    let at = strength(a).expect("a swept attack has a strength");
                    let _ = write!(s, " {} at {at} |", m.show(several));
                }
                None => s.push_str(" |"),
            }
        }
        s.push('\n');
    }
    s
}

/// Start and end markers of the generated section in a Markdown file.
/// Those of the scenario named `robustness`; another base scenario's section is marked with its
/// name ([`markers`]), so a document can hold one table per setting.
pub const MARKERS: (&str, &str) = ("<!-- robustness:begin -->", "<!-- robustness:end -->");

/// The start and end markers of `base`'s section: [`MARKERS`] for the scenario named
/// `robustness`, `<!-- robustness:NAME:begin -->` and `...:end -->` for any other.
pub fn markers(base: &Scenario) -> (String, String) {
    if base.name == "robustness" {
        (MARKERS.0.to_owned(), MARKERS.1.to_owned())
    } else {
        (
            format!("<!-- robustness:{}:begin -->", base.name),
            format!("<!-- robustness:{}:end -->", base.name),
        )
    }
}

/// The generated section: how it was made, the table, and the checks of the targets.
pub fn section(base: &Scenario, cells: &[Cell], command: &str) -> String {
    let mut s = String::new();
    let marks = markers(base);
    let _ = writeln!(s, "{}", marks.0);
    let seeds = seeds(cells);
    let (seed_text, reading) = match seeds.as_slice() {
        [one] => (
            format!("seed {one}"),
            "the honest nodes' mean test accuracy (%) after the last round, the worst honest \
             node in parentheses, and in brackets the mixes honest nodes skipped because the \
             rule had too few inputs",
        ),
        many => (
            format!(
                "seeds {}",
                many.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "the honest nodes' mean test accuracy (%) after the last round, as the mean ± the \
             standard deviation over the seeds, the worst seed's in parentheses, and in brackets \
             the mixes honest nodes skipped because the rule had too few inputs",
        ),
    };
    let _ = writeln!(
        s,
        "Generated by `{command}`: {} nodes, {} of them Byzantine, {}, {seed_text}; \
         {reading}. In the \"none\" column the attackers are absent (their nodes never run). \
         The first rows run each rule alone (`outlier-factor = 0`), the rows \"+ screen\" the \
         same rule behind the engine's outlier screen, the last the engine's defaults.{}\n",
        base.nodes,
        base.byzantine(),
        rounds_text(base),
        powers_text(base),
    );
    s.push_str(&markdown(cells));
    let acc = |rule: &str, attack: Option<&Attack>| {
        summarize(cells, rule, attack).map_or(f64::NAN, |m| m.mean)
    };
    let default = DEFAULT_ROW;
    if acc(default, None).is_nan() || acc("mean", None).is_nan() {
        // The checks compare the defaults with the plain mean: a table of some rows has none.
        let _ = writeln!(s, "{}", marks.1);
        return s;
    }
    let base_default = acc(default, None);
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    let worst = |set: &[Attack]| {
        set.iter()
            .map(|a| (column(a), base_default - acc(default, Some(a))))
            .fold((String::new(), f64::NEG_INFINITY), |m, x| {
                if x.1 > m.1 { x } else { m }
            })
    };
    // Only the columns that ran for the defaults.
    let swept = sweep();
    let ran = |a: &Attack| !acc(default, Some(a)).is_nan();
    let all: Vec<Attack> = attacks().into_iter().filter(|a| ran(a)).collect();
    let (kinds, extra): (Vec<Attack>, Vec<Attack>) =
        all.iter().cloned().partition(|a| !swept.contains(a));
    let (name, drop) = worst(&kinds);
    let _ = writeln!(
        s,
        "\n- {default}: largest drop from its no-attack accuracy ({base_default:.1}%) over the \
         {} attacks with their default parameters is {drop:.1} points, under {name}: target at \
         most 2 points, **{}**.",
        kinds.len(),
        verdict(drop <= 2.0)
    );
    for a in &extra {
        let drop = base_default - acc(default, Some(a));
        let _ = writeln!(
            s,
            "- {default} under {}: drops {drop:.1} points: target at most 2, **{}**.",
            column(a),
            verdict(drop <= 2.0)
        );
    }
    let bans =
        |of: fn(&Cell) -> u64| -> u64 { cells.iter().filter(|c| c.rule == default).map(of).sum() };
    let _ = writeln!(
        s,
        "- {default}: honest nodes ended with {} bans of Byzantine peers (of {} possible, \
         summed over the attack columns) and {} bans of honest peers.",
        bans(|c| c.bans_of_byzantine),
        all.len() * seeds.len() * base.byzantine() * (base.nodes - base.byzantine()),
        bans(|c| c.bans_of_honest),
    );
    let base_mean = acc("mean", None);
    let mut hit = Vec::new();
    for a in all
        .iter()
        .filter(|a| matches!(a.name(), "alie" | "ipm" | "sign-flip"))
    {
        let drop = base_mean - acc("mean", Some(a));
        if drop >= 20.0 {
            hit.push(column(a));
        }
        let _ = writeln!(
            s,
            "- mean under {}: loses {drop:.1} points from {base_mean:.1}%.",
            column(a)
        );
    }
    let _ = writeln!(
        s,
        "- the plain mean loses at least 20 points under ALIE, IPM or sign flip: **{}** ({}).",
        verdict(!hit.is_empty()),
        if hit.is_empty() {
            "none".to_owned()
        } else {
            hit.join(", ")
        }
    );
    let _ = writeln!(s, "{}", marks.1);
    s
}

/// The runs as CSV: one line per cell and seed with the rule, the attack (`none` without), the
/// seed, the honest nodes' mean and worst accuracy in [0, 1], and the bans by honest nodes of
/// Byzantine and of honest peers.
pub fn csv(cells: &[Cell]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "rule",
        "attack",
        "seed",
        "accuracy",
        "worst",
        "bans_of_byzantine",
        "bans_of_honest",
        "skipped_mixes",
    ])?;
    for c in cells {
        w.write_record([
            c.rule.to_owned(),
            c.attack.as_ref().map_or("none".to_owned(), column),
            c.seed.to_string(),
            format!("{:.6}", c.accuracy),
            format!("{:.6}", c.worst),
            c.bans_of_byzantine.to_string(),
            c.bans_of_honest.to_string(),
            c.skipped_mixes.to_string(),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("the fields are UTF-8"))
}

/// `text` with `base`'s section ([`markers`]) replaced by `section` (appended if absent).
pub fn splice(base: &Scenario, text: &str, section: &str) -> String {
    let (begin, end) = markers(base);
    splice_between(text, section, (&begin, &end))
}

/// `text` with the section between `markers` replaced by `section` (appended if absent).
pub(crate) fn splice_between(text: &str, section: &str, markers: (&str, &str)) -> String {
    match (text.find(markers.0), text.find(markers.1)) {
        (Some(a), Some(b)) if b > a => {
            let end = b + markers.1.len();
            let rest = text[end..].strip_prefix('\n').unwrap_or(&text[end..]);
            format!("{}{}{}", &text[..a], section, rest)
        }
        _ => format!("{text}\n{section}"),
    }
}
