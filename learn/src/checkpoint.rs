//! Checkpoints: a node's parameters and optimiser state in one safetensors file
//! (<https://github.com/huggingface/safetensors>), read and written with the `safetensors` crate,
//! so any safetensors reader (PyTorch's `safetensors.torch.load_file`, `safetensors.numpy`) loads
//! them.
//!
//! Tensors: `model.<name>` for every model tensor ([`crate::model`] names, in PyTorch's layouts:
//! dense weights `[d_out, d_in]` as `nn.Linear` stores them, convolutions `[out, in, k, k]` as
//! `nn.Conv2d`), then the optimiser state in the same layouts, `optimizer.m.<name>` (SGD momentum
//! or Adam first moment), `optimizer.v.<name>` (Adam second moment) and `optimizer.outer.<name>`
//! (the outer optimiser's momentum, with `[learning] outer`) where the optimiser has them. Without the `model.` prefix the model tensors are the state dict of the PyTorch module
//! in `docs/pytorch.md` (`murmur-node export --torch` writes just those).
//!
//! Metadata: `format` = `murmur-checkpoint`, `version` = `2`, `run-id` (64 hex digits),
//! `round`, `step` (optimiser steps taken), `model` (the model config as JSON), `input`
//! (`CxHxW`), `classes`. Version 1 files (dense weights `[d_in, d_out]`) are still read. Loading a
//! checkpoint whose run id is not the expected one is refused ([`CheckpointError::ForeignRun`]).
//!
//! The batch generator's position is not saved: a restored trainer continues with the batch
//! order of the trainer it is restored into.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use murmur_protocol::sign::RunId;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::data::InputShape;
use crate::model::{self, Arch};
use crate::train::Trainer;
use crate::train::optim::State;

/// Value of the `format` metadata key.
pub const FORMAT: &str = "murmur-checkpoint";
/// Value of the `version` metadata key: 2, dense weights as PyTorch stores them.
pub const VERSION: &str = "2";

/// A checkpoint that cannot be written, read or used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid murmur safetensors checkpoint.
    #[error("{path}: not a valid checkpoint: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint belongs to another run.
    #[error("{path}: checkpoint of run {found}, refusing to load it into run {expected}")]
    ForeignRun {
        /// The file.
        path: PathBuf,
        /// Run id in the file (hex).
        found: String,
        /// Run id expected (hex).
        expected: String,
    },
    /// The checkpoint's model is not the trainer's.
    #[error("checkpoint model does not match the trainer's: {0}")]
    ModelMismatch(String),
}

/// The contents of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The run it belongs to.
    pub run: RunId,
    /// The round it was taken at.
    pub round: u64,
    /// The model config.
    pub model: model::Spec,
    /// Input shape the model was built for.
    pub input: InputShape,
    /// Number of classes.
    pub classes: usize,
    /// Parameters in flat order.
    pub params: Vec<f32>,
    /// Optimiser state (buffers in flat order, step count).
    pub optim: State,
}

fn format_err(path: &Path, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Format {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

impl Checkpoint {
    /// A checkpoint of `trainer`'s current state.
    pub fn of(trainer: &Trainer, run: RunId, round: u64) -> Self {
        let arch = trainer.arch();
        Self {
            run,
            round,
            model: arch.spec.clone(),
            input: arch.input,
            classes: arch.classes,
            params: trainer.params().to_vec(),
            optim: trainer.optimizer_state().clone(),
        }
    }

    fn arch(&self) -> Result<Arch, CheckpointError> {
        Arch::new(&self.model, self.input, self.classes)
            .map_err(|e| CheckpointError::ModelMismatch(e.to_string()))
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut tensors = Vec::new();
        for (prefix, values) in [
            ("model.", &self.params),
            ("optimizer.m.", &self.optim.m),
            ("optimizer.v.", &self.optim.v),
            ("optimizer.outer.", &self.optim.outer),
        ] {
            if !values.is_empty() {
                tensors.extend(self.torch_tensors(prefix, values));
            }
        }
        let meta = [
            ("format", FORMAT.to_owned()),
            ("version", VERSION.to_owned()),
            ("run-id", hex::encode(self.run.0)),
            ("step", self.optim.step.to_string()),
        ];
        self.serialize(&tensors, meta)
    }

    /// `values` (a flat vector of the model's length) as named tensors in PyTorch's layouts.
    fn torch_tensors(&self, prefix: &str, values: &[f32]) -> Vec<(String, Vec<usize>, Vec<u8>)> {
        let arch = self.arch().expect("checkpoint of a valid model");
        arch.layout()
            .iter()
            .map(|slot| {
                let bytes = slot
                    .to_torch(&values[slot.range()])
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                (format!("{prefix}{}", slot.name), slot.torch_shape(), bytes)
            })
            .collect()
    }

    /// A safetensors file of `tensors` (F32), with the model's description and the round in
    /// the metadata, and `extra` metadata.
    fn serialize<const N: usize>(
        &self,
        tensors: &[(String, Vec<usize>, Vec<u8>)],
        extra: [(&str, String); N],
    ) -> Vec<u8> {
        let model = serde_json::to_string(&self.model).expect("model spec serialises");
        let meta: HashMap<String, String> = [
            ("model", model),
            ("input", self.input.to_string()),
            ("classes", self.classes.to_string()),
            ("round", self.round.to_string()),
        ]
        .into_iter()
        .chain(extra)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let views = tensors.iter().map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
                .expect("the shape matches the bytes");
            (name.clone(), view)
        });
        safetensors::serialize(views, Some(meta)).expect("F32 tensors serialise")
    }

    /// Writes the checkpoint to `path` (through a synced temporary file and a rename, with the
    /// directory synced).
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        let name = path
            .file_name()
            .map_or("checkpoint".into(), |n| n.to_string_lossy());
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&self.to_bytes()).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        // The rename survives a crash only once the directory is synced.
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }

    /// Reads a checkpoint of run `expected` from `path`; a checkpoint of another run is refused.
    pub fn load(path: &Path, expected: &RunId) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        })?;
        let ckpt = Self::from_bytes(&bytes, path)?;
        if ckpt.run != *expected {
            return Err(CheckpointError::ForeignRun {
                path: path.to_owned(),
                found: hex::encode(ckpt.run.0),
                expected: hex::encode(expected.0),
            });
        }
        Ok(ckpt)
    }

    /// Parses checkpoint bytes; `path` is only used in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, CheckpointError> {
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| format_err(path, format!("not a safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| format_err(path, format!("not a safetensors file: {e}")))?;
        let meta = header
            .metadata()
            .as_ref()
            .ok_or_else(|| format_err(path, "no __metadata__"))?;
        let field = |key: &str| -> Result<&str, CheckpointError> {
            meta.get(key)
                .map(String::as_str)
                .ok_or_else(|| format_err(path, format!("metadata has no {key:?}")))
        };
        if field("format")? != FORMAT {
            return Err(format_err(path, "not a murmur checkpoint"));
        }
        let torch_layout = match field("version")? {
            "1" => false,
            "2" => true,
            v => {
                return Err(format_err(
                    path,
                    format!("version {v}; this murmur reads versions 1 and 2"),
                ));
            }
        };
        let number = |key: &str| -> Result<u64, CheckpointError> {
            field(key)?
                .parse()
                .map_err(|_| format_err(path, format!("metadata {key:?} is not a number")))
        };
        let mut run = [0u8; 32];
        hex::decode_to_slice(field("run-id")?, &mut run)
            .map_err(|_| format_err(path, "metadata \"run-id\" is not 64 hex digits"))?;
        let model: model::Spec = serde_json::from_str(field("model")?)
            .map_err(|e| format_err(path, format!("metadata \"model\": {e}")))?;
        let input = parse_shape(field("input")?)
            .ok_or_else(|| format_err(path, "metadata \"input\" is not CxHxW"))?;
        let classes = number("classes")? as usize;
        let arch = Arch::new(&model, input, classes)
            .map_err(|e| format_err(path, format!("model: {e}")))?;
        let layout = arch.layout();
        let read = |prefix: &str, required: bool| -> Result<Vec<f32>, CheckpointError> {
            let mut out = Vec::new();
            for slot in &layout {
                let name = format!("{prefix}{}", slot.name);
                let view = match file.tensor(&name) {
                    Ok(v) => v,
                    Err(_) if !required && out.is_empty() => return Ok(Vec::new()),
                    Err(_) => return Err(format_err(path, format!("missing tensor {name}"))),
                };
                let shape = if torch_layout {
                    slot.torch_shape()
                } else {
                    slot.shape.clone()
                };
                if view.dtype() != Dtype::F32 || view.shape() != shape.as_slice() {
                    return Err(format_err(
                        path,
                        format!(
                            "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                            view.dtype(),
                            view.shape()
                        ),
                    ));
                }
                let values: Vec<f32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect();
                if torch_layout {
                    out.extend(slot.from_torch(&values));
                } else {
                    out.extend(values);
                }
            }
            Ok(out)
        };
        let params = read("model.", true)?;
        let optim = State {
            m: read("optimizer.m.", false)?,
            v: read("optimizer.v.", false)?,
            outer: read("optimizer.outer.", false)?,
            step: number("step")?,
        };
        Ok(Self {
            run: RunId(run),
            round: number("round")?,
            model,
            input,
            classes,
            params,
            optim,
        })
    }

    /// The model alone as PyTorch's state dict: the `model.*` tensors without the prefix, in
    /// PyTorch's layouts, with the model config, input shape, class count and round as metadata.
    pub fn torch_state_dict(&self) -> Vec<u8> {
        self.serialize(&self.torch_tensors("", &self.params), [])
    }

    /// Loads the parameters and optimiser state into `trainer`, whose model must be the
    /// checkpoint's.
    pub fn restore(self, trainer: &mut Trainer) -> Result<(), CheckpointError> {
        let arch = self.arch()?;
        if arch != *trainer.arch() {
            return Err(CheckpointError::ModelMismatch(format!(
                "checkpoint has {:?} on {} inputs, trainer {:?} on {}",
                arch.spec,
                arch.input,
                trainer.arch().spec,
                trainer.arch().input
            )));
        }
        trainer
            .set_params(&self.params)
            .map_err(|e| CheckpointError::ModelMismatch(e.to_string()))?;
        trainer
            .set_optimizer_state(self.optim)
            .map_err(|e| CheckpointError::ModelMismatch(format!("optimizer state: {e}")))
    }
}

fn parse_shape(s: &str) -> Option<InputShape> {
    let mut it = s.split('x').map(|p| p.parse::<usize>().ok());
    let shape = InputShape {
        channels: it.next()??,
        height: it.next()??,
        width: it.next()??,
    };
    it.next().is_none().then_some(shape)
}
