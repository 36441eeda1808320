use super::*;

const MINIMAL: &str = "[learning]\nmodel = { kind = \"logistic-regression\" }\n";

#[test]
fn the_example_config_parses_and_resolves() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/node.toml");
    let c = Config::read(&path).unwrap();
    let r = c.clone().resolve(Overrides::default(), &path).unwrap();
    assert!(!r.listen.is_empty());
    assert_eq!(r.key, r.state_dir.join("node.key"));
    // The engine keys shown there are the defaults.
    assert_eq!(
        engine::Config {
            rounds: None,
            ..c.engine.clone()
        },
        engine::Config::default()
    );
    // The README's local network: four partitions, one per `--index`.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/local.toml");
    let c = Config::read(&path).unwrap();
    let r = c
        .resolve(
            Overrides {
                index: Some(3),
                ..Overrides::default()
            },
            &path,
        )
        .unwrap();
    assert_eq!(r.config.engine.rounds, Some(30));
}

/// A red-team node colludes through a shared directory; anything else about knowledge is
/// an error that names the field and says why.
#[test]
fn collusion_needs_an_attack_and_a_shared_directory() {
    let p = Path::new("x.toml");
    let c = Config::parse(MINIMAL, p).unwrap();
    let with = |attack: bool, knowledge: &str, intel: bool| {
        c.clone().resolve(
            Overrides {
                attack: attack.then(|| "alie".parse().unwrap()),
                attack_knowledge: Some(knowledge.parse().unwrap()),
                attack_intel: intel.then(|| PathBuf::from("intel")),
                ..Overrides::default()
            },
            p,
        )
    };
    let r = with(true, "colluding", true).unwrap();
    assert_eq!(r.config.node.attack_knowledge, Knowledge::Colluding);
    assert_eq!(
        r.run,
        c.run_id(None),
        "the red team's knowledge is not part of the run id"
    );
    for (attack, knowledge, intel, field, why) in [
        (true, "colluding", false, "node.attack-intel", "directory"),
        (true, "own", true, "node.attack-intel", "not set"),
        (
            true,
            "omniscient",
            true,
            "node.attack-knowledge",
            "simulator",
        ),
        (
            false,
            "colluding",
            true,
            "node.attack-knowledge",
            "node.attack",
        ),
    ] {
        let e = with(attack, knowledge, intel).unwrap_err().to_string();
        assert!(e.contains(field) && e.contains(why), "{knowledge}: {e}");
    }
}

/// A Sybil red-team process runs one identity per key: identity 0 as configured, identity
/// `i` in `<state-dir>/identity-<i>` on the listen and metrics ports plus `i` (port 0 stays
/// 0). Zero identities, too many, identities without an attack and ports past 65535 are
/// refused, naming the field.
#[test]
fn sybil_identities_get_their_own_state_and_ports_and_need_an_attack() {
    let p = Path::new("x.toml");
    let c = Config::parse(MINIMAL, p).unwrap();
    let with = |attack: bool, k: usize, listen: &[&str], metrics: &str| {
        c.clone().resolve(
            Overrides {
                attack: attack.then(|| "junk".parse().unwrap()),
                attack_identities: Some(k),
                listen: listen.iter().map(|a| a.to_string()).collect(),
                metrics: Some(metrics.into()),
                state_dir: Some("red".into()),
                ..Overrides::default()
            },
            p,
        )
    };
    let r = with(
        true,
        3,
        &["/ip4/127.0.0.1/tcp/7070", "/ip4/127.0.0.1/udp/0/quic-v1"],
        "127.0.0.1:9464",
    )
    .unwrap();
    let all = r.identities();
    assert_eq!(all.len(), 3);
    let dirs: Vec<_> = all.iter().map(|r| r.state_dir.clone()).collect();
    assert_eq!(
        dirs,
        [
            PathBuf::from("red"),
            PathBuf::from("red/identity-1"),
            PathBuf::from("red/identity-2")
        ]
    );
    assert_eq!(all[2].key, PathBuf::from("red/identity-2/node.key"));
    assert_eq!(all[0].key, PathBuf::from("red/node.key"));
    let listen: Vec<String> = all[2].listen.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        listen,
        ["/ip4/127.0.0.1/tcp/7072", "/ip4/127.0.0.1/udp/0/quic-v1"]
    );
    assert_eq!(all[1].metrics, Some("127.0.0.1:9465".parse().unwrap()));
    assert_eq!(
        all.iter().map(|r| r.identity).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2)]
    );
    assert_eq!(all[0].run, all[2].run, "the identities are in one run");
    // One identity is the node itself, named by nothing.
    let one = with(false, 1, &[], "").unwrap().identities();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].identity, None);
    for (attack, k, listen, metrics, why) in [
        (true, 0, "/ip4/127.0.0.1/tcp/0", "", "at least 1"),
        (
            true,
            MAX_IDENTITIES + 1,
            "/ip4/127.0.0.1/tcp/0",
            "",
            "limit",
        ),
        (
            false,
            2,
            "/ip4/127.0.0.1/tcp/0",
            "",
            "node.attack is not set",
        ),
        (true, 3, "/ip4/127.0.0.1/tcp/65534", "", "above 65535"),
        (
            true,
            3,
            "/ip4/127.0.0.1/tcp/0",
            "127.0.0.1:65534",
            "above 65535",
        ),
    ] {
        let e = with(attack, k, &[listen], metrics).unwrap_err().to_string();
        assert!(
            e.contains("node.attack-identities") && e.contains(why),
            "{k} identities, {listen}, {metrics:?}: {e}"
        );
    }
}

/// Aiming at each asker needs forgeries made for each asker, which only a colluding
/// red-team node makes: refused otherwise, naming the field.
#[test]
fn aiming_at_the_victim_needs_collusion() {
    let p = Path::new("x.toml");
    let text = |knowledge: &str| {
        format!(
            "{MINIMAL}[node]\nattack = {{ kind = \"alie\" }}\nattack-aim = \"victim\"\n{knowledge}"
        )
    };
    let own = Config::parse(&text(""), p).unwrap();
    let e = own
        .resolve(Overrides::default(), p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("node.attack-aim") && e.contains("colluding"),
        "{e}"
    );
    let colluding = Config::parse(
        &text("attack-knowledge = \"colluding\"\nattack-intel = \"intel\"\n"),
        p,
    )
    .unwrap();
    let r = colluding.resolve(Overrides::default(), p).unwrap();
    assert_eq!(r.config.node.attack_aim, Aim::Victim);
}

/// `MINIMAL` resolved with `attack` (parsed) and the attacker's power that `power` sets.
fn with_power(
    attack: Option<&str>,
    power: impl Fn(&mut Overrides),
) -> Result<Resolved, ConfigError> {
    let p = Path::new("x.toml");
    let mut overrides = Overrides {
        attack: attack.map(|a| a.parse().unwrap()),
        ..Overrides::default()
    };
    power(&mut overrides);
    Config::parse(MINIMAL, p).unwrap().resolve(overrides, p)
}

/// `--attack-free-timing` makes a red-team node skip training; without an attack, or with
/// label flipping (which is training), it is refused, naming the field.
#[test]
fn free_timing_needs_an_attack_that_does_not_train() {
    let with = |attack| with_power(attack, |o| o.attack_free_timing = true);
    assert!(
        with(Some("opt-alie"))
            .unwrap()
            .config
            .node
            .attack_free_timing
    );
    for (attack, why) in [
        (None, "node.attack is not set"),
        (Some("label-flip"), "label-flip"),
    ] {
        let e = with(attack).unwrap_err().to_string();
        assert!(
            e.contains("node.attack-free-timing") && e.contains(why),
            "{e}"
        );
    }
}

/// `--attack-hog` sets `node.attack-hog` on a red-team node; without an attack it is refused,
/// naming the field.
#[test]
fn hogging_uplinks_needs_an_attack() {
    let with = |attack| with_power(attack, |o| o.attack_hog = true);
    assert!(with(Some("alie")).unwrap().config.node.attack_hog);
    let e = with(None).unwrap_err().to_string();
    assert!(
        e.contains("node.attack-hog") && e.contains("node.attack is not set"),
        "{e}"
    );
    // Taking turns: each of three identities has its own; it needs hog and identities.
    let in_turn = |hog, identities| {
        with_power(Some("alie"), |o| {
            o.attack_hog = hog;
            o.attack_hog_in_turn = true;
            o.attack_identities = identities;
            o.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
        })
    };
    let turns: Vec<_> = in_turn(true, Some(3))
        .unwrap()
        .identities()
        .iter()
        .map(Resolved::hog_turn)
        .collect();
    assert_eq!(turns, [Some((0, 3)), Some((1, 3)), Some((2, 3))]);
    assert_eq!(with(Some("alie")).unwrap().hog_turn(), None);
    for (hog, identities) in [(false, Some(3)), (true, None), (true, Some(1))] {
        let e = in_turn(hog, identities).unwrap_err().to_string();
        assert!(
            e.contains("node.attack-hog-in-turn") && e.contains("identities above 1"),
            "{hog} {identities:?}: {e}"
        );
    }
}

#[test]
fn defaults_overrides_and_errors_naming_file_and_field() {
    let p = Path::new("x.toml");
    let c = Config::parse(MINIMAL, p).unwrap();
    assert_eq!(c.engine, engine::Config::default());
    assert!(c.network.mdns);
    let r = c
        .clone()
        .resolve(
            Overrides {
                listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
                attack: Some("alie".parse().unwrap()),
                no_mdns: true,
                ..Overrides::default()
            },
            p,
        )
        .unwrap();
    assert_eq!(r.listen.len(), 1);
    assert!(!r.config.network.mdns);
    assert_eq!(
        r.run,
        c.run_id(None),
        "the attack is not part of the run id"
    );

    let e = Config::parse(
        "[learning]\nmodel = { kind = \"mlp\", hidden = [4] }\n[network]\nlisten-on = []\n",
        p,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("x.toml") && e.contains("listen-on"), "{e}");

    let e = c
        .clone()
        .resolve(
            Overrides {
                bootstrap: vec!["not an address".into()],
                ..Overrides::default()
            },
            p,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--bootstrap") && e.contains("not an address") && !e.contains("x.toml"),
        "a flag's error names the flag, not the file: {e}"
    );
    let e = c
        .resolve(
            Overrides {
                index: Some(3),
                ..Overrides::default()
            },
            p,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("node.index"), "{e}");
    let e = Config::parse(&format!("{MINIMAL}batch-size = 0\n"), p)
        .unwrap()
        .resolve(Overrides::default(), p)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("x.toml: `learning`: batch-size"), "{e}");
    let e = Config::parse(&format!("{MINIMAL}[engine]\nmax-peers = 64\n"), p)
        .unwrap()
        .resolve(Overrides::default(), p)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("x.toml: `engine.max-peers`: 64 is below network.max-connections = 128"),
        "{e}"
    );
    let e = Config::parse(&format!("{MINIMAL}[engine]\nfanout = 0\n"), p)
        .unwrap()
        .resolve(Overrides::default(), p)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("x.toml: `engine`: `fanout`"), "{e}");
}

#[test]
fn run_id_changes_with_the_learning_config_and_seed() {
    let p = Path::new("x.toml");
    let a = Config::parse(MINIMAL, p).unwrap();
    let mut b = a.clone();
    b.run.seed = 2;
    let mut c = a.clone();
    c.learning.local_steps += 1;
    assert_ne!(a.run_id(None), b.run_id(None));
    assert_ne!(a.run_id(None), c.run_id(None));
    let mut d = a.clone();
    d.engine.fanout = 9;
    assert_eq!(
        a.run_id(None),
        d.run_id(None),
        "round rules may differ between nodes"
    );
    let mut e = a.clone();
    e.engine.codec = murmur_protocol::wire::Codec::Bf16Le;
    assert_ne!(
        a.run_id(None),
        e.run_id(None),
        "the codec is part of the run"
    );
    let block = |block| {
        let mut c = a.clone();
        c.engine.codec = murmur_protocol::wire::Codec::Int8 { block };
        c.run_id(None)
    };
    assert_ne!(block(64), block(256), "and so is its block");
    let mut f = a.clone();
    f.engine.codec = murmur_protocol::wire::Codec::TopK { ppm: 10_000 };
    let mut g = f.clone();
    g.engine.last_fraction = Some(0.1);
    assert_ne!(
        f.run_id(None),
        g.run_id(None),
        "and the top-k fraction of the last rounds"
    );
}

/// `run.members`: the keys (as peer ids or hex, in any order, at any path) are part of the run
/// id, the path is not; a missing file or a line that is not a key is an error naming the file
/// and the line.
#[test]
fn the_members_file_is_read_into_the_run_id_and_its_errors_name_the_file_and_line() {
    use murmur_protocol::Identity;
    let dir = tempfile::tempdir().unwrap();
    let p = Path::new("x.toml");
    let keys: Vec<Identity> = (1..=3u8).map(|i| Identity::from_secret([i; 32])).collect();
    let peer_id = |k: &Identity| crate::net::keypair(k).public().to_peer_id().to_string();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let a = write(
        "a.txt",
        format!(
            "# the labs\n{}\n{}  # lab B\n",
            peer_id(&keys[0]),
            peer_id(&keys[1])
        ),
    );
    let b = write(
        "b.txt",
        format!(
            "{}\n\n{}\n",
            hex::encode(keys[1].public().0),
            peer_id(&keys[0])
        ),
    );
    let c = write("c.txt", format!("{}\n", peer_id(&keys[2])));
    let resolve = |members: &Path| {
        Config::parse(MINIMAL, p).unwrap().resolve(
            Overrides {
                members: Some(members.to_owned()),
                ..Overrides::default()
            },
            p,
        )
    };
    let (ra, rb, rc) = (
        resolve(&a).unwrap(),
        resolve(&b).unwrap(),
        resolve(&c).unwrap(),
    );
    let m = ra.members.as_deref().unwrap();
    assert!(m.admits(&keys[0].public()) && m.admits(&keys[1].public()));
    assert!(!m.admits(&keys[2].public()));
    assert_eq!(
        ra.run, rb.run,
        "the same keys, another path, order and form"
    );
    assert_ne!(ra.run, rc.run, "other keys, another run");
    let none = Config::parse(MINIMAL, p).unwrap();
    assert_ne!(ra.run, none.run_id(None), "a list makes another run");
    assert_eq!(
        none.clone().resolve(Overrides::default(), p).unwrap().run,
        none.run_id(None)
    );
    let bad = write("bad.txt", format!("{}\nlab-c\n", peer_id(&keys[0])));
    let missing = dir.path().join("missing.txt");
    for (path, want) in [
        (&bad, "(run.members): line 2: \"lab-c\" is neither"),
        (&missing, "(run.members): No such file"),
    ] {
        let e = resolve(path).unwrap_err().to_string();
        assert!(
            e.starts_with(&path.display().to_string()) && e.contains(want),
            "{e}"
        );
    }
}

/// The run id leaves the members path out: a path that is no UTF-8 (which serde cannot write as
/// JSON) gives the run id of the same keys at any other path.
#[test]
fn a_members_path_that_is_no_utf8_leaves_the_run_id_alone() {
    use std::os::unix::ffi::OsStrExt;
    let p = Path::new("x.toml");
    let mut c = Config::parse(MINIMAL, p).unwrap();
    let list = Members::new([murmur_protocol::Identity::from_secret([3; 32]).public()]);
    let plain = c.run_id(Some(&list));
    c.run.members = Some(PathBuf::from(std::ffi::OsStr::from_bytes(b"lab-\xff.txt")));
    assert_eq!(c.run_id(Some(&list)), plain);
}
