//! Deterministic probe data: the same inputs on every machine, every run.

use hypoforge_spec::rng::Rng;

/// The values every activation must handle: exact points, then random values at three scales.
pub fn activation_probe() -> Vec<f32> {
    let mut xs = vec![0.0, 1e-6, -1e-6, 1.0, -1.0, 10.0, -10.0, 1e4, -1e4];
    let mut rng = Rng::new(0x5eed_0001);
    for i in 0..1015 {
        let scale = [1.0, 3.0, 30.0][i % 3];
        xs.push((rng.normal() * scale) as f32);
    }
    xs
}

/// A training matrix (rows × 6) with awkward columns: a constant, a huge range, tiny values,
/// a skewed one and a three-valued category.
pub fn preprocessor_matrix(rows: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut m = Vec::with_capacity(rows * PREPROCESSOR_COLS);
    for _ in 0..rows {
        m.push(rng.normal() as f32);
        m.push(3.0);
        m.push(rng.range(-1e4, 1e4));
        m.push((rng.normal() * 1e-6) as f32);
        m.push((-rng.uniform().max(1e-12).ln() * 5.0) as f32);
        m.push((rng.next_u64() % 3) as f32);
    }
    m
}

pub const PREPROCESSOR_COLS: usize = 6;

/// Weight matrices of several shapes and scales, including all-zero and extreme ones.
pub fn weight_matrices() -> Vec<(usize, usize, Vec<f32>)> {
    let mut rng = Rng::new(0x5eed_0003);
    let mut random = |rows: usize, cols: usize, scale: f64| {
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| (rng.normal() * scale) as f32)
            .collect();
        (rows, cols, w)
    };
    let mut mats = vec![
        random(1, 1, 1.0),
        random(8, 4, 0.1),
        random(64, 64, 0.2),
        random(16, 3, 1.0),
    ];
    mats.push((4, 4, vec![0.0; 16]));
    mats.push((
        2,
        5,
        vec![1e-6, -1e-6, 10.0, -10.0, 0.0, 1.0, -1.0, 1e3, -1e3, 0.5],
    ));
    mats
}
