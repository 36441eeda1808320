//! Models: their configuration, their parameter layout, and their seeded initialisation.
//!
//! A model is described by plain config ([`Spec`]) and validated against the data's input shape
//! and class count into an [`Arch`]. The architecture fixes the **flat parameter order** that the
//! rest of murmur exchanges, mixes and checkpoints:
//!
//! 1. the convolutions in order (CNN only), each `weight` `[out_channels, in_channels, k, k]`
//!    then `bias` `[out_channels]`;
//! 2. the dense layers in order, each `weight` `[d_in, d_out]` then `bias` `[d_out]`.
//!
//! Every tensor is row-major (C order). Dense weights are stored as `[d_in, d_out]` in the flat
//! vector (burn's layout, the transpose of `torch.nn.Linear.weight`); checkpoints store them as
//! PyTorch does ([`Slot::torch_shape`], [`Slot::to_torch`]). The tensor names ([`Slot::name`])
//! are the module paths, e.g. `conv.0.weight`, `dense.1.bias`: the names of a PyTorch module with
//! `conv` and `dense` as `nn.ModuleList`s of `nn.Conv2d` and `nn.Linear`.
//!
//! Initial parameters are a pure function of the run seed ([`Arch::init`]), drawn with a ChaCha8
//! stream independent of burn's own random state, so every node of a run starts from the same
//! model whatever thread or backend it runs on.

mod net;

pub use net::Net;
pub(crate) use net::f32s;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::data::InputShape;

/// Model kind and size, as written in config (`model = { kind = "mlp", hidden = [128] }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub enum Spec {
    /// Multinomial logistic regression: one dense layer from the flattened input to the classes.
    LogisticRegression,
    /// Multi-layer perceptron with ReLU between dense layers.
    Mlp {
        /// Hidden layer widths, in order (at least one, each at least 1).
        hidden: Vec<usize>,
    },
    /// LeNet-like CNN: two 5x5 "same" convolutions with ReLU and 2x2 max-pooling, then one
    /// hidden dense layer with ReLU and the output layer. The input side lengths must be
    /// multiples of 4 (28x28 MNIST, 8x8 digits).
    Cnn {
        /// Output channels of the two convolutions (default `[8, 16]`).
        #[serde(default = "default_cnn_channels")]
        channels: [usize; 2],
        /// Width of the hidden dense layer (default 64).
        #[serde(default = "default_cnn_hidden")]
        hidden: usize,
    },
}

impl Spec {
    /// Checks the sizes, whatever the data (the fit to the data's shape is checked by
    /// [`Arch::new`]).
    pub fn check(&self) -> Result<(), ModelError> {
        let invalid = |field, reason: &str| {
            Err(ModelError::Invalid {
                field,
                reason: reason.into(),
            })
        };
        match self {
            Spec::LogisticRegression => Ok(()),
            Spec::Mlp { hidden } if hidden.is_empty() || hidden.contains(&0) => {
                invalid("hidden", "needs at least one layer, each at least 1 wide")
            }
            Spec::Mlp { .. } => Ok(()),
            Spec::Cnn { channels, .. } if channels.contains(&0) => {
                invalid("channels", "each convolution needs at least 1 channel")
            }
            Spec::Cnn { hidden: 0, .. } => invalid("hidden", "must be at least 1"),
            Spec::Cnn { .. } => Ok(()),
        }
    }
}

fn default_cnn_channels() -> [usize; 2] {
    [8, 16]
}

fn default_cnn_hidden() -> usize {
    64
}

/// A model that cannot be built for the given data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// A size in `model` is zero or a list is empty.
    #[error("model.{field}: {reason}")]
    Invalid {
        /// The offending config field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The CNN needs an image input whose sides are multiples of 4.
    #[error("model: a cnn needs image input with sides that are multiples of 4, got {0}")]
    NotAnImage(InputShape),
    /// A flat parameter vector does not have the architecture's length.
    #[error("parameter vector has {found} values, the model has {expected}")]
    Length {
        /// Parameters of the architecture.
        expected: usize,
        /// Length of the vector given.
        found: usize,
    },
}

/// Kernel size of the CNN's convolutions.
pub const CNN_KERNEL: usize = 5;

/// One convolution of an [`Arch`]: `in_channels -> out_channels`, `CNN_KERNEL` square kernel,
/// stride 1, padding 2 ("same"), followed by ReLU and 2x2 max-pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
}

/// A validated model: the layer shapes for a given input shape and number of classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arch {
    /// The configuration it was built from.
    pub spec: Spec,
    /// Shape of one input sample.
    pub input: InputShape,
    /// Number of output classes.
    pub classes: usize,
    /// Convolutions, in order (empty except for the CNN).
    pub convs: Vec<ConvShape>,
    /// Dense layers `(d_in, d_out)`, in order; ReLU between them, none after the last.
    pub dense: Vec<(usize, usize)>,
}

/// Where one named tensor lives in the flat parameter vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// Module path of the tensor (`dense.0.weight`).
    pub name: String,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Offset of the first value in the flat vector.
    pub offset: usize,
    /// Bound of the uniform initialisation, `1 / sqrt(fan_in)`.
    init_bound: f32,
}

impl Slot {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor holds no values (never true for a validated architecture).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index range of this tensor in the flat vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }

    /// Whether this is a dense layer's weight, stored `[d_in, d_out]` in the flat vector.
    fn is_dense_weight(&self) -> bool {
        self.name.starts_with("dense.") && self.shape.len() == 2
    }

    /// The shape PyTorch gives this tensor: `nn.Linear` stores its weight `[d_out, d_in]`, the
    /// transpose of the flat layout; convolutions and biases are the same.
    pub fn torch_shape(&self) -> Vec<usize> {
        if self.is_dense_weight() {
            vec![self.shape[1], self.shape[0]]
        } else {
            self.shape.clone()
        }
    }

    /// This tensor's values (`flat`, of [`Slot::len`]) in PyTorch's layout ([`Slot::torch_shape`]).
    pub fn to_torch(&self, flat: &[f32]) -> Vec<f32> {
        if self.is_dense_weight() {
            transpose(flat, self.shape[0], self.shape[1])
        } else {
            flat.to_vec()
        }
    }

    /// The inverse of [`Slot::to_torch`].
    pub fn from_torch(&self, torch: &[f32]) -> Vec<f32> {
        if self.is_dense_weight() {
            transpose(torch, self.shape[1], self.shape[0])
        } else {
            torch.to_vec()
        }
    }
}

/// The transpose of a row-major `rows x cols` matrix.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = m[r * cols + c];
        }
    }
    out
}

impl Arch {
    /// Validates `spec` for samples of shape `input` and `classes` output classes.
    pub fn new(spec: &Spec, input: InputShape, classes: usize) -> Result<Self, ModelError> {
        if classes < 2 {
            return Err(ModelError::Invalid {
                field: "classes",
                reason: format!("need at least 2 classes, the data has {classes}"),
            });
        }
        spec.check()?;
        let d_in = input.len();
        let mut convs = Vec::new();
        let mut dense = Vec::new();
        match spec {
            Spec::LogisticRegression => dense.push((d_in, classes)),
            Spec::Mlp { hidden } => {
                let mut prev = d_in;
                for &h in hidden {
                    dense.push((prev, h));
                    prev = h;
                }
                dense.push((prev, classes));
            }
            Spec::Cnn { channels, hidden } => {
                if input.height < 4
                    || input.width < 4
                    || !input.height.is_multiple_of(4)
                    || !input.width.is_multiple_of(4)
                {
                    return Err(ModelError::NotAnImage(input));
                }
                convs.push(ConvShape {
                    in_channels: input.channels,
                    out_channels: channels[0],
                });
                convs.push(ConvShape {
                    in_channels: channels[0],
                    out_channels: channels[1],
                });
                let flat = channels[1] * (input.height / 4) * (input.width / 4);
                dense.push((flat, *hidden));
                dense.push((*hidden, classes));
            }
        }
        Ok(Self {
            spec: spec.clone(),
            input,
            classes,
            convs,
            dense,
        })
    }

    /// The named tensors in flat order (see the module documentation).
    pub fn layout(&self) -> Vec<Slot> {
        let mut slots = Vec::with_capacity(2 * (self.convs.len() + self.dense.len()));
        let mut offset = 0;
        let mut push = |name: String, shape: Vec<usize>, fan_in: usize| {
            let slot = Slot {
                name,
                shape,
                offset,
                init_bound: 1.0 / (fan_in as f32).sqrt(),
            };
            offset += slot.len();
            slots.push(slot);
        };
        for (i, c) in self.convs.iter().enumerate() {
            let fan_in = c.in_channels * CNN_KERNEL * CNN_KERNEL;
            push(
                format!("conv.{i}.weight"),
                vec![c.out_channels, c.in_channels, CNN_KERNEL, CNN_KERNEL],
                fan_in,
            );
            push(format!("conv.{i}.bias"), vec![c.out_channels], fan_in);
        }
        for (i, &(d_in, d_out)) in self.dense.iter().enumerate() {
            push(format!("dense.{i}.weight"), vec![d_in, d_out], d_in);
            push(format!("dense.{i}.bias"), vec![d_out], d_in);
        }
        slots
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        let conv: usize = self
            .convs
            .iter()
            .map(|c| c.out_channels * (c.in_channels * CNN_KERNEL * CNN_KERNEL + 1))
            .sum();
        let dense: usize = self.dense.iter().map(|&(i, o)| o * (i + 1)).sum();
        conv + dense
    }

    /// Initial parameters for a run: every tensor uniform in `[-1/sqrt(fan_in), 1/sqrt(fan_in))`
    /// (PyTorch's default for `Linear` and `Conv2d`), drawn in flat order from
    /// `ChaCha8Rng::seed_from_u64(seed)` on stream [`crate::data::stream::INIT`].
    ///
    /// A pure function of `(self, seed)`: identical on every node, thread and platform.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut rng = crate::data::stream::rng(seed, crate::data::stream::INIT, 0);
        let mut params = Vec::with_capacity(self.num_params());
        for slot in self.layout() {
            for _ in 0..slot.len() {
                // 24 random bits give every representable step of a uniform f32 in [0, 1).
                let u = (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
                params.push((2.0 * u - 1.0) * slot.init_bound);
            }
        }
        params
    }

    /// Checks that `params` has this architecture's length.
    pub fn check_len(&self, params: &[f32]) -> Result<(), ModelError> {
        let expected = self.num_params();
        if params.len() == expected {
            Ok(())
        } else {
            Err(ModelError::Length {
                expected,
                found: params.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mnist() -> InputShape {
        InputShape {
            channels: 1,
            height: 28,
            width: 28,
        }
    }

    #[test]
    fn layouts_are_contiguous_and_count_every_parameter() {
        for spec in [
            Spec::LogisticRegression,
            Spec::Mlp {
                hidden: vec![128, 64],
            },
            Spec::Cnn {
                channels: [6, 16],
                hidden: 120,
            },
        ] {
            let arch = Arch::new(&spec, mnist(), 10).unwrap();
            let layout = arch.layout();
            let mut next = 0;
            for slot in &layout {
                assert_eq!(slot.offset, next, "{spec:?} {}", slot.name);
                next += slot.len();
            }
            assert_eq!(next, arch.num_params());
        }
        let mlp = Arch::new(&Spec::Mlp { hidden: vec![128] }, mnist(), 10).unwrap();
        assert_eq!(mlp.num_params(), 101_770);
    }

    #[test]
    fn init_is_a_function_of_the_seed() {
        let arch = Arch::new(&Spec::Mlp { hidden: vec![32] }, mnist(), 10).unwrap();
        let a = arch.init(7);
        assert_eq!(a, arch.init(7));
        assert_ne!(a, arch.init(8));
        let first = &arch.layout()[0];
        let bound = 1.0 / 784f32.sqrt();
        assert!(a[first.range()].iter().all(|w| w.abs() <= bound));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let err = Arch::new(&Spec::Mlp { hidden: vec![] }, mnist(), 10).unwrap_err();
        assert!(err.to_string().starts_with("model.hidden"), "{err}");
        let tabular = InputShape {
            channels: 1,
            height: 1,
            width: 13,
        };
        let err = Arch::new(
            &Spec::Cnn {
                channels: [4, 4],
                hidden: 8,
            },
            tabular,
            3,
        )
        .unwrap_err();
        assert_eq!(err, ModelError::NotAnImage(tabular));
    }

    #[test]
    fn spec_parses_from_kebab_case_config() {
        let spec: Spec = toml::from_str("kind = \"mlp\"\nhidden = [128]").unwrap();
        assert_eq!(spec, Spec::Mlp { hidden: vec![128] });
        let spec: Spec = toml::from_str("kind = \"cnn\"").unwrap();
        assert_eq!(
            spec,
            Spec::Cnn {
                channels: [8, 16],
                hidden: 64
            }
        );
        assert!(toml::from_str::<Spec>("kind = \"mlp\"\nhiden = [1]").is_err());
        let spec: Spec = toml::from_str("kind = \"logistic-regression\"").unwrap();
        assert_eq!(spec, Spec::LogisticRegression);
    }
}
