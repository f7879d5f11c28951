//! Seeded synthetic tasks: small, cheap, and each probing a different inductive bias (curved
//! boundaries, radial symmetry, many windings, axis-aligned parity, a smooth regression).
//!
//! Every generator draws from one [`Rng`] seeded with `seed`, in a fixed order, so a seed names
//! the same data bit for bit on every run. Class labels cycle `0, 1, …` row by row where the
//! geometry allows it, so classes are balanced to within one row and interleaved (any prefix
//! is balanced too).

use std::f64::consts::PI;

use hypoforge_spec::rng::Rng;

use super::{Dataset, DatasetError, MAX_CLASSES, Target};

/// The names [`synthetic`] knows.
pub const SYNTHETIC: &[&str] = &[
    "two_moons",
    "circles",
    "spirals",
    "xor",
    "checkerboard",
    "friedman",
];

/// Generates the synthetic task `name` (one of [`SYNTHETIC`]) with `n` rows and default
/// parameters: moderate noise, so the tasks are learnable but not trivially separable.
pub fn synthetic(name: &str, n: usize, seed: u64) -> Result<Dataset, DatasetError> {
    if n == 0 && SYNTHETIC.contains(&name) {
        return Err(DatasetError::NoRows {
            origin: name.to_owned(),
        });
    }
    Ok(match name {
        "two_moons" => two_moons(n, 0.1, seed),
        "circles" => circles(n, 0.05, 0.5, seed),
        "spirals" => spirals(n, 3, 0.05, seed),
        "xor" => checkerboard(n, 2, seed),
        "checkerboard" => checkerboard(n, 4, seed),
        "friedman" => friedman(n, 1.0, seed),
        _ => {
            return Err(DatasetError::Unknown {
                kind: "synthetic",
                name: name.to_owned(),
                known: SYNTHETIC,
            });
        }
    })
}

/// Two interleaving half circles (scikit-learn's `make_moons`): the upper moon of radius 1 at
/// the origin is class 0, the lower one shifted to `(1, 0.5)` is class 1. Gaussian noise of
/// standard deviation `noise` is added to both coordinates.
///
/// # Panics
///
/// If `noise` is negative or not finite.
pub fn two_moons(n: usize, noise: f64, seed: u64) -> Dataset {
    check_noise(noise);
    let mut rng = Rng::new(seed);
    planar("two_moons", n, 2, &mut rng, |class, rng| {
        let t = PI * rng.uniform();
        let (x, y) = if class == 0 {
            (libm::cos(t), libm::sin(t))
        } else {
            (1.0 - libm::cos(t), 0.5 - libm::sin(t))
        };
        (x + noise * rng.normal(), y + noise * rng.normal())
    })
}

/// Two concentric circles (scikit-learn's `make_circles`): radius 1 is class 0, radius `factor`
/// class 1; Gaussian noise of standard deviation `noise` on both coordinates.
///
/// # Panics
///
/// If `noise` is negative or not finite, or `factor` is not in `(0, 1)`.
pub fn circles(n: usize, noise: f64, factor: f64, seed: u64) -> Dataset {
    check_noise(noise);
    assert!(
        factor > 0.0 && factor < 1.0,
        "circles: factor {factor} must be in (0, 1)"
    );
    let mut rng = Rng::new(seed);
    planar("circles", n, 2, &mut rng, |class, rng| {
        let radius = if class == 0 { 1.0 } else { factor };
        let angle = 2.0 * PI * rng.uniform();
        (
            radius * libm::cos(angle) + noise * rng.normal(),
            radius * libm::sin(angle) + noise * rng.normal(),
        )
    })
}

/// `classes` interleaved spiral arms of one and a half turns each, growing from the origin to
/// radius 1; Gaussian noise of standard deviation `noise` on both coordinates.
///
/// # Panics
///
/// If `classes < 2` or above [`MAX_CLASSES`], or `noise` is negative or not finite.
pub fn spirals(n: usize, classes: usize, noise: f64, seed: u64) -> Dataset {
    check_noise(noise);
    assert!(
        (2..=MAX_CLASSES).contains(&classes),
        "spirals: {classes} classes; need 2 to {MAX_CLASSES}"
    );
    let mut rng = Rng::new(seed);
    let arms = classes as f64;
    planar("spirals", n, classes, &mut rng, |class, rng| {
        let t = rng.uniform();
        let angle = 2.0 * PI * f64::from(class) / arms + 3.0 * PI * t;
        (
            t * libm::cos(angle) + noise * rng.normal(),
            t * libm::sin(angle) + noise * rng.normal(),
        )
    })
}

/// Points uniform on `[-1, 1)²` labelled by the parity of their cell on a `cells × cells`
/// board: XOR of the signs for `cells = 2` (named `xor`), `checkerboard` otherwise. Noise-free;
/// the difficulty is the number of axis-aligned regions. Classes are balanced only in
/// expectation, since a label is decided by where the point falls.
///
/// # Panics
///
/// If `cells < 2` (one cell would be a single class).
pub fn checkerboard(n: usize, cells: usize, seed: u64) -> Dataset {
    assert!(
        cells >= 2,
        "checkerboard: {cells} cells per side; need at least 2"
    );
    let mut rng = Rng::new(seed);
    let mut features = Vec::with_capacity(2 * n);
    let labels = (0..n)
        .map(|_| {
            let mut parity = 0;
            for _ in 0..2 {
                let u = rng.uniform();
                // u < 1, so the cell is at most cells - 1.
                parity += (u * cells as f64) as usize;
                features.push((2.0 * u - 1.0) as f32);
            }
            (parity % 2) as u32
        })
        .collect();
    Dataset {
        name: if cells == 2 { "xor" } else { "checkerboard" }.to_owned(),
        rows: n,
        cols: 2,
        features,
        target: Target::Classes { labels, classes: 2 },
    }
}

/// Friedman #1 regression: ten features uniform on `[0, 1)`, of which only the first five
/// matter, `y = 10 sin(π x0 x1) + 20 (x2 - 0.5)² + 10 x3 + 5 x4 + noise · N(0, 1)`. The five
/// irrelevant features test whether a component copes with useless inputs.
///
/// # Panics
///
/// If `noise` is negative or not finite.
pub fn friedman(n: usize, noise: f64, seed: u64) -> Dataset {
    check_noise(noise);
    let mut rng = Rng::new(seed);
    let mut features = Vec::with_capacity(10 * n);
    let values = (0..n)
        .map(|_| {
            let x: [f32; 10] = std::array::from_fn(|_| rng.range(0.0, 1.0));
            features.extend(x);
            // From the stored f32 features, so the target is an exact function of the inputs.
            let x = x.map(f64::from);
            let y = 10.0 * libm::sin(PI * x[0] * x[1])
                + 20.0 * (x[2] - 0.5) * (x[2] - 0.5)
                + 10.0 * x[3]
                + 5.0 * x[4]
                + noise * rng.normal();
            y as f32
        })
        .collect();
    Dataset {
        name: "friedman".to_owned(),
        rows: n,
        cols: 10,
        features,
        target: Target::Regression { values },
    }
}

fn check_noise(noise: f64) {
    assert!(
        noise.is_finite() && noise >= 0.0,
        "noise {noise} must be a finite standard deviation >= 0"
    );
}

/// A 2-feature classification set whose row `i` is class `i % classes`, placed by `point`.
fn planar(
    name: &str,
    n: usize,
    classes: usize,
    rng: &mut Rng,
    mut point: impl FnMut(u32, &mut Rng) -> (f64, f64),
) -> Dataset {
    let mut features = Vec::with_capacity(2 * n);
    let labels = (0..n)
        .map(|i| {
            // classes <= MAX_CLASSES, so the remainder fits.
            let class = (i % classes) as u32;
            let (x, y) = point(class, rng);
            features.extend([x as f32, y as f32]);
            class
        })
        .collect();
    Dataset {
        name: name.to_owned(),
        rows: n,
        cols: 2,
        features,
        target: Target::Classes { labels, classes },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(d: &Dataset) -> (Vec<u32>, Vec<u32>) {
        let target = match &d.target {
            Target::Classes { labels, .. } => labels.clone(),
            Target::Regression { values } => values.iter().map(|v| v.to_bits()).collect(),
        };
        (d.features.iter().map(|v| v.to_bits()).collect(), target)
    }

    fn class_counts(d: &Dataset) -> Vec<usize> {
        d.class_counts()
            .unwrap_or_else(|| panic!("{} is not classification", d.name))
    }

    #[test]
    fn same_seed_gives_identical_bits_and_other_seeds_differ() {
        for &name in SYNTHETIC {
            let a = synthetic(name, 300, 42).unwrap();
            let b = synthetic(name, 300, 42).unwrap();
            assert_eq!(bits(&a), bits(&b), "{name}");
            let c = synthetic(name, 300, 43).unwrap();
            assert_ne!(a.features, c.features, "{name}");
        }
    }

    #[test]
    fn shapes_names_and_tasks_are_right() {
        let expected = [
            ("two_moons", 2, Some(2)),
            ("circles", 2, Some(2)),
            ("spirals", 2, Some(3)),
            ("xor", 2, Some(2)),
            ("checkerboard", 2, Some(2)),
            ("friedman", 10, None),
        ];
        assert_eq!(expected.map(|(name, ..)| name), SYNTHETIC);
        for (name, cols, classes) in expected {
            let d = synthetic(name, 257, 1).unwrap();
            assert_eq!((d.name.as_str(), d.rows, d.cols), (name, 257, cols));
            assert_eq!(d.features.len(), 257 * cols, "{name}");
            assert_eq!(d.target.len(), 257, "{name}");
            assert_eq!(d.classes(), classes, "{name}");
            assert!(d.features.iter().all(|v| v.is_finite()), "{name}");
        }
    }

    #[test]
    fn classes_are_balanced() {
        // Cycled labels: within one row.
        assert_eq!(class_counts(&two_moons(101, 0.1, 3)), vec![51, 50]);
        assert_eq!(class_counts(&circles(100, 0.1, 0.5, 3)), vec![50, 50]);
        assert_eq!(class_counts(&spirals(100, 4, 0.1, 3)), vec![25; 4]);
        // Positional labels: balanced in expectation.
        for cells in [2, 3, 4, 5] {
            let counts = class_counts(&checkerboard(4_000, cells, 3));
            assert!(
                counts.iter().all(|&c| (1_800..=2_200).contains(&c)),
                "{cells}: {counts:?}"
            );
        }
    }

    #[test]
    fn noise_free_geometry_is_exact() {
        let d = two_moons(200, 0.0, 9);
        for i in 0..d.rows {
            let &[x, y] = d.row(i) else { unreachable!() };
            let (cx, cy) = if i % 2 == 0 { (0.0, 0.0) } else { (1.0, 0.5) };
            let r = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
            assert!((r - 1.0).abs() < 1e-5, "row {i}: radius {r}");
            assert!(if i % 2 == 0 { y >= 0.0 } else { y <= 0.5 }, "row {i}");
        }
        let d = circles(200, 0.0, 0.3, 9);
        for i in 0..d.rows {
            let &[x, y] = d.row(i) else { unreachable!() };
            let expected = if i % 2 == 0 { 1.0 } else { 0.3 };
            assert!(((x * x + y * y).sqrt() - expected).abs() < 1e-5, "row {i}");
        }
        let d = spirals(300, 3, 0.0, 9);
        assert!(d.features.iter().all(|v| v.abs() <= 1.0));
    }

    #[test]
    fn xor_labels_are_the_sign_parity() {
        let d = checkerboard(1_000, 2, 4);
        assert_eq!(d.name, "xor");
        let Target::Classes { labels, .. } = &d.target else {
            unreachable!()
        };
        for (i, &label) in labels.iter().enumerate() {
            let &[x, y] = d.row(i) else { unreachable!() };
            assert_eq!(
                label,
                u32::from((x < 0.0) != (y < 0.0)),
                "row {i}: ({x}, {y})"
            );
        }
        assert!(d.features.iter().all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn friedman_follows_its_formula() {
        let d = friedman(500, 0.0, 8);
        let Target::Regression { values } = &d.target else {
            unreachable!()
        };
        for (i, &y) in values.iter().enumerate() {
            let x: Vec<f64> = d.row(i).iter().map(|&v| f64::from(v)).collect();
            assert!(x.iter().all(|v| (0.0..1.0).contains(v)));
            let expected = 10.0 * libm::sin(PI * x[0] * x[1])
                + 20.0 * (x[2] - 0.5) * (x[2] - 0.5)
                + 10.0 * x[3]
                + 5.0 * x[4];
            assert!((f64::from(y) - expected).abs() < 1e-4, "row {i}");
        }
        // With noise the targets stay finite and move off the formula.
        let noisy = synthetic("friedman", 500, 8).unwrap();
        let Target::Regression { values: noisy } = &noisy.target else {
            unreachable!()
        };
        assert!(noisy.iter().all(|v| v.is_finite()));
        assert_ne!(noisy, values);
        let mean = noisy.iter().map(|&v| f64::from(v)).sum::<f64>() / 500.0;
        assert!((12.0..17.0).contains(&mean), "{mean}");
    }

    #[test]
    fn unknown_names_and_empty_sizes_are_errors() {
        let e = synthetic("moons", 10, 0).unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::Unknown {
                    kind: "synthetic",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            SYNTHETIC.iter().all(|name| e.to_string().contains(name)),
            "{e}"
        );
        let e = synthetic("circles", 0, 0).unwrap_err();
        assert!(matches!(e, DatasetError::NoRows { .. }), "{e:?}");
    }

    #[test]
    #[should_panic(expected = "need at least 2")]
    fn a_one_cell_board_is_refused() {
        checkerboard(10, 1, 0);
    }
}
