//! Turning a dataset into one trial's training and validation examples.
//!
//! Every component in a trial sees the same split (the seed decides it), and the default
//! preprocessing is fitted on the training rows only.

use hypoforge_spec::rng::Rng;

use crate::datasets::{Dataset, Target};
use crate::model::{Examples, Objective, Targets};

/// What a network trained on `dataset` predicts, and how it is scored.
pub fn objective(dataset: &Dataset) -> Objective {
    match &dataset.target {
        Target::Classes { classes, .. } => Objective::Classification { classes: *classes },
        Target::Regression { .. } => Objective::Regression,
    }
}

/// Split `dataset` by a seeded shuffle: `validation_fraction` of the rows (at least one, and
/// leaving at least one) for validation, the rest for training.
pub fn split(dataset: &Dataset, validation_fraction: f64, seed: u64) -> (Examples, Examples) {
    let mut order: Vec<usize> = (0..dataset.rows).collect();
    let mut rng = Rng::new(seed ^ 0x5b1e_0000_0000_0003);
    rng.shuffle(&mut order);
    let n_valid = ((dataset.rows as f64 * validation_fraction).round() as usize)
        .clamp(1, dataset.rows.saturating_sub(1).max(1));
    let (valid, train) = order.split_at(n_valid);
    (examples(dataset, train), examples(dataset, valid))
}

/// The rows `rows` of `dataset` as training examples.
pub fn examples(dataset: &Dataset, rows: &[usize]) -> Examples {
    let sub = dataset.subset(rows);
    Examples {
        features: sub.features,
        rows: sub.rows,
        cols: sub.cols,
        targets: match sub.target {
            Target::Classes { labels, .. } => Targets::Labels(labels),
            Target::Regression { values } => Targets::Values(values),
        },
    }
}

/// Standardize every column with the training rows' mean and standard deviation; a column
/// with zero variance keeps scale 1. Both sets are changed in place.
pub fn standardize(train: &mut Examples, valid: &mut Examples) {
    let cols = train.cols;
    let n = train.rows.max(1) as f64;
    let mut mean = vec![0.0f64; cols];
    for row in train.features.chunks_exact(cols.max(1)) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0f64; cols];
    for row in train.features.chunks_exact(cols.max(1)) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            let d = f64::from(v) - m;
            *s += d * d;
        }
    }
    let scale: Vec<f64> = var
        .iter()
        .map(|s| {
            let std = (s / n).sqrt();
            if std > 1e-12 { 1.0 / std } else { 1.0 }
        })
        .collect();
    for set in [train, valid] {
        for row in set.features.chunks_exact_mut(cols.max(1)) {
            for ((v, m), s) in row.iter_mut().zip(&mean).zip(&scale) {
                *v = ((f64::from(*v) - m) * s) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets;

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let d = datasets::embedded("iris").unwrap();
        let (t1, v1) = split(&d, 0.2, 4);
        let (t2, v2) = split(&d, 0.2, 4);
        assert_eq!((t1.rows, v1.rows), (120, 30));
        assert_eq!(t1, t2);
        assert_eq!(v1, v2);
        let (t3, _) = split(&d, 0.2, 5);
        assert_ne!(t1.features, t3.features);
        // Every row lands in exactly one side: the multisets of rows add up to the dataset.
        let key = |r: &[f32]| r.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        let mut rows: Vec<Vec<u32>> = t1
            .features
            .chunks(4)
            .chain(v1.features.chunks(4))
            .map(key)
            .collect();
        let mut all: Vec<Vec<u32>> = d.features.chunks(4).map(key).collect();
        rows.sort();
        all.sort();
        assert_eq!(rows, all);
    }

    #[test]
    fn split_keeps_both_sides_non_empty() {
        let d = datasets::synthetic("xor", 10, 1).unwrap();
        let (t, v) = split(&d, 0.001, 1);
        assert_eq!((t.rows, v.rows), (9, 1));
        let (t, v) = split(&d, 0.999, 1);
        assert_eq!((t.rows, v.rows), (1, 9));
    }

    #[test]
    fn standardize_uses_training_statistics_and_spares_constant_columns() {
        let mk = |features: Vec<f32>, rows| Examples {
            features,
            rows,
            cols: 2,
            targets: Targets::Labels(vec![0; rows]),
        };
        let mut train = mk(vec![1.0, 5.0, 3.0, 5.0], 2);
        let mut valid = mk(vec![5.0, 7.0], 1);
        standardize(&mut train, &mut valid);
        assert_eq!(train.features, vec![-1.0, 0.0, 1.0, 0.0]);
        // Validation uses the training mean 2 and std 1; the constant column keeps scale 1.
        assert_eq!(valid.features, vec![3.0, 2.0]);
    }
}
