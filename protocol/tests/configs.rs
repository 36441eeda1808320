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
    // Every key is shown (set, or commented out when it has no default value).
    let defaults = toml::to_string(&Config::default()).unwrap();
    for line in defaults.lines().take_while(|l| !l.starts_with('[')) {
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        assert!(
            text.lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = "))),
            "{path} does not show `{key}`"
        );
    }
    assert!(
        text.contains("# rounds = "),
        "{path} does not show `rounds`"
    );
}
