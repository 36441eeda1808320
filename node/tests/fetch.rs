//! `data fetch` against a local HTTP server serving the shared MNIST files.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use murmur_node::data::fetch::{self, FetchError, Source};

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/mnist");

/// Serves files of `root` over HTTP/1.1 on a loopback port from a background thread; returns
/// the base URL. Unknown paths get 404.
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let name = path.trim_start_matches("/mnist/");
            let file = root.join(name);
            let _ = match std::fs::read(&file) {
                Ok(body) if !name.contains('/') => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&body)),
                _ => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    format!("http://{addr}/mnist/")
}

fn no_part_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".part"))
}

#[test]
fn fetch_downloads_and_verifies_mnist_then_reuses_it() {
    let base = serve(PathBuf::from(MNIST));
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("mnist");
    let mut updates = 0;
    let paths = fetch::fetch(Source::Mnist, &target, &base, &mut |p| {
        assert!(!p.cached);
        assert!(p.total.is_some_and(|t| p.done <= t));
        updates += 1;
    })
    .unwrap();
    assert_eq!(paths.len(), 4);
    assert!(updates >= 4);
    for (path, file) in paths.iter().zip(Source::Mnist.files()) {
        assert_eq!(fetch::sha256_file(path).unwrap(), file.sha256);
    }
    assert!(no_part_files(&target));
    // The fetched directory is a loadable MNIST directory.
    let split = murmur_node::data::Spec::Mnist {
        dir: target.clone(),
    }
    .load(0)
    .unwrap();
    assert_eq!(split.test.len(), 10_000);

    // A second fetch finds the files present and downloads nothing (an unreachable URL).
    let mut cached = 0;
    fetch::fetch(Source::Mnist, &target, "http://127.0.0.1:9/", &mut |p| {
        assert!(p.cached);
        cached += 1;
    })
    .unwrap();
    assert_eq!(cached, 4);
}

#[test]
fn fetch_rejects_files_with_the_wrong_digest_and_missing_files() {
    // Serving MNIST under Fashion-MNIST's names: the bytes arrive but the digests differ.
    let base = serve(PathBuf::from(MNIST));
    let dir = tempfile::tempdir().unwrap();
    let err = fetch::fetch(Source::FashionMnist, dir.path(), &base, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
    assert!(
        err.to_string().contains("train-images-idx3-ubyte.gz"),
        "{err}"
    );
    assert!(!dir.path().join("train-images-idx3-ubyte.gz").exists());
    assert!(no_part_files(dir.path()));

    let empty = tempfile::tempdir().unwrap();
    let base = serve(empty.path().to_owned());
    let err = fetch::fetch(Source::Mnist, dir.path(), &base, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Http { .. }), "{err}");
    assert!(err.to_string().contains("404"), "{err}");
}

#[test]
fn the_cli_fetches_with_a_base_url() {
    let base = serve(PathBuf::from(MNIST));
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_murmur-node"))
        .args(["data", "fetch", "mnist", "--dir"])
        .arg(dir.path())
        .args(["--base-url", &base])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("100%"), "progress shown: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    for file in Source::Mnist.files() {
        assert!(dir.path().join(file.name).is_file());
    }
}
