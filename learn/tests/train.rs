//! Training on one node: accuracy on the digits, determinism, flat parameters, the worker.

use murmur_learn::data::{self, Shard};
use murmur_learn::model::{Arch, Net, Spec as ModelSpec};
use murmur_learn::train::{Backend, Command, Reply, Setup, Spec, Trainer, Worker};

fn digits_setup(model: &str, optimizer: &str) -> (Setup, data::Split) {
    let text = format!("model = {model}\noptimizer = {optimizer}\nbatch-size = 32\n");
    let spec: Spec = toml::from_str(&text).unwrap();
    spec.load(7).unwrap()
}

#[test]
fn mlp_reaches_95_percent_on_held_out_digits() {
    let (setup, split) = digits_setup(
        r#"{ kind = "mlp", hidden = [64] }"#,
        r#"{ kind = "sgd", lr = 0.05, momentum = 0.9 }"#,
    );
    assert_eq!(split.test.len(), 359, "20% held out");
    let mut trainer = Trainer::new(&setup, Shard::all(split.train.clone()), 0, 1).unwrap();
    let before = trainer.evaluate(&split.test);
    assert!(before.accuracy < 0.3, "untrained model: {before:?}");
    // 30 epochs of 45 batches.
    let report = trainer.train_steps(30 * 45);
    assert_eq!(report.samples, 30 * 45 * 32);
    assert!(report.samples_per_sec() > 0.0);
    let after = trainer.evaluate(&split.test);
    println!(
        "digits MLP: {after:?}, {:.0} samples/s",
        report.samples_per_sec()
    );
    assert!(after.accuracy >= 0.95, "test accuracy {after:?}");
    assert!(after.loss < before.loss);
}

#[test]
fn adam_and_cosine_train_logistic_regression() {
    let (setup, split) = digits_setup(
        r#"{ kind = "logistic-regression" }"#,
        r#"{ kind = "adam", lr = 0.01, schedule = "cosine", total-steps = 600 }"#,
    );
    let mut trainer = Trainer::new(&setup, Shard::all(split.train.clone()), 0, 1).unwrap();
    let r = trainer.train_steps(600);
    assert!(r.lr < 1e-6, "cosine ends at min-lr 0, last lr {}", r.lr);
    let eval = trainer.evaluate(&split.test);
    assert!(eval.accuracy > 0.9, "{eval:?}");
}

#[test]
fn identical_seeds_give_identical_parameters() {
    let (setup, split) = digits_setup(
        r#"{ kind = "cnn", channels = [4, 8], hidden = 16 }"#,
        r#"{ kind = "sgd", lr = 0.05, momentum = 0.9, weight-decay = 0.0001 }"#,
    );
    let shard = Shard::all(split.train.clone());
    let run = |seed: u64| {
        let mut t = Trainer::new(&setup, shard.clone(), 3, seed).unwrap();
        let initial = t.params().to_vec();
        t.train_steps(15);
        (initial, t.params().to_vec())
    };
    let (init_a, a) = run(11);
    let (init_b, b) = run(11);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&init_a), bits(&init_b));
    assert_eq!(bits(&a), bits(&b));
    assert_ne!(init_a, a, "training changed the parameters");
    let (init_c, c) = run(12);
    assert_ne!(init_a, init_c);
    assert_ne!(a, c);

    // The same trainer on a worker thread produces the same bits.
    let trainer = Trainer::new(&setup, shard, 3, 11).unwrap();
    let worker = Worker::spawn(trainer, 2).unwrap();
    worker
        .send(
            41,
            Command::Train {
                round: 4,
                params: None,
                steps: 15,
            },
        )
        .unwrap();
    match worker.recv().unwrap() {
        (
            41,
            Reply::Trained {
                round,
                params,
                report,
            },
        ) => {
            assert_eq!(round, 4);
            assert_eq!(bits(&params), bits(&a));
            assert_eq!(report.steps, 15);
        }
        other => panic!("unexpected reply {other:?}"),
    }
    worker
        .send(
            42,
            Command::Train {
                round: 5,
                params: Some(vec![0.0; 3]),
                steps: 1,
            },
        )
        .unwrap();
    assert!(matches!(
        worker.recv().unwrap(),
        (42, Reply::Failed { round: 5, .. })
    ));
    worker
        .send(
            43,
            Command::Set {
                params: vec![0.0; 3],
            },
        )
        .unwrap();
    assert!(matches!(worker.recv().unwrap(), (43, Reply::Failed { .. })));
    worker
        .send(
            44,
            Command::Evaluate {
                round: 6,
                data: split.test.clone(),
            },
        )
        .unwrap();
    assert!(matches!(
        worker.recv().unwrap(),
        (44, Reply::Evaluated { round: 6, .. })
    ));
    let back = worker.shutdown().unwrap();
    assert_eq!(bits(back.params()), bits(&a));
}

#[test]
fn flatten_and_write_back_round_trip_exactly() {
    let shape = data::InputShape {
        channels: 1,
        height: 28,
        width: 28,
    };
    let device = Backend::Flex.device().unwrap().autodiff();
    for spec in [
        ModelSpec::LogisticRegression,
        ModelSpec::Mlp {
            hidden: vec![32, 16],
        },
        ModelSpec::Cnn {
            channels: [4, 8],
            hidden: 16,
        },
    ] {
        let arch = Arch::new(&spec, shape, 10).unwrap();
        let a = arch.init(1);
        let net = Net::from_flat(&arch, &a, &device).unwrap();
        assert_eq!(net.flatten(), a, "{spec:?}: flatten(from_flat(a)) == a");
        // Values that exercise every bit pattern class: negatives, subnormals, large.
        let b: Vec<f32> = (0..a.len())
            .map(|i| match i % 4 {
                0 => -(i as f32) * 1e-3,
                1 => f32::from_bits(i as u32 & 0x7f_ffff),
                2 => 1e30 / (i as f32 + 1.0),
                _ => a[i] * 3.0,
            })
            .collect();
        let net = net.write_back(&b);
        let back = net.flatten();
        assert!(
            back.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{spec:?}: write_back then flatten is exact"
        );
        // Written-back parameters still take part in autodiff.
        let x = burn::tensor::Tensor::<2>::ones([2, shape.len()], &device);
        let loss = net.forward(x).sum();
        let mut grads = loss.backward();
        let mut params = b.clone();
        let mut seen = 0;
        let mut nonzero = false;
        net.for_each_grad(&mut grads, &mut params, |offset, p, g| {
            assert_eq!(offset, seen);
            assert_eq!(p.len(), g.len());
            nonzero |= g.iter().any(|&v| v != 0.0);
            seen += g.len();
        });
        assert_eq!(seen, arch.num_params());
        assert!(nonzero, "{spec:?}: gradients flow after write-back");
    }
}

/// The full-MNIST figure of the README; needs all of MNIST and about a minute in a release
/// build: `MURMUR_MNIST_DIR=DIR cargo test --release -p murmur-learn --test train -- --ignored
/// --nocapture` (fetch it with `murmur-node data fetch mnist --dir DIR`).
#[test]
#[ignore = "trains on all of MNIST in MURMUR_MNIST_DIR (about a minute in release)"]
fn full_mnist_mlp_reaches_97_5_percent() {
    let dir =
        std::env::var("MURMUR_MNIST_DIR").expect("MURMUR_MNIST_DIR names the MNIST directory");
    let spec: Spec = toml::from_str(&format!(
        "model = {{ kind = \"mlp\", hidden = [128] }}\n\
         data = {{ kind = \"mnist\", dir = {dir:?} }}\n\
         optimizer = {{ kind = \"sgd\", lr = 0.05, momentum = 0.9, schedule = \"cosine\", total-steps = 18750 }}\n\
         batch-size = 32\n"
    ))
    .unwrap();
    let (setup, split) = spec.load(1).unwrap();
    let epochs = murmur_learn::train::bench::train_to_accuracy(&setup, &split, 10, 1, &mut |e| {
        println!("{e:?}")
    })
    .unwrap();
    let last = epochs.last().unwrap();
    assert!(last.test.accuracy >= 0.975, "{last:?}");
}

/// Handing the parameters over after a job and adopting the mix's buffer (what the simulator
/// does, so a node holds one copy of its model, not two) trains exactly as copying them does,
/// with and without an outer optimiser.
#[test]
fn taking_and_adopting_parameters_trains_as_copying_them() {
    for optimizer in [
        r#"{ kind = "sgd", lr = 0.05, momentum = 0.9 }"#,
        r#"{ kind = "sgd", lr = 0.05, momentum = 0.9 }
outer = { lr = 0.7, momentum = 0.9 }"#,
    ] {
        let (setup, split) = digits_setup(r#"{ kind = "mlp", hidden = [16] }"#, optimizer);
        let fresh = || Trainer::new(&setup, Shard::all(split.train.clone()), 0, 3).unwrap();
        let (mut copying, mut taking) = (fresh(), fresh());
        for round in 0..3 {
            copying.train_steps(4);
            taking.train_steps(4);
            let trained = copying.params().to_vec();
            let taken = taking.take_params();
            assert_eq!(taken, trained, "round {round}: {optimizer}");
            assert!(taking.params().is_empty(), "nothing left behind");
            let mixed: Vec<f32> = trained.iter().map(|p| p * 0.9).collect();
            copying.apply_mix(&mixed).unwrap();
            taking.adopt_mix(mixed).unwrap();
            assert_eq!(
                taking.params(),
                copying.params(),
                "round {round}: {optimizer}"
            );
        }
        let err = taking.adopt_mix(vec![0.0; 3]).unwrap_err();
        assert!(err.to_string().contains('3'), "{err}");
    }
}

/// A released trainer (a simulated node that finished) holds neither parameters nor optimiser
/// state; given a model again it trains as a trainer whose optimiser state restarts from zero.
#[test]
fn a_released_trainer_frees_its_state_and_trains_again_from_zero_momentum() {
    let (setup, split) = digits_setup(
        r#"{ kind = "mlp", hidden = [16] }"#,
        r#"{ kind = "sgd", lr = 0.05, momentum = 0.9 }"#,
    );
    let fresh = || Trainer::new(&setup, Shard::all(split.train.clone()), 0, 3).unwrap();
    let (mut released, mut zeroed) = (fresh(), fresh());
    released.train_steps(4);
    zeroed.train_steps(4);
    let model = zeroed.params().to_vec();
    released.release();
    assert!(released.params().is_empty());
    assert!(released.optimizer_state().m.is_empty(), "momentum freed");
    let mut state = zeroed.optimizer_state().clone();
    state.m.iter_mut().for_each(|m| *m = 0.0);
    zeroed.set_optimizer_state(state).unwrap();
    released.set_params(&model).unwrap();
    assert_eq!(released.optimizer_state(), zeroed.optimizer_state());
    released.train_steps(4);
    zeroed.train_steps(4);
    assert_eq!(released.params(), zeroed.params());

    // With an outer optimiser, a mix given to a released trainer becomes its model whole (there
    // is no round start to step from).
    let (setup, split) = digits_setup(
        r#"{ kind = "mlp", hidden = [16] }"#,
        r#"{ kind = "sgd", lr = 0.05, momentum = 0.9 }
outer = { lr = 0.7, momentum = 0.9 }"#,
    );
    let mut outer = Trainer::new(&setup, Shard::all(split.train.clone()), 0, 3).unwrap();
    outer.train_steps(4);
    let mixed: Vec<f32> = outer.params().iter().map(|p| p * 0.5).collect();
    outer.release();
    outer.adopt_mix(mixed.clone()).unwrap();
    assert_eq!(outer.params(), &mixed[..]);
    assert!(outer.optimizer_state().outer.iter().all(|&m| m == 0.0));
    outer.train_steps(4);
}

/// Two trainers of the same digits MLP (hidden 16), node 2, seed 5, with `optimizer`: one built
/// with its initial model, one awaiting it.
fn built_and_awaiting(optimizer: &str) -> (Trainer, Trainer) {
    let (setup, split) = digits_setup(r#"{ kind = "mlp", hidden = [16] }"#, optimizer);
    let shard = || Shard::all(split.train.clone());
    (
        Trainer::new(&setup, shard(), 2, 5).unwrap(),
        Trainer::awaiting_model(&setup, shard(), 2, 5).unwrap(),
    )
}

/// A trainer built awaiting its model holds nothing model-sized; given the initial model, it
/// trains to the same bits as one built with it, with or without momentum. With an outer
/// optimiser it is built with its model, as its first mix steps from it.
#[test]
fn a_trainer_awaiting_its_model_trains_as_one_built_with_it() {
    for optimizer in [
        r#"{ kind = "sgd", lr = 0.05, momentum = 0.9 }"#,
        r#"{ kind = "adam", lr = 0.01 }"#,
    ] {
        let (mut built, mut awaiting) = built_and_awaiting(optimizer);
        assert!(awaiting.params().is_empty(), "{optimizer}");
        assert!(awaiting.optimizer_state().m.is_empty(), "{optimizer}");
        let initial = built.params().to_vec();
        awaiting.set_params(&initial).unwrap();
        assert_eq!(awaiting.optimizer_state(), built.optimizer_state());
        for _ in 0..3 {
            built.train_steps(4);
            awaiting.train_steps(4);
        }
        assert_eq!(awaiting.params(), built.params(), "{optimizer}");
        assert_eq!(awaiting.optimizer_state(), built.optimizer_state());
    }
    let (setup, split) = digits_setup(
        r#"{ kind = "mlp", hidden = [16] }"#,
        r#"{ kind = "sgd", lr = 0.05, momentum = 0.9 }
outer = { lr = 0.7, momentum = 0.9 }"#,
    );
    let awaiting = Trainer::awaiting_model(&setup, Shard::all(split.train.clone()), 0, 3).unwrap();
    let built = Trainer::new(&setup, Shard::all(split.train.clone()), 0, 3).unwrap();
    assert_eq!(awaiting.params(), built.params(), "built with its model");
}

/// Training from a model held elsewhere (`train_steps_from`) gives the same bits as copying it
/// in and training: plain SGD, momentum with weight decay and Adam, from a trainer that holds
/// no model (taken, or awaiting its first) or another one; and a model of the wrong length is
/// refused.
#[test]
fn training_from_a_model_held_elsewhere_is_training_a_copy_of_it() {
    for optimizer in [
        r#"{ kind = "sgd", lr = 0.05 }"#,
        r#"{ kind = "sgd", lr = 0.05, momentum = 0.9, weight-decay = 0.01 }"#,
        r#"{ kind = "adam", lr = 0.01, weight-decay = 0.01 }"#,
    ] {
        let (mut copying, mut from) = built_and_awaiting(optimizer);
        let mut model = copying.params().to_vec();
        from.set_optimizer_state(copying.optimizer_state().clone())
            .unwrap();
        for job in 0..20 {
            let steps = 1 + job % 3;
            copying.set_params(&model).unwrap();
            let a = copying.train_steps(steps);
            if job % 5 == 4 {
                // A trainer still holding a model: `from` replaces it.
                from.set_params(&vec![1.0; model.len()]).unwrap();
            }
            let b = from.train_steps_from(&model, steps).unwrap();
            assert_eq!((a.steps, a.samples), (b.steps, b.samples), "{optimizer}");
            assert_eq!(a.mean_loss.to_bits(), b.mean_loss.to_bits(), "{optimizer}");
            let bits = |t: &Trainer| t.params().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&from), bits(&copying), "job {job}: {optimizer}");
            assert_eq!(
                from.optimizer_state(),
                copying.optimizer_state(),
                "{optimizer}"
            );
            // The next job starts from a model as a mix would give it, held elsewhere.
            model = from.take_params().iter().map(|p| p * 0.75).collect();
        }
        let err = from.train_steps_from(&[0.0; 3], 1).unwrap_err();
        assert!(err.to_string().contains('3'), "{err}");
    }
}

/// A trainer whose momenta hold subnormal values (as a model that fits its shard comes to) looks
/// for them every 16 jobs, and from the first look that finds one flushes them at every step:
/// operations on subnormal values take the CPU a slow path.
#[test]
fn a_trainer_flushes_subnormal_momenta_from_the_look_that_finds_them() {
    let (setup, split) = digits_setup(
        r#"{ kind = "mlp", hidden = [16] }"#,
        r#"{ kind = "sgd", lr = 0.05, momentum = 0.9 }"#,
    );
    let mut t = Trainer::new(&setup, Shard::all(split.train.clone()), 0, 3).unwrap();
    let mut state = t.optimizer_state().clone();
    state
        .m
        .iter_mut()
        .for_each(|m| *m = f32::MIN_POSITIVE / 4.0);
    t.set_optimizer_state(state).unwrap();
    let subnormal = |t: &Trainer| {
        let m = &t.optimizer_state().m;
        m.iter().filter(|m| m.is_subnormal()).count()
    };
    for _ in 0..15 {
        t.train_steps(1);
    }
    // The digits' always-blank pixels give their weights no gradient: their momenta decay
    // within the subnormal range.
    let before = subnormal(&t);
    assert!(before > 0, "no subnormal momenta to flush");
    t.train_steps(1); // the 16th job looks, and finds some
    t.train_steps(1);
    assert_eq!(subnormal(&t), 0, "{before} subnormal momenta before");
}

/// burn's autodiff keeps every thread's graphs in one process-wide locator, and each backward
/// pass sweeps the graphs it finds unused, those of other threads included (burn issue 5573: a
/// sweep that frees a step another thread is still building loses a gradient, silently; this
/// crate then updates that tensor with a zero gradient). The simulator trains its nodes on
/// several threads at once, and its results must not depend on how many. Trainers of an MLP and
/// a CNN trained together on six threads, eight times over, give the bits each gives alone.
#[test]
fn trainers_on_several_threads_at_once_give_the_bits_each_gives_alone() {
    const THREADS: usize = 6;
    const ATTEMPTS: usize = 8;
    let models = [
        r#"{ kind = "mlp", hidden = [16] }"#,
        r#"{ kind = "cnn", channels = [4, 8], hidden = 16 }"#,
    ];
    let setups = models.map(|m| {
        digits_setup(
            m,
            r#"{ kind = "sgd", lr = 0.05, momentum = 0.9, weight-decay = 0.0001 }"#,
        )
    });
    let (_, split) = &setups[0];
    let shards = Shard::split(&split.train, &data::Partition::Iid, THREADS, 3).unwrap();
    let trained = |i: usize| {
        let setup = &setups[i % setups.len()].0;
        let mut t = Trainer::new(setup, shards[i].clone(), i as u32, 9).unwrap();
        for _ in 0..6 {
            t.train_steps(4);
        }
        t.params().iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    };
    let alone: Vec<_> = (0..THREADS).map(trained).collect();
    for attempt in 0..ATTEMPTS {
        let together: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS).map(|i| s.spawn(move || trained(i))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
            assert!(a == b, "attempt {attempt}: trainer {i} ({})", models[i % 2]);
        }
    }
}
