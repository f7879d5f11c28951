//! The reward crate's metrics on hand-made cases whose answers are known, and its probes on real
//! plugins compiled here.

// Test code: a failed unwrap is the test's failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use hypoforge_plugin::PluginLimits;
use hypoforge_reward::RewardError;
use hypoforge_reward::efficiency::{curve, descending, efficiency, top_count};
use hypoforge_reward::features::{
    Behaviour, FEATURES_VERSION, FeatureSet, Features, code_features,
};
use hypoforge_reward::model::{Models, RewardModel, Sample, ridge, spearman};
use hypoforge_reward::novelty::{REDISCOVERY, distance, library, novelty, similarity_matrix};
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::ComponentKind;
use hypoforge_spec::rng::Rng;
use hypoforge_validate::SourceVerdict;
use rayon::prelude::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

// ---------------------------------------------------------------- efficiency

#[test]
fn a_hand_worked_curve() {
    // Top half of four: hypotheses 0 and 2. Predicted order: 1, 2, 0, 3.
    let truth = [0.9, 0.1, 0.5, 0.3];
    let c = curve(&truth, &descending(&[0.2, 0.9, 0.8, 0.1]), 0.5);
    assert_eq!(c.evaluated, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    assert_eq!(c.found, vec![0.0, 0.0, 0.5, 1.0, 1.0]);
    // 0 + 0.0625 + 0.1875 + 0.25
    assert!(close(c.auc, 0.5), "{}", c.auc);
}

#[test]
fn the_oracle_and_the_worst_order_have_closed_forms() {
    for (n, share) in [(10, 0.1), (50, 0.1), (37, 0.25), (5, 1.0)] {
        let truth: Vec<f64> = (0..n).map(|i| (i * 7 % n) as f64).collect();
        let m = top_count(n, share) as f64;
        let best = curve(&truth, &descending(&truth), share);
        assert!(
            close(best.auc, 1.0 - m / (2.0 * n as f64)),
            "n {n}: {}",
            best.auc
        );
        let reversed: Vec<f64> = truth.iter().map(|t| -t).collect();
        let worst = curve(&truth, &descending(&reversed), share);
        assert!(
            close(worst.auc, m / (2.0 * n as f64)),
            "n {n}: {}",
            worst.auc
        );
    }
}

#[test]
fn random_orders_average_to_the_diagonal() {
    let mut rng = Rng::new(7);
    let truth: Vec<f64> = (0..60).map(|_| rng.uniform()).collect();
    let rounds = 4000;
    let mean = (0..rounds)
        .map(|_| {
            let scores: Vec<f64> = (0..60).map(|_| rng.uniform()).collect();
            curve(&truth, &descending(&scores), 0.1).auc
        })
        .sum::<f64>()
        / f64::from(rounds);
    assert!((mean - 0.5).abs() < 0.01, "{mean}");
}

#[test]
fn an_informative_order_beats_random_and_a_useless_one_does_not() {
    let mut rng = Rng::new(3);
    let truth: Vec<f64> = (0..200).map(|_| rng.uniform()).collect();
    let noisy: Vec<f64> = truth.iter().map(|t| t + 0.2 * rng.normal()).collect();
    let good = efficiency(&truth, &noisy, 0.1, 500, 1);
    assert!(good.beats_random, "{:?}", good.auc_ci);
    assert!(good.auc_ci[0] <= good.model.auc && good.model.auc <= good.auc_ci[1]);
    assert!(good.model.auc <= good.oracle.auc);
    let unrelated: Vec<f64> = (0..200).map(|_| rng.uniform()).collect();
    let useless = efficiency(&truth, &unrelated, 0.1, 500, 1);
    assert!(!useless.beats_random, "{:?}", useless.auc_ci);
    assert!(useless.auc_ci[0] < 0.5 && useless.auc_ci[1] > 0.5);
}

#[test]
fn orders_are_deterministic_with_ties_and_nans() {
    assert_eq!(
        descending(&[1.0, 3.0, 3.0, f64::NAN, 2.0]),
        vec![1, 2, 4, 0, 3]
    );
    assert_eq!(top_count(10, 0.1), 1);
    assert_eq!(top_count(11, 0.1), 2);
    assert_eq!(top_count(3, 0.0), 1);
    assert_eq!(top_count(3, 5.0), 3);
}

// ---------------------------------------------------------------- model

#[test]
fn spearman_on_hand_cases() {
    assert!(close(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 25.0]), 1.0));
    assert!(close(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0));
    // Ties take the average rank: ranks (0.5, 0.5, 2) against (0, 1, 2).
    let expected = 0.866_025_403_784_438_6;
    assert!((spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]) - expected).abs() < 1e-12);
    assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), 0.0);
}

#[test]
fn ridge_recovers_a_linear_rule() {
    let mut rng = Rng::new(11);
    let x: Vec<Vec<f64>> = (0..50)
        .map(|_| vec![rng.normal(), rng.normal(), rng.normal()])
        .collect();
    let y: Vec<f64> = x.iter().map(|r| 2.0 * r[0] - r[1]).collect();
    let w = ridge(&x, &y, 1e-9);
    assert!(
        (w[0] - 2.0).abs() < 1e-6 && (w[1] + 1.0).abs() < 1e-6 && w[2].abs() < 1e-6,
        "{w:?}"
    );
    // A large penalty shrinks everything towards zero.
    let shrunk = ridge(&x, &y, 1e6);
    assert!(shrunk.iter().all(|v| v.abs() < 0.01), "{shrunk:?}");
}

/// Samples whose B-WR is a function of the first behaviour feature alone; code features noise.
fn synthetic_samples(n: usize, seed: u64) -> Vec<Sample> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let signal = rng.normal();
            let behaviour = vec![signal, rng.normal(), rng.normal()];
            let code = vec![rng.normal(), rng.normal()];
            let b_wr = 0.5 + 0.1 * signal + 0.01 * rng.normal();
            Sample {
                features: Features {
                    version: FEATURES_VERSION,
                    code,
                    behaviour,
                },
                b_wr,
                bsota_wr: if signal > 1.0 { 0.3 } else { 0.0 },
            }
        })
        .collect()
}

#[test]
fn the_model_finds_the_informative_features_and_ranks_by_them() {
    let train = synthetic_samples(120, 1);
    let model = RewardModel::train(ComponentKind::Activation, &train, 0.1, 0).unwrap();
    assert_ne!(model.feature_set, FeatureSet::Code, "{model:?}");
    assert!(model.cv_spearman > 0.9, "{}", model.cv_spearman);
    let test = synthetic_samples(60, 2);
    let predicted: Vec<f64> = test
        .iter()
        .map(|s| model.predict(&s.features).unwrap().b_wr)
        .collect();
    let truth: Vec<f64> = test.iter().map(|s| s.b_wr).collect();
    assert!(spearman(&predicted, &truth) > 0.9);
    // The classifier: high-signal samples (BSOTA-WR 0.3 > 0.1) get the higher probabilities.
    let (mut hi, mut lo) = (Vec::new(), Vec::new());
    for s in &test {
        let p = model.predict(&s.features).unwrap().p_bsota;
        assert!((0.0..=1.0).contains(&p));
        if s.bsota_wr > 0.1 {
            hi.push(p);
        } else {
            lo.push(p);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&hi) > 0.5 && mean(&lo) < 0.2,
        "{} {}",
        mean(&hi),
        mean(&lo)
    );
}

#[test]
fn with_one_class_only_the_classifier_gives_its_rate() {
    let mut train = synthetic_samples(40, 5);
    for s in &mut train {
        s.bsota_wr = 0.0;
    }
    let model = RewardModel::train(ComponentKind::Activation, &train, 0.1, 0).unwrap();
    let p = model.predict(&train[0].features).unwrap().p_bsota;
    assert!(p > 0.0 && p < 0.05, "{p}");
}

#[test]
fn too_few_samples_and_foreign_files_are_clear_errors() {
    let err = RewardModel::train(ComponentKind::Regularizer, &synthetic_samples(9, 1), 0.1, 0)
        .unwrap_err();
    assert!(
        matches!(err, RewardError::TooFewSamples { have: 9, .. }),
        "{err}"
    );
    let err = Models::from_json("{\"runs\": []}").unwrap_err().to_string();
    assert!(err.contains("hypoforge reward train"), "{err}");
    let model =
        RewardModel::train(ComponentKind::Activation, &synthetic_samples(30, 1), 0.1, 0).unwrap();
    let file = Models {
        models: vec![model.clone()],
    }
    .to_json();
    assert_eq!(
        Models::from_json(&file).unwrap().models,
        vec![model.clone()]
    );
    let mut old = model.clone();
    old.features_version = FEATURES_VERSION + 1;
    let err = Models::from_json(&Models { models: vec![old] }.to_json()).unwrap_err();
    assert!(matches!(err, RewardError::FeaturesVersion { .. }), "{err}");
    let mut stale = synthetic_samples(1, 9).remove(0).features;
    stale.version = FEATURES_VERSION + 1;
    assert!(model.predict(&stale).is_err());
}

// ---------------------------------------------------------------- novelty

fn act(f: impl Fn(f32) -> f32, df: impl Fn(f32) -> f32) -> Behaviour {
    let grid = hypoforge_reward::features::activation_grid();
    Behaviour::Activation {
        f: grid.iter().map(|&x| f(x)).collect(),
        df: grid.iter().map(|&x| df(x)).collect(),
    }
}

#[test]
fn distances_on_hand_cases() {
    let tanh = act(f32::tanh, |x| 1.0 - x.tanh().powi(2));
    let twice = act(|x| 2.0 * x.tanh(), |x| 2.0 * (1.0 - x.tanh().powi(2)));
    let negated = act(|x| -x.tanh(), |x| -(1.0 - x.tanh().powi(2)));
    assert_eq!(distance(&tanh, &tanh), 0.0);
    // |f - 2f| / (|f| + |2f|) = 1/3, for the values and the slopes alike.
    assert!((distance(&tanh, &twice) - 1.0 / 3.0).abs() < 1e-9);
    assert!((distance(&twice, &tanh) - distance(&tanh, &twice)).abs() < 1e-15);
    assert!((distance(&tanh, &negated) - 1.0).abs() < 1e-9);
    let nan = act(|_| f32::NAN, |_| 0.0);
    assert_eq!(distance(&tanh, &nan), 1.0);

    // Preprocessors compare by their Gram matrices: widths, column order and rotations of the
    // features do not matter, scale does.
    let mut rng = Rng::new(5);
    let (x, y): (Vec<f32>, Vec<f32>) = (0..64)
        .map(|_| (rng.normal() as f32, rng.normal() as f32))
        .unzip();
    let columns = |cols: &[&[f32]]| Behaviour::Preprocessor {
        width: cols.len(),
        output: (0..64)
            .flat_map(|r| cols.iter().map(move |c| c[r]))
            .collect(),
    };
    let narrow = columns(&[&x]);
    let half: Vec<f32> = x.iter().map(|v| v / 2.0f32.sqrt()).collect();
    assert!(distance(&narrow, &columns(&[&half, &half])) < 1e-6);
    assert!(distance(&columns(&[&x, &y]), &columns(&[&y, &x])) < 1e-12);
    let doubled: Vec<f32> = x.iter().map(|v| 2.0 * v).collect();
    // |K - 4K| / (|K| + |4K|) = 3/5 as they are; the same once each column is normalized.
    assert!((distance(&narrow, &columns(&[&doubled])) - 0.3).abs() < 1e-6);
    let shorter = Behaviour::Preprocessor {
        width: 1,
        output: x[..32].to_vec(),
    };
    assert_eq!(distance(&narrow, &shorter), 1.0);
    assert_eq!(distance(&narrow, &tanh), 1.0, "different kinds");

    let reg = |s: f32| Behaviour::Regularizer {
        penalties: vec![s, 2.0 * s],
        gradients: vec![vec![s; 4], vec![-s; 4]],
    };
    assert_eq!(distance(&reg(1.0), &reg(1.0)), 0.0);
    assert!((distance(&reg(1.0), &reg(2.0)) - 1.0 / 3.0).abs() < 1e-9);
}

#[test]
fn novelty_is_the_distance_to_the_nearest_known_component() {
    let tanh = act(f32::tanh, |x| 1.0 - x.tanh().powi(2));
    let almost = act(|x| 1.001 * x.tanh(), |x| 1.001 * (1.0 - x.tanh().powi(2)));
    let known = vec![
        ("identity".to_owned(), act(|x| x, |_| 1.0)),
        ("tanh".to_owned(), tanh.clone()),
    ];
    let n = novelty(&almost, &known).unwrap();
    assert_eq!(n.nearest, "tanh");
    assert!(
        n.rediscovery && n.n_score < REDISCOVERY && n.n_score > 0.0,
        "{n:?}"
    );
    let far = novelty(&act(|x| x * x, |x| 2.0 * x), &known).unwrap();
    assert!(!far.rediscovery, "{far:?}");
    assert!(novelty(&tanh, &[]).is_none());
    let m = similarity_matrix(&[&tanh, &almost, &known[0].1]);
    for (i, row) in m.iter().enumerate() {
        assert_eq!(row[i], 1.0);
        for (j, v) in row.iter().enumerate() {
            assert_eq!(*v, m[j][i]);
        }
    }
    assert!(m[0][1] > 0.98 && m[0][2] < m[0][1]);
}

// ---------------------------------------------------------------- features and probes

#[test]
fn code_features_ignore_comments_and_constant_values_but_not_operations() {
    let a = "fn f<R: Real>(x: R) -> R { x * sigmoid(x) * 0.5 }\n";
    let b = "// exp exp exp: a comment\nfn f<R: Real>(x: R) -> R { x * sigmoid(x) * 0.25 } /* tanh */\n";
    let c = "fn f<R: Real>(x: R) -> R { x * tanh(x) * 0.5 }\n";
    // Sizes differ (bytes); everything else agrees.
    let (fa, fb, fc) = (code_features(a), code_features(b), code_features(c));
    assert_eq!(fa.len(), fb.len());
    let sizes = 6;
    assert_eq!(fa[..fa.len() - sizes], fb[..fb.len() - sizes]);
    assert_ne!(fa[..fa.len() - sizes], fc[..fc.len() - sizes]);
}

fn plugins_folder() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins")
}

fn measure_all(kind: ComponentKind, sources: &[(String, String)]) -> Vec<(String, Behaviour)> {
    let cache = tempfile::tempdir().unwrap();
    let compiler =
        hypoforge_compile::Compiler::new(Some(cache.path()), hypoforge_compile::Limits::default())
            .unwrap();
    let sandbox = Sandbox::shared().unwrap();
    sources
        .par_iter()
        .map(|(name, source)| {
            let checked = hypoforge_validate::check_source(
                &compiler,
                sandbox,
                source.as_bytes(),
                Some(kind),
                PluginLimits::default(),
            );
            let SourceVerdict::Valid(plugin) = checked.verdict else {
                panic!("{kind} {name} is not valid: {:?}", checked.verdict);
            };
            let behaviour = Behaviour::probe(sandbox, &plugin, PluginLimits::default()).unwrap();
            assert_eq!(behaviour.kind(), kind);
            assert!(behaviour.features().iter().all(|v| v.is_finite()), "{name}");
            (name.clone(), behaviour)
        })
        .collect()
}

fn baselines(kind: ComponentKind) -> Vec<(String, String)> {
    let dir = plugins_folder().join(kind.as_str());
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

/// Every published component of the library compiles, validates and is its own thing: no
/// closer than the rediscovery threshold to a baseline or to another library entry.
#[test]
fn the_library_is_valid_and_distinct_from_the_panel() {
    for kind in ComponentKind::ALL {
        let library: Vec<(String, String)> = library(kind)
            .into_iter()
            .map(|(n, s)| (n.to_owned(), s.to_owned()))
            .collect();
        assert!(
            library.len() >= 5,
            "{kind}: {} published components",
            library.len()
        );
        let mut all = baselines(kind);
        let panel = all.len();
        all.extend(library);
        let measured = measure_all(kind, &all);
        for (i, (a, ba)) in measured.iter().enumerate().skip(panel) {
            for (b, bb) in &measured[..i] {
                let d = distance(ba, bb);
                assert!(d >= REDISCOVERY, "{kind} {a} is {d:.4} from {b}");
            }
        }
    }
}

/// The same function written differently measures as a copy; the probes see through syntax.
#[test]
fn a_rewritten_baseline_is_a_rediscovery() {
    let gelu = baselines(ComponentKind::Activation)
        .into_iter()
        .filter(|(n, _)| n == "gelu" || n == "relu")
        .collect::<Vec<_>>();
    let rewritten = (
        "my_gate".to_owned(),
        "use hypoforge_sdk::prelude::*;\n\
         fn gate<R: Real>(z: R) -> R { let p = normal_cdf(z); z * p }\n\
         activation!(name = \"my_gate\", f = gate);\n"
            .to_owned(),
    );
    let mut sources = gelu.clone();
    sources.push(rewritten);
    let measured = measure_all(ComponentKind::Activation, &sources);
    let known = measured[..2].to_vec();
    let n = novelty(&measured[2].1, &known).unwrap();
    assert_eq!(n.nearest, "gelu");
    assert_eq!(n.n_score, 0.0);
    assert!(n.rediscovery);
}
