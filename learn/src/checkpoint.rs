//! Checkpoints: a node's parameters and optimiser state in one safetensors file.
//!
//! Format (<https://github.com/huggingface/safetensors>): an 8-byte little-endian header length
//! `N`, `N` bytes of JSON header (padded with spaces to a multiple of 8), then the tensors'
//! little-endian bytes, back to back with no gaps. The header maps each tensor name to
//! `{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}` and holds string metadata
//! under `__metadata__`. Any safetensors reader (PyTorch's `safetensors.torch.load_file`,
//! `safetensors.numpy`) can load the tensors.
//!
//! Tensors: `model.<name>` for every model tensor ([`crate::model`] names and shapes, in flat
//! order), then the optimiser state `optimizer.m.<name>` (SGD momentum or Adam first moment)
//! and `optimizer.v.<name>` (Adam second moment) where the optimiser has them.
//!
//! Metadata: `format` = `murmur-checkpoint`, `version` = `1`, `run-id` (64 hex digits),
//! `round`, `step` (optimiser steps taken), `model` (the model config as JSON), `input`
//! (`CxHxW`), `classes`. Loading a checkpoint whose run id is not the expected one is refused
//! ([`CheckpointError::ForeignRun`]).
//!
//! The batch generator's position is not saved: a restored trainer continues with the batch
//! order of the trainer it is restored into.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use murmur_protocol::sign::RunId;
use serde_json::{Value, json};

use crate::data::InputShape;
use crate::model::{self, Arch};
use crate::train::Trainer;
use crate::train::optim::State;

/// Value of the `format` metadata key.
pub const FORMAT: &str = "murmur-checkpoint";
/// Value of the `version` metadata key.
pub const VERSION: &str = "1";
/// Largest header accepted when reading (the spec's limit is 100 MB; ours are a few kB).
const MAX_HEADER: u64 = 100 << 20;

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
        let arch = self.arch().expect("checkpoint of a valid model");
        let layout = arch.layout();
        let mut header = serde_json::Map::new();
        let mut data: Vec<u8> = Vec::with_capacity(4 * (self.params.len() * 3));
        let mut add = |name: String, shape: &[usize], values: &[f32]| {
            let begin = data.len();
            for v in values {
                data.extend_from_slice(&v.to_le_bytes());
            }
            header.insert(
                name,
                json!({"dtype": "F32", "shape": shape, "data_offsets": [begin, data.len()]}),
            );
        };
        for (prefix, values) in [
            ("model.", &self.params),
            ("optimizer.m.", &self.optim.m),
            ("optimizer.v.", &self.optim.v),
        ] {
            if values.is_empty() {
                continue;
            }
            for slot in &layout {
                add(
                    format!("{prefix}{}", slot.name),
                    &slot.shape,
                    &values[slot.range()],
                );
            }
        }
        let meta: BTreeMap<&str, String> = BTreeMap::from([
            ("format", FORMAT.to_owned()),
            ("version", VERSION.to_owned()),
            ("run-id", hex::encode(self.run.0)),
            ("round", self.round.to_string()),
            ("step", self.optim.step.to_string()),
            (
                "model",
                serde_json::to_string(&self.model).expect("model spec serialises"),
            ),
            ("input", self.input.to_string()),
            ("classes", self.classes.to_string()),
        ]);
        header.insert("__metadata__".into(), json!(meta));
        let mut head = serde_json::to_vec(&Value::Object(header)).expect("header serialises");
        while !head.len().is_multiple_of(8) {
            head.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + head.len() + data.len());
        out.extend_from_slice(&(head.len() as u64).to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&data);
        out
    }

    /// Writes the checkpoint to `path` (through a temporary file and a rename).
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        let name = path
            .file_name()
            .map_or("checkpoint".into(), |n| n.to_string_lossy());
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        std::fs::write(&tmp, self.to_bytes()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
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
        let (header, data) = parse(bytes, path)?;
        let meta = header
            .get("__metadata__")
            .and_then(Value::as_object)
            .ok_or_else(|| format_err(path, "no __metadata__"))?;
        let field = |key: &str| -> Result<&str, CheckpointError> {
            meta.get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| format_err(path, format!("metadata has no {key:?}")))
        };
        if field("format")? != FORMAT || field("version")? != VERSION {
            return Err(format_err(path, "not a murmur checkpoint of version 1"));
        }
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
                match tensor(&header, data, &name, &slot.shape, path)? {
                    Some(values) => out.extend(values),
                    None if !required && out.is_empty() => return Ok(Vec::new()),
                    None => return Err(format_err(path, format!("missing tensor {name}"))),
                }
            }
            Ok(out)
        };
        let params = read("model.", true)?;
        let optim = State {
            m: read("optimizer.m.", false)?,
            v: read("optimizer.v.", false)?,
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

/// Splits a safetensors file into its header and its byte buffer, checking that the tensors
/// tile the buffer exactly (as the format requires).
fn parse<'a>(
    bytes: &'a [u8],
    path: &Path,
) -> Result<(serde_json::Map<String, Value>, &'a [u8]), CheckpointError> {
    if bytes.len() < 8 {
        return Err(format_err(path, "shorter than the 8-byte header length"));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER || 8 + n > bytes.len() as u64 {
        return Err(format_err(
            path,
            format!("header length {n} exceeds the file"),
        ));
    }
    let (head, data) = bytes[8..].split_at(n as usize);
    let header: serde_json::Map<String, Value> = serde_json::from_slice(head)
        .map_err(|e| format_err(path, format!("header is not a JSON object: {e}")))?;
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?)))
            .ok_or_else(|| format_err(path, format!("tensor {name} has no data_offsets")))?;
        spans.push(offsets);
    }
    spans.sort_unstable();
    let mut at = 0;
    for (begin, end) in spans {
        if begin != at || end < begin {
            return Err(format_err(path, "tensor data has gaps or overlaps"));
        }
        at = end;
    }
    if at != data.len() as u64 {
        return Err(format_err(
            path,
            format!("tensors cover {at} bytes, the file has {}", data.len()),
        ));
    }
    Ok((header, data))
}

/// The values of tensor `name`, checked to be F32 of `shape`; `None` if absent.
fn tensor(
    header: &serde_json::Map<String, Value>,
    data: &[u8],
    name: &str,
    shape: &[usize],
    path: &Path,
) -> Result<Option<Vec<f32>>, CheckpointError> {
    let Some(info) = header.get(name) else {
        return Ok(None);
    };
    if info.get("dtype").and_then(Value::as_str) != Some("F32") {
        return Err(format_err(path, format!("tensor {name} is not F32")));
    }
    let found: Option<Vec<usize>> = info.get("shape").and_then(Value::as_array).map(|a| {
        a.iter()
            .map(|d| d.as_u64().map_or(usize::MAX, |d| d as usize))
            .collect()
    });
    if found.as_deref() != Some(shape) {
        return Err(format_err(
            path,
            format!("tensor {name} has shape {found:?}, expected {shape:?}"),
        ));
    }
    let offsets = &info["data_offsets"];
    let (begin, end) = (
        offsets[0].as_u64().unwrap_or(0) as usize,
        offsets[1].as_u64().unwrap_or(0) as usize,
    );
    if end - begin != 4 * shape.iter().product::<usize>() {
        return Err(format_err(
            path,
            format!("tensor {name} has the wrong byte length"),
        ));
    }
    Ok(Some(
        data[begin..end]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
    ))
}
