//! The documented example configs parse, and say what the code does.

use murmur_protocol::engine::Config;

#[test]
fn engine_example_shows_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/engine.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let parsed: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        parsed,
        Config::default(),
        "{path} no longer shows the defaults"
    );
    parsed.validate().unwrap();
}
