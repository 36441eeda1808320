//! `murmur-node data fetch`: the command reports where a download failed. (Downloads and their
//! checks are tested in murmur-learn against a local server.)

#[test]
fn the_cli_names_the_url_and_file_it_could_not_fetch() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on the discard port of the loopback address.
    let base = "http://127.0.0.1:9/mnist/";
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_murmur-node"))
        .args(["data", "fetch", "mnist", "--dir"])
        .arg(dir.path())
        .args(["--base-url", base])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(base), "{stderr}");
    assert!(stderr.contains("train-images-idx3-ubyte.gz"), "{stderr}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing kept"
    );
}
