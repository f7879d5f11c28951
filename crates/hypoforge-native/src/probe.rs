//! The differential test's probe set: the calls a native build must answer with the very bits
//! its WebAssembly build gives before it is trusted with a trial.
//!
//! The probes are fixed (a seeded SplitMix64), so a verdict is the same on every run. They
//! cover what training hands each kind and the edges around it: for activations, signed zeros,
//! subnormals, the extremes and infinities beside dense sweeps and Gaussian draws at several
//! scales; for preprocessors, fits on matrices of mixed scales, heavy tails, constant and binary
//! columns, single rows and columns, each followed by transforms of the fitted rows and of
//! fresh ones; for regularizers, penalties and gradients of many shapes at three scales.

use hypoforge_eval::model::{Activation, Regularizer, RunFailure};
use hypoforge_eval::trial::{Preprocess, Slot};
use hypoforge_spec::ComponentKind;
use hypoforge_spec::rng::Rng;

use crate::wire::Op;

/// One call of the probe set: the operation and its `rows × cols` input.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Probe {
    pub op: Op,
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

/// A component of either build, as the probe calls and the trials drive it.
pub(crate) enum Handle<'a> {
    Activation(Box<dyn Activation + 'a>),
    Preprocessor(Box<dyn Preprocess + 'a>),
    Regularizer(Box<dyn Regularizer + 'a>),
}

impl Handle<'_> {
    /// The component in its slot of a trial.
    pub fn slot(&mut self) -> Slot<'_> {
        match self {
            Handle::Activation(a) => Slot::Activation(a.as_mut()),
            Handle::Preprocessor(p) => Slot::Preprocessor(p.as_mut()),
            Handle::Regularizer(r) => Slot::Regularizer(r.as_mut()),
        }
    }

    /// One probe call on the `rows × cols` matrix `x`: its outputs, or the component's
    /// failure; `None` when `op` is not a call of this kind. A fit answers its output width.
    pub fn call(
        &mut self,
        op: Op,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Option<Result<Vec<Vec<f32>>, RunFailure>> {
        let n = x.len();
        Some(match (self, op) {
            (Handle::Activation(a), Op::ActForward) => {
                let mut y = vec![0.0; n];
                a.forward(x, &mut y).map(|()| vec![y])
            }
            (Handle::Activation(a), Op::ActDerivative) => {
                let mut dy = vec![0.0; n];
                a.derivative(x, &mut dy).map(|()| vec![dy])
            }
            (Handle::Activation(a), Op::ActForwardDerivative) => {
                let (mut y, mut dy) = (vec![0.0; n], vec![0.0; n]);
                a.forward_with_derivative(x, &mut y, &mut dy)
                    .map(|()| vec![y, dy])
            }
            (Handle::Preprocessor(p), Op::PreFit) => {
                p.fit(x, rows, cols).map(|width| vec![vec![width as f32]])
            }
            (Handle::Preprocessor(p), Op::PreTransform) => {
                let mut out = Vec::new();
                p.transform(x, rows, cols, &mut out).map(|()| vec![out])
            }
            (Handle::Regularizer(r), Op::RegPenalty) => {
                r.penalty(x, rows, cols).map(|penalty| vec![vec![penalty]])
            }
            (Handle::Regularizer(r), Op::RegGradient) => {
                let mut g = vec![0.0; n];
                r.gradient(x, rows, cols, &mut g).map(|()| vec![g])
            }
            _ => return None,
        })
    }
}

/// The probe set of `kind`, in the order it is run (a transform uses the last fit).
pub(crate) fn probes(kind: ComponentKind) -> Vec<Probe> {
    let mut rng = Rng::new(0x6e61_7469_7665); // "native"
    match kind {
        ComponentKind::Activation => activation_probes(&mut rng),
        ComponentKind::Preprocessor => preprocessor_probes(&mut rng),
        ComponentKind::Regularizer => regularizer_probes(&mut rng),
    }
}

fn activation_probes(rng: &mut Rng) -> Vec<Probe> {
    let mut x = vec![
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1e-40,
        -1e-40,
        f32::from_bits(1),
        -f32::from_bits(1),
        1.0,
        -1.0,
        f32::EPSILON,
        1e4,
        -1e4,
        1e30,
        -1e30,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    // Every 1/100 on [-20, 20]: the range pre-activations live in, densely.
    x.extend((-2000..=2000).map(|i| i as f32 / 100.0));
    for scale in [0.01, 1.0, 4.0, 30.0] {
        x.extend((0..2048).map(|_| (rng.normal() * scale) as f32));
    }
    let n = x.len();
    [Op::ActForward, Op::ActDerivative, Op::ActForwardDerivative]
        .into_iter()
        .map(|op| Probe {
            op,
            rows: 1,
            cols: n,
            data: x.clone(),
        })
        .collect()
}

/// A `rows × cols` matrix whose column `c` is drawn from `column(c, rng)`.
fn matrix(
    rows: usize,
    cols: usize,
    rng: &mut Rng,
    column: impl Fn(usize, &mut Rng) -> f32,
) -> Vec<f32> {
    let mut data = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            data[r * cols + c] = column(c, rng);
        }
    }
    data
}

/// Columns of different character: Gaussian at two scales, skewed, heavy-tailed, binary,
/// discrete, constant and offset.
fn mixed(c: usize, rng: &mut Rng) -> f32 {
    (match c % 8 {
        0 => rng.normal(),
        1 => 1000.0 * rng.normal() + 50.0,
        2 => rng.normal().exp(),
        3 => rng.normal() / (rng.uniform() + 0.05),
        4 => f64::from(rng.uniform() < 0.3),
        5 => rng.below(5) as f64,
        6 => 3.0,
        _ => 1e-3 * rng.normal() - 7.0,
    }) as f32
}

fn preprocessor_probes(rng: &mut Rng) -> Vec<Probe> {
    let mut probes = Vec::new();
    let shapes = [(256, 8), (300, 64), (40, 3), (1, 5), (64, 1), (2, 2)];
    for (rows, cols) in shapes {
        let train = matrix(rows, cols, rng, mixed);
        let fresh = matrix(rows.max(17), cols, rng, mixed);
        probes.push(Probe {
            op: Op::PreFit,
            rows,
            cols,
            data: train.clone(),
        });
        probes.push(Probe {
            op: Op::PreTransform,
            rows,
            cols,
            data: train,
        });
        probes.push(Probe {
            op: Op::PreTransform,
            rows: rows.max(17),
            cols,
            data: fresh,
        });
    }
    probes
}

fn regularizer_probes(rng: &mut Rng) -> Vec<Probe> {
    let mut probes = Vec::new();
    let shapes = [(1, 1), (3, 7), (64, 20), (128, 64), (10, 1), (1, 33)];
    for (rows, cols) in shapes {
        for scale in [0.01, 0.3, 3.0] {
            let w = matrix(rows, cols, rng, |_, rng| (rng.normal() * scale) as f32);
            for op in [Op::RegPenalty, Op::RegGradient] {
                probes.push(Probe {
                    op,
                    rows,
                    cols,
                    data: w.clone(),
                });
            }
        }
    }
    probes
}

/// Whether two outputs agree: the same bits, or both NaN (WebAssembly leaves NaN bits
/// unspecified, and validation refuses NaN outputs anyway).
pub(crate) fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}
