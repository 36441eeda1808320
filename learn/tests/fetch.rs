//! Downloads against a local HTTP server serving the MNIST subset of `tests/fixtures/mnist`:
//! files are fetched, checked against their SHA-256, cached, and refused when the digest
//! differs or the server has no such file.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use murmur_learn::data::fetch::{self, FetchError, File, Source};

/// The MNIST subset shipped with the repository.
const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/mnist");

/// The subset's four files with the digests they have (the published MNIST digests are of the
/// full files).
fn subset_files() -> Vec<File> {
    Source::Mnist
        .files()
        .iter()
        .map(|f| File {
            name: f.name,
            sha256: Box::leak(
                fetch::sha256_file(&Path::new(MNIST).join(f.name))
                    .unwrap()
                    .into_boxed_str(),
            ),
        })
        .collect()
}

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
fn fetch_downloads_and_verifies_files_then_reuses_them() {
    let base = serve(PathBuf::from(MNIST));
    let files = subset_files();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("mnist");
    let mut updates = 0;
    let paths = fetch::fetch_files(&files, &target, &base, &mut |p| {
        assert!(!p.cached);
        assert!(p.total.is_some_and(|t| p.done <= t));
        updates += 1;
    })
    .unwrap();
    assert_eq!(paths.len(), 4);
    assert!(updates >= 4);
    for (path, file) in paths.iter().zip(&files) {
        assert_eq!(fetch::sha256_file(path).unwrap(), file.sha256);
    }
    assert!(no_part_files(&target));
    // The fetched directory is a loadable MNIST directory.
    let split = murmur_learn::data::Spec::Mnist {
        dir: target.clone(),
    }
    .load(0)
    .unwrap();
    assert_eq!(split.test.len(), 1_000);

    // A second fetch finds the files present and downloads nothing (an unreachable URL).
    let mut cached = 0;
    fetch::fetch_files(&files, &target, "http://127.0.0.1:9/", &mut |p| {
        assert!(p.cached);
        cached += 1;
    })
    .unwrap();
    assert_eq!(cached, 4);
}

#[test]
fn fetch_rejects_files_with_the_wrong_digest_and_missing_files() {
    // The subset under MNIST's and Fashion-MNIST's published digests: the bytes arrive but
    // the digests differ, and nothing is kept.
    let base = serve(PathBuf::from(MNIST));
    for source in [Source::Mnist, Source::FashionMnist] {
        let dir = tempfile::tempdir().unwrap();
        let err = fetch::fetch(source, dir.path(), &base, &mut |_| {}).unwrap_err();
        assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
        assert!(
            err.to_string().contains("train-images-idx3-ubyte.gz"),
            "{err}"
        );
        assert!(!dir.path().join("train-images-idx3-ubyte.gz").exists());
        assert!(no_part_files(dir.path()));
    }

    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let base = serve(empty.path().to_owned());
    let err = fetch::fetch_files(&subset_files(), dir.path(), &base, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Http { .. }), "{err}");
    assert!(err.to_string().contains("404"), "{err}");
}
