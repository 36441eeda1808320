//! The learning half of a run's config, and its validation into typed values.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::optim::{self, LrSchedule, OptimError, Rule};
use crate::data::partition::PartitionError;
use crate::data::{self, DataError, Partition, Split};
use crate::model::{self, Arch, ModelError};

/// Which burn backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// burn's pure-Rust CPU backend (`Device::flex()`), the default.
    #[default]
    Flex,
    /// burn's ndarray CPU backend (deprecated upstream; needs the `ndarray` cargo feature).
    Ndarray,
    /// GPU through wgpu (needs the `wgpu` cargo feature).
    Wgpu,
    /// GPU through CUDA, device 0 (needs the `cuda` cargo feature).
    Cuda,
}

impl Backend {
    /// Every backend, for listing.
    pub const ALL: [Backend; 4] = [
        Backend::Flex,
        Backend::Ndarray,
        Backend::Wgpu,
        Backend::Cuda,
    ];

    /// Whether this binary was built with the backend.
    pub fn available(self) -> bool {
        match self {
            Backend::Flex => true,
            Backend::Ndarray => cfg!(feature = "ndarray"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The burn device (without autodiff).
    pub fn device(self) -> Result<Device, ConfigError> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            Backend::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => Err(ConfigError::Invalid {
                field: "backend",
                reason: format!(
                    "{} is not built into this binary (cargo feature {:?})",
                    other.name(),
                    other.name()
                ),
            }),
        }
    }

    /// The config name (`flex`, `ndarray`, `wgpu`, `cuda`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown backend {s:?} (flex, ndarray, wgpu, cuda)"))
    }
}

fn d_batch_size() -> usize {
    32
}

fn d_local_steps() -> usize {
    10
}

/// The learning part of a run's config:
///
/// ```toml
/// model = { kind = "mlp", hidden = [128] }
/// data = { kind = "digits" }
/// partition = { kind = "dirichlet", alpha = 0.5 }
/// optimizer = { kind = "sgd", lr = 0.05, momentum = 0.9, weight-decay = 0.0, schedule = "constant" }
/// batch-size = 32
/// local-steps = 10
/// outer = { lr = 0.7, momentum = 0.9, nesterov = true }   # DiLoCo's outer step; off when absent
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Spec {
    /// The model (required).
    pub model: model::Spec,
    /// The data (default: the embedded digits).
    #[serde(default)]
    pub data: data::Spec,
    /// How the training set is split across nodes (default IID).
    #[serde(default)]
    pub partition: Partition,
    /// The optimiser (default SGD, lr 0.05, momentum 0.9).
    #[serde(default)]
    pub optimizer: optim::Spec,
    /// Samples per local step (default 32).
    #[serde(default = "d_batch_size")]
    pub batch_size: usize,
    /// Local steps per round (default 10).
    #[serde(default = "d_local_steps")]
    pub local_steps: usize,
    /// The outer optimiser of local SGD (DiLoCo): the mix becomes an outer gradient applied
    /// with Nesterov momentum instead of replacing the model (default: off). See
    /// [`optim::Outer`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outer: Option<optim::Outer>,
    /// Backend (default flex).
    #[serde(default)]
    pub backend: Backend,
}

/// A learning config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A model setting.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// An optimiser setting.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// The data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The partition.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// Any other field.
    #[error("{field}: {reason}")]
    Invalid {
        /// The config field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A validated learning config.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The config it came from.
    pub spec: Spec,
    /// The model for the data's input shape and classes.
    pub arch: Arch,
    /// The optimiser's update rule.
    pub rule: Rule,
    /// The learning-rate schedule.
    pub schedule: LrSchedule,
    /// Samples per local step, >= 1.
    pub batch_size: usize,
    /// Local steps per round, >= 1.
    pub local_steps: usize,
    /// The outer optimiser, if any.
    pub outer: Option<optim::Outer>,
    /// The backend.
    pub backend: Backend,
}

impl Spec {
    /// Checks every value that can be checked without the data: sizes, the optimiser, the
    /// partition's parameters, the backend. (A config file is checked with this when it is
    /// read; the model's fit to the data when the data is loaded.)
    pub fn check(&self) -> Result<(), ConfigError> {
        self.model.check()?;
        self.partition.check()?;
        self.optimizer.validate()?;
        if let Some(outer) = &self.outer {
            outer.validate().map_err(|reason| ConfigError::Invalid {
                field: "outer",
                reason,
            })?;
        }
        for (field, v) in [
            ("batch-size", self.batch_size),
            ("local-steps", self.local_steps),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    field,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if !self.backend.available() {
            self.backend.device()?;
        }
        Ok(())
    }

    /// Validates every field against the loaded data.
    pub fn validate(&self, data: &Split) -> Result<Setup, ConfigError> {
        self.check()?;
        let arch = Arch::new(&self.model, data.train.shape(), data.train.classes())?;
        let (rule, schedule) = self.optimizer.validate()?;
        Ok(Setup {
            spec: self.clone(),
            arch,
            rule,
            schedule,
            batch_size: self.batch_size,
            local_steps: self.local_steps,
            outer: self.outer,
            backend: self.backend,
        })
    }

    /// Loads the data with `seed` and validates the config against it.
    pub fn load(&self, seed: u64) -> Result<(Setup, Split), ConfigError> {
        let split = self.data.load(seed)?;
        let setup = self.validate(&split)?;
        Ok((setup, split))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_and_validates() {
        let text = r#"
model = { kind = "mlp", hidden = [128] }
data = { kind = "digits" }
partition = { kind = "dirichlet", alpha = 0.5 }
optimizer = { kind = "sgd", lr = 0.05, momentum = 0.9, weight-decay = 0.0, schedule = "constant" }
batch-size = 32
local-steps = 10
"#;
        let spec: Spec = toml::from_str(text).unwrap();
        let (setup, split) = spec.load(1).unwrap();
        assert_eq!(setup.arch.num_params(), 64 * 128 + 128 + 128 * 10 + 10);
        assert_eq!(split.train.len(), 1438);
        let bad: Result<Spec, _> =
            toml::from_str("model = { kind = \"mlp\", hidden = [1] }\nbatch = 3");
        assert!(bad.unwrap_err().to_string().contains("batch"));
        let zero: Spec =
            toml::from_str("model = { kind = \"logistic-regression\" }\nbatch-size = 0").unwrap();
        let err = zero.load(1).unwrap_err().to_string();
        assert!(err.starts_with("batch-size"), "{err}");
    }
}
