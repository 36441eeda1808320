//! Checkpoints: safetensors layout checked byte for byte against the format (PyTorch's layouts),
//! a Python load when the `safetensors` package is installed, restore, version 1 files, and
//! refusal of another run's file.

use std::path::Path;

use murmur_learn::checkpoint::{Checkpoint, CheckpointError};
use murmur_learn::data::Shard;
use murmur_learn::train::{Spec, Trainer};
use murmur_protocol::sign::RunId;

fn trained(optimizer: &str) -> Trainer {
    let spec: Spec = toml::from_str(&format!(
        "model = {{ kind = \"mlp\", hidden = [16] }}\noptimizer = {optimizer}"
    ))
    .unwrap();
    let (setup, split) = spec.load(2).unwrap();
    let mut t = Trainer::new(&setup, Shard::all(split.train), 0, 2).unwrap();
    t.train_steps(5);
    t
}

#[test]
fn checkpoint_bytes_follow_the_safetensors_format() {
    let trainer = trained("{ kind = \"adam\", lr = 0.01 }");
    let run = RunId::derive(b"checkpoint test");
    let bytes = Checkpoint::of(&trainer, run, 9).to_bytes();

    // 8-byte little-endian header length, JSON header padded with spaces to 8 bytes.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0);
    let header_text = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(header_text.starts_with('{'));
    let header: serde_json::Value = serde_json::from_str(header_text.trim_end()).unwrap();
    let data = &bytes[8 + n..];

    let meta = &header["__metadata__"];
    assert_eq!(meta["format"], "murmur-checkpoint");
    assert_eq!(meta["version"], "2");
    assert_eq!(meta["run-id"], hex::encode(run.0));
    assert_eq!(meta["round"], "9");
    assert_eq!(meta["step"], "5");

    // Tensors tile the data buffer exactly; model.* hold the parameters in PyTorch's layouts.
    let mut spans = Vec::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(info["dtype"], "F32", "{name}");
        let shape: usize = info["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .product();
        let (b, e) = (
            info["data_offsets"][0].as_u64().unwrap() as usize,
            info["data_offsets"][1].as_u64().unwrap() as usize,
        );
        assert_eq!(e - b, 4 * shape, "{name}");
        spans.push((b, e, name.clone()));
    }
    spans.sort();
    let mut at = 0;
    for (b, e, _) in &spans {
        assert_eq!(*b, at);
        at = *e;
    }
    assert_eq!(at, data.len());
    let arch = trainer.arch();
    assert_eq!(spans.len(), 3 * arch.layout().len(), "model, adam m and v");
    let params = trainer.params();
    for slot in arch.layout() {
        let info = &header[format!("model.{}", slot.name)];
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(shape, slot.torch_shape(), "{}", slot.name);
        let b = info["data_offsets"][0].as_u64().unwrap() as usize;
        for (k, want) in slot.to_torch(&params[slot.range()]).iter().enumerate() {
            let got = f32::from_le_bytes(data[b + 4 * k..b + 4 * k + 4].try_into().unwrap());
            assert_eq!(got.to_bits(), want.to_bits());
        }
    }
    // nn.Linear(64, 16).weight is [16, 64]: row o holds the weights into output o.
    let w = &arch.layout()[0];
    assert_eq!(w.name, "dense.0.weight");
    assert_eq!(w.torch_shape(), vec![16, 64]);
    let torch = w.to_torch(&params[w.range()]);
    let (i, o) = (5, 3);
    assert_eq!(torch[o * 64 + i], params[w.range()][i * 16 + o]);
    assert_eq!(w.from_torch(&torch), params[w.range()]);
}

/// A file of version 1 (dense weights as `[d_in, d_out]`) is still read.
#[test]
fn version_one_checkpoints_are_read() {
    let trainer = trained("{ kind = \"sgd\", lr = 0.05 }");
    let run = RunId::derive(b"v1");
    let arch = trainer.arch();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = arch
        .layout()
        .iter()
        .map(|slot| {
            let bytes = trainer.params()[slot.range()]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (format!("model.{}", slot.name), slot.shape.clone(), bytes)
        })
        .collect();
    let meta: std::collections::HashMap<String, String> = [
        ("format", "murmur-checkpoint".to_owned()),
        ("version", "1".to_owned()),
        ("run-id", hex::encode(run.0)),
        ("round", "4".to_owned()),
        ("step", "5".to_owned()),
        ("model", serde_json::to_string(&arch.spec).unwrap()),
        ("input", arch.input.to_string()),
        ("classes", arch.classes.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let views = tensors.iter().map(|(n, shape, bytes)| {
        let v = safetensors::tensor::TensorView::new(
            safetensors::tensor::Dtype::F32,
            shape.clone(),
            bytes,
        )
        .unwrap();
        (n.clone(), v)
    });
    let bytes = safetensors::serialize(views, Some(meta)).unwrap();
    let c = Checkpoint::from_bytes(&bytes, Path::new("v1.safetensors")).unwrap();
    assert_eq!(c.params, trainer.params());
    assert_eq!(c.round, 4);
}

#[test]
fn checkpoints_restore_and_refuse_other_runs() {
    let mut trainer = trained("{ kind = \"sgd\", lr = 0.05, momentum = 0.9 }");
    let run = RunId::derive(b"run a");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.safetensors");
    Checkpoint::of(&trainer, run, 3).save(&path).unwrap();
    let saved_params = trainer.params().to_vec();
    let saved_state = trainer.optimizer_state().clone();

    let ckpt = Checkpoint::load(&path, &run).unwrap();
    assert_eq!(ckpt.round, 3);
    assert_eq!(ckpt.params, saved_params);
    assert_eq!(ckpt.optim, saved_state);

    trainer.train_steps(3);
    assert_ne!(trainer.params(), &saved_params[..]);
    ckpt.restore(&mut trainer).unwrap();
    assert_eq!(trainer.params(), &saved_params[..]);
    assert_eq!(trainer.optimizer_state(), &saved_state);

    let other = RunId::derive(b"run b");
    let err = Checkpoint::load(&path, &other).unwrap_err();
    assert!(matches!(err, CheckpointError::ForeignRun { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&hex::encode(run.0)) && msg.contains(&hex::encode(other.0)),
        "{msg}"
    );
    assert!(msg.contains("node.safetensors"), "{msg}");

    // A checkpoint of another model is refused by restore.
    let mut logreg = {
        let spec: Spec = toml::from_str("model = { kind = \"logistic-regression\" }").unwrap();
        let (setup, split) = spec.load(2).unwrap();
        Trainer::new(&setup, Shard::all(split.train), 0, 2).unwrap()
    };
    let err = Checkpoint::load(&path, &run)
        .unwrap()
        .restore(&mut logreg)
        .unwrap_err();
    assert!(matches!(err, CheckpointError::ModelMismatch(_)), "{err}");

    // Corrupt files are errors, not panics.
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 7, 20, bytes.len() - 1] {
        assert!(
            Checkpoint::from_bytes(&bytes[..cut], &path).is_err(),
            "cut at {cut}"
        );
    }
    let mut flipped = bytes.clone();
    flipped[0] ^= 0x40;
    assert!(Checkpoint::from_bytes(&flipped, &path).is_err());
}

#[test]
fn python_safetensors_loads_a_checkpoint_when_installed() {
    let has_safetensors = std::process::Command::new("python3")
        .args(["-c", "import safetensors.numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_safetensors {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 with numpy and safetensors (pip install numpy safetensors)"
        );
        eprintln!(
            "python3 with the safetensors package not found; format checked byte for byte instead"
        );
        return;
    }
    let trainer = trained("{ kind = \"sgd\", lr = 0.05 }");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    Checkpoint::of(&trainer, RunId::derive(b"py"), 1)
        .save(&path)
        .unwrap();
    let sum: f64 = trainer.params().iter().map(|&v| f64::from(v)).sum();
    let script = format!(
        "import safetensors.numpy as s\n\
         t = s.load_file({path:?})\n\
         assert sorted(k for k in t if k.startswith('model.')) == ['model.dense.0.bias', 'model.dense.0.weight', 'model.dense.1.bias', 'model.dense.1.weight']\n\
         assert t['model.dense.0.weight'].shape == (16, 64)\n\
         total = sum(float(v.astype('float64').sum()) for k, v in t.items() if k.startswith('model.'))\n\
         assert abs(total - {sum}) < 1e-6 * max(1.0, abs({sum})), total\n",
        path = path.display().to_string()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(Path::new(&path).exists());
}

/// With an outer optimiser (DiLoCo), its momentum is saved beside the inner state
/// (`optimizer.outer.*`) and restored; a restored trainer's next outer step is the one the
/// saved trainer takes.
#[test]
fn the_outer_momentum_is_checkpointed() {
    let spec: Spec = toml::from_str(
        "model = { kind = \"mlp\", hidden = [16] }\nouter = { lr = 0.7, momentum = 0.9 }",
    )
    .unwrap();
    let (setup, split) = spec.load(2).unwrap();
    let fresh = || Trainer::new(&setup, Shard::all(split.train.clone()), 0, 2).unwrap();
    let mut trainer = fresh();
    trainer.train_steps(5);
    let mixed: Vec<f32> = trainer.params().iter().map(|p| p * 0.5).collect();
    trainer.apply_mix(&mixed).unwrap();
    assert!(trainer.optimizer_state().outer.iter().any(|&b| b != 0.0));
    let run = RunId::derive(b"outer");
    let bytes = Checkpoint::of(&trainer, run, 1).to_bytes();
    let ckpt = Checkpoint::from_bytes(&bytes, Path::new("outer.safetensors")).unwrap();
    assert_eq!(ckpt.optim, *trainer.optimizer_state());
    let mut restored = fresh();
    ckpt.restore(&mut restored).unwrap();
    let next: Vec<f32> = trainer.params().iter().map(|p| p - 0.01).collect();
    trainer.apply_mix(&next).unwrap();
    restored.apply_mix(&next).unwrap();
    assert_eq!(restored.params(), trainer.params());
    // A trainer without an outer optimiser refuses the state.
    let plain: Spec = toml::from_str("model = { kind = \"mlp\", hidden = [16] }").unwrap();
    let (plain_setup, _) = plain.load(2).unwrap();
    let mut plain = Trainer::new(&plain_setup, Shard::all(split.train.clone()), 0, 2).unwrap();
    let err = Checkpoint::from_bytes(&bytes, Path::new("outer.safetensors"))
        .unwrap()
        .restore(&mut plain)
        .unwrap_err();
    assert!(err.to_string().contains("optimizer state"), "{err}");
}
