//! A node's model in PyTorch's layout: a node trains alone and exits when done, its checkpoint
//! is exported with `murmur-node export --torch`, and the numpy forward pass of
//! `tests/python/forward.py` (the module of docs/pytorch.md) gets the test accuracy the node
//! reported. Needs python3 with numpy and safetensors (`.ci/run` installs them); without them
//! the test says so and passes, except under CI, where it fails.

mod net_support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use murmur_learn::data;
use net_support::{spawn, write_config};
use safetensors::tensor::{Dtype, TensorView};

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import numpy, safetensors.numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 with numpy and safetensors (pip install numpy safetensors)"
        );
        eprintln!("python3 with numpy and safetensors not found: the export is not checked");
    }
    ok
}

#[test]
fn an_exported_model_scores_in_numpy_what_the_node_reported() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        1,
        "rounds = 6\ncheckpoint-every = 3",
        "[metrics]\neval-every = 3\n",
    );
    let state = dir.path().join("n0");
    let mut node = spawn(&config, &state, 0, &["--exit-when-finished"]);
    let finished = node.wait(Duration::from_secs(300), |e| e["event"] == "finished");
    assert!(
        node.wait_exit(Duration::from_secs(120)),
        "the node exits by itself"
    );
    let reported = finished["accuracy"].as_f64().unwrap();

    let model = dir.path().join("model.safetensors");
    let out = Command::new(env!("CARGO_BIN_EXE_murmur-node"))
        .arg("export")
        .arg(state.join("checkpoint.safetensors"))
        .arg("--torch")
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The node's test set: the digits split with the run's seed (write_config's seed 7).
    let split = data::Spec::Digits { test_fraction: 0.2 }.load(7).unwrap();
    let test = &split.test;
    let x: Vec<u8> = (0..test.len())
        .flat_map(|i| {
            test.row(i)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>()
        })
        .collect();
    let y: Vec<u8> = test
        .labels()
        .iter()
        .flat_map(|l| (*l as i64).to_le_bytes())
        .collect();
    let features = test.shape().len();
    let tensors = [
        (
            "x",
            TensorView::new(Dtype::F32, vec![test.len(), features], &x).unwrap(),
        ),
        (
            "y",
            TensorView::new(Dtype::I64, vec![test.len()], &y).unwrap(),
        ),
    ];
    let data_path = dir.path().join("test.safetensors");
    let bytes = safetensors::serialize(tensors, None::<HashMap<String, String>>).unwrap();
    std::fs::write(&data_path, bytes).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/forward.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&model)
        .arg(&data_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let numpy = result["accuracy"].as_f64().unwrap();
    println!(
        "node reported {reported:.6}, numpy {numpy:.6} on {} samples",
        test.len()
    );
    // The same model and data; float sums in another order may flip a near tie at most.
    assert!(
        (numpy - reported).abs() <= 1.0 / test.len() as f64 + 1e-9,
        "numpy {numpy} vs the node's {reported}"
    );
    assert!(reported > 0.8, "the node learned: {reported}");
}
