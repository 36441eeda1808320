//! What a run executes: the protocol, or a reference it is measured against.

use serde::{Deserialize, Serialize};

/// What a run executes. Every method trains the same nodes (same shards, initial model, trainer
/// seeds, speeds) with the same local steps per round; they differ in how models are combined
/// and in what that costs on the link model.
///
/// ```toml
/// method = "protocol"            # murmur's asynchronous engines (the default)
/// method = "synchronous"         # D-PSGD with a global barrier; Epidemic Learning on `sample`
/// method = "parameter-server"    # FedAvg: a server averages every model each round
/// method = "robust-parameter-server"  # the same, the server mixing with `engine.aggregation`
/// method = "all-reduce"          # exact averaging by ring all-reduce
/// ```
///
/// The reference methods (all but `protocol`) run the honest nodes only: the attackers' nodes
/// do not run, so a reference is the attack-free baseline of the same honest nodes. They have no
/// churn, splits or losses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// murmur's engines: asynchronous rounds, the configured rule, the link model's delays.
    #[default]
    Protocol,
    /// Synchronous decentralized SGD: every round every node takes its local steps, sends its
    /// model to its out-neighbours, and after a global barrier replaces its model by the mix of
    /// its own and its in-neighbours' (adapt then combine). On a fixed graph the mix uses
    /// Metropolis-Hastings weights (uniform weights on a directed graph whose uniform matrix is
    /// doubly stochastic, such as the exponential graph of a power of two); on `sample` it is
    /// Epidemic Learning (de Vos et al. 2023): each node sends to `s` peers drawn afresh from
    /// its connections and averages its own model with what it received, all weights equal.
    Synchronous,
    /// A parameter server (FedAvg with equal weights: every node takes the same number of
    /// local steps): the server averages the trained models and sends the average back. The
    /// server is one more host of the link model, with the same uplink as a node.
    ParameterServer,
    /// A parameter server that mixes with the scenario's `engine.aggregation` rule (around its
    /// previous model, for the rules that use one) instead of the mean.
    RobustParameterServer,
    /// Ring all-reduce: every node ends the round with the exact average. The link model charges
    /// the ring's 2(n-1) steps of one n-th of the model each, in lockstep.
    AllReduce,
}

impl Method {
    /// Every method's name, as written in scenarios and on the command line.
    pub const NAMES: [&str; 5] = [
        "protocol",
        "synchronous",
        "parameter-server",
        "robust-parameter-server",
        "all-reduce",
    ];

    /// Whether this is the default, the protocol.
    pub fn is_protocol(&self) -> bool {
        *self == Method::Protocol
    }

    /// The name, as in scenarios.
    pub fn name(self) -> &'static str {
        match self {
            Method::Protocol => Self::NAMES[0],
            Method::Synchronous => Self::NAMES[1],
            Method::ParameterServer => Self::NAMES[2],
            Method::RobustParameterServer => Self::NAMES[3],
            Method::AllReduce => Self::NAMES[4],
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Method, String> {
        [
            Method::Protocol,
            Method::Synchronous,
            Method::ParameterServer,
            Method::RobustParameterServer,
            Method::AllReduce,
        ]
        .into_iter()
        .find(|m| m.name() == s)
        .ok_or_else(|| {
            format!(
                "unknown method `{s}`: expected one of {}",
                Method::NAMES.join(", ")
            )
        })
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
