//! `murmur-node bench-train --eval`: both evaluation paths measured in one run on MNIST-format
//! files (a small set written by the test, mostly zero like MNIST), and the sparse one declined
//! on the random inputs, which are not.

use std::path::Path;
use std::process::Command;

/// An IDX file: magic, dimensions, then the bytes.
fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

/// `n` 28x28 images, a tenth of their pixels lit, and their labels, as `images` and `labels`
/// in `dir`.
fn write_set(dir: &Path, images: &str, labels: &str, n: u32) {
    let pixels: Vec<u8> = (0..n * 784)
        .map(|i| if i % 10 == 3 { (i % 251) as u8 } else { 0 })
        .collect();
    let classes: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    std::fs::write(dir.join(images), idx(0x803, &[n, 28, 28], &pixels)).unwrap();
    std::fs::write(dir.join(labels), idx(0x801, &[n], &classes)).unwrap();
}

fn bench_train(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_murmur-node"))
        .args([
            "bench-train",
            "--model",
            "mlp",
            "--batch",
            "32",
            "--seconds",
            "0.05",
        ])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn bench_train_times_both_evaluations_on_mostly_zero_images() {
    let dir = tempfile::tempdir().unwrap();
    write_set(
        dir.path(),
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        256,
    );
    write_set(
        dir.path(),
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        300,
    );
    let mnist = dir.path().to_str().unwrap();
    let out = bench_train(&["--eval", "--mnist", mnist]);
    assert!(
        out.contains("evaluation of the MLP (101770 params) on 300 samples"),
        "{out}"
    );
    let rate = |label: &str| -> f64 {
        let line = out.lines().find(|l| l.contains(label)).expect(label);
        let after = line.split(':').nth(1).unwrap().trim();
        after.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (dense, fast) = (rate("burn's dense product"), rate("skipping zero inputs"));
    assert!(dense > 0.0 && fast > 0.0, "{out}");
    let printed: f64 = out
        .split("= ")
        .nth(1)
        .and_then(|r| r.split('x').next())
        .expect("a ratio")
        .parse()
        .unwrap();
    // The rates are printed rounded to a sample per second.
    assert!((printed - fast / dense).abs() <= 0.011, "{out}");

    let out = bench_train(&["--eval"]);
    assert!(out.contains("on 10000 samples"), "{out}");
    assert!(out.contains("not used (most inputs are not zero)"), "{out}");
}
