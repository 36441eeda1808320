//! Checks of every value of a scenario that serde's types do not check, naming the first bad key.

use super::{Latency, Scenario, ScenarioError, Speed};
use murmur_protocol::engine;

fn bad<T>(key: &str, value: impl std::fmt::Display, why: &str) -> Result<T, ScenarioError> {
    Err(ScenarioError::Value {
        key: key.to_owned(),
        value: value.to_string(),
        why: why.to_owned(),
    })
}

impl Scenario {
    /// Checks every value that serde's types do not, naming the first bad key: the scenario's
    /// own tables, and the `[engine]` and `[learning]` tables as a node checks them. What needs
    /// the data (the model's fit to its shape) is checked when the run is built.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let table = |table, e: &dyn std::fmt::Display| ScenarioError::Table {
            table,
            message: e.to_string(),
        };
        // As the nodes run it: with the scenario's rounds.
        let engine = engine::Config {
            rounds: self.rounds,
            ..self.engine.clone()
        };
        engine.validate().map_err(|e| table("engine", &e))?;
        self.learning.check().map_err(|e| table("learning", &e))?;
        if self.nodes == 0 {
            return bad("nodes", self.nodes, "must be at least 1");
        }
        match (self.rounds, self.duration_ms) {
            (None, None) => return bad("rounds", "unset", "set `rounds` or `duration-ms`"),
            (Some(0), _) => return bad("rounds", 0, "must be at least 1"),
            (_, Some(d)) if !(d.is_finite() && d > 0.0) => {
                return bad("duration-ms", d, "must be finite and > 0");
            }
            _ => {}
        }
        let f = self.byzantine();
        let mut taken = vec![false; self.nodes];
        for (g, a) in self.attackers.iter().enumerate() {
            match (&a.attack, a.absent) {
                (Some(attack), false) => attack.validate().map_err(|e| ScenarioError::Value {
                    key: format!("attackers[{g}].attack"),
                    value: attack.name().into(),
                    why: e.to_string(),
                })?,
                (None, false) => {
                    return bad(
                        &format!("attackers[{g}].attack"),
                        "missing",
                        "a group of attackers needs an attack, unless it is `absent = true`",
                    );
                }
                (Some(attack), true) => {
                    return bad(
                        &format!("attackers[{g}].attack"),
                        attack.name(),
                        "absent nodes never run: give no attack with `absent = true`",
                    );
                }
                (None, true) => {}
            }
            if !a.aim.is_all() && a.knowledge.is_own() {
                return bad(
                    &format!("attackers[{g}].aim"),
                    "victim",
                    "aiming at each asker needs knowledge beyond `own` (forgeries are then made \
                     for each asker): set `knowledge = \"colluding\"` or `\"omniscient\"`",
                );
            }
            let size = a.nodes.as_ref().map_or(a.count, Vec::len);
            if a.identities == 0 || !size.is_multiple_of(a.identities) {
                return bad(
                    &format!("attackers[{g}].identities"),
                    a.identities,
                    "must be at least 1 and divide the group's nodes (each process holds that \
                     many of them)",
                );
            }
            if a.hog_in_turn && !(a.hog && a.identities > 1) {
                return bad(
                    &format!("attackers[{g}].hog-in-turn"),
                    true,
                    "is how the identities of a Sybil process take turns hogging: it needs \
                     `hog = true` and `identities` above 1",
                );
            }
            for &i in a.nodes.iter().flatten() {
                if i >= self.nodes {
                    return bad(&format!("attackers[{g}].nodes"), i, "is not a node index");
                }
                if std::mem::replace(&mut taken[i], true) {
                    return bad(&format!("attackers[{g}].nodes"), i, "is listed twice");
                }
            }
        }
        if f >= self.nodes {
            return bad("attackers", f, "leave at least one honest node");
        }
        let c = &self.compute;
        if !(c.step_ms.is_finite() && c.step_ms >= 0.0) {
            return bad("compute.step-ms", c.step_ms, "must be finite and >= 0");
        }
        match c.speed {
            Speed::Fixed {} => {}
            Speed::Uniform { min, max } => {
                if !(min.is_finite() && max.is_finite() && min > 0.0 && max >= min) {
                    return bad(
                        "compute.speed",
                        format!("[{min}, {max}]"),
                        "need 0 < min <= max",
                    );
                }
            }
            Speed::Lognormal { sigma } => {
                if !(sigma.is_finite() && sigma >= 0.0) {
                    return bad("compute.speed.sigma", sigma, "must be finite and >= 0");
                }
            }
        }
        if let Some(s) = c.stragglers {
            if !(0.0..=1.0).contains(&s.fraction) {
                return bad(
                    "compute.stragglers.fraction",
                    s.fraction,
                    "must be in [0, 1]",
                );
            }
            if !(s.slowdown.is_finite() && s.slowdown >= 1.0) {
                return bad("compute.stragglers.slowdown", s.slowdown, "must be >= 1");
            }
        }
        self.validate_network()?;
        self.validate_churn()?;
        self.validate_method()?;
        let e = &self.eval;
        if e.every_rounds == Some(0) {
            return bad("eval.every-rounds", 0, "must be at least 1");
        }
        if let Some(s) = e.every_ms
            && !(s.is_finite() && s > 0.0)
        {
            return bad("eval.every-ms", s, "must be finite and > 0");
        }
        if e.test_samples == Some(0) {
            return bad("eval.test-samples", 0, "must be at least 1");
        }
        Ok(())
    }

    fn validate_network(&self) -> Result<(), ScenarioError> {
        let n = &self.network;
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        match n.latency {
            Latency::Fixed { ms } if !ok(ms) => {
                return bad("network.latency.ms", ms, "must be finite and >= 0");
            }
            Latency::Uniform { min_ms, max_ms }
                if !(ok(min_ms) && ok(max_ms) && max_ms >= min_ms) =>
            {
                return bad(
                    "network.latency",
                    format!("[{min_ms}, {max_ms}]"),
                    "need 0 <= min-ms <= max-ms",
                );
            }
            Latency::Lognormal { median_ms, sigma } if !(ok(median_ms) && ok(sigma)) => {
                return bad(
                    "network.latency",
                    format!("median-ms {median_ms}, sigma {sigma}"),
                    "must be finite and >= 0",
                );
            }
            _ => {}
        }
        if let Some(b) = n.bandwidth_mbps
            && !(b.is_finite() && b > 0.0)
        {
            return bad("network.bandwidth-mbps", b, "must be finite and > 0");
        }
        if !(0.0..1.0).contains(&n.loss) {
            return bad("network.loss", n.loss, "must be in [0, 1)");
        }
        if n.max_connections == 0 {
            return bad("network.max-connections", 0, "must be at least 1");
        }
        for (k, p) in n.splits.iter().enumerate() {
            let key = |f: &str| format!("network.splits[{k}].{f}");
            if !ok(p.start_ms) {
                return bad(&key("start-ms"), p.start_ms, "must be finite and >= 0");
            }
            if !(p.heal_ms.is_finite() && p.heal_ms > p.start_ms) {
                return bad(&key("heal-ms"), p.heal_ms, "must be after start-ms");
            }
            if p.sides < 2 || p.sides > self.nodes {
                return bad(&key("sides"), p.sides, "must be in 2..=nodes");
            }
        }
        Ok(())
    }

    /// The reference methods model an ideal network and a fixed set of nodes.
    fn validate_method(&self) -> Result<(), ScenarioError> {
        if self.method.is_protocol() {
            return Ok(());
        }
        let why = |what: &str| -> Result<(), ScenarioError> {
            bad(
                "method",
                self.method,
                &format!("a reference method runs a fixed set of nodes on lossless links: {what}"),
            )
        };
        let c = &self.churn;
        if c.joiners > 0 || c.leave_fraction > 0.0 {
            return why("remove the [churn] table");
        }
        if !self.network.splits.is_empty() {
            return why("remove network.splits");
        }
        if self.network.loss > 0.0 {
            return why("set network.loss to 0");
        }
        Ok(())
    }

    fn validate_churn(&self) -> Result<(), ScenarioError> {
        let c = &self.churn;
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !(0.0..=1.0).contains(&c.leave_fraction) {
            return bad(
                "churn.leave-fraction",
                c.leave_fraction,
                "must be in [0, 1]",
            );
        }
        if !(ok(c.leave_from_ms) && ok(c.leave_until_ms) && c.leave_until_ms >= c.leave_from_ms) {
            return bad(
                "churn.leave-until-ms",
                c.leave_until_ms,
                "need 0 <= leave-from-ms <= leave-until-ms",
            );
        }
        if !ok(c.downtime_ms) {
            return bad(
                "churn.downtime-ms",
                c.downtime_ms,
                "must be finite and >= 0",
            );
        }
        if !ok(c.join_ms) {
            return bad("churn.join-ms", c.join_ms, "must be finite and >= 0");
        }
        if c.joiners + self.byzantine() >= self.nodes {
            return bad(
                "churn.joiners",
                c.joiners,
                "leave at least one honest node at the start",
            );
        }
        Ok(())
    }
}
